"""`embedded status | stop`: the PostgreSQL started for `webhookd run` when database.url is empty.

That server outlives the command that started it (the next `run` connects at once), so stopping
it is left to the operator: `webhookd embedded stop`, or `make db-stop`.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from daemon.cli.common import Parser, emit
from daemon.config import Config

if TYPE_CHECKING:
    from daemon.embedded import EmbeddedPostgres, ServerStatus, StopMode

NOT_RUNNING = 3  # `status` exit code, as `pg_ctl status` and `systemctl status` have it


def register(sub: Any, common: Parser) -> None:
    parser = sub.add_parser(
        "embedded",
        help="the embedded PostgreSQL used when database.url is empty",
        parents=[common],
    )
    parser.set_defaults(handler=cmd_embedded)
    actions = parser.add_subparsers(dest="action", required=True, parser_class=Parser)
    status = actions.add_parser(
        "status",
        help="running or not, its URL and data directory (exit 0 when running, 3 when not)",
        parents=[common],
    )
    status.add_argument("--json", action="store_true")
    stop = actions.add_parser(
        "stop", help="stop the server if it runs; its data is kept", parents=[common]
    )
    stop.add_argument(
        "--mode",
        choices=("smart", "fast", "immediate"),
        default="fast",
        help="fast (default) disconnects clients; smart waits for them to leave;"
        " immediate skips the shutdown checkpoint (recovery at the next start)",
    )
    stop.add_argument("--json", action="store_true")


async def cmd_embedded(args: argparse.Namespace, config: Config) -> int:
    from daemon.embedded import EmbeddedPostgres

    server = EmbeddedPostgres(config.database.embedded_dir)
    if args.action == "status":
        return _status(server, config, args.json)
    return _stop(server, args.mode, args.json)


def _status(server: EmbeddedPostgres, config: Config, as_json: bool) -> int:
    status = server.status()
    data = {
        "running": status.running,
        "pid": status.pid,
        "port": status.port,
        "url": server.dsn if status.running else None,
        "data_dir": str(status.data_dir),
        "log": str(server.log_path),
        "initialised": status.initialised,
        "used": config.database.use_embedded,
    }
    text = _status_text(status, data)
    if not config.database.use_embedded:
        text += "\n(database.url is set: webhookd does not use this server)"
    emit(data, as_json, text)
    return 0 if status.running else NOT_RUNNING


def _status_text(status: ServerStatus, data: dict[str, Any]) -> str:
    if not status.initialised:
        return f"no embedded PostgreSQL in {status.data_dir} (`webhookd run` creates it)"
    state = (
        f"running: pid {status.pid}, {data['url']}"
        if status.running
        else f"not running (last port {status.port or '-'}; `webhookd run` starts it)"
    )
    return f"{state}\ndata:    {status.data_dir}\nlog:     {data['log']}"


def _stop(server: EmbeddedPostgres, mode: StopMode, as_json: bool) -> int:
    before = server.status()
    if before.running:
        server.stop(mode)
        text = f"stopped the embedded PostgreSQL (pid {before.pid}, port {before.port})"
    else:
        text = "the embedded PostgreSQL was not running"
    text += f"; data in {before.data_dir}"
    emit({"stopped": before.running, "data_dir": str(before.data_dir)}, as_json, text)
    return 0
