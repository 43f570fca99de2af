"""`webhookd --help` and argument errors import no driver, server or demo: they answer at once.

Checked by module name in `-X importtime` output, not by timing: the process's own list of
imports is exact on any machine, however loaded.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

# What the commands import when they run (hundreds of ms together), not to parse arguments.
HEAVY = ("aiohttp", "asyncpg", "structlog", "prometheus_client", "uvloop")
HEAVY_OWN = ("daemon.service", "daemon.demo", "daemon.store", "daemon.embedded", "daemon.metrics")


def imported_by(*argv: str) -> tuple[int, set[str]]:
    """Exit code and every module imported by `python -m daemon ARGV`."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "daemon", *argv],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    # "import time: <self us> | <cumulative us> | <indent><module>"
    modules = {
        line.rsplit("|", 1)[1].strip()
        for line in done.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }
    return done.returncode, modules


def heavy(modules: set[str]) -> list[str]:
    """The heavy packages and modules among `modules` (a package once, not each submodule)."""
    return sorted(
        {m if m in HEAVY_OWN else m.split(".")[0] for m in modules} & {*HEAVY, *HEAVY_OWN}
    )


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["run", "--help"],
        ["demo", "--help"],
        ["endpoint", "list", "--help"],
        ["message", "list", "--help"],
        ["embedded", "stop", "--help"],
        ["prune", "--help"],
    ],
    ids=" ".join,
)
def test_help_imports_no_heavy_module(argv: list[str]) -> None:
    code, modules = imported_by(*argv)

    assert code == 0
    assert "daemon.cli" in modules  # the output was parsed
    assert heavy(modules) == []


def test_bad_argument_is_reported_without_heavy_imports() -> None:
    code, modules = imported_by("endpoint", "add", "https://example.com", "--rate", "fast")

    assert code == 2
    assert heavy(modules) == []
