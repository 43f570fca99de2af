"""Keeps slow and hanging endpoints off the slots everyone else needs. Pure; clock injected.

With a cap of 10 attempts in flight and a 30 s timeout, two receivers that hang used to hold
every slot for 30 s at a time, and everyone else waited. The policy:

- An attempt is *slow* once it has run longer than its endpoint's threshold: five times the
  endpoint's usual latency (an average of its recent answers), and never less than
  `delivery.slow_after` (2 s). A receiver answering in 1 s every time is never slow; one that
  hangs is found out after 2 s, not after its 30 s timeout.
- A slow attempt leaves its regular slot for the **slow lane** (`delivery.slow_lane` slots, 20
  by default), so it no longer counts against `delivery.concurrency`, and its endpoint is
  **demoted**. (With `slow_lane = 0` nothing leaves the cap: slow attempts keep their slot.)
- A demoted endpoint starts new attempts in the slow lane, and only as many at once as its
  limit: 1 at first, one more after each answer within its threshold, halved by each slow one
  or timeout (additive increase, multiplicative decrease). When the slow lane is full it may
  use regular slots, but demoted endpoints together hold at most half of them: the other half
  stays with the responsive endpoints.
- Once its limit is back at its usual cap, the endpoint is **restored**.
- An endpoint that has not answered yet may be one that hangs (it takes one slow attempt to
  find out): while others are busy it starts one attempt at a time until its first
  answer (a slow start), and such endpoints together hold at most half of the regular slots
  while one that answers has work waiting. Its attempt leaves its regular slot for the slow
  lane early, once it has run five times the usual latency of the answers seen here (at least
  half a second, at most its threshold), without demoting it: at start-up, when no endpoint
  has answered yet, endpoints that hang would otherwise hold every regular slot until their
  threshold, and the ones that answer in milliseconds would wait that long.

So k hanging endpoints keep one attempt each in flight (while the slow lane has room), move
through their retry schedule and end as dead letters, and every regular slot but the first
few seconds' stays with the endpoints that answer.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

SLOW_FACTOR = 5.0  # an attempt is slow past this many times its endpoint's usual latency
LATENCY_WEIGHT = 0.3  # of each new answer in the endpoint's usual latency
PROBE_FLOOR_S = 0.5  # an unproven endpoint's attempt keeps its regular slot at least this long


@dataclass(frozen=True)
class IsolationSettings:
    concurrency: int = 10
    slow_lane: int = 20
    slow_after_s: float = 2.0


@dataclass
class Pace:
    """How an endpoint answers lately, as this process saw it."""

    latency_s: float | None = None  # usual time to an answer (None: none seen yet)
    demoted: bool = False
    limit: int = 1  # attempts at once while demoted


@dataclass
class _Running:
    endpoint_id: str
    started: float
    slow_at: float
    in_slow_lane: bool
    in_share: bool  # a demoted endpoint's attempt in a regular slot
    unproven: bool  # of an endpoint that had not answered yet, in a regular slot
    leave_at: float = math.inf  # when an unproven attempt leaves its regular slot
    slow: bool = False


@dataclass(frozen=True)
class Change:
    """An endpoint demoted or restored (logged and counted by the service)."""

    endpoint_id: str
    demoted: bool
    after_s: float = 0.0  # how long the attempt that demoted it had run
    threshold_s: float = 0.0


@dataclass
class Isolation:
    """The slot accounting of the policy above, keyed by delivery id."""

    settings: IsolationSettings
    clock: Callable[[], float]
    _running: dict[int, _Running] = field(default_factory=dict)
    slow_lane_in_use: int = 0
    share_in_use: int = 0
    unproven_in_use: int = 0
    held_back: int = 0  # starts of demoted endpoints refused for want of a slot
    changes: list[Change] = field(default_factory=list)
    typical_s: float | None = None  # the usual latency of every answer seen here

    def threshold_s(self, pace: Pace) -> float:
        usual = 0.0 if pace.latency_s is None else SLOW_FACTOR * pace.latency_s
        return max(self.settings.slow_after_s, usual)

    def share(self) -> int:
        """Regular slots demoted endpoints may hold together."""
        return math.ceil(self.settings.concurrency / 2)

    def regular_in_use(self, in_flight: int) -> int:
        return in_flight - self.slow_lane_in_use

    def room(self, in_flight: int) -> bool:
        """Whether anything at all may start."""
        return (
            self.regular_in_use(in_flight) < self.settings.concurrency
            or self.slow_lane_in_use < self.settings.slow_lane
        )

    def place(self, pace: Pace, in_flight: int, proven_waiting: Callable[[], bool]) -> str | None:
        """Where a new attempt of this endpoint would run: "regular", "slow", or nowhere. An
        endpoint that has not answered yet may be one that hangs: those together get at most
        half the regular slots while an endpoint that answers has work waiting."""
        regular_free = self.regular_in_use(in_flight) < self.settings.concurrency
        if not pace.demoted and pace.latency_s is None:
            if regular_free and (self.unproven_in_use < self.share() or not proven_waiting()):
                return "regular"
            return None
        if not pace.demoted:
            return "regular" if regular_free else None
        if self.slow_lane_in_use < self.settings.slow_lane:
            return "slow"
        if regular_free and self.share_in_use < self.share():
            return "regular"
        self.held_back += 1
        return None

    def started(self, delivery_id: int, endpoint_id: str, pace: Pace, place: str) -> None:
        now = self.clock()
        in_slow_lane = place == "slow"
        in_share = pace.demoted and not in_slow_lane
        unproven = not pace.demoted and pace.latency_s is None and not in_slow_lane
        self.slow_lane_in_use += in_slow_lane
        self.share_in_use += in_share
        self.unproven_in_use += unproven
        slow_at = now + self.threshold_s(pace)
        self._running[delivery_id] = _Running(
            endpoint_id,
            now,
            slow_at,
            in_slow_lane,
            in_share,
            unproven,
            leave_at=min(slow_at, now + self._probe_s()) if unproven else math.inf,
        )

    def _probe_s(self) -> float:
        """How long an unproven endpoint's attempt may hold a regular slot: five times the
        usual latency of the answers seen here, at least PROBE_FLOOR_S."""
        usual = 0.0 if self.typical_s is None else SLOW_FACTOR * self.typical_s
        return max(PROBE_FLOOR_S, usual)

    def _release(self, running: _Running) -> None:
        self.slow_lane_in_use -= running.in_slow_lane
        self.share_in_use -= running.in_share
        self.unproven_in_use -= running.unproven

    def oldest_of(self, endpoint_id: str) -> int | None:
        """The delivery id of an endpoint's longest running attempt (for a caller that did not
        say which of them finished)."""
        return next((d for d, r in self._running.items() if r.endpoint_id == endpoint_id), None)

    def finished(
        self,
        delivery_id: int,
        pace: Pace,
        *,
        cap: int,
        duration_s: float | None,
        responded: bool,
    ) -> None:
        """An attempt ended. Every answer counts towards the endpoint's usual latency (so the
        threshold follows an endpoint that is slow but answers); one within the threshold
        raises a demoted endpoint's limit; an attempt that ran past it (a slow answer, a
        timeout) demotes it."""
        running = self._running.pop(delivery_id, None)
        if running is None:
            return
        self._release(running)
        if duration_s is None:  # not attempted (given back): says nothing
            return
        threshold_s = self.threshold_s(pace)
        if responded:  # every answer teaches its usual latency, a slow one too
            pace.latency_s = _weighed(pace.latency_s, duration_s)
            self.typical_s = _weighed(self.typical_s, duration_s)
        if responded and duration_s < threshold_s:
            if pace.demoted:
                pace.limit += 1
                if pace.limit >= cap:
                    pace.demoted = False
                    self.changes.append(Change(running.endpoint_id, demoted=False))
        elif duration_s >= threshold_s and not running.slow:  # ended before `check` saw it
            self._demote(running, pace, duration_s)
        # a quick failure without an answer (refused, unreachable) says nothing about pace:
        # the breaker and the retry schedule deal with those

    def check(self, paces: Callable[[str], Pace | None]) -> bool:
        """Attempts that have run past their threshold: each demotes its endpoint and moves to
        the slow lane while it has room. True when a regular slot was freed."""
        now = self.clock()
        freed = False
        for running in self._running.values():
            if running.unproven and now >= running.leave_at and not running.slow:
                freed |= self._leave_early(running)
            if running.slow or now < running.slow_at:
                continue
            running.slow = True
            pace = paces(running.endpoint_id)
            if pace is not None:
                self._demote(running, pace, now - running.started)
            if running.in_slow_lane:
                continue
            if running.unproven:
                running.unproven = False
                self.unproven_in_use -= 1
            if self.slow_lane_in_use < self.settings.slow_lane:
                running.in_slow_lane = True
                self.slow_lane_in_use += 1
                if running.in_share:
                    running.in_share = False
                    self.share_in_use -= 1
                freed = True
            elif not running.in_share:
                # it keeps its regular slot, now as a demoted endpoint's: its endpoint (and
                # the other demoted ones) start nothing more there while the share is spent
                running.in_share = True
                self.share_in_use += 1
        return freed

    def _leave_early(self, running: _Running) -> bool:
        """An unproven endpoint's attempt past its probe time: to the slow lane, if it has
        room, its endpoint not demoted (that waits for its threshold). True if it moved."""
        if self.slow_lane_in_use >= self.settings.slow_lane:
            return False
        running.unproven = False
        self.unproven_in_use -= 1
        running.in_slow_lane = True
        self.slow_lane_in_use += 1
        return True

    def next_check_s(self) -> float | None:
        """Seconds until the next running attempt becomes slow (or, unproven, leaves its
        regular slot), if any is running."""
        pending = [
            min(r.slow_at, r.leave_at) if r.unproven else r.slow_at
            for r in self._running.values()
            if not r.slow
        ]
        return max(0.0, min(pending) - self.clock()) if pending else None

    def _demote(self, running: _Running, pace: Pace, after_s: float) -> None:
        if pace.demoted:
            pace.limit = max(1, pace.limit // 2)
            return
        pace.demoted, pace.limit = True, 1
        self.changes.append(
            Change(running.endpoint_id, True, after_s, running.slow_at - running.started)
        )

    def take_changes(self) -> list[Change]:
        changes, self.changes = self.changes, []
        return changes


def _weighed(usual: float | None, latest: float) -> float:
    """An average that follows recent answers (LATENCY_WEIGHT of each new one)."""
    return latest if usual is None else (1 - LATENCY_WEIGHT) * usual + LATENCY_WEIGHT * latest
