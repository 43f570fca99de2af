"""`api` (the management HTTP API) and `api-token create | list | revoke`."""

from __future__ import annotations

import argparse
from typing import Any

from daemon.cli.common import Parser, emit, open_store, option, table
from daemon.cli.display import at
from daemon.config import Config
from daemon.units import MAX_GRACE_S, bounded_duration


def register(sub: Any, common: Parser) -> None:
    api = sub.add_parser("api", help="serve the management HTTP API (api.listen)", parents=[common])
    api.add_argument("--migrate", action="store_true", help="apply pending migrations first")
    api.set_defaults(handler=cmd_api)
    tok = sub.add_parser("api-token", help="tokens for the HTTP API", parents=[common])
    tok.set_defaults(handler=cmd_api_token)
    actions = tok.add_subparsers(dest="action", required=True, parser_class=Parser)
    create = actions.add_parser(
        "create", help="a new token, printed once (only its hash is kept)", parents=[common]
    )
    create.add_argument("--scope", choices=("admin", "read"), required=True)
    create.add_argument("--app", help="limit the token to this application (id or uid)")
    create.add_argument(
        "--expires",
        type=option(bounded_duration(high=MAX_GRACE_S, above=True), "--expires"),
        help="e.g. 30d (default: never)",
    )
    create.add_argument("--description", default="")
    create.add_argument("--json", action="store_true")
    lst = actions.add_parser("list", help="every token (never the token itself)", parents=[common])
    lst.add_argument("--json", action="store_true")
    rev = actions.add_parser("revoke", help="refuse a token from now on", parents=[common])
    rev.add_argument("token_id", metavar="ID")
    rev.add_argument("--json", action="store_true")


async def cmd_api(args: argparse.Namespace, config: Config) -> int:
    import asyncio
    import os
    import signal
    from dataclasses import replace

    import structlog

    from daemon.api.server import ApiServer
    from daemon.cli.common import database_url, secret_box

    config = replace(config, database=replace(config.database, url=database_url(config)))
    server = ApiServer(config, migrate_schema=args.migrate, secret_box=secret_box())
    signals = 0

    def on_signal() -> None:
        nonlocal signals
        signals += 1
        if signals > 1:
            structlog.get_logger("webhookd.cli").warning("api.forced_exit")
            os._exit(130)
        server.request_stop()

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    await server.start()
    await server.wait()
    return 0


async def cmd_api_token(args: argparse.Namespace, config: Config) -> int:
    from daemon.api import tokens

    async with open_store(config) as store:
        if args.action == "create":
            new = await tokens.create_token(
                store,
                args.scope,
                app=args.app,
                expires_in_s=args.expires,
                description=args.description,
            )
            view = {
                "id": new.id,
                "token": new.token,
                "scope": new.scope,
                "app_id": new.app_id,
                "expires_at": new.expires_at,
            }
            text = f"id:    {new.id}\ntoken: {new.token}\n(shown once: only its hash is kept)"
            emit(view, args.json, text)
        elif args.action == "list":
            rows = await tokens.list_tokens(store)
            views = [_token_view(r) for r in rows]
            cells = [
                [v["id"], v["scope"], v["app_uid"] or v["app_id"] or "(all)", v["state"],
                 at(r["expires_at"]), v["description"]]
                for v, r in zip(views, rows, strict=True)
            ]  # fmt: skip
            headers = ["ID", "SCOPE", "APP", "STATE", "EXPIRES", "DESCRIPTION"]
            emit(views, args.json, table(headers, cells) if cells else "no API tokens")
        else:
            row = await tokens.revoke_token(store, args.token_id)
            emit(
                {"id": row["id"], "revoked_at": row["revoked_at"]},
                args.json,
                f"revoked {row['id']}",
            )
    return 0


def _token_view(r: Any) -> dict[str, Any]:
    from datetime import UTC, datetime

    if r["revoked_at"] is not None:
        state = "revoked"
    elif r["expires_at"] is not None and r["expires_at"] <= datetime.now(UTC):
        state = "expired"
    else:
        state = "active"
    return {
        "id": r["id"],
        "scope": r["scope"],
        "app_id": r["app_id"],
        "app_uid": r["app_uid"],
        "description": r["description"],
        "state": state,
        "created_at": r["created_at"],
        "expires_at": r["expires_at"],
        "revoked_at": r["revoked_at"],
    }
