"""What every subcommand shares: one-line argparse errors, option parsers, the database,
and printing (a table or text for people, one JSON document with --json)."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any, NoReturn

import orjson

from daemon.config import Config, is_utf8
from daemon.errors import ConfigError
from daemon.units import (
    MAX_BURST,
    MAX_ENDPOINT_TIMEOUT_S,
    MAX_IN_FLIGHT,
    bounded_duration,
    bounded_int,
)

# asyncpg and cryptography are imported when a command needs them, not to print --help.
if TYPE_CHECKING:
    from daemon.secretbox import SecretBox
    from daemon.store import Store

Handler = Callable[[argparse.Namespace, Config], Awaitable[int]]


class Parser(argparse.ArgumentParser):
    """argparse with one-line errors and exit code 2."""

    def error(self, message: str) -> NoReturn:
        # one line, whatever an argument held (a newline, an escape sequence)
        shown = "".join(c if c.isprintable() else repr(c)[1:-1] for c in message)
        self.exit(2, f"webhookd: error: {shown}\n")

    def parse_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> argparse.Namespace:
        """As argparse's, but an unrecognized argument is named, never its value: a mistyped
        option (`--secert s3cr3t`) must not print the secret back."""
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:
            names = sorted({a.split("=", 1)[0] for a in extras if a.startswith("-")})
            what = " ".join(names) if names else "(values not shown)"
            self.error(f"unrecognized arguments: {what}")
        return parsed

    def _get_value(self, action: argparse.Action, arg_string: str) -> Any:
        # Bytes that are not UTF-8 (a shell's $'\xff') arrive as lone surrogates, which no
        # database, header or log line can carry; the value is not shown: it may be a secret.
        # (A subcommand's arguments are checked by its own parser, naming the option.)
        subcommand = isinstance(action, argparse._SubParsersAction)
        if not subcommand and not is_utf8(arg_string):
            raise argparse.ArgumentError(action, "is not valid UTF-8 text (value not shown)")
        return super()._get_value(action, arg_string)


def option(parse: Callable[[str], Any], name: str) -> Callable[[str], Any]:
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


def positive_int(text: str) -> int:
    """A count given on the command line: 1 to 1,000,000 (options with a tighter bound use
    units.bounded_int)."""
    return _POSITIVE_INT(text)


_POSITIVE_INT = bounded_int(1, 1_000_000)

# Endpoint limits, as `endpoint add` and `endpoint update` read them (validate_spec checks the
# same bounds again, for callers other than the CLI).
BURST = bounded_int(1, MAX_BURST)
MAX_IN_FLIGHT_OPTION = bounded_int(1, MAX_IN_FLIGHT)
TIMEOUT = bounded_duration(low=0.001, high=MAX_ENDPOINT_TIMEOUT_S)


def secret_box() -> SecretBox:
    """Keys from WEBHOOKD_SECRET_KEYS (not a config key: it stays out of files and output)."""
    from daemon.secretbox import SecretBox

    return SecretBox.from_env(os.environ)


def database_url(config: Config) -> str:
    """The configured URL, or the embedded server's (started if needed)."""
    if config.database.url:
        return config.database.url
    from daemon.embedded import EmbeddedPostgres

    config.database.embedded_dir.mkdir(parents=True, exist_ok=True)
    return EmbeddedPostgres(config.database.embedded_dir).start()


@asynccontextmanager
async def open_store(config: Config, *, current_schema: bool = True) -> AsyncIterator[Store]:
    """A pool for one command; by default refuses a database whose migrations are pending."""
    from daemon import migrate
    from daemon.store import Store

    db = config.database
    store = await Store.connect(database_url(config), timeout_s=db.connect_timeout_s)
    try:
        if current_schema:
            await migrate.require_current(store)
        yield store
    finally:
        await store.close()


def human(value: Any) -> str:
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


def table(headers: list[str], rows: list[list[Any]]) -> str:
    """Left-aligned columns sized to their widest cell."""
    cells = [headers, *[[human(c) for c in row] for row in rows]]
    widths = [max(len(str(r[i])) for r in cells) for i in range(len(headers))]
    return "\n".join(
        "  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells
    )


def emit(data: Any, as_json: bool, text: str) -> None:
    if as_json:
        sys.stdout.write(orjson.dumps(data, default=str).decode() + "\n")
    else:
        sys.stdout.write(text + "\n")
