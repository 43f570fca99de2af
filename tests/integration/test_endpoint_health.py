"""Endpoint health: a 410 Gone disables its endpoint at once; an endpoint failing for longer
than `health.disable_after` is disabled with the reason; `endpoint enable` resumes it. The
failing streak lives in endpoint_state, written by the recorder's batched outcome statement."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from aiohttp import web
from structlog.testing import capture_logs

from daemon.endpoint_health import GONE_REASON
from daemon.endpoints import set_enabled
from daemon.models import AttemptResult, Delivery, Outcome, RetryDecision
from daemon.recorder import Recorder
from daemon.service import Service
from daemon.worker import GONE_DEAD_LETTER
from tests.integration.conftest import DaemonFactory, Harness, Hit, Receiver, claim, wait_until

NO_BREAKER = {"enabled": False}


def auto_disabled(service: Service, reason: str) -> float:
    value = service.metrics.registry.get_sample_value(
        "webhookd_endpoints_auto_disabled_total", {"reason": reason}
    )
    return value or 0.0


async def endpoint_row(harness: Harness, ep_id: str) -> Any:
    return await harness.conn.fetchrow(
        "SELECT e.enabled, e.disabled_reason, s.failing_since, s.consecutive_failures"
        " FROM webhookd.endpoints e JOIN webhookd.endpoint_state s ON s.endpoint_id = e.id"
        " WHERE e.id = $1",
        ep_id,
    )


async def wait_disabled(harness: Harness, ep_id: str, timeout_s: float = 10) -> Any:
    async def disabled() -> bool:
        return not (await endpoint_row(harness, ep_id))["enabled"]

    await wait_until(disabled, timeout_s, f"endpoint {ep_id} disabled")
    return await endpoint_row(harness, ep_id)


# -- 410 Gone ------------------------------------------------------------------------------


async def test_gone_disables_the_endpoint_at_once_and_dead_letters_only_that_delivery(
    harness: Harness, receiver: Receiver, run_daemon: DaemonFactory
) -> None:
    gone = True
    receiver.on("/gone", lambda hit, n: web.Response(status=410 if gone else 200))
    ep_id, _ = await harness.endpoint(receiver.url("/gone"), retry_schedule_s=(0.1,) * 5)
    other, _ = await harness.endpoint(receiver.url("/other"))
    with capture_logs() as logs:
        async with run_daemon() as service:
            await harness.enqueue(endpoint_id=ep_id)
            [dead] = await harness.wait_status("failed", 1, ep_id)
            row = await wait_disabled(harness, ep_id, timeout_s=5)
            assert row["disabled_reason"] == GONE_REASON
            assert (dead["attempts"], dead["last_error"]) == (1, GONE_DEAD_LETTER)
            # The endpoint's other deliveries wait (disabled), the other endpoint carries on.
            await harness.enqueue(endpoint_id=ep_id)
            await harness.enqueue(endpoint_id=ep_id)
            await harness.enqueue(endpoint_id=other)
            await harness.wait_status("delivered", 1, other)
            await asyncio.sleep(0.5)
            assert len(receiver.at("/gone")) == 1
            assert [r["status"] for r in await harness.deliveries(ep_id)] == [
                "failed",
                "pending",
                "pending",
            ]
            assert auto_disabled(service, "gone") == 1

            gone = False  # the receiver is back: the operator enables the endpoint
            await set_enabled(harness.store, ep_id, True)
            await harness.wait_status("delivered", 2, ep_id, timeout_s=5)
    assert (await endpoint_row(harness, ep_id))["enabled"]
    events = [e for e in logs if e["event"] == "endpoint.auto_disabled"]
    assert [(e["endpoint"], e["cause"], e["reason"]) for e in events] == [
        (ep_id, "gone", GONE_REASON)
    ]


async def test_concurrent_gone_answers_disable_once_and_dead_letter_each_attempt(
    harness: Harness, receiver: Receiver, run_daemon: DaemonFactory
) -> None:
    receiver.on("/gone", lambda hit, n: web.Response(status=410))
    receiver.slow("/gone", 0.3)  # several attempts in flight when the first 410 comes
    ep_id, _ = await harness.endpoint(receiver.url("/gone"), max_in_flight=4)
    await harness.enqueue_many(ep_id, 10)
    with capture_logs() as logs:
        async with run_daemon() as service:
            await wait_disabled(harness, ep_id)
            await receiver.wait_hits(1)
            await harness.wait_none_leased(ep_id)  # the attempts in flight are recorded
            assert auto_disabled(service, "gone") == 1
    rows = await harness.deliveries(ep_id)
    hits = len(receiver.at("/gone"))
    assert 1 <= hits <= 4
    # Every attempt made was a 410 and dead-lettered; the rest were never attempted.
    assert sorted(r["status"] for r in rows) == ["failed"] * hits + ["pending"] * (10 - hits)
    assert len([e for e in logs if e["event"] == "endpoint.auto_disabled"]) == 1


async def test_gone_is_retried_like_any_failure_when_health_is_off(
    harness: Harness, receiver: Receiver, run_daemon: DaemonFactory
) -> None:
    receiver.on("/gone", lambda hit, n: web.Response(status=410))
    ep_id, _ = await harness.endpoint(receiver.url("/gone"), retry_schedule_s=(0.05, 0.05))
    async with run_daemon(health={"enabled": False}):
        await harness.enqueue(endpoint_id=ep_id)
        [dead] = await harness.wait_status("failed", 1, ep_id)
    assert dead["attempts"] == 3
    assert (await endpoint_row(harness, ep_id))["enabled"]


# -- the failing streak ----------------------------------------------------------------------


async def test_failing_since_is_the_first_failure_after_a_success_and_a_success_clears_it(
    harness: Harness, receiver: Receiver, run_daemon: DaemonFactory
) -> None:
    healthy = False
    receiver.on("/flaky", lambda hit, n: web.Response(status=200 if healthy else 500))
    ep_id, _ = await harness.endpoint(receiver.url("/flaky"), retry_schedule_s=(0.2,) * 20)

    async def streak() -> Any:
        return await harness.conn.fetchrow(
            "SELECT s.failing_since, s.consecutive_failures,"
            " (SELECT count(*) FROM webhookd.attempts) AS attempts,"
            " (SELECT min(started_at) FROM webhookd.attempts) AS first"
            " FROM webhookd.endpoint_state s WHERE s.endpoint_id = $1",
            ep_id,
        )

    async with run_daemon(breaker=NO_BREAKER):
        await harness.enqueue(endpoint_id=ep_id)
        await receiver.wait_hits(3)
        await wait_until(lambda: _recorded(harness, 3), 5, "3 attempts recorded")
        row = await streak()  # one snapshot: the statement writes attempts and streak together
        assert row["consecutive_failures"] == row["attempts"] >= 3
        assert row["failing_since"] == row["first"]
        healthy = True
        await harness.wait_status("delivered", 1, ep_id)
    row = await streak()
    assert (row["failing_since"], row["consecutive_failures"]) == (None, 0)


async def _recorded(harness: Harness, count: int) -> bool:
    return int(await harness.conn.fetchval("SELECT count(*) FROM webhookd.attempts")) >= count


async def test_streak_within_one_batch_follows_the_order_attempts_finished(
    harness: Harness,
) -> None:
    """The recorder writes many outcomes per statement: the streak starts at the first failure
    after the batch's last success, failures add up across batches, refusals do not count."""
    a, _ = await harness.endpoint("http://127.0.0.1:9/a")
    b, _ = await harness.endpoint("http://127.0.0.1:9/b")
    await harness.enqueue_many(a, 4)
    await harness.enqueue_many(b, 3)
    rows = await claim(harness.store, [a, b], [4, 3], 10, 30.0, "me")
    leased = [Delivery.from_record(r) for r in rows]
    of_a = [d for d in leased if d.endpoint_id == a]
    of_b = [d for d in leased if d.endpoint_id == b]
    t0 = float(int(time.time()) - 100)  # whole seconds: exact as timestamptz
    fail = RetryDecision(retry=True, delay_s=60.0, reason="http 500")

    def outcome(d: Delivery, at: float, status: int | None, error_class: str | None) -> Outcome:
        result = AttemptResult(at, 0.01, status, error_class, None)
        return Outcome(d, result, None if status == 200 else fail)

    recorder = Recorder(harness.store, "me")
    # a: fail, ok, fail, fail -> failing since the third, 2 in a row
    for i, (d, status) in enumerate(zip(of_a, (500, 200, 500, 500), strict=True)):
        recorder.put(outcome(d, t0 + i, status, None if status == 200 else "http_500"))
    # b: a failure, then a refused destination (says nothing about b)
    recorder.put(outcome(of_b[0], t0 + 10, 500, "http_500"))
    recorder.put(outcome(of_b[1], t0 + 11, None, "refused_destination"))
    assert await recorder.drain(timeout_s=5)
    row_a, row_b = await endpoint_row(harness, a), await endpoint_row(harness, b)
    # started times are stored on the database's clock (now() minus how long ago), so they
    # match the daemon's to within the write's own latency
    assert row_a["consecutive_failures"] == 2
    assert row_a["failing_since"].timestamp() == pytest.approx(t0 + 2, abs=0.4)
    assert row_b["consecutive_failures"] == 1
    assert row_b["failing_since"].timestamp() == pytest.approx(t0 + 10, abs=0.4)

    # A later batch: b fails again (the streak goes on from its start), a succeeds.
    await harness.conn.execute(
        "UPDATE webhookd.deliveries SET status = 'delivering', locked_by = 'me', lease_token = 9"
        " WHERE id = ANY ($1::bigint[])",
        [of_a[0].id, of_b[0].id],
    )
    again_a = Delivery.from_record(await _lease_row(harness, of_a[0].id))
    again_b = Delivery.from_record(await _lease_row(harness, of_b[0].id))
    recorder.put(outcome(again_b, t0 + 20, 503, "http_503"))
    recorder.put(outcome(again_a, t0 + 21, 200, None))
    assert await recorder.drain(timeout_s=5)
    row_a, row_b = await endpoint_row(harness, a), await endpoint_row(harness, b)
    assert (row_a["failing_since"], row_a["consecutive_failures"]) == (None, 0)
    assert row_b["consecutive_failures"] == 2
    assert row_b["failing_since"].timestamp() == pytest.approx(t0 + 10, abs=0.4)


async def _lease_row(harness: Harness, delivery_id: int) -> Any:
    return await harness.conn.fetchrow(
        "SELECT d.id, d.endpoint_id, d.attempts, d.attempt_base, o.msg_id, o.event_type,"
        " convert_to(o.payload::text, 'UTF8') AS payload, o.created_at, d.lease_token,"
        " d.ordering_key,"
        " octet_length(o.payload::text) AS payload_bytes, 30.0 AS lease_s, 1 AS endpoint_version"
        " FROM webhookd.deliveries d JOIN webhookd.outbox o ON o.id = d.message_id"
        " WHERE d.id = $1",
        delivery_id,
    )


# -- disabled after the period ---------------------------------------------------------------


async def test_endpoint_failing_longer_than_the_period_is_disabled_once_and_enable_resumes(
    harness: Harness, receiver: Receiver, run_daemon: DaemonFactory
) -> None:
    healthy = False

    def respond(hit: Hit, n: int) -> web.Response:
        return web.Response(status=200 if healthy else 500)

    receiver.on("/down", respond)
    ep_id, _ = await harness.endpoint(receiver.url("/down"), retry_schedule_s=(0.1,) * 50)
    fine, _ = await harness.endpoint(receiver.url("/fine"))
    health = {"disable_after_s": 1.0, "min_failures": 3}
    with capture_logs() as logs:
        # Two daemons check: the endpoint is disabled (logged, counted) once.
        async with (
            run_daemon(health=health, breaker=NO_BREAKER) as one,
            run_daemon(health=health, breaker=NO_BREAKER) as two,
        ):
            started = time.monotonic()
            await harness.enqueue(endpoint_id=ep_id)
            row = await wait_disabled(harness, ep_id)
            assert time.monotonic() - started >= 1.0
            assert row["disabled_reason"].startswith("failing since ")
            assert "failed attempts in a row" in row["disabled_reason"]
            assert row["consecutive_failures"] >= 3
            await harness.wait_none_leased(ep_id)  # an attempt in flight finishes
            hits = len(receiver.at("/down"))
            # Its deliveries wait; nothing is dead-lettered; the other endpoint is served.
            await harness.enqueue(endpoint_id=ep_id)
            await harness.enqueue(endpoint_id=fine)
            await harness.wait_status("delivered", 1, fine)
            await asyncio.sleep(0.5)
            assert len(receiver.at("/down")) == hits
            assert [r["status"] for r in await harness.deliveries(ep_id)] == ["pending"] * 2
            assert auto_disabled(one, "failing") + auto_disabled(two, "failing") == 1

            healthy = True
            await set_enabled(harness.store, ep_id, True)
            await harness.wait_status("delivered", 2, ep_id)
    row = await endpoint_row(harness, ep_id)
    assert (row["enabled"], row["failing_since"], row["consecutive_failures"]) == (True, None, 0)
    events = [e for e in logs if e["event"] == "endpoint.auto_disabled"]
    assert [(e["endpoint"], e["cause"]) for e in events] == [(ep_id, "failing")]
    assert events[0]["failures"] >= 3


async def test_enable_gives_a_disabled_endpoint_a_whole_period_again(
    harness: Harness, receiver: Receiver, run_daemon: DaemonFactory
) -> None:
    receiver.on("/down", lambda hit, n: web.Response(status=500))
    ep_id, _ = await harness.endpoint(receiver.url("/down"), retry_schedule_s=(0.1,) * 50)
    # A streak that began long ago, but the operator has just enabled the endpoint.
    await harness.conn.execute(
        "UPDATE webhookd.endpoint_state SET failing_since = now() - interval '10 days',"
        " consecutive_failures = 500 WHERE endpoint_id = $1",
        ep_id,
    )
    await set_enabled(harness.store, ep_id, False, "by hand")
    await set_enabled(harness.store, ep_id, True)
    async with run_daemon(health={"disable_after_s": 2.0, "min_failures": 1}, breaker=NO_BREAKER):
        await harness.enqueue(endpoint_id=ep_id)
        await receiver.wait_hits(3)
        await asyncio.sleep(0.6)  # several checks: the new streak is younger than 2 s
        assert (await endpoint_row(harness, ep_id))["enabled"]
        await wait_disabled(harness, ep_id, timeout_s=5)


async def test_min_failures_keeps_an_endpoint_with_few_failures_enabled(
    harness: Harness, receiver: Receiver, run_daemon: DaemonFactory
) -> None:
    receiver.on("/down", lambda hit, n: web.Response(status=500))
    ep_id, _ = await harness.endpoint(receiver.url("/down"), retry_schedule_s=(0.05,))
    async with run_daemon(health={"disable_after_s": 0.2, "min_failures": 5}, breaker=NO_BREAKER):
        await harness.enqueue(endpoint_id=ep_id)
        await harness.wait_status("failed", 1, ep_id)
        await asyncio.sleep(1.0)
        row = await endpoint_row(harness, ep_id)
    assert row["enabled"] and row["consecutive_failures"] == 2
