"""An attempt's bookkeeping (its slot, its outcome) survives a failure in observing it."""

from __future__ import annotations

from typing import Any

import pytest

from daemon.worker import Worker
from tests.integration.conftest import DaemonFactory, Harness, Receiver


async def test_a_failing_log_line_loses_neither_the_slot_nor_the_outcome(
    harness: Harness,
    receiver: Receiver,
    run_daemon: DaemonFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Once, a BrokenPipeError from the attempt's log line left its slot taken forever:
    6 of 30 delivered, 5 slots stuck in flight, the rest pending, /readyz still ready."""

    def observe_fails(*_args: Any) -> None:
        raise BrokenPipeError(32, "Broken pipe")

    monkeypatch.setattr(Worker, "_observe", observe_fails)
    endpoint_id, _ = await harness.endpoint(receiver.url("/hook"))
    await harness.enqueue_many(endpoint_id, 30)

    async with run_daemon(delivery={"concurrency": 4}) as service:
        delivered = await harness.wait_status("delivered", 30, timeout_s=15)
        assert service.scheduler.in_flight == 0

    assert len(delivered) == 30
    assert {r["status"] for r in await harness.deliveries()} == {"delivered"}
    assert len(receiver.hits) == 30
