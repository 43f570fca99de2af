"""webhookd's own: the figures the console's overview and endpoint pages draw, for every
endpoint a token may reach, one application, or one endpoint.

Deliveries per second, success rate and latency percentiles come from the attempts of the
window (the last hour or day, in buckets for the charts); the backlog and the endpoints' health
are counted as they are now. An application-scoped token's environment-wide overview covers
its application only, as its application list does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from aiohttp import web

from daemon.api.http import READ, api_of, json_response, principal_of
from daemon.api.params import Query
from daemon.api.tenancy import app_of, endpoint_of
from daemon.endpoint_health import GONE_REASON

if TYPE_CHECKING:
    from daemon.api.routes import Route
    from daemon.store import Record

# window -> (seconds, bucket seconds): 60 points either way, enough for a small chart.
WINDOWS: Final = {"hour": (3600.0, 60.0), "day": (86400.0, 1440.0)}


def _ms(value: float | None) -> float | None:
    return None if value is None else round(float(value), 2)


def _bucket_out(rec: Record) -> dict[str, Any]:
    return {
        "start": rec["bucket"],
        "attempts": rec["attempts"],
        "succeeded": rec["succeeded"],
        "p50Ms": _ms(rec["p50_ms"]),
        "p95Ms": _ms(rec["p95_ms"]),
    }


async def _overview(request: web.Request, endpoint_ids: list[str] | None) -> web.Response:
    window = Query(request).choice("window", tuple(WINDOWS)) or "hour"
    window_s, bucket_s = WINDOWS[window]
    store = api_of(request).store
    whole = await store.fetchrow("api_stats_window", endpoint_ids=endpoint_ids, window_s=window_s)
    buckets = await store.fetch(
        "api_stats_attempts", endpoint_ids=endpoint_ids, window_s=window_s, bucket_s=bucket_s
    )
    backlog = await store.fetchrow("api_stats_backlog", endpoint_ids=endpoint_ids)
    health = await store.fetchrow(
        "api_stats_endpoints", endpoint_ids=endpoint_ids, gone_reason=GONE_REASON
    )
    assert whole is not None and backlog is not None and health is not None  # aggregates
    attempts = whole["attempts"]
    return json_response(
        {
            "window": window,
            "bucketSeconds": int(bucket_s),
            "attempts": attempts,
            "succeeded": whole["succeeded"],
            "successRate": round(100.0 * whole["succeeded"] / attempts, 2) if attempts else None,
            "deliveriesPerSecond": round(whole["last_minute"] / 60.0, 3),
            "latencyP50Ms": _ms(whole["p50_ms"]),
            "latencyP95Ms": _ms(whole["p95_ms"]),
            "backlog": {
                "due": backlog["due"],
                "scheduled": backlog["scheduled"],
                "delivering": backlog["delivering"],
            },
            "deadLetters24h": backlog["dead_24h"],
            "endpoints": {
                "total": health["total"],
                "disabled": health["disabled"],
                "autoDisabled": health["auto_disabled"],
                "paused": health["paused"],
                "breakerOpen": health["breaker_open"],
            },
            "series": [_bucket_out(b) for b in buckets],
        }
    )


async def _endpoint_ids(request: web.Request, app: Record) -> list[str]:
    rows = await api_of(request).store.fetch("api_endpoint_ids", tenant_id=app["tenant_id"])
    return [r["id"] for r in rows]


async def overview(request: web.Request) -> web.Response:
    """Every endpoint, or those of the token's application."""
    scope = principal_of(request).app_id
    if scope is None:
        return await _overview(request, None)
    app = await api_of(request).store.fetchrow("api_app_get", ref=scope)
    return await _overview(request, [] if app is None else await _endpoint_ids(request, app))


async def app_overview(request: web.Request) -> web.Response:
    app = await app_of(request)
    return await _overview(request, await _endpoint_ids(request, app))


async def endpoint_overview(request: web.Request) -> web.Response:
    endpoint = await endpoint_of(request, await app_of(request))
    return await _overview(request, [endpoint["id"]])


def routes() -> list[Route]:
    from daemon.api.routes import Route

    app = "/api/v1/app/{app_id}"
    return [
        Route("GET", "/api/v1/stats/overview", overview, READ),
        Route("GET", app + "/stats/overview", app_overview, READ),
        Route("GET", app + "/endpoint/{endpoint_id}/stats/overview", endpoint_overview, READ),
    ]
