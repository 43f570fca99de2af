"""Retry schedules, Retry-After, and the retry-or-dead-letter decision.

Pure: randomness comes from an injected `random.Random`, time from the caller.

A schedule lists the delay after each failed attempt: (4, 8, 10) allows four attempts, the second
4 s after the first fails, the third 8 s after the second, the fourth 10 s after the third; a
fourth failure dead-letters the delivery.
"""

from __future__ import annotations

import email.utils
import math
import random
import re
from collections.abc import Sequence
from datetime import UTC
from typing import Final

from daemon.models import AttemptResult, RetryDecision

# Standard Webhooks: immediately, then 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h (8 attempts).
DEFAULT_SCHEDULE_S: Final[tuple[float, ...]] = (5, 300, 1800, 7200, 18000, 36000, 36000)
# Failures that another attempt cannot fix: the delivery is dead-lettered at once.
NOT_RETRIED_ERROR_CLASSES: Final = frozenset(
    {"refused_destination", "payload_too_large", "endpoint_deleted", "invalid_message"}
)

_DELTA_SECONDS_RE: Final = re.compile(r"\d+(?:\.\d+)?")


def decide(
    attempt: int,
    result: AttemptResult,
    schedule_s: Sequence[float],
    *,
    jitter: float,
    rng: random.Random,
    max_retry_after_s: float,
) -> RetryDecision | None:
    """What follows attempt number `attempt` (1-based): None on success, else retry or give up.

    `jitter` is a fraction: 0.1 spreads each delay over +-10% so failed bursts do not come back
    in lockstep. A Retry-After from the receiver (capped at `max_retry_after_s`) is a floor.
    """
    if attempt < 1:
        raise ValueError(f"attempt numbers start at 1, got {attempt}")
    if not 0 <= jitter <= 1:
        raise ValueError(f"jitter must be a fraction in [0, 1], got {jitter}")
    if result.ok:
        return None
    reason = describe_failure(result)
    if result.error_class in NOT_RETRIED_ERROR_CLASSES:
        return RetryDecision(retry=False, delay_s=0.0, reason=reason)
    if attempt > len(schedule_s):
        attempts = f"{attempt} attempt" + ("s" if attempt > 1 else "")
        return RetryDecision(retry=False, delay_s=0.0, reason=f"gave up after {attempts}: {reason}")
    delay_s = _jittered(schedule_s[attempt - 1], jitter, rng)
    if result.retry_after_s is not None:
        delay_s = max(delay_s, min(result.retry_after_s, max_retry_after_s))
    return RetryDecision(retry=True, delay_s=delay_s, reason=reason)


def describe_failure(result: AttemptResult) -> str:
    """One line for last_error: `http 500`, or `timeout: read timed out after 10s`."""
    if result.error:
        return f"{result.error_class or 'error'}: {result.error}"
    if result.status_code is not None:
        return f"http {result.status_code}"
    return result.error_class or "unknown error"


def parse_retry_after(value: str, now_s: float) -> float | None:
    """Seconds to wait from a Retry-After value (delta-seconds or HTTP-date), None if unreadable."""
    text = value.strip()
    if _DELTA_SECONDS_RE.fullmatch(text):
        seconds = float(text)
        return seconds if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:  # asctime and "-0000" forms parse naive; HTTP-dates are all GMT
        when = when.replace(tzinfo=UTC)
    return max(0.0, when.timestamp() - now_s)


def _jittered(delay_s: float, jitter: float, rng: random.Random) -> float:
    if jitter == 0:
        return delay_s  # exact, and leaves the rng untouched
    return max(0.0, delay_s * (1 + rng.uniform(-jitter, jitter)))
