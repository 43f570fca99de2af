"""/api/v1/app/{app}/endpoint: endpoints as Svix shapes them, checked as `webhookd endpoint add |
update` checks them, in both SDK spellings; secrets, headers, figures, state."""

from __future__ import annotations

import time
from typing import Any

import asyncpg
import orjson
import pytest

from daemon.signing import generate_signing_key, public_key
from tests.api_support import ApiUnderTest, make_app, make_endpoint, running_api

SECRET = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


async def _row(dsn: str, endpoint_id: str) -> Any:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchrow("SELECT * FROM webhookd.endpoints WHERE id = $1", endpoint_id)
    finally:
        await conn.close()


async def test_create_accepts_both_sdk_spellings_and_webhookd_settings(
    api: ApiUnderTest, db_dsn: str
) -> None:
    await make_app(api, "acme")
    current = await make_endpoint(
        api, "acme", "https://example.com/a", eventTypes=["invoice.paid"], throttleRate=5,
        secret=SECRET, headers={"X-Team": "billing"}, metadata={"k": "v"}, uid="billing",
        description="Billing", burst=10, maxInFlight=3, timeoutMs=1500,
        retryScheduleMs=[1000, 5000],
    )  # fmt: skip
    older = await make_endpoint(
        api, "acme", "https://example.com/b", filterTypes=["a.b", "c.d"], rateLimit=2
    )
    assert current["eventTypes"] == current["filterTypes"] == ["invoice.paid"]
    assert current["throttleRate"] == current["rateLimit"] == 5
    assert (current["uid"], current["description"], current["metadata"]) == (
        "billing", "Billing", {"k": "v"},
    )  # fmt: skip
    assert (current["burst"], current["maxInFlight"], current["timeoutMs"]) == (10, 3, 1500)
    assert older["eventTypes"] == ["a.b", "c.d"] and older["throttleRate"] == 2
    row = await _row(db_dsn, current["id"])
    assert row["tenant_id"] == "acme" and row["secret"] == SECRET
    assert row["rate_per_s"] == 5.0 and row["retry_schedule_ms"] == [1000, 5000]
    assert orjson.loads(row["headers"]) == [["X-Team", "billing"]]
    assert (await _row(db_dsn, older["id"]))["event_types"] == ["a.b", "c.d"]


@pytest.mark.parametrize(
    ("fields", "loc"),
    [
        ({"url": "ftp://example.com"}, ["body", "url"]),
        ({"url": "https://example.com", "headers": {"Content-Type": "x"}}, ["body", "headers"]),
        ({"url": "https://example.com", "headers": {"Bad Name": "x"}}, ["body", "headers"]),
        ({"url": "https://example.com", "secret": "not base64!"}, ["body", "secret"]),
        ({"url": "https://example.com", "burst": 5}, ["body", "burst"]),
        ({"url": "https://example.com", "throttleRate": 0}, ["body", "throttleRate"]),
        ({"url": "https://example.com", "eventTypes": []}, ["body", "eventTypes"]),
        ({"url": "https://example.com", "filterTypes": ["no spaces"]},
         ["body", "filterTypes", "0"]),
        ({"url": "https://example.com", "channels": ["project-1"]}, ["body", "channels"]),
        ({"url": "https://example.com", "timeoutMs": 600_001}, ["body", "timeoutMs"]),
        ({"url": "https://example.com", "signatureScheme": "rsa"}, ["body", "signatureScheme"]),
        ({"url": "https://example.com", "signatureScheme": "hmac-sha256-hex"},
         ["body", "signatureScheme"]),
        ({"description": "no url"}, ["body", "url"]),
    ],
)  # fmt: skip
async def test_bad_endpoints_are_refused_naming_the_field(
    api: ApiUnderTest, fields: dict[str, Any], loc: list[str]
) -> None:
    await make_app(api, "acme")
    reply = await api.post("/api/v1/app/acme/endpoint", fields)
    assert reply.status == 422, reply.body
    assert reply.body["detail"][0]["loc"] == loc, reply.body
    assert (await api.get("/api/v1/app/acme/endpoint")).body["data"] == []


async def test_the_destination_policy_of_the_configuration_applies(db_dsn: str) -> None:
    async with running_api(db_dsn, delivery={"allow_insecure_http": False}) as strict:
        await make_app(strict, "acme")
        reply = await strict.post("/api/v1/app/acme/endpoint", {"url": "http://example.com/h"})
    assert reply.status == 422
    [problem] = reply.body["detail"]
    assert problem["loc"] == ["body", "url"] and "allow_insecure_http" in problem["msg"]


async def test_patch_changes_what_is_given_and_put_replaces_everything(
    api: ApiUnderTest,
) -> None:
    await make_app(api, "acme")
    made = await make_endpoint(
        api, "acme", "https://example.com/a", eventTypes=["a.b"], throttleRate=5,
        description="d", uid="one",
    )  # fmt: skip
    path = f"/api/v1/app/acme/endpoint/{made['id']}"
    patched = await api.call("PATCH", path, {"description": "new", "throttleRate": None})
    assert patched.status == 200
    assert (patched.body["description"], patched.body["throttleRate"]) == ("new", None)
    assert patched.body["eventTypes"] == ["a.b"] and patched.body["uid"] == "one"
    put = await api.call("PUT", "/api/v1/app/acme/endpoint/one", {"url": "https://example.com/z"})
    assert put.status == 200
    assert (put.body["url"], put.body["eventTypes"], put.body["description"]) == (
        "https://example.com/z", None, "",
    )  # fmt: skip
    assert put.body["uid"] == "one" and put.body["id"] == made["id"]
    upserted = await api.call("PUT", "/api/v1/app/acme/endpoint/two", {"url": "https://x.io"})
    assert upserted.status == 201 and upserted.body["uid"] == "two"
    taken = await api.call("PATCH", path, {"uid": "two"})
    assert (taken.status, taken.body["code"]) == (409, "conflict")
    dup = await api.post("/api/v1/app/acme/endpoint", {"url": "https://x.io", "uid": "two"})
    assert dup.status == 409
    scheme = await api.call("PATCH", path, {"signatureScheme": "standard-ed25519"})
    assert scheme.status == 422


async def test_secret_get_and_rotate_keep_the_old_one_signed_for_the_grace(
    api: ApiUnderTest, db_dsn: str
) -> None:
    await make_app(api, "acme")
    made = await make_endpoint(api, "acme", "https://example.com/a", secret=SECRET)
    path = f"/api/v1/app/acme/endpoint/{made['id']}/secret"
    assert (await api.get(path)).body == {"key": SECRET}
    rotated = await api.post(path + "/rotate", {"gracePeriodSeconds": 60})
    assert rotated.status == 200 and rotated.body["key"].startswith("whsec_")
    assert (await api.get(path)).body == rotated.body
    row = await _row(db_dsn, made["id"])
    [previous] = orjson.loads(row["previous_secrets"])
    assert previous["secret"] == SECRET
    assert 55 < previous["expires_at"] - time.time() <= 60
    given = await api.post(path + "/rotate", {"key": SECRET})
    assert given.body == {"key": SECRET}
    bad = await api.post(path + "/rotate", {"key": "whsec_short"})
    assert bad.status == 422 and bad.body["detail"][0]["loc"] == ["body", "key"]
    too_long = await api.post(path + "/rotate", {"gracePeriodSeconds": 8 * 86400})
    assert too_long.status == 422


async def test_an_ed25519_endpoint_shows_only_its_public_key(api: ApiUnderTest) -> None:
    await make_app(api, "acme")
    private = generate_signing_key()
    made = await make_endpoint(
        api, "acme", "https://example.com/a", signatureScheme="standard-ed25519", secret=private
    )
    got = await api.get(f"/api/v1/app/acme/endpoint/{made['id']}/secret")
    assert got.body == {"key": public_key(private)}


async def test_headers_hide_sensitive_values_and_patch_merges(api: ApiUnderTest) -> None:
    await make_app(api, "acme")
    made = await make_endpoint(
        api, "acme", "https://example.com/a",
        headers={"Authorization": "Bearer s3", "X-A": "1", "X-Shop-Token": "t0k"},
    )  # fmt: skip
    path = f"/api/v1/app/acme/endpoint/{made['id']}/headers"
    assert (await api.get(path)).body == {
        "headers": {"X-A": "1"}, "sensitive": ["Authorization", "X-Shop-Token"],
    }  # fmt: skip
    await api.call("PATCH", path, {"headers": {"X-Shop-Token": None}})
    patched = await api.call("PATCH", path, {"headers": {"x-a": "2", "X-B": "3"}})
    assert patched.status == 204
    assert (await api.get(path)).body["headers"] == {"x-a": "2", "X-B": "3"}
    removed = await api.call("PATCH", path, {"headers": {"X-B": None}, "deleteHeaders": ["x-a"]})
    assert removed.status == 204
    assert (await api.get(path)).body == {"headers": {}, "sensitive": ["Authorization"]}
    put = await api.call("PUT", path, {"headers": {"X-Only": "1"}})
    assert put.status == 204
    assert (await api.get(path)).body == {"headers": {"X-Only": "1"}, "sensitive": []}
    bad = await api.call("PUT", path, {"headers": {"webhook-id": "x"}})
    assert bad.status == 422 and bad.body["detail"][0]["loc"] == ["body", "headers", "webhook-id"]
    missing = await api.call("PUT", path, {})
    assert missing.status == 422


async def test_disable_enable_pause_resume_and_delete(api: ApiUnderTest, db_dsn: str) -> None:
    await make_app(api, "acme")
    made = await make_endpoint(api, "acme", "https://example.com/a")
    path = f"/api/v1/app/acme/endpoint/{made['id']}"
    disabled = await api.post(path + "/disable", {"reason": "receiver down"})
    assert disabled.body["disabled"] is True and disabled.body["disabledReason"] == "receiver down"
    state = await api.get(path + "/state")
    assert state.body["disabled"] is True and state.body["paused"] is False
    enabled = await api.post(path + "/enable")
    assert enabled.body["disabled"] is False and enabled.body["disabledReason"] is None
    paused = await api.post(path + "/pause", {"durationSeconds": 600})
    assert paused.body["paused"] is True and paused.body["pausedUntil"] is not None
    resumed = await api.post(path + "/resume")
    assert resumed.body["paused"] is False
    sent = await api.post("/api/v1/app/acme/msg", {"eventType": "e", "payload": {}})
    assert sent.status == 202
    stats = await api.get(path + "/stats")
    assert stats.body == {"success": 0, "pending": 1, "sending": 0, "fail": 0, "canceled": 0}
    assert (await api.call("DELETE", path)).status == 204
    assert (await api.get(path)).status == 404
    conn = await asyncpg.connect(db_dsn)
    try:
        status = await conn.fetchval("SELECT status FROM webhookd.deliveries")
    finally:
        await conn.close()
    assert status == "failed"


async def test_endpoint_pages_follow_the_iterator(api: ApiUnderTest) -> None:
    await make_app(api, "acme")
    made = [(await make_endpoint(api, "acme", f"https://example.com/{n}"))["id"] for n in range(5)]
    seen, iterator, done = [], "", False
    while not done:
        reply = await api.get(f"/api/v1/app/acme/endpoint?limit=2&iterator={iterator}")
        seen += [e["id"] for e in reply.body["data"]]
        iterator, done = reply.body["iterator"], reply.body["done"]
    assert seen == made
    backwards = await api.get("/api/v1/app/acme/endpoint?order=descending")
    assert [e["id"] for e in backwards.body["data"]] == made[::-1]
