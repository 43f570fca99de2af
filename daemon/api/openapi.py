"""The OpenAPI 3.1 document of the API, served at /api/v1/openapi.json.

Written by hand in Python (schemas are JSON Schema 2020-12, as 3.1 wants): shapes follow Svix's
v1 API, which the official SDKs are generated from, plus webhookd's own fields and routes.
tests/integration/test_api_openapi.py validates it (openapi-spec-validator), checks it names
exactly the routes the server has, and runs schemathesis against a live server with it.
"""

from __future__ import annotations

from functools import cache
from typing import Any, Final

from daemon import __version__
from daemon.api.openapi_paths import paths
from daemon.api.openapi_schemas import SCHEMAS

ERROR_STATUSES: Final = {
    "400": "Bad request",
    "401": "Unauthorized",
    "403": "Forbidden",
    "404": "Not found",
    "409": "Conflict",
    "413": "Request body too large",
    "429": "Too many requests",
}


@cache
def document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "webhookd management API",
            "version": __version__,
            "description": "A Svix-compatible subset (docs/api.md lists the differences).",
        },
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "paths": paths(),
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": SCHEMAS,
            "responses": {
                **{
                    status: {
                        "description": text,
                        "content": {"application/json": {"schema": _ref("HttpErrorOut")}},
                    }
                    for status, text in ERROR_STATUSES.items()
                },
                "422": {
                    "description": "Validation error",
                    "content": {"application/json": {"schema": _ref("HTTPValidationError")}},
                },
            },
        },
    }


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}
