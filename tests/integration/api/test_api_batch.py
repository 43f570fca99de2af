"""Concurrent message creates share one INSERT; each still succeeds or fails on its own."""

from __future__ import annotations

import asyncio

import pytest

from daemon.api.batch import MessageWriter
from daemon.store import Store, StoreError


async def test_concurrent_creates_share_statements_and_duplicates_insert_once(
    db_dsn: str,
) -> None:
    store = await Store.connect(db_dsn, max_size=3)
    calls: list[int] = []
    try:
        writer = MessageWriter(store)
        real = writer._insert

        async def counted(batch: list) -> list:  # type: ignore[type-arg]
            calls.append(len(batch))
            return await real(batch)

        writer._insert = counted  # type: ignore[method-assign]
        rows = await asyncio.gather(
            *(writer.insert("t", f"m{n % 15}", "e", f'{{"n": {n}}}', None) for n in range(30))
        )
        count = await store.fetch("api_message_find", tenant_id="t", msg_id="m3")
    finally:
        await store.close()
    assert sum(r is not None for r in rows) == 15  # the second of each id inserts nothing
    assert sum(calls) == 30 and len(calls) < 30  # gathered into fewer statements
    assert len(count) == 1


async def test_a_bad_row_fails_alone(db_dsn: str) -> None:
    store = await Store.connect(db_dsn, max_size=3)
    try:
        writer = MessageWriter(store)
        good = [writer.insert("t", f"ok{n}", "e", "{}", None) for n in range(5)]
        bad = writer.insert("t", "bad", "", "{}", None)  # event_type '' breaks a CHECK
        results = await asyncio.gather(*good, bad, return_exceptions=True)
    finally:
        await store.close()
    assert all(r is not None and not isinstance(r, BaseException) for r in results[:5])
    assert isinstance(results[5], StoreError)
    with pytest.raises(StoreError):
        raise results[5]
