"""Claims driven by what is due (migrations/0008_due_endpoints.sql): their cost follows the
work, not the number of endpoints registered; endpoints are served least recently first; the
endpoint cache follows changes; ordered deliveries behind a blocked key are held, not
rescanned (migrations/0009_ordering_held.sql)."""

from __future__ import annotations

from collections import Counter
from typing import Any

import orjson
import pytest

from daemon import sql
from tests.integration.conftest import DaemonFactory, Harness, Receiver, claim

DEAD_URL = "http://127.0.0.1:9/never"


async def register_idle(harness: Harness, count: int) -> None:
    await harness.conn.execute(
        "INSERT INTO webhookd.endpoints (id, url, secret)"
        " SELECT 'ep_idle_' || g, 'https://example.com/' || g, 'whsec_' || md5(g::text)"
        " FROM generate_series(1, $1) g",
        count,
    )


def plan_nodes(node: dict[str, Any]) -> list[dict[str, Any]]:
    found = [node]
    for child in node.get("Plans", []):
        found += plan_nodes(child)
    return found


async def explain_claim(harness: Harness, **params: Any) -> list[dict[str, Any]]:
    await harness.store.fetchval("absorb_wakes", limit=100_000)
    query = sql.queries()["claim"]
    args = query.args(
        {
            "limit": 100,
            "max_endpoints": 100,
            "default_quota": 10,
            "local_ids": [],
            "local_quotas": [],
            "default_rate_per_s": None,
            "default_burst": 0,
            "default_timeout_s": 30.0,
            "lease_margin_s": 30.0,
            "dead_letters_block": False,
            "instance": "probe",
            "max_payload_bytes": 1 << 20,
            "free_slots": 10,
            "hold_limit": 256,
            "only_endpoint_id": None,
        }
        | params
    )
    transaction = harness.conn.transaction()  # EXPLAIN ANALYZE runs it: roll it back
    await transaction.start()
    try:
        plan = await harness.conn.fetchval("EXPLAIN (ANALYZE, FORMAT JSON) " + query.text, *args)
    finally:
        await transaction.rollback()
    return plan_nodes(orjson.loads(plan)[0]["Plan"])


async def test_a_claim_reads_only_the_due_endpoints_however_many_are_registered(
    harness: Harness,
) -> None:
    await register_idle(harness, 50_000)
    busy = [(await harness.endpoint(DEAD_URL))[0] for _ in range(3)]
    history, _ = await harness.endpoint(DEAD_URL)  # a table of realistic size: plans as in use
    await harness.enqueue_many(history, 20_000)
    await harness.conn.execute(
        "UPDATE webhookd.deliveries SET status = 'delivered' WHERE endpoint_id = $1", history
    )
    for ep_id in busy:
        await harness.enqueue_many(ep_id, 20)
    await harness.conn.execute("ANALYZE")
    nodes = await explain_claim(harness)
    scanned = [
        n["Relation Name"]
        for n in nodes
        if n["Node Type"] == "Seq Scan" and n["Actual Rows"] * n["Actual Loops"] > 0
    ]
    assert not {"endpoints", "endpoint_state", "deliveries"} & set(scanned), scanned
    state_scans = [n for n in nodes if n.get("Relation Name") == "endpoint_state"]
    due_walk = [n for n in state_scans if n.get("Index Name") == "endpoint_state_due_idx"]
    # the three busy ones, and the one whose rows were delivered by hand after its wake: a
    # due_at may be early (the claim corrects it), never late
    assert due_walk and all(n["Actual Rows"] * n["Actual Loops"] <= 4 for n in due_walk)
    endpoint_reads = sum(
        n["Actual Rows"] * n["Actual Loops"] for n in nodes if n.get("Relation Name") == "endpoints"
    )
    assert endpoint_reads <= 4  # those, not the 50,000 idle


async def test_endpoints_with_due_work_are_served_least_recently_first(harness: Harness) -> None:
    eps = [(await harness.endpoint(DEAD_URL))[0] for _ in range(3)]
    for ep_id in eps:
        await harness.enqueue_many(ep_id, 10)
    served = []
    for _ in range(6):
        rows = await claim(harness.store, [], [], 2, 30.0, "a", default_quota=2, max_endpoints=1)
        [(ep_id, n)] = Counter(r["endpoint_id"] for r in rows).items()
        assert n == 2
        served.append(ep_id)
    assert served[:3] == served[3:]  # a round robin ...
    assert sorted(served[:3]) == sorted(eps)  # ... over all three


async def test_an_endpoint_leaves_the_due_index_when_disabled_and_is_woken_when_enabled(
    harness: Harness,
) -> None:
    ep_id, _ = await harness.endpoint(DEAD_URL)
    await harness.enqueue_many(ep_id, 2)
    await harness.store.fetchval("absorb_wakes", limit=100)

    async def due_at() -> Any:
        return await harness.conn.fetchval(
            "SELECT due_at FROM webhookd.endpoint_state WHERE endpoint_id = $1", ep_id
        )

    assert await due_at() is not None
    await harness.conn.execute("UPDATE webhookd.endpoints SET enabled = false WHERE id = $1", ep_id)
    assert await due_at() is None
    assert await claim(harness.store, [], [], 10, 30.0, "a", default_quota=10) == []
    await harness.conn.execute("UPDATE webhookd.endpoints SET enabled = true WHERE id = $1", ep_id)
    rows = await claim(harness.store, [], [], 10, 30.0, "a", default_quota=10)
    assert len(rows) == 2


async def test_a_pause_keeps_the_endpoint_out_of_the_due_index_until_it_ends(
    harness: Harness,
) -> None:
    ep_id, _ = await harness.endpoint(DEAD_URL)
    await harness.enqueue_many(ep_id, 2)
    [first, _second] = await claim(harness.store, [], [], 10, 30.0, "a", default_quota=10)
    await harness.store.execute(
        "pause_and_release",
        endpoint_id=ep_id,
        pause_s=60.0,
        delivery_ids=[first["id"]],
        lease_tokens=[first["lease_token"]],
    )
    await harness.store.fetchval("absorb_wakes", limit=100)  # the release's wake
    row = await harness.conn.fetchrow(
        "SELECT due_at > now() + interval '50 seconds' AS later FROM webhookd.endpoint_state"
        " WHERE endpoint_id = $1",
        ep_id,
    )
    assert row["later"]
    assert await claim(harness.store, [], [], 10, 30.0, "a", default_quota=10) == []


async def test_one_message_to_a_tenant_of_two_thousand_endpoints_reaches_each_once(
    harness: Harness, receiver: Receiver, run_daemon: DaemonFactory
) -> None:
    await harness.conn.execute(
        "INSERT INTO webhookd.endpoints (tenant_id, url, secret)"
        " SELECT 'big', $1 || g, 'whsec_' || encode(sha256(g::text::bytea), 'base64')"
        " FROM generate_series(1, 2000) g",
        receiver.url("/t/"),
    )
    await harness.enqueue({"hello": "everyone"}, tenant_id="big")
    async with run_daemon(log={"level": "warning"}):
        await harness.wait_status("delivered", 2000, timeout_s=40)
    paths = Counter(h.path for h in receiver.hits)
    assert len(paths) == 2000 and set(paths.values()) == {1}


async def test_an_endpoint_changed_while_cached_gets_its_next_delivery_with_the_new_settings(
    harness: Harness, receiver: Receiver, run_daemon: DaemonFactory
) -> None:
    ep_id, _ = await harness.endpoint(receiver.url("/old"))
    async with run_daemon():
        await harness.enqueue(endpoint_id=ep_id)
        await receiver.wait_hits(1, "/old")
        await harness.conn.execute(
            "UPDATE webhookd.endpoints SET url = $2, version = version + 1 WHERE id = $1",
            ep_id,
            receiver.url("/new"),
        )
        await harness.enqueue(endpoint_id=ep_id)
        await receiver.wait_hits(1, "/new")
    assert len(receiver.at("/old")) == 1


async def enqueue_keyed(harness: Harness, endpoint_id: str, key: str, count: int) -> None:
    await harness.conn.execute(
        "INSERT INTO webhookd.outbox (endpoint_id, event_type, payload, ordering_key)"
        " SELECT $1, 'test.event', jsonb_build_object('n', g), $2 FROM generate_series(1, $3) g",
        endpoint_id,
        key,
        count,
    )


async def test_a_key_blocked_by_a_dead_letter_is_held_out_of_the_due_index(
    harness: Harness, receiver: Receiver, run_daemon: DaemonFactory
) -> None:
    """5,000 ordered rows behind a dead letter (block): held once, then neither claimed nor
    rescanned; the endpoint is not due; the others are served."""
    blocked, _ = await harness.endpoint(receiver.url("/blocked"))
    other, _ = await harness.endpoint(receiver.url("/other"))
    await enqueue_keyed(harness, blocked, "k", 1)
    await harness.conn.execute(
        "UPDATE webhookd.deliveries SET status = 'failed', last_error = 'gave up'"
        " WHERE endpoint_id = $1",
        blocked,
    )
    await enqueue_keyed(harness, blocked, "k", 5000)
    async with run_daemon(outbox={"ordering_on_dead_letter": "block"}, log={"level": "warning"}):
        await harness.wait_status("held", 5000, blocked, timeout_s=20)
        await harness.enqueue(endpoint_id=other)
        await harness.wait_status("delivered", 1, other)
    due = await harness.conn.fetchval(
        "SELECT due_at FROM webhookd.endpoint_state WHERE endpoint_id = $1", blocked
    )
    assert due is None
    assert receiver.at("/blocked") == []
    nodes = await explain_claim(harness, dead_letters_block=True)
    rows_read = sum(
        n["Actual Rows"] * n["Actual Loops"]
        for n in nodes
        if n.get("Relation Name") == "deliveries"
    )
    assert rows_read < 10  # nothing of the 5,000 is looked at again


async def test_requeueing_the_dead_letter_releases_its_key_one_delivery_at_a_time_in_order(
    harness: Harness, receiver: Receiver, run_daemon: DaemonFactory
) -> None:
    ep_id, _ = await harness.endpoint(receiver.url("/k"))
    await enqueue_keyed(harness, ep_id, "k", 1)
    await harness.conn.execute(
        "UPDATE webhookd.deliveries SET status = 'failed', last_error = 'gave up'"
        " WHERE endpoint_id = $1",
        ep_id,
    )
    await enqueue_keyed(harness, ep_id, "k", 20)
    async with run_daemon(outbox={"ordering_on_dead_letter": "block"}):
        await harness.wait_status("held", 20, ep_id)
        requeued = await harness.store.fetch(
            "dead_letters_requeue",
            endpoint_id=ep_id,
            message_ids=None,
            since=None,
            until=None,
            limit=10,
            after_failed_at=None,
            after_id=None,
        )
        assert len(requeued) == 1
        await harness.store.execute("outbox_wake")
        await harness.wait_status("delivered", 21, ep_id, timeout_s=30)
    order = [orjson.loads(h.body)["n"] for h in receiver.at("/k")]
    assert order == [1, *range(1, 21)]


async def _defer_one(harness: Harness, endpoint_id: str, hours: int) -> None:
    await harness.conn.execute(
        "INSERT INTO webhookd.outbox (endpoint_id, event_type, payload, deliver_after)"
        " VALUES ($1, 'test.event', '{}', now() + make_interval(hours => $2))",
        endpoint_id,
        hours,
    )


async def _due_in_hours(harness: Harness, endpoint_id: str) -> float | None:
    due = await harness.conn.fetchval(
        "SELECT extract(epoch FROM due_at - now()) / 3600"
        " FROM webhookd.endpoint_state WHERE endpoint_id = $1",
        endpoint_id,
    )
    return None if due is None else float(due)


async def test_after_a_claim_the_endpoint_is_due_when_its_next_pending_delivery_is(
    harness: Harness,
) -> None:
    """The claim reads one row past what it takes to set the endpoint's next due time; when
    every row it read was taken or held, it looks further: a deliverable row behind held
    ones must keep the endpoint in the due index."""
    plain, _ = await harness.endpoint("http://127.0.0.1:9/plain")
    for _ in range(3):
        await harness.enqueue(endpoint_id=plain)
    await _defer_one(harness, plain, 1)
    assert len(await claim(harness.store, [plain], [3], 10, 30.0, "me")) == 3
    assert await _due_in_hours(harness, plain) == pytest.approx(1.0, abs=0.01)

    keyed, _ = await harness.endpoint("http://127.0.0.1:9/keyed")
    await enqueue_keyed(harness, keyed, "k", 1)
    await harness.conn.execute(
        "UPDATE webhookd.deliveries SET status = 'failed' WHERE endpoint_id = $1", keyed
    )
    await enqueue_keyed(harness, keyed, "k", 3)  # blocked by the dead letter
    await _defer_one(harness, keyed, 2)  # no key: deliverable in two hours
    got = await claim(
        harness.store, [keyed], [1], 10, 30.0, "me", dead_letters_block=True, hold_limit=1
    )
    assert got == []
    held = await harness.conn.fetchval(
        "SELECT count(*) FROM webhookd.deliveries WHERE endpoint_id = $1 AND status = 'held'",
        keyed,
    )
    assert held == 3  # the three rows read (1 + 1 more + 1 to hold) were all held
    assert await _due_in_hours(harness, keyed) == pytest.approx(2.0, abs=0.01)


async def test_an_endpoint_without_limits_is_claimed_beyond_the_free_slots(
    harness: Harness,
) -> None:
    """Free slots bound only rate-limited endpoints (their tokens are spent when claimed). An
    endpoint with no rate was once treated as limited at 1e6/s, so a daemon with its slots
    busy claimed nothing at all, and otherwise only as many as were free."""
    ep, _ = await harness.endpoint("http://127.0.0.1:9/free")
    await harness.enqueue_many(ep, 30)
    got = await claim(harness.store, [], [], 20, 30.0, "me", default_quota=20, free_slots=0)
    assert len(got) == 20


async def test_a_rate_without_a_burst_allows_one_seconds_worth_at_once(harness: Harness) -> None:
    """An endpoint limited to 3/s with no burst of its own and no default: a bucket of 3."""
    ep, _ = await harness.endpoint("http://127.0.0.1:9/rated", rate_per_s=3.0)
    await harness.enqueue_many(ep, 30)
    got = await claim(harness.store, [], [], 20, 30.0, "me", default_quota=20, free_slots=20)
    assert len(got) == 3


async def test_a_claim_over_endpoints_with_one_due_delivery_each_fills_up(
    harness: Harness,
) -> None:
    """Each endpoint may be granted ten and have one: the walk must go on to the next
    endpoints (cutting it where the grants add up to the limit once made such claims a
    tenth full, and 10,000 distinct endpoints drain at a tenth of the rate)."""
    for i in range(30):
        ep, _ = await harness.endpoint(f"http://127.0.0.1:9/one{i}")
        await harness.enqueue(endpoint_id=ep)
    got = await claim(harness.store, [], [], 20, 30.0, "me", default_quota=10)
    assert len(got) == 20
