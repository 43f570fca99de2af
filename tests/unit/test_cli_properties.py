"""Property: whatever an operator types into the CLI's options, the config file or WEBHOOKD_*
variables, webhookd answers with success or one line on stderr and exit status 2 (1 for the
database being unreachable, which these tests arrange), never a traceback, and never repeats a
secret: the --secret value, a header value, the database password.

The CLI runs in-process through its main function; the database URL points at a closed port,
so a command whose input is good fails fast at connecting."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from unittest import mock

import pytest
import structlog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daemon.cli import main
from daemon.config import Config, config_as_dict

SECRET = "Sx9SECRETq"
HEADER = "Hx9HEADERq"
PASSWORD = "Px9PASSWORDq"
UNREACHABLE = f"postgresql://hook:{PASSWORD}@127.0.0.1:1/x"
EXAMPLES = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)

# Free text, sometimes with a byte that is not UTF-8 (a lone surrogate in argv), sometimes
# something close to what an option expects.
_odd = st.sampled_from(["", " ", "\udcff", "\x00", "\r\n", "-1", "0", "1e300", "nan", "∞"])
_UNITS = ["", " ", "s", "ms", "m", "h", "d", "/s", "/min", "/d", "KiB", "GiB", "e300"]
_numbers = st.tuples(
    st.sampled_from(["", "-", "+"]),
    st.one_of(st.integers(0, 10**30), st.floats(0, 1e30, allow_nan=False)),
    st.sampled_from(_UNITS),
).map(lambda t: f"{t[0]}{t[1]}{t[2]}")
_mixed = st.tuples(st.text(max_size=8), _odd).map("".join)
text = st.one_of(st.text(max_size=30), _numbers, _odd, _mixed)
positional = text.filter(lambda s: not s.startswith("-"))
# What each kind of option expects, at any size: the edges are where the bugs were.
_big = st.one_of(st.integers(0, 100), st.integers(0, 10**30))
durations = st.one_of(
    text,
    st.tuples(_big, st.sampled_from(["ms", "s", "m", "h", "d", ""])).map(lambda t: f"{t[0]}{t[1]}"),
)
counts = st.one_of(text, _big.map(str))
rates = st.one_of(
    text, st.tuples(_big, st.sampled_from(["/s", "/min", "/d"])).map(lambda t: f"{t[0]}{t[1]}")
)
_offset = st.sampled_from(["", "Z", "+01:00", "-01:00", "+14:00"])
times = st.one_of(
    durations,
    st.tuples(st.datetimes().map(lambda d: d.isoformat()), _offset).map("".join),
)


@st.composite
def header(draw: st.DrawFn) -> str:
    name = draw(st.text(max_size=12).filter(lambda s: ":" not in s and "x9" not in s))
    return f"{name}:{draw(st.sampled_from(['', ' ']))}{HEADER}{draw(text)}"


_ENDPOINT_OPTIONS = {
    "--rate": rates,
    "--burst": counts,
    "--max-in-flight": counts,
    "--timeout": durations,
    "--retry-schedule": st.one_of(text, st.lists(durations, max_size=60).map(",".join)),
    "--header": header(),
    "--secret": text.map(lambda s: SECRET + s),
    "--id": text,
    "--event-type": text,
    "--tenant": text,
    "--signature": st.one_of(text, text.map(lambda s: f"hmac-sha256-hex:{s}")),
}
_WINDOW_OPTIONS = {"--since": times, "--until": times, "--limit": counts}


@st.composite
def options(draw: st.DrawFn, choices: dict[str, st.SearchStrategy[str]]) -> list[str]:
    names = draw(st.lists(st.sampled_from(sorted(choices)), max_size=4))
    return [f"{name}={draw(choices[name])}" for name in names]


@st.composite
def command(draw: st.DrawFn) -> list[str]:
    kind = draw(
        st.sampled_from(
            [
                "add",
                "update",
                "rotate",
                "list",
                "endpoints",
                "dead",
                "recover",
                "prune",
                "stats",
                "send",
            ]
        )
    )
    if kind == "add":
        return ["endpoint", "add", draw(positional), *draw(options(_ENDPOINT_OPTIONS))]
    if kind == "update":
        return ["endpoint", "update", draw(positional), *draw(options(_ENDPOINT_OPTIONS))]
    if kind == "rotate":
        extra = draw(options({"--grace": durations, "--secret": text.map(lambda s: SECRET + s)}))
        return ["endpoint", "rotate-secret", "ep_x", *extra]
    if kind == "list":
        return ["message", "list", *draw(options(_WINDOW_OPTIONS | {"--status": text}))]
    if kind == "endpoints":
        pages = {"--limit": counts, "--after": text, "--tenant": text}
        return ["endpoint", "list", *draw(options(pages))]
    if kind == "dead":
        return ["dead-letters", *draw(options(_WINDOW_OPTIONS))]
    if kind == "recover":
        return ["recover", "--endpoint=ep_x", f"--since={draw(times)}"]
    if kind == "prune":
        return ["prune", *draw(options({"--older-than": durations, "--batch-size": counts}))]
    if kind == "stats":
        return ["stats", *draw(options({"--window": durations}))]
    return ["send", "ep_x", *draw(options({"--event-type": text, "--data": text}))]


@contextlib.contextmanager
def fresh_logging() -> Iterator[None]:
    """main() configures logging onto the captured stream: put it back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        yield
    finally:
        structlog.reset_defaults()
        root.handlers[:] = handlers
        root.setLevel(level)


def run(argv: Sequence[str], env: dict[str, str]) -> tuple[int, str, str]:
    """`webhookd ARGV` in-process: (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    clean = {k: v for k, v in os.environ.items() if not k.startswith("WEBHOOKD_")}
    with (
        mock.patch.dict(os.environ, clean | env, clear=True),
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
        fresh_logging(),
    ):
        try:
            code = main(list(argv))
        except SystemExit as exc:  # argparse
            code = exc.code if isinstance(exc.code, int) else 2
    return code, out.getvalue(), err.getvalue()


def assert_one_clear_line(code: int, out: str, err: str, *, allowed: Sequence[int]) -> None:
    assert code in allowed, (code, err)
    if code != 0:
        assert err.startswith("webhookd: error: "), err
        assert err.count("\n") == 1 and err.endswith("\n"), err
        if code == 1:
            assert "database unavailable" in err, err
    assert "Traceback" not in out + err
    for secret in (SECRET, HEADER, PASSWORD):
        assert secret not in out + err, (secret, out, err)


pytestmark = pytest.mark.usefixtures("no_system_config")


@EXAMPLES
@given(argv=command())
def test_any_cli_option_value_gets_success_or_one_clear_line(argv: list[str]) -> None:
    code, out, err = run(argv, {"WEBHOOKD_DATABASE_URL": UNREACHABLE})

    assert_one_clear_line(code, out, err, allowed=(1, 2))


# --- the config loader, through `check-config` ------------------------------------------------

KEYS = [(s, k) for s, keys in config_as_dict(Config()).items() for k in keys if k != "url"]
_toml_values = st.one_of(
    text,
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(),
    st.booleans(),
    st.lists(text, max_size=4),
)


def toml_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return (
            "nan"
            if math.isnan(value)
            else ("inf" if value > 0 else "-inf")
            if math.isinf(value)
            else repr(value)
        )
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, str):
        return json.dumps(value.encode("utf-8", "replace").decode(), ensure_ascii=False)
    return str(value)


_hosts = st.tuples(text, st.sampled_from(["", ":", ":abc", ":5432", ":99999", ",h2:x"])).map(
    "".join
)


@st.composite
def settings_given(draw: st.DrawFn) -> dict[tuple[str, str], object]:
    chosen = draw(st.lists(st.sampled_from(KEYS), max_size=4, unique=True))
    return {key: draw(_toml_values) for key in chosen}


@EXAMPLES
@given(values=settings_given(), host=_hosts, in_env=st.booleans())
def test_any_config_value_gets_success_or_one_clear_line(
    values: dict[tuple[str, str], object], host: str, in_env: bool, tmp_path: Path
) -> None:
    url = f"postgresql://hook:{PASSWORD}@{host}/hooks"
    env: dict[str, str] = {}
    sections: dict[str, list[str]] = {"database": [f"url = {toml_value(url)}"]}
    for (section, key), value in values.items():
        if in_env and isinstance(value, str) and "\x00" not in value:  # no NUL in environ
            env[f"WEBHOOKD_{section}_{key}".upper()] = value
        else:
            sections.setdefault(section, []).append(f"{key} = {toml_value(value)}")
    path = tmp_path / "webhookd.toml"
    path.write_text("".join(f"[{s}]\n" + "\n".join(lines) + "\n" for s, lines in sections.items()))

    code, out, err = run(["--config", str(path), "check-config"], env)

    assert_one_clear_line(code, out, err, allowed=(0, 2))
    if code == 0:
        assert err == ""
        assert out.endswith("configuration ok\n")
