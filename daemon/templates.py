"""Chat payloads for Slack, Discord and Teams incoming webhooks: a template with holes over the
event, parsed once when an endpoint's settings are loaded, rendered into the JSON body each
service accepts.

A template is text with `{{root.path}}` holes and nothing else: no code, no loops, no filters.
The rendered text is put into the body by a JSON encoder, so quotes, newlines and any character
survive; it is cut with an ellipsis to the service's limit. Pure: no I/O.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import orjson

from daemon.models import Delivery

RAW: Final = "raw"
FORMATS: Final = (RAW, "slack", "discord", "teams")
ROOTS: Final = ("payload", "event_type", "msg_id", "created_at")
MAX_TEMPLATE_CHARS: Final = 40_000
# Slack cuts `text` at 40,000 characters, Discord refuses `content` over 2,000, and Teams
# refuses a connector card over about 28 KB. Characters are counted as UTF-16 code units,
# as those services' JavaScript does (an emoji counts two), so the cut is never too late.
SLACK_MAX_CHARS: Final = 40_000
DISCORD_MAX_CHARS: Final = 2_000
TEAMS_MAX_BYTES: Final = 28_000
TEAMS_MAX_TITLE_CHARS: Final = 256
ELLIPSIS: Final = "…"


class TemplateError(ValueError):
    """A template that does not parse: where (1-based character) and why."""

    def __init__(self, position: int, why: str) -> None:
        super().__init__(f"at character {position + 1}: {why}")
        self.position = position
        self.why = why


@dataclass(frozen=True, slots=True)
class Hole:
    """`{{payload.a.b}}`: a root name and a path into it (only `payload` has a path)."""

    root: str
    path: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Template:
    """Literal text and holes, in order."""

    parts: tuple[str | Hole, ...]

    @property
    def needs_payload(self) -> bool:
        return any(isinstance(p, Hole) and p.root == "payload" for p in self.parts)


def parse_template(text: str) -> Template:
    """Text with `{{...}}` holes -> Template; raises TemplateError naming where it fails."""
    if len(text) > MAX_TEMPLATE_CHARS:
        raise TemplateError(MAX_TEMPLATE_CHARS, f"longer than {MAX_TEMPLATE_CHARS} characters")
    if "\x00" in text:
        raise TemplateError(text.index("\x00"), "contains a NUL character")
    parts: list[str | Hole] = []
    pos = 0
    while (start := text.find("{{", pos)) >= 0:
        if start > pos:
            parts.append(text[pos:start])
        end = text.find("}}", start + 2)
        nested = text.find("{{", start + 2)
        if end < 0 or 0 <= nested < end:
            raise TemplateError(start, "'{{' is not closed by '}}'")
        parts.append(_hole(text[start + 2 : end], start))
        pos = end + 2
    if pos < len(text):
        parts.append(text[pos:])
    return Template(tuple(parts))


def _hole(inner: str, start: int) -> Hole:
    name = inner.strip()
    if not name:
        raise TemplateError(start, "empty placeholder '{{ }}'")
    shown = name if len(name) <= 40 else name[:37] + "..."
    root, *path = name.split(".")
    if root not in ROOTS:
        known = ", ".join(ROOTS)
        raise TemplateError(start, f"unknown name {root!r} in {{{{{shown}}}}} (known: {known})")
    if path and root != "payload":
        raise TemplateError(start, f"{root} has no fields: {{{{{shown}}}}}")
    if any(not segment or not segment.isprintable() or " " in segment for segment in path):
        raise TemplateError(start, f"empty or blank part in the path {{{{{shown}}}}}")
    return Hole(root, tuple(path))


class JsonNumber(str):
    """A number of the payload, kept as the JSON text it was (no float rounding, no big-int
    overflow), so it renders as the payload wrote it."""

    __slots__ = ()


def load_payload(payload: bytes) -> Any:
    return json.loads(payload, parse_float=JsonNumber, parse_int=JsonNumber)


def _fragment(value: Any) -> Any:
    if isinstance(value, JsonNumber):
        return orjson.Fragment(str(value))
    raise TypeError(f"{type(value).__name__} is not JSON")


def compact_json(value: Any) -> str:
    option = orjson.OPT_PASSTHROUGH_SUBCLASS
    return orjson.dumps(value, default=_fragment, option=option).decode()


_MISSING: Final = object()


def lookup(value: Any, path: tuple[str, ...]) -> Any:
    """The value at a dotted path (a number indexes a list), or _MISSING."""
    for segment in path:
        if isinstance(value, dict):
            value = value.get(segment, _MISSING)
        elif isinstance(value, list) and segment.isascii() and segment.isdigit():
            index = int(segment)
            value = value[index] if index < len(value) else _MISSING
        else:
            return _MISSING
        if value is _MISSING:
            return _MISSING
    return value


def as_text(value: Any) -> str:
    """Strings unquoted; numbers, true, false and null as JSON writes them; objects and
    arrays as compact JSON."""
    if isinstance(value, str):  # JsonNumber too: its JSON text
        return str(value)
    if value is None or isinstance(value, bool):
        return "null" if value is None else ("true" if value else "false")
    return compact_json(value)


@dataclass(frozen=True, slots=True)
class Event:
    """What holes are filled from, for one delivery (the payload parsed once, if needed)."""

    event_type: str
    msg_id: str
    created_at_s: float
    payload: Any

    def value(self, hole: Hole) -> Any:
        if hole.root == "payload":
            return lookup(self.payload, hole.path)
        if hole.root == "created_at":
            return datetime.fromtimestamp(self.created_at_s, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return self.event_type if hole.root == "event_type" else self.msg_id


def render(template: Template, event: Event) -> tuple[str, int]:
    """(text, how many holes had no value and were left empty)."""
    out: list[str] = []
    missing = 0
    for part in template.parts:
        if isinstance(part, str):
            out.append(part)
            continue
        value = event.value(part)
        if value is _MISSING:
            missing += 1
        else:
            out.append(as_text(value))
    return "".join(out), missing


def utf16_units(text: str) -> int:
    return len(text) + sum(1 for c in text if ord(c) > 0xFFFF)


def cut_chars(text: str, limit: int) -> str:
    """At most `limit` UTF-16 code units, the last of them an ellipsis when cut."""
    if 2 * len(text) <= limit or utf16_units(text) <= limit:
        return text
    kept = text[: limit - 1]
    excess = utf16_units(kept) - (limit - 1)
    while excess > 0:  # astral characters count two: drop from the end until it fits
        excess -= 2 if ord(kept[-1]) > 0xFFFF else 1
        kept = kept[:-1]
    return kept + ELLIPSIS


def cut_to_bytes(text: str, budget: int) -> str:
    """The longest prefix (plus an ellipsis, when cut) whose JSON string takes at most
    `budget` bytes, escapes counted."""

    def size(s: str) -> int:
        return len(orjson.dumps(s)) - 2

    if size(text) <= budget:
        return text
    low, high = 0, min(len(text), budget)  # every character takes at least a byte
    while low < high:
        middle = (low + high + 1) // 2
        if size(text[:middle] + ELLIPSIS) <= budget:
            low = middle
        else:
            high = middle - 1
    return text[:low] + ELLIPSIS if size(ELLIPSIS) <= budget else ""


@dataclass(frozen=True, slots=True)
class Rendered:
    body: bytes
    missing: int  # holes left empty because the payload had no such path


@dataclass(frozen=True, slots=True)
class ChatPayload:
    """An endpoint's chat format, its templates parsed (None: the default text)."""

    format: str  # "slack" | "discord" | "teams"
    text: Template | None = None
    title: Template | None = None

    def render(self, delivery: Delivery) -> Rendered:
        needs = self.text is None or self.text.needs_payload
        needs = needs or (self.title is not None and self.title.needs_payload)
        payload = load_payload(delivery.payload) if needs else None
        event = Event(delivery.event_type, delivery.msg_id, delivery.created_at_s, payload)
        if self.text is None:
            text, missing = f"{event.event_type}: {compact_json(payload)}", 0
        else:
            text, missing = render(self.text, event)
        return _BUILDERS[self.format](self, event, text, missing)


def _slack(chat: ChatPayload, event: Event, text: str, missing: int) -> Rendered:
    return Rendered(orjson.dumps({"text": cut_chars(text, SLACK_MAX_CHARS)}), missing)


def _discord(chat: ChatPayload, event: Event, text: str, missing: int) -> Rendered:
    return Rendered(orjson.dumps({"content": cut_chars(text, DISCORD_MAX_CHARS)}), missing)


def _teams(chat: ChatPayload, event: Event, text: str, missing: int) -> Rendered:
    title = ""
    if chat.title is not None:
        title, title_missing = render(chat.title, event)
        missing += title_missing
    title = cut_chars(title, TEAMS_MAX_TITLE_CHARS)
    card: dict[str, str] = {
        "@type": "MessageCard",
        "@context": "https://schema.org/extensions",
        "summary": title or cut_chars(event.event_type, TEAMS_MAX_TITLE_CHARS),
    }
    if title:
        card["title"] = title
    card["text"] = ""
    budget = TEAMS_MAX_BYTES - len(orjson.dumps(card))
    card["text"] = cut_to_bytes(text, budget)
    return Rendered(orjson.dumps(card), missing)


_BUILDERS: Final[dict[str, Callable[[ChatPayload, Event, str, int], Rendered]]] = {
    "slack": _slack,
    "discord": _discord,
    "teams": _teams,
}


def chat_payload(
    payload_format: str, template: str | None, title: str | None
) -> ChatPayload | None:
    """An endpoint's stored settings, parsed: None for raw (the payload sent as it is).
    Raises ValueError (TemplateError) for a template or format no check let through."""
    if payload_format == RAW:
        return None
    if payload_format not in _BUILDERS:
        raise ValueError(f"unknown payload format {payload_format!r}")
    return ChatPayload(
        payload_format,
        None if not template else parse_template(template),
        None if not title else parse_template(title),
    )
