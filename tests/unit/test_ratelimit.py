"""Rates and the token bucket, driven by a fake clock."""

from __future__ import annotations

import random

import pytest

from daemon.ratelimit import TokenBucket, default_burst
from daemon.units import Rate, parse_rate
from tests.unit.conftest import FakeClock


@pytest.mark.parametrize(
    ("text", "tokens", "per_s"),
    [
        ("10/s", 10, 1),
        ("10/sec", 10, 1),
        ("10/second", 10, 1),
        ("100/m", 100, 60),
        ("100/min", 100, 60),
        ("100/minute", 100, 60),
        ("5000/h", 5000, 3600),
        ("5000/hour", 5000, 3600),
        (" 2.5 / s ", 2.5, 1),
        ("0.5/MIN", 0.5, 60),
        (".5/s", 0.5, 1),
    ],
)
def test_rate_parses(text: str, tokens: float, per_s: float) -> None:
    assert parse_rate(text) == Rate(tokens=tokens, per_s=per_s)


@pytest.mark.parametrize(
    "text",
    ["", "10", "/s", "10/", "10/ms", "10/seconds", "-1/s", "1e3/s", "ten/s", "1/s/s"],
)
def test_rate_rejects_bad_text(text: str) -> None:
    with pytest.raises(ValueError, match=r"invalid rate .* \(use e\.g\. 10/s, 100/min"):
        parse_rate(text)


@pytest.mark.parametrize("text", ["0/s", "0.0/min"])
def test_rate_rejects_zero(text: str) -> None:
    with pytest.raises(ValueError, match="must be positive"):
        parse_rate(text)


@pytest.mark.parametrize(("tokens", "per_s"), [(0, 1), (1, 0), (-1, 1), (float("inf"), 1)])
def test_rate_rejects_non_positive_parts(tokens: float, per_s: float) -> None:
    with pytest.raises(ValueError, match="positive"):
        Rate(tokens=tokens, per_s=per_s)


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("100/min", "100/min"),
        ("100/minute", "100/min"),
        ("10/sec", "10/s"),
        ("2.5/s", "2.5/s"),
        ("5000/hour", "5000/h"),
    ],
)
def test_rate_prints_back_in_its_unit(text: str, shown: str) -> None:
    assert str(parse_rate(text)) == shown
    assert parse_rate(str(parse_rate(text))) == parse_rate(text)


def test_rate_with_unusual_period_prints_per_second() -> None:
    assert str(Rate(tokens=5, per_s=2)) == "2.5/s"


def test_rate_per_second_divides_tokens_by_period() -> None:
    assert parse_rate("120/min").per_second == 2.0
    assert parse_rate("3600/h").per_second == 1.0


@pytest.mark.parametrize(("rate_per_s", "burst"), [(0.01, 1), (1, 1), (2.5, 3), (100, 100)])
def test_default_burst_is_one_second_of_tokens_at_least_one(rate_per_s: float, burst: int) -> None:
    assert default_burst(rate_per_s) == burst


def test_bucket_starts_full(clock: FakeClock) -> None:
    bucket = TokenBucket(rate_per_s=1, burst=5, clock=clock)

    assert [bucket.try_take() for _ in range(6)] == [True] * 5 + [False]


def test_bucket_refills_continuously(clock: FakeClock) -> None:
    bucket = TokenBucket(rate_per_s=4, burst=4, clock=clock)
    assert bucket.try_take(4)

    clock.advance(0.125)

    assert bucket.available() == pytest.approx(0.5)
    assert not bucket.try_take()
    clock.advance(0.125)
    assert bucket.try_take()


def test_tokens_never_exceed_burst_after_idle(clock: FakeClock) -> None:
    bucket = TokenBucket(rate_per_s=10, burst=3, clock=clock)
    bucket.try_take()

    clock.advance(3600)

    assert bucket.available() == 3


def test_try_take_many_is_all_or_nothing(clock: FakeClock) -> None:
    bucket = TokenBucket(rate_per_s=1, burst=3, clock=clock)
    assert bucket.try_take(2)

    assert not bucket.try_take(2)
    assert bucket.available() == 1


def test_wait_is_zero_when_tokens_are_there(clock: FakeClock) -> None:
    assert TokenBucket(rate_per_s=1, burst=1, clock=clock).wait_s() == 0


def test_wait_is_time_until_enough_tokens(clock: FakeClock) -> None:
    bucket = TokenBucket(rate_per_s=2, burst=4, clock=clock)
    assert bucket.try_take(4)
    clock.advance(0.25)

    wait_s = bucket.wait_s(3)

    assert wait_s == pytest.approx(1.25)
    clock.advance(wait_s)
    assert bucket.try_take(3)


def test_slow_rate_refill_counts_despite_float_rounding(clock: FakeClock) -> None:
    bucket = TokenBucket(rate_per_s=0.1, burst=1, clock=clock)
    assert bucket.try_take()

    for _ in range(10):
        clock.advance(1.0)

    assert bucket.wait_s() == 0
    assert bucket.try_take()


@pytest.mark.parametrize("n", [0, -1, 4])
def test_taking_more_than_burst_or_nothing_is_an_error(clock: FakeClock, n: int) -> None:
    bucket = TokenBucket(rate_per_s=1, burst=3, clock=clock)

    with pytest.raises(ValueError, match=f"cannot take {n} tokens"):
        bucket.try_take(n)
    with pytest.raises(ValueError, match=f"cannot take {n} tokens"):
        bucket.wait_s(n)


@pytest.mark.parametrize(("rate_per_s", "burst"), [(0, 1), (-1, 1), (float("nan"), 1), (1, 0)])
def test_bucket_rejects_bad_settings(clock: FakeClock, rate_per_s: float, burst: int) -> None:
    with pytest.raises(ValueError, match=r"rate_per_s|burst"):
        TokenBucket(rate_per_s=rate_per_s, burst=burst, clock=clock)
    bucket = TokenBucket(rate_per_s=1, burst=1, clock=clock)
    with pytest.raises(ValueError, match=r"rate_per_s|burst"):
        bucket.update(rate_per_s=rate_per_s, burst=burst)


def test_update_keeps_level_and_clamps_to_new_burst(clock: FakeClock) -> None:
    bucket = TokenBucket(rate_per_s=1, burst=10, clock=clock)
    assert bucket.try_take(4)

    bucket.update(rate_per_s=1, burst=20)
    assert bucket.available() == 6
    bucket.update(rate_per_s=1, burst=3)
    assert bucket.available() == 3
    assert (bucket.rate_per_s, bucket.burst) == (1, 3)


def test_update_credits_elapsed_time_at_old_rate(clock: FakeClock) -> None:
    bucket = TokenBucket(rate_per_s=1, burst=10, clock=clock)
    assert bucket.try_take(10)
    clock.advance(2)

    bucket.update(rate_per_s=4, burst=10)
    clock.advance(1)

    assert bucket.available() == pytest.approx(2 + 4)


def test_clock_stepping_back_loses_no_tokens(clock: FakeClock) -> None:
    bucket = TokenBucket(rate_per_s=1, burst=2, clock=clock)
    assert bucket.try_take()

    clock.advance(-10)

    assert bucket.available() == 1
    assert bucket.try_take()


@pytest.mark.parametrize("seed", range(20))
def test_takes_in_any_window_stay_within_burst_plus_refill(seed: int) -> None:
    rng = random.Random(seed)
    clock = FakeClock(rng.uniform(0, 1e6))
    rate_per_s, burst = rng.choice([0.3, 1.0, 2.5, 7.0, 40.0]), rng.randint(1, 8)
    bucket = TokenBucket(rate_per_s=rate_per_s, burst=burst, clock=clock)
    taken: list[tuple[float, int]] = []
    for _ in range(400):
        clock.advance(rng.expovariate(rate_per_s * rng.choice([0.5, 2, 10])))
        n = rng.randint(1, burst)
        if bucket.try_take(n):
            taken.append((clock(), n))

    assert len(taken) > 10
    for i, (start_s, _) in enumerate(taken):
        in_window = 0
        for end_s, n in taken[i:]:
            in_window += n
            assert in_window <= burst + rate_per_s * (end_s - start_s) + 1e-6
