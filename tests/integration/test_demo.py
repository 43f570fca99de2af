"""`webhookd demo` as a newcomer runs it: the real executable, its own throwaway PostgreSQL,
plain progress lines through a pipe, a redrawn frame on a (pseudo) terminal, and a summary
that accounts for every message."""

from __future__ import annotations

import asyncio
import os
import pty
import re

import pytest

from tests.cli_support import WEBHOOKD

ENDPOINTS = ("fast", "slow", "flaky", "limited")

pytestmark = pytest.mark.timeout(120)


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEBHOOKD_")}
    env.pop("NO_COLOR", None)
    return env | extra


async def run_demo(*args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *WEBHOOKD,
        "demo",
        *args,
        env=clean_env(),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 100)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_demo_delivers_every_message_and_says_what_happened() -> None:
    code, out, err = await run_demo("--messages", "12")

    assert code == 0, out + err
    assert "\x1b[" not in out  # no terminal: no escape codes, one line per update
    assert "Done in " in out and "12 of 12 messages delivered, 0 dead letters." in out
    for name in ENDPOINTS:
        assert re.search(rf"^  {name} +3 delivered", out, re.MULTILINE), out
    progress = [line for line in out.splitlines() if re.match(r"^ *\d+\.\ds delivered ", line)]
    assert progress and progress[-1].split(" | ")[0].endswith("delivered 12/12")
    assert re.search(r"flaky +3 delivered; [1-9]\d* attempts got a 500", out)
    assert "held to its --rate 5/s" in out
    assert "Every request's signature verified at the receiver" in out
    assert err == ""


async def test_demo_that_runs_out_of_time_says_so_and_exits_1() -> None:
    code, out, _ = await run_demo("--messages", "8", "--duration", "300ms")

    assert code == 1
    assert re.search(
        r"Stopped after \d+\.\d s: \d of 8 messages delivered, [1-8] still pending", out
    )


async def test_demo_on_a_terminal_redraws_one_frame_in_place() -> None:
    parent, child = pty.openpty()
    proc = await asyncio.create_subprocess_exec(
        *WEBHOOKD,
        "demo",
        "--messages",
        "8",
        env=clean_env(COLUMNS="130", LINES="40"),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=child,
        stderr=asyncio.subprocess.PIPE,
    )
    os.close(child)
    screen = await asyncio.to_thread(_read_all, parent)
    await asyncio.wait_for(proc.wait(), 100)

    assert proc.returncode == 0, screen
    redraws = screen.count("\x1b[11F")  # back up over the 11-line frame
    assert redraws >= 3
    assert "\x1b[?25l" in screen  # the cursor is hidden while drawing
    assert screen.count("\x1b[?25h") == 1  # the cursor is shown again once, at the end
    assert "8 of 8 messages delivered" in screen
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", screen)
    assert all(len(line) <= 130 for line in plain.splitlines())


def _read_all(fd: int) -> str:
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(fd)
    return b"".join(chunks).decode("utf-8", "replace")
