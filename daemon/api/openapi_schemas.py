"""The `components.schemas` of the OpenAPI document (JSON Schema 2020-12)."""

from __future__ import annotations

from typing import Any, Final

NULLABLE_STRING: Final = {"type": ["string", "null"]}
TIMESTAMP: Final = {"type": "string", "format": "date-time"}


def obj(required: list[str], properties: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"type": "object", "required": required, "properties": properties, **extra}


def list_of(item: str) -> dict[str, Any]:
    return obj(
        ["data", "done", "iterator"],
        {
            "data": {"type": "array", "items": {"$ref": f"#/components/schemas/{item}"}},
            "iterator": NULLABLE_STRING,
            "prevIterator": NULLABLE_STRING,
            "done": {"type": "boolean"},
        },
    )


SCHEMAS: Final[dict[str, Any]] = {
    "HttpErrorOut": obj(
        ["code", "detail"], {"code": {"type": "string"}, "detail": {"type": "string"}}
    ),
    "ValidationError": obj(
        ["loc", "msg", "type"],
        {
            "loc": {"type": "array", "items": {"type": "string"}},
            "msg": {"type": "string"},
            "type": {"type": "string"},
        },
    ),
    "HTTPValidationError": obj(
        ["detail"],
        {"detail": {"type": "array", "items": {"$ref": "#/components/schemas/ValidationError"}}},
    ),
    "OpenApiDocument": obj(["openapi", "info", "paths"], {"openapi": {"type": "string"}}),
}
