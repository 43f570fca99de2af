"""Signatures checked against independent verifiers: standardwebhooks, svix, receivers' own code."""

from __future__ import annotations

import base64
import re
import time

import pytest
from standardwebhooks.webhooks import Webhook as StandardWebhook
from standardwebhooks.webhooks import WebhookVerificationError
from svix.webhooks import Webhook as SvixWebhook

from daemon.models import SignatureSpec
from daemon.signing import (
    HexHmacSigner,
    StandardSigner,
    decode_standard_secret,
    generate_secret,
    make_signer,
    parse_signature_option,
    validate_secret,
)
from tests.receivers import aetherflow_receiver_accepts, spatialflow_receiver_accepts

SPEC_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
SPEC_MSG_ID = "msg_p5jXN8AQM9LWM0D4loKWxJek"
SPEC_TIMESTAMP = 1614265330
SPEC_BODY = b'{"test": 2432232314}'
SPEC_SIGNATURE = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="

BODY = b'{"type": "invoice.paid", "data": {"id": "in_1", "amount": 4200}}'
STANDARD = SignatureSpec()
SPATIALFLOW = SignatureSpec(scheme="hmac-sha256-hex", header="X-SF-Signature", prefix="sha256=")
AETHERFLOW = SignatureSpec(scheme="hmac-sha256-hex", header="X-AetherFlow-Signature")


def sign_now(signer: StandardSigner, body: bytes = BODY) -> dict[str, str]:
    # Both libraries reject timestamps more than 5 minutes away from their clock.
    return signer.headers("msg_2bVxVpY3UtHuJgBFAuBVYhEJLiQ", int(time.time()), body)


def test_spec_vector_signature_matches_standard_webhooks_example() -> None:
    headers = StandardSigner([SPEC_SECRET]).headers(SPEC_MSG_ID, SPEC_TIMESTAMP, SPEC_BODY)

    assert headers == {
        "webhook-id": SPEC_MSG_ID,
        "webhook-timestamp": str(SPEC_TIMESTAMP),
        "webhook-signature": SPEC_SIGNATURE,
    }


def test_standardwebhooks_library_verifies_our_signature() -> None:
    secret = generate_secret()

    payload = StandardWebhook(secret).verify(BODY, sign_now(StandardSigner([secret])))

    assert payload["data"]["amount"] == 4200


def test_svix_library_verifies_our_signature() -> None:
    secret = generate_secret()

    SvixWebhook(secret).verify(BODY, sign_now(StandardSigner([secret])))


@pytest.mark.parametrize("verifier", [StandardWebhook, SvixWebhook])
def test_verifier_with_another_secret_rejects_our_signature(verifier: type) -> None:
    headers = sign_now(StandardSigner([generate_secret()]))

    with pytest.raises(WebhookVerificationError):
        verifier(generate_secret()).verify(BODY, headers)


@pytest.mark.parametrize("verifier", [StandardWebhook, SvixWebhook])
def test_verifier_rejects_a_body_altered_after_signing(verifier: type) -> None:
    secret = generate_secret()
    headers = sign_now(StandardSigner([secret]))

    with pytest.raises(WebhookVerificationError):
        verifier(secret).verify(BODY.replace(b"4200", b"4201"), headers)


def test_rotation_sends_current_and_previous_signatures() -> None:
    current, previous = generate_secret(), generate_secret()

    headers = StandardSigner([current, previous]).headers(SPEC_MSG_ID, SPEC_TIMESTAMP, SPEC_BODY)

    only_current = StandardSigner([current]).headers(SPEC_MSG_ID, SPEC_TIMESTAMP, SPEC_BODY)
    only_previous = StandardSigner([previous]).headers(SPEC_MSG_ID, SPEC_TIMESTAMP, SPEC_BODY)
    assert headers["webhook-signature"] == (
        f"{only_current['webhook-signature']} {only_previous['webhook-signature']}"
    )


@pytest.mark.parametrize("verifier", [StandardWebhook, SvixWebhook])
@pytest.mark.parametrize("receiver_holds", ["new", "old"])
def test_receiver_holding_either_secret_accepts_during_rotation(
    verifier: type, receiver_holds: str
) -> None:
    new, old = generate_secret(), generate_secret()
    headers = sign_now(StandardSigner([new, old]))

    verifier(new if receiver_holds == "new" else old).verify(BODY, headers)


def test_repeated_secrets_are_signed_once() -> None:
    secret = generate_secret()

    headers = StandardSigner([secret, secret.removeprefix("whsec_")]).headers("m", 1, b"")

    assert len(headers["webhook-signature"].split(" ")) == 1


def test_signer_gives_the_same_signature_for_each_message_it_signs() -> None:
    signer = StandardSigner([SPEC_SECRET])
    signer.headers("msg_other", 1, b"other body")  # must not leave state behind

    headers = signer.headers(SPEC_MSG_ID, SPEC_TIMESTAMP, SPEC_BODY)

    assert headers["webhook-signature"] == SPEC_SIGNATURE


def test_standard_signer_needs_a_secret() -> None:
    with pytest.raises(ValueError, match="at least one secret"):
        StandardSigner([])


def test_generated_secret_is_whsec_base64_of_24_bytes() -> None:
    secret = generate_secret()

    assert secret.startswith("whsec_")
    assert len(decode_standard_secret(secret)) == 24
    assert secret != generate_secret()
    validate_secret(STANDARD, secret)


def test_decode_accepts_secret_with_or_without_prefix() -> None:
    key = decode_standard_secret(SPEC_SECRET)

    assert decode_standard_secret(SPEC_SECRET.removeprefix("whsec_")) == key
    assert key == base64.b64decode("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")


@pytest.mark.parametrize(
    "secret", ["", "whsec_", "whsec_not base64!", "whsec_abc", "whsec_MfKQ9r8G-_", "whsec_ü"]
)
def test_decode_rejects_secret_that_is_not_base64(secret: str) -> None:
    with pytest.raises(ValueError, match=r"^secret is not whsec_<base64>$"):
        decode_standard_secret(secret)


@pytest.mark.parametrize("size", [16, 32, 64])
def test_standard_secret_of_16_to_64_bytes_is_valid(size: int) -> None:
    validate_secret(STANDARD, "whsec_" + base64.b64encode(bytes(range(size))).decode())


@pytest.mark.parametrize("size", [8, 15, 65])
def test_standard_secret_outside_16_to_64_bytes_is_rejected(size: int) -> None:
    secret = "whsec_" + base64.b64encode(bytes(size)).decode()

    with pytest.raises(ValueError, match=f"decodes to {size} bytes"):
        validate_secret(STANDARD, secret)


def test_hex_secret_may_be_any_non_empty_string() -> None:
    validate_secret(SPATIALFLOW, "not base64, spaces and ümlauts are fine")

    with pytest.raises(ValueError, match="must not be empty"):
        validate_secret(SPATIALFLOW, "")


def test_validate_rejects_unknown_scheme() -> None:
    with pytest.raises(ValueError, match="unknown signature scheme"):
        validate_secret(SignatureSpec(scheme="md5"), "x")


def test_spatialflow_receiver_accepts_prefixed_hex_signature() -> None:
    secret = "sf_live_7Hq2 ü"  # keys are UTF-8 bytes of whatever the receiver configured
    headers = make_signer(SPATIALFLOW, [secret]).headers("msg_1", 1700000000, BODY)

    assert list(headers) == ["X-SF-Signature"]
    assert headers["X-SF-Signature"].startswith("sha256=")
    assert spatialflow_receiver_accepts(secret, BODY, headers["X-SF-Signature"])
    assert not spatialflow_receiver_accepts(secret, BODY + b" ", headers["X-SF-Signature"])


def test_aetherflow_receiver_accepts_bare_hex_signature() -> None:
    secret = "af-3c1d9e"
    headers = make_signer(AETHERFLOW, [secret]).headers("msg_1", 1700000000, BODY)

    assert list(headers) == ["X-AetherFlow-Signature"]
    assert aetherflow_receiver_accepts(secret, BODY, headers["X-AetherFlow-Signature"])


def test_hex_signer_uses_only_the_current_secret_during_rotation() -> None:
    signer = make_signer(AETHERFLOW, ["new-secret", "old-secret"])

    signature = signer.headers("msg_1", 1700000000, BODY)["X-AetherFlow-Signature"]

    assert aetherflow_receiver_accepts("new-secret", BODY, signature)
    assert not aetherflow_receiver_accepts("old-secret", BODY, signature)


def test_hex_signature_ignores_message_id_and_timestamp() -> None:
    signer = make_signer(AETHERFLOW, ["s"])

    assert signer.headers("a", 1, BODY) == signer.headers("b", 2, BODY)


@pytest.mark.parametrize("secrets", [[], [""]])
def test_hex_signer_needs_a_non_empty_current_secret(secrets: list[str]) -> None:
    with pytest.raises(ValueError, match="non-empty current secret"):
        HexHmacSigner("X-Sig", "", secrets)


def test_make_signer_builds_standard_signer_for_standard_spec() -> None:
    signer = make_signer(STANDARD, [SPEC_SECRET])

    assert signer.headers(SPEC_MSG_ID, SPEC_TIMESTAMP, SPEC_BODY)["webhook-signature"] == (
        SPEC_SIGNATURE
    )


def test_make_signer_rejects_unknown_scheme() -> None:
    with pytest.raises(ValueError, match="unknown signature scheme 'md5'"):
        make_signer(SignatureSpec(scheme="md5"), ["x"])


@pytest.mark.parametrize(
    ("text", "spec"),
    [
        ("standard", STANDARD),
        ("  standard\n", STANDARD),
        ("hmac-sha256-hex:X-SF-Signature:sha256=", SPATIALFLOW),
        ("hmac-sha256-hex:X-AetherFlow-Signature", AETHERFLOW),
        ("hmac-sha256-hex:X-AetherFlow-Signature:", AETHERFLOW),
        (
            "hmac-sha256-hex:X-Hub-Signature-256:v1=",
            SignatureSpec("hmac-sha256-hex", "X-Hub-Signature-256", "v1="),
        ),
    ],
)
def test_signature_option_parses(text: str, spec: SignatureSpec) -> None:
    assert parse_signature_option(text) == spec


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "use 'standard', 'standard-ed25519' or 'hmac-sha256-hex:HEADER"),
        ("Standard", "use 'standard', 'standard-ed25519' or"),
        ("standard:X-Sig", "use 'standard', 'standard-ed25519' or"),
        ("standard-ed25519:X-Sig", "use 'standard', 'standard-ed25519' or"),
        ("hmac-sha256:X-Sig", "use 'standard', 'standard-ed25519' or"),
        ("hmac-sha256-hex", "needs :HEADER"),
        ("hmac-sha256-hex:", "needs :HEADER"),
        ("hmac-sha256-hex:X-Sig:a:b", "prefix may not contain ':'"),
        ("hmac-sha256-hex:X Sig", "must be an HTTP token"),
        ("hmac-sha256-hex:X-Sig(1)", "must be an HTTP token"),
        ("hmac-sha256-hex:X-Signatür", "must be an HTTP token"),
        ("hmac-sha256-hex:Webhook-Signature", "reserved"),
        ("hmac-sha256-hex:webhook-id", "reserved"),
        ("hmac-sha256-hex:webhook-timestamp", "reserved"),
        ("hmac-sha256-hex:Content-Type", "reserved"),
        ("hmac-sha256-hex:content-length", "reserved"),
        ("hmac-sha256-hex:Host", "reserved"),
        ("hmac-sha256-hex:User-Agent", "reserved"),
        ("hmac-sha256-hex:X-Sig:sha 256=", "invalid signature prefix"),
        ("hmac-sha256-hex:X-Sig:sha\r\n256=", "invalid signature prefix"),
    ],
)
def test_signature_option_rejects_bad_input(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        parse_signature_option(text)
