"""The benchmarks keep working: each runs with --quick and prints one JSON line.

Only the cheapest run by default, so `make test` stays fast; WEBHOOKD_BENCH_SMOKE=all runs
every one (peer_pgqueuer needs the `bench` extra). They use the test session's PostgreSQL
server rather than starting their own.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
CHEAP = ["http_ceiling", "wakeup", "log_event", "import"]
ALL = [
    *CHEAP,
    "throughput",
    "scale_out",
    "latency_bound",
    "backlog",
    "ratelimit",
    "peer_pgqueuer",
    "endpoints",
    "operator_queries",
    "noisy",
    "ordering",
    "leases",
    "claim_designs",
    "api",
]
NEEDS_NO_DATABASE = {"http_ceiling", "log_event"}


def selected() -> list[str]:
    return ALL if os.environ.get("WEBHOOKD_BENCH_SMOKE") == "all" else CHEAP


@pytest.mark.timeout(180)
@pytest.mark.parametrize("name", selected())
def test_bench_quick_prints_one_json_line(name: str, request: pytest.FixtureRequest) -> None:
    if name == "peer_pgqueuer" and importlib.util.find_spec("pgqueuer") is None:
        pytest.skip("pgqueuer is in the bench extra: pip install -e '.[bench]'")
    env = dict(os.environ)
    if name not in NEEDS_NO_DATABASE:
        env["WEBHOOKD_BENCH_DATABASE_URL"] = request.getfixturevalue("pg_server_dsn")
    done = subprocess.run(
        [sys.executable, str(BENCH / f"{name}.py"), "--quick"],
        env=env,
        capture_output=True,
        timeout=170,
        check=False,
    )
    stderr = done.stderr.decode(errors="replace")
    assert done.returncode == 0, stderr[-4000:]
    lines = done.stdout.decode().strip().splitlines()
    assert len(lines) == 1, done.stdout
    result = json.loads(lines[0])
    assert result["bench"] == name
    assert result["quick"] is True
