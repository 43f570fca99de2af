"""webhookd's own: the dead letters of an application or of one endpoint, and delivering them
again (by message, time window, or all), as `webhookd dead-letters [requeue]` does."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from aiohttp import web

from daemon.api import pages
from daemon.api.errors import invalid, not_found
from daemon.api.http import READ, WRITE, api_of, json_response
from daemon.api.params import ID_PATTERN, Query, given, json_body
from daemon.api.requeue import requeue
from daemon.api.tenancy import app_of, endpoint_of
from daemon.replay import DeadLetterFilter

if TYPE_CHECKING:
    from daemon.api.routes import Route
    from daemon.store import Record


def dead_letter_out(rec: Record) -> dict[str, Any]:
    return {
        "deliveryId": str(rec["id"]),
        "msgId": rec["msg_id"],
        "endpointId": rec["endpoint_id"],
        "eventType": rec["event_type"],
        "attempts": rec["attempts"],
        "lastStatusCode": rec["last_status_code"],
        "lastError": rec["last_error"],
        "failedAt": rec["updated_at"],
    }


async def _list(request: web.Request, endpoint_ids: list[str]) -> web.Response:
    query = Query(request)
    limit = pages.limit_of(request)
    suffix, position = pages.time_position(request)
    rows = await api_of(request).store.fetch(
        "api_dead_letters" + suffix,
        endpoint_ids=endpoint_ids,
        since=query.when("since"),
        until=query.when("until"),
        **position,
        limit=limit + 1,
    )
    cursor = lambda r: pages.encode_time(r["updated_at"], r["id"])  # noqa: E731
    return json_response(pages.page(rows, limit, cursor, dead_letter_out, bool(suffix)))


async def _endpoint_ids(request: web.Request, app: Record) -> list[str]:
    rows = await api_of(request).store.fetch("api_endpoint_ids", tenant_id=app["tenant_id"])
    return [r["id"] for r in rows]


async def list_of_app(request: web.Request) -> web.Response:
    app = await app_of(request)
    return await _list(request, await _endpoint_ids(request, app))


async def list_of_endpoint(request: web.Request) -> web.Response:
    endpoint = await endpoint_of(request, await app_of(request))
    return await _list(request, [endpoint["id"]])


async def requeue_dead_letters(request: web.Request) -> web.Response:
    """Body: any of `endpointId`, `msgIds`, `since`, `until`, or `all: true`. Dead letters of
    disabled endpoints are left alone."""
    api = api_of(request)
    app = await app_of(request)
    body = await json_body(request)
    endpoint_ref = body.string("endpointId", pattern=ID_PATTERN)
    msg_ids = body.strings("msgIds", pattern=ID_PATTERN, max_items=1000)
    since, until = body.when("since"), body.when("until")
    everything = body.boolean("all") is True
    if not (everything or any(given(v) for v in (endpoint_ref, msg_ids, since, until))):
        raise invalid(["body"], "say which: endpointId, msgIds, since/until, or all: true")
    if isinstance(endpoint_ref, str):
        endpoint = await api.store.fetchrow(
            "api_endpoint_get", tenant_id=app["tenant_id"], ref=endpoint_ref
        )
        if endpoint is None:
            raise not_found("endpoint")
        endpoint_ids = [endpoint["id"]]
    else:
        endpoint_ids = await _endpoint_ids(request, app)
    ids = None
    if isinstance(msg_ids, list):
        ids = tuple([await _outbox_id(request, app, msg_id) for msg_id in msg_ids])
    count = await requeue(
        api.store,
        [
            DeadLetterFilter(
                endpoint_id,
                ids,
                since if isinstance(since, datetime) else None,
                until if isinstance(until, datetime) else None,
            )
            for endpoint_id in endpoint_ids
        ],
    )
    return json_response({"requeued": count})


async def _outbox_id(request: web.Request, app: Record, msg_id: str) -> int:
    row = await api_of(request).store.fetchrow(
        "api_message_find", tenant_id=app["tenant_id"], msg_id=msg_id
    )
    if row is None:
        raise not_found(f"message {msg_id}")
    ident: int = row["id"]
    return ident


def routes() -> list[Route]:
    from daemon.api.routes import Route

    app = "/api/v1/app/{app_id}"
    return [
        Route("GET", app + "/dead-letter", list_of_app, READ),
        Route("POST", app + "/dead-letter/requeue", requeue_dead_letters, WRITE),
        Route("GET", app + "/endpoint/{endpoint_id}/dead-letter", list_of_endpoint, READ),
    ]
