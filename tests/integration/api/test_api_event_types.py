"""/api/v1/event-type: event types with an optional JSON Schema, which messages of the type
are validated against when created (422 naming the path of the first error)."""

from __future__ import annotations

from tests.api_support import ApiUnderTest, make_app

SCHEMA = {
    "type": "object",
    "required": ["invoice", "amount"],
    "properties": {
        "invoice": {"type": "string"},
        "amount": {"type": "integer", "minimum": 0},
        "lines": {"type": "array", "items": {"type": "object", "required": ["sku"]}},
    },
    "examples": [{"invoice": "in_1", "amount": 100}],
}


async def test_create_get_list_update_and_archive(api: ApiUnderTest) -> None:
    made = await api.post(
        "/api/v1/event-type",
        {"name": "invoice.paid", "description": "Paid", "schemas": {"1": SCHEMA}},
    )
    assert made.status == 201, made.body
    assert made.body["schemas"] == {"1": SCHEMA} and made.body["deprecated"] is False
    again = await api.post("/api/v1/event-type", {"name": "invoice.paid", "description": "x"})
    assert again.status == 409
    for name in ("a.one", "b.two", "c.three"):
        await api.post("/api/v1/event-type", {"name": name, "description": name})
    got = await api.get("/api/v1/event-type/invoice.paid")
    assert got.status == 200 and got.body["description"] == "Paid"
    first = await api.get("/api/v1/event-type?limit=2")
    assert [t["name"] for t in first.body["data"]] == ["a.one", "b.two"]
    rest = await api.get(f"/api/v1/event-type?limit=2&iterator={first.body['iterator']}")
    assert [t["name"] for t in rest.body["data"]] == ["c.three", "invoice.paid"]
    assert rest.body["done"] is True
    patched = await api.call("PATCH", "/api/v1/event-type/a.one", {"deprecated": True})
    assert patched.body["deprecated"] is True and patched.body["description"] == "a.one"
    put = await api.call("PUT", "/api/v1/event-type/d.four", {"description": "new"})
    assert put.status == 201
    put = await api.call("PUT", "/api/v1/event-type/d.four", {"description": "newer"})
    assert put.status == 200 and put.body["description"] == "newer"
    assert (await api.call("DELETE", "/api/v1/event-type/a.one")).status == 204
    listed = await api.get("/api/v1/event-type")
    assert "a.one" not in [t["name"] for t in listed.body["data"]]
    archived = await api.get("/api/v1/event-type?include_archived=true&with_content=false")
    names = {t["name"]: t for t in archived.body["data"]}
    assert names["a.one"]["archived"] is True and names["invoice.paid"]["schemas"] is None
    assert (await api.call("DELETE", "/api/v1/event-type/a.one?expunge=true")).status == 204
    assert (await api.get("/api/v1/event-type/a.one")).status == 404


async def test_schemas_must_be_json_schemas(api: ApiUnderTest) -> None:
    bad = await api.post(
        "/api/v1/event-type",
        {"name": "x.y", "description": "", "schemas": {"1": {"type": "nonsense"}}},
    )
    assert bad.status == 422 and bad.body["detail"][0]["loc"] == ["body", "schemas", "1"]
    missing = await api.post("/api/v1/event-type", {"name": "x.y"})
    assert missing.status == 422 and missing.body["detail"][0]["loc"] == ["body", "description"]


async def test_messages_are_validated_against_the_latest_schema(api: ApiUnderTest) -> None:
    await make_app(api, "acme")
    v2 = {**SCHEMA, "required": ["invoice", "amount", "currency"]}
    await api.post(
        "/api/v1/event-type",
        {"name": "invoice.paid", "description": "", "schemas": {"1": SCHEMA, "2": v2}},
    )
    send = "/api/v1/app/acme/msg"
    ok = {"invoice": "in_1", "amount": 5, "currency": "EUR"}
    assert (await api.post(send, {"eventType": "invoice.paid", "payload": ok})).status == 202
    cases = [
        ({"invoice": "in_1", "amount": 5}, ["body", "payload"]),
        ({**ok, "amount": -1}, ["body", "payload", "amount"]),
        ({**ok, "lines": [{"sku": "a"}, {"qty": 1}]}, ["body", "payload", "lines", "1"]),
    ]
    for payload, loc in cases:
        reply = await api.post(send, {"eventType": "invoice.paid", "payload": payload})
        assert reply.status == 422, payload
        [problem] = reply.body["detail"]
        assert problem["loc"] == loc and problem["type"] == "value_error.schema", problem
    untyped = await api.post(send, {"eventType": "no.schema", "payload": {"any": True}})
    assert untyped.status == 202
    await api.call("DELETE", "/api/v1/event-type/invoice.paid")
    archived = await api.post(send, {"eventType": "invoice.paid", "payload": {}})
    assert archived.status == 202


async def test_send_example_uses_the_schema_example(api: ApiUnderTest) -> None:
    await make_app(api, "acme")
    await api.post(
        "/api/v1/event-type", {"name": "invoice.paid", "description": "", "schemas": {"1": SCHEMA}}
    )
    made = await api.post("/api/v1/app/acme/endpoint", {"url": "https://example.com/h"})
    path = f"/api/v1/app/acme/endpoint/{made.body['id']}/send-example"
    sent = await api.post(path, {"eventType": "invoice.paid"})
    assert sent.status == 202 and sent.body["payload"] == {"invoice": "in_1", "amount": 100}
    listed = await api.get("/api/v1/app/acme/msg")
    assert [m["id"] for m in listed.body["data"]] == [sent.body["id"]]
