"""The console's and the portal's pages, their static files, and console logins.

Pages carry a Content-Security-Policy with no inline script or style (every script is a
file of static/), `frame-ancestors 'none'` for the console and `console.frame_ancestors` for
the portal, and are never cached. A login posts the API token once; the browser then holds
only a session cookie (Secure, HttpOnly, SameSite=Strict) and the session's CSRF token, and the
database only the session id's hash and the token's id (sessions.py).
"""

from __future__ import annotations

from importlib import resources
from typing import Final

import structlog
from aiohttp import web

from daemon.api.errors import ApiError, forbidden, unauthorized
from daemon.api.http import SAFE_METHODS, api_of, client_address, json_response, no_content
from daemon.api.params import json_body
from daemon.console.sessions import SESSION_COOKIE

log = structlog.get_logger("webhookd.api")

_STATIC: Final = resources.files("daemon.console") / "static"
_TYPES: Final = {
    ".js": "text/javascript",
    ".css": "text/css",
    ".svg": "image/svg+xml",
    ".html": "text/html",
}
_CSP: Final = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: https:;"
    " connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors {ancestors}"
)


def _static_bytes(name: str) -> bytes:
    return (_STATIC / name).read_bytes()


def _page(name: str, frame_ancestors: str) -> web.Response:
    response = web.Response(body=_static_bytes(name), content_type="text/html", charset="utf-8")
    response.headers.update(
        {
            "Content-Security-Policy": _CSP.format(ancestors=frame_ancestors),
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-store",
        }
    )
    if frame_ancestors == "'none'":
        response.headers["X-Frame-Options"] = "DENY"
    return response


async def console_page(_request: web.Request) -> web.Response:
    return _page("console.html", "'none'")


async def portal_page(request: web.Request) -> web.Response:
    return _page("portal.html", api_of(request).config.console.frame_ancestors)


async def static_file(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    suffix = name[name.rfind(".") :] if "." in name else ""
    if "/" in name or name.startswith(".") or suffix not in _TYPES or suffix == ".html":
        raise web.HTTPNotFound()
    try:
        body = _static_bytes(name)
    except (FileNotFoundError, IsADirectoryError):
        raise web.HTTPNotFound() from None
    response = web.Response(body=body, content_type=_TYPES[suffix])
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Cache-Control"] = "no-cache"
    return response


async def brand(request: web.Request) -> web.Response:
    """The portal's name, logo and colour (console.portal_*): public, like the page."""
    console = api_of(request).config.console
    return json_response(
        {
            "name": console.portal_name,
            "logoUrl": console.portal_logo_url or None,
            "primaryColor": console.portal_primary_color,
        }
    )


def _same_origin(request: web.Request) -> None:
    """A login or logout from a page of another origin is refused (login CSRF)."""
    origin = request.headers.get("Origin")
    if origin is not None and origin != f"{request.scheme}://{request.host}":
        raise forbidden("a console login must come from the console's own origin")


async def login(request: web.Request) -> web.Response:
    api = api_of(request)
    _same_origin(request)
    body = await json_body(request)
    token = body.string("token", required=True, nullable=False, min_len=1, max_len=256)
    assert isinstance(token, str)
    principal = await api.auth.authenticate(
        f"Bearer {token.strip()}", client_address(request, api.config)
    )
    if principal.kind != "api":
        raise unauthorized("the console takes an API token (webhookd api-token create)")
    session = await api.sessions.create(principal.token_id)
    log.info("console.login", token_id=principal.token_id, scope=principal.scope)
    response = json_response(_session_out(session.csrf, principal.scope, principal.app_id))
    response.set_cookie(
        SESSION_COOKIE,
        session.ident,
        max_age=int(api.config.console.session_ttl_s),
        path="/",
        secure=True,
        httponly=True,
        samesite="Strict",
    )
    return response


def _session_out(csrf: str, scope: str, app_id: str | None) -> dict[str, object]:
    return {"csrfToken": csrf, "scope": scope, "appId": app_id}


async def session_info(request: web.Request) -> web.Response:
    """Whether this browser is logged in: its CSRF token and what its token may do."""
    api = api_of(request)
    session = await api.sessions.get(request.cookies.get(SESSION_COOKIE, ""))
    if session is None:
        raise unauthorized("not logged in")
    try:
        principal = await api.auth.authenticate_id(
            session.token_id, client_address(request, api.config)
        )
    except ApiError:
        await api.sessions.end(session.ident)
        raise
    return json_response(_session_out(session.csrf, principal.scope, principal.app_id))


async def logout(request: web.Request) -> web.Response:
    api = api_of(request)
    _same_origin(request)
    session = await api.sessions.get(request.cookies.get(SESSION_COOKIE, ""))
    if session is not None:
        if request.method not in SAFE_METHODS and not session.csrf_ok(
            request.headers.get("X-CSRF-Token", "")
        ):
            raise forbidden("this console request lacks its CSRF token (X-CSRF-Token)")
        await api.sessions.end(session.ident)
        log.info("console.logout")
    response = no_content()
    response.del_cookie(SESSION_COOKIE, path="/")
    return response


def add_routes(app: web.Application) -> None:
    router = app.router
    router.add_get("/console", console_page)
    router.add_get("/console/", console_page)
    router.add_get("/console/static/{name}", static_file)
    router.add_get("/console/session", session_info)
    router.add_post("/console/session", login)
    router.add_delete("/console/session", logout)
    router.add_get("/portal", portal_page)
    router.add_get("/portal/brand.json", brand)
