"""Chaos tests: real `webhookd run` processes, killed with SIGKILL or cut off from a restarted
PostgreSQL, against loopback receivers. Each test stays under about 20 s."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pytest
import pytest_asyncio

from tests.cli_support import REPO, WEBHOOKD
from tests.conftest import UNRETRIEVED

# The integration fixtures (a fresh migrated database, a recording receiver) serve here too.
from tests.integration.conftest import harness, receiver, run_daemon, wait_until

__all__ = ["harness", "receiver", "run_daemon"]


def toml(sections: Mapping[str, Mapping[str, Any]]) -> str:
    """A config file from {section: {key: value}} (strings, numbers, booleans, lists)."""

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, list | tuple):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return orjson.dumps(v).decode()

    lines: list[str] = []
    for name, keys in sections.items():
        lines.append(f"[{name}]")
        lines += [f"{key} = {value(v)}" for key, v in keys.items()]
    return "\n".join(lines) + "\n"


def daemon_toml(instance: str, **overrides: Mapping[str, Any]) -> str:
    """A test daemon's config: loopback receivers allowed, short leases and retries, metrics on
    a free port; `overrides` replace keys section by section."""
    sections: dict[str, dict[str, Any]] = {
        "outbox": {"poll_interval": "200ms", "lease_margin": "2s", "instance_id": instance},
        "delivery": {
            "allow_insecure_http": True,
            "allow_private_networks": True,
            "timeout": "2s",
            "retry_schedule": ["100ms"] * 5,
        },
        "metrics": {"listen": "127.0.0.1:0"},
    }
    for name, keys in overrides.items():
        sections.setdefault(name, {}).update(keys)
    return toml(sections)


@dataclass
class DaemonProcess:
    """One `webhookd run`; its stdout (JSON log lines) and stderr are collected as they come."""

    name: str
    proc: asyncio.subprocess.Process
    lines: list[str] = field(default_factory=list)
    err_lines: list[str] = field(default_factory=list)
    readers: list[asyncio.Task[None]] = field(default_factory=list)

    async def _collect(self, stream: asyncio.StreamReader | None, into: list[str]) -> None:
        assert stream is not None
        async for raw in stream:
            into.append(raw.decode(errors="replace"))

    def events(self) -> list[dict[str, Any]]:
        parsed = []
        for line in self.lines:
            with contextlib.suppress(orjson.JSONDecodeError):
                event = orjson.loads(line)
                if isinstance(event, dict):
                    parsed.append(event)
        return parsed

    def named(self, event: str) -> list[dict[str, Any]]:
        return [e for e in self.events() if e.get("event") == event]

    @property
    def output(self) -> str:
        return "".join(self.lines) + "".join(self.err_lines)

    async def wait_event(self, event: str, timeout_s: float = 15) -> dict[str, Any]:
        async def seen() -> bool:
            if self.named(event):
                return True
            if self.proc.returncode is not None:
                raise AssertionError(
                    f"{self.name} exited with {self.proc.returncode}:\n{self.output[-3000:]}"
                )
            return False

        await wait_until(seen, timeout_s, f"{event} from {self.name}")
        return self.named(event)[0]

    async def started(self) -> dict[str, Any]:
        return await self.wait_event("service.started")

    async def kill9(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        await asyncio.wait_for(self.proc.wait(), 5)
        await self.finish_reading()

    async def terminate(self, timeout_s: float = 10) -> int:
        """SIGTERM and wait for a clean exit; returns the exit code."""
        self.proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(self.proc.wait(), timeout_s)
        await self.finish_reading()
        return code

    async def finish_reading(self) -> None:
        if self.readers:
            await asyncio.wait(self.readers, timeout=5)


Spawn = Callable[..., Any]


@pytest_asyncio.fixture
async def spawn(tmp_path: Path) -> AsyncIterator[Spawn]:
    """`await spawn(dsn, config_text, name)` starts `webhookd --config <file> run`; every
    process still running at the end of the test is killed."""
    running: list[DaemonProcess] = []

    async def start(
        dsn: str, config: str | Path, name: str = "daemon", stdout: int | None = None
    ) -> DaemonProcess:
        """`stdout`: a file descriptor to write the log to instead of a pipe read here."""
        path = config if isinstance(config, Path) else tmp_path / f"{name}.toml"
        if not isinstance(config, Path):
            path.write_text(config)
        # Only our own WEBHOOKD_* variables: one left in the caller's shell would change the test.
        env = {k: v for k, v in os.environ.items() if not k.startswith("WEBHOOKD_")}
        env["WEBHOOKD_DATABASE_URL"] = dsn
        proc = await asyncio.create_subprocess_exec(
            *WEBHOOKD,
            "--config",
            str(path),
            "run",
            env=env,
            cwd=REPO,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE if stdout is None else stdout,
            stderr=asyncio.subprocess.PIPE,
        )
        daemon = DaemonProcess(name, proc)
        daemon.readers = [asyncio.create_task(daemon._collect(proc.stderr, daemon.err_lines))]
        if stdout is None:
            daemon.readers.append(asyncio.create_task(daemon._collect(proc.stdout, daemon.lines)))
        running.append(daemon)
        return daemon

    yield start
    for daemon in running:
        if daemon.proc.returncode is None:
            daemon.proc.kill()
            await daemon.proc.wait()
        await daemon.finish_reading()
    unnoticed = [d.name for d in running if UNRETRIEVED in d.output]
    if unnoticed:
        pytest.fail(f"{', '.join(unnoticed)}: a task died unnoticed ({UNRETRIEVED})")
