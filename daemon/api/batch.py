"""Message creates gathered into one INSERT: while one statement is in flight, the creates that
arrive wait and go together in the next. One statement means one run of the fan-out trigger,
one NOTIFY and one commit for the lot, which is what lets POST /msg keep up with many clients;
a lone request is inserted at once (no timer, no added latency).

Each message is still atomic (a row and its deliveries, or nothing). A statement that fails
for a reason of its own row (not the database being gone) is retried row by row, so one bad
message never fails the others.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Final

from daemon.store import StoreError

if TYPE_CHECKING:
    from daemon.store import Record, Store

MAX_BATCH: Final = 500


@dataclass
class _Pending:
    tenant_id: str
    msg_id: str
    event_type: str
    payload: str
    deliver_after: datetime | None
    done: asyncio.Future[Record | None] = field(default_factory=asyncio.Future)


class MessageWriter:
    """`await insert(...)`: the new row, or None when the tenant already used that msg_id."""

    def __init__(self, store: Store) -> None:
        self._store = store
        self._waiting: list[_Pending] = []
        self._flushing: asyncio.Task[None] | None = None

    async def insert(
        self,
        tenant_id: str,
        msg_id: str,
        event_type: str,
        payload: str,
        deliver_after: datetime | None,
    ) -> Record | None:
        pending = _Pending(tenant_id, msg_id, event_type, payload, deliver_after)
        self._waiting.append(pending)
        if self._flushing is None:
            self._flushing = asyncio.create_task(self._flush_all())
        # shield: a client that goes away does not take the others' statement with it
        return await asyncio.shield(pending.done)

    async def _flush_all(self) -> None:
        try:
            while self._waiting:
                batch, self._waiting = self._waiting[:MAX_BATCH], self._waiting[MAX_BATCH:]
                await self._flush(batch)
        finally:
            self._flushing = None

    async def _flush(self, batch: list[_Pending]) -> None:
        try:
            rows = await self._insert(batch)
        except StoreError as exc:
            if len(batch) == 1:
                _fail(batch, exc)
                return
            for one in batch:  # find the row at fault; the others go in
                await self._flush([one])
            return
        except Exception as exc:  # the database is gone (or a bug): each request hears of it
            _fail(batch, exc)
            return
        inserted = {(r["tenant_id"], r["msg_id"]): r for r in rows}
        for pending in batch:
            if not pending.done.done():
                pending.done.set_result(inserted.pop((pending.tenant_id, pending.msg_id), None))

    async def _insert(self, batch: list[_Pending]) -> list[Record]:
        return await self._store.fetch(
            "api_message_insert_batch",
            tenant_ids=[p.tenant_id for p in batch],
            msg_ids=[p.msg_id for p in batch],
            event_types=[p.event_type for p in batch],
            payloads=[p.payload for p in batch],
            deliver_afters=[p.deliver_after for p in batch],
        )


def _fail(batch: list[_Pending], exc: Exception) -> None:
    for pending in batch:
        if not pending.done.done():
            pending.done.set_exception(exc)
