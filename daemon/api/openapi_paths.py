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
    "iterator", {"type": "string", "maxLength": 100}, "The iterator a previous page returned"
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
IDEMPOTENCY_KEY: Final = {
    "name": "idempotency-key",
    "in": "header",
    "required": False,
    "description": "On message create: the same key twice returns the first message",
    "schema": {"type": "string", "maxLength": 256},
}


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


def paths() -> dict[str, Any]:
    return {**_meta()}
