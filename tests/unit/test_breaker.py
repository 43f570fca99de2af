"""The circuit breaker's state machine, on a fake clock."""

from __future__ import annotations

from daemon.breaker import BreakerSettings, CircuitBreaker, State
from tests.unit.conftest import FakeClock

SETTINGS = BreakerSettings(window=4, failure_ratio=0.75, cooldown_s=10.0)


def test_opens_only_when_the_window_is_full_and_mostly_failing(clock: FakeClock) -> None:
    breaker = CircuitBreaker(SETTINGS, clock)
    assert [breaker.record(False) for _ in range(3)] == [None, None, None]
    assert breaker.state is State.CLOSED  # three failures, but the window is not full yet
    assert breaker.record(True) is State.OPEN  # 3 of 4 failed: at the ratio, it opens
    assert breaker.allows(0) == 0

    below = CircuitBreaker(SETTINGS, clock)
    assert [below.record(ok) for ok in (False, True, False, True)] == [None] * 4
    assert below.state is State.CLOSED  # 2 of 4 is below the ratio


def test_a_healthy_mix_never_opens(clock: FakeClock) -> None:
    breaker = CircuitBreaker(SETTINGS, clock)
    for i in range(100):
        assert breaker.record(i % 2 == 0) is None
    assert breaker.allows(3) == -1


def open_breaker(clock: FakeClock) -> CircuitBreaker:
    breaker = CircuitBreaker(SETTINGS, clock)
    for _ in range(4):
        breaker.record(False)
    assert breaker.state is State.OPEN
    return breaker


def test_after_the_cooldown_exactly_one_probe_is_allowed(clock: FakeClock) -> None:
    breaker = open_breaker(clock)
    assert breaker.open_for_s() == 10.0
    clock.advance(9.9)
    assert breaker.allows(0) == 0
    clock.advance(0.1)
    assert breaker.state is State.HALF_OPEN
    assert breaker.allows(0) == 1
    breaker.started()
    assert breaker.allows(0) == 0  # the probe is out
    assert breaker.allows(1) == 0


def test_a_successful_probe_closes_it(clock: FakeClock) -> None:
    breaker = open_breaker(clock)
    clock.advance(10)
    breaker.started()
    assert breaker.record(True) is State.CLOSED
    assert breaker.allows(5) == -1


def test_a_probe_that_says_nothing_about_the_endpoint_lets_another_probe(
    clock: FakeClock,
) -> None:
    breaker = open_breaker(clock)
    clock.advance(10)
    breaker.started()
    assert breaker.allows(0) == 0
    breaker.abandon_probe()  # e.g. the payload was over the limit: no verdict
    assert breaker.state is State.HALF_OPEN
    assert breaker.allows(0) == 1


def test_a_failed_probe_reopens_it_for_twice_as_long_up_to_sixteen_times(
    clock: FakeClock,
) -> None:
    breaker = open_breaker(clock)
    cooldowns = []
    for _ in range(6):
        clock.advance(breaker.open_for_s())
        breaker.started()
        assert breaker.record(False) is State.OPEN
        cooldowns.append(breaker.open_for_s())
    assert cooldowns == [20.0, 40.0, 80.0, 160.0, 160.0, 160.0]


def test_results_of_attempts_started_before_it_opened_are_ignored(clock: FakeClock) -> None:
    breaker = open_breaker(clock)
    assert breaker.record(True) is None
    assert breaker.state is State.OPEN
