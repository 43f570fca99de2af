"""Plan the daemon's statements again when the tables they read have grown.

PostgreSQL plans a prepared statement for its parameter values a few times, then keeps one
generic plan for it. A plan made while a table was small scans it whole (cheapest then) and
is kept however large the table grows, until an ANALYZE of the table invalidates it:
autovacuum does one within its naptime (a minute by default) once enough rows changed. Small
tables are what the daemon starts on after an install whose empty tables autovacuum has
already visited (their statistics say "empty"), or on a quiet system before a burst. With
10,000 deliveries of one message each, such plans read the deliveries table once per endpoint
claimed: a claim of 100 endpoints took 300 ms instead of 5, and the burst drained at 0.18x the
rate of 20 busy endpoints instead of 0.7x (docs/performance.md, 2026-12-05).

The planner sizes a table by its current number of pages whatever its statistics say, so
planning again after the table has grown is enough, before any ANALYZE. The daemon reads the
size of its tables at most once a second (one cheap query) and, when one has at least doubled
since the last time, has every pooled connection drop its cached plans before its next
statement (`Store.replan`): the claim loop of `webhookd run` between claims, and `watch` in
`webhookd api`, whose message log and stats are planned the same way. Shrinking never needs
it: a plan made for a large table (index lookups) stays right for a small one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final, NoReturn

import structlog

from daemon.errors import DatabaseUnavailable
from daemon.loops import every
from daemon.store import Store, StoreError

log = structlog.get_logger("webhookd.plans")

CHECK_EVERY_S: Final = 1.0
GROWTH: Final = 2.0  # a table this many times its size at the last planning: plan again
FLOOR_PAGES: Final = 8  # below this, a table is small whatever it grows from


class TableGrowth:
    """The tables' sizes at the last planning, and which have grown past them since."""

    def __init__(self, growth: float = GROWTH, floor_pages: int = FLOOR_PAGES) -> None:
        self._growth = growth
        self._floor = floor_pages
        self._planned_at: dict[str, int] = {}

    def grown(self, pages: Mapping[str, int]) -> list[str]:
        """The tables that grew `growth` times their size at the last planning; when any
        did, every table's current size becomes the new mark (all plans are made again)."""
        grown = [
            table
            for table, now in sorted(pages.items())
            if table in self._planned_at
            and now >= self._growth * max(self._planned_at[table], self._floor)
        ]
        for table, now in pages.items():
            if grown or table not in self._planned_at:
                self._planned_at[table] = now
            else:  # shrunk (a VACUUM truncated it): growing back is growth again
                self._planned_at[table] = min(self._planned_at[table], now)
        return grown


async def replan_if_grown(store: Store, growth: TableGrowth) -> list[str]:
    """Read the tables' sizes; if one has grown enough, have the store plan again."""
    rows = await store.fetch("table_pages")
    grown = growth.grown({r["table_name"]: r["pages"] for r in rows})
    if grown:
        store.replan()
        log.info("store.replanned", grown=grown)
    return grown


async def watch(store: Store) -> NoReturn:
    """`replan_if_grown` every CHECK_EVERY_S until cancelled (`webhookd api`, which has no
    claim loop to do it); a database that is away skips a round."""
    growth = TableGrowth()
    await every(
        lambda: CHECK_EVERY_S,
        lambda: replan_if_grown(store, growth),
        survive=(DatabaseUnavailable, StoreError),
    )
