"""Least privilege: the GRANTs of `sql/roles.sql` let the application role enqueue and nothing
else, and the daemon role deliver and nothing else.

Each test makes its own roles (cluster-wide, so uniquely named and dropped afterwards): a
non-superuser admin that migrates a bare database and so owns the schema (the fan-out trigger,
SECURITY DEFINER, then runs as it), and the app and daemon roles, granted by that owner.
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from importlib import resources
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
import pytest_asyncio
from aiohttp import web
from structlog.testing import capture_logs

from daemon.api import tokens
from daemon.endpoints import EndpointSpec, add_endpoint
from daemon.migrate import apply_migrations
from daemon.roles import quote_ident, roles_sql
from daemon.service import Service
from daemon.store import Store
from tests.cli_support import Cli
from tests.integration.conftest import Receiver, daemon_config, wait_until

Denied = asyncpg.exceptions.InsufficientPrivilegeError


def dsn_as(dsn: str, user: str) -> str:
    """The same server and database, another user (both test servers trust local users)."""
    parts = urlsplit(dsn)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}@{host}"))


@dataclass
class Roles:
    """The four roles of one test's database and a connection as each."""

    admin_name: str
    app_name: str
    daemon_name: str
    api_name: str
    dsn: str  # the database, as the superuser
    admin: asyncpg.Connection
    app: asyncpg.Connection
    daemon: asyncpg.Connection
    api: asyncpg.Connection

    def dsn_of(self, user: str) -> str:
        return dsn_as(self.dsn, user)


async def _superuser(dsn: str, *statements: str) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


@pytest_asyncio.fixture
async def roles(bare_dsn: str) -> AsyncIterator[Roles]:
    suffix = secrets.token_hex(4)
    names = [f"webhookd_{kind}_{suffix}" for kind in ("admin", "app", "daemon", "api")]
    admin, app, daemon, api = names
    database = urlsplit(bare_dsn).path.lstrip("/")
    await _superuser(
        bare_dsn,
        *(f"CREATE ROLE {quote_ident(n)} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE" for n in names),
        f"GRANT CREATE ON DATABASE {quote_ident(database)} TO {quote_ident(admin)}",
        # Something of the application's own, outside the webhookd schema.
        "CREATE TABLE public.app_private (note text)",
        "INSERT INTO public.app_private VALUES ('private')",
    )
    conns: list[asyncpg.Connection] = []
    try:
        await apply_migrations(dsn_as(bare_dsn, admin))
        conns = [await asyncpg.connect(dsn_as(bare_dsn, n)) for n in names]
        await conns[0].execute(roles_sql(app, daemon, api))
        yield Roles(admin, app, daemon, api, bare_dsn, *conns)
    finally:
        for conn in conns:
            await conn.close()
        quoted = ", ".join(quote_ident(n) for n in names)
        await _superuser(
            bare_dsn,
            f"DROP OWNED BY {quoted} CASCADE",
            *(f"DROP ROLE IF EXISTS {quote_ident(n)}" for n in names),
        )


async def _admin_endpoint(roles: Roles, url: str, **spec: Any) -> str:
    store = await Store.connect(roles.dsn_of(roles.admin_name), max_size=1)
    try:
        ep_id, _ = await add_endpoint(store, EndpointSpec(url=url, **spec), allow_http=True)
    finally:
        await store.close()
    return ep_id


async def _denied(conn: asyncpg.Connection, statement: str, *args: Any) -> None:
    with pytest.raises(Denied):
        await conn.execute(statement, *args)


# -- the application role ----------------------------------------------------------------------


async def test_app_role_can_enqueue_direct_and_fan_out_but_read_or_change_nothing(
    roles: Roles,
) -> None:
    ep_id = await _admin_endpoint(roles, "https://example.com/a", tenant_id="acme")
    await roles.app.execute(
        "INSERT INTO webhookd.outbox (endpoint_id, event_type, payload, msg_id)"
        " VALUES ($1, 'invoice.paid', '{}'::jsonb, 'msg_direct')",
        ep_id,
    )
    # Fan-out runs in a SECURITY DEFINER trigger owned by the (non-superuser) schema owner.
    await roles.app.execute(
        "INSERT INTO webhookd.outbox (tenant_id, event_type, payload)"
        " VALUES ('acme', 'invoice.paid', '{}'::jsonb)"
    )
    # Idempotent enqueueing needs nothing more than INSERT.
    await roles.app.execute(
        "INSERT INTO webhookd.outbox (endpoint_id, event_type, payload, msg_id)"
        " VALUES ($1, 'invoice.paid', '{}'::jsonb, 'msg_direct') ON CONFLICT DO NOTHING",
        ep_id,
    )
    with pytest.raises(asyncpg.exceptions.ForeignKeyViolationError, match="unknown endpoint"):
        await roles.app.execute(
            "INSERT INTO webhookd.outbox (endpoint_id, event_type, payload)"
            " VALUES ('ep_nope', 'x', '{}'::jsonb)"
        )
    rows = await roles.admin.fetch("SELECT endpoint_id, status FROM webhookd.deliveries")
    assert [(r["endpoint_id"], r["status"]) for r in rows] == [(ep_id, "pending")] * 2

    for table in ("outbox", "endpoints", "deliveries", "attempts", "endpoint_state"):
        await _denied(roles.app, f"SELECT count(*) FROM webhookd.{table}")
    await _denied(roles.app, "UPDATE webhookd.outbox SET payload = '{}'")
    await _denied(roles.app, "DELETE FROM webhookd.outbox")
    await _denied(roles.app, "UPDATE webhookd.endpoints SET url = 'https://evil.example'")
    await _denied(
        roles.app,
        "INSERT INTO webhookd.deliveries (message_id, endpoint_id) VALUES (1, $1)",
        ep_id,
    )
    await _denied(roles.app, "CREATE TABLE webhookd.mine (x int)")


async def test_each_app_grant_is_needed_and_returning_needs_the_optional_one(
    roles: Roles,
) -> None:
    insert = "INSERT INTO webhookd.outbox (tenant_id, event_type, payload) VALUES ('t', 'e', '{}')"
    app = quote_ident(roles.app_name)
    # The id default is nextval('webhookd.outbox_id_seq'): without USAGE on it, no insert.
    await roles.admin.execute(f"REVOKE USAGE ON SEQUENCE webhookd.outbox_id_seq FROM {app}")
    with pytest.raises(Denied, match="outbox_id_seq"):
        await roles.app.execute(insert)
    await roles.admin.execute(f"GRANT USAGE ON SEQUENCE webhookd.outbox_id_seq TO {app}")
    await roles.app.execute(insert)

    with pytest.raises(Denied):
        await roles.app.fetchval(insert + " RETURNING id")
    optional = next(
        line.removeprefix("-- ")
        for line in roles_sql(roles.app_name, roles.daemon_name).splitlines()
        if line.startswith("-- GRANT SELECT (id, msg_id)")
    )
    await roles.admin.execute(optional)
    assert await roles.app.fetchval(insert + " RETURNING id") is not None
    await _denied(roles.app, "SELECT payload FROM webhookd.outbox")


# -- the daemon role ---------------------------------------------------------------------------


def _db_errors(service: Service) -> float:
    return sum(
        s.value
        for metric in service.metrics.db_errors.collect()
        for s in metric.samples
        if s.name.endswith("_total")
    )


async def test_daemon_role_runs_a_full_delivery(roles: Roles, receiver: Receiver) -> None:
    def fail_once(_hit: Any, n: int) -> web.Response:
        return web.Response(status=500) if n == 1 else web.Response(text="ok")

    def busy_once(_hit: Any, n: int) -> web.Response:
        if n == 1:
            return web.Response(status=429, headers={"Retry-After": "1"})
        return web.Response(text="ok")

    receiver.on("/retry", fail_once)
    receiver.on("/busy", busy_once)
    limited = await _admin_endpoint(
        roles, receiver.url("/limited"), tenant_id="acme", rate_per_s=50.0, max_in_flight=2
    )
    retry = await _admin_endpoint(roles, receiver.url("/retry"))
    busy = await _admin_endpoint(roles, receiver.url("/busy"))

    config = daemon_config(roles.dsn_of(roles.daemon_name))
    service = Service(config)
    with capture_logs() as logs:
        await service.start()
        try:
            await roles.app.execute(
                "INSERT INTO webhookd.outbox (tenant_id, event_type, payload)"
                " SELECT 'acme', 'e', jsonb_build_object('n', g) FROM generate_series(1, 3) g"
            )
            for ep_id in (retry, busy):
                await roles.app.execute(
                    "INSERT INTO webhookd.outbox (endpoint_id, event_type, payload)"
                    " VALUES ($1, 'e', '{}')",
                    ep_id,
                )

            async def all_delivered() -> bool:
                statuses = await roles.admin.fetch("SELECT status FROM webhookd.deliveries")
                return [r["status"] for r in statuses] == ["delivered"] * 5

            await wait_until(all_delivered, 15, "every delivery delivered by the daemon role")
            assert await service.readiness() == (True, "ready")
        finally:
            await service.stop()
    assert service._failure is None
    assert _db_errors(service) == 0
    assert not [e for e in logs if "permission" in str(e).lower()], logs
    assert len(receiver.at("/limited")) == 3
    assert len(receiver.at("/retry")) == 2 and len(receiver.at("/busy")) == 2
    attempts = await roles.admin.fetch(
        "SELECT d.endpoint_id, a.status_code FROM webhookd.attempts a"
        " JOIN webhookd.deliveries d ON d.id = a.delivery_id ORDER BY a.id"
    )
    assert sorted(a["status_code"] for a in attempts if a["endpoint_id"] != limited) == [
        200,
        200,
        429,
        500,
    ]


async def test_daemon_role_cannot_change_endpoints_create_or_read_outside(roles: Roles) -> None:
    ep_id = await _admin_endpoint(roles, "https://example.com/d")
    assert await roles.daemon.fetchval("SELECT count(*) FROM webhookd.endpoints") == 1
    await _denied(roles.daemon, "UPDATE webhookd.endpoints SET url = 'https://evil.example'")
    await _denied(roles.daemon, "UPDATE webhookd.endpoints SET secret = 'whsec_mine'")
    await _denied(roles.daemon, "UPDATE webhookd.endpoints SET headers = '[]'")
    await _denied(roles.daemon, "UPDATE webhookd.endpoints SET deleted_at = now()")
    # Endpoint health: the daemon may disable an endpoint (and only that).
    await roles.daemon.execute(
        "UPDATE webhookd.endpoints SET enabled = false, disabled_reason = 'x',"
        " version = version + 1, updated_at = now() WHERE id = $1",
        ep_id,
    )
    await _denied(roles.daemon, "DELETE FROM webhookd.endpoints")
    await _denied(
        roles.daemon,
        "INSERT INTO webhookd.outbox (endpoint_id, event_type, payload) VALUES ($1, 'e', '{}')",
        ep_id,
    )
    await _denied(roles.daemon, "DELETE FROM webhookd.deliveries")
    await _denied(roles.daemon, "DELETE FROM webhookd.attempts")
    await _denied(roles.daemon, "UPDATE webhookd.attempts SET error = 'x'")
    await _denied(roles.daemon, "INSERT INTO webhookd.schema_migrations VALUES ('9999')")
    await _denied(roles.daemon, "CREATE TABLE webhookd.mine (x int)")
    await _denied(roles.daemon, "CREATE TABLE public.mine (x int)")
    await _denied(roles.daemon, "SELECT * FROM public.app_private")
    await _denied(roles.daemon, "CREATE SCHEMA mine")


# -- the SQL itself ----------------------------------------------------------------------------


async def test_roles_sql_command_fills_in_the_names(db_dsn: str, tmp_path: Any) -> None:
    cli = Cli(db_dsn, tmp_path)
    default, named = await asyncio.gather(
        cli("roles-sql"), cli("roles-sql", "--app-role", "shop", "--daemon-role", 'we"bhookd')
    )
    assert default.code == 0 and named.code == 0, (default.err, named.err)
    assert 'GRANT INSERT ON webhookd.outbox TO "webhookd_app";' in default.out
    assert named.out == roles_sql("shop", 'we"bhookd')
    assert 'GRANT USAGE ON SCHEMA webhookd TO "webhookd_api";' in default.out
    assert 'TO "we""bhookd";' in named.out and ':"' not in named.out
    bad = await cli("roles-sql", "--app-role", "")
    assert bad.code == 2 and "--app-role" in bad.err


@pytest.mark.skipif(shutil.which("psql") is None, reason="psql is not installed")
async def test_roles_sql_file_runs_under_psql_with_variables(roles: Roles) -> None:
    # The shipped file takes psql variables.
    app, daemon = quote_ident(roles.app_name), quote_ident(roles.daemon_name)
    api = quote_ident(roles.api_name)
    await roles.admin.execute(
        f"REVOKE ALL ON ALL TABLES IN SCHEMA webhookd FROM {app}, {daemon}, {api};"
        f" REVOKE ALL ON ALL SEQUENCES IN SCHEMA webhookd FROM {app}, {daemon}, {api}"
    )
    path = resources.files("daemon.sql").joinpath("roles.sql")
    argv = [
        "psql",
        "-X",
        "-v",
        "ON_ERROR_STOP=1",
        "-v",
        f"app_role={roles.app_name}",
        "-v",
        f"daemon_role={roles.daemon_name}",
        "-v",
        f"api_role={roles.api_name}",
        "-f",
        str(path),
        roles.dsn_of(roles.admin_name),
    ]
    done = await asyncio.to_thread(
        subprocess.run, argv, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    checks = [
        (roles.app_name, "has_table_privilege", "webhookd.outbox", "INSERT"),
        (roles.app_name, "has_sequence_privilege", "webhookd.outbox_id_seq", "USAGE"),
        (roles.daemon_name, "has_table_privilege", "webhookd.deliveries", "UPDATE"),
        (roles.daemon_name, "has_table_privilege", "webhookd.attempts", "INSERT"),
        (roles.daemon_name, "has_any_column_privilege", "webhookd.endpoints", "UPDATE"),
        (roles.api_name, "has_table_privilege", "webhookd.api_apps", "INSERT"),
    ]
    for role, check, target, privilege in checks:
        granted = await roles.admin.fetchval(f"SELECT {check}($1, $2, $3)", role, target, privilege)
        assert granted is True, (role, target, privilege)


# -- endpoint health and retention as the daemon role -------------------------------------------


def _optional_prune_grants(roles: Roles) -> list[str]:
    return [
        line.removeprefix("-- ")
        for line in roles_sql(roles.app_name, roles.daemon_name).splitlines()
        if line.startswith("-- GRANT") and roles.daemon_name in line
    ]


# -- the API role ------------------------------------------------------------------------------


async def test_api_role_reads_tokens_but_cannot_make_them_nor_delete_history(
    roles: Roles,
) -> None:
    insert = "INSERT INTO webhookd.api_tokens (id, token_hash, scope) VALUES ($1, '', 'admin')"
    await roles.admin.execute(insert, "key_1")
    assert await roles.api.fetchval("SELECT count(*) FROM webhookd.api_tokens") == 1
    await _denied(roles.api, insert, "key_2")
    await _denied(roles.api, "UPDATE webhookd.api_tokens SET revoked_at = now()")
    for table in ("outbox", "deliveries", "attempts", "endpoints", "endpoint_state"):
        await _denied(roles.api, f"DELETE FROM webhookd.{table}")
    await _denied(roles.api, "UPDATE webhookd.outbox SET payload = '{}'")
    await _denied(roles.api, "UPDATE webhookd.attempts SET error = 'x'")
    await _denied(roles.api, "INSERT INTO webhookd.schema_migrations VALUES ('9999')")
    await _denied(roles.api, "CREATE TABLE webhookd.mine (x int)")
    await _denied(roles.api, "SELECT * FROM public.app_private")


async def test_daemon_role_disables_gone_and_failing_endpoints(
    roles: Roles, receiver: Receiver
) -> None:
    receiver.on("/gone", lambda _hit, _n: web.Response(status=410))
    receiver.on("/down", lambda _hit, _n: web.Response(status=500))
    gone = await _admin_endpoint(roles, receiver.url("/gone"))
    down = await _admin_endpoint(roles, receiver.url("/down"), retry_schedule_s=(0.05,) * 50)
    config = daemon_config(
        roles.dsn_of(roles.daemon_name),
        health={"disable_after_s": 0.5, "min_failures": 2},
        breaker={"enabled": False},
    )
    service = Service(config)
    with capture_logs() as logs:
        await service.start()
        try:
            for ep_id in (gone, down):
                await roles.app.execute(
                    "INSERT INTO webhookd.outbox (endpoint_id, event_type, payload)"
                    " VALUES ($1, 'e', '{}')",
                    ep_id,
                )

            async def both_disabled() -> bool:
                rows = await roles.admin.fetch(
                    "SELECT enabled FROM webhookd.endpoints WHERE NOT enabled"
                )
                return len(rows) == 2

            await wait_until(both_disabled, 10, "both endpoints disabled by the daemon role")
        finally:
            await service.stop()
    assert service._failure is None and _db_errors(service) == 0
    assert not [e for e in logs if "permission" in str(e).lower()], logs
    causes = sorted(e["cause"] for e in logs if e["event"] == "endpoint.auto_disabled")
    assert causes == ["failing", "gone"]


async def test_daemon_role_prunes_only_with_the_optional_grants(
    roles: Roles, receiver: Receiver
) -> None:
    ep_id = await _admin_endpoint(roles, receiver.url("/ok"))
    config = daemon_config(
        roles.dsn_of(roles.daemon_name),
        retention={"prune_after_s": 0.5, "prune_interval_s": 0.2},
    )
    await roles.app.execute(
        "INSERT INTO webhookd.outbox (endpoint_id, event_type, payload) VALUES ($1, 'e', '{}')",
        ep_id,
    )
    service = Service(config)
    with capture_logs() as logs:
        await service.start()
        try:

            async def refused() -> bool:
                return any(e["event"] == "retention.prune_failed" for e in logs)

            await wait_until(refused, 10, "the prune refused for want of grants")
            assert await service.readiness() == (True, "ready")  # the daemon carries on
            grants = _optional_prune_grants(roles)
            assert len(grants) == 2
            for grant in grants:
                await roles.admin.execute(grant)

            async def pruned() -> bool:
                return await roles.admin.fetchval("SELECT count(*) FROM webhookd.outbox") == 0

            await wait_until(pruned, 10, "the delivered message pruned by the daemon role")
        finally:
            await service.stop()
    assert service._failure is None
    failed = next(e for e in logs if e["event"] == "retention.prune_failed")
    assert "permission denied" in failed["error"] and "roles.sql" in failed["hint"]
    assert await roles.admin.fetchval("SELECT count(*) FROM webhookd.attempts") == 0


async def test_api_role_runs_the_api(roles: Roles) -> None:
    """Every kind of write the API makes, as the API role: applications, endpoints (their
    state row, the tenant's application trigger), messages (fan-out), headers, secrets, event
    types, dead letters requeued, and deletes (soft for endpoints)."""
    from tests.api_support import running_api

    admin_store = await Store.connect(roles.dsn_of(roles.admin_name), max_size=1)
    try:
        token = (await tokens.create_token(admin_store, "admin")).token
    finally:
        await admin_store.close()
    async with running_api(roles.dsn_of(roles.api_name), admin=token) as api:
        steps = [
            ("POST", "/api/v1/app", {"name": "Acme", "uid": "acme"}, 201),
            ("POST", "/api/v1/event-type", {"name": "e.x", "description": ""}, 201),
            ("POST", "/api/v1/app/acme/endpoint", {"url": "https://example.com/a", "uid": "a",
                                                   "headers": {"X-A": "1"}}, 201),
            ("POST", "/api/v1/app/acme/msg", {"eventType": "e.x", "payload": {}}, 202),
            ("GET", "/api/v1/app/acme/msg", None, 200),
            ("GET", "/api/v1/app/acme/attempt/endpoint/a", None, 200),
            ("PATCH", "/api/v1/app/acme/endpoint/a", {"description": "d"}, 200),
            ("PATCH", "/api/v1/app/acme/endpoint/a/headers", {"headers": {"X-B": "2"}}, 204),
            ("POST", "/api/v1/app/acme/endpoint/a/secret/rotate", {}, 200),
            ("POST", "/api/v1/app/acme/endpoint/a/disable", {"reason": "r"}, 200),
            ("POST", "/api/v1/app/acme/endpoint/a/enable", {}, 200),
            ("POST", "/api/v1/app/acme/endpoint/a/pause", {"durationSeconds": 5}, 200),
            ("POST", "/api/v1/app/acme/endpoint/a/resume", {}, 200),
            ("POST", "/api/v1/app/acme/dead-letter/requeue", {"all": True}, 200),
            ("GET", "/api/v1/app/acme/endpoint/a/stats", None, 200),
            ("GET", "/api/v1/stats/overview", None, 200),
            ("GET", "/api/v1/app/acme/endpoint/a/stats/overview", None, 200),
            ("DELETE", "/api/v1/app/acme/endpoint/a", None, 204),
            ("DELETE", "/api/v1/event-type/e.x?expunge=true", None, 204),
            ("DELETE", "/api/v1/app/acme", None, 204),
        ]  # fmt: skip
        for method, path, body, status in steps:
            reply = await api.call(method, path, body)
            assert reply.status == status, (method, path, reply.body)
        # The message log of every application, and a console session: login (which deletes
        # expired sessions too), a request with it, logout.
        assert (await api.call("GET", "/api/v1/webhookd/msg?status=2")).status == 200
        login = await api.call("POST", "/console/session", {"token": token}, token="")
        assert login.status == 200, login.body
        ident = login.headers["Set-Cookie"].split(";")[0]
        session = {"Cookie": ident, "X-CSRF-Token": login.body["csrfToken"]}
        assert (await api.call("GET", "/api/v1/app", token="", headers=session)).status == 200
        out = await api.call("DELETE", "/console/session", token="", headers=session)
        assert out.status == 204


async def test_api_role_makes_portal_links_and_sessions_only_through_their_functions(
    roles: Roles,
) -> None:
    from tests.api_support import running_api

    admin_store = await Store.connect(roles.dsn_of(roles.admin_name), max_size=1)
    try:
        token = (await tokens.create_token(admin_store, "admin")).token
    finally:
        await admin_store.close()
    async with running_api(roles.dsn_of(roles.api_name), admin=token) as api:
        app = (await api.call("POST", "/api/v1/app", {"name": "Acme", "uid": "acme"})).body
        link = await api.call("POST", "/api/v1/auth/app-portal-access/acme", {})
        assert link.status == 200, link.body
        session = await api.call(
            "POST", f"/api/v1/app/{app['id']}/portal-session", {}, token=link.body["token"]
        )
        assert session.status == 200, session.body
        assert (
            await api.call("GET", "/api/v1/app/acme", token=session.body["token"])
        ).status == 200
    insert = (
        "INSERT INTO webhookd.api_tokens (id, token_hash, scope, kind) VALUES ($1, '', 'admin', $2)"
    )
    await _denied(roles.api, insert, "key_3", "portal")
