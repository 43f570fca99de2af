"""`replay`, `recover` and `dead-letters [requeue]`: delivering again, as a new attempt series."""

from __future__ import annotations

import argparse
from dataclasses import asdict
from typing import Any

from daemon import replay
from daemon.cli.common import Parser, emit, open_store, option, positive_int, table
from daemon.cli.display import add_window_options, at, check_window, clean
from daemon.config import Config
from daemon.errors import ConfigError

_ID_HELP = "msg_id, or the numeric outbox id"


def register(sub: Any, common: Parser) -> None:
    rep = sub.add_parser(
        "replay",
        help="deliver a message again (delivered ones too), as a new attempt series",
        parents=[common],
    )
    rep.add_argument("message", metavar="ID", help=_ID_HELP)
    rep.add_argument("--endpoint", help="only the delivery to this endpoint")
    rep.add_argument("--json", action="store_true")
    rep.set_defaults(handler=cmd_replay)

    rec = sub.add_parser(
        "recover",
        help="re-queue an endpoint's dead letters that failed in a time window",
        parents=[common],
    )
    rec.add_argument("--endpoint", required=True)
    add_window_options(rec, "failed", since_required=True)
    rec.add_argument("--json", action="store_true")
    rec.set_defaults(handler=cmd_recover)

    dead = sub.add_parser(
        "dead-letters",
        help="list failed deliveries; `dead-letters requeue` delivers them again",
        parents=[common],
    )
    dead.add_argument("--endpoint")
    add_window_options(dead, "failed")
    dead.add_argument("--limit", type=option(positive_int, "--limit"), default=50)
    dead.add_argument("--json", action="store_true")
    dead.set_defaults(handler=cmd_dead_letters)
    actions = dead.add_subparsers(dest="action", parser_class=Parser, metavar="{requeue}")
    req = actions.add_parser(
        "requeue", help="new attempt series for the selected dead letters", parents=[common]
    )
    req.add_argument("messages", nargs="*", metavar="ID", help=f"only these messages ({_ID_HELP})")
    # SUPPRESS: options given before `requeue` (to `dead-letters`) are not reset here.
    req.add_argument("--endpoint", default=argparse.SUPPRESS)
    add_window_options(req, "failed", default=argparse.SUPPRESS)
    req.add_argument("--all", action="store_true", dest="everything", help="every dead letter")
    req.add_argument("--json", action="store_true", default=argparse.SUPPRESS)


async def cmd_replay(args: argparse.Namespace, config: Config) -> int:
    async with open_store(config) as store:
        report = await replay.replay_message(store, args.message, args.endpoint)
    lines = [f"replayed message {report.message_id} ({report.msg_id}):"]
    lines += [
        f"  {r.endpoint_id}: delivery {r.delivery_id} due now, next attempt #{r.next_attempt}"
        for r in report.replayed
    ]
    lines += [f"  {s.endpoint_id}: skipped, {s.reason}" for s in report.skipped]
    emit(asdict(report), args.json, "\n".join(lines))
    return 0


async def cmd_recover(args: argparse.Namespace, config: Config) -> int:
    check_window(args.since, args.until)
    f = replay.DeadLetterFilter(args.endpoint, None, args.since, args.until)
    async with open_store(config) as store:
        report = await replay.requeue_dead_letters(store, f)
    window = f"failed since {at(args.since)}" + (f", before {at(args.until)}" if args.until else "")
    text = f"re-queued {report.requeued} dead letters of {args.endpoint} ({window})"
    emit(asdict(report), args.json, text)
    return 0


async def cmd_dead_letters(args: argparse.Namespace, config: Config) -> int:
    check_window(args.since, args.until)
    if args.action == "requeue":
        return await _requeue(args, config)
    f = replay.DeadLetterFilter(args.endpoint, None, args.since, args.until)
    async with open_store(config) as store:
        page = await replay.list_dead_letters(store, f, args.limit)
    rows = page.rows
    cells = [
        [
            r["delivery_id"],
            r["message_id"],
            r["msg_id"],
            r["endpoint_id"],
            r["event_type"],
            r["attempts"],
            at(r["failed_at"]),
            clean(r["last_error"]),
        ]
        for r in rows
    ]
    headers = ["DELIVERY", "MESSAGE", "MSG_ID", "ENDPOINT", "EVENT", "ATTEMPTS", "FAILED", "ERROR"]
    text = table(headers, cells) if cells else "no dead letters"
    if page.total_capped:
        text += (
            f"\n({len(rows)} of more than {page.total} shown: not counted further;"
            " --limit shows more, --endpoint and --since/--until narrow the selection)"
        )
    elif page.total > len(rows):
        text += f"\n({len(rows)} of {page.total} shown; --limit shows more)"
    data = {
        "total": page.total,
        "total_capped": page.total_capped,
        "dead_letters": [dict(r) for r in rows],
    }
    emit(data, args.json, text)
    return 0


async def _requeue(args: argparse.Namespace, config: Config) -> int:
    if not (args.messages or args.endpoint or args.since or args.until or args.everything):
        raise ConfigError(
            "requeue", "say which dead letters: message ids, --endpoint, --since/--until or --all"
        )
    async with open_store(config) as store:
        ids = await replay.message_ids(store, args.messages) if args.messages else None
        f = replay.DeadLetterFilter(args.endpoint, ids, args.since, args.until)
        report = await replay.requeue_dead_letters(store, f)
    text = f"re-queued {report.requeued} dead letters"
    if report.stuck:
        text += f"; {report.stuck} left as they are: their endpoint is disabled or deleted"
    emit(asdict(report), args.json, text)
    return 0
