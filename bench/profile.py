"""Where the daemon's CPU goes at full throughput: the throughput workload with py-spy attached
to the `webhookd run` process (on-CPU samples only), or, where ptrace is not allowed, the
daemon run under pyinstrument. Prints the top functions by self and by inclusive time as one
JSON line (also written to bench/results/profile.json), and keeps the raw stacks in
bench/results/tmp-profile.* for flame graphs.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import re
import shutil
import signal
import sys
from typing import Any

import common
import throughput

RESULTS = common.BENCH_DIR / "results"
_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>[^:()]*)(?::(?P<line>\d+))?\)$")
_SITE = re.compile(r".*/(?:site-packages|lib/python3\.\d+)/")


def short_file(path: str) -> str:
    """`.../site-packages/aiohttp/client.py` -> `aiohttp/client.py`; ours relative to the repo."""
    path = _SITE.sub("", path)
    return path.replace(str(common.REPO) + "/", "")


def frame_key(frame: str) -> str:
    match = _FRAME.match(frame)
    if match is None:
        return frame
    return f"{match['func']} ({short_file(match['file'])})"


def area(key: str) -> str:
    """The package or daemon module a frame belongs to, for a coarse breakdown."""
    match = re.search(r"\(([^)]*)\)$", key)
    path = match.group(1) if match else key
    if path.startswith("daemon/"):
        return path.removesuffix(".py")
    if path.startswith("<"):
        return path
    return path.split("/", 1)[0].removesuffix(".py")


def summarise(collapsed: str, top: int = 20) -> dict[str, Any]:
    """Self and inclusive sample counts per function from py-spy's raw (collapsed) output."""
    own: collections.Counter[str] = collections.Counter()
    inclusive: collections.Counter[str] = collections.Counter()
    by_area: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        frames = [frame_key(f) for f in stack.split(";")]
        frames = [f for f in frames if not f.startswith("process ")]
        if not frames:
            continue
        total += count
        own[frames[-1]] += count
        by_area[area(frames[-1])] += count
        for key in set(frames):
            inclusive[key] += count

    def share(counter: collections.Counter[str]) -> list[list[Any]]:
        return [[k, round(100 * n / total, 1)] for k, n in counter.most_common(top)]

    return {
        "samples": total,
        "self_pct": share(own),
        "inclusive_pct": share(inclusive),
        "self_pct_by_area": share(by_area),
    }


async def with_py_spy(env: common.Env, messages: int, rate_hz: int) -> dict[str, Any]:
    raw = RESULTS / "tmp-profile.collapsed"
    urls = [env.receiver.url(i) for i in range(throughput.ENDPOINTS)]
    async with env.postgres.fresh_database() as dsn:
        await throughput.load(dsn, urls, messages)
        await env.receiver.reset()
        daemon = common.Daemon(dsn, env.workdir)
        await daemon.start()
        spy_log = env.workdir / "py-spy.log"
        spy = common.spawn(
            [shutil.which("py-spy") or str(common.BIN / "py-spy"), "record", "--pid",
             str(daemon.pid), "--rate", str(rate_hz), "--format", "raw", "--nonblocking",
             "-o", str(raw)],
            env=None,
            log=spy_log,
        )  # fmt: skip
        try:
            await asyncio.sleep(1.0)
            if spy.poll() is not None:
                raise PermissionError(common.tail(spy_log))
            stats = await env.receiver.wait_count(messages, 60 + messages / 200)
            await common.wait_status(dsn, "delivered", messages, 60)
        finally:
            spy.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
            await asyncio.to_thread(spy.wait, 30)
            await daemon.stop()
    rate = (stats["count"] - 1) / ((stats["last_ns"] - stats["first_ns"]) / 1e9)
    summary = summarise(raw.read_text())
    return {"profiler": "py-spy", "rate_per_s": round(rate, 1), "raw": str(raw), **summary}


async def with_pyinstrument(env: common.Env, messages: int) -> dict[str, Any]:
    report = RESULTS / "tmp-profile-pyinstrument.txt"
    program = [sys.executable, "-m", "pyinstrument", "--renderer", "text", "--show-all",
               "-o", str(report), "-m", "daemon"]  # fmt: skip
    urls = [env.receiver.url(i) for i in range(throughput.ENDPOINTS)]
    async with env.postgres.fresh_database() as dsn:
        await throughput.load(dsn, urls, messages)
        await env.receiver.reset()
        daemon = common.Daemon(dsn, env.workdir, program=program)
        await daemon.start()
        try:
            await env.receiver.wait_count(messages, 60 + messages / 100)
            await common.wait_status(dsn, "delivered", messages, 60)
        finally:
            await daemon.stop()
    return {"profiler": "pyinstrument", "report": str(report)}


async def main(args: argparse.Namespace) -> dict[str, Any]:
    messages = 2_000 if args.quick else args.messages
    RESULTS.mkdir(exist_ok=True)
    async with common.environment() as env:
        if args.profiler == "pyinstrument":
            result = await with_pyinstrument(env, messages)
        else:
            try:
                result = await with_py_spy(env, messages, args.rate)
            except PermissionError as exc:
                if args.profiler == "py-spy":
                    raise
                common.note(f"py-spy cannot attach here ({exc}); using pyinstrument")
                result = await with_pyinstrument(env, messages)
    report = {"bench": "profile", "messages": messages, **result}
    if not args.quick:  # the summary is small: kept with the results, read in profile.md
        (RESULTS / "profile.json").write_text(json.dumps(report, indent=1) + "\n")
    return report


if __name__ == "__main__":
    parser = common.arguments(__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=50_000)
    parser.add_argument("--rate", type=int, default=250, help="py-spy samples per second")
    parser.add_argument("--profiler", choices=("auto", "py-spy", "pyinstrument"), default="auto")
    common.run(main, parser.parse_args())
