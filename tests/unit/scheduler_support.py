"""Scheduler test helpers shared by the unit tests: endpoints, deliveries, and taking what the
scheduler lets start (`next()` waits in real time for the fake clock to allow something)."""

from __future__ import annotations

import asyncio

from daemon.models import Delivery, Endpoint
from daemon.scheduler import Scheduler

NOTHING_S = 0.1  # how long next() must stay blocked to count as "nothing may start"


def endpoint(ep_id: str, **kw: object) -> Endpoint:
    return Endpoint(
        id=ep_id,
        tenant_id="t",
        url=f"https://example.com/{ep_id}",
        enabled=True,
        secret="whsec_x",
        **kw,  # type: ignore[arg-type]
    )


_ids = iter(range(1, 1_000_000))


def deliveries(ep_id: str, count: int) -> list[Delivery]:
    out = []
    for _ in range(count):
        n = next(_ids)
        out.append(Delivery(n, ep_id, f"msg_{n}", "test.event", b"{}", 1, 0.0))
    return out


def answered(s: Scheduler, endpoint_id: str) -> None:
    """As if the endpoint had answered before: no slow start (tested in test_isolation.py)."""
    pace = s.pace(endpoint_id)
    assert pace is not None
    pace.latency_s = 0.01


async def take(s: Scheduler, wait_s: float = NOTHING_S) -> tuple[Endpoint, Delivery] | None:
    """The next delivery allowed to start, or None if nothing may start now."""
    try:
        return await asyncio.wait_for(s.next(), wait_s)
    except TimeoutError:
        return None


async def take_all(s: Scheduler) -> list[Delivery]:
    """Everything that may start now, without finishing any of it."""
    out = []
    while (picked := await take(s)) is not None:
        out.append(picked[1])
    return out
