"""The recorder against real PostgreSQL: how outcomes are batched into statements."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import pytest

from daemon.models import AttemptResult, Delivery, Outcome
from daemon.recorder import Recorder
from tests.integration.conftest import Harness, claim, wait_until

DEAD_URL = "http://127.0.0.1:9/never"  # claimed by hand: nothing is sent


async def two_delivered(harness: Harness, busy: bool) -> list[int]:
    """Two outcomes put 50 ms apart; returns the sizes of the batches they were written in."""
    ep, _ = await harness.endpoint(DEAD_URL)
    await harness.enqueue_many(ep, 2)
    leased = [Delivery.from_record(r) for r in await claim(harness.store, [ep], [2], 2, 30.0, "i")]
    batches: list[int] = []

    def written(batch: Sequence[Outcome]) -> None:
        batches.append(len(batch))

    recorder = Recorder(
        harness.store,
        "i",
        linger_s=0.001,
        busy_linger_s=0.5,
        busy=lambda: busy,
        on_written=written,
    )
    task = asyncio.create_task(recorder.run())
    try:
        for d in leased:
            recorder.put(Outcome(d, AttemptResult(time.time(), 0.001, 200), None))
            await asyncio.sleep(0.05)

        async def both() -> bool:
            return sum(batches) == 2

        await wait_until(both, what="both outcomes written")
    finally:
        recorder.stop()
        await task
    rows = await harness.deliveries()
    assert {r["status"] for r in rows} == {"delivered"}
    return batches


@pytest.mark.parametrize(("busy", "expected"), [(True, [2]), (False, [1, 1])])
async def test_outcomes_are_written_together_while_attempts_run_and_at_once_when_idle(
    harness: Harness, busy: bool, expected: list[int]
) -> None:
    assert await two_delivered(harness, busy) == expected
