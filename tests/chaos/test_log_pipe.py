"""`webhookd run | head -c 300`: once the log pipe closes, the daemon goes on delivering with
its log given up (and the lines it drops counted), rather than half-alive with slots stuck."""

from __future__ import annotations

import asyncio
import os
import socket
import time

import aiohttp
import pytest

from tests.chaos.conftest import Spawn, daemon_toml
from tests.integration.conftest import Harness, Receiver

pytestmark = pytest.mark.chaos

MESSAGES = 30


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def read_then_close(fd: int, size: int, timeout_s: float = 10) -> bytes:
    """Read `size` bytes of a pipe, then close its read end, as `head -c SIZE` does."""
    os.set_blocking(fd, False)
    data = b""
    deadline = time.monotonic() + timeout_s
    try:
        while len(data) < size and time.monotonic() < deadline:
            try:
                chunk = os.read(fd, size - len(data))
            except BlockingIOError:
                await asyncio.sleep(0.01)
                continue
            if not chunk:
                break
            data += chunk
    finally:
        os.close(fd)
    return data


async def get(url: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as session, session.get(url) as resp:
        return resp.status, await resp.text()


async def test_daemon_goes_on_delivering_after_its_log_pipe_closes(
    harness: Harness, receiver: Receiver, spawn: Spawn
) -> None:
    receiver.slow("/hook", 0.1)  # 30 deliveries, 5 at a time: most start after the pipe closes
    endpoint_id, _ = await harness.endpoint(receiver.url("/hook"))
    port = free_port()
    read_fd, write_fd = os.pipe()
    try:
        config = daemon_toml("pipe", metrics={"listen": f"127.0.0.1:{port}"})
        daemon = await spawn(harness.dsn, config, "pipe", stdout=write_fd)
    finally:
        os.close(write_fd)  # the daemon has its own copy
    await harness.enqueue_many(endpoint_id, MESSAGES)

    head = await read_then_close(read_fd, 300)

    assert len(head) == 300
    await harness.wait_status("delivered", MESSAGES, timeout_s=20)
    statuses = [r["status"] for r in await harness.deliveries()]
    assert statuses == ["delivered"] * MESSAGES
    assert daemon.proc.returncode is None
    assert await get(f"http://127.0.0.1:{port}/readyz") == (200, "ready\n")
    _, metrics = await get(f"http://127.0.0.1:{port}/metrics")
    dropped = next(
        line for line in metrics.splitlines() if line.startswith("webhookd_log_lines_dropped_total")
    )
    assert float(dropped.split()[-1]) >= MESSAGES - 10  # at least the attempts after the close
    assert await daemon.terminate() == 0
    errors = "".join(daemon.err_lines)
    assert errors.count("webhookd: log output failed (BrokenPipeError") == 1, errors
    for text in ("Traceback", "Exception ignored", "Logging error"):
        assert text not in errors
