"""The real `webhookd` executable run as a separate process, for the tests of its commands:
`Cli` writes a config file and runs `webhookd --config <file> ...` against one database, and
`Result` is what a finished command left behind."""

from __future__ import annotations

import asyncio
import os
import secrets
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

REPO = Path(__file__).resolve().parents[1]
_SCRIPT = Path(sys.executable).with_name("webhookd")
WEBHOOKD = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "daemon"]

BASE_CONFIG = """
[database]
connect_timeout = "2s"
[delivery]
allow_insecure_http = true
"""


@dataclass
class Result:
    """What one finished command left behind."""

    code: int
    out: str
    err: str

    @property
    def err_lines(self) -> list[str]:
        return self.err.splitlines()

    def json(self) -> Any:
        return orjson.loads(self.out)


@dataclass
class Cli:
    """Runs `webhookd --config <file> ...` against one database."""

    dsn: str
    tmp_path: Path
    config: Path = field(init=False)

    def __post_init__(self) -> None:
        self.config = self.write_config(BASE_CONFIG, "webhookd.toml")

    def write_config(self, text: str, name: str | None = None) -> Path:
        path = self.tmp_path / (name or f"cfg_{secrets.token_hex(4)}.toml")
        path.write_text(text)
        return path

    def env(self, dsn: str | None = None, **extra: str) -> dict[str, str]:
        # Only our own WEBHOOKD_* variables: one left over in the caller's shell would change
        # what is being tested.
        env = {k: v for k, v in os.environ.items() if not k.startswith("WEBHOOKD_")}
        env["WEBHOOKD_DATABASE_URL"] = dsn or self.dsn
        env["WEBHOOKD_METRICS_LISTEN"] = "127.0.0.1:0"
        return env | extra

    def argv(self, args: tuple[str, ...], config: Path | None) -> list[str]:
        return [*WEBHOOKD, "--config", str(config or self.config), *args]

    async def __call__(
        self,
        *args: str,
        config: Path | None = None,
        dsn: str | None = None,
        env: Mapping[str, str] | None = None,
        timeout_s: float = 30,
    ) -> Result:
        proc = await asyncio.create_subprocess_exec(
            *self.argv(args, config),
            env=self.env(dsn, **(env or {})),
            cwd=REPO,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
        finally:
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
        assert proc.returncode is not None
        return Result(proc.returncode, out.decode(), err.decode())

    async def add(self, *args: str) -> str:
        """`endpoint add ... --json`; returns the new id."""
        result = await self("endpoint", "add", *args, "--json")
        assert result.code == 0, result.err
        ep_id = result.json()["id"]
        assert isinstance(ep_id, str)
        return ep_id


def assert_one_line_error(result: Result, code: int, *names: str) -> None:
    assert result.code == code, (result.code, result.err)
    assert len(result.err_lines) == 1, result.err
    assert result.err.startswith("webhookd: error: "), result.err
    assert "Traceback" not in result.err
    for name in names:
        assert name in result.err, (name, result.err)


def ok(result: Result) -> Result:
    """The result of a command that must have succeeded."""
    assert result.code == 0, result.err
    return result
