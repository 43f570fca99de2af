"""Plain data passed between the stages: endpoints, claimed deliveries, attempt results."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from daemon.templates import ChatPayload

# Failures that say nothing about the endpoint's health (policy refusals, our own limits): they
# feed neither the circuit breaker nor the failing streak that disables an endpoint.
NOT_ENDPOINT_HEALTH = frozenset(
    {
        "refused_destination",
        "payload_too_large",
        "invalid_message",
        # the forward proxy's failures say nothing about the receiver
        "proxy_unreachable",
        "proxy_refused",
        "proxy_auth",
        "proxy_error",
    }
)


class Status(enum.StrEnum):
    """Delivery states as stored in webhookd.deliveries.status."""

    PENDING = "pending"
    DELIVERING = "delivering"
    DELIVERED = "delivered"
    FAILED = "failed"  # dead letter


@dataclass(frozen=True, slots=True)
class SignatureSpec:
    """How an endpoint wants its deliveries signed."""

    scheme: str = "standard"  # "standard" | "standard-ed25519" | "hmac-sha256-hex"
    header: str = ""  # only for hmac-sha256-hex
    prefix: str = ""  # e.g. "sha256="


@dataclass(frozen=True, slots=True)
class Endpoint:
    """An endpoint as the daemon needs it (secrets in clear, after decryption if any)."""

    id: str
    tenant_id: str
    url: str
    enabled: bool
    secret: str
    # (secret, unix time its rotation grace ends): signed alongside `secret` until then
    previous_secrets: tuple[tuple[str, float], ...] = ()
    signature: SignatureSpec = field(default_factory=SignatureSpec)
    headers: tuple[tuple[str, str], ...] = ()
    rate_per_s: float | None = None  # None: the configured default applies
    burst: int | None = None
    max_in_flight: int | None = None
    timeout_s: float | None = None  # None: delivery.timeout
    retry_schedule_s: tuple[float, ...] | None = None  # None: delivery.retry_schedule
    event_types: tuple[str, ...] = ()  # empty: every event type
    version: int = 0  # bumped on every change; lets caches notice
    # Slack, Discord or Teams: the body is rendered from templates parsed once, when the
    # settings were loaded. None: the payload is sent as it is (raw).
    chat: ChatPayload | None = None
    # The forward proxy: None: delivery.proxy; "none": direct; else an http:// proxy URL.
    proxy: str | None = None


@dataclass(frozen=True, slots=True)
class Delivery:
    """One (message, endpoint) pair, claimed under a lease."""

    id: int
    endpoint_id: str
    msg_id: str
    event_type: str
    payload: bytes  # the exact bytes that are signed and sent (empty when over the limit)
    attempt: int  # number of this attempt, 1-based, counted over every series (replays)
    created_at_s: float  # unix time the message was enqueued
    # attempts made before the current series began (a replay or re-queue starts a new one)
    attempt_base: int = 0
    # the claim's fencing token: renewals, outcomes and releases apply only where it matches
    lease_token: int = 0
    # the payload's size in bytes; a payload over delivery.max_payload is not loaded at all
    payload_bytes: int = -1
    ordering_key: str | None = None
    lease_s: float = 0.0  # the lease the claim took: the endpoint's timeout plus the margin
    endpoint_version: int = 0  # the endpoint's settings version when it was claimed

    @property
    def size(self) -> int:
        return len(self.payload) if self.payload_bytes < 0 else self.payload_bytes

    @property
    def series_attempt(self) -> int:
        """Number of this attempt within its series: what the retry schedule applies to.
        (At least 1, even for a base written by hand past the attempts made.)"""
        return max(1, self.attempt - self.attempt_base)

    @classmethod
    def from_record(cls, rec: Any) -> Delivery:
        payload = rec["payload"]
        return cls(
            id=rec["id"],
            endpoint_id=rec["endpoint_id"],
            msg_id=rec["msg_id"],
            event_type=rec["event_type"],
            payload=b"" if payload is None else payload,
            attempt=rec["attempts"] + 1,
            created_at_s=rec["created_at"].timestamp(),
            attempt_base=rec["attempt_base"],
            lease_token=rec["lease_token"],
            payload_bytes=rec["payload_bytes"],
            ordering_key=rec["ordering_key"],
            lease_s=float(rec["lease_s"]),
            endpoint_version=rec["endpoint_version"],
        )


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """What one HTTP attempt produced. `error_class` is set when no 2xx was obtained."""

    started_at_s: float
    duration_s: float
    status_code: int | None = None
    error_class: str | None = None  # e.g. "timeout", "connect_refused", "http_500"
    error: str | None = None  # short human text, never contains secrets
    response_body: bytes = b""  # already truncated to the stored size
    retry_after_s: float | None = None  # parsed from 429/503 Retry-After
    # time.monotonic() at the start: the recorder turns it into "this long ago", so the
    # attempt's start is stored on the database's clock (None: use started_at_s)
    started_mono: float | None = None

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    @property
    def about_endpoint(self) -> bool:
        """Whether this result says something about the endpoint's health."""
        return self.error_class not in NOT_ENDPOINT_HEALTH


@dataclass(frozen=True, slots=True)
class RetryDecision:
    """Whether to attempt again, after how long, and why (kept as last_error on dead letter)."""

    retry: bool
    delay_s: float
    reason: str


@dataclass(frozen=True, slots=True)
class Outcome:
    """A finished attempt and what happens next, ready to be written back in a batch."""

    delivery: Delivery
    result: AttemptResult
    decision: RetryDecision | None  # None when the attempt succeeded
