"""What the API answers when it cannot do what was asked: Svix's error bodies.

Every 4xx is `{"code": ..., "detail": ...}`, except a 422, which lists what was wrong with
the request as Svix (and FastAPI) do: `{"detail": [{"loc": ["body", "url"], "msg": ...,
"type": ...}]}`; the SDK parses each into `HttpError` and `HTTPValidationError`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


class ApiError(Exception):
    """An answer other than success; `body()` is what the client gets."""

    def __init__(
        self, status: int, code: str, detail: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(f"{status} {code}: {detail}")
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        return {"code": self.code, "detail": self.detail}


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a request: where (`["body", "url"]`), what, and its kind."""

    loc: tuple[str, ...]
    msg: str
    type: str = "value_error"

    def as_dict(self) -> dict[str, Any]:
        return {"loc": list(self.loc), "msg": self.msg, "type": self.type}


class Invalid(ApiError):
    """422: the request is well-formed HTTP but a field is missing or wrong."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        first = problems[0]
        super().__init__(422, "validation", f"{'.'.join(first.loc)}: {first.msg}")
        self.problems = tuple(problems)

    def body(self) -> dict[str, Any]:
        return {"detail": [p.as_dict() for p in self.problems]}


def invalid(loc: Sequence[str], msg: str, kind: str = "value_error") -> Invalid:
    return Invalid([Problem(tuple(loc), msg, kind)])


def not_found(what: str) -> ApiError:
    return ApiError(404, "not_found", f"{what} not found")


def conflict(detail: str) -> ApiError:
    return ApiError(409, "conflict", detail)


def unauthorized(detail: str) -> ApiError:
    # WWW-Authenticate as RFC 6750 asks; no error_description, so nothing is echoed back.
    return ApiError(401, "authentication_failed", detail, {"WWW-Authenticate": "Bearer"})


def forbidden(detail: str) -> ApiError:
    return ApiError(403, "insufficient_access", detail)
