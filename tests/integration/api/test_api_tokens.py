"""API tokens: `webhookd api-token create | list | revoke`, stored as a hash only, and what the
authenticator makes of each kind of token."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import asyncpg
import orjson
import pytest

from daemon.api import tokens
from daemon.api.auth import Authenticator, Principal
from daemon.api.errors import ApiError
from daemon.store import Store
from daemon.units import Rate
from tests.api_support import webhookd


async def test_create_prints_the_token_once_and_stores_only_its_hash(db_dsn: str) -> None:
    created = await webhookd(db_dsn, "api-token", "create", "--scope", "admin", "--json")
    code, out, err = created.body
    assert code == 0, err
    view = orjson.loads(out)
    assert view["id"].startswith("key_") and view["token"].startswith("whk_")
    assert tokens.token_id(view["token"]) == view["id"]

    conn = await asyncpg.connect(db_dsn)
    try:
        row = await conn.fetchrow("SELECT *, t::text AS whole FROM webhookd.api_tokens t")
    finally:
        await conn.close()
    assert row is not None and row["scope"] == "admin" and row["app_id"] is None
    assert bytes(row["token_hash"]) == hashlib.sha256(view["token"].encode()).digest()
    secret_part = view["token"].rsplit("_", 1)[-1]
    assert secret_part not in row["whole"]

    listed = await webhookd(db_dsn, "api-token", "list", "--json")
    code, out, err = listed.body
    assert code == 0, err
    [entry] = orjson.loads(out)
    assert entry["id"] == view["id"] and entry["state"] == "active"
    assert view["token"] not in out and "hash" not in out


async def test_app_scope_expiry_and_revocation_show_in_the_list(db_dsn: str) -> None:
    store = await Store.connect(db_dsn, max_size=2)
    try:
        await store.execute_raw(
            "INSERT INTO webhookd.api_apps (id, uid, tenant_id, name)"
            " VALUES ('app_1', 'acme', 'acme', 'Acme')"
        )
    finally:
        await store.close()
    scoped = await webhookd(
        db_dsn, "api-token", "create", "--scope", "read", "--app", "acme", "--expires", "30d",
        "--json",
    )  # fmt: skip
    code, out, err = scoped.body
    assert code == 0, err
    view = orjson.loads(out)
    assert view["app_id"] == "app_1"
    expires = datetime.fromisoformat(view["expires_at"])
    assert timedelta(days=29) < expires - datetime.now(UTC) <= timedelta(days=30)

    revoked = await webhookd(db_dsn, "api-token", "revoke", view["id"], "--json")
    assert revoked.body[0] == 0, revoked.body[2]
    listed = await webhookd(db_dsn, "api-token", "list", "--json")
    [entry] = orjson.loads(listed.body[1])
    assert entry["state"] == "revoked" and entry["app_uid"] == "acme"


@pytest.mark.parametrize(
    ("args", "code", "words"),
    [
        (("create", "--scope", "admin", "--app", "nope"), 3, "application not found: nope"),
        (("create", "--scope", "owner"), 2, "--scope"),
        (("create", "--scope", "read", "--expires", "soon"), 2, "--expires"),
        (("revoke", "key_0000000000000000"), 3, "API token not found"),
    ],
)
async def test_bad_token_commands_give_one_line(
    db_dsn: str, args: tuple[str, ...], code: int, words: str
) -> None:
    result = await webhookd(db_dsn, "api-token", *args)
    got, out, err = result.body
    assert got == code, err
    assert words in err and len(err.splitlines()) == 1 and out == ""


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def _reason(auth: Authenticator, header: str | None, client: str = "10.0.0.1") -> int:
    with pytest.raises(ApiError) as caught:
        await auth.authenticate(header, client)
    return caught.value.status


async def test_authenticator_accepts_good_tokens_and_refuses_the_rest(db_dsn: str) -> None:
    store = await Store.connect(db_dsn, max_size=2)
    failures: list[str] = []
    auth = Authenticator(
        store, cache_s=0.0, failures=Rate(100, 1), on_failure=failures.append, clock=Clock()
    )
    try:
        good = await tokens.create_token(store, "read")
        assert await auth.authenticate(f"Bearer {good.token}", "c") == Principal(
            good.id, "read", None
        )
        assert await auth.authenticate(f"bearer  {good.token} ", "c") is not None
        revoked = await tokens.create_token(store, "admin")
        await tokens.revoke_token(store, revoked.id)
        expired = await tokens.create_token(store, "admin", expires_in_s=1)
        await store.execute_raw(
            "UPDATE webhookd.api_tokens SET expires_at = now() - interval '1s' WHERE id = $1",
            expired.id,
        )
        forged = good.token[:-4] + "AAAA"
        for header in (None, "", "Basic abc", "Bearer ", f"Bearer {forged}", "Bearer whk_x",
                       f"Bearer {revoked.token}", f"Bearer {expired.token}"):  # fmt: skip
            assert await _reason(auth, header) == 401
    finally:
        await store.close()
    assert failures == ["missing"] * 4 + ["unknown", "unknown", "revoked", "expired"]


async def test_failed_authentications_are_limited_per_client_address(db_dsn: str) -> None:
    store = await Store.connect(db_dsn, max_size=2)
    clock = Clock()
    auth = Authenticator(store, cache_s=0.0, failures=Rate(3, 60), clock=clock)
    try:
        good = await tokens.create_token(store, "admin")
        assert [await _reason(auth, "Bearer whk_nope") for _ in range(3)] == [401] * 3
        with pytest.raises(ApiError) as limited:
            await auth.authenticate(f"Bearer {good.token}", "10.0.0.1")
        assert limited.value.status == 429
        assert limited.value.headers["Retry-After"] == "20"
        # another address is not affected, and the bucket refills
        assert await auth.authenticate(f"Bearer {good.token}", "10.0.0.2") is not None
        clock.now += 20
        assert await auth.authenticate(f"Bearer {good.token}", "10.0.0.1") is not None
    finally:
        await store.close()


async def test_a_cached_token_is_trusted_until_the_cache_ends(db_dsn: str) -> None:
    store = await Store.connect(db_dsn, max_size=2)
    clock = Clock()
    auth = Authenticator(store, cache_s=5.0, failures=Rate(10, 1), clock=clock)
    try:
        new = await tokens.create_token(store, "admin")
        await auth.authenticate(f"Bearer {new.token}", "c")
        await tokens.revoke_token(store, new.id)
        assert await auth.authenticate(f"Bearer {new.token}", "c") is not None
        clock.now += 5.1
        assert await _reason(auth, f"Bearer {new.token}", "c") == 401
    finally:
        await store.close()
