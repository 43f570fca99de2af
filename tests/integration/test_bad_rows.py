"""Rows the daemon cannot deliver: a deleted or disabled endpoint, a URL or secret written by
hand that the CLI would have refused, a malformed headers column. Each is recorded (or left
waiting) with a reason; none stops the daemon or the delivery to other endpoints.

(A payload over `delivery.max_payload` is in test_delivery.py.)"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from structlog.testing import capture_logs

from daemon.endpoints import delete_endpoint, set_enabled
from daemon.service import Service
from daemon.signing import generate_secret
from tests.integration.conftest import Harness, Receiver, wait_until


def tasks_alive(svc: Service) -> None:
    dead = [t.get_name() for t in svc._tasks if t.done()]
    assert not dead, f"service tasks ended: {dead}"


async def insert_endpoint(harness: Harness, url: str, **columns: Any) -> str:
    """An endpoint row written by SQL, skipping every check `endpoint add` makes."""
    values = {"url": url, "secret": generate_secret(), **columns}
    names = ", ".join(values)
    params = ", ".join(
        f"${i}::jsonb" if k in ("headers", "previous_secrets") else f"${i}"
        for i, k in enumerate(values, 1)
    )
    ep_id = await harness.conn.fetchval(
        f"INSERT INTO webhookd.endpoints ({names}) VALUES ({params}) RETURNING id",
        *values.values(),
    )
    assert isinstance(ep_id, str)
    return ep_id


async def healthy_endpoint_still_delivers(
    harness: Harness, receiver: Receiver, svc: Service, count: int = 3
) -> None:
    ep_id, _ = await harness.endpoint(receiver.url(f"/healthy-{len(receiver.hits)}"))
    for _ in range(count):
        await harness.enqueue(endpoint_id=ep_id)
    await harness.wait_status("delivered", count, endpoint_id=ep_id)
    tasks_alive(svc)


async def get(svc: Service, path: str) -> tuple[int, str]:
    assert svc.health is not None
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"http://127.0.0.1:{svc.health.port}{path}") as resp,
    ):
        return resp.status, await resp.text()


# -- deleted and disabled endpoints ------------------------------------------------------------


async def test_endpoint_deleted_while_delivering_dead_letters_the_rest_without_a_crash(
    harness: Harness, receiver: Receiver, run_daemon: Any
) -> None:
    receiver.slow("/doomed", 0.3)
    doomed, _ = await harness.endpoint(receiver.url("/doomed"), max_in_flight=2)
    await harness.enqueue_many(doomed, 20)
    async with run_daemon() as svc:
        await receiver.wait_hits(2, "/doomed")
        dead_lettered = await delete_endpoint(harness.store, doomed)
        assert 0 < dead_lettered <= 20

        async def settled() -> bool:
            rows = await harness.deliveries(doomed)
            return svc.scheduler.in_flight == 0 and all(
                r["status"] in ("delivered", "failed") for r in rows
            )

        await wait_until(settled, 10, "the deleted endpoint's deliveries to settle")
        hits_after_delete = len(receiver.at("/doomed"))
        await healthy_endpoint_still_delivers(harness, receiver, svc)
        await asyncio.sleep(0.5)  # a released or rescued row would be sent again by now
        assert len(receiver.at("/doomed")) == hits_after_delete
        tasks_alive(svc)
    rows = await harness.deliveries(doomed)
    failed = [r for r in rows if r["status"] == "failed"]
    assert len(failed) == dead_lettered
    assert {r["last_error"] for r in failed} == {"endpoint deleted"}
    assert {r["status"] for r in rows} <= {"delivered", "failed"}
    # Attempts cut short by the delete are still logged (each one that reached the receiver).
    attempts = [a for r in rows for a in await harness.attempts(r["id"])]
    assert len(attempts) == hits_after_delete
    assert {a["status_code"] for a in attempts} == {200}


async def test_disabled_endpoint_keeps_its_deliveries_pending_until_enabled(
    harness: Harness, receiver: Receiver, run_daemon: Any
) -> None:
    ep_id, _ = await harness.endpoint(receiver.url("/off"))
    await set_enabled(harness.store, ep_id, False, "receiver down")
    await harness.enqueue_many(ep_id, 3)
    async with run_daemon() as svc:
        await healthy_endpoint_still_delivers(harness, receiver, svc)
        await asyncio.sleep(0.5)  # several claim rounds (poll interval 200 ms)
        rows = await harness.deliveries(ep_id)
        assert [(r["status"], r["attempts"], r["locked_by"]) for r in rows] == [
            ("pending", 0, None)
        ] * 3
        assert receiver.at("/off") == []
        assert (await get(svc, "/readyz"))[0] == 200
        status, metrics = await get(svc, "/metrics")
        assert status == 200
        assert 'webhookd_deliveries_total{outcome="delivered"} 3.0' in metrics
        assert 'outcome="dead_lettered"' not in metrics or (
            'webhookd_deliveries_total{outcome="dead_lettered"} 0.0' in metrics
        )

        await set_enabled(harness.store, ep_id, True)
        await harness.wait_status("delivered", 3, endpoint_id=ep_id)
        tasks_alive(svc)
    assert len(receiver.at("/off")) == 3


# -- rows written by hand ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("ftp://127.0.0.1/upload", "unsupported URL scheme 'ftp'"),
        ("file:///etc/passwd", "unsupported URL scheme 'file'"),
        ("http:///no-host", "URL has no host"),
        ("not a url", "unsupported URL scheme ''"),
    ],
)
async def test_unusable_url_written_by_sql_is_dead_lettered_at_once(
    harness: Harness, receiver: Receiver, run_daemon: Any, url: str, why: str
) -> None:
    bad = await insert_endpoint(harness, url)
    await harness.enqueue_many(bad, 3)
    async with run_daemon() as svc:
        rows = await harness.wait_status("failed", 3, endpoint_id=bad)
        await healthy_endpoint_still_delivers(harness, receiver, svc)
    for row in rows:
        assert row["attempts"] == 1
        assert row["last_error"].startswith("refused_destination: ")
        assert why in row["last_error"]
        [attempt] = await harness.attempts(row["id"])
        assert attempt["error_class"] == "refused_destination"


async def test_secret_written_by_sql_that_cannot_sign_is_recorded_and_frees_its_slot(
    harness: Harness, receiver: Receiver, run_daemon: Any
) -> None:
    bad = await insert_endpoint(harness, receiver.url("/unsigned"), secret="not-base64!")
    await harness.enqueue_many(bad, 4)
    # Two slots: were a failed signing to leak its slot, the healthy endpoint would starve.
    async with run_daemon(delivery={"concurrency": 2, "endpoint_max_in_flight": 2}) as svc:
        rows = await harness.wait_status("failed", 4, endpoint_id=bad)
        await healthy_endpoint_still_delivers(harness, receiver, svc, count=6)
        assert svc.scheduler.in_flight == 0
    assert receiver.at("/unsigned") == []
    for row in rows:
        assert row["attempts"] == 3  # retried on the schedule (0.2 s, 0.2 s), like any failure
        assert row["last_error"].startswith("gave up after 3 attempts: invalid_endpoint: ")
        assert "whsec_" in row["last_error"]  # says what is wrong ...
        assert "not-base64!" not in row["last_error"]  # ... never the secret itself
        attempts = await harness.attempts(row["id"])
        assert [a["error_class"] for a in attempts] == ["invalid_endpoint"] * 3


@pytest.mark.parametrize(
    "headers",
    [
        '{"Authorization": "Bearer x"}',  # an object, not a list of pairs
        '[["only-a-name"]]',
        "[1, 2]",
        '"Authorization: Bearer x"',
    ],
)
async def test_malformed_headers_row_is_skipped_with_a_log_and_others_keep_loading(
    harness: Harness, receiver: Receiver, run_daemon: Any, headers: str
) -> None:
    bad = await insert_endpoint(harness, receiver.url("/bad-headers"), headers=headers)
    await harness.enqueue_many(bad, 2)
    with capture_logs() as logs:
        async with run_daemon() as svc:
            await healthy_endpoint_still_delivers(harness, receiver, svc)
            await asyncio.sleep(0.3)
            assert bad not in svc.scheduler.endpoint_ids()
            tasks_alive(svc)
            # Fixing the row (by SQL too) brings its deliveries out.
            await harness.conn.execute(
                "UPDATE webhookd.endpoints SET headers = '[]', version = version + 1 WHERE id = $1",
                bad,
            )
            await harness.wait_status("delivered", 2, endpoint_id=bad)
    invalid = [e for e in logs if e["event"] == "endpoints.invalid"]
    assert invalid, [e["event"] for e in logs]
    assert all(e["endpoint"] == bad and e["log_level"] == "error" for e in invalid)
    assert "headers" in invalid[0]["error"]
    assert "Bearer x" not in str(invalid)  # header values never reach the logs
    assert not [e for e in logs if e["event"] == "service.task_died"]
