-- webhookd: least-privilege grants for the roles that are not the schema owner.
--
-- Run as the role that owns the webhookd schema (the admin role: the one that ran
-- `webhookd migrate`; it also runs the `webhookd endpoint ...` and `webhookd secrets ...`
-- commands), after migrating and again after an upgrade that adds tables. With psql:
--     psql -v app_role=app -v daemon_role=webhookd -v api_role=webhookd_api -f roles.sql
-- or `webhookd roles-sql --app-role app --daemon-role webhookd --api-role webhookd_api`, which
-- fills in the names.

-- The application role enqueues and can do nothing else: no reading messages, endpoints or
-- deliveries, no UPDATE or DELETE. The fan-out trigger is SECURITY DEFINER (it runs as the
-- schema owner), so the application needs no right on endpoints or deliveries. The id
-- column's default is nextval('webhookd.outbox_id_seq'), which needs USAGE on the sequence.
GRANT USAGE ON SCHEMA webhookd TO :"app_role";
GRANT INSERT ON webhookd.outbox TO :"app_role";
GRANT USAGE ON SEQUENCE webhookd.outbox_id_seq TO :"app_role";
-- Only if the application uses INSERT ... RETURNING: SELECT on the returned columns.
-- GRANT SELECT (id, msg_id) ON webhookd.outbox TO :"app_role";

-- The daemon role (`webhookd run`, without --migrate) reads endpoints and messages, leases
-- and updates deliveries (claim, rescue, release, outcomes), keeps the shared rate limits,
-- pauses and failing streaks, and logs attempts. Of endpoints it may change only whether one
-- is enabled (endpoint health: failing too long, or 410 Gone), never a URL, secret or header.
-- It cannot change messages, delete anything, or create objects. LISTEN/NOTIFY needs no grant.
GRANT USAGE ON SCHEMA webhookd TO :"daemon_role";
GRANT SELECT ON webhookd.schema_migrations, webhookd.endpoints, webhookd.outbox
    TO :"daemon_role";
GRANT UPDATE (enabled, disabled_reason, version, updated_at) ON webhookd.endpoints
    TO :"daemon_role";
GRANT SELECT, UPDATE ON webhookd.deliveries, webhookd.endpoint_state TO :"daemon_role";
GRANT INSERT ON webhookd.attempts TO :"daemon_role";
GRANT USAGE ON SEQUENCE webhookd.attempts_id_seq TO :"daemon_role";
-- every claim takes a fencing token (migrations/0007_fenced_leases.sql)
GRANT USAGE ON SEQUENCE webhookd.lease_tokens TO :"daemon_role";
-- wakes are folded into endpoint_state.due_at (taken with FOR UPDATE SKIP LOCKED, hence
-- UPDATE), and outcomes append some
-- (migrations/0008_due_endpoints.sql)
GRANT SELECT, INSERT, UPDATE, DELETE ON webhookd.endpoint_wakes TO :"daemon_role";
-- Only if the daemon prunes (retention.prune_after is set): deleting finished messages with
-- their deliveries and attempts, and old attempts. (`webhookd prune` as the admin needs none.)
-- GRANT DELETE ON webhookd.outbox, webhookd.deliveries, webhookd.attempts TO :"daemon_role";
-- GRANT SELECT (id, delivery_id, started_at) ON webhookd.attempts TO :"daemon_role";

-- The API role (`webhookd api`) manages applications, endpoints and event types, enqueues
-- messages (as an application does: the fan-out trigger runs as the schema owner), reads
-- deliveries and attempts, and makes deliveries due again (resend, recover, dead letters). It
-- reads tokens but cannot make them (`webhookd api-token` runs as the admin role). It cannot
-- delete messages, deliveries or attempts, change an attempt, or create objects. Deleting an
-- endpoint is a soft delete (an UPDATE); deleting an application deletes its row only.
GRANT USAGE ON SCHEMA webhookd TO :"api_role";
GRANT SELECT ON webhookd.schema_migrations, webhookd.api_tokens, webhookd.attempts
    TO :"api_role";
GRANT SELECT, INSERT, UPDATE, DELETE ON webhookd.api_apps, webhookd.api_event_types
    TO :"api_role";
GRANT USAGE ON SEQUENCE webhookd.api_apps_seq_seq TO :"api_role";
GRANT SELECT, INSERT, UPDATE ON webhookd.endpoints TO :"api_role";
-- A new endpoint's state row is made by a trigger that runs as the inserting role.
GRANT SELECT, INSERT, UPDATE ON webhookd.endpoint_state TO :"api_role";
GRANT SELECT, INSERT ON webhookd.outbox TO :"api_role";
GRANT USAGE ON SEQUENCE webhookd.outbox_id_seq TO :"api_role";
GRANT SELECT, UPDATE ON webhookd.deliveries TO :"api_role";
-- Console sessions (migrations/0023_console_sessions.sql): logins, lookups, logouts, and
-- the expired rows a login deletes.
GRANT SELECT, INSERT, DELETE ON webhookd.console_sessions TO :"api_role";
-- Portal links and sessions (migrations/0021_console.sql): portal tokens only, through
-- functions that run as the schema owner; the role still cannot insert a token itself.
GRANT EXECUTE ON FUNCTION webhookd.api_portal_link(text, bytea, text, float8, text),
    webhookd.api_portal_exchange(text, text, bytea) TO :"api_role";
