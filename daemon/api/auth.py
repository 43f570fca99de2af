"""Who is calling: `Authorization: Bearer <token>` checked against webhookd.api_tokens.

A token found good is trusted for `cache_s` (a revocation takes that long to bite) so a busy
client costs no lookup per request. Failures (missing, unknown, revoked or expired token) are
counted and limited per client address: past `failures` (a token bucket) the client gets 429
with Retry-After and no lookup at all. Tokens and the header are never logged.
"""

from __future__ import annotations

import hmac
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final, TypeVar

from daemon.api import tokens
from daemon.api.errors import ApiError, unauthorized
from daemon.ratelimit import TokenBucket
from daemon.units import Rate

if TYPE_CHECKING:
    from daemon.store import Record, Store

_MAX_TRACKED: Final = 10_000  # client addresses or cached tokens kept before pruning
_DUMMY_HASH: Final = tokens.digest("not a token")
FAILURE_REASONS: Final = ("missing", "unknown", "revoked", "expired", "rate_limited")
_K = TypeVar("_K", bytes, str)  # a cache's key: a token's digest, or a token's id


@dataclass(frozen=True, slots=True)
class Principal:
    """What a token allows: `admin` writes, `read` only reads; `app_id` None is every app.
    `kind` 'portal-link' may only be exchanged for a portal session (daemon/api/portal.py)."""

    token_id: str
    scope: str
    app_id: str | None
    kind: str = "api"

    @property
    def can_write(self) -> bool:
        return self.scope == "admin"


class Authenticator:
    """Turns an Authorization header into a `Principal`, or raises 401/429."""

    def __init__(
        self,
        store: Store,
        *,
        cache_s: float,
        failures: Rate,
        on_failure: Callable[[str], None] = lambda _reason: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._cache_s = cache_s
        self._failures = failures
        self._on_failure = on_failure
        self._clock = clock
        self._cache: dict[bytes, tuple[Principal, float]] = {}  # by the token's digest
        self._by_id: dict[str, tuple[Principal, float]] = {}  # console sessions' tokens
        self._buckets: dict[str, TokenBucket] = {}

    async def authenticate(self, authorization: str | None, client: str) -> Principal:
        self._limit(client)
        scheme, _, token = (authorization or "").strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise self._failed(client, "missing", "missing Authorization: Bearer <token> header")
        principal = await self._check(token.strip())
        if isinstance(principal, str):
            raise self._failed(client, principal, "invalid, revoked or expired token")
        return principal

    async def authenticate_id(self, token_id: str, client: str) -> Principal:
        """The principal of a console session, which knows its token by id only: checked as
        the token would be (revoked or expired: 401), cached as long."""
        self._limit(client)
        cached = self._by_id.get(token_id)
        now = self._clock()
        if cached is not None and cached[1] > now:
            return cached[0]
        row = await self._store.fetchrow("api_token_get", token_id=token_id)
        principal = "unknown" if row is None else self._principal(row, self._by_id, token_id)
        if isinstance(principal, str):
            raise self._failed(
                client, principal, "this console session's token was revoked or expired"
            )
        return principal

    def _limit(self, client: str) -> None:
        """429, without a lookup, for an address past its failures."""
        bucket = self._buckets.get(client)
        if bucket is not None and bucket.available() < 1:
            self._on_failure("rate_limited")
            retry_after = str(max(1, math.ceil(bucket.wait_s())))
            raise ApiError(
                429,
                "rate_limited",
                "too many failed authentications from this address",
                {"Retry-After": retry_after},
            )

    async def _check(self, token: str) -> Principal | str:
        """The principal, or why not (a failure reason)."""
        key = tokens.digest(token)
        cached = self._cache.get(key)
        now = self._clock()
        if cached is not None and cached[1] > now:
            return cached[0]
        ident = tokens.token_id(token)
        row = None if ident is None else await self._store.fetchrow("api_token_get", token_id=ident)
        stored = _DUMMY_HASH if row is None else bytes(row["token_hash"])
        if not hmac.compare_digest(stored, key) or row is None:
            return "unknown"
        return self._principal(row, self._cache, key)

    def _principal(
        self, row: Record, cache: dict[_K, tuple[Principal, float]], key: _K
    ) -> Principal | str:
        """The principal of a token's row, trusted in `cache` for cache_s (at most until the
        token expires); or why not."""
        if row["revoked_at"] is not None:
            return "revoked"
        expires_at: datetime | None = row["expires_at"]
        wall = datetime.now(UTC)
        if expires_at is not None and expires_at <= wall:
            return "expired"
        principal = Principal(row["id"], row["scope"], row["app_id"], row["kind"])
        trust_s = self._cache_s
        if expires_at is not None:
            trust_s = min(trust_s, (expires_at - wall).total_seconds())
        if trust_s > 0:
            if len(cache) >= _MAX_TRACKED:
                cache.clear()
            cache[key] = (principal, self._clock() + trust_s)
        return principal

    def _failed(self, client: str, reason: str, detail: str) -> ApiError:
        self._on_failure(reason)
        bucket = self._buckets.get(client)
        if bucket is None:
            if len(self._buckets) >= _MAX_TRACKED:
                self._prune()
            burst = max(1, math.ceil(self._failures.tokens))
            bucket = TokenBucket(self._failures.per_second, burst, self._clock)
            self._buckets[client] = bucket
        bucket.try_take()
        return unauthorized(detail)

    def _prune(self) -> None:
        """Forget addresses whose bucket has refilled: they are not failing now."""
        for client in [c for c, b in self._buckets.items() if b.available() >= b.burst]:
            del self._buckets[client]
        if len(self._buckets) >= _MAX_TRACKED:
            self._buckets.clear()
