"""The API's lookup cache: entries expire after the TTL and `clear()` forgets them at once."""

from __future__ import annotations

from daemon.api.cache import Cache


class Clock:
    now = 0.0

    def __call__(self) -> float:
        return self.now


def test_entries_expire_after_the_ttl_and_none_is_a_value() -> None:
    clock = Clock()
    cache = Cache(1.0, clock)
    assert cache.get("a") == (False, None)
    cache.put("a", None)  # "no such application" is worth remembering too
    cache.put("b", {"id": "app_1"})
    assert cache.get("a") == (True, None) and cache.get("b") == (True, {"id": "app_1"})
    clock.now = 0.999
    assert cache.get("b")[0] is True
    clock.now = 1.0
    assert cache.get("b") == (False, None)


def test_clear_forgets_everything_at_once() -> None:
    cache = Cache(60.0, Clock())
    cache.put("a", 1)
    cache.clear()
    assert cache.get("a") == (False, None)
