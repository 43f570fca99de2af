"""What else an endpoint has: its secret (get, rotate), custom headers (get, replace, patch),
figures, an example message, recovering its dead letters, and webhookd's own: enable, disable
with a reason, and its pause and failing streak (state, pause, resume)."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

import orjson
import structlog
from aiohttp import web

from daemon import endpoints
from daemon.api import views
from daemon.api.endpoint_fields import DISABLED_REASON
from daemon.api.errors import conflict, invalid, not_found
from daemon.api.http import READ, WRITE, api_of, json_response, no_content, principal_of
from daemon.api.params import MISSING, Body, Query, given, json_body
from daemon.api.requeue import requeue
from daemon.api.tenancy import app_of, endpoint_of
from daemon.errors import ConfigError
from daemon.replay import DeadLetterFilter
from daemon.signing import ED25519, public_key

if TYPE_CHECKING:
    from daemon.api.routes import Route
    from daemon.store import Record

log = structlog.get_logger("webhookd.api")

# These header values are never returned, only their names: Svix's list, and (more careful
# than Svix) any name that says it holds a credential.
SENSITIVE_HEADERS: Final = frozenset(
    {"x-auth-token", "x-api-key", "www-authenticate", "authorization", "proxy-authenticate",
     "proxy-authorization", "cookie"}
)  # fmt: skip
_SENSITIVE_WORDS: Final = ("auth", "token", "secret", "key", "password", "cookie", "session",
                           "signature", "credential")  # fmt: skip


def sensitive(name: str) -> bool:
    lowered = name.lower()
    return lowered in SENSITIVE_HEADERS or any(word in lowered for word in _SENSITIVE_WORDS)


MAX_GRACE_S: Final = 7 * 86400


def _key(scheme: str, secret: str) -> str:
    """What a receiver verifies with: the shared secret, or for ed25519 the public key (the
    private key never leaves webhookd)."""
    return public_key(secret) if scheme == ED25519 else secret


def _revealed(request: web.Request, endpoint: Record, what: str) -> None:
    """Who read an endpoint's secret or header values: the console's "reveal" is this read.
    The value itself is never logged."""
    log.info(
        "api.endpoint_revealed",
        what=what,
        endpoint=endpoint["id"],
        token_id=principal_of(request).token_id,
    )


async def get_secret(request: web.Request) -> web.Response:
    api = api_of(request)
    endpoint = await endpoint_of(request, await app_of(request))
    secret = api.box.open(endpoint["secret"], f"endpoint {endpoint['id']} secret")
    _revealed(request, endpoint, "secret")
    return json_response({"key": _key(endpoint["signature_scheme"], secret)})


async def rotate_secret(request: web.Request) -> web.Response:
    """A new secret; the old one is still signed for gracePeriodSeconds (default
    signing.rotation_grace). Answers the new key (Svix answers 204; its SDKs read a body)."""
    api = api_of(request)
    endpoint = await endpoint_of(request, await app_of(request))
    body = await json_body(request)
    key = body.string("key", max_len=1024)
    grace = body.integer("gracePeriodSeconds", low=0, high=MAX_GRACE_S)
    grace_s = api.config.signing.rotation_grace_s if not given(grace) else float(grace)  # type: ignore[arg-type]
    try:
        secret = await endpoints.rotate_secret(
            api.store,
            endpoint["id"],
            grace_s=grace_s,
            new_secret=key if isinstance(key, str) else None,
            box=api.box,
        )
    except ConfigError as exc:
        raise invalid(["body", "key"], exc.why) from None
    return json_response({"key": _key(endpoint["signature_scheme"], secret)})


def _headers(api_box: Any, endpoint: Record) -> list[tuple[str, str]]:
    what = f"endpoint {endpoint['id']} header"
    return [(name, api_box.open(value, what)) for name, value in _stored(endpoint)]


def _stored(endpoint: Record) -> list[list[str]]:
    raw = endpoint["headers"]
    pairs: list[list[str]] = orjson.loads(raw) if isinstance(raw, str) else raw
    return pairs


async def get_headers(request: web.Request) -> web.Response:
    api = api_of(request)
    endpoint = await endpoint_of(request, await app_of(request))
    pairs = _headers(api.box, endpoint)
    shown = {n: v for n, v in pairs if not sensitive(n)}
    hidden = sorted({n for n, _ in pairs if sensitive(n)})
    _revealed(request, endpoint, "headers")
    return json_response({"headers": shown, "sensitive": hidden})


async def _write_headers(request: web.Request, *, patch: bool) -> web.Response:
    api = api_of(request)
    app = await app_of(request)
    endpoint = await endpoint_of(request, app)
    body = await json_body(request)
    given_headers = body.string_map("headers", nullable_values=patch)
    if given_headers is MISSING:
        raise body.fail("headers", "field required", "value_error.missing")
    remove = body.strings("deleteHeaders") if patch else None
    async with api.store.transaction() as tx:
        rec = await tx.fetchrow(
            "api_endpoint_get_for_update", tenant_id=app["tenant_id"], endpoint_id=endpoint["id"]
        )
        if rec is None:
            raise not_found("endpoint")
        merged: dict[str, tuple[str, str]] = {}
        if patch:
            merged = {n.lower(): (n, v) for n, v in _stored(rec)}
        for name in remove if isinstance(remove, list) else []:
            merged.pop(name.lower(), None)
        for name, value in given_headers.items():
            if value is None:
                merged.pop(name.lower(), None)
                continue
            try:
                endpoints.check_header(name, value)
            except ConfigError as exc:
                raise invalid(["body", "headers", name], exc.why) from None
            merged[name.lower()] = (name, api.box.seal(value))
        pairs = [list(pair) for pair in merged.values()]
        await tx.execute(
            "api_endpoint_set_headers", endpoint_id=rec["id"], headers=orjson.dumps(pairs).decode()
        )
    return no_content()


async def put_headers(request: web.Request) -> web.Response:
    return await _write_headers(request, patch=False)


async def patch_headers(request: web.Request) -> web.Response:
    return await _write_headers(request, patch=True)


async def stats(request: web.Request) -> web.Response:
    query = Query(request)
    since, until = query.when("since"), query.when("until")
    endpoint = await endpoint_of(request, await app_of(request))
    row = await api_of(request).store.fetchrow(
        "api_endpoint_stats", endpoint_id=endpoint["id"], since=since, until=until
    )
    assert row is not None
    return json_response(
        {"success": row["success"], "pending": row["pending"], "sending": row["sending"],
         "fail": row["fail"], "canceled": 0}
    )  # fmt: skip


async def send_example(request: web.Request) -> web.Response:
    """A message of `eventType` to this endpoint only: the given payload, else the event
    type's schema example (`examples[exampleIndex]`), else `{}`."""
    from daemon.api.messages import example_payload, message_row

    api = api_of(request)
    app = await app_of(request)
    endpoint = await endpoint_of(request, app)
    body = await json_body(request)
    event_type = body.string("eventType", required=True, nullable=False, min_len=1, max_len=256)
    index = body.integer("exampleIndex", low=0, high=1000)
    payload = body.obj("payload")
    if not endpoint["enabled"]:
        raise conflict("the endpoint is disabled")
    assert isinstance(event_type, str)
    if not given(payload):
        payload = await example_payload(api.store, event_type, index if given(index) else 0)  # type: ignore[arg-type]
    row = await api.store.fetchrow(
        "message_send",
        endpoint_id=endpoint["id"],
        event_type=event_type,
        payload=orjson.dumps(payload).decode(),
    )
    assert row is not None
    return json_response(views.message_out(await message_row(api.store, row["id"])), 202)


async def recover(request: web.Request) -> web.Response:
    """Deliver again the endpoint's dead letters that failed in [since, until), as a new
    attempt series each (`webhookd recover`), in one transaction. Svix runs this as a
    background task; here it is done when the answer comes."""
    app = await app_of(request)
    endpoint = await endpoint_of(request, app)
    body = await json_body(request)
    since = body.when("since", required=True)
    until = body.when("until")
    if not endpoint["enabled"]:
        raise conflict("the endpoint is disabled: enable it first")
    assert isinstance(since, datetime)
    selection = DeadLetterFilter(
        endpoint["id"], None, since, until if isinstance(until, datetime) else None
    )
    count = await requeue(api_of(request).store, [selection])
    return json_response(
        {"id": "qtask_" + secrets.token_hex(12), "status": "finished",
         "task": "endpoint.recover", "updatedAt": datetime.now(UTC),
         "data": {"messagesSent": count}},
        202,
    )  # fmt: skip


async def _set_enabled(
    request: web.Request, endpoint: Record, enabled: bool, reason: str | None
) -> web.Response:
    api = api_of(request)
    await endpoints.set_enabled(api.store, endpoint["id"], enabled, reason)
    row = await api.store.fetchrow("endpoint_get", endpoint_id=endpoint["id"])
    if row is None:
        raise not_found("endpoint")
    return json_response(views.endpoint_out(row))


async def enable(request: web.Request) -> web.Response:
    endpoint = await endpoint_of(request, await app_of(request))
    return await _set_enabled(request, endpoint, True, None)


async def disable(request: web.Request) -> web.Response:
    """Deliveries wait (nothing is dead-lettered) until it is enabled again."""
    endpoint = await endpoint_of(request, await app_of(request))
    body = await json_body(request) if request.can_read_body else Body({}, ("body",))
    reason = body.string("reason", max_len=1024)
    why = reason if isinstance(reason, str) else DISABLED_REASON
    return await _set_enabled(request, endpoint, False, why)


async def _state(request: web.Request, endpoint: Record) -> web.Response:
    row = await api_of(request).store.fetchrow("api_endpoint_state", endpoint_id=endpoint["id"])
    return json_response(
        {"endpointId": endpoint["id"], "disabled": not endpoint["enabled"],
         "disabledReason": endpoint["disabled_reason"],
         "paused": bool(row and row["paused"]),
         "pausedUntil": row["paused_until"] if row and row["paused"] else None,
         "failingSince": row["failing_since"] if row else None,
         "consecutiveFailures": row["consecutive_failures"] if row else 0}
    )  # fmt: skip


async def state(request: web.Request) -> web.Response:
    """Breaker and Retry-After pauses (shared by every daemon) and the failing streak."""
    return await _state(request, await endpoint_of(request, await app_of(request)))


async def pause(request: web.Request) -> web.Response:
    endpoint = await endpoint_of(request, await app_of(request))
    body = await json_body(request)
    seconds = body.integer("durationSeconds", low=1, high=MAX_GRACE_S, nullable=False)
    if not given(seconds):
        raise body.fail("durationSeconds", "field required", "value_error.missing")
    await api_of(request).store.execute(
        "pause_and_release",  # as a Retry-After does, with nothing to give back
        endpoint_id=endpoint["id"],
        pause_s=float(seconds),  # type: ignore[arg-type]
        delivery_ids=[],
        lease_tokens=[],
    )
    return await _state(request, endpoint)


async def resume(request: web.Request) -> web.Response:
    api = api_of(request)
    endpoint = await endpoint_of(request, await app_of(request))
    await api.store.execute("api_endpoint_resume", endpoint_id=endpoint["id"])
    await api.store.execute("outbox_wake")
    return await _state(request, endpoint)


def routes() -> list[Route]:
    from daemon.api.routes import Route

    one = "/api/v1/app/{app_id}/endpoint/{endpoint_id}"
    return [
        Route("GET", one + "/secret", get_secret, READ),
        Route("POST", one + "/secret/rotate", rotate_secret, WRITE),
        Route("GET", one + "/headers", get_headers, READ),
        Route("PUT", one + "/headers", put_headers, WRITE),
        Route("PATCH", one + "/headers", patch_headers, WRITE),
        Route("GET", one + "/stats", stats, READ),
        Route("POST", one + "/send-example", send_example, WRITE),
        Route("POST", one + "/recover", recover, WRITE),
        Route("POST", one + "/enable", enable, WRITE),
        Route("POST", one + "/disable", disable, WRITE),
        Route("GET", one + "/state", state, READ),
        Route("POST", one + "/pause", pause, WRITE),
        Route("POST", one + "/resume", resume, WRITE),
    ]
