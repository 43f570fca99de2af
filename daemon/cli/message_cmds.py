"""`message show | list`, `send` and `stats`: what happened to messages, and test messages."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from daemon import messages
from daemon.cli.common import Parser, emit, human, open_store, option, positive_int, table
from daemon.cli.display import add_window_options, at, check_window, clean
from daemon.config import Config
from daemon.units import MAX_AGE_S, bounded_duration, format_duration

if TYPE_CHECKING:
    from daemon.store import Record

BODY_BYTES = 1024  # of each stored response body, in `message show`


def register(sub: Any, common: Parser) -> None:
    parser = sub.add_parser(
        "message", help="messages, their deliveries and attempts", parents=[common]
    )
    parser.set_defaults(handler=cmd_message)
    actions = parser.add_subparsers(dest="action", required=True, parser_class=Parser)
    show = actions.add_parser(
        "show", help="a message, its deliveries and every attempt", parents=[common]
    )
    show.add_argument("message", metavar="ID", help="msg_id, or the numeric outbox id")
    show.add_argument("--json", action="store_true")
    lst = actions.add_parser("list", help="recent messages, one row per delivery", parents=[common])
    lst.add_argument("--status", choices=messages.STATUSES, help="of the delivery")
    lst.add_argument("--endpoint")
    lst.add_argument("--event-type")
    add_window_options(lst, "enqueued")
    lst.add_argument("--limit", type=option(positive_int, "--limit"), default=50)
    lst.add_argument("--json", action="store_true")

    send = sub.add_parser("send", help="enqueue a test message for one endpoint", parents=[common])
    send.add_argument("endpoint_id")
    send.add_argument(
        "--event-type", type=option(_event_type, "--event-type"), default="webhookd.test"
    )
    send.add_argument(
        "--data",
        type=option(messages.parse_payload, "--data"),
        default='{"test": true}',
        help="JSON payload",
    )
    send.add_argument("--json", action="store_true")
    send.set_defaults(handler=cmd_send)

    stats = sub.add_parser(
        "stats", help="backlog, in flight, success rate and latency per endpoint", parents=[common]
    )
    stats.add_argument("--endpoint")
    stats.add_argument(
        "--window", type=option(_WINDOW, "--window"), default=3600.0, help="default 1h"
    )
    stats.add_argument("--json", action="store_true")
    stats.set_defaults(handler=cmd_stats)


def _event_type(text: str) -> str:
    if not text.strip():
        raise ValueError("must not be empty")
    return text


_WINDOW = bounded_duration(high=MAX_AGE_S, above=True)


async def cmd_message(args: argparse.Namespace, config: Config) -> int:
    async with open_store(config) as store:
        if args.action == "show":
            detail = await messages.message_detail(store, args.message, body_bytes=BODY_BYTES)
            emit(_detail_view(detail), args.json, _detail_text(detail))
            return 0
        check_window(args.since, args.until)
        f = messages.MessageFilter(
            args.status, args.endpoint, args.event_type, args.since, args.until, args.limit
        )
        rows = await messages.list_messages(store, f)
    emit([_list_view(r) for r in rows], args.json, _list_text(rows))
    return 0


def _message_view(m: Record) -> dict[str, Any]:
    return {
        "id": m["id"],
        "msg_id": m["msg_id"],
        "event_type": m["event_type"],
        "tenant": m["tenant_id"],
        "endpoint": m["endpoint_id"],
        "ordering_key": m["ordering_key"],
        "deliver_after": m["deliver_after"],
        "created_at": m["created_at"],
        "payload": messages.payload_value(m["payload"]),
    }


def _delivery_view(d: Record) -> dict[str, Any]:
    return {
        "id": d["id"],
        "endpoint": d["endpoint_id"],
        "status": d["status"],
        "attempts": d["attempts"],
        "attempts_this_series": d["attempts"] - d["attempt_base"],
        "next_attempt_at": d["next_attempt_at"] if d["status"] == "pending" else None,
        "last_status_code": d["last_status_code"],
        "last_error": d["last_error"],
        "created_at": d["created_at"],
        "finished_at": d["finished_at"],
    }


def _body(a: Record) -> str:
    return bytes(a["response_body"] or b"").decode("utf-8", errors="replace")


def _attempt_view(a: Record) -> dict[str, Any]:
    return {
        "delivery_id": a["delivery_id"],
        "endpoint": a["endpoint_id"],
        "attempt": a["attempt"],
        "started_at": a["started_at"],
        "duration_ms": round(a["duration_ms"], 1),
        "status_code": a["status_code"],
        "error_class": a["error_class"],
        "error": a["error"],
        "instance": a["instance"],
        "response_body": _body(a),
        "response_bytes": a["response_bytes"],
        "response_truncated": a["response_bytes"] > BODY_BYTES,
    }


def _detail_view(detail: messages.MessageDetail) -> dict[str, Any]:
    return {
        "message": _message_view(detail.message),
        "deliveries": [_delivery_view(d) for d in detail.deliveries],
        "attempts": [_attempt_view(a) for a in detail.attempts],
    }


def _detail_text(detail: messages.MessageDetail) -> str:
    m = detail.message
    head = [
        ("message", f"{m['id']}  {m['msg_id']}"),
        ("event type", m["event_type"]),
        ("tenant", human(m["tenant_id"])),
        ("endpoint", human(m["endpoint_id"])),
        ("ordering key", human(m["ordering_key"])),
        ("deliver after", at(m["deliver_after"])),
        ("created", at(m["created_at"])),
        ("payload", clean(m["payload"], 200)),
    ]
    lines = [f"{k:<14} {v}" for k, v in head]
    deliveries = [
        [
            d["id"],
            d["endpoint_id"],
            d["status"],
            _attempts_cell(d),
            at(d["next_attempt_at"]) if d["status"] == "pending" else "-",
            clean(d["last_error"]),
        ]
        for d in detail.deliveries
    ]
    lines += ["", "deliveries:"]
    lines.append(
        table(["ID", "ENDPOINT", "STATUS", "ATTEMPTS", "NEXT ATTEMPT", "LAST ERROR"], deliveries)
        if deliveries
        else "(none: the message matched no endpoint)"
    )
    attempts = [
        [
            a["delivery_id"],
            a["attempt"],
            at(a["started_at"]),
            f"{a['duration_ms']:.1f}",
            a["status_code"] if a["status_code"] is not None else a["error_class"],
            clean(a["error"], 40),
            a["instance"],
            clean(_body(a), 40),
        ]
        for a in detail.attempts
    ]
    lines += ["", "attempts:"]
    lines.append(
        table(
            ["DELIVERY", "#", "STARTED", "MS", "RESULT", "ERROR", "INSTANCE", "RESPONSE"], attempts
        )
        if attempts
        else "(none yet)"
    )
    return "\n".join(lines)


def _attempts_cell(d: Record) -> str:
    if d["attempt_base"] == 0:
        return str(d["attempts"])
    return f"{d['attempts']} ({d['attempts'] - d['attempt_base']} this series)"


def _list_view(r: Record) -> dict[str, Any]:
    return {
        "id": r["id"],
        "msg_id": r["msg_id"],
        "event_type": r["event_type"],
        "tenant": r["tenant_id"],
        "created_at": r["created_at"],
        "delivery_id": r["delivery_id"],
        "endpoint": r["endpoint_id"],
        "status": r["status"],
        "attempts": r["attempts"],
        "last_status_code": r["last_status_code"],
        "last_error": r["last_error"],
    }


def _list_text(rows: list[Record]) -> str:
    cells = [
        [
            r["id"],
            r["msg_id"],
            r["event_type"],
            r["endpoint_id"],
            r["status"],
            r["attempts"],
            at(r["created_at"]),
            clean(r["last_error"], 40),
        ]
        for r in rows
    ]
    headers = ["ID", "MSG_ID", "EVENT", "ENDPOINT", "STATUS", "ATTEMPTS", "CREATED", "LAST ERROR"]
    return table(headers, cells) if cells else "no messages"


async def cmd_send(args: argparse.Namespace, config: Config) -> int:
    async with open_store(config) as store:
        row = await messages.send_message(store, args.endpoint_id, args.event_type, args.data)
    data = {
        "id": row["id"],
        "msg_id": row["msg_id"],
        "endpoint": args.endpoint_id,
        "event_type": args.event_type,
    }
    text = f"queued message {row['id']} ({row['msg_id']}) for {args.endpoint_id}"
    emit(data, args.json, text)
    return 0


async def cmd_stats(args: argparse.Namespace, config: Config) -> int:
    async with open_store(config) as store:
        rows = await messages.endpoint_stats(store, args.window, args.endpoint)
    window = format_duration(args.window)
    cells = [
        [
            r["endpoint"],
            r["state"],
            r["backlog"],
            r["due"],
            r["in_flight"],
            r["attempts"],
            "-" if r["success_pct"] is None else f"{r['success_pct']:.1f}%",
            r["p50_ms"],
            r["p95_ms"],
            r["dead_letters"],
        ]
        for r in rows
    ]
    headers = [
        "ENDPOINT",
        "STATE",
        "BACKLOG",
        "DUE",
        "IN FLIGHT",
        "ATTEMPTS",
        "SUCCESS",
        "P50 MS",
        "P95 MS",
        "DEAD",
    ]
    text = f"attempts and dead letters over the last {window}; backlog and in flight now\n"
    text += table(headers, cells) if cells else "no endpoints"
    emit({"window": window, "endpoints": rows}, args.json, text)
    return 0
