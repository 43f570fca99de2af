"""Shared fixtures: one PostgreSQL per session, a migrated template, a fresh clone per test.

Set WEBHOOKD_TEST_DATABASE_URL to run against an existing server (a superuser, or a role with
CREATEDB); otherwise a throwaway embedded server is started for the session.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import secrets
import shutil
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
import pytest_asyncio
from hypothesis import settings

from daemon.embedded import EmbeddedPostgres

TEST_DATABASE_URL_ENV = "WEBHOOKD_TEST_DATABASE_URL"

# Property tests explore new inputs on every run on a developer's machine; in CI they replay
# the same examples, so a submission's result does not depend on the draw.
settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    settings.load_profile("ci")
UNRETRIEVED = "exception was never retrieved"  # asyncio's "Task ..." and "Future ..."


class _UnretrievedReports(logging.Handler):
    """Collects asyncio's reports of a task or future whose exception nobody retrieved."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.reports: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if UNRETRIEVED in message:
            exc = record.exc_info[1] if record.exc_info else None
            self.reports.append(f"{message}: {exc!r}" if exc else message)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Whatever exists once tests are collected is left out of later collections, so the
    gc.collect() after each test (below) looks at what that test made: ms, not 60 ms."""
    gc.collect()
    gc.freeze()


@pytest.fixture(autouse=True)
def no_unretrieved_task_exceptions() -> Iterator[None]:
    """Fail a test after which asyncio reports "Task exception was never retrieved": a task
    died and nobody noticed (once, a daemon with half its slots stuck and /readyz still ok)."""
    reports = _UnretrievedReports()
    logger = logging.getLogger("asyncio")
    logger.addHandler(reports)
    try:
        yield
        gc.collect()  # the report is made when the dead task is collected
    finally:
        logger.removeHandler(reports)
    if reports.reports:
        pytest.fail("asyncio: " + "; ".join(reports.reports), pytrace=False)


def dsn_with_database(dsn: str, database: str) -> str:
    """The same server and credentials, another database."""
    return urlunsplit(urlsplit(dsn)._replace(path=f"/{database}"))


async def _admin(dsn: str, statement: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


@pytest.fixture(scope="session")
def pg_server_dsn() -> Iterator[str]:
    """DSN of a server where tests may create and drop databases."""
    configured = os.environ.get(TEST_DATABASE_URL_ENV)
    if configured:
        yield configured
        return
    # Not tmp_path: pytest resets /tmp/pytest-of-<user> to 0700 at every session start, which
    # would lock the unprivileged server user (we run as root on CI) out of a live data dir.
    base = Path(tempfile.mkdtemp(prefix="webhookd-test-pg-"))
    server = EmbeddedPostgres(base / "data", fast=True)
    try:
        yield server.start()
    finally:
        try:
            server.stop(mode="immediate")  # the data is thrown away: skip the checkpoint
        finally:
            shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def template_db(pg_server_dsn: str) -> Iterator[str]:
    """Name of a database migrated once per session, to clone with CREATE DATABASE ... TEMPLATE."""
    from daemon.migrate import apply_migrations  # here, so tests without a database need none

    name = f"webhookd_tpl_{secrets.token_hex(6)}"
    # Sync fixture + asyncio.run: session-wide admin work stays off the per-test event loops.
    asyncio.run(_admin(pg_server_dsn, f'CREATE DATABASE "{name}"'))
    try:
        asyncio.run(apply_migrations(dsn_with_database(pg_server_dsn, name)))
        yield name
    finally:
        asyncio.run(_admin(pg_server_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest_asyncio.fixture
async def db_dsn(pg_server_dsn: str, template_db: str) -> AsyncIterator[str]:
    """DSN of a fresh, migrated database of this test's own, dropped afterwards."""
    name = f"webhookd_t_{secrets.token_hex(6)}"
    await _admin(pg_server_dsn, f'CREATE DATABASE "{name}" TEMPLATE "{template_db}"')
    try:
        yield dsn_with_database(pg_server_dsn, name)
    finally:
        await _admin(pg_server_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest_asyncio.fixture
async def bare_dsn(pg_server_dsn: str) -> AsyncIterator[str]:
    """A database without the webhookd schema (not cloned from the template), dropped after."""
    name = f"webhookd_bare_{secrets.token_hex(6)}"
    await _admin(pg_server_dsn, f'CREATE DATABASE "{name}"')
    try:
        yield dsn_with_database(pg_server_dsn, name)
    finally:
        await _admin(pg_server_dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
