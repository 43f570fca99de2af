"""The lease book-keeping of one process: what it holds, for how long, and what it lost."""

from __future__ import annotations

from typing import Any

from structlog.testing import capture_logs

from daemon.errors import DatabaseUnavailable
from daemon.leases import LeaseKeeper, Leases, heartbeat_s
from daemon.models import Delivery


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def delivery(n: int, token: int, lease_s: float = 6.0) -> Delivery:
    return Delivery(n, "ep", f"msg_{n}", "t", b"{}", 1, 0.0, lease_token=token, lease_s=lease_s)


def test_a_lease_covers_an_attempt_only_while_it_lasts_long_enough() -> None:
    clock = Clock()
    leases = Leases(clock)
    d = delivery(1, token=7)
    leases.add([d], sent_at=100.0)
    assert leases.covers(d, 5.5)
    clock.now = 101.0
    assert not leases.covers(d, 5.5)  # 5 s left


def test_a_lease_is_measured_from_when_the_claim_was_sent_not_when_it_came_back() -> None:
    clock = Clock()
    leases = Leases(clock)
    d = delivery(1, token=7)
    clock.now = 103.0  # the claim took 3 s to come back
    leases.add([d], sent_at=100.0)
    assert leases.covers(d, 3.0) and not leases.covers(d, 3.1)


def test_a_renewal_extends_kept_leases_and_reports_the_lost_ones() -> None:
    clock = Clock()
    leases = Leases(clock)
    a, b = delivery(1, token=7), delivery(2, token=7)
    leases.add([a, b], sent_at=100.0)
    ids, tokens, seconds = leases.snapshot()
    assert (sorted(ids), tokens, seconds) == ([1, 2], [7, 7], [6.0, 6.0])
    clock.now = 104.0
    lost = leases.renewed(ids, tokens, kept=[1], sent_at=104.0)
    assert lost == [2]
    assert leases.covers(a, 5.9) and not leases.holds(b)


def test_a_lease_retaken_with_a_new_token_during_a_renewal_is_not_reported_lost() -> None:
    leases = Leases(Clock())
    old = delivery(1, token=7)
    leases.add([old], sent_at=100.0)
    ids, tokens, _ = leases.snapshot()
    # meanwhile its outcome was written (a retry) and this process claimed it again
    leases.drop([old])
    again = delivery(1, token=8)
    leases.add([again], sent_at=101.0)
    assert leases.renewed(ids, tokens, kept=[], sent_at=102.0) == []
    assert leases.holds(again) and not leases.holds(old)


def test_dropping_with_a_stale_token_keeps_the_current_lease() -> None:
    leases = Leases(Clock())
    current = delivery(1, token=8)
    leases.add([current], sent_at=100.0)
    leases.drop([delivery(1, token=7)])
    assert leases.holds(current) and len(leases) == 1


def test_the_heartbeat_is_a_third_of_the_margin_and_at_most_ten_seconds() -> None:
    assert heartbeat_s(3.0) == 1.0
    assert heartbeat_s(30.0) == 10.0
    assert heartbeat_s(3600.0) == 10.0


class RenewingStore:
    """Answers `renew_leases` with the rows still held by their token (`kept`), or fails."""

    def __init__(self, kept: set[int]) -> None:
        self.kept = kept
        self.error: Exception | None = None
        self.renewals: list[dict[str, Any]] = []

    async def fetch(self, name: str, **params: Any) -> list[dict[str, int]]:
        assert name == "renew_leases"
        self.renewals.append(params)
        if self.error is not None:
            raise self.error
        return [{"id": i} for i in params["delivery_ids"] if i in self.kept]


def keeper(store: RenewingStore, leases: Leases, lost: list[int], clock: Clock) -> LeaseKeeper:
    return LeaseKeeper(
        store,  # type: ignore[arg-type]
        leases,
        interval_s=lambda: 1.0,
        on_lost=lost.extend,
        clock=clock,
    )


async def test_a_beat_renews_what_is_held_and_hands_on_the_leases_another_daemon_took() -> None:
    clock = Clock()
    leases = Leases(clock)
    kept, rescued = delivery(1, 7), delivery(2, 7)
    leases.add([kept, rescued], sent_at=clock())
    store, lost = RenewingStore(kept={1}), []
    with capture_logs() as logs:
        await keeper(store, leases, lost, clock).beat()
    assert store.renewals[0]["delivery_ids"] == [1, 2]
    assert lost == [2] and leases.holds(kept) and not leases.holds(rescued)
    assert [(e["event"], e["count"]) for e in logs] == [("outbox.leases_lost", 1)]


async def test_a_failed_renewal_loses_nothing_and_the_keeper_is_unhealthy_until_one_works() -> None:
    clock = Clock()
    leases = Leases(clock)
    d = delivery(1, 7)
    leases.add([d], sent_at=clock())
    store, lost = RenewingStore(kept={1}), []
    lease_keeper = keeper(store, leases, lost, clock)
    store.error = DatabaseUnavailable("connection refused")
    await lease_keeper.beat()
    assert not lease_keeper.healthy and lost == [] and leases.holds(d)
    store.error = None
    await lease_keeper.beat()
    assert lease_keeper.healthy and lost == []
