"""daemon.logs: JSON lines or console output, level filtering, stdlib routing, redaction."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any, TextIO, cast

import pytest
import structlog
from structlog.testing import capture_logs

from daemon.errors import ConfigError
from daemon.logs import REDACTED, configure_logging, get_logger, redact_secrets


class TerminalStream(io.StringIO):
    """A StringIO that claims to be a terminal, as sys.stderr is when run by hand."""

    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def restore_logging() -> Iterator[None]:
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield
    structlog.reset_defaults()
    root.handlers[:] = handlers
    root.setLevel(level)


def json_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def configured(level: str = "info", fmt: str = "json") -> io.StringIO:
    stream = io.StringIO()
    configure_logging(level, fmt, stream)
    return stream


def test_json_output_is_one_object_per_line_with_event_level_and_timestamp() -> None:
    stream = configured()
    log = get_logger("daemon.test")
    log.info("delivery.succeeded", msg_id="m1", ms=12.5)
    log.warning("delivery.retrying", attempt=2)
    first, second = json_lines(stream)
    assert first["event"] == "delivery.succeeded"
    assert first["level"] == "info"
    assert first["logger"] == "daemon.test"
    assert (first["msg_id"], first["ms"]) == ("m1", 12.5)
    assert second["level"] == "warning"
    stamp = datetime.fromisoformat(first["timestamp"])
    assert stamp.utcoffset() == timedelta(0)
    assert list(first)[:3] == ["timestamp", "level", "event"]


def test_auto_format_writes_json_when_the_stream_is_not_a_terminal() -> None:
    stream = configured(fmt="auto")
    get_logger("t").info("started")
    assert json_lines(stream)[0]["event"] == "started"


def test_auto_format_writes_readable_lines_to_a_terminal() -> None:
    stream = TerminalStream()
    configure_logging("info", "auto", stream)
    get_logger("t").info("started", port=9464)
    line = stream.getvalue()
    assert "started" in line
    assert "9464" in line
    with pytest.raises(json.JSONDecodeError):
        json.loads(line)


class WriteOnly:
    """A stream with no isatty(), like some wrappers around a pipe."""

    def __init__(self) -> None:
        self.lines: list[str] = []

    def write(self, text: str) -> int:
        self.lines.append(text)
        return len(text)

    def flush(self) -> None:
        pass


def test_auto_format_treats_a_stream_without_isatty_as_not_a_terminal() -> None:
    stream = WriteOnly()
    configure_logging("info", "auto", cast(TextIO, stream))
    get_logger("t").info("started")
    assert json.loads("".join(stream.lines))["event"] == "started"


def test_console_format_without_a_terminal_has_no_colour_codes() -> None:
    stream = configured(fmt="console")
    get_logger("t").info("started", port=9464)
    assert "started" in stream.getvalue()
    assert "\x1b[" not in stream.getvalue()


def test_events_below_the_level_are_dropped() -> None:
    stream = configured(level="warning")
    log = get_logger("t")
    log.debug("noise")
    log.info("chatter")
    log.error("broken")
    assert [line["event"] for line in json_lines(stream)] == ["broken"]


def test_loggers_made_before_configuration_follow_it() -> None:
    log = get_logger("early")  # as a module-level logger would be
    stream = configured(level="debug")
    log.debug("late")
    assert json_lines(stream)[0]["logger"] == "early"


def test_stdlib_warnings_share_the_stream_and_format() -> None:
    stream = configured(level="debug")
    logging.getLogger("asyncio").warning("slow callback %s", "x")
    logging.getLogger("aiohttp.access").info("GET / 200")  # below warning: dropped
    (line,) = json_lines(stream)
    assert line["event"] == "slow callback x"
    assert line["level"] == "warning"
    assert line["logger"] == "asyncio"
    assert "timestamp" in line


def test_reconfiguring_does_not_duplicate_stdlib_output() -> None:
    configured()
    stream = configured()
    logging.getLogger("asyncio").error("once")
    assert len(json_lines(stream)) == 1


def test_exceptions_are_rendered_into_the_json_line() -> None:
    stream = configured()
    try:
        raise RuntimeError("kaput")
    except RuntimeError:
        get_logger("t").exception("worker.crashed")
    (line,) = json_lines(stream)
    assert "RuntimeError: kaput" in line["exception"]


def test_values_json_cannot_encode_are_rendered_not_fatal() -> None:
    stream = configured()
    get_logger("t").info("odd", thing=object(), huge=2**70)
    (line,) = json_lines(stream)
    assert line["thing"].startswith("<object object")
    assert line["huge"] == 2**70


def test_secret_looking_keys_are_redacted_in_the_output() -> None:
    stream = configured()
    get_logger("t").info(
        "endpoint.created",
        secret="whsec_abc",
        api_key="k",
        access_token="t",
        db_password="p",
        headers={"X-Custom": "1"},
        request={"Authorization": "Bearer x", "url": "https://example.com/hook"},
        tokens=4,
    )
    (line,) = json_lines(stream)
    for key in ("secret", "api_key", "access_token", "db_password", "headers"):
        assert line[key] == REDACTED
    assert line["request"] == {"Authorization": REDACTED, "url": "https://example.com/hook"}
    assert line["tokens"] == 4  # a token bucket's level is not a token
    assert "whsec_abc" not in stream.getvalue()


def test_redaction_leaves_the_callers_dict_alone() -> None:
    request = {"Authorization": "Bearer x"}
    event = redact_secrets(None, "info", {"event": "e", "request": request})
    assert event["request"] == {"Authorization": REDACTED}
    assert request == {"Authorization": "Bearer x"}


def test_get_logger_events_can_be_captured_in_tests() -> None:
    configured()
    with capture_logs() as captured:
        get_logger("t").info("delivery.dead_lettered", msg_id="m9")
    assert captured == [{"event": "delivery.dead_lettered", "msg_id": "m9", "log_level": "info"}]


@pytest.mark.parametrize(
    ("level", "fmt", "key"), [("loud", "json", "log.level"), ("info", "xml", "log.format")]
)
def test_bad_level_or_format_names_the_config_key(level: str, fmt: str, key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        configure_logging(level, fmt, io.StringIO())
    assert caught.value.key == key


# --- a log stream that fails ---------------------------------------------------------------------


class BrokenPipe(io.StringIO):
    """A pipe whose reader has gone: every write (or flush) fails, as `run | head` does."""

    def __init__(self, fail_on: str = "flush", good_lines: int = 0) -> None:
        super().__init__()
        self.fail_on = fail_on
        self.good_lines = good_lines
        self.calls = 0

    def write(self, text: str) -> int:
        if self.fail_on == "write" and self._spent():
            raise BrokenPipeError(32, "Broken pipe")
        return super().write(text)

    def flush(self) -> None:
        if self.fail_on == "flush" and self._spent():
            raise BrokenPipeError(32, "Broken pipe")

    def _spent(self) -> bool:
        self.calls += 1
        return self.calls > self.good_lines


class ClosedFile(io.StringIO):
    def write(self, text: str) -> int:
        raise ValueError("I/O operation on closed file.")


@pytest.mark.parametrize(
    "stream", [BrokenPipe("flush"), BrokenPipe("write"), ClosedFile()], ids=repr
)
def test_a_failing_log_stream_never_raises_into_the_caller(
    stream: io.StringIO, capsys: pytest.CaptureFixture[str]
) -> None:
    from daemon.logs import dropped_lines

    configure_logging("info", "json", stream)
    before = dropped_lines()

    for n in range(3):
        get_logger("t").info("delivery.attempt", n=n)
        logging.getLogger("aiohttp.client").warning("stdlib line %d", n)

    assert dropped_lines() - before == 6
    err = capsys.readouterr().err
    assert err.count("webhookd: log output failed") == 1
    assert "further log lines are dropped" in err
    assert "Logging error" not in err
    assert "Traceback" not in err


def test_lines_written_before_the_failure_are_kept_and_not_counted() -> None:
    from daemon.logs import dropped_lines

    stream = BrokenPipe("flush", good_lines=2)
    configure_logging("info", "json", stream)
    before = dropped_lines()

    for n in range(5):
        get_logger("t").info("e", n=n)

    assert [line["n"] for line in json_lines(stream)][:2] == [0, 1]
    assert dropped_lines() - before == 3


def test_a_failed_stream_stays_given_up_across_reconfiguration(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from daemon.logs import dropped_lines

    stream = BrokenPipe("write")
    configure_logging("info", "json", stream)
    get_logger("t").info("first")
    configure_logging("debug", "json", stream)  # a reload re-applies log.level to the stream
    before = dropped_lines()
    get_logger("t").info("second")

    assert dropped_lines() - before == 1
    assert stream.calls == 1  # the failed stream was not tried again
    assert capsys.readouterr().err.count("log output failed") == 1
