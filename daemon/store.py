"""PostgreSQL access: the only module that imports asyncpg.

Every query is a named block of `sql/queries.sql`, called with its parameters by name
(`store.fetch("claim", endpoint_ids=..., limit=...)`); driver and socket errors become
`DatabaseUnavailable` (the daemon backs off and retries) and constraint violations become
`StoreError` with PostgreSQL's own message (bad input, shown to the operator).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from daemon import sql
from daemon.config import redact_url
from daemon.errors import ConfigError, DatabaseUnavailable, WebhookdError

Record = Any  # asyncpg.Record: mapping access by column name
_PING_TIMEOUT_S = 3.0

_LOST = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.TooManyConnectionsError,
    # Raised when a connection lost mid-operation is reset on its way back to the pool.
    asyncpg.exceptions.InternalClientError,
)


class _OneLineOutage(logging.Filter):
    """asyncpg's pool logs every failed try to reopen its minimum connections with a traceback.
    In an outage that is expected (the daemon logs `*.database_unavailable` and retries), so
    the line stays, naming the error, without the stack."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, (asyncpg.PostgresError, *_LOST)):
            record.msg, record.args = f"{record.getMessage()}: {type(exc).__name__}: {exc}", None
            record.exc_info, record.exc_text = None, None
        return True


logging.getLogger("asyncpg.pool").addFilter(_OneLineOutage())


class StoreError(WebhookdError):
    """PostgreSQL refused a statement (constraint, bad value); the message is its own."""

    exit_code = 2

    def __init__(self, message: str, sqlstate: str | None = None) -> None:
        super().__init__(message)
        self.sqlstate = sqlstate


# The driver refusing an argument before sending it (a number out of range for its column
# type): an InterfaceError like the ones in _LOST, but it says "never", not "not now".
_ARGUMENT_REFUSED = (asyncpg.exceptions._base.DataError,)


@contextlib.contextmanager
def _translated() -> Any:
    """Turn driver exceptions into ours so no caller needs to know asyncpg."""
    try:
        yield
    except _ARGUMENT_REFUSED as exc:
        raise StoreError(str(exc)) from exc
    except _LOST as exc:
        raise DatabaseUnavailable(f"database unavailable: {exc.__class__.__name__}: {exc}") from exc
    except asyncpg.PostgresError as exc:
        if _transient(getattr(exc, "sqlstate", None)):
            raise DatabaseUnavailable(f"database unavailable: {exc}") from exc
        message = _without_values(getattr(exc, "message", None) or str(exc))
        detail = getattr(exc, "detail", None)
        text = f"{message} ({detail})" if detail else message
        raise StoreError(text, getattr(exc, "sqlstate", None)) from exc


_ARGUMENT_RE = re.compile(r"invalid input for query argument (\$\d+)")
_RANGE_RE = re.compile(r"\(([^()]*out of [^()]*range)\)\s*$")


def _without_values(message: str) -> str:
    """asyncpg's "invalid input for query argument $6: 's3cr3t...' (...)" repeats the value,
    which may be a secret: say which argument, and why only when it is a range."""
    match = _ARGUMENT_RE.match(message)
    if match is None:
        return message
    found = _RANGE_RE.search(message)
    why = found[1] if found else "not valid"
    return f"a value the database cannot take (query argument {match[1]}: {why}; value not shown)"


@contextlib.contextmanager
def _connecting() -> Any:
    """Opening a connection: a refusal, whatever PostgreSQL gives as the reason (not accepting
    connections, too many, authentication, database gone), means the database is unavailable,
    not that a statement was refused, so callers keep their work and retry."""
    try:
        yield
    except (asyncpg.PostgresError, *_LOST) as exc:
        raise DatabaseUnavailable(f"database unavailable: {exc.__class__.__name__}: {exc}") from exc


# SQLSTATEs that say "not now" rather than "never": connection exceptions, a read-only
# server (failover), shutdowns, statement timeouts, serialization failures and deadlocks,
# insufficient resources. Work hit by them is kept and retried, not refused.
_TRANSIENT_CLASSES = ("08", "53", "57P")
_TRANSIENT_STATES = frozenset({"25006", "57014", "40001", "40P01", "55P03"})


def _transient(sqlstate: str | None) -> bool:
    if not sqlstate:
        return False
    return sqlstate in _TRANSIENT_STATES or sqlstate.startswith(_TRANSIENT_CLASSES)


async def _connect(*args: Any, **kwargs: Any) -> Any:
    """`asyncpg.connect`, never cancelled half-way. Cancelled inside its `create_connection`
    (a daemon stopping while its health check opens a pool connection), asyncpg 0.30-0.32
    leaves a future holding an exception nobody reads, which asyncio reports as an error
    ("Future exception was never retrieved") at every quick stop. A cancelled caller lets the
    attempt finish on its own (it is bounded by its `timeout`) and closes what it made."""
    attempt = asyncio.ensure_future(asyncpg.connect(*args, **kwargs))
    try:
        return await asyncio.shield(attempt)
    except asyncio.CancelledError:
        attempt.add_done_callback(_close_abandoned)
        raise


def _close_abandoned(attempt: asyncio.Future[Any]) -> None:
    """Done callback of a connection attempt whose caller left: read its outcome (so nothing
    is reported as unretrieved) and close the connection, if one was made, at once."""
    if attempt.cancelled() or attempt.exception() is not None:
        return
    attempt.result().terminate()


async def _reset(_conn: Any) -> None:
    """Replaces asyncpg's server-side reset on release (`SELECT pg_advisory_unlock_all();
    CLOSE ALL; UNLISTEN *; RESET ALL`): a second round trip per claim and per outcome batch,
    9 % of the daemon's CPU in bench/profile.md. Nothing here leaves that state on a pooled
    connection (LISTEN has its own connection, the migration lock is transaction-scoped,
    nothing uses SET or cursors). asyncpg still runs its client-side reset first, which rolls
    back a transaction an interrupted caller left open and drops listeners."""


class _Connection(asyncpg.Connection):  # type: ignore[misc]
    """A pooled connection that knows which `Store.replan` its cached plans predate."""

    plan_epoch = 0

    async def replan(self, epoch: int) -> None:
        # Drops the plans of every prepared statement (asyncpg's included); the statements
        # stay prepared and are planned again on their next use.
        await self.execute("DISCARD PLANS")
        self.plan_epoch = epoch


def _bound(name: str, params: dict[str, Any]) -> tuple[str, list[Any]]:
    """A named query's SQL and its arguments in `$N` order; TypeError for a missing or unknown
    parameter name (a programming error, raised before any connection is taken)."""
    query = sql.queries()[name]
    return query.text, query.args(params)


@dataclass
class Store:
    """A connection pool plus the named queries; cheap to pass around."""

    pool: Any
    dsn: str
    plan_epoch: int = 0  # bumped by `replan`; each connection catches up when next taken

    @classmethod
    async def connect(
        cls, dsn: str, *, min_size: int = 1, max_size: int = 10, timeout_s: float = 5.0
    ) -> Store:
        try:
            with _translated():
                pool = await asyncpg.create_pool(
                    dsn,
                    min_size=min_size,
                    max_size=max_size,
                    timeout=timeout_s,
                    command_timeout=max(timeout_s * 6, 30.0),
                    # Statements are named and reused; a tiny cache is all we need.
                    statement_cache_size=64,
                    reset=_reset,
                    connect=_connect,
                    connection_class=_Connection,
                )
        except DatabaseUnavailable as exc:
            raise DatabaseUnavailable(f"cannot connect to {redact_url(dsn)}: {exc}") from exc
        except (ValueError, TypeError) as exc:  # asyncpg could not read the URL
            why = f"cannot be used ({type(exc).__name__}; value not shown: it may hold a password)"
            raise ConfigError("database.url", why) from None
        return cls(pool=pool, dsn=dsn)

    def replan(self) -> None:
        """Have every pooled connection drop its cached plans before its next statement
        (daemon/plans.py says when and why)."""
        self.plan_epoch += 1

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.pool.close(), timeout=5)

    @contextlib.asynccontextmanager
    async def _acquire(self) -> AsyncIterator[Any]:
        """A pooled connection; the pool may have to open one (see `_connecting`)."""
        with _connecting():
            conn = await self.pool.acquire()
        with _translated():
            try:
                if conn.plan_epoch != self.plan_epoch:
                    await conn.replan(self.plan_epoch)
                yield conn
            finally:
                await self.pool.release(conn)  # resets it: fails if the connection was lost

    async def _call(self, method: str, statement: str, *args: Any) -> Any:
        async with self._acquire() as conn:
            return await getattr(conn, method)(statement, *args)

    async def _named(self, method: str, name: str, params: dict[str, Any]) -> Any:
        text, args = _bound(name, params)
        return await self._call(method, text, *args)

    async def fetch(self, name: str, /, **params: Any) -> list[Record]:
        rows: list[Record] = await self._named("fetch", name, params)
        return rows

    async def fetchrow(self, name: str, /, **params: Any) -> Record | None:
        return await self._named("fetchrow", name, params)

    async def fetchval(self, name: str, /, **params: Any) -> Any:
        return await self._named("fetchval", name, params)

    async def execute(self, name: str, /, **params: Any) -> str:
        status: str = await self._named("execute", name, params)
        return status

    async def execute_raw(self, statement: str, *args: Any) -> str:
        """For tests and tooling that need a statement outside queries.sql."""
        status: str = await self._call("execute", statement, *args)
        return status

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        """A transaction on one connection, for multi-statement admin changes."""
        async with self._acquire() as conn, conn.transaction():
            yield Tx(conn)

    async def ping(self) -> bool:
        try:
            with _translated():
                await asyncio.wait_for(self.pool.fetchval("SELECT 1"), timeout=2)
        except (DatabaseUnavailable, StoreError, TimeoutError):
            return False
        return True

    async def listen(
        self, channels: Sequence[str], on_notify: Callable[[str, str], None]
    ) -> Listener:
        """A dedicated connection that calls `on_notify(channel, payload)` for each NOTIFY."""
        with _connecting():
            conn = await _connect(self.dsn, timeout=5)
        listener = Listener(conn)
        with _translated():
            for channel in channels:
                await conn.add_listener(
                    channel, lambda _c, _pid, ch, payload: on_notify(ch, payload)
                )
        return listener


@dataclass
class Tx:
    """A connection inside a transaction; named queries only."""

    conn: Any

    async def fetch(self, name: str, /, **params: Any) -> list[Record]:
        text, args = _bound(name, params)
        with _translated():
            rows: list[Record] = await self.conn.fetch(text, *args)
            return rows

    async def fetchrow(self, name: str, /, **params: Any) -> Record | None:
        text, args = _bound(name, params)
        with _translated():
            return await self.conn.fetchrow(text, *args)

    async def execute(self, name: str, /, **params: Any) -> str:
        text, args = _bound(name, params)
        with _translated():
            status: str = await self.conn.execute(text, *args)
            return status

    async def execute_script(self, script: str) -> None:
        """Run a migration file (several statements, no parameters)."""
        with _translated():
            await self.conn.execute(script)


class Listener:
    """Owns the LISTEN connection; `wait_closed()` returns when the connection is lost."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn
        self._lost = asyncio.Event()
        conn.add_termination_listener(lambda _c: self._lost.set())

    async def wait_closed(self, check_every_s: float = 5.0) -> None:
        """Return once the connection is gone (checked actively: a dead peer sends nothing)."""
        while not self._lost.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._lost.wait(), timeout=check_every_s)
            if not self._lost.is_set() and not await self._alive():
                return

    async def _alive(self) -> bool:
        try:
            await asyncio.wait_for(self._conn.fetchval("SELECT 1"), timeout=_PING_TIMEOUT_S)
        except Exception:
            return False
        return True

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._conn.close(), timeout=2)
