-- webhookd schema v1: endpoints, the outbox applications insert into, per-endpoint
-- delivery state, and the log of every attempt.

CREATE SCHEMA IF NOT EXISTS webhookd;

CREATE TABLE webhookd.endpoints (
    id                text PRIMARY KEY
                      DEFAULT ('ep_' || replace(gen_random_uuid()::text, '-', '')),
    tenant_id         text NOT NULL DEFAULT 'default',
    url               text NOT NULL,
    description       text NOT NULL DEFAULT '',
    event_types       text[] NOT NULL DEFAULT '{}',      -- empty: every event type
    enabled           boolean NOT NULL DEFAULT true,
    disabled_reason   text,
    deleted_at        timestamptz,
    secret            text NOT NULL,
    -- [{"secret": "...", "expires_at": <unix seconds>}], newest first
    previous_secrets  jsonb NOT NULL DEFAULT '[]',
    signature_scheme  text NOT NULL DEFAULT 'standard'
                      CHECK (signature_scheme IN ('standard', 'hmac-sha256-hex')),
    signature_header  text NOT NULL DEFAULT '',
    signature_prefix  text NOT NULL DEFAULT '',
    headers           jsonb NOT NULL DEFAULT '[]',       -- [["Name", "value"], ...]
    rate_per_s        double precision CHECK (rate_per_s > 0),
    burst             integer CHECK (burst > 0),
    max_in_flight     integer CHECK (max_in_flight > 0),
    timeout_ms        integer CHECK (timeout_ms > 0),
    retry_schedule_ms bigint[],
    version           bigint NOT NULL DEFAULT 1,
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX endpoints_fanout_idx ON webhookd.endpoints (tenant_id)
    WHERE enabled AND deleted_at IS NULL;

-- Applications insert here, in their own transaction. One row is one message.
CREATE TABLE webhookd.outbox (
    id            bigserial PRIMARY KEY,
    msg_id        text NOT NULL DEFAULT ('msg_' || replace(gen_random_uuid()::text, '-', '')),
    tenant_id     text,
    endpoint_id   text,
    event_type    text NOT NULL CHECK (event_type <> ''),
    payload       jsonb NOT NULL,
    deliver_after timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now()
);
-- Idempotency: the same msg_id twice for the same tenant/endpoint is refused, so
-- `INSERT ... ON CONFLICT DO NOTHING` makes enqueueing idempotent.
CREATE UNIQUE INDEX outbox_msg_id_uidx
    ON webhookd.outbox (coalesce(tenant_id, ''), coalesce(endpoint_id, ''), msg_id);
CREATE INDEX outbox_created_idx ON webhookd.outbox (created_at);

-- One row per (message, endpoint): the unit that is claimed, attempted and recorded.
CREATE TABLE webhookd.deliveries (
    id               bigserial PRIMARY KEY,
    message_id       bigint NOT NULL REFERENCES webhookd.outbox (id) ON DELETE CASCADE,
    endpoint_id      text NOT NULL REFERENCES webhookd.endpoints (id) ON DELETE CASCADE,
    status           text NOT NULL DEFAULT 'pending'
                     CHECK (status IN ('pending', 'delivering', 'delivered', 'failed')),
    attempts         integer NOT NULL DEFAULT 0,
    next_attempt_at  timestamptz NOT NULL DEFAULT now(),
    locked_until     timestamptz,
    locked_by        text,
    last_status_code integer,
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz
);
-- The claim probes this per endpoint: O(batch) however many rows wait. No index on
-- next_attempt_at alone: once analyzed, the planner prefers it for the probe when one
-- endpoint holds the backlog, and then every other endpoint's probe walks that backlog.
CREATE INDEX deliveries_due_idx ON webhookd.deliveries (endpoint_id, next_attempt_at)
    WHERE status = 'pending';
CREATE INDEX deliveries_lease_idx ON webhookd.deliveries (locked_until)
    WHERE status = 'delivering';
CREATE INDEX deliveries_failed_idx ON webhookd.deliveries (endpoint_id, updated_at)
    WHERE status = 'failed';
CREATE INDEX deliveries_message_idx ON webhookd.deliveries (message_id);

CREATE TABLE webhookd.attempts (
    id            bigserial PRIMARY KEY,
    delivery_id   bigint NOT NULL REFERENCES webhookd.deliveries (id) ON DELETE CASCADE,
    attempt       integer NOT NULL,
    started_at    timestamptz NOT NULL,
    duration_ms   double precision NOT NULL,
    status_code   integer,
    error_class   text,
    error         text,
    response_body bytea,
    instance      text NOT NULL
);
CREATE INDEX attempts_delivery_idx ON webhookd.attempts (delivery_id);
CREATE INDEX attempts_started_idx ON webhookd.attempts (started_at);

-- Queue tables churn: vacuum them early so dead tuples do not slow the claim.
ALTER TABLE webhookd.deliveries SET (
    autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_vacuum_threshold = 1000,
    autovacuum_analyze_scale_factor = 0.02,
    autovacuum_vacuum_cost_delay = 1
);
ALTER TABLE webhookd.outbox SET (
    autovacuum_vacuum_scale_factor = 0.02,
    autovacuum_analyze_scale_factor = 0.02
);
ALTER TABLE webhookd.attempts SET (
    autovacuum_vacuum_scale_factor = 0.02,
    autovacuum_analyze_scale_factor = 0.02
);

-- Fan-out at insert time, in the application's transaction: a message and its
-- deliveries commit (or roll back) together. SECURITY DEFINER so the enqueueing
-- role needs nothing but INSERT on webhookd.outbox.
CREATE FUNCTION webhookd.outbox_fanout() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
DECLARE
    missing text;
BEGIN
    SELECT n.endpoint_id INTO missing
    FROM new_rows n
    WHERE n.endpoint_id IS NOT NULL
      AND NOT EXISTS (SELECT 1 FROM webhookd.endpoints e
                      WHERE e.id = n.endpoint_id AND e.deleted_at IS NULL)
    LIMIT 1;
    IF missing IS NOT NULL THEN
        RAISE EXCEPTION 'webhookd: unknown endpoint %', missing
            USING ERRCODE = 'foreign_key_violation',
                  HINT = 'outbox.endpoint_id must be an id printed by `webhookd endpoint add`';
    END IF;

    INSERT INTO webhookd.deliveries (message_id, endpoint_id, next_attempt_at, created_at)
    SELECT n.id, n.endpoint_id, coalesce(n.deliver_after, n.created_at), n.created_at
    FROM new_rows n
    WHERE n.endpoint_id IS NOT NULL;

    INSERT INTO webhookd.deliveries (message_id, endpoint_id, next_attempt_at, created_at)
    SELECT n.id, e.id, coalesce(n.deliver_after, n.created_at), n.created_at
    FROM new_rows n
    JOIN webhookd.endpoints e
      ON e.tenant_id = coalesce(n.tenant_id, 'default')
     AND e.enabled AND e.deleted_at IS NULL
     AND (e.event_types = '{}' OR n.event_type = ANY (e.event_types))
    WHERE n.endpoint_id IS NULL;

    -- One wake-up per statement (identical notifications in a transaction fold into one).
    -- Deferred rows wake the daemon too: an idle one learns when they fall due only from a
    -- claim round, and would otherwise sleep until the next poll.
    PERFORM pg_notify('webhookd_outbox', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER outbox_fanout AFTER INSERT ON webhookd.outbox
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION webhookd.outbox_fanout();

-- Running daemons reload their endpoint cache when endpoints change.
CREATE FUNCTION webhookd.endpoints_changed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('webhookd_endpoints', '');
    RETURN NULL;
END
$$;

CREATE TRIGGER endpoints_changed AFTER INSERT OR UPDATE OR DELETE ON webhookd.endpoints
    FOR EACH STATEMENT EXECUTE FUNCTION webhookd.endpoints_changed();
