"""Subcommands; the only module that prints for humans.

Expected failures (bad option, unknown endpoint, unreachable database) print one line on
stderr and exit with the error's code (2 for bad input); never a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, NoReturn

import orjson
import structlog

from daemon import __version__, endpoints, migrate, roles
from daemon.config import Config, config_as_dict, load_config
from daemon.errors import ConfigError, WebhookdError
from daemon.logs import configure_logging
from daemon.ratelimit import format_rate, parse_rate
from daemon.retry import format_duration, format_schedule, parse_duration, parse_schedule
from daemon.secretbox import SecretBox, generate_key, is_sealed
from daemon.service import Service
from daemon.signing import parse_signature_option
from daemon.store import Store

log = structlog.get_logger("webhookd.cli")


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"webhookd: error: {message}\n")


def _option(parse: Callable[[str], Any], name: str) -> Callable[[str], Any]:
    """Wrap a value parser so a bad value's error says why (argparse adds the option name)."""

    def convert(text: str) -> Any:
        try:
            return parse(text)
        except ConfigError as exc:
            raise argparse.ArgumentTypeError(exc.why) from None
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = name
    return convert


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise ValueError(f"must be at least 1, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="webhookd", description="Deliver a PostgreSQL outbox as webhooks.")
    parser.add_argument("--version", action="version", version=f"webhookd {__version__}")
    parser.add_argument(
        "--config",
        type=Path,
        default=os.environ.get("WEBHOOKD_CONFIG") or None,
        help="TOML file (default /etc/webhookd/webhookd.toml if present)",
    )
    # --config is accepted after the subcommand too (`webhookd run --config x`).
    common = _Parser(add_help=False)
    common.add_argument("--config", type=Path, default=argparse.SUPPRESS, help=argparse.SUPPRESS)
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    run = sub.add_parser("run", help="run the delivery daemon", parents=[common])
    run.add_argument("--migrate", action="store_true", help="apply pending migrations first")
    sub.add_parser("migrate", help="create or upgrade the webhookd schema", parents=[common])
    sub.add_parser("check-config", help="validate the configuration and print it", parents=[common])
    endpoint = sub.add_parser("endpoint", help="manage endpoints", parents=[common])
    _endpoint_parsers(endpoint, common)
    secrets = sub.add_parser("secrets", help="encryption of secrets at rest", parents=[common])
    _secrets_parsers(secrets, common)
    grants = sub.add_parser(
        "roles-sql", help="print the least-privilege GRANT statements", parents=[common]
    )
    grants.add_argument("--app-role", default=roles.DEFAULT_APP_ROLE, help="the enqueueing role")
    grants.add_argument("--daemon-role", default=roles.DEFAULT_DAEMON_ROLE, help="runs the daemon")
    return parser


def _secrets_parsers(parser: argparse.ArgumentParser, common: _Parser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, parser_class=_Parser)
    reencrypt = sub.add_parser(
        "reencrypt",
        help="encrypt every endpoint secret and header value with the first WEBHOOKD_SECRET_KEYS"
        " key (plaintext ones and ones under an older key)",
        parents=[common],
    )
    reencrypt.add_argument("--batch-size", type=_option(_positive_int, "--batch-size"), default=100)
    reencrypt.add_argument("--dry-run", action="store_true", help="count, change nothing")
    reencrypt.add_argument("--json", action="store_true")
    sub.add_parser("generate-key", help="print a new random key", parents=[common])


def _endpoint_parsers(parser: argparse.ArgumentParser, common: _Parser) -> None:
    sub = parser.add_subparsers(dest="action", required=True, parser_class=_Parser)
    parents = [common]
    add = sub.add_parser(
        "add", help="create an endpoint; prints its id and secret", parents=parents
    )
    add.add_argument("url")
    add.add_argument("--tenant", default="default")
    add.add_argument("--description", default="")
    add.add_argument("--event-type", action="append", default=[], dest="event_types")
    add.add_argument("--rate", type=_option(parse_rate, "--rate"))
    add.add_argument("--burst", type=_option(_positive_int, "--burst"))
    add.add_argument("--max-in-flight", type=_option(_positive_int, "--max-in-flight"))
    add.add_argument(
        "--header",
        action="append",
        default=[],
        type=_option(endpoints.parse_header, "--header"),
        dest="headers",
    )
    add.add_argument(
        "--signature",
        type=_option(parse_signature_option, "--signature"),
        default=parse_signature_option("standard"),
    )
    add.add_argument("--secret")
    add.add_argument("--timeout", type=_option(parse_duration, "--timeout"))
    add.add_argument("--retry-schedule", type=_option(parse_schedule, "--retry-schedule"))
    add.add_argument("--id", help="choose the id instead of a generated ep_...")
    add.add_argument("--json", action="store_true")
    lst = sub.add_parser("list", help="list endpoints", parents=parents)
    lst.add_argument("--tenant")
    lst.add_argument("--json", action="store_true")
    for name in ("show", "enable", "delete"):
        p = sub.add_parser(name, help=f"{name} an endpoint", parents=parents)
        p.add_argument("endpoint_id")
        p.add_argument("--json", action="store_true")
    rot = sub.add_parser("rotate-secret", help="new secret, old one still signed", parents=parents)
    rot.add_argument("endpoint_id")
    rot.add_argument("--grace", type=_option(parse_duration, "--grace"), help="default 24h")
    rot.add_argument("--secret", help="the new secret (default: generated)")
    rot.add_argument("--json", action="store_true")
    dis = sub.add_parser(
        "disable", help="disable an endpoint (its deliveries wait)", parents=parents
    )
    dis.add_argument("endpoint_id")
    dis.add_argument("--reason", default="disabled by operator")
    dis.add_argument("--json", action="store_true")


# -- plumbing --------------------------------------------------------------------------


def _load(args: argparse.Namespace) -> Config:
    return load_config(args.config, os.environ)


def _secret_box() -> SecretBox:
    """Keys from WEBHOOKD_SECRET_KEYS (not a config key: it stays out of files and output)."""
    return SecretBox.from_env(os.environ)


def database_url(config: Config) -> str:
    """The configured URL, or the embedded server's (started if needed)."""
    if config.database.url:
        return config.database.url
    from daemon.embedded import EmbeddedPostgres

    config.database.embedded_dir.mkdir(parents=True, exist_ok=True)
    return EmbeddedPostgres(config.database.embedded_dir).start()


@asynccontextmanager
async def _store(config: Config) -> Any:
    db = config.database
    store = await Store.connect(database_url(config), timeout_s=db.connect_timeout_s)
    try:
        yield store
    finally:
        await store.close()


def _human(value: Any) -> str:
    """A value for the text view: no Python reprs."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, list):
        return ", ".join(map(str, value)) or "(all)"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {v}" for k, v in value.items()) or "-"
    return str(value)


def _print(data: Any, as_json: bool, text: str) -> None:
    if as_json:
        sys.stdout.write(orjson.dumps(data, default=str).decode() + "\n")
    else:
        sys.stdout.write(text + "\n")


# -- commands --------------------------------------------------------------------------


async def cmd_run(args: argparse.Namespace, config: Config) -> int:
    box = _secret_box()
    config = replace(config, database=replace(config.database, url=database_url(config)))
    service = Service(config, migrate_schema=args.migrate, secret_box=box)
    loop = asyncio.get_running_loop()
    signals = 0

    def on_signal() -> None:
        nonlocal signals
        signals += 1
        if signals > 1:
            log.warning("service.forced_exit")
            os._exit(130)
        service.request_stop()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal)
    await service.start()
    await service.wait()
    return 0


async def cmd_migrate(_args: argparse.Namespace, config: Config) -> int:
    async with _store(config) as store:
        applied = await migrate.migrate(store)
    print("applied: " + ", ".join(applied) if applied else "schema is current")
    return 0


async def cmd_check_config(_args: argparse.Namespace, config: Config) -> int:
    _secret_box()  # refuses malformed keys
    sys.stdout.write(orjson.dumps(config_as_dict(config), option=orjson.OPT_INDENT_2).decode())
    sys.stdout.write("\nconfiguration ok\n")
    return 0


async def cmd_endpoint(args: argparse.Namespace, config: Config) -> int:
    handlers: dict[str, Callable[[Store, argparse.Namespace, Config], Awaitable[int]]] = {
        "add": _endpoint_add,
        "list": _endpoint_list,
        "show": _endpoint_show,
        "enable": _endpoint_enable,
        "disable": _endpoint_disable,
        "delete": _endpoint_delete,
        "rotate-secret": _endpoint_rotate,
    }
    async with _store(config) as store:
        await migrate.require_current(store)
        return await handlers[args.action](store, args, config)


async def _endpoint_add(store: Store, args: argparse.Namespace, config: Config) -> int:
    spec = endpoints.EndpointSpec(
        url=args.url,
        tenant_id=args.tenant,
        description=args.description,
        event_types=tuple(args.event_types),
        rate_per_s=args.rate.per_second if args.rate else None,
        burst=args.burst,
        max_in_flight=args.max_in_flight,
        headers=tuple(args.headers),
        signature=args.signature,
        secret=args.secret,
        timeout_s=args.timeout,
        retry_schedule_s=args.retry_schedule,
        id=args.id,
    )
    ep_id, secret = await endpoints.add_endpoint(
        store, spec, allow_http=config.delivery.allow_insecure_http, box=_secret_box()
    )
    text = f"id:     {ep_id}\nsecret: {secret}"
    _print({"id": ep_id, "secret": secret, "url": args.url}, args.json, text)
    return 0


def endpoint_view(rec: Any) -> dict[str, Any]:
    """An endpoint for display: header values are never shown, only their names."""
    headers = orjson.loads(rec["headers"]) if isinstance(rec["headers"], str) else rec["headers"]
    schedule = rec["retry_schedule_ms"]
    view: dict[str, Any] = {
        "id": rec["id"],
        "tenant": rec["tenant_id"],
        "url": rec["url"],
        "enabled": rec["enabled"],
        "disabled_reason": rec["disabled_reason"],
        "event_types": list(rec["event_types"]),
        "signature": rec["signature_scheme"]
        + (f":{rec['signature_header']}" if rec["signature_header"] else "")
        + (f":{rec['signature_prefix']}" if rec["signature_prefix"] else ""),
        "headers": {h[0]: "[redacted]" for h in headers},
        "rate": None if rec["rate_per_s"] is None else format_rate(rec["rate_per_s"]),
        "burst": rec["burst"],
        "max_in_flight": rec["max_in_flight"],
        "timeout": None if rec["timeout_ms"] is None else format_duration(rec["timeout_ms"] / 1e3),
        "retry_schedule": None
        if schedule is None
        else format_schedule([ms / 1000 for ms in schedule]),
        "created_at": rec["created_at"].isoformat(),
    }
    for key in ("pending", "failed"):
        if key in rec:
            view[key] = rec[key]
    return view


async def _endpoint_list(store: Store, args: argparse.Namespace, _config: Config) -> int:
    rows = [endpoint_view(r) for r in await endpoints.list_endpoints(store, args.tenant)]
    lines = [f"{'ID':<36} {'TENANT':<12} {'STATE':<8} {'PENDING':>7} {'FAILED':>6}  URL"]
    for v in rows:
        state = "enabled" if v["enabled"] else "disabled"
        lines.append(
            f"{v['id']:<36} {v['tenant']:<12} {state:<8} {v['pending']:>7} {v['failed']:>6}"
            f"  {v['url']}"
        )
    _print(rows, args.json, "\n".join(lines))
    return 0


async def _endpoint_show(store: Store, args: argparse.Namespace, _config: Config) -> int:
    box = _secret_box()
    rec = await endpoints.get_endpoint(store, args.endpoint_id)
    view = endpoint_view(rec) | {
        "secret": box.open(rec["secret"], f"endpoint {rec['id']} secret"),
        "secret_at_rest": "encrypted" if is_sealed(rec["secret"]) else "plaintext",
    }
    text = "\n".join(f"{k:<16} {_human(v)}" for k, v in view.items())
    _print(view, args.json, text)
    return 0


async def _endpoint_enable(store: Store, args: argparse.Namespace, _config: Config) -> int:
    await endpoints.set_enabled(store, args.endpoint_id, True)
    _print({"id": args.endpoint_id, "enabled": True}, args.json, f"enabled {args.endpoint_id}")
    return 0


async def _endpoint_disable(store: Store, args: argparse.Namespace, _config: Config) -> int:
    await endpoints.set_enabled(store, args.endpoint_id, False, args.reason)
    _print({"id": args.endpoint_id, "enabled": False}, args.json, f"disabled {args.endpoint_id}")
    return 0


async def _endpoint_rotate(store: Store, args: argparse.Namespace, config: Config) -> int:
    grace_s = config.signing.rotation_grace_s if args.grace is None else args.grace
    secret = await endpoints.rotate_secret(
        store, args.endpoint_id, grace_s=grace_s, new_secret=args.secret, box=_secret_box()
    )
    until = format_duration(round(grace_s))
    _print(
        {"id": args.endpoint_id, "secret": secret, "previous_valid_for": until},
        args.json,
        f"secret: {secret}\n(the previous secret is still signed for {until})",
    )
    return 0


async def _endpoint_delete(store: Store, args: argparse.Namespace, _config: Config) -> int:
    failed = await endpoints.delete_endpoint(store, args.endpoint_id)
    _print(
        {"id": args.endpoint_id, "deleted": True, "dead_lettered": failed},
        args.json,
        f"deleted {args.endpoint_id} ({failed} undelivered deliveries dead-lettered)",
    )
    return 0


async def cmd_secrets(args: argparse.Namespace, config: Config) -> int:
    if args.action == "generate-key":
        print(generate_key())
        return 0
    box = _secret_box()
    async with _store(config) as store:
        await migrate.require_current(store)
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
    _print(asdict(report) | {"dry_run": args.dry_run}, args.json, text)
    return 0


async def cmd_roles_sql(args: argparse.Namespace, _config: Config) -> int:
    sys.stdout.write(roles.roles_sql(args.app_role, args.daemon_role))
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace, Config], Awaitable[int]]] = {
    "run": cmd_run,
    "migrate": cmd_migrate,
    "check-config": cmd_check_config,
    "endpoint": cmd_endpoint,
    "secrets": cmd_secrets,
    "roles-sql": cmd_roles_sql,
}


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        config = _load(args)
        # The daemon logs to stdout (journald, docker logs); admin commands keep stdout for
        # their own output and log to stderr.
        stream = sys.stdout if args.command == "run" else sys.stderr
        configure_logging(config.log.level, config.log.format, stream)
        return _run_async(COMMANDS[args.command](args, config))
    except WebhookdError as exc:
        sys.stderr.write(f"webhookd: error: {exc}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


def _run_async(coro: Awaitable[int]) -> int:
    import uvloop

    async def wrapper() -> int:
        return await coro

    return uvloop.run(wrapper())
