"""One HTTP attempt: build the signed request, POST it, classify what came back. No database.

The destination guard lives in the resolver, so the address checked is the address
connected to (a name cannot resolve to a public address for the check and a private one
for the connection). IP literals never reach a resolver and are checked up front. Through a
forward proxy (egress.py) the proxy resolves destinations; only its own name is resolved here.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
import ssl
import time
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult

from daemon.egress import Egress, Proxy
from daemon.errors import DestinationRefused
from daemon.models import AttemptResult, Delivery, Endpoint
from daemon.retry import parse_retry_after
from daemon.signing import Signer

_PAUSING_STATUSES = (429, 503)
_CACHE_MAX = 10_000  # distinct URLs / timeouts remembered before starting over
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052 well-known prefix


def address_allowed(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Public unicast only: no loopback, RFC 1918, link-local/metadata, CGNAT, ULA, 0.0.0.0."""
    if isinstance(ip, ipaddress.IPv6Address):
        ip = _embedded_ipv4(ip) or ip
    return ip.is_global and not ip.is_multicast


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for: a NAT64 gateway or 6to4 relay would
    carry the connection there, so that is the address the policy must judge."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return ip.sixtofour


def check_url(url: str, *, allow_http: bool, allow_private: bool) -> None:
    """Refuse what policy forbids before any socket is opened."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http"):
        raise DestinationRefused(url, f"unsupported URL scheme {parts.scheme!r}")
    if parts.scheme == "http" and not allow_http:
        raise DestinationRefused(url, "plain http is not allowed (delivery.allow_insecure_http)")
    if not parts.hostname:
        raise DestinationRefused(url, "URL has no host")
    try:
        literal = ipaddress.ip_address(parts.hostname)
    except ValueError:
        return
    if not allow_private and not address_allowed(literal):
        raise DestinationRefused(url, f"address {literal} is not public")


class GuardedResolver(AbstractResolver):
    """Resolves, then drops every address policy forbids; none left is an error."""

    def __init__(self, inner: AbstractResolver, allow_private: bool) -> None:
        self._inner = inner
        self._allow_private = allow_private

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        if self._allow_private:
            return results
        kept = [r for r in results if address_allowed(ipaddress.ip_address(r["host"]))]
        if not kept:
            raise DestinationRefused(host, f"{host} resolves only to non-public addresses")
        return kept

    async def close(self) -> None:
        await self._inner.close()


MAX_MSG_ID = 256  # as the outbox_msg_id_sendable constraint (migration 0010)


class InvalidMessage(Exception):
    """A claimed message that cannot be sent as it is (a msg_id no header can carry, from a
    row older than the constraint): another attempt cannot fix it."""


# C0 and C1 control characters and DEL: a regex scans in C (a generator over the characters
# showed in the profile of every attempt)
_CONTROL_CHAR = re.compile("[\x00-\x1f\x7f-\x9f]")


def check_msg_id(msg_id: str) -> None:
    """What the outbox_msg_id_sendable constraint checks, for rows inserted before it."""
    why = None
    if not msg_id:
        why = "it is empty"
    elif len(msg_id) > MAX_MSG_ID:
        why = f"it is {len(msg_id)} characters long (at most {MAX_MSG_ID})"
    elif msg_id != msg_id.strip():
        why = "it starts or ends with a blank"
    elif bad := _CONTROL_CHAR.search(msg_id):
        why = f"it contains the control character U+{ord(bad[0]):04X}"
    if why is not None:
        raise InvalidMessage(f"msg_id cannot be sent as the webhook-id header: {why}")


_ERROR_CLASSES: tuple[tuple[type[BaseException] | tuple[type[BaseException], ...], str], ...] = (
    (DestinationRefused, "refused_destination"),
    (InvalidMessage, "invalid_message"),
    (aiohttp.ClientProxyConnectionError, "proxy_unreachable"),
    ((asyncio.TimeoutError, aiohttp.ServerTimeoutError), "timeout"),
    (aiohttp.ClientConnectorCertificateError, "tls_certificate"),
    ((aiohttp.ClientConnectorSSLError, aiohttp.ClientSSLError, ssl.SSLError), "tls_error"),
    (ConnectionRefusedError, "connect_refused"),
    (aiohttp.ClientConnectorDNSError, "dns_error"),
    (aiohttp.ClientConnectorError, "connect_error"),
    (aiohttp.ServerDisconnectedError, "connection_closed"),
    (aiohttp.ClientPayloadError, "response_payload"),
    (aiohttp.ClientResponseError, "invalid_http"),
    ((ConnectionResetError, aiohttp.ClientOSError), "connection_reset"),
    (aiohttp.ClientError, "client_error"),
)


# The proxy's answer to CONNECT, not the receiver's: its own classes. (tinyproxy answers 401
# to wrong credentials, 407 to none.)
_PROXY_STATUSES = {401: "proxy_auth", 403: "proxy_refused", 407: "proxy_auth"}
_CONNECT_CLASSES = frozenset({"dns_error", "connect_refused", "connect_error"})


def classify_exception(exc: BaseException) -> tuple[str, str]:
    """(error_class, short text) for a failed attempt; the text never holds header values."""
    if isinstance(exc, aiohttp.ClientHttpProxyError):
        return _PROXY_STATUSES.get(exc.status, "proxy_error"), _short(exc)
    causes = [c for c in (exc, getattr(exc, "os_error", None), exc.__cause__) if c is not None]
    for kinds, name in _ERROR_CLASSES:
        if any(isinstance(c, kinds) for c in causes):
            return name, _short(exc)
    return "internal_error", _short(exc)


def _short(exc: BaseException) -> str:
    text = str(exc) or exc.__class__.__name__
    return f"{exc.__class__.__name__}: {text}"[:300]


class Deliverer:
    """Owns the one shared aiohttp session (keep-alive, connection pool, guarded DNS)."""

    def __init__(
        self,
        *,
        user_agent: str,
        max_response_bytes: int,
        stored_response_bytes: int,
        allow_http: bool,
        allow_private: bool,
        resolver: AbstractResolver | None = None,
        ssl_context: ssl.SSLContext | None = None,
        clock: Callable[[], float] = time.time,
        proxy: str = "",
        no_proxy: tuple[str, ...] = (),
    ) -> None:
        self._user_agent = user_agent
        self._max_read = max_response_bytes
        self._keep = stored_response_bytes
        self._allow_http = allow_http
        self._allow_private = allow_private
        self._resolver = resolver
        self._ssl = ssl_context or ssl.create_default_context()
        self._clock = clock
        self._session: aiohttp.ClientSession | None = None
        # Deliveries through a proxy have their own session: the only name it resolves is the
        # proxy's (an internal address the destination guard would refuse), never a destination.
        self._egress = Egress(proxy, no_proxy)
        self._proxy_session: aiohttp.ClientSession | None = None
        # Per URL, the refusal `check_url` gives (None: allowed); per value, a ClientTimeout.
        # Both depend only on their key, and computing them per attempt showed in profiles.
        self._verdicts: dict[str, DestinationRefused | None] = {}
        self._timeouts: dict[float, aiohttp.ClientTimeout] = {}

    async def start(self) -> None:
        inner = self._resolver or aiohttp.ThreadedResolver()
        connector = aiohttp.TCPConnector(
            limit=0,  # the scheduler is the only limit
            resolver=GuardedResolver(inner, self._allow_private),
            ssl=self._ssl,
            ttl_dns_cache=10,
            enable_cleanup_closed=True,
        )
        self._session = self._new_session(connector)

    @staticmethod
    def _new_session(connector: aiohttp.TCPConnector) -> aiohttp.ClientSession:
        return aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,  # a compressed body could be a bomb; we keep raw bytes
            skip_auto_headers=("Accept-Encoding",),
            cookie_jar=aiohttp.DummyCookieJar(),
        )

    def _through_proxy(self) -> aiohttp.ClientSession:
        if self._proxy_session is None:
            connector = aiohttp.TCPConnector(
                limit=0,
                resolver=self._resolver or aiohttp.ThreadedResolver(),
                ssl=self._ssl,  # TLS to the destination, through the tunnel, still verified
                ttl_dns_cache=10,
                enable_cleanup_closed=True,
            )
            self._proxy_session = self._new_session(connector)
        return self._proxy_session

    async def close(self) -> None:
        for session in (self._session, self._proxy_session):
            if session is not None:
                await session.close()
        self._session = self._proxy_session = None

    def headers(
        self, endpoint: Endpoint, delivery: Delivery, signer: Signer, body: bytes
    ) -> dict[str, str]:
        """Custom headers first, so they can never replace a signature or content type.
        The signature is over `body`, the bytes sent."""
        check_msg_id(delivery.msg_id)
        headers = dict(endpoint.headers)
        headers["Content-Type"] = "application/json"
        headers["User-Agent"] = self._user_agent
        headers.update(signer.headers(delivery.msg_id, int(self._clock()), body))
        return headers

    async def attempt(
        self,
        endpoint: Endpoint,
        delivery: Delivery,
        signer: Signer,
        timeout_s: float,
        body: bytes | None = None,
    ) -> AttemptResult:
        """POST `body` (a chat endpoint's rendered message), or by default the payload."""
        started = self._clock()
        t0 = time.monotonic()
        sent = delivery.payload if body is None else body
        proxy: Proxy | None = None
        try:
            self._check(endpoint.url)
            if self._egress.default is not None or endpoint.proxy is not None:
                proxy = self._egress.route(endpoint.url, endpoint.proxy)
            status, got, retry_after = await self._post(
                endpoint, delivery, signer, timeout_s, sent, proxy
            )
        except Exception as exc:  # every failure is a recorded attempt, never a crash
            error_class, text = self._failure(exc, proxy, timeout_s)
            return AttemptResult(
                started, time.monotonic() - t0, None, error_class, text, started_mono=t0
            )
        duration = time.monotonic() - t0
        if status == 407 and proxy is not None:  # a forwarded http:// request: the proxy's
            text = "the proxy answered 407 Proxy Authentication Required"
            return AttemptResult(started, duration, None, "proxy_auth", text, started_mono=t0)
        if 200 <= status < 300:
            return AttemptResult(
                started, duration, status, response_body=got[: self._keep], started_mono=t0
            )
        return AttemptResult(
            started,
            duration,
            status,
            f"http_{status}",
            f"HTTP {status}",
            got[: self._keep],
            retry_after,
            started_mono=t0,
        )

    @staticmethod
    def _failure(exc: Exception, proxy: Proxy | None, timeout_s: float) -> tuple[str, str]:
        error_class, text = classify_exception(exc)
        if error_class == "timeout":  # str(TimeoutError()) is empty: say what ran out
            text = f"no complete response within {timeout_s:g}s"
        if proxy is None:
            return error_class, text
        # The proxy's own name not resolving, or refusing connections, is the proxy down.
        if (
            error_class in _CONNECT_CLASSES
            and isinstance(exc, aiohttp.ClientConnectorError)
            and (exc.host, exc.port) == (proxy.host, proxy.port)
        ):
            error_class = "proxy_unreachable"
        return error_class, proxy.redact(text)

    def _check(self, url: str) -> None:
        if url not in self._verdicts:
            if len(self._verdicts) >= _CACHE_MAX:
                self._verdicts.clear()
            try:
                check_url(url, allow_http=self._allow_http, allow_private=self._allow_private)
                self._verdicts[url] = None
            except DestinationRefused as exc:
                self._verdicts[url] = exc
        refused = self._verdicts[url]
        if refused is not None:
            raise DestinationRefused(refused.url, refused.why)

    def _timeout(self, timeout_s: float) -> aiohttp.ClientTimeout:
        timeout = self._timeouts.get(timeout_s)
        if timeout is None:
            if len(self._timeouts) >= _CACHE_MAX:
                self._timeouts.clear()
            timeout = self._timeouts[timeout_s] = aiohttp.ClientTimeout(total=timeout_s)
        return timeout

    async def _post(
        self,
        endpoint: Endpoint,
        delivery: Delivery,
        signer: Signer,
        timeout_s: float,
        body: bytes,
        proxy: Proxy | None,
    ) -> tuple[int, bytes, float | None]:
        assert self._session is not None, "Deliverer.start() was not called"
        session, headers = self._session, self.headers(endpoint, delivery, signer, body)
        if proxy is not None:
            session = self._through_proxy()
            if proxy.headers and endpoint.url.startswith("http:"):
                # Forwarded, not tunnelled: aiohttp puts proxy_headers on CONNECT only.
                headers.update(proxy.headers)
        async with session.post(
            endpoint.url,
            data=body,
            headers=headers,
            allow_redirects=False,
            timeout=self._timeout(timeout_s),
            proxy=None if proxy is None else proxy.url,
            proxy_headers=None if proxy is None else proxy.headers,
        ) as resp:
            body = await self._read_capped(resp)
            retry_after = None
            if resp.status in _PAUSING_STATUSES and "Retry-After" in resp.headers:
                retry_after = parse_retry_after(resp.headers["Retry-After"], self._clock())
            return resp.status, body, retry_after

    async def _read_capped(self, resp: Any) -> bytes:
        """Read at most max_response_bytes; the rest is left unread (connection dropped)."""
        length = resp.content_length
        if length is not None and length <= self._max_read:
            body: bytes = await resp.read()  # announced and small enough: one read
            return body[: self._max_read]
        chunks: list[bytes] = []
        size = 0
        while size < self._max_read:
            chunk = await resp.content.read(self._max_read - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks)
