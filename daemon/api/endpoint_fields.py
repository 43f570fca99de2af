"""An endpoint as a request describes it, in both SDK spellings (`eventTypes`/`filterTypes`,
`throttleRate`/`rateLimit`), turned into what `webhookd endpoint add | update` check:
`EndpointSpec` and `EndpointUpdate`, validated by `daemon.endpoints.validate_spec` (URL policy,
header rules, secret format, signature schemes, limits). A `ConfigError` from there becomes a
422 naming the body field."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Final

from daemon.api.errors import Invalid, Problem
from daemon.api.params import ID_PATTERN, MISSING, Body, Missing, given
from daemon.endpoint_update import KEEP, EndpointUpdate, Keep
from daemon.endpoints import EndpointSpec
from daemon.errors import ConfigError
from daemon.models import SignatureSpec
from daemon.signing import parse_signature_option
from daemon.templates import FORMATS, MAX_TEMPLATE_CHARS, RAW

EVENT_TYPE_PATTERN: Final = re.compile(r"[a-zA-Z0-9\-_.]{1,256}")
SCHEMES: Final = ("standard", "standard-ed25519", "hmac-sha256-hex")
DISABLED_REASON: Final = "disabled through the API"
# Where each option of `webhookd endpoint add` is in a request body.
_FIELD_OF_OPTION: Final = {
    "url": "url",
    "--header": "headers",
    "--burst": "burst",
    "--max-in-flight": "maxInFlight",
    "--timeout": "timeoutMs",
    "--secret": "secret",
    "--rate": "throttleRate",
    "--signature": "signatureScheme",
    "--retry-schedule": "retryScheduleMs",
    "--event-type": "eventTypes",
    "--description": "description",
    "--format": "payloadFormat",
    "--template": "payloadTemplate",
    "--title": "payloadTitle",
}


@dataclass(frozen=True)
class EndpointFields:
    """What a request gave; MISSING where it said nothing."""

    url: str | Missing | None
    description: str | Missing | None
    uid: str | Missing | None
    event_types: list[str] | Missing | None
    throttle_rate: int | Missing | None
    disabled: bool | Missing | None
    metadata: dict[str, Any] | Missing
    headers: dict[str, Any] | Missing
    secret: str | Missing | None
    burst: int | Missing | None
    max_in_flight: int | Missing | None
    timeout_ms: int | Missing | None
    retry_schedule_ms: list[int] | Missing | None
    signature: SignatureSpec | Missing | None
    payload_format: str | Missing | None
    template: str | Missing | None
    title: str | Missing | None


def read_fields(body: Body, *, url_required: bool) -> EndpointFields:
    channels = body.strings("channels")
    if isinstance(channels, list) and channels:
        raise body.fail("channels", "channels are not supported by webhookd (use eventTypes)")
    name, _ = body.raw("eventTypes", "filterTypes")
    event_types = body.strings(name, pattern=EVENT_TYPE_PATTERN)
    if isinstance(event_types, list) and not event_types:
        raise body.fail(name, "must have at least one item, or be null (every event type)")
    return EndpointFields(
        url=body.string("url", required=url_required, nullable=False, min_len=1),
        description=body.string("description", max_len=1024),
        uid=body.string("uid", pattern=ID_PATTERN),
        event_types=event_types,
        throttle_rate=body.integer("throttleRate", "rateLimit", low=1, high=65535),
        disabled=body.boolean("disabled"),
        metadata=body.string_map("metadata"),
        headers=body.string_map("headers"),
        secret=body.string("secret", max_len=1024),
        burst=body.integer("burst", low=1, high=1_000_000),
        max_in_flight=body.integer("maxInFlight", low=1, high=10_000),
        timeout_ms=body.integer("timeoutMs", low=1, high=600_000),
        retry_schedule_ms=_schedule(body),
        signature=_signature(body),
        payload_format=_payload_format(body),
        template=body.string("payloadTemplate", max_len=MAX_TEMPLATE_CHARS),
        title=body.string("payloadTitle", max_len=MAX_TEMPLATE_CHARS),
    )


def _payload_format(body: Body) -> str | Missing | None:
    value = body.string("payloadFormat")
    if isinstance(value, str) and value not in FORMATS:
        raise body.fail("payloadFormat", f"must be one of {', '.join(FORMATS)}")
    return value


def _schedule(body: Body) -> list[int] | Missing | None:
    name, value = body.raw("retryScheduleMs")
    if value is MISSING or value is None:
        return value
    if not isinstance(value, list) or len(value) > 100:
        raise body.fail(name, "must be a list of at most 100 delays in milliseconds")
    for index, item in enumerate(value):
        if isinstance(item, bool) or not isinstance(item, int) or not 0 <= item <= 2**31:
            raise Invalid([Problem((*body.loc, name, str(index)), "must be milliseconds >= 0")])
    return list(value)


def _signature(body: Body) -> SignatureSpec | Missing | None:
    scheme = body.string("signatureScheme")
    if scheme is MISSING or scheme is None:
        return scheme
    if scheme not in SCHEMES:
        raise body.fail("signatureScheme", f"must be one of {', '.join(SCHEMES)}")
    header = body.string("signatureHeader", max_len=256)
    prefix = body.string("signaturePrefix", max_len=256)
    # As `--signature hmac-sha256-hex:HEADER[:PREFIX]` is checked.
    parts = [scheme]
    if isinstance(header, str) and header:
        parts += [header, prefix] if isinstance(prefix, str) and prefix else [header]
    option = ":".join(parts)
    try:
        return parse_signature_option(option)
    except ValueError as exc:
        raise body.fail("signatureScheme", str(exc)) from None


def _or(value: Any, default: Any) -> Any:
    return value if given(value) else default


def header_pairs(headers: dict[str, Any] | Missing) -> tuple[tuple[str, str], ...]:
    return () if isinstance(headers, Missing) else tuple(headers.items())


def spec_for_create(f: EndpointFields, tenant_id: str) -> EndpointSpec:
    assert isinstance(f.url, str)
    return EndpointSpec(
        url=f.url,
        tenant_id=tenant_id,
        description=_or(f.description, ""),
        event_types=tuple(_or(f.event_types, ())),
        rate_per_s=None if not given(f.throttle_rate) else float(f.throttle_rate),  # type: ignore[arg-type]
        burst=_or(f.burst, None),
        max_in_flight=_or(f.max_in_flight, None),
        headers=header_pairs(f.headers),
        signature=_or(f.signature, SignatureSpec()),
        secret=_or(f.secret, None),
        timeout_s=None if not given(f.timeout_ms) else f.timeout_ms / 1000,  # type: ignore[operator]
        retry_schedule_s=(
            None if not given(f.retry_schedule_ms)
            else tuple(ms / 1000 for ms in f.retry_schedule_ms)  # type: ignore[union-attr]
        ),
        payload_format=_or(f.payload_format, RAW),
        template=_or(f.template, None),
        title=_or(f.title, None),
    )  # fmt: skip


def _change(value: Any, partial: bool, default: Any, convert: Any = None) -> Any:
    """KEEP when a PATCH leaves it out; a PUT sets what it leaves out to the default."""
    if value is MISSING:
        return KEEP if partial else default
    if value is None:
        return default
    return convert(value) if convert is not None else value


def update_for(f: EndpointFields, *, partial: bool) -> EndpointUpdate:
    def seconds(ms: int) -> float:
        return ms / 1000

    def schedule(delays: list[int]) -> tuple[float, ...]:
        return tuple(ms / 1000 for ms in delays)

    return EndpointUpdate(
        url=KEEP if not given(f.url) else f.url,  # type: ignore[arg-type]
        description=_change(f.description, partial, ""),
        event_types=_change(f.event_types, partial, (), tuple),
        rate_per_s=_change(f.throttle_rate, partial, None, float),
        burst=_change(f.burst, partial, None),
        max_in_flight=_change(f.max_in_flight, partial, None),
        timeout_s=_change(f.timeout_ms, partial, None, seconds),
        retry_schedule_s=_change(f.retry_schedule_ms, partial, None, schedule),
        payload_format=_change(f.payload_format, partial, RAW),
        template=_change(f.template, partial, None),
        title=_change(f.title, partial, None),
    )


def problem_of(exc: ConfigError, *, under: tuple[str, ...] = ("body",)) -> Invalid:
    """A check of `webhookd endpoint add | update` that failed, as a 422 naming the field."""
    name = _FIELD_OF_OPTION.get(exc.key)
    loc = (*under, name) if name else under
    return Invalid([Problem(loc, exc.why)])


def keep_or(value: Any, current: Any) -> Any:
    return current if isinstance(value, Keep) or value is MISSING else value
