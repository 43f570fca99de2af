"""The files operators install next to the daemon: Prometheus alert rules, the Grafana dashboard,
the systemd unit and the Dockerfile. Checked with the real tools when they are installed
(promtool, systemd-analyze, hadolint), and always for structure and for metric names that exist
in `daemon.metrics.Metrics`: a renamed metric must not leave a silent alert or an empty panel."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from daemon.cli import build_parser
from daemon.metrics import Metrics

REPO = Path(__file__).resolve().parents[2]
ALERTS = REPO / "config" / "prometheus" / "alerts.yml"
ALERTS_TEST = REPO / "config" / "prometheus" / "alerts_test.yml"
DASHBOARD = REPO / "config" / "grafana" / "webhookd.json"
UNIT = REPO / "systemd" / "webhookd.service"
DOCKERFILE = REPO / "Dockerfile"

# Series Prometheus makes itself, not webhookd.
PROMETHEUS_SERIES = frozenset({"up"})
_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_VARIABLES = re.compile(r"\$\{[^}]*\}|\$\w+")
_MATCHERS = re.compile(r"\{[^{}]*\}")
_RANGES = re.compile(r"\[[^\]]*\]")
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
# A whole identifier (not part of a number, variable or longer name) that is not a call.
_IDENT = re.compile(r"(?<![\w:$.])([a-zA-Z_:][\w:]*)(?![\w:])(?!\s*\()")
_KEYWORDS = frozenset({"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring"})
_KEYWORDS |= {"group_left", "group_right", "inf", "nan"}


def series_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (functions, keywords, label names,
    strings, ranges and Grafana variables removed)."""
    text = _VARIABLES.sub("", _STRINGS.sub('""', expr))
    text = _GROUPING.sub("", _RANGES.sub("", _MATCHERS.sub("", text)))
    return {name for name in _IDENT.findall(text) if name.lower() not in _KEYWORDS}


def exported_names() -> set[str]:
    """Every series name webhookd can export (per-endpoint series included)."""
    suffixes = {
        "counter": ("_total", "_created"),
        "gauge": ("",),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
        "summary": ("", "_sum", "_count", "_created"),
    }
    families = Metrics(per_endpoint=True).registry.collect()
    return {f.name + suffix for f in families for suffix in suffixes.get(f.type, ("",))}


def test_series_names_finds_metrics_and_nothing_else() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (le) (rate(a_bucket{job="$job", x=~"y(z)"}[5m])))'
        " / ignoring(x) group_left b_total offset 1h > 1e3 and absent(up{job='w'})"
        " or sum without (instance) (deriv(c[15m:1m])) > bool 0.5"
    )

    assert series_names(expr) == {"a_bucket", "b_total", "up", "c"}


# --- Prometheus alert rules ----------------------------------------------------------------


def alert_rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(ALERTS.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def test_alert_rules_are_complete() -> None:
    rules = alert_rules()

    assert rules
    for rule in rules:
        name = rule.get("alert", "")
        assert re.fullmatch(r"Webhookd[A-Z]\w+", name), rule
        assert rule["expr"].strip(), name
        assert re.fullmatch(r"\d+[smh]", rule["for"]), name
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, name
        assert rule["annotations"]["summary"].strip(), name
        assert rule["annotations"]["description"].strip(), name


def test_alert_rules_cover_what_operators_must_hear_about() -> None:
    names = {rule["alert"] for rule in alert_rules()}

    assert names >= {
        "WebhookdDown",
        "WebhookdBacklogGrowing",
        "WebhookdOldestDueDeliveryTooOld",
        "WebhookdEndpointSuccessRateLow",
        "WebhookdDeadLettersIncreasing",
        "WebhookdCircuitBreakersOpen",
        "WebhookdEndpointsAutoDisabled",
    }
    [down] = [r for r in alert_rules() if r["alert"] == "WebhookdDown"]
    assert 'absent(up{job="webhookd"})' in down["expr"] and "== 0" in down["expr"]


def test_per_endpoint_alert_says_it_needs_per_endpoint_labels() -> None:
    [rule] = [r for r in alert_rules() if r["alert"] == "WebhookdEndpointSuccessRateLow"]

    assert "webhookd_endpoint_attempts_total" in rule["expr"]
    assert "metrics.per_endpoint_labels = true" in rule["annotations"]["description"]


def test_alert_rules_use_only_metrics_webhookd_exports() -> None:
    exported = exported_names() | PROMETHEUS_SERIES
    for rule in alert_rules():
        used = series_names(rule["expr"])
        assert used, rule["alert"]
        assert used <= exported, f"{rule['alert']}: unknown {sorted(used - exported)}"


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
def test_promtool_accepts_the_rules_and_their_unit_tests_pass() -> None:
    promtool = shutil.which("promtool")
    assert promtool is not None
    check = subprocess.run(
        [promtool, "check", "rules", str(ALERTS)], capture_output=True, text=True, check=False
    )
    tests = subprocess.run(
        [promtool, "test", "rules", str(ALERTS_TEST)],
        capture_output=True,
        text=True,
        check=False,
        cwd=ALERTS_TEST.parent,
    )

    assert check.returncode == 0, check.stdout + check.stderr
    assert tests.returncode == 0, tests.stdout + tests.stderr


# --- Grafana dashboard ---------------------------------------------------------------------


def dashboard_panels() -> list[dict[str, Any]]:
    doc = json.loads(DASHBOARD.read_text())
    flat = []
    for panel in doc["panels"]:
        flat.append(panel)
        flat.extend(panel.get("panels", []))
    return flat


def dashboard_exprs() -> list[str]:
    return [t["expr"] for p in dashboard_panels() for t in p.get("targets", [])]


def test_dashboard_is_valid_and_laid_out() -> None:
    doc = json.loads(DASHBOARD.read_text())
    panels = dashboard_panels()

    assert doc["uid"] == "webhookd" and doc["title"] == "webhookd"
    assert {v["name"] for v in doc["templating"]["list"]} >= {"datasource", "job", "instance"}
    assert len({p["id"] for p in panels}) == len(panels)
    for panel in panels:
        pos = panel["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, panel["title"]
        if panel["type"] != "row":
            assert panel["targets"] and panel["datasource"]["uid"] == "${datasource}"
            assert all(t["expr"].strip() and t["refId"] for t in panel["targets"])


def test_dashboard_panels_do_not_overlap() -> None:
    """Top-level panels and rows (a collapsed row's panels sit where they would unfold)."""
    doc = json.loads(DASHBOARD.read_text())
    boxes = [(p["title"], p["gridPos"]) for p in doc["panels"]]

    for i, (title, a) in enumerate(boxes):
        for other, b in boxes[i + 1 :]:
            apart = (
                a["x"] + a["w"] <= b["x"]
                or b["x"] + b["w"] <= a["x"]
                or a["y"] + a["h"] <= b["y"]
                or b["y"] + b["h"] <= a["y"]
            )
            assert apart, f"{title!r} overlaps {other!r}"


def test_dashboard_queries_only_metrics_webhookd_exports() -> None:
    exported = exported_names() | PROMETHEUS_SERIES
    for expr in dashboard_exprs():
        used = series_names(expr)
        assert used and used <= exported, f"{expr}: unknown {sorted(used - exported)}"


def test_dashboard_shows_every_metric() -> None:
    shown = {name for expr in dashboard_exprs() for name in series_names(expr)}
    families = {name for name in exported_names() if not name.endswith("_created")}
    # A histogram is shown when any of its series is.
    shown |= {n for n in families if re.sub(r"_(bucket|sum|count)$", "_bucket", n) in shown}
    shown |= {n for n in families if re.sub(r"_(bucket|sum|count)$", "_count", n) in shown}

    missing = families - shown
    assert not missing, f"metrics with no panel: {sorted(missing)}"


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed")
def test_promtool_parses_every_dashboard_query(tmp_path: Path) -> None:
    """Grafana's variables replaced by values, each query becomes a recording rule."""
    promtool = shutil.which("promtool")
    assert promtool is not None
    values = {
        "$__rate_interval": "5m",
        "$__range_s": "21600",
        "$__range": "6h",
        "$job": "webhookd",
        "$instance": ".*",
    }
    rules = []
    for n, expr in enumerate(dashboard_exprs()):
        # Longest first: $__range is the start of $__range_s.
        for variable, value in sorted(values.items(), key=lambda kv: -len(kv[0])):
            expr = expr.replace(variable, value)
        rules.append({"record": f"webhookd:dashboard_query_{n}", "expr": expr})
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))

    check = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, check=False
    )

    assert check.returncode == 0, check.stdout + check.stderr


# --- Alerts and dashboard together ---------------------------------------------------------

# Counters whose first count can come before a daemon's first scrape (the health check and the
# prune run at start), so the first value Prometheus sees is already counted: rules and panels
# counting their events must also count a series created in the window (its _created).
BORN_COUNTED = ("webhookd_endpoints_auto_disabled", "webhookd_pruned_rows")


@pytest.mark.parametrize("family", BORN_COUNTED)
def test_counts_of_counters_born_counted_include_new_series(family: str) -> None:
    fresh = {f.name: f for f in Metrics(per_endpoint=True).registry.collect()}
    assert fresh[family].type == "counter"
    exprs = [rule["expr"] for rule in alert_rules()] + dashboard_exprs()
    counting = [e for e in exprs if re.search(rf"increase\({family}_total\b", e)]

    assert counting, f"nothing counts {family}_total"
    for expr in counting:
        assert f"{family}_created" in expr, expr


def test_commands_named_in_alerts_and_panels_exist() -> None:
    """`webhookd ...` in an alert's annotations or a panel's description must parse."""
    texts = [v for rule in alert_rules() for v in rule["annotations"].values()]
    texts += [p.get("description", "") for p in dashboard_panels()]
    commands = [c for text in texts for c in re.findall(r"`(webhookd [^`]+)`", text)]
    parser = build_parser()

    assert any(c.startswith("webhookd endpoint enable ") for c in commands)
    for command in commands:
        argv = shlex.split(re.sub(r"\{\{[^}]*\}\}", "ep_x", command))[1:]
        try:
            parser.parse_args(argv)
        except SystemExit:
            pytest.fail(f"not a webhookd command: {command}")


# --- systemd unit ----------------------------------------------------------------------------


@pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed"
)
def test_systemd_unit_verifies(tmp_path: Path) -> None:
    """`systemd-analyze verify` also checks that ExecStart exists: the unit's path is where a
    production install puts webhookd, so a copy points at this virtualenv's executable."""
    webhookd = Path(sys.executable).with_name("webhookd")
    assert webhookd.exists()
    unit = UNIT.read_text()
    assert re.search(r"^ExecStart=/opt/webhookd/venv/bin/webhookd ", unit, re.MULTILINE)
    local = tmp_path / "webhookd.service"
    local.write_text(
        re.sub(r"^ExecStart=\S+", f"ExecStart={webhookd}", unit, count=1, flags=re.MULTILINE)
    )

    result = _verify(local)

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stderr == "", result.stderr  # unknown keys and bad values only warn


@pytest.mark.skipif(
    shutil.which("systemd-analyze") is None, reason="systemd-analyze is not installed"
)
def test_systemd_analyze_notices_a_broken_unit(tmp_path: Path) -> None:
    """The check above would catch a mistake: a misspelt key, or a missing executable."""
    unit = UNIT.read_text()
    misspelt = tmp_path / "misspelt.service"
    misspelt.write_text(unit.replace("NoNewPrivileges=", "NoNewPrivilege=", 1))
    missing = tmp_path / "missing.service"
    missing.write_text(unit)

    assert "Unknown key" in _verify(misspelt).stderr
    assert _verify(missing).returncode != 0


def _verify(unit: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(unit)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_systemd_unit_is_a_hardened_notify_service() -> None:
    unit = UNIT.read_text()
    settings = dict(
        line.split("=", 1) for line in unit.splitlines() if "=" in line and line[0] != "#"
    )

    assert settings["Type"] == "notify" and settings["KillSignal"] == "SIGTERM"
    assert settings["DynamicUser"] == "yes" and settings["NoNewPrivileges"] == "yes"
    assert settings["Restart"] == "on-failure"
    # Longer than the default delivery.drain_timeout (30s), so SIGKILL never cuts the drain.
    assert int(settings["TimeoutStopSec"].removesuffix("s")) > 30


# --- Dockerfile ------------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in joined.splitlines()]
    return [
        (parts[0].upper(), parts[1] if len(parts) > 1 else "")
        for parts in (line.split(None, 1) for line in lines if line and not line.startswith("#"))
    ]


def test_dockerfile_builds_in_stages_and_runs_unprivileged() -> None:
    steps = dockerfile_instructions()
    starts = [i for i, (op, _) in enumerate(steps) if op == "FROM"]
    final = steps[starts[-1] :]

    assert len(starts) >= 2, "multi-stage: build tools stay out of the image"
    assert any(op == "COPY" and args.startswith("--from=") for op, args in final)
    users = [args for op, args in final if op == "USER"]
    assert users and users[-1].split(":")[0] not in {"root", "0"}
    assert ("STOPSIGNAL", "SIGTERM") in final
    [healthcheck] = [args for op, args in final if op == "HEALTHCHECK"]
    assert "/healthz" in healthcheck
    assert any(op == "ENTRYPOINT" and "webhookd" in args for op, args in final)


@pytest.mark.skipif(shutil.which("hadolint") is None, reason="hadolint is not installed")
def test_hadolint_accepts_the_dockerfile() -> None:
    hadolint = shutil.which("hadolint")
    assert hadolint is not None
    result = subprocess.run(
        [hadolint, str(DOCKERFILE)], capture_output=True, text=True, check=False, timeout=60
    )

    assert result.returncode == 0, result.stdout + result.stderr
