"""What every request goes through: a request id bound to the logs, the error body Svix
clients parse, the metrics by route template, and the token check of the route.

No traceback ever reaches a client: an unexpected error is logged with the request id and
answered `500 {"code": "server_error", "detail": "... (error id req_...)"}`.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import wraps
from typing import TYPE_CHECKING, Any, Final

import orjson
import structlog
from aiohttp import web

from daemon.api.auth import Authenticator, Principal
from daemon.api.batch import MessageWriter
from daemon.api.cache import LookupCache
from daemon.api.errors import ApiError, forbidden, not_found
from daemon.api.metrics import ApiMetrics
from daemon.config import Config
from daemon.console.sessions import SESSION_COOKIE, Sessions
from daemon.errors import DatabaseUnavailable
from daemon.secretbox import SecretBox

if TYPE_CHECKING:
    from daemon.store import Store

log = structlog.get_logger("webhookd.api")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_PRINCIPAL: Final = web.RequestKey("principal", Principal)
_HTTP_CODES: Final = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}

# Who may call a route: anyone; any valid token; a token that may write (scope admin); a
# token that may write and is not limited to one application (applications, event types);
# the one-time token of a portal link (which may call nothing else); a token that is not
# limited to one application, of either scope (what spans applications: the message log).
PUBLIC, READ, WRITE, ADMIN, PORTAL_LINK = "public", "read", "write", "admin", "portal-link"
ALL_APPS: Final = "all-apps"
SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})


@dataclass
class Api:
    """What the handlers share (one per server)."""

    store: Store
    config: Config
    box: SecretBox
    auth: Authenticator
    metrics: ApiMetrics
    writer: MessageWriter
    lookups: LookupCache
    sessions: Sessions


API: Final = web.AppKey("api", Api)


def api_of(request: web.Request) -> Api:
    return request.app[API]


def principal_of(request: web.Request) -> Principal:
    return request[_PRINCIPAL]


def json_response(data: Any, status: int = 200) -> web.Response:
    return web.Response(
        body=orjson.dumps(data, option=orjson.OPT_UTC_Z),
        status=status,
        content_type="application/json",
    )


def no_content() -> web.Response:
    return web.Response(status=204)


def guarded(handler: Handler, access: str) -> Handler:
    """`handler` after the token check its route needs."""
    if access == PUBLIC:
        return handler

    @wraps(handler)
    async def checked(request: web.Request) -> web.StreamResponse:
        principal = await _principal(request, api_of(request))
        if principal.kind == "portal-link" and access != PORTAL_LINK:
            raise forbidden("a portal link's token is only exchanged for a portal session")
        if access in (WRITE, ADMIN) and not principal.can_write:
            raise forbidden("this token may only read (scope read)")
        if access in (ADMIN, ALL_APPS) and principal.app_id is not None:
            raise forbidden("this token is limited to one application")
        if any("\0" in value for value in request.match_info.values()):
            raise not_found("resource")  # no id holds a NUL (PostgreSQL text cannot)
        request[_PRINCIPAL] = principal
        return await handler(request)

    return checked


async def _principal(request: web.Request, api: Api) -> Principal:
    """Who the Authorization header is; without one, the console session's token (by id). A
    session rides on a cookie the browser sends by itself, so its writes need the session's
    CSRF token in X-CSRF-Token too (a header a page of another origin cannot set)."""
    client = client_address(request, api.config)
    header = request.headers.get("Authorization")
    cookie = request.cookies.get(SESSION_COOKIE, "")
    if header is not None or not cookie:
        return await api.auth.authenticate(header, client)
    session = await api.sessions.get(cookie)
    if session is None:
        return await api.auth.authenticate(None, client)  # 401, counted as a failure
    if request.method not in SAFE_METHODS and not session.csrf_ok(
        request.headers.get("X-CSRF-Token", "")
    ):
        raise forbidden("this console request lacks its CSRF token (X-CSRF-Token)")
    return await api.auth.authenticate_id(session.token_id, client)


def client_address(request: web.Request, config: Config) -> str:
    if config.api.trust_forwarded_for:
        forwarded = request.headers.get("X-Forwarded-For", "")
        last = forwarded.rsplit(",", 1)[-1].strip()
        if last:
            return last
    return request.remote or "unknown"


@web.middleware
async def observe(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Request id, error bodies, metrics and one log line per request."""
    given = request.headers.get("X-Request-Id", "")
    request_id = given if _REQUEST_ID.fullmatch(given) else f"req_{secrets.token_hex(8)}"
    started = time.perf_counter()
    with structlog.contextvars.bound_contextvars(request_id=request_id):
        try:
            response = await handler(request)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # every error becomes an answer; see _error_response
            response = _error_response(exc, request, request_id)
        response.headers["X-Request-Id"] = request_id
        elapsed = time.perf_counter() - started
        route = _route_template(request)
        api_of(request).metrics.observe(request.method, route, response.status, elapsed)
        _log_request(request, route, response.status, elapsed)
    return response


def _route_template(request: web.Request) -> str:
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "unmatched"


def _log_request(request: web.Request, route: str, status: int, elapsed_s: float) -> None:
    # Successes at debug: at a thousand requests a second a line each would cost more than
    # the request (bench/log_event.py); refusals and failures at info and above.
    level = "debug" if status < 400 else "info" if status < 500 else "error"
    getattr(log, level)(
        "api.request",
        method=request.method,
        route=route,
        status=status,
        ms=round(elapsed_s * 1000, 2),
    )


def _error_response(exc: Exception, request: web.Request, request_id: str) -> web.Response:
    if isinstance(exc, ApiError):
        response = json_response(exc.body(), exc.status)
        response.headers.update(exc.headers)
        return response
    if isinstance(exc, web.HTTPException) and exc.status < 500:
        code = _HTTP_CODES.get(exc.status, f"http_{exc.status}")
        detail = exc.reason if exc.status != 404 else f"no route {request.method} {request.path}"
        response = json_response({"code": code, "detail": detail}, exc.status)
        if "Allow" in exc.headers:
            response.headers["Allow"] = exc.headers["Allow"]
        return response
    if isinstance(exc, DatabaseUnavailable):
        log.warning("api.database_unavailable", error=str(exc))
        body = {"code": "database_unavailable", "detail": "the database is unavailable, retry"}
        response = json_response(body, 503)
        response.headers["Retry-After"] = "1"
        return response
    log.error("api.internal_error", error_id=request_id, error=repr(exc), exc_info=exc)
    body = {"code": "server_error", "detail": f"internal error (error id {request_id})"}
    return json_response(body, 500)
