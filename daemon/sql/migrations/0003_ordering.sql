-- Optional ordering: deliveries with the same (endpoint, ordering_key) are attempted strictly
-- in insert order (message id order); rows without a key keep full concurrency.

ALTER TABLE webhookd.outbox ADD COLUMN ordering_key text;
ALTER TABLE webhookd.deliveries ADD COLUMN ordering_key text;

-- "Is an earlier delivery of this key still open?" for the claim; only keyed rows that are
-- not delivered are indexed, so the index stays small.
CREATE INDEX deliveries_ordering_idx
    ON webhookd.deliveries (endpoint_id, ordering_key, message_id)
    WHERE ordering_key IS NOT NULL AND status <> 'delivered';

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

    INSERT INTO webhookd.deliveries (message_id, endpoint_id, next_attempt_at, created_at,
                                     ordering_key)
    SELECT n.id, n.endpoint_id, coalesce(n.deliver_after, n.created_at), n.created_at,
           n.ordering_key
    FROM new_rows n
    WHERE n.endpoint_id IS NOT NULL;

    INSERT INTO webhookd.deliveries (message_id, endpoint_id, next_attempt_at, created_at,
                                     ordering_key)
    SELECT n.id, e.id, coalesce(n.deliver_after, n.created_at), n.created_at, n.ordering_key
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
