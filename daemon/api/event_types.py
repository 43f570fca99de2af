"""/api/v1/event-type: event types, shared by every application (as in Svix), each with an
optional JSON Schema per version that messages of the type are validated against."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from daemon.api import pages, schemas, views
from daemon.api.errors import conflict, not_found
from daemon.api.http import ADMIN, READ, api_of, json_response, no_content
from daemon.api.messages import EVENT_TYPE
from daemon.api.params import MISSING, Body, Missing, Query, given, json_body

if TYPE_CHECKING:
    from daemon.api.routes import Route
    from daemon.store import Record


async def list_event_types(request: web.Request) -> web.Response:
    query = Query(request)
    limit = pages.limit_of(request)
    order = query.choice("order", ("ascending", "descending"))
    with_content = query.boolean("with_content", True)
    back = pages.backwards(request)
    rows = await api_of(request).store.fetch(
        "api_event_type_list",
        include_archived=query.boolean("include_archived", False),
        after_name=pages.name_cursor(request),
        descending=(order == "descending") != back,
        limit=limit + 1,
    )

    def view(row: Record) -> dict[str, Any]:
        out = views.event_type_out(row)
        return out if with_content else out | {"schemas": None}

    cursor = lambda r: pages.encode_name(r["name"])  # noqa: E731
    return json_response(pages.page(rows, limit, cursor, view, back))


def _fields(body: Body, current: Record | None, *, partial: bool) -> dict[str, Any]:
    """The columns to write: given fields, else (PATCH) the current ones, else defaults."""

    def pick(value: Any, column: str, default: Any) -> Any:
        if isinstance(value, Missing) and partial and current is not None:
            return current[column]
        return value if given(value) else default

    description = body.string("description", max_len=4096)
    if description is MISSING and not partial:
        raise body.fail("description", "field required", "value_error.missing")
    found = body.obj("schemas")
    if isinstance(found, dict):
        schemas.check_schemas(found, ("body", "schemas"))
    flags = body.strings("featureFlags", pattern=EVENT_TYPE, max_items=20)
    flag = body.string("featureFlag", pattern=EVENT_TYPE)
    if isinstance(flag, str) and not given(flags):
        flags = [flag]
    current_schemas = None if current is None else current["schemas"]
    schema_text = orjson.dumps(found).decode() if isinstance(found, dict) else None
    return {
        "description": pick(description, "description", ""),
        "archived": pick(body.boolean("archived"), "archived", False),
        "deprecated": pick(body.boolean("deprecated"), "deprecated", False),
        "schemas": current_schemas if found is MISSING and partial else schema_text,
        "group_name": pick(body.string("groupName", pattern=EVENT_TYPE), "group_name", None),
        "feature_flags": pick(flags, "feature_flags", None),
    }


async def _write(request: web.Request, name: str, fields: dict[str, Any], replace: bool) -> Any:
    api = api_of(request)
    row = await api.store.fetchrow("api_event_type_upsert", name=name, **fields, replace=replace)
    api.lookups.schemas.clear()
    return row


async def create_event_type(request: web.Request) -> web.Response:
    body = await json_body(request)
    name = body.string("name", required=True, nullable=False, pattern=EVENT_TYPE)
    assert isinstance(name, str)
    row = await _write(request, name, _fields(body, None, partial=False), replace=False)
    if row is None:
        raise conflict("an event type with this name already exists")
    return json_response(views.event_type_out(row), 201)


async def _current(request: web.Request) -> Record | None:
    name = request.match_info["event_type_name"]
    row: Record | None = await api_of(request).store.fetchrow("api_event_type_get", name=name)
    return row


async def get_event_type(request: web.Request) -> web.Response:
    row = await _current(request)
    if row is None:
        raise not_found("event type")
    return json_response(views.event_type_out(row))


async def put_event_type(request: web.Request) -> web.Response:
    """Replace an event type, or create it (Svix's upsert)."""
    name = request.match_info["event_type_name"]
    if not EVENT_TYPE.fullmatch(name):
        raise not_found("event type")
    body = await json_body(request)
    row = await _write(request, name, _fields(body, None, partial=False), replace=True)
    assert row is not None
    return json_response(views.event_type_out(row), 201 if row["inserted"] else 200)


async def patch_event_type(request: web.Request) -> web.Response:
    current = await _current(request)
    if current is None:
        raise not_found("event type")
    body = await json_body(request)
    row = await _write(request, current["name"], _fields(body, current, partial=True), True)
    return json_response(views.event_type_out(row))


async def delete_event_type(request: web.Request) -> web.Response:
    """Archive it (as Svix), or with expunge=true delete it."""
    expunge = Query(request).boolean("expunge", False)
    query = "api_event_type_delete" if expunge else "api_event_type_archive"
    name = request.match_info["event_type_name"]
    api = api_of(request)
    gone = await api.store.fetchrow(query, name=name)
    api.lookups.schemas.clear()
    if gone is None:
        raise not_found("event type")
    return no_content()


def routes() -> list[Route]:
    from daemon.api.routes import Route

    base = "/api/v1/event-type"
    one = base + "/{event_type_name}"
    return [
        Route("GET", base, list_event_types, READ),
        Route("POST", base, create_event_type, ADMIN),
        Route("GET", one, get_event_type, READ),
        Route("PUT", one, put_event_type, ADMIN),
        Route("PATCH", one, patch_event_type, ADMIN),
        Route("DELETE", one, delete_event_type, ADMIN),
    ]
