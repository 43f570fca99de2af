"""Series of the daemon's metrics that must exist before anything happened."""

from __future__ import annotations

import pytest
from prometheus_client.parser import text_string_to_metric_families

from daemon import logs
from daemon.metrics import Metrics


def test_known_label_values_are_exported_at_zero_from_the_start() -> None:
    """A series that first appears at 1 hides that first event from increase() and rate()."""
    text = Metrics().render().decode()
    samples = {
        (s.name, tuple(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }
    expected = {
        "webhookd_deliveries_total": ("outcome", ["delivered", "retry_scheduled", "dead_lettered"]),
        "webhookd_circuit_breaker_transitions_total": ("state", ["open", "closed"]),
        "webhookd_database_errors_total": (
            "op",
            ["claim", "record", "release", "pause", "disable"],
        ),
        "webhookd_endpoints_auto_disabled_total": ("reason", ["failing", "gone"]),
        "webhookd_pruned_rows_total": ("table", ["outbox", "deliveries", "attempts"]),
    }
    for name, (label, values) in expected.items():
        for value in values:
            assert samples[(name, ((label, value),))] == 0.0, (name, value)


def dropped_log_lines(metrics: Metrics) -> float:
    text = metrics.render().decode()
    (family,) = [f for f in text_string_to_metric_families(text) if f.name.endswith("dropped")]
    assert family.type == "counter"
    (sample,) = family.samples
    assert sample.name == "webhookd_log_lines_dropped_total"
    return sample.value


def test_dropped_log_lines_are_counted_at_each_scrape(monkeypatch: pytest.MonkeyPatch) -> None:
    """logs.py counts before any Metrics exists; the count is read when scraped."""
    metrics = Metrics()
    monkeypatch.setattr(logs._dropped, "count", 0)
    assert dropped_log_lines(metrics) == 0

    monkeypatch.setattr(logs._dropped, "count", 7)
    assert dropped_log_lines(metrics) == 7
