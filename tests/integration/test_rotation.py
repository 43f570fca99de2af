"""Secret rotation: `endpoint rotate-secret` signs with old and new secrets until the grace ends."""

from __future__ import annotations

from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from daemon.endpoints import rotate_secret
from daemon.errors import ConfigError, NotFound
from daemon.models import SignatureSpec
from tests.integration.conftest import Harness, Receiver
from tests.receivers import spatialflow_receiver_accepts


def signatures(headers: dict[str, str]) -> list[str]:
    return headers["webhook-signature"].split(" ")


async def test_rotated_endpoint_is_signed_with_both_secrets_until_the_grace_ends(
    harness: Harness, receiver: Receiver, run_daemon: Any
) -> None:
    ep_id, old = await harness.endpoint(receiver.url("/r"))
    async with run_daemon():
        new = await rotate_secret(harness.store, ep_id, grace_s=1.5)
        # No wait for the daemon to hear of the rotation: a claim carries the endpoint's
        # version, and settings older than the claim are fetched again before signing.
        await harness.enqueue(endpoint_id=ep_id)
        await receiver.wait_hits(1)
        during = receiver.hits[0]
        await harness.sleep_past_grace(ep_id)
        await harness.enqueue(endpoint_id=ep_id)
        await receiver.wait_hits(2)
        after = receiver.hits[1]
    assert new != old and new.startswith("whsec_")
    assert len(signatures(during.headers)) == 2
    Webhook(old).verify(during.body, during.headers)
    Webhook(new).verify(during.body, during.headers)
    assert len(signatures(after.headers)) == 1
    Webhook(new).verify(after.body, after.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(old).verify(after.body, after.headers)


async def test_rotation_keeps_at_most_ten_previous_secrets(harness: Harness) -> None:
    ep_id, _ = await harness.endpoint("https://example.com/h")
    for _ in range(12):
        await rotate_secret(harness.store, ep_id, grace_s=3600)
    kept = await harness.conn.fetchval(
        "SELECT jsonb_array_length(previous_secrets) FROM webhookd.endpoints WHERE id = $1", ep_id
    )
    assert kept == 10


async def test_hex_endpoint_rotation_takes_any_string_and_signs_with_the_new_one(
    harness: Harness, receiver: Receiver, run_daemon: Any
) -> None:
    spec = SignatureSpec("hmac-sha256-hex", "X-SF-Signature", "sha256=")
    ep_id, _ = await harness.endpoint(receiver.url("/sf"), signature=spec, secret="first")
    await rotate_secret(harness.store, ep_id, grace_s=3600, new_secret="second secret")
    async with run_daemon():
        await harness.enqueue(endpoint_id=ep_id)
        await receiver.wait_hits(1)
    hit = receiver.hits[0]
    assert spatialflow_receiver_accepts("second secret", hit.body, hit.headers["X-SF-Signature"])


async def test_rotation_refuses_a_bad_secret_and_an_unknown_endpoint(harness: Harness) -> None:
    ep_id, _ = await harness.endpoint("https://example.com/h")
    with pytest.raises(ConfigError, match="--secret"):
        await rotate_secret(harness.store, ep_id, grace_s=60, new_secret="not base64!")
    with pytest.raises(NotFound):
        await rotate_secret(harness.store, "ep_nope", grace_s=60)
