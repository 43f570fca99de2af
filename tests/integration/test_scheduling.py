"""Scheduling as a receiver sees it: global and per-endpoint caps, token buckets, Retry-After
pauses, and a dead endpoint next to a healthy one.

Timing checks are lower bounds, or bucket conformance with a tolerance of one token: a loaded
machine can make things late, never early.
"""

from __future__ import annotations

import email.utils
import math
import time

import pytest
from aiohttp import web

from tests.integration.conftest import DaemonFactory, Harness, Hit, Receiver, Responder

TOLERANCE_S = 0.03


def arrivals(receiver: Receiver, path: str) -> list[float]:
    return [hit.at for hit in receiver.at(path)]


# -- the global cap -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("delivery", "messages_per_endpoint", "cap"),
    [({}, 10, 10), ({"concurrency": 3}, 5, 3)],
    ids=["default-10", "concurrency-3"],
)
async def test_global_cap_is_reached_and_never_exceeded_at_the_receiver(
    harness: Harness,
    receiver: Receiver,
    run_daemon: DaemonFactory,
    delivery: dict[str, int],
    messages_per_endpoint: int,
    cap: int,
) -> None:
    for i in range(4):  # each endpoint alone could take every slot
        receiver.slow(f"/ep{i}", 0.3)
        ep_id, _ = await harness.endpoint(receiver.url(f"/ep{i}"), max_in_flight=10)
        await harness.enqueue_many(ep_id, messages_per_endpoint)
    async with run_daemon(delivery=delivery):
        await harness.wait_status("delivered", 4 * messages_per_endpoint, timeout_s=15)
    assert receiver.max_in_flight == cap


async def test_endpoint_max_in_flight_is_observed_at_the_receiver(
    harness: Harness, receiver: Receiver, run_daemon: DaemonFactory
) -> None:
    receiver.slow("/two", 0.3)
    ep_id, _ = await harness.endpoint(receiver.url("/two"), max_in_flight=2)
    await harness.enqueue_many(ep_id, 10)
    async with run_daemon():
        await harness.wait_status("delivered", 10)
    assert receiver.max_in_flight == 2


# -- the token bucket ---------------------------------------------------------------------


async def test_rate_limited_arrivals_fit_the_token_bucket(
    harness: Harness, receiver: Receiver, run_daemon: DaemonFactory
) -> None:
    rate_per_s, burst, count = 10.0, 3, 15
    ep_id, _ = await harness.endpoint(receiver.url("/rl"), rate_per_s=rate_per_s, burst=burst)
    await harness.enqueue_many(ep_id, count)
    async with run_daemon():
        await harness.wait_status("delivered", count)
    t = arrivals(receiver, "/rl")
    assert len(t) == count

    # Any window [t_i, t_j] holds at most what a full bucket plus its refill allows,
    # give or take one token for the time a request spends between dispatch and arrival.
    for i in range(count):
        for j in range(i + 1, count):
            allowed = burst + rate_per_s * (t[j] - t[i]) + 1
            assert j - i + 1 <= allowed, f"hits {i}..{j} came {t[j] - t[i]:.3f}s apart"
    # The bucket starts full: the first `burst` go together, sooner than refills would allow.
    assert t[burst - 1] - t[0] < (burst - 1) / rate_per_s
    assert t[-1] - t[0] >= (count - burst) / rate_per_s - TOLERANCE_S


# -- Retry-After --------------------------------------------------------------------------


def busy_once(status: int, retry_after: str) -> Responder:
    def respond(hit: Hit, n: int) -> web.Response:
        if n == 1:
            return web.Response(status=status, headers={"Retry-After": retry_after})
        return web.Response(text="ok")

    return respond


async def assert_retried_after(
    harness: Harness, receiver: Receiver, path: str, status: int, wait_s: float
) -> None:
    """One busy answer, then a success no sooner than `wait_s` later; both attempts logged."""
    [row] = await harness.wait_status("delivered", 1)
    first, second = arrivals(receiver, path)
    assert second - first >= wait_s - TOLERANCE_S
    attempts = await harness.attempts(row["id"])
    assert [a["status_code"] for a in attempts] == [status, 200]
    assert attempts[0]["error_class"] == f"http_{status}"


async def test_429_with_retry_after_seconds_delays_the_retry(
    harness: Harness, receiver: Receiver, run_daemon: DaemonFactory
) -> None:
    receiver.on("/busy", busy_once(429, "1"))
    ep_id, _ = await harness.endpoint(receiver.url("/busy"))
    async with run_daemon():
        await harness.enqueue(endpoint_id=ep_id)
        await assert_retried_after(harness, receiver, "/busy", 429, 1.0)


async def test_503_with_retry_after_http_date_delays_the_retry_until_then(
    harness: Harness, receiver: Receiver, run_daemon: DaemonFactory
) -> None:
    first: dict[str, float] = {}

    def respond(hit: Hit, n: int) -> web.Response:
        if n == 1:
            first["seen"] = time.time()  # no earlier than the hit's arrival
            # A whole second (HTTP-dates have no fraction), about two seconds ahead.
            first["retry_at"] = math.ceil(first["seen"] + 1.5)
            date = email.utils.formatdate(first["retry_at"], usegmt=True)
            return web.Response(status=503, headers={"Retry-After": date})
        return web.Response(text="ok")

    receiver.on("/maint", respond)
    ep_id, _ = await harness.endpoint(receiver.url("/maint"))
    async with run_daemon():
        await harness.enqueue(endpoint_id=ep_id)
        await harness.wait_status("delivered", 1)  # so the responder has run
        wait_s = first["retry_at"] - first["seen"]
        assert wait_s >= 1.5
        await assert_retried_after(harness, receiver, "/maint", 503, wait_s)


async def test_retry_after_is_bounded_by_max_retry_after(
    harness: Harness, receiver: Receiver, run_daemon: DaemonFactory
) -> None:
    receiver.on("/slowdown", busy_once(429, "3600"))
    ep_id, _ = await harness.endpoint(receiver.url("/slowdown"))
    async with run_daemon(ratelimit={"max_retry_after_s": 0.5}):
        await harness.enqueue(endpoint_id=ep_id)
        # Delivered within wait_status's 10 s: not an hour later.
        await assert_retried_after(harness, receiver, "/slowdown", 429, 0.5)


async def test_paused_endpoint_does_not_hold_up_other_endpoints(
    harness: Harness, receiver: Receiver, run_daemon: DaemonFactory
) -> None:
    receiver.on("/paused", lambda hit, n: web.Response(status=429, headers={"Retry-After": "3600"}))
    paused_id, _ = await harness.endpoint(receiver.url("/paused"), max_in_flight=1)
    other_id, _ = await harness.endpoint(receiver.url("/other"))
    await harness.enqueue_many(paused_id, 3)
    async with run_daemon():
        await receiver.wait_hits(1, "/paused")
        await harness.enqueue_many(other_id, 10)
        await harness.wait_status("delivered", 10, other_id)
        # The paused endpoint's claimed-but-unstarted delivery went back to the outbox.
        await harness.wait_status("pending", 3, paused_id)
    assert len(receiver.at("/paused")) == 1


# -- a dead endpoint next to a healthy one ------------------------------------------------


async def test_dead_endpoint_does_not_starve_a_healthy_one(
    harness: Harness, receiver: Receiver, run_daemon: DaemonFactory
) -> None:
    # The default per-endpoint cap is ceil(concurrency / 2) = 5 of the 10 slots, so A's
    # hanging attempts hold at most half the slots and the other half stay free for B, whose
    # bucket (20/s, burst 1) is then the only thing that paces it. That alone was not enough:
    # A may also hold as many claimed deliveries queued behind its cap, and while those counted
    # against the claim target (10), B was not claimed at all until A's attempts timed out.
    # Scheduler.capacity() now leaves deliveries blocked by their own endpoint's cap out.
    timeout_s = 1.5
    receiver.slow("/dead", timeout_s + 0.5)  # answers only after the attempt has given up
    dead_id, _ = await harness.endpoint(receiver.url("/dead"), timeout_s=timeout_s)
    live_id, _ = await harness.endpoint(receiver.url("/live"), rate_per_s=20.0, burst=1)
    await harness.enqueue_many(dead_id, 20)
    await harness.enqueue_many(live_id, 20)
    async with run_daemon():
        await harness.wait_status("delivered", 20, live_id)
        dead_hits_meanwhile = len(receiver.at("/dead"))
    live = arrivals(receiver, "/live")
    dead = arrivals(receiver, "/dead")
    assert dead_hits_meanwhile <= 5
    # At 20/s B needs (20 - 1) / 20 = 0.95 s; A's first attempt only gives up 1.5 s after
    # it arrived. If A's backlog could crowd B out, B would wait for those timeouts.
    assert live[-1] < dead[0] + timeout_s, (
        f"B took {live[-1] - live[0]:.2f}s, finishing {live[-1] - dead[0]:.2f}s after A's first hit"
    )
