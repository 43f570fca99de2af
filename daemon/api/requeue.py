"""Dead letters delivered again (recover, requeue), as `webhookd recover` and `dead-letters
requeue` do it (the same statement, so whatever makes a delivery pending keeps working), but in
one transaction: an API write is all or nothing."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from daemon.replay import REQUEUE_BATCH, DeadLetterFilter

if TYPE_CHECKING:
    from daemon.store import Store


async def requeue(store: Store, selections: Sequence[DeadLetterFilter]) -> int:
    """A new attempt series for each selected dead letter of a live, enabled endpoint;
    returns how many. Requeued rows are pending, so each loop ends."""
    total = 0
    async with store.transaction() as tx:
        for selection in selections:
            after: tuple[datetime | None, int | None] = (None, None)
            while True:  # each batch goes on where the last ended
                rows = await tx.fetch(
                    "dead_letters_requeue",
                    **selection.params(),
                    limit=REQUEUE_BATCH,
                    after_failed_at=after[0],
                    after_id=after[1],
                )
                total += len(rows)
                if rows:
                    after = max((r["failed_at"], r["id"]) for r in rows)
                if len(rows) < REQUEUE_BATCH:
                    break
        if total:
            await tx.execute("outbox_wake")
    return total
