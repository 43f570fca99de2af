"""The connection pool: what a connection carries back into it."""

from __future__ import annotations

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
