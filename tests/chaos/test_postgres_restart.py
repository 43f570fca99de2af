"""PostgreSQL restarted, or stopped for a while, under a running `webhookd run` with attempts
in flight: the daemon logs, backs off and reconnects, keeps the outcomes it could not write
and writes them later, reports not-ready meanwhile, and never exits.

The server is this module's own durable cluster (fsync on, unlike the suite's throwaway one):
a restart must not lose a committed row here, or the test would blame the daemon for it."""

from __future__ import annotations

import asyncio
import re
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
import pytest_asyncio

from daemon.embedded import EmbeddedPostgres
from daemon.endpoints import EndpointSpec, add_endpoint
from daemon.migrate import apply_migrations
from daemon.store import Store
from tests.chaos.conftest import DaemonProcess, Spawn, toml
from tests.conftest import dsn_with_database
from tests.integration.conftest import Receiver, wait_until

pytestmark = pytest.mark.chaos

MESSAGES = 30
RECEIVER_DELAY_S = 0.5
CONFIG = toml(
    {
        "database": {"connect_timeout": "2s", "pool_max_size": 5},
        "outbox": {"poll_interval": "200ms"},  # the lease stays the default 30 s margin
        "delivery": {
            "timeout": "5s",
            "concurrency": 10,  # 5 per endpoint: 10 deliveries a second
            "allow_insecure_http": True,
            "allow_private_networks": True,
            "retry_jitter": 0,
            "retry_schedule": ["200ms", "200ms"],
            "drain_timeout": "2s",
        },
        "metrics": {"listen": "127.0.0.1:0"},
    }
)


@pytest.fixture(scope="module")
def durable_pg() -> Iterator[EmbeddedPostgres]:
    # Not tmp_path: see tests/conftest.py (pytest resets its base dir to 0700 each session).
    base = Path(tempfile.mkdtemp(prefix="webhookd-chaos-pg-"))
    server = EmbeddedPostgres(base / "data")  # durable: fsync and synchronous_commit on
    try:
        server.start()
        yield server
    finally:
        try:
            server.stop(mode="immediate")
        finally:
            shutil.rmtree(base, ignore_errors=True)


async def query(dsn: str, statement: str, *args: Any) -> list[asyncpg.Record]:
    """One statement on a fresh connection: a long-lived one would not survive the restart."""
    conn = await asyncpg.connect(dsn, timeout=5)
    try:
        rows: list[asyncpg.Record] = await conn.fetch(statement, *args)
        return rows
    finally:
        await conn.close()


@pytest_asyncio.fixture
async def chaos_dsn(durable_pg: EmbeddedPostgres) -> AsyncIterator[str]:
    """A migrated database of its own on the durable server (restarted by earlier tests)."""
    await asyncio.to_thread(durable_pg.start)  # a no-op when it runs
    name = f"webhookd_chaos_{int(time.time() * 1000)}"
    await query(durable_pg.dsn, f'CREATE DATABASE "{name}"')
    dsn = dsn_with_database(durable_pg.dsn, name)
    await apply_migrations(dsn)
    yield dsn
    await asyncio.to_thread(durable_pg.start)
    await query(durable_pg.dsn, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass
class ReadyWatch:
    """Polls /readyz every 50 ms and keeps each answer's status code."""

    port: int
    codes: list[int] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None

    async def run(self) -> None:
        url = f"http://127.0.0.1:{self.port}/readyz"
        timeout = aiohttp.ClientTimeout(total=5)
        async with aiohttp.ClientSession(timeout=timeout) as http:
            while not self.stop.is_set():
                async with http.get(url) as resp:
                    self.codes.append(resp.status)
                await asyncio.sleep(0.05)

    async def wait_for(self, code: int, timeout_s: float) -> None:
        seen = len(self.codes)

        async def answered() -> bool:
            assert self.task is not None and not self.task.done(), "the daemon stopped answering"
            return code in self.codes[seen:]

        await wait_until(answered, timeout_s, f"/readyz {code}")

    async def close(self) -> None:
        self.stop.set()
        if self.task is not None:
            await asyncio.wait_for(self.task, 10)


async def metric(port: int, name: str) -> float:
    async with aiohttp.ClientSession() as http, http.get(f"http://127.0.0.1:{port}/metrics") as r:
        text = await r.text()
    values = re.findall(rf"^{re.escape(name)}(?:{{[^}}]*}})? (\S+)$", text, re.MULTILINE)
    return sum(float(v) for v in values)


Outage = Callable[[EmbeddedPostgres, ReadyWatch, int], Awaitable[None]]


async def restart(server: EmbeddedPostgres, _ready: ReadyWatch, _port: int) -> None:
    await asyncio.to_thread(server.restart)  # pg_ctl stop -m fast, then start on the same port


async def stop_then_start(server: EmbeddedPostgres, ready: ReadyWatch, port: int) -> None:
    await asyncio.to_thread(server.stop)
    await ready.wait_for(503, 5)
    await asyncio.sleep(2.0)
    # Attempts that finished meanwhile are held in memory, counted as unwritten.
    assert await metric(port, "webhookd_outcomes_unwritten") > 0
    await asyncio.to_thread(server.start)


# A restart can be over between two statements of the daemon: then the pool just reconnects
# and only the LISTEN connection and /readyz notice. Stopped for 2 s, every part notices.
@pytest.mark.parametrize(
    ("outage", "long"), [(restart, False), (stop_then_start, True)], ids=["restart", "stop-start"]
)
async def test_daemon_rides_out_a_postgres_outage_with_attempts_in_flight(
    durable_pg: EmbeddedPostgres,
    chaos_dsn: str,
    receiver: Receiver,
    spawn: Spawn,
    outage: Outage,
    long: bool,
) -> None:
    receiver.slow("/hook", RECEIVER_DELAY_S)
    store = await Store.connect(chaos_dsn, max_size=1)
    try:
        spec = EndpointSpec(url=receiver.url("/hook"))
        ep_id, _ = await add_endpoint(store, spec, allow_http=True)
    finally:
        await store.close()
    daemon: DaemonProcess = await spawn(chaos_dsn, CONFIG, "daemon")
    port = int((await daemon.started())["metrics_port"])
    ready = ReadyWatch(port)
    ready.task = asyncio.create_task(ready.run())
    try:
        await ready.wait_for(200, 5)
        await query(
            chaos_dsn,
            "INSERT INTO webhookd.outbox (endpoint_id, event_type, payload)"
            " SELECT $1, 'test.event', jsonb_build_object('n', g) FROM generate_series(1, $2) g",
            ep_id,
            MESSAGES,
        )
        await receiver.wait_hits(3)
        assert receiver.in_flight > 0

        await outage(durable_pg, ready, port)

        async def all_delivered() -> bool:
            with suppress(OSError, asyncpg.PostgresError):  # still starting up
                rows = await query(chaos_dsn, "SELECT status FROM webhookd.deliveries")
                return Counter(r["status"] for r in rows) == {"delivered": MESSAGES}
            return False

        await wait_until(all_delivered, 15, "every delivery to be delivered")
        await ready.wait_for(200, 10)
        assert daemon.proc.returncode is None, daemon.output[-3000:]
        assert await metric(port, "webhookd_outcomes_unwritten") == 0
        if long:
            assert await metric(port, "webhookd_database_errors_total") > 0
    finally:
        await ready.close()
    codes = ready.codes
    assert 503 in codes, "/readyz never reported the outage"
    assert codes[-1] == 200
    assert await daemon.terminate() == 0, daemon.output[-3000:]
    await check_everything_recorded(chaos_dsn, receiver)
    check_logs(daemon, long)


async def check_everything_recorded(dsn: str, receiver: Receiver) -> None:
    """Every attempt that reached the receiver is on record, and every message arrived."""
    rows = await query(
        dsn,
        "SELECT d.id, d.attempts, o.msg_id FROM webhookd.deliveries d"
        " JOIN webhookd.outbox o ON o.id = d.message_id",
    )
    attempts = await query(dsn, "SELECT delivery_id, status_code FROM webhookd.attempts")
    sent = Counter(h.headers["webhook-id"] for h in receiver.hits)
    assert set(sent) == {r["msg_id"] for r in rows}
    assert len(attempts) == len(receiver.hits), "an attempt's outcome was lost"
    assert {a["status_code"] for a in attempts} == {200}
    per_delivery = Counter(a["delivery_id"] for a in attempts)
    assert all(per_delivery[r["id"]] >= 1 for r in rows)


def check_logs(daemon: DaemonProcess, long: bool) -> None:
    """Warnings naming the outage, not tracebacks or dead tasks; stderr stays empty."""
    events = daemon.events()
    assert len(events) == len(daemon.lines), "a stdout line was not a JSON log event"
    names = Counter(str(e["event"]) for e in events)
    noticed = ("database_unavailable",) if long else ("database_unavailable", "listen_")
    outage = [e for e in events if any(word in str(e["event"]) for word in noticed)]
    assert outage, names
    assert {e["level"] for e in outage} == {"warning"}
    if long:
        assert names["outbox.database_unavailable"] and names["recorder.database_unavailable"]
    assert "Traceback" not in daemon.output
    assert not any("exception" in e for e in events)
    assert "service.task_died" not in names
    assert daemon.err_lines == []
    assert [e["event"] for e in events][-1] == "service.stopped"
