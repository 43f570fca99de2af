-- Endpoint health: how long an endpoint has been failing, so that one failing for
-- `health.disable_after` (5 days by default, as Svix does) is disabled automatically.
--
-- failing_since is the start time of the first failed attempt after the last success (NULL
-- while the endpoint succeeds) and consecutive_failures counts the failed attempts since. Both
-- are written by the recorder's batched outcome statement, only when they change, so a healthy
-- endpoint's row is never rewritten. No index on them: the periodic check reads a table of one
-- row per endpoint, and an index would stop the claim's bucket updates from being HOT.

ALTER TABLE webhookd.endpoint_state
    ADD COLUMN failing_since timestamptz,
    ADD COLUMN consecutive_failures integer NOT NULL DEFAULT 0;
