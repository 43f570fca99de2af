"""Secrets at rest: endpoint secrets and header values sealed with Fernet keys from the environment.

`WEBHOOKD_SECRET_KEYS` holds comma-separated Fernet keys; the first one encrypts, all of them
decrypt, so a key is rotated by putting a new one first and re-encrypting (`webhookd secrets
reencrypt`). A sealed value is stored as `enc:v1:<fernet token>`; a value without that prefix is
plaintext and stays readable, so encryption can be turned on for an existing database. Pure: the
caller hands in the environment. Errors name the variable and never contain a key, a token or a
plaintext.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from daemon.errors import ConfigError

ENV_VAR = "WEBHOOKD_SECRET_KEYS"
PREFIX = "enc:v1:"
# Decrypted values are kept by token (tokens are unique per encryption), so the daemon's
# endpoint reloads do not spend the event loop decrypting the same values again.
_CACHE_MAX = 65536


class SecretKeyError(ConfigError):
    """WEBHOOKD_SECRET_KEYS is malformed, missing, or lacks the key a stored value needs."""

    def __init__(self, why: str) -> None:
        super().__init__(ENV_VAR, why)


def is_sealed(value: str) -> bool:
    return value.startswith(PREFIX)


def generate_key() -> str:
    """A new random Fernet key (url-safe base64 of 32 bytes)."""
    return Fernet.generate_key().decode("ascii")


def parse_keys(text: str) -> tuple[Fernet, ...]:
    """`key1,key2,...` -> Fernets; empty items (a trailing comma) are ignored."""
    items = [item.strip() for item in text.split(",")]
    keys = [item for item in items if item]
    fernets = []
    for position, key in enumerate(keys, start=1):
        try:
            fernets.append(Fernet(key.encode("ascii")))
        except (ValueError, UnicodeEncodeError):
            raise SecretKeyError(
                f"key {position} of {len(keys)} is not a Fernet key (32 url-safe base64-encoded"
                " bytes; make one with `webhookd secrets generate-key`)"
            ) from None
    return tuple(fernets)


class SecretBox:
    """Seals values with the first key and opens them with any; with no keys, a pass-through
    that refuses sealed values."""

    def __init__(self, keys: Sequence[Fernet] = ()) -> None:
        self._keys = tuple(keys)
        self._multi = MultiFernet(list(self._keys)) if self._keys else None
        self._opened: dict[str, str] = {}

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> SecretBox:
        return cls(parse_keys(env.get(ENV_VAR, "")))

    @property
    def enabled(self) -> bool:
        """Whether new values are encrypted."""
        return self._multi is not None

    @property
    def key_count(self) -> int:
        return len(self._keys)

    def seal(self, value: str) -> str:
        """The stored form of `value`: sealed with the current key, or as is without keys."""
        if self._multi is None:
            return value
        return PREFIX + self._multi.encrypt(value.encode("utf-8")).decode("ascii")

    def open(self, stored: str, what: str) -> str:
        """The plaintext of a stored value; `what` names it in errors (e.g. "endpoint ep_1
        secret"), so it must not be secret itself."""
        if not is_sealed(stored):
            return stored
        if (cached := self._opened.get(stored)) is not None:
            return cached
        multi = self._require(what)
        try:
            plain = multi.decrypt(stored[len(PREFIX) :].encode("ascii")).decode("utf-8")
        except (InvalidToken, UnicodeError):
            raise self._unreadable(what) from None
        if len(self._opened) >= _CACHE_MAX:
            self._opened.clear()
        self._opened[stored] = plain
        return plain

    def reseal(self, stored: str, what: str) -> str | None:
        """The value sealed with the current key, or None when it already is."""
        multi = self._require(what)
        if not is_sealed(stored):
            return self.seal(stored)
        token = stored[len(PREFIX) :].encode("ascii")
        try:
            self._keys[0].decrypt(token)
            return None
        except InvalidToken:
            pass
        try:
            # rotate() keeps the token's timestamp and re-encrypts under the first key.
            return PREFIX + multi.rotate(token).decode("ascii")
        except InvalidToken:
            raise self._unreadable(what) from None

    def _require(self, what: str) -> MultiFernet:
        if self._multi is None:
            raise SecretKeyError(
                f"{what} is encrypted but no key is configured (set it to the key(s) used to"
                " encrypt)"
            )
        return self._multi

    def _unreadable(self, what: str) -> SecretKeyError:
        return SecretKeyError(
            f"{what} cannot be decrypted with any of the {self.key_count} configured key(s)"
            " (was it encrypted with a key that has since been removed?)"
        )


PLAINTEXT = SecretBox()
"""No keys: values are written in clear, sealed values are refused with a clear error."""
