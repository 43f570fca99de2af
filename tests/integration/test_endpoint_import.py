"""`webhookd endpoint import`: endpoints from JSON lines through the real executable, all or
nothing, in batches of one statement, with secrets that the daemon signs with."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import asyncpg
import orjson
import pytest

from daemon.endpoint_import import BATCH, import_endpoints
from daemon.endpoints import EndpointSpec
from daemon.secretbox import ENV_VAR, PREFIX, SecretBox, generate_key
from daemon.service import Service
from daemon.signing import verify
from daemon.store import Tx
from tests.cli_support import Cli, assert_one_line_error, ok
from tests.integration.conftest import Harness, Receiver, daemon_config
from tests.receivers import spatialflow_receiver_accepts

HEX = "hmac-sha256-hex:X-SF-Signature:sha256="


def jsonl(path: Path, lines: list[Any]) -> Path:
    """One line per item: an object as JSON, a string as it is (blank or broken lines)."""
    text = "".join(
        (line if isinstance(line, str) else orjson.dumps(line).decode()) + "\n" for line in lines
    )
    path.write_text(text)
    return path


def varied(i: int) -> dict[str, Any]:
    """Endpoint `i` of a file that uses every field somewhere."""
    line: dict[str, Any] = {"url": f"https://example.com/hooks/{i}", "tenant": f"t{i % 7}"}
    if i % 2:
        line["event_types"] = ["invoice.paid", "invoice.created"]
    if i % 3 == 0:
        line |= {"rate": "100/min", "burst": 5, "max_in_flight": 3}
    if i % 5 == 0:
        line["headers"] = {"Authorization": f"Bearer tok-{i}"}
    if i % 7 == 0:
        line |= {"signature": HEX, "secret": f"hex-secret-{i}"}
    if i % 11 == 0:
        line |= {"timeout": "10s", "retry_schedule": "5s,1m,10m", "description": f"n{i}"}
    if i % 13 == 0 and i % 7:
        line["signature"] = "standard-ed25519"
    if i % 17 == 0:
        line["id"] = f"imported-{i}"
    return line


async def count(conn: asyncpg.Connection, table: str = "endpoints") -> int:
    return int(await conn.fetchval(f"SELECT count(*) FROM webhookd.{table}"))


async def test_import_creates_thousands_in_batches_with_the_checks_of_add(
    cli: Cli, harness: Harness, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lines: list[Any] = [varied(i) for i in range(3000)]
    lines.insert(100, "")  # blank lines are skipped, and still counted as lines
    lines.insert(2000, "   ")
    path = jsonl(tmp_path / "endpoints.jsonl", lines)
    key = generate_key()

    started = time.monotonic()
    result = ok(await cli("endpoint", "import", str(path), "--json", env={ENV_VAR: key}))
    elapsed_s = time.monotonic() - started
    text = ok(await cli("endpoint", "import", str(jsonl(tmp_path / "one.jsonl", [varied(1)]))))

    created = result.json()
    assert len(created) == 3000 and elapsed_s < 20
    assert [c["line"] for c in created] == [n for n in range(1, 3003) if n not in (101, 2001)]
    assert created[17]["id"] == "imported-17"
    assert len({c["id"] for c in created}) == 3000
    by_id = {c["id"]: c for c in created}
    ed25519 = [i for i, c in enumerate(created) if "public_key" in c]
    assert ed25519 == [i for i in range(3000) if i % 13 == 0 and i % 7]
    assert await count(harness.conn) == await count(harness.conn, "endpoint_state") == 3001
    assert text.out.startswith("imported 1 endpoints from ") and "--json" in text.out

    # Stored as `endpoint add` stores them: limits in their units, secrets and header values
    # sealed with the key, the clear secret printed once.
    box = SecretBox.from_env({ENV_VAR: key})
    row = await harness.conn.fetchrow("SELECT * FROM webhookd.endpoints WHERE id = 'imported-0'")
    assert row is not None
    assert (row["rate_per_s"], row["burst"], row["max_in_flight"]) == (100 / 60, 5, 3)
    assert (row["timeout_ms"], list(row["retry_schedule_ms"])) == (10_000, [5_000, 60_000, 600_000])
    assert row["signature_scheme"] == "hmac-sha256-hex" and row["secret"].startswith(PREFIX)
    assert box.open(row["secret"], "s") == by_id["imported-0"]["secret"] == "hex-secret-0"
    [[name, sealed]] = orjson.loads(row["headers"])
    assert name == "Authorization" and box.open(sealed, "h") == "Bearer tok-0"
    plain = by_id[created[1]["id"]]  # line 2: i = 1
    stored = await harness.conn.fetchval(
        "SELECT secret FROM webhookd.endpoints WHERE id = $1", plain["id"]
    )
    assert box.open(stored, "s") == plain["secret"] and plain["secret"].startswith("whsec_")
    types = await harness.conn.fetchval(
        "SELECT event_types FROM webhookd.endpoints WHERE id = $1", plain["id"]
    )
    assert list(types) == ["invoice.paid", "invoice.created"]

    # One INSERT per batch, not a round trip per endpoint.
    statements: list[str] = []
    fetch = Tx.fetch

    async def counting(self: Tx, name: str, /, **params: Any) -> Any:
        statements.append(name)
        return await fetch(self, name, **params)

    monkeypatch.setattr(Tx, "fetch", counting)
    specs = ((n, EndpointSpec(url=f"https://example.com/b/{n}")) for n in range(1, 2 * BATCH + 2))
    made = await import_endpoints(harness.store, specs, allow_http=False)
    assert len(made) == 2 * BATCH + 1
    assert statements == ["endpoints_import"] * 3


async def test_a_bad_line_is_named_and_nothing_is_written(
    cli: Cli, harness: Harness, tmp_path: Path
) -> None:
    secret, header = "hex-secret-never-shown", "Bearer never-shown"
    taken, _ = await harness.endpoint("https://example.com/taken", id="ep_taken")
    good = [{"url": f"https://example.com/{i}"} for i in range(2500)]
    bad_lines = {
        "late": (2400, {"url": "https://example.com/x", "rate": "fast"}, "line 2401: rate:"),
        "header": (
            10,
            {"url": "https://example.com/x", "headers": {"X-Key": header + "\u0007"}},
            "line 11: headers: value of X-Key contains a control character",
        ),
        "secret": (
            5,
            {"url": "https://example.com/x", "signature": "standard", "secret": secret},
            "line 6: secret:",
        ),
        "duplicate": (
            1800,
            {"url": "https://example.com/x", "id": "ep_twice"},
            "line 1802: id: ep_twice is also the id on line 1801",
        ),
        "taken": (
            1999,
            {"url": "https://example.com/x", "id": taken},
            f"line 2000: id: {taken} is taken by an existing (or deleted) endpoint",
        ),
        "not json": (7, '{"url": "https://example.com/x",', "line 8: not JSON"),
        "unknown": (
            3,
            {"url": "https://e.com/x", "evnet_types": []},
            "unknown field 'evnet_types'",
        ),
        "no url": (0, {"tenant": "acme"}, "line 1: url: missing"),
        "redacted": (
            4,
            {"url": "https://example.com/x", "headers": {"X-Key": "[redacted]"}},
            "line 5: headers: value of 'X-Key' is [redacted]",
        ),
    }
    files = {}
    for name, (at, line, _) in bad_lines.items():
        lines: list[Any] = list(good)
        if name == "duplicate":
            lines.insert(at, {"url": "https://example.com/y", "id": "ep_twice"})
            at += 1
        lines.insert(at, line)
        files[name] = jsonl(tmp_path / f"{name.replace(' ', '_')}.jsonl", lines)

    results = await asyncio.gather(
        *(cli("endpoint", "import", str(path), "--json") for path in files.values()),
        cli("endpoint", "import", str(tmp_path / "missing.jsonl")),
    )
    for (name, (_, _, expected)), result in zip(bad_lines.items(), results, strict=False):
        assert_one_line_error(result, 2, expected)
        assert result.out == "", name
        assert secret not in result.err and "never-shown" not in result.err, name
    assert_one_line_error(results[-1], 2, "FILE", "missing.jsonl")
    assert await count(harness.conn) == 1  # only the one made before
    assert await count(harness.conn, "endpoint_state") == 1


async def test_imported_endpoints_are_signed_with_the_secrets_printed(
    cli: Cli, harness: Harness, receiver: Receiver, tmp_path: Path
) -> None:
    key = generate_key()
    lines = [
        {"url": receiver.url("/std")},
        {"url": receiver.url("/ed"), "signature": "standard-ed25519"},
        {"url": receiver.url("/hex"), "signature": HEX, "secret": "hex-secret"},
    ]
    proc = await asyncio.create_subprocess_exec(
        *cli.argv(("endpoint", "import", "-", "--json"), None),
        env=cli.env(**{ENV_VAR: key}),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    stdin = b"".join(orjson.dumps(line) + b"\n" for line in lines)
    out, err = await asyncio.wait_for(proc.communicate(stdin), 30)
    assert proc.returncode == 0, err.decode()
    std, ed, hexed = orjson.loads(out)
    assert "secret" not in ed and ed["public_key"].startswith("whpk_")
    assert b"whsk_" not in out + err  # the private key is never printed

    service = Service(daemon_config(harness.dsn), secret_box=SecretBox.from_env({ENV_VAR: key}))
    await service.start()
    try:
        for created in (std, ed, hexed):
            await harness.enqueue({"to": created["url"]}, endpoint_id=created["id"])
        await harness.wait_status("delivered", 3)
    finally:
        await service.stop()
    [std_hit], [ed_hit], [hex_hit] = (receiver.at(p) for p in ("/std", "/ed", "/hex"))
    now_s = time.time()
    assert verify(std["secret"], std_hit.headers, std_hit.body, now_s=now_s)
    assert verify(ed["public_key"], ed_hit.headers, ed_hit.body, now_s=now_s)
    signature = hex_hit.headers["X-SF-Signature"]
    assert spatialflow_receiver_accepts("hex-secret", hex_hit.body, signature)
