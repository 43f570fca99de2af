"""Decides what starts next: global cap, per-endpoint token buckets, pauses and fairness.

Claimed deliveries wait here in per-endpoint queues. `next()` hands out the next one that
may start now (a free global slot, a token, the endpoint under its in-flight limit), taking
endpoints round-robin so a big backlog cannot starve small ones. Waiting for a token holds
no slot: a delivery only takes a slot when it is handed out. Pure logic plus one Event; the
clock is injected.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace

from daemon.breaker import BreakerSettings, CircuitBreaker, State
from daemon.isolation import Change, Isolation, IsolationSettings, Pace
from daemon.models import Delivery, Endpoint
from daemon.ratelimit import TokenBucket, default_burst


@dataclass
class Limits:
    """The parts of the configuration the scheduler needs (reloadable)."""

    concurrency: int = 10
    endpoint_max_in_flight: int = 5
    default_rate_per_s: float | None = None
    default_burst: int = 0
    batch_size: int = 100
    breaker: BreakerSettings = field(default_factory=BreakerSettings)
    slow_lane: int = 20
    slow_after_s: float = 2.0

    def isolation(self) -> IsolationSettings:
        return IsolationSettings(self.concurrency, self.slow_lane, self.slow_after_s)


@dataclass
class Lane:
    """One endpoint's queue and counters."""

    endpoint: Endpoint
    bucket: TokenBucket | None
    max_in_flight: int
    queue: deque[Delivery] = field(default_factory=deque)
    in_flight: int = 0
    paused_until: float = 0.0  # monotonic time; set by 429/503 Retry-After
    waiting_for_token: bool = False  # the head of the queue is held by the bucket
    waiting_for_slot: bool = False  # demoted, and the slow lane and its share are full
    breaker: CircuitBreaker | None = None
    pace: Pace = field(default_factory=Pace)  # how it answers lately (isolation.py)


@dataclass
class Quotas:
    """What this daemon asks of a claim: its own quota for the endpoints it is busy with (0
    leaves one out: at its in-flight cap here, paused here, quarantined), `default` for every
    other due endpoint, and the slots free to start rate-limited deliveries at once. The
    claim statement applies the limits shared by every daemon on top."""

    ids: list[str] = field(default_factory=list)
    counts: list[int] = field(default_factory=list)
    default: int = 0
    free_slots: int = 0

    def excluded(self) -> list[str]:
        return [ep_id for ep_id, n in zip(self.ids, self.counts, strict=True) if n <= 0]

    def without(self, endpoint_ids: Iterable[str]) -> Quotas:
        """The same quotas with some endpoints left out."""
        leave_out = set(endpoint_ids)
        if not leave_out:
            return self
        kept = [(e, n) for e, n in zip(self.ids, self.counts, strict=True) if e not in leave_out]
        pairs = kept + [(e, 0) for e in sorted(leave_out)]
        return Quotas([e for e, _ in pairs], [n for _, n in pairs], self.default, self.free_slots)


# Endpoints kept in memory (the endpoint cache), least recently claimed dropped first; an
# endpoint with work here is never dropped.
MAX_LANES = 10_000


class Scheduler:
    """Holds claimed deliveries until they may start; counts what is in flight."""

    def __init__(
        self,
        limits: Limits,
        clock: Callable[[], float] = time.monotonic,
        *,
        max_lanes: int = MAX_LANES,
    ) -> None:
        self._limits = limits
        self._clock = clock
        self._max_lanes = max_lanes
        # one lane per endpoint claimed lately: its settings (the endpoint cache), queue,
        # counters, bucket and breaker; in least recently claimed order
        self._lanes: OrderedDict[str, Lane] = OrderedDict()
        # lanes whose quota is not the default: work queued or in flight, a pause, a breaker
        # that is not closed (pruned when they settle)
        self._active: set[str] = set()
        self._order: deque[str] = deque()  # round-robin order of lanes with queued work
        self._in_flight = 0
        self._queued = 0
        self._changed = asyncio.Event()
        self._completions = _RateMeter(clock)
        self._isolation = Isolation(limits.isolation(), clock)
        # Set when enough slots are free that a new claim is worth a round trip.
        self.hunger = asyncio.Event()
        # The last claim took all it asked for (more may be due): set by the claim loop.
        self.more_due = False
        # Endpoints held back by their rate limit while they had due work: counted by the
        # claim statement (`held_back`), or a claimed delivery that waited for a token here.
        self.rate_limited_waits = 0
        # Deliveries of demoted endpoints that waited because the slow lane was full.
        self.slow_waits = 0

    # -- endpoints -------------------------------------------------------------------
    def update_endpoint(self, endpoint: Endpoint) -> list[Delivery]:
        """An endpoint's current settings (claimed for the first time, or changed). One that
        is disabled keeps no queue: returns its queued deliveries, whose leases go back."""
        if not endpoint.enabled:
            lane = self._lanes.get(endpoint.id)
            if lane is None:
                return []
            lane.endpoint = endpoint
            return self._retire(lane)
        self._upsert(endpoint)
        self._lanes.move_to_end(endpoint.id)
        self._evict()
        self._changed.set()
        return []

    def remove_endpoint(self, endpoint_id: str) -> list[Delivery]:
        """An endpoint deleted (or whose row cannot be read): returns its queued deliveries."""
        lane = self._lanes.get(endpoint_id)
        if lane is None:
            return []
        lane.endpoint = replace(lane.endpoint, enabled=False)
        return self._retire(lane)

    def disable(self, endpoint_id: str) -> list[Delivery] | None:
        """Stop starting deliveries of an endpoint at once (the daemon disabled it), as if
        the next endpoint reload had found it disabled: returns its queued deliveries, whose
        leases should go back, or None when it was not enabled here."""
        lane = self._lanes.get(endpoint_id)
        if lane is None or not lane.endpoint.enabled:
            return None
        lane.endpoint = replace(lane.endpoint, enabled=False)
        return self._retire(lane)

    def _retire(self, lane: Lane) -> list[Delivery]:
        """No more starts for this lane; it goes once its attempts finish."""
        dropped = self._drop_queue(lane)
        if lane.in_flight == 0:
            self._forget_lane(lane.endpoint.id)
        self._changed.set()
        return dropped

    def _forget_lane(self, endpoint_id: str) -> None:
        del self._lanes[endpoint_id]
        self._active.discard(endpoint_id)

    def _evict(self) -> None:
        """Keep at most `max_lanes` lanes: drop the least recently claimed idle ones."""
        excess = len(self._lanes) - self._max_lanes
        if excess <= 0:
            return
        for ep_id in list(itertools.islice(self._lanes, excess + len(self._active))):
            if not self._is_active(self._lanes[ep_id]):
                self._forget_lane(ep_id)
                excess -= 1
                if excess <= 0:
                    return

    def set_limits(self, limits: Limits) -> None:
        self._limits = limits
        self._isolation.settings = limits.isolation()
        for lane in self._lanes.values():
            self._upsert(lane.endpoint)
        self._changed.set()

    def endpoint_ids(self) -> list[str]:
        """The endpoints cached here."""
        return list(self._lanes)

    def endpoint(self, endpoint_id: str) -> Endpoint | None:
        """The cached settings of an endpoint, if this daemon has claimed it lately."""
        lane = self._lanes.get(endpoint_id)
        return lane.endpoint if lane else None

    def _upsert(self, endpoint: Endpoint) -> None:
        rate = endpoint.rate_per_s or self._limits.default_rate_per_s
        burst = endpoint.burst or self._limits.default_burst or (default_burst(rate) if rate else 0)
        lane = self._lanes.get(endpoint.id)
        bucket = lane.bucket if lane else None
        if rate is None:
            bucket = None
        elif bucket is None:
            bucket = TokenBucket(rate, burst, self._clock)
        else:
            bucket.update(rate, burst)
        cap = endpoint.max_in_flight or self._limits.endpoint_max_in_flight
        cap = min(cap, self._limits.concurrency)
        if lane is None:
            lane = self._lanes[endpoint.id] = Lane(endpoint, bucket, cap)
        else:
            lane.endpoint, lane.bucket, lane.max_in_flight = endpoint, bucket, cap
        settings = self._limits.breaker
        if not settings.enabled:
            lane.breaker = None
        elif lane.breaker is None:
            lane.breaker = CircuitBreaker(settings, self._clock)
        else:
            lane.breaker.update(settings)

    def _cap(self, lane: Lane) -> int:
        """The lane's in-flight limit now: its cap, a demoted endpoint's limit, or a
        half-open breaker's single probe."""
        cap = lane.max_in_flight
        if lane.pace.demoted:
            cap = min(cap, lane.pace.limit)
        elif lane.pace.latency_s is None and self._others_busy(lane):
            cap = 1  # until its first answer: it may be one that hangs (isolation.py)
        if lane.breaker is None:
            return cap
        allowed = lane.breaker.allows(lane.in_flight)
        return cap if allowed < 0 else min(cap, lane.in_flight + allowed)

    def _drop_queue(self, lane: Lane) -> list[Delivery]:
        if lane.queue:
            self._order.remove(lane.endpoint.id)
        dropped = list(lane.queue)
        lane.queue.clear()
        self._queued -= len(dropped)
        return dropped

    def _is_active(self, lane: Lane) -> bool:
        return bool(
            lane.queue
            or lane.in_flight
            or lane.paused_until > self._clock()
            or lane.pace.demoted
            or (lane.breaker is not None and lane.breaker.state is not State.CLOSED)
        )

    # -- claiming --------------------------------------------------------------------
    def _target(self) -> int:
        """Deliveries worth holding: enough to keep every slot busy for about half a second
        at the observed completion rate, never less than the cap, at most a batch."""
        target = max(self._limits.concurrency, int(self._completions.per_s() * 0.5))
        return min(target, max(self._limits.batch_size, self._limits.concurrency))

    def capacity(self) -> int:
        """How many more deliveries may be claimed now.

        Deliveries queued behind their own endpoint's in-flight cap do not count: they cannot
        take a free slot, and counting them let a hung endpoint (its cap in flight and as many
        queued) fill the whole target, so no other endpoint was claimed until its attempts
        timed out. Its quota (twice its cap) still bounds what it holds."""
        regular = self._isolation.regular_in_use(self._in_flight)
        return max(0, self._target() - regular - self._startable())

    def _startable(self) -> int:
        """Queued deliveries that could take a regular slot: their endpoint has a free
        in-flight slot for them and is not demoted (those go to the slow lane)."""
        total = 0
        for ep_id in self._order:
            lane = self._lanes.get(ep_id)
            if lane is not None and not lane.pace.demoted:
                total += min(len(lane.queue), max(0, self._cap(lane) - lane.in_flight))
        return total

    def quotas(self, capacity: int) -> Quotas:
        """This daemon's claim limits. Only endpoints it is busy with get an entry; a due
        endpoint it has nothing of gets `default`: twice the per-endpoint cap, as much as it
        could start at once and again.

        Tokens are spent when claimed, so rate-limited deliveries are claimed only as far as
        free slots can start them at once (`free_slots`): one left waiting for a slot would
        reach its receiver late, in a bunch with later ones."""
        default_cap = min(self._limits.endpoint_max_in_flight, self._limits.concurrency)
        regular = self._isolation.regular_in_use(self._in_flight)
        free = self._limits.concurrency - regular - self._startable()
        quotas = Quotas(default=max(0, min(capacity, default_cap * 2)), free_slots=max(0, free))
        for ep_id in list(self._active):
            lane = self._lanes.get(ep_id)
            if lane is None or not self._is_active(lane):
                self._active.discard(ep_id)
                continue
            n = self._quota(lane, capacity)
            if n != quotas.default:
                quotas.ids.append(ep_id)
                quotas.counts.append(n)
        return quotas

    def _quota(self, lane: Lane, capacity: int) -> int:
        if not lane.endpoint.enabled or lane.paused_until > self._clock():
            return 0
        cap = self._cap(lane)
        n = min(capacity, cap * 2 - lane.in_flight - len(lane.queue))
        if lane.bucket is None:
            return max(0, n)
        # The local bucket never has fewer tokens than the shared one (the database grants
        # them), so it only saves probing endpoints that have none.
        local = math.floor(lane.bucket.available() + 1e-9) - len(lane.queue)
        n = min(n, cap - lane.in_flight - len(lane.queue))
        return max(0, min(n, local))

    def held_back(self, endpoints: int) -> None:
        """A claim found this many endpoints with due work their token bucket held back."""
        self.rate_limited_waits += endpoints

    def local_wait_s(self) -> float | None:
        """Seconds until an endpoint held back here (a pause, an empty bucket) may be worth
        claiming again, if any is."""
        now = self._clock()
        waits = []
        for ep_id in self._active:
            lane = self._lanes.get(ep_id)
            if lane is None:
                continue
            if lane.paused_until > now:
                waits.append(lane.paused_until - now)
            elif lane.bucket is not None and lane.bucket.wait_s() > 0:
                waits.append(lane.bucket.wait_s())
        return min(waits) if waits else None

    def submit(self, deliveries: Iterable[Delivery]) -> list[Delivery]:
        """Queue claimed deliveries; returns those whose endpoint is unknown or disabled."""
        orphans = []
        for d in deliveries:
            lane = self._lanes.get(d.endpoint_id)
            if lane is None or not lane.endpoint.enabled:
                orphans.append(d)
                continue
            if not lane.queue:
                self._order.append(d.endpoint_id)
                self._active.add(d.endpoint_id)
                self._lanes.move_to_end(d.endpoint_id)
            lane.queue.append(d)
            self._queued += 1
        self._changed.set()
        return orphans

    # -- dispatching -----------------------------------------------------------------
    async def next(self) -> tuple[Endpoint, Delivery]:
        """Wait for the next delivery allowed to start, and take its slot and token."""
        while True:
            picked, wait_s = self._pick()
            if picked is not None:
                return picked
            self._changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._changed.wait(), timeout=wait_s)

    def _pick(self) -> tuple[tuple[Endpoint, Delivery] | None, float | None]:
        """One round over lanes with work; returns the pick or how long to sleep."""
        if not self._isolation.room(self._in_flight):
            return None, None
        wait_s: float | None = None
        for _ in range(len(self._order)):
            ep_id = self._order.popleft()
            lane = self._lanes.get(ep_id)
            if lane is None or not lane.queue:
                continue
            self._order.append(ep_id)
            if lane.in_flight >= self._cap(lane):
                continue
            pause_s = lane.paused_until - self._clock()
            if pause_s > 0:
                wait_s = pause_s if wait_s is None else min(wait_s, pause_s)
                continue
            place = self._isolation.place(lane.pace, self._in_flight, self._proven_waiting)
            if place is None:
                if lane.pace.demoted and not lane.waiting_for_slot:
                    lane.waiting_for_slot = True  # counted once per wait
                    self.slow_waits += 1
                continue
            if lane.bucket is not None and not lane.bucket.try_take():
                lane_wait = lane.bucket.wait_s()
                wait_s = lane_wait if wait_s is None else min(wait_s, lane_wait)
                if not lane.waiting_for_token:  # count each wait once, not each wake-up
                    lane.waiting_for_token = True
                    self.rate_limited_waits += 1
                continue
            return self._start(lane, place), None
        return None, wait_s

    def _others_busy(self, lane: Lane) -> bool:
        """Whether another endpoint is busy here (work queued or in flight, a pause...)."""
        return len(self._active) > (1 if lane.endpoint.id in self._active else 0)

    def _proven_waiting(self) -> bool:
        """Whether an endpoint that answers (and is not demoted) has a delivery queued that its
        own cap would let start."""
        for ep_id in self._order:
            lane = self._lanes.get(ep_id)
            if (
                lane is not None
                and lane.pace.latency_s is not None
                and not lane.pace.demoted
                and lane.in_flight < self._cap(lane)
            ):
                return True
        return False

    def _start(self, lane: Lane, place: str) -> tuple[Endpoint, Delivery]:
        delivery = lane.queue.popleft()
        if not lane.queue:
            self._order.remove(lane.endpoint.id)
        self._queued -= 1
        self._isolation.started(delivery.id, lane.endpoint.id, lane.pace, place)
        lane.waiting_for_token = lane.waiting_for_slot = False
        if lane.breaker is not None:
            lane.breaker.started()
        lane.in_flight += 1
        self._in_flight += 1
        return lane.endpoint, delivery

    def take_now(self) -> tuple[Endpoint, Delivery] | None:
        """The next delivery allowed to start right now, if any, for a finished attempt to go
        on with. When there is none, `next()` is woken to work out how long to wait."""
        picked, _ = self._pick()
        if picked is None:
            self._changed.set()
        return picked

    def done(
        self,
        endpoint_id: str,
        *,
        wake: bool = True,
        delivery_id: int | None = None,
        duration_s: float | None = None,
        responded: bool = False,
    ) -> None:
        """An attempt finished: free its slot. `wake=False` when the caller calls `take_now`
        next (which wakes `next()` if it takes nothing). `duration_s` (None: not attempted)
        and whether the receiver answered at all tell how the endpoint answers lately."""
        self._in_flight -= 1
        self._completions.tick()
        lane = self._lanes.get(endpoint_id)
        if delivery_id is None:
            delivery_id = self._isolation.oldest_of(endpoint_id)
        if delivery_id is not None:
            self._isolation.finished(
                delivery_id,
                lane.pace if lane is not None else Pace(),
                cap=lane.max_in_flight if lane is not None else 1,
                duration_s=duration_s,
                responded=responded,
            )
        if lane is not None:
            lane.in_flight -= 1
            if lane.in_flight == 0 and not lane.endpoint.enabled:
                self._forget_lane(endpoint_id)
        if wake:
            self._changed.set()
        if not self.hunger.is_set() and self.wants_claim():
            self.hunger.set()

    def wants_claim(self) -> bool:
        """Whether enough is free that a claim is worth a round trip: half the target, so
        claims come in batches rather than one per finished attempt; or a regular slot idle
        that nothing queued can take while the last claim left more due. Without the second,
        at start-up (a target of ten until attempts finish, endpoints that have not answered
        yet starting one attempt each) four of ten slots stayed idle until the first answers,
        about one receiver latency: most of what the latency-bound benchmark lost to the
        bare client. A claim that came back short (nothing more due) does not count, so finished
        attempts never set off one empty claim each."""
        regular = self._isolation.regular_in_use(self._in_flight)
        startable = self._startable()
        target = self._target()
        capacity = target - regular - startable
        if capacity * 2 >= target:
            return True
        idle = self._limits.concurrency - regular - startable
        return self.more_due and capacity > 0 and idle > 0

    def record(self, endpoint_id: str, ok: bool) -> tuple[State | None, float, list[Delivery]]:
        """Feed an attempt's result to the endpoint's breaker. When it opens, the lane is
        paused for the cool-down: returns (new state, seconds paused, queued deliveries to
        give back); otherwise (the state if it changed, 0, [])."""
        lane = self._lanes.get(endpoint_id)
        if lane is None or lane.breaker is None:
            return None, 0.0, []
        changed = lane.breaker.record(ok)
        if changed is not None:
            self._active.add(endpoint_id)
        if changed is not State.OPEN:
            return changed, 0.0, []
        cooldown_s = lane.breaker.open_for_s()
        return changed, cooldown_s, self.pause(endpoint_id, cooldown_s)

    def no_verdict(self, endpoint_id: str) -> None:
        """An attempt ended with a result that says nothing about the endpoint: if it was a
        half-open breaker's probe, let another attempt probe."""
        lane = self._lanes.get(endpoint_id)
        if lane is not None and lane.breaker is not None:
            lane.breaker.abandon_probe()
            self._changed.set()

    def breaker_states(self) -> dict[str, State]:
        return {ep: lane.breaker.state for ep, lane in self._lanes.items() if lane.breaker}

    def pause(self, endpoint_id: str, seconds: float) -> list[Delivery]:
        """Hold an endpoint back (429/503 Retry-After): no new attempts until then.
        Returns its queued deliveries, whose leases should go back rather than wait."""
        lane = self._lanes.get(endpoint_id)
        if lane is None:
            return []
        lane.paused_until = max(lane.paused_until, self._clock() + seconds)
        self._active.add(endpoint_id)
        self._changed.set()
        return self._drop_queue(lane)

    def forget(self, delivery_ids: Iterable[int]) -> list[Delivery]:
        """Drop queued deliveries whose lease this process lost (another daemon rescued
        them): they must not be attempted here. Returns those dropped."""
        lost = set(delivery_ids)
        dropped: list[Delivery] = []
        for lane in self._lanes.values():
            if not lane.queue or not any(d.id in lost for d in lane.queue):
                continue
            kept = [d for d in lane.queue if d.id not in lost]
            dropped += [d for d in lane.queue if d.id in lost]
            lane.queue = deque(kept)
            if not kept:
                self._order.remove(lane.endpoint.id)
        self._queued -= len(dropped)
        if dropped:
            self._changed.set()
        return dropped

    def drain_queued(self) -> list[Delivery]:
        """Take every delivery that was claimed but not started (shutdown)."""
        out: list[Delivery] = []
        for lane in self._lanes.values():
            out.extend(self._drop_queue(lane))
        return out

    def check_slow(self) -> None:
        """Attempts that have run past their endpoint's threshold move to the slow lane and
        demote it (isolation.py); call it every so often."""
        if self._isolation.check(lambda ep: lane.pace if (lane := self._lanes.get(ep)) else None):
            self._changed.set()

    def take_changes(self) -> list[Change]:
        """Endpoints demoted or restored since the last call (to log)."""
        return self._isolation.take_changes()

    def pace(self, endpoint_id: str) -> Pace | None:
        """How an endpoint answers lately, as this process saw it (None: not cached)."""
        lane = self._lanes.get(endpoint_id)
        return lane.pace if lane else None

    def endpoint_limits(self) -> dict[str, int]:
        """The in-flight limit of each endpoint busy here now (a metric)."""
        return {ep: self._cap(lane) for ep in self._active if (lane := self._lanes.get(ep))}

    @property
    def slow_lane_in_use(self) -> int:
        return self._isolation.slow_lane_in_use

    @property
    def demoted(self) -> int:
        return sum(1 for lane in self._lanes.values() if lane.pace.demoted)

    def take_slow_waits(self) -> int:
        count, self.slow_waits = self.slow_waits, 0
        return count

    def take_rate_limited_waits(self) -> int:
        """Rate-limited waits since the last call (for a Prometheus counter)."""
        count, self.rate_limited_waits = self.rate_limited_waits, 0
        return count

    @property
    def in_flight(self) -> int:
        return self._in_flight

    @property
    def queued(self) -> int:
        return self._queued


class _RateMeter:
    """Completions per second over a sliding window, for sizing prefetch."""

    def __init__(self, clock: Callable[[], float], window_s: float = 2.0) -> None:
        self._clock = clock
        self._window_s = window_s
        self._stamps: deque[float] = deque()

    def tick(self) -> None:
        self._stamps.append(self._clock())

    def per_s(self) -> float:
        horizon = self._clock() - self._window_s
        while self._stamps and self._stamps[0] < horizon:
            self._stamps.popleft()
        return len(self._stamps) / self._window_s
