"""Endpoint health and retention settings, the scheduler's switch for a 410 Gone, and what the
recorder says about each outcome for the failing streak."""

from __future__ import annotations

from pathlib import Path

import pytest

from daemon.config import Config, HealthConfig, config_as_dict, load_config
from daemon.endpoint_health import check_interval_s
from daemon.errors import ConfigError
from daemon.models import AttemptResult, Delivery, Outcome, RetryDecision
from daemon.recorder import health_column
from daemon.scheduler import Limits, Scheduler
from tests.unit.conftest import FakeClock
from tests.unit.scheduler_support import deliveries, endpoint, take

ENV = {"HOME": "/home/hook"}


def test_health_and_retention_defaults() -> None:
    cfg = Config()
    assert (cfg.health.enabled, cfg.health.disable_after_s, cfg.health.min_failures) == (
        True,
        5 * 86400.0,
        10,
    )
    assert cfg.retention.prune_after_s is None
    assert (cfg.retention.prune_interval_s, cfg.retention.batch_size) == (3600.0, 500)
    shown = config_as_dict(cfg)
    assert shown["health"] == {"enabled": True, "disable_after": "5d", "min_failures": 10}
    assert shown["retention"] == {
        "prune_after": "",
        "prune_interval": "1h",
        "include_failed": False,
        "batch_size": 500,
    }


def test_health_and_retention_from_file_and_environment(tmp_path: Path) -> None:
    path = tmp_path / "webhookd.toml"
    path.write_text('[health]\ndisable_after = "1s"\n[retention]\nprune_after = "30d"\n')
    cfg = load_config(path, ENV | {"WEBHOOKD_RETENTION_INCLUDE_FAILED": "true"})
    assert cfg.health.disable_after_s == 1.0
    assert (cfg.retention.prune_after_s, cfg.retention.include_failed) == (30 * 86400.0, True)
    assert config_as_dict(cfg)["retention"]["prune_after"] == "30d"


@pytest.mark.parametrize(
    ("env", "key"),
    [
        ({"WEBHOOKD_RETENTION_PRUNE_AFTER": "0s"}, "retention.prune_after"),
        ({"WEBHOOKD_RETENTION_PRUNE_AFTER": "soon"}, "retention.prune_after"),
        ({"WEBHOOKD_HEALTH_DISABLE_AFTER": "0s"}, "health.disable_after"),
        ({"WEBHOOKD_HEALTH_MIN_FAILURES": "0"}, "health.min_failures"),
        ({"WEBHOOKD_RETENTION_BATCH_SIZE": "0"}, "retention.batch_size"),
    ],
)
def test_bad_health_and_retention_values_name_the_key(env: dict[str, str], key: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load_config(None, ENV | env)
    assert caught.value.key == key


def test_check_interval_is_a_quarter_of_the_period_at_most_a_minute() -> None:
    assert check_interval_s(HealthConfig()) == 60.0
    assert check_interval_s(HealthConfig(disable_after_s=1.0)) == 0.25


async def test_disable_returns_the_queue_and_keeps_a_lane_with_attempts_running(
    clock: FakeClock,
) -> None:
    s = Scheduler(Limits(concurrency=10, endpoint_max_in_flight=10), clock)
    s.update_endpoint(endpoint("a"))
    s.update_endpoint(endpoint("b"))
    batch = deliveries("a", 3)
    s.submit(batch)
    assert await take(s) is not None
    assert s.disable("a") == batch[1:]
    assert s.disable("a") is None  # once
    assert s.disable("nope") is None
    kept = s.endpoint("a")  # kept while its attempt runs, never picked again
    assert kept is not None and not kept.enabled
    late = deliveries("a", 1)
    assert s.submit(late) == late
    s.done("a")
    assert s.endpoint("a") is None
    assert s.disable("b") == [] and s.endpoint("b") is None


def test_health_column_counts_what_says_something_about_the_endpoint() -> None:
    d = Delivery(1, "a", "msg_1", "e", b"{}", 1, 0.0)
    retry = RetryDecision(retry=True, delay_s=1.0, reason="x")

    def outcome(status: int | None, error_class: str | None) -> Outcome:
        return Outcome(d, AttemptResult(0.0, 0.1, status, error_class), retry)

    outcomes = [
        outcome(200, None),
        outcome(500, "http_500"),
        outcome(None, "timeout"),
        outcome(None, "refused_destination"),
        outcome(None, "payload_too_large"),
        outcome(410, "http_410"),
    ]
    assert health_column(outcomes) == [True, False, False, None, None, False]
