"""`webhookd api` itself: public routes, error bodies for every refusal, request ids, the body
cap, metrics by route template, and no traceback ever reaching a client."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator

import aiohttp
import pytest_asyncio
from aiohttp import web
from multidict import CIMultiDict
from structlog.testing import capture_logs

from daemon.api.http import READ, WRITE, json_response
from daemon.api.routes import Route, build_app
from daemon.errors import DatabaseUnavailable
from tests.api_support import ApiUnderTest


async def test_health_and_openapi_need_no_token(api: ApiUnderTest) -> None:
    health = await api.get("/api/v1/health", token="")
    assert health.status == 204
    doc = await api.get("/api/v1/openapi.json", token="")
    assert doc.status == 200 and doc.body["openapi"] == "3.1.0"
    assert doc.headers["Content-Type"].startswith("application/json")


async def test_unknown_routes_and_methods_answer_svix_error_bodies(api: ApiUnderTest) -> None:
    missing = await api.get("/api/v1/nowhere")
    assert missing.status == 404
    assert missing.body == {"code": "not_found", "detail": "no route GET /api/v1/nowhere"}
    wrong = await api.call("DELETE", "/api/v1/health")
    assert wrong.status == 405 and wrong.body["code"] == "method_not_allowed"
    assert "GET" in wrong.headers["Allow"]


async def test_each_response_carries_a_request_id_the_client_may_choose(
    api: ApiUnderTest,
) -> None:
    chosen = await api.get("/api/v1/health", headers={"X-Request-Id": "trace-42"})
    assert chosen.headers["X-Request-Id"] == "trace-42"
    made = await api.get("/api/v1/health", headers={"X-Request-Id": "bad id\twith tab"})
    assert made.headers["X-Request-Id"].startswith("req_")


class Probe:
    """Routes that exercise the middleware: auth, a crash, the database gone, the body cap."""

    @staticmethod
    async def ok(request: web.Request) -> web.Response:
        return json_response({"read": len(await request.read())})

    @staticmethod
    async def crash(_request: web.Request) -> web.Response:
        raise RuntimeError("secret internals: password=hunter2")

    @staticmethod
    async def db_gone(_request: web.Request) -> web.Response:
        raise DatabaseUnavailable("connection refused")


@pytest_asyncio.fixture
async def probe(api: ApiUnderTest) -> AsyncIterator[str]:
    """The probe routes, served by the real middleware and auth, on another port."""
    state = api.server.api
    assert state is not None
    app = build_app(
        state,
        [
            Route("GET", "/read", Probe.ok, READ),
            Route("POST", "/write", Probe.ok, WRITE),
            Route("GET", "/crash", Probe.crash, READ),
            Route("GET", "/db", Probe.db_gone, READ),
        ],
    )
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}"
    await runner.cleanup()


async def _call(
    base: str, method: str, path: str, token: str | None, data: bytes | None = None
) -> tuple[int, dict[str, object], CIMultiDict[str]]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    body = None if data is None else io.BytesIO(data)  # aiohttp warns on large raw bytes
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, base + path, data=body, headers=headers) as response,
    ):
        return response.status, await response.json(), CIMultiDict(response.headers)


async def test_missing_unknown_and_read_only_tokens_are_refused(
    api: ApiUnderTest, probe: str
) -> None:
    reader = await api.token("read")
    status, body, headers = await _call(probe, "GET", "/read", None)
    assert (status, body["code"]) == (401, "authentication_failed")
    assert headers["WWW-Authenticate"] == "Bearer"
    status, body, _ = await _call(probe, "GET", "/read", "whk_0123456789abcdef_" + "A" * 43)
    assert (status, body["code"]) == (401, "authentication_failed")
    status, body, _ = await _call(probe, "GET", "/read", reader)
    assert status == 200
    status, body, _ = await _call(probe, "POST", "/write", reader, b"{}")
    assert (status, body["code"]) == (403, "insufficient_access")
    status, body, _ = await _call(probe, "POST", "/write", api.admin, b"{}")
    assert status == 200


async def test_an_internal_error_gives_only_an_error_id_and_logs_the_cause(
    api: ApiUnderTest, probe: str
) -> None:
    with capture_logs() as logs:
        status, body, headers = await _call(probe, "GET", "/crash", api.admin)
    assert status == 500 and body["code"] == "server_error"
    request_id = headers["X-Request-Id"]
    assert body["detail"] == f"internal error (error id {request_id})"
    assert "hunter2" not in str(body) and "Traceback" not in str(body)
    [logged] = [e for e in logs if e["event"] == "api.internal_error"]
    assert "hunter2" in logged["error"] and logged["error_id"] == request_id
    assert not any(api.admin in str(e) for e in logs)


async def test_a_lost_database_answers_503_for_the_client_to_retry(
    api: ApiUnderTest, probe: str
) -> None:
    status, body, headers = await _call(probe, "GET", "/db", api.admin)
    assert (status, body["code"], headers["Retry-After"]) == (503, "database_unavailable", "1")


async def test_bodies_over_the_cap_are_refused_with_413(api: ApiUnderTest, probe: str) -> None:
    cap = 1024 * 1024 + api.server.config.delivery.max_payload_bytes
    status, body, _ = await _call(probe, "POST", "/write", api.admin, b"x" * cap)
    assert status == 200 and body["read"] == cap
    status, body, _ = await _call(probe, "POST", "/write", api.admin, b"x" * (cap + 1))
    assert (status, body["code"]) == (413, "payload_too_large")


async def test_metrics_count_requests_by_route_template_and_failed_authentications(
    api: ApiUnderTest,
) -> None:
    await api.get("/api/v1/health")
    await api.get("/api/v1/nowhere/at/all")
    await api.get("/api/v1/health", token="whk_bad")  # public: the token is not even read
    async with aiohttp.ClientSession() as session, session.get(api.metrics_url) as response:
        text = await response.text()
    assert (
        'webhookd_api_requests_total{method="GET",route="/api/v1/health",status="204"} 2.0' in text
    )
    assert 'route="unmatched",status="404"' in text
    assert 'webhookd_api_request_duration_seconds_count{method="GET",route="/api/v1/health"}' in (
        text
    )
    assert 'webhookd_api_auth_failures_total{reason="unknown"} 0.0' in text


async def test_failed_authentications_get_429_and_are_counted(db_dsn: str) -> None:
    from daemon.units import Rate
    from tests.api_support import running_api

    async with running_api(db_dsn, api={"auth_failures": Rate(3, 60)}) as limited:
        bad = "whk_0123456789abcdef_" + "B" * 43
        statuses = [(await limited.get("/api/v1/app", token=bad)).status for _ in range(3)]
        assert statuses == [401, 401, 401]
        refused = await limited.get("/api/v1/app", token=bad)
        assert (refused.status, refused.body["code"]) == (429, "rate_limited")
        assert refused.headers["Retry-After"] == "20"
        # the valid token from the same address is refused too until the bucket refills
        assert (await limited.get("/api/v1/app")).status == 429
        async with (
            aiohttp.ClientSession() as session,
            session.get(limited.metrics_url) as response,
        ):
            text = await response.text()
    assert 'webhookd_api_auth_failures_total{reason="unknown"} 3.0' in text
    assert 'webhookd_api_auth_failures_total{reason="rate_limited"} 2.0' in text


async def test_nul_characters_are_refused_not_a_server_error(api: ApiUnderTest) -> None:
    """PostgreSQL text and jsonb cannot hold U+0000: such ids are not found, such bodies 422."""
    created = await api.post("/api/v1/app", {"name": "Acme", "uid": "acme"})
    assert created.status == 201
    for path in ("/api/v1/app/a%00b", "/api/v1/app/acme/endpoint/x%00",
                 "/api/v1/app/acme/msg/x%00", "/api/v1/event-type/x%00"):  # fmt: skip
        reply = await api.get(path)
        assert (reply.status, reply.body["code"]) == (404, "not_found"), path
    for path, body in (
        ("/api/v1/app/acme/msg", {"eventType": "e", "payload": {"a": "x\u0000y"}}),
        ("/api/v1/app", {"name": "n", "metadata": {"k\u0000": "v"}}),
        ("/api/v1/event-type", {"name": "z", "description": "", "schemas": {"1": {"a": ["\0"]}}}),
    ):
        reply = await api.post(path, body)
        assert reply.status == 422 and reply.body["detail"][0]["loc"] == ["body"], path
    literal = await api.post(
        "/api/v1/app/acme/msg", {"eventType": "e", "payload": {"text": "\\u0000 is fine"}}
    )
    assert literal.status == 202
