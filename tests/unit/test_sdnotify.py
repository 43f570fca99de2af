"""sd_notify over a real unix datagram socket, as systemd would receive it."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from daemon.sdnotify import Notifier


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.settimeout(2)
    yield sock, path
    sock.close()


def test_ready_status_and_stopping_arrive_as_datagrams(notify_socket) -> None:
    sock, path = notify_socket
    notifier = Notifier({"NOTIFY_SOCKET": path})
    assert notifier.ready("in flight 0")
    assert sock.recv(4096) == b"READY=1\nSTATUS=in flight 0"
    assert notifier.status("backlog 5")
    assert sock.recv(4096) == b"STATUS=backlog 5"
    assert notifier.stopping()
    assert sock.recv(4096) == b"STOPPING=1"


def test_without_notify_socket_every_call_is_a_no_op() -> None:
    notifier = Notifier({})
    assert not notifier.enabled
    assert not notifier.ready()
    assert notifier.watchdog_interval_s is None


def test_watchdog_interval_is_half_of_watchdog_usec_for_this_pid(notify_socket) -> None:
    _, path = notify_socket
    env = {"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "3000000", "WATCHDOG_PID": str(os.getpid())}
    assert Notifier(env).watchdog_interval_s == 1.5
    other = dict(env, WATCHDOG_PID="1")
    assert Notifier(other).watchdog_interval_s is None


async def test_watchdog_loop_pets_and_refreshes_status(notify_socket) -> None:
    sock, path = notify_socket
    notifier = Notifier({"NOTIFY_SOCKET": path, "WATCHDOG_USEC": "100000"})
    task = asyncio.create_task(notifier.watchdog(lambda: "in flight 3"))
    try:
        first = await asyncio.to_thread(sock.recv, 4096)
        second = await asyncio.to_thread(sock.recv, 4096)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    assert first == second == b"WATCHDOG=1\nSTATUS=in flight 3"


def test_abstract_socket_address_is_supported() -> None:
    name = f"webhookd-test-{os.getpid()}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name)
    sock.settimeout(2)
    try:
        assert Notifier({"NOTIFY_SOCKET": "@" + name}).ready()
        assert sock.recv(4096) == b"READY=1"
    finally:
        sock.close()


def test_a_vanished_socket_does_not_raise(tmp_path: Path) -> None:
    assert not Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")}).ready()
