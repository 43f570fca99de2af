"""Slack, Discord and Teams endpoints against real receivers and the real `webhookd` command:
the rendered body is what is sent and signed, raw endpoints are untouched, templates that do
not parse are refused where they are given."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest

from daemon.models import SignatureSpec
from daemon.service import Service
from tests.cli_support import Cli
from tests.integration.conftest import Harness, Receiver
from tests.receivers import spatialflow_receiver_accepts

SEED_EVENT = {
    "event_type": "entry",
    "geofence_name": "Downtown Office",
    "device_name": "John's Phone",
    "location": {"latitude": 37.7749, "longitude": -122.4194},
}
SLACK_TEMPLATE = "🚗 {{payload.device_name}} entered {{payload.geofence_name}}"


def missing_placeholders(service: Service) -> float:
    return service.metrics.template_missing._value.get()  # type: ignore[no-any-return]


async def test_a_slack_endpoint_gets_the_rendered_message_signed_over_what_was_sent(
    harness: Harness, receiver: Receiver, run_daemon: Any
) -> None:
    secret = "sf-secret"
    spec = SignatureSpec("hmac-sha256-hex", "X-SF-Signature", "sha256=")
    slack, _ = await harness.endpoint(
        receiver.url("/slack"),
        signature=spec,
        secret=secret,
        payload_format="slack",
        template=SLACK_TEMPLATE + " {{payload.nowhere}}",
    )
    raw, _ = await harness.endpoint(receiver.url("/raw"))
    async with run_daemon() as service:
        await harness.enqueue(SEED_EVENT, endpoint_id=slack, event_type="geofence.entry")
        await harness.enqueue(SEED_EVENT, endpoint_id=raw, event_type="geofence.entry")
        await harness.wait_status("delivered", 2)
        assert missing_placeholders(service) == 1
    [hit] = receiver.at("/slack")
    assert orjson.loads(hit.body) == {"text": "🚗 John's Phone entered Downtown Office "}
    assert hit.headers["Content-Type"] == "application/json"
    assert spatialflow_receiver_accepts(secret, hit.body, hit.headers["X-SF-Signature"])
    [untouched] = receiver.at("/raw")
    assert orjson.loads(untouched.body) == SEED_EVENT


async def test_discord_and_teams_endpoints_get_their_own_shapes(
    harness: Harness, receiver: Receiver, run_daemon: Any
) -> None:
    discord, _ = await harness.endpoint(
        receiver.url("/discord"),
        payload_format="discord",
        template="**Device Alert**: {{payload.device_name}} at {{payload.location.latitude}},"
        " {{payload.location.longitude}}",
    )
    teams, _ = await harness.endpoint(
        receiver.url("/teams"),
        payload_format="teams",
        template="{{payload.device_name}} entered {{payload.geofence_name}}",
        title="Geofence Entry Alert",
    )
    async with run_daemon():
        for ep in (discord, teams):
            await harness.enqueue(SEED_EVENT, endpoint_id=ep)
        await harness.wait_status("delivered", 2)
    [d] = receiver.at("/discord")
    assert orjson.loads(d.body) == {
        "content": "**Device Alert**: John's Phone at 37.7749, -122.4194"
    }
    [t] = receiver.at("/teams")
    assert orjson.loads(t.body) == {
        "@type": "MessageCard",
        "@context": "https://schema.org/extensions",
        "summary": "Geofence Entry Alert",
        "title": "Geofence Entry Alert",
        "text": "John's Phone entered Downtown Office",
    }


async def test_a_template_changed_by_update_is_used_for_the_next_delivery(
    cli: Cli, harness: Harness, receiver: Receiver, run_daemon: Any
) -> None:
    ep = await cli.add(receiver.url("/hook"), "--format", "slack", "--template", "one {{msg_id}}")
    async with run_daemon():
        await harness.enqueue(endpoint_id=ep, msg_id="m1")
        await receiver.wait_hits(1)
        result = await cli("endpoint", "update", ep, "--template", "two {{event_type}}")
        assert result.code == 0, result.err
        await harness.enqueue(endpoint_id=ep, msg_id="m2")
        await receiver.wait_hits(2)
    assert [orjson.loads(h.body)["text"] for h in receiver.hits] == ["one m1", "two test.event"]
    shown = (await cli("endpoint", "show", ep, "--json")).json()
    assert (shown["format"], shown["template"], shown["title"]) == (
        "slack",
        "two {{event_type}}",
        None,
    )
    raw = await cli("endpoint", "update", ep, "--format", "raw")
    assert raw.code == 0, raw.err
    shown = (await cli("endpoint", "show", ep, "--json")).json()
    assert (shown["format"], shown["template"]) == ("raw", None)


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (
            ("--format", "slack", "--template", "hi {{payload.x"),
            "webhookd: error: --template: at character 4: '{{' is not closed by '}}'",
        ),
        (("--format", "slack", "--template", "{{ }}"), "empty placeholder"),
        (("--format", "teams", "--title", "{{trigger.x}}"), "--title: at character 1: unknown"),
        (("--template", "{{msg_id}}"), "--template: needs --format slack, discord or teams"),
        (("--format", "slack", "--title", "x"), "--title: only --format teams has a title"),
        (("--format", "email"), "invalid choice: 'email'"),
    ],
)
async def test_a_bad_template_is_refused_at_add_with_one_line(
    cli: Cli, args: tuple[str, ...], line: str
) -> None:
    result = await cli("endpoint", "add", "https://example.com/h", *args)
    assert result.code == 2
    [err] = result.err_lines
    assert line in err and "Traceback" not in result.err


async def test_update_and_import_refuse_a_bad_template_naming_where(
    cli: Cli, tmp_path: Path
) -> None:
    ep = await cli.add("https://example.com/h", "--format", "discord")
    bad = await cli("endpoint", "update", ep, "--template", "{{payload.a}} {{ nope }}")
    assert bad.code == 2
    assert bad.err_lines == [
        "webhookd: error: --template: at character 15: unknown name 'nope' in {{nope}}"
        " (known: payload, event_type, msg_id, created_at)"
    ]
    lines = tmp_path / "endpoints.jsonl"
    lines.write_text(
        '{"url": "https://example.com/a", "format": "slack", "template": "{{payload.a}}"}\n'
        '{"url": "https://example.com/b", "format": "slack", "template": "{{payload.b"}\n'
    )
    result = await cli("endpoint", "import", str(lines))
    assert result.code == 2
    assert result.err_lines == [
        "webhookd: error: line 2: template: at character 1: '{{' is not closed by '}}'"
    ]
    listed = (await cli("endpoint", "list", "--json")).json()["endpoints"]
    assert [e["id"] for e in listed] == [ep]
