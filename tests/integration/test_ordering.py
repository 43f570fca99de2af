"""Ordering keys: deliveries of one (endpoint, ordering_key) are attempted strictly in insert
order, across daemons and through retries; rows without a key keep full concurrency."""

from __future__ import annotations

import asyncio
import random

import orjson
from aiohttp import web

from tests.integration.conftest import DaemonFactory, Harness, Hit, Receiver, claim
from tests.ordering_support import assert_first_successes_in_order, flaky_recorder


async def enqueue_keyed(harness: Harness, endpoint_id: str, key: str | None, n: int) -> None:
    await harness.conn.execute(
        "INSERT INTO webhookd.outbox (endpoint_id, event_type, payload, ordering_key)"
        " VALUES ($1, 'test.event', $2::jsonb, $3)",
        endpoint_id,
        orjson.dumps({"key": key, "n": n}).decode(),
        key,
    )


async def test_only_the_oldest_open_delivery_of_a_key_is_claimable(harness: Harness) -> None:
    ep_id, _ = await harness.endpoint("https://example.com/h")
    for n in range(3):
        await enqueue_keyed(harness, ep_id, "k", n)
    await enqueue_keyed(harness, ep_id, None, 99)
    first = await claim(harness.store, [ep_id], [10], 10, 30.0, "a")
    assert sorted(orjson.loads(r["payload"])["n"] for r in first) == [0, 99]
    assert await claim(harness.store, [ep_id], [10], 10, 30.0, "b") == []
    # the two behind it are held: out of the due index until it finishes
    statuses = {r["status"] for r in await harness.deliveries(ep_id) if r["ordering_key"]}
    assert statuses == {"delivering", "held"}
    keyed = next(r for r in first if orjson.loads(r["payload"])["n"] == 0)
    async with harness.store.transaction() as tx:  # as the recorder writes an outcome
        await tx.execute("release", delivery_ids=[keyed["id"]], lease_tokens=[keyed["lease_token"]])
    assert await claim(harness.store, [ep_id], [10], 10, 30.0, "b") != []  # itself, again
    await harness.conn.execute(
        "UPDATE webhookd.deliveries SET status = 'delivered' WHERE id = $1", keyed["id"]
    )
    await harness.store.fetch(
        "release_held", endpoint_ids=[ep_id], ordering_keys=["k"], dead_letters_block=False
    )
    [second] = await claim(harness.store, [ep_id], [10], 10, 30.0, "b")
    assert orjson.loads(second["payload"])["n"] == 1


async def test_per_key_first_successes_arrive_in_insert_order_across_three_daemons(
    harness: Harness, receiver: Receiver, run_daemon: DaemonFactory
) -> None:
    successes: list[tuple[str, int]] = []
    receiver.on("/o", flaky_recorder(random.Random(7), successes))
    ep_id, _ = await harness.endpoint(
        receiver.url("/o"), max_in_flight=10, retry_schedule_s=(0.05,) * 20
    )
    keys = [f"k{i}" for i in range(5)]
    for n in range(8):
        for key in keys:
            await enqueue_keyed(harness, ep_id, key, n)
    for n in range(10):
        await enqueue_keyed(harness, ep_id, None, n)
    schedule = {"retry_schedule_s": (0.05,) * 20}
    async with (
        run_daemon(delivery=schedule),
        run_daemon(delivery=schedule),
        run_daemon(delivery=schedule),
    ):
        await harness.wait_status("delivered", 50, timeout_s=30)
    assert_first_successes_in_order(successes, keys, 8)


async def dead_letter_then_successor(
    harness: Harness, receiver: Receiver, run_daemon: DaemonFactory, policy: str
) -> list[str]:
    def fail_first(hit: Hit, _n: int) -> web.Response:
        return web.Response(status=500 if orjson.loads(hit.body)["n"] == 0 else 200)

    receiver.on("/dl", fail_first)
    ep_id, _ = await harness.endpoint(receiver.url("/dl"), retry_schedule_s=(0.05,))
    await enqueue_keyed(harness, ep_id, "k", 0)
    await enqueue_keyed(harness, ep_id, "k", 1)
    async with run_daemon(outbox={"ordering_on_dead_letter": policy}):
        await harness.wait_status("failed", 1)
        if policy == "skip":
            await harness.wait_status("delivered", 1)
        else:
            await receiver.wait_hits(2)  # both attempts of message 0, then nothing
            await asyncio.sleep(0.5)
    return [r["status"] for r in await harness.deliveries(ep_id)]


async def test_a_dead_letter_lets_later_ones_of_its_key_go_on_by_default(
    harness: Harness, receiver: Receiver, run_daemon: DaemonFactory
) -> None:
    statuses = await dead_letter_then_successor(harness, receiver, run_daemon, "skip")
    assert statuses == ["failed", "delivered"]


async def test_a_dead_letter_blocks_its_key_when_configured_to(
    harness: Harness, receiver: Receiver, run_daemon: DaemonFactory
) -> None:
    statuses = await dead_letter_then_successor(harness, receiver, run_daemon, "block")
    assert statuses == ["failed", "held"]
    assert all(orjson.loads(h.body)["n"] == 0 for h in receiver.at("/dl"))
