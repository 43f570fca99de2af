"""The daemon's repeated shapes of waiting, written once: a backoff after failures, a step run
every N seconds that survives the errors it expects, and a set of background tasks that keeps
their references and reports their failures.

Time is injected (`Pause`), so each is unit-tested without waiting (tests/unit/test_loops.py).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, NoReturn, Protocol


class Backoff:
    """Exponential backoff: `failed()` gives the wait before the next try (`first_s`, doubled
    after each failure up to `max_s`); `reset()` after a success starts again from `first_s`."""

    def __init__(self, first_s: float = 0.1, max_s: float = 5.0) -> None:
        self._first_s = first_s
        self._max_s = max_s
        self.delay_s = first_s  # the wait the next failure gets

    def failed(self) -> float:
        delay_s = self.delay_s
        self.delay_s = min(delay_s * 2, self._max_s)
        return delay_s

    def reset(self) -> None:
        self.delay_s = self._first_s


class Pause(Protocol):
    """Wait `seconds`, or until `wake` is set if one is given."""

    async def __call__(self, seconds: float, wake: asyncio.Event | None = None) -> None: ...


async def pause(seconds: float, wake: asyncio.Event | None = None) -> None:
    """Wait `seconds`, or until `wake` is set if one is given (the real clock)."""
    if wake is None:
        await asyncio.sleep(seconds)
        return
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(wake.wait(), timeout=seconds)


async def every(
    interval_s: Callable[[], float],
    step: Callable[[], Awaitable[object]],
    *,
    wake: asyncio.Event | None = None,
    survive: tuple[type[Exception], ...] = (),
    wait_first: bool = False,
    pause: Pause = pause,
) -> NoReturn:
    """Run `step` every `interval_s()` seconds (read each round, so a reload applies at once)
    until cancelled. Errors of the `survive` types skip the round; any other ends the loop (a
    supervised side task, so the service stops loudly). Setting `wake` runs the next round at
    once; it is cleared before each step, so a wake during a step is not lost."""
    if wait_first:
        await pause(interval_s(), wake)
    while True:
        if wake is not None:
            wake.clear()
        with contextlib.suppress(*survive):
            await step()
        await pause(interval_s(), wake)


class TaskSet:
    """Background tasks whose references are kept until they finish (asyncio keeps only weak
    ones). A task that fails is counted and handed to `on_failure`, so its exception is always
    retrieved; `drain` waits for the running ones up to a deadline and cancels the rest."""

    def __init__(self, on_failure: Callable[[asyncio.Task[None], BaseException], None]) -> None:
        self._tasks: set[asyncio.Task[None]] = set()
        self._on_failure = on_failure
        self.failures = 0

    def spawn(self, coro: Coroutine[Any, Any, None], name: str | None = None) -> asyncio.Task[None]:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._finished)
        return task

    def _finished(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            self.failures += 1
            self._on_failure(task, exc)

    def __len__(self) -> int:
        return len(self._tasks)

    async def drain(self, timeout_s: float) -> int:
        """Let the running tasks finish up to `timeout_s`, cancel the rest and wait for them to
        end; returns how many were cancelled."""
        if not self._tasks:
            return 0
        _, pending = await asyncio.wait(set(self._tasks), timeout=timeout_s)
        await self._cancel(pending)
        return len(pending)

    async def close(self) -> None:
        """Cancel every task and wait for them to end."""
        await self._cancel(set(self._tasks))

    async def _cancel(self, tasks: set[asyncio.Task[None]]) -> None:
        for task in tasks:
            task.cancel()
        for task in tasks:
            # a failure other than the cancellation was handed to on_failure already
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks -= tasks  # ended: not left for their done callbacks' turn of the loop
