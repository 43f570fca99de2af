"""Which application a request is about, and that its token may reach it.

An application-scoped token that names another application gets 404, exactly as for an id that
does not exist, so ids do not leak from one tenant to another. Every endpoint, message and
attempt is then looked up within the application's tenant.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from daemon.api.errors import not_found
from daemon.api.http import api_of, principal_of

if TYPE_CHECKING:
    from daemon.store import Record


async def find_app(request: web.Request) -> Record | None:
    """The application of the path, or None when there is none this token may reach."""
    ref = request.match_info["app_id"]
    row = await api_of(request).store.fetchrow("api_app_get", ref=ref)
    scope = principal_of(request).app_id
    if row is None or (scope is not None and row["id"] != scope):
        return None
    return row


async def app_of(request: web.Request) -> Record:
    row = await find_app(request)
    if row is None:
        raise not_found("application")
    return row


async def endpoint_of(request: web.Request, app: Record) -> Record:
    row = await api_of(request).store.fetchrow(
        "api_endpoint_get", tenant_id=app["tenant_id"], ref=request.match_info["endpoint_id"]
    )
    if row is None:
        raise not_found("endpoint")
    return row
