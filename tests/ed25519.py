"""An independent Standard Webhooks v1a (ed25519) verifier for tests: written from the spec
with `cryptography`, sharing no code with daemon.signing."""

from __future__ import annotations

import base64

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


def v1a_signatures(headers: dict[str, str]) -> list[bytes]:
    """The raw v1a signatures of a `webhook-signature` header (other versions ignored)."""
    value = next(v for k, v in headers.items() if k.lower() == "webhook-signature")
    out = []
    for item in value.split(" "):
        version, _, sig = item.partition(",")
        if version == "v1a":
            out.append(base64.b64decode(sig))
    return out


def verify_v1a(whpk: str, headers: dict[str, str], body: bytes) -> bool:
    """True when one v1a signature verifies with the `whpk_` public key, as a receiver would."""
    lower = {k.lower(): v for k, v in headers.items()}
    key = Ed25519PublicKey.from_public_bytes(base64.b64decode(whpk.removeprefix("whpk_")))
    signed = f"{lower['webhook-id']}.{lower['webhook-timestamp']}.{body.decode()}".encode()
    for sig in v1a_signatures(headers):
        try:
            key.verify(sig, signed)
        except InvalidSignature:
            continue
        return True
    return False
