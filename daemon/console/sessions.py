"""Console logins: a random session id in a Secure, HttpOnly, SameSite=Strict cookie, kept in
PostgreSQL (webhookd.console_sessions, migrations/0023_console_sessions.sql) with the id of the
API token the operator typed.

Kept in the database, sessions survive a restart of `webhookd api`, and any of several API
processes on the same database accepts the cookie (a logout on one ends it on all). Nothing in
a row logs anyone in: the table holds the SHA-256 of the session id, never the id, and the
token's id, never the token (API tokens are stored hashed: the session acts as the token's
id, checked on every request as the token itself would be, so a revoked or expired token ends
its sessions within `api.token_cache`). The CSRF token is an HMAC of a fixed label keyed by the
session id: the browser is given it at login, and it is never stored.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from daemon.store import Store

SESSION_COOKIE: Final = "webhookd_console"
_CSRF_LABEL: Final = b"webhookd console csrf v1"
_MAX_ID_CHARS: Final = 64  # a session id is 43 characters; a longer cookie is no session


def id_hash(ident: str) -> bytes:
    """What the table keeps of a session id (256 random bits: a fast hash is enough)."""
    return hashlib.sha256(ident.encode()).digest()


def csrf_for(ident: str) -> str:
    """The session's CSRF token: derived from its id, so only the cookie's holder has it."""
    mac = hmac.new(ident.encode(), _CSRF_LABEL, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(mac).decode().rstrip("=")


@dataclass(frozen=True, slots=True)
class Session:
    """One login: the API token (by id) it acts as, and the CSRF token its writes carry."""

    ident: str  # the cookie's value: never stored
    token_id: str
    expires_at: datetime

    @property
    def csrf(self) -> str:
        return csrf_for(self.ident)

    def csrf_ok(self, given: str) -> bool:
        return hmac.compare_digest(self.csrf.encode(), given.encode())


class Sessions:
    """Console sessions in webhookd.console_sessions, living `ttl_s` each."""

    def __init__(self, store: Store, ttl_s: float = 12 * 3600.0) -> None:
        self._store = store
        self._ttl_s = ttl_s

    async def create(self, token_id: str) -> Session:
        """A new session acting as API token `token_id` (a login also deletes some expired
        sessions: see the console_session_insert query)."""
        ident = secrets.token_urlsafe(32)
        row = await self._store.fetchrow(
            "console_session_insert", id_hash=id_hash(ident), token_id=token_id, ttl_s=self._ttl_s
        )
        assert row is not None  # an INSERT ... RETURNING of one row
        return Session(ident, row["token_id"], row["expires_at"])

    async def get(self, ident: str) -> Session | None:
        """The live session of this cookie value, or None (no such session, expired, ended)."""
        if not ident or len(ident) > _MAX_ID_CHARS:
            return None
        row = await self._store.fetchrow("console_session_get", id_hash=id_hash(ident))
        return None if row is None else Session(ident, row["token_id"], row["expires_at"])

    async def end(self, ident: str) -> None:
        if ident and len(ident) <= _MAX_ID_CHARS:
            await self._store.execute("console_session_delete", id_hash=id_hash(ident))
