"""Every route, with every kind of token: an application-scoped token reaches only its own
application (another's ids answer 404, exactly as ids that do not exist, so nothing leaks), a
read token writes nothing (403), and no token gets 401. The routes come from the route table
itself, so a route added later is covered without touching this test."""

from __future__ import annotations

import re
from typing import Any

from daemon.api.http import ALL_APPS, PUBLIC
from daemon.api.routes import Route, all_routes
from tests.api_support import ApiUnderTest, make_app, make_endpoint

ROUTES = [r for r in all_routes() if r.access != PUBLIC]


def _ids(route: Route) -> str:
    return f"{route.method} {route.path}"


def _path(route: Route, app: str, suffix: str) -> str:
    values = {
        "app_id": app,
        "endpoint_id": f"ep-{suffix}",
        "msg_id": f"msg-{suffix}",
        "event_type_name": "scoped.event",
    }
    return re.sub(r"\{(\w+)\}", lambda m: values[m[1]], route.path)


async def _tenants(api: ApiUnderTest) -> dict[str, Any]:
    apps = {}
    for suffix in ("a", "b"):
        app = await make_app(api, f"tenant-{suffix}")
        await make_endpoint(api, app["uid"], f"https://example.com/{suffix}", uid=f"ep-{suffix}")
        sent = await api.post(
            f"/api/v1/app/{app['uid']}/msg",
            {"eventType": "scoped.event", "payload": {"n": 1}, "eventId": f"msg-{suffix}"},
        )
        assert sent.status == 202, sent.body
        apps[suffix] = app
    created = await api.post("/api/v1/event-type", {"name": "scoped.event", "description": "x"})
    assert created.status in (201, 404), created.body  # event types land in a later slice
    return apps


async def test_a_token_of_one_application_gets_404_for_another_on_every_route(
    api: ApiUnderTest,
) -> None:
    apps = await _tenants(api)
    scoped = await api.token("admin", app="tenant-a")
    wrong: list[str] = []
    app_routes = [r for r in ROUTES if "{app_id}" in r.path]
    assert len(app_routes) > 20
    for route in app_routes:
        for ref in (apps["b"]["uid"], apps["b"]["id"], "no-such-app"):
            reply = await api.call(route.method, _path(route, ref, "b"), body={}, token=scoped)
            if (reply.status, reply.body["code"]) != (404, "not_found"):
                wrong.append(f"{_ids(route)} as {ref}: {reply.status} {reply.body}")
        if route.method == "DELETE":
            continue  # not on its own: later routes need the application and endpoint
        # the same token gets past the lookup on its own application (a read: 200)
        own = await api.call(route.method, _path(route, "tenant-a", "a"), body={}, token=scoped)
        if (route.method == "GET" and own.status != 200) or (
            own.status == 404 and "resend" not in route.path
        ):
            wrong.append(f"{_ids(route)} on its own application: {own.status} {own.body}")
    assert wrong == []


async def test_application_less_routes_with_an_application_token(api: ApiUnderTest) -> None:
    apps = await _tenants(api)
    scoped = await api.token("admin", app="tenant-a")
    listed = await api.get("/api/v1/app", token=scoped)
    assert [a["id"] for a in listed.body["data"]] == [apps["a"]["id"]]
    created = await api.post("/api/v1/app", {"name": "x"}, token=scoped)
    assert created.status == 403
    for route in ROUTES:
        if "{app_id}" in route.path or route.path == "/api/v1/app":
            continue
        reply = await api.call(route.method, _path(route, "", "a"), body={}, token=scoped)
        # what spans applications (the log of every one) is refused, not narrowed
        expected = 200 if route.method == "GET" and route.access != ALL_APPS else 403
        assert reply.status == expected, (_ids(route), reply.body)


async def test_read_tokens_cannot_write_and_no_token_gets_401_on_every_route(
    api: ApiUnderTest,
) -> None:
    apps = await _tenants(api)
    reader = await api.token("read")
    wrong: list[str] = []
    for route in ROUTES:
        path = _path(route, apps["a"]["uid"], "a")
        reply = await api.call(route.method, path, body={}, token=reader)
        expected = (200, None) if route.method == "GET" else (403, "insufficient_access")
        got = (reply.status, None if reply.status == 200 else reply.body["code"])
        if got != expected:
            wrong.append(f"{_ids(route)} read token: {reply.status} {reply.body}")
        anonymous = await api.call(route.method, path, body={}, token="")
        if (anonymous.status, anonymous.body["code"]) != (401, "authentication_failed"):
            wrong.append(f"{_ids(route)} no token: {anonymous.status} {anonymous.body}")
    assert wrong == []
