"""A failing endpoint's circuit breaker: attempts stop for the cool-down, one probe decides,
and deliveries spend none of their retry schedule while it is open."""

from __future__ import annotations

import asyncio

import aiohttp
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.conftest import DaemonFactory, Harness, Hit, Receiver

BREAKER = {"window": 4, "failure_ratio": 0.75, "cooldown_s": 1.0}


async def test_breaker_opens_probes_once_and_closes_when_the_endpoint_recovers(
    harness: Harness, receiver: Receiver, run_daemon: DaemonFactory
) -> None:
    healthy = asyncio.Event()

    def respond(hit: Hit, n: int) -> web.Response:
        return web.Response(status=200 if healthy.is_set() else 500)

    receiver.on("/flaky", respond)
    ep_id, _ = await harness.endpoint(
        receiver.url("/flaky"), max_in_flight=1, retry_schedule_s=(0.01,) * 30
    )
    await harness.enqueue_many(ep_id, 6)
    async with run_daemon(breaker=BREAKER) as service:
        await receiver.wait_hits(4)  # the window fills with failures: the breaker opens
        await asyncio.sleep(0.6)
        assert len(receiver.hits) == 4  # nothing during the cool-down
        await receiver.wait_hits(5, timeout_s=3)  # one probe after ~1 s; it fails
        await asyncio.sleep(1.2)
        assert len(receiver.hits) == 5  # the second cool-down is twice as long (2 s)
        healthy.set()
        await harness.wait_status("delivered", 6, timeout_s=10)
        assert service.health is not None
        metrics = await scrape(service.health.port)
    gaps = [b.at - a.at for a, b in zip(receiver.hits, receiver.hits[1:], strict=False)]
    assert gaps[3] >= 1.0 - 0.05 and gaps[4] >= 2.0 - 0.05
    rows = await harness.deliveries(ep_id)
    # 6 deliveries, 5 failed attempts in all: open time cost no delivery an attempt.
    assert sum(r["attempts"] for r in rows) == 6 + 5
    assert metrics[("webhookd_circuit_breaker_transitions_total", "open")] == 2
    assert metrics[("webhookd_circuit_breaker_transitions_total", "closed")] == 1


async def test_breaker_can_be_turned_off(
    harness: Harness, receiver: Receiver, run_daemon: DaemonFactory
) -> None:
    receiver.on("/down", lambda hit, n: web.Response(status=500))
    ep_id, _ = await harness.endpoint(
        receiver.url("/down"), max_in_flight=1, retry_schedule_s=(0.01,) * 9
    )
    await harness.enqueue_many(ep_id, 1)
    async with run_daemon(breaker=BREAKER | {"enabled": False}):
        await harness.wait_status("failed", 1, timeout_s=5)
    assert len(receiver.hits) == 10


async def scrape(port: int) -> dict[tuple[str, str], float]:
    async with (
        aiohttp.ClientSession() as session,
        session.get(f"http://127.0.0.1:{port}/metrics") as resp,
    ):
        text = await resp.text()
    out: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, next(iter(sample.labels.values()), ""))] = sample.value
    return out
