"""Console logins: a random session id in a Secure, HttpOnly, SameSite=Strict cookie, mapped
in this process's memory to the API token the operator typed and a CSRF token.

The API token never goes back to the browser, and every request of the session is checked
as the token's own would be (a revoked token ends its sessions within `api.token_cache`).
Sessions live in memory: restarting `webhookd api` logs everyone out, and with several API
processes behind one address the proxy must keep each client on one of them.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

SESSION_COOKIE: Final = "webhookd_console"
_MAX_SESSIONS: Final = 10_000


@dataclass(frozen=True, slots=True)
class Session:
    """One login: the token it acts with and the CSRF token its writes must carry."""

    token: str
    csrf: str
    expires_at: float  # on the sessions' clock

    def csrf_ok(self, given: str) -> bool:
        return hmac.compare_digest(self.csrf.encode(), given.encode())


class Sessions:
    """Session id -> Session, forgotten when expired or logged out."""

    def __init__(self, ttl_s: float = 12 * 3600.0, clock: Callable[[], float] = time.monotonic):
        self._ttl_s = ttl_s
        self._clock = clock
        self._by_id: dict[str, Session] = {}

    def create(self, token: str) -> tuple[str, Session]:
        if len(self._by_id) >= _MAX_SESSIONS:
            self._prune()
        ident = secrets.token_urlsafe(32)
        session = Session(token, secrets.token_urlsafe(32), self._clock() + self._ttl_s)
        self._by_id[ident] = session
        return ident, session

    def get(self, ident: str) -> Session | None:
        session = self._by_id.get(ident) if ident else None
        if session is not None and session.expires_at <= self._clock():
            del self._by_id[ident]
            return None
        return session

    def end(self, ident: str) -> None:
        self._by_id.pop(ident, None)

    def _prune(self) -> None:
        now = self._clock()
        for ident in [i for i, s in self._by_id.items() if s.expires_at <= now]:
            del self._by_id[ident]
        if len(self._by_id) >= _MAX_SESSIONS:  # all live: the oldest half goes
            for ident in list(self._by_id)[: _MAX_SESSIONS // 2]:
                del self._by_id[ident]
