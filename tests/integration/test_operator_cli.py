"""Operator commands through the real executable: message show/list, replay, recover,
dead-letters, endpoint update, stats and send. A daemon runs in-process where deliveries must
happen, alongside the CLI subprocesses, so the whole loop is real."""

from __future__ import annotations

import asyncio
import secrets

import asyncpg
import orjson
import pytest
from aiohttp import web

from daemon import endpoints
from tests.cli_support import Cli, assert_one_line_error, ok
from tests.integration.conftest import Harness, Receiver


async def fail_as(conn: asyncpg.Connection, message_id: int, ago: str, attempts: int = 3) -> None:
    """Make a message's deliveries dead letters that failed `ago` (an interval) ago."""
    await conn.execute(
        "UPDATE webhookd.deliveries SET status = 'failed', attempts = $2,"
        " last_error = 'gave up after 3 attempts: http 500', last_status_code = 500,"
        " updated_at = now() - $3::text::interval, finished_at = now() - $3::text::interval"
        " WHERE message_id = $1",
        message_id,
        attempts,
        ago,
    )


async def delivery_of(conn: asyncpg.Connection, message_id: int) -> asyncpg.Record:
    row = await conn.fetchrow("SELECT * FROM webhookd.deliveries WHERE message_id = $1", message_id)
    assert row is not None
    return row


# -- message show / list -------------------------------------------------------------------


async def test_message_show_and_list_tell_the_story_without_header_values(
    cli: Cli, harness: Harness, receiver: Receiver, run_daemon
) -> None:
    header_value = f"Bearer tok-{secrets.token_hex(8)}"
    receiver.on("/down", lambda hit, n: web.Response(status=500, body=b"\xff\x1b[31mboom " * 40))
    good, _ = await harness.endpoint(
        receiver.url("/ok"), headers=(("Authorization", header_value),)
    )
    bad, _ = await harness.endpoint(receiver.url("/down"), retry_schedule_s=(0.1,))
    async with run_daemon():
        delivered = await harness.enqueue({"n": 1}, endpoint_id=good, msg_id="msg_show_1")
        failed = await harness.enqueue({"n": 2}, endpoint_id=bad, event_type="other.event")
        await harness.wait_status("delivered", 1, good)
        await harness.wait_status("failed", 1, bad)

    by_msg_id, by_id, text, failed_text = await asyncio.gather(
        cli("message", "show", "msg_show_1", "--json"),
        cli("message", "show", str(delivered), "--json"),
        cli("message", "show", "msg_show_1"),
        cli("message", "show", str(failed)),
    )
    shown = ok(by_msg_id).json()
    assert ok(by_id).json() == shown
    assert shown["message"]["id"] == delivered
    assert shown["message"]["payload"] == {"n": 1}
    [d] = shown["deliveries"]
    assert (d["endpoint"], d["status"], d["attempts"]) == (good, "delivered", 1)
    [a] = shown["attempts"]
    assert (a["attempt"], a["status_code"], a["response_body"]) == (1, 200, "ok")
    assert "delivered" in ok(text).out and good in text.out
    for result in (by_msg_id, by_id, text):
        assert header_value not in result.out

    # A receiver's body is decoded with replacement characters, cut short, and its control
    # characters never reach the terminal.
    assert "\x1b" not in ok(failed_text).out and "\\x1b[31mboom" in failed_text.out
    assert "\ufffd" in failed_text.out
    assert failed_text.out.count("boom") < 10
    [first, second] = orjson.loads((await cli("message", "show", str(failed), "--json")).out)[
        "attempts"
    ]
    assert [first["attempt"], second["attempt"]] == [1, 2]
    assert first["response_bytes"] == len(b"\xff\x1b[31mboom " * 40)
    assert first["response_body"].startswith("\ufffd\x1b[31mboom")

    everything, only_failed, only_good, future, by_type, table = await asyncio.gather(
        cli("message", "list", "--since", "1h", "--until", "now", "--json"),
        cli("message", "list", "--status", "failed", "--json"),
        cli("message", "list", "--endpoint", good, "--json"),
        cli("message", "list", "--since", "2099-01-01", "--json"),
        cli("message", "list", "--event-type", "other.event", "--json"),
        cli("message", "list"),
    )
    assert [r["id"] for r in ok(everything).json()] == [failed, delivered]  # newest first
    assert [(r["id"], r["status"]) for r in ok(only_failed).json()] == [(failed, "failed")]
    assert [r["id"] for r in ok(only_good).json()] == [delivered]
    assert ok(future).json() == []
    assert [r["id"] for r in ok(by_type).json()] == [failed]
    header, *rows = ok(table).out.splitlines()
    assert header.split()[:5] == ["ID", "MSG_ID", "EVENT", "ENDPOINT", "STATUS"]
    assert len(rows) == 2


async def test_message_errors_are_one_line(cli: Cli, harness: Harness) -> None:
    a, _ = await harness.endpoint("https://example.com/a")
    b, _ = await harness.endpoint("https://example.com/b")
    first = await harness.enqueue(endpoint_id=a, msg_id="msg_twice")
    second = await harness.enqueue(endpoint_id=b, msg_id="msg_twice")
    missing, ambiguous, bad_status, bad_since, backwards, numeric = await asyncio.gather(
        cli("message", "show", "msg_nope"),
        cli("message", "show", "msg_twice"),
        cli("message", "list", "--status", "lost"),
        cli("message", "list", "--since", "yesterday"),
        cli("message", "list", "--since", "1h", "--until", "2h"),
        cli("message", "show", str(second), "--json"),
    )
    assert_one_line_error(missing, 3, "msg_nope")
    assert_one_line_error(ambiguous, 2, "msg_twice", str(first), str(second))
    assert_one_line_error(bad_status, 2, "--status")
    assert_one_line_error(bad_since, 2, "--since", "ISO 8601")
    assert_one_line_error(backwards, 2, "--until")
    assert ok(numeric).json()["message"]["endpoint"] == b


# -- replay ----------------------------------------------------------------------------------


async def test_replay_delivers_again_as_a_new_series_and_attempt_numbers_go_on(
    cli: Cli, harness: Harness, receiver: Receiver, run_daemon
) -> None:
    failing = False
    receiver.on("/hook", lambda hit, n: web.Response(status=500 if failing else 200))
    # Two attempts per series: a replay that kept counting against the schedule would
    # dead-letter after one failure.
    ep_id, _ = await harness.endpoint(receiver.url("/hook"), retry_schedule_s=(0.1,))
    async with run_daemon():
        message = await harness.enqueue({"n": 7}, endpoint_id=ep_id, msg_id="msg_replay")
        await harness.wait_status("delivered", 1)

        replayed = ok(await cli("replay", "msg_replay", "--json")).json()
        assert replayed["message_id"] == message
        assert [(r["endpoint_id"], r["next_attempt"]) for r in replayed["replayed"]] == [(ep_id, 2)]
        await receiver.wait_hits(2)
        await harness.wait_status("delivered", 1)

        failing = True
        text = ok(await cli("replay", str(message), "--endpoint", ep_id))
        assert "next attempt #3" in text.out
        await receiver.wait_hits(4)
        [row] = await harness.wait_status("failed", 1)

    assert [orjson.loads(h.body) for h in receiver.hits] == [{"n": 7}] * 4
    assert {h.headers["webhook-id"] for h in receiver.hits} == {"msg_replay"}
    attempts = await harness.attempts(row["id"])
    assert [(a["attempt"], a["status_code"]) for a in attempts] == [
        (1, 200),
        (2, 200),
        (3, 500),
        (4, 500),
    ]
    assert (row["attempts"], row["attempt_base"]) == (4, 2)
    assert "gave up after 2 attempts" in row["last_error"]
    shown = ok(await cli("message", "show", "msg_replay", "--json")).json()
    assert [a["attempt"] for a in shown["attempts"]] == [1, 2, 3, 4]
    assert shown["deliveries"][0]["attempts_this_series"] == 2


async def test_replay_refuses_what_cannot_be_replayed_in_one_line(
    cli: Cli, harness: Harness
) -> None:
    live, _ = await harness.endpoint("https://example.com/live")
    off, _ = await harness.endpoint("https://example.com/off")
    gone, _ = await harness.endpoint("https://example.com/gone")
    pending = await harness.enqueue(endpoint_id=live)
    to_off = await harness.enqueue(endpoint_id=off)
    to_gone = await harness.enqueue(endpoint_id=gone)
    for message in (to_off, to_gone):
        await fail_as(harness.conn, message, "1 minute")
    await harness.conn.execute(
        "UPDATE webhookd.endpoints SET enabled = false, disabled_reason = 'maintenance'"
        " WHERE id = $1",
        off,
    )
    await endpoints.delete_endpoint(harness.store, gone)
    results = await asyncio.gather(
        cli("replay", str(pending)),
        cli("replay", str(to_off)),
        cli("replay", str(to_gone)),
        cli("replay", "msg_missing"),
        cli("replay", str(to_off), "--endpoint", live),
        cli("replay", str(to_off), "--endpoint", off),
    )
    assert_one_line_error(results[0], 2, "nothing to replay", "pending")
    assert_one_line_error(results[1], 2, off, "disabled", "maintenance")
    assert_one_line_error(results[2], 3, gone, "deleted")
    assert_one_line_error(results[3], 3, "msg_missing")
    assert_one_line_error(results[4], 3, live)
    assert_one_line_error(results[5], 2, off, "disabled")
    statuses = [(await delivery_of(harness.conn, m))["status"] for m in (to_off, to_gone)]
    assert statuses == ["failed", "failed"]


# -- recover and dead letters ------------------------------------------------------------------


async def test_recover_requeues_only_failed_deliveries_of_that_endpoint_in_the_window(
    cli: Cli, harness: Harness
) -> None:
    ep_id, _ = await harness.endpoint("https://example.com/a")
    other, _ = await harness.endpoint("https://example.com/b")
    old, in_window, recent, delivered, elsewhere = [
        await harness.enqueue(endpoint_id=e) for e in (ep_id, ep_id, ep_id, ep_id, other)
    ]
    await fail_as(harness.conn, old, "3 hours")
    await fail_as(harness.conn, in_window, "1 hour")
    await fail_as(harness.conn, recent, "10 minutes")
    await fail_as(harness.conn, elsewhere, "1 hour")
    await harness.conn.execute(
        "UPDATE webhookd.deliveries SET status = 'delivered', attempts = 1,"
        " updated_at = now() - interval '1 hour' WHERE message_id = $1",
        delivered,
    )

    window = ("recover", "--endpoint", ep_id, "--since", "2h", "--until", "30m")
    first = ok(await cli(*window, "--json")).json()
    assert first == {"requeued": 1, "stuck": 0}
    again = ok(await cli(*window))
    assert "re-queued 0 dead letters" in again.out  # idempotent
    states = {m: await delivery_of(harness.conn, m) for m in (old, in_window, recent, delivered)}
    assert {m: r["status"] for m, r in states.items()} == {
        old: "failed",
        in_window: "pending",
        recent: "failed",
        delivered: "delivered",
    }
    requeued = states[in_window]
    assert (requeued["attempts"], requeued["attempt_base"]) == (3, 3)  # a new series
    assert requeued["last_error"] is None and requeued["finished_at"] is None
    assert (await delivery_of(harness.conn, elsewhere))["status"] == "failed"

    iso = ok(await cli("recover", "--endpoint", ep_id, "--since", "2000-01-01T00:00:00Z")).out
    assert "re-queued 2 dead letters" in iso
    missing_since, unknown = await asyncio.gather(
        cli("recover", "--endpoint", ep_id),
        cli("recover", "--endpoint", "ep_nope", "--since", "1h"),
    )
    assert_one_line_error(missing_since, 2, "--since")
    assert_one_line_error(unknown, 3, "ep_nope")


async def test_dead_letters_list_and_requeue(cli: Cli, harness: Harness) -> None:
    a, _ = await harness.endpoint("https://example.com/a")
    b, _ = await harness.endpoint("https://example.com/b")
    off, _ = await harness.endpoint("https://example.com/off")
    a1, a2, b1, off1 = [await harness.enqueue(endpoint_id=e) for e in (a, a, b, off)]
    for message, ago in ((a1, "3 hours"), (a2, "1 hour"), (b1, "2 minutes"), (off1, "50 min")):
        await fail_as(harness.conn, message, ago)
    await endpoints.set_enabled(harness.store, off, False, "paused")

    everything, of_a, recent, limited = await asyncio.gather(
        cli("dead-letters", "--json"),
        cli("dead-letters", "--endpoint", a, "--json"),
        cli("dead-letters", "--since", "2h", "--json"),
        cli("dead-letters", "--limit", "1"),
    )
    listed = ok(everything).json()
    assert listed["total"] == 4
    assert [d["message_id"] for d in listed["dead_letters"]] == [b1, off1, a2, a1]
    assert [d["message_id"] for d in ok(of_a).json()["dead_letters"]] == [a2, a1]
    assert {d["message_id"] for d in ok(recent).json()["dead_letters"]} == {b1, a2, off1}
    assert "(1 of 4 shown" in ok(limited).out
    assert limited.out.splitlines()[0].split()[:4] == [
        "DELIVERY",
        "MESSAGE",
        "MSG_ID",
        "ENDPOINT",
    ]

    nothing, to_disabled = await asyncio.gather(
        cli("dead-letters", "requeue"), cli("dead-letters", "requeue", "--endpoint", off)
    )
    assert_one_line_error(nothing, 2, "--all")
    assert_one_line_error(to_disabled, 2, off, "disabled")

    msg_id = await harness.conn.fetchval("SELECT msg_id FROM webhookd.outbox WHERE id = $1", a1)
    by_message = ok(await cli("dead-letters", "requeue", msg_id, "--json")).json()
    assert by_message == {"requeued": 1, "stuck": 0}
    # Options given before `requeue` apply too.
    by_endpoint = ok(await cli("dead-letters", "--endpoint", a, "requeue", "--json")).json()
    assert by_endpoint == {"requeued": 1, "stuck": 0}
    rest = ok(await cli("dead-letters", "requeue", "--all"))
    assert "re-queued 1 dead letters; 1 left as they are" in rest.out
    statuses = {m: (await delivery_of(harness.conn, m))["status"] for m in (a1, a2, b1, off1)}
    assert statuses == {a1: "pending", a2: "pending", b1: "pending", off1: "failed"}
    left = ok(await cli("dead-letters", "--json")).json()["dead_letters"]
    assert [d["message_id"] for d in left] == [off1]


# -- endpoint update ---------------------------------------------------------------------------


async def test_endpoint_update_changes_every_option_it_is_given(cli: Cli, harness: Harness) -> None:
    ep_id = await cli.add(
        "https://example.com/old",
        *("--header", "Authorization: Bearer old", "--header", "X-Old: 1"),
        *("--rate", "10/s", "--burst", "2", "--event-type", "a.b"),
    )
    old_secret = await harness.conn.fetchval(
        "SELECT secret FROM webhookd.endpoints WHERE id = $1", ep_id
    )
    new_header = f"Bearer new-{secrets.token_hex(8)}"
    result = await cli(
        "endpoint", "update", ep_id,
        *("--url", "https://example.com/new", "--tenant", "acme", "--description", "new one"),
        *("--event-type", "c.d", "--event-type", "e.f", "--rate", "100/min", "--burst", "5"),
        *("--max-in-flight", "3", "--header", f"Authorization: {new_header}"),
        *("--signature", "hmac-sha256-hex:X-SF-Signature:sha256=", "--secret", "s3cret"),
        *("--timeout", "10s", "--retry-schedule", "4s,8s,10s", "--json"),
    )  # fmt: skip
    assert new_header not in ok(result).out and "s3cret" not in result.out
    assert set(result.json()["updated"]) == {
        "url", "tenant", "description", "event-type", "rate", "burst", "max-in-flight",
        "header", "signature", "secret", "timeout", "retry-schedule",
    }  # fmt: skip
    row = await harness.conn.fetchrow("SELECT * FROM webhookd.endpoints WHERE id = $1", ep_id)
    assert (row["url"], row["tenant_id"], row["description"]) == (
        "https://example.com/new",
        "acme",
        "new one",
    )
    assert row["event_types"] == ["c.d", "e.f"]
    assert row["rate_per_s"] == pytest.approx(100 / 60)
    assert (row["burst"], row["max_in_flight"]) == (5, 3)
    assert orjson.loads(row["headers"]) == [["Authorization", new_header]]  # replaced, not added
    assert (row["signature_scheme"], row["signature_header"], row["signature_prefix"]) == (
        "hmac-sha256-hex",
        "X-SF-Signature",
        "sha256=",
    )
    assert row["secret"] == "s3cret" != old_secret
    assert (row["timeout_ms"], row["retry_schedule_ms"]) == (10000, [4000, 8000, 10000])
    assert row["version"] == 2

    # Back to the defaults; a signature scheme that cannot use the secret gets a new one.
    cleared = await cli(
        "endpoint", "update", ep_id, "--rate", "default", "--max-in-flight", "default",
        "--timeout", "default", "--retry-schedule", "default", "--clear-headers",
        "--clear-event-types", "--signature", "standard", "--json",
    )  # fmt: skip
    generated = ok(cleared).json()["secret"]
    assert generated.startswith("whsec_")
    row = await harness.conn.fetchrow("SELECT * FROM webhookd.endpoints WHERE id = $1", ep_id)
    assert (row["rate_per_s"], row["burst"], row["max_in_flight"]) == (None, None, None)
    assert (row["timeout_ms"], row["retry_schedule_ms"]) == (None, None)
    assert (row["headers"], row["event_types"]) == ("[]", [])
    assert (row["signature_scheme"], row["signature_header"], row["secret"]) == (
        "standard",
        "",
        generated,
    )
    assert row["url"] == "https://example.com/new"  # not given: kept


BAD_UPDATE_OPTIONS = [
    (["--rate", "fast"], "--rate"),
    (["--burst", "0"], "--burst"),
    (["--timeout", "11m"], "--timeout"),
    (["--signature", "rsa"], "--signature"),
    (["--header", "Content-Type: x"], "--header"),
    (["--secret", "notbase64!"], "--secret"),
    (["--url", "not-a-url"], "url"),
    (["--burst", "3"], "--burst"),  # no rate
    ([], "nothing to change"),
]


async def test_bad_endpoint_update_gives_one_line_naming_the_option(
    cli: Cli, harness: Harness
) -> None:
    ep_id = await cli.add("https://example.com/hook")
    results = await asyncio.gather(
        *(cli("endpoint", "update", ep_id, *args) for args, _ in BAD_UPDATE_OPTIONS),
        cli("endpoint", "update", "ep_missing", "--rate", "1/s"),
    )
    for (args, name), result in zip(BAD_UPDATE_OPTIONS, results, strict=False):
        assert_one_line_error(result, 2, name)
        assert result.out == "", args
    assert_one_line_error(results[-1], 3, "ep_missing")
    version = await harness.conn.fetchval(
        "SELECT version FROM webhookd.endpoints WHERE id = $1", ep_id
    )
    assert version == 1  # nothing written


# -- stats and send ----------------------------------------------------------------------------


async def test_stats_match_what_was_delivered(
    cli: Cli, harness: Harness, receiver: Receiver, run_daemon
) -> None:
    receiver.on("/down", lambda hit, n: web.Response(status=503))
    good, _ = await harness.endpoint(receiver.url("/ok"))
    bad, _ = await harness.endpoint(receiver.url("/down"), retry_schedule_s=())
    waiting, _ = await harness.endpoint("https://example.com/waiting")
    async with run_daemon():
        for _ in range(4):
            await harness.enqueue(endpoint_id=good)
        for _ in range(2):
            await harness.enqueue(endpoint_id=bad)
        await harness.wait_status("delivered", 4, good)
        await harness.wait_status("failed", 2, bad)
    for _ in range(3):
        await harness.enqueue(endpoint_id=waiting)
    await harness.conn.execute(
        "UPDATE webhookd.deliveries SET status = 'delivering' WHERE id = ("
        " SELECT min(id) FROM webhookd.deliveries WHERE endpoint_id = $1)",
        waiting,
    )

    as_json, text, one, unknown = await asyncio.gather(
        cli("stats", "--json"),
        cli("stats"),
        cli("stats", "--endpoint", good, "--window", "5m", "--json"),
        cli("stats", "--endpoint", "ep_nope"),
    )
    stats = {s["endpoint"]: s for s in ok(as_json).json()["endpoints"]}
    durations = [
        a["duration_ms"]
        for a in await harness.conn.fetch(
            "SELECT a.duration_ms FROM webhookd.attempts a"
            " JOIN webhookd.deliveries d ON d.id = a.delivery_id WHERE d.endpoint_id = $1",
            good,
        )
    ]
    g = stats[good]
    assert (g["attempts"], g["succeeded"], g["success_pct"], g["dead_letters"]) == (4, 4, 100, 0)
    assert min(durations) - 0.1 <= g["p50_ms"] <= g["p95_ms"] <= max(durations) + 0.1
    b = stats[bad]
    assert (b["attempts"], b["succeeded"], b["success_pct"], b["dead_letters"]) == (2, 0, 0, 2)
    w = stats[waiting]
    assert (w["backlog"], w["due"], w["in_flight"], w["attempts"]) == (2, 2, 1, 0)
    assert w["success_pct"] is None and w["p50_ms"] is None
    assert ok(as_json).json()["window"] == "1h"
    header = ok(text).out.splitlines()[1]
    assert header.split()[:5] == ["ENDPOINT", "STATE", "BACKLOG", "DUE", "IN"]
    [only] = ok(one).json()["endpoints"]
    assert only["endpoint"] == good and only["attempts"] == 4
    assert_one_line_error(unknown, 3, "ep_nope")


async def test_send_enqueues_a_test_message_that_is_delivered(
    cli: Cli, harness: Harness, receiver: Receiver, run_daemon
) -> None:
    ep_id, _ = await harness.endpoint(receiver.url("/hook"))
    off, _ = await harness.endpoint(receiver.url("/off"))
    await endpoints.set_enabled(harness.store, off, False, "paused")
    async with run_daemon():
        sent = await cli("send", ep_id, "--event-type", "invoice.paid", "--data", '{"x": [1, 2]}')
        default = await cli("send", ep_id, "--json")
        await receiver.wait_hits(2)
    assert "queued message" in ok(sent).out
    bodies = [orjson.loads(h.body) for h in receiver.hits]
    assert {"x": [1, 2]} in bodies and {"test": True} in bodies
    queued = ok(default).json()
    assert queued["event_type"] == "webhookd.test"
    assert queued["msg_id"] in {h.headers["webhook-id"] for h in receiver.hits}
    await harness.wait_status("delivered", 2, ep_id)

    bad_json, empty_type, unknown, disabled = await asyncio.gather(
        cli("send", ep_id, "--data", "{nope"),
        cli("send", ep_id, "--event-type", ""),
        cli("send", "ep_missing"),
        cli("send", off),
    )
    assert_one_line_error(bad_json, 2, "--data", "not JSON")
    assert_one_line_error(empty_type, 2, "--event-type")
    assert_one_line_error(unknown, 3, "ep_missing")
    assert_one_line_error(disabled, 2, off, "disabled")
    assert len(await harness.deliveries(ep_id)) == 2
    assert await harness.deliveries(off) == []
