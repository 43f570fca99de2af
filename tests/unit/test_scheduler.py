"""The scheduler with a fake clock: caps, token buckets, pauses, fairness and claim quotas.

`next()` waits (in real time) for the fake clock to allow something, so "nothing may start"
is checked as "next() did not return within 0.1 s", and the clock is moved by hand.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import replace

from daemon.breaker import BreakerSettings
from daemon.models import Endpoint
from daemon.scheduler import Limits, Scheduler
from tests.unit.conftest import FakeClock
from tests.unit.scheduler_support import (
    NOTHING_S,
    answered,
    deliveries,
    endpoint,
    take,
    take_all,
)


def scheduler(clock: FakeClock, *endpoints: Endpoint, **limits: object) -> Scheduler:
    s = Scheduler(Limits(**limits), clock)  # type: ignore[arg-type]
    for e in endpoints:
        assert s.update_endpoint(e) == []
        answered(s, e.id)
    return s


def offered(s: Scheduler, capacity: int) -> dict[str, int]:
    """What the next claim may take from each endpoint this scheduler knows (0: left out): the
    quota it lists for an endpoint it is busy with, the default for the others."""
    quotas = s.quotas(capacity)
    listed = dict(zip(quotas.ids, quotas.counts, strict=True))
    return {ep: listed.get(ep, quotas.default) for ep in s.endpoint_ids()}


# -- caps -------------------------------------------------------------------------------


async def test_global_cap_is_never_exceeded(clock: FakeClock) -> None:
    eps = [endpoint(f"ep{i}", max_in_flight=10) for i in range(3)]
    s = scheduler(clock, *eps, concurrency=4)
    for ep in eps:
        s.submit(deliveries(ep.id, 5))

    started = await take_all(s)
    assert len(started) == 4
    assert s.in_flight == 4 and s.queued == 11

    s.done(started[0].endpoint_id)
    assert s.in_flight == 3
    assert await take(s) is not None
    assert await take(s) is None
    assert s.in_flight == 4


async def test_random_interleaving_never_exceeds_global_or_endpoint_caps(
    clock: FakeClock,
) -> None:
    rng = random.Random(7)
    caps = {"a": 1, "b": 2, "c": 3, "d": None}  # d: the default (Limits.endpoint_max_in_flight)
    s = scheduler(
        clock,
        *(endpoint(ep_id, max_in_flight=cap) for ep_id, cap in caps.items()),
        concurrency=5,
        endpoint_max_in_flight=2,
    )
    for ep_id in caps:
        s.submit(deliveries(ep_id, 15))
    running: list[str] = []
    delivered = 0
    while delivered < 60:
        picked = await take(s, 0.01)  # short: caps do not lift with time, only with done()
        if picked is not None:
            running.append(picked[0].id)
        if picked is None or rng.random() < 0.4:
            ep_id = running.pop(rng.randrange(len(running)))
            s.done(ep_id)
            delivered += 1
        assert s.in_flight == len(running) <= 5
        for ep_id, cap in caps.items():
            assert running.count(ep_id) <= (cap or 2)
    assert s.in_flight == 0 and s.queued == 0


async def test_endpoint_max_in_flight_holds_back_its_own_deliveries_only(
    clock: FakeClock,
) -> None:
    s = scheduler(clock, endpoint("slow", max_in_flight=2), endpoint("other"), concurrency=10)
    s.submit(deliveries("slow", 5))

    assert len(await take_all(s)) == 2
    s.submit(deliveries("other", 1))
    picked = await take(s)
    assert picked is not None and picked[0].id == "other"

    s.done("slow")
    picked = await take(s)
    assert picked is not None and picked[0].id == "slow"
    assert await take(s) is None


async def test_endpoint_without_own_cap_gets_the_default_cap(clock: FakeClock) -> None:
    s = scheduler(clock, endpoint("ep"), concurrency=10, endpoint_max_in_flight=3)
    s.submit(deliveries("ep", 6))
    assert len(await take_all(s)) == 3


async def test_endpoint_cap_above_the_global_cap_is_clamped_to_it(clock: FakeClock) -> None:
    s = scheduler(clock, endpoint("ep", max_in_flight=50), concurrency=4)
    s.submit(deliveries("ep", 1))
    # Claim quota is twice the (clamped) cap: 8 (less the one it holds), not 100.
    assert offered(s, 1000) == {"ep": 7}


# -- token buckets ----------------------------------------------------------------------


async def test_token_bucket_gates_next(clock: FakeClock) -> None:
    s = scheduler(clock, endpoint("ep", rate_per_s=2.0, burst=2), concurrency=10)
    s.submit(deliveries("ep", 4))

    assert len(await take_all(s)) == 2  # the bucket starts full
    clock.advance(0.25)  # half a token
    assert await take(s) is None
    clock.advance(0.25)
    assert await take(s) is not None
    assert await take(s) is None
    assert s.rate_limited_waits > 0


async def test_waiting_for_a_token_holds_no_slot(clock: FakeClock) -> None:
    s = scheduler(
        clock, endpoint("limited", rate_per_s=1.0, burst=1), endpoint("free"), concurrency=1
    )
    s.submit(deliveries("limited", 2))
    first = await take(s)
    assert first is not None and first[0].id == "limited"
    s.done("limited")  # the bucket is empty now; one delivery of "limited" is queued

    waiter = asyncio.create_task(s.next())
    await asyncio.sleep(NOTHING_S)
    assert not waiter.done()
    assert s.in_flight == 0  # the wait holds no slot...

    s.submit(deliveries("free", 1))
    ep, _ = await asyncio.wait_for(waiter, 1.0)
    assert ep.id == "free"  # ...so the only slot goes to an endpoint that can use it
    assert s.in_flight == 1

    clock.advance(1.0)
    assert await take(s) is None  # a token, but the single slot is busy
    s.done("free")
    picked = await take(s)
    assert picked is not None and picked[0].id == "limited"


# -- fairness ---------------------------------------------------------------------------


async def test_round_robin_hands_small_endpoints_out_within_the_first_picks(
    clock: FakeClock,
) -> None:
    small = [f"small{i}" for i in range(5)]
    s = scheduler(
        clock,
        endpoint("big", max_in_flight=100),
        *(endpoint(ep_id) for ep_id in small),
        concurrency=100,
    )
    s.submit(deliveries("big", 100))  # the big backlog is queued first
    for ep_id in small:
        s.submit(deliveries(ep_id, 1))

    picks = []
    for _ in range(6):
        picked = await take(s)
        assert picked is not None
        picks.append(picked[0].id)
    assert set(small) <= set(picks)
    assert picks.count("big") == 1


async def test_only_endpoints_with_work_here_are_listed_the_rest_get_the_default(
    clock: FakeClock,
) -> None:
    """A claim's cost must not depend on the endpoints a daemon has seen: idle ones are not
    sent at all (the database walks what is due, least recently served first)."""
    s = scheduler(clock, *(endpoint(f"idle{i}") for i in range(100)), endpoint("busy"))
    s.submit(deliveries("busy", 3))
    quotas = s.quotas(100)
    assert quotas.ids == ["busy"] and quotas.counts == [7]  # twice its cap, less what it holds
    assert quotas.default == 10


async def test_the_endpoint_cache_keeps_the_most_recently_claimed_and_every_busy_one(
    clock: FakeClock,
) -> None:
    s = Scheduler(Limits(), clock, max_lanes=3)
    for name in ("a", "b", "c"):
        s.update_endpoint(endpoint(name))
    s.submit(deliveries("a", 1))  # busy: never dropped
    s.update_endpoint(endpoint("d"))
    assert sorted(s.endpoint_ids()) == ["a", "c", "d"]  # b was the least recently claimed
    s.update_endpoint(endpoint("e"))
    assert sorted(s.endpoint_ids()) == ["a", "d", "e"]


# -- claim quotas -----------------------------------------------------------------------


async def test_quota_of_unlimited_endpoint_is_twice_its_cap_less_what_it_holds(
    clock: FakeClock,
) -> None:
    s = scheduler(clock, endpoint("ep", max_in_flight=3), concurrency=10)
    s.submit(deliveries("ep", 4))
    await take(s)
    assert offered(s, 100) == {"ep": 2}  # 6 - 1 in flight - 3 queued
    assert offered(s, 1) == {"ep": 1}  # never more than the capacity offered


async def test_rate_limited_endpoint_is_offered_only_the_tokens_it_has_now(
    clock: FakeClock,
) -> None:
    rate_per_s, burst = 2.0, 3
    s = scheduler(
        clock, endpoint("ep", rate_per_s=rate_per_s, burst=burst, max_in_flight=50), concurrency=50
    )
    s.submit(deliveries("ep", 1))
    assert offered(s, 1000) == {"ep": burst - 1}  # buckets start full

    s.submit(deliveries("ep", burst - 1))
    assert offered(s, 1000) == {"ep": 0}  # every token it has is spoken for already

    assert len(await take_all(s)) == burst
    assert offered(s, 1000) == {"ep": 0}  # bucket empty
    clock.advance(1.0)  # two tokens back
    assert offered(s, 1000) == {"ep": 2}


async def test_rate_limited_endpoint_is_offered_no_more_than_the_free_slots(
    clock: FakeClock,
) -> None:
    s = scheduler(
        clock,
        endpoint("ep", rate_per_s=100.0, burst=100, max_in_flight=50),
        endpoint("busy", max_in_flight=50),
        concurrency=10,
    )
    s.submit(deliveries("busy", 7))
    await take_all(s)
    # Tokens are spent when claimed, so only what can start at once is claimed (the claim
    # statement caps a rate-limited endpoint at the free slots).
    assert s.quotas(1000).free_slots == 3


async def test_local_wait_is_the_pause_left_or_the_next_token(clock: FakeClock) -> None:
    s = scheduler(clock, endpoint("r", rate_per_s=4.0, burst=1), endpoint("u"), concurrency=10)
    assert s.local_wait_s() is None
    s.submit(deliveries("r", 2))
    assert await take(s) is not None  # the only token
    assert s.local_wait_s() == 0.25
    s.pause("u", 3.0)
    clock.advance(0.25)
    assert s.local_wait_s() == 2.75


async def test_default_rate_applies_to_endpoints_without_their_own(clock: FakeClock) -> None:
    s = scheduler(clock, endpoint("ep"), concurrency=50, default_rate_per_s=4.0)
    s.submit(deliveries("ep", 1))
    # Default burst: one second's worth, 4 tokens, all there from the start.
    assert offered(s, 1000) == {"ep": 3}


async def test_paused_endpoint_is_offered_nothing_until_the_pause_ends(clock: FakeClock) -> None:
    s = scheduler(clock, endpoint("paused"), endpoint("other"), concurrency=10)
    s.pause("paused", 5.0)
    assert offered(s, 10) == {"paused": 0, "other": 10}
    clock.advance(4.9)
    assert offered(s, 10) == {"paused": 0, "other": 10}
    clock.advance(0.1)
    assert offered(s, 10) == {"paused": 10, "other": 10}


async def test_pause_returns_queued_deliveries_and_blocks_new_starts(clock: FakeClock) -> None:
    s = scheduler(clock, endpoint("ep"), concurrency=10)
    batch = deliveries("ep", 3)
    s.submit(batch)
    first = await take(s)
    assert first is not None

    assert s.pause("ep", 2.0) == batch[1:]
    assert s.queued == 0 and s.in_flight == 1  # the running attempt is not touched
    s.submit(deliveries("ep", 1))  # e.g. a claim that raced the pause
    assert await take(s) is None
    clock.advance(2.0)
    assert await take(s) is not None


async def test_shorter_pause_never_cuts_a_longer_one(clock: FakeClock) -> None:
    s = scheduler(clock, endpoint("ep"), concurrency=10)
    s.pause("ep", 10.0)
    s.pause("ep", 1.0)
    clock.advance(5.0)
    assert offered(s, 10) == {"ep": 0}


async def test_pause_of_unknown_endpoint_is_a_no_op(clock: FakeClock) -> None:
    s = scheduler(clock, endpoint("ep"), concurrency=10)
    assert s.pause("gone", 1.0) == []


async def test_disabled_endpoint_is_dropped_and_its_queue_returned(clock: FakeClock) -> None:
    a, b = endpoint("a"), endpoint("b")
    s = scheduler(clock, a, b, concurrency=10)
    queued_a = deliveries("a", 3)
    s.submit(queued_a)
    s.submit(deliveries("b", 1))

    assert s.update_endpoint(replace(a, enabled=False)) == queued_a
    assert s.queued == 1
    assert offered(s, 10) == {"b": 9}
    assert s.endpoint_ids() == ["b"]
    assert s.endpoint("a") is None
    late = deliveries("a", 1)
    assert s.submit(late) == late  # a claim that raced the change comes straight back


async def test_removed_endpoint_with_attempts_running_is_kept_until_they_finish(
    clock: FakeClock,
) -> None:
    s = scheduler(clock, endpoint("a"), endpoint("b"), concurrency=10)
    batch = deliveries("a", 2)
    s.submit(batch)
    assert await take(s) is not None

    assert s.remove_endpoint("a") == batch[1:]
    kept = s.endpoint("a")
    assert kept is not None and not kept.enabled
    assert offered(s, 10) == {"a": 0, "b": 10}
    s.done("a")
    assert s.endpoint("a") is None
    assert s.in_flight == 0


# -- capacity and shutdown --------------------------------------------------------------


async def test_capacity_is_never_negative(clock: FakeClock) -> None:
    s = scheduler(clock, endpoint("ep", max_in_flight=10), concurrency=10, batch_size=20)
    assert s.capacity() == 10
    s.submit(deliveries("ep", 500))  # far more than was asked for
    assert s.capacity() == 0
    await take_all(s)
    assert s.in_flight == 10
    assert s.capacity() == 0


async def test_deliveries_queued_behind_their_endpoints_cap_leave_capacity_to_others(
    clock: FakeClock,
) -> None:
    s = scheduler(clock, endpoint("hung", max_in_flight=5), endpoint("live"), concurrency=10)
    s.submit(deliveries("hung", 10))  # its whole quota: 5 to run, 5 more behind its cap
    assert s.capacity() == 5  # only 5 can start now
    assert len(await take_all(s)) == 5  # the 5 hang (a receiver that never answers)
    assert s.capacity() == 5  # the 5 waiting behind them must not eat the other half too
    assert offered(s, s.capacity()) == {"hung": 0, "live": 5}


async def test_a_claim_is_wanted_only_once_half_the_target_is_free(clock: FakeClock) -> None:
    """Claims come in batches: one finishing attempt does not make a round trip worth it."""
    s = scheduler(clock, endpoint("ep", max_in_flight=10), concurrency=10, batch_size=20)
    assert s.wants_claim()  # idle: the whole target (the cap, 10) is free
    s.submit(deliveries("ep", 10))
    started = await take_all(s)
    assert len(started) == 10 and not s.wants_claim()
    for d in started[:4]:
        s.done(d.endpoint_id)
    assert s.capacity() == 4 and not s.wants_claim() and not s.hunger.is_set()
    s.done(started[4].endpoint_id)
    assert s.wants_claim() and s.hunger.is_set()


async def test_an_idle_slot_wants_a_claim_at_once_while_more_is_due(clock: FakeClock) -> None:
    """Start-up: endpoints that have not answered start one attempt each while others are
    busy, so a claim of a few of them leaves slots idle that nothing queued can take. Those
    slots must not wait for half the target to free up (about one receiver latency), but
    only while the last claim said more is due: otherwise each finished attempt would set
    off an empty claim."""
    s = Scheduler(Limits(concurrency=10), clock)
    for ep in (endpoint("a", max_in_flight=5), endpoint("b"), endpoint("c")):
        assert s.update_endpoint(ep) == []
    answered(s, "a")
    s.submit(deliveries("a", 10) + deliveries("b", 3) + deliveries("c", 3))
    started = await take_all(s)
    assert len(started) == 7  # a's cap of 5, then one each for b and c (a slow start)
    assert s.capacity() == 3  # three slots idle; under half the target (10)

    s.more_due = False
    assert not s.wants_claim()
    s.more_due = True
    assert s.wants_claim()


async def test_a_finished_attempt_hands_its_slot_to_the_next_delivery(clock: FakeClock) -> None:
    s = scheduler(clock, endpoint("a", max_in_flight=1), endpoint("b"), concurrency=1)
    s.submit(deliveries("a", 2) + deliveries("b", 1))
    first = await take(s)
    assert first is not None and first[0].id == "a"
    s.done("a", wake=False)
    handed = s.take_now()
    assert handed is not None and handed[0].id == "b"  # round-robin, not the same lane
    assert s.in_flight == 1 and s.take_now() is None  # the cap holds


async def test_take_now_with_nothing_startable_wakes_the_dispatcher(clock: FakeClock) -> None:
    s = scheduler(clock, endpoint("a", rate_per_s=1.0, burst=1), concurrency=2)
    s.submit(deliveries("a", 2))
    assert await take(s) is not None  # spends the only token
    waiter = asyncio.ensure_future(s.next())
    await asyncio.sleep(0)
    s.done("a", wake=False)
    assert s.take_now() is None  # no token yet
    clock.advance(1.0)
    picked = await asyncio.wait_for(waiter, 0.5)  # woken at once: the token is due now
    assert picked[0].id == "a"


async def test_a_probe_without_a_verdict_does_not_leave_the_endpoint_stuck(
    clock: FakeClock,
) -> None:
    breaker = BreakerSettings(window=2, failure_ratio=1.0, cooldown_s=5.0)
    s = scheduler(clock, endpoint("ep", max_in_flight=5), concurrency=5, breaker=breaker)
    for _ in range(2):
        s.record("ep", ok=False)  # opens: a cool-down of 5 s
    clock.advance(5.0)  # half-open: one probe
    s.submit(deliveries("ep", 2))
    assert len(await take_all(s)) == 1
    s.done("ep")
    s.no_verdict("ep")  # e.g. its payload was over the limit
    assert len(await take_all(s)) == 1  # the next attempt probes


async def test_drain_queued_returns_everything_not_started(clock: FakeClock) -> None:
    eps = [endpoint(f"ep{i}", rate_per_s=1.0, burst=1) for i in range(3)]
    s = scheduler(clock, *eps, concurrency=10)
    batches = [deliveries(ep.id, 4) for ep in eps]
    for batch in batches:
        s.submit(batch)
    started = await take_all(s)
    assert len(started) == 3

    drained = s.drain_queued()
    assert sorted(d.id for d in drained + started) == sorted(d.id for b in batches for d in b)
    assert s.queued == 0 and s.in_flight == 3
    clock.advance(10.0)
    assert await take(s) is None
