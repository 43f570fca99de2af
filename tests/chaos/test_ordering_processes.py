"""Ordering keys hold across three real `webhookd run` processes and a receiver that fails at
random: per key, the first successful arrivals come in insert order."""

from __future__ import annotations

import random

import orjson
import pytest

from tests.chaos.conftest import Spawn, daemon_toml
from tests.integration.conftest import Harness, Receiver
from tests.ordering_support import assert_first_successes_in_order, flaky_recorder

pytestmark = pytest.mark.chaos

KEYS = [f"k{i}" for i in range(9)]
PER_KEY = 8
ENDPOINTS = 3


def config(instance: str) -> str:
    return daemon_toml(
        instance,
        delivery={"retry_schedule": ["50ms"] * 20, "retry_jitter": 0.0},
        breaker={"enabled": False},
    )


async def test_three_processes_keep_each_keys_insert_order_through_random_failures(
    harness: Harness, receiver: Receiver, spawn: Spawn
) -> None:
    successes: list[tuple[str, int]] = []
    respond = flaky_recorder(random.Random(11), successes)
    endpoints = []
    for e in range(ENDPOINTS):  # several endpoints: each claim serves an endpoint alone
        receiver.on(f"/o{e}", respond)
        endpoints.append((await harness.endpoint(receiver.url(f"/o{e}"), max_in_flight=10))[0])
    daemons = [await spawn(harness.dsn, config(f"o{i}"), f"o{i}") for i in range(3)]
    for daemon in daemons:
        await daemon.started()
    for n in range(PER_KEY):  # once all three are up, so they compete from the first row
        for k, key in enumerate(KEYS):
            await harness.conn.execute(
                "INSERT INTO webhookd.outbox (endpoint_id, event_type, payload, ordering_key)"
                " VALUES ($1, 'test.event', $2::jsonb, $3)",
                endpoints[k % ENDPOINTS],
                orjson.dumps({"key": key, "n": n}).decode(),
                key,
            )
    await harness.wait_status("delivered", len(KEYS) * PER_KEY, timeout_s=60)
    for daemon in daemons:
        assert await daemon.terminate() == 0
    assert_first_successes_in_order(successes, KEYS, PER_KEY)
    instances = await harness.conn.fetchval(
        "SELECT count(DISTINCT instance) FROM webhookd.attempts"
    )
    assert instances >= 2  # the work really was shared
