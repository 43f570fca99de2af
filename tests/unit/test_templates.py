"""Chat templates: parsed once with errors that say where, rendered safely into each service's
body, cut to each service's limit."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.models import Delivery
from daemon.templates import (
    DISCORD_MAX_CHARS,
    ELLIPSIS,
    SLACK_MAX_CHARS,
    TEAMS_MAX_BYTES,
    ChatPayload,
    TemplateError,
    chat_payload,
    cut_chars,
    parse_template,
    utf16_units,
)

SEED_EVENT = {
    "event_type": "entry",
    "geofence_name": "Downtown Office",
    "device_name": "John's Phone",
    "location": {"latitude": 37.7749, "longitude": -122.4194},
    "tags": ["a", {"b": 1.10}],
}


def delivery(payload: object = SEED_EVENT, *, raw: bytes | None = None) -> Delivery:
    body = raw if raw is not None else orjson.dumps(payload)
    return Delivery(1, "ep", "msg_1", "geofence.entry", body, 1, 1762776000.0)


def rendered(fmt: str, template: str | None, payload: object = SEED_EVENT, **kw: str) -> dict:
    chat = chat_payload(fmt, template, kw.get("title"))
    assert chat is not None
    return orjson.loads(chat.render(delivery(payload)).body)  # type: ignore[no-any-return]


def test_the_seed_slack_message_renders_with_payload_paths() -> None:
    body = rendered("slack", "🚗 {{payload.device_name}} entered {{payload.geofence_name}}")
    assert body == {"text": "🚗 John's Phone entered Downtown Office"}


def test_each_service_gets_its_own_body_shape() -> None:
    assert rendered("discord", "{{ payload.device_name }}") == {"content": "John's Phone"}
    card = rendered("teams", "{{payload.device_name}} in", title="Alert: {{event_type}}")
    assert card == {
        "@type": "MessageCard",
        "@context": "https://schema.org/extensions",
        "summary": "Alert: geofence.entry",
        "title": "Alert: geofence.entry",
        "text": "John's Phone in",
    }
    untitled = rendered("teams", "x")
    assert untitled["summary"] == "geofence.entry" and "title" not in untitled


def test_numbers_render_as_the_payload_wrote_them_and_strings_unquoted() -> None:
    raw = b'{"lat": 37.7749, "n": 123456789012345678901234567890, "f": 1.10, "s": "a\\"b"}'
    chat = chat_payload("slack", "{{payload.lat}} {{payload.n}} {{payload.f}} {{payload.s}}", None)
    assert chat is not None
    text = orjson.loads(chat.render(delivery(raw=raw)).body)["text"]
    assert text == '37.7749 123456789012345678901234567890 1.10 a"b'


def test_paths_index_lists_and_objects_render_as_compact_json() -> None:
    body = rendered(
        "slack",
        "{{payload.tags.1.b}}|{{payload.tags.0}}|{{payload.location}}|{{payload.tags}}|{{msg_id}}",
    )
    assert body["text"] == (
        '1.1|a|{"latitude":37.7749,"longitude":-122.4194}|["a",{"b":1.1}]|msg_1'
    )
    assert rendered("slack", "{{payload.x}}", {"x": None, "y": True})["text"] == "null"
    assert rendered("slack", "{{created_at}}")["text"] == "2025-11-10T12:00:00Z"


def test_a_missing_path_renders_empty_and_is_counted() -> None:
    template = "[{{payload.nope}}][{{payload.tags.9}}][{{payload.device_name.x}}]"
    chat = chat_payload("slack", template, None)
    assert chat is not None
    out = chat.render(delivery())
    assert orjson.loads(out.body) == {"text": "[][][]"}
    assert out.missing == 3


def test_quotes_newlines_and_any_unicode_survive_as_valid_json() -> None:
    nasty = 'He said "hi"\n\t\\ </script> \u2028 é 🚗 \x01'
    body = rendered("discord", "{{payload.v}} {{payload.v}}", {"v": nasty})
    assert body == {"content": f"{nasty} {nasty}"}


def test_without_a_template_the_default_text_is_the_event_type_and_compact_json() -> None:
    assert rendered("slack", None, {"a": 1, "b": [1, 2]}) == {
        "text": 'geofence.entry: {"a":1,"b":[1,2]}'
    }


@pytest.mark.parametrize(
    ("fmt", "field", "limit"),
    [("slack", "text", SLACK_MAX_CHARS), ("discord", "content", DISCORD_MAX_CHARS)],
)
def test_long_messages_are_cut_with_an_ellipsis_to_the_service_limit(
    fmt: str, field: str, limit: int
) -> None:
    text = rendered(fmt, "{{payload.v}}", {"v": "🚗" * limit})[field]
    assert text.endswith(ELLIPSIS)
    assert limit - 2 <= utf16_units(text) <= limit
    assert len(rendered(fmt, None, {"v": "x" * 3 * limit})[field]) == limit


def test_a_teams_card_stays_within_its_size_in_bytes() -> None:
    chat = chat_payload("teams", "{{payload.v}}", "{{payload.t}}")
    assert chat is not None
    body = chat.render(delivery({"v": '"é\n' * 20_000, "t": "T" * 1000})).body
    card = orjson.loads(body)
    assert TEAMS_MAX_BYTES - 8 <= len(body) <= TEAMS_MAX_BYTES
    assert card["text"].endswith(ELLIPSIS) and card["title"].endswith(ELLIPSIS)


def test_cutting_never_splits_a_surrogate_pair_or_cuts_what_fits() -> None:
    assert cut_chars("ab🚗", 4) == "ab🚗"
    assert cut_chars("ab🚗c", 4) == "ab" + ELLIPSIS
    assert cut_chars("abcdef", 4) == "abc" + ELLIPSIS


@pytest.mark.parametrize(
    ("template", "where"),
    [
        ("hi {{payload.x", "at character 4: '{{' is not closed"),
        ("{{ }}", "at character 1: empty placeholder"),
        ("a {{trigger.device_name}}", "at character 3: unknown name 'trigger'"),
        ("{{event_type.x}}", "event_type has no fields"),
        ("{{payload..x}}", "empty or blank part"),
        ("{{payload.a {{payload.b}}", "at character 1: '{{' is not closed"),
    ],
)
def test_a_template_that_does_not_parse_says_where(template: str, where: str) -> None:
    with pytest.raises(TemplateError, match=where.replace("{", r"\{").replace("(", r"\(")):
        parse_template(template)


def test_literal_text_and_single_braces_are_kept_as_they_are() -> None:
    assert rendered("slack", "{a} }} {x}") == {"text": "{a} }} {x}"}


def test_a_raw_endpoint_has_no_chat_payload() -> None:
    assert chat_payload("raw", None, None) is None
    with pytest.raises(ValueError, match="unknown payload format"):
        chat_payload("email", None, None)


def test_parsed_templates_compare_equal_so_cached_endpoints_match() -> None:
    assert chat_payload("slack", "{{msg_id}}", None) == ChatPayload(
        "slack", parse_template("{{msg_id}}")
    )


# What a jsonb string can hold: no lone surrogates, no U+0000.
JSONB_TEXT = st.characters(exclude_categories=("Cs",), exclude_characters="\x00")


@settings(max_examples=200, deadline=None)
@given(
    value=st.text(JSONB_TEXT, max_size=3000),
    literal=st.text(JSONB_TEXT, max_size=50).filter(lambda t: "{" not in t),
    fmt=st.sampled_from(["slack", "discord", "teams"]),
)
def test_any_text_in_the_payload_or_the_template_gives_valid_json_within_the_limit(
    value: str, literal: str, fmt: str
) -> None:
    chat = chat_payload(fmt, literal + "{{payload.v}}" * 20, None)
    assert chat is not None
    body = chat.render(delivery({"v": value})).body
    parsed = orjson.loads(body)
    if fmt == "teams":
        text = parsed["text"]
        assert len(body) <= TEAMS_MAX_BYTES
    else:
        text = parsed["text" if fmt == "slack" else "content"]
        assert utf16_units(text) <= (SLACK_MAX_CHARS if fmt == "slack" else DISCORD_MAX_CHARS)
    full = literal + value * 20
    assert text == full or (text.endswith(ELLIPSIS) and full.startswith(text[:-1]))
