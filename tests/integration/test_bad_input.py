"""Bad input to the real executable: one line naming the option, exit status 2, never a
traceback, never a secret or header value repeated back; and what cannot be delivered is
refused where it is entered."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from daemon.config import load_config
from daemon.store import StoreError
from tests.cli_support import Cli, Result, assert_one_line_error
from tests.integration.conftest import Harness

SECRET = "s3cr3t-SHOULD-NOT-SHOW"
TOKEN = "tok-SHOULD-NOT-SHOW"
NOT_UTF8 = "\udcff"  # the byte 0xff in argv, as Python decodes it


def refused(result: Result, *names: str) -> None:
    assert_one_line_error(result, 2, *names)
    for value in (SECRET, TOKEN):
        assert value not in result.err + result.out


async def test_bad_endpoint_options_get_one_line_naming_the_option(cli: Cli) -> None:
    url = "https://example.com/hook"
    cases: list[tuple[tuple[str, ...], tuple[str, ...]]] = [
        (("endpoint", "add", "https://[::1/x"), ("url", "not a valid URL")),
        (("endpoint", "add", "https://exa mple.com/x"), ("url", "spaces")),
        (("endpoint", "add", "https://-bad-.example.com/x"), ("url", "invalid host name")),
        (("endpoint", "add", url, "--id", ""), ("--id", "must not be empty")),
        (("endpoint", "add", url, "--id", "has space"), ("--id", "spaces")),
        (("endpoint", "add", url, "--event-type", ""), ("--event-type", "must not be empty")),
        (("endpoint", "add", url, "--event-type", "a\tb"), ("--event-type", "printable")),
        (("endpoint", "add", url, "--rate", "3000000000/s"), ("--rate", "100000/s")),
        (("endpoint", "add", url, "--rate", "1/s", "--burst", "99999999999"), ("--burst",)),
        (("endpoint", "add", url, "--max-in-flight", "10001"), ("--max-in-flight", "10000")),
        (("endpoint", "add", url, "--timeout", "11m"), ("--timeout", "at most 10m")),
        (("endpoint", "add", url, "--retry-schedule", "1s,31d"), ("--retry-schedule", "30d")),
        (
            ("endpoint", "add", url, "--header", f"Authorization: Bearer {TOKEN}{NOT_UTF8}"),
            ("--header", "UTF-8"),
        ),
        (("endpoint", "add", url, "--header", f"Bearer {TOKEN}"), ("--header", "Name: value")),
        (
            ("endpoint", "add", url, "--header", f"X-Key: {TOKEN}\x1b[31m"),
            ("--header", "control character"),
        ),
        (("endpoint", "add", url, "--secret", f"{SECRET}{NOT_UTF8}"), ("--secret", "UTF-8")),
        (
            (
                "endpoint",
                "add",
                url,
                "--signature",
                "hmac-sha256-hex:X-Hub-Signature",
                "--header",
                f"x-hub-signature: {TOKEN}",
            ),
            ("--header", "signature header"),
        ),
        (("endpoint", "update", "ep_x", "--burst", "1000001"), ("--burst",)),
        (("endpoint", "update", "ep_x", "--header", f"Bearer {TOKEN}"), ("--header",)),
        (("endpoint", "rotate-secret", "ep_x", "--grace", "999999999d"), ("--grace",)),
        (("message", "list", "--since", "999999999d"), ("--since", "at most 36500d")),
        (("message", "list", "--until", "0001-01-01T00:00:00+01:00"), ("--until", "year")),
        (("dead-letters", "--since", "999999999d"), ("--since",)),
        (("recover", "--endpoint", "ep_x", "--since", "999999999d"), ("--since",)),
        (("message", "list", "--limit", "9" * 30), ("--limit",)),
        (("stats", "--window", "999999999d"), ("--window",)),
        (("prune", "--older-than", "999999999d"), ("--older-than",)),
    ]
    results = await asyncio.gather(*(cli(*args) for args, _ in cases))
    for (args, names), result in zip(cases, results, strict=True):
        try:
            refused(result, *names)
        except AssertionError as exc:
            raise AssertionError(f"webhookd {' '.join(args)!r}: {exc}") from None


async def test_a_database_url_with_a_bad_port_names_the_key_not_the_password(cli: Cli) -> None:
    dsn = f"postgresql://hook:{SECRET}@localhost:abc/hooks"

    result = await cli("endpoint", "list", dsn=dsn)

    refused(result, "database.url", "port")


async def test_endpoint_update_refuses_a_custom_header_named_like_the_signature_header(
    cli: Cli,
) -> None:
    ep_id = await cli.add(
        "https://example.com/h", "--signature", "hmac-sha256-hex:X-Sig", "--header", "X-Key: 1"
    )

    same, other_case = await asyncio.gather(
        cli("endpoint", "update", ep_id, "--header", f"X-SIG: {TOKEN}"),
        cli("endpoint", "update", ep_id, "--signature", "hmac-sha256-hex:x-key"),
    )

    refused(same, "--header", "X-SIG", "signature header")
    refused(other_case, "--header", "X-Key", "signature header")
    for update in (
        ("--url", "https://[::1/x"),
        ("--url", "https://exa mple.com/x"),
        ("--event-type", ""),
        ("--tenant", ""),
    ):
        refused(await cli("endpoint", "update", ep_id, *update), update[0].lstrip("-"))


async def test_unknown_webhookd_variable_is_warned_about_with_a_suggestion(cli: Cli) -> None:
    result = await cli("check-config", env={"WEBHOOKD_DELIVERYCONCURRENCY": "5"})

    assert result.code == 0, result.err
    assert "config.unknown_variable" in result.err
    assert "WEBHOOKD_DELIVERYCONCURRENCY" in result.err
    assert "WEBHOOKD_DELIVERY_CONCURRENCY" in result.err


def test_every_webhookd_variable_the_project_reads_is_known() -> None:
    """OTHER_VARIABLES lists the variables that are not config keys; none may be warned about."""
    from daemon.config import OTHER_VARIABLES, unknown_variables

    repo = Path(__file__).resolve().parents[2]
    texts = [p.read_text() for d in ("daemon", "bench") for p in (repo / d).rglob("*.py")]
    texts += [(repo / "tests" / "conftest.py").read_text(), (repo / "Makefile").read_text()]
    import re

    used = {name for text in texts for name in re.findall(r"WEBHOOKD_[A-Z0-9_]*[A-Z0-9]", text)}
    used -= {"WEBHOOKD_"}
    assert unknown_variables(dict.fromkeys(used, "")) == []
    assert {"WEBHOOKD_CONFIG", "WEBHOOKD_SECRET_KEYS"} <= OTHER_VARIABLES
    load_config(None, {"HOME": "/nowhere", **dict.fromkeys(OTHER_VARIABLES, "x")})


async def test_a_value_the_database_cannot_take_is_not_repeated_in_the_error(
    harness: Harness,
) -> None:
    """asyncpg's message repeats the value ("query argument $6: 's3cr3t...'"), and the CLI
    prints the error: the last line of defence behind the checks of each option."""
    with pytest.raises(StoreError) as too_big:
        await harness.store.execute_raw("SELECT $1::int4", 99999999999)
    with pytest.raises(StoreError) as not_utf8:
        await harness.store.execute_raw("SELECT $1::text", f"{SECRET}{NOT_UTF8}")

    assert str(too_big.value) == (
        "a value the database cannot take (query argument $1: value out of int32 range;"
        " value not shown)"
    )
    assert "99999999999" not in str(too_big.value)
    assert SECRET not in str(not_utf8.value)
    assert "query argument $1: not valid" in str(not_utf8.value)
