"""SIGHUP to a real `webhookd run`: the config file is read again and a new concurrency applies
at once, with no attempt in flight dropped; a bad file keeps the old configuration and says
why; settings fixed at start are reported, not applied; the process stays up throughout."""

from __future__ import annotations

import asyncio
import signal
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from tests.chaos.conftest import DaemonProcess, Spawn, toml
from tests.integration.conftest import Harness, Receiver, wait_until

pytestmark = pytest.mark.chaos

RECEIVER_DELAY_S = 0.4
MESSAGES = 120  # enough to keep 5 attempts in flight until the last reload


def config(concurrency: int, **extra: dict[str, Any]) -> str:
    sections: dict[str, dict[str, Any]] = {
        "database": {"connect_timeout": "2s"},
        "outbox": {"poll_interval": "200ms", "lease_margin": "2s"},
        "delivery": {
            "timeout": "5s",
            "concurrency": concurrency,
            "endpoint_max_in_flight": 20,
            "allow_insecure_http": True,
            "allow_private_networks": True,
            "retry_jitter": 0,
            "drain_timeout": "5s",
        },
        "metrics": {"listen": "127.0.0.1:0"},
    }
    for name, values in extra.items():
        sections.setdefault(name, {}).update(values)
    return toml(sections)


def write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


async def hangup(daemon: DaemonProcess, path: Path, text: str, event: str) -> dict[str, Any]:
    """Write the file, send SIGHUP, and return the next `event` the daemon logs."""
    seen = len(daemon.named(event))
    write(path, text)
    daemon.proc.send_signal(signal.SIGHUP)

    async def logged() -> bool:
        assert daemon.proc.returncode is None, daemon.output[-2000:]
        return len(daemon.named(event)) > seen

    await wait_until(logged, 10, f"{event} after SIGHUP")
    return daemon.named(event)[seen]


async def peak_in_flight(receiver: Receiver, count: int, timeout_s: float = 10) -> None:
    receiver.max_in_flight = receiver.in_flight

    async def reached() -> bool:
        return receiver.max_in_flight >= count

    await wait_until(reached, timeout_s, f"{count} requests in flight at the receiver")


async def test_sighup_applies_concurrency_keeps_in_flight_and_survives_a_bad_file(
    harness: Harness, receiver: Receiver, spawn: Spawn, tmp_path: Path
) -> None:
    receiver.slow("/slow", RECEIVER_DELAY_S)
    ep_id, _ = await harness.endpoint(receiver.url("/slow"))
    path = write(tmp_path / "reload.toml", config(2))
    daemon = await spawn(harness.dsn, path, "reload")
    await daemon.started()
    await harness.enqueue_many(ep_id, MESSAGES)

    await peak_in_flight(receiver, 2)
    await asyncio.sleep(RECEIVER_DELAY_S * 3)
    assert receiver.max_in_flight == 2  # the configured concurrency holds

    async def two_in_flight() -> bool:  # attempts are in flight as the signal arrives
        return receiver.in_flight == 2

    await wait_until(two_in_flight, 5, "two requests in flight")
    reloaded = await hangup(daemon, path, config(5), "config.reloaded")
    assert reloaded["changed"] == ["delivery.concurrency"]
    await peak_in_flight(receiver, 5, timeout_s=5)
    await asyncio.sleep(RECEIVER_DELAY_S * 2)
    assert receiver.max_in_flight == 5

    # A file that does not load: the old configuration stays, the reason is logged.
    failed = await hangup(daemon, path, config(1) + "[delivery]\n", "config.reload_failed")
    assert "invalid TOML" in failed["error"]
    failed = await hangup(daemon, path, config(0), "config.reload_failed")
    assert failed["key"] == "delivery.concurrency"
    await peak_in_flight(receiver, 5, timeout_s=5)  # still 5

    # A setting fixed at start is reported and kept; the rest of the file applies.
    # (concurrency 10: the rest of the backlog drains in a few seconds, not ten)
    text = config(10, metrics={"listen": "127.0.0.1:1"})
    restart = await hangup(daemon, path, text, "config.reload_needs_restart")
    assert restart["keys"] == ["metrics.listen"]

    await harness.wait_status("delivered", MESSAGES, timeout_s=40)
    assert daemon.proc.returncode is None
    assert await daemon.terminate() == 0
    # Nothing in flight was dropped or cut off: every message reached the receiver once, in
    # one attempt.
    ids = Counter(h.headers.get("webhook-id") for h in receiver.hits)
    assert len(ids) == MESSAGES and set(ids.values()) == {1}
    assert all(r["attempts"] == 1 for r in await harness.deliveries())
    assert not daemon.named("service.attempts_cut_off")
    assert not daemon.named("service.task_died")
    assert len(daemon.named("service.started")) == 1


async def test_sighup_changes_the_log_level(
    harness: Harness, receiver: Receiver, spawn: Spawn, tmp_path: Path
) -> None:
    ep_id, _ = await harness.endpoint(receiver.url("/ok"))
    path = write(tmp_path / "level.toml", config(2))
    daemon = await spawn(harness.dsn, path, "level")
    await daemon.started()
    await hangup(daemon, path, config(2, log={"level": "warning"}), "config.reloaded")
    await harness.enqueue(endpoint_id=ep_id)
    await harness.wait_status("delivered", 1)
    await asyncio.sleep(0.3)
    assert daemon.named("delivery.attempt") == []  # info lines are no longer written
    # Back to info: the reload itself is logged at the old level (not shown), then its effect.
    write(path, config(2))
    daemon.proc.send_signal(signal.SIGHUP)

    async def attempt_logged() -> bool:
        await harness.enqueue(endpoint_id=ep_id)
        await asyncio.sleep(0.3)
        return bool(daemon.named("delivery.attempt"))

    await wait_until(attempt_logged, 10, "delivery.attempt logged again")
    assert await daemon.terminate() == 0
