-- The operator commands with a million endpoints and millions of deliveries and attempts: each
-- reads what it shows through an index, never the whole endpoints or deliveries table.
--
-- `endpoint list` pages through live endpoints in id order (keyset: `--after ID`), of every
-- tenant or of one. Deleted endpoints stay as rows (their logs are kept), so the pages walk
-- indexes that hold only live ones.
CREATE INDEX endpoints_live_id_idx ON webhookd.endpoints (id) WHERE deleted_at IS NULL;
CREATE INDEX endpoints_tenant_id_idx ON webhookd.endpoints (tenant_id, id)
    WHERE deleted_at IS NULL;

-- `dead-letters` lists the latest dead letters first, of every endpoint or of one, and `stats`
-- counts those of its window. Only dead letters are in these indexes, so deliveries that
-- succeed pay nothing for them. The one per endpoint gains `id`, the listing's tie-break, so
-- that it serves that order as it is: the planner then takes it for one endpoint, rather than
-- walking every endpoint's latest dead letters looking for that one's. Built in the
-- migration's transaction: inserts into the outbox wait meanwhile (a pass over
-- webhookd.deliveries, seconds for millions of rows).
CREATE INDEX deliveries_failed_at_idx ON webhookd.deliveries (updated_at, id)
    WHERE status = 'failed';
DROP INDEX webhookd.deliveries_failed_idx;
CREATE INDEX deliveries_failed_idx ON webhookd.deliveries (endpoint_id, updated_at, id)
    WHERE status = 'failed';
