"""What a named query costs, read from EXPLAIN ANALYZE of it: the plan tests of the operator
commands (tests/integration/test_operator_scale.py) and of the message log
(tests/integration/api/test_api_message_log_scale.py)."""

from __future__ import annotations

import asyncio
import secrets
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import asyncpg
import orjson

from daemon import sql
from tests.conftest import dsn_with_database


@contextmanager
def built_database(
    server_dsn: str, template: str, prefix: str, statements: Sequence[str]
) -> Iterator[str]:
    """A migrated database (a clone of the template) filled by `statements`, for a module's
    plan tests to read, dropped afterwards: its DSN."""
    name = f"{prefix}_{secrets.token_hex(6)}"
    dsn = dsn_with_database(server_dsn, name)

    async def run(target: str, todo: Sequence[str]) -> None:
        conn = await asyncpg.connect(target)
        try:
            for statement in todo:
                await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(run(server_dsn, [f'CREATE DATABASE "{name}" TEMPLATE "{template}"']))
    try:
        asyncio.run(run(dsn, statements))
        yield dsn
    finally:
        asyncio.run(run(server_dsn, [f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)']))


async def explain(conn: asyncpg.Connection, name: str, **params: Any) -> dict[str, Any]:
    """The executed plan of a named query with these parameters (a custom plan, as the CLI's
    one execution gets)."""
    query = sql.queries()[name]
    text = await conn.fetchval(
        "EXPLAIN (ANALYZE, TIMING OFF, FORMAT JSON)\n" + query.text, *query.args(params)
    )
    plan: dict[str, Any] = orjson.loads(text)[0]["Plan"]
    return plan


def nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from nodes(child)


def scans(plan: dict[str, Any], relation: str) -> list[dict[str, Any]]:
    return [n for n in nodes(plan) if n.get("Relation Name") == relation]


def rows_read(node: dict[str, Any]) -> float:
    """Rows a scan produced or threw away, over all its loops."""
    per_loop = node["Actual Rows"] + node.get("Rows Removed by Filter", 0)
    return float(per_loop * node["Actual Loops"])


def assert_no_full_scan(plan: dict[str, Any], relations: tuple[str, ...] | None = None) -> None:
    """No pass over a table (of `relations` only, when given: the planner rightly reads a
    table of a few rows, a test's endpoints or applications, whole)."""
    full = [
        f"Seq Scan on {n['Relation Name']}"
        for n in nodes(plan)
        if n["Node Type"] == "Seq Scan" and (relations is None or n["Relation Name"] in relations)
    ]
    assert full == [], full
