"""systemd/webhookd-api.service: the daemon unit's sandbox, the `api` command, notify type."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from daemon.cli import build_parser

REPO = Path(__file__).resolve().parents[2]
API_UNIT = REPO / "systemd" / "webhookd-api.service"
DAEMON_UNIT = REPO / "systemd" / "webhookd.service"
# What is the daemon's alone: its watchdog, reload, state and drain timing.
DAEMON_ONLY = {
    "ExecStart", "ExecReload", "WatchdogSec", "TimeoutStopSec", "StateDirectory",
    "EnvironmentFile", "Description",
}  # fmt: skip


def directives(path: Path) -> dict[str, str]:
    pairs = re.findall(r"^(\w+)=(.*)$", path.read_text(), re.MULTILINE)
    return dict(pairs)


def test_the_api_unit_has_the_daemons_sandbox() -> None:
    api, daemon = directives(API_UNIT), directives(DAEMON_UNIT)
    shared = {k: v for k, v in daemon.items() if k not in DAEMON_ONLY}
    assert {k: api.get(k) for k in shared} == shared
    assert api["Type"] == "notify" and api["KillSignal"] == "SIGTERM"


def test_the_api_unit_runs_webhookd_api() -> None:
    argv = shlex.split(directives(API_UNIT)["ExecStart"])
    assert argv[0] == "/opt/webhookd/venv/bin/webhookd"
    args = build_parser().parse_args(argv[1:])
    assert args.command == "api"


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_the_api_unit_verifies(tmp_path: Path) -> None:
    webhookd = Path(sys.executable).with_name("webhookd")
    local = tmp_path / "webhookd-api.service"
    local.write_text(
        re.sub(r"^ExecStart=\S+", f"ExecStart={webhookd}", API_UNIT.read_text(), flags=re.M)
    )
    done = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(local)],
        capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0 and done.stderr == "", done.stdout + done.stderr
