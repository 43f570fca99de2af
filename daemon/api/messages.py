"""/api/v1/app/{app_id}/msg: create (an outbox insert, as an application does: the fan-out
trigger makes the deliveries) and get; the list is the message log (message_log.py).

The message id is what receivers get as `webhook-id`, so it is what makes a message unique:
`eventId` is used as the msg_id itself; without one, an `idempotency-key` header is mapped to
`msg_` + 32 hex digits of its SHA-256 (the official SDKs send a fresh key with each call, the
same one when they retry it). The same id twice in an application returns the first message.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

import orjson
from aiohttp import web

from daemon.api import schemas, views
from daemon.api.apps import insert_app
from daemon.api.errors import ApiError, conflict, invalid, not_found
from daemon.api.http import READ, WRITE, api_of, json_response, principal_of
from daemon.api.params import ID_PATTERN, MISSING, Body, Query, json_body
from daemon.api.tenancy import app_of

if TYPE_CHECKING:
    from daemon.api.routes import Route
    from daemon.store import Record, Store, Tx

EVENT_TYPE: Final = re.compile(r"[a-zA-Z0-9\-_.]{1,256}")
_KEY: Final = re.compile(r"[\x21-\x7e]{1,256}")  # visible ASCII


def msg_id_for(event_id: str | None, idempotency_key: str | None) -> str | None:
    if event_id is not None:
        return event_id
    if idempotency_key is not None:
        return "msg_" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]
    return None


async def message_row(store: Store | Tx, message_id: int) -> Record:
    row = await store.fetchrow("api_message_get", message_id=message_id)
    if row is None:
        raise not_found("message")
    return row


async def example_payload(store: Store, event_type: str, index: int) -> Any:
    """`examples[index]` of the event type's latest schema, else `{}`."""
    row = await store.fetchrow("api_event_type_schemas", name=event_type)
    schema = schemas.latest(views.json_value(row["schemas"])) if row is not None else None
    examples = (schema or {}).get("examples")
    if isinstance(examples, list) and 0 <= index < len(examples):
        return examples[index]
    return {}


def _unsupported(body: Body) -> None:
    """Fields Svix has and webhookd cannot honour: refused rather than silently dropped when
    they would change what is delivered; accepted and ignored when they would not."""
    params = body.obj("transformationsParams")
    if isinstance(params, dict) and params:
        raise body.fail("transformationsParams", "transformations are not supported")
    body.strings("channels", pattern=EVENT_TYPE, max_items=10)  # no endpoint filters on them
    body.strings("tags", max_items=100)
    body.integer("payloadRetentionPeriod", low=1, high=3650)
    body.integer("payloadRetentionHours", low=1, high=87600)


def _payload_text(body: Body, limit: int) -> tuple[dict[str, Any], str]:
    payload = body.obj("payload")
    if payload is MISSING:
        raise body.fail("payload", "field required", "value_error.missing")
    if payload is None:
        raise body.fail("payload", "must be an object", "type_error.dict")
    text = orjson.dumps(payload).decode()
    if len(text) > limit:
        raise ApiError(413, "payload_too_large", f"payload is over {limit} bytes")
    return payload, text


async def _context(request: web.Request, event_type: str) -> tuple[Record | None, Any]:
    """The application of the path (None: none this token may reach) and the event type's
    schemas: from the lookup cache (cache.py), else in one round trip."""
    api = api_of(request)
    ref = request.match_info["app_id"]
    app_known, app = api.lookups.apps.get(ref)
    schemas_known, found = api.lookups.schemas.get(event_type)
    if not (app_known and schemas_known):
        app = await api.store.fetchrow("api_app_for_message", ref=ref, event_type=event_type)
        if app is not None:
            found = app["event_schemas"]
        else:
            row = await api.store.fetchrow("api_event_type_schemas", name=event_type)
            found = None if row is None else row["schemas"]
        api.lookups.apps.put(ref, app)
        api.lookups.schemas.put(event_type, found)
    scope = principal_of(request).app_id
    if app is not None and (scope is None or app["id"] == scope):
        return app, found
    return None, found


async def create_message(request: web.Request) -> web.Response:
    """One INSERT when the application exists (a statement is a transaction); creating the
    application with the message (Svix's create-with-app) is one transaction of two."""
    api = api_of(request)
    scope = principal_of(request).app_id
    body = await json_body(request)
    named = body.data.get("eventType")
    # The application first: another tenant's id is a 404 whatever the body says.
    app, event_schemas = await _context(request, named if isinstance(named, str) else "")
    application = body.obj("application")
    if app is None and (not isinstance(application, dict) or scope is not None):
        raise not_found("application")
    event_type = body.string("eventType", required=True, nullable=False, pattern=EVENT_TYPE)
    assert isinstance(event_type, str)
    event_id = body.string("eventId", pattern=ID_PATTERN)
    deliver_at = body.when("deliverAt")
    _unsupported(body)
    key = request.headers.get("idempotency-key")
    if key is not None and not _KEY.fullmatch(key):
        raise invalid(["header", "idempotency-key"], "must be 1 to 256 visible ASCII characters")
    payload, text = _payload_text(body, api.config.delivery.max_payload_bytes)
    schema = schemas.latest(views.json_value(event_schemas))
    if schema is not None:
        schemas.validate_payload(schema, payload)
    msg_id = msg_id_for(event_id if isinstance(event_id, str) else None, key) or _generated()
    when = deliver_at if isinstance(deliver_at, datetime) else None
    if app is None:
        async with api.store.transaction() as tx:
            app = await _create_with_message(request, tx, application)
            row = await tx.fetchrow(
                "api_message_insert", tenant_id=app["tenant_id"], msg_id=msg_id,
                event_type=event_type, payload=text, deliver_after=when,
            )  # fmt: skip
        api.lookups.apps.clear()
    else:
        row = await api.writer.insert(app["tenant_id"], msg_id, event_type, text, when)
    if row is None:  # that id was used before: the first message is the answer
        row = await api.store.fetchrow(
            "api_message_find", tenant_id=app["tenant_id"], msg_id=msg_id
        )
        if row is None:
            raise conflict("message id in use by another message")
    with_content = Query(request).boolean("with_content", True)
    return json_response(views.message_out(row, with_content=with_content), 202)


def _generated() -> str:
    import uuid

    return "msg_" + uuid.uuid4().hex


async def _create_with_message(request: web.Request, tx: Tx, application: Any) -> Record:
    """The path names no application and the body has `application`: it is created with the
    message, in its transaction (Svix's create-with-app: its uid must be the path's)."""
    inner = Body(application, ("body", "application"))
    uid = inner.string("uid", pattern=ID_PATTERN)
    if uid != request.match_info["app_id"]:
        raise inner.fail("uid", "must be set, and be the application id of the path")
    name = inner.string("name", required=True, nullable=False, min_len=1, max_len=256)
    metadata = inner.string_map("metadata")
    assert isinstance(name, str) and isinstance(uid, str)
    return await insert_app(tx, uid, name, {} if metadata is MISSING else metadata)


async def message_of(request: web.Request, app: Record) -> Record:
    row = await api_of(request).store.fetchrow(
        "api_message_find", tenant_id=app["tenant_id"], msg_id=request.match_info["msg_id"]
    )
    if row is None:
        raise not_found("message")
    return row


async def get_message(request: web.Request) -> web.Response:
    app = await app_of(request)
    with_content = Query(request).boolean("with_content", True)
    row = await message_of(request, app)
    return json_response(views.message_out(row, with_content=with_content))


def routes() -> list[Route]:
    from daemon.api.routes import Route

    base = "/api/v1/app/{app_id}/msg"
    return [
        Route("POST", base, create_message, WRITE),
        Route("GET", base + "/{msg_id}", get_message, READ),
    ]
