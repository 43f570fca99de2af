"""End to end: outbox row -> signed POST at a real receiver -> recorded outcome."""

from __future__ import annotations

import orjson
import pytest
from aiohttp import web
from standardwebhooks.webhooks import Webhook

from tests.integration.conftest import Harness, Receiver


async def test_inserted_row_is_delivered_signed_and_recorded(
    harness: Harness, receiver: Receiver, run_daemon
) -> None:
    ep_id, secret = await harness.endpoint(receiver.url("/hook"))
    async with run_daemon():
        await harness.enqueue({"test": 2432232314}, endpoint_id=ep_id)
        await receiver.wait_hits(1)
        [row] = await harness.wait_status("delivered", 1)
    hit = receiver.hits[0]
    assert orjson.loads(hit.body) == {"test": 2432232314}
    assert hit.headers["webhook-id"] == row["msg_id"]
    assert hit.headers["Content-Type"] == "application/json"
    assert hit.headers["User-Agent"].startswith("webhookd/")
    Webhook(secret).verify(hit.body, hit.headers)
    [attempt] = await harness.attempts(row["id"])
    assert attempt["status_code"] == 200
    assert attempt["attempt"] == 1
    assert row["attempts"] == 1 and row["last_status_code"] == 200


async def test_failing_receiver_is_retried_on_schedule_then_dead_lettered(
    harness: Harness, receiver: Receiver, run_daemon
) -> None:
    receiver.on("/down", lambda hit, n: web.Response(status=500, text="boom"))
    ep_id, _ = await harness.endpoint(receiver.url("/down"), retry_schedule_s=(0.3, 0.6))
    async with run_daemon():
        await harness.enqueue(endpoint_id=ep_id)
        [row] = await harness.wait_status("failed", 1)
    hits = receiver.at("/down")
    assert len(hits) == 3
    assert hits[1].at - hits[0].at >= 0.3
    assert hits[2].at - hits[1].at >= 0.6
    assert "gave up after 3 attempts" in row["last_error"]
    attempts = await harness.attempts(row["id"])
    assert [a["status_code"] for a in attempts] == [500, 500, 500]
    assert [a["error_class"] for a in attempts] == ["http_500"] * 3
    # each attempt keeps its own error; only the delivery says why it was given up
    assert [a["error"] for a in attempts] == ["HTTP 500"] * 3
    assert bytes(attempts[0]["response_body"]) == b"boom"


async def test_service_reports_ready_only_once_started_and_stopping_on_stop(
    db_dsn: str, tmp_path
) -> None:
    import socket

    from daemon.sdnotify import Notifier
    from daemon.service import Service
    from tests.integration.conftest import daemon_config

    path = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(path)
    sock.setblocking(False)
    service = Service(daemon_config(db_dsn), notifier=Notifier({"NOTIFY_SOCKET": path}))
    try:
        with pytest.raises(BlockingIOError):
            sock.recv(4096)  # nothing before start
        await service.start()
        ready = sock.recv(4096).decode()
        assert ready.startswith("READY=1\nSTATUS=in flight 0")
        assert service.health is not None and service.health.port > 0
        await service.stop()
        assert sock.recv(4096) == b"STOPPING=1"
    finally:
        sock.close()
