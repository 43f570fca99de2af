"""Attempts, as Svix's MessageAttempt: of a message, of an endpoint (newest first, a range of an
index however many there are), and resending a message to one endpoint."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from daemon.api import pages, views
from daemon.api.errors import conflict, not_found
from daemon.api.http import READ, WRITE, api_of, json_response
from daemon.api.messages import message_of
from daemon.api.params import Query
from daemon.api.tenancy import app_of, endpoint_of

if TYPE_CHECKING:
    from daemon.api.routes import Route

# Svix's MessageStatus as a filter: 0 success, 2 fail; 1 pending, 3 sending and 4 canceled
# match no attempt (an attempt is recorded once it has finished).
STATUSES = ("0", "1", "2", "3", "4")


def _page(rows: list[Any], limit: int, back: bool = False) -> dict[str, Any]:
    cursor = lambda r: pages.encode_time(r["started_at"], r["id"])  # noqa: E731
    return pages.page(rows, limit, cursor, views.attempt_out, back)


async def by_endpoint(request: web.Request) -> web.Response:
    app = await app_of(request)
    endpoint = await endpoint_of(request, app)
    query = Query(request)
    limit = pages.limit_of(request)
    suffix, position = pages.time_position(request)
    status = query.choice("status", STATUSES)
    if status in ("1", "3", "4"):  # attempts are recorded once finished: never pending
        return json_response(_page([], limit))
    rows = await api_of(request).store.fetch(
        "api_attempts_by_endpoint" + suffix,
        endpoint_id=endpoint["id"],
        **position,
        after=query.when("after"),
        before=query.when("before"),
        succeeded=None if status is None else status == "0",
        limit=limit + 1,
    )
    return json_response(_page(rows, limit, bool(suffix)))


async def by_message(request: web.Request) -> web.Response:
    app = await app_of(request)
    message = await message_of(request, app)
    query = Query(request)
    limit = pages.limit_of(request)
    suffix, position = pages.time_position(request)
    endpoint_ref = query.string("endpoint_id")
    endpoint_id = None
    if endpoint_ref is not None:
        row = await api_of(request).store.fetchrow(
            "api_endpoint_get", tenant_id=app["tenant_id"], ref=endpoint_ref
        )
        if row is None:
            return json_response(_page([], limit))
        endpoint_id = row["id"]
    status = query.choice("status", STATUSES)
    if status in ("1", "3", "4"):
        return json_response(_page([], limit))
    rows = await api_of(request).store.fetch(
        "api_attempts_by_message" + suffix,
        message_id=message["id"],
        endpoint_id=endpoint_id,
        **position,
        succeeded=None if status is None else status == "0",
        limit=limit + 1,
    )
    return json_response(_page(rows, limit, bool(suffix)))


async def resend(request: web.Request) -> web.Response:
    """A new attempt series for the message to this endpoint (`webhookd replay --endpoint`),
    due now; 409 while it is still pending or being attempted."""
    api = api_of(request)
    app = await app_of(request)
    message = await message_of(request, app)
    endpoint = await endpoint_of(request, app)
    delivery = await api.store.fetchrow(
        "api_delivery_of", message_id=message["id"], endpoint_id=endpoint["id"]
    )
    if delivery is None:
        raise not_found("delivery of this message to this endpoint")
    if not delivery["endpoint_enabled"]:
        raise conflict("the endpoint is disabled: enable it first")
    async with api.store.transaction() as tx:
        rows = await tx.fetch(
            "message_replay", message_id=message["id"], endpoint_id=endpoint["id"]
        )
        if not rows:
            raise conflict(f"the message to this endpoint is still {delivery['status']}")
        await tx.execute("outbox_wake")
    return json_response({}, 202)


def routes() -> list[Route]:
    from daemon.api.routes import Route

    app = "/api/v1/app/{app_id}"
    return [
        Route("GET", app + "/attempt/endpoint/{endpoint_id}", by_endpoint, READ),
        Route("GET", app + "/attempt/msg/{msg_id}", by_message, READ),
        Route("POST", app + "/msg/{msg_id}/endpoint/{endpoint_id}/resend", resend, WRITE),
    ]
