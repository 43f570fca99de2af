"""Receivers that misbehave below HTTP: raw asyncio servers on 127.0.0.1 that reset, stall,
dribble, speak garbage or hang up. Each failure is one recorded attempt with a precise error
class, retried on the endpoint's schedule, then dead-lettered naming that class.

(Timeouts to a slow handler, refused connections, a 10 MB body and certificate failures are
in test_delivery.py.)"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.integration.conftest import Harness

Reader = asyncio.StreamReader
Writer = asyncio.StreamWriter
Behaviour = Callable[[Reader, Writer], Awaitable[None]]

DRIBBLE_EVERY_S = 0.2
DRIBBLE_MAX_BYTES = 40  # 8 s of dribbling at most: far past the 1 s delivery timeout
HOLD_MAX_S = 10.0
SCHEDULE_S = (0.1,)  # two attempts: the first, and one retry 100 ms later


@dataclass
class RawServer:
    """Counts connections and runs `behaviour` on each; every connection is closed on exit."""

    behaviour: Behaviour
    port: int = 0
    connections: int = 0
    writers: list[Writer] = field(default_factory=list)
    tasks: set[asyncio.Task[Any]] = field(default_factory=set)
    stop: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, reader: Reader, writer: Writer) -> None:
        self.connections += 1
        self.writers.append(writer)
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        try:
            with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
                await self.behaviour(reader, writer)
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await writer.wait_closed()
            self.tasks.discard(task)


@asynccontextmanager
async def raw_server(behaviour: Behaviour) -> AsyncIterator[RawServer]:
    raw = RawServer(behaviour)
    server = await asyncio.start_server(raw.handle, "127.0.0.1", 0)
    raw.port = server.sockets[0].getsockname()[1]
    try:
        yield raw
    finally:
        raw.stop.set()
        server.close()
        for writer in raw.writers:
            writer.close()
        if raw.tasks:
            await asyncio.wait(set(raw.tasks), timeout=5)
        await server.wait_closed()


async def read_request(reader: Reader) -> bytes:
    """The request head and its Content-Length body, so the client is done sending."""
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return head + await reader.readexactly(length)


async def hold(raw_stop: asyncio.Event) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(raw_stop.wait(), HOLD_MAX_S)


async def dribble(writer: Writer, data: bytes, stop: asyncio.Event) -> None:
    """One byte every DRIBBLE_EVERY_S until the client gives up (or the bound is hit)."""
    for byte in data[:DRIBBLE_MAX_BYTES]:
        if stop.is_set() or writer.is_closing():
            return
        writer.write(bytes([byte]))
        await writer.drain()
        await asyncio.sleep(DRIBBLE_EVERY_S)


# -- behaviours ------------------------------------------------------------------------------


def reset_mid_response(_stop: asyncio.Event) -> Behaviour:
    async def run(reader: Reader, writer: Writer) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Le")
        await writer.drain()
        await asyncio.sleep(0.05)  # let the partial head reach the client first
        sock = writer.get_extra_info("socket")
        # Linger 0: close() sends RST instead of FIN.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        writer.transport.abort()

    return run


def never_answers(stop: asyncio.Event) -> Behaviour:
    async def run(reader: Reader, _writer: Writer) -> None:
        await read_request(reader)
        await hold(stop)

    return run


def slow_headers(stop: asyncio.Event) -> Behaviour:
    async def run(reader: Reader, writer: Writer) -> None:
        await read_request(reader)
        head = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"
        await dribble(writer, head, stop)

    return run


def slow_body(stop: asyncio.Event) -> Behaviour:
    async def run(reader: Reader, writer: Writer) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
        await writer.drain()
        await dribble(writer, b"x" * 100, stop)

    return run


def invalid_http(_stop: asyncio.Event) -> Behaviour:
    async def run(reader: Reader, writer: Writer) -> None:
        await read_request(reader)
        writer.write(b"HELLO\r\n\r\n")
        await writer.drain()

    return run


def garbage_instead_of_tls(_stop: asyncio.Event) -> Behaviour:
    async def run(reader: Reader, writer: Writer) -> None:
        await reader.read(1024)  # the ClientHello
        writer.write(b"HELLO, this is not TLS\r\n\r\n")
        await writer.drain()

    return run


def closes_without_response(_stop: asyncio.Event) -> Behaviour:
    async def run(reader: Reader, writer: Writer) -> None:
        await read_request(reader)
        writer.close()  # FIN, no bytes of a response

    return run


CASES = [
    # (behaviour, scheme, expected error class, smallest / largest attempt duration in ms)
    pytest.param(reset_mid_response, "http", "connection_reset", 0, 900, id="reset"),
    pytest.param(never_answers, "http", "timeout", 900, 1900, id="never-answers"),
    pytest.param(slow_headers, "http", "timeout", 900, 1900, id="slow-loris-headers"),
    pytest.param(slow_body, "http", "timeout", 900, 1900, id="slow-loris-body"),
    pytest.param(invalid_http, "http", "invalid_http", 0, 900, id="invalid-http"),
    pytest.param(garbage_instead_of_tls, "https", "tls_error", 0, 900, id="tls-garbage"),
    pytest.param(closes_without_response, "http", "connection_closed", 0, 900, id="closed"),
]


@pytest.mark.parametrize(("make", "scheme", "error_class", "min_ms", "max_ms"), CASES)
async def test_receiver_fault_is_a_classified_attempt_retried_then_dead_lettered(
    harness: Harness,
    run_daemon: Any,
    make: Callable[[asyncio.Event], Behaviour],
    scheme: str,
    error_class: str,
    min_ms: float,
    max_ms: float,
) -> None:
    stop = asyncio.Event()
    async with raw_server(make(stop)) as raw:
        ep_id, _ = await harness.endpoint(
            f"{scheme}://127.0.0.1:{raw.port}/hook", retry_schedule_s=SCHEDULE_S, timeout_s=1.0
        )
        async with run_daemon() as svc:
            await harness.enqueue(endpoint_id=ep_id)
            [row] = await harness.wait_status("failed", 1, timeout_s=10)
            assert all(not t.done() for t in svc._tasks), "a service task ended"
        stop.set()
    attempts = await harness.attempts(row["id"])
    assert [a["error_class"] for a in attempts] == [error_class] * 2, [
        (a["error_class"], a["error"]) for a in attempts
    ]
    assert [a["attempt"] for a in attempts] == [1, 2]
    assert all(a["status_code"] is None for a in attempts)
    assert all(min_ms <= a["duration_ms"] <= max_ms for a in attempts), [
        a["duration_ms"] for a in attempts
    ]
    assert raw.connections == 2  # the retry reached the receiver again
    assert row["attempts"] == 2
    assert row["last_status_code"] is None
    assert row["last_error"].startswith(f"gave up after 2 attempts: {error_class}: ")
    if error_class == "timeout":
        assert row["last_error"].endswith(": no complete response within 1s")
