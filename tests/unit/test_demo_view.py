"""The demo's text: frames fit the terminal, plain output has no escape codes, and the summary
tells each endpoint's story from the numbers."""

from __future__ import annotations

import re
from dataclasses import replace

from daemon.demo import EndpointProgress, Snapshot
from daemon.demo_receiver import SCENARIO
from daemon.demo_view import Style, fit, frame, progress_line, summary

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
FAST, SLOW, FLAKY, LIMITED = SCENARIO


def snapshot(**changes: object) -> Snapshot:
    endpoints = (
        EndpointProgress(FAST, total=50, delivered=50, attempts=50, requests=50),
        EndpointProgress(SLOW, total=50, delivered=20, delivering=5, waiting=25, in_flight=5,
                         max_in_flight=5, attempts=25, requests=25),
        EndpointProgress(FLAKY, total=50, delivered=0, retrying=40, waiting=10, attempts=40,
                         requests=40, answered_5xx=40, breaker="open"),
        EndpointProgress(LIMITED, total=50, delivered=10, waiting=39, delivering=1,
                         attempts=10, requests=10, rate_per_s=5, average_rate_per_s=4.8),
    )  # fmt: skip
    base = Snapshot(
        elapsed_s=4.2,
        messages=200,
        endpoints=endpoints,
        metrics_url="http://127.0.0.1:1/metrics",
        endpoint_cap=5,
        metrics={
            'webhookd_deliveries_total{outcome="retry_scheduled"}': 40.0,
            "webhookd_circuit_breakers_open": 1.0,
            'webhookd_circuit_breaker_transitions_total{state="open"}': 2.0,
        },
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def test_plain_frame_has_no_escape_codes_and_shows_each_endpoint() -> None:
    lines = frame(snapshot(), Style(), width=200)

    assert not any("\x1b" in line for line in lines)
    assert any(line.startswith("fast ") and "50/50" in line and "done" in line for line in lines)
    assert any(line.startswith("flaky ") and "circuit open" in line for line in lines)
    assert any(line.startswith("limited ") and "waiting for tokens" in line for line in lines)
    assert any(line.startswith("slow ") and "in-flight cap (5)" in line for line in lines)
    assert "retries scheduled 40" in lines[-2] and "circuits open 1" in lines[-2]


def test_coloured_frame_fits_the_width_in_visible_columns() -> None:
    lines = frame(snapshot(), Style(color=True, unicode=True), width=60)

    assert any("\x1b[32m" in line for line in lines)
    assert all(len(ANSI.sub("", line)) <= 60 for line in lines)
    # no colour bleeds into the next line
    assert all(ANSI.findall(line)[-1] == "\x1b[0m" for line in lines if "\x1b[" in line)


def test_bar_is_always_the_same_width() -> None:
    for done, retrying, failed in [(0, 0, 0), (50, 0, 0), (1, 48, 1), (25, 25, 0), (0, 0, 50)]:
        bar = Style().bar(done, retrying, failed, 50)
        assert len(bar) == 24
        assert bar.count("#") == round(24 * done / 50)


def test_fit_leaves_short_lines_alone_and_cuts_long_ones() -> None:
    assert fit("short", 10) == "short"
    assert fit("abcdefghij", 4) == "abcd"
    assert fit("\x1b[1mabcdef\x1b[0m", 3) == "\x1b[1mabc\x1b[0m"


def test_progress_line_names_retries_breakers_and_token_waits() -> None:
    line = progress_line(snapshot())

    assert line.startswith("  4.2s delivered 80/200 | fast 50/50 |")
    assert "flaky 0/50 (retrying 40, circuit open)" in line
    assert "limited 10/50 (39 waiting for rate-limit tokens)" in line


def test_summary_tells_each_story_and_the_ending() -> None:
    done = summary(snapshot(elapsed_s=11.0))
    stopped = summary(snapshot(timed_out=True))

    text = "\n".join(done)
    assert "Done in 11.0 s: 80 of 200 messages delivered, 0 dead letters." in text
    assert "fast     50 delivered, each at its first attempt" in text
    assert "never more than 5 at once" in text
    assert "40 attempts got a 500 while it was down" in text
    assert "circuit breaker opened 2 time(s)" in text
    assert "10 delivered at 4.8/s, held to its --rate 5/s" in text
    assert "Every request's signature verified" in text
    assert "Stopped after 4.2 s: 80 of 200 messages delivered, 120 still pending" in "\n".join(
        stopped
    )


def test_summary_reports_bad_signatures_and_dead_letters() -> None:
    snap = snapshot()
    flaky = replace(snap.endpoints[2], bad_signatures=3, failed=2)
    text = "\n".join(
        summary(replace(snap, endpoints=(*snap.endpoints[:2], flaky, snap.endpoints[3])))
    )

    assert "3 requests had a signature that did NOT verify" in text
    assert "flaky    0 delivered, 2 dead letters;" in text
