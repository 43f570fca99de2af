"""The `components.schemas` of the OpenAPI document (JSON Schema 2020-12).

Shapes are Svix's (the SDKs parse them), with webhookd's own fields marked as such. Response
schemas say exactly what the server sends; schemathesis holds every response to them.
"""

from __future__ import annotations

from typing import Any, Final

ID: Final = {"type": "string", "pattern": "^[a-zA-Z0-9\\-_.]+$", "minLength": 1, "maxLength": 256}
STRING: Final = {"type": "string"}
NULLABLE_STRING: Final = {"type": ["string", "null"]}
NULLABLE_ID: Final = {**ID, "type": ["string", "null"]}
TIMESTAMP: Final = {"type": "string", "format": "date-time"}
NULLABLE_TIMESTAMP: Final = {"type": ["string", "null"], "format": "date-time"}
BOOLEAN: Final = {"type": "boolean"}
INTEGER: Final = {"type": "integer"}
NULLABLE_INTEGER: Final = {"type": ["integer", "null"]}
STRING_MAP: Final = {"type": "object", "additionalProperties": {"type": "string"}}
NAMES: Final = {"type": ["array", "null"], "items": ID, "uniqueItems": True}
ANY_OBJECT: Final = {"type": "object"}


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def obj(required: list[str], properties: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"type": "object", "required": required, "properties": properties, **extra}


def list_of(item: str) -> dict[str, Any]:
    return obj(
        ["data", "done", "iterator"],
        {
            "data": {"type": "array", "items": ref(item)},
            "iterator": NULLABLE_STRING,
            "prevIterator": NULLABLE_STRING,
            "done": BOOLEAN,
        },
    )


_ERRORS: Final[dict[str, Any]] = {
    "HttpErrorOut": obj(["code", "detail"], {"code": STRING, "detail": STRING}),
    "ValidationError": obj(
        ["loc", "msg", "type"],
        {"loc": {"type": "array", "items": STRING}, "msg": STRING, "type": STRING},
    ),
    "HTTPValidationError": obj(
        ["detail"], {"detail": {"type": "array", "items": ref("ValidationError")}}
    ),
    "EmptyResponse": obj([], {}),
    "OpenApiDocument": obj(["openapi", "info", "paths"], {"openapi": STRING}),
}

_APPS: Final[dict[str, Any]] = {
    "ApplicationIn": obj(
        ["name"],
        {
            "name": {"type": "string", "minLength": 1, "maxLength": 256},
            "uid": {**NULLABLE_ID, "description": "Fixed at creation: the tenant id"},
            "metadata": STRING_MAP,
            "throttleRate": {"type": ["integer", "null"], "description": "Not supported: null"},
        },
    ),
    "ApplicationPatch": obj(
        [],
        {
            "name": {"type": "string", "minLength": 1, "maxLength": 256},
            "uid": NULLABLE_ID,
            "metadata": STRING_MAP,
            "throttleRate": {"type": ["integer", "null"]},
        },
    ),
    "ApplicationOut": obj(
        ["id", "uid", "name", "metadata", "createdAt", "updatedAt"],
        {
            "id": STRING,
            "uid": NULLABLE_STRING,
            "name": STRING,
            "metadata": STRING_MAP,
            "throttleRate": {"type": "null"},
            "createdAt": TIMESTAMP,
            "updatedAt": TIMESTAMP,
        },
    ),
    "ListResponse_ApplicationOut_": list_of("ApplicationOut"),
}

_ENDPOINT_SETTINGS: Final[dict[str, Any]] = {
    "url": {"type": "string", "minLength": 1, "maxLength": 65536},
    "description": {"type": ["string", "null"], "maxLength": 1024},
    "uid": NULLABLE_ID,
    "eventTypes": NAMES,
    "filterTypes": {**NAMES, "description": "Older SDKs' name for eventTypes"},
    "throttleRate": {"type": ["integer", "null"], "minimum": 1, "maximum": 65535},
    "rateLimit": {"type": ["integer", "null"], "minimum": 1, "maximum": 65535,
                  "description": "Older SDKs' name for throttleRate"},
    "disabled": {"type": ["boolean", "null"]},
    "channels": {"type": ["array", "null"], "items": STRING, "maxItems": 0,
                 "description": "Not supported: null or empty"},
    "metadata": STRING_MAP,
    "burst": {"type": ["integer", "null"], "minimum": 1, "description": "webhookd: bucket size"},
    "maxInFlight": {"type": ["integer", "null"], "minimum": 1, "maximum": 10000,
                    "description": "webhookd: attempts in flight at most"},
    "timeoutMs": {"type": ["integer", "null"], "minimum": 1, "maximum": 600000,
                  "description": "webhookd: attempt timeout"},
    "retryScheduleMs": {"type": ["array", "null"], "items": {"type": "integer", "minimum": 0},
                        "maxItems": 100, "description": "webhookd: delays between attempts"},
    "payloadFormat": {"type": ["string", "null"],
                      "enum": ["raw", "slack", "discord", "teams", None],
                      "description": "webhookd: the payload as it is (raw, the default) or a"
                                     " Slack, Discord or Teams message"},
    "payloadTemplate": {"type": ["string", "null"], "maxLength": 40000,
                        "description": "webhookd: the message, with {{payload.a.b}},"
                                       " {{event_type}}, {{msg_id}}, {{created_at}}"},
    "payloadTitle": {"type": ["string", "null"], "maxLength": 40000,
                     "description": "webhookd: the Teams card's title (a template)"},
}  # fmt: skip

_ENDPOINTS: Final[dict[str, Any]] = {
    "EndpointIn": obj(
        ["url"],
        {
            **_ENDPOINT_SETTINGS,
            "secret": {"type": ["string", "null"], "maxLength": 1024},
            "headers": STRING_MAP,
            "signatureScheme": {
                "type": ["string", "null"],
                "enum": ["standard", "standard-ed25519", "hmac-sha256-hex", None],
                "description": "webhookd: how deliveries are signed (set at creation)",
            },
            "signatureHeader": NULLABLE_STRING,
            "signaturePrefix": NULLABLE_STRING,
        },
    ),
    "EndpointUpdate": obj(["url"], dict(_ENDPOINT_SETTINGS)),
    "EndpointPatch": obj([], dict(_ENDPOINT_SETTINGS)),
    "EndpointOut": obj(
        ["id", "url", "description", "metadata", "disabled", "createdAt", "updatedAt"],
        {
            "id": STRING,
            "uid": NULLABLE_STRING,
            "url": STRING,
            "description": STRING,
            "metadata": STRING_MAP,
            "disabled": BOOLEAN,
            "eventTypes": {"type": ["array", "null"], "items": STRING},
            "filterTypes": {"type": ["array", "null"], "items": STRING},
            "channels": {"type": "null"},
            "throttleRate": NULLABLE_INTEGER,
            "rateLimit": NULLABLE_INTEGER,
            "version": INTEGER,
            "createdAt": TIMESTAMP,
            "updatedAt": TIMESTAMP,
            "disabledReason": NULLABLE_STRING,
            "ratePerSecond": {"type": ["number", "null"]},
            "burst": NULLABLE_INTEGER,
            "maxInFlight": NULLABLE_INTEGER,
            "timeoutMs": NULLABLE_INTEGER,
            "retryScheduleMs": {"type": ["array", "null"], "items": INTEGER},
            "signatureScheme": STRING,
            "payloadFormat": STRING,
            "payloadTemplate": NULLABLE_STRING,
            "payloadTitle": NULLABLE_STRING,
        },
    ),
    "ListResponse_EndpointOut_": list_of("EndpointOut"),
    "EndpointSecretOut": obj(["key"], {"key": STRING}),
    "EndpointSecretRotateIn": obj(
        [],
        {
            "key": {"type": ["string", "null"], "maxLength": 1024},
            "gracePeriodSeconds": {"type": ["integer", "null"], "minimum": 0, "maximum": 604800},
        },
    ),
    "EndpointHeadersIn": obj(["headers"], {"headers": STRING_MAP}),
    "EndpointHeadersPatchIn": obj(
        ["headers"],
        {
            "headers": {"type": "object", "additionalProperties": NULLABLE_STRING},
            "deleteHeaders": {"type": ["array", "null"], "items": STRING},
        },
    ),
    "EndpointHeadersOut": obj(
        ["headers", "sensitive"],
        {"headers": STRING_MAP, "sensitive": {"type": "array", "items": STRING}},
    ),
    "EndpointStats": obj(
        ["success", "pending", "sending", "fail", "canceled"],
        {k: INTEGER for k in ("success", "pending", "sending", "fail", "canceled")},
    ),
    "EventExampleIn": obj(
        ["eventType"],
        {
            "eventType": {"type": "string", "minLength": 1, "maxLength": 256},
            "exampleIndex": {"type": ["integer", "null"], "minimum": 0},
            "payload": {"type": ["object", "null"]},
        },
    ),
    "RecoverIn": obj(["since"], {"since": TIMESTAMP, "until": NULLABLE_TIMESTAMP}),
    "RecoverOut": obj(
        ["id", "status", "task", "updatedAt"],
        {
            "id": STRING,
            "status": {"type": "string", "enum": ["finished"]},
            "task": {"type": "string", "enum": ["endpoint.recover"]},
            "updatedAt": TIMESTAMP,
            "data": obj(["messagesSent"], {"messagesSent": INTEGER}),
        },
    ),
    "EndpointDisableIn": obj([], {"reason": {"type": ["string", "null"], "maxLength": 1024}}),
    "EndpointPauseIn": obj(
        ["durationSeconds"], {"durationSeconds": {"type": "integer", "minimum": 1}}
    ),
    "EndpointState": obj(
        ["endpointId", "disabled", "paused", "consecutiveFailures"],
        {
            "endpointId": STRING,
            "disabled": BOOLEAN,
            "disabledReason": NULLABLE_STRING,
            "paused": BOOLEAN,
            "pausedUntil": NULLABLE_TIMESTAMP,
            "failingSince": NULLABLE_TIMESTAMP,
            "consecutiveFailures": INTEGER,
        },
    ),
}

_MESSAGES: Final[dict[str, Any]] = {
    "MessageIn": obj(
        ["eventType", "payload"],
        {
            "eventType": ID,
            "payload": ANY_OBJECT,
            "eventId": {**NULLABLE_ID, "description": "Becomes the message id (webhook-id)"},
            "channels": {
                "type": ["array", "null"],
                "items": ID,
                "maxItems": 10,
                "description": "Accepted and ignored",
            },
            "tags": {"type": ["array", "null"], "items": STRING, "maxItems": 100},
            "deliverAt": NULLABLE_TIMESTAMP,
            "payloadRetentionPeriod": {"type": ["integer", "null"], "minimum": 1},
            "application": {"anyOf": [ref("ApplicationIn"), {"type": "null"}]},
            "transformationsParams": {"type": ["object", "null"], "maxProperties": 0},
        },
    ),
    "MessageOut": obj(
        ["id", "eventType", "payload", "timestamp"],
        {
            "id": STRING,
            "eventId": NULLABLE_STRING,
            "eventType": STRING,
            "payload": {},
            "channels": {"type": "null"},
            "tags": {"type": "null"},
            "timestamp": TIMESTAMP,
            "deliverAt": NULLABLE_TIMESTAMP,
            # webhookd's own, in the message log (lists)
            "status": {"type": "integer", "enum": [0, 1, 2, 3]},
            "statusText": {"type": "string", "enum": ["success", "pending", "fail", "sending"]},
            "appId": NULLABLE_STRING,
        },
    ),
    "ListResponse_MessageOut_": list_of("MessageOut"),
    "MessageAttemptOut": obj(
        [
            "id",
            "msgId",
            "endpointId",
            "url",
            "response",
            "responseStatusCode",
            "responseDurationMs",
            "status",
            "statusText",
            "triggerType",
            "timestamp",
        ],
        {
            "id": STRING,
            "msgId": STRING,
            "endpointId": STRING,
            "url": STRING,
            "response": STRING,
            "responseStatusCode": INTEGER,
            "responseDurationMs": INTEGER,
            "status": {"type": "integer", "enum": [0, 2]},
            "statusText": {"type": "string", "enum": ["success", "fail"]},
            "triggerType": {"type": "integer", "enum": [0, 1]},
            "timestamp": TIMESTAMP,
            "attempt": INTEGER,
            "errorClass": NULLABLE_STRING,
        },
    ),
    "ListResponse_MessageAttemptOut_": list_of("MessageAttemptOut"),
}

_EVENT_TYPE_FIELDS: Final[dict[str, Any]] = {
    "description": {"type": "string", "maxLength": 4096},
    "archived": {"type": ["boolean", "null"]},
    "deprecated": {"type": ["boolean", "null"]},
    "schemas": {"type": ["object", "null"], "additionalProperties": {"type": "object"}},
    "groupName": NULLABLE_ID,
    "featureFlags": {"type": ["array", "null"], "items": ID},
}

_EVENT_TYPES: Final[dict[str, Any]] = {
    "EventTypeIn": obj(["name", "description"], {"name": ID, **_EVENT_TYPE_FIELDS}),
    "EventTypeUpdate": obj(["description"], dict(_EVENT_TYPE_FIELDS)),
    "EventTypePatch": obj([], dict(_EVENT_TYPE_FIELDS)),
    "EventTypeOut": obj(
        ["name", "description", "archived", "deprecated", "createdAt", "updatedAt"],
        {
            "name": STRING,
            "description": STRING,
            "archived": BOOLEAN,
            "deprecated": BOOLEAN,
            "schemas": {"type": ["object", "null"]},
            "groupName": NULLABLE_STRING,
            "featureFlags": {"type": ["array", "null"], "items": STRING},
            "createdAt": TIMESTAMP,
            "updatedAt": TIMESTAMP,
        },
    ),
    "ListResponse_EventTypeOut_": list_of("EventTypeOut"),
}

_DEAD_LETTERS: Final[dict[str, Any]] = {
    "DeadLetterOut": obj(
        ["deliveryId", "msgId", "endpointId", "eventType", "attempts", "failedAt"],
        {
            "deliveryId": STRING,
            "msgId": STRING,
            "endpointId": STRING,
            "eventType": STRING,
            "attempts": INTEGER,
            "lastStatusCode": NULLABLE_INTEGER,
            "lastError": NULLABLE_STRING,
            "failedAt": TIMESTAMP,
        },
    ),
    "ListResponse_DeadLetterOut_": list_of("DeadLetterOut"),
    "DeadLetterRequeueIn": obj(
        [],
        {
            "endpointId": NULLABLE_ID,
            "msgIds": {"type": ["array", "null"], "items": ID, "maxItems": 1000},
            "since": NULLABLE_TIMESTAMP,
            "until": NULLABLE_TIMESTAMP,
            "all": {"type": ["boolean", "null"]},
        },
    ),
    "DeadLetterRequeueOut": obj(["requeued"], {"requeued": INTEGER}),
}

NULLABLE_NUMBER: Final = {"type": ["number", "null"]}
COUNT: Final = {"type": "integer", "minimum": 0}

_CONSOLE: Final[dict[str, Any]] = {
    "StatsBucketOut": obj(
        ["start", "attempts", "succeeded", "p50Ms", "p95Ms"],
        {"start": TIMESTAMP, "attempts": COUNT, "succeeded": COUNT, "p50Ms": NULLABLE_NUMBER,
         "p95Ms": NULLABLE_NUMBER},
    ),
    "StatsOverviewOut": obj(
        ["window", "bucketSeconds", "attempts", "succeeded", "successRate",
         "deliveriesPerSecond", "latencyP50Ms", "latencyP95Ms", "backlog", "deadLetters24h",
         "endpoints", "series"],
        {
            "window": {"type": "string", "enum": ["hour", "day"]},
            "bucketSeconds": INTEGER,
            "attempts": COUNT,
            "succeeded": COUNT,
            "successRate": NULLABLE_NUMBER,
            "deliveriesPerSecond": {"type": "number"},
            "latencyP50Ms": NULLABLE_NUMBER,
            "latencyP95Ms": NULLABLE_NUMBER,
            "backlog": obj(["due", "scheduled", "delivering"],
                           {"due": COUNT, "scheduled": COUNT, "delivering": COUNT}),
            "deadLetters24h": COUNT,
            "endpoints": obj(
                ["total", "disabled", "autoDisabled", "paused", "breakerOpen"],
                {"total": COUNT, "disabled": COUNT, "autoDisabled": COUNT, "paused": COUNT,
                 "breakerOpen": COUNT},
            ),
            "series": {"type": "array", "items": ref("StatsBucketOut")},
        },
    ),
    "AppPortalAccessIn": obj(
        [],
        {
            "expiry": {"type": ["integer", "null"], "minimum": 60, "maximum": 7 * 86400},
            "featureFlags": {"type": ["array", "null"], "items": STRING},
            "readOnly": {"type": ["boolean", "null"]},
        },
    ),
    "AppPortalAccessOut": obj(["url", "token"], {"url": STRING, "token": STRING}),
    "PortalSessionOut": obj(
        ["token", "appId", "expiresAt", "scope"],
        {"token": STRING, "appId": STRING, "expiresAt": TIMESTAMP,
         "scope": {"type": "string", "enum": ["admin", "read"]}},
    ),
}  # fmt: skip

SCHEMAS: Final[dict[str, Any]] = {
    **_ERRORS, **_APPS, **_ENDPOINTS, **_MESSAGES, **_EVENT_TYPES, **_DEAD_LETTERS, **_CONSOLE,
}  # fmt: skip
