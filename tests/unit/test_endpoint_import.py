"""Reading `endpoint import` lines: each field by the parser of the `endpoint add` option of
the same name, and a bad line named by its number and field, never repeating a secret or a
header value."""

from __future__ import annotations

import io

import orjson
import pytest

from daemon.cli.endpoint_import import FIELDS, numbered_specs, spec_from_line
from daemon.endpoint_import import BadLine, field_of
from daemon.endpoints import EndpointSpec, validate_spec
from daemon.errors import ConfigError
from daemon.models import SignatureSpec

SECRET = "whsec_c2VjcmV0LW5ldmVyLXNob3duLWluLWFuLWVycm9y"


def line(**fields: object) -> bytes:
    return orjson.dumps(fields)


def test_every_field_is_read_as_endpoint_add_reads_its_option() -> None:
    spec = spec_from_line(
        line(
            url="https://example.com/h",
            tenant="acme",
            event_types=["a.b", "c.d"],
            rate="100/min",
            burst="5",
            max_in_flight=3,
            headers={" Authorization ": " Bearer tok "},
            signature="hmac-sha256-hex:X-Sig:sha256=",
            secret="s",
            timeout="1.5s",
            retry_schedule="5s,1m",
            description="d",
            id="ep_1",
        ),
        1,
    )
    assert spec == EndpointSpec(
        url="https://example.com/h",
        tenant_id="acme",
        description="d",
        event_types=("a.b", "c.d"),
        rate_per_s=100 / 60,
        burst=5,
        max_in_flight=3,
        headers=(("Authorization", "Bearer tok"),),
        signature=SignatureSpec("hmac-sha256-hex", "X-Sig", "sha256="),
        secret="s",
        timeout_s=1.5,
        retry_schedule_s=(5.0, 60.0),
        id="ep_1",
    )


def test_only_url_is_required_and_null_means_the_default() -> None:
    assert spec_from_line(line(url="https://e.com", rate=None, tenant=None), 1) == EndpointSpec(
        url="https://e.com"
    )
    assert set(FIELDS) == {
        "url", "tenant", "event_types", "rate", "burst", "max_in_flight", "headers",
        "signature", "secret", "timeout", "retry_schedule", "description", "id", "format",
        "template", "title", "proxy",
    }  # fmt: skip


def test_blank_lines_are_skipped_and_counted() -> None:
    stream = io.BytesIO(
        b'\xef\xbb\xbf{"url": "https://e.com/1"}\n\n  \r\n{"url": "https://e.com/2"}\r\n'
    )
    assert [(n, s.url) for n, s in numbered_specs(stream)] == [
        (1, "https://e.com/1"),
        (4, "https://e.com/2"),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (b"[1]", "line 7: expected a JSON object, got an array"),
        (b'{"url": ', "line 7: not JSON: unexpected end of data (column 9)"),
        (b"\xff{}", "line 7: not UTF-8 text (byte 1)"),
        (b'{"tenant": "x"}', "line 7: url: missing (every endpoint needs one)"),
        (b'{"url": 5}', "line 7: url: must be a string, got a number"),
        (b'{"url": "https://e.com", "rate": "fast"}', "line 7: rate: invalid rate 'fast'"),
        (b'{"url": "https://e.com", "burst": 1.5}', "line 7: burst: must be an integer"),
        (b'{"url": "https://e.com", "burst": true}', "line 7: burst: must be an integer"),
        (b'{"url": "https://e.com", "burst": 0}', "line 7: burst: must be an integer between"),
        (b'{"url": "https://e.com", "timeout": 30}', "line 7: timeout: must be a string"),
        (b'{"url": "https://e.com", "event_types": "a"}', "line 7: event_types: must be an array"),
        (b'{"url": "https://e.com", "headers": ["A: b"]}', "line 7: headers: must be an object"),
        (b'{"url": "https://e.com", "signature": "md5"}', "line 7: signature: invalid signature"),
        (b'{"url": "https://e.com", "description": "a\\u0000"}', "line 7: description: must not"),
        (b'{"url": "https://e.com", "urll": 1, "x": 2}', "line 7: unknown field 'urll', 'x'"),
    ],
)
def test_a_bad_line_says_which_line_and_field(text: bytes, message: str) -> None:
    with pytest.raises(BadLine) as raised:
        spec_from_line(text, 7)
    assert str(raised.value).startswith(message), str(raised.value)
    assert raised.value.exit_code == 2


@pytest.mark.parametrize(
    "fields",
    [
        {"secret": SECRET + "!"},
        {"secret": SECRET + "\u0000"},
        {"secret": 7, "signature": "standard"},
        {"headers": {"X-Key": SECRET + "\u0007 "}},
        {"headers": {"X-Key": [SECRET]}},
    ],
)
def test_errors_never_repeat_a_secret_or_a_header_value(fields: dict[str, object]) -> None:
    text = line(url="https://e.com", **fields)
    try:
        spec = spec_from_line(text, 1)
    except BadLine as exc:
        message = str(exc)
    else:  # checked later, by validate_spec in import_endpoints: the same messages as add
        with pytest.raises(ConfigError) as raised:
            validate_spec(spec, allow_http=False)
        message = str(raised.value)
    assert SECRET not in message and "c2VjcmV0" not in message


def test_options_of_add_are_named_as_fields() -> None:
    assert [field_of(o) for o in ("--tenant", "--event-type", "--header", "--rate", "url")] == [
        "tenant",
        "event_types",
        "headers",
        "rate",
        "url",
    ]
    assert field_of("--retry-schedule") == "retry_schedule"
    assert field_of("--max-in-flight") == "max_in_flight"
