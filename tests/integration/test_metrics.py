"""The metrics listener of a running daemon: /metrics (Prometheus text), /healthz, /readyz."""

from __future__ import annotations

from typing import Any

import aiohttp
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from daemon.service import Service
from tests.integration.conftest import Harness, Receiver

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


async def get(service: Service, path: str) -> tuple[int, str]:
    assert service.health is not None
    url = f"http://127.0.0.1:{service.health.port}{path}"
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        return resp.status, await resp.text()


async def scrape(service: Service) -> tuple[set[str], Samples]:
    """Family names and every sample keyed by (sample name, sorted labels)."""
    status, text = await get(service, "/metrics")
    assert status == 200
    families = list(text_string_to_metric_families(text))
    samples = {
        (s.name, tuple(sorted(s.labels.items()))): s.value for f in families for s in f.samples
    }
    return {f.name for f in families}, samples


async def deliver_one_good_one_dead(harness: Harness, receiver: Receiver) -> tuple[str, str]:
    receiver.on("/down", lambda hit, n: web.Response(status=500))
    good, _ = await harness.endpoint(receiver.url("/up"))
    bad, _ = await harness.endpoint(receiver.url("/down"), retry_schedule_s=())
    await harness.enqueue(endpoint_id=good)
    await harness.enqueue(endpoint_id=bad)
    await harness.wait_status("delivered", 1)
    await harness.wait_status("failed", 1)
    return good, bad


async def test_metrics_count_deliveries_attempts_and_dead_letters(
    harness: Harness, receiver: Receiver, run_daemon: Any
) -> None:
    async with run_daemon() as service:
        await deliver_one_good_one_dead(harness, receiver)
        names, samples = await scrape(service)
    assert samples[("webhookd_deliveries_total", (("outcome", "delivered"),))] == 1
    assert samples[("webhookd_deliveries_total", (("outcome", "dead_lettered"),))] == 1
    assert samples[("webhookd_attempts_total", (("result", "2xx"),))] == 1
    assert samples[("webhookd_attempts_total", (("result", "5xx"),))] == 1
    assert samples[("webhookd_attempt_duration_seconds_count", ())] == 2
    assert samples[("webhookd_dead_letters_total", ())] == 1
    assert samples[("webhookd_in_flight", ())] == 0
    assert samples[("webhookd_claim_batch_size_count", ())] >= 1
    assert samples[("webhookd_claim_batch_size_sum", ())] >= 2
    for gauge in ("webhookd_backlog_due", "webhookd_oldest_due_age_seconds"):
        assert gauge in names
        assert samples[(gauge, ())] >= 0
    assert "webhookd_endpoint_attempts" not in names
    assert not any("endpoint" in dict(labels) for _, labels in samples)


async def test_per_endpoint_series_appear_when_enabled(
    harness: Harness, receiver: Receiver, run_daemon: Any
) -> None:
    async with run_daemon(metrics={"per_endpoint_labels": True}) as service:
        good, bad = await deliver_one_good_one_dead(harness, receiver)
        _, samples = await scrape(service)
    key = "webhookd_endpoint_attempts_total"
    assert samples[(key, (("endpoint", good), ("result", "2xx")))] == 1
    assert samples[(key, (("endpoint", bad), ("result", "5xx")))] == 1


async def test_rate_limited_waits_count_due_work_held_back_by_a_rate_limit(
    harness: Harness, receiver: Receiver, run_daemon: Any
) -> None:
    free, _ = await harness.endpoint(receiver.url("/free"))
    limited, _ = await harness.endpoint(receiver.url("/limited"), rate_per_s=4.0, burst=1)
    async with run_daemon() as service:
        await harness.enqueue_many(free, 5)
        await harness.wait_status("delivered", 5)
        _, samples = await scrape(service)
        assert samples[("webhookd_rate_limited_waits_total", ())] == 0
        await harness.enqueue_many(limited, 3)
        await harness.wait_status("delivered", 8)
        _, samples = await scrape(service)
    assert samples[("webhookd_rate_limited_waits_total", ())] >= 1


async def test_healthz_and_readyz_answer_ok_when_running(run_daemon: Any) -> None:
    async with run_daemon() as service:
        assert (await get(service, "/healthz"))[0] == 200
        assert await get(service, "/readyz") == (200, "ready\n")


async def test_readyz_is_unavailable_while_a_migration_is_pending(
    harness: Harness, run_daemon: Any
) -> None:
    async with run_daemon() as service:
        await harness.conn.execute("DELETE FROM webhookd.schema_migrations")
        status, text = await get(service, "/readyz")
        assert status == 503
        assert text.startswith("migrations pending: 0001_init")
        assert (await get(service, "/healthz"))[0] == 200
