"""daemon.config: defaults, TOML parsing, WEBHOOKD_* overrides, and errors that name the key."""

from __future__ import annotations

import dataclasses
import json
import os
import tomllib
from pathlib import Path

import pytest

from daemon import __version__
from daemon.config import Config, config_as_dict, load_config, redact_url
from daemon.errors import ConfigError

EXAMPLE = Path(__file__).resolve().parents[2] / "config" / "webhookd.toml"
HOME_ENV = {"HOME": "/home/hook"}
HOME_STATE_DIR = Path("/home/hook/.local/state/webhookd/postgres")


pytestmark = pytest.mark.usefixtures("no_system_config")


def write_toml(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "webhookd.toml"
    path.write_text(text, encoding="utf-8")
    return path


def load_env(**env: str) -> Config:
    return load_config(None, {**HOME_ENV, **env})


def expected_defaults() -> Config:
    return Config().with_overrides(database={"embedded_dir": HOME_STATE_DIR})


def config_error(path: Path | None, env: dict[str, str] | None = None) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load_config(path, {**HOME_ENV, **(env or {})})
    return caught.value


def to_toml(sections: dict[str, dict[str, object]]) -> str:
    """Enough of a TOML writer for config_as_dict output (JSON scalars are TOML scalars here)."""
    lines: list[str] = []
    for name, values in sections.items():
        lines.append(f"[{name}]")
        lines += [f"{key} = {json.dumps(value)}" for key, value in values.items()]
    return "\n".join(lines) + "\n"


# --- defaults -------------------------------------------------------------------------------------


def test_default_config_has_the_documented_values() -> None:
    cfg = Config()
    assert cfg.database.url == ""
    assert cfg.database.use_embedded
    assert (cfg.database.pool_min_size, cfg.database.pool_max_size) == (1, 10)
    assert cfg.database.connect_timeout_s == 5.0
    assert cfg.outbox.poll_interval_s == 1.0
    assert cfg.outbox.batch_size == 100
    assert cfg.outbox.lease_margin_s == 30.0
    assert cfg.outbox.listen is True
    assert cfg.delivery.concurrency == 10
    assert cfg.delivery.timeout_s == 30.0
    assert cfg.delivery.retry_schedule_s == (5, 300, 1800, 7200, 18000, 36000, 36000)
    assert cfg.delivery.retry_jitter == 0.1
    assert cfg.delivery.max_response_body_bytes == 65536
    assert cfg.delivery.stored_response_body_bytes == 4096
    assert cfg.delivery.max_payload_bytes == 1048576
    assert not cfg.delivery.allow_insecure_http
    assert not cfg.delivery.allow_private_networks
    assert cfg.delivery.drain_timeout_s == 30.0
    assert cfg.delivery.user_agent == f"webhookd/{__version__}"
    assert cfg.ratelimit.default_rate_per_s is None
    assert cfg.ratelimit.max_retry_after_s == 3600.0
    assert cfg.signing.rotation_grace_s == 86400.0
    assert (cfg.metrics.enabled, cfg.metrics.per_endpoint_labels) == (True, False)
    assert (cfg.metrics.listen_host, cfg.metrics.listen_port) == ("127.0.0.1", 9464)
    assert (cfg.log.level, cfg.log.format) == ("info", "auto")


def test_instance_id_defaults_to_hostname_and_pid() -> None:
    host, _, pid = load_env().outbox.instance_id.rpartition(":")
    assert host
    assert pid == str(os.getpid())


def test_missing_default_file_means_defaults() -> None:
    assert load_env() == expected_defaults()


def test_default_file_is_read_when_present(no_system_config: Path) -> None:
    no_system_config.parent.mkdir()
    no_system_config.write_text("[delivery]\nconcurrency = 3\n")
    assert load_env().delivery.concurrency == 3


@pytest.mark.parametrize(
    ("concurrency", "cap"), [(10, 5), (5, 3), (1, 1)], ids=["even", "odd", "one"]
)
def test_endpoint_cap_defaults_to_half_the_concurrency_rounded_up(
    concurrency: int, cap: int
) -> None:
    delivery = dataclasses.replace(Config().delivery, concurrency=concurrency)
    assert delivery.effective_endpoint_max_in_flight == cap


def test_explicit_endpoint_cap_wins_over_the_default() -> None:
    cfg = load_env(WEBHOOKD_DELIVERY_ENDPOINT_MAX_IN_FLIGHT="2")
    assert cfg.delivery.effective_endpoint_max_in_flight == 2


@pytest.mark.parametrize(
    ("rate", "burst", "expected"),
    [("", "0", 1), ("100/min", "0", 2), ("5/s", "0", 5), ("5/s", "12", 12)],
)
def test_default_burst_is_one_second_of_tokens_unless_set(
    rate: str, burst: str, expected: int
) -> None:
    cfg = load_env(WEBHOOKD_RATELIMIT_DEFAULT_RATE=rate, WEBHOOKD_RATELIMIT_DEFAULT_BURST=burst)
    assert cfg.ratelimit.effective_default_burst == expected


# --- the embedded database directory --------------------------------------------------------------


def test_embedded_dir_defaults_under_xdg_state_home() -> None:
    cfg = load_env(XDG_STATE_HOME="/var/state")
    assert cfg.database.embedded_dir == Path("/var/state/webhookd/postgres")


def test_relative_xdg_state_home_is_ignored() -> None:
    assert load_env(XDG_STATE_HOME="state").database.embedded_dir == HOME_STATE_DIR


def test_embedded_dir_from_the_file_is_used_as_given(tmp_path: Path) -> None:
    path = write_toml(tmp_path, '[database]\nembedded_dir = "/srv/pg"\n')
    assert load_config(path, HOME_ENV).database.embedded_dir == Path("/srv/pg")


# --- file parsing ---------------------------------------------------------------------------------


def test_example_file_loads_to_the_defaults() -> None:
    assert load_config(EXAMPLE, HOME_ENV) == expected_defaults()


def test_example_file_lists_every_key() -> None:
    documented = tomllib.loads(EXAMPLE.read_text(encoding="utf-8"))
    every_key = config_as_dict(Config())
    assert {s: set(keys) for s, keys in documented.items()} == {
        s: set(keys) for s, keys in every_key.items()
    }


def test_toml_numbers_are_seconds_and_bytes(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "[delivery]\ntimeout = 7\nmax_payload = 2048\n")
    delivery = load_config(path, HOME_ENV).delivery
    assert (delivery.timeout_s, delivery.max_payload_bytes) == (7.0, 2048)


def test_file_values_are_parsed_into_units(tmp_path: Path) -> None:
    path = write_toml(
        tmp_path,
        """
        [database]
        url = "postgresql://hook@db/hooks"
        connect_timeout = 2.5
        [outbox]
        poll_interval = "250ms"
        instance_id = "worker-1"
        [delivery]
        timeout = "5m"
        retry_schedule = ["1s", 90, "2h", "1d"]
        max_payload = "10MB"
        allow_insecure_http = true
        user_agent = "hooks/2"
        [ratelimit]
        default_rate = "100/min"
        [metrics]
        listen = "[::1]:9000"
        [log]
        level = "DEBUG"
        """,
    )
    cfg = load_config(path, HOME_ENV)
    assert cfg.database.url == "postgresql://hook@db/hooks"
    assert not cfg.database.use_embedded
    assert cfg.database.connect_timeout_s == 2.5
    assert cfg.outbox.poll_interval_s == 0.25
    assert cfg.outbox.instance_id == "worker-1"
    assert cfg.delivery.timeout_s == 300.0
    assert cfg.delivery.retry_schedule_s == (1.0, 90.0, 7200.0, 86400.0)
    assert cfg.delivery.max_payload_bytes == 10_000_000
    assert cfg.delivery.allow_insecure_http is True
    assert cfg.delivery.user_agent == "hooks/2"
    assert cfg.ratelimit.default_rate_per_s == pytest.approx(100 / 60)
    assert (cfg.metrics.listen_host, cfg.metrics.listen_port) == ("::1", 9000)
    assert cfg.log.level == "debug"


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("250ms", 0.25), ("30s", 30), ("5m", 300), ("2h", 7200), ("1d", 86400), ("1.5", 1.5)],
)
def test_durations_accept_ms_s_m_h_d_and_bare_seconds(text: str, seconds: float) -> None:
    assert load_env(WEBHOOKD_SIGNING_ROTATION_GRACE=text).signing.rotation_grace_s == seconds


@pytest.mark.parametrize(
    ("text", "size"),
    [("512", 512), ("4KiB", 4096), ("64KiB", 65536), ("1MiB", 1048576), ("10MB", 10_000_000)],
)
def test_sizes_accept_binary_and_decimal_units(text: str, size: int) -> None:
    assert load_env(WEBHOOKD_DELIVERY_MAX_PAYLOAD=text).delivery.max_payload_bytes == size


@pytest.mark.parametrize(
    ("text", "per_s"), [("5/s", 5.0), ("100/min", 100 / 60), ("36/h", 0.01), ("", None)]
)
def test_rates_are_stored_per_second(text: str, per_s: float | None) -> None:
    rate = load_env(WEBHOOKD_RATELIMIT_DEFAULT_RATE=text).ratelimit.default_rate_per_s
    assert rate == (pytest.approx(per_s) if per_s is not None else None)


# --- environment overrides ------------------------------------------------------------------------


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "[delivery]\nconcurrency = 3\ntimeout = '10s'\n")
    cfg = load_config(path, {**HOME_ENV, "WEBHOOKD_DELIVERY_CONCURRENCY": "40"})
    assert cfg.delivery.concurrency == 40
    assert cfg.delivery.timeout_s == 10.0


def test_environment_retry_schedule_is_comma_separated() -> None:
    cfg = load_env(WEBHOOKD_DELIVERY_RETRY_SCHEDULE="4s, 8s,10s")
    assert cfg.delivery.retry_schedule_s == (4.0, 8.0, 10.0)


def test_empty_environment_retry_schedule_means_no_retries() -> None:
    assert load_env(WEBHOOKD_DELIVERY_RETRY_SCHEDULE="").delivery.retry_schedule_s == ()


@pytest.mark.parametrize(
    ("listen", "host", "port"),
    [
        ("0.0.0.0:9464", "0.0.0.0", 9464),
        ("[::]:80", "::", 80),
        ("metrics.local:0", "metrics.local", 0),
    ],
)
def test_environment_metrics_listen_splits_host_and_port(listen: str, host: str, port: int) -> None:
    metrics = load_env(WEBHOOKD_METRICS_LISTEN=listen).metrics
    assert (metrics.listen_host, metrics.listen_port) == (host, port)


@pytest.mark.parametrize("word", ["true", "1", "yes", "ON"])
def test_environment_booleans_accept_common_spellings(word: str) -> None:
    assert load_env(WEBHOOKD_DELIVERY_ALLOW_PRIVATE_NETWORKS=word).delivery.allow_private_networks


def test_environment_database_url_and_level_override() -> None:
    cfg = load_env(WEBHOOKD_DATABASE_URL="postgres://h/db", WEBHOOKD_LOG_LEVEL="warning")
    assert cfg.database.url == "postgres://h/db"
    assert cfg.log.level == "warning"


def test_environment_variables_outside_our_sections_are_ignored() -> None:
    cfg = load_env(
        WEBHOOKD_CONFIG="/nowhere.toml",
        WEBHOOKD_TEST_DATABASE_URL="postgresql://x/y",
        DELIVERY_CONCURRENCY="abc",
        WEBHOOKDX_LOG_LEVEL="loud",
    )
    assert cfg == expected_defaults()


# --- helpers for tests and check-config ----------------------------------------------------------


def test_config_is_frozen_and_replace_works() -> None:
    cfg = Config()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.delivery.concurrency = 3  # type: ignore[misc]
    faster = dataclasses.replace(cfg, delivery=dataclasses.replace(cfg.delivery, timeout_s=0.5))
    assert faster.delivery.timeout_s == 0.5
    assert cfg.delivery.timeout_s == 30.0


def test_with_overrides_replaces_fields_in_several_sections() -> None:
    cfg = Config().with_overrides(delivery={"concurrency": 2}, log={"level": "debug"})
    assert (cfg.delivery.concurrency, cfg.log.level) == (2, "debug")
    assert cfg.outbox == Config().outbox


def test_config_as_dict_uses_toml_names_and_human_units() -> None:
    shown = config_as_dict(load_env())
    assert shown["delivery"]["timeout"] == "30s"
    assert shown["delivery"]["max_response_body"] == "64KiB"
    assert shown["delivery"]["retry_schedule"] == ["5s", "5m", "30m", "2h", "5h", "10h", "10h"]
    assert shown["outbox"]["poll_interval"] == "1s"
    assert shown["metrics"]["listen"] == "127.0.0.1:9464"
    assert shown["ratelimit"]["default_rate"] == ""
    assert shown["database"]["embedded_dir"] == str(HOME_STATE_DIR)


@pytest.mark.parametrize(
    ("rate", "shown"),
    [("5/s", "5/s"), ("100/min", "100/min"), ("120/min", "2/s"), ("36/h", "36/h")],
)
def test_config_as_dict_shows_rates_as_a_whole_count_per_unit(rate: str, shown: str) -> None:
    cfg = load_env(WEBHOOKD_RATELIMIT_DEFAULT_RATE=rate)
    assert config_as_dict(cfg)["ratelimit"]["default_rate"] == shown


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://hook:s3cret@db:5432/hooks",
        "postgresql://hook@db/hooks?sslmode=require&password=s3cret",
    ],
)
def test_config_as_dict_hides_the_database_password(url: str) -> None:
    shown = config_as_dict(load_env(WEBHOOKD_DATABASE_URL=url))["database"]["url"]
    assert isinstance(shown, str)
    assert "s3cret" not in shown
    assert "***" in shown
    assert "hook" in shown
    assert "db" in shown


def test_redact_url_hides_all_of_an_unparseable_url() -> None:
    assert redact_url("postgresql://hook:s3cret@[::1/hooks") == "***"


def test_config_as_dict_round_trips_through_toml(tmp_path: Path) -> None:
    cfg = load_env(
        WEBHOOKD_DATABASE_URL="postgresql://hook@db/hooks",
        WEBHOOKD_DELIVERY_DRAIN_TIMEOUT="0.0000125",
        WEBHOOKD_DELIVERY_RETRY_SCHEDULE="250ms,90s,36h",
        WEBHOOKD_DELIVERY_RETRY_JITTER="0.25",
        WEBHOOKD_DELIVERY_MAX_PAYLOAD="10MB",
        WEBHOOKD_DELIVERY_MAX_RESPONSE_BODY="100001",
        WEBHOOKD_RATELIMIT_DEFAULT_RATE="1.5/d",
        WEBHOOKD_METRICS_LISTEN="[::1]:9000",
        WEBHOOKD_SIGNING_ROTATION_GRACE="1.5",
    )
    path = write_toml(tmp_path, to_toml(config_as_dict(cfg)))
    assert load_config(path, HOME_ENV) == cfg


# --- errors name the key --------------------------------------------------------------------------


def test_unknown_key_in_file_suggests_the_nearest(tmp_path: Path) -> None:
    err = config_error(write_toml(tmp_path, "[delivery]\nconcurency = 5\n"))
    assert err.key == "delivery.concurency"
    assert "did you mean 'concurrency'" in err.why


def test_unknown_key_in_environment_suggests_the_variable() -> None:
    err = config_error(None, {"WEBHOOKD_DELIVERY_TIMEOUTS": "5s"})
    assert err.key == "delivery.timeouts"
    assert "WEBHOOKD_DELIVERY_TIMEOUT?" in err.why


def test_unknown_section_suggests_the_nearest(tmp_path: Path) -> None:
    err = config_error(write_toml(tmp_path, "[delivry]\ntimeout = '5s'\n"))
    assert err.key == "delivry"
    assert "did you mean 'delivery'" in err.why


def test_unknown_section_without_a_near_match_lists_the_sections(tmp_path: Path) -> None:
    err = config_error(write_toml(tmp_path, "[zzz]\n"))
    assert err.key == "zzz"
    assert "expected one of: 'database', 'outbox'" in err.why


def test_section_that_is_not_a_table_is_an_error(tmp_path: Path) -> None:
    err = config_error(write_toml(tmp_path, "log = 'debug'\n"))
    assert err.key == "log"
    assert "table" in err.why


def test_bad_duration_names_the_key_and_the_value() -> None:
    err = config_error(None, {"WEBHOOKD_OUTBOX_LEASE_MARGIN": "5 parsecs"})
    assert err.key == "outbox.lease_margin"
    assert "'5 parsecs'" in err.why
    assert "WEBHOOKD_OUTBOX_LEASE_MARGIN" in err.why


@pytest.mark.parametrize("value", ["0", "0s", "-1"])
def test_timeouts_must_be_positive(value: str) -> None:
    err = config_error(None, {"WEBHOOKD_DELIVERY_TIMEOUT": value})
    assert err.key == "delivery.timeout"


@pytest.mark.parametrize("value", ["abc", "0", "10001", "2.5"])
def test_out_of_range_integer_names_the_bounds(value: str) -> None:
    err = config_error(None, {"WEBHOOKD_DELIVERY_CONCURRENCY": value})
    assert err.key == "delivery.concurrency"
    assert err.why.startswith(f"must be an integer between 1 and 10000, got {value!r}")


@pytest.mark.parametrize(
    ("toml", "key"),
    [
        ("[outbox]\nbatch_size = true", "outbox.batch_size"),
        ("[outbox]\nlisten = 'maybe'", "outbox.listen"),
        ("[database]\nurl = 5", "database.url"),
        ("[delivery]\nretry_schedule = 5", "delivery.retry_schedule"),
        ("[delivery]\nretry_jitter = 1.5", "delivery.retry_jitter"),
        ("[delivery]\nretry_jitter = true", "delivery.retry_jitter"),
        ("[log]\nformat = 'xml'", "log.format"),
    ],
)
def test_wrong_type_or_value_in_file_names_the_key(tmp_path: Path, toml: str, key: str) -> None:
    err = config_error(write_toml(tmp_path, toml + "\n"))
    assert err.key == key
    assert "webhookd.toml" in err.why


def test_bad_retry_schedule_item_is_pointed_at() -> None:
    err = config_error(None, {"WEBHOOKD_DELIVERY_RETRY_SCHEDULE": "5s,soon,1h"})
    assert err.key == "delivery.retry_schedule"
    assert err.why.startswith("item 2:")


@pytest.mark.parametrize(
    "listen", ["9464", "::1:9464", "[::1]", "host:99999", ":9464", "host:port", ""]
)
def test_bad_metrics_listen_is_an_error(listen: str) -> None:
    err = config_error(None, {"WEBHOOKD_METRICS_LISTEN": listen})
    assert err.key == "metrics.listen"
    assert "host:port" in err.why


@pytest.mark.parametrize("rate", ["100", "100/fortnight", "0/s", "fast"])
def test_bad_rate_is_an_error(rate: str) -> None:
    err = config_error(None, {"WEBHOOKD_RATELIMIT_DEFAULT_RATE": rate})
    assert err.key == "ratelimit.default_rate"
    assert "100/min" in err.why


@pytest.mark.parametrize("size", ["1.5MiB", "lots", "0", "-4KiB"])
def test_bad_size_is_an_error(size: str) -> None:
    err = config_error(None, {"WEBHOOKD_DELIVERY_MAX_PAYLOAD": size})
    assert err.key == "delivery.max_payload"


def test_database_url_must_be_postgres_and_the_error_hides_the_password() -> None:
    err = config_error(None, {"WEBHOOKD_DATABASE_URL": "mysql://root:hunter2@db/x"})
    assert err.key == "database.url"
    assert "mysql://" in err.why
    assert "hunter2" not in str(err)


@pytest.mark.parametrize("url", ["postgresql://u:hunter2@[::1/db", "host=db password=hunter2"])
def test_unparseable_database_url_is_refused_without_echoing_it(url: str) -> None:
    err = config_error(None, {"WEBHOOKD_DATABASE_URL": url})
    assert err.key == "database.url"
    assert "hunter2" not in str(err)


@pytest.mark.parametrize("value", ["lots", "-0.1", "nan"])
def test_retry_jitter_must_be_a_fraction(value: str) -> None:
    err = config_error(None, {"WEBHOOKD_DELIVERY_RETRY_JITTER": value})
    assert err.key == "delivery.retry_jitter"
    assert "between 0 and 1" in err.why


def test_toml_syntax_error_names_the_file_and_line(tmp_path: Path) -> None:
    path = write_toml(tmp_path, "[delivery]\nconcurrency = 10\ntimeout = \n")
    err = config_error(path)
    assert err.key == str(path)
    assert "line 3" in err.why


def test_explicit_missing_file_is_an_error(tmp_path: Path) -> None:
    err = config_error(tmp_path / "absent.toml")
    assert err.key == str(tmp_path / "absent.toml")
    assert "not found" in err.why


def test_unreadable_file_is_an_error(tmp_path: Path) -> None:
    err = config_error(tmp_path)  # a directory cannot be read as a file
    assert err.key == str(tmp_path)
    assert "cannot read" in err.why


def test_non_utf8_file_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(b"[log]\nlevel = '\xe9'\n")
    assert "UTF-8" in config_error(path).why


def test_pool_min_size_may_not_exceed_pool_max_size() -> None:
    err = config_error(None, {"WEBHOOKD_DATABASE_POOL_MIN_SIZE": "20"})
    assert err.key == "database.pool_min_size"


def test_stored_response_body_may_not_exceed_the_read_limit() -> None:
    err = config_error(None, {"WEBHOOKD_DELIVERY_STORED_RESPONSE_BODY": "1MiB"})
    assert err.key == "delivery.stored_response_body"
    assert "64KiB" in err.why


# --- bounds: every number has both ---------------------------------------------------------------


def test_huge_delivery_timeout_in_the_file_names_the_key_the_bound_and_the_file(
    tmp_path: Path,
) -> None:
    path = write_toml(tmp_path, "[delivery]\ntimeout = 1e300\n")

    err = config_error(path)

    assert str(err) == f"delivery.timeout: must be at most 1h, got 1e+300 (in {path})"


@pytest.mark.parametrize(
    ("variable", "value", "bound"),
    [
        ("WEBHOOKD_DATABASE_CONNECT_TIMEOUT", "2h", "at most 1h"),
        ("WEBHOOKD_OUTBOX_POLL_INTERVAL", "1d", "at most 1h"),
        ("WEBHOOKD_OUTBOX_POLL_INTERVAL", "1ms", "at least 10ms"),
        ("WEBHOOKD_OUTBOX_LEASE_MARGIN", "500ms", "at least 1s"),
        ("WEBHOOKD_OUTBOX_LEASE_MARGIN", "0", "at least 1s"),
        ("WEBHOOKD_OUTBOX_LEASE_MARGIN", "2h", "at most 1h"),
        ("WEBHOOKD_OUTBOX_BATCH_SIZE", "99999999999", "between 1 and 10000"),
        ("WEBHOOKD_DELIVERY_CONCURRENCY", "9" * 40, "between 1 and 10000"),
        ("WEBHOOKD_DELIVERY_TIMEOUT", "999999999d", "at most 1h"),
        ("WEBHOOKD_DELIVERY_RETRY_SCHEDULE", "5s,31d", "item 2: must be at most 30d"),
        ("WEBHOOKD_DELIVERY_RETRY_SCHEDULE", ",".join(["1s"] * 51), "at most 50 entries"),
        ("WEBHOOKD_DELIVERY_MAX_RESPONSE_BODY", "2GiB", "from 1 to 1GiB"),
        ("WEBHOOKD_DELIVERY_STORED_RESPONSE_BODY", "9" * 40, "from 0 to 1GiB"),
        ("WEBHOOKD_DELIVERY_MAX_PAYLOAD", "1025MiB", "from 1 to 1GiB"),
        ("WEBHOOKD_DELIVERY_ENDPOINT_MAX_IN_FLIGHT", "10001", "between 0 and 10000"),
        ("WEBHOOKD_DELIVERY_DRAIN_TIMEOUT", "1d", "at most 1h"),
        ("WEBHOOKD_RATELIMIT_DEFAULT_RATE", "3000000000/s", "between 1/d and 100000/s"),
        ("WEBHOOKD_RATELIMIT_DEFAULT_RATE", "1/30d", "must be a rate"),
        ("WEBHOOKD_RATELIMIT_DEFAULT_BURST", "1000001", "between 0 and 1000000"),
        ("WEBHOOKD_RATELIMIT_MAX_RETRY_AFTER", "31d", "at most 30d"),
        ("WEBHOOKD_BREAKER_WINDOW", "1001", "between 1 and 1000"),
        ("WEBHOOKD_BREAKER_COOLDOWN", "2d", "at most 1d"),
        ("WEBHOOKD_SIGNING_ROTATION_GRACE", "366d", "at most 365d"),
        ("WEBHOOKD_HEALTH_DISABLE_AFTER", "366d", "at most 365d"),
        ("WEBHOOKD_HEALTH_MIN_FAILURES", "1000001", "between 1 and 1000000"),
        ("WEBHOOKD_RETENTION_PRUNE_AFTER", "36501d", "at most 36500d"),
        ("WEBHOOKD_RETENTION_PRUNE_INTERVAL", "31d", "at most 30d"),
        ("WEBHOOKD_RETENTION_BATCH_SIZE", "100001", "between 1 and 100000"),
        ("WEBHOOKD_DATABASE_POOL_MAX_SIZE", "1001", "between 1 and 1000"),
    ],
)
def test_out_of_bounds_numbers_are_refused_naming_the_key(
    variable: str, value: str, bound: str
) -> None:
    err = config_error(None, {variable: value})

    assert err.key == variable.removeprefix("WEBHOOKD_").lower().replace("_", ".", 1)
    assert bound in err.why
    assert f"from {variable}" in err.why
    assert "\n" not in str(err)


def test_bounds_are_written_down_in_the_example_file() -> None:
    text = EXAMPLE.read_text()
    for bound in ("1ms..1h", "1s..1h", "10ms..1h", "1/d..100000/s", "0..1000000", "1..1GiB"):
        assert bound in text


# --- redact_url: the one redaction of database URLs (config, store, service.started) ----------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://hook:s3cret@db:5432/hooks", "postgresql://hook:***@db:5432/hooks"),
        ("postgresql://hook@db/hooks", "postgresql://hook@db/hooks"),
        ("postgresql://db/hooks", "postgresql://db/hooks"),
        (
            "postgresql://hook@db/hooks?sslmode=require&password=s3cret",
            "postgresql://hook@db/hooks?sslmode=require&password=***",
        ),
        ("postgres://db/hooks?password=s3cret", "postgres://db/hooks?password=***"),
        ("postgresql://db/hooks?sslpassword=s3cret", "postgresql://db/hooks?sslpassword=***"),
        ("postgresql://hook:s3c%40ret%3A@db/hooks", "postgresql://hook:***@db/hooks"),
        ("postgresql://hook:s3c@ret@db/hooks", "postgresql://hook:***@db/hooks"),
        ("postgresql://hook:s3cret@[::1]:5432/hooks", "postgresql://hook:***@[::1]:5432/hooks"),
        (
            "postgresql://hook:s3cret@h1:5432,h2:5433/hooks",
            "postgresql://hook:***@h1:5432,h2:5433/hooks",
        ),
        (
            "postgresql:///hooks?host=/run/postgresql&password=s3cret",
            "postgresql:///hooks?host=/run/postgresql&password=***",
        ),
        ("postgresql:///hooks?host=/run/postgresql", "postgresql:///hooks?host=/run/postgresql"),
        ("postgresql://hook:s3cret@[::1/hooks", "***"),
        ("host=db user=hook password=s3cret", "***"),
        ("", ""),
    ],
)
def test_redact_url_hides_the_password_of_every_dsn_form(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_store_and_service_redact_with_config_redact_url() -> None:
    import daemon.service
    import daemon.store

    assert daemon.store.redact_url is redact_url
    assert daemon.service.redact_url is redact_url
    assert not hasattr(daemon.store, "redact_dsn")


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://hook:s3cret@db:abc/hooks",
        "postgresql://hook:s3cret@db:99999/hooks",
        "postgresql://hook:s3cret@h1:5432,h2:x/hooks",
        "postgresql://hook:s3cret@[::1]:x/hooks",
    ],
)
def test_database_url_with_a_bad_port_is_refused_without_showing_it(url: str) -> None:
    err = config_error(None, {"WEBHOOKD_DATABASE_URL": url})

    assert err.key == "database.url"
    assert "port" in err.why
    assert "s3cret" not in str(err)


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://hook:s3cret@h1:5432,h2:5433/hooks",
        "postgresql://hook@[::1]/hooks",
        "postgresql://hook@[::1]:5432/hooks",
        "postgresql:///hooks?host=/run/postgresql",
    ],
)
def test_database_url_forms_libpq_accepts_are_accepted(url: str) -> None:
    assert load_env(WEBHOOKD_DATABASE_URL=url).database.url == url


def test_unknown_variable_outside_any_section_is_reported_with_the_nearest() -> None:
    from daemon.config import unknown_variables

    env = {
        "WEBHOOKD_DELIVERYCONCURRENCY": "5",
        "WEBHOOKD_ZZZ": "1",
        "WEBHOOKD_CONFIG": "/x.toml",
        "WEBHOOKD_DELIVERY_CONCURRENCY": "5",
    }

    assert unknown_variables(env) == [
        ("WEBHOOKD_DELIVERYCONCURRENCY", "WEBHOOKD_DELIVERY_CONCURRENCY"),
        ("WEBHOOKD_ZZZ", None),
    ]
    assert load_env(**env).delivery.concurrency == 5  # a warning, not an error


def test_environment_value_that_is_not_utf8_names_the_key_without_the_value() -> None:
    err = config_error(None, {"WEBHOOKD_DATABASE_URL": "postgresql://h:s3cret\udcff@db/x"})

    assert err.key == "database.url"
    assert "UTF-8" in err.why
    assert "s3cret" not in str(err)


def test_a_home_directory_that_cannot_be_expanded_is_one_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "webhookd.toml"
    path.write_text('[database]\nembedded_dir = "~nosuchuser0/pg"\n')
    with pytest.raises(ConfigError, match=r"database.embedded_dir: cannot expand"):
        load_config(path, {})
