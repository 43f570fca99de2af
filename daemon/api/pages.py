"""Pagination as Svix does it: `limit` (default 50, at most 250) and `iterator`, answered with
`{"data", "iterator", "prevIterator", "done"}`.

Iterators are keyset cursors on indexed columns, so a page costs the same however deep it is:
`s<seq>` (applications), `t<microseconds>_<id>` (messages, attempts, endpoints, dead letters:
a time and a tie-breaking id) and `n<base64url name>` (event types). They are opaque to
clients. As Svix, `prevIterator` is the first item's cursor behind a `-`: given as `iterator`,
it answers the page before (read backwards from the index, shown in the list's order).
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from aiohttp import web

from daemon.api.errors import invalid

DEFAULT_LIMIT: Final = 50
MAX_LIMIT: Final = 250
MAX_SEARCH: Final = 200
# Rows a filtered page may look at (the message log's status and endpoint filters): a page
# costs this much at most however few rows match; fewer matches give a short page that is not
# `done`, whose iterator goes on from the last row looked at.
MAX_SCAN: Final = 2000
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_TIME: Final = re.compile(r"t(-?\d{1,19})_([A-Za-z0-9_.-]{1,256})")
_SEQ: Final = re.compile(r"s(\d{1,19})")


@dataclass(frozen=True, slots=True)
class TimeKey:
    """A row's place in a list ordered by (time, id); the id breaks ties."""

    at: datetime
    id: str

    @property
    def number(self) -> int:
        """The id of a list whose ids are numbers (a bad one was not made by us: 422)."""
        if not self.id.isdigit() or len(self.id) > 18:
            raise invalid(["query", "iterator"], "not an iterator returned by this list")
        return int(self.id)


def limit_of(request: web.Request) -> int:
    text = request.query.get("limit")
    if text is None:
        return DEFAULT_LIMIT
    if not text.isdigit() or not 1 <= int(text) <= MAX_LIMIT:
        raise invalid(["query", "limit"], f"must be an integer from 1 to {MAX_LIMIT}")
    return int(text)


def search_of(request: web.Request) -> str | None:
    """`search` (webhookd's own, for the console): a substring to match, or None."""
    text = request.query.get("search", "").strip()
    if not text:
        return None
    if len(text) > MAX_SEARCH or "\0" in text:
        raise invalid(["query", "search"], f"must be at most {MAX_SEARCH} characters, no NUL")
    return text


def _iterator(request: web.Request) -> str | None:
    text = request.query.get("iterator")
    if text is None or text == "":
        return None
    return text.removeprefix("-")


def backwards(request: web.Request) -> bool:
    """Whether the iterator is a prevIterator: the page before it is wanted."""
    return request.query.get("iterator", "").startswith("-")


def time_cursor(request: web.Request) -> TimeKey | None:
    text = _iterator(request)
    if text is None:
        return None
    match = _TIME.fullmatch(text)
    if match is None:
        raise invalid(["query", "iterator"], "not an iterator returned by this list")
    try:
        at = _EPOCH + timedelta(microseconds=int(match[1]))
    except OverflowError:
        raise invalid(["query", "iterator"], "not an iterator returned by this list") from None
    return TimeKey(at, match[2])


def seq_cursor(request: web.Request) -> int | None:
    text = _iterator(request)
    if text is None:
        return None
    match = _SEQ.fullmatch(text)
    if match is None:
        raise invalid(["query", "iterator"], "not an iterator returned by this list")
    return int(match[1])


def name_cursor(request: web.Request) -> str | None:
    text = _iterator(request)
    if text is None:
        return None
    try:
        if not text.startswith("n"):
            raise ValueError(text)
        return base64.urlsafe_b64decode(text[1:] + "=" * (-len(text[1:]) % 4)).decode()
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise invalid(["query", "iterator"], "not an iterator returned by this list") from None


def time_position(request: web.Request) -> tuple[str, dict[str, Any]]:
    """For the lists ordered newest first by (time, numeric id): the query's suffix (`_back` for
    a prevIterator) and its cursor parameters."""
    key = time_cursor(request)
    if backwards(request):
        assert key is not None  # a `-` iterator is one
        return "_back", {"after_at": key.at, "after_id": key.number}
    if key is None:
        return "", {"before_at": None, "before_id": None}
    return "", {"before_at": key.at, "before_id": key.number}


def encode_time(at: datetime, ident: int | str) -> str:
    micros = (at - _EPOCH) // timedelta(microseconds=1)
    return f"t{micros}_{ident}"


def encode_seq(seq: int) -> str:
    return f"s{seq}"


def encode_name(name: str) -> str:
    return "n" + base64.urlsafe_b64encode(name.encode()).decode().rstrip("=")


def page(
    rows: Sequence[Any],
    limit: int,
    cursor: Callable[[Any], str],
    view: Callable[[Any], dict[str, Any]],
    back: bool = False,
) -> dict[str, Any]:
    """One page from `rows`, which the query fetched with LIMIT limit + 1 (in reverse order
    when `back`: read towards the start of the list). `done`: nothing further that way."""
    shown = list(rows[:limit])
    if back:
        shown.reverse()
    return {
        "data": [view(r) for r in shown],
        "iterator": cursor(shown[-1]) if shown else None,
        "prevIterator": "-" + cursor(shown[0]) if shown else None,
        "done": len(rows) <= limit,
    }


def scanned_page(
    rows: Sequence[Any],
    limit: int,
    cursor: Callable[[Any], str],
    view: Callable[[Any], dict[str, Any]],
    back: bool,
    start: TimeKey | None,
) -> dict[str, Any]:
    """A page from a query that looks at a bounded number of rows: `rows` are those that
    matched (`matched`, up to limit + 1, in the order read) and, when the query stopped at its
    bound, the last row it looked at (not matched): the next page goes on from there, so a
    page that matched few is short but not `done`. `start`, the request's cursor, is the way
    back from a page that shows nothing."""
    matched = [r for r in rows if r["matched"]]
    boundary = next((r for r in rows if not r["matched"]), None)
    read = matched[:limit]
    if len(matched) > limit or boundary is None:
        onward = cursor(read[-1]) if read else None  # the reading direction's next page
    else:
        onward = cursor(boundary)
    if read:
        homeward: str | None = cursor(read[0])
    else:
        homeward = None if start is None else encode_time(start.at, start.id)
    if back:  # read oldest first: onward is newer
        read.reverse()
        older, newer = (homeward if read else None), onward
    else:
        older, newer = onward, homeward
    return {
        "data": [view(r) for r in read],
        "iterator": older,
        "prevIterator": None if newer is None else "-" + newer,
        "done": len(matched) <= limit and boundary is None,
    }
