"""The connection pool: what a connection carries back into it."""

from __future__ import annotations

import asyncio
import contextlib

from daemon.store import Store


async def test_a_connection_given_back_inside_a_transaction_is_rolled_back(db_dsn: str) -> None:
    """The pool skips asyncpg's reset query (nothing leaves session state behind), but a
    transaction left open by an interrupted caller must not leak into the next user."""
    store = await Store.connect(db_dsn, min_size=1, max_size=1)
    try:
        async with store._acquire() as conn:
            await conn.execute("BEGIN")
            await conn.execute("CREATE TEMP TABLE leaked (x int)")
            assert conn.is_in_transaction()
        async with store._acquire() as conn:
            assert not conn.is_in_transaction()
        assert await store.execute_raw("SELECT 1") == "SELECT 1"
        leaked = await store.pool.fetchval("SELECT to_regclass('pg_temp.leaked') IS NOT NULL")
        assert leaked is False
    finally:
        await store.close()


async def test_a_connection_attempt_cancelled_half_way_leaves_no_error_and_no_connection(
    db_dsn: str,
) -> None:
    """A daemon stopping while its pool opens a connection cancels the attempt wherever it
    is: inside the TCP connect, the TLS negotiation or the start-up. Each point must end
    quietly (asyncio reports nothing, the autouse fixture checks) and leave no session behind."""
    store = await Store.connect(db_dsn, min_size=1, max_size=2)
    try:
        async with store._acquire() as held:  # the next caller has to open a connection
            for turns in range(40):
                call = asyncio.ensure_future(store.execute_raw("SELECT 1"))
                for _ in range(turns):
                    await asyncio.sleep(0)
                call.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await call
            sessions = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            deadline = asyncio.get_running_loop().time() + 10
            while (count := await held.fetchval(sessions)) > 2:
                assert asyncio.get_running_loop().time() < deadline, f"{count} sessions left"
                await asyncio.sleep(0.05)
    finally:
        await store.close()
