"""Endpoints: validating what an operator asks for, and turning rows into `Endpoint`s.

Admin operations (add, list, enable, disable, delete) live here so that the CLI only
parses and prints; the daemon uses `load_endpoints` for its cache.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import orjson

from daemon.errors import ConfigError, NotFound
from daemon.models import Endpoint, SignatureSpec
from daemon.signing import generate_secret, validate_secret
from daemon.store import Record, Store

_RESERVED_HEADERS = frozenset(
    {
        "content-type",
        "content-length",
        "host",
        "user-agent",
        "transfer-encoding",
        "connection",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
    }
)
_TCHARS = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")


@dataclass(frozen=True)
class EndpointSpec:
    """What `endpoint add` asks for, validated by `validate_spec`."""

    url: str
    tenant_id: str = "default"
    description: str = ""
    event_types: tuple[str, ...] = ()
    rate_per_s: float | None = None
    burst: int | None = None
    max_in_flight: int | None = None
    headers: tuple[tuple[str, str], ...] = ()
    signature: SignatureSpec = field(default_factory=SignatureSpec)
    secret: str | None = None  # None: generate one
    timeout_s: float | None = None
    retry_schedule_s: tuple[float, ...] | None = None
    id: str | None = None


def validate_url(url: str, *, allow_http: bool) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ConfigError("url", f"must be an absolute https:// URL, got {url!r}")
    if parts.scheme == "http" and not allow_http:
        raise ConfigError(
            "url", "must use https:// (plain http needs delivery.allow_insecure_http = true)"
        )
    try:
        _ = parts.port
    except ValueError as exc:
        raise ConfigError("url", f"bad port in {url!r}") from exc


def parse_header(text: str) -> tuple[str, str]:
    """`'Name: value'` -> (name, value), refusing names that would break signing."""
    name, sep, value = text.partition(":")
    if not sep:
        raise ConfigError("--header", f"expected 'Name: value', got {name.strip()[:40]!r}")
    name, value = name.strip(), value.strip()
    check_header(name, value)
    return name, value


def check_header(name: str, value: str) -> None:
    """A custom header must be a valid token, not one webhookd sets, with a one-line value.
    (The value itself is never echoed: it is often a credential.)"""
    if not name or not set(name) <= _TCHARS:
        raise ConfigError("--header", f"invalid header name {name[:40]!r}")
    if name.lower() in _RESERVED_HEADERS:
        raise ConfigError("--header", f"{name} is set by webhookd and cannot be overridden")
    if "\r" in value or "\n" in value or "\0" in value:
        raise ConfigError("--header", f"value of {name} contains a control character")


def validate_spec(spec: EndpointSpec, *, allow_http: bool) -> None:
    validate_url(spec.url, allow_http=allow_http)
    for header, header_value in spec.headers:
        check_header(header, header_value)
    if not spec.tenant_id:
        raise ConfigError("--tenant", "must not be empty")
    if spec.burst is not None and spec.rate_per_s is None:
        raise ConfigError("--burst", "needs --rate")
    for name, value in (("--burst", spec.burst), ("--max-in-flight", spec.max_in_flight)):
        if value is not None and value < 1:
            raise ConfigError(name, f"must be at least 1, got {value}")
    if spec.timeout_s is not None and not 0 < spec.timeout_s <= 600:
        raise ConfigError("--timeout", "must be between 1ms and 10m")
    if spec.secret is not None:
        try:
            validate_secret(spec.signature, spec.secret)
        except ValueError as exc:
            raise ConfigError("--secret", str(exc)) from exc


async def add_endpoint(store: Store, spec: EndpointSpec, *, allow_http: bool) -> tuple[str, str]:
    """Create an endpoint; returns (id, secret)."""
    validate_spec(spec, allow_http=allow_http)
    secret = spec.secret if spec.secret is not None else generate_secret()
    endpoint_id = await store.fetchval(
        "endpoint_insert",
        spec.id,
        spec.tenant_id,
        spec.url,
        spec.description,
        list(spec.event_types),
        secret,
        spec.signature.scheme,
        spec.signature.header,
        spec.signature.prefix,
        orjson.dumps([list(h) for h in spec.headers]).decode(),
        spec.rate_per_s,
        spec.burst,
        spec.max_in_flight,
        None if spec.timeout_s is None else max(1, round(spec.timeout_s * 1000)),
        None if spec.retry_schedule_s is None else [round(s * 1000) for s in spec.retry_schedule_s],
    )
    return str(endpoint_id), secret


def endpoint_from_record(rec: Record, now_s: float | None = None) -> Endpoint:
    """Row -> Endpoint, keeping only previous secrets still inside their grace."""
    now_s = time.time() if now_s is None else now_s
    previous = tuple(
        (str(p["secret"]), float(p["expires_at"]))
        for p in _json(rec["previous_secrets"])
        if float(p["expires_at"]) > now_s
    )
    schedule = rec["retry_schedule_ms"]
    return Endpoint(
        id=rec["id"],
        tenant_id=rec["tenant_id"],
        url=rec["url"],
        enabled=rec["enabled"],
        secret=rec["secret"],
        previous_secrets=previous,
        signature=SignatureSpec(
            rec["signature_scheme"], rec["signature_header"], rec["signature_prefix"]
        ),
        headers=tuple((str(h[0]), str(h[1])) for h in _json(rec["headers"])),
        rate_per_s=rec["rate_per_s"],
        burst=rec["burst"],
        max_in_flight=rec["max_in_flight"],
        timeout_s=None if rec["timeout_ms"] is None else rec["timeout_ms"] / 1000.0,
        retry_schedule_s=None if schedule is None else tuple(ms / 1000.0 for ms in schedule),
        event_types=tuple(rec["event_types"]),
        version=rec["version"],
    )


def _json(value: Any) -> Any:
    return orjson.loads(value) if isinstance(value, str | bytes) else value


async def load_endpoints(store: Store) -> list[Endpoint]:
    now_s = time.time()
    return [endpoint_from_record(r, now_s) for r in await store.fetch("load_endpoints")]


async def get_endpoint(store: Store, endpoint_id: str) -> Record:
    rec = await store.fetchrow("endpoint_get", endpoint_id)
    if rec is None:
        raise NotFound("endpoint", endpoint_id)
    return rec


async def list_endpoints(store: Store, tenant_id: str | None = None) -> Sequence[Record]:
    return await store.fetch("endpoint_list", tenant_id)


async def set_enabled(
    store: Store, endpoint_id: str, enabled: bool, reason: str | None = None
) -> None:
    if await store.fetchval("endpoint_set_enabled", endpoint_id, enabled, reason) is None:
        raise NotFound("endpoint", endpoint_id)


async def rotate_secret(
    store: Store, endpoint_id: str, *, grace_s: float, new_secret: str | None = None
) -> str:
    """New secret for an endpoint; the old one is still signed alongside for `grace_s`."""
    rec = await get_endpoint(store, endpoint_id)
    spec = SignatureSpec(rec["signature_scheme"], rec["signature_header"], rec["signature_prefix"])
    secret = new_secret if new_secret is not None else generate_secret()
    try:
        validate_secret(spec, secret)
    except ValueError as exc:
        raise ConfigError("--secret", str(exc)) from exc
    expires_at = time.time() + grace_s
    if await store.fetchval("endpoint_rotate_secret", endpoint_id, secret, expires_at) is None:
        raise NotFound("endpoint", endpoint_id)
    return secret


async def delete_endpoint(store: Store, endpoint_id: str) -> int:
    """Delete an endpoint; its undelivered deliveries become dead letters. Returns how many."""
    async with store.transaction() as tx:
        if await tx.fetchrow("endpoint_delete", endpoint_id) is None:
            raise NotFound("endpoint", endpoint_id)
        status = await tx.execute("endpoint_fail_open", endpoint_id, "endpoint deleted")
    return int(status.split()[-1])
