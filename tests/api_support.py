"""Shared helpers for the API tests: an in-process `webhookd api` on 127.0.0.1 against the
test's own database, tokens, and a small JSON client (the svix SDK is used where the tests
are about what Svix clients do).
"""

from __future__ import annotations

import io
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import asyncpg
import orjson
import pytest_asyncio
from multidict import CIMultiDict

from daemon.api import tokens
from daemon.api.server import ApiServer
from daemon.config import Config
from daemon.store import Store
from daemon.units import Rate
from tests.integration.conftest import daemon_config


def api_config(dsn: str, **sections: dict[str, Any]) -> Config:
    """The integration tests' daemon config, the API on free loopback ports, tokens unchecked
    by cache (a revocation bites at once), failed authentications hardly limited."""
    api = {
        "listen_port": 0,
        "metrics_port": 0,
        "token_cache_s": 0.0,
        "auth_failures": Rate(10_000, 1),
    } | sections.pop("api", {})
    return daemon_config(dsn, api=api, **sections)


@dataclass
class Reply:
    status: int
    body: Any
    headers: Mapping[str, str]

    @property
    def json(self) -> Any:
        return self.body


@dataclass
class ApiUnderTest:
    """A running API server, its database, and a client session."""

    server: ApiServer
    store: Store
    session: aiohttp.ClientSession
    admin: str = ""  # an admin token for every application
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.server.metrics_port}/metrics"

    async def token(self, scope: str = "admin", app: str | None = None, **kw: Any) -> str:
        new = await tokens.create_token(self.store, scope, app=app, **kw)
        return new.token

    async def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        token: str | None = None,
        headers: Mapping[str, str] | None = None,
        raw: bytes | None = None,
    ) -> Reply:
        sent = dict(headers or {})
        data: bytes | io.BytesIO | None
        auth = self.admin if token is None else token
        if auth:
            sent["Authorization"] = f"Bearer {auth}"
        data = raw if raw is not None else (None if body is None else orjson.dumps(body))
        if data is not None:
            sent.setdefault("Content-Type", "application/json")
            data = io.BytesIO(data)  # aiohttp warns about large raw bodies
        async with self.session.request(
            method, self.base_url + path, data=data, headers=sent
        ) as response:
            text = await response.read()
            parsed = orjson.loads(text) if text else None
            return Reply(response.status, parsed, CIMultiDict(response.headers))

    async def get(self, path: str, **kw: Any) -> Reply:
        return await self.call("GET", path, **kw)

    async def post(self, path: str, body: Any = None, **kw: Any) -> Reply:
        return await self.call("POST", path, body if body is not None else {}, **kw)


@asynccontextmanager
async def running_api(
    dsn: str, admin: str | None = None, **sections: dict[str, Any]
) -> AsyncIterator[ApiUnderTest]:
    """`webhookd api` in this process on a free port, with an admin token (made here unless
    given: the API's own database role may not make tokens)."""
    server = ApiServer(api_config(dsn, **sections))
    await server.start()
    assert server.store is not None
    session = aiohttp.ClientSession()
    under_test = ApiUnderTest(server, server.store, session)
    try:
        under_test.admin = admin or await under_test.token("admin")
        yield under_test
    finally:
        await session.close()
        await server.stop()


@pytest_asyncio.fixture
async def api(db_dsn: str) -> AsyncIterator[ApiUnderTest]:
    async with running_api(db_dsn) as under_test:
        yield under_test


@pytest_asyncio.fixture
async def db(db_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    """A connection to the test's database, for what a test sets or reads by hand."""
    conn = await asyncpg.connect(db_dsn)
    try:
        yield conn
    finally:
        await conn.close()


@dataclass
class Ran:
    """A finished `webhookd` command."""

    code: int
    out: str
    err: str

    @property
    def body(self) -> tuple[int, str, str]:
        return self.code, self.out, self.err


async def webhookd(dsn: str, *args: str, env: Mapping[str, str] | None = None) -> Ran:
    """Run the real `webhookd` executable against `dsn`."""
    import asyncio
    import os
    import sys
    from pathlib import Path

    script = Path(sys.executable).with_name("webhookd")
    argv = [str(script)] if script.exists() else [sys.executable, "-m", "daemon"]
    environment = {k: v for k, v in os.environ.items() if not k.startswith("WEBHOOKD_")}
    environment |= {"WEBHOOKD_DATABASE_URL": dsn, **(env or {})}
    proc = await asyncio.create_subprocess_exec(
        *argv, *args, env=environment, stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode is not None
    return Ran(proc.returncode, out.decode(), err.decode())


async def make_app(api: ApiUnderTest, uid: str, name: str | None = None) -> dict[str, Any]:
    reply = await api.post("/api/v1/app", {"name": name or uid, "uid": uid})
    assert reply.status == 201, reply.body
    body: dict[str, Any] = reply.body
    return body


async def make_endpoint(api: ApiUnderTest, app: str, url: str, **fields: Any) -> dict[str, Any]:
    reply = await api.post(f"/api/v1/app/{app}/endpoint", {"url": url, **fields})
    assert reply.status == 201, reply.body
    body: dict[str, Any] = reply.body
    return body
