"""The peer: a pgqueuer worker doing webhookd's job for the `webhook` entrypoint. Each job's
payload is the body; the handler signs it (Standard Webhooks, the same signer webhookd uses,
built once per endpoint) and POSTs it with one shared aiohttp session, at most 10 in flight.
A non-2xx raises, so pgqueuer records the job as failed.

Prints one line `ready` on stdout once connected; stops on SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
import time
from datetime import timedelta

import aiohttp
import asyncpg
import uvloop
from pgqueuer import AsyncpgDriver, AsyncpgPoolDriver, Job, Queries, QueueManager

from daemon import __version__
from daemon.signing import StandardSigner

ENDPOINTS = 100
SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"  # any valid secret: nothing verifies it


async def serve(args: argparse.Namespace) -> None:
    if args.pool:
        pool = await asyncpg.create_pool(args.dsn, min_size=2, max_size=4)
        driver: AsyncpgDriver | AsyncpgPoolDriver = AsyncpgPoolDriver(pool)
    else:
        driver = AsyncpgDriver(await asyncpg.connect(args.dsn))
    qm = QueueManager(Queries(driver))
    signer = StandardSigner([SECRET])
    urls = [f"{args.receiver}/hook/{i}" for i in range(ENDPOINTS)]
    user_agent = f"webhookd/{__version__}"
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    in_flight = asyncio.Semaphore(args.concurrency)
    limit = args.concurrency if args.limit == "entrypoint" else 0

    @qm.entrypoint("webhook", concurrency_limit=limit)
    async def webhook(job: Job) -> None:
        body = job.payload or b""
        headers = {"Content-Type": "application/json", "User-Agent": user_agent}
        headers.update(signer.headers(f"msg_{job.id}", int(time.time()), body))
        async with (
            in_flight,
            session.post(urls[job.id % ENDPOINTS], data=body, headers=headers) as resp,
        ):
            await resp.read()
            if not 200 <= resp.status < 300:
                raise RuntimeError(f"HTTP {resp.status}")

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, qm.shutdown.set)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    try:
        await qm.run(
            batch_size=args.batch_size,
            dequeue_timeout=timedelta(seconds=1),
            max_concurrent_tasks=args.max_tasks or None,
        )
    finally:
        await session.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--receiver", required=True, help="http://127.0.0.1:PORT")
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=10)
    parser.add_argument("--max-tasks", type=int, default=0, help="0: unlimited")
    parser.add_argument(
        "--limit",
        choices=("entrypoint", "semaphore"),
        default="semaphore",
        help="cap in flight with the entrypoint's concurrency_limit (enforced in SQL) or a "
        "semaphore in the handler",
    )
    parser.add_argument("--pool", action="store_true", help="a pool instead of one connection")
    uvloop.run(serve(parser.parse_args()))


if __name__ == "__main__":
    main()
