"""`kill -9` of a `webhookd run` in the middle of a batch loses nothing: the leases it held
expire and are taken again (by a peer already running, or by the restarted process), every
message reaches the receiver at least once, and a message sent twice is the same message."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import defaultdict
from typing import Any

import asyncpg
import pytest
from standardwebhooks.webhooks import Webhook

from tests.chaos.conftest import DaemonProcess, Spawn, toml
from tests.integration.conftest import Harness, Hit, Receiver, wait_until

pytestmark = pytest.mark.chaos

MESSAGES = 100
RECEIVER_DELAY_S = 0.3
SIGNED = ("webhook-id", "webhook-timestamp", "webhook-signature", "content-type", "user-agent")


def config(instance_id: str) -> str:
    return toml(
        {
            "database": {"connect_timeout": "2s"},
            # lease = 2 s timeout + 1 s margin: a dead daemon's work is free again after 3 s
            "outbox": {"poll_interval": "200ms", "lease_margin": "1s", "instance_id": instance_id},
            "delivery": {
                "timeout": "2s",
                "concurrency": 20,  # 10 per endpoint: about 30 deliveries a second
                "allow_insecure_http": True,
                "allow_private_networks": True,
                "retry_jitter": 0,
                "retry_schedule": ["200ms", "200ms"],
                "drain_timeout": "2s",
                "user_agent": f"webhookd-test/{instance_id}",  # who sent each request
            },
            "metrics": {"listen": "127.0.0.1:0"},
        }
    )


def header(hit: Hit, name: str) -> str:
    [value] = [v for k, v in hit.headers.items() if k.lower() == name]
    return value


class LeaseWatch:
    """Polls the deliveries while the survivor runs, noting every row seen with the reason
    the rescue writes (`lease expired: instance ...`): recorded on the row until the re-sent
    attempt succeeds and clears it."""

    def __init__(self, harness: Harness) -> None:
        self.dsn = harness.dsn
        self.rescued: dict[int, str] = {}
        self._stop = asyncio.Event()
        self.task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        conn = await asyncpg.connect(self.dsn)  # its own: the harness one is busy meanwhile
        try:
            while not self._stop.is_set():
                rows = await conn.fetch(
                    "SELECT id, last_error FROM webhookd.deliveries"
                    " WHERE last_error LIKE 'lease expired:%'"
                )
                self.rescued.update({r["id"]: r["last_error"] for r in rows})
                await asyncio.sleep(0.05)
        finally:
            await conn.close()

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.wait_for(self.task, 5)


async def kill_mid_batch(harness: Harness, receiver: Receiver, victim: DaemonProcess) -> set[int]:
    """SIGKILL `victim` while it has requests in flight and leased work waiting; returns the
    ids of the deliveries it held at that moment."""
    instance = (await victim.started())["instance"]
    agent = f"webhookd-test/{instance}"

    async def mid_batch() -> bool:
        # Arrived less than the receiver's delay ago: not answered yet, so not recorded.
        recent = time.monotonic() - RECEIVER_DELAY_S / 2
        mine = [h for h in receiver.hits if header(h, "user-agent") == agent]
        unanswered = [h for h in mine if h.at > recent]
        held = await harness.conn.fetchval(
            "SELECT count(*) FROM webhookd.deliveries WHERE locked_by = $1", instance
        )
        return bool(unanswered) and 10 <= len(receiver.hits) < MESSAGES * 3 // 4 and held > 0

    await wait_until(mid_batch, 15, "the victim to be in the middle of the batch")
    await victim.kill9()
    rows = await harness.conn.fetch(
        "SELECT id FROM webhookd.deliveries WHERE status = 'delivering' AND locked_by = $1",
        instance,
    )
    return {r["id"] for r in rows}


async def check_nothing_lost(
    harness: Harness, receiver: Receiver, secret: str, orphaned: set[int], survivor: str
) -> None:
    rows = await harness.deliveries()
    assert len(rows) == MESSAGES
    assert {r["status"] for r in rows} == {"delivered"}
    assert all(r["locked_by"] is None and r["locked_until"] is None for r in rows)

    by_id: dict[str, list[Hit]] = defaultdict(list)
    for hit in receiver.hits:
        by_id[header(hit, "webhook-id")].append(hit)
    assert set(by_id) == {r["msg_id"] for r in rows}, "a message never reached the receiver"
    duplicates = {m: hits for m, hits in by_id.items() if len(hits) > 1}
    # Requests in flight at the kill reached the receiver but were never answered: sent again.
    assert duplicates, "the kill did not catch a request in flight"
    verifier = Webhook(secret)
    for msg_id, hits in by_id.items():
        assert len({h.body for h in hits}) == 1, f"{msg_id}: the body changed between sends"
        for hit in hits:
            assert header(hit, "webhook-id") == msg_id
            verifier.verify(hit.body, hit.headers)  # each copy is signed for its own timestamp
            assert all(header(hit, name) for name in SIGNED)

    # Every lease the victim held at its death was rescued, re-sent, and recorded once.
    assert orphaned
    attempts = await harness.attempts()
    by_delivery: dict[int, list[Any]] = defaultdict(list)
    for attempt in attempts:
        by_delivery[attempt["delivery_id"]].append(attempt)
    for delivery_id in orphaned:
        [attempt] = by_delivery[delivery_id]  # the victim's attempt was never written
        assert (attempt["instance"], attempt["status_code"]) == (survivor, 200)
    assert {r["id"] for r in rows} == set(by_delivery)
    assert all(r["attempts"] == len(by_delivery[r["id"]]) for r in rows)


async def test_peer_takes_over_the_leases_of_a_daemon_killed_mid_batch(
    harness: Harness, receiver: Receiver, spawn: Spawn
) -> None:
    receiver.slow("/hook", RECEIVER_DELAY_S)
    ep_id, secret = await harness.endpoint(receiver.url("/hook"))
    victim = await spawn(harness.dsn, config("victim"), "victim")
    peer = await spawn(harness.dsn, config("peer"), "peer")
    await asyncio.gather(victim.started(), peer.started())
    await harness.enqueue_many(ep_id, MESSAGES)

    orphaned = await kill_mid_batch(harness, receiver, victim)
    watch = LeaseWatch(harness)
    try:
        await harness.wait_status("delivered", MESSAGES, timeout_s=15)
    finally:
        await watch.stop()
    assert orphaned <= set(watch.rescued)
    assert all("instance victim stopped" in why for why in watch.rescued.values())
    rescued = await peer.wait_event("outbox.leases_rescued")
    assert rescued["count"] >= 1
    await check_nothing_lost(harness, receiver, secret, orphaned, survivor="peer")
    assert await peer.terminate() == 0, peer.output[-3000:]


async def test_restarted_process_with_the_same_config_delivers_what_the_killed_one_held(
    harness: Harness, receiver: Receiver, spawn: Spawn
) -> None:
    receiver.slow("/hook", RECEIVER_DELAY_S)
    ep_id, secret = await harness.endpoint(receiver.url("/hook"))
    # A fixed instance id: the new process has the same name as the dead one, and must still
    # wait for the leases to expire rather than take them as its own.
    same = config(f"node-{secrets.token_hex(3)}")
    first = await spawn(harness.dsn, same, "first")
    await first.started()
    await harness.enqueue_many(ep_id, MESSAGES)

    orphaned = await kill_mid_batch(harness, receiver, first)
    hits_at_kill = len(receiver.hits)
    watch = LeaseWatch(harness)
    try:
        second = await spawn(harness.dsn, same, "second")
        started = await second.started()
        assert started["instance"] == (await first.started())["instance"]
        await harness.wait_status("delivered", MESSAGES, timeout_s=15)
    finally:
        await watch.stop()
    assert len(receiver.hits) > hits_at_kill
    assert orphaned <= set(watch.rescued)
    assert (await second.wait_event("outbox.leases_rescued"))["count"] >= 1
    await check_nothing_lost(harness, receiver, secret, orphaned, survivor=started["instance"])
    assert await second.terminate() == 0, second.output[-3000:]
