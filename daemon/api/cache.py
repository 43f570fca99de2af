"""What POST /msg looks up on every request and that rarely changes: applications by id or uid,
and event types' JSON Schemas. Kept for `TTL_S`, so a message create is one statement (the
batched INSERT) rather than two.

This process forgets an entry as soon as it changes it; another API process's change (or a
CLI one: an application made for a new tenant) is seen within TTL_S. What that can cost: for a
second after an application is deleted elsewhere, a message may still be accepted for it (its
endpoints are gone, so it is delivered nowhere), and a schema changed elsewhere applies a
second late.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Final

TTL_S: Final = 1.0
_MAX_ENTRIES: Final = 10_000


class Cache:
    """A small map whose entries expire; `clear()` when this process changes what it holds."""

    def __init__(self, ttl_s: float = TTL_S, clock: Callable[[], float] = time.monotonic) -> None:
        self._ttl_s = ttl_s
        self._clock = clock
        self._entries: dict[Any, tuple[float, Any]] = {}

    def get(self, key: Any) -> tuple[bool, Any]:
        """(found, value)."""
        entry = self._entries.get(key)
        if entry is None or entry[0] <= self._clock():
            return False, None
        return True, entry[1]

    def put(self, key: Any, value: Any) -> None:
        if len(self._entries) >= _MAX_ENTRIES:
            self._entries.clear()
        self._entries[key] = (self._clock() + self._ttl_s, value)

    def clear(self) -> None:
        self._entries.clear()


class LookupCache:
    """The two caches of one API process."""

    def __init__(self, ttl_s: float = TTL_S) -> None:
        self.apps = Cache(ttl_s)  # ref -> application row (or None: no such application)
        self.schemas = Cache(ttl_s)  # event type -> its schemas (or None)
