"""Asymmetric (ed25519, Standard Webhooks v1a) endpoints end to end: the real CLI creates and
rotates keys and prints only public keys; the daemon signs; a real receiver verifies every
delivery with the public key through an independent implementation (`cryptography`).

(The `standardwebhooks` Python library, 1.1, verifies only v1 HMAC signatures: it skips v1a,
so it cannot serve as a second verifier here.)
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import orjson
import pytest
from aiohttp import web

from daemon.endpoints import rotate_secret
from daemon.models import SignatureSpec
from daemon.secretbox import generate_key
from daemon.signing import ED25519, public_key
from daemon.store import StoreError
from tests.cli_support import WEBHOOKD
from tests.ed25519 import v1a_signatures, verify_v1a
from tests.integration.conftest import Harness, Hit, Receiver

ED = SignatureSpec(scheme=ED25519)


async def webhookd(dsn: str, *args: str, **env: str) -> Any:
    """Run the real executable against `dsn`; returns its --json output."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("WEBHOOKD_")}
    proc = await asyncio.create_subprocess_exec(
        *WEBHOOKD,
        *args,
        "--json",
        env=base
        | {"WEBHOOKD_DATABASE_URL": dsn, "WEBHOOKD_DELIVERY_ALLOW_INSECURE_HTTP": "true"}
        | env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 30)
    assert proc.returncode == 0, err.decode()
    assert b"whsk_" not in out + err  # the private key is never printed
    return orjson.loads(out)


def verifying(public_keys: list[str]) -> Any:
    """A receiver that answers 200 only when a signature verifies with one of the keys."""

    def respond(hit: Hit, _n: int) -> web.Response:
        ok = any(verify_v1a(pk, hit.headers, hit.body) for pk in public_keys)
        return web.Response(status=200 if ok else 401)

    return respond


async def test_cli_key_pair_deliveries_verify_with_the_printed_public_key(
    harness: Harness, receiver: Receiver, run_daemon: Any
) -> None:
    added = await webhookd(
        harness.dsn, "endpoint", "add", receiver.url("/ed"), "--signature", "standard-ed25519"
    )
    shown = await webhookd(harness.dsn, "endpoint", "show", added["id"])
    receiver.on("/ed", verifying([added["public_key"]]))
    async with run_daemon():
        for n in range(3):
            await harness.enqueue({"n": n, "text": "é ✓"}, endpoint_id=added["id"])
        delivered = await harness.wait_status("delivered", 3)

    assert added["public_key"].startswith("whpk_") and "secret" not in added
    assert shown["public_key"] == added["public_key"] and "secret" not in shown
    assert shown["signature"] == "standard-ed25519"
    assert [r["attempts"] for r in delivered] == [1, 1, 1]
    for hit in receiver.at("/ed"):
        assert hit.headers["webhook-signature"].startswith("v1a,")
        assert verify_v1a(added["public_key"], hit.headers, hit.body)


async def test_cli_rotation_signs_with_both_keys_during_the_grace(
    harness: Harness, receiver: Receiver, run_daemon: Any
) -> None:
    added = await webhookd(
        harness.dsn, "endpoint", "add", receiver.url("/rot"), "--signature", "standard-ed25519"
    )
    old_pk = added["public_key"]
    rotated = await webhookd(harness.dsn, "endpoint", "rotate-secret", added["id"], "--grace", "1h")
    new_pk = rotated["public_key"]
    shown = await webhookd(harness.dsn, "endpoint", "show", added["id"])
    receiver.on("/rot", verifying([old_pk]))  # a receiver not yet told about the new key
    async with run_daemon():
        await harness.enqueue(endpoint_id=added["id"])
        await harness.wait_status("delivered", 1)

    [hit] = receiver.at("/rot")
    new_sig, old_sig = v1a_signatures(hit.headers)
    assert new_pk != old_pk and rotated["previous_valid_for"] == "1h"
    assert shown["public_key"] == new_pk and shown["previous_public_keys"] == [old_pk]
    assert verify_v1a(new_pk, hit.headers, hit.body) and verify_v1a(old_pk, hit.headers, hit.body)
    assert len({new_sig, old_sig}) == 2


async def test_rotation_grace_ends_and_only_the_new_key_signs(
    harness: Harness, receiver: Receiver, run_daemon: Any
) -> None:
    ep_id, old = await harness.endpoint(receiver.url("/g"), signature=ED)
    async with run_daemon():
        new = await rotate_secret(harness.store, ep_id, grace_s=0.5)
        await harness.sleep_past_grace(ep_id)
        await harness.enqueue(endpoint_id=ep_id)
        await harness.wait_status("delivered", 1)

    [hit] = receiver.at("/g")
    assert len(v1a_signatures(hit.headers)) == 1
    assert verify_v1a(public_key(new), hit.headers, hit.body)
    assert not verify_v1a(public_key(old), hit.headers, hit.body)


async def test_private_key_encrypted_at_rest_shows_the_same_public_key(
    harness: Harness, receiver: Receiver
) -> None:
    env = {"WEBHOOKD_SECRET_KEYS": generate_key()}
    added = await webhookd(
        harness.dsn, "endpoint", "add", receiver.url("/enc"), "--signature", "standard-ed25519",
        **env,
    )  # fmt: skip
    stored = await harness.conn.fetchval(
        "SELECT secret FROM webhookd.endpoints WHERE id = $1", added["id"]
    )
    shown = await webhookd(harness.dsn, "endpoint", "show", added["id"], **env)
    assert stored.startswith("enc:v1:") and shown["secret_at_rest"] == "encrypted"
    assert shown["public_key"] == added["public_key"]


async def test_schema_accepts_the_ed25519_scheme_and_still_refuses_unknown_ones(
    harness: Harness,
) -> None:
    ep_id, secret = await harness.endpoint("https://example.com/h", signature=ED)
    scheme = await harness.conn.fetchval(
        "SELECT signature_scheme FROM webhookd.endpoints WHERE id = $1", ep_id
    )
    assert scheme == "standard-ed25519" and secret.startswith("whsk_")
    with pytest.raises(StoreError, match="check"):
        await harness.store.execute_raw(
            "UPDATE webhookd.endpoints SET signature_scheme = 'ed448' WHERE id = $1", ep_id
        )


async def test_public_key_given_as_secret_is_refused_by_the_cli(harness: Harness) -> None:
    proc = await asyncio.create_subprocess_exec(
        *WEBHOOKD, "endpoint", "add", "https://example.com/h",
        "--signature", "standard-ed25519", "--secret", "whpk_" + "A" * 43 + "=",
        env={k: v for k, v in os.environ.items() if not k.startswith("WEBHOOKD_")}
        | {"WEBHOOKD_DATABASE_URL": harness.dsn},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    out, err = await proc.communicate()
    assert proc.returncode == 2
    assert err.decode().strip().endswith("the endpoint needs the private whsk_")
    assert b"AAAA" not in err and out == b""
