-- Ordering keys without scanning a blocked backlog. A delivery that waits behind an earlier
-- open delivery of its (endpoint, ordering_key) is `held`: out of the due index, so claims
-- and due_at never look at it again. The claim holds the blocked rows it finds (locking the
-- row that blocks them FOR SHARE, so that row cannot finish unseen in between), and when a
-- delivery of a key finishes, the recorder releases the next held row of that key, in the
-- same transaction. Claim cost and wake-ups no longer depend on how many rows wait behind a
-- blocked key.
ALTER TABLE webhookd.deliveries DROP CONSTRAINT deliveries_status_check;
ALTER TABLE webhookd.deliveries ADD CONSTRAINT deliveries_status_check
    CHECK (status IN ('pending', 'held', 'delivering', 'delivered', 'failed'));

-- The next held row of a key; and the keys that have held rows (a loose index scan).
CREATE INDEX deliveries_held_idx ON webhookd.deliveries (endpoint_id, ordering_key, message_id)
    WHERE status = 'held';
-- Whether an endpoint has keyed deliveries due at all (only then does a claim look for blocked
-- rows beyond its quota).
CREATE INDEX deliveries_keyed_due_idx ON webhookd.deliveries (endpoint_id, next_attempt_at)
    WHERE status = 'pending' AND ordering_key IS NOT NULL;
