"""The HTTP side against real receivers: signatures verified by third-party libraries, custom
headers kept out of logs, redirects, response bodies, timeouts, the destination guard and TLS."""

from __future__ import annotations

import asyncio
import io
import logging
import socket
import ssl
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import orjson
import pytest
import structlog
import svix.webhooks
import trustme
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from daemon.logs import configure_logging
from daemon.models import SignatureSpec
from daemon.service import Service
from daemon.signing import generate_secret
from tests.integration import conftest as itc
from tests.integration.conftest import Harness, Hit, Receiver
from tests.receivers import aetherflow_receiver_accepts, spatialflow_receiver_accepts

HOOK_HOST = "hooks.example.test"
FAR_FUTURE = int(time.time()) + 30 * 86400
MiB = 1024 * 1024


class StubResolver(AbstractResolver):
    """Answers for a few made-up names with fixed addresses; anything else does not exist."""

    def __init__(self, names: dict[str, str]) -> None:
        self.names = names
        self.asked: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.asked.append(host)
        if host not in self.names:
            raise OSError(f"stub resolver: no such host {host}")
        address = self.names[host]
        fam = socket.AF_INET6 if ":" in address else socket.AF_INET
        return [
            ResolveResult(
                hostname=host,
                host=address,
                port=port,
                family=fam,
                proto=0,
                flags=socket.AI_NUMERICHOST,
            )
        ]

    async def close(self) -> None:
        pass


@asynccontextmanager
async def serving(
    app: web.Application, ssl_context: ssl.SSLContext | None = None
) -> AsyncIterator[int]:
    """Run `app` on 127.0.0.1 (optionally over TLS); yields the port."""
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=ssl_context)
    await site.start()
    try:
        yield site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    finally:
        await runner.cleanup()


def recording_app(rec: Receiver) -> web.Application:
    """Every method and path goes to the receiver (the conftest one only takes POST)."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", rec.handle)
    return app


@asynccontextmanager
async def daemon(dsn: str, **kwargs: Any) -> AsyncIterator[Service]:
    """A daemon with a resolver or SSL context of the test's choosing."""
    resolver = kwargs.pop("resolver", None)
    ssl_context = kwargs.pop("ssl_context", None)
    service = Service(itc.daemon_config(dsn, **kwargs), resolver=resolver, ssl_context=ssl_context)
    await service.start()
    try:
        yield service
    finally:
        await service.stop()


def header(hit: Hit, name: str) -> str:
    """A request header by case-insensitive name."""
    values = [v for k, v in hit.headers.items() if k.lower() == name.lower()]
    assert len(values) == 1, f"{name}: {values}"
    return values[0]


async def only_attempt(harness: Harness, status: str) -> Any:
    [row] = await harness.wait_status(status, 1)
    [attempt] = await harness.attempts(row["id"])
    return attempt


# --- Standard Webhooks ---------------------------------------------------------------------


async def test_standard_signature_verifies_with_standardwebhooks_and_svix(
    harness: Harness, receiver: Receiver, run_daemon: Any
) -> None:
    ep_id, secret = await harness.endpoint(receiver.url("/hook"))
    async with run_daemon():
        await harness.enqueue({"amount": 12.5, "who": "zoë"}, endpoint_id=ep_id)
        await harness.wait_status("delivered", 1)
    [hit] = receiver.hits
    assert len(header(hit, "webhook-signature").split(" ")) == 1
    Webhook(secret).verify(hit.body, hit.headers)
    svix.webhooks.Webhook(secret).verify(hit.body, hit.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(generate_secret()).verify(hit.body, hit.headers)


async def test_rotation_signs_with_both_secrets_so_a_receiver_with_the_old_one_accepts(
    harness: Harness, receiver: Receiver, run_daemon: Any
) -> None:
    old = generate_secret()
    ep_id, new = await harness.endpoint(receiver.url("/hook"))
    await set_previous_secrets(harness, ep_id, [{"secret": old, "expires_at": FAR_FUTURE}])
    async with run_daemon():
        await harness.enqueue(endpoint_id=ep_id)
        await harness.wait_status("delivered", 1)
    [hit] = receiver.hits
    signatures = header(hit, "webhook-signature").split(" ")
    assert len(signatures) == 2
    assert all(s.startswith("v1,") for s in signatures)
    for secret in (old, new):
        Webhook(secret).verify(hit.body, hit.headers)
        svix.webhooks.Webhook(secret).verify(hit.body, hit.headers)


async def test_expired_previous_secret_is_not_signed(
    harness: Harness, receiver: Receiver, run_daemon: Any
) -> None:
    old = generate_secret()
    ep_id, new = await harness.endpoint(receiver.url("/hook"))
    expired = int(time.time()) - 60
    await set_previous_secrets(harness, ep_id, [{"secret": old, "expires_at": expired}])
    async with run_daemon():
        await harness.enqueue(endpoint_id=ep_id)
        await harness.wait_status("delivered", 1)
    [hit] = receiver.hits
    assert len(header(hit, "webhook-signature").split(" ")) == 1
    Webhook(new).verify(hit.body, hit.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(old).verify(hit.body, hit.headers)
    with pytest.raises(svix.webhooks.WebhookVerificationError):
        svix.webhooks.Webhook(old).verify(hit.body, hit.headers)


async def set_previous_secrets(harness: Harness, ep_id: str, entries: list[Any]) -> None:
    await harness.conn.execute(
        "UPDATE webhookd.endpoints SET previous_secrets = $2::jsonb, version = version + 1"
        " WHERE id = $1",
        ep_id,
        orjson.dumps(entries).decode(),
    )


# --- hex HMAC (receivers from the product docs) --------------------------------------------


@pytest.mark.parametrize(
    ("header_name", "prefix", "accepts"),
    [
        ("X-SF-Signature", "sha256=", spatialflow_receiver_accepts),
        ("X-AetherFlow-Signature", "", aetherflow_receiver_accepts),
    ],
)
async def test_hex_hmac_signature_verifies_with_the_documented_receiver_code(
    harness: Harness,
    receiver: Receiver,
    run_daemon: Any,
    header_name: str,
    prefix: str,
    accepts: Any,
) -> None:
    secret = "not base64 at all: pässwörd/+= 42"
    spec = SignatureSpec("hmac-sha256-hex", header_name, prefix)
    ep_id, _ = await harness.endpoint(receiver.url("/hook"), signature=spec, secret=secret)
    async with run_daemon():
        await harness.enqueue({"event": "order.paid", "total": "9.99"}, endpoint_id=ep_id)
        await harness.wait_status("delivered", 1)
    [hit] = receiver.hits
    signature = header(hit, header_name)
    assert signature.startswith(prefix)
    assert len(signature) == len(prefix) + 64
    assert accepts(secret, hit.body, signature)
    assert not accepts(secret + "x", hit.body, signature)
    assert not accepts(secret, hit.body + b" ", signature)


# --- custom headers and what never reaches logs or the database ----------------------------


@pytest.fixture
def log_buffer() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    buf = io.StringIO()
    configure_logging(level="debug", fmt="json", stream=buf)
    yield buf
    structlog.reset_defaults()
    root.handlers[:] = handlers
    root.setLevel(level)


async def test_custom_headers_arrive_but_their_values_stay_out_of_logs_and_tables(
    harness: Harness, receiver: Receiver, run_daemon: Any, log_buffer: io.StringIO
) -> None:
    receiver.on(
        "/hook",
        lambda hit, n: web.Response(status=500 if n == 1 else 200, text="nope" if n == 1 else "ok"),
    )
    custom = (("Authorization", "Bearer s3cr3t-token"), ("x-api-key", "k-123"))
    ep_id, secret = await harness.endpoint(
        receiver.url("/hook"), headers=custom, retry_schedule_s=(0.1,)
    )
    async with run_daemon():
        await harness.enqueue(endpoint_id=ep_id)
        await harness.wait_status("delivered", 1)
    first, second = receiver.at("/hook")
    for hit in (first, second):
        assert header(hit, "Authorization") == "Bearer s3cr3t-token"
        assert header(hit, "x-api-key") == "k-123"

    logged = log_buffer.getvalue()
    assert '"event":"delivery.attempt"' in logged  # the capture really saw the daemon
    stored = await every_stored_text(harness)
    stored_bytes = [bytes(r["response_body"] or b"") for r in await harness.attempts()]
    for value in ("s3cr3t-token", "k-123", secret, secret.removeprefix("whsec_")):
        assert value not in logged
        assert value not in stored
        assert not any(value.encode() in body for body in stored_bytes)


async def every_stored_text(harness: Harness) -> str:
    """Whole rows of attempts and deliveries as text (bytea as hex and as escaped bytes)."""
    rows = await harness.conn.fetch(
        "SELECT a::text AS t, encode(coalesce(a.response_body, ''), 'escape') AS b"
        " FROM webhookd.attempts a"
        " UNION ALL SELECT d::text, '' FROM webhookd.deliveries d"
    )
    return "\n".join(r["t"] + "\n" + r["b"] for r in rows)


# --- redirects and response bodies ---------------------------------------------------------


async def test_redirect_is_recorded_as_a_failure_and_not_followed(
    harness: Harness, run_daemon: Any
) -> None:
    rec = Receiver()
    rec.on("/hook", lambda hit, n: web.Response(status=302, headers={"Location": "/elsewhere"}))
    async with serving(recording_app(rec)) as port:
        ep_id, _ = await harness.endpoint(f"http://127.0.0.1:{port}/hook", retry_schedule_s=())
        async with run_daemon():
            await harness.enqueue(endpoint_id=ep_id)
            attempt = await only_attempt(harness, "failed")
            await asyncio.sleep(0.2)  # room for a followed redirect to show up
    assert (attempt["status_code"], attempt["error_class"]) == (302, "http_302")
    assert [h.path for h in rec.hits] == ["/hook"]


async def test_huge_response_body_is_read_only_up_to_the_cap_and_stored_truncated(
    harness: Harness, run_daemon: Any
) -> None:
    release = asyncio.Event()
    body = bytes(range(256)) * 256  # 64 KiB pattern, so truncation is checkable

    async def huge(request: web.Request) -> web.StreamResponse:
        await request.read()
        resp = web.StreamResponse()
        resp.content_length = 10 * MiB
        await resp.prepare(request)
        try:
            for _ in range(16):  # 1 MiB of the 10 MiB, then stall: reading it all would hang
                await resp.write(body)
            await asyncio.wait_for(release.wait(), 10)
        except (ConnectionError, TimeoutError):
            pass
        return resp

    app = web.Application()
    app.router.add_post("/big", huge)
    async with serving(app) as port:
        ep_id, _ = await harness.endpoint(f"http://127.0.0.1:{port}/big", retry_schedule_s=())
        async with run_daemon(delivery={"stored_response_body_bytes": 100, "timeout_s": 3.0}):
            await harness.enqueue(endpoint_id=ep_id)
            attempt = await only_attempt(harness, "delivered")
        release.set()
    assert attempt["status_code"] == 200
    assert attempt["error_class"] is None
    assert bytes(attempt["response_body"]) == body[:100]
    assert attempt["duration_ms"] < 2500  # the delivery timeout is 3 s


async def test_non_utf8_response_body_is_stored_byte_exact(
    harness: Harness, receiver: Receiver, run_daemon: Any
) -> None:
    raw = b"\xff\xfe\x00bin"
    receiver.on("/bin", lambda hit, n: web.Response(status=400, body=raw))
    ep_id, _ = await harness.endpoint(receiver.url("/bin"), retry_schedule_s=())
    async with run_daemon():
        await harness.enqueue(endpoint_id=ep_id)
        attempt = await only_attempt(harness, "failed")
    assert attempt["status_code"] == 400
    assert bytes(attempt["response_body"]) == raw


# --- network failures ----------------------------------------------------------------------


async def test_slow_receiver_times_out_is_retried_and_dead_lettered_with_the_reason(
    harness: Harness, receiver: Receiver, run_daemon: Any
) -> None:
    receiver.slow("/slow", 1.0)
    ep_id, _ = await harness.endpoint(receiver.url("/slow"), retry_schedule_s=(0.2, 0.2))
    async with run_daemon(delivery={"timeout_s": 0.5}):
        await harness.enqueue(endpoint_id=ep_id)
        [row] = await harness.wait_status("failed", 1)
    attempts = await harness.attempts(row["id"])
    assert [a["error_class"] for a in attempts] == ["timeout"] * 3
    assert all(a["status_code"] is None for a in attempts)
    assert all(400 <= a["duration_ms"] < 1500 for a in attempts)
    assert len(receiver.at("/slow")) == 3
    assert row["last_error"].startswith("gave up after 3 attempts: timeout")


async def test_closed_port_is_classified_connect_refused(harness: Harness, run_daemon: Any) -> None:
    # Bound but not listening: connections are refused and no one else can take the port.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        ep_id, _ = await harness.endpoint(f"http://127.0.0.1:{port}/", retry_schedule_s=())
        async with run_daemon():
            await harness.enqueue(endpoint_id=ep_id)
            attempt = await only_attempt(harness, "failed")
    assert attempt["error_class"] == "connect_refused"
    assert attempt["status_code"] is None


# --- destination guard ---------------------------------------------------------------------


async def test_private_ip_literal_is_dead_lettered_at_once_and_never_contacted(
    harness: Harness, receiver: Receiver, db_dsn: str
) -> None:
    ep_id, _ = await harness.endpoint(receiver.url("/hook"))  # http://127.0.0.1:<port>/hook
    delivery = {"allow_private_networks": False, "allow_insecure_http": True}
    async with daemon(db_dsn, delivery=delivery):
        await harness.enqueue(endpoint_id=ep_id)
        [row] = await harness.wait_status("failed", 1)
    [attempt] = await harness.attempts(row["id"])
    assert attempt["error_class"] == "refused_destination"
    assert "refused_destination" in row["last_error"]
    assert row["attempts"] == 1
    assert receiver.hits == []


@pytest.mark.parametrize(("allow_private", "status"), [(False, "failed"), (True, "delivered")])
async def test_name_resolving_to_loopback_follows_the_private_network_policy(
    harness: Harness, receiver: Receiver, db_dsn: str, allow_private: bool, status: str
) -> None:
    port = receiver.base_url.rsplit(":", 1)[1]
    ep_id, _ = await harness.endpoint(f"http://{HOOK_HOST}:{port}/hook")
    resolver = StubResolver({HOOK_HOST: "127.0.0.1"})
    delivery = {"allow_private_networks": allow_private, "allow_insecure_http": True}
    async with daemon(db_dsn, delivery=delivery, resolver=resolver):
        await harness.enqueue(endpoint_id=ep_id)
        [row] = await harness.wait_status(status, 1)
    [attempt] = await harness.attempts(row["id"])
    assert HOOK_HOST in resolver.asked  # the decision was made on the resolved address
    if allow_private:
        assert attempt["status_code"] == 200
        assert len(receiver.hits) == 1
    else:
        assert attempt["error_class"] == "refused_destination"
        assert receiver.hits == []


# --- TLS -----------------------------------------------------------------------------------


def server_context(ca: trustme.CA, host: str) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(host).configure_cert(ctx)
    return ctx


def trusting_context(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    return ctx


async def deliver_over_tls(
    harness: Harness,
    db_dsn: str,
    ca: trustme.CA,
    cert_host: str,
    client_ctx: ssl.SSLContext | None,
) -> tuple[Any, Receiver]:
    """One delivery to https://hooks.example.test, served on 127.0.0.1 with a certificate
    for `cert_host` issued by `ca`; returns its only attempt and the receiver."""
    rec = Receiver()
    async with serving(recording_app(rec), server_context(ca, cert_host)) as port:
        ep_id, _ = await harness.endpoint(f"https://{HOOK_HOST}:{port}/hook", retry_schedule_s=())
        resolver = StubResolver({HOOK_HOST: "127.0.0.1"})
        async with daemon(db_dsn, resolver=resolver, ssl_context=client_ctx):
            await harness.enqueue(endpoint_id=ep_id)
            await itc.wait_until(lambda: finished(harness), what="the delivery to finish")
        [row] = await harness.deliveries()
        [attempt] = await harness.attempts(row["id"])
    return attempt, rec


async def finished(harness: Harness) -> bool:
    rows = await harness.deliveries()
    return bool(rows) and rows[0]["status"] in ("delivered", "failed")


async def test_https_delivery_to_a_name_with_a_trusted_certificate(
    harness: Harness, db_dsn: str, ca: trustme.CA
) -> None:
    attempt, rec = await deliver_over_tls(harness, db_dsn, ca, HOOK_HOST, trusting_context(ca))
    assert attempt["status_code"] == 200
    [hit] = rec.hits
    assert header(hit, "Host").startswith(f"{HOOK_HOST}:")  # SNI and Host carry the name


async def test_certificate_for_another_host_name_is_a_tls_certificate_failure(
    harness: Harness, db_dsn: str, ca: trustme.CA
) -> None:
    ctx = trusting_context(ca)
    attempt, rec = await deliver_over_tls(harness, db_dsn, ca, "other.example.test", ctx)
    assert attempt["status_code"] is None
    assert attempt["error_class"] == "tls_certificate"
    assert rec.hits == []


async def test_certificate_from_a_ca_the_default_context_does_not_trust_is_refused(
    harness: Harness, db_dsn: str, ca: trustme.CA
) -> None:
    attempt, rec = await deliver_over_tls(harness, db_dsn, ca, HOOK_HOST, None)
    assert attempt["status_code"] is None
    assert attempt["error_class"] == "tls_certificate"
    assert rec.hits == []


# --- payload size --------------------------------------------------------------------------


async def test_payload_over_the_limit_is_dead_lettered_without_being_sent(
    harness: Harness, receiver: Receiver, run_daemon: Any
) -> None:
    ep_id, _ = await harness.endpoint(receiver.url("/hook"))
    async with run_daemon(delivery={"max_payload_bytes": 100}):
        await harness.enqueue({"pad": "x" * 200}, endpoint_id=ep_id)
        [row] = await harness.wait_status("failed", 1)
    [attempt] = await harness.attempts(row["id"])
    assert attempt["error_class"] == "payload_too_large"
    assert row["attempts"] == 1
    assert "payload_too_large" in row["last_error"]
    assert receiver.hits == []
