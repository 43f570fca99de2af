"""Configuration: frozen dataclasses from one TOML file, then WEBHOOKD_<SECTION>_<KEY> overrides.

Every value is parsed once here (durations to seconds, sizes to bytes, rates to tokens per
second), so no other module sees a unit string. Reading the one file is the only I/O.
"""

from __future__ import annotations

import contextlib
import difflib
import math
import os
import re
import socket
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from daemon import __version__
from daemon.egress import parse_no_proxy_entry, parse_proxy, redact_proxy
from daemon.errors import ConfigError
from daemon.units import (
    DAY_S,
    HOUR_S,
    MAX_AGE_S,
    MAX_BURST,
    MAX_GRACE_S,
    MAX_IN_FLIGHT,
    MAX_RETRY_DELAY_S,
    MAX_SCHEDULE_ENTRIES,
    MAX_SIZE_BYTES,
    MAX_TIMEOUT_S,
    Rate,
    check_duration,
    check_schedule,
    format_duration,
    format_rate,
    format_size,
    parse_duration,
    parse_rate,
    parse_size,
)

DEFAULT_CONFIG_PATH = Path("/etc/webhookd/webhookd.toml")
ENV_PREFIX = "WEBHOOKD_"
DEFAULT_USER_AGENT = f"webhookd/{__version__}"
# WEBHOOKD_* variables read elsewhere, not config keys (`git grep -oh 'WEBHOOKD_[A-Z_]*'`).
OTHER_VARIABLES = frozenset(
    {
        "WEBHOOKD_CONFIG",  # the --config default
        "WEBHOOKD_SECRET_KEYS",  # secrets at rest: kept out of files and output
        "WEBHOOKD_TEST_DATABASE_URL",  # the test suite's server
        "WEBHOOKD_BENCH_DATABASE_URL",  # bench/
        "WEBHOOKD_BENCH_SMOKE",  # bench/, in the test suite
        "WEBHOOKD_SCREENSHOTS",  # `make screenshots`: the console's browser tests write docs/
    }
)
LOG_LEVELS = ("debug", "info", "warning", "error")
LOG_FORMATS = ("auto", "json", "console")


def default_embedded_dir(env: Mapping[str, str]) -> Path:
    """Where the embedded PostgreSQL keeps its data when database.embedded_dir is empty."""
    state = Path(env.get("XDG_STATE_HOME", ""))
    if not state.is_absolute():  # the XDG spec says to ignore relative (and empty) values
        home = env.get("HOME", "")
        state = (Path(home) if home else Path.home()) / ".local" / "state"
    return state / "webhookd" / "postgres"


def default_instance_id() -> str:
    """Names the lease holder in the outbox, so a restarted process is told apart."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True, slots=True)
class DatabaseConfig:
    """[database]: where the outbox lives; an empty url starts the embedded PostgreSQL."""

    url: str = ""
    pool_min_size: int = 1
    pool_max_size: int = 10
    connect_timeout_s: float = 5.0
    embedded_dir: Path = field(default_factory=lambda: default_embedded_dir(os.environ))

    @property
    def use_embedded(self) -> bool:
        return not self.url


@dataclass(frozen=True, slots=True)
class OutboxConfig:
    """[outbox]: how deliveries are claimed; a claim's lease is the attempt timeout + margin."""

    poll_interval_s: float = 1.0
    batch_size: int = 100
    lease_margin_s: float = 30.0
    listen: bool = True
    instance_id: str = field(default_factory=default_instance_id)
    # A dead-lettered delivery with an ordering key: "skip" lets later ones of the key go on,
    # "block" holds them until it is replayed or requeued.
    ordering_on_dead_letter: str = "skip"


@dataclass(frozen=True, slots=True)
class DeliveryConfig:
    """[delivery]: the HTTP side: global concurrency, timeouts, retries and size limits."""

    concurrency: int = 10
    timeout_s: float = 30.0
    retry_schedule_s: tuple[float, ...] = (5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0)
    retry_jitter: float = 0.1  # fraction of each delay, 0..1
    max_response_body_bytes: int = 64 * 1024
    stored_response_body_bytes: int = 4 * 1024
    max_payload_bytes: int = 1024 * 1024
    allow_insecure_http: bool = False
    allow_private_networks: bool = False
    endpoint_max_in_flight: int = 0  # 0: see effective_endpoint_max_in_flight
    # attempts running past their slow threshold leave the concurrency cap for this many
    # extra slots (isolation.py); 0: they keep their slot (a strict cap)
    slow_lane: int = 20
    slow_after_s: float = 2.0  # the least an attempt runs before it counts as slow
    drain_timeout_s: float = 30.0
    user_agent: str = DEFAULT_USER_AGENT
    # A forward proxy for every delivery ("": direct), and destinations that bypass it.
    proxy: str = ""
    no_proxy: tuple[str, ...] = ()

    @property
    def effective_endpoint_max_in_flight(self) -> int:
        """Global slots one endpoint may hold unless it sets its own max in flight."""
        return self.endpoint_max_in_flight or math.ceil(self.concurrency / 2)


@dataclass(frozen=True, slots=True)
class RateLimitConfig:
    """[ratelimit]: the rate for endpoints without their own, and the Retry-After bound."""

    default_rate_per_s: float | None = None  # None: unlimited
    default_burst: int = 0  # 0: see effective_default_burst
    max_retry_after_s: float = 3600.0

    @property
    def effective_default_burst(self) -> int:
        """The bucket size: at least one second's worth of tokens, and never zero."""
        return self.default_burst or max(1, math.ceil(self.default_rate_per_s or 0.0))


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    """[breaker]: pause an endpoint whose recent attempts mostly fail, then probe it."""

    enabled: bool = True
    window: int = 20  # attempts looked at
    failure_ratio: float = 0.7  # share of them failing that opens the breaker
    cooldown_s: float = 30.0  # first pause; doubles (up to 16x) while probes keep failing


@dataclass(frozen=True, slots=True)
class SigningConfig:
    """[signing]: how long a replaced secret keeps signing alongside the new one."""

    rotation_grace_s: float = 86400.0


@dataclass(frozen=True, slots=True)
class MetricsConfig:
    """[metrics]: the Prometheus /metrics, /healthz and /readyz listener."""

    enabled: bool = True
    listen_host: str = "127.0.0.1"  # IPv6 without brackets, e.g. "::1"
    listen_port: int = 9464
    per_endpoint_labels: bool = False


@dataclass(frozen=True, slots=True)
class LogConfig:
    """[log]: level and format; "auto" means JSON unless writing to a terminal."""

    level: str = "info"
    format: str = "auto"


@dataclass(frozen=True, slots=True)
class HealthConfig:
    """[health]: disable an endpoint that keeps failing (as Svix does: failing for 5 days),
    and one whose receiver answers 410 Gone at once."""

    enabled: bool = True
    disable_after_s: float = 5 * 86400.0  # failing (no success) for at least this long ...
    min_failures: int = 10  # ... with at least this many failed attempts in a row


@dataclass(frozen=True, slots=True)
class RetentionConfig:
    """[retention]: the daemon's periodic prune of finished messages and old attempts."""

    prune_after_s: float | None = None  # None: the daemon does not prune
    prune_interval_s: float = 3600.0
    include_failed: bool = False  # also prune messages whose deliveries were dead-lettered
    batch_size: int = 500  # messages (or attempts) per short transaction


@dataclass(frozen=True, slots=True)
class ApiConfig:
    """[api]: `webhookd api`, the management HTTP API: where it listens, its own /metrics,
    and how it treats clients that fail to authenticate."""

    listen_host: str = "127.0.0.1"
    listen_port: int = 8071
    metrics_host: str = "127.0.0.1"
    metrics_port: int = 9465
    token_cache_s: float = 5.0  # how long a checked token is trusted without a lookup
    auth_failures: Rate = field(default_factory=lambda: Rate(30.0, 60.0))  # per client address
    trust_forwarded_for: bool = False  # client address = last X-Forwarded-For entry


@dataclass(frozen=True, slots=True)
class ConsoleConfig:
    """[console]: the operators' console (/console) and the tenants' portal (/portal) that
    `webhookd api` serves: the portal's brand, who may frame it, how long its links live."""

    portal_name: str = "Webhooks"
    portal_logo_url: str = ""  # https:// or a path on this server; empty: no logo
    portal_primary_color: str = "#1d4ed8"
    frame_ancestors: str = "'self'"  # CSP frame-ancestors of /portal: the tenants' product
    portal_link_ttl_s: float = 3600.0  # a portal link, then its session, lasts this long
    session_ttl_s: float = 12 * 3600.0  # a console login lasts this long
    public_url: str = ""  # the base of portal links; empty: from the request's Host


@dataclass(frozen=True, slots=True)
class Config:
    """The whole configuration; Config() is the default one."""

    database: DatabaseConfig = field(default_factory=DatabaseConfig)
    outbox: OutboxConfig = field(default_factory=OutboxConfig)
    delivery: DeliveryConfig = field(default_factory=DeliveryConfig)
    ratelimit: RateLimitConfig = field(default_factory=RateLimitConfig)
    breaker: BreakerConfig = field(default_factory=BreakerConfig)
    signing: SigningConfig = field(default_factory=SigningConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    log: LogConfig = field(default_factory=LogConfig)
    health: HealthConfig = field(default_factory=HealthConfig)
    retention: RetentionConfig = field(default_factory=RetentionConfig)
    api: ApiConfig = field(default_factory=ApiConfig)
    console: ConsoleConfig = field(default_factory=ConsoleConfig)

    def with_overrides(self, **sections: Mapping[str, Any]) -> Config:
        """A copy with some fields replaced: cfg.with_overrides(delivery={"timeout_s": 0.5})."""
        changed = {
            name: replace(getattr(self, name), **values) for name, values in sections.items()
        }
        return replace(self, **changed)


# --- value parsers: each takes a TOML value or an environment string, raises ValueError(why) ---

_INT_RE = re.compile(r"\s*[+-]?\d{1,30}\s*")
_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off"})


def _number(raw: object) -> float | None:
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        return float(raw)
    if isinstance(raw, str):
        try:
            return float(raw)
        except ValueError:
            return None
    return None


def _duration_s(raw: object) -> float:
    """'250ms', '30s', '5m', '2h', '1d', or a bare number of seconds."""
    seconds: float | None = None
    if isinstance(raw, int | float) and not isinstance(raw, bool):
        with contextlib.suppress(OverflowError):  # an int too large for a float
            seconds = float(raw)
    elif isinstance(raw, str):
        with contextlib.suppress(ValueError):
            seconds = parse_duration(raw)
    if seconds is None or not math.isfinite(seconds) or seconds < 0:
        raise ValueError(
            "must be a duration like '30s', '5m' or '250ms' (a bare number is seconds),"
            f" got {_shown(raw)}"
        )
    return seconds


def _shown(raw: object) -> str:
    """A value in an error message, cut short."""
    text = repr(raw)
    return text if len(text) <= 60 else text[:57] + "..."


def _duration(low: float, high: float, *, above: bool = False) -> Callable[[object], float]:
    """A duration inside [low, high], or (low, high] with `above`."""

    def parse(raw: object) -> float:
        try:
            return check_duration(_duration_s(raw), low=low, high=high, above=above)
        except ValueError as exc:
            if str(exc).startswith("must be a duration"):
                raise
            raise ValueError(f"{exc}, got {_shown(raw)}") from None

    return parse


def _schedule_s(raw: object) -> tuple[float, ...]:
    """A TOML array of durations, or (from the environment) a comma-separated string."""
    items: list[object]
    if isinstance(raw, str):
        items = [part.strip() for part in raw.split(",")] if raw.strip() else []
    elif isinstance(raw, list):
        items = raw
    else:
        raise ValueError(f"must be a list of durations like ['5s', '5m'], got {_shown(raw)}")
    delays: list[float] = []
    for position, item in enumerate(items[: MAX_SCHEDULE_ENTRIES + 1], start=1):
        try:
            delays.append(_duration_s(item))
        except ValueError as exc:
            raise ValueError(f"item {position}: {exc}") from None
    if len(items) > MAX_SCHEDULE_ENTRIES:
        raise ValueError(f"must have at most {MAX_SCHEDULE_ENTRIES} entries, got {len(items)}")
    return check_schedule(delays)


def _size_bytes(low: int, high: int = MAX_SIZE_BYTES) -> Callable[[object], int]:
    def parse(raw: object) -> int:
        size: int | None = None
        if isinstance(raw, int) and not isinstance(raw, bool):
            size = raw
        elif isinstance(raw, str):
            with contextlib.suppress(ValueError):
                size = parse_size(raw)
        if size is None or not low <= size <= high:
            raise ValueError(
                f"must be a size from {format_size(low)} to {format_size(high)} like '64KiB',"
                f" '1MiB', '10MB' or '512' (bytes), got {_shown(raw)}"
            )
        return size

    return parse


def _rate_per_s(raw: object) -> float | None:
    """'100/min', '5/s', '10/h'; an empty string means unlimited."""
    if raw == "":
        return None
    if isinstance(raw, str):
        try:
            return parse_rate(raw).per_second
        except ValueError as exc:
            if str(exc).startswith("must be"):  # readable, but out of bounds
                raise ValueError(f"{exc} ({raw.strip()!r})") from None
    raise ValueError(
        f"must be a rate like '100/min' or '5/s' (empty: unlimited), got {_shown(raw)}"
    )


def _format_rate(rate_per_s: float | None) -> str:
    return "" if rate_per_s is None else format_rate(rate_per_s)


def _optional_duration(low: float, high: float) -> Callable[[object], float | None]:
    """A duration longer than `low`; an empty string means off."""
    parse = _duration(low, high, above=True)

    def optional(raw: object) -> float | None:
        return None if raw == "" else parse(raw)

    return optional


def _format_optional_duration(seconds: float | None) -> str:
    return "" if seconds is None else format_duration(seconds)


def _integer(low: int, high: int) -> Callable[[object], int]:
    def parse(raw: object) -> int:
        value: int | None = None
        if isinstance(raw, int) and not isinstance(raw, bool):
            value = raw
        elif isinstance(raw, str) and _INT_RE.fullmatch(raw):
            value = int(raw)
        if value is None or not low <= value <= high:
            raise ValueError(f"must be an integer between {low} and {high}, got {_shown(raw)}")
        return value

    return parse


def _fraction(raw: object) -> float:
    value = _number(raw)
    if value is None or not 0.0 <= value <= 1.0:
        raise ValueError(f"must be a number between 0 and 1, got {raw!r}")
    return value


def _boolean(raw: object) -> bool:
    if isinstance(raw, bool):
        return raw
    word = raw.strip().lower() if isinstance(raw, str) else ""
    if word not in _TRUE | _FALSE:
        raise ValueError(f"must be true or false, got {raw!r}")
    return word in _TRUE


def _text(raw: object) -> str:
    if not isinstance(raw, str):
        raise ValueError(f"must be a string, got {raw!r}")
    return raw.strip()


def _bounded_text(most: int) -> Callable[[object], str]:
    def parse(raw: object) -> str:
        text = _text(raw)
        if not text or len(text) > most or not text.isprintable():
            raise ValueError(f"must be 1 to {most} printable characters, got {raw!r}")
        return text

    return parse


_COLOR_RE = re.compile(r"#[0-9a-fA-F]{6}")
# A CSP source list: each source a keyword in quotes or a scheme/host expression; nothing that
# could end the directive (';', ',') or smuggle another one in.
_FRAME_SOURCE_RE = re.compile(
    r"'self'|'none'|[a-z][a-z0-9+.-]*:|(?:[a-z][a-z0-9+.-]*://)?[\w*.-]+(?::\d+|:\*)?"
)


def _color(raw: object) -> str:
    text = _text(raw)
    if not _COLOR_RE.fullmatch(text):
        raise ValueError(f"must be a colour like '#1d4ed8', got {raw!r}")
    return text.lower()


def _logo_url(raw: object) -> str:
    text = _text(raw)
    if text and not (text.startswith(("https://", "/")) and text.isprintable()):
        raise ValueError(f"must be an https:// URL or a path on this server, got {raw!r}")
    if any(c in text for c in "\"'<> "):
        raise ValueError(f"must not hold quotes, spaces or angle brackets, got {raw!r}")
    return text


def _frame_ancestors(raw: object) -> str:
    sources = _text(raw).split()
    if not sources or not all(_FRAME_SOURCE_RE.fullmatch(s) for s in sources):
        raise ValueError(
            "must be CSP sources separated by spaces, like \"'self' https://app.example.com\","
            f" got {raw!r}"
        )
    return " ".join(sources)


def _public_url(raw: object) -> str:
    text = _text(raw).rstrip("/")
    if text and not (text.startswith(("https://", "http://")) and text.isprintable()):
        raise ValueError(f"must be an http(s):// URL, got {raw!r}")
    return text


def _choice(*options: str) -> Callable[[object], str]:
    def parse(raw: object) -> str:
        word = raw.strip().lower() if isinstance(raw, str) else None
        if word is None or word not in options:
            raise ValueError(f"must be one of {', '.join(options)}, got {raw!r}")
        return word

    return parse


def _database_url(raw: object) -> str:
    """A postgres:// URL; errors show only its scheme, since the rest may hold a password."""
    url = _text(raw)
    try:
        parts = urlsplit(url)
    except ValueError:
        raise ValueError("is not a valid URL (value not shown: it may hold a password)") from None
    if url and parts.scheme not in ("postgres", "postgresql"):
        got = f"a {parts.scheme}:// URL" if parts.scheme else "a value that is not a URL"
        raise ValueError(
            "must be a postgresql://user:password@host/db URL (empty: start the embedded"
            f" PostgreSQL), got {got} (not shown)"
        )
    if not all(_valid_port(hostport) for hostport in _hosts(parts.netloc)):
        raise ValueError(
            "has a port that is not a number from 1 to 65535 (value not shown: it may hold a"
            " password)"
        )
    return url


def _proxy(raw: object) -> str:
    """http://[user:password@]host:port, or empty for none; errors never show the value."""
    text = _text(raw)
    if text:
        parse_proxy(text)  # raises ValueError, value not shown
    return text


def _no_proxy(raw: object) -> tuple[str, ...]:
    """A TOML array of hosts, IP addresses or CIDR blocks, or a comma-separated string."""
    if isinstance(raw, str):
        items: list[object] = [p.strip() for p in raw.split(",") if p.strip()]
    elif isinstance(raw, list):
        items = raw
    else:
        raise ValueError(f"must be a list like ['.internal', '10.0.0.0/8'], got {_shown(raw)}")
    if len(items) > 1000:
        raise ValueError(f"must have at most 1000 entries, got {len(items)}")
    entries = []
    for position, item in enumerate(items, start=1):
        if not isinstance(item, str):
            raise ValueError(f"item {position}: must be a string, got {_shown(item)}")
        try:
            entries.append(parse_no_proxy_entry(item))
        except ValueError as exc:
            raise ValueError(f"item {position}: {exc}") from None
    return tuple(entries)


def _hosts(netloc: str) -> list[str]:
    """'u:p@h1:5432,[::1]:5433' -> ['h1:5432', '[::1]:5433'] (libpq allows several hosts)."""
    return netloc.rpartition("@")[2].split(",")


def _valid_port(hostport: str) -> bool:
    host, colon, port = hostport.rpartition(":")
    if not colon or (host.startswith("[") and not host.endswith("]")) or port.endswith("]"):
        return True  # no port (a bare IPv6 address in brackets ends with "]")
    return port.isascii() and port.isdigit() and 1 <= int(port) <= 65535


_QUERY_PASSWORD_RE = re.compile(r"((?:^|&)(?:ssl)?password=)[^&]*", re.IGNORECASE)


def redact_url(url: str) -> str:
    """The URL with its passwords (user info, ?password=, ?sslpassword=) replaced by '***',
    for logs, errors and check-config. The one redaction of database URLs: store.py and
    service.py use it too."""
    if "://" not in url:  # a libpq "key=value" string, or not a URL at all
        return "***" if "password" in url.lower() else url
    try:
        parts = urlsplit(url)
        has_password = parts.password is not None
    except ValueError:
        return "***"  # unparseable: show nothing rather than risk a leak
    netloc = parts.netloc
    if has_password:
        userinfo, _, hostport = netloc.rpartition("@")
        netloc = f"{userinfo.partition(':')[0]}:***@{hostport}"
    query = _QUERY_PASSWORD_RE.sub(r"\1***", parts.query)
    # Not urlunsplit: it turns postgresql:///db?host=/run/postgresql into postgresql:/db.
    return (
        f"{parts.scheme}://{netloc}{parts.path}"
        + (f"?{query}" if query else "")
        + (f"#{parts.fragment}" if parts.fragment else "")
    )


def _listen(raw: object) -> dict[str, Any]:
    """'host:port', with IPv6 hosts in brackets: '[::1]:9464'."""
    host, _, port = _text(raw).rpartition(":")
    bracketed = host.startswith("[") and host.endswith("]")
    host = host[1:-1] if bracketed else host
    ok = bool(host) and (bracketed or ":" not in host) and port.isdigit() and int(port) <= 65535
    if not ok:
        raise ValueError(
            "must be host:port with a port from 0 to 65535, IPv6 in brackets like"
            f" '[::1]:9464', got {raw!r}"
        )
    return {"listen_host": host, "listen_port": int(port)}


def _format_listen(metrics: MetricsConfig) -> str:
    host = metrics.listen_host
    return f"[{host}]:{metrics.listen_port}" if ":" in host else f"{host}:{metrics.listen_port}"


def _api_listen(prefix: str) -> _Key:
    """[api] holds two addresses: `listen` and `metrics_listen`, parsed as metrics.listen is."""

    def parse(raw: object) -> dict[str, Any]:
        parsed = _listen(raw)
        return {f"{prefix}_host": parsed["listen_host"], f"{prefix}_port": parsed["listen_port"]}

    def show(api: ApiConfig) -> str:
        host, port = getattr(api, f"{prefix}_host"), getattr(api, f"{prefix}_port")
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"

    return _Key(parse, show)


def _rate(raw: object) -> Rate:
    """'30/min', '1/s': a count of events over a period (not empty)."""
    try:
        if isinstance(raw, str):
            return parse_rate(raw)
    except ValueError:
        pass
    raise ValueError(f"must be a rate like '30/min' or '1/s', got {raw!r}")


# --- the key table: TOML key -> dataclass field(s), and back to human units -------------------


@dataclass(frozen=True, slots=True)
class _Key:
    parse: Callable[[object], dict[str, Any]]  # raw value -> dataclass fields it sets
    show: Callable[[Any], object]  # section dataclass -> value in TOML units


def _same(value: object) -> object:
    return value


def _one(name: str, parse: Callable[[object], Any], show: Callable[[Any], object] = _same) -> _Key:
    return _Key(lambda raw: {name: parse(raw)}, lambda section: show(getattr(section, name)))


def _defaulted(name: str, convert: Callable[[str], object] = str) -> _Key:
    """A string whose empty value means a default worked out at load time."""

    def parse(raw: object) -> dict[str, Any]:
        text = _text(raw)
        return {name: convert(text)} if text else {}

    return _Key(parse, lambda section: str(getattr(section, name)))


def _path(text: str) -> Path:
    try:
        return Path(text).expanduser()
    except RuntimeError:  # "~user" for a user that does not exist
        raise ValueError(f"cannot expand the home directory in {text!r}") from None


_MS = 0.001

# Every number has both bounds, written down in config/webhookd.toml.
_SECTIONS: dict[str, tuple[type[Any], dict[str, _Key]]] = {
    "database": (DatabaseConfig, {
        "url": _one("url", _database_url, redact_url),
        "pool_min_size": _one("pool_min_size", _integer(0, 1000)),
        "pool_max_size": _one("pool_max_size", _integer(1, 1000)),
        "connect_timeout": _one(
            "connect_timeout_s", _duration(_MS, MAX_TIMEOUT_S), format_duration
        ),
        "embedded_dir": _defaulted("embedded_dir", _path),
    }),
    "outbox": (OutboxConfig, {
        "poll_interval": _one("poll_interval_s", _duration(10 * _MS, HOUR_S), format_duration),
        "batch_size": _one("batch_size", _integer(1, 10_000)),
        # A lease renewal needs room: at least 1s between the timeout and the lease's end.
        "lease_margin": _one("lease_margin_s", _duration(1.0, HOUR_S), format_duration),
        "listen": _one("listen", _boolean),
        "instance_id": _defaulted("instance_id"),
        "ordering_on_dead_letter": _one("ordering_on_dead_letter", _choice("skip", "block")),
    }),
    "delivery": (DeliveryConfig, {
        "concurrency": _one("concurrency", _integer(1, MAX_IN_FLIGHT)),
        "timeout": _one("timeout_s", _duration(_MS, MAX_TIMEOUT_S), format_duration),
        "retry_schedule": _one(
            "retry_schedule_s", _schedule_s, lambda delays: [format_duration(d) for d in delays]
        ),
        "retry_jitter": _one("retry_jitter", _fraction),
        "max_response_body": _one("max_response_body_bytes", _size_bytes(1), format_size),
        "stored_response_body": _one("stored_response_body_bytes", _size_bytes(0), format_size),
        "max_payload": _one("max_payload_bytes", _size_bytes(1), format_size),
        "allow_insecure_http": _one("allow_insecure_http", _boolean),
        "allow_private_networks": _one("allow_private_networks", _boolean),
        "endpoint_max_in_flight": _one("endpoint_max_in_flight", _integer(0, MAX_IN_FLIGHT)),
        "slow_lane": _one("slow_lane", _integer(0, MAX_IN_FLIGHT)),
        "slow_after": _one("slow_after_s", _duration(0.01, MAX_TIMEOUT_S), format_duration),
        "drain_timeout": _one("drain_timeout_s", _duration(0, MAX_TIMEOUT_S), format_duration),
        "user_agent": _defaulted("user_agent"),
        "proxy": _one("proxy", _proxy, redact_proxy),
        "no_proxy": _one("no_proxy", _no_proxy, list),
    }),
    "ratelimit": (RateLimitConfig, {
        "default_rate": _one("default_rate_per_s", _rate_per_s, _format_rate),
        "default_burst": _one("default_burst", _integer(0, MAX_BURST)),
        "max_retry_after": _one(
            "max_retry_after_s", _duration(0, MAX_RETRY_DELAY_S), format_duration
        ),
    }),
    "breaker": (BreakerConfig, {
        "enabled": _one("enabled", _boolean),
        "window": _one("window", _integer(1, 1000)),
        "failure_ratio": _one("failure_ratio", _fraction),
        "cooldown": _one("cooldown_s", _duration(_MS, DAY_S), format_duration),
    }),
    "signing": (SigningConfig, {
        "rotation_grace": _one("rotation_grace_s", _duration(0, MAX_GRACE_S), format_duration),
    }),
    "metrics": (MetricsConfig, {
        "enabled": _one("enabled", _boolean),
        "listen": _Key(_listen, _format_listen),
        "per_endpoint_labels": _one("per_endpoint_labels", _boolean),
    }),
    "log": (LogConfig, {
        "level": _one("level", _choice(*LOG_LEVELS)),
        "format": _one("format", _choice(*LOG_FORMATS)),
    }),
    "health": (HealthConfig, {
        "enabled": _one("enabled", _boolean),
        "disable_after": _one("disable_after_s", _duration(1.0, MAX_GRACE_S), format_duration),
        "min_failures": _one("min_failures", _integer(1, 1_000_000)),
    }),
    "retention": (RetentionConfig, {
        "prune_after": _one(
            "prune_after_s", _optional_duration(0, MAX_AGE_S), _format_optional_duration
        ),
        "prune_interval": _one("prune_interval_s", _duration(1.0, 30 * DAY_S), format_duration),
        "include_failed": _one("include_failed", _boolean),
        "batch_size": _one("batch_size", _integer(1, 100_000)),
    }),
    "api": (ApiConfig, {
        "listen": _api_listen("listen"),
        "metrics_listen": _api_listen("metrics"),
        "token_cache": _one("token_cache_s", _duration(0, HOUR_S), format_duration),
        "auth_failures": _one("auth_failures", _rate, str),
        "trust_forwarded_for": _one("trust_forwarded_for", _boolean),
    }),
    "console": (ConsoleConfig, {
        "portal_name": _one("portal_name", _bounded_text(80)),
        "portal_logo_url": _one("portal_logo_url", _logo_url),
        "portal_primary_color": _one("portal_primary_color", _color),
        "frame_ancestors": _one("frame_ancestors", _frame_ancestors),
        "portal_link_ttl": _one("portal_link_ttl_s", _duration(60, 7 * DAY_S), format_duration),
        "session_ttl": _one("session_ttl_s", _duration(60, 7 * DAY_S), format_duration),
        "public_url": _one("public_url", _public_url),
    }),
}  # fmt: skip

# Defaults that depend on the environment given to load_config rather than os.environ.
_LOAD_DEFAULTS: dict[str, Callable[[Mapping[str, str]], dict[str, Any]]] = {
    "database": lambda env: {"embedded_dir": default_embedded_dir(env)},
}

# section -> TOML key -> (raw value, where it came from)
_Layer = dict[str, dict[str, tuple[object, str]]]


# --- loading ----------------------------------------------------------------------------------


def load_config(path: Path | None, env: Mapping[str, str]) -> Config:
    """Read `path` (or the default path, if it exists), then apply WEBHOOKD_* overrides."""
    document, where = _read_toml(path)
    layer = _file_layer(document, where)
    for section, values in _env_layer(env).items():
        layer.setdefault(section, {}).update(values)
    sections = {name: _build_section(name, layer.get(name, {}), env) for name in _SECTIONS}
    config = Config(**sections)
    _check_consistency(config)
    return config


def config_as_dict(config: Config) -> dict[str, dict[str, object]]:
    """The effective configuration in TOML key names and human units, passwords hidden."""
    return {
        name: {key: spec.show(getattr(config, name)) for key, spec in keys.items()}
        for name, (_, keys) in _SECTIONS.items()
    }


def _read_toml(path: Path | None) -> tuple[dict[str, Any], str]:
    target = path if path is not None else DEFAULT_CONFIG_PATH
    try:
        with target.open("rb") as fh:
            return tomllib.load(fh), f"in {target}"
    except FileNotFoundError:
        if path is None:
            return {}, f"in {target}"
        raise ConfigError(str(target), "config file not found") from None
    except OSError as exc:
        raise ConfigError(str(target), f"cannot read config file: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ConfigError(str(target), "config file is not UTF-8 text") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(target), f"invalid TOML: {exc}") from None


def _file_layer(document: Mapping[str, Any], where: str) -> _Layer:
    layer: _Layer = {}
    for section, table in document.items():
        if section not in _SECTIONS:
            raise ConfigError(section, "unknown section" + _did_you_mean(section, _SECTIONS))
        if not isinstance(table, dict):
            raise ConfigError(section, f"must be a table ([{section}]), got {table!r}")
        keys = _SECTIONS[section][1]
        for key, value in table.items():
            if key not in keys:
                raise ConfigError(f"{section}.{key}", "unknown key" + _did_you_mean(key, keys))
            layer.setdefault(section, {})[key] = (value, where)
    return layer


def _env_layer(env: Mapping[str, str]) -> _Layer:
    layer: _Layer = {}
    for name, value in env.items():
        if not name.startswith(ENV_PREFIX):
            continue
        section, _, key = name[len(ENV_PREFIX) :].lower().partition("_")
        if section not in _SECTIONS:
            continue  # OTHER_VARIABLES, or a warning: see unknown_variables
        keys = _SECTIONS[section][1]
        if key not in keys:
            hint = _did_you_mean(key, keys, partial(_env_name, section))
            raise ConfigError(f"{section}.{key}", f"unknown key (from {name})" + hint)
        if not is_utf8(value):
            raise ConfigError(f"{section}.{key}", f"is not valid UTF-8 text (from {name})")
        layer.setdefault(section, {})[key] = (value, f"from {name}")
    return layer


def unknown_variables(env: Mapping[str, str]) -> list[tuple[str, str | None]]:
    """(name, the variable it may have meant) for each WEBHOOKD_* variable that is neither
    a config key nor one of OTHER_VARIABLES: a typo outside any section (an underscore
    missing after the section) would otherwise be ignored in silence. (One inside a known
    section is an error: see _env_layer.)"""
    known = [_env_name(s, k) for s, (_, keys) in _SECTIONS.items() for k in keys]
    known += sorted(OTHER_VARIABLES)
    unknown = []
    for name in sorted(env):
        if not name.startswith(ENV_PREFIX) or name in OTHER_VARIABLES:
            continue
        if name[len(ENV_PREFIX) :].lower().partition("_")[0] in _SECTIONS:
            continue
        # Compared without the prefix, which every name shares.
        suffixes = {k.removeprefix(ENV_PREFIX): k for k in known}
        close = difflib.get_close_matches(name.removeprefix(ENV_PREFIX), suffixes, n=1)
        unknown.append((name, suffixes[close[0]] if close else None))
    return unknown


def _env_name(section: str, key: str) -> str:
    return f"{ENV_PREFIX}{section}_{key}".upper()


def is_utf8(text: str) -> bool:
    """Bytes that are not UTF-8 reach os.environ and sys.argv as lone surrogates."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _did_you_mean(word: str, choices: Iterable[str], render: Callable[[str], str] = repr) -> str:
    options = list(choices)
    close = difflib.get_close_matches(word, options, n=1)
    if close:
        return f"; did you mean {render(close[0])}?"
    return "; expected one of: " + ", ".join(render(option) for option in options)


def _build_section(
    name: str, values: Mapping[str, tuple[object, str]], env: Mapping[str, str]
) -> Any:
    cls, keys = _SECTIONS[name]
    fields = _LOAD_DEFAULTS[name](env) if name in _LOAD_DEFAULTS else {}
    for key, (raw, where) in values.items():
        try:
            fields.update(keys[key].parse(raw))
        except ValueError as exc:
            raise ConfigError(f"{name}.{key}", f"{exc} ({where})") from None
    return cls(**fields)


def _check_consistency(config: Config) -> None:
    """Rules that span two keys; single values were checked while parsing."""
    db, delivery = config.database, config.delivery
    if db.pool_min_size > db.pool_max_size:
        raise ConfigError(
            "database.pool_min_size",
            f"must not exceed database.pool_max_size ({db.pool_max_size}), got {db.pool_min_size}",
        )
    if delivery.stored_response_body_bytes > delivery.max_response_body_bytes:
        limit = format_size(delivery.max_response_body_bytes)
        got = format_size(delivery.stored_response_body_bytes)
        raise ConfigError(
            "delivery.stored_response_body",
            f"must not exceed delivery.max_response_body ({limit}), got {got}",
        )
