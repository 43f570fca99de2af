"""Slack, Discord and Teams settings of endpoints through the API: webhookd's own fields
(payloadFormat, payloadTemplate, payloadTitle), checked as `endpoint add | update` checks them."""

from __future__ import annotations

from typing import Any

import pytest

from tests.api_support import ApiUnderTest, make_app, make_endpoint

TEMPLATE = "🚗 {{payload.device_name}} entered {{payload.geofence_name}}"


async def test_chat_fields_are_created_patched_kept_and_reset_by_put(api: ApiUnderTest) -> None:
    await make_app(api, "acme")
    made = await make_endpoint(
        api, "acme", "https://example.com/teams", payloadFormat="teams",
        payloadTemplate=TEMPLATE, payloadTitle="Alert {{event_type}}", uid="t",
    )  # fmt: skip
    assert (made["payloadFormat"], made["payloadTemplate"], made["payloadTitle"]) == (
        "teams", TEMPLATE, "Alert {{event_type}}",
    )  # fmt: skip
    path = f"/api/v1/app/acme/endpoint/{made['id']}"
    patched = await api.call("PATCH", path, {"description": "d"})
    assert patched.status == 200 and patched.body["payloadTemplate"] == TEMPLATE
    slack = await api.call("PATCH", path, {"payloadFormat": "slack"})
    assert slack.status == 200, slack.body
    assert (slack.body["payloadFormat"], slack.body["payloadTitle"]) == ("slack", None)
    put = await api.call("PUT", path, {"url": "https://example.com/raw"})
    assert put.status == 200
    assert (put.body["payloadFormat"], put.body["payloadTemplate"]) == ("raw", None)
    plain = await make_endpoint(api, "acme", "https://example.com/plain")
    assert (plain["payloadFormat"], plain["payloadTemplate"], plain["payloadTitle"]) == (
        "raw", None, None,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("fields", "loc", "says"),
    [
        ({"payloadFormat": "email"}, "payloadFormat", "must be one of raw, slack"),
        ({"payloadFormat": "slack", "payloadTemplate": "hi {{payload.x"}, "payloadTemplate",
         "at character 4: '{{' is not closed by '}}'"),
        ({"payloadFormat": "slack", "payloadTemplate": "{{trigger.x}}"}, "payloadTemplate",
         "unknown name 'trigger'"),
        ({"payloadTemplate": "{{msg_id}}"}, "payloadTemplate", "needs --format"),
        ({"payloadFormat": "discord", "payloadTitle": "t"}, "payloadTitle", "only --format teams"),
    ],
)  # fmt: skip
async def test_a_bad_chat_setting_is_a_422_naming_the_field_and_where(
    api: ApiUnderTest, fields: dict[str, Any], loc: str, says: str
) -> None:
    await make_app(api, "acme")
    reply = await api.post("/api/v1/app/acme/endpoint", {"url": "https://example.com/h", **fields})
    assert reply.status == 422, reply.body
    [problem] = reply.body["detail"]
    assert problem["loc"] == ["body", loc] and says in problem["msg"], problem
