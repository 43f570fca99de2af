"""The claim loop: wake on NOTIFY, a timer or the poll interval; lease what can start soon.

Claims are one statement (lock, then lease) sized by the scheduler: only as many as the
free slots can start within about half a second, and per endpoint only what its bucket
allows within the claim horizon, so a backlog stays in PostgreSQL. Expired leases (a
crashed instance) are returned to pending here too.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable

import structlog

from daemon.errors import DatabaseUnavailable
from daemon.leases import Leases
from daemon.models import Delivery, Endpoint
from daemon.scheduler import Quotas, Scheduler
from daemon.store import Listener, Store, StoreError

log = structlog.get_logger("webhookd.outbox")

OUTBOX_CHANNEL = "webhookd_outbox"
ENDPOINTS_CHANNEL = "webhookd_endpoints"
ENDPOINT_REFRESH_S = 30.0
RESCUE_EVERY_S = 5.0
RECHECK_S = 0.5  # due work that a shared limit held back: look again this soon
MIN_WAIT_S = 0.005  # never claim in a tighter loop than this
QUARANTINE_S = 60.0  # an endpoint whose claim PostgreSQL refuses is left out this long


class Claimer:
    """Feeds the scheduler from the outbox."""

    def __init__(
        self,
        store: Store,
        scheduler: Scheduler,
        *,
        instance: str,
        lease_s: Callable[[], float],
        leases: Leases | None = None,
        max_payload_bytes: Callable[[], int] = lambda: 1 << 20,
        dead_letters_block: bool = False,
        poll_interval_s: float,
        load_endpoints: Callable[[], Awaitable[list[Endpoint]]] | None = None,
        on_orphans: Callable[[list[Delivery]], None] | None = None,
        on_claim: Callable[[int], None] | None = None,
        on_db_error: Callable[[str], None] | None = None,
    ) -> None:
        self._store = store
        self._scheduler = scheduler
        self._instance = instance
        self._lease_s = lease_s
        self._leases = leases if leases is not None else Leases()
        self._max_payload_bytes = max_payload_bytes
        self._dead_letters_block = dead_letters_block
        self._quarantined: dict[str, float] = {}  # endpoint id -> monotonic time it ends
        self._poll_s = poll_interval_s
        self._load_endpoints = load_endpoints
        self._on_orphans = on_orphans or (lambda _d: None)
        self._on_claim = on_claim or (lambda _n: None)
        self._on_db_error = on_db_error or (lambda _op: None)
        self._wake = asyncio.Event()
        self._endpoints_stale = True
        self._last_refresh = 0.0
        self._last_rescue = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = float("inf")
        self._stopping = False
        self._stop_event = asyncio.Event()
        self.healthy = True

    # -- wake-ups --------------------------------------------------------------------
    def wake(self) -> None:
        self._wake.set()

    def configure(self, *, poll_interval_s: float, dead_letters_block: bool) -> None:
        """New settings from a configuration reload; the next round uses them."""
        self._poll_s = poll_interval_s
        self._dead_letters_block = dead_letters_block

    def wake_in(self, delay_s: float) -> None:
        """Claim again at `now + delay_s` (e.g. when a retry falls due)."""
        at = time.monotonic() + max(0.0, delay_s)
        if at >= self._timer_at and self._timer is not None:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = at
        self._timer = asyncio.get_running_loop().call_at(at, self._on_timer)

    def _on_timer(self) -> None:
        self._timer, self._timer_at = None, float("inf")
        self._wake.set()

    def on_notify(self, channel: str) -> None:
        if channel == ENDPOINTS_CHANNEL:
            self._endpoints_stale = True
        self._wake.set()

    def stop(self) -> None:
        self._stopping = True
        self._stop_event.set()
        self._wake.set()
        if self._timer is not None:
            self._timer.cancel()

    # -- the loop --------------------------------------------------------------------
    async def run(self) -> None:
        backoff_s = 0.1
        while not self._stopping:
            try:
                wait_s = await self._cycle()
                backoff_s = 0.1
                self.healthy = True
            except DatabaseUnavailable as exc:
                self.healthy = False
                self._on_db_error("claim")
                log.warning("outbox.database_unavailable", error=str(exc), retry_in_s=backoff_s)
                wait_s = backoff_s
                backoff_s = min(backoff_s * 2, 5.0)
            except StoreError as exc:
                # A statement refused (a row or setting PostgreSQL cannot compute with): the
                # loop goes on; `_claim` has left out the endpoint that caused it, if any.
                self._on_db_error("claim")
                log.error("outbox.claim_failed", error=str(exc), retry_in_s=backoff_s)
                wait_s = backoff_s
                backoff_s = min(backoff_s * 2, 5.0)
            await self._sleep(wait_s)

    async def _sleep(self, wait_s: float | None) -> None:
        """Until woken (NOTIFY, timer, stop), slots free up, `wait_s` or the poll interval."""
        hungry = self._scheduler.hunger
        if self._stopping or wait_s == 0:
            return
        waits = [asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(hungry.wait())]
        timeout = self._poll_s if wait_s is None else min(wait_s, self._poll_s)
        _, pending = await asyncio.wait(waits, timeout=timeout, return_when="FIRST_COMPLETED")
        for task in pending:
            task.cancel()
        self._wake.clear()
        hungry.clear()

    async def _cycle(self) -> float | None:
        """One claim round; returns how long to sleep at most (None: until woken or polled)."""
        await self._housekeeping()
        capacity = self._scheduler.capacity()
        if capacity <= 0:
            return None
        quotas = self._scheduler.quotas(capacity).without(self._quarantine_now())
        claimed: list[Delivery] = []
        if quotas:
            claimed = await self._claim(quotas, capacity)
            self._on_claim(len(claimed))
            self._scheduler.count_held_back(claimed)
            orphans = self._scheduler.submit(claimed)
            if orphans:
                self._on_orphans(orphans)
        if len(claimed) >= capacity:
            # More is due. Claim again at once only when a claim would be worth its round
            # trip (the scheduler's `hunger` test); otherwise a finishing attempt wakes us.
            return 0.0 if self._scheduler.wants_claim() else None
        return await self._next_wake_s(quotas.ids)

    async def _claim(self, quotas: Quotas, capacity: int) -> list[Delivery]:
        """One claim statement; its leases are held (and renewed) from the moment it is sent.
        If PostgreSQL refuses it, each endpoint is claimed on its own to find the one that
        causes it, which is left out for a while (logged); the others go on."""
        try:
            return await self._claim_once(quotas, capacity)
        except StoreError:
            if len(quotas.ids) == 1:
                raise
        claimed: list[Delivery] = []
        refused: list[tuple[str, StoreError]] = []
        tried = 0
        for one in quotas.each():
            if len(claimed) >= capacity:
                break
            tried += 1
            try:
                claimed += await self._claim_once(one, capacity - len(claimed))
            except StoreError as exc:
                refused.append((one.ids[0], exc))
        if len(refused) == tried:
            raise refused[0][1]  # not one endpoint's doing: back off and try again
        for endpoint_id, error in refused:
            self._quarantine(endpoint_id, error)
        return claimed

    async def _claim_once(self, quotas: Quotas, limit: int) -> list[Delivery]:
        lease_s = self._lease_s()
        sent_at = time.monotonic()
        rows = await self._store.fetch(
            "claim",
            endpoint_ids=quotas.ids,
            quotas=quotas.counts,
            limit=limit,
            lease_s=lease_s,
            instance=self._instance,
            rates_per_s=quotas.rates_per_s,
            bursts=quotas.bursts,
            max_in_flight=quotas.max_in_flight,
            dead_letters_block=self._dead_letters_block,
            max_payload_bytes=self._max_payload_bytes(),
        )
        claimed = [Delivery.from_record(r) for r in rows]
        self._leases.add(claimed, lease_s, sent_at)
        return claimed

    def _quarantine(self, endpoint_id: str, exc: Exception | None = None) -> None:
        self._quarantined[endpoint_id] = time.monotonic() + QUARANTINE_S
        log.error(
            "outbox.endpoint_quarantined",
            endpoint=endpoint_id,
            seconds=QUARANTINE_S,
            error=None if exc is None else str(exc),
        )

    def _quarantine_now(self) -> set[str]:
        now = time.monotonic()
        for endpoint_id in [e for e, until in self._quarantined.items() if until <= now]:
            del self._quarantined[endpoint_id]
        return set(self._quarantined)

    async def _next_wake_s(self, offered: list[str]) -> float | None:
        """When to claim again, short of a NOTIFY or a finishing attempt (which wake us):
        the earliest future retry of an endpoint that was offered a quota, or, for one whose
        due work was not all claimed (its shared bucket was empty, another daemon paused or
        was claiming it), when it may have a token again. Endpoints held back in this process
        (pause, empty bucket) are looked at again when that ends; asking the database about
        their backlog, which is due already, would make this loop spin."""
        waits = [
            hint
            for ep_id in set(self._scheduler.endpoint_ids()) - set(offered)
            if (hint := self._scheduler.wait_hint(ep_id)) is not None
        ]
        if offered:
            for row in await self._store.fetch("next_due", endpoint_ids=offered):
                if row["next_at"] is None:
                    continue
                gap_s = float((row["next_at"] - row["db_now"]).total_seconds())
                hint = self._scheduler.wait_hint(row["endpoint_id"])
                waits.append(gap_s if gap_s > 0 else hint or RECHECK_S)
        return max(MIN_WAIT_S, min(waits)) if waits else None

    async def _housekeeping(self) -> None:
        now = time.monotonic()
        if self._load_endpoints is not None and (
            self._endpoints_stale or now - self._last_refresh > ENDPOINT_REFRESH_S
        ):
            self._endpoints_stale = False
            endpoints = await self._load_endpoints()
            self._last_refresh = now
            orphans = self._scheduler.set_endpoints(endpoints)
            if orphans:
                self._on_orphans(orphans)
        if now - self._last_rescue > RESCUE_EVERY_S:
            self._last_rescue = now
            rescued = await self._store.fetch("rescue_expired", limit=1000)
            if rescued:
                log.warning("outbox.leases_rescued", count=len(rescued))

    # -- LISTEN ----------------------------------------------------------------------
    async def listen(self) -> None:
        """Keep a LISTEN connection; on loss reconnect with backoff (polling covers the gap)."""
        backoff_s = 0.1
        while not self._stopping:
            listener: Listener | None = None
            try:
                listener = await self._store.listen(
                    [OUTBOX_CHANNEL, ENDPOINTS_CHANNEL], self.on_notify
                )
                backoff_s = 0.1
                self._endpoints_stale = True  # changes may have been missed while away
                self._wake.set()
                await listener.wait_closed()
                log.warning("outbox.listen_lost")
            except DatabaseUnavailable as exc:
                log.warning("outbox.listen_failed", error=str(exc), retry_in_s=backoff_s)
            finally:
                if listener is not None:
                    await listener.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stop_event.wait(), timeout=backoff_s)
            backoff_s = min(backoff_s * 2, 5.0)
