"""Endpoints: validating what an operator asks for, and turning rows into `Endpoint`s.

Admin operations (add, list, enable, disable, delete, re-encryption) live here so that the
CLI only parses and prints; the daemon uses `fetch_endpoints` for its cache. Secrets and header
values go through a `SecretBox` on the way in and out (stored encrypted when keys are set).
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import orjson

from daemon import units
from daemon.egress import NONE, parse_proxy
from daemon.errors import ConfigError, NotFound
from daemon.models import Endpoint, SignatureSpec
from daemon.secretbox import PLAINTEXT, PREFIX, SecretBox, SecretKeyError, is_sealed
from daemon.signing import generate_secret_for, validate_secret
from daemon.templates import FORMATS, RAW, TemplateError, chat_payload, parse_template

if TYPE_CHECKING:  # asyncpg is not needed to validate options (the CLI's --help)
    from daemon.store import Record, Store


def _log() -> Any:
    # Imported on first use: the CLI parses its options with this module, and printing
    # `--help` should not wait for structlog.
    import structlog

    return structlog.get_logger("webhookd.endpoints")


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
_MAX_NAME = 256  # characters in an endpoint id, tenant id or event type
_HOST_LABEL = re.compile(r"(?!-)[a-z0-9_-]{1,63}(?<!-)", re.IGNORECASE)
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
    payload_format: str = RAW  # raw | slack | discord | teams
    template: str | None = None  # None: the format's default text
    title: str | None = None  # teams only
    proxy: str | None = None  # None: delivery.proxy; "none": direct; else an http:// URL


def validate_url(url: str, *, allow_http: bool) -> None:
    try:
        parts = urlsplit(url)
        _ = parts.port
    except ValueError as exc:  # "Invalid IPv6 URL", "Port out of range 0-65535", ...
        raise ConfigError("url", f"is not a valid URL ({exc}): {_cut(url)!r}") from None
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ConfigError("url", f"must be an absolute https:// URL, got {_cut(url)!r}")
    if parts.scheme == "http" and not allow_http:
        raise ConfigError(
            "url", "must use https:// (plain http needs delivery.allow_insecure_http = true)"
        )
    if any(c.isspace() or not c.isprintable() for c in url):
        raise ConfigError("url", f"must not contain spaces or control characters: {_cut(url)!r}")
    if not _valid_host(parts.hostname):
        raise ConfigError("url", f"has an invalid host name {_cut(parts.hostname)!r}")


def _valid_host(host: str) -> bool:
    """An IP address, or a DNS name (IDNA allowed) whose labels an HTTP client can resolve."""
    with contextlib.suppress(ValueError):
        ipaddress.ip_address(host)
        return True
    try:
        ascii_host = host.encode("idna").decode("ascii")
    except UnicodeError:
        return False
    labels = ascii_host.removesuffix(".").split(".")
    return len(ascii_host) <= 253 and all(_HOST_LABEL.fullmatch(label) for label in labels)


def _cut(text: str, limit: int = 100) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def parse_header(text: str) -> tuple[str, str]:
    """`'Name: value'` -> (name, value), refusing names that would break signing."""
    name, sep, value = text.partition(":")
    if not sep:  # all of it may be the value: a token given without its name
        raise ConfigError("--header", "expected 'Name: value' (value not shown)")
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
    if any(c != "\t" and not c.isprintable() for c in value):
        raise ConfigError("--header", f"value of {name} contains a control character")
    if is_sealed(value):
        raise ConfigError("--header", f"value of {name} must not start with {PREFIX!r} (reserved)")


def validate_spec(spec: EndpointSpec, *, allow_http: bool) -> None:
    validate_url(spec.url, allow_http=allow_http)
    for header, header_value in spec.headers:
        check_header(header, header_value)
    check_signature_header(spec.signature, [name for name, _ in spec.headers])
    _check_names(spec)
    if spec.burst is not None and spec.rate_per_s is None:
        raise ConfigError("--burst", "needs --rate")
    _check_limits(spec)
    if spec.secret is not None:
        _check_secret(spec.signature, spec.secret)
    check_chat(spec.payload_format, spec.template, spec.title)
    if spec.proxy is not None:
        try:
            endpoint_proxy(spec.proxy)
        except ValueError as exc:
            raise ConfigError("--proxy", str(exc)) from None


def endpoint_proxy(text: str | None) -> str | None:
    """An endpoint's proxy setting, checked: None, `none`, or an http:// URL without
    credentials (raises ValueError, never showing the value)."""
    if text is not None and text != NONE:
        parse_proxy(text, credentials=False)
    return text


def check_chat(payload_format: str, template: str | None, title: str | None) -> None:
    """A known format; templates only for chat formats, a title only for Teams, and every
    template parsed (the error says where it fails)."""
    if payload_format not in FORMATS:
        known = ", ".join(FORMATS)
        raise ConfigError("--format", f"must be one of {known}, got {_cut(payload_format, 40)!r}")
    if template and payload_format == RAW:
        raise ConfigError("--template", "needs --format slack, discord or teams")
    if title and payload_format != "teams":
        raise ConfigError("--title", "only --format teams has a title")
    for option, text in (("--template", template), ("--title", title)):
        if text:
            try:
                parse_template(text)
            except TemplateError as exc:
                raise ConfigError(option, str(exc)) from None


def check_signature_header(signature: SignatureSpec, header_names: Sequence[str]) -> None:
    """A custom header may not be the one an hmac-sha256-hex endpoint signs in: one of the
    two would replace the other."""
    if not signature.header:
        return
    for name in header_names:
        if name.lower() == signature.header.lower():
            raise ConfigError(
                "--header", f"{name} is the endpoint's signature header (--signature)"
            )


def _check_names(spec: EndpointSpec) -> None:
    """Ids and names an operator types and reads back: not empty, one printable line."""
    names = [("--tenant", spec.tenant_id), *(("--event-type", t) for t in spec.event_types)]
    if spec.id is not None:
        names.append(("--id", spec.id))
    for option, value in names:
        if not value.strip():
            raise ConfigError(option, "must not be empty")
        if len(value) > _MAX_NAME or not value.isprintable() or value != value.strip():
            raise ConfigError(
                option,
                f"must be at most {_MAX_NAME} printable characters without leading or trailing"
                f" spaces, got {_cut(value, 40)!r}",
            )
    if spec.id is not None and any(c.isspace() for c in spec.id):
        raise ConfigError("--id", f"must not contain spaces, got {_cut(spec.id, 40)!r}")


def _check_limits(spec: EndpointSpec) -> None:
    """The bounds the CLI's options check, again for other callers (an update, the API)."""
    checks: list[tuple[str, Callable[[], object]]] = []
    if spec.rate_per_s is not None:
        checks.append(("--rate", partial(units.check_rate, spec.rate_per_s)))
    if spec.burst is not None:
        checks.append(("--burst", partial(units.check_int, spec.burst, 1, units.MAX_BURST)))
    if spec.max_in_flight is not None:
        limit = units.MAX_IN_FLIGHT
        checks.append(("--max-in-flight", partial(units.check_int, spec.max_in_flight, 1, limit)))
    if spec.timeout_s is not None:
        high = units.MAX_ENDPOINT_TIMEOUT_S
        checks.append(
            ("--timeout", partial(units.check_duration, spec.timeout_s, low=0.001, high=high))
        )
    if spec.retry_schedule_s is not None:
        checks.append(("--retry-schedule", partial(units.check_schedule, spec.retry_schedule_s)))
    for option, check in checks:
        try:
            check()
        except ValueError as exc:
            raise ConfigError(option, str(exc)) from None


def _check_secret(signature: SignatureSpec, secret: str) -> None:
    try:
        validate_secret(signature, secret)
    except ValueError as exc:
        raise ConfigError("--secret", str(exc)) from exc
    if is_sealed(secret):
        # A plaintext that looks sealed would be read back as ciphertext.
        raise ConfigError("--secret", f"must not start with {PREFIX!r} (reserved)")


async def add_endpoint(
    store: Store, spec: EndpointSpec, *, allow_http: bool, box: SecretBox = PLAINTEXT
) -> tuple[str, str]:
    """Create an endpoint; returns (id, secret in clear). Stored sealed when `box` has keys."""
    validate_spec(spec, allow_http=allow_http)
    secret = spec.secret if spec.secret is not None else generate_secret_for(spec.signature)
    endpoint_id = await store.fetchval(
        "endpoint_insert", endpoint_id=spec.id, **stored_columns(spec, secret, box)
    )
    return str(endpoint_id), secret


def stored_columns(spec: EndpointSpec, secret: str, box: SecretBox) -> dict[str, Any]:
    """A new endpoint's columns but its id, as `endpoint_insert` takes them: the secret and the
    header values sealed with `box`, durations in milliseconds."""
    return {
        "tenant_id": spec.tenant_id,
        "url": spec.url,
        "description": spec.description,
        "event_types": list(spec.event_types),
        "secret": box.seal(secret),
        "signature_scheme": spec.signature.scheme,
        "signature_header": spec.signature.header,
        "signature_prefix": spec.signature.prefix,
        "headers": orjson.dumps([[name, box.seal(value)] for name, value in spec.headers]).decode(),
        "rate_per_s": spec.rate_per_s,
        "burst": spec.burst,
        "max_in_flight": spec.max_in_flight,
        "timeout_ms": None if spec.timeout_s is None else max(1, round(spec.timeout_s * 1000)),
        "retry_schedule_ms": (
            None
            if spec.retry_schedule_s is None
            else [round(s * 1000) for s in spec.retry_schedule_s]
        ),
        **chat_columns(spec),
        "proxy": spec.proxy,
    }


def chat_columns(spec: EndpointSpec) -> dict[str, Any]:
    """The chat format's columns; an empty template or title is stored as none."""
    return {
        "payload_format": spec.payload_format,
        "payload_template": spec.template or None,
        "payload_title": spec.title or None,
    }


def endpoint_from_record(
    rec: Record, now_s: float | None = None, *, box: SecretBox = PLAINTEXT
) -> Endpoint:
    """Row -> Endpoint with secrets in clear, keeping only previous secrets inside their grace."""
    now_s = time.time() if now_s is None else now_s
    what = f"endpoint {rec['id']}"
    previous = tuple(
        (box.open(str(p["secret"]), f"{what} previous secret"), float(p["expires_at"]))
        for p in _json(rec["previous_secrets"])
        if float(p["expires_at"]) > now_s
    )
    schedule = rec["retry_schedule_ms"]
    return Endpoint(
        id=rec["id"],
        tenant_id=rec["tenant_id"],
        url=rec["url"],
        enabled=rec["enabled"],
        secret=box.open(rec["secret"], f"{what} secret"),
        previous_secrets=previous,
        signature=SignatureSpec(
            rec["signature_scheme"], rec["signature_header"], rec["signature_prefix"]
        ),
        headers=tuple(
            (name, box.open(value, f"{what} header {name}"))
            for name, value in _header_pairs(rec["headers"])
        ),
        rate_per_s=rec["rate_per_s"],
        burst=rec["burst"],
        max_in_flight=rec["max_in_flight"],
        timeout_s=None if rec["timeout_ms"] is None else rec["timeout_ms"] / 1000.0,
        retry_schedule_s=None if schedule is None else tuple(ms / 1000.0 for ms in schedule),
        event_types=tuple(rec["event_types"]),
        version=rec["version"],
        chat=chat_payload(rec["payload_format"], rec["payload_template"], rec["payload_title"]),
        proxy=endpoint_proxy(rec["proxy"]),
    )


def _json(value: Any) -> Any:
    return orjson.loads(value) if isinstance(value, str | bytes) else value


def _header_pairs(value: Any) -> list[list[str]]:
    """The headers column, checked: an object or bare strings (a row written by hand) would
    otherwise be read as pairs of characters. The message never repeats a value."""
    pairs = _json(value)
    if not isinstance(pairs, list) or not all(
        isinstance(p, list) and len(p) == 2 and all(isinstance(s, str) for s in p) for p in pairs
    ):
        raise ValueError('headers is not a JSON list of ["Name", "value"] pairs')
    return pairs


def stored_header_names(rec: Record) -> list[str]:
    """The names of an endpoint row's custom headers (their values may be sealed)."""
    return [name for name, _ in _header_pairs(rec["headers"])]


async def fetch_endpoints(
    store: Store, box: SecretBox, endpoint_ids: Sequence[str]
) -> tuple[dict[str, Endpoint], dict[str, str]]:
    """The given live endpoints with secrets in clear, and why each of the others cannot be
    used: deleted, secrets that cannot be decrypted with these keys, or a malformed row
    (written by SQL). Those are logged; their deliveries wait rather than the daemon stop."""
    now_s = time.time()
    loaded: dict[str, Endpoint] = {}
    refused: dict[str, str] = {}
    for rec in await store.fetch("endpoints_by_id", endpoint_ids=list(endpoint_ids)):
        try:
            loaded[rec["id"]] = endpoint_from_record(rec, now_s, box=box)
        except SecretKeyError as exc:
            refused[rec["id"]] = str(exc)
            _log().error("endpoints.secrets_unreadable", endpoint=rec["id"], error=str(exc))
        except (ValueError, TypeError, KeyError, IndexError) as exc:
            refused[rec["id"]] = f"{type(exc).__name__}: {exc}"
            _log().error("endpoints.invalid", endpoint=rec["id"], error=refused[rec["id"]])
    for endpoint_id in endpoint_ids:
        if endpoint_id not in loaded and endpoint_id not in refused:
            refused[endpoint_id] = "deleted"
    return loaded, refused


async def check_secrets_readable(store: Store, box: SecretBox) -> None:
    """Refuse to start when a stored secret cannot be opened (WEBHOOKD_SECRET_KEYS missing or
    wrong): raises `SecretKeyError`. One sealed endpoint is tried, not the whole table."""
    rec = await store.fetchrow("endpoint_sealed_sample", sealed_prefix=PREFIX)
    if rec is None:
        return
    # a malformed row is left out when it is claimed, and logged then
    with contextlib.suppress(ValueError, TypeError, KeyError, IndexError):
        endpoint_from_record(rec, box=box)


async def get_endpoint(store: Store, endpoint_id: str) -> Record:
    rec = await store.fetchrow("endpoint_get", endpoint_id=endpoint_id)
    if rec is None:
        raise NotFound("endpoint", endpoint_id)
    return rec


@dataclass(frozen=True)
class EndpointPage:
    """One page of `endpoint list`: live endpoints in id order, each with `pending` (waiting
    deliveries, held ones included) and `failed` (dead letters) counted up to COUNT_CAP + 1;
    `next_after` is the id to continue after, None on the last page."""

    rows: list[Record]
    next_after: str | None


COUNT_CAP = 10_000  # deliveries counted per endpoint listed: a page never counts a backlog
PAGE_MAX = 10_000  # endpoints per page


async def list_endpoints(
    store: Store, tenant_id: str | None = None, *, after_id: str | None = None, limit: int = 100
) -> EndpointPage:
    """A page of endpoints after `after_id` (keyset pagination: the cost of a page does not
    grow with the endpoints before it, nor with the deliveries of any)."""
    try:
        units.check_int(limit, 1, PAGE_MAX)
    except ValueError as exc:
        raise ConfigError("--limit", str(exc)) from None
    rows = await store.fetch(
        "endpoint_list", tenant_id=tenant_id, after_id=after_id, limit=limit, count_cap=COUNT_CAP
    )
    more = len(rows) > limit
    rows = rows[:limit]
    return EndpointPage(rows, rows[-1]["id"] if more else None)


async def set_enabled(
    store: Store, endpoint_id: str, enabled: bool, reason: str | None = None
) -> None:
    """Enable or disable. Enabling also forgets the endpoint's failing streak, so one the
    daemon disabled (health.disable_after) gets a whole period again before it is disabled."""
    async with store.transaction() as tx:
        row = await tx.fetchrow(
            "endpoint_set_enabled", endpoint_id=endpoint_id, enabled=enabled, reason=reason
        )
        if row is None:
            raise NotFound("endpoint", endpoint_id)
        if enabled:
            await tx.execute("endpoint_health_reset", endpoint_id=endpoint_id)


async def rotate_secret(
    store: Store,
    endpoint_id: str,
    *,
    grace_s: float,
    new_secret: str | None = None,
    box: SecretBox = PLAINTEXT,
) -> str:
    """New secret for an endpoint; the old one is still signed alongside for `grace_s`.
    (The old one moves to previous_secrets in its stored form, sealed or not.)"""
    rec = await get_endpoint(store, endpoint_id)
    spec = SignatureSpec(rec["signature_scheme"], rec["signature_header"], rec["signature_prefix"])
    secret = new_secret if new_secret is not None else generate_secret_for(spec)
    _check_secret(spec, secret)
    expires_at = time.time() + grace_s
    stored = box.seal(secret)
    rotated = await store.fetchval(
        "endpoint_rotate_secret",
        endpoint_id=endpoint_id,
        secret=stored,
        previous_expires_at_s=expires_at,
    )
    if rotated is None:
        raise NotFound("endpoint", endpoint_id)
    return secret


async def delete_endpoint(store: Store, endpoint_id: str) -> int:
    """Delete an endpoint; its undelivered deliveries become dead letters. Returns how many."""
    async with store.transaction() as tx:
        if await tx.fetchrow("endpoint_delete", endpoint_id=endpoint_id) is None:
            raise NotFound("endpoint", endpoint_id)
        status = await tx.execute(
            "endpoint_fail_open", endpoint_id=endpoint_id, reason="endpoint deleted"
        )
    return int(status.split()[-1])


@dataclass
class ReencryptReport:
    """What `reencrypt_secrets` did, counted per endpoint and per stored value."""

    endpoints: int = 0  # live endpoints looked at
    updated: int = 0  # endpoints rewritten
    encrypted: int = 0  # plaintext values now sealed
    rekeyed: int = 0  # sealed values moved to the current key
    current: int = 0  # sealed values already under the current key
    skipped: int = 0  # malformed rows, left as they are (logged as endpoints.invalid)


async def reencrypt_secrets(
    store: Store, box: SecretBox, *, batch_size: int = 100, dry_run: bool = False
) -> ReencryptReport:
    """Seal every endpoint's secrets and header values with the current (first) key: plaintext
    ones are encrypted, ones under an older key re-encrypted. One transaction per batch, rows
    locked so a concurrent rotate-secret waits; running it again changes nothing."""
    if not box.enabled:
        raise SecretKeyError("not set: re-encrypting needs at least one key")
    report = ReencryptReport()
    after = ""
    while True:
        async with store.transaction() as tx:
            rows = await tx.fetch("endpoint_secrets_batch", after_id=after, limit=batch_size)
            changed = [c for r in rows if (c := _resealed_or_skipped(r, box, report)) is not None]
            if changed and not dry_run:
                ids, secrets, previous, headers = map(list, zip(*changed, strict=True))
                await tx.execute(
                    "endpoint_secrets_update",
                    endpoint_ids=ids,
                    secrets=secrets,
                    previous_secrets=previous,
                    headers=headers,
                )
        report.endpoints += len(rows)
        report.updated += len(changed)
        if len(rows) < batch_size:
            return report
        after = rows[-1]["id"]


def _resealed_or_skipped(
    rec: Record, box: SecretBox, report: ReencryptReport
) -> tuple[str, ...] | None:
    tally = ReencryptReport()
    try:
        resealed = _resealed(rec, box, tally)
    except (ValueError, TypeError, KeyError, IndexError) as exc:
        _log().error("endpoints.invalid", endpoint=rec["id"], error=f"{type(exc).__name__}: {exc}")
        report.skipped += 1
        return None
    report.encrypted += tally.encrypted
    report.rekeyed += tally.rekeyed
    report.current += tally.current
    return resealed


def _resealed(rec: Record, box: SecretBox, tally: ReencryptReport) -> tuple[str, ...] | None:
    """(id, secret, previous_secrets json, headers json) sealed with the current key, or None
    when every value already is; counts this row's values in `tally`."""
    what = f"endpoint {rec['id']}"

    def reseal(stored: str, name: str) -> str:
        new = box.reseal(stored, f"{what} {name}")
        if new is None:
            tally.current += 1
            return stored
        if is_sealed(stored):
            tally.rekeyed += 1
        else:
            tally.encrypted += 1
        return new

    secret = reseal(rec["secret"], "secret")
    previous = [
        p | {"secret": reseal(str(p["secret"]), "previous secret")}
        for p in _json(rec["previous_secrets"])
    ]
    headers = [
        [name, reseal(value, f"header {name}")] for name, value in _header_pairs(rec["headers"])
    ]
    if tally.encrypted + tally.rekeyed == 0:
        return None
    return rec["id"], secret, orjson.dumps(previous).decode(), orjson.dumps(headers).decode()
