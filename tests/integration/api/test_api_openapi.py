"""The OpenAPI 3.1 document: valid (openapi-spec-validator), naming exactly the routes the
server has, and held to by a running `webhookd api` under schemathesis: for every operation, no
5xx, and every status code, content type and body as the document says."""

from __future__ import annotations

import asyncio
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase, settings
from openapi_spec_validator import validate
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from daemon.api.openapi import document
from daemon.api.routes import all_routes
from tests.conftest import _admin, dsn_with_database

SCHEMA = schemathesis.openapi.from_dict(document())
# Valid requests (by the document) reach the handlers' own checks and the success paths;
# invalid ones (negative mode) are tested for their 4xx bodies too.
SCHEMA.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
WEBHOOKD = Path(sys.executable).with_name("webhookd")


def test_the_document_is_valid_openapi_3_1() -> None:
    doc = document()
    assert doc["openapi"] == "3.1.0"
    validate(doc)


def test_the_document_names_exactly_the_routes_of_the_server() -> None:
    documented = {
        (method.upper(), path)
        for path, operations in document()["paths"].items()
        for method in operations
    }
    served = {(r.method, r.path) for r in all_routes()}
    assert documented == served
    ids = [op["operationId"] for ops in document()["paths"].values() for op in ops.values()]
    assert len(ids) == len(set(ids))


@dataclass
class LiveApi:
    url: str
    token: str
    session: requests.Session


def _env(dsn: str, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEBHOOKD_")}
    return env | {
        "WEBHOOKD_DATABASE_URL": dsn,
        "WEBHOOKD_API_LISTEN": f"127.0.0.1:{port}",
        "WEBHOOKD_API_METRICS_LISTEN": "127.0.0.1:0",
        "WEBHOOKD_API_AUTH_FAILURES": "100000/s",
        "WEBHOOKD_LOG_LEVEL": "warning",
    }


def _seed(url: str, token: str) -> None:
    """The resources the document's path examples name: demo, demo-endpoint, demo-msg."""
    headers = {"Authorization": f"Bearer {token}"}
    for path, body in (
        ("/api/v1/app", {"name": "Demo", "uid": "demo"}),
        ("/api/v1/app/demo/endpoint", {"url": "https://example.com/h", "uid": "demo-endpoint"}),
        ("/api/v1/app/demo/msg", {"eventType": "demo.event", "payload": {}, "eventId": "demo-msg"}),
        ("/api/v1/event-type", {"name": "demo.event", "description": "demo"}),
    ):
        reply = requests.post(url + path, json=body, headers=headers, timeout=10)
        assert reply.status_code in (201, 202), reply.text


@pytest.fixture(scope="module")
def live_api(pg_server_dsn: str, template_db: str) -> Iterator[LiveApi]:
    """A real `webhookd api` process on its own database, for the whole module."""
    name = f"webhookd_oa_{secrets.token_hex(6)}"
    asyncio.run(_admin(pg_server_dsn, f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"'))
    dsn = dsn_with_database(pg_server_dsn, name)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = _env(dsn, port)
    made = subprocess.run(
        [str(WEBHOOKD), "api-token", "create", "--scope", "admin", "--json"],
        env=env, capture_output=True, text=True, check=True, timeout=30,
    )  # fmt: skip
    token = orjson.loads(made.stdout)["token"]
    proc = subprocess.Popen([str(WEBHOOKD), "api"], env=env, stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                if requests.get(url + "/api/v1/health", timeout=1).status_code == 204:
                    break
            except requests.ConnectionError:
                pass
            assert time.monotonic() < deadline and proc.poll() is None, "api did not start"
            time.sleep(0.05)
        _seed(url, token)
        with requests.Session() as session:
            yield LiveApi(url, token, session)
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        asyncio.run(_admin(pg_server_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@SCHEMA.parametrize()
@settings(
    max_examples=6,
    deadline=None,
    database=None,
    derandomize=True,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=list(HealthCheck),
)
def test_every_operation_conforms_to_the_document(
    case: schemathesis.Case, live_api: LiveApi
) -> None:
    headers = {"Authorization": f"Bearer {live_api.token}"}
    case.call_and_validate(
        base_url=live_api.url,
        session=live_api.session,
        headers=headers,
        checks=CHECKS,
        timeout=10,
    )


def _operation_count() -> int:
    return sum(len(ops) for ops in document()["paths"].values())


def test_schemathesis_covers_every_operation() -> None:
    names = {f"{m.upper()} {p}" for p, ops in document()["paths"].items() for m in ops}
    assert len(names) == _operation_count() == len(all_routes())
    assert all(re.match(r"^(GET|POST|PUT|PATCH|DELETE) /api/v1/", n) for n in names)
