"""Receivers and checks for ordering-key tests, shared by the in-process and multi-process ones."""

from __future__ import annotations

import random
from typing import Any

import orjson
from aiohttp import web

from tests.integration.conftest import Hit


def flaky_recorder(rng: random.Random, successes: list[tuple[str, int]]) -> Any:
    """A receiver that fails 30 % of requests at random and records (key, n) of successes."""

    def respond(hit: Hit, _n: int) -> web.Response:
        if rng.random() < 0.3:
            return web.Response(status=500)
        body = orjson.loads(hit.body)
        if body["key"] is not None:
            successes.append((body["key"], body["n"]))
        return web.Response(text="ok")

    return respond


def assert_first_successes_in_order(
    successes: list[tuple[str, int]], keys: list[str], per_key: int
) -> None:
    for key in keys:
        order = [n for k, n in successes if k == key]
        assert list(dict.fromkeys(order)) == list(range(per_key)), f"{key}: {order}"
