"""The demo's receiver: one loopback aiohttp server standing in for four customers' endpoints,
each with its own behaviour, checking every request's signature as a real receiver would."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from aiohttp import web

from daemon.signing import ED25519, verify


@dataclass(frozen=True)
class DemoEndpoint:
    """One of the receiver's endpoints and how it behaves."""

    name: str
    behaviour: str  # shown to the reader
    delay_s: float = 0.0  # before answering
    outage_s: float = 0.0  # answers 500 for this long after its first request
    rate_per_s: float | None = None  # webhookd's --rate for it (burst 1)
    signature: str = "standard"

    @property
    def id(self) -> str:
        return f"ep_demo_{self.name}"


SCENARIO = (
    DemoEndpoint("fast", "answers 200 at once"),
    DemoEndpoint("slow", "answers after 300 ms", delay_s=0.3, signature=ED25519),
    DemoEndpoint("flaky", "down (500) for its first 2.5 s", outage_s=2.5),
    DemoEndpoint("limited", "webhookd sends it at most 5/s", rate_per_s=5.0),
)


@dataclass
class EndpointTraffic:
    """What the receiver saw on one endpoint."""

    requests: int = 0
    answered_2xx: int = 0
    answered_5xx: int = 0
    bad_signatures: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    first_at: float | None = None  # monotonic
    last_ok_at: float | None = None
    recent: deque[float] = field(default_factory=deque)  # arrival times, last second

    def rate_per_s(self, now: float) -> float:
        while self.recent and self.recent[0] < now - 1.0:
            self.recent.popleft()
        return float(len(self.recent))


class DemoReceiver:
    """A loopback aiohttp server with one path per endpoint; a request whose signature does
    not verify (with our own `signing.verify`) gets 401."""

    def __init__(self, scenario: tuple[DemoEndpoint, ...]) -> None:
        self.endpoints = {ep.name: ep for ep in scenario}
        self.traffic = {ep.name: EndpointTraffic() for ep in scenario}
        self.keys: dict[str, str] = {}  # name -> whsec_ secret or whpk_ public key
        self.base_url = ""

    @asynccontextmanager
    async def running(self) -> AsyncIterator[DemoReceiver]:
        app = web.Application()
        app.router.add_post("/{name}", self.handle)
        runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base_url = f"http://127.0.0.1:{port}"
        try:
            yield self
        finally:
            await runner.cleanup()

    async def handle(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if name not in self.endpoints:
            return web.Response(status=404)
        ep, seen = self.endpoints[name], self.traffic[name]
        body, now = await request.read(), time.monotonic()
        seen.requests += 1
        seen.recent.append(now)
        seen.first_at = seen.first_at or now
        if not verify(self.keys.get(name, ""), request.headers, body, now_s=time.time()):
            seen.bad_signatures += 1
            return web.Response(status=401, text="bad signature")
        seen.in_flight += 1
        seen.max_in_flight = max(seen.max_in_flight, seen.in_flight)
        try:
            await asyncio.sleep(ep.delay_s)
        finally:
            seen.in_flight -= 1
        if now - seen.first_at < ep.outage_s:
            seen.answered_5xx += 1
            return web.Response(status=500, text="down for maintenance")
        seen.answered_2xx += 1
        seen.last_ok_at = time.monotonic()
        return web.Response(text="ok")
