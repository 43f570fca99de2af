-- Limits that hold across every daemon sharing the database: each endpoint's token bucket
-- and Retry-After pause live here and are taken in the claim statement, under a row lock.
-- A separate table, not columns of endpoints: this row churns on every claim, and changes
-- to endpoints make every daemon reload its endpoint cache.

CREATE TABLE webhookd.endpoint_state (
    endpoint_id  text PRIMARY KEY REFERENCES webhookd.endpoints (id) ON DELETE CASCADE,
    tokens       double precision,                  -- NULL: full (buckets start full)
    refilled_at  timestamptz NOT NULL DEFAULT now(),
    paused_until timestamptz
);
-- Updated on every claim of a rate-limited endpoint: leave room for HOT updates and vacuum
-- it eagerly.
ALTER TABLE webhookd.endpoint_state SET (
    fillfactor = 50,
    autovacuum_vacuum_scale_factor = 0.0,
    autovacuum_vacuum_threshold = 1000
);

INSERT INTO webhookd.endpoint_state (endpoint_id) SELECT id FROM webhookd.endpoints;

CREATE FUNCTION webhookd.endpoint_state_init() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO webhookd.endpoint_state (endpoint_id) VALUES (NEW.id) ON CONFLICT DO NOTHING;
    RETURN NULL;
END
$$;

CREATE TRIGGER endpoint_state_init AFTER INSERT ON webhookd.endpoints
    FOR EACH ROW EXECUTE FUNCTION webhookd.endpoint_state_init();

-- Deliveries in flight per endpoint, counted by the claim for endpoints with a max in flight.
CREATE INDEX deliveries_inflight_idx ON webhookd.deliveries (endpoint_id)
    WHERE status = 'delivering';
