"""/api/v1/app: applications are tenants; a uid is the tenant id of the outbox and endpoints."""

from __future__ import annotations

import asyncpg

from tests.api_support import ApiUnderTest, make_app, make_endpoint, webhookd


async def test_create_get_by_id_or_uid_and_list(api: ApiUnderTest) -> None:
    acme = await make_app(api, "acme", "Acme Inc")
    assert acme["id"].startswith("app_") and acme["uid"] == "acme"
    assert acme["metadata"] == {} and acme["throttleRate"] is None
    no_uid = await api.post("/api/v1/app", {"name": "Plain", "metadata": {"tier": "gold"}})
    assert no_uid.status == 201 and no_uid.body["uid"] is None
    for ref in (acme["id"], "acme"):
        got = await api.get(f"/api/v1/app/{ref}")
        assert got.status == 200 and got.body == acme
    listed = await api.get("/api/v1/app")
    assert [a["name"] for a in listed.body["data"]] == ["Acme Inc", "Plain"]
    assert listed.body["done"] is True and listed.body["prevIterator"] == "-s1"
    backwards = await api.get("/api/v1/app?order=descending")
    assert [a["name"] for a in backwards.body["data"]] == ["Plain", "Acme Inc"]


async def test_a_taken_uid_conflicts_unless_get_if_exists(api: ApiUnderTest) -> None:
    acme = await make_app(api, "acme")
    again = await api.post("/api/v1/app", {"name": "other", "uid": "acme"})
    assert again.status == 409 and again.body["code"] == "conflict"
    fetched = await api.post("/api/v1/app?get_if_exists=true", {"name": "x", "uid": "acme"})
    assert fetched.status == 200 and fetched.body["id"] == acme["id"]


async def test_bad_application_bodies_name_the_field(api: ApiUnderTest) -> None:
    cases = [
        ({}, ["body", "name"], "value_error.missing"),
        ({"name": ""}, ["body", "name"], "value_error"),
        ({"name": 5}, ["body", "name"], "type_error.str"),
        ({"name": "a", "uid": "no spaces"}, ["body", "uid"], "value_error"),
        ({"name": "a", "uid": "app_x"}, ["body", "uid"], "value_error"),
        ({"name": "a", "metadata": {"k": 1}}, ["body", "metadata", "k"], "value_error"),
        ({"name": "a", "throttleRate": 5}, ["body", "throttleRate"], "value_error"),
    ]
    for body, loc, kind in cases:
        reply = await api.post("/api/v1/app", body)
        assert reply.status == 422, (body, reply.body)
        [problem] = reply.body["detail"]
        assert (problem["loc"], problem["type"]) == (loc, kind), body
    not_json = await api.call("POST", "/api/v1/app", raw=b"{nope")
    assert not_json.status == 422
    assert not_json.body["detail"][0]["type"] == "value_error.jsondecode"
    ignored = await api.post("/api/v1/app", {"name": "a", "somethingNew": [1, 2]})
    assert ignored.status == 201


async def test_update_patch_and_upsert_keep_the_uid_fixed(api: ApiUnderTest) -> None:
    acme = await make_app(api, "acme")
    put = await api.call("PUT", "/api/v1/app/acme", {"name": "Renamed", "metadata": {"a": "b"}})
    assert put.status == 200 and put.body["name"] == "Renamed" and put.body["uid"] == "acme"
    patched = await api.call("PATCH", f"/api/v1/app/{acme['id']}", {"metadata": {"c": "d"}})
    assert patched.status == 200
    assert (patched.body["name"], patched.body["metadata"]) == ("Renamed", {"c": "d"})
    moved = await api.call("PATCH", "/api/v1/app/acme", {"uid": "other"})
    assert moved.status == 422 and moved.body["detail"][0]["loc"] == ["body", "uid"]
    same = await api.call("PATCH", "/api/v1/app/acme", {"uid": "acme"})
    assert same.status == 200
    created = await api.call("PUT", "/api/v1/app/newco", {"name": "New", "uid": "newco"})
    assert created.status == 201 and created.body["uid"] == "newco"


async def test_endpoints_added_with_the_cli_are_reachable_through_their_tenant(
    api: ApiUnderTest, db_dsn: str
) -> None:
    added = await webhookd(
        db_dsn, "endpoint", "add", "https://example.com/h", "--tenant", "shop-7", "--json",
        env={"WEBHOOKD_DELIVERY_ALLOW_INSECURE_HTTP": "true"},
    )  # fmt: skip
    assert added.code == 0, added.err
    app = await api.get("/api/v1/app/shop-7")
    assert app.status == 200 and app.body["uid"] == "shop-7" and app.body["name"] == "shop-7"
    listed = await api.get("/api/v1/app/shop-7/endpoint")
    assert [e["url"] for e in listed.body["data"]] == ["https://example.com/h"]
    message = await api.post("/api/v1/app/shop-7/msg", {"eventType": "a.b", "payload": {}})
    assert message.status == 202
    conn = await asyncpg.connect(db_dsn)
    try:
        tenant = await conn.fetchval("SELECT tenant_id FROM webhookd.outbox")
        deliveries = await conn.fetchval("SELECT count(*) FROM webhookd.deliveries")
    finally:
        await conn.close()
    assert (tenant, deliveries) == ("shop-7", 1)


async def test_deleting_an_application_deletes_its_endpoints_and_tokens(
    api: ApiUnderTest, db_dsn: str
) -> None:
    await make_app(api, "acme")
    await make_endpoint(api, "acme", "https://example.com/a")
    scoped = await api.token("admin", app="acme")
    sent = await api.post("/api/v1/app/acme/msg", {"eventType": "e", "payload": {"n": 1}})
    assert sent.status == 202
    deleted = await api.call("DELETE", "/api/v1/app/acme")
    assert deleted.status == 204
    assert (await api.get("/api/v1/app/acme")).status == 404
    # this process forgets the application at once (its lookup cache is cleared)
    late = await api.post("/api/v1/app/acme/msg", {"eventType": "e", "payload": {}})
    assert late.status == 404
    assert (await api.get("/api/v1/app", token=scoped)).status == 401
    conn = await asyncpg.connect(db_dsn)
    try:
        rows = await conn.fetch(
            "SELECT e.deleted_at IS NOT NULL AS deleted, d.status, d.last_error"
            " FROM webhookd.endpoints e JOIN webhookd.deliveries d ON d.endpoint_id = e.id"
        )
    finally:
        await conn.close()
    assert [tuple(r) for r in rows] == [(True, "failed", "application deleted")]


async def test_pages_of_applications_follow_the_iterator(api: ApiUnderTest) -> None:
    for n in range(7):
        await make_app(api, f"app-{n}")
    seen: list[str] = []
    iterator = None
    for _ in range(5):
        query = "?limit=3" + (f"&iterator={iterator}" if iterator else "")
        reply = await api.get("/api/v1/app" + query)
        seen += [a["uid"] for a in reply.body["data"]]
        iterator = reply.body["iterator"]
        if reply.body["done"]:
            break
    assert seen == [f"app-{n}" for n in range(7)]
    # prevIterator: the page before, in the list's order
    second = await api.get(
        f"/api/v1/app?limit=3&iterator={(await api.get('/api/v1/app?limit=3')).body['iterator']}"
    )
    assert [a["uid"] for a in second.body["data"]] == ["app-3", "app-4", "app-5"]
    first = await api.get(f"/api/v1/app?limit=3&iterator={second.body['prevIterator']}")
    assert [a["uid"] for a in first.body["data"]] == ["app-0", "app-1", "app-2"]
    assert first.body["done"] is True and first.body["prevIterator"] == "-s1"
    for bad in ("limit=0", "limit=251", "limit=x", "iterator=zzz", "iterator=-", "iterator=-t1"):
        reply = await api.get(f"/api/v1/app?{bad}")
        assert reply.status == 422, bad
        assert reply.body["detail"][0]["loc"][0] == "query"
