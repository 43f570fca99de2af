"""/api/v1/app: applications (tenants), as Svix's Application resource.

An application's tenant id (what the outbox and its endpoints hold) is its uid when it was
created with one, else its id, and never changes: a uid can be given at creation only.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from daemon.api import pages, views
from daemon.api.errors import conflict, not_found
from daemon.api.http import ADMIN, READ, WRITE, api_of, json_response, no_content, principal_of
from daemon.api.params import ID_PATTERN, MISSING, Body, Missing, Query, json_body
from daemon.api.tenancy import app_of, find_app
from daemon.store import StoreError

if TYPE_CHECKING:
    from daemon.api.routes import Route
    from daemon.store import Record, Store, Tx

UNIQUE_VIOLATION = "23505"


async def list_apps(request: web.Request) -> web.Response:
    api = api_of(request)
    limit = pages.limit_of(request)
    order = Query(request).choice("order", ("ascending", "descending"))
    back = pages.backwards(request)
    rows = await api.store.fetch(
        "api_app_list",
        app_id=principal_of(request).app_id,
        after_seq=pages.seq_cursor(request),
        descending=(order == "descending") != back,
        limit=limit + 1,
        search=pages.search_of(request),
    )
    cursor = lambda r: pages.encode_seq(r["seq"])  # noqa: E731
    return json_response(pages.page(rows, limit, cursor, views.app_out, back))


def _uid(body: Body) -> str | None:
    uid = body.string("uid", pattern=ID_PATTERN)
    if isinstance(uid, str) and uid.startswith("app_"):
        raise body.fail("uid", "must not start with app_ (ids do)")
    return None if isinstance(uid, Missing) else uid


def _fields(body: Body, *, partial: bool) -> tuple[str | Missing, dict[str, str] | Missing]:
    name = body.string("name", required=not partial, nullable=False, min_len=1, max_len=256)
    metadata = body.string_map("metadata")
    rate = body.integer("throttleRate", low=0, high=65535)
    if rate is not MISSING and rate is not None:
        raise body.fail("throttleRate", "per-application rate limits are not supported")
    assert name is not None
    return name, metadata


async def create_app(request: web.Request) -> web.Response:
    api = api_of(request)
    body = await json_body(request)
    name, metadata = _fields(body, partial=False)
    uid = _uid(body)
    get_if_exists = Query(request).boolean("get_if_exists", False)
    if uid is not None:
        existing = await api.store.fetchrow("api_app_get", ref=uid)
        if existing is not None and existing["uid"] == uid:
            if get_if_exists:
                return json_response(views.app_out(existing))
            raise conflict("an application with this uid already exists")
    assert isinstance(name, str)
    row = await insert_app(api.store, uid, name, {} if metadata is MISSING else metadata)
    api.lookups.apps.clear()
    return json_response(views.app_out(row), 201)


async def insert_app(store: Store | Tx, uid: str | None, name: str, metadata: Any) -> Record:
    app_id = "app_" + uuid.uuid4().hex
    try:
        row = await store.fetchrow(
            "api_app_insert",
            app_id=app_id,
            uid=uid,
            tenant_id=uid or app_id,
            name=name,
            metadata=orjson.dumps(metadata).decode(),
        )
    except StoreError as exc:
        if exc.sqlstate == UNIQUE_VIOLATION:
            raise conflict("an application with this uid already exists") from None
        raise
    assert row is not None
    return row


async def get_app(request: web.Request) -> web.Response:
    return json_response(views.app_out(await app_of(request)))


def _same_uid(body: Body, app: Record) -> None:
    uid = body.string("uid", pattern=ID_PATTERN)
    if isinstance(uid, str) and uid != app["uid"]:
        raise body.fail("uid", "can be set only when the application is created")


async def put_app(request: web.Request) -> web.Response:
    """Update, or create when the application does not exist (as Svix's upsert)."""
    api = api_of(request)
    app = await find_app(request)
    if app is None and (principal_of(request).app_id is not None):
        raise not_found("application")
    body = await json_body(request)
    name, metadata = _fields(body, partial=False)
    assert isinstance(name, str)
    if app is None:
        if principal_of(request).app_id is not None or not principal_of(request).can_write:
            raise not_found("application")
        fresh = {} if metadata is MISSING else metadata
        row = await insert_app(api.store, _uid(body), name, fresh)
        api.lookups.apps.clear()
        return json_response(views.app_out(row), 201)
    _same_uid(body, app)
    row = await api.store.fetchrow(
        "api_app_update",
        app_id=app["id"],
        name=name,
        metadata=orjson.dumps({} if metadata is MISSING else metadata).decode(),
    )
    api.lookups.apps.clear()
    if row is None:
        raise not_found("application")
    return json_response(views.app_out(row))


async def patch_app(request: web.Request) -> web.Response:
    api = api_of(request)
    app = await app_of(request)
    body = await json_body(request)
    name, metadata = _fields(body, partial=True)
    _same_uid(body, app)
    row = await api.store.fetchrow(
        "api_app_update",
        app_id=app["id"],
        name=app["name"] if name is MISSING else name,
        metadata=app["metadata"] if metadata is MISSING else orjson.dumps(metadata).decode(),
    )
    api.lookups.apps.clear()
    if row is None:
        raise not_found("application")
    return json_response(views.app_out(row))


async def delete_app(request: web.Request) -> web.Response:
    """The application, and its endpoints (soft-deleted, undelivered deliveries dead-lettered,
    as `endpoint delete` does), in one transaction. Its messages stay until pruned."""
    api = api_of(request)
    app = await app_of(request)
    async with api.store.transaction() as tx:
        for row in await tx.fetch("api_endpoint_ids", tenant_id=app["tenant_id"]):
            await tx.execute("endpoint_delete", endpoint_id=row["id"])
            await tx.execute(
                "endpoint_fail_open", endpoint_id=row["id"], reason="application deleted"
            )
        if await tx.fetchrow("api_app_delete", app_id=app["id"]) is None:
            raise not_found("application")
    api.lookups.apps.clear()
    return no_content()


def routes() -> list[Route]:
    from daemon.api.routes import Route

    base = "/api/v1/app"
    return [
        Route("GET", base, list_apps, READ),
        Route("POST", base, create_app, ADMIN),
        Route("GET", base + "/{app_id}", get_app, READ),
        Route("PUT", base + "/{app_id}", put_app, WRITE),
        Route("PATCH", base + "/{app_id}", patch_app, WRITE),
        Route("DELETE", base + "/{app_id}", delete_app, WRITE),
    ]
