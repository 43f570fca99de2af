"""Secrets at rest: endpoint secrets and header values stored as `enc:v1:` Fernet tokens, opened
by the daemon and `endpoint show`, moved to a new key by `secrets reencrypt`."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import orjson
import pytest
from standardwebhooks.webhooks import Webhook
from structlog.testing import capture_logs

from daemon.endpoints import EndpointSpec, add_endpoint, reencrypt_secrets, rotate_secret
from daemon.models import SignatureSpec
from daemon.secretbox import ENV_VAR, PLAINTEXT, PREFIX, SecretBox, SecretKeyError, generate_key
from daemon.service import Service
from tests.cli_support import Cli, assert_one_line_error
from tests.integration.conftest import Harness, Receiver, daemon_config, wait_until
from tests.receivers import spatialflow_receiver_accepts

HEX = SignatureSpec("hmac-sha256-hex", "X-SF-Signature", "sha256=")


def box_of(*keys: str) -> SecretBox:
    return SecretBox.from_env({ENV_VAR: ",".join(keys)})


def token() -> str:
    return f"tok-{secrets.token_hex(8)}"


@asynccontextmanager
async def daemon(dsn: str, box: SecretBox) -> AsyncIterator[Service]:
    service = Service(daemon_config(dsn), secret_box=box)
    await service.start()
    try:
        yield service
    finally:
        await service.stop()


async def raw_rows(harness: Harness) -> str:
    """Every endpoint row as PostgreSQL stores it, as one string to grep."""
    rows = await harness.conn.fetch("SELECT e::text AS t FROM webhookd.endpoints e ORDER BY id")
    return "\n".join(r["t"] for r in rows)


async def stored(harness: Harness, ep_id: str) -> tuple[str, list[str], list[str]]:
    """(secret, previous secrets, header values) of one endpoint, as stored."""
    row = await harness.conn.fetchrow(
        "SELECT secret, previous_secrets, headers FROM webhookd.endpoints WHERE id = $1", ep_id
    )
    assert row is not None
    previous = [p["secret"] for p in orjson.loads(row["previous_secrets"])]
    return row["secret"], previous, [h[1] for h in orjson.loads(row["headers"])]


async def test_with_keys_secrets_and_header_values_are_stored_encrypted(
    harness: Harness,
) -> None:
    box = box_of(generate_key())
    header, hex_secret, new_secret = token(), token(), token()
    spec = EndpointSpec(
        url="https://example.com/h", headers=(("x-api-key", header),), signature=HEX
    )
    ep_id, secret = await add_endpoint(
        harness.store,
        EndpointSpec(**{**spec.__dict__, "secret": hex_secret}),
        allow_http=False,
        box=box,
    )
    std_id, std_secret = await add_endpoint(
        harness.store, EndpointSpec(url="https://example.com/s"), allow_http=False, box=box
    )
    assert secret == hex_secret  # the caller gets the plaintext back
    await rotate_secret(harness.store, ep_id, grace_s=60, new_secret=new_secret, box=box)

    text = await raw_rows(harness)
    for plain in (header, hex_secret, new_secret, std_secret):
        assert plain not in text
    for ep in (ep_id, std_id):
        secret_now, previous, headers = await stored(harness, ep)
        assert all(v.startswith(PREFIX) for v in (secret_now, *previous, *headers))
    secret_now, previous, headers = await stored(harness, ep_id)
    assert box.open(secret_now, "s") == new_secret
    assert [box.open(p, "p") for p in previous] == [hex_secret]
    assert [box.open(h, "h") for h in headers] == [header]
    # Header names stay readable for `endpoint show`.
    assert '"x-api-key"' in text


async def test_daemon_signs_with_the_decrypted_secret_and_sends_the_header_value(
    harness: Harness, receiver: Receiver
) -> None:
    box = box_of(generate_key())
    header, hex_secret = token(), token()
    std_id, std_secret = await add_endpoint(
        harness.store,
        EndpointSpec(url=receiver.url("/std"), headers=(("Authorization", f"Bearer {header}"),)),
        allow_http=True,
        box=box,
    )
    hex_id, _ = await add_endpoint(
        harness.store,
        EndpointSpec(url=receiver.url("/hex"), signature=HEX, secret=hex_secret),
        allow_http=True,
        box=box,
    )
    async with daemon(harness.dsn, box):
        await harness.enqueue(endpoint_id=std_id)
        await harness.enqueue(endpoint_id=hex_id)
        await receiver.wait_hits(2)
        await harness.wait_status("delivered", 2)
    [std] = receiver.at("/std")
    [hexed] = receiver.at("/hex")
    assert std.headers["Authorization"] == f"Bearer {header}"
    Webhook(std_secret).verify(std.body, std.headers)
    assert spatialflow_receiver_accepts(hex_secret, hexed.body, hexed.headers["X-SF-Signature"])
    attempts = await harness.conn.fetchval(
        "SELECT string_agg(a::text, ' ') FROM webhookd.attempts a"
    )
    assert header not in attempts and hex_secret not in attempts


async def test_reencrypt_moves_every_value_to_the_new_key_and_delivery_needs_only_it(
    harness: Harness, receiver: Receiver
) -> None:
    old, new = generate_key(), generate_key()
    header, old_header = token(), token()
    # One endpoint from before encryption was turned on, two under the old key (one rotated).
    plain_id, plain_secret = await add_endpoint(
        harness.store,
        EndpointSpec(url=receiver.url("/plain"), headers=(("x-api-key", header),)),
        allow_http=True,
        box=PLAINTEXT,
    )
    old_id, first_secret = await add_endpoint(
        harness.store,
        EndpointSpec(url=receiver.url("/old"), headers=(("x-api-key", old_header),)),
        allow_http=True,
        box=box_of(old),
    )
    rotated_secret = await rotate_secret(harness.store, old_id, grace_s=3600, box=box_of(old))
    hex_id, _ = await add_endpoint(
        harness.store,
        EndpointSpec(url=receiver.url("/hex"), signature=HEX, secret="hex secret"),
        allow_http=True,
        box=box_of(old),
    )
    rotating = box_of(new, old)

    dry = await reencrypt_secrets(harness.store, rotating, batch_size=2, dry_run=True)
    assert (dry.endpoints, dry.updated, dry.encrypted, dry.rekeyed) == (3, 3, 2, 4)
    assert (await stored(harness, plain_id))[0] == plain_secret  # a dry run changes nothing

    report = await reencrypt_secrets(harness.store, rotating, batch_size=2)
    assert (report.endpoints, report.updated, report.encrypted, report.rekeyed) == (3, 3, 2, 4)
    again = await reencrypt_secrets(harness.store, rotating, batch_size=2)
    assert (again.updated, again.encrypted, again.rekeyed, again.current) == (0, 0, 0, 6)

    only_new = box_of(new)
    text = await raw_rows(harness)
    for plain in (plain_secret, header, old_header, first_secret, rotated_secret, "hex secret"):
        assert plain not in text
    for ep in (plain_id, old_id, hex_id):
        secret_now, previous, headers = await stored(harness, ep)
        for value in (secret_now, *previous, *headers):
            assert value.startswith(PREFIX)
            only_new.open(value, "value")  # no longer needs the old key
            with pytest.raises(SecretKeyError):
                box_of(old).open(value, "value")

    async with daemon(harness.dsn, only_new):
        for ep in (plain_id, old_id, hex_id):
            await harness.enqueue(endpoint_id=ep)
        await harness.wait_status("delivered", 3)
    [plain_hit], [old_hit], [hex_hit] = (receiver.at(p) for p in ("/plain", "/old", "/hex"))
    assert plain_hit.headers["x-api-key"] == header
    Webhook(plain_secret).verify(plain_hit.body, plain_hit.headers)
    assert old_hit.headers["x-api-key"] == old_header
    Webhook(rotated_secret).verify(old_hit.body, old_hit.headers)
    Webhook(first_secret).verify(old_hit.body, old_hit.headers)  # still in its grace
    assert spatialflow_receiver_accepts(
        "hex secret", hex_hit.body, hex_hit.headers["X-SF-Signature"]
    )


async def test_reencrypt_without_keys_is_refused(harness: Harness) -> None:
    with pytest.raises(SecretKeyError, match=ENV_VAR):
        await reencrypt_secrets(harness.store, PLAINTEXT)


async def test_reencrypt_leaves_a_malformed_row_and_does_the_others(harness: Harness) -> None:
    good_id, _ = await harness.endpoint("https://example.com/good")
    bad_id, _ = await harness.endpoint("https://example.com/bad")
    await harness.conn.execute(
        """UPDATE webhookd.endpoints SET headers = '{"x-api-key": "k"}' WHERE id = $1""", bad_id
    )
    with capture_logs() as logs:
        report = await reencrypt_secrets(harness.store, box_of(generate_key()))
    assert (report.endpoints, report.updated, report.skipped) == (2, 1, 1)
    assert (await stored(harness, good_id))[0].startswith(PREFIX)
    assert not (await stored(harness, bad_id))[0].startswith(PREFIX)
    assert [e["endpoint"] for e in logs if e["event"] == "endpoints.invalid"] == [bad_id]


async def test_daemon_refuses_to_start_without_the_key_and_skips_unreadable_ones_later(
    harness: Harness, receiver: Receiver
) -> None:
    key, other = generate_key(), generate_key()
    sealed_id, _ = await add_endpoint(
        harness.store, EndpointSpec(url=receiver.url("/sealed")), allow_http=True, box=box_of(key)
    )
    with pytest.raises(SecretKeyError) as caught:
        await Service(daemon_config(harness.dsn)).start()
    assert f"endpoint {sealed_id} secret is encrypted" in str(caught.value)

    # A running daemon that meets an endpoint it cannot decrypt (added with another key) leaves
    # it out, gives its deliveries back, and keeps delivering to the others.
    with capture_logs() as logs:
        async with daemon(harness.dsn, box_of(key)) as service:
            foreign_id, _ = await add_endpoint(
                harness.store,
                EndpointSpec(url=receiver.url("/foreign")),
                allow_http=True,
                box=box_of(other),
            )
            await harness.enqueue(endpoint_id=foreign_id)

            async def logged() -> bool:
                return any(e["event"] == "endpoints.secrets_unreadable" for e in logs)

            await wait_until(logged, what="the unreadable endpoint to be logged")
            await harness.enqueue(endpoint_id=sealed_id)
            await harness.wait_status("delivered", 1, sealed_id)
            [pending] = await harness.wait_status("pending", 1, foreign_id)
            assert pending["attempts"] == 0
            assert service._failure is None
    [event] = {
        e["endpoint"]: e for e in logs if e["event"] == "endpoints.secrets_unreadable"
    }.values()
    assert event["endpoint"] == foreign_id and ENV_VAR in event["error"]
    assert receiver.at("/foreign") == []


# -- the CLI -----------------------------------------------------------------------------------


async def test_cli_encrypts_shows_decrypted_reencrypts_and_refuses_without_key(
    cli: Cli, harness: Harness
) -> None:
    old, new = generate_key(), generate_key()
    header = token()
    added = await cli(
        "endpoint",
        "add",
        "https://example.com/h",
        "--header",
        f"x-api-key: {header}",
        "--json",
        env={ENV_VAR: old},
    )
    assert added.code == 0, added.err
    ep_id, secret = added.json()["id"], added.json()["secret"]
    secret_now, _, [header_now] = await stored(harness, ep_id)
    assert secret_now.startswith(PREFIX) and header_now.startswith(PREFIX)

    show, no_key, bad_key, run_no_key = await asyncio.gather(
        cli("endpoint", "show", ep_id, "--json", env={ENV_VAR: old}),
        cli("endpoint", "show", ep_id),
        cli("endpoint", "show", ep_id, env={ENV_VAR: f"{old},not-a-key"}),
        cli("run"),
    )
    assert show.code == 0, show.err
    view = show.json()
    assert view["secret"] == secret and view["secret_at_rest"] == "encrypted"
    assert view["headers"] == {"x-api-key": "[redacted]"}
    assert header not in show.out
    for result in (no_key, run_no_key):
        assert_one_line_error(result, 2, ENV_VAR, f"endpoint {ep_id} secret", "no key")
    assert_one_line_error(bad_key, 2, ENV_VAR, "key 2 of 2")
    for result in (no_key, bad_key, run_no_key):
        for leak in (secret, secret_now, header, header_now, old):
            assert leak not in result.out + result.err

    both = f"{new},{old}"
    reencrypted = await cli("secrets", "reencrypt", "--json", env={ENV_VAR: both})
    assert reencrypted.code == 0, reencrypted.err
    assert reencrypted.json() == {
        "endpoints": 1,
        "updated": 1,
        "encrypted": 0,
        "rekeyed": 2,
        "current": 0,
        "skipped": 0,
        "dry_run": False,
    }
    text, shown, no_keys = await asyncio.gather(
        cli("secrets", "reencrypt", env={ENV_VAR: both}),
        cli("endpoint", "show", ep_id, "--json", env={ENV_VAR: new}),
        cli("secrets", "reencrypt"),
    )
    assert text.code == 0, text.err
    assert "updated: 0" in text.out and "already current: 2" in text.out
    assert shown.code == 0, shown.err
    assert shown.json()["secret"] == secret
    assert_one_line_error(no_keys, 2, ENV_VAR)


async def test_cli_generate_key_prints_a_usable_key(cli: Cli) -> None:
    result = await cli("secrets", "generate-key")
    assert result.code == 0, result.err
    key = result.out.strip()
    assert box_of(key).open(box_of(key).seal("x"), "x") == "x"
