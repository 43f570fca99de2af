"""Log cost: CPU per `delivery.attempt` event at `log.level = info`, through the daemon's own
structlog chain (secret redaction, ISO timestamp, JSON via orjson) into a real file, one line
and one flush per event as the daemon writes them. The throughput benchmark runs the daemon at
`warning`; this is what `info` adds per attempt.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import common

from daemon.logs import configure_logging, get_logger


def one_rep(events: int, path: Path) -> float:
    """CPU microseconds per event."""
    with path.open("w") as out:
        configure_logging("info", "json", out)
        log = get_logger("webhookd.worker")
        cpu0 = time.process_time()
        for i in range(events):
            log.info(
                "delivery.attempt",
                msg_id=f"msg_{i:08d}",
                endpoint="ep_0001",
                attempt=1,
                status=200,
                error=None,
                ms=1.3,
                outcome="delivered",
                retry_in_s=None,
            )
        cpu_s = time.process_time() - cpu0
    configure_logging("warning", "console")
    return cpu_s / events * 1e6


async def main(args: argparse.Namespace) -> dict[str, Any]:
    events = 2_000 if args.quick else 50_000
    with tempfile.TemporaryDirectory(prefix="webhookd-bench-") as tmp:
        runs = [
            {"cpu_us_per_event": one_rep(events, Path(tmp) / "log.jsonl")} for _ in range(args.reps)
        ]
    return {
        "bench": "log_event",
        "events": events,
        **common.medians(runs, ["cpu_us_per_event"]),
        "runs": [common.medians([r], ["cpu_us_per_event"]) for r in runs],
    }


if __name__ == "__main__":
    common.run(main, common.arguments(__doc__.splitlines()[0]).parse_args())
