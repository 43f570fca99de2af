"""A msg_id goes out as the webhook-id header: one that no header can carry is refused at insert
(migration 0010), and one already stored is dead-lettered at its first attempt, not retried."""

from __future__ import annotations

import asyncpg
import pytest

from tests.integration.conftest import Harness, Receiver


@pytest.mark.parametrize(
    "msg_id", ["", "a\r\nX-Injected: 1", "tab\there", " lead", "trail ", "x" * 257, "c1\x85"]
)
async def test_outbox_refuses_a_msg_id_no_header_can_carry(harness: Harness, msg_id: str) -> None:
    with pytest.raises(asyncpg.CheckViolationError, match="outbox_msg_id_sendable"):
        await harness.enqueue(msg_id=msg_id)


async def test_outbox_takes_ordinary_msg_ids(harness: Harness) -> None:
    for msg_id in ("msg_2b0c", "order-17/attempt 2", "é-ü", "x" * 256):
        await harness.enqueue(msg_id=msg_id)


async def test_a_stored_msg_id_no_header_can_carry_is_dead_lettered_at_once(
    harness: Harness, receiver: Receiver, run_daemon
) -> None:
    """A row from before the constraint (added NOT VALID) is not retried for a day."""
    ep_id, _ = await harness.endpoint(receiver.url("/hook"))
    await harness.conn.execute("ALTER TABLE webhookd.outbox DROP CONSTRAINT outbox_msg_id_sendable")
    await harness.enqueue(endpoint_id=ep_id, msg_id="bad\r\nid")
    await harness.enqueue(endpoint_id=ep_id, msg_id="good")

    async with run_daemon(delivery={"retry_schedule_s": (60.0,) * 5}):
        [failed] = await harness.wait_status("failed", 1)
        await harness.wait_status("delivered", 1)

    assert failed["msg_id"] == "bad\r\nid"
    assert failed["attempts"] == 1
    assert failed["last_error"].startswith("invalid_message: ")
    assert "msg_id cannot be sent as the webhook-id header" in failed["last_error"]
    [attempt] = await harness.attempts(failed["id"])
    assert attempt["error_class"] == "invalid_message"
    assert [hit.headers["webhook-id"] for hit in receiver.hits] == ["good"]
