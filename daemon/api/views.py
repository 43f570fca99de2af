"""Rows as Svix's shapes: ApplicationOut, EndpointOut, MessageOut, MessageAttemptOut,
EventTypeOut. Field names are camelCase as Svix's; webhookd's own settings ride along under
their own names (clients that do not know them ignore them)."""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Any, Final

import orjson

if TYPE_CHECKING:
    from daemon.store import Record

# Svix's MessageStatus of an attempt: 0 success, 2 fail (an attempt is recorded once finished).
STATUS_TEXT: Final = {0: "success", 1: "pending", 2: "fail", 3: "sending"}
# Ids webhookd makes (the outbox default, or one derived from an idempotency key); any other
# msg_id was chosen by whoever sent the message, which is what Svix calls its eventId.
GENERATED_MSG_ID: Final = re.compile(r"msg_[0-9a-f]{32}")


def json_value(value: Any) -> Any:
    """A jsonb column as asyncpg gives it (text) as a Python value."""
    return orjson.loads(value) if isinstance(value, str | bytes) else value


def app_out(rec: Record) -> dict[str, Any]:
    return {
        "id": rec["id"],
        "uid": rec["uid"],
        "name": rec["name"],
        "metadata": json_value(rec["metadata"]),
        "throttleRate": None,
        "createdAt": rec["created_at"],
        "updatedAt": rec["updated_at"],
    }


def throttle_rate(rate_per_s: float | None) -> int | None:
    """Svix's whole messages per second; a rate set with the CLI (`100/min`) rounds up."""
    return None if rate_per_s is None else max(1, min(65535, math.ceil(rate_per_s - 1e-9)))


def endpoint_out(rec: Record) -> dict[str, Any]:
    event_types = list(rec["event_types"]) or None
    rate = throttle_rate(rec["rate_per_s"])
    schedule = rec["retry_schedule_ms"]
    return {
        "id": rec["id"],
        "uid": rec["uid"],
        "url": rec["url"],
        "description": rec["description"],
        "metadata": json_value(rec["metadata"]),
        "disabled": not rec["enabled"],
        "eventTypes": event_types,
        "filterTypes": event_types,
        "channels": None,
        "throttleRate": rate,
        "rateLimit": rate,
        "version": 1,
        "createdAt": rec["created_at"],
        "updatedAt": rec["updated_at"],
        # webhookd's own
        "disabledReason": rec["disabled_reason"],
        "ratePerSecond": rec["rate_per_s"],
        "burst": rec["burst"],
        "maxInFlight": rec["max_in_flight"],
        "timeoutMs": rec["timeout_ms"],
        "retryScheduleMs": None if schedule is None else list(schedule),
        "signatureScheme": rec["signature_scheme"],
        "payloadFormat": rec["payload_format"],
        "payloadTemplate": rec["payload_template"],
        "payloadTitle": rec["payload_title"],
    }


def message_out(rec: Record, *, with_content: bool = True) -> dict[str, Any]:
    """`payload` is the stored jsonb text, embedded as it is (no float rounding)."""
    payload = orjson.Fragment(rec["payload"]) if with_content else {}
    msg_id = rec["msg_id"]
    return {
        "id": msg_id,
        "eventId": None if GENERATED_MSG_ID.fullmatch(msg_id) else msg_id,
        "eventType": rec["event_type"],
        "payload": payload,
        "channels": None,
        "tags": None,
        "timestamp": rec["created_at"],
        "deliverAt": rec["deliver_after"],
    }


def logged_message_out(
    rec: Record, *, with_content: bool = True, with_app: bool = False
) -> dict[str, Any]:
    """A message of the message log: MessageOut and its status (as Svix's EndpointMessageOut
    has them; the svix SDK ignores fields its model lacks), and, in the log of every
    application, its application's id (None: a tenant with no application row)."""
    out = message_out(rec, with_content=with_content)
    out["status"] = rec["status"]
    out["statusText"] = STATUS_TEXT[rec["status"]]
    if with_app:
        out["appId"] = rec["app_id"]
    return out


def attempt_out(rec: Record) -> dict[str, Any]:
    ok = rec["status_code"] is not None and 200 <= rec["status_code"] < 300
    status = 0 if ok else 2
    body = rec["response_body"]
    response = bytes(body).decode("utf-8", "replace") if body else ""
    if not response and rec["error"]:
        response = rec["error"]
    manual = rec["attempt_base"] > 0 and rec["attempt"] == rec["attempt_base"] + 1
    return {
        "id": f"atmpt_{rec['id']}",
        "msgId": rec["msg_id"],
        "endpointId": rec["endpoint_id"],
        "url": rec["url"],
        "response": response,
        "responseStatusCode": rec["status_code"] or 0,
        "responseDurationMs": round(rec["duration_ms"]),
        "status": status,
        "statusText": STATUS_TEXT[status],
        "triggerType": 1 if manual else 0,
        "timestamp": rec["started_at"],
        # webhookd's own
        "attempt": rec["attempt"],
        "errorClass": rec["error_class"],
    }


def event_type_out(rec: Record) -> dict[str, Any]:
    return {
        "name": rec["name"],
        "description": rec["description"],
        "archived": rec["archived"],
        "deprecated": rec["deprecated"],
        "schemas": json_value(rec["schemas"]),
        "groupName": rec["group_name"],
        "featureFlags": None if rec["feature_flags"] is None else list(rec["feature_flags"]),
        "createdAt": rec["created_at"],
        "updatedAt": rec["updated_at"],
    }
