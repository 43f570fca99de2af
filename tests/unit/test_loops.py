"""daemon/loops.py with a fake pause: backoff, periodic steps that survive expected errors,
and the task set that keeps references, reports failures and cancels on drain."""

from __future__ import annotations

import asyncio

import pytest
from structlog.testing import capture_logs

from daemon.errors import DatabaseUnavailable
from daemon.loops import Backoff, TaskSet, every, pause
from daemon.worker import _attempt_crashed


class FakePause:
    """Records each pause instead of waiting; ends the loop after `rounds` pauses."""

    def __init__(self, rounds: int) -> None:
        self.waits: list[float] = []
        self.woken_by: list[asyncio.Event | None] = []
        self._rounds = rounds

    async def __call__(self, seconds: float, wake: asyncio.Event | None = None) -> None:
        self.waits.append(seconds)
        self.woken_by.append(wake)
        if len(self.waits) >= self._rounds:
            raise asyncio.CancelledError


# -- Backoff --------------------------------------------------------------------------------


def test_backoff_doubles_after_each_failure_up_to_the_cap() -> None:
    backoff = Backoff(first_s=0.1, max_s=1.0)
    assert [backoff.failed() for _ in range(6)] == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]


def test_backoff_starts_again_from_the_first_wait_after_a_success() -> None:
    backoff = Backoff(first_s=0.1, max_s=5.0)
    backoff.failed()
    backoff.failed()
    assert backoff.delay_s == 0.4
    backoff.reset()
    assert backoff.failed() == 0.1


# -- every ----------------------------------------------------------------------------------


async def test_every_runs_the_step_then_waits_the_interval_read_each_round() -> None:
    intervals = iter([1.0, 2.0, 3.0])
    steps = 0

    async def step() -> None:
        nonlocal steps
        steps += 1

    fake = FakePause(rounds=3)
    with pytest.raises(asyncio.CancelledError):
        await every(lambda: next(intervals), step, pause=fake)
    assert (steps, fake.waits) == (3, [1.0, 2.0, 3.0])


async def test_every_with_wait_first_waits_before_the_first_step() -> None:
    order: list[str] = []

    async def step() -> None:
        order.append("step")

    class Recording(FakePause):
        async def __call__(self, seconds: float, wake: asyncio.Event | None = None) -> None:
            order.append("wait")
            await super().__call__(seconds, wake)

    with pytest.raises(asyncio.CancelledError):
        await every(lambda: 1.0, step, wait_first=True, pause=Recording(rounds=2))
    assert order == ["wait", "step", "wait"]


async def test_every_survives_the_errors_it_is_told_to_and_goes_on() -> None:
    calls = 0

    async def step() -> None:
        nonlocal calls
        calls += 1
        raise DatabaseUnavailable("down")

    fake = FakePause(rounds=3)
    with pytest.raises(asyncio.CancelledError):
        await every(lambda: 5.0, step, survive=(DatabaseUnavailable,), pause=fake)
    assert calls == 3 and fake.waits == [5.0, 5.0, 5.0]


async def test_every_ends_on_an_error_it_was_not_told_to_survive() -> None:
    async def step() -> None:
        raise RuntimeError("bug")

    fake = FakePause(rounds=10)
    with pytest.raises(RuntimeError, match="bug"):
        await every(lambda: 5.0, step, survive=(DatabaseUnavailable,), pause=fake)
    assert fake.waits == []


async def test_every_clears_its_wake_before_each_step_so_a_wake_during_a_step_counts() -> None:
    wake = asyncio.Event()
    seen: list[bool] = []

    async def step() -> None:
        seen.append(wake.is_set())
        wake.set()  # e.g. a reload while the step runs

    fake = FakePause(rounds=2)
    wake.set()
    with pytest.raises(asyncio.CancelledError):
        await every(lambda: 5.0, step, wake=wake, pause=fake)
    assert seen == [False, False]
    assert fake.woken_by == [wake, wake] and wake.is_set()


async def test_pause_returns_early_when_woken_and_after_the_time_otherwise() -> None:
    loop = asyncio.get_running_loop()
    wake = asyncio.Event()
    loop.call_later(0.01, wake.set)
    started = loop.time()
    await pause(30.0, wake)
    assert loop.time() - started < 5
    started = loop.time()
    await pause(0.01, asyncio.Event())
    await pause(0.01)
    assert loop.time() - started >= 0.02


# -- TaskSet --------------------------------------------------------------------------------


async def test_task_set_keeps_running_tasks_and_forgets_finished_ones() -> None:
    tasks = TaskSet(on_failure=lambda task, exc: None)
    release = asyncio.Event()
    tasks.spawn(release.wait())
    tasks.spawn(release.wait())
    await asyncio.sleep(0)
    assert len(tasks) == 2
    release.set()
    assert await tasks.drain(timeout_s=5) == 0
    assert len(tasks) == 0 and tasks.failures == 0


async def test_task_set_reports_and_counts_a_failed_task_so_nothing_is_left_unretrieved() -> None:
    failed: list[tuple[str, str]] = []

    async def boom() -> None:
        raise ValueError("broken")

    tasks = TaskSet(on_failure=lambda task, exc: failed.append((task.get_name(), str(exc))))
    tasks.spawn(boom(), name="attempt")
    assert await tasks.drain(timeout_s=5) == 0
    await asyncio.sleep(0)  # done callbacks run on the next turn of the loop
    assert failed == [("attempt", "broken")] and tasks.failures == 1


async def test_task_set_drain_cancels_what_outlives_the_deadline() -> None:
    cancelled = asyncio.Event()

    async def hang() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async def quick() -> None:
        await asyncio.sleep(0)

    tasks = TaskSet(on_failure=lambda task, exc: None)
    tasks.spawn(hang())
    tasks.spawn(quick())
    assert await tasks.drain(timeout_s=0.05) == 1
    assert cancelled.is_set() and len(tasks) == 0 and tasks.failures == 0


async def test_task_set_close_cancels_everything() -> None:
    tasks = TaskSet(on_failure=lambda task, exc: None)
    spawned = [tasks.spawn(asyncio.Event().wait()) for _ in range(3)]
    await tasks.close()
    assert all(t.cancelled() for t in spawned) and len(tasks) == 0


async def test_worker_attempt_crash_is_logged_under_its_event_name() -> None:
    async def boom() -> None:
        raise KeyError("x")

    with capture_logs() as logs:
        tasks = TaskSet(on_failure=_attempt_crashed)
        tasks.spawn(boom())
        await tasks.drain(timeout_s=5)
        await asyncio.sleep(0)
    assert [(e["event"], e["error"]) for e in logs] == [("worker.attempt_crashed", "KeyError: 'x'")]
