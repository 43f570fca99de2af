"""Logging: structlog to one stream, JSON lines unless it is a terminal.

Stdlib loggers (asyncio, aiohttp) go through the same renderer at warning level and above, so
one process writes one format.

A stream that fails (a closed pipe: `webhookd run | head`, a full disk) is given up at the
first error: later lines are dropped and counted (webhookd_log_lines_dropped_total), and the
daemon goes on delivering. A log write never raises into the code that logs.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import re
import sys
from collections.abc import Callable, Mapping
from typing import Any, TextIO, cast

import orjson
import structlog
from structlog.typing import EventDict, FilteringBoundLogger, Processor, WrappedLogger

from daemon.errors import ConfigError

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
FORMATS = ("auto", "json", "console")
REDACTED = "[redacted]"

_SECRET_WORDS = frozenset({"authorization", "headers", "cookie", "passwd", "secrets"})
_SECRET_SUFFIXES = ("secret", "password", "token")  # "access_token", "authtoken", ...
_HANDLER_NAME = "webhookd"
_NON_WORD = re.compile(r"[^a-z0-9]+")
_PLAIN = frozenset({str, int, float, bool, bytes})
_LEADING_KEYS = ("timestamp", "level", "event", "logger")


def configure_logging(level: str, fmt: str, stream: TextIO | None = None) -> None:
    """Send structlog and stdlib logging to `stream` (default stderr) in one format."""
    levelno = _level_number(level)
    out = _guarded(stream if stream is not None else sys.stderr)
    render = _render_chain(_wants_json(fmt, out), colors=_is_tty(out))
    structlog.configure(
        processors=[structlog.contextvars.merge_contextvars, *_common_chain(), *render],
        wrapper_class=structlog.make_filtering_bound_logger(levelno),
        logger_factory=_named_logger_factory(out),
        # Caching would pin module-level loggers to this configuration, which breaks
        # structlog.testing.capture_logs in tests.
        cache_logger_on_first_use=False,
    )
    _route_stdlib(out, render, levelno)


def dropped_lines() -> int:
    """Log lines not written since a log stream failed (read by the metrics at each scrape)."""
    return _dropped.count


class _Dropped:
    count = 0


_dropped = _Dropped()


class _GuardedStream:
    """Writes to a stream until it fails once, then drops (and counts) every later line.

    Shared by structlog's writer and the stdlib handler, so neither raises into a caller nor
    prints a "--- Logging error ---" traceback; says so once on stderr, if that is elsewhere.
    """

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.failed = False

    def write(self, text: str) -> int:
        if not self.failed:
            try:
                return self.stream.write(text)
            except (OSError, ValueError) as exc:  # ValueError: a closed file
                self._give_up(exc)
        if text.endswith("\n"):
            _dropped.count += 1
        return len(text)

    def flush(self) -> None:
        if self.failed:
            return
        try:
            self.stream.flush()
        except (OSError, ValueError) as exc:
            _dropped.count += 1  # the line just written is the one lost
            self._give_up(exc)

    def isatty(self) -> bool:
        return _is_tty(self.stream)

    def _give_up(self, exc: BaseException) -> None:
        self.failed = True
        _silence(self.stream)
        if self.stream is sys.stderr or sys.stderr is None:
            return
        with contextlib.suppress(Exception):
            sys.stderr.write(
                f"webhookd: log output failed ({type(exc).__name__}: {exc}); further log lines"
                " are dropped and counted in webhookd_log_lines_dropped_total\n"
            )
            sys.stderr.flush()


def _silence(stream: TextIO) -> None:
    """Point a failed standard stream at /dev/null, so that the interpreter's flush at exit
    does not print "Exception ignored ... BrokenPipeError" after all."""
    if stream not in (sys.stdout, sys.stderr):
        return
    with contextlib.suppress(Exception):
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, stream.fileno())
        finally:
            os.close(devnull)


_guard: _GuardedStream | None = None


def _guarded(stream: TextIO) -> TextIO:
    """One guard per stream, kept across reconfiguration (a reload), so that a failed stream
    stays given up and is reported once."""
    global _guard
    if isinstance(stream, _GuardedStream):
        return cast(TextIO, stream)
    if _guard is None or _guard.stream is not stream:
        _guard = _GuardedStream(stream)
    return cast(TextIO, _guard)


def get_logger(name: str) -> FilteringBoundLogger:
    """A logger whose lines carry logger=name; fine to create at import time.

    The name travels as a logger-factory argument, not as bound context: binding now would
    fix the processors, level and stream in place before configure_logging runs.
    """
    logger: FilteringBoundLogger = structlog.get_logger(name)
    return logger


class _NamedWriteLogger(structlog.WriteLogger):
    """A WriteLogger that remembers the name given to get_logger."""

    def __init__(self, file: TextIO, name: str) -> None:
        super().__init__(file)
        self.name = name


def _named_logger_factory(stream: TextIO) -> Callable[..., _NamedWriteLogger]:
    def factory(*args: Any) -> _NamedWriteLogger:
        return _NamedWriteLogger(stream, str(args[0]) if args else "")

    return factory


def _add_logger_name(logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    record = event_dict.get("_record")  # set for stdlib records by ProcessorFormatter
    name = record.name if record is not None else getattr(logger, "name", "")
    if name:
        event_dict.setdefault("logger", name)
    return event_dict


def redact_secrets(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """Hide values of secret-looking keys: a safety net, not permission to log secrets."""
    return _redact(event_dict)


def _redact(mapping: Mapping[Any, Any]) -> dict[Any, Any]:
    return {
        key: REDACTED if _is_secret_key(key) else _redact_value(value)
        for key, value in mapping.items()
    }


def _redact_value(value: object) -> object:
    if value is None or type(value) in _PLAIN:  # most values: skip the ABC isinstance check
        return value
    return _redact(value) if isinstance(value, Mapping) else value


def _is_secret_key(key: object) -> bool:
    # Keys come from a small set and are checked on every event (this check was most of a
    # log line's cost): remember the answer per key.
    return _is_secret_name(key) if isinstance(key, str) else _is_secret_name(str(key))


@functools.lru_cache(maxsize=4096)
def _is_secret_name(key: str) -> bool:
    name = _NON_WORD.sub("_", key.lower())
    if "api_key" in name or "apikey" in name:
        return True
    return any(w in _SECRET_WORDS or w.endswith(_SECRET_SUFFIXES) for w in name.split("_"))


def enabled(level: str, configured: str) -> bool:
    """Whether an event at `level` is written under the configured `log.level`."""
    return LEVELS[level] >= _level_number(configured)


def _level_number(level: str) -> int:
    try:
        return LEVELS[level.strip().lower()]
    except KeyError:
        raise ConfigError(
            "log.level", f"must be one of {', '.join(LEVELS)}, got {level!r}"
        ) from None


def _wants_json(fmt: str, stream: TextIO) -> bool:
    choice = fmt.strip().lower()
    if choice not in FORMATS:
        raise ConfigError("log.format", f"must be one of {', '.join(FORMATS)}, got {fmt!r}")
    return choice == "json" or (choice == "auto" and not _is_tty(stream))


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def _common_chain() -> list[Processor]:
    """What every line gets, from structlog or from stdlib logging."""
    return [
        _add_logger_name,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact_secrets,
    ]


def _render_chain(as_json: bool, *, colors: bool) -> list[Processor]:
    if not as_json:
        return [structlog.dev.ConsoleRenderer(colors=colors)]
    return [
        structlog.processors.format_exc_info,
        _basics_first,
        structlog.processors.JSONRenderer(serializer=_dumps),
    ]


def _basics_first(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """Put timestamp, level, event and logger first on each JSON line, for human readers."""
    head = {key: event_dict.pop(key) for key in _LEADING_KEYS if key in event_dict}
    return {**head, **event_dict}


def _dumps(obj: Any, default: Callable[[Any], Any] | None = None) -> str:
    try:
        return orjson.dumps(obj, default=default, option=orjson.OPT_NON_STR_KEYS).decode()
    except TypeError:  # e.g. an int beyond 64 bits: slower, but the line is not lost
        return json.dumps(obj, default=repr, separators=(",", ":"))


def _route_stdlib(stream: TextIO, render: list[Processor], levelno: int) -> None:
    """Replace our previous root handler (if any) with one that renders like structlog."""
    handler = logging.StreamHandler(stream)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=_common_chain(),
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *render],
        )
    )
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == _HANDLER_NAME]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(max(logging.WARNING, levelno))
