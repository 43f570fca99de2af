"""The API routes the console and portal added, and what the console's pages rest on without a
browser: overview figures, one-time portal links scoped to one application, console sessions
(cookie attributes, CSRF on every write, Origin on login), page headers, logged reveals."""

from __future__ import annotations

import re
from http.cookies import SimpleCookie
from importlib import resources
from typing import Any

import asyncpg
from aiohttp import web
from structlog.testing import capture_logs

from tests.api_support import ApiUnderTest, make_app, make_endpoint, running_api
from tests.integration.conftest import DaemonFactory, Receiver, wait_until


async def test_the_overview_counts_attempts_backlog_dead_letters_and_endpoint_health(
    api: ApiUnderTest, receiver: Receiver, run_daemon: DaemonFactory
) -> None:
    receiver.on("/bad", lambda _h, _n: web.Response(status=500))
    await make_app(api, "acme")
    await make_app(api, "globex")
    await make_endpoint(api, "acme", receiver.url("/ok"), uid="ok")
    await make_endpoint(api, "acme", receiver.url("/bad"), uid="bad", retryScheduleMs=[])
    await make_endpoint(api, "globex", receiver.url("/ok"), uid="other")
    await api.post("/api/v1/app/globex/endpoint/other/disable", {"reason": "by hand"})
    async with run_daemon(breaker={"enabled": False}, health={"enabled": False}):
        for n in range(3):
            await api.post("/api/v1/app/acme/msg", {"eventType": "e", "payload": {"n": n}})

        async def settled() -> bool:
            body = (await api.get("/api/v1/stats/overview")).body
            return body["attempts"] == 6 and body["deadLetters24h"] == 3

        await wait_until(settled, 10, "6 attempts, 3 dead letters")
    everything = (await api.get("/api/v1/stats/overview")).body
    assert everything["succeeded"] == 3 and everything["successRate"] == 50.0
    assert everything["deliveriesPerSecond"] == 0.05  # 3 successes in the last minute
    assert everything["latencyP50Ms"] is not None and everything["latencyP95Ms"] is not None
    assert everything["backlog"] == {"due": 0, "scheduled": 0, "delivering": 0}
    assert everything["endpoints"] == {
        "total": 3, "disabled": 1, "autoDisabled": 0, "paused": 0, "breakerOpen": 0
    }  # fmt: skip
    assert sum(b["attempts"] for b in everything["series"]) == 6
    assert everything["window"] == "hour" and everything["bucketSeconds"] == 60

    day = (await api.get("/api/v1/stats/overview?window=day")).body
    assert day["bucketSeconds"] == 1440 and day["attempts"] == 6
    bad = (await api.get("/api/v1/app/acme/endpoint/bad/stats/overview")).body
    assert (bad["attempts"], bad["succeeded"], bad["successRate"]) == (3, 0, 0.0)
    globex = (await api.get("/api/v1/app/globex/stats/overview")).body
    assert globex["attempts"] == 0 and globex["successRate"] is None
    assert globex["endpoints"]["disabled"] == 1

    scoped = await api.token("read", app="globex")  # sees its application only
    mine = (await api.get("/api/v1/stats/overview", token=scoped)).body
    assert mine["attempts"] == 0 and mine["endpoints"]["total"] == 1
    assert (await api.get("/api/v1/stats/overview?window=week")).status == 422


async def test_a_portal_link_is_used_once_and_reaches_only_its_application(
    api: ApiUnderTest,
) -> None:
    acme = await make_app(api, "acme")
    await make_app(api, "globex")
    await make_endpoint(api, "globex", "https://globex.example.com/hook", uid="theirs")
    access = await api.post("/api/v1/auth/app-portal-access/acme", {"expiry": 120})
    assert access.status == 200
    link = access.body["token"]
    assert access.body["url"] == f"{api.base_url}/portal#key={link}&app={acme['id']}"

    # The link's token does nothing but the exchange.
    assert (await api.get("/api/v1/app/acme", token=link)).status == 403
    session = await api.post(f"/api/v1/app/{acme['id']}/portal-session", token=link)
    assert session.status == 200 and session.body["appId"] == acme["id"]
    again = await api.post(f"/api/v1/app/{acme['id']}/portal-session", token=link)
    assert (again.status, again.body["code"]) == (401, "authentication_failed")

    portal = session.body["token"]
    assert (await api.get("/api/v1/app/acme/endpoint", token=portal)).status == 200
    for path in ("/api/v1/app/globex", "/api/v1/app/globex/endpoint/theirs"):
        assert (await api.get(path, token=portal)).status == 404
    listed = await api.get("/api/v1/app", token=portal)
    assert [a["id"] for a in listed.body["data"]] == [acme["id"]]
    assert (await api.post("/api/v1/auth/app-portal-access/globex", token=portal)).status == 404
    # An API token is not exchanged.
    assert (await api.post(f"/api/v1/app/{acme['id']}/portal-session")).status == 403
    assert (await api.post("/api/v1/auth/app-portal-access/acme", {"expiry": 5})).status == 422


def _session_cookie(headers: object) -> tuple[str, str]:
    raw = headers.getall("Set-Cookie")  # type: ignore[attr-defined]
    assert len(raw) == 1
    cookie = SimpleCookie(raw[0])["webhookd_console"]
    return cookie.value, raw[0]


async def test_a_console_session_needs_its_csrf_token_for_every_write(api: ApiUnderTest) -> None:
    await make_app(api, "acme")
    refused = await api.post("/console/session", {"token": "whk_nope"}, token="")
    assert refused.status == 401
    elsewhere = await api.post(
        "/console/session", {"token": api.admin}, token="",
        headers={"Origin": "https://evil.example.com"},
    )  # fmt: skip
    assert elsewhere.status == 403
    login = await api.post(
        "/console/session", {"token": api.admin}, token="", headers={"Origin": api.base_url}
    )
    assert login.status == 200 and login.body["scope"] == "admin"
    ident, header = _session_cookie(login.headers)
    assert api.admin not in header and api.admin not in str(login.body)
    for attribute in ("Secure", "HttpOnly", "SameSite=Strict", "Path=/"):
        assert attribute in header
    cookie = {"Cookie": f"webhookd_console={ident}"}
    csrf = login.body["csrfToken"]

    assert (await api.get("/api/v1/app/acme", token="", headers=cookie)).status == 200
    info = await api.get("/console/session", token="", headers=cookie)
    assert info.body["csrfToken"] == csrf
    body = {"url": "https://acme.example.com/hook"}
    no_csrf = await api.post("/api/v1/app/acme/endpoint", body, token="", headers=cookie)
    assert (no_csrf.status, no_csrf.body["code"]) == (403, "insufficient_access")
    wrong = {**cookie, "X-CSRF-Token": "x" + csrf[1:]}
    assert (
        await api.post("/api/v1/app/acme/endpoint", body, token="", headers=wrong)
    ).status == 403
    right = {**cookie, "X-CSRF-Token": csrf}
    assert (
        await api.post("/api/v1/app/acme/endpoint", body, token="", headers=right)
    ).status == 201

    assert (await api.call("DELETE", "/console/session", token="", headers=cookie)).status == 403
    assert (await api.call("DELETE", "/console/session", token="", headers=right)).status == 204
    assert (await api.get("/api/v1/app/acme", token="", headers=cookie)).status == 401
    assert (await api.get("/console/session", token="", headers=cookie)).status == 401


async def _login(api: ApiUnderTest, token: str) -> tuple[dict[str, str], str]:
    """The Cookie header of a new console session, and its CSRF token."""
    login = await api.post("/console/session", {"token": token}, token="")
    assert login.status == 200, login.body
    return {"Cookie": f"webhookd_console={_session_cookie(login.headers)[0]}"}, login.body[
        "csrfToken"
    ]


async def test_a_revoked_or_expired_token_ends_its_console_sessions(
    api: ApiUnderTest, db_dsn: str
) -> None:
    from daemon.api import tokens

    for ending in ("revoke", "expire"):
        new = await tokens.create_token(api.store, "read")
        cookie, _csrf = await _login(api, new.token)
        assert (await api.get("/api/v1/app", token="", headers=cookie)).status == 200
        if ending == "revoke":
            await tokens.revoke_token(api.store, new.id)
        else:
            await _sql(db_dsn, "UPDATE webhookd.api_tokens SET expires_at = now() WHERE id = $1",
                       new.id)  # fmt: skip
        assert (await api.get("/api/v1/app", token="", headers=cookie)).status == 401
        assert (await api.get("/console/session", token="", headers=cookie)).status == 401


async def _sql(dsn: str, statement: str, *args: object) -> list[Any]:
    conn = await asyncpg.connect(dsn)
    try:
        return list(await conn.fetch(statement, *args))
    finally:
        await conn.close()


async def test_a_console_session_outlives_its_api_process_and_works_on_every_one(
    api: ApiUnderTest, db_dsn: str
) -> None:
    """Sessions are rows: a second API process on the same database accepts the cookie, a
    restarted one still does, and a logout on one ends the session on the others."""
    await make_app(api, "acme")
    token = await api.token("admin")
    cookie, csrf = await _login(api, token)
    body = {"url": "https://acme.example.com/hook"}
    async with running_api(db_dsn) as second:
        assert (await second.get("/api/v1/app/acme", token="", headers=cookie)).status == 200
        info = await second.get("/console/session", token="", headers=cookie)
        assert (info.status, info.body["csrfToken"]) == (200, csrf)
        write = {**cookie, "X-CSRF-Token": csrf}
        made = await second.post("/api/v1/app/acme/endpoint", body, token="", headers=write)
        assert made.status == 201
        assert (await second.post("/api/v1/app/acme/endpoint", body, token="",
                                  headers=cookie)).status == 403  # fmt: skip

        await api.server.stop()  # the process that made the session goes
        async with running_api(db_dsn, admin=token) as restarted:
            reply = await restarted.get("/api/v1/app/acme/endpoint", token="", headers=cookie)
            assert reply.status == 200 and [e["id"] for e in reply.body["data"]] == [
                made.body["id"]
            ]
            ended = await restarted.call("DELETE", "/console/session", token="", headers=write)
            assert ended.status == 204
            assert (await restarted.get("/api/v1/app", token="", headers=cookie)).status == 401
        assert (await second.get("/api/v1/app", token="", headers=cookie)).status == 401
        assert (await second.get("/console/session", token="", headers=cookie)).status == 401


async def test_the_session_table_keeps_neither_the_session_id_nor_the_token(
    api: ApiUnderTest, db_dsn: str
) -> None:
    import hashlib

    from daemon.api import tokens

    token = await api.token("read")
    cookie, csrf = await _login(api, token)
    ident = cookie["Cookie"].split("=", 1)[1]
    [row] = await _sql(db_dsn, "SELECT * FROM webhookd.console_sessions")
    assert bytes(row["id_hash"]) == hashlib.sha256(ident.encode()).digest()
    assert row["token_id"] == tokens.token_id(token)
    stored = repr(dict(row))
    for secret in (ident, token, csrf, ident.encode().hex(), csrf.encode().hex()):
        assert secret not in stored
    # Expired sessions are not accepted, and the next login deletes them.
    await _sql(db_dsn, "UPDATE webhookd.console_sessions SET expires_at = now() - interval '1s'")
    assert (await api.get("/api/v1/app", token="", headers=cookie)).status == 401
    await _login(api, token)
    rows = await _sql(db_dsn, "SELECT id_hash FROM webhookd.console_sessions")
    assert len(rows) == 1 and bytes(rows[0]["id_hash"]) != bytes(row["id_hash"])


async def test_pages_forbid_inline_script_and_frame_only_where_configured(
    api: ApiUnderTest,
) -> None:
    async with api.session.get(api.base_url + "/console") as response:
        html = await response.text()
        csp = response.headers["Content-Security-Policy"]
        assert response.headers["X-Frame-Options"] == "DENY"
        assert response.headers["Cache-Control"] == "no-store"
    assert "script-src 'self';" in csp and "unsafe" not in csp
    assert "frame-ancestors 'none'" in csp
    assert re.findall(r"<script[^>]*>", html) == [
        '<script src="/console/static/app.js" defer>'
    ]  # no inline script
    async with api.session.get(api.base_url + "/portal") as response:
        assert "frame-ancestors 'self'" in response.headers["Content-Security-Policy"]
        assert "X-Frame-Options" not in response.headers
    async with api.session.get(api.base_url + "/console/static/app.js") as response:
        assert response.content_type == "text/javascript"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
    for name in ("nope.js", "console.html", "..%2fpages.py", ".hidden.js"):
        async with api.session.get(f"{api.base_url}/console/static/{name}") as response:
            assert response.status == 404, name
    brand = await api.get("/portal/brand.json", token="")
    assert brand.body == {"name": "Webhooks", "logoUrl": None, "primaryColor": "#1d4ed8"}


def test_the_front_end_never_writes_html_from_data() -> None:
    source = (resources.files("daemon.console") / "static" / "app.js").read_text()
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in source, sink


async def test_revealing_a_secret_or_headers_is_logged_without_the_values(
    api: ApiUnderTest,
) -> None:
    await make_app(api, "acme")
    ep = await make_endpoint(
        api, "acme", "https://acme.example.com/hook", headers={"X-Tenant": "plain-value"}
    )
    with capture_logs() as logs:
        secret = (await api.get(f"/api/v1/app/acme/endpoint/{ep['id']}/secret")).body["key"]
        await api.get(f"/api/v1/app/acme/endpoint/{ep['id']}/headers")
    revealed = [e for e in logs if e["event"] == "api.endpoint_revealed"]
    assert [(e["what"], e["endpoint"]) for e in revealed] == [
        ("secret", ep["id"]), ("headers", ep["id"])
    ]  # fmt: skip
    assert all(e["token_id"].startswith("key_") for e in revealed)
    assert secret not in str(logs) and "plain-value" not in str(logs)


async def test_application_and_endpoint_lists_are_searched_and_paged(api: ApiUnderTest) -> None:
    for n in range(3):
        await make_app(api, f"shop-{n}", f"Shop {n}")
    await make_app(api, "bank", "Bank")
    for n in range(3):
        await make_endpoint(api, "bank", f"https://hooks.example.com/orders/{n}")
    await make_endpoint(api, "bank", "https://other.example.com/x", description="ORDERS too")
    await make_endpoint(api, "bank", "https://other.example.com/y")

    first = await api.get("/api/v1/app?search=SHOP&limit=2")
    assert [a["uid"] for a in first.body["data"]] == ["shop-0", "shop-1"]
    rest = await api.get(f"/api/v1/app?search=SHOP&limit=2&iterator={first.body['iterator']}")
    assert [a["uid"] for a in rest.body["data"]] == ["shop-2"] and rest.body["done"]
    assert (await api.get("/api/v1/app?search=%20")).body["data"][0]["uid"] == "shop-0"
    assert (await api.get("/api/v1/app?search=" + "x" * 201)).status == 422

    found = await api.get("/api/v1/app/bank/endpoint?search=orders")
    assert len(found.body["data"]) == 4  # three URLs, one description
    scoped = await api.token("read", app="bank")
    assert (await api.get("/api/v1/app?search=shop", token=scoped)).body["data"] == []


async def test_a_read_only_portal_link_gives_a_session_that_only_reads(api: ApiUnderTest) -> None:
    acme = await make_app(api, "acme")
    access = await api.post("/api/v1/auth/app-portal-access/acme", {"readOnly": True})
    session = await api.post(f"/api/v1/app/{acme['id']}/portal-session", token=access.body["token"])
    assert session.body["scope"] == "read"
    portal = session.body["token"]
    assert (await api.get("/api/v1/app/acme/endpoint", token=portal)).status == 200
    refused = await api.post(
        "/api/v1/app/acme/endpoint", {"url": "https://acme.example.com/x"}, token=portal
    )
    assert (refused.status, refused.body["code"]) == (403, "insufficient_access")
    full = await api.post("/api/v1/auth/app-portal-access/acme", {"readOnly": False})
    exchanged = await api.post(f"/api/v1/app/{acme['id']}/portal-session", token=full.body["token"])
    assert exchanged.body["scope"] == "admin"
