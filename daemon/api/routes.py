"""The route table and the aiohttp application built from it.

Each resource module lists its routes (`ROUTES`: method, path, handler, who may call it); the
OpenAPI document (`openapi.py`) describes the same routes, and a test holds the two together.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final

from aiohttp import web

from daemon.api import openapi
from daemon.api.http import API, PUBLIC, Api, Handler, guarded, json_response, no_content, observe

# Svix's bound on a request body is the payload limit; ours adds room for the envelope.
ENVELOPE_BYTES: Final = 1024 * 1024


@dataclass(frozen=True, slots=True)
class Route:
    method: str
    path: str
    handler: Handler
    access: str


async def _health(_request: web.Request) -> web.Response:
    return no_content()


async def _openapi(_request: web.Request) -> web.Response:
    return json_response(openapi.document())


BASE_ROUTES: Final = (
    Route("GET", "/api/v1/health", _health, PUBLIC),
    Route("GET", "/api/v1/openapi.json", _openapi, PUBLIC),
)


def all_routes() -> tuple[Route, ...]:
    # Imported here: each resource module imports this one for `Route`.
    from daemon.api import (
        apps,
        attempts,
        dead_letters,
        endpoint_actions,
        endpoint_routes,
        event_types,
        message_log,
        messages,
        portal,
        stats,
    )

    return (
        *BASE_ROUTES,
        *apps.routes(),
        *endpoint_routes.routes(),
        *endpoint_actions.routes(),
        *messages.routes(),
        *message_log.routes(),
        *attempts.routes(),
        *event_types.routes(),
        *dead_letters.routes(),
        *stats.routes(),
        *portal.routes(),
    )


def build_app(api: Api, routes: Sequence[Route] | None = None) -> web.Application:
    """The API as an aiohttp application (not yet listening)."""
    app = web.Application(
        middlewares=[observe],
        client_max_size=ENVELOPE_BYTES + api.config.delivery.max_payload_bytes,
    )
    app[API] = api
    for route in all_routes() if routes is None else routes:
        app.router.add_route(route.method, route.path, guarded(route.handler, route.access))
    # The console's and portal's pages are not API routes (nor in the OpenAPI document).
    from daemon.console import pages

    pages.add_routes(app)
    return app
