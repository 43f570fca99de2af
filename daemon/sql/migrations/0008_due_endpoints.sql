-- Claims driven by what is due, not by the endpoint list: with a million endpoints registered
-- and a few hundred busy, a claim must cost what the busy ones cost.
--
-- endpoint_state.due_at is when the endpoint has something to claim: NULL when nothing is
-- pending, else no later than its earliest pending delivery. The claim walks the partial index
-- below in due_at order (least recently served first: a claim sets due_at to now() for an
-- endpoint it served that still has due work, which sends it to the back of the line), locks
-- the endpoints' rows with SKIP LOCKED, and sets their next due_at. It may be early (a claim
-- then finds nothing and corrects it); it is never late.
--
-- Whatever makes a delivery pending (the fan-out, a retry, a release, a rescue, a replay or
-- requeue, an endpoint enabled again) appends a row to endpoint_wakes instead of updating
-- endpoint_state: an append takes no lock, so an application's transaction inserting into the
-- outbox never waits for (nor blocks) another one, a claim or an outcome write. The daemons
-- fold the wakes into due_at (query absorb_wakes) when woken by NOTIFY and on every poll.
ALTER TABLE webhookd.endpoint_state ADD COLUMN due_at timestamptz;
CREATE INDEX endpoint_state_due_idx ON webhookd.endpoint_state (due_at)
    WHERE due_at IS NOT NULL;
-- The health check reads endpoints that are failing, not every endpoint.
CREATE INDEX endpoint_state_failing_idx ON webhookd.endpoint_state (failing_since)
    WHERE failing_since IS NOT NULL;

CREATE TABLE webhookd.endpoint_wakes (
    endpoint_id text NOT NULL,
    due_at      timestamptz NOT NULL
);
-- Appended to and emptied all the time: vacuum it early.
ALTER TABLE webhookd.endpoint_wakes SET (
    autovacuum_vacuum_scale_factor = 0.0,
    autovacuum_vacuum_threshold = 1000,
    autovacuum_vacuum_insert_scale_factor = 0.0,
    autovacuum_vacuum_insert_threshold = 1000
);

UPDATE webhookd.endpoint_state s
SET due_at = p.next_at
FROM (SELECT endpoint_id, min(next_attempt_at) AS next_at
      FROM webhookd.deliveries WHERE status = 'pending' GROUP BY endpoint_id) p
WHERE s.endpoint_id = p.endpoint_id;

CREATE OR REPLACE FUNCTION webhookd.outbox_fanout() RETURNS trigger
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

    WITH made AS (
        INSERT INTO webhookd.deliveries (message_id, endpoint_id, next_attempt_at, created_at,
                                         ordering_key)
        SELECT n.id, n.endpoint_id, coalesce(n.deliver_after, n.created_at), n.created_at,
               n.ordering_key
        FROM new_rows n
        WHERE n.endpoint_id IS NOT NULL
        UNION ALL
        SELECT n.id, e.id, coalesce(n.deliver_after, n.created_at), n.created_at, n.ordering_key
        FROM new_rows n
        JOIN webhookd.endpoints e
          ON e.tenant_id = coalesce(n.tenant_id, 'default')
         AND e.enabled AND e.deleted_at IS NULL
         AND (e.event_types = '{}' OR n.event_type = ANY (e.event_types))
        WHERE n.endpoint_id IS NULL
        RETURNING endpoint_id, next_attempt_at
    )
    INSERT INTO webhookd.endpoint_wakes (endpoint_id, due_at)
    SELECT endpoint_id, min(next_attempt_at) FROM made GROUP BY endpoint_id;

    -- One wake-up per statement (identical notifications in a transaction fold into one).
    -- Deferred rows wake the daemon too: it folds their wakes into due_at, and sleeps until
    -- the earliest due_at.
    PERFORM pg_notify('webhookd_outbox', '');
    RETURN NULL;
END
$$;

-- A delivery made pending again (a retry written, a lease released or rescued, a replay, a
-- requeue, an ordered delivery released from behind its key): a wake for its endpoint.
CREATE FUNCTION webhookd.delivery_pending() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    INSERT INTO webhookd.endpoint_wakes (endpoint_id, due_at)
    VALUES (NEW.endpoint_id, NEW.next_attempt_at);
    RETURN NULL;
END
$$;

CREATE TRIGGER delivery_pending AFTER UPDATE ON webhookd.deliveries
    FOR EACH ROW
    WHEN (NEW.status = 'pending'
          AND (OLD.status <> 'pending' OR NEW.next_attempt_at < OLD.next_attempt_at))
    EXECUTE FUNCTION webhookd.delivery_pending();

-- Endpoint changes: the daemons drop exactly that endpoint from their cache (the id is the
-- payload; a new endpoint is in no cache, so inserts notify nobody). An endpoint disabled or
-- deleted leaves the due index (its deliveries wait); enabled again, it is woken.
DROP TRIGGER endpoints_changed ON webhookd.endpoints;
DROP FUNCTION webhookd.endpoints_changed();

CREATE FUNCTION webhookd.endpoint_changed() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('webhookd_endpoints', OLD.id);
        RETURN NULL;
    END IF;
    PERFORM pg_notify('webhookd_endpoints', NEW.id);
    IF NEW.enabled AND NEW.deleted_at IS NULL
       AND NOT (OLD.enabled AND OLD.deleted_at IS NULL) THEN
        INSERT INTO webhookd.endpoint_wakes (endpoint_id, due_at) VALUES (NEW.id, now());
    ELSIF NOT (NEW.enabled AND NEW.deleted_at IS NULL) AND OLD.enabled
          AND OLD.deleted_at IS NULL THEN
        UPDATE webhookd.endpoint_state SET due_at = NULL WHERE endpoint_id = NEW.id;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER endpoint_changed AFTER UPDATE OR DELETE ON webhookd.endpoints
    FOR EACH ROW EXECUTE FUNCTION webhookd.endpoint_changed();
