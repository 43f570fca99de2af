"""Text for `webhookd demo`: a frame redrawn in place on a terminal, one line per second
otherwise, and the closing summary. Pure: snapshots in, strings out (the CLI writes them)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from daemon.demo import RETRY_SCHEDULE_S, EndpointProgress, Snapshot
from daemon.signing import ED25519
from daemon.units import format_schedule

_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
_BAR_WIDTH = 24


@dataclass(frozen=True)
class Style:
    """Colours and bar glyphs; plain ASCII without a terminal (or with NO_COLOR)."""

    color: bool = False
    unicode: bool = False

    def paint(self, text: str, code: str) -> str:
        return f"\x1b[{code}m{text}\x1b[0m" if self.color and text else text

    def bar(self, done: int, retrying: int, failed: int, total: int) -> str:
        if total <= 0:
            return " " * _BAR_WIDTH
        full, retry, fail = (round(_BAR_WIDTH * n / total) for n in (done, retrying, failed))
        fail = min(fail, _BAR_WIDTH - full)
        retry = min(retry, _BAR_WIDTH - full - fail)
        rest = _BAR_WIDTH - full - retry - fail
        glyphs = ("█", "▒", "░") if self.unicode else ("#", "~", ".")
        return (
            self.paint(glyphs[0] * full, "32")
            + self.paint(glyphs[1] * retry, "33")
            + self.paint("x" * fail, "31")
            + self.paint(glyphs[2] * rest, "2")
        )


def frame(snap: Snapshot, style: Style, width: int = 120) -> list[str]:
    """The live view: header, one line per endpoint, totals. Lines never exceed `width`, so
    redrawing in place never wraps."""
    head = (
        f"{'endpoint':<8}  {'what it does':<31}  {'delivered':<{_BAR_WIDTH + 10}}"
        f" {'retrying':>8} {'failed':>6} {'in flight':>9} {'req/s':>5}  status"
    )
    lines = [
        style.paint("webhookd demo", "1")
        + f"  {snap.messages} messages, {len(snap.endpoints)} endpoints"
        + f"  {snap.elapsed_s:5.1f} s",
        "Each message is a row in webhookd.outbox; the daemon signs it and POSTs it to its"
        " endpoint, retrying until it gets a 2xx.",
        "",
        style.paint(head, "1"),
        *(_endpoint_line(e, snap, style) for e in snap.endpoints),
        "",
        _totals(snap),
        f"receiver: {_signatures(snap)}   metrics: {snap.metrics_url}",
    ]
    return [fit(line, width) for line in lines]


def _endpoint_line(e: EndpointProgress, snap: Snapshot, style: Style) -> str:
    bar = style.bar(e.delivered, e.retrying, e.failed, e.total)
    count = f"{e.delivered:>4}/{e.total:<4}"
    return (
        f"{e.endpoint.name:<8}  {e.endpoint.behaviour:<31}  {bar} {count}"
        f" {_num(e.retrying, 8, style, '33')} {_num(e.failed, 6, style, '31')}"
        f" {e.in_flight:>9} {e.rate_per_s:>5.0f}  {_note(e, snap, style)}"
    )


def _num(value: int, width: int, style: Style, code: str) -> str:
    # Padded before painting: colour codes would count as columns.
    cell = f"{value:>{width}}"
    return style.paint(cell, code) if value else cell


def _note(e: EndpointProgress, snap: Snapshot, style: Style) -> str:
    if e.breaker == "open":
        return style.paint("circuit open: paused, deliveries wait in PostgreSQL", "31")
    if e.breaker == "probing":
        return style.paint("circuit half-open: one probe", "33")
    if e.total and e.delivered == e.total:
        return style.paint("done", "32")
    if e.retrying:
        return style.paint(f"answered 500 x{e.answered_5xx}: retrying with backoff", "33")
    if e.endpoint.rate_per_s and (e.waiting or e.delivering):
        return f"rate limit {e.endpoint.rate_per_s:g}/s: waiting for tokens"
    if e.in_flight >= snap.endpoint_cap:
        return f"at its in-flight cap ({snap.endpoint_cap})"
    return ""


def _totals(snap: Snapshot) -> str:
    def total(field: str) -> int:
        return sum(int(getattr(e, field)) for e in snap.endpoints)

    retries = snap.metric('webhookd_deliveries_total{outcome="retry_scheduled"}')
    return (
        f"delivered {snap.delivered}/{snap.messages}   not yet tried {total('waiting')}"
        f"   in flight {total('in_flight')}   HTTP attempts {total('attempts')}"
        f"   retries scheduled {retries:.0f}"
        f"   circuits open {snap.metric('webhookd_circuit_breakers_open'):.0f}"
        f"   dead letters {snap.failed}"
    )


def _signatures(snap: Snapshot) -> str:
    bad = sum(e.bad_signatures for e in snap.endpoints)
    checked = sum(e.requests for e in snap.endpoints)
    return f"signatures checked {checked}, invalid {bad}"


def progress_line(snap: Snapshot) -> str:
    """One line for a log or a pipe (no terminal): where each endpoint stands."""
    parts = [f"{snap.elapsed_s:5.1f}s delivered {snap.delivered}/{snap.messages}"]
    for e in snap.endpoints:
        extra = []
        if e.retrying:
            extra.append(f"retrying {e.retrying}")
        if e.endpoint.rate_per_s and e.waiting:
            extra.append(f"{e.waiting} waiting for rate-limit tokens")
        if e.breaker != "closed":
            extra.append(f"circuit {e.breaker}")
        if e.failed:
            extra.append(f"failed {e.failed}")
        suffix = f" ({', '.join(extra)})" if extra else ""
        parts.append(f"{e.endpoint.name} {e.delivered}/{e.total}{suffix}")
    return " | ".join(parts)


def summary(snap: Snapshot) -> list[str]:
    """What happened, endpoint by endpoint, in words a newcomer can follow."""
    if snap.timed_out:
        head = (
            f"Stopped after {snap.elapsed_s:.1f} s: {snap.delivered} of {snap.messages} messages"
            f" delivered, {snap.messages - snap.delivered - snap.failed} still pending"
            " (give it more time with --duration)."
        )
    else:
        head = (
            f"Done in {snap.elapsed_s:.1f} s: {snap.delivered} of {snap.messages} messages"
            f" delivered, {snap.failed} dead letters."
        )
    lines = ["", "Summary", head]
    for e in snap.endpoints:
        first, *rest = _story(e, snap)
        lines += [f"  {e.endpoint.name:<8} {first}", *(f"  {'':<8} {more}" for more in rest)]
    lines += ["", *_closing(snap)]
    return lines


def _story(e: EndpointProgress, snap: Snapshot) -> list[str]:
    told = f"{e.delivered} delivered"
    if e.failed:
        told += f", {e.failed} dead letters"
    if e.endpoint.outage_s:
        return _flaky_story(told, e, snap)
    if e.endpoint.rate_per_s:
        average = "" if e.average_rate_per_s is None else f" at {e.average_rate_per_s:.1f}/s"
        return [f"{told}{average}, held to its --rate {e.endpoint.rate_per_s:g}/s"]
    if e.endpoint.delay_s and e.max_in_flight >= snap.endpoint_cap:
        return [
            f"{told}, never more than {e.max_in_flight} at once: the per-endpoint cap keeps a",
            "slow endpoint from taking every delivery slot",
        ]
    if e.attempts == e.delivered:
        return [f"{told}, each at its first attempt"]
    return [f"{told} in {e.attempts} attempts"]


def _flaky_story(told: str, e: EndpointProgress, snap: Snapshot) -> list[str]:
    story = [
        f"{told}; {e.answered_5xx} attempts got a 500 while it was down, each retried on"
        f" the schedule {format_schedule(RETRY_SCHEDULE_S)}"
    ]
    opened = snap.metric('webhookd_circuit_breaker_transitions_total{state="open"}')
    if opened:
        story.append(f"its circuit breaker opened {opened:.0f} time(s): paused, not hammered")
    return story


def _closing(snap: Snapshot) -> list[str]:
    bad = sum(e.bad_signatures for e in snap.endpoints)
    ed = [e.endpoint.name for e in snap.endpoints if e.endpoint.signature == ED25519]
    checked = (
        "Every request's signature verified at the receiver"
        if not bad
        else f"{bad} requests had a signature that did NOT verify"
    )
    return [
        f"{checked} (Standard Webhooks v1 HMAC-SHA256; v1a ed25519 for {', '.join(ed) or '-'}).",
        "In production your application inserts the outbox rows in its own transactions and"
        " `webhookd run` delivers them:",
        "  make run    then    .venv/bin/webhookd endpoint add https://example.com/hooks",
    ]


def fit(line: str, width: int) -> str:
    """Cut a line to `width` visible columns, keeping ANSI colour codes intact."""
    if len(_ANSI.sub("", line)) <= width:
        return line
    out, shown, pos = [], 0, 0
    while pos < len(line) and shown < width:
        match = _ANSI.match(line, pos)
        if match:
            out.append(match.group())
            pos = match.end()
            continue
        out.append(line[pos])
        shown += 1
        pos += 1
    return "".join(out) + ("\x1b[0m" if "\x1b[" in line else "")
