"""`endpoint update`: change some settings of an endpoint, checked as `endpoint add` checks them.

Only the fields given change. Optional limits (rate, burst, max in flight, timeout, retry
schedule) can be set back to the configured default (None). Custom headers and event types
are replaced as a whole. A new signature scheme keeps the current secret when it is valid for
that scheme, else a new one is generated (and returned, to be shown once); secrets kept for a
rotation grace are dropped then, since the new scheme cannot sign with them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Final, TypeVar

import orjson

from daemon.endpoints import (
    EndpointSpec,
    chat_columns,
    check_signature_header,
    stored_header_names,
    validate_spec,
)
from daemon.errors import ConfigError, NotFound
from daemon.models import SignatureSpec
from daemon.secretbox import PLAINTEXT, SecretBox
from daemon.signing import generate_secret_for, validate_secret
from daemon.templates import RAW

if TYPE_CHECKING:  # asyncpg is not needed for the CLI's options
    from daemon.store import Record, Store, Tx


class Keep(enum.Enum):
    """Marks a field of `EndpointUpdate` that is left as it is."""

    KEEP = "keep"


KEEP: Final = Keep.KEEP
T = TypeVar("T")


@dataclass(frozen=True)
class EndpointUpdate:
    """What to change; KEEP leaves a field alone, None sets a limit back to the default."""

    url: str | Keep = KEEP
    tenant_id: str | Keep = KEEP
    description: str | Keep = KEEP
    event_types: tuple[str, ...] | Keep = KEEP  # () receives every event type
    rate_per_s: float | Keep | None = KEEP
    burst: int | Keep | None = KEEP
    max_in_flight: int | Keep | None = KEEP
    headers: tuple[tuple[str, str], ...] | Keep = KEEP  # replaces every custom header
    signature: SignatureSpec | Keep = KEEP
    secret: str | Keep = KEEP  # replaced at once (rotate-secret keeps the old one signed)
    timeout_s: float | Keep | None = KEEP
    retry_schedule_s: tuple[float, ...] | Keep | None = KEEP
    payload_format: str | Keep = KEEP
    template: str | Keep | None = KEEP  # None or "": the format's default text
    title: str | Keep | None = KEEP
    proxy: str | Keep | None = KEEP  # None: delivery.proxy

    def changed(self) -> list[str]:
        return [f.name for f in fields(self) if getattr(self, f.name) is not KEEP]


@dataclass(frozen=True)
class UpdateResult:
    changed: list[str]
    signature: SignatureSpec
    generated_secret: str | None  # in clear: the new scheme could not use the old secret


async def update_endpoint(
    store: Store,
    endpoint_id: str,
    change: EndpointUpdate,
    *,
    allow_http: bool,
    box: SecretBox = PLAINTEXT,
) -> UpdateResult:
    """Apply `change` to a live endpoint (row locked meanwhile); running daemons reload it."""
    if not change.changed():
        raise ConfigError("endpoint update", "nothing to change: give at least one option")
    async with store.transaction() as tx:
        rec = await tx.fetchrow("endpoint_get_for_update", endpoint_id=endpoint_id)
        if rec is None:
            raise NotFound("endpoint", endpoint_id)
        spec = updated_spec(rec, change)
        # A URL kept as it is was checked when it was set (maybe under another policy).
        validate_spec(spec, allow_http=allow_http or change.url is KEEP)
        if change.headers is KEEP:  # a new signature header against the stored headers
            check_signature_header(spec.signature, stored_header_names(rec))
        new_scheme = spec.signature.scheme != rec["signature_scheme"]
        secret = _secret_for(rec, spec, box) if new_scheme else None
        await _write(tx, rec, spec, change, box, secret, new_scheme)
    generated = secret if secret is not None and change.secret is KEEP else None
    return UpdateResult(change.changed(), spec.signature, generated)


def _pick(value: T | Keep, current: T) -> T:
    return current if isinstance(value, Keep) else value


def updated_spec(rec: Record, c: EndpointUpdate) -> EndpointSpec:
    """The endpoint as it will be, for `validate_spec`. Only new headers and a new secret
    are in it (stored ones were checked when written and may be sealed)."""
    current = SignatureSpec(
        rec["signature_scheme"], rec["signature_header"], rec["signature_prefix"]
    )
    timeout_ms, schedule_ms = rec["timeout_ms"], rec["retry_schedule_ms"]
    rate = _pick(c.rate_per_s, rec["rate_per_s"])
    # A burst means nothing without a rate: clearing the rate clears it unless it is given.
    burst = None if rate is None and c.burst is KEEP else _pick(c.burst, rec["burst"])
    payload_format, template, title = _chat(rec, c)
    return EndpointSpec(
        url=_pick(c.url, rec["url"]),
        tenant_id=_pick(c.tenant_id, rec["tenant_id"]),
        description=_pick(c.description, rec["description"]),
        event_types=_pick(c.event_types, tuple(rec["event_types"])),
        rate_per_s=rate,
        burst=burst,
        max_in_flight=_pick(c.max_in_flight, rec["max_in_flight"]),
        headers=_pick(c.headers, ()),
        signature=_pick(c.signature, current),
        secret=_pick(c.secret, None),
        timeout_s=_pick(c.timeout_s, None if timeout_ms is None else timeout_ms / 1000),
        retry_schedule_s=_pick(
            c.retry_schedule_s,
            None if schedule_ms is None else tuple(ms / 1000 for ms in schedule_ms),
        ),
        payload_format=payload_format,
        template=template,
        title=title,
        proxy=_pick(c.proxy, rec["proxy"]),
    )


def _chat(rec: Record, c: EndpointUpdate) -> tuple[str, str | None, str | None]:
    """The chat settings as they will be. A template kept as it is goes when the format
    becomes raw, and a title kept as it is goes when it is no longer teams: they would mean
    nothing (and `add` refuses them)."""
    payload_format = _pick(c.payload_format, rec["payload_format"])
    template = _pick(c.template, rec["payload_template"])
    title = _pick(c.title, rec["payload_title"])
    if c.template is KEEP and payload_format == RAW:
        template = None
    if c.title is KEEP and payload_format != "teams":
        title = None
    return payload_format, template, title


def _secret_for(rec: Record, spec: EndpointSpec, box: SecretBox) -> str | None:
    """For a new scheme: the given secret, None when the current one suits it, else a new one."""
    if spec.secret is not None:
        return spec.secret
    try:
        validate_secret(spec.signature, box.open(rec["secret"], f"endpoint {rec['id']} secret"))
    except ValueError:
        return generate_secret_for(spec.signature)
    return None


async def _write(
    tx: Tx,
    rec: Record,
    spec: EndpointSpec,
    c: EndpointUpdate,
    box: SecretBox,
    scheme_secret: str | None,
    new_scheme: bool,
) -> None:
    secret = scheme_secret if scheme_secret is not None else spec.secret
    headers = None
    if c.headers is not KEEP:
        headers = orjson.dumps([[name, box.seal(value)] for name, value in c.headers]).decode()
    await tx.execute(
        "endpoint_update",
        endpoint_id=rec["id"],
        url=spec.url,
        tenant_id=spec.tenant_id,
        description=spec.description,
        event_types=list(spec.event_types),
        signature_scheme=spec.signature.scheme,
        signature_header=spec.signature.header,
        signature_prefix=spec.signature.prefix,
        rate_per_s=spec.rate_per_s,
        burst=spec.burst,
        headers=headers,
        secret=None if secret is None else box.seal(secret),
        max_in_flight=spec.max_in_flight,
        timeout_ms=None if spec.timeout_s is None else max(1, round(spec.timeout_s * 1000)),
        retry_schedule_ms=(
            None
            if spec.retry_schedule_s is None
            else [round(s * 1000) for s in spec.retry_schedule_s]
        ),
        scheme_changed=new_scheme,
        **chat_columns(spec),
        proxy=spec.proxy,
    )
