"""Configuration reload: what a running daemon takes from a new file, what waits for a restart,
and how the scheduler and breakers take new limits without touching attempts in flight."""

from __future__ import annotations

import asyncio

from daemon import reload
from daemon.breaker import BreakerSettings, CircuitBreaker, State
from daemon.config import Config
from daemon.reload import LiveConfig
from daemon.scheduler import Limits, Scheduler
from tests.unit.conftest import FakeClock
from tests.unit.scheduler_support import answered, deliveries, endpoint, take, take_all

RUNNING = Config().with_overrides(
    database={"url": "postgresql://hook:old-secret@db/app"},
    outbox={"instance_id": "host:1"},
)


def test_limits_retries_and_logging_apply_at_once() -> None:
    loaded = RUNNING.with_overrides(
        delivery={"concurrency": 5, "retry_schedule_s": (1.0, 2.0), "timeout_s": 3.0},
        ratelimit={"default_rate_per_s": 2.0},
        breaker={"cooldown_s": 5.0},
        log={"level": "debug"},
        health={"disable_after_s": 60.0},
        retention={"prune_after_s": 86400.0},
    )
    change = reload.plan(RUNNING, loaded)
    assert change.config == loaded
    assert change.needs_restart == []
    assert change.applied == [
        "breaker.cooldown",
        "delivery.concurrency",
        "delivery.retry_schedule",
        "delivery.timeout",
        "health.disable_after",
        "log.level",
        "ratelimit.default_rate",
        "retention.prune_after",
    ]


def test_settings_fixed_at_start_keep_their_running_value() -> None:
    loaded = RUNNING.with_overrides(
        database={"url": "postgresql://hook:new-secret@db/app", "pool_max_size": 20},
        metrics={"listen_port": 9999},
        outbox={"instance_id": "host:2", "listen": False, "poll_interval_s": 0.5},
        delivery={"allow_private_networks": True, "concurrency": 3},
    )
    change = reload.plan(RUNNING, loaded)
    assert change.needs_restart == [
        "database.pool_max_size",
        "database.url",  # only the password changed: it still counts
        "delivery.allow_private_networks",
        "metrics.listen",
        "outbox.instance_id",
        "outbox.listen",
    ]
    assert change.applied == ["delivery.concurrency", "outbox.poll_interval"]
    kept = change.config
    assert kept.database == RUNNING.database and kept.metrics == RUNNING.metrics
    assert (kept.outbox.instance_id, kept.outbox.listen) == ("host:1", True)
    assert kept.outbox.poll_interval_s == 0.5
    assert (kept.delivery.allow_private_networks, kept.delivery.concurrency) == (False, 3)


def test_an_unchanged_file_changes_nothing() -> None:
    change = reload.plan(RUNNING, RUNNING)
    assert (change.config, change.applied, change.needs_restart) == (RUNNING, [], [])


def test_breaker_update_keeps_recent_results_and_state(clock: FakeClock) -> None:
    breaker = CircuitBreaker(BreakerSettings(window=4, failure_ratio=0.75), clock)
    for ok in (True, False, False):
        breaker.record(ok)
    breaker.update(BreakerSettings(window=3, failure_ratio=0.6))
    # The last three results (1 ok, 2 failed) and one more failure: 3 of 3 failed.
    assert breaker.record(False) is State.OPEN


async def test_lower_concurrency_holds_new_starts_and_never_touches_running_ones(
    clock: FakeClock,
) -> None:
    s = Scheduler(Limits(concurrency=4, endpoint_max_in_flight=10), clock)
    s.update_endpoint(endpoint("a"))
    answered(s, "a")
    s.submit(deliveries("a", 8))
    assert len(await take_all(s)) == 4
    s.set_limits(Limits(concurrency=2, endpoint_max_in_flight=10))
    assert s.in_flight == 4  # nothing running is dropped
    s.done("a")
    s.done("a")
    assert await take(s) is None  # 2 in flight: at the new cap
    s.done("a")
    assert await take(s) is not None


async def test_higher_concurrency_wakes_a_waiting_dispatcher(clock: FakeClock) -> None:
    s = Scheduler(Limits(concurrency=1, endpoint_max_in_flight=10), clock)
    s.update_endpoint(endpoint("a"))
    answered(s, "a")
    s.submit(deliveries("a", 3))
    assert await take(s) is not None
    waiting = asyncio.create_task(s.next())
    await asyncio.sleep(0.05)
    assert not waiting.done()
    s.set_limits(Limits(concurrency=3, endpoint_max_in_flight=10))
    await asyncio.wait_for(waiting, 1)
    assert await take(s) is not None and s.in_flight == 3


async def test_new_breaker_settings_reach_existing_lanes(clock: FakeClock) -> None:
    s = Scheduler(Limits(breaker=BreakerSettings(window=20)), clock)
    s.update_endpoint(endpoint("a"))
    answered(s, "a")
    s.set_limits(Limits(breaker=BreakerSettings(window=2, failure_ratio=1.0, cooldown_s=7.0)))
    assert s.record("a", False)[0] is None
    state, cooldown_s, _ = s.record("a", False)
    assert (state, cooldown_s) == (State.OPEN, 7.0)
    s.set_limits(Limits(breaker=BreakerSettings(enabled=False)))
    assert s.breaker_states() == {}


def test_live_config_reads_see_a_reload_and_listeners_get_old_and_new_in_order() -> None:
    first = Config()
    second = first.with_overrides(delivery={"concurrency": 3})
    live = LiveConfig(first)
    heard: list[tuple[str, int, int]] = []
    live.on_change(
        lambda old, new: heard.append(("a", old.delivery.concurrency, live().delivery.concurrency))
    )
    live.on_change(
        lambda old, new: heard.append(("b", old.delivery.concurrency, new.delivery.concurrency))
    )
    assert live() is first
    live.set(second)
    assert live() is second
    before = first.delivery.concurrency
    assert heard == [("a", before, 3), ("b", before, 3)]
