"""Event-type JSON Schemas: checked when an event type is written, applied to each message of
the type created through the API (its highest version: Svix keys versions "1", "2", ...).
A message that does not conform is refused with the path of the first error."""

from __future__ import annotations

from typing import Any

from jsonschema import exceptions, validators

from daemon.api.errors import Invalid, Problem


def latest(schemas: dict[str, Any] | None) -> dict[str, Any] | None:
    """The schema of the highest version (numeric keys sort as numbers)."""
    if not schemas:
        return None
    key = max(schemas, key=lambda k: (k.isdigit(), int(k) if k.isdigit() else 0, k))
    schema = schemas[key]
    return schema if isinstance(schema, dict) else None


def check_schemas(schemas: dict[str, Any], loc: tuple[str, ...]) -> None:
    """Each version must be a valid JSON Schema (of the draft it names, else 2020-12)."""
    for version, schema in schemas.items():
        if not isinstance(schema, dict):
            raise Invalid([Problem((*loc, version), "must be a JSON Schema object")])
        cls = validators.validator_for(schema, default=validators.Draft202012Validator)
        try:
            cls.check_schema(schema)
        except exceptions.SchemaError as exc:
            where = "/".join(str(p) for p in exc.path)
            raise Invalid(
                [Problem((*loc, version), f"not a valid JSON Schema at /{where}: {exc.message}")]
            ) from None


def validate_payload(schema: dict[str, Any], payload: Any) -> None:
    cls = validators.validator_for(schema, default=validators.Draft202012Validator)
    error = exceptions.best_match(cls(schema).iter_errors(payload))
    if error is not None:
        path = tuple(str(p) for p in error.absolute_path)
        raise Invalid([Problem(("body", "payload", *path), error.message, "value_error.schema")])
