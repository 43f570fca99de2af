"""`prune`: delete finished messages and old attempts (see daemon/retention.py)."""

from __future__ import annotations

import argparse
from typing import Any

from daemon.cli.common import Parser, emit, open_store, option
from daemon.config import Config
from daemon.errors import ConfigError
from daemon.units import MAX_AGE_S, bounded_duration, bounded_int, format_duration

_OLDER_THAN = bounded_duration(high=MAX_AGE_S, above=True)
_BATCH_SIZE = bounded_int(1, 100_000)  # as retention.batch_size


def register(sub: Any, common: Parser) -> None:
    prune = sub.add_parser(
        "prune",
        help="delete finished messages (with their deliveries and attempts) and old attempts",
        parents=[common],
    )
    prune.add_argument(
        "--older-than",
        type=option(_OLDER_THAN, "--older-than"),
        help="e.g. 30d (default: retention.prune_after)",
    )
    prune.add_argument(
        "--batch-size",
        type=option(_BATCH_SIZE, "--batch-size"),
        help="messages or attempts per transaction (default: retention.batch_size)",
    )
    prune.add_argument(
        "--include-failed",
        action="store_true",
        default=None,
        help="also delete messages with dead-lettered deliveries (default: kept)",
    )
    prune.add_argument("--dry-run", action="store_true", help="count, delete nothing")
    prune.add_argument("--json", action="store_true")
    prune.set_defaults(handler=cmd_prune)


async def cmd_prune(args: argparse.Namespace, config: Config) -> int:
    from daemon import retention  # imports the metrics (aiohttp): only when pruning

    settings = config.retention
    older_than_s = args.older_than if args.older_than is not None else settings.prune_after_s
    if older_than_s is None:
        raise ConfigError("--older-than", "is required (or set retention.prune_after)")
    include_failed = settings.include_failed if args.include_failed is None else True
    async with open_store(config) as store:
        report = await retention.prune(
            store,
            older_than_s,
            batch_size=args.batch_size or settings.batch_size,
            include_failed=include_failed,
            dry_run=args.dry_run,
        )
    older_than = format_duration(older_than_s)
    verb = "would delete" if args.dry_run else "deleted"
    text = (
        f"{verb} {report.messages} messages, {report.deliveries} deliveries and"
        f" {report.attempts} attempts older than {older_than}"
        f" ({report.batches} batches)"
    )
    data = {
        "messages": report.messages,
        "deliveries": report.deliveries,
        "attempts": report.attempts,
        "batches": report.batches,
        "older_than": older_than,
        "cutoff": report.cutoff,
        "include_failed": include_failed,
        "dry_run": args.dry_run,
    }
    emit(data, args.json, text)
    return 0
