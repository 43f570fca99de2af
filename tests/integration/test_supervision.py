"""Supervision: a side task that dies stops the service loudly, after the orderly shutdown
(outcomes written, everything closed), and a service that never started stops cleanly."""

from __future__ import annotations

import asyncio

import pytest
from structlog.testing import capture_logs

from daemon.config import HealthConfig
from daemon.errors import WebhookdError
from daemon.service import Service
from tests.integration.conftest import Harness, Receiver, daemon_config


async def test_a_side_task_that_dies_stops_the_service_with_its_failure_after_shutting_down(
    harness: Harness, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    ep_id, _ = await harness.endpoint(receiver.url("/ok"))
    service = Service(daemon_config(harness.dsn))
    await service.start()
    stopped = False
    try:
        await harness.enqueue(endpoint_id=ep_id)
        await harness.wait_status("delivered", 1)

        async def broken(config: HealthConfig) -> list[str]:
            raise RuntimeError("a bug in the health check")

        assert service._pipeline is not None
        monkeypatch.setattr(service._pipeline.endpoint_health, "check", broken)
        with capture_logs() as logs:
            # a change of [health] runs the check again at once
            service.reload(service.config.with_overrides(health={"min_failures": 11}))
            with pytest.raises(WebhookdError, match=r"internal failure.*a bug in the health"):
                await asyncio.wait_for(service.wait(), 10)
            stopped = True
    finally:
        if not stopped:
            await service.stop()
    [died] = [e for e in logs if e["event"] == "service.task_died"]
    assert died["task"] == "webhookd.health"
    events = [e["event"] for e in logs]
    assert events.index("service.task_died") < events.index("service.stopping")
    assert events[-1] == "service.stopped"
    assert [e["outcomes_written"] for e in logs if e["event"] == "service.stopped"] == [True]
    assert await service.readiness() == (False, "database unreachable")  # the pool is closed


async def test_stopping_a_service_that_never_started_is_a_no_op(db_dsn: str) -> None:
    service = Service(daemon_config(db_dsn))
    with capture_logs() as logs:
        await service.stop()
    assert [e["event"] for e in logs] == ["service.stopping"]
    assert await service.readiness() == (False, "database unreachable")
