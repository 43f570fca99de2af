"""The benchmarks' processes: PostgreSQL (embedded or configured) with a migrated template
and fresh clones, the receiver, the daemon, and what they cost (CPU, memory, other people's
load on a shared machine). `common` re-exports everything here.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg
import psutil

BENCH_DIR = Path(__file__).resolve().parent
REPO = BENCH_DIR.parent
BIN = Path(sys.executable).parent  # the venv's bin/, not resolved: its scripts live there
DATABASE_URL_ENV = "WEBHOOKD_BENCH_DATABASE_URL"
CONCURRENCY = 10
QUIET_MAX_S = 60.0  # how long `wait_quiet` may wait; 0 with --quick
_T0 = time.monotonic()


def note(message: str) -> None:
    """Progress for humans, on stderr: stdout carries only the result line."""
    sys.stderr.write(f"[{time.monotonic() - _T0:7.1f}s] {message}\n")
    sys.stderr.flush()


# -- child processes ----------------------------------------------------------------------------


def _die_with_parent() -> None:
    """Children get SIGTERM if the benchmark dies (Linux); nothing is left running."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def spawn(cmd: Sequence[str], *, env: dict[str, str] | None, log: Path, **kw: Any) -> Any:
    with log.open("ab") as out:
        return subprocess.Popen(
            list(cmd),
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=kw.pop("stdout", out),
            stderr=out,
            preexec_fn=_die_with_parent,
            cwd=REPO,
            **kw,
        )


async def terminate(proc: Any, timeout_s: float) -> int:
    """SIGTERM, then SIGKILL if it has not exited within `timeout_s`; its exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
    try:
        await asyncio.to_thread(proc.wait, timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        await asyncio.to_thread(proc.wait)
    return int(proc.returncode)


def process_cpu_s(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return float(times.user + times.system)


def peak_rss_bytes(pid: int) -> int:
    """VmHWM: the most resident memory the process has had."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    return int(psutil.Process(pid).memory_info().rss)


def machine_busy_s() -> float:
    """CPU seconds the whole machine has spent busy (all cores), from /proc/stat."""
    fields = Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


async def wait_quiet(max_wait_s: float | None = None, busy_cores: float = 0.3) -> float:
    """Wait (up to `max_wait_s`) until the machine is nearly idle: other people's test runs
    on a shared box would otherwise be measured as ours. Returns the seconds waited."""
    max_wait_s = QUIET_MAX_S if max_wait_s is None else max_wait_s
    started = time.monotonic()
    quiet = 0
    while time.monotonic() - started < max_wait_s:
        busy0 = machine_busy_s()
        await asyncio.sleep(1.0)
        quiet = quiet + 1 if machine_busy_s() - busy0 < busy_cores else 0
        if quiet >= 2:
            break
    waited = time.monotonic() - started
    if waited > 3:
        gave_up = "" if quiet >= 2 else " (gave up)"
        note(f"waited {waited:.0f}s for the machine to be idle{gave_up}")
    return waited


class Busy:
    """CPU used during a measurement by this machine, and the part that was not ours
    (`foreign_cores`: average cores busy with other work; near 0 for a clean figure)."""

    def __init__(self, pids: Callable[[], Sequence[int]], pg: Postgres | None) -> None:
        self._pids = pids
        self._pg = pg
        self._t0 = time.monotonic()
        self._busy0 = machine_busy_s()
        self._ours0 = self._ours()

    def _ours(self) -> float:
        total = time.process_time()
        for pid in self._pids():
            with contextlib.suppress(psutil.Error):
                total += process_cpu_s(pid)
        pg = self._pg.cpu_s() if self._pg is not None else None
        return total + (pg or 0.0)

    def foreign_cores(self) -> float:
        elapsed = time.monotonic() - self._t0
        foreign = (machine_busy_s() - self._busy0) - (self._ours() - self._ours0)
        return max(0.0, foreign / elapsed) if elapsed > 0 else 0.0


def tail(path: Path, size: int = 3000) -> str:
    with contextlib.suppress(OSError):
        data = path.read_bytes()
        return data[-size:].decode(errors="replace")
    return ""


class Receiver:
    """`bench/receiver.py` in its own process, and a client for its control endpoints."""

    def __init__(self, workdir: Path, delay_ms: float = 0.0) -> None:
        self._workdir = workdir
        self._delay_ms = delay_ms
        self._proc: Any = None
        self._session: aiohttp.ClientSession | None = None
        self.base = ""

    async def start(self) -> None:
        cmd = [sys.executable, str(BENCH_DIR / "receiver.py"), "--delay-ms", str(self._delay_ms)]
        log = self._workdir / "receiver.log"
        self._proc = spawn(cmd, env=None, log=log, stdout=subprocess.PIPE)
        loop = asyncio.get_running_loop()
        line = await asyncio.wait_for(loop.run_in_executor(None, self._proc.stdout.readline), 15)
        if not line:
            raise RuntimeError(f"receiver did not start:\n{tail(log)}")
        self.base = f"http://127.0.0.1:{json.loads(line)['port']}"
        self._session = aiohttp.ClientSession()

    @property
    def pid(self) -> int:
        return int(self._proc.pid)

    def url(self, hook: int) -> str:
        return f"{self.base}/hook/{hook}"

    async def _get(self, path: str, method: str = "GET") -> Any:
        assert self._session is not None
        async with self._session.request(method, self.base + path) as resp:
            resp.raise_for_status()
            return await resp.json()

    async def stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = await self._get("/_stats")
        return stats

    async def arrivals(self) -> dict[str, list[Any]]:
        arrivals: dict[str, list[Any]] = await self._get("/_arrivals")
        return arrivals

    async def reset(self) -> None:
        await self._get("/_reset", "POST")

    async def wait_count(
        self, count: int, timeout_s: float, *, alive: Callable[[], None] | None = None
    ) -> dict[str, Any]:
        """Poll until `count` requests arrived; `alive` raises if what feeds us died."""
        deadline = time.monotonic() + timeout_s
        while True:
            stats = await self.stats()
            if stats["count"] >= count:
                return stats
            if time.monotonic() > deadline:
                raise TimeoutError(f"{stats['count']} of {count} arrived in {timeout_s:.0f}s")
            if alive is not None:
                alive()
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
        if self._proc is not None:
            await terminate(self._proc, 5)


class Daemon:
    """A real `webhookd run` process, configured through WEBHOOKD_* variables; ready when it
    says READY=1 on NOTIFY_SOCKET (sent once the database, schema and /metrics are up)."""

    def __init__(
        self,
        dsn: str,
        workdir: Path,
        env: dict[str, str] | None = None,
        program: Sequence[str] = (),
    ) -> None:
        self._dsn = dsn
        self._workdir = workdir
        self._extra = env or {}
        self._program = list(program)  # what stands for `webhookd` (e.g. under a profiler)
        self._proc: Any = None
        self.log = workdir / f"daemon-{secrets.token_hex(3)}.log"

    def environment(self, notify_path: Path) -> dict[str, str]:
        skip = ("WEBHOOKD_", "NOTIFY_SOCKET", "WATCHDOG_")
        env = {k: v for k, v in os.environ.items() if not k.startswith(skip)}
        empty = self._workdir / "webhookd.toml"
        empty.touch()
        env.update(
            {
                "WEBHOOKD_CONFIG": str(empty),  # not /etc/webhookd/webhookd.toml
                "WEBHOOKD_DATABASE_URL": self._dsn,
                "WEBHOOKD_DELIVERY_ALLOW_INSECURE_HTTP": "true",
                "WEBHOOKD_DELIVERY_ALLOW_PRIVATE_NETWORKS": "true",
                "WEBHOOKD_METRICS_LISTEN": "127.0.0.1:0",
                "WEBHOOKD_LOG_LEVEL": "warning",
                "WEBHOOKD_LOG_FORMAT": "json",
                "WEBHOOKD_DELIVERY_CONCURRENCY": str(CONCURRENCY),
                "NOTIFY_SOCKET": str(notify_path),
            }
        )
        env.update(self._extra)
        return env

    def command(self) -> list[str]:
        script = BIN / "webhookd"
        program = [str(script)] if script.exists() else [sys.executable, "-m", "daemon"]
        # --migrate: a migration added to the tree mid-run must not stop the benchmark.
        return [*(self._program or program), "run", "--migrate"]

    async def start(self, timeout_s: float = 30.0) -> None:
        path = self._workdir / f"notify-{secrets.token_hex(4)}.sock"
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
            sock.bind(str(path))
            sock.setblocking(False)
            self._proc = spawn(self.command(), env=self.environment(path), log=self.log)
            await self._await_ready(sock, timeout_s)
        path.unlink(missing_ok=True)

    async def _await_ready(self, sock: socket.socket, timeout_s: float) -> None:
        loop = asyncio.get_running_loop()
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            self.check_alive()
            with contextlib.suppress(TimeoutError):
                data = await asyncio.wait_for(loop.sock_recv(sock, 4096), 0.2)
                if b"READY=1" in data:
                    return
        raise TimeoutError(f"daemon not ready after {timeout_s:.0f}s:\n{tail(self.log)}")

    def check_alive(self) -> None:
        if self._proc is not None and self._proc.poll() is not None:
            raise RuntimeError(f"daemon exited ({self._proc.returncode}):\n{tail(self.log)}")

    @property
    def pid(self) -> int:
        return int(self._proc.pid)

    def cpu_s(self) -> float:
        return process_cpu_s(self.pid)

    def peak_rss_bytes(self) -> int:
        return peak_rss_bytes(self.pid)

    async def stop(self, timeout_s: float = 60.0) -> int:
        """SIGTERM: stop claiming, give back leases, drain, write outcomes, exit 0."""
        if self._proc is None:
            return 0
        code = await terminate(self._proc, timeout_s)
        if code != 0:
            note(f"daemon exited with {code}; log: {self.log}\n{tail(self.log)}")
        return code


# -- PostgreSQL ---------------------------------------------------------------------------------


def dsn_with_database(dsn: str, database: str) -> str:
    return urlunsplit(urlsplit(dsn)._replace(path=f"/{database}"))


async def admin(dsn: str, statement: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(statement)
    finally:
        await conn.close()


class Postgres:
    """The server, a template migrated once with `webhookd migrate`, and fresh clones."""

    def __init__(self, workdir: Path) -> None:
        self._workdir = workdir
        self._embedded: Any = None
        self.dsn = ""
        self.template = f"webhookd_bench_tpl_{secrets.token_hex(4)}"

    async def start(self) -> None:
        configured = os.environ.get(DATABASE_URL_ENV)
        if configured:
            self.dsn = configured
        else:
            from daemon.embedded import EmbeddedPostgres

            note("starting the embedded PostgreSQL")
            self._embedded = EmbeddedPostgres(self._workdir / "pgdata", fast=True)
            self.dsn = await asyncio.to_thread(self._embedded.start)
        await admin(self.dsn, f'CREATE DATABASE "{self.template}"')
        await self.migrate(dsn_with_database(self.dsn, self.template))

    async def migrate(self, dsn: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("WEBHOOKD_")}
        env["WEBHOOKD_DATABASE_URL"] = dsn
        script = BIN / "webhookd"
        cmd = [str(script)] if script.exists() else [sys.executable, "-m", "daemon"]
        done = await asyncio.create_subprocess_exec(
            *cmd, "migrate", env=env, stdout=asyncio.subprocess.PIPE, stderr=subprocess.STDOUT
        )
        output, _ = await done.communicate()
        if done.returncode != 0:
            raise RuntimeError(f"webhookd migrate failed: {output.decode(errors='replace')}")

    @contextlib.asynccontextmanager
    async def fresh_database(self, template: str | None = None) -> AsyncIterator[str]:
        """A migrated database of its own (a clone of the template), dropped afterwards."""
        name = f"webhookd_bench_{secrets.token_hex(4)}"
        source = f'TEMPLATE "{template}"' if template else f'TEMPLATE "{self.template}"'
        await admin(self.dsn, f'CREATE DATABASE "{name}" {source}')
        try:
            dsn = dsn_with_database(self.dsn, name)
            # Again: the tree may have gained a migration since the template was made.
            await self.migrate(dsn)
            yield dsn
        finally:
            await admin(self.dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')

    def cpu_s(self) -> float | None:
        """CPU seconds of the whole embedded server so far (exited backends included);
        None for a server we did not start."""
        if self._embedded is None:
            return None
        try:
            pid = int((self._embedded.data_dir / "postmaster.pid").read_text().split()[0])
            master = psutil.Process(pid)
            times = master.cpu_times()
            total = times.user + times.system + times.children_user + times.children_system
            for child in master.children():
                with contextlib.suppress(psutil.Error):
                    child_times = child.cpu_times()
                    total += child_times.user + child_times.system
        except (OSError, ValueError, psutil.Error):
            return None
        return float(total)

    async def stop(self) -> None:
        with contextlib.suppress(Exception):
            await admin(self.dsn, f'DROP DATABASE IF EXISTS "{self.template}" WITH (FORCE)')
        if self._embedded is not None:
            await asyncio.to_thread(self._embedded.stop, "immediate")


class Env:
    """Everything one benchmark script needs; see `environment()`."""

    def __init__(self, workdir: Path, pg: Postgres | None, receiver: Receiver) -> None:
        self.workdir = workdir
        self.pg = pg
        self.receiver = receiver

    @property
    def postgres(self) -> Postgres:
        assert self.pg is not None, "environment(database=False)"
        return self.pg

    def daemon(self, dsn: str, **env: str) -> Daemon:
        return Daemon(dsn, self.workdir, env)


@contextlib.asynccontextmanager
async def environment(*, database: bool = True, delay_ms: float = 0.0) -> AsyncIterator[Env]:
    """A work directory, PostgreSQL (unless not needed) and the receiver; all removed after.
    The work directory (logs) is kept when the benchmark fails."""
    workdir = Path(tempfile.mkdtemp(prefix="webhookd-bench-"))
    os.chmod(workdir, 0o755)  # the embedded server runs as another user
    pg = Postgres(workdir) if database else None
    receiver = Receiver(workdir, delay_ms)
    ok = False
    try:
        if pg is not None:
            await pg.start()
        await receiver.start()
        yield Env(workdir, pg, receiver)
        ok = True
    finally:
        await receiver.stop()
        if pg is not None:
            await pg.stop()
        if ok:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            shutil.rmtree(workdir / "pgdata", ignore_errors=True)
            note(f"kept {workdir} (logs)")
