"""webhookd's own routes: dead letters of an application or endpoint, requeued by message, by
time window or all; recover (Svix's) does the same for one endpoint; the failing streak shows
in the endpoint's state."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from tests.api_support import ApiUnderTest, make_app, make_endpoint
from tests.integration.conftest import DaemonFactory, Receiver, wait_until


async def _dead(api: ApiUnderTest, path: str, count: int) -> list[dict[str, Any]]:
    async def enough() -> bool:
        return len((await api.get(path)).body["data"]) >= count

    await wait_until(enough, 10, f"{count} dead letters at {path}")
    data: list[dict[str, Any]] = (await api.get(path)).body["data"]
    return data


async def test_dead_letters_are_listed_and_requeued_by_message_window_or_all(
    api: ApiUnderTest, receiver: Receiver, run_daemon: DaemonFactory
) -> None:
    healthy = {"on": False}
    receiver.on("/down", lambda _h, _n: web.Response(status=200 if healthy["on"] else 503))
    await make_app(api, "acme")
    down = await make_endpoint(api, "acme", receiver.url("/down"), uid="down", retryScheduleMs=[])
    other = await make_endpoint(api, "acme", receiver.url("/down"), retryScheduleMs=[])
    async with run_daemon(breaker={"enabled": False}):
        sent = []
        for n in range(3):
            reply = await api.post("/api/v1/app/acme/msg", {"eventType": "e", "payload": {"n": n}})
            sent.append(reply.body["id"])
        dead = await _dead(api, "/api/v1/app/acme/dead-letter", 6)
        assert {d["endpointId"] for d in dead} == {down["id"], other["id"]}
        assert {d["msgId"] for d in dead} == set(sent)
        assert all(d["lastStatusCode"] == 503 and d["attempts"] == 1 for d in dead)
        of_one = await api.get("/api/v1/app/acme/endpoint/down/dead-letter?limit=2")
        assert len(of_one.body["data"]) == 2 and of_one.body["done"] is False
        rest_of_one = await api.get(
            f"/api/v1/app/acme/endpoint/down/dead-letter?limit=2&iterator={of_one.body['iterator']}"
        )
        back = await api.get(
            "/api/v1/app/acme/endpoint/down/dead-letter?limit=2"
            f"&iterator={rest_of_one.body['prevIterator']}"
        )
        assert back.body["data"] == of_one.body["data"]
        state = await api.get("/api/v1/app/acme/endpoint/down/state")
        assert state.body["consecutiveFailures"] >= 3 and state.body["failingSince"] is not None

        healthy["on"] = True
        nothing = await api.post("/api/v1/app/acme/dead-letter/requeue", {})
        assert nothing.status == 422
        one = await api.post(
            "/api/v1/app/acme/dead-letter/requeue", {"msgIds": [sent[0]], "endpointId": "down"}
        )
        assert one.body == {"requeued": 1}
        await _dead(api, "/api/v1/app/acme/dead-letter", 0)
        rest = await api.post("/api/v1/app/acme/dead-letter/requeue", {"all": True})
        assert rest.body == {"requeued": 5}

        async def delivered() -> bool:
            stats = await api.get("/api/v1/app/acme/endpoint/down/stats")
            return stats.body["success"] == 3

        await wait_until(delivered, 10, "every dead letter delivered")
        stats = await api.get("/api/v1/app/acme/endpoint/down/stats")
        assert stats.body == {"success": 3, "pending": 0, "sending": 0, "fail": 0, "canceled": 0}
        assert (await api.get("/api/v1/app/acme/dead-letter")).body["data"] == []
    unknown = await api.post("/api/v1/app/acme/dead-letter/requeue", {"msgIds": ["nope"]})
    assert unknown.status == 404


async def test_recover_requeues_the_endpoints_dead_letters_of_a_window(
    api: ApiUnderTest, receiver: Receiver, run_daemon: DaemonFactory
) -> None:
    healthy = {"on": False}
    receiver.on("/r", lambda _h, _n: web.Response(status=200 if healthy["on"] else 500))
    await make_app(api, "acme")
    made = await make_endpoint(api, "acme", receiver.url("/r"), uid="r", retryScheduleMs=[])
    async with run_daemon(breaker={"enabled": False}):
        await api.post("/api/v1/app/acme/msg", {"eventType": "e", "payload": {}})
        [dead] = await _dead(api, "/api/v1/app/acme/endpoint/r/dead-letter", 1)
        later = await api.post(
            "/api/v1/app/acme/endpoint/r/recover", {"since": "2999-01-01T00:00:00Z"}
        )
        assert later.status == 202 and later.body["data"] == {"messagesSent": 0}
        healthy["on"] = True
        recovered = await api.post(
            "/api/v1/app/acme/endpoint/r/recover", {"since": "2000-01-01T00:00:00Z"}
        )
        assert recovered.status == 202
        assert recovered.body["task"] == "endpoint.recover"
        assert recovered.body["status"] == "finished"
        assert recovered.body["data"] == {"messagesSent": 1}
        await receiver.wait_hits(2, "/r")
    assert dead["endpointId"] == made["id"]
    bad = await api.post("/api/v1/app/acme/endpoint/r/recover", {})
    assert bad.status == 422 and bad.body["detail"][0]["loc"] == ["body", "since"]
