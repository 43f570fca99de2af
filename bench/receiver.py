"""The benchmarks' webhook receiver: a separate process, aiohttp's low-level server on uvloop.

`POST /hook/<n>` stamps the arrival with `time.time_ns()` (the same host clock the
benchmarks use for commit times) as the first thing its handler does, reads the body,
optionally sleeps `--delay-ms` (or `?delay_ms=N` of the URL, per endpoint: a slow or hanging
receiver), and answers `200` with an empty body. It never verifies
signatures (a fast receiver); it counts requests that arrive without one.

Control endpoints, for the benchmark that started it:
  GET  /_stats     {"count", "first_ns", "last_ns", "unsigned", "connections"}
  GET  /_arrivals  {"ns": [...], "hook": [...], "msg_id": [...]} in arrival order
  POST /_reset     forget every arrival

Prints one JSON line `{"port": N}` on stdout once it listens on 127.0.0.1.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time

import uvloop
from aiohttp import web


class Arrivals:
    """What came in, as parallel lists (cheap to append, cheap to serialise)."""

    def __init__(self) -> None:
        self.ns: list[int] = []
        self.hook: list[int] = []
        self.msg_id: list[str] = []
        self.unsigned = 0
        self.peers: set[object] = set()  # client (host, port) pairs: connections used

    def reset(self) -> None:
        self.ns.clear()
        self.hook.clear()
        self.msg_id.clear()
        self.unsigned = 0
        self.peers.clear()

    def stats(self) -> dict[str, int | None]:
        return {
            "count": len(self.ns),
            "first_ns": self.ns[0] if self.ns else None,
            "last_ns": self.ns[-1] if self.ns else None,
            "unsigned": self.unsigned,
            "connections": len(self.peers),
        }


def make_handler(arrivals: Arrivals, delay_s: float) -> web.Server:
    async def handle(request: web.BaseRequest) -> web.StreamResponse:
        ns = time.time_ns()
        path = request.path
        if path.startswith("/hook/"):
            await request.read()
            headers = request.headers
            if "webhook-signature" not in headers:
                arrivals.unsigned += 1
            arrivals.ns.append(ns)
            arrivals.hook.append(int(path[6:] or 0))
            arrivals.msg_id.append(headers.get("webhook-id", ""))
            if request.transport is not None:
                arrivals.peers.add(request.transport.get_extra_info("peername"))
            delay = float(request.query.get("delay_ms", 0)) / 1000 or delay_s
            if delay:
                await asyncio.sleep(delay)
            return web.Response()
        return control(path, request.method)

    def control(path: str, method: str) -> web.Response:
        if path == "/_stats":
            return web.json_response(arrivals.stats())
        if path == "/_arrivals":
            body = {"ns": arrivals.ns, "hook": arrivals.hook, "msg_id": arrivals.msg_id}
            return web.json_response(body)
        if path == "/_reset" and method == "POST":
            arrivals.reset()
            return web.json_response({"ok": True})
        return web.Response(status=404)

    return web.Server(handle, access_log=None)


async def serve(port: int, delay_s: float) -> None:
    arrivals = Arrivals()
    server = make_handler(arrivals, delay_s)
    loop = asyncio.get_running_loop()
    listener = await loop.create_server(server, "127.0.0.1", port, backlog=1024)
    bound = listener.sockets[0].getsockname()[1]
    sys.stdout.write(json.dumps({"port": bound}) + "\n")
    sys.stdout.flush()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    listener.close()
    await server.shutdown(timeout=1.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--delay-ms", type=float, default=0.0)
    args = parser.parse_args()
    uvloop.run(serve(args.port, args.delay_ms / 1000.0))


if __name__ == "__main__":
    main()
