"""The outbox against real PostgreSQL: claim and lease, rescue, several daemons, wake-ups,
shutdown and database outages."""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import aiohttp
import asyncpg
import pytest
from aiohttp import web

from daemon.store import Store
from tests.conftest import dsn_with_database
from tests.integration.conftest import Harness, Hit, Receiver, claim, wait_until

DEAD_URL = "http://127.0.0.1:9/never"  # claims below are made by hand: nothing is sent


def gated(gate: asyncio.Event, hold_s: float) -> Any:
    """A responder that answers 200 once `gate` is set, or after `hold_s` at the latest."""

    async def respond(_hit: Hit, _n: int) -> web.Response:
        with suppress(TimeoutError):
            await asyncio.wait_for(gate.wait(), timeout=hold_s)
        return web.Response(text="ok")

    return respond


async def statuses(harness: Harness) -> Counter[str]:
    return Counter(r["status"] for r in await harness.deliveries())


# -- the claim statement -------------------------------------------------------------------


async def test_claim_leases_at_most_quota_and_limit(harness: Harness) -> None:
    ep1, _ = await harness.endpoint(DEAD_URL)
    ep2, _ = await harness.endpoint(DEAD_URL)
    await harness.enqueue_many(ep1, 10)
    await harness.enqueue_many(ep2, 10)

    assert len(await claim(harness.store, [ep1], [3], 5, 30.0, "inst-a")) == 3
    assert len(await claim(harness.store, [ep1], [10], 2, 30.0, "inst-a")) == 2
    # The limit cuts across endpoints in the order given: ep2 first, then ep1.
    rows = await claim(harness.store, [ep2, ep1], [4, 4], 6, 30.0, "inst-a")
    assert Counter(r["endpoint_id"] for r in rows) == {ep2: 4, ep1: 2}
    assert {r["msg_id"] for r in rows} <= {r["msg_id"] for r in await harness.deliveries()}

    leased = await harness.conn.fetch(
        "SELECT status, locked_by, extract(epoch FROM locked_until - now()) AS lease_s"
        " FROM webhookd.deliveries WHERE locked_by IS NOT NULL"
    )
    assert len(leased) == 11
    assert {(r["status"], r["locked_by"]) for r in leased} == {("delivering", "inst-a")}
    assert all(28 < r["lease_s"] <= 30.5 for r in leased)
    assert await statuses(harness) == {"delivering": 11, "pending": 9}


async def test_claim_locks_no_rows_beyond_what_it_leases(harness: Harness) -> None:
    """A claim stops at its limit: it leases nothing more, locks no delivery it does not
    lease, and locks the state row of an endpoint it serves, so a daemon claiming at the
    same moment skips that endpoint and takes the other."""
    ep1, _ = await harness.endpoint(DEAD_URL)
    ep2, _ = await harness.endpoint(DEAD_URL)
    await harness.enqueue_many(ep1, 5)
    await harness.enqueue_many(ep2, 5)
    await harness.store.fetchval("absorb_wakes", limit=100)
    async with harness.store.transaction() as tx:  # the claim's locks held, uncommitted
        rows = await tx.fetch(
            "claim",
            limit=3,
            max_endpoints=1,
            default_quota=5,
            local_ids=[],
            local_quotas=[],
            default_rate_per_s=None,
            default_burst=0,
            default_timeout_s=30.0,
            lease_margin_s=0.0,
            dead_letters_block=False,
            instance="inst-a",
            max_payload_bytes=1 << 20,
            free_slots=10,
            hold_limit=256,
            only_endpoint_id=None,
        )
        first = {r["endpoint_id"] for r in rows if r["id"] is not None}
        assert len(first) == 1 and sum(r["id"] is not None for r in rows) == 3
        free = await harness.conn.fetch(
            "SELECT endpoint_id FROM webhookd.deliveries FOR UPDATE SKIP LOCKED"
        )
        assert Counter(r["endpoint_id"] for r in free) == {ep1: 2, ep2: 5}
        other = await claim(harness.store, [], [], 10, 30.0, "inst-b", default_quota=10)
        assert {r["endpoint_id"] for r in other} == {ep1, ep2} - first
        assert len(other) == 5


async def test_live_lease_is_not_claimed_again_and_expired_one_is_rescued(
    harness: Harness,
) -> None:
    ep, _ = await harness.endpoint(DEAD_URL)
    await harness.enqueue_many(ep, 4)
    first = await claim(harness.store, [ep], [10], 10, 30.0, "inst-a")
    assert len(first) == 4

    assert await claim(harness.store, [ep], [10], 10, 30.0, "inst-b") == []
    assert await harness.store.fetch("rescue_expired", limit=1000) == []  # leases still live

    expired = [first[0]["id"], first[1]["id"]]
    await harness.conn.execute(
        "UPDATE webhookd.deliveries SET locked_until = now() - interval '1 second'"
        " WHERE id = ANY($1::bigint[])",
        expired,
    )
    rescued = await harness.store.fetch("rescue_expired", limit=1000)
    assert sorted(r["id"] for r in rescued) == sorted(expired)
    for row in await harness.deliveries():
        if row["id"] in expired:
            assert row["status"] == "pending"
            assert row["locked_by"] is None and row["locked_until"] is None
            assert "lease expired" in row["last_error"] and "inst-a" in row["last_error"]
        else:
            assert (row["status"], row["locked_by"]) == ("delivering", "inst-a")

    again = await claim(harness.store, [ep], [10], 10, 30.0, "inst-b")
    assert sorted(r["id"] for r in again) == sorted(expired)


async def test_concurrent_claims_never_lease_the_same_delivery(
    harness: Harness, db_dsn: str
) -> None:
    eps = [(await harness.endpoint(DEAD_URL))[0] for _ in range(2)]
    await harness.enqueue_many(eps[0], 150)
    await harness.enqueue_many(eps[1], 50)
    all_ids = {r["id"] for r in await harness.deliveries()}
    a = await Store.connect(db_dsn, min_size=1, max_size=1)
    b = await Store.connect(db_dsn, min_size=1, max_size=1)
    try:
        for round_no in range(4):
            await harness.conn.execute(
                "UPDATE webhookd.deliveries"
                " SET status = 'pending', locked_by = NULL, locked_until = NULL"
            )
            got: dict[str, list[int]] = {"a": [], "b": []}
            for _ in range(100):
                ra, rb = await asyncio.gather(
                    claim(a, eps, [20, 20], 25, 30.0, "inst-a"),
                    claim(b, eps[::-1], [20, 20], 25, 30.0, "inst-b"),
                )
                got["a"] += [r["id"] for r in ra]
                got["b"] += [r["id"] for r in rb]
                if not ra and not rb:
                    break
            claimed = got["a"] + got["b"]
            assert len(claimed) == len(set(claimed)), f"round {round_no}: a delivery leased twice"
            assert set(claimed) == all_ids
            owners = {
                r["id"]: r["locked_by"]
                for r in await harness.conn.fetch("SELECT id, locked_by FROM webhookd.deliveries")
            }
            assert all(owners[i] == "inst-a" for i in got["a"])
            assert all(owners[i] == "inst-b" for i in got["b"])
    finally:
        await a.close()
        await b.close()


# -- rescue and several daemons ------------------------------------------------------------


async def test_lease_left_by_a_dead_instance_is_rescued_and_delivered(
    harness: Harness, receiver: Receiver, run_daemon: Any
) -> None:
    ep, _ = await harness.endpoint(receiver.url("/orphan"))
    await harness.enqueue(endpoint_id=ep)
    await harness.conn.execute(
        "UPDATE webhookd.deliveries SET status = 'delivering', locked_by = 'dead-instance',"
        " locked_until = now() - interval '1 second'"
    )
    async with run_daemon() as svc:
        await receiver.wait_hits(1, "/orphan")
        [row] = await harness.wait_status("delivered", 1)
    [attempt] = await harness.attempts(row["id"])
    assert attempt["instance"] == svc.instance
    assert row["attempts"] == 1 and row["locked_by"] is None


async def test_two_daemons_on_one_database_deliver_each_message_exactly_once(
    harness: Harness, receiver: Receiver, run_daemon: Any
) -> None:
    eps = [(await harness.endpoint(receiver.url(f"/e{i}")))[0] for i in range(5)]
    for i in range(5):
        receiver.slow(f"/e{i}", 0.005)  # enough that one daemon cannot take everything
    async with (
        run_daemon(outbox={"instance_id": "daemon-a"}),
        run_daemon(outbox={"instance_id": "daemon-b"}),
    ):
        for ep in eps:
            await harness.enqueue_many(ep, 40)
        await harness.wait_status("delivered", 200, timeout_s=20)
    seen = Counter(h.headers["webhook-id"] for h in receiver.hits)
    assert len(seen) == 200
    assert set(seen.values()) == {1}, [m for m, n in seen.items() if n > 1]
    rows = await harness.deliveries()
    assert {r["status"] for r in rows} == {"delivered"}
    assert {r["msg_id"] for r in rows} == set(seen)
    attempts = await harness.attempts()
    assert sorted(a["delivery_id"] for a in attempts) == sorted(r["id"] for r in rows)
    assert {a["instance"] for a in attempts} == {"daemon-a", "daemon-b"}


# -- wake-ups ------------------------------------------------------------------------------


async def test_notify_wakes_an_idle_daemon_and_deferred_rows_wait_for_their_time(
    harness: Harness, receiver: Receiver, run_daemon: Any
) -> None:
    ep, _ = await harness.endpoint(receiver.url("/now"))
    async with run_daemon(outbox={"poll_interval_s": 60.0}):
        await asyncio.sleep(0.5)  # idle: the next poll is a minute away
        t0 = time.monotonic()
        await harness.enqueue(endpoint_id=ep)
        await receiver.wait_hits(1, timeout_s=5)
        assert receiver.hits[0].at - t0 < 3.0

        await asyncio.sleep(0.3)
        t1 = time.monotonic()
        await harness.conn.execute(
            "INSERT INTO webhookd.outbox (endpoint_id, event_type, payload, deliver_after)"
            " VALUES ($1, 'later', '{}', now() + interval '1 second')",
            ep,
        )
        await receiver.wait_hits(2, timeout_s=5)
    late = receiver.hits[1]
    assert late.at - t1 >= 1.0, "a deferred row was delivered before its deliver_after"
    assert late.at - t1 < 3.0, "a deferred row waited for the poll instead of its due time"


async def test_retry_starts_when_due_not_at_the_next_poll(
    harness: Harness, receiver: Receiver, run_daemon: Any
) -> None:
    receiver.on("/flaky", lambda _h, n: web.Response(status=500 if n == 1 else 200))
    ep, _ = await harness.endpoint(receiver.url("/flaky"), retry_schedule_s=(0.5,))
    async with run_daemon(outbox={"poll_interval_s": 60.0}):
        await harness.enqueue(endpoint_id=ep)
        await receiver.wait_hits(2, timeout_s=5)
        await harness.wait_status("delivered", 1)
    first, second = receiver.hits
    assert 0.5 <= second.at - first.at < 3.0


# -- shutdown ------------------------------------------------------------------------------


async def test_stop_finishes_attempts_in_flight_and_releases_the_rest(
    harness: Harness, receiver: Receiver, run_daemon: Any
) -> None:
    receiver.slow("/slow", 1.0)
    ep, _ = await harness.endpoint(receiver.url("/slow"))
    await harness.enqueue_many(ep, 10)
    async with run_daemon(delivery={"concurrency": 6, "endpoint_max_in_flight": 3}) as svc:

        async def busy() -> bool:
            return receiver.in_flight == 3 and svc.scheduler.queued > 0

        await wait_until(busy, 5, "3 attempts in flight and more claimed")
        await svc.stop()
    assert len(receiver.hits) == 3
    rows = await harness.deliveries()
    delivered = {r["msg_id"] for r in rows if r["status"] == "delivered"}
    assert delivered == {h.headers["webhook-id"] for h in receiver.hits}
    assert Counter(r["status"] for r in rows) == {"delivered": 3, "pending": 7}
    for row in rows:
        if row["status"] == "pending":
            assert row["locked_by"] is None and row["locked_until"] is None
            assert row["attempts"] == 0
    assert len(await harness.attempts()) == 3


async def test_stop_cuts_off_slow_attempts_at_the_drain_timeout_and_releases_them(
    harness: Harness, receiver: Receiver, run_daemon: Any
) -> None:
    gate = asyncio.Event()
    receiver.on("/stuck", gated(gate, 5.0))
    ep, _ = await harness.endpoint(receiver.url("/stuck"))
    await harness.enqueue_many(ep, 3)
    try:
        async with run_daemon(
            delivery={
                "concurrency": 2,
                "endpoint_max_in_flight": 2,
                "drain_timeout_s": 0.3,
                "timeout_s": 10.0,
            },
        ) as svc:
            await receiver.wait_hits(2)
            t0 = time.monotonic()
            await svc.stop()
            assert time.monotonic() - t0 < 3.0
    finally:
        gate.set()
    rows = await harness.deliveries()
    assert [r["status"] for r in rows] == ["pending"] * 3
    assert all(r["locked_by"] is None and r["attempts"] == 0 for r in rows)
    assert await harness.attempts() == []


# -- database outage -----------------------------------------------------------------------


def dsn_as(dsn: str, user: str, password: str) -> str:
    parts = urlsplit(dsn)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{user}:{password}@{host}"))


@dataclass
class Outage:
    """How to lock the daemon out of its database, and which backends are the daemon's."""

    daemon_dsn: str
    block: str
    unblock: str
    daemon_backends: str  # SELECT pid ... with $1 = database name


@asynccontextmanager
async def outage_kind(
    kind: str, harness: Harness, admin: asyncpg.Connection, db_name: str
) -> AsyncIterator[Outage]:
    if kind == "allow_connections":  # refuses everyone, superusers included (SQLSTATE 55000)
        yield Outage(
            harness.dsn,
            f'ALTER DATABASE "{db_name}" ALLOW_CONNECTIONS false',
            f'ALTER DATABASE "{db_name}" ALLOW_CONNECTIONS true',
            "SELECT pid FROM pg_stat_activity WHERE datname = $1"
            f" AND pid <> {harness.conn.get_server_pid()}",
        )
        return
    # CONNECTION LIMIT binds only roles that are not superusers (SQLSTATE 53300).
    role, password = f"webhookd_r_{secrets.token_hex(4)}", secrets.token_hex(8)
    await admin.execute(f"CREATE ROLE {role} LOGIN PASSWORD '{password}'")
    try:
        await harness.conn.execute(
            f"GRANT USAGE ON SCHEMA webhookd TO {role};"
            f" GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA webhookd TO {role};"
            f" GRANT USAGE ON ALL SEQUENCES IN SCHEMA webhookd TO {role}"
        )
        yield Outage(
            dsn_as(harness.dsn, role, password),
            f'ALTER DATABASE "{db_name}" CONNECTION LIMIT 0',
            f'ALTER DATABASE "{db_name}" CONNECTION LIMIT -1',
            f"SELECT pid FROM pg_stat_activity WHERE datname = $1 AND usename = '{role}'",
        )
    finally:
        await harness.conn.execute(f"DROP OWNED BY {role}")
        await admin.execute(f"DROP ROLE {role}")


@pytest.mark.parametrize("kind", ["connection_limit", "allow_connections"])
async def test_outcomes_are_kept_while_the_database_is_unreachable_then_written(
    kind: str, harness: Harness, receiver: Receiver, pg_server_dsn: str, run_daemon: Any
) -> None:
    db_name = urlsplit(harness.dsn).path.lstrip("/")
    gate = asyncio.Event()
    receiver.on("/slow", gated(gate, 10.0))
    ep, _ = await harness.endpoint(receiver.url("/slow"))
    admin = await asyncpg.connect(dsn_with_database(pg_server_dsn, "postgres"))
    outage: Outage | None = None
    try:
        async with (
            outage_kind(kind, harness, admin, db_name) as outage,
            run_daemon(
                database={"url": outage.daemon_dsn},
                delivery={"concurrency": 3, "endpoint_max_in_flight": 3, "timeout_s": 15.0},
            ) as svc,
        ):
            await harness.enqueue_many(ep, 3)
            await receiver.wait_hits(3)

            await admin.execute(outage.block)
            await admin.execute(
                f"SELECT pg_terminate_backend(pid) FROM ({outage.daemon_backends}) b", db_name
            )

            async def daemon_disconnected() -> bool:
                return not await admin.fetch(outage.daemon_backends, db_name)

            await wait_until(daemon_disconnected, 5, "the daemon's connections to end")
            gate.set()  # the attempts succeed while the database is away

            async def buffered() -> bool:
                return svc.recorder.pending == 3 and not svc.recorder.healthy

            await wait_until(buffered, 10, "outcomes buffered after a failed write")
            assert (await svc.readiness())[0] is False
            assert svc.health is not None
            async with (
                aiohttp.ClientSession() as http,
                http.get(f"http://127.0.0.1:{svc.health.port}/readyz") as resp,
            ):
                assert resp.status == 503
            assert set((await statuses(harness)).elements()) == {"delivering"}

            await admin.execute(outage.unblock)
            await harness.wait_status("delivered", 3, timeout_s=15)

            async def ready() -> bool:
                return svc.recorder.pending == 0 and (await svc.readiness())[0]

            await wait_until(ready, 10, "readiness after the database came back")
            # The claim loop survived the outage: new messages still go out.
            await harness.enqueue_many(ep, 1)
            await harness.wait_status("delivered", 4)
    finally:
        gate.set()
        if outage is not None:
            await admin.execute(outage.unblock)
        await admin.close()
    assert len(receiver.hits) == 4
    attempts = await harness.attempts()
    assert len(attempts) == 4 and {a["status_code"] for a in attempts} == {200}
