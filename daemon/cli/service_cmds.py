"""`run`, `migrate`, `check-config`."""

from __future__ import annotations

import argparse
import os
import signal
import sys
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from daemon.cli.common import Parser, database_url, open_store, secret_box
from daemon.config import Config, config_as_dict, load_config
from daemon.errors import ConfigError

# The service (aiohttp, asyncpg, prometheus) is imported by the commands that use it, so that
# `webhookd --help` and the admin commands do not pay for it.
if TYPE_CHECKING:
    from daemon.service import Service

LOGGER = "webhookd.cli"


def register(sub: Any, common: Parser) -> None:
    run = sub.add_parser("run", help="run the delivery daemon", parents=[common])
    run.add_argument("--migrate", action="store_true", help="apply pending migrations first")
    run.set_defaults(handler=cmd_run)
    mig = sub.add_parser("migrate", help="create or upgrade the webhookd schema", parents=[common])
    mig.set_defaults(handler=cmd_migrate)
    check = sub.add_parser(
        "check-config", help="validate the configuration and print it", parents=[common]
    )
    check.set_defaults(handler=cmd_check_config)


async def cmd_run(args: argparse.Namespace, config: Config) -> int:
    import asyncio

    import structlog

    from daemon.service import Service

    log = structlog.get_logger(LOGGER)
    box = secret_box()
    configured_url = config.database.url
    config = replace(config, database=replace(config.database, url=database_url(config)))
    service = Service(config, migrate_schema=args.migrate, secret_box=box, log_stream=sys.stdout)
    loop = asyncio.get_running_loop()
    signals = 0

    def on_signal() -> None:
        nonlocal signals
        signals += 1
        if signals > 1:
            log.warning("service.forced_exit")
            os._exit(130)
        service.request_stop()

    def on_hangup() -> None:
        reload_config(service, args.config, configured_url)

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    loop.add_signal_handler(signal.SIGHUP, on_hangup)
    await service.start()
    await service.wait()
    return 0


def reload_config(service: Service, path: Path | None, configured_url: str) -> None:
    """SIGHUP: read the same file and environment again and apply what can change while
    running. A file that does not load changes nothing: the old configuration stays."""
    import structlog

    try:
        loaded = load_config(path, os.environ)
    except ConfigError as exc:
        structlog.get_logger(LOGGER).error("config.reload_failed", key=exc.key, error=exc.why)
        return
    if loaded.database.url == configured_url:  # unchanged: keep the URL in use (embedded)
        loaded = replace(loaded, database=replace(loaded.database, url=service.config.database.url))
    service.reload(loaded)


async def cmd_migrate(_args: argparse.Namespace, config: Config) -> int:
    from daemon import migrate

    async with open_store(config, current_schema=False) as store:
        applied = await migrate.migrate(store)
    print("applied: " + ", ".join(applied) if applied else "schema is current")
    return 0


async def cmd_check_config(_args: argparse.Namespace, config: Config) -> int:
    import orjson

    secret_box()  # refuses malformed keys
    sys.stdout.write(orjson.dumps(config_as_dict(config), option=orjson.OPT_INDENT_2).decode())
    sys.stdout.write("\nconfiguration ok\n")
    return 0
