"""Signature checks copied from the product documents in shared/seeds, verbatim apart from
the parameters: webhookd's hex signatures must pass the receivers people actually wrote."""

from __future__ import annotations

import hashlib
import hmac


def spatialflow_receiver_accepts(secret: str, payload: bytes, signature: str) -> bool:
    """SpatialFlow's receiver: `X-SF-Signature: sha256=<hex>`."""
    expected_signature = hmac.new(secret.encode("utf-8"), payload, hashlib.sha256).hexdigest()
    provided_signature = signature.replace("sha256=", "")
    return hmac.compare_digest(expected_signature, provided_signature)


def aetherflow_receiver_accepts(secret: str, payload: bytes, signature: str) -> bool:
    """AetherFlow's receiver: `X-AetherFlow-Signature: <hex>`, no prefix."""
    expected_signature = hmac.new(secret.encode("utf-8"), payload, hashlib.sha256).hexdigest()
    return hmac.compare_digest(signature, expected_signature)
