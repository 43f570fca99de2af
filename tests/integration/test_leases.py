"""Fenced leases, renewed while held: a delivery is attempted only under a live lease of its
own process, and a process that lost its lease can log its attempt but never overwrite the
state of the one that took it over."""

from __future__ import annotations

import asyncio

import orjson
from structlog.testing import capture_logs

from daemon.models import AttemptResult, Delivery, Outcome, RetryDecision
from daemon.recorder import Recorder, pause_write, release_write
from tests.integration.conftest import DaemonFactory, Harness, Receiver, claim, wait_until

DEAD_URL = "http://127.0.0.1:9/never"
OK = AttemptResult(0.0, 0.01, 200)


async def expire_and_rescue(harness: Harness, delivery_ids: list[int]) -> None:
    await harness.conn.execute(
        "UPDATE webhookd.deliveries SET locked_until = now() - interval '1 second'"
        " WHERE id = ANY($1::bigint[])",
        delivery_ids,
    )
    rescued = await harness.store.fetch("rescue_expired", limit=1000)
    assert sorted(r["id"] for r in rescued) == sorted(delivery_ids)


async def test_every_claim_takes_its_own_token_and_stamps_it_on_its_rows(
    harness: Harness,
) -> None:
    ep, _ = await harness.endpoint(DEAD_URL)
    await harness.enqueue_many(ep, 4)
    first = await claim(harness.store, [ep], [2], 2, 30.0, "same")
    second = await claim(harness.store, [ep], [2], 2, 30.0, "same")
    assert len({r["lease_token"] for r in first}) == 1
    assert len({r["lease_token"] for r in second}) == 1
    assert first[0]["lease_token"] != second[0]["lease_token"]
    stored = {r["id"]: r["lease_token"] for r in await harness.deliveries()}
    assert all(stored[r["id"]] == r["lease_token"] for r in [*first, *second])


async def test_an_outcome_that_lost_its_lease_is_logged_but_does_not_overwrite(
    harness: Harness,
) -> None:
    """Two processes with the same instance_id (every pid is 1 in containers): the first
    loses its lease, the second takes the row; the first's late outcome must not count."""
    ep, _ = await harness.endpoint(DEAD_URL)
    await harness.enqueue(endpoint_id=ep)
    [row] = await claim(harness.store, [ep], [1], 1, 30.0, "pid-1")
    stale = Delivery.from_record(row)
    await expire_and_rescue(harness, [stale.id])
    [row] = await claim(harness.store, [ep], [1], 1, 30.0, "pid-1")
    holder = Delivery.from_record(row)
    assert holder.lease_token != stale.lease_token

    recorder = Recorder(harness.store, "pid-1")
    failed = RetryDecision(retry=False, delay_s=0.0, reason="gave up")
    recorder.put(Outcome(stale, AttemptResult(0.0, 0.02, 500, "http_500"), failed))
    assert await recorder.drain(timeout_s=5)
    [state] = await harness.deliveries(ep)
    assert (state["status"], state["lease_token"]) == ("delivering", holder.lease_token)
    assert [a["status_code"] for a in await harness.attempts()] == [500]  # logged all the same

    recorder.put(Outcome(holder, OK, None))
    assert await recorder.drain(timeout_s=5)
    [state] = await harness.deliveries(ep)
    assert (state["status"], state["lease_token"], state["locked_by"]) == ("delivered", None, None)
    assert [a["status_code"] for a in await harness.attempts()] == [500, 200]


async def test_a_stale_release_leaves_the_new_holders_lease_alone(harness: Harness) -> None:
    ep, _ = await harness.endpoint(DEAD_URL)
    await harness.enqueue(endpoint_id=ep)
    [row] = await claim(harness.store, [ep], [1], 1, 30.0, "a")
    stale = Delivery.from_record(row)
    await expire_and_rescue(harness, [stale.id])
    [row] = await claim(harness.store, [ep], [1], 1, 30.0, "b")
    recorder = Recorder(harness.store, "a")
    recorder.write(release_write([stale]))
    recorder.write(pause_write(ep, 0.01, [stale]))
    assert await recorder.drain(timeout_s=5)
    [state] = await harness.deliveries(ep)
    assert (state["status"], state["locked_by"]) == ("delivering", "b")


async def test_renewals_return_only_the_leases_still_held(harness: Harness) -> None:
    ep, _ = await harness.endpoint(DEAD_URL)
    await harness.enqueue_many(ep, 3)
    rows = await claim(harness.store, [ep], [3], 3, 2.0, "a")
    ids = [r["id"] for r in rows]
    tokens = [r["lease_token"] for r in rows]
    await expire_and_rescue(harness, ids[:1])
    kept = await harness.store.fetch(
        "renew_leases", delivery_ids=ids, lease_tokens=tokens, lease_s=[60.0] * 3
    )
    assert sorted(r["id"] for r in kept) == sorted(ids[1:])
    leases = await harness.conn.fetch(
        "SELECT extract(epoch FROM locked_until - now()) AS left_s FROM webhookd.deliveries"
        " WHERE id = ANY($1::bigint[])",
        ids[1:],
    )
    assert all(55 < r["left_s"] <= 60 for r in leases)


async def test_a_delivery_queued_longer_than_its_lease_is_renewed_not_rescued(
    harness: Harness, receiver: Receiver, run_daemon: DaemonFactory
) -> None:
    """One slot per endpoint, answers taking 0.8 s, and a lease of 2 s (1 s timeout + 1 s
    margin): the sixth delivery waits ~4 s in the queue. Another daemon rescuing expired
    leases all the while finds none, and each message arrives once."""
    ep, _ = await harness.endpoint(receiver.url("/slow"), max_in_flight=1)
    receiver.slow("/slow", 0.8)
    await harness.enqueue_many(ep, 6)
    rescued: list[int] = []

    async def rescuer() -> None:
        while True:
            rescued.extend(r["id"] for r in await harness.store.fetch("rescue_expired", limit=10))
            await asyncio.sleep(0.1)

    task = asyncio.create_task(rescuer())
    try:
        async with run_daemon(
            outbox={"lease_margin_s": 1.0}, delivery={"timeout_s": 1.0, "retry_jitter": 0.0}
        ):
            await harness.wait_status("delivered", 6, timeout_s=20)
    finally:
        task.cancel()
    assert rescued == []
    assert len(receiver.at("/slow")) == 6
    assert {r["attempts"] for r in await harness.deliveries(ep)} == {1}


async def test_an_outcome_postgresql_refuses_ends_as_a_dead_letter_not_a_loop(
    harness: Harness,
) -> None:
    """A retry due so far ahead that its timestamp is out of range: the delivery is not left
    leased (and POSTed again every lease period forever); it is dead-lettered with the error
    and the attempt is logged."""
    ep, _ = await harness.endpoint(DEAD_URL)
    await harness.enqueue(endpoint_id=ep)
    [row] = await claim(harness.store, [ep], [1], 1, 30.0, "a")
    d = Delivery.from_record(row)
    absurd = RetryDecision(retry=True, delay_s=1e13, reason="http 500")
    recorder = Recorder(harness.store, "a")
    with capture_logs() as logs:
        recorder.put(Outcome(d, AttemptResult(0.0, 0.02, 500, "http_500", "HTTP 500"), absurd))
        assert await recorder.drain(timeout_s=5)
    [state] = await harness.deliveries(ep)
    assert state["status"] == "failed" and state["lease_token"] is None
    assert state["last_error"].startswith("outcome could not be recorded: ")
    [attempt] = await harness.attempts()
    assert (attempt["attempt"], attempt["status_code"], attempt["error_class"]) == (
        1,
        500,
        "unrecordable",
    )
    assert [e["event"] for e in logs if e["log_level"] == "error"] == ["recorder.outcome_refused"]


async def test_a_payload_over_the_limit_is_never_loaded_and_is_dead_lettered(
    harness: Harness, receiver: Receiver, run_daemon: DaemonFactory
) -> None:
    ep, _ = await harness.endpoint(receiver.url("/big"))
    big = {"blob": "x" * 300_000}
    await harness.enqueue(big, endpoint_id=ep)
    [row] = await claim(harness.store, [ep], [1], 1, 30.0, "probe", max_payload_bytes=100_000)
    assert row["payload"] is None
    assert row["payload_bytes"] == len(orjson.dumps(big)) + 1  # jsonb's text adds a space
    await harness.conn.execute("UPDATE webhookd.deliveries SET status = 'pending'")

    async with run_daemon(delivery={"max_payload_bytes": 100_000}):
        [dead] = await harness.wait_status("failed", 1, ep)
    assert dead["last_error"].startswith("payload_too_large: payload is 300012 bytes")
    assert receiver.hits == []


async def test_an_endpoint_whose_claim_postgresql_refuses_is_left_out_and_others_go_on(
    harness: Harness, receiver: Receiver, run_daemon: DaemonFactory
) -> None:
    """A row PostgreSQL refuses to update (a value out of range, written by SQL past every
    check) makes the claim statement fail: the daemon keeps running, leaves that endpoint out
    and delivers the rest."""
    bad, _ = await harness.endpoint(receiver.url("/bad"))
    good, _ = await harness.endpoint(receiver.url("/good"))
    await harness.conn.execute("UPDATE webhookd.endpoints SET rate_per_s = 5 WHERE id = $1", bad)
    # PostgreSQL refusing to spend this endpoint's tokens, whatever the reason may be
    await harness.conn.execute(
        "CREATE FUNCTION public.refuse_spend() RETURNS trigger LANGUAGE plpgsql AS $$"
        " BEGIN IF NEW.tokens IS DISTINCT FROM OLD.tokens THEN"
        " RAISE EXCEPTION 'numeric field overflow (simulated)'; END IF; RETURN NEW; END $$"
    )
    await harness.conn.execute(
        "CREATE TRIGGER refuse_spend BEFORE UPDATE ON webhookd.endpoint_state FOR EACH ROW"
        f" WHEN (NEW.endpoint_id = '{bad}') EXECUTE FUNCTION public.refuse_spend()"
    )
    await harness.enqueue_many(bad, 3)
    await harness.enqueue_many(good, 3)
    with capture_logs() as logs:
        async with run_daemon() as service:
            await harness.wait_status("delivered", 3, good)

            async def quarantined() -> bool:
                return any(e["event"] == "outbox.endpoint_quarantined" for e in logs)

            await wait_until(quarantined, 5, "the bad endpoint left out")
            assert not service._stopped.is_set()
    assert receiver.at("/bad") == []
    [event] = [e for e in logs if e["event"] == "outbox.endpoint_quarantined"]
    assert event["endpoint"] == bad
