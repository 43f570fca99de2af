"""The claim loop: wake on NOTIFY, a timer or the poll interval; lease what can start soon.

Claims are driven by what is due, never by the list of endpoints: the claim statement walks
the endpoints whose `due_at` has come (migrations/0008_due_endpoints.sql), least recently
served first, and takes only as many deliveries as the free slots can start within about half
a second, so a backlog stays in PostgreSQL and a million idle endpoints cost nothing. Wakes
(appended by whatever makes a delivery pending) are folded into `due_at` before a claim when
a NOTIFY or the poll says there may be some. The settings of the endpoints claimed are
fetched once and kept by the scheduler (a bounded cache), refreshed when the endpoints
trigger names one, or when a claim shows a newer version. Expired leases (a crashed
instance) are returned to pending here too.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import datetime

import structlog

from daemon import plans
from daemon.config import Config
from daemon.errors import DatabaseUnavailable
from daemon.leases import Leases
from daemon.loops import Backoff, pause
from daemon.models import Delivery, Endpoint
from daemon.scheduler import Quotas, Scheduler
from daemon.store import Listener, Store, StoreError

log = structlog.get_logger("webhookd.outbox")

OUTBOX_CHANNEL = "webhookd_outbox"
ENDPOINTS_CHANNEL = "webhookd_endpoints"
RESCUE_EVERY_S = 5.0
HELD_SWEEP_EVERY_S = 300.0  # ordered deliveries a missed release left held (a safety net)
RECHECK_S = 0.05  # something due that another daemon was claiming: look again this soon
MIN_WAIT_S = 0.005  # never claim in a tighter loop than this
QUARANTINE_S = 60.0  # an endpoint whose claim or settings PostgreSQL refuses is left out
ABSORB_BATCH = 10_000
HOLD_LIMIT = 256  # blocked ordered deliveries held per endpoint per claim
SWEEP_BATCH = 1_000

FetchEndpoints = Callable[[Sequence[str]], Awaitable[tuple[dict[str, Endpoint], dict[str, str]]]]


class Claimer:
    """Feeds the scheduler from the outbox."""

    def __init__(
        self,
        store: Store,
        scheduler: Scheduler,
        *,
        instance: str,
        config: Callable[[], Config],
        fetch_endpoints: FetchEndpoints,
        leases: Leases | None = None,
        on_orphans: Callable[[list[Delivery]], None] | None = None,
        on_claim: Callable[[int], None] | None = None,
        on_db_error: Callable[[str], None] | None = None,
    ) -> None:
        self._store = store
        self._scheduler = scheduler
        self._instance = instance
        self._config = config  # read every round: a reload applies at once
        self._fetch_endpoints = fetch_endpoints
        self._leases = leases if leases is not None else Leases()
        self._on_orphans = on_orphans or (lambda _d: None)
        self._on_claim = on_claim or (lambda _n: None)
        self._on_db_error = on_db_error or (lambda _op: None)
        self._quarantined: dict[str, float] = {}  # endpoint id -> monotonic time it ends
        # from the last claim's summary row: when the next endpoint falls due, the db's now()
        self._next_due: tuple[datetime | None, datetime | None] | None = None
        self._stale: set[str] = set()  # cached endpoints a NOTIFY said changed
        self._refresh_all = False  # the LISTEN connection was lost: changes may be missed
        self._wakes_pending = True
        self._last_absorb = 0.0
        self._last_rescue = 0.0
        self._next_sweep = 0.0
        self._growth = plans.TableGrowth()
        self._next_plan_check = 0.0
        self._wake = asyncio.Event()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = float("inf")
        self._stopping = False
        self._stop_event = asyncio.Event()
        self.healthy = True

    # -- wake-ups --------------------------------------------------------------------
    def wake(self) -> None:
        self._wake.set()

    def reconfigured(self) -> None:
        """A reload: look again at once; a change of ordering_on_dead_letter may unblock
        ordered deliveries held behind a dead letter."""
        self._next_sweep = 0.0
        self._wake.set()

    def note_wakes(self) -> None:
        """This daemon wrote something that appends wakes (retries, releases): fold them in
        before the next claim."""
        self._wakes_pending = True
        self._wake.set()

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

    def on_notify(self, channel: str, payload: str) -> None:
        if channel == ENDPOINTS_CHANNEL:
            if self._scheduler.endpoint(payload) is not None:
                self._stale.add(payload)
            # its row changed (fixed, perhaps): a quarantine for what it was is lifted
            self._quarantined.pop(payload, None)
        else:
            self._wakes_pending = True
        self._wake.set()

    def stop(self) -> None:
        self._stopping = True
        self._stop_event.set()
        self._wake.set()
        if self._timer is not None:
            self._timer.cancel()

    # -- the loop --------------------------------------------------------------------
    async def run(self) -> None:
        backoff = Backoff()
        while not self._stopping:
            try:
                wait_s = await self._cycle()
                backoff.reset()
                self.healthy = True
            except DatabaseUnavailable as exc:
                self.healthy = False
                self._on_db_error("claim")
                wait_s = backoff.failed()
                log.warning("outbox.database_unavailable", error=str(exc), retry_in_s=wait_s)
            except StoreError as exc:
                # A statement refused (a row or setting PostgreSQL cannot compute with): the
                # loop goes on; `_claim` has left out the endpoint that caused it, if any.
                self._on_db_error("claim")
                wait_s = backoff.failed()
                log.error("outbox.claim_failed", error=str(exc), retry_in_s=wait_s)
            await self._sleep(wait_s)

    async def _sleep(self, wait_s: float | None) -> None:
        """Until woken (NOTIFY, timer, stop), slots free up, `wait_s` or the poll interval."""
        hungry = self._scheduler.hunger
        if self._stopping or wait_s == 0:
            return
        poll_s = self._config().outbox.poll_interval_s
        waits = [asyncio.ensure_future(self._wake.wait()), asyncio.ensure_future(hungry.wait())]
        timeout = poll_s if wait_s is None else min(wait_s, poll_s)
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
        claimed = await self._claim(quotas, capacity)
        self._on_claim(len(claimed))
        if claimed:
            await self._attach_endpoints(claimed)
            orphans = self._scheduler.submit(claimed)
            if orphans:
                self._on_orphans(orphans)
        self._scheduler.more_due = len(claimed) >= capacity
        if len(claimed) >= capacity:
            # More is due. Claim again at once only when a claim would be worth its round
            # trip (the scheduler's `hunger` test); otherwise a finishing attempt wakes us.
            return 0.0 if self._scheduler.wants_claim() else None
        return await self._next_wake_s(quotas, got_some=bool(claimed))

    # -- claiming --------------------------------------------------------------------
    async def _claim(self, quotas: Quotas, capacity: int) -> list[Delivery]:
        """One claim statement; its leases are held (and renewed) from the moment it is sent.
        If PostgreSQL refuses it, the due endpoints are claimed one at a time to find the one
        whose row causes it, which is left out for a while (logged); the others go on."""
        self._next_due = None
        try:
            return await self._claim_once(quotas, capacity)
        except StoreError as refusal:
            suspects = [
                r["endpoint_id"]
                for r in await self._store.fetch(
                    "due_endpoints", limit=capacity, excluded_ids=quotas.excluded()
                )
            ]
            claimed: list[Delivery] = []
            refused: list[tuple[str, StoreError]] = []
            for endpoint_id in suspects:
                try:
                    claimed += await self._claim_once(quotas, capacity, only=endpoint_id)
                except StoreError as exc:
                    refused.append((endpoint_id, exc))
            if not refused or (len(suspects) > 1 and len(refused) == len(suspects)):
                raise refusal from None  # not one endpoint's doing: back off, try again
            for endpoint_id, error in refused:
                self._quarantine(endpoint_id, error)
            return claimed

    async def _claim_once(
        self, quotas: Quotas, limit: int, only: str | None = None
    ) -> list[Delivery]:
        cfg = self._config()
        sent_at = time.monotonic()
        rows = await self._store.fetch(
            "claim",
            limit=limit,
            max_endpoints=1 if only else limit,
            default_quota=quotas.default,
            local_ids=quotas.ids,
            local_quotas=quotas.counts,
            default_rate_per_s=cfg.ratelimit.default_rate_per_s,
            default_burst=cfg.ratelimit.default_burst,
            default_timeout_s=cfg.delivery.timeout_s,
            lease_margin_s=cfg.outbox.lease_margin_s,
            dead_letters_block=cfg.outbox.ordering_on_dead_letter == "block",
            instance=self._instance,
            max_payload_bytes=cfg.delivery.max_payload_bytes,
            free_slots=quotas.free_slots,
            hold_limit=HOLD_LIMIT,
            only_endpoint_id=only,
        )
        claimed = [Delivery.from_record(r) for r in rows if r["id"] is not None]
        self._leases.add(claimed, sent_at)
        for row in rows:
            if row["id"] is None:  # the claim's summary row
                self._scheduler.held_back(row["rate_limited"])
                if only is None:
                    self._next_due = (row["next_due_at"], row["db_now"])
        return claimed

    async def _attach_endpoints(self, claimed: list[Delivery]) -> None:
        """Make sure the scheduler knows the current settings of every endpoint claimed: one
        query for those it has not cached, or cached at an older version. An endpoint that
        cannot be used (deleted meanwhile, unreadable) is left out for a while; its deliveries
        go back."""
        versions = {d.endpoint_id: d.endpoint_version for d in claimed}
        missing = [
            ep_id
            for ep_id, version in versions.items()
            if (cached := self._scheduler.endpoint(ep_id)) is None or cached.version < version
        ]
        if missing:
            await self._refresh(missing)

    async def _refresh(self, endpoint_ids: Iterable[str]) -> None:
        loaded, refused = await self._fetch_endpoints(list(endpoint_ids))
        orphans: list[Delivery] = []
        for endpoint in loaded.values():
            orphans += self._scheduler.update_endpoint(endpoint)
        for endpoint_id, why in refused.items():
            orphans += self._scheduler.remove_endpoint(endpoint_id)
            if why != "deleted":
                self._quarantine(endpoint_id, why)
        if orphans:
            self._on_orphans(orphans)

    def _quarantine(self, endpoint_id: str, error: Exception | str | None = None) -> None:
        self._quarantined[endpoint_id] = time.monotonic() + QUARANTINE_S
        log.error(
            "outbox.endpoint_quarantined",
            endpoint=endpoint_id,
            seconds=QUARANTINE_S,
            error=None if error is None else str(error),
        )

    def _quarantine_now(self) -> set[str]:
        now = time.monotonic()
        for endpoint_id in [e for e, until in self._quarantined.items() if until <= now]:
            del self._quarantined[endpoint_id]
        return set(self._quarantined)

    async def _next_wake_s(self, quotas: Quotas, *, got_some: bool) -> float | None:
        """When to claim again, short of a NOTIFY or a finishing attempt (which wake us):
        when the next endpoint falls due (the claim's summary row says; an index lookup when
        there was no claim to say it, whatever the number of endpoints),
        or when one held back here (a pause, an empty bucket) may go on. An endpoint due now
        that this claim did not take (another daemon was claiming it) is looked at again
        soon, not at once."""
        if self._next_due is None:  # the claim did not say (it failed, or was split up)
            excluded = [*quotas.excluded(), *self._quarantined]
            row = await self._store.fetchrow("next_due_at", excluded_ids=excluded)
            self._next_due = (row["due_at"], row["db_now"]) if row is not None else (None, None)
        due_at, db_now = self._next_due
        waits = [w for w in [self._scheduler.local_wait_s()] if w is not None]
        if due_at is not None and db_now is not None:
            gap_s = float((due_at - db_now).total_seconds())
            waits.append(gap_s if gap_s > 0 else (MIN_WAIT_S if got_some else RECHECK_S))
        return max(MIN_WAIT_S, min(waits)) if waits else None

    # -- housekeeping ----------------------------------------------------------------
    async def _housekeeping(self) -> None:
        now = time.monotonic()
        if now >= self._next_plan_check:
            self._next_plan_check = now + plans.CHECK_EVERY_S
            await plans.replan_if_grown(self._store, self._growth)
        await self._refresh_stale()
        if self._wakes_pending or now - self._last_absorb >= self._config().outbox.poll_interval_s:
            await self._absorb(now)
        if now - self._last_rescue > RESCUE_EVERY_S:
            self._last_rescue = now
            rescued = await self._store.fetch("rescue_expired", limit=1000)
            if rescued:
                log.warning("outbox.leases_rescued", count=len(rescued))
        if now >= self._next_sweep:
            self._next_sweep = now + HELD_SWEEP_EVERY_S
            await self._sweep_held()

    async def _refresh_stale(self) -> None:
        if self._refresh_all:
            self._refresh_all = False
            self._stale |= set(self._scheduler.endpoint_ids())
        if self._stale:
            stale, self._stale = self._stale, set()
            await self._refresh(stale)

    async def _absorb(self, now: float) -> None:
        """Fold the wakes appended since last time into due_at (in batches)."""
        self._wakes_pending = False
        self._last_absorb = now
        while True:
            try:
                wakes = await self._store.fetchval("absorb_wakes", limit=ABSORB_BATCH)
            except StoreError as exc:
                # claims go on with the due times already set; the next round tries again
                self._on_db_error("claim")
                log.error("outbox.absorb_failed", error=str(exc))
                return
            if wakes < ABSORB_BATCH:
                return

    async def _sweep_held(self) -> None:
        """Release ordered deliveries held behind a key that nothing blocks any more: the
        recorder releases them as it goes; this catches what it could not (a daemon killed
        between, or a reload from "block" to "skip")."""
        block = self._config().outbox.ordering_on_dead_letter == "block"
        after_endpoint, after_key, released = "", "", 0
        while True:
            row = await self._store.fetchrow(
                "release_held_sweep",
                limit=SWEEP_BATCH,
                after_endpoint_id=after_endpoint,
                after_ordering_key=after_key,
                dead_letters_block=block,
            )
            if row is None or row["keys"] == 0:
                break
            released += row["released"]
            after_endpoint, after_key = row["last_endpoint_id"], row["last_ordering_key"]
            if row["keys"] < SWEEP_BATCH:
                break
        if released:
            log.info("outbox.held_released", count=released)

    # -- LISTEN ----------------------------------------------------------------------
    async def listen(self) -> None:
        """Keep a LISTEN connection; on loss reconnect with backoff (polling covers the gap)."""
        backoff = Backoff()
        while not self._stopping:
            listener: Listener | None = None
            try:
                listener = await self._store.listen(
                    [OUTBOX_CHANNEL, ENDPOINTS_CHANNEL], self.on_notify
                )
                backoff.reset()
                self._refresh_all = True  # changes may have been missed while away
                self._wakes_pending = True
                self._wake.set()
                await listener.wait_closed()
                log.warning("outbox.listen_lost")
            except DatabaseUnavailable as exc:
                log.warning("outbox.listen_failed", error=str(exc), retry_in_s=backoff.delay_s)
            finally:
                if listener is not None:
                    await listener.close()
            await pause(backoff.failed(), self._stop_event)
