"""Egress through a forward proxy: which deliveries go through it, and its credentials kept
apart from everything that is logged, counted or stored. Pure: no I/O.

`https://` destinations are tunnelled with CONNECT (TLS to the destination is still verified
end to end), `http://` ones are forwarded. The proxy resolves the destination's name, so the
destination guard sees only literal addresses: the proxy must enforce the rest.
"""

from __future__ import annotations

import base64
import ipaddress
import re
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import unquote, urlsplit

NONE: Final = "none"  # an endpoint's proxy setting: always direct
_HOST_LABEL = re.compile(r"(?!-)[a-z0-9_-]{1,63}(?<!-)")
_CACHE_MAX = 10_000


@dataclass(frozen=True, slots=True)
class Proxy:
    """A proxy to send through: its URL without credentials, and the Proxy-Authorization
    header made from them (if any)."""

    url: str
    host: str = ""
    port: int = 80
    headers: dict[str, str] | None = field(default=None, hash=False, compare=False)
    secrets: tuple[str, ...] = ()  # texts that must never be shown (the password, as given)

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            if secret:
                text = text.replace(secret, "***")
        return text


def parse_proxy(text: str, *, credentials: bool = True) -> Proxy:
    """`http://[user:password@]host[:port]` -> Proxy. Errors never show the value (it may
    hold a password)."""
    try:
        parts = urlsplit(text.strip())
        port = parts.port
        host = parts.hostname
        user, password = parts.username, parts.password
    except ValueError:
        raise ValueError("is not a valid URL (value not shown: it may hold a password)") from None
    if parts.scheme != "http":
        got = f"a {parts.scheme}:// URL" if parts.scheme else "a value that is not a URL"
        raise ValueError(
            f"must be an http://host:port proxy URL, got {got} (not shown): https:// destinations"
            " are tunnelled through it with CONNECT"
        )
    if not host or not _valid_host(host):
        raise ValueError("has no valid proxy host (value not shown: it may hold a password)")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError("must be only http://[user:password@]host[:port] (value not shown)")
    if (user or password) and not credentials:
        raise ValueError(
            "must not hold credentials (they would be stored in the database): give a proxy"
            " that needs them in delivery.proxy"
        )
    shown_host = f"[{host}]" if ":" in host else host
    url = f"http://{shown_host}" + (f":{port}" if port is not None else "")
    if user is None and password is None:
        return Proxy(url, host, port or 80)
    login, secret = unquote(user or ""), unquote(password or "")
    token = base64.b64encode(f"{login}:{secret}".encode()).decode("ascii")
    secrets = tuple(s for s in {secret, password or ""} if s)
    auth = {"Proxy-Authorization": f"Basic {token}"}
    return Proxy(url, host, port or 80, auth, (*secrets, token))


def _valid_host(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
        return True
    except ValueError:
        labels = host.lower().removesuffix(".").split(".")
        return all(_HOST_LABEL.fullmatch(label) for label in labels)


def redact_proxy(text: str) -> str:
    """A proxy URL for display: its password replaced by ***."""
    if not text or text == NONE:
        return text
    try:
        parts = urlsplit(text)
        if parts.password is None:
            return text
    except ValueError:
        return "***"
    userinfo, _, hostport = parts.netloc.rpartition("@")
    return f"{parts.scheme}://{userinfo.partition(':')[0]}:***@{hostport}"


def parse_no_proxy_entry(entry: str) -> str:
    """A host name (it and its subdomains: `example.com`, `.example.com`), an IP address or a
    CIDR block, or `*` (everything direct). Lowercased; ValueError says what is wrong."""
    text = entry.strip().lower()
    if text == "*":
        return text
    if text.startswith("[") and text.endswith("]"):  # an IPv6 address as URLs write it
        text = text[1:-1]
    try:
        return str(ipaddress.ip_network(text, strict=False))
    except ValueError:
        pass
    host = text.removeprefix(".")
    if not host or not _valid_host(host):
        raise ValueError(f"{entry[:60]!r} is not a host name, an IP address or a CIDR block")
    return host


class NoProxy:
    """Destinations that go direct: by host name suffix, or by literal address in a block.
    (Names are not resolved for this: a name is matched as a name.)"""

    def __init__(self, entries: tuple[str, ...]) -> None:
        self.everything = "*" in entries
        self._networks: list[ipaddress.IPv4Network | ipaddress.IPv6Network] = []
        self._names: list[str] = []
        for entry in entries:
            if entry == "*":
                continue
            try:
                self._networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                self._names.append(entry)

    def matches(self, host: str) -> bool:
        if self.everything:
            return True
        host = host.lower().removesuffix(".")
        try:
            address = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            return any(host == name or host.endswith("." + name) for name in self._names)
        return any(address in network for network in self._networks) or host in self._names


class Egress:
    """Which proxy, if any, a delivery goes through: the endpoint's own setting (a URL, or
    `none`), else delivery.proxy; destinations in delivery.no_proxy go direct either way."""

    def __init__(self, proxy: str = "", no_proxy: tuple[str, ...] = ()) -> None:
        self.default = parse_proxy(proxy) if proxy else None
        self._no_proxy = NoProxy(no_proxy)
        self._overrides: dict[str, Proxy] = {}
        self._routes: dict[tuple[str, str | None], Proxy | None] = {}

    def route(self, url: str, override: str | None) -> Proxy | None:
        """The proxy for a destination URL (None: direct). Cached per URL and setting: an
        attempt does not parse either again."""
        key = (url, override)
        try:
            return self._routes[key]
        except KeyError:
            pass
        if len(self._routes) >= _CACHE_MAX:
            self._routes.clear()
            self._overrides.clear()
        proxy = self._proxy_of(override)
        if proxy is not None and self._no_proxy.matches(urlsplit(url).hostname or ""):
            proxy = None
        self._routes[key] = proxy
        return proxy

    def _proxy_of(self, override: str | None) -> Proxy | None:
        if override is None:
            return self.default
        if override == NONE:
            return None
        if override not in self._overrides:
            self._overrides[override] = parse_proxy(override, credentials=False)
        return self._overrides[override]
