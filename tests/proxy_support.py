"""A real forward proxy for tests: tinyproxy from Debian's packages, installed when missing.

CI (env CI set) fails loudly when it cannot be installed; elsewhere the tests that need it are
skipped with the reason. Each proxy runs in the foreground with its own configuration and log
in a temporary directory, on a free 127.0.0.1 port.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

VIA_NAME = "webhookd-test-proxy"
_PLACES = ("/usr/bin/tinyproxy", "/usr/sbin/tinyproxy")


def _found() -> str | None:
    return shutil.which("tinyproxy") or next((p for p in _PLACES if os.access(p, os.X_OK)), None)


def _install() -> str:
    """Try `apt-get install -y tinyproxy` (then with `apt-get update` first); returns why it
    did not work, or an empty string."""
    if shutil.which("apt-get") is None:
        return "apt-get is not available"
    if os.geteuid() != 0:
        return "installing packages needs root"
    env = os.environ | {"DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", "tinyproxy"]
    why = ""
    for steps in ([install], [["apt-get", "update"], install]):
        for step in steps:
            done = subprocess.run(step, env=env, capture_output=True, text=True, timeout=600)
            if done.returncode != 0:
                lines = (done.stderr or done.stdout).strip().splitlines()
                why = f"`{' '.join(step)}` exited {done.returncode}: {lines[-1] if lines else ''}"
                break
        else:
            return ""
    return why


def ensure_installed() -> int:
    """`python -m tests.proxy_support` (make test, before pytest: an install can outlast a
    test's timeout): 0 when tinyproxy is there or was installed; 1 only under CI."""
    if _found() is not None:
        return 0
    why = _install()
    if _found() is not None:
        print("tinyproxy installed for the forward-proxy tests")
        return 0
    print(f"tinyproxy could not be installed: {why}; the forward-proxy tests", end=" ")
    print("fail under CI" if os.environ.get("CI") else "will be skipped")
    return 1 if os.environ.get("CI") else 0


def tinyproxy_binary() -> str:
    """The tinyproxy executable, installed if need be; fails under CI, skips elsewhere."""
    found = _found()
    if found is None:
        why = _install()
        found = _found()
        if found is None:
            message = f"tinyproxy is needed for the forward-proxy tests: {why or 'not found'}"
            if os.environ.get("CI"):
                pytest.fail(message, pytrace=False)
            pytest.skip(message + " (apt-get install tinyproxy)")
    return found


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class TinyProxy:
    """A running tinyproxy: its URL (credentials not included) and its log."""

    port: int
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url_with(self, user: str, password: str) -> str:
        return f"http://{user}:{password}@127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def requests(self) -> list[str]:
        """The request lines the proxy logged: `CONNECT host:port HTTP/1.1`, `POST http://...`."""
        marker = "Request (file descriptor"
        return [line.split("): ", 1)[1] for line in self.log().splitlines() if marker in line]


@asynccontextmanager
async def tinyproxy(
    binary: str,
    tmp_path: Path,
    *,
    basic_auth: tuple[str, str] | None = None,
    deny_hosts: Sequence[str] = (),
    connect_ports: Sequence[int] = (),
) -> AsyncIterator[TinyProxy]:
    """tinyproxy in the foreground (`-d`) with its own configuration: only 127.0.0.1 may use
    it, the Via header on, optional Basic credentials (407 without them), a filter denying
    `deny_hosts` (403) and CONNECT allowed only to `connect_ports` (all when empty)."""
    workdir = tmp_path / f"tinyproxy-{free_port()}"
    workdir.mkdir()
    port = free_port()
    log_path = workdir / "tinyproxy.log"
    lines = [
        f"Port {port}",
        "Listen 127.0.0.1",
        "Timeout 30",
        "MaxClients 100",
        "Allow 127.0.0.1",
        f'LogFile "{log_path}"',
        "LogLevel Connect",
        f'ViaProxyName "{VIA_NAME}"',
        "DisableViaHeader No",
    ]
    lines += [f"ConnectPort {p}" for p in connect_ports]
    if basic_auth is not None:
        lines.append(f"BasicAuth {basic_auth[0]} {basic_auth[1]}")
    if deny_hosts:
        filter_path = workdir / "filter"
        filter_path.write_text("".join(f"^{h.replace('.', '[.]')}$\n" for h in deny_hosts))
        lines += [f'Filter "{filter_path}"', "FilterDefaultDeny No", "FilterURLs Off"]
    conf = workdir / "tinyproxy.conf"
    conf.write_text("\n".join(lines) + "\n")
    proc = await asyncio.create_subprocess_exec(
        binary,
        "-d",
        "-c",
        str(conf),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        await _accepting(port, proc)
        yield TinyProxy(port, log_path)
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 5)
            except TimeoutError:
                proc.kill()
                await proc.wait()


async def _accepting(port: int, proc: asyncio.subprocess.Process, timeout_s: float = 10) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        if proc.returncode is not None:
            raise AssertionError(f"tinyproxy exited with {proc.returncode} at start")
        try:
            _, writer = await asyncio.open_connection("127.0.0.1", port)
        except OSError:
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"tinyproxy not accepting on {port} after {timeout_s}s"
                ) from None
            await asyncio.sleep(0.02)
            continue
        writer.close()
        await writer.wait_closed()
        return


if __name__ == "__main__":
    raise SystemExit(ensure_installed())
