"""The message log: messages newest first, filtered by event type, time, endpoint and status
(Svix's MessageStatus, which Svix gives attempts and webhookd gives messages too), of one
application (`GET /api/v1/app/{app_id}/msg`) or of every one (`GET /api/v1/webhookd/msg`, a
path Svix's routes cannot take, for tokens not limited to one application).

A message's status comes from its deliveries, the worst first: failed (2) when one is a dead
letter, sending (3) when one is in flight, pending (1) when one waits or retries, success (0)
when all were delivered (or none was due: no endpoint took its event type). With an endpoint,
it is the status of the delivery to that endpoint, and only messages with one are listed.

Filtering by status or endpoint looks at no more than `pages.MAX_SCAN` messages a page
(failed ones: failed deliveries), so a page costs the same in a tenant of millions; a page
where few match is short and not `done`. See the queries api_message_list and
api_message_list_failed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

from aiohttp import web

from daemon.api import pages, views
from daemon.api.errors import invalid
from daemon.api.http import ALL_APPS, READ, api_of, json_response
from daemon.api.messages import EVENT_TYPE
from daemon.api.params import Query
from daemon.api.tenancy import app_of

if TYPE_CHECKING:
    from daemon.api.routes import Route
    from daemon.store import Record

# Svix's MessageStatus: 0 success, 1 pending, 2 fail, 3 sending, 4 canceled (which no webhookd
# message is: a deleted endpoint's deliveries become dead letters).
STATUSES: Final = ("0", "1", "2", "3", "4")
FAILED: Final = 2
CANCELED: Final = 4


@dataclass(frozen=True, slots=True)
class LogFilter:
    """What a message log request asks for; None is any."""

    event_types: list[str] | None
    after: datetime | None
    before: datetime | None
    status: int | None
    with_content: bool

    @classmethod
    def of(cls, request: web.Request) -> LogFilter:
        query = Query(request)
        for unsupported in ("channel", "tag"):
            if query.string(unsupported) is not None:
                raise query.fail(unsupported, f"filtering by {unsupported} is not supported")
        status = query.choice("status", STATUSES)
        return cls(
            event_types=query.strings("event_types", EVENT_TYPE),
            after=query.when("after"),
            before=query.when("before"),
            status=None if status is None else int(status),
            with_content=query.boolean("with_content", True),
        )


async def log_page(
    request: web.Request, tenant_id: str | None, endpoint_id: str | None
) -> dict[str, Any]:
    """A page of tenant `tenant_id`'s log (None: every application's), only messages with a
    delivery to `endpoint_id` when given (an id the caller found in that tenant)."""
    wanted = LogFilter.of(request)
    limit = pages.limit_of(request)
    suffix, position = pages.time_position(request)
    start = pages.time_cursor(request)
    if wanted.status == CANCELED:
        return pages.page([], limit, str, dict)
    store = api_of(request).store
    common = {
        "tenant_id": tenant_id,
        **position,
        "event_types": wanted.event_types,
        "after": wanted.after,
        "before": wanted.before,
        "limit": limit + 1,
    }
    if wanted.status == FAILED:
        rows = await store.fetch(
            "api_message_list_failed" + suffix,
            endpoint_ids=await _failed_walk(request, tenant_id, endpoint_id),
            scan=pages.MAX_SCAN,
            **common,
        )
    else:
        # Without a status or endpoint every message looked at matches: no more are read.
        filtered = wanted.status is not None or endpoint_id is not None
        rows = await store.fetch(
            "api_message_list" + suffix,
            endpoint_id=endpoint_id,
            status=wanted.status,
            scan=pages.MAX_SCAN if filtered else limit + 1,
            **common,
        )
    return pages.scanned_page(
        rows,
        limit,
        lambda r: pages.encode_time(r["created_at"], r["id"]),
        lambda r: views.logged_message_out(
            r, with_content=wanted.with_content, with_app=tenant_id is None
        ),
        bool(suffix),
        start,
    )


async def _failed_walk(
    request: web.Request, tenant_id: str | None, endpoint_id: str | None
) -> list[str] | None:
    """The endpoints whose failed deliveries are walked: the one asked for, the tenant's
    (deleted ones too), or None for every endpoint."""
    if endpoint_id is not None:
        return [endpoint_id]
    if tenant_id is None:
        return None
    rows = await api_of(request).store.fetch("api_endpoint_ids_all", tenant_id=tenant_id)
    return [r["id"] for r in rows]


async def endpoint_filter(request: web.Request, tenant_id: str | None) -> str | None:
    """The id of the endpoint `endpoint_id` names (id or uid in the tenant; an id across every
    application), None when not given; 422 when the tenant has no such live endpoint."""
    ref = Query(request).string("endpoint_id")
    if ref is None:
        return None
    store = api_of(request).store
    row: Record | None
    if tenant_id is None:
        row = await store.fetchrow("endpoint_get", endpoint_id=ref)
    else:
        row = await store.fetchrow("api_endpoint_get", tenant_id=tenant_id, ref=ref)
    if row is None:
        raise invalid(["query", "endpoint_id"], "no such endpoint")
    endpoint: str = row["id"]
    return endpoint


async def list_messages(request: web.Request) -> web.Response:
    """Svix's message list, with webhookd's `status` and `endpoint_id` filters."""
    app = await app_of(request)
    endpoint_id = await endpoint_filter(request, app["tenant_id"])
    return json_response(await log_page(request, app["tenant_id"], endpoint_id))


async def list_every_app(request: web.Request) -> web.Response:
    """The log of every application, for tokens not limited to one (the console's)."""
    endpoint_id = await endpoint_filter(request, None)
    return json_response(await log_page(request, None, endpoint_id))


def routes() -> list[Route]:
    from daemon.api.routes import Route

    return [
        Route("GET", "/api/v1/app/{app_id}/msg", list_messages, READ),
        Route("GET", "/api/v1/webhookd/msg", list_every_app, ALL_APPS),
    ]
