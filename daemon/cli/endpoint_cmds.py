"""`endpoint add | import | list | show | update | enable | disable | delete | rotate-secret`."""

from __future__ import annotations

import argparse
import shlex
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import orjson

from daemon import endpoints
from daemon.cli import endpoint_import, endpoint_update_cmd
from daemon.cli.common import (
    BURST,
    MAX_IN_FLIGHT_OPTION,
    TIMEOUT,
    Parser,
    emit,
    human,
    open_store,
    option,
    secret_box,
)
from daemon.config import Config
from daemon.egress import redact_proxy
from daemon.secretbox import is_sealed
from daemon.signing import ED25519, parse_signature_option, public_key
from daemon.templates import FORMATS, RAW
from daemon.units import (
    MAX_GRACE_S,
    bounded_duration,
    bounded_int,
    format_duration,
    format_rate,
    format_schedule,
    parse_rate,
    parse_schedule,
)

GRACE = bounded_duration(high=MAX_GRACE_S)
PAGE_SIZE = bounded_int(1, endpoints.PAGE_MAX)

if TYPE_CHECKING:
    from daemon.store import Store

    Action = Callable[[Store, argparse.Namespace, Config], Awaitable[int]]


def register(sub: Any, common: Parser) -> None:
    parser = sub.add_parser("endpoint", help="manage endpoints", parents=[common])
    parser.set_defaults(handler=cmd_endpoint)
    actions = parser.add_subparsers(dest="action", required=True, parser_class=Parser)
    parents = [common]
    add = actions.add_parser("add", help="create an endpoint, print id and secret", parents=parents)
    add.add_argument("url")
    add_endpoint_options(add)
    add.add_argument("--id", help="choose the id instead of a generated ep_...")
    add.add_argument("--json", action="store_true")
    lst = actions.add_parser("list", help="list endpoints, a page at a time", parents=parents)
    lst.add_argument("--tenant")
    lst.add_argument(
        "--limit",
        type=option(PAGE_SIZE, "--limit"),
        default=100,
        help=f"endpoints per page (default 100, at most {endpoints.PAGE_MAX})",
    )
    lst.add_argument("--after", metavar="ID", help="the page after this endpoint id")
    lst.add_argument("--json", action="store_true")
    for name in ("show", "enable", "delete"):
        p = actions.add_parser(name, help=f"{name} an endpoint", parents=parents)
        p.add_argument("endpoint_id")
        p.add_argument("--json", action="store_true")
    rot = actions.add_parser(
        "rotate-secret", help="new secret, old one still signed", parents=parents
    )
    rot.add_argument("endpoint_id")
    rot.add_argument("--grace", type=option(GRACE, "--grace"), help="default 24h")
    rot.add_argument("--secret", help="the new secret (default: generated)")
    rot.add_argument("--json", action="store_true")
    dis = actions.add_parser("disable", help="disable (deliveries wait)", parents=parents)
    dis.add_argument("endpoint_id")
    dis.add_argument("--reason", default="disabled by operator")
    dis.add_argument("--json", action="store_true")
    endpoint_update_cmd.register(actions, parents)
    endpoint_import.register(actions, parents)


def add_endpoint_options(parser: argparse.ArgumentParser) -> None:
    """The options of `endpoint add` (shared with commands that change an endpoint)."""
    parser.add_argument("--tenant", default="default")
    parser.add_argument("--description", default="")
    parser.add_argument("--event-type", action="append", default=[], dest="event_types")
    parser.add_argument("--rate", type=option(parse_rate, "--rate"))
    parser.add_argument("--burst", type=option(BURST, "--burst"))
    parser.add_argument("--max-in-flight", type=option(MAX_IN_FLIGHT_OPTION, "--max-in-flight"))
    parser.add_argument(
        "--header",
        action="append",
        default=[],
        type=option(endpoints.parse_header, "--header"),
        dest="headers",
    )
    parser.add_argument(
        "--signature",
        type=option(parse_signature_option, "--signature"),
        default=parse_signature_option("standard"),
    )
    parser.add_argument(
        "--secret", help="default: generated (standard-ed25519: a new whsk_ private key)"
    )
    parser.add_argument("--timeout", type=option(TIMEOUT, "--timeout"))
    parser.add_argument("--retry-schedule", type=option(parse_schedule, "--retry-schedule"))
    parser.add_argument(
        "--format",
        choices=FORMATS,
        default=RAW,
        dest="payload_format",
        help="raw: the payload as it is (default); slack, discord, teams: a chat message",
    )
    parser.add_argument(
        "--template", help="the message, e.g. '{{payload.device}} entered {{payload.zone}}'"
    )
    parser.add_argument("--title", help="the Teams card's title (a template too)")
    parser.add_argument(
        "--proxy",
        metavar="URL|none",
        help="this endpoint's forward proxy (http://host:port), or none: direct;"
        " default: delivery.proxy",
    )


async def cmd_endpoint(args: argparse.Namespace, config: Config) -> int:
    actions: dict[str, Action] = {
        "add": _add,
        "list": _list,
        "show": _show,
        "enable": _enable,
        "disable": _disable,
        "delete": _delete,
        "rotate-secret": _rotate,
        "update": endpoint_update_cmd.run,
        "import": endpoint_import.run,
    }
    if args.action == "add":  # bad input is refused without a database
        endpoints.validate_spec(_spec(args), allow_http=config.delivery.allow_insecure_http)
    async with open_store(config) as store:
        return await actions[args.action](store, args, config)


async def _add(store: Store, args: argparse.Namespace, config: Config) -> int:
    ep_id, secret = await endpoints.add_endpoint(
        store, _spec(args), allow_http=config.delivery.allow_insecure_http, box=secret_box()
    )
    keys = _key_view(args.signature.scheme, secret)
    if "public_key" in keys:
        text = f"id:         {ep_id}\npublic key: {keys['public_key']}\n{_PUBLIC_KEY_NOTE}"
    else:
        text = f"id:     {ep_id}\nsecret: {secret}"
    emit({"id": ep_id, **keys, "url": args.url}, args.json, text)
    return 0


def _spec(args: argparse.Namespace) -> endpoints.EndpointSpec:
    return endpoints.EndpointSpec(
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
        payload_format=args.payload_format,
        template=args.template,
        title=args.title,
        proxy=args.proxy,
    )


_PUBLIC_KEY_NOTE = "(receivers verify with the public key; the private key never leaves webhookd)"


def _key_view(scheme: str, secret: str) -> dict[str, str]:
    """What the receiver needs: the shared secret, or for ed25519 only the public key (the
    private key stays in the database: webhookd never prints it)."""
    return {"public_key": _public_key(secret)} if scheme == ED25519 else {"secret": secret}


def _public_key(secret: str) -> str:
    try:
        return public_key(secret)
    except ValueError as exc:  # a key written by SQL, past the checks of `endpoint add`
        return f"[unusable private key: {exc}]"


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
        "format": rec["payload_format"],
        "template": rec["payload_template"],
        "title": rec["payload_title"],
        "proxy": None if rec["proxy"] is None else redact_proxy(rec["proxy"]),
    }
    for key in ("pending", "failed"):
        if key in rec:
            view[key] = rec[key]
    return view


async def _list(store: Store, args: argparse.Namespace, _config: Config) -> int:
    page = await endpoints.list_endpoints(store, args.tenant, after_id=args.after, limit=args.limit)
    rows = [_listed_view(r) for r in page.rows]
    lines = [f"{'ID':<36} {'TENANT':<12} {'STATE':<8} {'PENDING':>7} {'FAILED':>6}  URL"]
    for v in rows:
        state = "enabled" if v["enabled"] else "disabled"
        pending, failed = (_count_cell(v, key) for key in ("pending", "failed"))
        lines.append(
            f"{v['id']:<36} {v['tenant']:<12} {state:<8} {pending:>7} {failed:>6}  {v['url']}"
        )
    if not rows:
        lines = ["no more endpoints" if args.after else "no endpoints"]
    if page.next_after is not None:
        lines.append(f"next page: {_next_page_command(args, page.next_after)}")
    emit({"endpoints": rows, "next_after": page.next_after}, args.json, "\n".join(lines))
    return 0


def _listed_view(rec: Any) -> dict[str, Any]:
    """A listed endpoint; a count beyond endpoints.COUNT_CAP is the cap, named in `capped`."""
    view = endpoint_view(rec)
    capped = [key for key in ("pending", "failed") if view[key] > endpoints.COUNT_CAP]
    for key in capped:
        view[key] = endpoints.COUNT_CAP
    if capped:
        view["capped"] = capped
    return view


def _count_cell(view: dict[str, Any], key: str) -> str:
    return f"{view[key]}+" if key in view.get("capped", ()) else str(view[key])


def _next_page_command(args: argparse.Namespace, after: str) -> str:
    words = ["webhookd endpoint list"]
    if args.tenant is not None:
        words.append(f"--tenant {shlex.quote(args.tenant)}")
    if args.limit != 100:
        words.append(f"--limit {args.limit}")
    words.append(f"--after {shlex.quote(after)}")
    return " ".join(words)


async def _show(store: Store, args: argparse.Namespace, _config: Config) -> int:
    box = secret_box()
    rec = await endpoints.get_endpoint(store, args.endpoint_id)
    secret = box.open(rec["secret"], f"endpoint {rec['id']} secret")
    view = endpoint_view(rec) | _key_view(rec["signature_scheme"], secret)
    if rec["signature_scheme"] == ED25519 and (previous := _previous_public_keys(rec)):
        view["previous_public_keys"] = previous
    view["secret_at_rest"] = "encrypted" if is_sealed(rec["secret"]) else "plaintext"
    text = "\n".join(f"{k:<16} {human(v)}" for k, v in view.items())
    emit(view, args.json, text)
    return 0


def _previous_public_keys(rec: Any) -> list[str]:
    """Public keys of the private keys still signing during a rotation grace."""
    box, now_s = secret_box(), time.time()
    stored = rec["previous_secrets"]
    previous = orjson.loads(stored) if isinstance(stored, str) else stored
    return [
        _public_key(box.open(str(p["secret"]), f"endpoint {rec['id']} previous secret"))
        for p in previous
        if float(p["expires_at"]) > now_s
    ]


async def _enable(store: Store, args: argparse.Namespace, _config: Config) -> int:
    await endpoints.set_enabled(store, args.endpoint_id, True)
    emit({"id": args.endpoint_id, "enabled": True}, args.json, f"enabled {args.endpoint_id}")
    return 0


async def _disable(store: Store, args: argparse.Namespace, _config: Config) -> int:
    await endpoints.set_enabled(store, args.endpoint_id, False, args.reason)
    emit({"id": args.endpoint_id, "enabled": False}, args.json, f"disabled {args.endpoint_id}")
    return 0


async def _rotate(store: Store, args: argparse.Namespace, config: Config) -> int:
    grace_s = config.signing.rotation_grace_s if args.grace is None else args.grace
    secret = await endpoints.rotate_secret(
        store, args.endpoint_id, grace_s=grace_s, new_secret=args.secret, box=secret_box()
    )
    until = format_duration(round(grace_s))
    rec = await endpoints.get_endpoint(store, args.endpoint_id)
    keys = _key_view(rec["signature_scheme"], secret)
    if "public_key" in keys:
        text = (
            f"public key: {keys['public_key']}\n(the previous key still signs for {until}:"
            " receivers may accept either public key until then)"
        )
    else:
        text = f"secret: {secret}\n(the previous secret is still signed for {until})"
    emit({"id": args.endpoint_id, **keys, "previous_valid_for": until}, args.json, text)
    return 0


async def _delete(store: Store, args: argparse.Namespace, _config: Config) -> int:
    failed = await endpoints.delete_endpoint(store, args.endpoint_id)
    emit(
        {"id": args.endpoint_id, "deleted": True, "dead_lettered": failed},
        args.json,
        f"deleted {args.endpoint_id} ({failed} undelivered deliveries dead-lettered)",
    )
    return 0
