"""Durations, schedules, Retry-After and the retry-or-dead-letter decision."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from email.utils import format_datetime

import pytest

from daemon.models import AttemptResult, RetryDecision
from daemon.retry import DEFAULT_SCHEDULE_S, decide, describe_failure, parse_retry_after
from daemon.units import format_duration, format_schedule, parse_duration, parse_schedule

HTTP_500 = AttemptResult(started_at_s=0, duration_s=0.1, status_code=500, error_class="http_500")
TIMEOUT = AttemptResult(
    started_at_s=0, duration_s=10, error_class="timeout", error="read timed out after 10s"
)
OK = AttemptResult(started_at_s=0, duration_s=0.1, status_code=204)


def failed(
    *,
    status_code: int | None = None,
    error_class: str | None = None,
    error: str | None = None,
    retry_after_s: float | None = None,
) -> AttemptResult:
    return AttemptResult(
        started_at_s=0,
        duration_s=0.1,
        status_code=status_code,
        error_class=error_class,
        error=error,
        retry_after_s=retry_after_s,
    )


def decide_exact(
    attempt: int, result: AttemptResult, schedule_s: tuple[float, ...]
) -> RetryDecision | None:
    return decide(
        attempt, result, schedule_s, jitter=0, rng=random.Random(0), max_retry_after_s=3600
    )


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("250ms", 0.25),
        ("30s", 30),
        ("1.5s", 1.5),
        ("0s", 0),
        ("5m", 300),
        ("2h", 7200),
        ("1d", 86400),
        ("1.5m", 90),
        ("10", 10),
        ("0.5", 0.5),
        (" 30 s ", 30),
        ("1ms", 0.001),
    ],
)
def test_duration_parses(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    "text", ["", "s", "-1s", "-5", "1w", "5 min", "1e3s", "inf", "nan", "1s2", "1.2.3s", "5M"]
)
def test_duration_rejects_bad_text(text: str) -> None:
    message = f"invalid duration {text!r} (use e.g. 250ms, 30s, 5m, 2h)"

    with pytest.raises(ValueError) as excinfo:
        parse_duration(text)

    assert str(excinfo.value) == message


def test_duration_rejects_overflow() -> None:
    with pytest.raises(ValueError, match="too large"):
        parse_duration("9" * 400 + "d")


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (0.25, "250ms"),
        (1.5, "1500ms"),
        (0.001, "1ms"),
        (30, "30s"),
        (90, "90s"),
        (300, "5m"),
        (5400, "90m"),
        (7200, "2h"),
        (36000, "10h"),
        (86400, "1d"),
        (0.0001, "0.0001s"),
        (1e-7, "0.0000001s"),
    ],
)
def test_duration_formats_in_largest_whole_unit(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_formatted_duration_parses_back_to_the_same_seconds() -> None:
    rng = random.Random(7)
    values = [rng.uniform(0, 1e6) for _ in range(500)]
    values += [rng.randint(0, 10**6) / 1000 for _ in range(500)]
    values += [rng.randint(0, 1000) * unit for unit in (1, 60, 3600, 86400) for _ in range(50)]

    for seconds in values:
        assert parse_duration(format_duration(seconds)) == seconds


@pytest.mark.parametrize("seconds", [-1, float("inf"), float("nan")])
def test_duration_format_rejects_negative_and_non_finite(seconds: float) -> None:
    with pytest.raises(ValueError, match="cannot format duration"):
        format_duration(seconds)


def test_schedule_parses_comma_separated_durations() -> None:
    assert parse_schedule("4s,8s,10s") == (4, 8, 10)
    assert parse_schedule(" 250ms, 5m ,1h") == (0.25, 300, 3600)


@pytest.mark.parametrize("text", ["", "  "])
def test_empty_schedule_means_no_retries(text: str) -> None:
    assert parse_schedule(text) == ()


def test_schedule_allows_50_entries_and_no_more() -> None:
    assert len(parse_schedule(",".join(["1s"] * 50))) == 50

    with pytest.raises(ValueError, match="51 entries"):
        parse_schedule(",".join(["1s"] * 51))


@pytest.mark.parametrize("text", ["4s,,8s", "4s,", "4s;8s", "4s,-1s"])
def test_schedule_rejects_bad_entries(text: str) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_schedule(text)


def test_schedule_formats_back_to_text() -> None:
    assert format_schedule(DEFAULT_SCHEDULE_S) == "5s,5m,30m,2h,5h,10h,10h"
    assert parse_schedule(format_schedule(DEFAULT_SCHEDULE_S)) == DEFAULT_SCHEDULE_S


def test_success_needs_no_decision() -> None:
    assert decide_exact(1, OK, (4, 8, 10)) is None
    assert decide_exact(99, OK, ()) is None


def test_schedule_lists_delay_after_each_failed_attempt() -> None:
    delays = [decide_exact(attempt, HTTP_500, (4, 8, 10)) for attempt in (1, 2, 3)]

    assert delays == [
        RetryDecision(retry=True, delay_s=4, reason="http 500"),
        RetryDecision(retry=True, delay_s=8, reason="http 500"),
        RetryDecision(retry=True, delay_s=10, reason="http 500"),
    ]


def test_failure_after_last_scheduled_attempt_dead_letters() -> None:
    decision = decide_exact(4, TIMEOUT, (4, 8, 10))

    assert decision == RetryDecision(
        retry=False,
        delay_s=0,
        reason="gave up after 4 attempts: timeout: read timed out after 10s",
    )


def test_empty_schedule_dead_letters_first_failure() -> None:
    decision = decide_exact(1, HTTP_500, ())

    assert decision == RetryDecision(
        retry=False, delay_s=0, reason="gave up after 1 attempt: http 500"
    )


def test_default_schedule_allows_eight_attempts_standard_webhooks_delays() -> None:
    decisions = [decide_exact(attempt, HTTP_500, DEFAULT_SCHEDULE_S) for attempt in range(1, 9)]

    assert [d.delay_s for d in decisions if d and d.retry] == [
        5,
        5 * 60,
        30 * 60,
        2 * 3600,
        5 * 3600,
        10 * 3600,
        10 * 3600,
    ]
    assert decisions[-1] is not None
    assert decisions[-1].reason.startswith("gave up after 8 attempts")


@pytest.mark.parametrize(
    "result",
    [
        failed(status_code=302, error_class="http_302"),
        failed(status_code=404, error_class="http_404"),
        failed(status_code=429, error_class="http_429"),
        failed(error_class="connect_refused", error="connection refused"),
        failed(error_class="tls", error="certificate verify failed"),
        TIMEOUT,
    ],
)
def test_every_ordinary_failure_is_retried(result: AttemptResult) -> None:
    decision = decide_exact(1, result, (4,))

    assert decision is not None
    assert decision.retry


@pytest.mark.parametrize(
    "error_class",
    ["refused_destination", "payload_too_large", "endpoint_deleted", "invalid_message"],
)
def test_failure_retrying_cannot_fix_dead_letters_at_once(error_class: str) -> None:
    decision = decide_exact(1, failed(error_class=error_class, error="nope"), DEFAULT_SCHEDULE_S)

    assert decision == RetryDecision(retry=False, delay_s=0, reason=f"{error_class}: nope")


def test_jitter_spreads_delays_within_the_fraction() -> None:
    rng = random.Random(42)

    decisions = [
        decide(1, HTTP_500, (100,), jitter=0.2, rng=rng, max_retry_after_s=0) for _ in range(1000)
    ]

    delays = [d.delay_s for d in decisions if d is not None]
    assert len(delays) == 1000
    assert all(80 <= d <= 120 for d in delays)
    assert min(delays) < 85
    assert max(delays) > 115


def test_jitter_is_reproducible_with_a_seeded_rng() -> None:
    def delay(seed: int) -> float | None:
        d = decide(2, HTTP_500, (4, 8), jitter=0.5, rng=random.Random(seed), max_retry_after_s=0)
        return d.delay_s if d else None

    assert delay(1) == delay(1)
    assert delay(1) != delay(2)


def test_zero_jitter_is_exact_and_leaves_rng_untouched() -> None:
    rng = random.Random(3)
    state = rng.getstate()

    decision = decide(1, HTTP_500, (7.5,), jitter=0, rng=rng, max_retry_after_s=0)

    assert decision is not None
    assert decision.delay_s == 7.5
    assert rng.getstate() == state


def test_full_jitter_never_gives_a_negative_delay() -> None:
    rng = random.Random(5)

    for _ in range(1000):
        decision = decide(1, HTTP_500, (1,), jitter=1, rng=rng, max_retry_after_s=0)
        assert decision is not None
        assert decision.delay_s >= 0


def test_retry_after_longer_than_schedule_sets_the_delay() -> None:
    result = failed(status_code=429, error_class="http_429", retry_after_s=120)

    decision = decide(1, result, (5,), jitter=0.1, rng=random.Random(0), max_retry_after_s=3600)

    assert decision is not None
    assert decision.delay_s == 120


def test_retry_after_is_capped() -> None:
    result = failed(status_code=503, error_class="http_503", retry_after_s=86400)

    decision = decide(1, result, (5,), jitter=0, rng=random.Random(0), max_retry_after_s=600)

    assert decision is not None
    assert decision.delay_s == 600


def test_retry_after_shorter_than_schedule_keeps_schedule() -> None:
    result = failed(status_code=429, error_class="http_429", retry_after_s=1)

    assert decide_exact(1, result, (30,)) == RetryDecision(True, 30, "http 429")


def test_retry_after_does_not_extend_the_schedule() -> None:
    result = failed(status_code=429, error_class="http_429", retry_after_s=1)

    decision = decide_exact(2, result, (30,))

    assert decision is not None
    assert not decision.retry


@pytest.mark.parametrize("attempt", [0, -1])
def test_attempts_are_numbered_from_one(attempt: int) -> None:
    with pytest.raises(ValueError, match="start at 1"):
        decide_exact(attempt, HTTP_500, (1,))


@pytest.mark.parametrize("jitter", [-0.1, 1.5])
def test_jitter_outside_zero_to_one_is_rejected(jitter: float) -> None:
    with pytest.raises(ValueError, match="jitter"):
        decide(1, HTTP_500, (1,), jitter=jitter, rng=random.Random(), max_retry_after_s=0)


@pytest.mark.parametrize(
    ("result", "reason"),
    [
        (HTTP_500, "http 500"),
        (failed(status_code=500), "http 500"),
        (TIMEOUT, "timeout: read timed out after 10s"),
        (
            failed(status_code=502, error_class="http_502", error="bad gateway"),
            "http_502: bad gateway",
        ),
        (failed(error="something odd"), "error: something odd"),
        (failed(error_class="connect_refused"), "connect_refused"),
        (failed(), "unknown error"),
    ],
)
def test_failure_is_described_in_one_line(result: AttemptResult, reason: str) -> None:
    assert describe_failure(result) == reason


NOW_S = datetime(2015, 10, 21, 7, 0, 0, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("120", 120),
        (" 0 ", 0),
        ("1.5", 1.5),
        ("Wed, 21 Oct 2015 07:28:00 GMT", 28 * 60),
        ("Wednesday, 21-Oct-15 07:28:00 GMT", 28 * 60),
        ("Wed Oct 21 07:28:00 2015", 28 * 60),
        ("Wed, 21 Oct 2015 06:00:00 GMT", 0),
    ],
)
def test_retry_after_parses_seconds_and_http_dates(value: str, seconds: float) -> None:
    assert parse_retry_after(value, NOW_S) == seconds


def test_retry_after_date_is_relative_to_now() -> None:
    when = datetime(2030, 1, 1, tzinfo=UTC)

    assert parse_retry_after(format_datetime(when, usegmt=True), when.timestamp() - 90) == 90


@pytest.mark.parametrize(
    "value", ["", "soon", "-5", "1e3", "Wed, 99 Oct 2015 07:28:00 GMT", "9" * 400]
)
def test_unreadable_retry_after_is_none(value: str) -> None:
    assert parse_retry_after(value, NOW_S) is None
