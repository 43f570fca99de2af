"""API tokens: made, listed and revoked by `webhookd api-token`, checked by `auth`.

A token is `whk_<16 hex id>_<43 base64url chars>`: 256 random bits after the id. Only its
SHA-256 is stored (the bits are random, so a slow password hash would add nothing but
latency), and the id inside it makes the lookup an equality on the primary key; the hashes are
then compared in constant time.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Final

from daemon.errors import ConfigError, NotFound

if TYPE_CHECKING:
    from daemon.store import Record, Store

TOKEN_PREFIX: Final = "whk_"
ID_PREFIX: Final = "key_"
SCOPES: Final = ("admin", "read")
_TOKEN_RE: Final = re.compile(r"whk_([0-9a-f]{16})_([A-Za-z0-9_-]{43})")


@dataclass(frozen=True, slots=True)
class NewToken:
    """What `api-token create` prints, once: the token itself is not stored anywhere."""

    id: str
    token: str
    scope: str
    app_id: str | None
    expires_at: datetime | None


def generate() -> tuple[str, str]:
    """(token id, token)."""
    hex_id = secrets.token_hex(8)
    return ID_PREFIX + hex_id, f"{TOKEN_PREFIX}{hex_id}_{secrets.token_urlsafe(32)}"


def token_id(token: str) -> str | None:
    """The id a well-formed token carries, else None (nothing to look up)."""
    match = _TOKEN_RE.fullmatch(token)
    return ID_PREFIX + match[1] if match else None


def digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


async def create_token(
    store: Store,
    scope: str,
    *,
    app: str | None = None,
    expires_in_s: float | None = None,
    description: str = "",
) -> NewToken:
    """A new token; `app` (id or uid) limits it to one application."""
    if scope not in SCOPES:
        raise ConfigError("--scope", f"must be one of {', '.join(SCOPES)}, got {scope!r}")
    if expires_in_s is not None and expires_in_s <= 0:
        raise ConfigError("--expires", "must be longer than 0s")
    app_id = None
    if app is not None:
        row = await store.fetchrow("api_app_get", ref=app)
        if row is None:
            raise NotFound("application", app)
        app_id = row["id"]
    expires_at = None
    if expires_in_s is not None:
        expires_at = datetime.now(UTC) + timedelta(seconds=expires_in_s)
    ident, token = generate()
    await store.fetchrow(
        "api_token_insert",
        token_id=ident,
        token_hash=digest(token),
        scope=scope,
        app_id=app_id,
        description=description,
        expires_at=expires_at,
    )
    return NewToken(ident, token, scope, app_id, expires_at)


async def list_tokens(store: Store) -> list[Record]:
    return await store.fetch("api_token_list")


async def revoke_token(store: Store, ident: str) -> Record:
    row = await store.fetchrow("api_token_revoke", token_id=ident)
    if row is None:
        raise NotFound("API token", ident)
    return row
