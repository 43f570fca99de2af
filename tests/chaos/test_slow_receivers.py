"""Receivers that slow down after a burst, with a second daemon joining: a delivery is never in
flight twice at once and never delivered twice, because a daemon renews the leases of
everything it holds and outcomes are fenced by the claim's token."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections import Counter, defaultdict

import pytest
from aiohttp import web

from tests.chaos.conftest import Spawn, daemon_toml
from tests.integration.conftest import Harness, Hit, Receiver

pytestmark = pytest.mark.chaos

ENDPOINTS = 10
FAST = 300  # answered at once: the first daemon claims a full local queue
SLOW = 120  # then every answer takes SLOW_S (a 2xx, well inside the timeout)
SLOW_S = 1.5


def config(instance: str) -> str:
    # lease = timeout + margin = 4 s; a queue of ~100 at ~6.7 answers/s waits ~15 s
    return daemon_toml(
        instance,
        outbox={"lease_margin": "1s"},
        delivery={"timeout": "3s", "concurrency": 10},
        log={"level": "info", "format": "json"},
    )


def overlapping(intervals: list[tuple[float, float]]) -> int:
    """How many requests started while an earlier one of the same message was still open."""
    ordered = sorted(intervals)
    return sum(1 for a, b in itertools.pairwise(ordered) if b[0] < a[1])


async def test_slow_down_after_a_burst_with_a_second_daemon_gives_no_duplicate(
    harness: Harness, receiver: Receiver, spawn: Spawn
) -> None:
    open_at: dict[str, list[tuple[float, float]]] = defaultdict(list)
    answered: Counter[str] = Counter()

    async def respond(hit: Hit, _n: int) -> web.StreamResponse:
        msg_id = hit.headers["webhook-id"]
        if len(receiver.hits) > FAST:
            await asyncio.sleep(SLOW_S)
        open_at[msg_id].append((hit.at, time.monotonic()))
        answered[msg_id] += 1
        return web.Response(text="ok")

    endpoints = []
    for i in range(ENDPOINTS):
        ep_id, _ = await harness.endpoint(receiver.url(f"/ep{i}"))
        receiver.on(f"/ep{i}", respond)
        endpoints.append(ep_id)
    total = FAST + SLOW
    for n in range(total):
        await harness.enqueue({"n": n}, endpoint_id=endpoints[n % ENDPOINTS])

    first = await spawn(harness.dsn, config("first"), "first")
    await first.started()
    await receiver.wait_hits(FAST, timeout_s=30)
    second = await spawn(harness.dsn, config("second"), "second")
    await second.started()
    rows = await harness.wait_status("delivered", total, timeout_s=60)
    for daemon in (first, second):
        assert await daemon.terminate() == 0

    concurrent = {m: n for m, iv in open_at.items() if (n := overlapping(iv))}
    assert concurrent == {}, "in flight twice at the same time"
    assert {m: n for m, n in answered.items() if n > 1} == {}, "delivered twice"
    assert len(answered) == total
    assert {r["attempts"] for r in rows} == {1}
    doubles = await harness.conn.fetch(
        "SELECT delivery_id, attempt, count(*) FROM webhookd.attempts"
        " GROUP BY 1, 2 HAVING count(*) > 1"
    )
    assert doubles == []
    assert not first.named("outbox.leases_rescued") and not second.named("outbox.leases_rescued")
