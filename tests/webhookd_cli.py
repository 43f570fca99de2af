"""The real `webhookd` command in a subprocess, against a test's database: one clear line on
stderr and an exit code for bad input, JSON on stdout with --json."""

from __future__ import annotations

import asyncio
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

_SCRIPT = Path(sys.executable).with_name("webhookd")
WEBHOOKD = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "daemon"]


@dataclass
class Result:
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
    """The real `webhookd` command against a test's database (no configuration file; plain
    http:// endpoints allowed)."""

    dsn: str

    async def __call__(self, *args: str) -> Result:
        env = {k: v for k, v in os.environ.items() if not k.startswith("WEBHOOKD_")}
        env |= {
            "WEBHOOKD_DATABASE_URL": self.dsn,
            "WEBHOOKD_DELIVERY_ALLOW_INSECURE_HTTP": "true",
        }
        proc = await asyncio.create_subprocess_exec(
            *WEBHOOKD,
            *args,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode is not None
        return Result(proc.returncode, out.decode(), err.decode())

    async def add(self, *args: str) -> str:
        result = await self("endpoint", "add", *args, "--json")
        assert result.code == 0, result.err
        return str(result.json()["id"])
