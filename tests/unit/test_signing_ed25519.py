"""Standard Webhooks v1a (ed25519): the spec's vector, keys, rotation, and refused keys."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from daemon.models import SignatureSpec
from daemon.signing import (
    ED25519,
    Ed25519Signer,
    generate_secret_for,
    generate_signing_key,
    make_signer,
    parse_signature_option,
    public_key,
    validate_secret,
)
from tests.ed25519 import v1a_signatures, verify_v1a

# From the Standard Webhooks specification's asymmetric example.
SPEC_KEY = (
    "whsk_6Xb/dCcHpPea21PS1N9VY/NZW723CEc77N4rJCubMbfVKIDij2HKpMKkioLlX0dRqSKJp4AJ6p9lMicMFs6Kvg=="
)
SPEC_MSG_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TIMESTAMP = 1614265330
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIGNATURE = (
    "v1a,hnO3f9T8Ytu9HwrXslvumlUpqtNVqkhqw/enGzPCXe5BdqzCInXqYXFymVJaA7AZdpXwVLPo3mNl8EM+m7TBAg=="
)
ED = SignatureSpec(scheme=ED25519)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


BODY = b'{"type": "invoice.paid", "data": {"id": "in_1"}}'


def test_spec_vector_signature_matches_standard_webhooks_example() -> None:
    headers = Ed25519Signer([SPEC_KEY]).headers(SPEC_MSG_ID, SPEC_TIMESTAMP, SPEC_BODY)

    assert headers == {
        "webhook-id": SPEC_MSG_ID,
        "webhook-timestamp": str(SPEC_TIMESTAMP),
        "webhook-signature": SPEC_SIGNATURE,
    }


def test_public_key_is_the_second_half_of_the_spec_key() -> None:
    raw = base64.b64decode(SPEC_KEY.removeprefix("whsk_"))

    assert public_key(SPEC_KEY) == "whpk_" + base64.b64encode(raw[32:]).decode()
    assert verify_v1a(
        public_key(SPEC_KEY),
        {"webhook-id": SPEC_MSG_ID, "webhook-timestamp": str(SPEC_TIMESTAMP),
         "webhook-signature": SPEC_SIGNATURE},
        SPEC_BODY,
    )  # fmt: skip


def test_generated_key_signs_what_its_public_key_verifies() -> None:
    key = generate_signing_key()
    raw = base64.b64decode(key.removeprefix("whsk_"), validate=True)

    headers = make_signer(ED, [key]).headers("msg_1", 1700000000, BODY)

    assert key.startswith("whsk_") and len(raw) == 64
    assert public_key(key).startswith("whpk_")
    assert verify_v1a(public_key(key), headers, BODY)
    assert not verify_v1a(public_key(generate_signing_key()), headers, BODY)
    assert not verify_v1a(public_key(key), headers, BODY + b" ")


def test_public_key_matches_one_derived_by_cryptography_from_the_seed() -> None:
    key = generate_signing_key()
    seed = base64.b64decode(key.removeprefix("whsk_"))[:32]

    derived = Ed25519PrivateKey.from_private_bytes(seed).public_key().public_bytes_raw()

    assert public_key(key) == "whpk_" + base64.b64encode(derived).decode()


def test_a_bare_32_byte_seed_signs_like_the_64_byte_key() -> None:
    seed_only = "whsk_" + base64.b64encode(base64.b64decode(SPEC_KEY[5:])[:32]).decode()

    headers = Ed25519Signer([seed_only]).headers(SPEC_MSG_ID, SPEC_TIMESTAMP, SPEC_BODY)

    assert headers["webhook-signature"] == SPEC_SIGNATURE


def test_rotation_signs_with_every_key_current_first_and_once_each() -> None:
    new, old = generate_signing_key(), generate_signing_key()

    headers = Ed25519Signer([new, old, new]).headers("msg_1", 1700000000, BODY)

    assert headers["webhook-signature"].count("v1a,") == 2
    first, second = (
        {**headers, "webhook-signature": "v1a," + _b64(sig)} for sig in v1a_signatures(headers)
    )
    assert verify_v1a(public_key(new), first, BODY)
    assert verify_v1a(public_key(old), second, BODY)
    assert not verify_v1a(public_key(old), first, BODY)


def test_signature_option_and_generated_secret_for_ed25519() -> None:
    assert parse_signature_option(" standard-ed25519 ") == ED
    assert generate_secret_for(ED).startswith("whsk_")
    assert generate_secret_for(SignatureSpec()).startswith("whsec_")
    validate_secret(ED, generate_secret_for(ED))


@pytest.mark.parametrize(
    ("secret", "why"),
    [
        ("whpk_" + _b64(bytes(32)), "public key"),
        ("whsk_not base64!", "not whsk_<base64>"),
        ("whsk_" + _b64(bytes(16)), "16 bytes"),
        ("whsk_" + _b64(bytes(64)), "does not match"),
        ("whsec_" + _b64(bytes(32)), "not whsk_<base64>"),
    ],
)
def test_unusable_ed25519_keys_are_refused_without_echoing_them(secret: str, why: str) -> None:
    with pytest.raises(ValueError, match=why) as caught:
        validate_secret(ED, secret)
    assert secret not in str(caught.value)
    with pytest.raises(ValueError):
        Ed25519Signer([secret])


def test_signer_needs_a_key() -> None:
    with pytest.raises(ValueError, match="at least one"):
        Ed25519Signer([])
