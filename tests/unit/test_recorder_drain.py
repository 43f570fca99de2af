"""The recorder's final drain with a fake store: outcomes buffered when the service stops are
written even while the database is away for a while, and what cannot be written by the
deadline is said, never silently dropped. (Writes against PostgreSQL: test_recorder.py.)"""

from __future__ import annotations

from typing import Any

from structlog.testing import capture_logs

from daemon.errors import DatabaseUnavailable
from daemon.models import AttemptResult, Delivery, Outcome
from daemon.recorder import Recorder


class AwayThenBack:
    """`record_outcomes` fails with DatabaseUnavailable `away` times, then succeeds."""

    def __init__(self, away: int) -> None:
        self.away = away
        self.written: list[list[int]] = []

    async def fetchval(self, name: str, **params: Any) -> None:
        assert name == "record_outcomes"
        if self.away:
            self.away -= 1
            raise DatabaseUnavailable("connection refused")
        self.written.append(list(params["delivery_ids"]))


def outcome(n: int) -> Outcome:
    delivery = Delivery(n, "ep", f"msg_{n}", "t", b"{}", 1, 0.0, lease_token=3, lease_s=35.0)
    return Outcome(delivery, AttemptResult(0.0, 0.01, 200), None)


def recorder(store: AwayThenBack, db_errors: list[str]) -> Recorder:
    return Recorder(store, "test", on_db_error=db_errors.append)  # type: ignore[arg-type]


async def test_the_final_drain_retries_while_the_database_is_away_and_writes_everything() -> None:
    store, db_errors = AwayThenBack(away=2), []
    rec = recorder(store, db_errors)
    for n in (1, 2, 3):
        rec.put(outcome(n))
    rec.stop()
    assert await rec.drain(timeout_s=5.0)
    assert store.written == [[1, 2, 3]] and rec.pending == 0
    assert db_errors == ["record", "record"] and rec.healthy


async def test_what_the_drain_cannot_write_by_its_deadline_is_reported() -> None:
    store, db_errors = AwayThenBack(away=1_000), []
    rec = recorder(store, db_errors)
    rec.put(outcome(1))
    rec.stop()
    with capture_logs() as logs:
        assert not await rec.drain(timeout_s=0.2)
    assert store.written == [] and rec.pending == 1 and not rec.healthy
    assert [e["count"] for e in logs if e["event"] == "recorder.unwritten_at_exit"] == [1]
