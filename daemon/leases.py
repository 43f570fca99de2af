"""The leases this process holds, and the heartbeat that renews them.

A claimed delivery is leased for its attempt timeout plus `outbox.lease_margin`. It may wait
in the scheduler's queue, be attempted, and wait for its outcome to be written, and all of
that together can outlast the lease when receivers slow down; an expired lease is rescued by
another daemon, which then delivers the same message at the same time. So every lease this
process holds is renewed on a heartbeat, in one statement, with its fencing token: a row
whose token no longer matches was rescued, and is dropped here (never attempted, and its
outcome, if any, is only logged). An attempt starts only while its lease is known to last
for the whole attempt; the time is measured from when the renewal was sent, so it is never
later than the database's own `locked_until`.

After `kill -9` nothing renews: the lease expires within the timeout plus the margin, as
before.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import structlog

from daemon.errors import DatabaseUnavailable
from daemon.loops import every
from daemon.models import Delivery
from daemon.store import Store, StoreError

log = structlog.get_logger("webhookd.leases")

MAX_HEARTBEAT_S = 10.0
MIN_HEARTBEAT_S = 0.05


def heartbeat_s(lease_margin_s: float) -> float:
    """A third of the margin (at most 10 s): two renewals may fail before an attempt that
    needs the full timeout can no longer start."""
    return min(MAX_HEARTBEAT_S, max(MIN_HEARTBEAT_S, lease_margin_s / 3))


@dataclass(slots=True)
class _Held:
    token: int
    lease_s: float
    until: float  # monotonic time the lease is known to last until


class Leases:
    """Delivery id -> fencing token and how long its lease is known to last. Pure."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._held: dict[int, _Held] = {}

    def add(self, deliveries: Iterable[Delivery], sent_at: float) -> None:
        """Leases taken by a claim sent at `sent_at` (monotonic), each `lease_s` long."""
        for d in deliveries:
            self._held[d.id] = _Held(d.lease_token, d.lease_s, sent_at + d.lease_s)

    def covers(self, delivery: Delivery, needed_s: float) -> bool:
        """Whether this process still holds the delivery's lease for `needed_s` more seconds."""
        held = self._held.get(delivery.id)
        if held is None or held.token != delivery.lease_token:
            return False
        return held.until - self._clock() >= needed_s

    def holds(self, delivery: Delivery) -> bool:
        held = self._held.get(delivery.id)
        return held is not None and held.token == delivery.lease_token

    def drop(self, deliveries: Iterable[Delivery]) -> None:
        """The outcome or release of these was written: nothing left to renew."""
        for d in deliveries:
            held = self._held.get(d.id)
            if held is not None and held.token == d.lease_token:
                del self._held[d.id]

    def snapshot(self) -> tuple[list[int], list[int], list[float]]:
        """(ids, tokens, lease seconds) of every lease held, for the renewal."""
        ids, tokens, seconds = [], [], []
        for delivery_id, held in self._held.items():
            ids.append(delivery_id)
            tokens.append(held.token)
            seconds.append(held.lease_s)
        return ids, tokens, seconds

    def renewed(
        self, ids: list[int], tokens: list[int], kept: Iterable[int], sent_at: float
    ) -> list[int]:
        """Apply a renewal sent at `sent_at` for (ids, tokens): the kept ones last another
        lease from then; the others were lost (rescued elsewhere). Returns the lost ids. A
        lease dropped or re-taken with another token meanwhile is left alone."""
        kept_ids = set(kept)
        lost = []
        for delivery_id, token in zip(ids, tokens, strict=True):
            held = self._held.get(delivery_id)
            if held is None or held.token != token:
                continue
            if delivery_id in kept_ids:
                held.until = sent_at + held.lease_s
            else:
                del self._held[delivery_id]
                lost.append(delivery_id)
        return lost

    def __len__(self) -> int:
        return len(self._held)


class LeaseKeeper:
    """The heartbeat: renews every lease held, in one statement, every `interval_s`."""

    def __init__(
        self,
        store: Store,
        leases: Leases,
        *,
        interval_s: Callable[[], float],
        on_lost: Callable[[list[int]], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._store = store
        self._leases = leases
        self._interval_s = interval_s  # read each beat: a reload applies at once
        self._on_lost = on_lost
        self._clock = clock
        self.healthy = True

    async def run(self) -> None:
        await every(self._interval_s, self.beat, wait_first=True)

    async def beat(self) -> None:
        """One renewal. A failure is logged and retried on the next beat: an attempt whose
        lease can no longer cover it is not started meanwhile."""
        ids, tokens, seconds = self._leases.snapshot()
        if not ids:
            self.healthy = True
            return
        sent_at = self._clock()
        try:
            rows = await self._store.fetch(
                "renew_leases", delivery_ids=ids, lease_tokens=tokens, lease_s=seconds
            )
        except (DatabaseUnavailable, StoreError) as exc:
            self.healthy = False
            log.warning("outbox.lease_renewal_failed", error=str(exc), held=len(ids))
            return
        self.healthy = True
        lost = self._leases.renewed(ids, tokens, (r["id"] for r in rows), sent_at)
        if lost:
            log.warning("outbox.leases_lost", count=len(lost))
            self._on_lost(lost)
