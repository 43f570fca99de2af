"""`endpoint import FILE`: endpoints from JSON lines (`-` reads stdin), all or nothing.

One object per line, with the fields `endpoint show --json` prints: `url` (required),
`tenant`, `event_types`, `rate`, `burst`, `max_in_flight`, `headers` (an object of names and
values), `signature`, `secret`, `timeout`, `retry_schedule`, `description`, `id`, `format`,
`template`, `title`, `proxy`. Each value is read by the parser of the `endpoint add` option of
the same name, and the endpoint is checked as `add` checks it. Blank lines are skipped. A bad
line is one line on stderr naming its number and the field (never a secret or a header value),
exit 2, and nothing is written.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import orjson

from daemon.cli.common import BURST, MAX_IN_FLIGHT_OPTION, TIMEOUT, emit, secret_box
from daemon.config import Config
from daemon.endpoint_import import BadLine, Imported, import_endpoints
from daemon.endpoints import EndpointSpec
from daemon.errors import ConfigError
from daemon.signing import ED25519, parse_signature_option, public_key
from daemon.units import parse_rate, parse_schedule

if TYPE_CHECKING:
    from daemon.store import Store

_REDACTED = "[redacted]"  # what `endpoint show` prints for a header value


def register(actions: Any, parents: Sequence[argparse.ArgumentParser]) -> None:
    p = actions.add_parser(
        "import",
        help="create endpoints from JSON lines, all or nothing",
        description=(
            "Create endpoints from JSON lines, one object per line with the fields `endpoint"
            f" show --json` prints ({', '.join(FIELDS)}; url required). All or nothing: a bad"
            " line is named and nothing is written."
        ),
        parents=parents,
    )
    p.add_argument("file", metavar="FILE", help="JSON lines, one endpoint each; - for stdin")
    p.add_argument("--json", action="store_true", help="print each endpoint's id and secret")


async def run(store: Store, args: argparse.Namespace, config: Config) -> int:
    with ExitStack() as stack:
        stream = _open(args.file, stack)
        created = await import_endpoints(
            store,
            numbered_specs(stream),
            allow_http=config.delivery.allow_insecure_http,
            box=secret_box(),
        )
    source = "stdin" if args.file == "-" else args.file
    text = f"imported {len(created)} endpoints from {source}"
    if created:
        text += " (their secrets: `webhookd endpoint show ID`, or import with --json)"
    emit([_created_view(c) for c in created], args.json, text)
    return 0


def _open(name: str, stack: ExitStack) -> IO[bytes]:
    if name == "-":
        return sys.stdin.buffer
    try:
        return stack.enter_context(Path(name).open("rb"))
    except OSError as exc:
        raise ConfigError("FILE", f"cannot read {name}: {exc.strerror}") from None


def _created_view(c: Imported) -> dict[str, Any]:
    """What receivers need, as `endpoint add --json` prints it: the secret, or for ed25519
    only the public key."""
    keys = {"public_key": public_key(c.secret)} if c.signature.scheme == ED25519 else {}
    return {"line": c.line, "id": c.id, **(keys or {"secret": c.secret}), "url": c.url}


def numbered_specs(stream: IO[bytes]) -> Iterator[tuple[int, EndpointSpec]]:
    """(line number, spec) for each line that is not blank, read as it is needed."""
    for number, raw in enumerate(stream, start=1):
        line = raw.removeprefix(b"\xef\xbb\xbf") if number == 1 else raw  # a UTF-8 BOM
        if line.strip():
            yield number, spec_from_line(line, number)


def spec_from_line(line: bytes, number: int) -> EndpointSpec:
    try:
        obj = orjson.loads(line.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise BadLine(number, None, f"not UTF-8 text (byte {exc.start + 1})") from None
    except orjson.JSONDecodeError as exc:
        raise BadLine(number, None, f"not JSON: {exc.msg} (column {exc.colno})") from None
    if not isinstance(obj, dict):
        raise BadLine(number, None, f"expected a JSON object, got {_kind(obj)}")
    unknown = sorted(set(obj) - set(FIELDS))
    if unknown:
        shown = ", ".join(repr(name[:40]) for name in unknown[:3])
        raise BadLine(number, None, f"unknown field {shown} (fields: {', '.join(FIELDS)})")
    if obj.get("url") is None:
        raise BadLine(number, "url", "missing (every endpoint needs one)")
    values: dict[str, Any] = {}
    for name, value in obj.items():
        if value is None:  # as if not given: the default
            continue
        attribute, parse = FIELDS[name]
        try:
            values[attribute] = parse(value)
        except ConfigError as exc:
            raise BadLine(number, name, exc.why) from None
        except (ValueError, TypeError) as exc:
            raise BadLine(number, name, str(exc)) from None
    return EndpointSpec(**values)


def _kind(value: Any) -> str:
    names = {bool: "a boolean", int: "a number", float: "a number", str: "a string"}
    names |= {list: "an array", dict: "an object"}
    return names.get(type(value), type(value).__name__)


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"must be a string, got {_kind(value)}")
    if "\x00" in value:  # PostgreSQL cannot store it; never shown (it may be a secret)
        raise ValueError("must not contain a NUL character (\\u0000)")
    return value


def _whole(parse: Callable[[str], int]) -> Callable[[Any], int]:
    """A count: a JSON integer, or a string the option's parser reads."""

    def convert(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise TypeError(f"must be an integer, got {_kind(value)}")
        return parse(str(value))

    return convert


def _event_types(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        raise TypeError(f"must be an array of strings, got {_kind(value)}")
    return tuple(_text(item) for item in value)


def _headers(value: Any) -> tuple[tuple[str, str], ...]:
    """An object of header names and values (checked by validate_spec, as `--header` is)."""
    if not isinstance(value, dict):
        raise TypeError(f'must be an object such as {{"Authorization": "..."}}, got {_kind(value)}')
    pairs = []
    for name, header_value in value.items():
        if not isinstance(header_value, str):
            raise TypeError(f"value of {name[:40]!r} must be a string, got {_kind(header_value)}")
        if header_value.strip() == _REDACTED:
            raise ValueError(
                f"value of {name[:40]!r} is {_REDACTED} (`endpoint show` does not print header"
                " values): give the value"
            )
        pairs.append((_text(name).strip(), _text(header_value).strip()))
    return tuple(pairs)


# field -> (EndpointSpec attribute, parser): the parsers of `endpoint add`'s options.
FIELDS: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "url": ("url", _text),
    "tenant": ("tenant_id", _text),
    "event_types": ("event_types", _event_types),
    "rate": ("rate_per_s", lambda v: parse_rate(_text(v)).per_second),
    "burst": ("burst", _whole(BURST)),
    "max_in_flight": ("max_in_flight", _whole(MAX_IN_FLIGHT_OPTION)),
    "headers": ("headers", _headers),
    "signature": ("signature", lambda v: parse_signature_option(_text(v))),
    "secret": ("secret", _text),
    "timeout": ("timeout_s", lambda v: TIMEOUT(_text(v))),
    "retry_schedule": ("retry_schedule_s", lambda v: parse_schedule(_text(v))),
    "description": ("description", _text),
    "id": ("id", _text),
    "format": ("payload_format", _text),
    "template": ("template", _text),
    "title": ("title", _text),
    "proxy": ("proxy", _text),
}
