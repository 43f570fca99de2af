"""The `paths` of the OpenAPI document: one entry per route of `routes.py`."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Final

ALL_ERRORS: Final = ("400", "401", "403", "404", "409", "413", "422", "429")
ID_SCHEMA: Final = {"type": "string", "minLength": 1, "maxLength": 256}


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def path_param(name: str, description: str, example: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": {**ID_SCHEMA, "pattern": "^[a-zA-Z0-9\\-_.]+$"},
        "example": example,
    }


APP_ID: Final = path_param("app_id", "The application's id or uid", "demo")
ENDPOINT_ID: Final = path_param("endpoint_id", "The endpoint's id or uid", "demo-endpoint")
MSG_ID: Final = path_param("msg_id", "The message's id (its eventId when it has one)", "demo-msg")
EVENT_TYPE: Final = path_param("event_type_name", "The event type's name", "demo.event")


def query(name: str, schema: Mapping[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "description": description,
            "schema": dict(schema)}  # fmt: skip


LIMIT: Final = query(
    "limit", {"type": "integer", "minimum": 1, "maximum": 250}, "Items per page (default 50)"
)
ITERATOR: Final = query(
    "iterator",
    {"type": "string", "maxLength": 1024},
    "The iterator a previous page returned (its prevIterator, `-...`: the page before)",
)
SEARCH: Final = query(
    "search",
    {"type": "string", "maxLength": 200},
    "webhookd's own: only items whose name (an endpoint's URL or description), uid or id"
    " contains this, ignoring case",
)
ORDER: Final = query("order", {"type": "string", "enum": ["ascending", "descending"]}, "Sort order")
BEFORE: Final = query(
    "before", {"type": "string", "format": "date-time"}, "Only items created before this time"
)
AFTER: Final = query(
    "after", {"type": "string", "format": "date-time"}, "Only items created after this time"
)
WITH_CONTENT: Final = query(
    "with_content",
    {"type": "string", "enum": ["true", "false"]},
    "Include the payload (default true)",
)
EVENT_TYPES: Final = query(
    "event_types",
    {"type": "string", "pattern": "^[a-zA-Z0-9\\-_.,]*$"},
    "Only these event types (comma-separated, or the key repeated)",
)
MESSAGE_STATUS: Final = query(
    "status",
    {"type": "string", "enum": ["0", "1", "2", "3", "4"]},
    "webhookd's own: only messages of this status (0 success, 1 pending, 2 fail, 3 sending,"
    " 4 canceled: none), worst of their deliveries first (docs/api.md)",
)
ENDPOINT_FILTER: Final = (
    "webhookd's own: only messages with a delivery to this endpoint (id or uid); their status"
    " is that delivery's"
)
IDEMPOTENCY_KEY: Final = {
    "name": "idempotency-key",
    "in": "header",
    "required": False,
    "description": "On message create: the same key twice returns the first message",
    "schema": {"type": "string", "maxLength": 256},
}


def _doomed(params: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """A DELETE's path examples name nothing that exists, so running the examples (as
    schemathesis does) does not delete what the other operations' examples name."""
    return [{**p, "example": "doomed"} if p.get("in") == "path" else dict(p) for p in params]


def op(
    op_id: str,
    summary: str,
    tag: str,
    ok: Mapping[str, str | None],
    params: Iterable[Mapping[str, Any]] = (),
    body: str | None = None,
    public: bool = False,
) -> dict[str, Any]:
    """One operation; `ok` maps each success status to its schema (None: no body)."""
    if op_id.endswith(".delete"):
        params = _doomed(params)
    responses: dict[str, Any] = {}
    for status, schema in ok.items():
        responses[status] = {"description": "Success"}
        if schema is not None:
            responses[status]["content"] = {"application/json": {"schema": ref(schema)}}
    for status in ALL_ERRORS:
        responses[status] = {"$ref": f"#/components/responses/{status}"}
    operation: dict[str, Any] = {
        "operationId": op_id,
        "summary": summary,
        "tags": [tag],
        "parameters": [dict(p) for p in params],
        "responses": responses,
    }
    if body is not None:
        operation["requestBody"] = {
            "required": True,
            "content": {"application/json": {"schema": ref(body)}},
        }
    if public:
        operation["security"] = []
    return operation


def _meta() -> dict[str, Any]:
    return {
        "/api/v1/health": {
            "get": op("v1.health.get", "Health", "Health", {"204": None}, public=True),
        },
        "/api/v1/openapi.json": {
            "get": op(
                "v1.openapi.get",
                "This OpenAPI document",
                "Health",
                {"200": "OpenApiDocument"},
                public=True,
            ),
        },
    }


def _apps() -> dict[str, Any]:
    tag = "Application"
    one = [APP_ID]
    return {
        "/api/v1/app": {
            "get": op("v1.application.list", "List applications", tag,
                      {"200": "ListResponse_ApplicationOut_"},
                      [LIMIT, ITERATOR, ORDER, SEARCH]),
            "post": op("v1.application.create", "Create an application", tag,
                       {"200": "ApplicationOut", "201": "ApplicationOut"},
                       [query("get_if_exists", {"type": "string", "enum": ["true", "false"]},
                              "Return the application with this uid if there is one"),
                        IDEMPOTENCY_KEY], "ApplicationIn"),
        },
        "/api/v1/app/{app_id}": {
            "get": op("v1.application.get", "Get an application", tag,
                      {"200": "ApplicationOut"}, one),
            "put": op("v1.application.update", "Update (or create) an application", tag,
                      {"200": "ApplicationOut", "201": "ApplicationOut"}, one, "ApplicationIn"),
            "patch": op("v1.application.patch", "Patch an application", tag,
                        {"200": "ApplicationOut"}, one, "ApplicationPatch"),
            "delete": op("v1.application.delete", "Delete an application and its endpoints",
                         tag, {"204": None}, one),
        },
    }  # fmt: skip


def _endpoints() -> dict[str, Any]:
    tag = "Endpoint"
    both = [APP_ID, ENDPOINT_ID]
    base = "/api/v1/app/{app_id}/endpoint"
    one = base + "/{endpoint_id}"
    since_until = [
        query("since", {"type": "string", "format": "date-time"}, "From this time"),
        query("until", {"type": "string", "format": "date-time"}, "Before this time"),
    ]
    return {
        base: {
            "get": op("v1.endpoint.list", "List endpoints", tag,
                      {"200": "ListResponse_EndpointOut_"},
                      [APP_ID, LIMIT, ITERATOR, ORDER, SEARCH]),
            "post": op("v1.endpoint.create", "Create an endpoint", tag,
                       {"201": "EndpointOut"}, [APP_ID, IDEMPOTENCY_KEY], "EndpointIn"),
        },
        one: {
            "get": op("v1.endpoint.get", "Get an endpoint", tag, {"200": "EndpointOut"}, both),
            "put": op("v1.endpoint.update", "Update (or create) an endpoint", tag,
                      {"200": "EndpointOut", "201": "EndpointOut"}, both, "EndpointUpdate"),
            "patch": op("v1.endpoint.patch", "Patch an endpoint", tag,
                        {"200": "EndpointOut"}, both, "EndpointPatch"),
            "delete": op("v1.endpoint.delete", "Delete an endpoint", tag, {"204": None}, both),
        },
        one + "/secret": {
            "get": op("v1.endpoint.get-secret", "Get the signing secret (ed25519: public key)",
                      tag, {"200": "EndpointSecretOut"}, both),
        },
        one + "/secret/rotate": {
            "post": op("v1.endpoint.rotate-secret", "Rotate the signing secret", tag,
                       {"200": "EndpointSecretOut"}, both, "EndpointSecretRotateIn"),
        },
        one + "/headers": {
            "get": op("v1.endpoint.get-headers", "Get custom headers", tag,
                      {"200": "EndpointHeadersOut"}, both),
            "put": op("v1.endpoint.update-headers", "Replace custom headers", tag,
                      {"204": None}, both, "EndpointHeadersIn"),
            "patch": op("v1.endpoint.patch-headers", "Change some custom headers", tag,
                        {"204": None}, both, "EndpointHeadersPatchIn"),
        },
        one + "/stats": {
            "get": op("v1.endpoint.get-stats", "Endpoint figures", tag,
                      {"200": "EndpointStats"}, [*both, *since_until]),
        },
        one + "/send-example": {
            "post": op("v1.endpoint.send-example", "Send an example message", tag,
                       {"202": "MessageOut"}, both, "EventExampleIn"),
        },
        one + "/recover": {
            "post": op("v1.endpoint.recover", "Deliver again the dead letters of a window",
                       tag, {"202": "RecoverOut"}, both, "RecoverIn"),
        },
        one + "/enable": {
            "post": op("webhookd.endpoint.enable", "Enable (webhookd)", tag,
                       {"200": "EndpointOut"}, both),
        },
        one + "/disable": {
            "post": op("webhookd.endpoint.disable", "Disable with a reason (webhookd)", tag,
                       {"200": "EndpointOut"}, both, "EndpointDisableIn"),
        },
        one + "/state": {
            "get": op("webhookd.endpoint.state", "Pause and failing streak (webhookd)", tag,
                      {"200": "EndpointState"}, both),
        },
        one + "/pause": {
            "post": op("webhookd.endpoint.pause", "Pause for every daemon (webhookd)", tag,
                       {"200": "EndpointState"}, both, "EndpointPauseIn"),
        },
        one + "/resume": {
            "post": op("webhookd.endpoint.resume", "End a pause (webhookd)", tag,
                       {"200": "EndpointState"}, both),
        },
        one + "/dead-letter": {
            "get": op("webhookd.endpoint.dead-letters", "Dead letters of an endpoint",
                      "Dead letters", {"200": "ListResponse_DeadLetterOut_"},
                      [*both, LIMIT, ITERATOR, *since_until]),
        },
    }  # fmt: skip


def _messages() -> dict[str, Any]:
    tag = "Message"
    app_msg = [APP_ID, MSG_ID]
    status = query("status", {"type": "string", "enum": ["0", "1", "2", "3", "4"]},
                   "0: succeeded, 2: failed")  # fmt: skip
    log_filters = [LIMIT, ITERATOR, BEFORE, AFTER, WITH_CONTENT, EVENT_TYPES, MESSAGE_STATUS]
    return {
        "/api/v1/webhookd/msg": {
            "get": op("webhookd.message.list-all",
                      "The message log of every application (webhookd; tokens not limited to "
                      "one application)", tag, {"200": "ListResponse_MessageOut_"},
                      [*log_filters, query("endpoint_id", ID_SCHEMA,
                                           "webhookd's own: only messages with a delivery to "
                                           "this endpoint (its id); their status is its")]),
        },
        "/api/v1/app/{app_id}/msg": {
            "get": op("v1.message.list", "List messages, newest first", tag,
                      {"200": "ListResponse_MessageOut_"},
                      [APP_ID, *log_filters, query("endpoint_id", ID_SCHEMA, ENDPOINT_FILTER)]),
            "post": op("v1.message.create", "Create a message (an outbox insert)", tag,
                       {"202": "MessageOut"}, [APP_ID, IDEMPOTENCY_KEY, WITH_CONTENT],
                       "MessageIn"),
        },
        "/api/v1/app/{app_id}/msg/{msg_id}": {
            "get": op("v1.message.get", "Get a message", tag, {"200": "MessageOut"},
                      [*app_msg, WITH_CONTENT]),
        },
        "/api/v1/app/{app_id}/attempt/msg/{msg_id}": {
            "get": op("v1.message-attempt.list-by-msg", "Attempts at a message",
                      "Message attempt", {"200": "ListResponse_MessageAttemptOut_"},
                      [*app_msg, LIMIT, ITERATOR, status,
                       query("endpoint_id", ID_SCHEMA, "Only to this endpoint")]),
        },
        "/api/v1/app/{app_id}/attempt/endpoint/{endpoint_id}": {
            "get": op("v1.message-attempt.list-by-endpoint", "Attempts at an endpoint",
                      "Message attempt", {"200": "ListResponse_MessageAttemptOut_"},
                      [APP_ID, ENDPOINT_ID, LIMIT, ITERATOR, status, BEFORE, AFTER]),
        },
        "/api/v1/app/{app_id}/msg/{msg_id}/endpoint/{endpoint_id}/resend": {
            "post": op("v1.message-attempt.resend", "Resend a message to an endpoint",
                       "Message attempt", {"202": "EmptyResponse"},
                       [*app_msg, ENDPOINT_ID, IDEMPOTENCY_KEY]),
        },
    }  # fmt: skip


def _event_types() -> dict[str, Any]:
    tag = "Event type"
    return {
        "/api/v1/event-type": {
            "get": op("v1.event-type.list", "List event types", tag,
                      {"200": "ListResponse_EventTypeOut_"},
                      [LIMIT, ITERATOR, ORDER, WITH_CONTENT,
                       query("include_archived", {"type": "string", "enum": ["true", "false"]},
                             "Archived ones too")]),
            "post": op("v1.event-type.create", "Create an event type", tag,
                       {"201": "EventTypeOut"}, [IDEMPOTENCY_KEY], "EventTypeIn"),
        },
        "/api/v1/event-type/{event_type_name}": {
            "get": op("v1.event-type.get", "Get an event type", tag,
                      {"200": "EventTypeOut"}, [EVENT_TYPE]),
            "put": op("v1.event-type.update", "Update (or create) an event type", tag,
                      {"200": "EventTypeOut", "201": "EventTypeOut"}, [EVENT_TYPE],
                      "EventTypeUpdate"),
            "patch": op("v1.event-type.patch", "Patch an event type", tag,
                        {"200": "EventTypeOut"}, [EVENT_TYPE], "EventTypePatch"),
            "delete": op("v1.event-type.delete", "Archive (or with expunge, delete)", tag,
                         {"204": None},
                         [EVENT_TYPE, query("expunge", {"type": "string",
                                                        "enum": ["true", "false"]},
                                            "Delete rather than archive")]),
        },
    }  # fmt: skip


def _dead_letters() -> dict[str, Any]:
    tag = "Dead letters"
    window = [
        query("since", {"type": "string", "format": "date-time"}, "Failed at or after"),
        query("until", {"type": "string", "format": "date-time"}, "Failed before"),
    ]
    return {
        "/api/v1/app/{app_id}/dead-letter": {
            "get": op("webhookd.dead-letter.list", "Dead letters of an application", tag,
                      {"200": "ListResponse_DeadLetterOut_"},
                      [APP_ID, LIMIT, ITERATOR, *window]),
        },
        "/api/v1/app/{app_id}/dead-letter/requeue": {
            "post": op("webhookd.dead-letter.requeue", "Deliver dead letters again", tag,
                       {"200": "DeadLetterRequeueOut"}, [APP_ID], "DeadLetterRequeueIn"),
        },
    }  # fmt: skip


def _console() -> dict[str, Any]:
    window = query(
        "window",
        {"type": "string", "enum": ["hour", "day"]},
        "The last hour (60 one-minute buckets, the default) or day (60 of 24 min)",
    )
    stats = {"200": "StatsOverviewOut"}
    return {
        "/api/v1/stats/overview": {
            "get": op("webhookd.stats.overview",
                      "Deliveries, latency, backlog and endpoint health of every endpoint the "
                      "token reaches", "Statistics", stats, [window]),
        },
        "/api/v1/app/{app_id}/stats/overview": {
            "get": op("webhookd.app.stats.overview", "The same for one application",
                      "Statistics", stats, [APP_ID, window]),
        },
        "/api/v1/app/{app_id}/endpoint/{endpoint_id}/stats/overview": {
            "get": op("webhookd.endpoint.stats.overview", "The same for one endpoint",
                      "Statistics", stats, [APP_ID, ENDPOINT_ID, window]),
        },
        "/api/v1/auth/app-portal-access/{app_id}": {
            "post": op("v1.authentication.app-portal-access",
                       "A one-time link to the application's portal", "Authentication",
                       {"200": "AppPortalAccessOut"}, [APP_ID], "AppPortalAccessIn"),
        },
        "/api/v1/app/{app_id}/portal-session": {
            "post": op("webhookd.portal.session",
                       "Exchange a portal link's one-time token for the portal's session token",
                       "Authentication", {"200": "PortalSessionOut"}, [APP_ID]),
        },
    }  # fmt: skip


def paths() -> dict[str, Any]:
    return {
        **_meta(),
        **_apps(),
        **_endpoints(),
        **_messages(),
        **_event_types(),
        **_dead_letters(),
        **_console(),
    }
