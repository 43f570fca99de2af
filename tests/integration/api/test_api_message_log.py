"""The message log (daemon/api/message_log.py): messages filtered by status, endpoint, event type
and time together, paged both ways, of one application or of every one; statuses from the
deliveries as docs/api.md states the rule; bad filters refused in one line; a token of one
application reaches nothing of another's through the new filters.

Most deliveries are put in the state a test needs with an UPDATE, as the daemon's outcome
writes would leave them (what is under test is how the log reads them); one test has a real
daemon deliver and dead-letter messages."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

import asyncpg
import pytest
from aiohttp import web
from svix.api import MessageListOptions, SvixAsync, SvixOptions

from daemon.api import pages
from tests.api_support import ApiUnderTest, make_app, make_endpoint
from tests.integration.conftest import DaemonFactory, Receiver, wait_until


async def _send(api: ApiUnderTest, app: str, event_type: str, msg_id: str) -> dict[str, Any]:
    reply = await api.post(
        f"/api/v1/app/{app}/msg", {"eventType": event_type, "payload": {}, "eventId": msg_id}
    )
    assert reply.status == 202, reply.body
    body: dict[str, Any] = reply.body
    return body


async def _set(db: asyncpg.Connection, msg_id: str, endpoint_id: str, status: str) -> None:
    done = await db.execute(
        "UPDATE webhookd.deliveries d SET status = $3 FROM webhookd.outbox o"
        " WHERE o.id = d.message_id AND o.msg_id = $1 AND d.endpoint_id = $2",
        msg_id, endpoint_id, status,
    )  # fmt: skip
    assert done == "UPDATE 1", (msg_id, endpoint_id)


async def _ids(api: ApiUnderTest, path: str, **kw: Any) -> list[str]:
    reply = await api.get(path, **kw)
    assert reply.status == 200, reply.body
    assert reply.body["done"] is True  # everything fits one page here
    return [m["id"] for m in reply.body["data"]]


async def _every_page(api: ApiUnderTest, path: str, **kw: Any) -> list[dict[str, Any]]:
    """Every page forwards from the first, and (as a check) the same read back from the end."""
    pages_seen: list[dict[str, Any]] = []
    iterator = ""
    while True:
        reply = await api.get(f"{path}&iterator={iterator}", **kw)
        assert reply.status == 200, reply.body
        pages_seen.append(reply.body)
        if reply.body["done"]:
            break
        iterator = reply.body["iterator"]
    return pages_seen


async def _two_endpoint_app(api: ApiUnderTest, app: str) -> tuple[str, str]:
    """An application whose endpoint `a` takes event types a and b, `b` only a: a message of
    type a has two deliveries, of b one, of c none."""
    await make_app(api, app)
    first = await make_endpoint(api, app, f"https://{app}.example.com/a", uid="a",
                                filterTypes=["a", "b"])  # fmt: skip
    second = await make_endpoint(api, app, f"https://{app}.example.com/b", uid="b",
                                 filterTypes=["a"])  # fmt: skip
    return first["id"], second["id"]


async def test_each_status_lists_the_messages_whose_deliveries_are_in_it(
    api: ApiUnderTest, db: asyncpg.Connection
) -> None:
    ep_a, ep_b = await _two_endpoint_app(api, "acme")
    for msg_id in ("ok", "waits", "held", "sending", "failed", "unrouted", "retried"):
        await _send(api, "acme", "c" if msg_id == "unrouted" else "a", msg_id)
    for msg_id in ("ok", "waits", "held", "sending", "failed", "retried"):
        await _set(db, msg_id, ep_a, "delivered")
    await _set(db, "ok", ep_b, "delivered")
    await _set(db, "held", ep_b, "held")  # behind an earlier message of its ordering key
    await _set(db, "sending", ep_b, "delivering")
    await _set(db, "failed", ep_a, "failed")  # a dead letter outweighs one still in flight
    await _set(db, "failed", ep_b, "delivering")
    await _set(db, "retried", ep_b, "pending")  # "waits" keeps its first pending too

    log = "/api/v1/app/acme/msg?with_content=false"
    assert await _ids(api, log + "&status=0") == ["unrouted", "ok"]
    assert await _ids(api, log + "&status=1") == ["retried", "held", "waits"]
    assert await _ids(api, log + "&status=2") == ["failed"]
    assert await _ids(api, log + "&status=3") == ["sending"]
    assert await _ids(api, log + "&status=4") == []  # canceled: no webhookd message is

    every = (await api.get(log)).body["data"]
    assert [(m["id"], m["status"], m["statusText"]) for m in every] == [
        ("retried", 1, "pending"), ("unrouted", 0, "success"), ("failed", 2, "fail"),
        ("sending", 3, "sending"), ("held", 1, "pending"), ("waits", 1, "pending"),
        ("ok", 0, "success"),
    ]  # fmt: skip
    assert "appId" not in every[0]  # only the log of every application names it

    # With an endpoint, a message's status is that delivery's, and only messages with one
    # are listed (of type a: not "unrouted").
    assert await _ids(api, log + f"&endpoint_id={ep_b}&status=0") == ["ok"]
    assert await _ids(api, log + "&endpoint_id=b&status=1") == ["retried", "held", "waits"]
    assert await _ids(api, log + "&endpoint_id=b&status=3") == ["failed", "sending"]
    assert await _ids(api, log + "&endpoint_id=a&status=0") == [
        "retried", "sending", "held", "waits", "ok"
    ]  # fmt: skip
    assert await _ids(api, log + "&endpoint_id=a&status=2") == ["failed"]
    assert await _ids(api, log + "&endpoint_id=a") == [
        "retried", "failed", "sending", "held", "waits", "ok"
    ]  # fmt: skip


async def test_a_daemon_s_outcomes_show_as_success_and_fail(
    api: ApiUnderTest, receiver: Receiver, run_daemon: DaemonFactory
) -> None:
    receiver.on("/down", lambda _h, _n: web.Response(status=503))
    await make_app(api, "acme")
    await make_endpoint(api, "acme", receiver.url("/up"), filterTypes=["up", "both"])
    await make_endpoint(api, "acme", receiver.url("/down"), filterTypes=["down", "both"],
                        retryScheduleMs=[])  # fmt: skip
    async with run_daemon(breaker={"enabled": False}, health={"enabled": False}):
        for event_type in ("up", "down", "both"):
            await _send(api, "acme", event_type, f"m-{event_type}")

        async def settled() -> bool:
            reply = await api.get("/api/v1/app/acme/msg?status=1")
            sending = await api.get("/api/v1/app/acme/msg?status=3")
            return reply.body["data"] == [] and sending.body["data"] == []

        await wait_until(settled, 10, "every delivery finished")
    assert await _ids(api, "/api/v1/app/acme/msg?status=0") == ["m-up"]
    assert await _ids(api, "/api/v1/app/acme/msg?status=2") == ["m-both", "m-down"]


async def test_filters_combine_and_page_both_ways(
    api: ApiUnderTest, db: asyncpg.Connection
) -> None:
    ep_a, _ep_b = await _two_endpoint_app(api, "acme")
    made = []
    for n in range(14):
        msg = await _send(api, "acme", "a" if n % 2 else "b", f"m{n:02}")
        made.append(msg)
        await _set(db, msg["id"], ep_a, "failed" if n % 3 == 0 else "delivered")
    since = quote(made[2]["timestamp"])
    # failed (n % 3 == 0), of type a (odd), after m02: m03, m09
    log = f"/api/v1/app/acme/msg?status=2&event_types=a&after={since}&with_content=false"
    assert await _ids(api, log) == ["m09", "m03"]
    # to endpoint a, status 2 among both types, after m02: m12, m09, m06, m03, two a page
    log = f"/api/v1/app/acme/msg?status=2&endpoint_id=a&after={since}&limit=2"
    forward = await _every_page(api, log)
    assert [[m["id"] for m in p["data"]] for p in forward] == [["m12", "m09"], ["m06", "m03"]]
    back = await api.get(f"{log}&iterator={forward[-1]['prevIterator']}")
    assert [m["id"] for m in back.body["data"]] == ["m12", "m09"] and back.body["done"]
    # succeeded, type b, before m11: m10, m08, m04, m02 (m00 and m06 failed)
    until = quote(made[11]["timestamp"])
    log = f"/api/v1/app/acme/msg?status=0&event_types=b&before={until}&limit=3"
    forward = await _every_page(api, log)
    assert [[m["id"] for m in p["data"]] for p in forward] == [["m10", "m08", "m04"], ["m02"]]
    back = await api.get(f"{log}&iterator={forward[-1]['prevIterator']}")
    assert [m["id"] for m in back.body["data"]] == ["m10", "m08", "m04"]


@pytest.mark.parametrize("status", ["0", "2"])
async def test_a_page_reads_a_bounded_number_of_messages_and_goes_on_from_there(
    api: ApiUnderTest, db: asyncpg.Connection, monkeypatch: pytest.MonkeyPatch, status: str
) -> None:
    """With few matches among many messages (the rare ones succeeded, or failed), a page is
    short but not done; following the iterators finds every match, in order, and reading back
    finds them again. Status 0 walks the messages, status 2 the failed deliveries."""
    ep_a, _ep_b = await _two_endpoint_app(api, "acme")
    for n in range(30):
        await _send(api, "acme", "b", f"m{n:02}")
        rare = n in (2, 3, 17)
        await _set(db, f"m{n:02}", ep_a, "failed" if rare == (status == "2") else "delivered")
    monkeypatch.setattr(pages, "MAX_SCAN", 4)
    log = f"/api/v1/app/acme/msg?status={status}&limit=2&with_content=false"
    forward = await _every_page(api, log)
    found = [m["id"] for p in forward for m in p["data"]]
    assert found == ["m17", "m03", "m02"]
    if status == "0":  # 4 messages read a page: some pages find none
        assert len(forward) > 3 and any(p["data"] == [] for p in forward)
    else:  # failed deliveries are walked, not messages: the pages are full
        assert [len(p["data"]) for p in forward] == [2, 1]
    for page in forward:
        assert len(page["data"]) <= 2
    # Back from the last page with data, the pages before hold the same, newest first.
    last = next(p for p in reversed(forward) if p["data"])
    seen: list[str] = [m["id"] for m in last["data"]]
    iterator = last["prevIterator"]
    while iterator is not None:
        reply = (await api.get(f"{log}&iterator={iterator}")).body
        seen = [m["id"] for m in reply["data"]] + seen
        iterator = None if reply["done"] else reply["prevIterator"]
    assert seen[-len(found) :] == found and set(seen) == set(found)


async def test_every_application_s_log_is_for_tokens_of_every_application(
    api: ApiUnderTest, db: asyncpg.Connection
) -> None:
    acme_a, _ = await _two_endpoint_app(api, "acme")
    globex_a, _ = await _two_endpoint_app(api, "globex")
    apps = {a["uid"]: a["id"] for a in (await api.get("/api/v1/app")).body["data"]}
    await _send(api, "acme", "b", "acme-1")
    await _send(api, "globex", "b", "globex-1")
    await _send(api, "acme", "a", "acme-2")
    await _set(db, "globex-1", globex_a, "failed")
    await _set(db, "acme-1", acme_a, "delivered")

    every = "/api/v1/webhookd/msg?with_content=false"
    listed = (await api.get(every)).body["data"]
    assert [(m["id"], m["appId"], m["status"]) for m in listed] == [
        ("acme-2", apps["acme"], 1), ("globex-1", apps["globex"], 2), ("acme-1", apps["acme"], 0),
    ]  # fmt: skip
    reader = await api.token("read")
    assert await _ids(api, every + "&status=2", token=reader) == ["globex-1"]
    assert await _ids(api, every + "&status=1&event_types=a") == ["acme-2"]
    assert await _ids(api, every + f"&endpoint_id={globex_a}") == ["globex-1"]
    assert await _ids(api, every + f"&endpoint_id={acme_a}&status=0") == ["acme-1"]
    paged = await _every_page(api, every + "&limit=1")
    assert [p["data"][0]["id"] for p in paged] == ["acme-2", "globex-1", "acme-1"]

    # Tokens of one application, API or portal, are refused here whatever they ask.
    scoped = await api.token("admin", app="acme")
    access = await api.post("/api/v1/auth/app-portal-access/acme", {})
    portal = await api.post(f"/api/v1/app/{apps['acme']}/portal-session",
                            token=access.body["token"])  # fmt: skip
    for token in (scoped, await api.token("read", app="acme"), portal.body["token"]):
        for query in ("", "?status=2", f"?endpoint_id={globex_a}"):
            refused = await api.get("/api/v1/webhookd/msg" + query, token=token)
            assert (refused.status, refused.body["code"]) == (403, "insufficient_access")


async def test_a_token_of_one_application_reads_nothing_of_another_through_the_filters(
    api: ApiUnderTest, db: asyncpg.Connection
) -> None:
    _acme_a, _ = await _two_endpoint_app(api, "acme")
    globex_a, _ = await _two_endpoint_app(api, "globex")
    globex = (await api.get("/api/v1/app/globex")).body
    await _send(api, "acme", "b", "acme-1")
    await _send(api, "globex", "b", "globex-1")
    await _set(db, "globex-1", globex_a, "failed")
    access = await api.post("/api/v1/auth/app-portal-access/acme", {})
    acme_id = (await api.get("/api/v1/app/acme")).body["id"]
    portal = (await api.post(f"/api/v1/app/{acme_id}/portal-session",
                             token=access.body["token"])).body["token"]  # fmt: skip
    scoped = await api.token("read", app="acme")
    for token in (portal, scoped):
        own = "/api/v1/app/acme/msg?with_content=false"
        for status in ("0", "1", "2", "3"):
            assert "globex-1" not in await _ids(api, f"{own}&status={status}", token=token)
        # another application's endpoint, by id: not one of this application's
        for ref in (globex_a, "a"):
            reply = await api.get(f"{own}&endpoint_id={ref}&status=2", token=token)
            if ref == "a":
                assert reply.status == 200 and reply.body["data"] == []
            else:
                assert reply.status == 422 and reply.body["detail"][0]["loc"] == [
                    "query", "endpoint_id"
                ]  # fmt: skip
        for app in ("globex", globex["id"]):
            other = await api.get(f"/api/v1/app/{app}/msg?status=2", token=token)
            assert other.status == 404


@pytest.mark.parametrize(
    ("query", "loc", "msg"),
    [
        ("status=9", ["query", "status"], "must be one of 0, 1, 2, 3, 4"),
        ("status=abc", ["query", "status"], "must be one of 0, 1, 2, 3, 4"),
        ("status=", ["query", "status"], "must be one of 0, 1, 2, 3, 4"),
        ("endpoint_id=nope", ["query", "endpoint_id"], "no such endpoint"),
        ("event_types=a%20b", ["query", "event_types"], "each must match"),
        ("after=yesterday", ["query", "after"], "must be an ISO 8601 date-time"),
        ("iterator=t1_x", ["query", "iterator"], "not an iterator returned by this list"),
    ],
)
@pytest.mark.parametrize("log", ["/api/v1/app/acme/msg", "/api/v1/webhookd/msg"])
async def test_bad_filters_are_refused_in_one_line(
    api: ApiUnderTest, log: str, query: str, loc: list[str], msg: str
) -> None:
    await _two_endpoint_app(api, "acme")
    reply = await api.get(f"{log}?{query}")
    assert reply.status == 422, reply.body
    [problem] = reply.body["detail"]
    assert problem["loc"] == loc and problem["msg"].startswith(msg), problem


async def test_the_svix_sdk_reads_the_log_with_its_status_fields(
    api: ApiUnderTest, db: asyncpg.Connection
) -> None:
    ep_a, _ = await _two_endpoint_app(api, "acme")
    await _send(api, "acme", "b", "one")
    await _set(db, "one", ep_a, "failed")
    client = SvixAsync(api.admin, SvixOptions(server_url=api.base_url))
    try:
        listed = await client.message.list("acme", MessageListOptions(event_types=["b"]))
    finally:
        await client._httpx_client.aclose()
    assert [m.id for m in listed.data] == ["one"] and listed.done
