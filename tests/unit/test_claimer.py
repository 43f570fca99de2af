"""The claimer with a fake store and a real scheduler: what it does with a claim PostgreSQL
refuses, with a database that is away, and with the leases it takes. The claim statement
itself is tested against PostgreSQL in tests/integration/test_outbox.py and test_due_claims.py.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Sequence
from typing import Any

from structlog.testing import capture_logs

from daemon.config import Config
from daemon.errors import DatabaseUnavailable
from daemon.leases import Leases
from daemon.models import Delivery, Endpoint
from daemon.outbox import Claimer
from daemon.scheduler import Limits, Scheduler
from daemon.store import StoreError
from tests.unit.conftest import FakeClock
from tests.unit.scheduler_support import endpoint

CONFIG = Config()


def claimed_row(delivery_id: int, endpoint_id: str) -> dict[str, Any]:
    """A row as the claim statement returns it for one leased delivery."""
    return {
        "id": delivery_id,
        "endpoint_id": endpoint_id,
        "msg_id": f"msg_{delivery_id}",
        "event_type": "test.event",
        "payload": "{}",
        "attempts": 0,
        "created_at": dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
        "attempt_base": 0,
        "lease_token": 7,
        "payload_bytes": 2,
        "ordering_key": None,
        "lease_s": 35.0,
        "endpoint_version": 1,
        "rate_limited": 0,
    }


class FakeStore:
    """Answers the claimer's named queries: `claims` maps the endpoint a claim is limited to
    (None: the ordinary claim of every due endpoint) to its rows or the error it raises."""

    def __init__(self) -> None:
        self.claims: dict[str | None, list[dict[str, Any]] | Exception] = {None: []}
        self.due: list[str] = []
        self.down: DatabaseUnavailable | None = None
        self.calls: list[tuple[str, dict[str, Any]]] = []

    def _called(self, name: str, params: dict[str, Any]) -> None:
        self.calls.append((name, params))
        if self.down is not None:
            raise self.down

    async def fetch(self, name: str, **params: Any) -> list[dict[str, Any]]:
        self._called(name, params)
        if name == "claim":
            answer = self.claims.get(params["only_endpoint_id"], [])
            if isinstance(answer, Exception):
                raise answer
            return answer
        if name == "due_endpoints":
            return [{"endpoint_id": ep} for ep in self.due]
        return []  # rescue_expired: nothing expired

    async def fetchval(self, name: str, **params: Any) -> int:
        self._called(name, params)
        return 0  # absorb_wakes: none left

    async def fetchrow(self, name: str, **params: Any) -> None:
        self._called(name, params)
        return None  # next_due_at: nothing due; release_held_sweep: nothing held

    def claim_calls(self) -> list[dict[str, Any]]:
        return [params for name, params in self.calls if name == "claim"]


def make_claimer(
    store: FakeStore, known: Sequence[Endpoint]
) -> tuple[Claimer, Scheduler, Leases, list[str]]:
    scheduler = Scheduler(Limits(concurrency=4, endpoint_max_in_flight=2), FakeClock())
    leases = Leases()
    db_errors: list[str] = []

    async def fetch_endpoints(ids: Sequence[str]) -> tuple[dict[str, Endpoint], dict[str, str]]:
        found = {e.id: e for e in known if e.id in ids}
        return found, {ep: "deleted" for ep in ids if ep not in found}

    claimer = Claimer(
        store,  # type: ignore[arg-type]
        scheduler,
        instance="test",
        config=lambda: CONFIG,
        fetch_endpoints=fetch_endpoints,
        leases=leases,
        on_db_error=db_errors.append,
    )
    return claimer, scheduler, leases, db_errors


async def test_claimed_deliveries_are_leased_and_handed_to_the_scheduler() -> None:
    store = FakeStore()
    store.claims[None] = [claimed_row(1, "ep_a"), claimed_row(2, "ep_a")]
    claimer, scheduler, leases, _ = make_claimer(store, [endpoint("ep_a")])
    await claimer._cycle()
    assert scheduler.queued == 2 and len(leases) == 2
    assert leases.holds(Delivery.from_record(claimed_row(1, "ep_a")))


async def test_a_claim_refused_because_of_one_endpoint_leaves_out_only_that_endpoint() -> None:
    store = FakeStore()
    store.claims[None] = StoreError("numeric field overflow", "22003")
    store.claims["ep_bad"] = StoreError("numeric field overflow", "22003")
    store.claims["ep_good"] = [claimed_row(1, "ep_good")]
    store.due = ["ep_bad", "ep_good"]
    claimer, scheduler, _, _ = make_claimer(store, [endpoint("ep_good")])
    with capture_logs() as logs:
        await claimer._cycle()
    assert scheduler.queued == 1  # the good endpoint's delivery goes on
    assert [(e["event"], e["endpoint"]) for e in logs if "endpoint" in e] == [
        ("outbox.endpoint_quarantined", "ep_bad")
    ]
    store.calls.clear()
    store.claims[None] = []  # whatever the next claim would find
    await claimer._cycle()
    [claim] = store.claim_calls()  # the next claim leaves the refused endpoint out
    quotas = dict(zip(claim["local_ids"], claim["local_quotas"], strict=True))
    assert quotas["ep_bad"] == 0


async def test_a_claim_refused_for_every_endpoint_is_not_blamed_on_one() -> None:
    store = FakeStore()
    refusal = StoreError("permission denied", "42501")
    store.claims = {None: refusal, "ep_a": refusal, "ep_b": refusal}
    store.due = ["ep_a", "ep_b"]
    claimer, _, _, _ = make_claimer(store, [])
    with capture_logs() as logs:
        try:
            await claimer._cycle()
        except StoreError as exc:
            assert exc is refusal
        else:
            raise AssertionError("the refusal was swallowed")
    assert not [e for e in logs if e["event"] == "outbox.endpoint_quarantined"]


async def test_a_database_away_makes_the_claimer_unhealthy_back_off_and_recover() -> None:
    store = FakeStore()
    store.down = DatabaseUnavailable("connection refused")
    claimer, _, _, db_errors = make_claimer(store, [])
    with capture_logs() as logs:
        task = asyncio.create_task(claimer.run())
        try:
            await asyncio.sleep(0.4)  # 0.1 s, then 0.2 s, then 0.4 s between tries
            assert not claimer.healthy
            store.down = None
            for _ in range(100):
                if claimer.healthy:
                    break
                await asyncio.sleep(0.05)
        finally:
            claimer.stop()
            await asyncio.wait_for(task, 5)
    assert claimer.healthy
    waits = [e["retry_in_s"] for e in logs if e["event"] == "outbox.database_unavailable"]
    assert waits[:2] == [0.1, 0.2] and len(waits) == len(db_errors) >= 2
    assert set(db_errors) == {"claim"}


async def test_a_claim_refused_with_no_endpoint_to_blame_backs_off_and_stays_healthy() -> None:
    store = FakeStore()
    store.claims[None] = StoreError("out of shared memory", "53200")
    claimer, _, _, db_errors = make_claimer(store, [])
    with capture_logs() as logs:
        task = asyncio.create_task(claimer.run())
        try:
            await asyncio.sleep(0.4)
        finally:
            claimer.stop()
            await asyncio.wait_for(task, 5)
    waits = [e["retry_in_s"] for e in logs if e["event"] == "outbox.claim_failed"]
    assert waits[:2] == [0.1, 0.2]
    assert claimer.healthy  # the database answers: /readyz stays ready
    assert set(db_errors) == {"claim"}
    assert not [e for e in logs if e["event"] == "outbox.endpoint_quarantined"]
