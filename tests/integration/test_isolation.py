"""Slow and hanging receivers, on real sockets: they cannot take the slots of the endpoints that
answer, they keep being attempted, and a slow but healthy receiver is not punished."""

from __future__ import annotations

import asyncio
import time
from collections import Counter

from aiohttp import web
from structlog.testing import capture_logs

from tests.integration.conftest import DaemonFactory, Harness, Hit, Receiver

TIMEOUT_S = 2.0


def hang(receiver: Receiver, path: str) -> None:
    async def never(_hit: Hit, _n: int) -> web.Response:
        await asyncio.sleep(TIMEOUT_S * 2)  # past the timeout; the daemon gives up first
        return web.Response(text="too late")

    receiver.on(path, never)


async def feed(
    harness: Harness, endpoint_ids: list[str], per_s: float, seconds: float
) -> dict[str, float]:
    """One message at a time, round-robin over `endpoint_ids`; msg_id -> when it committed."""
    sent: dict[str, float] = {}
    start = time.monotonic()
    n = 0
    while time.monotonic() - start < seconds:
        msg_id = f"msg_feed_{n}"
        await harness.enqueue(endpoint_id=endpoint_ids[n % len(endpoint_ids)], msg_id=msg_id)
        sent[msg_id] = time.monotonic()
        n += 1
        await asyncio.sleep(max(0.0, start + n / per_s - time.monotonic()))
    return sent


def lags(receiver: Receiver, sent: dict[str, float]) -> list[float]:
    arrived = {h.headers["webhook-id"]: h.at for h in receiver.hits}
    return sorted(arrived[m] - t for m, t in sent.items() if m in arrived)


async def run_with_hanging(
    harness: Harness,
    receiver: Receiver,
    run_daemon: DaemonFactory,
    hanging: int,
    slow_lane: int,
    settle_s: float = 0.5,
) -> tuple[list[float], int, Counter[str], int]:
    """`hanging` endpoints that never answer, each with a backlog, beside 10 that answer at
    once and get 20 messages/s for 6 s after `settle_s`; concurrency 4. Healthy lags, how many
    healthy were sent, the hanging endpoints' attempts, and the most attempts the daemon had in
    flight at once (the receiver's own count would include requests it gave up on)."""
    hung = []
    for i in range(hanging):
        ep_id, _ = await harness.endpoint(receiver.url(f"/hang{i}"))
        hang(receiver, f"/hang{i}")
        await harness.enqueue_many(ep_id, 20)
        hung.append(ep_id)
    healthy = [(await harness.endpoint(receiver.url(f"/ok{i}")))[0] for i in range(10)]
    settings = {
        "concurrency": 4,
        "timeout_s": TIMEOUT_S,
        "slow_after_s": 0.3,
        "slow_lane": slow_lane,
        "retry_schedule_s": (0.1,) * 40,
    }
    most = 0
    async with run_daemon(delivery=settings, breaker={"enabled": False}) as service:

        async def watch() -> None:
            nonlocal most
            while True:
                most = max(most, service.scheduler.in_flight)
                await asyncio.sleep(0.01)

        watcher = asyncio.create_task(watch())
        await asyncio.sleep(settle_s)  # the hanging ones are claimed first and hold slots
        sent = await feed(harness, healthy, per_s=20, seconds=6.0)
        await receiver.wait_hits(len(sent), timeout_s=10)  # every healthy one arrived
        tried = Counter(h.path for h in receiver.hits if h.path.startswith("/hang"))
        watcher.cancel()
    return lags(receiver, sent), len(sent), tried, most


async def test_three_hanging_endpoints_leave_the_regular_slots_to_those_that_answer(
    harness: Harness, receiver: Receiver, run_daemon: DaemonFactory
) -> None:
    delays, sent, tried, most = await run_with_hanging(harness, receiver, run_daemon, 3, 8)
    assert len(delays) == sent
    assert delays[int(len(delays) * 0.99) - 1] < 0.5  # p99 (the timeout is 2 s)
    # each hanging endpoint stays in play: at least one attempt per timeout period
    assert all(tried[f"/hang{i}"] >= 6.5 / TIMEOUT_S - 1 for i in range(3)), tried
    assert most <= 4 + 8  # the cap, and the slow lane beside it


async def test_twenty_hanging_endpoints_each_keep_an_attempt_in_flight(
    harness: Harness, receiver: Receiver, run_daemon: DaemonFactory
) -> None:
    """It takes one slow attempt to know an endpoint hangs: twenty unknown ones take the four
    regular slots in turns, 0.3 s each, before all are found out (the settling time); then the
    regular slots are the healthy ones', and each hanging endpoint has an attempt in the slow
    lane."""
    delays, sent, tried, most = await run_with_hanging(
        harness, receiver, run_daemon, 20, 20, settle_s=4.0
    )
    assert len(delays) == sent
    assert delays[int(len(delays) * 0.99) - 1] < 0.5
    assert len(tried) == 20
    assert all(n >= 6.5 / TIMEOUT_S - 1 for n in tried.values()), tried
    assert most <= 4 + 20


async def test_with_a_strict_cap_hanging_endpoints_hold_half_the_slots_at_most(
    harness: Harness, receiver: Receiver, run_daemon: DaemonFactory
) -> None:
    """slow_lane = 0: nothing leaves the cap of 4. Attempts already running cannot be taken
    back (the first ones hold every slot until their timeout, and so may the next until they
    are known as slow); from then on the healthy keep two slots, so their lag stays far below
    the timeout."""
    delays, sent, _, most = await run_with_hanging(
        harness, receiver, run_daemon, 3, 0, settle_s=2 * TIMEOUT_S + 0.5
    )
    assert len(delays) == sent
    assert delays[int(len(delays) * 0.99) - 1] < 1.0
    assert most <= 4


async def test_a_slow_but_healthy_endpoint_alone_uses_its_whole_cap_and_is_never_demoted(
    harness: Harness, receiver: Receiver, run_daemon: DaemonFactory
) -> None:
    ep_id, _ = await harness.endpoint(receiver.url("/slowish"), max_in_flight=5)
    receiver.slow("/slowish", 0.5)
    await harness.enqueue_many(ep_id, 30)
    with capture_logs() as logs:
        async with run_daemon(delivery={"slow_after_s": 1.0}):  # answers take half that
            await harness.wait_status("delivered", 30, ep_id, timeout_s=20)
    assert receiver.max_in_flight == 5
    assert not [e for e in logs if e["event"] == "endpoint.demoted"]


async def test_an_endpoint_that_hangs_then_answers_is_demoted_then_restored(
    harness: Harness, receiver: Receiver, run_daemon: DaemonFactory
) -> None:
    ep_id, _ = await harness.endpoint(receiver.url("/flaky"), max_in_flight=3)

    async def first_hangs(_hit: Hit, n: int) -> web.Response:
        if n == 1:
            await asyncio.sleep(1.0)
        return web.Response(text="ok")

    receiver.on("/flaky", first_hangs)
    await harness.enqueue(endpoint_id=ep_id)
    with capture_logs() as logs:
        async with run_daemon(delivery={"slow_after_s": 0.3}) as service:
            await harness.wait_status("delivered", 1, ep_id)
            await harness.enqueue_many(ep_id, 12)
            await harness.wait_status("delivered", 13, ep_id)
            assert service.scheduler.demoted == 0
    events = [e["event"] for e in logs if e.get("endpoint") == ep_id]
    assert events.index("endpoint.demoted") < events.index("endpoint.restored")
