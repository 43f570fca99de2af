"""/api/v1/app/{app_id}/endpoint: list, create, get, update (PUT, which creates as Svix's
upsert does), patch and delete, each write one transaction, checked as `webhookd endpoint add |
update` check."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import orjson
from aiohttp import web

from daemon import endpoints
from daemon.api import pages, views
from daemon.api.endpoint_fields import (
    DISABLED_REASON,
    EndpointFields,
    keep_or,
    problem_of,
    read_fields,
    spec_for_create,
    update_for,
)
from daemon.api.errors import conflict, not_found
from daemon.api.http import READ, WRITE, Api, api_of, json_response, no_content
from daemon.api.params import ID_PATTERN, Body, Query, given, json_body
from daemon.api.tenancy import app_of, endpoint_of
from daemon.endpoint_update import KEEP, updated_spec
from daemon.errors import ConfigError
from daemon.signing import generate_secret_for
from daemon.store import StoreError

if TYPE_CHECKING:
    from daemon.api.routes import Route
    from daemon.endpoints import EndpointSpec
    from daemon.store import Record

UNIQUE_VIOLATION = "23505"


async def list_endpoints(request: web.Request) -> web.Response:
    app = await app_of(request)
    limit = pages.limit_of(request)
    order = Query(request).choice("order", ("ascending", "descending"))
    after = pages.time_cursor(request)
    back = pages.backwards(request)
    rows = await api_of(request).store.fetch(
        "api_endpoint_list",
        tenant_id=app["tenant_id"],
        after_at=None if after is None else after.at,
        after_id=None if after is None else after.id,
        descending=(order == "descending") != back,
        limit=limit + 1,
        search=pages.search_of(request),
    )
    cursor = lambda r: pages.encode_time(r["created_at"], r["id"])  # noqa: E731
    return json_response(pages.page(rows, limit, cursor, views.endpoint_out, back))


def _limits(spec: EndpointSpec) -> dict[str, Any]:
    schedule = spec.retry_schedule_s
    return {
        "rate_per_s": spec.rate_per_s,
        "burst": spec.burst,
        "max_in_flight": spec.max_in_flight,
        "timeout_ms": None if spec.timeout_s is None else max(1, round(spec.timeout_s * 1000)),
        "retry_schedule_ms": None if schedule is None else [round(s * 1000) for s in schedule],
        **endpoints.chat_columns(spec),
    }


async def _create(api: Api, app: Record, f: EndpointFields, uid: Any) -> web.Response:
    spec = spec_for_create(f, app["tenant_id"])
    try:
        endpoints.validate_spec(spec, allow_http=api.config.delivery.allow_insecure_http)
    except ConfigError as exc:
        raise problem_of(exc) from None
    secret = spec.secret if spec.secret is not None else generate_secret_for(spec.signature)
    enabled = f.disabled is not True
    box = api.box
    try:
        row = await api.store.fetchrow(
            "api_endpoint_insert",
            endpoint_id="ep_" + uuid.uuid4().hex,
            tenant_id=app["tenant_id"],
            url=spec.url,
            description=spec.description,
            event_types=list(spec.event_types),
            secret=box.seal(secret),
            signature_scheme=spec.signature.scheme,
            signature_header=spec.signature.header,
            signature_prefix=spec.signature.prefix,
            headers=orjson.dumps([[n, box.seal(v)] for n, v in spec.headers]).decode(),
            **_limits(spec),
            uid=uid if given(uid) else None,
            metadata=orjson.dumps(f.metadata if given(f.metadata) else {}).decode(),
            enabled=enabled,
            disabled_reason=None if enabled else DISABLED_REASON,
        )
    except StoreError as exc:
        if exc.sqlstate == UNIQUE_VIOLATION:
            raise conflict("an endpoint with this uid already exists") from None
        raise
    assert row is not None
    return json_response(views.endpoint_out(row), 201)


async def create_endpoint(request: web.Request) -> web.Response:
    app = await app_of(request)
    f = read_fields(await json_body(request), url_required=True)
    return await _create(api_of(request), app, f, f.uid)


async def get_endpoint(request: web.Request) -> web.Response:
    app = await app_of(request)
    return json_response(views.endpoint_out(await endpoint_of(request, app)))


async def put_endpoint(request: web.Request) -> web.Response:
    """Replace an endpoint's settings; one that does not exist is created with the path's id
    as its uid (Svix's upsert)."""
    api = api_of(request)
    app = await app_of(request)
    body = await json_body(request)
    f = read_fields(body, url_required=True)
    ref = request.match_info["endpoint_id"]
    current = await api.store.fetchrow("api_endpoint_get", tenant_id=app["tenant_id"], ref=ref)
    if current is None:
        if ref.startswith("ep_") or not ID_PATTERN.fullmatch(ref):
            raise not_found("endpoint")
        return await _create(api, app, f, f.uid if given(f.uid) else ref)
    return await _update(api, app, current, f, body, partial=False)


async def patch_endpoint(request: web.Request) -> web.Response:
    app = await app_of(request)
    current = await endpoint_of(request, app)
    body = await json_body(request)
    f = read_fields(body, url_required=False)
    return await _update(api_of(request), app, current, f, body, partial=True)


async def _update(
    api: Api, app: Record, current: Record, f: EndpointFields, body: Body, *, partial: bool
) -> web.Response:
    if given(f.signature) and f.signature.scheme != current["signature_scheme"]:  # type: ignore[union-attr]
        raise body.fail("signatureScheme", "cannot be changed here: `webhookd endpoint update`")
    change = update_for(f, partial=partial)
    try:
        async with api.store.transaction() as tx:
            rec = await tx.fetchrow(
                "api_endpoint_get_for_update", tenant_id=app["tenant_id"], endpoint_id=current["id"]
            )
            if rec is None:
                raise not_found("endpoint")
            spec = updated_spec(rec, change)
            allow_http = api.config.delivery.allow_insecure_http or change.url is KEEP
            try:
                endpoints.validate_spec(spec, allow_http=allow_http)
            except ConfigError as exc:
                raise problem_of(exc) from None
            disabled = (
                f.disabled if given(f.disabled) else (not rec["enabled"] if partial else False)
            )
            row = await tx.fetchrow(
                "api_endpoint_update",
                endpoint_id=rec["id"],
                url=spec.url,
                description=spec.description,
                event_types=list(spec.event_types),
                **_limits(spec),
                uid=keep_or(f.uid, rec["uid"]),
                metadata=(
                    orjson.dumps(f.metadata).decode()
                    if given(f.metadata)
                    else (rec["metadata"] if partial else "{}")
                ),
                enabled=not disabled,
                disabled_reason=rec["disabled_reason"] or DISABLED_REASON,
            )
            if not disabled and not rec["enabled"]:
                await tx.execute("endpoint_health_reset", endpoint_id=rec["id"])
    except StoreError as exc:
        if exc.sqlstate == UNIQUE_VIOLATION:
            raise conflict("an endpoint with this uid already exists") from None
        raise
    assert row is not None
    return json_response(views.endpoint_out(row))


async def delete_endpoint(request: web.Request) -> web.Response:
    """Soft delete, as `webhookd endpoint delete`: undelivered deliveries are dead-lettered."""
    app = await app_of(request)
    endpoint = await endpoint_of(request, app)
    await endpoints.delete_endpoint(api_of(request).store, endpoint["id"])
    return no_content()


def routes() -> list[Route]:
    from daemon.api.routes import Route

    base = "/api/v1/app/{app_id}/endpoint"
    one = base + "/{endpoint_id}"
    return [
        Route("GET", base, list_endpoints, READ),
        Route("POST", base, create_endpoint, WRITE),
        Route("GET", one, get_endpoint, READ),
        Route("PUT", one, put_endpoint, WRITE),
        Route("PATCH", one, patch_endpoint, WRITE),
        Route("DELETE", one, delete_endpoint, WRITE),
    ]
