"""Webhook signatures: Standard Webhooks (v1) and hex HMAC-SHA256 in a single header.

Pure: no I/O. A signer is built once per endpoint (per secret set) and reused for every message,
so secrets are decoded and HMAC keys scheduled once, not per delivery.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets as _secrets
import string
from collections.abc import Sequence
from typing import Final, Protocol

from daemon.models import SignatureSpec

SECRET_PREFIX: Final = "whsec_"
STANDARD: Final = "standard"
HEX_HMAC: Final = "hmac-sha256-hex"
SIGNATURE_OPTION_HELP: Final = "use 'standard' or 'hmac-sha256-hex:HEADER[:PREFIX]'"

_SECRET_BYTES: Final = 24
_MIN_KEY_BYTES: Final = 16
_MAX_KEY_BYTES: Final = 64
_TCHARS: Final = frozenset("!#$%&'*+-.^_`|~" + string.ascii_letters + string.digits)
# Headers the daemon sets itself; letting a custom signature header replace one would break the
# request or the Standard Webhooks headers that every delivery carries.
_RESERVED_HEADERS: Final = frozenset(
    {
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
        "content-type",
        "content-length",
        "host",
        "user-agent",
    }
)


class Signer(Protocol):
    """Turns one message into the headers that prove it came from us."""

    def headers(self, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]: ...


def generate_secret() -> str:
    """A new Standard Webhooks secret: `whsec_` + base64 of 24 random bytes."""
    raw = _secrets.token_bytes(_SECRET_BYTES)
    return SECRET_PREFIX + base64.b64encode(raw).decode("ascii")


def decode_standard_secret(secret: str) -> bytes:
    """The HMAC key inside a `whsec_<base64>` secret (the prefix is optional)."""
    encoded = secret.removeprefix(SECRET_PREFIX)
    try:
        key = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        # The message never echoes the secret: it ends up in logs and CLI output.
        raise ValueError("secret is not whsec_<base64>") from exc
    if not key:
        raise ValueError("secret is not whsec_<base64>")
    return key


class StandardSigner:
    """Standard Webhooks v1 signer (https://www.standardwebhooks.com).

    Signs with every secret given, current first: during a rotation a receiver that still holds
    the previous secret and one that already holds the new secret both find a matching signature.
    """

    __slots__ = ("_macs",)

    def __init__(self, secrets: Sequence[str]) -> None:
        if not secrets:
            raise ValueError("at least one secret is required")
        keys = dict.fromkeys(decode_standard_secret(s) for s in secrets)  # ordered, deduplicated
        self._macs = tuple(hmac.new(key, digestmod=hashlib.sha256) for key in keys)

    def headers(self, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
        ts = str(timestamp)
        signed_prefix = f"{msg_id}.{ts}.".encode()
        signatures = " ".join(self._sign(mac, signed_prefix, body) for mac in self._macs)
        return {"webhook-id": msg_id, "webhook-timestamp": ts, "webhook-signature": signatures}

    @staticmethod
    def _sign(keyed: hmac.HMAC, signed_prefix: bytes, body: bytes) -> str:
        mac = keyed.copy()  # reuses the key schedule computed in __init__
        mac.update(signed_prefix)
        mac.update(body)
        return "v1," + base64.b64encode(mac.digest()).decode("ascii")


class HexHmacSigner:
    """HMAC-SHA256 of the raw body as hex in one header, e.g. `X-SF-Signature: sha256=<hex>`.

    For receivers that verify with `hmac.new(SECRET.encode('utf-8'), body, sha256).hexdigest()`:
    the key is the secret's UTF-8 bytes, whatever the string looks like. Such receivers compare
    against a single value, so during a rotation only the current (first) secret is used and
    previous secrets are ignored; the receiver must switch to the new secret when it is issued.
    """

    __slots__ = ("_header", "_mac", "_prefix")

    def __init__(self, header: str, prefix: str, secrets: Sequence[str]) -> None:
        _check_header(header)
        _check_prefix(prefix)
        if not secrets or not secrets[0]:
            raise ValueError("a non-empty current secret is required")
        self._header = header
        self._prefix = prefix
        self._mac = hmac.new(secrets[0].encode("utf-8"), digestmod=hashlib.sha256)

    def headers(self, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
        mac = self._mac.copy()
        mac.update(body)
        return {self._header: self._prefix + mac.hexdigest()}


def parse_signature_option(text: str) -> SignatureSpec:
    """Parse `standard`, `hmac-sha256-hex:HEADER` or `hmac-sha256-hex:HEADER:PREFIX`."""
    option = text.strip()
    if option == STANDARD:
        return SignatureSpec()
    scheme, _, rest = option.partition(":")
    if scheme != HEX_HMAC:
        raise ValueError(f"invalid signature option {text!r} ({SIGNATURE_OPTION_HELP})")
    parts = rest.split(":")
    if not parts[0]:
        raise ValueError(f"invalid signature option {text!r}: {HEX_HMAC} needs :HEADER[:PREFIX]")
    if len(parts) > 2:
        raise ValueError(f"invalid signature option {text!r}: the prefix may not contain ':'")
    header, prefix = parts[0], parts[1] if len(parts) == 2 else ""
    _check_header(header)
    _check_prefix(prefix)
    return SignatureSpec(scheme=HEX_HMAC, header=header, prefix=prefix)


def make_signer(spec: SignatureSpec, secrets: Sequence[str]) -> Signer:
    """The signer for an endpoint: `secrets` is the current secret then any previous ones."""
    if spec.scheme == STANDARD:
        return StandardSigner(secrets)
    if spec.scheme == HEX_HMAC:
        return HexHmacSigner(spec.header, spec.prefix, secrets)
    raise ValueError(f"unknown signature scheme {spec.scheme!r}")


def validate_secret(spec: SignatureSpec, secret: str) -> None:
    """Reject a secret the endpoint's scheme cannot use; messages never include the secret."""
    if spec.scheme == STANDARD:
        size = len(decode_standard_secret(secret))
        if not _MIN_KEY_BYTES <= size <= _MAX_KEY_BYTES:
            raise ValueError(
                f"secret decodes to {size} bytes (need {_MIN_KEY_BYTES}..{_MAX_KEY_BYTES})"
            )
    elif spec.scheme == HEX_HMAC:
        if not secret:
            raise ValueError("secret must not be empty")
    else:
        raise ValueError(f"unknown signature scheme {spec.scheme!r}")


def _check_header(header: str) -> None:
    if not header or not _TCHARS.issuperset(header):
        raise ValueError(f"invalid signature header name {header!r} (must be an HTTP token)")
    if header.lower() in _RESERVED_HEADERS:
        raise ValueError(f"signature header {header!r} is reserved; choose another name")


def _check_prefix(prefix: str) -> None:
    # Printable ASCII only: the prefix goes verbatim into a header value.
    if not all("!" <= ch <= "~" for ch in prefix) or ":" in prefix:
        raise ValueError(f"invalid signature prefix {prefix!r} (printable ASCII, no ':' or spaces)")
