-- name: claim
-- Lease up to $3 due deliveries, at most $2[i] from endpoint $1[i], in the order given (the
-- scheduler rotates it for fairness). Limits shared by every daemon are enforced here:
-- endpoints paused by a Retry-After are skipped; an endpoint with a rate ($6[i] tokens/s,
-- burst $7[i]) or a max in flight ($8[i]) has its state row locked (SKIP LOCKED: one that
-- another daemon is claiming right now waits for the next round), its bucket refilled and
-- spent, and its in-flight count taken, all in this one statement.
-- $9: whether a dead-lettered delivery blocks later ones of its ordering key.
WITH quota AS (
    SELECT q.*
    FROM unnest($1::text[], $2::int[], $6::float8[], $7::int[], $8::int[]) WITH ORDINALITY
         AS q(endpoint_id, n, rate_per_s, burst, max_in_flight, ord)
), limited AS MATERIALIZED (
    SELECT s.endpoint_id, q.rate_per_s, clock_timestamp() AS at,
           CASE WHEN q.rate_per_s IS NOT NULL THEN
               least(q.burst::float8, coalesce(s.tokens, q.burst::float8) + q.rate_per_s
                     * greatest(0.0, extract(epoch FROM clock_timestamp() - s.refilled_at)))
           END AS tokens,
           CASE WHEN q.max_in_flight IS NOT NULL THEN
               q.max_in_flight - (SELECT count(*) FROM webhookd.deliveries d
                                  WHERE d.endpoint_id = s.endpoint_id
                                    AND d.status = 'delivering')::int
           END AS slots
    FROM webhookd.endpoint_state s
    JOIN quota q ON q.endpoint_id = s.endpoint_id
    WHERE (q.rate_per_s IS NOT NULL OR q.max_in_flight IS NOT NULL)
      AND (s.paused_until IS NULL OR s.paused_until <= now())
    FOR UPDATE OF s SKIP LOCKED
), allowed AS (
    SELECT q.endpoint_id, q.ord,
           least(q.n, coalesce(floor(l.tokens + 1e-9)::int, q.n), coalesce(l.slots, q.n)) AS n
    FROM quota q
    LEFT JOIN limited l ON l.endpoint_id = q.endpoint_id
    WHERE CASE WHEN q.rate_per_s IS NULL AND q.max_in_flight IS NULL
               THEN NOT EXISTS (SELECT 1 FROM webhookd.endpoint_state s
                                WHERE s.endpoint_id = q.endpoint_id AND s.paused_until > now())
               ELSE l.endpoint_id IS NOT NULL END
), picked AS MATERIALIZED (
    SELECT d.id, a.endpoint_id
    FROM allowed a
    CROSS JOIN LATERAL (
        SELECT d.id
        FROM webhookd.deliveries d
        WHERE d.endpoint_id = a.endpoint_id
          AND d.status = 'pending'
          AND d.next_attempt_at <= now()
          -- ordered rows wait while an earlier one of their key is open ($9: dead letters
          -- block too), so only the oldest of a key is ever claimed
          AND (d.ordering_key IS NULL OR NOT EXISTS (
                SELECT 1 FROM webhookd.deliveries e
                WHERE e.endpoint_id = d.endpoint_id
                  AND e.ordering_key = d.ordering_key
                  AND e.message_id < d.message_id
                  AND (e.status IN ('pending', 'delivering') OR ($9 AND e.status = 'failed'))))
        ORDER BY d.next_attempt_at
        LIMIT greatest(a.n, 0)
        FOR UPDATE SKIP LOCKED
    ) d
    ORDER BY a.ord
    LIMIT $3
), spent AS (
    UPDATE webhookd.endpoint_state s
    SET tokens = l.tokens - (SELECT count(*) FROM picked p WHERE p.endpoint_id = l.endpoint_id),
        refilled_at = l.at
    FROM limited l
    WHERE s.endpoint_id = l.endpoint_id AND l.rate_per_s IS NOT NULL
)
UPDATE webhookd.deliveries d
SET status = 'delivering',
    locked_until = now() + make_interval(secs => $4::float8),
    locked_by = $5,
    updated_at = now()
FROM picked p, webhookd.outbox o
WHERE d.id = p.id AND o.id = d.message_id
RETURNING d.id, d.endpoint_id, d.attempts, o.msg_id, o.event_type,
          o.payload::text AS payload, o.created_at;

-- name: next_due
-- Earliest pending attempt time of each given endpoint (NULL when it has none).
SELECT q.endpoint_id,
       (SELECT min(d.next_attempt_at) FROM webhookd.deliveries d
        WHERE d.endpoint_id = q.endpoint_id AND d.status = 'pending') AS next_at,
       now() AS db_now
FROM unnest($1::text[]) AS q(endpoint_id);

-- name: rescue_expired
-- Return deliveries whose lease ran out (their daemon died) to pending, keeping the reason.
UPDATE webhookd.deliveries
SET status = 'pending',
    locked_until = NULL,
    last_error = 'lease expired: instance ' || coalesce(locked_by, '?')
                 || ' stopped before recording the outcome',
    locked_by = NULL,
    updated_at = now()
WHERE id IN (
    SELECT id FROM webhookd.deliveries
    WHERE status = 'delivering' AND locked_until < now()
    ORDER BY locked_until
    LIMIT $1
    FOR UPDATE SKIP LOCKED
)
RETURNING id;

-- name: release
-- Give back leases of claimed deliveries that were never attempted (shutdown).
UPDATE webhookd.deliveries
SET status = 'pending', locked_until = NULL, locked_by = NULL, updated_at = now()
WHERE id = ANY ($1::bigint[]) AND status = 'delivering' AND locked_by = $2;

-- name: record_outcomes
-- Write a batch of finished attempts: the attempt log, and the delivery's new state when
-- this instance still holds its lease (a lease taken over by another instance is not
-- overwritten, but the attempt is still logged). Returns how many deliveries changed.
WITH o AS (
    SELECT *
    FROM unnest($1::bigint[], $2::int[], $3::text[], $4::float8[], $5::float8[],
                $6::float8[], $7::int[], $8::text[], $9::text[], $10::bytea[])
         AS o(delivery_id, attempt, status, next_in_s, started_at, duration_ms,
              status_code, error_class, error, response_body)
), upd AS (
    UPDATE webhookd.deliveries d
    SET status = o.status,
        attempts = o.attempt,
        next_attempt_at = CASE WHEN o.status = 'pending'
                               THEN now() + make_interval(secs => o.next_in_s)
                               ELSE d.next_attempt_at END,
        locked_until = NULL,
        locked_by = NULL,
        last_status_code = o.status_code,
        last_error = o.error,
        updated_at = now(),
        finished_at = CASE WHEN o.status IN ('delivered', 'failed') THEN now() END
    FROM o
    WHERE d.id = o.delivery_id
      AND d.status = 'delivering'
      AND d.locked_by = $11
      AND d.attempts = o.attempt - 1
    RETURNING d.id
), ins AS (
    INSERT INTO webhookd.attempts (delivery_id, attempt, started_at, duration_ms, status_code,
                                   error_class, error, response_body, instance)
    SELECT o.delivery_id, o.attempt, to_timestamp(o.started_at), o.duration_ms, o.status_code,
           o.error_class, o.error, o.response_body, $11
    FROM o
    WHERE EXISTS (SELECT 1 FROM webhookd.deliveries d WHERE d.id = o.delivery_id)
)
SELECT count(*) AS updated FROM upd;

-- name: load_endpoints
-- Every endpoint the daemon may deliver to (deleted ones are gone from the cache).
SELECT id, tenant_id, url, event_types, enabled, secret, previous_secrets,
       signature_scheme, signature_header, signature_prefix, headers, rate_per_s, burst,
       max_in_flight, timeout_ms, retry_schedule_ms, version
FROM webhookd.endpoints
WHERE deleted_at IS NULL;

-- name: fail_deliveries
-- Dead-letter deliveries that cannot be attempted (e.g. their endpoint was deleted).
UPDATE webhookd.deliveries
SET status = 'failed', locked_until = NULL, locked_by = NULL, last_error = $2,
    updated_at = now(), finished_at = now()
WHERE id = ANY ($1::bigint[]) AND status IN ('pending', 'delivering');

-- name: backlog
-- Pending deliveries that are due, and the age in seconds of the oldest due one.
SELECT count(*) AS due,
       coalesce(extract(epoch FROM now() - min(next_attempt_at)), 0)::float8 AS oldest_s
FROM webhookd.deliveries
WHERE status = 'pending' AND next_attempt_at <= now();

-- name: migrations_table
-- Bookkeeping of applied schema versions (created before the first migration runs).
CREATE SCHEMA IF NOT EXISTS webhookd;
CREATE TABLE IF NOT EXISTS webhookd.schema_migrations (
    version    text PRIMARY KEY,
    applied_at timestamptz NOT NULL DEFAULT now()
);

-- name: migrations_applied
-- Versions already applied, or none when the schema does not exist yet.
SELECT version FROM webhookd.schema_migrations ORDER BY version;

-- name: migrations_lock
-- Serialise concurrent `migrate` runs (two daemons starting together) for this transaction.
SELECT pg_advisory_xact_lock(hashtext('webhookd.migrate'));

-- name: migration_mark
-- Record one applied version.
INSERT INTO webhookd.schema_migrations (version) VALUES ($1);

-- name: endpoint_insert
-- Create an endpoint; the id is generated unless given.
INSERT INTO webhookd.endpoints (id, tenant_id, url, description, event_types, secret,
                                signature_scheme, signature_header, signature_prefix, headers,
                                rate_per_s, burst, max_in_flight, timeout_ms, retry_schedule_ms)
VALUES (coalesce($1, 'ep_' || replace(gen_random_uuid()::text, '-', '')), $2, $3, $4, $5, $6,
        $7, $8, $9, $10::jsonb, $11, $12, $13, $14, $15)
RETURNING id;

-- name: endpoint_get
-- One endpoint that is not deleted.
SELECT * FROM webhookd.endpoints WHERE id = $1 AND deleted_at IS NULL;

-- name: endpoint_list
-- Endpoints, optionally of one tenant, oldest first.
SELECT e.*,
       (SELECT count(*) FROM webhookd.deliveries d
        WHERE d.endpoint_id = e.id AND d.status = 'pending') AS pending,
       (SELECT count(*) FROM webhookd.deliveries d
        WHERE d.endpoint_id = e.id AND d.status = 'failed') AS failed
FROM webhookd.endpoints e
WHERE e.deleted_at IS NULL AND ($1::text IS NULL OR e.tenant_id = $1)
ORDER BY e.created_at, e.id;

-- name: endpoint_set_enabled
-- Enable or disable (with a reason); pending deliveries of a disabled endpoint wait.
UPDATE webhookd.endpoints
SET enabled = $2, disabled_reason = CASE WHEN $2 THEN NULL ELSE $3 END,
    version = version + 1, updated_at = now()
WHERE id = $1 AND deleted_at IS NULL
RETURNING id;

-- name: endpoint_delete
-- Soft-delete: the configuration and secret go, message logs stay.
UPDATE webhookd.endpoints
SET deleted_at = now(), enabled = false, secret = '', previous_secrets = '[]',
    headers = '[]', version = version + 1, updated_at = now()
WHERE id = $1 AND deleted_at IS NULL
RETURNING id;

-- name: endpoint_fail_open
-- Dead-letter every undelivered delivery of an endpoint, with the reason.
UPDATE webhookd.deliveries
SET status = 'failed', locked_until = NULL, locked_by = NULL, last_error = $2,
    updated_at = now(), finished_at = now()
WHERE endpoint_id = $1 AND status IN ('pending', 'delivering');

-- name: endpoint_rotate_secret
-- Replace the secret; the old one keeps being signed until $3 (unix seconds). At most ten
-- previous secrets are kept, newest first; expired ones are dropped.
UPDATE webhookd.endpoints e
SET previous_secrets = (
        SELECT coalesce(jsonb_agg(p ORDER BY (p ->> 'expires_at')::float8 DESC), '[]'::jsonb)
        FROM (
            SELECT p
            FROM jsonb_array_elements(
                     jsonb_build_array(jsonb_build_object('secret', e.secret, 'expires_at', $3::float8))
                     || e.previous_secrets) AS p
            WHERE (p ->> 'expires_at')::float8 > extract(epoch FROM now())
            ORDER BY (p ->> 'expires_at')::float8 DESC
            LIMIT 10
        ) kept
    ),
    secret = $2, version = version + 1, updated_at = now()
WHERE e.id = $1 AND e.deleted_at IS NULL
RETURNING e.id;

-- name: endpoint_pause
-- Pause an endpoint for every daemon (429/503 Retry-After) for $2 seconds; never shortens.
UPDATE webhookd.endpoint_state
SET paused_until = greatest(coalesce(paused_until, now()), now() + make_interval(secs => $2))
WHERE endpoint_id = $1;

-- name: endpoint_secrets_batch
-- Next batch of live endpoints after id $1 (in id order) with their stored secrets and header
-- values, locked so that a concurrent rotate-secret waits instead of being overwritten.
SELECT id, secret, previous_secrets, headers
FROM webhookd.endpoints
WHERE id > $1 AND deleted_at IS NULL
ORDER BY id
LIMIT $2
FOR UPDATE;

-- name: endpoint_secrets_update
-- Store re-encrypted secrets and header values. Their plaintext is unchanged, so the version
-- is not bumped: the daemons' caches stay valid.
UPDATE webhookd.endpoints e
SET secret = u.secret, previous_secrets = u.previous_secrets::jsonb, headers = u.headers::jsonb,
    updated_at = now()
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])
     AS u(id, secret, previous_secrets, headers)
WHERE e.id = u.id;
