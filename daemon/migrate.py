"""Schema migrations: numbered SQL files applied in one transaction under an advisory lock."""

from __future__ import annotations

from daemon import sql
from daemon.errors import MigrationsPending
from daemon.store import Store, StoreError

_UNDEFINED_TABLE = "42P01"
_UNDEFINED_SCHEMA = "3F000"


async def applied_versions(store: Store) -> list[str]:
    try:
        rows = await store.fetch("migrations_applied")
    except StoreError as exc:
        if exc.sqlstate in (_UNDEFINED_TABLE, _UNDEFINED_SCHEMA):
            return []
        raise
    return [r["version"] for r in rows]


async def pending_versions(store: Store) -> list[str]:
    done = set(await applied_versions(store))
    return [version for version, _ in sql.migrations() if version not in done]


async def migrate(store: Store) -> list[str]:
    """Apply every pending migration; safe to run from several processes at once."""
    async with store.transaction() as tx:
        # Lock first: concurrent CREATE ... IF NOT EXISTS of the same schema can still fail.
        await tx.execute("migrations_lock")
        await tx.execute_script(sql.queries()["migrations_table"].text)
        done = {r["version"] for r in await tx.fetch("migrations_applied")}
        applied = []
        for version, script in sql.migrations():
            if version in done:
                continue
            await tx.execute_script(script)
            await tx.execute("migration_mark", version=version)
            applied.append(version)
    return applied


async def require_current(store: Store) -> None:
    pending = await pending_versions(store)
    if pending:
        raise MigrationsPending(pending)


async def apply_migrations(dsn: str) -> list[str]:
    """Connect, migrate, disconnect (for tests and one-shot tooling)."""
    store = await Store.connect(dsn, min_size=1, max_size=1)
    try:
        return await migrate(store)
    finally:
        await store.close()
