"""`Service.reload` in a running daemon: new limits, retries, health and retention settings
take effect without a restart and without touching attempts in flight. (The SIGHUP path of a
real `webhookd run` is tested in tests/chaos/test_reload.py.)"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from structlog.testing import capture_logs

from tests.integration.conftest import DaemonFactory, Harness, Receiver, wait_until


async def test_lower_concurrency_lets_running_attempts_finish(
    harness: Harness, receiver: Receiver, run_daemon: DaemonFactory
) -> None:
    receiver.slow("/slow", 0.4)
    ep_id, _ = await harness.endpoint(receiver.url("/slow"))
    await harness.enqueue_many(ep_id, 12)
    async with run_daemon(delivery={"concurrency": 4, "endpoint_max_in_flight": 10}) as service:
        await wait_until(_in_flight(receiver, 4), 5, "4 attempts in flight")
        with capture_logs() as logs:
            service.reload(service.config.with_overrides(delivery={"concurrency": 1}))
        receiver.max_in_flight = receiver.in_flight
        await harness.wait_status("delivered", 12, timeout_s=15)
    # The 4 running ones finished (none cut off, none tried twice); then one at a time.
    assert len(receiver.hits) == 12
    assert all(r["attempts"] == 1 for r in await harness.deliveries())
    assert receiver.max_in_flight == 4
    later = sorted(receiver.hits, key=lambda h: h.at)[4:]
    assert all(b.at - a.at >= 0.35 for a, b in itertools.pairwise(later))
    [event] = [e for e in logs if e["event"] == "config.reloaded"]
    assert event["changed"] == ["delivery.concurrency"]


def _in_flight(receiver: Receiver, count: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return receiver.in_flight >= count

    return check


async def test_a_default_rate_set_by_reload_limits_the_next_deliveries(
    harness: Harness, receiver: Receiver, run_daemon: DaemonFactory
) -> None:
    ep_id, _ = await harness.endpoint(receiver.url("/r"))
    async with run_daemon() as service:
        await harness.enqueue_many(ep_id, 3)
        await harness.wait_status("delivered", 3)
        service.reload(
            service.config.with_overrides(ratelimit={"default_rate_per_s": 5.0, "default_burst": 1})
        )
        start = time.monotonic()
        await harness.enqueue_many(ep_id, 6)
        await harness.wait_status("delivered", 9, timeout_s=10)
        elapsed = time.monotonic() - start
    # 6 at 5/s with a burst of 1: at least 1 s.
    assert elapsed >= 0.95
    arrivals = [h.at for h in receiver.hits[3:]]
    assert all(b - a >= 0.15 for a, b in itertools.pairwise(arrivals))


async def test_a_new_retry_schedule_applies_to_the_next_decision(
    harness: Harness, receiver: Receiver, run_daemon: DaemonFactory
) -> None:
    receiver.on("/down", lambda hit, n: web.Response(status=500))
    ep_id, _ = await harness.endpoint(receiver.url("/down"))
    async with run_daemon(delivery={"retry_schedule_s": (30.0,)}) as service:
        service.reload(service.config.with_overrides(delivery={"retry_schedule_s": ()}))
        await harness.enqueue(endpoint_id=ep_id)
        [dead] = await harness.wait_status("failed", 1, timeout_s=5)
    assert dead["attempts"] == 1 and "gave up after 1 attempt" in dead["last_error"]


async def test_turning_on_the_periodic_prune_by_reload_runs_it(
    harness: Harness, receiver: Receiver, run_daemon: DaemonFactory
) -> None:
    ep_id, _ = await harness.endpoint(receiver.url("/ok"))
    async with run_daemon() as service:
        await harness.enqueue(endpoint_id=ep_id)
        await harness.wait_status("delivered", 1)
        await asyncio.sleep(0.6)
        service.reload(service.config.with_overrides(retention={"prune_after_s": 0.5}))

        async def pruned() -> bool:
            return await harness.conn.fetchval("SELECT count(*) FROM webhookd.outbox") == 0

        await wait_until(pruned, 5, "the message pruned after the reload")


async def test_settings_fixed_at_start_are_logged_and_kept(
    harness: Harness, run_daemon: DaemonFactory
) -> None:
    async with run_daemon() as service:
        before = service.config
        with capture_logs() as logs:
            service.reload(
                before.with_overrides(metrics={"listen_port": 1}, outbox={"instance_id": "other"})
            )
        assert service.config == before
        assert service.instance == before.outbox.instance_id
    [warning] = [e for e in logs if e["event"] == "config.reload_needs_restart"]
    assert warning["keys"] == ["metrics.listen", "outbox.instance_id"]
    [event] = [e for e in logs if e["event"] == "config.reloaded"]
    assert event["changed"] == []
