"""Reading what a client sent: the JSON body and query string, checked field by field.

Each problem names where it is, as Svix does (`["body", "url"]`, `["query", "limit"]`), and
the first one found is the answer. Fields a route does not know are ignored, as Svix does.
`MISSING` tells an absent field from one given as null, which PATCH needs.
"""

from __future__ import annotations

import enum
import math
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

import orjson
from aiohttp import web

from daemon.api.errors import Invalid, Problem, invalid


class Missing(enum.Enum):
    MISSING = "missing"


MISSING: Final = Missing.MISSING
ID_PATTERN: Final = re.compile(r"[a-zA-Z0-9\-_.]{1,256}")


async def json_body(request: web.Request) -> Body:
    """The body as a JSON object (the size cap is the application's client_max_size)."""
    raw = await request.read()
    try:
        data = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError as exc:
        raise invalid(["body"], f"not JSON: {exc}", "value_error.jsondecode") from None
    if not isinstance(data, dict):
        raise invalid(["body"], "must be a JSON object", "type_error.dict")
    if b"\\u0000" in raw and _has_nul(data):  # cheap test first: the escape is in the bytes
        raise invalid(["body"], "must not contain \\u0000 (PostgreSQL cannot store it)")
    return Body(data, ("body",))


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\0" in value
    if isinstance(value, dict):
        return any("\0" in k or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


class Body:
    """Typed access to the fields of one JSON object, raising 422 at the first bad one."""

    def __init__(self, data: Mapping[str, Any], loc: tuple[str, ...]) -> None:
        self.data = data
        self.loc = loc

    def has(self, *names: str) -> bool:
        return any(name in self.data for name in names)

    def raw(self, *names: str) -> tuple[str, Any]:
        """(the name used, its value): the first of several spellings that is present."""
        for name in names:
            if name in self.data:
                return name, self.data[name]
        return names[0], MISSING

    def fail(self, name: str, msg: str, kind: str = "value_error") -> Invalid:
        return Invalid([Problem((*self.loc, name), msg, kind)])

    def string(
        self, *names: str, required: bool = False, nullable: bool = True, max_len: int = 65536,
        min_len: int = 0, pattern: re.Pattern[str] | None = None,
    ) -> str | Missing | None:  # fmt: skip
        name, value = self.raw(*names)
        if value is MISSING and required:
            raise self.fail(name, "field required", "value_error.missing")
        if value is MISSING or (value is None and nullable and not required):
            return value
        if not isinstance(value, str):
            raise self.fail(name, "must be a string", "type_error.str")
        if not min_len <= len(value) <= max_len:
            raise self.fail(name, f"must be {min_len} to {max_len} characters long")
        if "\0" in value:
            raise self.fail(name, "must not contain NUL characters")
        if pattern is not None and not pattern.fullmatch(value):
            raise self.fail(name, f"must match {pattern.pattern}")
        return value

    def integer(
        self, *names: str, low: int, high: int, nullable: bool = True
    ) -> int | Missing | None:
        name, value = self.raw(*names)
        if value is MISSING or (value is None and nullable):
            return value
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.fail(name, "must be an integer", "type_error.integer")
        if not low <= value <= high:
            raise self.fail(name, f"must be between {low} and {high}")
        return value

    def number(self, *names: str, low: float, high: float) -> float | Missing | None:
        name, value = self.raw(*names)
        if value is MISSING or value is None:
            return value
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self.fail(name, "must be a number", "type_error.number")
        if not (math.isfinite(value) and low <= value <= high):
            raise self.fail(name, f"must be between {low} and {high}")
        return float(value)

    def boolean(self, *names: str) -> bool | Missing | None:
        name, value = self.raw(*names)
        if value is MISSING or value is None:
            return value
        if not isinstance(value, bool):
            raise self.fail(name, "must be true or false", "type_error.bool")
        return value

    def strings(
        self, *names: str, pattern: re.Pattern[str] | None = None, max_items: int = 1000
    ) -> list[str] | Missing | None:
        name, value = self.raw(*names)
        if value is MISSING or value is None:
            return value
        if not isinstance(value, list) or len(value) > max_items:
            raise self.fail(
                name, f"must be a list of at most {max_items} strings", "type_error.list"
            )
        for index, item in enumerate(value):
            if not isinstance(item, str) or (pattern is not None and not pattern.fullmatch(item)):
                shape = f" matching {pattern.pattern}" if pattern is not None else ""
                raise Invalid([Problem((*self.loc, name, str(index)), f"must be a string{shape}")])
        return list(dict.fromkeys(value))

    def string_map(self, *names: str, nullable_values: bool = False) -> dict[str, Any] | Missing:
        """An object of strings (null values too with `nullable_values`); null is {}."""
        name, value = self.raw(*names)
        if value is MISSING:
            return value
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise self.fail(name, "must be an object of strings", "type_error.dict")
        for key, item in value.items():
            if not (isinstance(item, str) or (item is None and nullable_values)):
                raise Invalid([Problem((*self.loc, name, key), "must be a string")])
        return dict(value)

    def obj(self, *names: str) -> dict[str, Any] | Missing | None:
        name, value = self.raw(*names)
        if value is MISSING or value is None:
            return value
        if not isinstance(value, dict):
            raise self.fail(name, "must be an object", "type_error.dict")
        return value

    def when(self, *names: str, required: bool = False) -> datetime | Missing | None:
        name, value = self.raw(*names)
        if value is MISSING and required:
            raise self.fail(name, "field required", "value_error.missing")
        if value is MISSING or (value is None and not required):
            return value
        if not isinstance(value, str):
            raise self.fail(name, "must be an ISO 8601 date-time string", "type_error.datetime")
        return parse_datetime(value, (*self.loc, name))


def parse_datetime(text: str, loc: tuple[str, ...]) -> datetime:
    try:
        when = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        problem = Problem(loc, "must be an ISO 8601 date-time", "value_error.datetime")
        raise Invalid([problem]) from None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def given(value: Any) -> bool:
    """Neither absent nor null."""
    return value is not MISSING and value is not None


class Query:
    """The query string, read as Svix reads it (booleans `true`/`false`, lists by commas or
    repeated keys)."""

    def __init__(self, request: web.Request) -> None:
        self.query = request.query

    def fail(self, name: str, msg: str, kind: str = "value_error") -> Invalid:
        return Invalid([Problem(("query", name), msg, kind)])

    def string(self, name: str) -> str | None:
        value = self.query.get(name)
        if value is not None and "\0" in value:
            raise self.fail(name, "must not contain NUL characters")
        return value

    def boolean(self, name: str, default: bool) -> bool:
        value = self.query.get(name)
        if value is None:
            return default
        if value.lower() not in ("true", "false"):
            raise self.fail(name, "must be true or false", "type_error.bool")
        return value.lower() == "true"

    def when(self, name: str) -> datetime | None:
        value = self.query.get(name)
        return None if value is None else parse_datetime(value, ("query", name))

    def strings(self, name: str, pattern: re.Pattern[str]) -> list[str] | None:
        values = [
            part
            for key, value in self.query.items()
            if key == name or (key.startswith(f"{name}[") and key.endswith("]"))
            for part in value.split(",")
            if part
        ]
        for value in values:
            if not pattern.fullmatch(value):
                raise self.fail(name, f"each must match {pattern.pattern}")
        return list(dict.fromkeys(values)) or None

    def choice(self, name: str, options: tuple[str, ...]) -> str | None:
        value = self.query.get(name)
        if value is not None and value not in options:
            raise self.fail(name, f"must be one of {', '.join(options)}", "type_error.enum")
        return value
