"""/api/v1/app/{app}/msg and attempts: a message is an outbox insert the daemon delivers; ids,
idempotency, filters, pages, attempts by message and by endpoint, resend."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
import pytest

from tests.api_support import ApiUnderTest, make_app, make_endpoint
from tests.integration.conftest import DaemonFactory, Receiver, wait_until


async def _sent(api: ApiUnderTest, app: str, body: dict[str, Any], **kw: Any) -> dict[str, Any]:
    reply = await api.post(f"/api/v1/app/{app}/msg", body, **kw)
    assert reply.status == 202, reply.body
    out: dict[str, Any] = reply.body
    return out


async def test_a_message_fans_out_to_subscribed_endpoints_and_is_delivered(
    api: ApiUnderTest, receiver: Receiver, run_daemon: DaemonFactory
) -> None:
    await make_app(api, "acme")
    await make_endpoint(api, "acme", receiver.url("/paid"), eventTypes=["invoice.paid"])
    await make_endpoint(api, "acme", receiver.url("/all"))
    await make_endpoint(api, "acme", receiver.url("/other"), eventTypes=["user.created"])
    payload = {"invoice": "in_1", "amount": 12345678901234567890}
    async with run_daemon():
        msg = await _sent(api, "acme", {"eventType": "invoice.paid", "payload": payload})
        await receiver.wait_hits(2)
    assert msg["id"].startswith("msg_") and msg["eventId"] is None
    assert msg["payload"] == payload and msg["eventType"] == "invoice.paid"
    assert sorted(h.path for h in receiver.hits) == ["/all", "/paid"]
    assert {h.headers["webhook-id"] for h in receiver.hits} == {msg["id"]}
    assert b"12345678901234567890" in receiver.hits[0].body


async def test_the_same_idempotency_key_or_event_id_returns_the_first_message(
    api: ApiUnderTest, db_dsn: str
) -> None:
    await make_app(api, "acme")
    await make_app(api, "other")
    first = await _sent(api, "acme", {"eventType": "e", "payload": {"n": 1}},
                        headers={"idempotency-key": "order-1"})  # fmt: skip
    again = await _sent(api, "acme", {"eventType": "e", "payload": {"n": 2}},
                        headers={"idempotency-key": "order-1"})  # fmt: skip
    assert again == first and first["payload"] == {"n": 1}
    elsewhere = await _sent(api, "other", {"eventType": "e", "payload": {}},
                            headers={"idempotency-key": "order-1"})  # fmt: skip
    assert elsewhere["id"] == first["id"]  # the same key in another tenant is another message
    by_event = await _sent(api, "acme", {"eventType": "e", "payload": {}, "eventId": "evt-9"})
    assert by_event["id"] == by_event["eventId"] == "evt-9"
    twice = await _sent(api, "acme", {"eventType": "e", "payload": {"x": 1}, "eventId": "evt-9"})
    assert twice == by_event
    unkeyed = [await _sent(api, "acme", {"eventType": "e", "payload": {}}) for _ in range(2)]
    assert unkeyed[0]["id"] != unkeyed[1]["id"]
    conn = await asyncpg.connect(db_dsn)
    try:
        count = await conn.fetchval("SELECT count(*) FROM webhookd.outbox")
    finally:
        await conn.close()
    assert count == 5


async def test_concurrent_creates_with_one_key_make_one_message(api: ApiUnderTest) -> None:
    await make_app(api, "acme")
    replies = await asyncio.gather(
        *(api.post("/api/v1/app/acme/msg", {"eventType": "e", "payload": {"n": n}},
                   headers={"idempotency-key": "same"}) for n in range(10))
    )  # fmt: skip
    assert {r.status for r in replies} == {202}
    assert len({r.body["id"] for r in replies}) == 1
    listed = await api.get("/api/v1/app/acme/msg")
    assert len(listed.body["data"]) == 1


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"payload": {}}, ["body", "eventType"]),
        ({"eventType": "bad type", "payload": {}}, ["body", "eventType"]),
        ({"eventType": "e"}, ["body", "payload"]),
        ({"eventType": "e", "payload": [1]}, ["body", "payload"]),
        ({"eventType": "e", "payload": {}, "eventId": "a b"}, ["body", "eventId"]),
        ({"eventType": "e", "payload": {}, "deliverAt": "soon"}, ["body", "deliverAt"]),
        ({"eventType": "e", "payload": {}, "transformationsParams": {"rawPayload": "x"}},
         ["body", "transformationsParams"]),
    ],
)  # fmt: skip
async def test_bad_messages_are_refused_naming_the_field(
    api: ApiUnderTest, body: dict[str, Any], loc: list[str]
) -> None:
    await make_app(api, "acme")
    reply = await api.post("/api/v1/app/acme/msg", body)
    assert reply.status == 422 and reply.body["detail"][0]["loc"] == loc, reply.body


async def test_svix_fields_without_effect_are_accepted_and_payload_size_is_capped(
    api: ApiUnderTest,
) -> None:
    await make_app(api, "acme")
    extra = {"channels": ["c1"], "tags": ["t"], "payloadRetentionPeriod": 30, "unknown": 1}
    made = await _sent(api, "acme", {"eventType": "e", "payload": {}, **extra})
    assert made["channels"] is None and made["tags"] is None
    limit = api.server.config.delivery.max_payload_bytes
    big = await api.post("/api/v1/app/acme/msg", {"eventType": "e", "payload": {"x": "y" * limit}})
    assert (big.status, big.body["code"]) == (413, "payload_too_large")
    listed = await api.get("/api/v1/app/acme/msg?channel=c1")
    assert listed.status == 422 and listed.body["detail"][0]["loc"] == ["query", "channel"]


async def test_create_with_app_makes_the_application_in_the_same_transaction(
    api: ApiUnderTest,
) -> None:
    body = {"eventType": "e", "payload": {}, "application": {"name": "New", "uid": "newco"}}
    made = await _sent(api, "newco", body)
    app = await api.get("/api/v1/app/newco")
    assert app.status == 200 and app.body["name"] == "New"
    assert (await api.get(f"/api/v1/app/newco/msg/{made['id']}")).status == 200
    mismatch = await api.post("/api/v1/app/x1/msg", {**body, "application": {"name": "n"}})
    assert mismatch.status == 422
    assert mismatch.body["detail"][0]["loc"] == ["body", "application", "uid"]
    assert (await api.get("/api/v1/app/x1")).status == 404
    no_app = await api.post("/api/v1/app/x2/msg", {"eventType": "e", "payload": {}})
    assert no_app.status == 404


async def test_list_filters_pages_and_content(api: ApiUnderTest) -> None:
    await make_app(api, "acme")
    made = [
        await _sent(api, "acme", {"eventType": "a.b" if n % 2 else "c.d", "payload": {"n": n}})
        for n in range(7)
    ]
    seen, iterator, done = [], "", False
    while not done:
        reply = await api.get(f"/api/v1/app/acme/msg?limit=3&iterator={iterator}")
        seen += [m["id"] for m in reply.body["data"]]
        iterator, done = reply.body["iterator"], reply.body["done"]
    assert seen == [m["id"] for m in reversed(made)]
    page_one = await api.get("/api/v1/app/acme/msg?limit=3")
    page_two = await api.get(f"/api/v1/app/acme/msg?limit=3&iterator={page_one.body['iterator']}")
    back = await api.get(f"/api/v1/app/acme/msg?limit=3&iterator={page_two.body['prevIterator']}")
    assert back.body["data"] == page_one.body["data"] and back.body["done"] is True
    only = await api.get("/api/v1/app/acme/msg?event_types=a.b")
    assert [m["payload"]["n"] for m in only.body["data"]] == [5, 3, 1]
    both = await api.get("/api/v1/app/acme/msg?event_types=a.b&event_types=c.d&with_content=false")
    assert len(both.body["data"]) == 7 and both.body["data"][0]["payload"] == {}
    middle = made[3]["timestamp"]
    newer = await api.get(f"/api/v1/app/acme/msg?after={middle.replace('+', '%2B')}")
    assert [m["payload"]["n"] for m in newer.body["data"]] == [6, 5, 4]
    one = await api.get(f"/api/v1/app/acme/msg/{made[2]['id']}?with_content=false")
    assert one.body["payload"] == {} and one.body["id"] == made[2]["id"]


async def test_attempts_by_message_and_endpoint_and_resend(
    api: ApiUnderTest, receiver: Receiver, run_daemon: DaemonFactory
) -> None:
    from aiohttp import web

    receiver.on("/flaky", lambda _hit, n: web.Response(status=500 if n == 1 else 200))
    await make_app(api, "acme")
    flaky = await make_endpoint(
        api, "acme", receiver.url("/flaky"), uid="flaky", retryScheduleMs=[100]
    )
    steady = await make_endpoint(api, "acme", receiver.url("/steady"))
    async with run_daemon():
        msg = await _sent(api, "acme", {"eventType": "e", "payload": {"n": 1}})
        await receiver.wait_hits(3)

        async def recorded() -> bool:
            reply = await api.get(f"/api/v1/app/acme/attempt/msg/{msg['id']}")
            return len(reply.body["data"]) == 3

        await wait_until(recorded, 10, "three attempts recorded")
        by_msg = (await api.get(f"/api/v1/app/acme/attempt/msg/{msg['id']}")).body["data"]
        seen = [(a["endpointId"], a["responseStatusCode"], a["status"]) for a in by_msg]
        # newest first: the retry, then the two first attempts (started together)
        assert seen[0] == (flaky["id"], 200, 0)
        assert sorted(seen[1:]) == sorted([(steady["id"], 200, 0), (flaky["id"], 500, 2)])
        assert {a["msgId"] for a in by_msg} == {msg["id"]}
        failed_only = await api.get(f"/api/v1/app/acme/attempt/msg/{msg['id']}?status=2")
        assert [a["responseStatusCode"] for a in failed_only.body["data"]] == [500]
        one = await api.get(f"/api/v1/app/acme/attempt/msg/{msg['id']}?endpoint_id={steady['id']}")
        assert [a["endpointId"] for a in one.body["data"]] == [steady["id"]]
        by_endpoint = await api.get("/api/v1/app/acme/attempt/endpoint/flaky")
        assert [a["responseStatusCode"] for a in by_endpoint.body["data"]] == [200, 500]
        assert by_endpoint.body["data"][0]["url"] == receiver.url("/flaky")
        assert by_endpoint.body["data"][1]["statusText"] == "fail"

        resent = await api.post(f"/api/v1/app/acme/msg/{msg['id']}/endpoint/flaky/resend")
        assert (resent.status, resent.body) == (202, {})
        await receiver.wait_hits(4)

        async def four() -> bool:
            reply = await api.get("/api/v1/app/acme/attempt/endpoint/flaky")
            return len(reply.body["data"]) == 3

        await wait_until(four, 10, "the resent attempt recorded")
        latest = (await api.get("/api/v1/app/acme/attempt/endpoint/flaky?limit=1")).body
        assert latest["data"][0]["triggerType"] == 1 and latest["done"] is False
        older = await api.get(
            f"/api/v1/app/acme/attempt/endpoint/flaky?limit=1&iterator={latest['iterator']}"
        )
        newer = await api.get(
            f"/api/v1/app/acme/attempt/endpoint/flaky?limit=1&iterator={older.body['prevIterator']}"
        )
        assert newer.body["data"] == latest["data"]
        by_msg_back = await api.get(
            f"/api/v1/app/acme/attempt/msg/{msg['id']}?limit=5&iterator={older.body['prevIterator']}"
        )
        assert by_msg_back.status == 200
    missing = await api.post(f"/api/v1/app/acme/msg/{msg['id']}/endpoint/nope/resend")
    assert missing.status == 404
