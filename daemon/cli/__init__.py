"""Subcommands; the only package that prints for humans.

Each `*_cmds` module registers its subcommands with a handler, and imports what only the
handler needs (aiohttp, asyncpg, structlog, the service) inside it: `--help` and a bad option
answer at once (tests/unit/test_cli_startup.py). Expected failures (bad option, unknown
endpoint, unreachable database) print one line on stderr and exit with the error's code (2 for
bad input, 3 for not found); never a traceback.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Awaitable, Sequence
from pathlib import Path

from daemon import __version__
from daemon.cli import (
    api_cmds,
    demo_cmds,
    embedded_cmds,
    endpoint_cmds,
    message_cmds,
    replay_cmds,
    retention_cmds,
    secrets_cmds,
    service_cmds,
)
from daemon.cli.common import Parser
from daemon.config import load_config, unknown_variables
from daemon.errors import WebhookdError

COMMAND_MODULES = (
    service_cmds,
    embedded_cmds,
    endpoint_cmds,
    secrets_cmds,
    message_cmds,
    replay_cmds,
    demo_cmds,
    retention_cmds,
    api_cmds,
)


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="webhookd", description="Deliver a PostgreSQL outbox as webhooks.")
    parser.add_argument("--version", action="version", version=f"webhookd {__version__}")
    parser.add_argument(
        "--config",
        type=Path,
        default=os.environ.get("WEBHOOKD_CONFIG") or None,
        help="TOML file (default /etc/webhookd/webhookd.toml if present)",
    )
    # --config is accepted after the subcommand too (`webhookd run --config x`).
    common = Parser(add_help=False)
    common.add_argument("--config", type=Path, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for module in COMMAND_MODULES:
        module.register(sub, common)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from daemon.logs import configure_logging  # structlog: not needed to print --help

    try:
        config = load_config(args.config, os.environ)
        # The daemon logs to stdout (journald, docker logs); admin commands keep stdout for
        # their own output and log to stderr.
        stream = sys.stdout if args.command in ("run", "api") else sys.stderr
        configure_logging(config.log.level, config.log.format, stream)
        _warn_unknown_variables()
        return _run_async(args.handler(args, config))
    except WebhookdError as exc:
        sys.stderr.write(f"webhookd: error: {exc}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


def _warn_unknown_variables() -> None:
    from daemon.logs import get_logger

    for name, meant in unknown_variables(os.environ):
        get_logger("webhookd.config").warning(
            "config.unknown_variable",
            variable=name,
            did_you_mean=meant,
            note="not a webhookd setting: ignored",
        )


def _run_async(coro: Awaitable[int]) -> int:
    import uvloop

    async def wrapper() -> int:
        return await coro

    return uvloop.run(wrapper())
