"""The tenants' portal: Svix's `POST /auth/app-portal-access/{app_id}` answers a short-lived
link to /portal whose fragment carries a one-time token; the portal exchanges it, once, for
the session token it then keeps in memory and sends in headers (no cookie, so it works in an
iframe on the tenant's own product without third-party cookies).

Both tokens are scoped to the one application and expire together (`console.portal_link_ttl`,
or the request's `expiry`, at most 7 days). The link's token reaches no route but the
exchange; a used or expired link answers 401 there.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import structlog
from aiohttp import web

from daemon.api import tokens
from daemon.api.errors import forbidden, unauthorized
from daemon.api.http import PORTAL_LINK, WRITE, api_of, json_response, principal_of
from daemon.api.params import json_body
from daemon.api.tenancy import app_of

if TYPE_CHECKING:
    from daemon.api.routes import Route

log = structlog.get_logger("webhookd.api")

MAX_EXPIRY_S = 7 * 86400


def _base_url(request: web.Request) -> str:
    configured = api_of(request).config.console.public_url
    return configured or f"{request.scheme}://{request.host}"


async def portal_access(request: web.Request) -> web.Response:
    """Body (Svix's AppPortalAccessIn): `expiry` seconds, `readOnly` (the portal may only
    read); its other fields are ignored."""
    api = api_of(request)
    app = await app_of(request)
    body = await json_body(request)
    expiry = body.integer("expiry", low=60, high=MAX_EXPIRY_S)
    ttl_s = float(expiry) if isinstance(expiry, int) else api.config.console.portal_link_ttl_s
    read_only = body.boolean("readOnly") is True
    ident, token = tokens.generate()
    await api.store.fetchrow(
        "api_portal_link",
        token_id=ident,
        token_hash=tokens.digest(token),
        app_id=app["id"],
        ttl_s=ttl_s,
        scope="read" if read_only else "admin",
    )
    log.info("api.portal_link", app=app["id"], link=ident, by=principal_of(request).token_id)
    url = f"{_base_url(request)}/portal#key={token}&app={app['id']}"
    return json_response({"url": url, "token": token})


async def portal_session(request: web.Request) -> web.Response:
    """The link's token for the portal's own: once."""
    api = api_of(request)
    app = await app_of(request)  # first: another application's id is a 404 to any token
    if principal_of(request).kind != "portal-link":
        raise forbidden("only a portal link's token is exchanged here")
    ident, token = tokens.generate()
    row = await api.store.fetchrow(
        "api_portal_exchange",
        link_id=principal_of(request).token_id,
        token_id=ident,
        token_hash=tokens.digest(token),
    )
    if row is None or row["app_id"] != app["id"]:
        raise unauthorized("this portal link was already used or has expired")
    log.info("api.portal_session", app=app["id"], session=ident)
    return json_response(
        {"token": token, "appId": app["id"], "expiresAt": row["expires_at"], "scope": row["scope"]}
    )


def routes() -> list[Route]:
    from daemon.api.routes import Route

    return [
        Route("POST", "/api/v1/auth/app-portal-access/{app_id}", portal_access, WRITE),
        Route("POST", "/api/v1/app/{app_id}/portal-session", portal_session, PORTAL_LINK),
    ]
