"""`signing.verify`, the receiver-side check the demo uses: v1 (HMAC) and v1a (ed25519),
checked against the spec's vectors and against tampering, replay and malformed input."""

from __future__ import annotations

import pytest

from daemon.signing import (
    Ed25519Signer,
    StandardSigner,
    generate_secret,
    generate_signing_key,
    public_key,
    verify,
)

NOW = 1700000000
BODY = b'{"type": "invoice.paid"}'
# The spec's vectors (see test_signing.py and test_signing_ed25519.py).
SPEC_V1 = (
    "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
)
SPEC_V1A = (
    "whpk_1SiA4o9hyqTCpIqC5V9HUakiiaeACeqfZTInDBbOir4=",
    "v1a,hnO3f9T8Ytu9HwrXslvumlUpqtNVqkhqw/enGzPCXe5BdqzCInXqYXFymVJaA7AZdpXwVLPo3mNl8EM+m7TBAg==",
)


@pytest.mark.parametrize(("key", "signature"), [SPEC_V1, SPEC_V1A])
def test_spec_vectors_verify(key: str, signature: str) -> None:
    headers = {
        "Webhook-Id": "msg_p5jXN8AQM9LWM0D4loKWxJek",
        "Webhook-Timestamp": "1614265330",
        "Webhook-Signature": signature,
    }

    assert verify(key, headers, b'{"test": 2432232314}', now_s=1614265330)
    assert not verify(key, headers, b'{"test": 2432232315}', now_s=1614265330)


def test_standard_and_ed25519_signers_verify_with_their_keys_only() -> None:
    secret, private = generate_secret(), generate_signing_key()
    v1 = StandardSigner([secret]).headers("msg_1", NOW, BODY)
    v1a = Ed25519Signer([private]).headers("msg_1", NOW, BODY)

    assert verify(secret, v1, BODY, now_s=NOW)
    assert verify(public_key(private), v1a, BODY, now_s=NOW)
    assert not verify(generate_secret(), v1, BODY, now_s=NOW)
    assert not verify(public_key(generate_signing_key()), v1a, BODY, now_s=NOW)
    assert not verify(secret, v1a, BODY, now_s=NOW)  # v1a entries are not HMACs


def test_any_signature_of_a_rotation_verifies() -> None:
    old, new = generate_signing_key(), generate_signing_key()
    headers = Ed25519Signer([new, old]).headers("msg_1", NOW, BODY)

    assert verify(public_key(old), headers, BODY, now_s=NOW)
    assert verify(public_key(new), headers, BODY, now_s=NOW)


@pytest.mark.parametrize("skew_s", [-301, 301])
def test_timestamp_outside_the_tolerance_is_refused(skew_s: int) -> None:
    secret = generate_secret()
    headers = StandardSigner([secret]).headers("msg_1", NOW, BODY)

    assert verify(secret, headers, BODY, now_s=NOW + 300)
    assert not verify(secret, headers, BODY, now_s=NOW - skew_s)


@pytest.mark.parametrize(
    "change",
    [
        {"webhook-id": ""},
        {"webhook-timestamp": "²"},
        {"webhook-timestamp": "-1"},
        {"webhook-signature": ""},
        {"webhook-signature": "v1,not base64!"},
        {"webhook-signature": "v1a,AAAA"},
        {"webhook-signature": "v2,abc"},
    ],
)
def test_malformed_headers_are_refused_without_raising(change: dict[str, str]) -> None:
    secret = generate_secret()
    headers = StandardSigner([secret]).headers("msg_1", NOW, BODY) | change

    assert not verify(secret, headers, BODY, now_s=NOW)
    assert not verify(public_key(generate_signing_key()), headers, BODY, now_s=NOW)


@pytest.mark.parametrize("key", ["whsec_not base64!", "whpk_AAAA", "whpk_!!"])
def test_malformed_keys_verify_nothing(key: str) -> None:
    headers = StandardSigner([generate_secret()]).headers("msg_1", NOW, BODY)

    assert not verify(key, headers, BODY, now_s=NOW)
