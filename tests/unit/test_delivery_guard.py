"""The destination guard: which addresses and URLs a delivery may go to (pure, no sockets)."""

from __future__ import annotations

import ipaddress
import re
import socket

import pytest
from aiohttp.abc import AbstractResolver, ResolveResult

from daemon.delivery import (
    GuardedResolver,
    InvalidMessage,
    address_allowed,
    check_msg_id,
    check_url,
    classify_exception,
)
from daemon.errors import DestinationRefused

REFUSED = [
    "127.0.0.1",
    "127.255.255.254",
    "::1",
    "10.0.0.1",
    "10.255.255.255",
    "172.16.0.1",
    "172.31.255.254",
    "192.168.0.1",
    "192.168.255.255",
    "100.64.0.1",  # CGNAT
    "100.127.255.254",
    "169.254.169.254",  # cloud metadata
    "169.254.0.1",
    "fc00::1",
    "fd00:ec2::254",  # ULA metadata address
    "fe80::1",
    "fe80::1%1",
    "0.0.0.0",
    "::",
    "::ffff:127.0.0.1",
    "::ffff:10.0.0.1",
    "::ffff:169.254.169.254",
    "224.0.0.1",
    "ff02::1",
    "255.255.255.255",
    # Private IPv4 inside IPv6 transition addresses (RFC 6052 NAT64, RFC 3056 6to4): a NAT64
    # gateway or 6to4 relay would carry the connection to the private IPv4 address.
    "64:ff9b::7f00:1",
    "64:ff9b::a9fe:a9fe",
    "64:ff9b::a00:1",
    "2002:7f00:1::1",
    "2002:a9fe:a9fe::1",
]
ALLOWED = [
    "8.8.8.8",
    "1.1.1.1",
    "172.32.0.1",  # just outside 172.16/12
    "100.128.0.1",  # just outside 100.64/10
    "2001:4860:4860::8888",
    "::ffff:8.8.8.8",
    "64:ff9b::808:808",  # NAT64 of a public address
    "2002:808:808::1",  # 6to4 of a public address
]


@pytest.mark.parametrize("address", REFUSED)
def test_non_public_address_is_refused(address: str) -> None:
    assert not address_allowed(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ALLOWED)
def test_public_address_is_allowed(address: str) -> None:
    assert address_allowed(ipaddress.ip_address(address))


def url_for(address: str) -> str:
    host = f"[{address.replace('%', '%25')}]" if ":" in address else address
    return f"https://{host}:8443/hook"


@pytest.mark.parametrize("address", REFUSED)
def test_url_with_a_non_public_ip_literal_is_refused(address: str) -> None:
    with pytest.raises(DestinationRefused, match="is not public"):
        check_url(url_for(address), allow_http=False, allow_private=False)


@pytest.mark.parametrize("address", REFUSED)
def test_url_with_a_non_public_ip_literal_passes_when_private_networks_are_allowed(
    address: str,
) -> None:
    check_url(url_for(address), allow_http=False, allow_private=True)


@pytest.mark.parametrize("address", ALLOWED)
def test_url_with_a_public_ip_literal_passes(address: str) -> None:
    check_url(url_for(address), allow_http=False, allow_private=False)


def test_url_with_a_host_name_is_left_to_the_resolver() -> None:
    check_url("https://localhost/hook", allow_http=False, allow_private=False)


def test_plain_http_is_refused_unless_allowed() -> None:
    with pytest.raises(DestinationRefused, match="plain http"):
        check_url("http://8.8.8.8/hook", allow_http=False, allow_private=False)
    check_url("http://8.8.8.8/hook", allow_http=True, allow_private=False)


@pytest.mark.parametrize(
    "url", ["ftp://8.8.8.8/hook", "file:///etc/passwd", "gopher://8.8.8.8/", "ws://8.8.8.8/"]
)
@pytest.mark.parametrize("allow", [False, True])
def test_other_schemes_are_always_refused(url: str, allow: bool) -> None:
    with pytest.raises(DestinationRefused, match="unsupported URL scheme"):
        check_url(url, allow_http=allow, allow_private=allow)


def test_url_without_a_host_is_refused() -> None:
    with pytest.raises(DestinationRefused, match="no host"):
        check_url("https:///hook", allow_http=True, allow_private=True)


class FixedResolver(AbstractResolver):
    """Resolves every name to the same addresses."""

    def __init__(self, *addresses: str) -> None:
        self.addresses = addresses

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        return [
            ResolveResult(
                hostname=host,
                host=a,
                port=port,
                family=socket.AF_INET6 if ":" in a else socket.AF_INET,
                proto=0,
                flags=0,
            )
            for a in self.addresses
        ]

    async def close(self) -> None:
        pass


async def test_resolver_refuses_a_name_with_only_private_addresses() -> None:
    guarded = GuardedResolver(FixedResolver("127.0.0.1", "::1", "10.1.2.3"), allow_private=False)
    with pytest.raises(DestinationRefused, match="non-public"):
        await guarded.resolve("hooks.example.test", 443)


async def test_resolver_drops_private_addresses_and_keeps_public_ones() -> None:
    guarded = GuardedResolver(FixedResolver("10.0.0.1", "8.8.8.8"), allow_private=False)
    assert [r["host"] for r in await guarded.resolve("hooks.example.test", 443)] == ["8.8.8.8"]


async def test_resolver_passes_everything_when_private_networks_are_allowed() -> None:
    guarded = GuardedResolver(FixedResolver("127.0.0.1", "8.8.8.8"), allow_private=True)
    hosts = [r["host"] for r in await guarded.resolve("hooks.example.test", 443)]
    assert hosts == ["127.0.0.1", "8.8.8.8"]


# --- msg_id: what the webhook-id header can carry (as the outbox constraint, for older rows) ---


@pytest.mark.parametrize(
    ("msg_id", "why"),
    [
        ("", "empty"),
        ("a\r\nX-Injected: 1", "U+000D"),
        ("nul\x00", "U+0000"),
        ("c1\x85x", "U+0085"),
        ("del\x7f", "U+007F"),
        ("last c1\x9f", "U+009F"),
        (" lead", "blank"),
        ("x" * 257, "257 characters"),
    ],
)
def test_msg_id_no_header_can_carry_is_an_invalid_message(msg_id: str, why: str) -> None:
    with pytest.raises(InvalidMessage, match=re.escape(why)):
        check_msg_id(msg_id)

    assert classify_exception(InvalidMessage("x"))[0] == "invalid_message"


@pytest.mark.parametrize("msg_id", ["msg_2b0c", "order 17/2", "é-ü", "nbsp\xa0x~", "x" * 256])
def test_ordinary_msg_ids_pass(msg_id: str) -> None:
    check_msg_id(msg_id)
