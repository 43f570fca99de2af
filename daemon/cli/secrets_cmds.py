"""`secrets reencrypt | generate-key` and `roles-sql`."""

from __future__ import annotations

import argparse
import sys
from dataclasses import asdict
from typing import Any

from daemon import endpoints, roles
from daemon.cli.common import Parser, emit, open_store, option, positive_int, secret_box
from daemon.config import Config
from daemon.secretbox import generate_key


def register(sub: Any, common: Parser) -> None:
    parser = sub.add_parser("secrets", help="encryption of secrets at rest", parents=[common])
    parser.set_defaults(handler=cmd_secrets)
    actions = parser.add_subparsers(dest="action", required=True, parser_class=Parser)
    reencrypt = actions.add_parser(
        "reencrypt",
        help="encrypt every endpoint secret and header value with the first WEBHOOKD_SECRET_KEYS"
        " key (plaintext ones and ones under an older key)",
        parents=[common],
    )
    reencrypt.add_argument("--batch-size", type=option(positive_int, "--batch-size"), default=100)
    reencrypt.add_argument("--dry-run", action="store_true", help="count, change nothing")
    reencrypt.add_argument("--json", action="store_true")
    actions.add_parser("generate-key", help="print a new random key", parents=[common])
    grants = sub.add_parser(
        "roles-sql", help="print the least-privilege GRANT statements", parents=[common]
    )
    grants.add_argument("--app-role", default=roles.DEFAULT_APP_ROLE, help="the enqueueing role")
    grants.add_argument("--daemon-role", default=roles.DEFAULT_DAEMON_ROLE, help="runs the daemon")
    grants.add_argument("--api-role", default=roles.DEFAULT_API_ROLE, help="runs `webhookd api`")
    grants.set_defaults(handler=cmd_roles_sql)


async def cmd_secrets(args: argparse.Namespace, config: Config) -> int:
    if args.action == "generate-key":
        print(generate_key())
        return 0
    box = secret_box()
    async with open_store(config) as store:
        report = await endpoints.reencrypt_secrets(
            store, box, batch_size=args.batch_size, dry_run=args.dry_run
        )
    verb = "would update" if args.dry_run else "updated"
    text = (
        f"endpoints: {report.endpoints}, {verb}: {report.updated}"
        f" (values encrypted: {report.encrypted}, re-encrypted with the current key:"
        f" {report.rekeyed}, already current: {report.current})"
        + (f"; {report.skipped} malformed endpoint rows skipped" if report.skipped else "")
    )
    emit(asdict(report) | {"dry_run": args.dry_run}, args.json, text)
    return 0


async def cmd_roles_sql(args: argparse.Namespace, _config: Config) -> int:
    sys.stdout.write(roles.roles_sql(args.app_role, args.daemon_role, args.api_role))
    return 0
