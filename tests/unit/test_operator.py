"""Pure parts of the operator commands: times, payloads, terminal-safe text, attempt series and
the merge behind `endpoint update`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import orjson
import pytest

from daemon.cli.display import at, clean
from daemon.cli.endpoint_update_cmd import or_default
from daemon.endpoint_update import KEEP, EndpointUpdate, updated_spec
from daemon.messages import parse_payload, parse_when, payload_value
from daemon.models import Delivery, SignatureSpec
from daemon.units import parse_duration

NOW = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2h", NOW - timedelta(hours=2)),
        ("30m", NOW - timedelta(minutes=30)),
        ("1.5d", NOW - timedelta(days=1.5)),
        ("now", NOW),
        ("2024-04-30T10:00:00Z", datetime(2024, 4, 30, 10, tzinfo=UTC)),
        ("2024-04-30T10:00:00+02:00", datetime(2024, 4, 30, 8, tzinfo=UTC)),
        ("2024-04-30T10:00:00", datetime(2024, 4, 30, 10, tzinfo=UTC)),  # no offset: UTC
        ("2024-04-30", datetime(2024, 4, 30, tzinfo=UTC)),
    ],
)
def test_times_are_iso_8601_or_a_duration_back_from_now(text: str, expected: datetime) -> None:
    assert parse_when(text, NOW) == expected


@pytest.mark.parametrize("text", ["yesterday", "2", "-2h", "2024-13-01", ""])
def test_unreadable_times_say_what_is_expected(text: str) -> None:
    with pytest.raises(ValueError, match="ISO 8601"):
        parse_when(text, NOW)


def test_offsets_other_than_utc_are_kept_as_instants() -> None:
    when = parse_when("2024-04-30T10:00:00-05:00", NOW)
    assert when == datetime(2024, 4, 30, 10, tzinfo=timezone(timedelta(hours=-5)))


def test_payload_must_be_json_and_is_kept_as_written() -> None:
    assert parse_payload('{"a": [1, 2]}') == '{"a": [1, 2]}'
    assert parse_payload('{"big": 123456789012345678901234567890}')  # as jsonb reads it
    for bad in ("{a", '{"x": NaN}', ""):
        with pytest.raises(ValueError, match="not JSON"):
            parse_payload(bad)


def test_stored_payloads_are_printed_exactly_even_with_numbers_beyond_64_bits() -> None:
    text = '{"n": 123456789012345678901234567890}'
    assert orjson.dumps({"payload": payload_value(text)}) == b'{"payload":' + text.encode() + b"}"


def test_receiver_text_is_one_escaped_line_cut_short() -> None:
    assert clean("\x1b[31mred\nline\r\x00") == "\\x1b[31mred\\nline\\r\\x00"
    assert clean(None) == "-" and clean("") == "-"
    cut = clean("x" * 100, 10)
    assert cut == "x" * 9 + "…" and len(cut) == 10
    assert clean("caf\ufffd ok") == "caf\ufffd ok"  # replacement characters stay visible


def test_times_are_shown_in_utc() -> None:
    assert (
        at(datetime(2024, 4, 30, 10, tzinfo=timezone(timedelta(hours=2)))) == "2024-04-30T08:00:00Z"
    )
    assert at(None) == "-"


def test_series_attempt_restarts_after_a_replay_while_attempt_numbers_go_on() -> None:
    first = Delivery(1, "ep", "msg", "t", b"{}", attempt=1, created_at_s=0.0)
    replayed = Delivery(1, "ep", "msg", "t", b"{}", attempt=4, created_at_s=0.0, attempt_base=3)
    assert (first.attempt, first.series_attempt) == (1, 1)
    assert (replayed.attempt, replayed.series_attempt) == (4, 1)


def test_or_default_means_the_configured_default() -> None:
    parse = or_default(parse_duration)
    assert parse("default") is None
    assert parse("5s") == 5.0


def _row(**overrides: Any) -> dict[str, Any]:
    row: dict[str, Any] = {
        "id": "ep_1",
        "url": "https://example.com/hook",
        "tenant_id": "default",
        "description": "",
        "event_types": ["a"],
        "rate_per_s": 10.0,
        "burst": 5,
        "max_in_flight": None,
        "signature_scheme": "standard",
        "signature_header": "",
        "signature_prefix": "",
        "timeout_ms": 2500,
        "retry_schedule_ms": [1000, 2000],
        "payload_format": "raw",
        "payload_template": None,
        "payload_title": None,
        "proxy": None,
    }
    return row | overrides


def test_update_to_raw_drops_the_template_and_leaving_teams_drops_the_title() -> None:
    teams = _row(payload_format="teams", payload_template="{{msg_id}}", payload_title="T")
    slack = updated_spec(teams, EndpointUpdate(payload_format="slack"))
    assert (slack.payload_format, slack.template, slack.title) == ("slack", "{{msg_id}}", None)
    raw = updated_spec(teams, EndpointUpdate(payload_format="raw"))
    assert (raw.template, raw.title) == (None, None)
    kept = updated_spec(teams, EndpointUpdate(description="d"))
    assert (kept.payload_format, kept.template, kept.title) == ("teams", "{{msg_id}}", "T")


def test_update_keeps_what_is_not_given() -> None:
    spec = updated_spec(_row(), EndpointUpdate(description="new"))
    assert spec.description == "new"
    assert (spec.url, spec.event_types, spec.rate_per_s, spec.burst) == (
        "https://example.com/hook",
        ("a",),
        10.0,
        5,
    )
    assert (spec.timeout_s, spec.retry_schedule_s) == (2.5, (1.0, 2.0))
    assert spec.signature == SignatureSpec()
    assert spec.headers == () and spec.secret is None  # stored ones are not re-checked


def test_clearing_the_rate_clears_the_burst_unless_it_is_given() -> None:
    assert updated_spec(_row(), EndpointUpdate(rate_per_s=None)).burst is None
    assert updated_spec(_row(), EndpointUpdate(rate_per_s=None, burst=3)).burst == 3
    cleared = updated_spec(_row(), EndpointUpdate(timeout_s=None, retry_schedule_s=None))
    assert (cleared.timeout_s, cleared.retry_schedule_s) == (None, None)


def test_update_lists_what_it_changes() -> None:
    assert EndpointUpdate().changed() == []
    change = EndpointUpdate(url="https://x.example", rate_per_s=None, headers=())
    assert change.changed() == ["url", "rate_per_s", "headers"]
    assert change.secret is KEEP
