"""Ordering keys hold across three real `webhookd run` processes and a receiver that fails at
random: per key, the first successful arrivals come in insert order."""

from __future__ import annotations

import random

import orjson
import pytest
from aiohttp import web

from tests.chaos.conftest import Spawn, toml
from tests.integration.conftest import Harness, Hit, Receiver

pytestmark = pytest.mark.chaos

KEYS = [f"k{i}" for i in range(6)]
PER_KEY = 8


def config(instance: str) -> str:
    return toml(
        {
            "outbox": {"poll_interval": "200ms", "lease_margin": "2s", "instance_id": instance},
            "delivery": {
                "allow_insecure_http": True,
                "allow_private_networks": True,
                "timeout": "2s",
                "retry_schedule": ["50ms"] * 20,
                "retry_jitter": 0.0,
            },
            "breaker": {"enabled": False},
            "metrics": {"listen": "127.0.0.1:0"},
        }
    )


async def test_three_processes_keep_each_keys_insert_order_through_random_failures(
    harness: Harness, receiver: Receiver, spawn: Spawn
) -> None:
    rng = random.Random(11)
    successes: list[tuple[str, int]] = []

    def flaky(hit: Hit, _n: int) -> web.Response:
        if rng.random() < 0.3:
            return web.Response(status=500)
        body = orjson.loads(hit.body)
        if body["key"] is not None:
            successes.append((body["key"], body["n"]))
        return web.Response(text="ok")

    receiver.on("/o", flaky)
    ep_id, _ = await harness.endpoint(receiver.url("/o"), max_in_flight=10)
    for n in range(PER_KEY):
        for key in KEYS:
            await harness.conn.execute(
                "INSERT INTO webhookd.outbox (endpoint_id, event_type, payload, ordering_key)"
                " VALUES ($1, 'test.event', $2::jsonb, $3)",
                ep_id,
                orjson.dumps({"key": key, "n": n}).decode(),
                key,
            )
    daemons = [await spawn(harness.dsn, config(f"o{i}"), f"o{i}") for i in range(3)]
    for daemon in daemons:
        await daemon.started()
    await harness.wait_status("delivered", len(KEYS) * PER_KEY, timeout_s=60)
    for daemon in daemons:
        assert await daemon.terminate() == 0
    for key in KEYS:
        order = [n for k, n in successes if k == key]
        assert list(dict.fromkeys(order)) == list(range(PER_KEY)), f"{key}: {order}"
    instances = await harness.conn.fetchval(
        "SELECT count(DISTINCT instance) FROM webhookd.attempts"
    )
    assert instances >= 2  # the work really was shared
