"""The real `webhookd` executable: endpoint admin, check-config, migrate, and `run` with signals.

Each command is a separate process (about half a second of start-up), so independent commands
run concurrently and related assertions share one test.
"""

from __future__ import annotations

import asyncio
import base64
import secrets
import signal
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import asyncpg
import orjson
import pytest
import pytest_asyncio

from daemon import sql
from tests.cli_support import REPO, Cli, assert_one_line_error
from tests.integration.conftest import Harness, Receiver, wait_until

UNREACHABLE_DSN = "postgresql://postgres@127.0.0.1:1/x"

RUN_CONFIG = """
[database]
connect_timeout = "2s"
[outbox]
poll_interval = "200ms"
[delivery]
allow_insecure_http = true
allow_private_networks = true
retry_jitter = 0
drain_timeout = "2s"
"""


@pytest_asyncio.fixture
async def conn(db_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(db_dsn)
    try:
        yield connection
    finally:
        await connection.close()


async def enqueue(conn: asyncpg.Connection, endpoint_id: str, count: int = 1) -> None:
    await conn.execute(
        "INSERT INTO webhookd.outbox (endpoint_id, event_type, payload)"
        " SELECT $1, 'test.event', jsonb_build_object('n', g) FROM generate_series(1, $2) g",
        endpoint_id,
        count,
    )


# -- endpoint add -------------------------------------------------------------------------


async def test_endpoint_add_json_prints_id_and_secret_usable_in_outbox(
    cli: Cli, conn: asyncpg.Connection
) -> None:
    result = await cli("endpoint", "add", "https://example.com/hook", "--json")
    assert result.code == 0, result.err
    assert result.out.count("\n") == 1 and result.out.endswith("\n")
    data = result.json()
    assert isinstance(data, dict)
    assert data["id"].startswith("ep_")
    assert data["secret"].startswith("whsec_")
    key = base64.b64decode(data["secret"].removeprefix("whsec_"), validate=True)
    assert 24 <= len(key) <= 32

    await enqueue(conn, data["id"])
    [delivery] = await conn.fetch("SELECT * FROM webhookd.deliveries")
    assert delivery["endpoint_id"] == data["id"]
    assert delivery["status"] == "pending"


async def test_endpoint_add_stores_every_option(cli: Cli, conn: asyncpg.Connection) -> None:
    ep_id = await cli.add(
        "https://example.com/hook",
        *("--tenant", "acme", "--event-type", "a.b", "--event-type", "c.d"),
        *("--rate", "100/min", "--burst", "5", "--max-in-flight", "3"),
        *("--header", "Authorization: Bearer x", "--header", "x-api-key: k"),
        *("--signature", "hmac-sha256-hex:X-SF-Signature:sha256=", "--secret", "mysecret"),
        *("--timeout", "10s", "--retry-schedule", "4s,8s,10s"),
    )
    row = await conn.fetchrow("SELECT * FROM webhookd.endpoints WHERE id = $1", ep_id)
    assert row is not None
    assert row["url"] == "https://example.com/hook"
    assert row["tenant_id"] == "acme"
    assert row["event_types"] == ["a.b", "c.d"]
    assert row["rate_per_s"] == pytest.approx(100 / 60)
    assert row["burst"] == 5
    assert row["max_in_flight"] == 3
    assert orjson.loads(row["headers"]) == [["Authorization", "Bearer x"], ["x-api-key", "k"]]
    assert row["signature_scheme"] == "hmac-sha256-hex"
    assert row["signature_header"] == "X-SF-Signature"
    assert row["signature_prefix"] == "sha256="
    assert row["secret"] == "mysecret"
    assert row["timeout_ms"] == 10000
    assert row["retry_schedule_ms"] == [4000, 8000, 10000]
    assert row["enabled"] is True


BAD_ADD_OPTIONS = [
    (["--rate", "fast"], "--rate"),
    (["--burst", "0"], "--burst"),
    (["--timeout", "soon"], "--timeout"),
    (["--retry-schedule", "x"], "--retry-schedule"),
    (["--signature", "rsa"], "--signature"),
    (["--header", "NoColon"], "--header"),
    (["--header", "Content-Type: x"], "--header"),
    (["--secret", "notbase64!"], "--secret"),
]


async def test_bad_endpoint_options_give_one_line_naming_the_option_and_exit_2(
    cli: Cli,
) -> None:
    strict = cli.write_config('[database]\nconnect_timeout = "2s"\n')
    url = "https://example.com/hook"
    cases = [(["endpoint", "add", url, *args], name, None) for args, name in BAD_ADD_OPTIONS]
    cases += [
        (["endpoint", "add", "not-a-url"], "url:", None),
        (["endpoint", "add", "http://example.com/hook"], "allow_insecure_http", strict),
    ]
    results = await asyncio.gather(*(cli(*argv, config=cfg) for argv, _, cfg in cases))
    for (argv, name, _), result in zip(cases, results, strict=True):
        assert_one_line_error(result, 2, name)
        assert result.err.count(name) == 1, result.err  # named once, not "--rate: --rate:"
        assert result.out == "", argv
    # A bad value is refused before anything is written.
    listed = await cli("endpoint", "list", "--json")
    assert listed.json() == {"endpoints": [], "next_after": None}


async def test_unknown_endpoint_gives_one_line_and_exit_3(cli: Cli) -> None:
    actions = ("show", "disable", "enable", "delete")
    results = await asyncio.gather(*(cli("endpoint", a, "ep_missing") for a in actions))
    for result in results:
        assert_one_line_error(result, 3, "ep_missing")


# -- endpoint list / show / disable / enable / delete -----------------------------------------


async def test_endpoint_lifecycle_never_shows_header_values(
    cli: Cli, conn: asyncpg.Connection
) -> None:
    header_value = f"Bearer tok-{secrets.token_hex(8)}"
    ep_id, other_id = await asyncio.gather(
        cli.add(
            "https://example.com/hook",
            "--tenant",
            "acme",
            "--header",
            f"Authorization: {header_value}",
        ),
        cli.add("https://example.com/other"),
    )

    table, as_json, show, show_json = await asyncio.gather(
        cli("endpoint", "list"),
        cli("endpoint", "list", "--json"),
        cli("endpoint", "show", ep_id),
        cli("endpoint", "show", ep_id, "--json"),
    )
    for result in (table, as_json, show, show_json):
        assert result.code == 0, result.err
        assert header_value not in result.out
    [header, *rows] = table.out.splitlines()
    assert header.split() == ["ID", "TENANT", "STATE", "PENDING", "FAILED", "URL"]
    assert {r.split()[0] for r in rows} == {ep_id, other_id}
    [ep_row] = [r.split() for r in rows if r.startswith(ep_id)]
    assert ep_row[1:3] == ["acme", "enabled"]
    listed = {e["id"]: e for e in as_json.json()["endpoints"]}
    assert listed[ep_id]["headers"] == {"Authorization": "[redacted]"}
    assert "Authorization" in show.out and "[redacted]" in show.out
    assert show_json.json()["headers"] == {"Authorization": "[redacted]"}

    disabled = await cli("endpoint", "disable", ep_id, "--reason", "receiver down")
    assert disabled.code == 0, disabled.err
    listed = {e["id"]: e for e in (await cli("endpoint", "list", "--json")).json()["endpoints"]}
    assert listed[ep_id]["enabled"] is False
    assert listed[ep_id]["disabled_reason"] == "receiver down"
    assert listed[other_id]["enabled"] is True

    enabled = await cli("endpoint", "enable", ep_id)
    assert enabled.code == 0, enabled.err
    table = await cli("endpoint", "list", "--tenant", "acme")
    assert table.out.splitlines()[1].split()[:3] == [ep_id, "acme", "enabled"]

    await enqueue(conn, ep_id, count=2)
    deleted = await cli("endpoint", "delete", ep_id)
    assert deleted.code == 0, deleted.err
    assert "2 undelivered deliveries dead-lettered" in deleted.out
    statuses = await conn.fetch(
        "SELECT status FROM webhookd.deliveries WHERE endpoint_id = $1", ep_id
    )
    assert [r["status"] for r in statuses] == ["failed", "failed"]
    after = await cli("endpoint", "list", "--json")
    assert [e["id"] for e in after.json()["endpoints"]] == [other_id]


# -- check-config -------------------------------------------------------------------------


async def test_check_config_prints_effective_config_or_one_line_naming_the_key(
    cli: Cli,
) -> None:
    unknown = cli.write_config('[delivery]\ntimeot = "5s"\n')
    bad_duration = cli.write_config('[delivery]\ntimeout = "soon"\n')
    ok, unknown_key, bad_value, bad_env = await asyncio.gather(
        # check-config never connects, so a password in the URL is safe to try here.
        cli("check-config", dsn="postgresql://u:hunter2@127.0.0.1:1/x"),
        cli("check-config", config=unknown),
        cli("check-config", config=bad_duration),
        cli("check-config", env={"WEBHOOKD_DELIVERY_CONCURRENCY": "abc"}),
    )
    assert ok.code == 0, ok.err
    body, _, tail = ok.out.rpartition("configuration ok")
    assert tail == "\n"
    effective = orjson.loads(body)
    assert effective["delivery"]["allow_insecure_http"] is True
    assert effective["database"]["connect_timeout"] == "2s"
    assert effective["metrics"]["listen"] == "127.0.0.1:0"
    assert effective["database"]["url"] == "postgresql://u:***@127.0.0.1:1/x"
    assert "hunter2" not in ok.out + ok.err

    assert_one_line_error(unknown_key, 2, "delivery.timeot", "unknown key")
    assert_one_line_error(bad_value, 2, "delivery.timeout", "soon")
    assert_one_line_error(bad_env, 2, "delivery.concurrency", "WEBHOOKD_DELIVERY_CONCURRENCY")


# -- migrate and start-up failures ---------------------------------------------------------------


async def test_migrate_applies_once_and_run_refuses_a_bare_database(
    cli: Cli, bare_dsn: str
) -> None:
    run, admin = await asyncio.gather(
        cli("run", dsn=bare_dsn), cli("endpoint", "list", dsn=bare_dsn)
    )
    for result in (run, admin):
        assert result.code != 0
        assert "Traceback" not in result.err
        [line] = [ln for ln in result.err_lines if "pending" in ln]
        assert "migrations" in line and "webhookd migrate" in line

    versions = [version for version, _ in sql.migrations()]
    first = await cli("migrate", dsn=bare_dsn)
    assert first.code == 0, first.err
    assert all(v in first.out for v in versions)
    second = await cli("migrate", dsn=bare_dsn)
    assert second.code == 0, second.err
    assert "schema is current" in second.out


async def test_unreachable_database_fails_fast_with_one_line(cli: Cli) -> None:
    quick = cli.write_config('[database]\nconnect_timeout = "1s"\n')
    commands = [("run",), ("migrate",), ("endpoint", "list")]
    loop = asyncio.get_running_loop()
    started = loop.time()
    results = await asyncio.gather(
        *(cli(*c, config=quick, dsn=UNREACHABLE_DSN, timeout_s=15) for c in commands)
    )
    assert loop.time() - started < 10
    for result in results:
        assert_one_line_error(result, 1, "127.0.0.1:1")


async def test_run_with_metrics_port_taken_gives_one_line_naming_the_key(cli: Cli) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = await cli("run", env={"WEBHOOKD_METRICS_LISTEN": f"127.0.0.1:{port}"})
    assert_one_line_error(result, 2, "metrics.listen", f"127.0.0.1:{port}", "in use")


# -- run as a real process -------------------------------------------------------------------


@dataclass
class Daemon:
    """A running `webhookd run` whose stdout lines are collected as they come."""

    proc: asyncio.subprocess.Process
    lines: list[str] = field(default_factory=list)
    reader: asyncio.Task[None] | None = None

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        async for raw in self.proc.stdout:
            self.lines.append(raw.decode())

    def events(self) -> list[dict[str, object]]:
        return [orjson.loads(line) for line in self.lines]

    async def wait_event(self, event: str, timeout_s: float = 15) -> dict[str, object]:
        async def seen() -> bool:
            if any(f'"{event}"' in line for line in self.lines):
                return True
            if self.proc.returncode is not None:
                assert self.proc.stderr is not None
                err = (await self.proc.stderr.read()).decode()
                raise AssertionError(f"webhookd exited with {self.proc.returncode}: {err}")
            return False

        await wait_until(seen, timeout_s, event)
        return next(e for e in self.events() if e["event"] == event)


@pytest_asyncio.fixture
async def daemon(cli: Cli) -> AsyncIterator[Daemon]:
    config = cli.write_config(RUN_CONFIG)
    proc = await asyncio.create_subprocess_exec(
        *cli.argv(("run",), config),
        env=cli.env(),
        cwd=REPO,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    running = Daemon(proc)
    running.reader = asyncio.create_task(running._read())
    try:
        yield running
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await running.reader


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_run_delivers_logs_json_and_stops_cleanly_on_signal(
    daemon: Daemon, harness: Harness, receiver: Receiver, signum: signal.Signals
) -> None:
    started = await daemon.wait_event("service.started")
    ep_id, _ = await harness.endpoint(receiver.url("/hook"))
    await harness.enqueue({"hello": "cli"}, endpoint_id=ep_id, msg_id="msg_cli_1")
    await receiver.wait_hits(1)
    await harness.wait_status("delivered", 1)
    attempt = await daemon.wait_event("delivery.attempt")

    daemon.proc.send_signal(signum)
    code = await asyncio.wait_for(daemon.proc.wait(), timeout=8)
    assert daemon.reader is not None
    await daemon.reader
    assert daemon.proc.stderr is not None
    err = (await daemon.proc.stderr.read()).decode()

    assert code == 0, err
    assert err == ""  # the daemon logs to stdout only
    assert orjson.loads(receiver.hits[0].body) == {"hello": "cli"}
    assert isinstance(started["metrics_port"], int) and started["metrics_port"] > 0
    assert attempt["msg_id"] == "msg_cli_1"
    assert attempt["endpoint"] == ep_id
    assert attempt["attempt"] == 1
    assert attempt["status"] == 200
    assert isinstance(attempt["ms"], float | int) and attempt["ms"] >= 0
    events = daemon.events()  # every line parses as one JSON object
    for event in events:
        assert {"event", "level", "timestamp"} <= event.keys(), event
    names = [e["event"] for e in events]
    assert names[-1] == "service.stopped"
    assert names.index("service.stopping") < names.index("service.stopped")


async def test_rotate_secret_prints_the_new_secret_and_keeps_the_old_one_for_the_grace(
    cli: Cli, conn: asyncpg.Connection
) -> None:
    ep_id = await cli.add("https://example.com/hook")
    old = await conn.fetchval("SELECT secret FROM webhookd.endpoints WHERE id = $1", ep_id)
    rotated, bad = await asyncio.gather(
        cli("endpoint", "rotate-secret", ep_id, "--grace", "2h", "--json"),
        cli("endpoint", "rotate-secret", ep_id, "--grace", "soon"),
    )
    assert rotated.code == 0, rotated.err
    new = rotated.json()["secret"]
    assert new.startswith("whsec_") and new != old
    assert rotated.json()["previous_valid_for"] == "2h"
    row = await conn.fetchrow(
        "SELECT secret, previous_secrets FROM webhookd.endpoints WHERE id = $1", ep_id
    )
    assert row["secret"] == new
    [previous] = orjson.loads(row["previous_secrets"])
    assert previous["secret"] == old
    assert bad.code == 2 and len(bad.err_lines) == 1 and "--grace" in bad.err
