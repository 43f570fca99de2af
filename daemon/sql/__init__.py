"""Named SQL queries (queries.sql) and numbered migrations, loaded once from the package.

A query block starts with `-- name: x`, then comment lines: a description and, when the SQL
takes parameters, `-- params: a, b, ...`, which names `$1`, `$2`, ... in order. Callers pass
parameters by name; the numbers used in the SQL are checked against the names when the file
is parsed, so a mismatch fails when it is loaded (and in the unit tests), not at the one call
that runs the query.
"""

from __future__ import annotations

import keyword
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

_NAME = re.compile(r"^-- name: (\S+)\s*$", re.MULTILINE)
_PARAMS = re.compile(r"^--\s*params:(.*)$")
# What can hold a `$N` that is not a parameter, and the parameters themselves; one pass, so
# the leftmost token wins (an apostrophe in a comment does not open a string).
_TOKENS = re.compile(
    r"--[^\n]*"
    r"|/\*.*?\*/"
    r"|'(?:[^']|'')*'"
    r"|\$(?P<tag>(?:[A-Za-z_]\w*)?)\$.*?\$(?P=tag)\$"
    r"|\$(?P<number>\d+)",
    re.DOTALL,
)


@dataclass(frozen=True)
class Query:
    """One block of queries.sql: its SQL (description included) and its parameter names,
    `params[i]` being `$(i+1)`."""

    name: str
    text: str
    params: tuple[str, ...] = ()

    def args(self, values: Mapping[str, Any]) -> list[Any]:
        """The positional arguments for the driver, in `$N` order. A missing or unknown name
        is a programming error: TypeError, naming the query and the names."""
        missing = [p for p in self.params if p not in values]
        unknown = sorted(set(values) - set(self.params))
        if missing or unknown:
            problems = [f"missing {', '.join(missing)}"] if missing else []
            problems += [f"unknown {', '.join(unknown)}"] if unknown else []
            takes = ", ".join(self.params)
            raise TypeError(f"query {self.name!r} takes ({takes}): {'; '.join(problems)}")
        return [values[p] for p in self.params]


def parse_queries(text: str) -> dict[str, Query]:
    """Split a file of `-- name: x` blocks into {name: Query}; ValueError naming the query
    when its `-- params:` line does not match the `$N` its SQL uses."""
    parts = _NAME.split(text)
    queries: dict[str, Query] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in queries:
            raise ValueError(f"duplicate query name {name!r}")
        sql = body.strip()
        queries[name] = Query(name, sql, _checked_params(name, sql))
    return queries


def _checked_params(name: str, sql: str) -> tuple[str, ...]:
    params = _params_line(name, sql)
    used = {int(m["number"]) for m in _TOKENS.finditer(sql) if m["number"] is not None}
    if params is None:
        if used:
            raise ValueError(f"query {name!r} uses ${min(used)} but has no '-- params:' line")
        return ()
    if not used:
        raise ValueError(f"query {name!r} has a '-- params:' line but its SQL uses no $N")
    _check_names(name, params)
    beyond = sorted(n for n in used if not 1 <= n <= len(params))
    if beyond:
        raise ValueError(f"query {name!r} uses ${beyond[0]} but names {len(params)} parameters")
    unused = ", ".join(f"${n} ({p})" for n, p in enumerate(params, 1) if n not in used)
    if unused:
        raise ValueError(f"query {name!r} names parameters its SQL does not use: {unused}")
    return params


def _check_names(name: str, params: tuple[str, ...]) -> None:
    """Each name must be usable as a keyword argument, and name one parameter only."""
    for p in params:
        if not p.isidentifier() or keyword.iskeyword(p):
            raise ValueError(f"query {name!r}: parameter name {p!r} is not an identifier")
    duplicates = sorted({p for p in params if params.count(p) > 1})
    if duplicates:
        raise ValueError(f"query {name!r}: duplicate parameter names {', '.join(duplicates)}")


def _params_line(name: str, sql: str) -> tuple[str, ...] | None:
    """The names of the `-- params:` line, which must be among the leading comment lines."""
    lines = sql.splitlines()
    leading = next((i for i, line in enumerate(lines) if not line.startswith("--")), len(lines))
    found = [i for i, line in enumerate(lines) if _PARAMS.match(line.strip())]
    if not found:
        return None
    if len(found) > 1:
        raise ValueError(f"query {name!r} has more than one '-- params:' line")
    if found[0] >= leading:
        raise ValueError(f"query {name!r}: '-- params:' must come before the SQL")
    match = _PARAMS.match(lines[found[0]].strip())
    assert match is not None
    return tuple(p.strip() for p in match[1].split(","))


@cache
def queries() -> dict[str, Query]:
    return parse_queries(resources.files(__package__).joinpath("queries.sql").read_text("utf-8"))


@cache
def migrations() -> tuple[tuple[str, str], ...]:
    """(version, sql) pairs in order; the version is the file name without `.sql`."""
    folder = resources.files(__package__).joinpath("migrations")
    files = sorted(f.name for f in folder.iterdir() if f.name.endswith(".sql"))
    return tuple((name[:-4], folder.joinpath(name).read_text("utf-8")) for name in files)
