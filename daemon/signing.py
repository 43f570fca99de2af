"""Webhook signatures: Standard Webhooks (v1 HMAC, v1a ed25519) and hex HMAC-SHA256.

Pure: no I/O. A signer is built once per endpoint (per secret set) and reused for every message,
so secrets are decoded, HMAC keys scheduled and ed25519 keys loaded once, not per delivery.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets as _secrets
import string
from collections.abc import Mapping, Sequence
from typing import Final, Protocol

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from daemon.models import SignatureSpec

SECRET_PREFIX: Final = "whsec_"
PRIVATE_KEY_PREFIX: Final = "whsk_"
PUBLIC_KEY_PREFIX: Final = "whpk_"
STANDARD: Final = "standard"
ED25519: Final = "standard-ed25519"
HEX_HMAC: Final = "hmac-sha256-hex"
SIGNATURE_OPTION_HELP: Final = (
    "use 'standard', 'standard-ed25519' or 'hmac-sha256-hex:HEADER[:PREFIX]'"
)

_SECRET_BYTES: Final = 24
_MIN_KEY_BYTES: Final = 16
_MAX_KEY_BYTES: Final = 64
_ED25519_SEED_BYTES: Final = 32
_ED25519_KEY_BYTES: Final = 64  # seed + public key, the libsodium form the spec uses
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


def generate_signing_key() -> str:
    """A new ed25519 private key: `whsk_` + base64 of seed and public key (64 bytes)."""
    key = Ed25519PrivateKey.generate()
    raw = key.private_bytes_raw() + _public_bytes(key)
    return PRIVATE_KEY_PREFIX + base64.b64encode(raw).decode("ascii")


def load_signing_key(secret: str) -> Ed25519PrivateKey:
    """The key inside a `whsk_<base64>` secret: 64 bytes (seed + public key, as libsodium and
    the spec write it, the public half checked) or the bare 32-byte seed."""
    if secret.startswith(PUBLIC_KEY_PREFIX):
        # The message never echoes the value, although a public key would be harmless.
        raise ValueError("this is a public key (whpk_...): the endpoint needs the private whsk_")
    try:
        raw = base64.b64decode(secret.removeprefix(PRIVATE_KEY_PREFIX), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError("secret is not whsk_<base64>") from exc
    if len(raw) not in (_ED25519_SEED_BYTES, _ED25519_KEY_BYTES):
        raise ValueError(
            f"ed25519 key decodes to {len(raw)} bytes"
            f" (need {_ED25519_KEY_BYTES}, or a {_ED25519_SEED_BYTES}-byte seed)"
        )
    key = Ed25519PrivateKey.from_private_bytes(raw[:_ED25519_SEED_BYTES])
    if len(raw) == _ED25519_KEY_BYTES and raw[_ED25519_SEED_BYTES:] != _public_bytes(key):
        raise ValueError("ed25519 key's public half does not match its seed")
    return key


def public_key(secret: str) -> str:
    """The `whpk_` public key a receiver verifies with, for a `whsk_` private key."""
    return PUBLIC_KEY_PREFIX + base64.b64encode(_public_bytes(load_signing_key(secret))).decode()


def _public_bytes(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes_raw()


class Ed25519Signer:
    """Standard Webhooks v1a signer: `v1a,<base64 ed25519 signature>` of `id.timestamp.body`.

    Receivers verify with the public key only, so one that leaks cannot forge deliveries. Keys
    are loaded once here; during a rotation every live key signs, current first.
    """

    __slots__ = ("_keys",)

    def __init__(self, secrets: Sequence[str]) -> None:
        if not secrets:
            raise ValueError("at least one private key is required")
        self._keys = tuple(load_signing_key(s) for s in dict.fromkeys(secrets))

    def headers(self, msg_id: str, timestamp: int, body: bytes) -> dict[str, str]:
        ts = str(timestamp)
        signed = f"{msg_id}.{ts}.".encode() + body
        signatures = " ".join(
            "v1a," + base64.b64encode(key.sign(signed)).decode("ascii") for key in self._keys
        )
        return {"webhook-id": msg_id, "webhook-timestamp": ts, "webhook-signature": signatures}


def generate_secret_for(spec: SignatureSpec) -> str:
    """A generated secret of the kind `spec` signs with (an ed25519 private key, or whsec_)."""
    return generate_signing_key() if spec.scheme == ED25519 else generate_secret()


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


def verify(
    key: str, headers: Mapping[str, str], body: bytes, *, now_s: float, tolerance_s: float = 300.0
) -> bool:
    """A receiver's check (the demo's receiver uses it): one `webhook-signature` entry verifies
    with `key`, a `whsec_` secret (v1) or a `whpk_` public key (v1a), and `webhook-timestamp`
    is within `tolerance_s` of `now_s`, which bounds replays."""
    lower = {k.lower(): v for k, v in headers.items()}
    msg_id, ts = lower.get("webhook-id", ""), lower.get("webhook-timestamp", "")
    if not (msg_id and ts.isascii() and ts.isdigit()) or abs(now_s - int(ts)) > tolerance_s:
        return False
    signed = f"{msg_id}.{ts}.".encode() + body
    entries = [e.partition(",") for e in lower.get("webhook-signature", "").split(" ")]
    try:
        if key.startswith(PUBLIC_KEY_PREFIX):
            public = Ed25519PublicKey.from_public_bytes(_b64(key.removeprefix(PUBLIC_KEY_PREFIX)))
            return any(v == "v1a" and _ed25519_ok(public, _b64(s), signed) for v, _, s in entries)
        expected = hmac.digest(decode_standard_secret(key), signed, hashlib.sha256)
        return any(v == "v1" and hmac.compare_digest(_b64(s), expected) for v, _, s in entries)
    except ValueError:  # a malformed key or signature (binascii.Error is a ValueError)
        return False


def _b64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


def _ed25519_ok(public: Ed25519PublicKey, signature: bytes, signed: bytes) -> bool:
    try:
        public.verify(signature, signed)
    except InvalidSignature:
        return False
    return True


def parse_signature_option(text: str) -> SignatureSpec:
    """Parse `standard`, `standard-ed25519`, `hmac-sha256-hex:HEADER[:PREFIX]`."""
    option = text.strip()
    if option == STANDARD:
        return SignatureSpec()
    if option == ED25519:
        return SignatureSpec(scheme=ED25519)
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
    if spec.scheme == ED25519:
        return Ed25519Signer(secrets)
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
    elif spec.scheme == ED25519:
        load_signing_key(secret)
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
