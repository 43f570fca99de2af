"""Egress through a real forward proxy (tinyproxy): https tunnelled with CONNECT and still
verified, http forwarded, no_proxy and `--proxy none` direct, the proxy's refusals and absence
classified as the proxy's, and its credentials never shown."""

from __future__ import annotations

import socket
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from structlog.testing import capture_logs

from daemon.service import Service
from tests.cli_support import Cli
from tests.integration import conftest as itc
from tests.integration.conftest import Harness, Receiver
from tests.proxy_support import VIA_NAME, TinyProxy, free_port, tinyproxy, tinyproxy_binary

PASSWORD = "pr0xy-S3cret"


@pytest.fixture(scope="module")
def tinyproxy_bin() -> str:
    return tinyproxy_binary()


@asynccontextmanager
async def serving(
    rec: Receiver, host: str = "127.0.0.1", ssl_context: ssl.SSLContext | None = None
) -> AsyncIterator[int]:
    """A recording receiver on `host` (optionally over TLS); yields the port."""
    app = web.Application()
    app.router.add_route("POST", "/{tail:.*}", rec.handle)
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, host, 0, ssl_context=ssl_context)
    await site.start()
    try:
        yield site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    finally:
        await runner.cleanup()


def server_context(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(ctx)
    return ctx


def trusting(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context()
    ca.configure_trust(ctx)
    return ctx


class NoNames(AbstractResolver):
    """A resolver for which no name exists (the proxy's own name cannot be resolved)."""

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        raise OSError(f"no such host {host}")

    async def close(self) -> None:
        pass


@asynccontextmanager
async def daemon(
    dsn: str,
    ssl_context: ssl.SSLContext | None = None,
    resolver: AbstractResolver | None = None,
    **delivery: Any,
) -> AsyncIterator[Service]:
    config = itc.daemon_config(dsn, delivery=delivery)
    service = Service(config, ssl_context=ssl_context, resolver=resolver)
    await service.start()
    try:
        yield service
    finally:
        await service.stop()


async def attempts_of(harness: Harness, endpoint_id: str) -> list[Any]:
    [row] = await harness.deliveries(endpoint_id)
    return await harness.attempts(row["id"])


async def wait_attempts(harness: Harness, endpoint_id: str, count: int) -> list[Any]:
    async def enough() -> bool:
        rows = await harness.deliveries(endpoint_id)
        return bool(rows) and len(await harness.attempts(rows[0]["id"])) >= count

    await itc.wait_until(enough, what=f"{count} attempts to {endpoint_id}")
    return await attempts_of(harness, endpoint_id)


def via(hit: Any) -> str:
    return next((v for k, v in hit.headers.items() if k.lower() == "via"), "")


async def test_https_deliveries_tunnel_through_the_proxy_with_tls_still_verified(
    harness: Harness, db_dsn: str, ca: trustme.CA, tinyproxy_bin: str, tmp_path: Path
) -> None:
    good, untrusted = Receiver(), Receiver()
    async with (
        serving(good, ssl_context=server_context(ca)) as port,
        serving(untrusted, ssl_context=server_context(trustme.CA())) as bad_port,
        tinyproxy(tinyproxy_bin, tmp_path, connect_ports=[port, bad_port]) as proxy,
    ):
        ok, _ = await harness.endpoint(f"https://127.0.0.1:{port}/hook")
        forged, _ = await harness.endpoint(
            f"https://localhost:{bad_port}/hook", retry_schedule_s=()
        )
        async with daemon(db_dsn, trusting(ca), proxy=proxy.url):
            await harness.enqueue(endpoint_id=ok)
            await harness.enqueue(endpoint_id=forged)
            await harness.wait_status("delivered", 1, ok)
            await harness.wait_status("failed", 1, forged)
        assert f"CONNECT 127.0.0.1:{port} HTTP/1.1" in proxy.requests()
        assert f"CONNECT localhost:{bad_port} HTTP/1.1" in proxy.requests()
    assert len(good.hits) == 1 and untrusted.hits == []
    [attempt] = await attempts_of(harness, forged)
    assert attempt["error_class"] == "tls_certificate"


async def test_http_is_forwarded_while_no_proxy_hosts_and_proxy_none_go_direct(
    harness: Harness, receiver: Receiver, db_dsn: str, tinyproxy_bin: str, tmp_path: Path
) -> None:
    other = Receiver()
    async with (
        serving(other, host="127.0.0.2") as other_port,
        tinyproxy(tinyproxy_bin, tmp_path) as proxy,
    ):
        proxied, _ = await harness.endpoint(receiver.url("/proxied"))
        listed, _ = await harness.endpoint(f"http://127.0.0.2:{other_port}/listed")
        direct, _ = await harness.endpoint(receiver.url("/direct"), proxy="none")
        async with daemon(db_dsn, proxy=proxy.url, no_proxy=("127.0.0.2", ".example.org")):
            for ep in (proxied, listed, direct):
                await harness.enqueue(endpoint_id=ep)
            await harness.wait_status("delivered", 3)
        requests = proxy.requests()
    [hit] = receiver.at("/proxied")
    assert VIA_NAME in via(hit)
    assert any(r.startswith(f"POST {receiver.url('/proxied')} ") for r in requests)
    [direct_hit] = receiver.at("/direct")
    [listed_hit] = other.hits
    assert via(direct_hit) == via(listed_hit) == ""
    assert len(requests) == 1


async def test_a_redirect_through_the_proxy_is_not_followed(
    harness: Harness, receiver: Receiver, db_dsn: str, tinyproxy_bin: str, tmp_path: Path
) -> None:
    elsewhere = receiver.url("/elsewhere")
    receiver.on("/moved", lambda hit, n: web.Response(status=302, headers={"Location": elsewhere}))
    async with tinyproxy(tinyproxy_bin, tmp_path) as proxy:
        ep, _ = await harness.endpoint(receiver.url("/moved"), retry_schedule_s=())
        async with daemon(db_dsn, proxy=proxy.url):
            await harness.enqueue(endpoint_id=ep)
            await harness.wait_status("failed", 1, ep)
    [attempt] = await attempts_of(harness, ep)
    assert (attempt["status_code"], attempt["error_class"]) == (302, "http_302")
    assert receiver.at("/elsewhere") == [] and VIA_NAME in via(receiver.at("/moved")[0])


async def test_proxy_credentials_work_and_a_wrong_password_is_proxy_auth_never_shown(
    harness: Harness,
    receiver: Receiver,
    db_dsn: str,
    ca: trustme.CA,
    tinyproxy_bin: str,
    tmp_path: Path,
) -> None:
    tls = Receiver()
    async with (
        serving(tls, ssl_context=server_context(ca)) as port,
        tinyproxy(tinyproxy_bin, tmp_path, basic_auth=("webhookd", PASSWORD)) as proxy,
    ):
        https, _ = await harness.endpoint(f"https://127.0.0.1:{port}/hook", retry_schedule_s=())
        # its own proxy setting, without credentials: a forwarded request the proxy answers 407
        http, _ = await harness.endpoint(
            receiver.url("/hook"), retry_schedule_s=(), proxy=proxy.url
        )
        wrong = proxy.url_with("webhookd", "Wr0ng-" + PASSWORD)
        with capture_logs() as logs:
            async with daemon(db_dsn, trusting(ca), proxy=wrong) as service:
                await harness.enqueue(endpoint_id=https)
                await harness.enqueue(endpoint_id=http)
                await harness.wait_status("failed", 2)
                metrics = service.metrics.render().decode()
        assert receiver.hits == [] and tls.hits == []
        await harness.conn.execute("UPDATE webhookd.endpoints SET proxy = NULL WHERE id = $1", http)
        async with daemon(db_dsn, trusting(ca), proxy=proxy.url_with("webhookd", PASSWORD)):
            await harness.enqueue(endpoint_id=https)
            await harness.enqueue(endpoint_id=http)
            await harness.wait_status("delivered", 2)
    assert len(tls.hits) == 1 and len(receiver.hits) == 1
    failed = [a for a in await harness.attempts() if a["status_code"] != 200]
    # https: 401 to CONNECT with the wrong password; http: 407 to a forwarded request without
    assert sorted((a["endpoint_id"], a["error_class"]) for a in failed) == sorted(
        [(https, "proxy_auth"), (http, "proxy_auth")]
    )
    stored = [str(dict(r)) for r in await harness.attempts()]
    stored += [str(dict(r)) for r in await harness.deliveries()]
    for text in (metrics, str(logs), *stored):
        assert PASSWORD not in text


async def test_a_destination_the_proxy_refuses_is_proxy_refused_not_the_receivers_403(
    harness: Harness, db_dsn: str, ca: trustme.CA, tinyproxy_bin: str, tmp_path: Path
) -> None:
    tls = Receiver()
    async with (
        serving(tls, ssl_context=server_context(ca)) as port,
        tinyproxy(tinyproxy_bin, tmp_path, deny_hosts=["localhost"]) as proxy,
    ):
        refused, _ = await harness.endpoint(f"https://localhost:{port}/hook")
        async with daemon(db_dsn, trusting(ca), proxy=proxy.url):
            await harness.enqueue(endpoint_id=refused)
            attempts = await wait_attempts(harness, refused, 2)
    assert tls.hits == []
    assert [(a["error_class"], a["status_code"]) for a in attempts[:2]] == [
        ("proxy_refused", None),
        ("proxy_refused", None),
    ]


async def test_a_proxy_that_is_down_gives_retries_with_proxy_unreachable(
    harness: Harness, receiver: Receiver, db_dsn: str
) -> None:
    ep, _ = await harness.endpoint(receiver.url("/hook"))
    async with daemon(db_dsn, proxy=f"http://127.0.0.1:{free_port()}"):
        await harness.enqueue(endpoint_id=ep)
        attempts = await wait_attempts(harness, ep, 2)  # the first failure was retried
    assert [a["error_class"] for a in attempts[:2]] == ["proxy_unreachable"] * 2
    assert receiver.hits == []


async def test_a_proxy_whose_name_does_not_resolve_is_proxy_unreachable(
    harness: Harness, receiver: Receiver, db_dsn: str
) -> None:
    ep, _ = await harness.endpoint(receiver.url("/hook"))
    async with daemon(db_dsn, resolver=NoNames(), proxy="http://egress.internal:3128"):
        await harness.enqueue(endpoint_id=ep)
        [attempt, *_] = await wait_attempts(harness, ep, 1)
    assert attempt["error_class"] == "proxy_unreachable" and receiver.hits == []


def test_tinyproxy_log_is_read_as_request_lines(tmp_path: Path) -> None:
    log = tmp_path / "log"
    log.write_text(
        "CONNECT   Dec 04 23:24:37.571 [1]: Request (file descriptor 4): GET http://a/ HTTP/1.1\n"
        "INFO      Dec 04 23:24:37.632 [1]: No upstream proxy for a\n"
    )
    assert TinyProxy(1, log).requests() == ["GET http://a/ HTTP/1.1"]


async def test_endpoint_proxy_is_set_shown_reset_and_refused_with_credentials(cli: Cli) -> None:
    ep = await cli.add("https://hooks.example.com/x", "--proxy", "http://egress.internal:3128")
    shown = (await cli("endpoint", "show", ep, "--json")).json()
    assert shown["proxy"] == "http://egress.internal:3128"
    direct = await cli("endpoint", "update", ep, "--proxy", "none")
    assert direct.code == 0, direct.err
    assert (await cli("endpoint", "show", ep, "--json")).json()["proxy"] == "none"
    reset = await cli("endpoint", "update", ep, "--proxy", "default")
    assert reset.code == 0, reset.err
    assert (await cli("endpoint", "show", ep, "--json")).json()["proxy"] is None
    refused = await cli("endpoint", "update", ep, "--proxy", f"http://u:{PASSWORD}@egress:3128")
    assert refused.code == 2 and PASSWORD not in refused.err
    assert refused.err_lines == [
        "webhookd: error: --proxy: must not hold credentials (they would be stored in the"
        " database): give a proxy that needs them in delivery.proxy"
    ]
    bad = await cli("endpoint", "add", "https://hooks.example.com/y", "--proxy", "socks5://x:1")
    assert bad.code == 2 and "--proxy: must be an http://host:port proxy URL" in bad.err
