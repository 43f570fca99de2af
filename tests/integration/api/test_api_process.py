"""The real `webhookd api` process: READY=1 to systemd once it listens, JSON logs on stdout,
and a clean exit on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
from pathlib import Path

import aiohttp
import orjson
from svix.api import ApplicationIn, EndpointIn, Svix, SvixOptions

from tests.api_support import webhookd


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _with_sync_sdk(token: str, url: str) -> list[str]:
    svix = Svix(token, SvixOptions(server_url=url))
    try:
        app = svix.application.create(ApplicationIn(name="Acme", uid="acme"))
        svix.endpoint.create(app.id, EndpointIn(url="https://example.com/hook"))
        return [e.url for e in svix.endpoint.list("acme").data]
    finally:
        svix._httpx_client.close()


async def test_api_process_notifies_ready_serves_and_stops_on_sigterm(
    db_dsn: str, tmp_path: Path
) -> None:
    created = await webhookd(db_dsn, "api-token", "create", "--scope", "admin", "--json")
    assert created.code == 0, created.err
    token = orjson.loads(created.out)["token"]
    notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    notify_path = str(tmp_path / "notify.sock")
    notify.bind(notify_path)
    notify.setblocking(False)
    port = _free_port()
    script = Path(sys.executable).with_name("webhookd")
    env = {k: v for k, v in os.environ.items() if not k.startswith("WEBHOOKD_")} | {
        "WEBHOOKD_DATABASE_URL": db_dsn,
        "WEBHOOKD_API_LISTEN": f"127.0.0.1:{port}",
        "WEBHOOKD_API_METRICS_LISTEN": "127.0.0.1:0",
        "NOTIFY_SOCKET": notify_path,
    }
    proc = await asyncio.create_subprocess_exec(
        str(script), "api", env=env, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, stdin=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    try:
        loop = asyncio.get_running_loop()
        ready = await asyncio.wait_for(loop.sock_recv(notify, 4096), 20)
        assert b"READY=1" in ready
        headers = {"Authorization": f"Bearer {token}"}
        async with aiohttp.ClientSession() as session:
            url = f"http://127.0.0.1:{port}"
            async with session.get(url + "/api/v1/health") as health:
                assert health.status == 204
            async with session.get(url + "/api/v1/openapi.json", headers=headers) as doc:
                assert (await doc.json())["openapi"] == "3.1.0"
            async with session.get(url + "/api/v1/app/nope", headers=headers) as missing:
                assert missing.status == 404
                request_id = missing.headers["X-Request-Id"]
        # The synchronous client exactly as Svix documents it, against the real process.
        listed = await asyncio.to_thread(_with_sync_sdk, token, f"http://127.0.0.1:{port}")
        assert listed == ["https://example.com/hook"]
        proc.send_signal(signal.SIGTERM)
        out, err = await asyncio.wait_for(proc.communicate(), 20)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        notify.close()
    assert proc.returncode == 0, err.decode()
    lines = [orjson.loads(line) for line in out.splitlines() if line.startswith(b"{")]
    events = [line["event"] for line in lines]
    assert "api.started" in events and events[-1] == "api.stopped"
    [refusal] = [line for line in lines if line.get("request_id") == request_id]
    assert (refusal["event"], refusal["status"], refusal["route"]) == (
        "api.request", 404, "/api/v1/app/{app_id}",
    )  # fmt: skip
    assert b"Traceback" not in out + err and token.encode() not in out + err
