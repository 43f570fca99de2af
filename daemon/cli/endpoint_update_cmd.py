"""`endpoint update ID [options]`: the options of `endpoint add`, each changing one setting.

A limit given as `default` goes back to the configured default; `--header` and
`--event-type` replace the whole list (`--clear-headers`, `--clear-event-types` empty it).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from daemon import endpoint_update
from daemon.cli.common import BURST, MAX_IN_FLIGHT_OPTION, TIMEOUT, emit, option, secret_box
from daemon.config import Config
from daemon.endpoint_update import KEEP, EndpointUpdate
from daemon.endpoints import parse_header
from daemon.signing import ED25519, parse_signature_option, public_key
from daemon.templates import FORMATS
from daemon.units import parse_rate, parse_schedule

if TYPE_CHECKING:
    from daemon.store import Store

T = TypeVar("T")
_DEFAULT = "default"

# Option names as the operator typed them, by EndpointUpdate field.
OPTION_NAMES = {
    "url": "url",
    "tenant_id": "tenant",
    "description": "description",
    "event_types": "event-type",
    "rate_per_s": "rate",
    "burst": "burst",
    "max_in_flight": "max-in-flight",
    "headers": "header",
    "signature": "signature",
    "secret": "secret",
    "timeout_s": "timeout",
    "retry_schedule_s": "retry-schedule",
    "payload_format": "format",
    "template": "template",
    "title": "title",
    "proxy": "proxy",
}


def or_default(parse: Callable[[str], T]) -> Callable[[str], T | None]:
    """`default` means the configured default (None); anything else is parsed."""

    def convert(text: str) -> T | None:
        return None if text.strip() == _DEFAULT else parse(text)

    return convert


def register(actions: Any, parents: Sequence[argparse.ArgumentParser]) -> None:
    p = actions.add_parser(
        "update", help="change settings of an endpoint (the options of add)", parents=parents
    )
    p.add_argument("endpoint_id")
    p.add_argument("--url", default=KEEP)
    p.add_argument("--tenant", default=KEEP)
    p.add_argument("--description", default=KEEP)
    types = p.add_mutually_exclusive_group()
    types.add_argument("--event-type", action="append", dest="event_types", help="replaces all")
    types.add_argument("--clear-event-types", action="store_true", help="receive every type")
    limit = "; 'default' for the configured default"
    p.add_argument(
        "--rate",
        type=option(or_default(parse_rate), "--rate"),
        default=KEEP,
        help="e.g. 100/min" + limit,
    )
    p.add_argument("--burst", type=option(or_default(BURST), "--burst"), default=KEEP)
    p.add_argument(
        "--max-in-flight",
        type=option(or_default(MAX_IN_FLIGHT_OPTION), "--max-in-flight"),
        default=KEEP,
    )
    headers = p.add_mutually_exclusive_group()
    headers.add_argument(
        "--header",
        action="append",
        dest="headers",
        type=option(parse_header, "--header"),
        help="'Name: value'; replaces every custom header",
    )
    headers.add_argument("--clear-headers", action="store_true")
    p.add_argument("--signature", type=option(parse_signature_option, "--signature"), default=KEEP)
    p.add_argument(
        "--secret",
        default=KEEP,
        help="replaces the secret at once (rotate-secret keeps the old one signed for a while)",
    )
    p.add_argument("--timeout", type=option(or_default(TIMEOUT), "--timeout"), default=KEEP)
    p.add_argument(
        "--retry-schedule",
        type=option(or_default(parse_schedule), "--retry-schedule"),
        default=KEEP,
    )
    p.add_argument(
        "--format",
        choices=FORMATS,
        default=KEEP,
        dest="payload_format",
        help="raw drops the template and title; leaving teams drops the title",
    )
    p.add_argument("--template", default=KEEP, help="'' for the format's default text")
    p.add_argument("--title", default=KEEP, help="'' for none")
    p.add_argument(
        "--proxy",
        type=or_default(str),
        default=KEEP,
        metavar="URL|none|default",
        help="none: direct; default: delivery.proxy",
    )
    p.add_argument("--json", action="store_true")


def update_from_args(args: argparse.Namespace) -> EndpointUpdate:
    rate = args.rate if args.rate is KEEP or args.rate is None else args.rate.per_second
    event_types = KEEP if args.event_types is None else tuple(args.event_types)
    headers = KEEP if args.headers is None else tuple(args.headers)
    return EndpointUpdate(
        url=args.url,
        tenant_id=args.tenant,
        description=args.description,
        event_types=() if args.clear_event_types else event_types,
        rate_per_s=rate,
        burst=args.burst,
        max_in_flight=args.max_in_flight,
        headers=() if args.clear_headers else headers,
        signature=args.signature,
        secret=args.secret,
        timeout_s=args.timeout,
        retry_schedule_s=args.retry_schedule,
        payload_format=args.payload_format,
        template=args.template,
        title=args.title,
        proxy=args.proxy,
    )


async def run(store: Store, args: argparse.Namespace, config: Config) -> int:
    result = await endpoint_update.update_endpoint(
        store,
        args.endpoint_id,
        update_from_args(args),
        allow_http=config.delivery.allow_insecure_http,
        box=secret_box(),
    )
    changed = [OPTION_NAMES[name] for name in result.changed]
    data: dict[str, Any] = {"id": args.endpoint_id, "updated": changed}
    text = f"updated {args.endpoint_id}: {', '.join(changed)}"
    if result.generated_secret is not None:
        # The new scheme could not use the old secret: like `add`, show what receivers need.
        if result.signature.scheme == ED25519:
            data["public_key"] = public_key(result.generated_secret)
            text += f"\npublic key: {data['public_key']} (a new signing key)"
        else:
            data["secret"] = result.generated_secret
            text += f"\nsecret: {data['secret']} (new: the old one does not suit the scheme)"
    emit(data, args.json, text)
    return 0
