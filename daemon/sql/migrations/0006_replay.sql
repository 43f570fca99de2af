-- Replay and re-queue (`webhookd replay`, `recover`, `dead-letters requeue`) start a new
-- attempt series on the same delivery row. `attempts` keeps counting, so attempt numbers in
-- webhookd.attempts stay a monotonic history of the pair; `attempt_base` is the value of
-- `attempts` when the current series began, and the retry schedule is applied to
-- `attempts - attempt_base`: a replayed delivery gets the whole schedule again.
ALTER TABLE webhookd.deliveries ADD COLUMN attempt_base integer NOT NULL DEFAULT 0;

-- Operators name a message by its msg_id (the webhook-id receivers see). The unique index
-- leads with tenant and endpoint, so it cannot serve a lookup by msg_id alone.
CREATE INDEX outbox_msg_id_idx ON webhookd.outbox (msg_id);
