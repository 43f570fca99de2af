-- name: claim
-- Lease up to $1 due deliveries from the endpoints that are due, least recently served first
-- (migrations/0008_due_endpoints.sql): at most $2 endpoints, whose state rows are locked with
-- SKIP LOCKED (two daemons never claim one endpoint at once), $3 deliveries from each unless
-- this daemon's own quota for it ($4[i] -> $5[i]) says otherwise; a quota of 0 leaves the
-- endpoint out (at this daemon's in-flight cap, paused here, or quarantined). Limits shared by
-- every daemon are enforced here too: a Retry-After pause, the token bucket (the endpoint's
-- rate, else $6 tokens/s; its burst, else $7, else one second's worth) and an explicit max in
-- flight. A rate-limited endpoint gets at most $13 (the slots free now), so that what it is
-- granted can start at once. Each endpoint served gets its next due_at: NULL when nothing is
-- pending, when its next token comes when it has none, now() (the back of the line) when it
-- still has due work.
-- Ordering ($10: dead letters block their key too): a keyed delivery is claimed only when no
-- earlier delivery of its key is open; blocked ones found among the first $14 beyond the quota
-- are `held` (migrations/0009_ordering_held.sql), the row blocking them locked FOR SHARE.
-- The lease is each endpoint's timeout (else $8) plus $9; the rows share one fencing token
-- (migrations/0007_fenced_leases.sql). Payloads over $12 bytes come back as their size only.
-- $15: only this endpoint (to find the one whose row makes the claim fail), NULL for any.
-- params: limit, max_endpoints, default_quota, local_ids, local_quotas, default_rate_per_s, default_burst, default_timeout_s, lease_margin_s, dead_letters_block, instance, max_payload_bytes, free_slots, hold_limit, only_endpoint_id
WITH local AS MATERIALIZED (
    SELECT * FROM unnest($4::text[], $5::int[]) AS l(endpoint_id, n)
), due AS MATERIALIZED (
    SELECT s.endpoint_id, s.due_at, s.tokens, s.refilled_at,
           e.enabled AND e.deleted_at IS NULL AS live,
           -- bounded: a row written by SQL must not overflow the arithmetic below; and NULL
           -- (no limit) stays NULL: least() skips NULLs, so least(NULL, 1e6) is 1e6, which
           -- once made every endpoint rate-limited (claims cut to the free slots)
           CASE WHEN coalesce(e.rate_per_s, $6::float8) IS NOT NULL
                THEN least(coalesce(e.rate_per_s, $6::float8), 1e6) END AS rate,
           CASE WHEN e.burst IS NOT NULL THEN least(e.burst, 1000000) END AS burst,
           CASE WHEN e.max_in_flight IS NOT NULL THEN least(e.max_in_flight, 100000) END
               AS max_in_flight,
           e.timeout_ms, e.version
    FROM webhookd.endpoint_state s
    JOIN webhookd.endpoints e ON e.id = s.endpoint_id
    WHERE s.due_at <= now()
      AND (s.paused_until IS NULL OR s.paused_until <= now())
      AND NOT EXISTS (SELECT 1 FROM local l WHERE l.endpoint_id = s.endpoint_id AND l.n <= 0)
      AND ($15::text IS NULL OR s.endpoint_id = $15::text)
    ORDER BY s.due_at
    LIMIT $2::int
    FOR UPDATE OF s SKIP LOCKED
), lim AS MATERIALIZED (
    -- n: what the endpoint is granted (every endpoint walked is read: one granted n may have
    -- fewer due, so what comes after cannot be known before reading it)
    SELECT q.*,
           CASE WHEN NOT q.live THEN 0
                ELSE greatest(0, least(q.want, floor(q.tokens_now + 1e-9), q.slots,
                                       CASE WHEN q.rate IS NOT NULL THEN $13::int END))::int
           END AS n
    FROM (
        SELECT d.*, clock_timestamp() AS at,
               row_number() OVER (ORDER BY d.due_at, d.endpoint_id) AS ord,
               coalesce((SELECT l.n FROM local l WHERE l.endpoint_id = d.endpoint_id), $3::int) AS want,
               least(coalesce(d.timeout_ms / 1000.0, $8::float8), 3600.0) + $9::float8 AS lease_s,
               CASE WHEN d.rate IS NOT NULL THEN
                   least(b.burst, coalesce(d.tokens, b.burst) + d.rate
                         * greatest(0.0, extract(epoch FROM clock_timestamp() - d.refilled_at)))
               END AS tokens_now,
               CASE WHEN d.max_in_flight IS NOT NULL THEN
                   d.max_in_flight - (SELECT count(*) FROM webhookd.deliveries x
                                      WHERE x.endpoint_id = d.endpoint_id
                                        AND x.status = 'delivering')::int
               END AS slots
        FROM due d
        CROSS JOIN LATERAL (
            SELECT least(coalesce(d.burst, nullif($7::int, 0), greatest(1, ceil(d.rate))),
                         1e6)::float8 AS burst
        ) b
    ) q
), cand AS MATERIALIZED (
    -- the first pending deliveries of each endpoint, in due order: its n, one more (what falls
    -- due next, for its next due_at: the rows just claimed stay in the index as dead entries
    -- until a vacuum, so a second walk of it cost as much again), and for one with keyed
    -- deliveries due, up to $14::int more (to find the blocked ones); read, not locked: the
    -- endpoint's state row lock already keeps other claims away, and the final UPDATE
    -- re-checks each row's status
    SELECT c.*, l.endpoint_id, l.ord, l.n, k.k,
           CASE WHEN c.ordering_key IS NOT NULL AND c.next_attempt_at <= now() THEN (
               SELECT e.id FROM webhookd.deliveries e
               WHERE e.endpoint_id = l.endpoint_id
                 AND e.ordering_key = c.ordering_key
                 AND e.message_id < c.message_id
                 AND (e.status IN ('pending', 'held', 'delivering')
                      OR ($10::bool AND e.status = 'failed'))
               ORDER BY e.message_id
               LIMIT 1)
           END AS blocker
    FROM lim l
    CROSS JOIN LATERAL (
        SELECT l.n + 1 + CASE WHEN l.n > 0 AND EXISTS (
                                  SELECT 1 FROM webhookd.deliveries k
                                  WHERE k.endpoint_id = l.endpoint_id AND k.status = 'pending'
                                    AND k.ordering_key IS NOT NULL
                                    AND k.next_attempt_at <= now())
                              THEN $14::int ELSE 0 END AS k
        OFFSET 0  -- once per endpoint: inlined, its EXISTS was planned a second time, as a
                  -- scan of every keyed pending row
    ) k
    CROSS JOIN LATERAL (
        SELECT d.id, d.message_id, d.ordering_key, d.next_attempt_at
        FROM webhookd.deliveries d
        WHERE d.endpoint_id = l.endpoint_id
          AND d.status = 'pending'
        ORDER BY d.next_attempt_at
        LIMIT k.k
    ) c
), ranked AS (
    SELECT c.*,
           row_number() OVER (PARTITION BY c.endpoint_id ORDER BY c.next_attempt_at, c.id) AS rank
    FROM cand c
    WHERE c.blocker IS NULL AND c.next_attempt_at <= now()
), picked AS MATERIALIZED (
    SELECT r.id, r.endpoint_id, r.ord
    FROM ranked r
    WHERE r.rank <= r.n
    ORDER BY r.ord, r.rank
    LIMIT $1::int
), blockers AS MATERIALIZED (
    -- a blocked row is held only while the row blocking it is still open in its latest
    -- version, locked here so that it cannot finish (and release nothing) before this commits
    SELECT e.id
    FROM webhookd.deliveries e
    WHERE e.id = ANY (ARRAY(SELECT blocker FROM cand WHERE blocker IS NOT NULL))
      AND (e.status IN ('pending', 'held', 'delivering') OR ($10::bool AND e.status = 'failed'))
    FOR SHARE SKIP LOCKED
), held AS (
    UPDATE webhookd.deliveries d
    SET status = 'held', updated_at = now()
    WHERE d.id = ANY (ARRAY(SELECT c.id FROM cand c
                            WHERE c.blocker IN (SELECT id FROM blockers)))
      AND d.status = 'pending'
    RETURNING d.id, d.endpoint_id
), served AS MATERIALIZED (
    -- endpoints the walk reached (it stops at $1::int rows), with what they got
    SELECT l.endpoint_id, l.live, l.rate, l.tokens_now, l.at, l.slots, l.want,
           (SELECT count(*) FROM picked p WHERE p.endpoint_id = l.endpoint_id)::int AS taken
    FROM lim l
    WHERE (SELECT count(*) FROM picked) < $1::int OR l.ord <= (SELECT max(ord) FROM picked)
), next_due AS MATERIALIZED (
    -- when each endpoint served falls due next: the earliest pending row the walk read and
    -- neither claimed nor held; none if it read every pending row; else (it read only rows
    -- it claimed or held) the index once more
    SELECT v.*,
           CASE WHEN x.left_at IS NOT NULL THEN x.left_at
                WHEN x.read < coalesce(x.k, 1) THEN NULL
                ELSE (SELECT d.next_attempt_at
                      FROM webhookd.deliveries d
                      WHERE d.endpoint_id = v.endpoint_id AND d.status = 'pending'
                        AND d.id NOT IN (SELECT p.id FROM picked p
                                         WHERE p.endpoint_id = v.endpoint_id)
                        AND d.id NOT IN (SELECT h.id FROM held h
                                         WHERE h.endpoint_id = v.endpoint_id)
                      ORDER BY d.next_attempt_at
                      LIMIT 1)
           END AS next_at
    FROM served v
    CROSS JOIN LATERAL (
        SELECT min(c.next_attempt_at) FILTER (
                   WHERE c.id NOT IN (SELECT p.id FROM picked p)
                     AND c.id NOT IN (SELECT h.id FROM held h)) AS left_at,
               count(*) AS read, max(c.k) AS k
        FROM cand c
        WHERE c.endpoint_id = v.endpoint_id
    ) x
), state AS (
    UPDATE webhookd.endpoint_state s
    SET tokens = CASE WHEN x.rate IS NOT NULL THEN x.tokens_now - x.taken ELSE s.tokens END,
        refilled_at = CASE WHEN x.rate IS NOT NULL THEN x.at ELSE s.refilled_at END,
        due_at = CASE
            WHEN NOT x.live OR x.next_at IS NULL THEN NULL
            WHEN x.rate IS NOT NULL AND x.tokens_now - x.taken < 1 THEN
                greatest(x.next_at, now() + make_interval(
                    secs => (1 - (x.tokens_now - x.taken)) / x.rate))
            -- at its shared max in flight: an outcome of it wakes it (record_outcomes); this
            -- is the fallback
            WHEN x.slots IS NOT NULL AND x.slots - x.taken <= 0 THEN
                greatest(x.next_at, now() + interval '1 second')
            ELSE greatest(x.next_at, now())
        END
    FROM next_due x
    WHERE s.endpoint_id = x.endpoint_id
    RETURNING s.due_at
), token AS MATERIALIZED (
    SELECT nextval('webhookd.lease_tokens') AS token
), lease AS MATERIALIZED (
    SELECT l.endpoint_id, l.lease_s, l.version
    FROM lim l
    WHERE l.endpoint_id IN (SELECT p.endpoint_id FROM picked p)
), claimed AS (
    -- by primary key, and nothing else joined to the rows' list: a join could be planned as
    -- a scan of the whole table, or (the CTEs estimated at one row) as a nested loop probing
    -- every picked id once per picked row; each row's lease and endpoint version are looked
    -- up in the small `lease` list instead
    UPDATE webhookd.deliveries d
    SET status = 'delivering',
        locked_until = now() + make_interval(
            secs => (SELECT x.lease_s FROM lease x WHERE x.endpoint_id = d.endpoint_id)),
        locked_by = $11::text,
        lease_token = t.token,
        updated_at = now()
    FROM token t
    JOIN webhookd.outbox o ON true
    -- the payload's text once per row (OFFSET 0 keeps it from being inlined twice); one
    -- over $12 bytes comes back as NULL with its size, so it is refused without being loaded
    CROSS JOIN LATERAL (SELECT o.payload::text AS body OFFSET 0) b
    WHERE d.id = ANY (ARRAY(SELECT id FROM picked))
      AND o.id = d.message_id AND d.status = 'pending'
    RETURNING d.id, d.endpoint_id, d.attempts, d.attempt_base, d.ordering_key, o.msg_id,
              o.event_type,
              -- as bytes: they are signed and sent as they are (no decoding into a str here
              -- to encode it again there)
              CASE WHEN octet_length(b.body) <= $12::int THEN convert_to(b.body, 'UTF8')
              END AS payload,
              octet_length(b.body) AS payload_bytes, o.created_at, t.token AS lease_token,
              -- the lease just set, not looked up again: now() is the statement's
              extract(epoch FROM d.locked_until - now())::float8 AS lease_s,
              (SELECT x.version FROM lease x WHERE x.endpoint_id = d.endpoint_id)
                  AS endpoint_version
)
SELECT c.*, NULL::int AS rate_limited, NULL::timestamptz AS next_due_at,
       NULL::timestamptz AS db_now
FROM claimed c
UNION ALL
-- one more row, with no delivery: how many endpoints served had due work their token bucket
-- held back (webhookd_rate_limited_waits_total), and when the next endpoint this daemon
-- could take falls due once this commits (as query next_due_at would say then, without its
-- round trip): the earliest of the due times just set and of those of endpoints not served
SELECT NULL::bigint, NULL::text, NULL::int, NULL::int, NULL::text, NULL::text, NULL::text,
       NULL::bytea, NULL::int, NULL::timestamptz, NULL::bigint, NULL::float8, NULL::bigint,
       (SELECT count(*) FROM next_due x
        WHERE x.rate IS NOT NULL AND x.live AND x.next_at <= now()
          AND floor(x.tokens_now + 1e-9) < least(x.want, coalesce(x.slots, x.want), $13::int)
       )::int,
       least(
           (SELECT min(x.due_at) FROM state x),
           (SELECT s.due_at
            FROM webhookd.endpoint_state s
            WHERE s.due_at IS NOT NULL
              AND NOT EXISTS (SELECT 1 FROM local l
                              WHERE l.endpoint_id = s.endpoint_id AND l.n <= 0)
              AND s.endpoint_id NOT IN (SELECT v.endpoint_id FROM served v)
            ORDER BY s.due_at
            LIMIT 1)),
       now();

-- name: absorb_wakes
-- Fold up to $1 wakes (migrations/0008_due_endpoints.sql) into their endpoints' due_at:
-- earlier only, never into a pause. Several daemons may absorb at once: SKIP LOCKED shares
-- the wakes out, and the state rows are locked in one order.
-- params: limit
WITH taken AS (
    DELETE FROM webhookd.endpoint_wakes w
    WHERE w.ctid = ANY (ARRAY(SELECT ctid FROM webhookd.endpoint_wakes
                              LIMIT $1 FOR UPDATE SKIP LOCKED))
    RETURNING w.endpoint_id, w.due_at
), earliest AS (
    SELECT endpoint_id, min(due_at) AS due_at FROM taken GROUP BY endpoint_id
), locked AS MATERIALIZED (
    SELECT s.endpoint_id
    FROM webhookd.endpoint_state s
    JOIN earliest e ON e.endpoint_id = s.endpoint_id
    ORDER BY s.endpoint_id
    FOR UPDATE OF s
), moved AS (
    UPDATE webhookd.endpoint_state s
    SET due_at = greatest(least(coalesce(s.due_at, 'infinity'), e.due_at),
                          coalesce(s.paused_until, '-infinity'))
    FROM earliest e
    WHERE s.endpoint_id = e.endpoint_id AND s.endpoint_id IN (SELECT endpoint_id FROM locked)
)
SELECT (SELECT count(*) FROM taken)::int AS wakes;

-- name: due_endpoints
-- The first $1 endpoints that are due, leaving out $2 (to claim them one at a time when a
-- claim of them together was refused).
-- params: limit, excluded_ids
SELECT s.endpoint_id
FROM webhookd.endpoint_state s
WHERE s.due_at <= now() AND s.endpoint_id <> ALL ($2::text[])
ORDER BY s.due_at
LIMIT $1;

-- name: next_due_at
-- When the next endpoint falls due, leaving out those this daemon cannot take now ($1), and
-- the database's now() to measure the wait on its clock.
-- params: excluded_ids
SELECT (SELECT s.due_at
        FROM webhookd.endpoint_state s
        WHERE s.due_at IS NOT NULL AND s.endpoint_id <> ALL ($1::text[])
        ORDER BY s.due_at
        LIMIT 1) AS due_at,
       now() AS db_now;

-- name: table_pages
-- The size in pages of each of webhookd's tables, as the planner reads it when it plans
-- (daemon/plans.py: a table that grew is planned for again).
SELECT c.relname::text AS table_name,
       (pg_relation_size(c.oid) / current_setting('block_size')::int)::int AS pages
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = 'webhookd' AND c.relkind = 'r';

-- name: rescue_expired
-- Return deliveries whose lease ran out (their daemon died, or lost the database for longer
-- than the lease) to pending, keeping the reason. Their token goes: the old holder's renewal,
-- outcome or release no longer matches.
-- params: limit
UPDATE webhookd.deliveries
SET status = 'pending',
    locked_until = NULL,
    last_error = 'lease expired: instance ' || coalesce(locked_by, '?')
                 || ' stopped before recording the outcome',
    locked_by = NULL,
    lease_token = NULL,
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
-- Give back leases of claimed deliveries that were not attempted (shutdown, endpoint paused
-- or disabled, a lease that could not cover an attempt), where the token still matches.
-- params: delivery_ids, lease_tokens
UPDATE webhookd.deliveries d
SET status = 'pending', locked_until = NULL, locked_by = NULL, lease_token = NULL,
    updated_at = now()
FROM unnest($1::bigint[], $2::bigint[]) AS r(id, token)
WHERE d.id = r.id AND d.lease_token = r.token AND d.status = 'delivering';

-- name: pause_and_release
-- A Retry-After or an opened breaker: pause the endpoint for every daemon for $2 seconds
-- (never shortening a pause) and give back the leases of its deliveries that wait here, in
-- one statement, so no daemon can claim them between the two.
-- params: endpoint_id, pause_s, delivery_ids, lease_tokens
WITH paused AS (
    -- and out of the due index until then (absorb_wakes keeps it there)
    UPDATE webhookd.endpoint_state
    SET paused_until = greatest(coalesce(paused_until, now()),
                                now() + make_interval(secs => $2)),
        due_at = greatest(due_at, now() + make_interval(secs => $2))
    WHERE endpoint_id = $1
)
UPDATE webhookd.deliveries d
SET status = 'pending', locked_until = NULL, locked_by = NULL, lease_token = NULL,
    updated_at = now()
FROM unnest($3::bigint[], $4::bigint[]) AS r(id, token)
WHERE d.id = r.id AND d.lease_token = r.token AND d.status = 'delivering';

-- name: renew_leases
-- The heartbeat: extend the leases this daemon still holds (rows it claimed, queued or being
-- attempted or waiting for their outcome to be written) to now + $3[i] seconds. A row whose
-- token no longer matches was rescued by another daemon: it is not returned, and the
-- daemon drops it.
-- params: delivery_ids, lease_tokens, lease_s
UPDATE webhookd.deliveries d
SET locked_until = now() + make_interval(secs => r.lease_s)
FROM unnest($1::bigint[], $2::bigint[], $3::float8[]) AS r(id, token, lease_s)
WHERE d.id = r.id AND d.lease_token = r.token AND d.status = 'delivering'
RETURNING d.id;

-- name: record_outcomes
-- Write a batch of finished attempts: the attempt log, and the delivery's new state where the
-- attempt's lease token still matches (a lease that was rescued and taken by another daemon
-- is not overwritten, but the attempt is still logged). Returns how many deliveries changed.
-- last_errors[i] is the delivery's last error (for a dead letter: why it was given up),
-- attempt_errors[i] the attempt's own error, as the attempt log keeps it. Times are the
-- database's: an attempt started started_ago_s[i] seconds before this statement, so
-- attempts.started_at and the failing streak compare with now() on one clock.
-- succeeded[i]: whether the attempt succeeded, for the endpoint's failing streak (NULL: the
-- result says nothing about the endpoint, e.g. a refused destination). The streak columns of
-- endpoint_state are written only when they change (migrations/0004_endpoint_health.sql).
-- params: delivery_ids, lease_tokens, attempts, statuses, next_in_s, started_ago_s, durations_ms, status_codes, error_classes, last_errors, response_bodies, succeeded, attempt_errors, instance
WITH o AS (
    SELECT o.*, now() - make_interval(secs => o.started_ago_s) AS started_at
    FROM unnest($1::bigint[], $2::bigint[], $3::int[], $4::text[], $5::float8[], $6::float8[],
                $7::float8[], $8::int[], $9::text[], $10::text[], $11::bytea[], $12::bool[],
                $13::text[])
         WITH ORDINALITY
         AS o(delivery_id, token, attempt, status, next_in_s, started_ago_s, duration_ms,
              status_code, error_class, last_error, response_body, ok, attempt_error, ord)
), upd AS (
    UPDATE webhookd.deliveries d
    SET status = o.status,
        attempts = o.attempt,
        next_attempt_at = CASE WHEN o.status = 'pending'
                               THEN now() + make_interval(secs => o.next_in_s)
                               ELSE d.next_attempt_at END,
        locked_until = NULL,
        locked_by = NULL,
        lease_token = NULL,
        last_status_code = o.status_code,
        last_error = o.last_error,
        updated_at = now(),
        finished_at = CASE WHEN o.status IN ('delivered', 'failed') THEN now() END
    FROM o
    WHERE d.id = o.delivery_id
      AND d.status = 'delivering'
      AND d.lease_token = o.token
      AND d.attempts = o.attempt - 1
    RETURNING d.id, d.endpoint_id
), ins AS (
    INSERT INTO webhookd.attempts (delivery_id, attempt, started_at, duration_ms, status_code,
                                   error_class, error, response_body, instance, endpoint_id)
    SELECT o.delivery_id, o.attempt, o.started_at, o.duration_ms, o.status_code,
           o.error_class, o.attempt_error, o.response_body, $14, d.endpoint_id
    FROM o
    JOIN webhookd.deliveries d ON d.id = o.delivery_id
), slot_freed AS (
    -- an endpoint at its shared max in flight waits for a slot: wake it when one frees
    -- (each endpoint of the batch once, not each outcome)
    INSERT INTO webhookd.endpoint_wakes (endpoint_id, due_at)
    SELECT c.endpoint_id, now()
    FROM (SELECT DISTINCT u.endpoint_id FROM upd u) c
    WHERE EXISTS (SELECT 1 FROM webhookd.endpoints e
                  WHERE e.id = c.endpoint_id AND e.max_in_flight IS NOT NULL)
      AND EXISTS (SELECT 1 FROM webhookd.deliveries p
                  WHERE p.endpoint_id = c.endpoint_id AND p.status = 'pending')
), seen AS (
    -- per endpoint, in the order the attempts finished: which came after its last success
    SELECT u.endpoint_id, o.ok, o.started_at,
           o.ord > coalesce(max(o.ord) FILTER (WHERE o.ok) OVER (PARTITION BY u.endpoint_id), 0)
               AS after_last_ok
    FROM o JOIN upd u ON u.id = o.delivery_id
    WHERE o.ok IS NOT NULL
), streak AS (
    SELECT endpoint_id, bool_or(ok) AS succeeded,
           count(*) FILTER (WHERE after_last_ok)::int AS failures,
           min(started_at) FILTER (WHERE after_last_ok) AS first_failure
    FROM seen
    GROUP BY endpoint_id
), changed AS MATERIALIZED (
    -- only rows whose streak changes, locked in one order (two daemons never deadlock here)
    SELECT s.endpoint_id
    FROM webhookd.endpoint_state s
    JOIN streak k ON k.endpoint_id = s.endpoint_id
    WHERE k.failures > 0 OR s.failing_since IS NOT NULL OR s.consecutive_failures > 0
    ORDER BY s.endpoint_id
    FOR UPDATE OF s
), health AS (
    -- a success restarts the streak at the first failure after it (or ends it); otherwise the
    -- failures add to the streak, which began at its first failure
    UPDATE webhookd.endpoint_state s
    SET failing_since = CASE WHEN k.failures = 0 THEN NULL
                             WHEN k.succeeded THEN k.first_failure
                             ELSE coalesce(s.failing_since, k.first_failure) END,
        consecutive_failures = CASE WHEN k.succeeded THEN k.failures
                                    ELSE s.consecutive_failures + k.failures END
    FROM streak k
    WHERE s.endpoint_id = k.endpoint_id
      AND s.endpoint_id IN (SELECT endpoint_id FROM changed)
)
SELECT count(*) AS updated FROM upd;

-- name: release_held
-- After deliveries of these (endpoint, ordering key) pairs finished: the first held delivery
-- of each key becomes pending when nothing before it is open any more ($3: a dead letter
-- still blocks). Run in the outcomes' transaction, after them, so it sees the rows a
-- concurrent claim held (migrations/0009_ordering_held.sql).
-- params: endpoint_ids, ordering_keys, dead_letters_block
WITH k AS (
    SELECT DISTINCT * FROM unnest($1::text[], $2::text[]) AS k(endpoint_id, ordering_key)
), head AS (
    SELECT h.id
    FROM k
    CROSS JOIN LATERAL (
        SELECT d.id, d.message_id
        FROM webhookd.deliveries d
        WHERE d.endpoint_id = k.endpoint_id AND d.ordering_key = k.ordering_key
          AND d.status = 'held'
        ORDER BY d.message_id
        LIMIT 1
    ) h
    WHERE NOT EXISTS (
        SELECT 1 FROM webhookd.deliveries e
        WHERE e.endpoint_id = k.endpoint_id AND e.ordering_key = k.ordering_key
          AND e.message_id < h.message_id
          AND (e.status IN ('pending', 'delivering') OR ($3 AND e.status = 'failed')))
)
UPDATE webhookd.deliveries d
SET status = 'pending', updated_at = now()
FROM head
WHERE d.id = head.id AND d.status = 'held'
RETURNING d.id;

-- name: release_held_sweep
-- The same for every key with held deliveries, at most $1 keys after ($2, $3) in key order
-- (a loose index scan: one probe per key, however many rows wait): at start-up and after a
-- reload (ordering_on_dead_letter "block" -> "skip" unblocks keys), and now and then.
-- params: limit, after_endpoint_id, after_ordering_key, dead_letters_block
WITH RECURSIVE keys AS (
    (SELECT d.endpoint_id, d.ordering_key, 1 AS n
     FROM webhookd.deliveries d
     WHERE d.status = 'held' AND (d.endpoint_id, d.ordering_key) > ($2::text, $3::text)
     ORDER BY d.endpoint_id, d.ordering_key
     LIMIT 1)
    UNION ALL
    SELECT nxt.endpoint_id, nxt.ordering_key, k.n + 1
    FROM keys k
    CROSS JOIN LATERAL (
        SELECT d.endpoint_id, d.ordering_key
        FROM webhookd.deliveries d
        WHERE d.status = 'held' AND (d.endpoint_id, d.ordering_key) > (k.endpoint_id, k.ordering_key)
        ORDER BY d.endpoint_id, d.ordering_key
        LIMIT 1
    ) nxt
    WHERE k.n < $1
), head AS (
    SELECT h.id
    FROM keys k
    CROSS JOIN LATERAL (
        SELECT d.id, d.message_id
        FROM webhookd.deliveries d
        WHERE d.endpoint_id = k.endpoint_id AND d.ordering_key = k.ordering_key
          AND d.status = 'held'
        ORDER BY d.message_id
        LIMIT 1
    ) h
    WHERE NOT EXISTS (
        SELECT 1 FROM webhookd.deliveries e
        WHERE e.endpoint_id = k.endpoint_id AND e.ordering_key = k.ordering_key
          AND e.message_id < h.message_id
          AND (e.status IN ('pending', 'delivering') OR ($4 AND e.status = 'failed')))
), released AS (
    UPDATE webhookd.deliveries d
    SET status = 'pending', updated_at = now()
    FROM head
    WHERE d.id = head.id AND d.status = 'held'
    RETURNING d.id
)
SELECT (SELECT count(*) FROM keys)::int AS keys,
       (SELECT count(*) FROM released)::int AS released,
       (SELECT endpoint_id FROM keys ORDER BY n DESC LIMIT 1) AS last_endpoint_id,
       (SELECT ordering_key FROM keys ORDER BY n DESC LIMIT 1) AS last_ordering_key;

-- name: record_unwritable
-- An outcome PostgreSQL refused even on its own (a value out of range, text it cannot
-- store): the delivery ends as a dead letter carrying the error, and the attempt is logged
-- without the parts that may have been refused, so it is never attempted again in a loop.
-- params: delivery_id, lease_token, attempt, status_code, error, instance
WITH upd AS (
    UPDATE webhookd.deliveries d
    SET status = 'failed', attempts = $3, locked_until = NULL, locked_by = NULL,
        lease_token = NULL, last_status_code = $4, last_error = $5, updated_at = now(),
        finished_at = now()
    WHERE d.id = $1 AND d.lease_token = $2 AND d.status = 'delivering'
    RETURNING d.id
)
INSERT INTO webhookd.attempts (delivery_id, attempt, started_at, duration_ms, status_code,
                               error_class, error, instance, endpoint_id)
SELECT d.id, $3, now(), 0, $4, 'unrecordable', $5, $6, d.endpoint_id
FROM webhookd.deliveries d
WHERE d.id = $1;

-- name: endpoints_by_id
-- The settings of the endpoints a claim returned deliveries for, and of those whose settings
-- changed (a NOTIFY on webhookd_endpoints names them): the daemon's endpoint cache is filled
-- from here, never by reading the whole table. A deleted endpoint is not returned.
-- params: endpoint_ids
SELECT id, tenant_id, url, event_types, enabled, secret, previous_secrets,
       signature_scheme, signature_header, signature_prefix, headers, rate_per_s, burst,
       max_in_flight, timeout_ms, retry_schedule_ms, version, payload_format,
       payload_template, payload_title, proxy
FROM webhookd.endpoints
WHERE id = ANY ($1::text[]) AND deleted_at IS NULL;

-- name: endpoint_sealed_sample
-- One live endpoint whose secret is sealed with WEBHOOKD_SECRET_KEYS ($1 is the prefix of a
-- sealed value): at start-up the daemon opens it, to refuse to start without the right keys
-- rather than find out at the first delivery.
-- params: sealed_prefix
SELECT id, tenant_id, url, event_types, enabled, secret, previous_secrets,
       signature_scheme, signature_header, signature_prefix, headers, rate_per_s, burst,
       max_in_flight, timeout_ms, retry_schedule_ms, version, payload_format,
       payload_template, payload_title, proxy
FROM webhookd.endpoints
WHERE deleted_at IS NULL AND starts_with(secret, $1)
LIMIT 1;

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
-- params: version
INSERT INTO webhookd.schema_migrations (version) VALUES ($1);

-- name: endpoint_insert
-- Create an endpoint; the id is generated unless given.
-- params: endpoint_id, tenant_id, url, description, event_types, secret, signature_scheme, signature_header, signature_prefix, headers, rate_per_s, burst, max_in_flight, timeout_ms, retry_schedule_ms, payload_format, payload_template, payload_title, proxy
INSERT INTO webhookd.endpoints (id, tenant_id, url, description, event_types, secret,
                                signature_scheme, signature_header, signature_prefix, headers,
                                rate_per_s, burst, max_in_flight, timeout_ms, retry_schedule_ms,
                                payload_format, payload_template, payload_title, proxy)
VALUES (coalesce($1, 'ep_' || replace(gen_random_uuid()::text, '-', '')), $2, $3, $4, $5, $6,
        $7, $8, $9, $10::jsonb, $11, $12, $13, $14, $15, $16, $17, $18, $19)
RETURNING id;

-- name: endpoints_import
-- Create a batch of endpoints (`endpoint import`), the i-th of each array making the i-th row;
-- event types and retry schedules come as JSON arrays (unnest cannot take arrays of arrays).
-- An id already taken is skipped, and missing from what is returned (the caller rolls back).
-- params: ids, tenant_ids, urls, descriptions, event_types, secrets, signature_schemes, signature_headers, signature_prefixes, headers, rates_per_s, bursts, max_in_flights, timeouts_ms, retry_schedules_ms, payload_formats, payload_templates, payload_titles, proxies
INSERT INTO webhookd.endpoints (id, tenant_id, url, description, event_types, secret,
                                signature_scheme, signature_header, signature_prefix, headers,
                                rate_per_s, burst, max_in_flight, timeout_ms, retry_schedule_ms,
                                payload_format, payload_template, payload_title, proxy)
SELECT r.id, r.tenant_id, r.url, r.description,
       ARRAY(SELECT t.value FROM jsonb_array_elements_text(r.event_types::jsonb)
                                 WITH ORDINALITY AS t(value, n)
             ORDER BY t.n),
       r.secret, r.signature_scheme, r.signature_header, r.signature_prefix, r.headers::jsonb,
       r.rate_per_s, r.burst, r.max_in_flight, r.timeout_ms,
       CASE WHEN r.retry_schedule_ms IS NOT NULL THEN
           ARRAY(SELECT s.value::bigint
                 FROM jsonb_array_elements_text(r.retry_schedule_ms::jsonb)
                      WITH ORDINALITY AS s(value, n)
                 ORDER BY s.n)
       END,
       r.payload_format, r.payload_template, r.payload_title, r.proxy
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
            $7::text[], $8::text[], $9::text[], $10::text[], $11::float8[], $12::int[],
            $13::int[], $14::int[], $15::text[], $16::text[], $17::text[], $18::text[],
            $19::text[])
     AS r(id, tenant_id, url, description, event_types, secret, signature_scheme,
          signature_header, signature_prefix, headers, rate_per_s, burst, max_in_flight,
          timeout_ms, retry_schedule_ms, payload_format, payload_template, payload_title,
          proxy)
ON CONFLICT (id) DO NOTHING
RETURNING id;

-- name: endpoint_get
-- One endpoint that is not deleted.
-- params: endpoint_id
SELECT * FROM webhookd.endpoints WHERE id = $1 AND deleted_at IS NULL;

-- name: endpoint_list
-- One page of live endpoints in id order, of tenant $1 (NULL: every tenant), with ids after
-- $2 (keyset pagination; NULL: from the first): $3 rows, and one more when there is a next
-- page. Each with its deliveries waiting (pending, or held behind their ordering key) and its
-- dead letters, each counted up to $4 + 1: a page costs index probes for its own endpoints,
-- whatever the number of endpoints or deliveries (migrations/0011_operator_indexes.sql). Of the
-- two branches only the one for $1 runs; the LIMIT 1 keeps the lookup a probe per row.
-- params: tenant_id, after_id, limit, count_cap
WITH page AS MATERIALIZED (
    (SELECT e.id FROM webhookd.endpoints e
     WHERE $1::text IS NULL AND e.deleted_at IS NULL AND e.id > coalesce($2::text, '')
     ORDER BY e.id
     LIMIT $3::int + 1)
    UNION ALL
    (SELECT e.id FROM webhookd.endpoints e
     WHERE e.tenant_id = $1::text AND e.deleted_at IS NULL AND e.id > coalesce($2::text, '')
     ORDER BY e.id
     LIMIT $3::int + 1)
)
SELECT e.id, e.tenant_id, e.url, e.enabled, e.disabled_reason, e.event_types,
       e.signature_scheme, e.signature_header, e.signature_prefix, e.headers, e.rate_per_s,
       e.burst, e.max_in_flight, e.timeout_ms, e.retry_schedule_ms, e.created_at,
       e.payload_format, e.payload_template, e.payload_title, e.proxy,
       (SELECT count(*) FROM (
            (SELECT FROM webhookd.deliveries d
             WHERE d.endpoint_id = p.id AND d.status = 'pending')
            UNION ALL
            (SELECT FROM webhookd.deliveries d
             WHERE d.endpoint_id = p.id AND d.status = 'held')
            LIMIT $4::int + 1) w) AS pending,
       (SELECT count(*) FROM (
            SELECT FROM webhookd.deliveries d
            WHERE d.endpoint_id = p.id AND d.status = 'failed'
            LIMIT $4::int + 1) f) AS failed
FROM page p
CROSS JOIN LATERAL (
    SELECT x.* FROM webhookd.endpoints x WHERE x.id = p.id LIMIT 1
) e
ORDER BY p.id;

-- name: endpoint_set_enabled
-- Enable or disable (with a reason); pending deliveries of a disabled endpoint wait.
-- params: endpoint_id, enabled, reason
UPDATE webhookd.endpoints
SET enabled = $2, disabled_reason = CASE WHEN $2 THEN NULL ELSE $3 END,
    version = version + 1, updated_at = now()
WHERE id = $1 AND deleted_at IS NULL
RETURNING id;

-- name: endpoint_delete
-- Soft-delete: the configuration and secret go, message logs stay.
-- params: endpoint_id
UPDATE webhookd.endpoints
SET deleted_at = now(), enabled = false, secret = '', previous_secrets = '[]',
    headers = '[]', version = version + 1, updated_at = now()
WHERE id = $1 AND deleted_at IS NULL
RETURNING id;

-- name: endpoint_fail_open
-- Dead-letter every undelivered delivery of an endpoint, with the reason.
-- params: endpoint_id, reason
UPDATE webhookd.deliveries
SET status = 'failed', locked_until = NULL, locked_by = NULL, last_error = $2,
    updated_at = now(), finished_at = now()
WHERE endpoint_id = $1 AND status IN ('pending', 'delivering');

-- name: endpoint_rotate_secret
-- Replace the secret; the old one keeps being signed until $3 (unix seconds). At most ten
-- previous secrets are kept, newest first; expired ones are dropped.
-- params: endpoint_id, secret, previous_expires_at_s
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

-- name: endpoint_secrets_batch
-- Next batch of live endpoints after id $1 (in id order) with their stored secrets and header
-- values, locked so that a concurrent rotate-secret waits instead of being overwritten.
-- params: after_id, limit
SELECT id, secret, previous_secrets, headers
FROM webhookd.endpoints
WHERE id > $1 AND deleted_at IS NULL
ORDER BY id
LIMIT $2
FOR UPDATE;

-- name: endpoint_secrets_update
-- Store re-encrypted secrets and header values. Their plaintext is unchanged, so the version
-- is not bumped: the daemons' caches stay valid.
-- params: endpoint_ids, secrets, previous_secrets, headers
UPDATE webhookd.endpoints e
SET secret = u.secret, previous_secrets = u.previous_secrets::jsonb, headers = u.headers::jsonb,
    updated_at = now()
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[])
     AS u(id, secret, previous_secrets, headers)
WHERE e.id = u.id;

-- name: operator_endpoint
-- An endpoint named on the command line, deleted or not (to say which it is).
-- params: endpoint_id
SELECT id, enabled, disabled_reason, deleted_at FROM webhookd.endpoints WHERE id = $1;

-- name: message_find
-- Messages an operator may mean: outbox id $1 (NULL when the text is not a number) or msg_id
-- $2 (one msg_id may be used once per tenant and endpoint, so it can name several).
-- params: outbox_id, msg_id
SELECT id, msg_id FROM webhookd.outbox WHERE id = $1 OR msg_id = $2 ORDER BY id LIMIT 10;

-- name: message_get
-- One message, its payload as text.
-- params: message_id
SELECT id, msg_id, tenant_id, endpoint_id, event_type, payload::text AS payload, ordering_key,
       deliver_after, created_at
FROM webhookd.outbox
WHERE id = $1;

-- name: message_deliveries
-- The deliveries of message $1 with the state of their endpoint.
-- params: message_id
SELECT d.id, d.endpoint_id, d.status, d.attempts, d.attempt_base, d.next_attempt_at,
       d.locked_by, d.last_status_code, d.last_error, d.created_at, d.finished_at,
       e.enabled AS endpoint_enabled, e.deleted_at IS NOT NULL AS endpoint_deleted,
       e.disabled_reason AS endpoint_disabled_reason
FROM webhookd.deliveries d
JOIN webhookd.endpoints e ON e.id = d.endpoint_id
WHERE d.message_id = $1
ORDER BY d.id;

-- name: message_attempts
-- Every attempt at message $1's deliveries in the order made, with at most $2 bytes of each
-- response body and its full stored size.
-- params: message_id, max_body_bytes
SELECT a.delivery_id, d.endpoint_id, a.attempt, a.started_at, a.duration_ms, a.status_code,
       a.error_class, a.error, a.instance,
       substring(a.response_body FROM 1 FOR $2) AS response_body,
       coalesce(octet_length(a.response_body), 0) AS response_bytes
FROM webhookd.attempts a
JOIN webhookd.deliveries d ON d.id = a.delivery_id
WHERE d.message_id = $1
ORDER BY a.id;

-- name: message_list
-- Newest messages first, one row per delivery, filtered by delivery status $1, endpoint $2,
-- event type $3 and enqueue time in [$4, $5); at most $6 rows. A message that matched no
-- endpoint is one row without a delivery (when neither $1 nor $2 is given).
-- params: status, endpoint_id, event_type, since, until, limit
SELECT o.id, o.msg_id, o.event_type, o.tenant_id, o.created_at, d.id AS delivery_id,
       d.endpoint_id, d.status, d.attempts, d.next_attempt_at, d.last_status_code, d.last_error
FROM webhookd.outbox o
LEFT JOIN webhookd.deliveries d ON d.message_id = o.id
WHERE ($1::text IS NULL OR d.status = $1)
  AND ($2::text IS NULL OR d.endpoint_id = $2)
  AND ($3::text IS NULL OR o.event_type = $3)
  AND ($4::timestamptz IS NULL OR o.created_at >= $4)
  AND ($5::timestamptz IS NULL OR o.created_at < $5)
ORDER BY o.id DESC, d.id
LIMIT $6;

-- name: message_send
-- Enqueue a message for endpoint $1, as an application does (the fan-out trigger creates the
-- delivery and wakes the daemons).
-- params: endpoint_id, event_type, payload
INSERT INTO webhookd.outbox (endpoint_id, event_type, payload)
VALUES ($1, $2, $3::jsonb)
RETURNING id, msg_id;

-- name: message_replay
-- New attempt series, due now, for the finished (delivered or failed) deliveries of message
-- $1, only the one to endpoint $2 when given, whose endpoint is enabled and not deleted.
-- `attempt_base` takes the value of `attempts`: attempt numbers go on, the retry schedule
-- restarts (migrations/0006_replay.sql).
-- params: message_id, endpoint_id
UPDATE webhookd.deliveries d
SET status = 'pending', attempt_base = d.attempts, next_attempt_at = now(),
    last_status_code = NULL, last_error = NULL, finished_at = NULL, updated_at = now()
FROM webhookd.endpoints e
WHERE d.message_id = $1
  AND ($2::text IS NULL OR d.endpoint_id = $2)
  AND d.status IN ('delivered', 'failed')
  AND e.id = d.endpoint_id AND e.enabled AND e.deleted_at IS NULL
RETURNING d.id, d.endpoint_id, d.attempts;

-- name: dead_letters_list
-- Dead-lettered deliveries, latest failure first: of endpoint $1, failed in [$2, $3); at most
-- $4 rows. The page is chosen from the index alone (an index-only scan of $4 entries of
-- deliveries_failed_idx for one endpoint, of deliveries_failed_at_idx otherwise:
-- migrations/0011_operator_indexes.sql), then its rows are read.
-- params: endpoint_id, since, until, limit
WITH page AS MATERIALIZED (
    SELECT d.id, d.updated_at
    FROM webhookd.deliveries d
    WHERE d.status = 'failed'
      AND ($1::text IS NULL OR d.endpoint_id = $1)
      AND ($2::timestamptz IS NULL OR d.updated_at >= $2)
      AND ($3::timestamptz IS NULL OR d.updated_at < $3)
    ORDER BY d.updated_at DESC, d.id DESC
    LIMIT $4
)
SELECT d.id AS delivery_id, d.message_id, o.msg_id, o.event_type, d.endpoint_id, d.attempts,
       d.last_status_code, d.last_error, d.updated_at AS failed_at
FROM page p
JOIN webhookd.deliveries d ON d.id = p.id
JOIN webhookd.outbox o ON o.id = d.message_id
ORDER BY p.updated_at DESC, p.id DESC;

-- name: dead_letters_count
-- How many dead letters dead_letters_list selects, counted up to $4 + 1 (more than $4: there
-- may be millions, and a listing does not count them all every time). Walked in the order of
-- the listing, so through the same index, whatever share of the deliveries failed.
-- params: endpoint_id, since, until, count_cap
SELECT count(*)
FROM (
    SELECT FROM webhookd.deliveries d
    WHERE d.status = 'failed'
      AND ($1::text IS NULL OR d.endpoint_id = $1)
      AND ($2::timestamptz IS NULL OR d.updated_at >= $2)
      AND ($3::timestamptz IS NULL OR d.updated_at < $3)
    ORDER BY d.updated_at DESC
    LIMIT $4::int + 1
) c;

-- name: dead_letters_requeue
-- New attempt series, due now, for up to $5 dead-lettered deliveries of enabled, live
-- endpoints: of endpoint $1, of messages $2, failed in [$3, $4) (NULL: any), in the order
-- they failed, after ($6, $7) (NULL: from the first). Each batch goes on where the last ended
-- (a keyset walk of deliveries_failed_at_idx, or deliveries_failed_idx for one endpoint), so
-- it reads its own rows, not every row an earlier batch walked past; requeued rows are pending,
-- so calling it again until it returns fewer than $5 ends. Returns each row's (failed_at, id).
-- params: endpoint_id, message_ids, since, until, limit, after_failed_at, after_id
WITH picked AS MATERIALIZED (
    SELECT f.id, f.updated_at
    FROM webhookd.deliveries f
    JOIN webhookd.endpoints e ON e.id = f.endpoint_id
    WHERE f.status = 'failed'
      AND e.enabled AND e.deleted_at IS NULL
      AND ($1::text IS NULL OR f.endpoint_id = $1)
      AND ($2::bigint[] IS NULL OR f.message_id = ANY ($2))
      AND ($3::timestamptz IS NULL OR f.updated_at >= $3)
      AND ($4::timestamptz IS NULL OR f.updated_at < $4)
      AND ($6::timestamptz IS NULL OR (f.updated_at, f.id) > ($6::timestamptz, $7::bigint))
    ORDER BY f.updated_at, f.id
    LIMIT $5
    FOR UPDATE OF f SKIP LOCKED
)
UPDATE webhookd.deliveries d
SET status = 'pending', attempt_base = d.attempts, next_attempt_at = now(),
    last_status_code = NULL, last_error = NULL, finished_at = NULL, updated_at = now()
FROM picked p
-- the ANY is the same condition, in a form that probes the primary key (no hash of the table)
WHERE d.id = p.id AND d.id = ANY (ARRAY(SELECT id FROM picked))
RETURNING d.id, p.updated_at AS failed_at;

-- name: dead_letters_stuck
-- Dead letters the same selection leaves alone because their endpoint is disabled or deleted.
-- params: endpoint_id, message_ids, since, until
SELECT count(*)
FROM webhookd.deliveries f
JOIN webhookd.endpoints e ON e.id = f.endpoint_id
WHERE f.status = 'failed'
  AND NOT (e.enabled AND e.deleted_at IS NULL)
  AND ($1::text IS NULL OR f.endpoint_id = $1)
  AND ($2::bigint[] IS NULL OR f.message_id = ANY ($2))
  AND ($3::timestamptz IS NULL OR f.updated_at >= $3)
  AND ($4::timestamptz IS NULL OR f.updated_at < $4);

-- name: outbox_wake
-- Wake the daemons now (they also poll) after deliveries were made due by hand.
SELECT pg_notify('webhookd_outbox', '');

-- name: operator_stats
-- Per endpoint with something to show: deliveries waiting (pending, or held behind their
-- ordering key), due and in flight now; attempts (count, 2xx, duration p50/p95) and dead
-- letters in the last $1 seconds. Driven from the indexes of deliveries and attempts, never
-- from the endpoints table: which endpoints have open deliveries is a loose index scan (a
-- probe per such endpoint), the window is a range of attempts_started_idx and
-- deliveries_failed_at_idx, and each endpoint shown is counted and looked up with index
-- probes (LATERAL ... LIMIT 1: a probe per row, never a hash of a whole table). Only endpoint
-- $2 when given (shown even with nothing to show; no row: it does not exist).
-- params: window_s, endpoint_id
WITH RECURSIVE pending_ids AS (
    (SELECT d.endpoint_id FROM webhookd.deliveries d
     WHERE d.status = 'pending' AND $2::text IS NULL
     ORDER BY d.endpoint_id LIMIT 1)
    UNION ALL
    SELECT (SELECT d.endpoint_id FROM webhookd.deliveries d
            WHERE d.status = 'pending' AND d.endpoint_id > p.endpoint_id
            ORDER BY d.endpoint_id LIMIT 1)
    FROM pending_ids p
    WHERE p.endpoint_id IS NOT NULL
), held_ids AS (
    (SELECT d.endpoint_id FROM webhookd.deliveries d
     WHERE d.status = 'held' AND $2::text IS NULL
     ORDER BY d.endpoint_id LIMIT 1)
    UNION ALL
    SELECT (SELECT d.endpoint_id FROM webhookd.deliveries d
            WHERE d.status = 'held' AND d.endpoint_id > h.endpoint_id
            ORDER BY d.endpoint_id LIMIT 1)
    FROM held_ids h
    WHERE h.endpoint_id IS NOT NULL
), flying_ids AS (
    (SELECT d.endpoint_id FROM webhookd.deliveries d
     WHERE d.status = 'delivering' AND $2::text IS NULL
     ORDER BY d.endpoint_id LIMIT 1)
    UNION ALL
    SELECT (SELECT d.endpoint_id FROM webhookd.deliveries d
            WHERE d.status = 'delivering' AND d.endpoint_id > f.endpoint_id
            ORDER BY d.endpoint_id LIMIT 1)
    FROM flying_ids f
    WHERE f.endpoint_id IS NOT NULL
), tried AS MATERIALIZED (
    SELECT d.endpoint_id, count(*) AS attempts,
           count(*) FILTER (WHERE a.status_code BETWEEN 200 AND 299) AS succeeded,
           percentile_cont(0.5) WITHIN GROUP (ORDER BY a.duration_ms) AS p50_ms,
           percentile_cont(0.95) WITHIN GROUP (ORDER BY a.duration_ms) AS p95_ms
    FROM webhookd.attempts a
    CROSS JOIN LATERAL (
        SELECT x.endpoint_id FROM webhookd.deliveries x WHERE x.id = a.delivery_id LIMIT 1
    ) d
    WHERE a.started_at >= now() - make_interval(secs => $1::float8)
      AND ($2::text IS NULL OR d.endpoint_id = $2::text)
    GROUP BY d.endpoint_id
), dead AS MATERIALIZED (
    SELECT d.endpoint_id, count(*) AS dead_letters
    FROM webhookd.deliveries d
    WHERE d.status = 'failed' AND d.updated_at >= now() - make_interval(secs => $1::float8)
      AND ($2::text IS NULL OR d.endpoint_id = $2::text)
    GROUP BY d.endpoint_id
), shown AS (
    SELECT endpoint_id FROM tried
    UNION SELECT endpoint_id FROM dead
    UNION SELECT endpoint_id FROM pending_ids WHERE endpoint_id IS NOT NULL
    UNION SELECT endpoint_id FROM held_ids WHERE endpoint_id IS NOT NULL
    UNION SELECT endpoint_id FROM flying_ids WHERE endpoint_id IS NOT NULL
    UNION SELECT $2::text WHERE $2::text IS NOT NULL
)
SELECT e.id AS endpoint_id, e.enabled, e.deleted_at IS NOT NULL AS deleted,
       (SELECT count(*) FROM webhookd.deliveries d
        WHERE d.endpoint_id = s.endpoint_id AND d.status = 'pending')
       + (SELECT count(*) FROM webhookd.deliveries d
          WHERE d.endpoint_id = s.endpoint_id AND d.status = 'held') AS backlog,
       (SELECT count(*) FROM webhookd.deliveries d
        WHERE d.endpoint_id = s.endpoint_id AND d.status = 'pending'
          AND d.next_attempt_at <= now()) AS due,
       (SELECT count(*) FROM webhookd.deliveries d
        WHERE d.endpoint_id = s.endpoint_id AND d.status = 'delivering') AS in_flight,
       coalesce(t.attempts, 0) AS attempts, coalesce(t.succeeded, 0) AS succeeded,
       t.p50_ms, t.p95_ms, coalesce(x.dead_letters, 0) AS dead_letters
FROM shown s
CROSS JOIN LATERAL (
    SELECT x.id, x.enabled, x.deleted_at FROM webhookd.endpoints x WHERE x.id = s.endpoint_id
    LIMIT 1
) e
LEFT JOIN tried t ON t.endpoint_id = s.endpoint_id
LEFT JOIN dead x ON x.endpoint_id = s.endpoint_id
ORDER BY e.id;

-- name: demo_enqueue
-- `webhookd demo`: a burst of $2 messages spread round-robin over the endpoints $1.
-- params: endpoint_ids, message_count
INSERT INTO webhookd.outbox (endpoint_id, event_type, payload)
SELECT ($1::text[])[1 + (g - 1) % cardinality($1::text[])], 'invoice.paid',
       jsonb_build_object('type', 'invoice.paid',
                          'data', jsonb_build_object('invoice', 'in_' || lpad(g::text, 4, '0'),
                                                     'amount', 100 * g, 'currency', 'EUR'))
FROM generate_series(1, $2::int) g;

-- name: demo_progress
-- `webhookd demo`: each endpoint's deliveries by state, and the attempts made.
-- params: endpoint_ids
SELECT endpoint_id,
       count(*) AS total,
       count(*) FILTER (WHERE status = 'delivered') AS delivered,
       count(*) FILTER (WHERE status = 'pending' AND attempts = 0) AS waiting,
       count(*) FILTER (WHERE status = 'pending' AND attempts > 0) AS retrying,
       count(*) FILTER (WHERE status = 'delivering') AS delivering,
       count(*) FILTER (WHERE status = 'failed') AS failed,
       coalesce(sum(attempts), 0) AS attempts
FROM webhookd.deliveries
WHERE endpoint_id = ANY($1::text[])
GROUP BY endpoint_id;

-- name: endpoints_failing
-- Enabled endpoints with no success since at least $1 seconds ago and at least $2 failed
-- attempts in a row: the daemon disables them (migrations/0004_endpoint_health.sql).
-- params: disable_after_s, min_failures
SELECT s.endpoint_id
FROM webhookd.endpoint_state s
JOIN webhookd.endpoints e ON e.id = s.endpoint_id
WHERE e.enabled AND e.deleted_at IS NULL
  AND s.failing_since <= now() - make_interval(secs => $1)
  AND s.consecutive_failures >= $2;

-- name: endpoints_disable_failing
-- Disable those of endpoints $1 still failing as `endpoints_failing` found them (a success
-- may have come since), with the reason. Only enabled ones change, so with several daemons
-- one of them does it and reports it.
-- params: endpoint_ids, disable_after_s, min_failures
UPDATE webhookd.endpoints e
SET enabled = false,
    disabled_reason = 'failing since '
        || to_char(s.failing_since AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
        || ' (' || s.consecutive_failures || ' failed attempts in a row)',
    version = e.version + 1,
    updated_at = now()
FROM webhookd.endpoint_state s
WHERE e.id = ANY ($1::text[]) AND s.endpoint_id = e.id
  AND e.enabled AND e.deleted_at IS NULL
  AND s.failing_since <= now() - make_interval(secs => $2)
  AND s.consecutive_failures >= $3
RETURNING e.id, e.disabled_reason, s.failing_since, s.consecutive_failures;

-- name: endpoint_auto_disable
-- Disable endpoint $1 with reason $2 (the daemon, on a 410 Gone). Only an enabled endpoint
-- changes, so of several daemons or attempts one does it and reports it.
-- params: endpoint_id, reason
UPDATE webhookd.endpoints
SET enabled = false, disabled_reason = $2, version = version + 1, updated_at = now()
WHERE id = $1 AND enabled AND deleted_at IS NULL
RETURNING id;

-- name: endpoint_health_reset
-- Forget an endpoint's failing streak (`endpoint enable`: it gets a whole period again).
-- params: endpoint_id
UPDATE webhookd.endpoint_state
SET failing_since = NULL, consecutive_failures = 0
WHERE endpoint_id = $1 AND (failing_since IS NOT NULL OR consecutive_failures > 0);

-- name: prune_bounds
-- A prune's cutoff, now minus $1 seconds, and the id of the newest message created before it
-- (ids follow creation times closely; a message committed out of order waits a later prune).
-- params: older_than_s
SELECT now() - make_interval(secs => $1) AS cutoff,
       (SELECT o.id FROM webhookd.outbox o
        WHERE o.created_at < now() - make_interval(secs => $1)
        ORDER BY o.created_at DESC
        LIMIT 1) AS last_id;

-- name: prune_messages
-- One batch of `webhookd prune`: of the messages with id in ($1, $2] created before $3 (at
-- most $4, in id order), delete those whose deliveries all finished before $3 (delivered, or
-- also dead-lettered when $5), with their deliveries and attempts; $6: count only (dry run).
-- The finished deliveries are locked, which reads their status again: one requeued meanwhile
-- keeps its message. ok = false (nothing done): another prune holds the lock. old_attempts:
-- the deleted attempts that started before $3.
-- params: after_id, last_id, cutoff, limit, include_failed, dry_run
WITH lock AS MATERIALIZED (
    SELECT pg_try_advisory_xact_lock(hashtext('webhookd.prune')) AS ok
), scanned AS MATERIALIZED (
    SELECT o.id
    FROM webhookd.outbox o
    WHERE (SELECT ok FROM lock) AND o.id > $1 AND o.id <= $2 AND o.created_at < $3
    ORDER BY o.id
    LIMIT $4
), finished AS MATERIALIZED (
    SELECT d.id, d.message_id
    FROM webhookd.deliveries d
    WHERE d.message_id IN (SELECT id FROM scanned)
      AND (d.status = 'delivered' OR ($5 AND d.status = 'failed'))
      AND coalesce(d.finished_at, d.updated_at) < $3
    FOR UPDATE OF d
), doomed AS MATERIALIZED (
    SELECT s.id
    FROM scanned s
    WHERE NOT EXISTS (SELECT 1 FROM webhookd.deliveries d
                      WHERE d.message_id = s.id AND d.id NOT IN (SELECT id FROM finished))
), doomed_deliveries AS MATERIALIZED (
    SELECT f.id FROM finished f JOIN doomed m ON m.id = f.message_id
), gone_attempts AS (
    DELETE FROM webhookd.attempts a
    USING doomed_deliveries dd
    WHERE a.delivery_id = dd.id AND NOT $6
    RETURNING a.started_at < $3 AS old
), gone_deliveries AS (
    DELETE FROM webhookd.deliveries d
    USING doomed_deliveries dd
    WHERE d.id = dd.id AND NOT $6
    RETURNING d.id
), gone_messages AS (
    DELETE FROM webhookd.outbox o
    USING doomed m
    WHERE o.id = m.id AND NOT $6
    RETURNING o.id
), counted AS (
    SELECT count(*) AS attempts, count(*) FILTER (WHERE a.started_at < $3) AS old
    FROM webhookd.attempts a
    JOIN doomed_deliveries dd ON dd.id = a.delivery_id
    WHERE $6
)
SELECT (SELECT ok FROM lock) AS ok,
       (SELECT count(*) FROM scanned)::int AS scanned,
       (SELECT max(id) FROM scanned) AS last_id,
       (CASE WHEN $6 THEN (SELECT count(*) FROM doomed)
             ELSE (SELECT count(*) FROM gone_messages) END)::int AS messages,
       (CASE WHEN $6 THEN (SELECT count(*) FROM doomed_deliveries)
             ELSE (SELECT count(*) FROM gone_deliveries) END)::int AS deliveries,
       (CASE WHEN $6 THEN (SELECT attempts FROM counted)
             ELSE (SELECT count(*) FROM gone_attempts) END)::int AS attempts,
       (CASE WHEN $6 THEN (SELECT old FROM counted)
             ELSE (SELECT count(*) FILTER (WHERE old) FROM gone_attempts) END)::int
           AS old_attempts;

-- name: prune_attempts
-- One batch of `webhookd prune`: delete up to $3 attempts started in [$1, $2), oldest first
-- ($1 NULL: from the first); run after prune_messages, these are attempts of kept deliveries.
-- ok = false (nothing done): another prune holds the lock.
-- params: since, cutoff, limit
WITH lock AS MATERIALIZED (
    SELECT pg_try_advisory_xact_lock(hashtext('webhookd.prune')) AS ok
), old AS MATERIALIZED (
    SELECT a.id, a.started_at
    FROM webhookd.attempts a
    WHERE (SELECT ok FROM lock)
      AND a.started_at >= coalesce($1::timestamptz, '-infinity') AND a.started_at < $2
    ORDER BY a.started_at
    LIMIT $3
), gone AS (
    DELETE FROM webhookd.attempts a USING old WHERE a.id = old.id RETURNING a.id
)
SELECT (SELECT ok FROM lock) AS ok,
       (SELECT count(*) FROM old)::int AS scanned,
       (SELECT max(started_at) FROM old) AS last_started_at,
       (SELECT count(*) FROM gone)::int AS deleted;

-- name: prune_attempts_count
-- Attempts started before $1 (what a dry run of prune_attempts would delete).
-- params: cutoff
SELECT count(*) FROM webhookd.attempts WHERE started_at < $1;

-- name: endpoint_get_for_update
-- One live endpoint, locked until the transaction ends (`endpoint update` reads, checks, writes).
-- params: endpoint_id
SELECT * FROM webhookd.endpoints WHERE id = $1 AND deleted_at IS NULL FOR UPDATE;

-- name: endpoint_update
-- Write an endpoint's settings; headers ($11) and secret ($12) only when not NULL. $16: the
-- signature scheme changed, so secrets kept for a rotation grace are dropped (the new scheme
-- cannot sign with them).
-- params: endpoint_id, url, tenant_id, description, event_types, signature_scheme, signature_header, signature_prefix, rate_per_s, burst, headers, secret, max_in_flight, timeout_ms, retry_schedule_ms, scheme_changed, payload_format, payload_template, payload_title, proxy
UPDATE webhookd.endpoints
SET url = $2, tenant_id = $3, description = $4, event_types = $5, signature_scheme = $6,
    signature_header = $7, signature_prefix = $8, rate_per_s = $9, burst = $10,
    headers = coalesce($11::jsonb, headers), secret = coalesce($12, secret),
    max_in_flight = $13, timeout_ms = $14, retry_schedule_ms = $15,
    previous_secrets = CASE WHEN $16 THEN '[]'::jsonb ELSE previous_secrets END,
    payload_format = $17, payload_template = $18, payload_title = $19, proxy = $20,
    version = version + 1, updated_at = now()
WHERE id = $1 AND deleted_at IS NULL;

-- =============================================================================================
-- The management HTTP API (`webhookd api`, daemon/api/). Every query that reads or changes a
-- tenant's data takes the tenant, so an application only ever reaches its own rows.
-- =============================================================================================

-- name: api_token_insert
-- Store a new API token (its SHA-256 only); $4 NULL: every application.
-- params: token_id, token_hash, scope, app_id, description, expires_at
INSERT INTO webhookd.api_tokens (id, token_hash, scope, app_id, description, expires_at)
VALUES ($1, $2, $3, $4, $5, $6)
RETURNING id, scope, app_id, description, created_at, expires_at;

-- name: api_token_get
-- One token by id, with what authenticating a request needs.
-- params: token_id
SELECT id, token_hash, scope, app_id, expires_at, revoked_at, kind
FROM webhookd.api_tokens
WHERE id = $1;

-- name: api_token_list
-- Every token (never the hash), newest first, with the uid of its application.
SELECT t.id, t.scope, t.app_id, a.uid AS app_uid, t.description, t.created_at, t.expires_at,
       t.revoked_at
FROM webhookd.api_tokens t
LEFT JOIN webhookd.api_apps a ON a.id = t.app_id
ORDER BY t.created_at DESC, t.id;

-- name: api_token_revoke
-- Revoke a token (kept, so `api-token list` still shows it); a second revoke changes nothing.
-- params: token_id
UPDATE webhookd.api_tokens
SET revoked_at = coalesce(revoked_at, now())
WHERE id = $1
RETURNING id, revoked_at;

-- name: api_app_get
-- The application named by id or uid (an id wins over another application's uid).
-- params: ref
SELECT * FROM webhookd.api_apps
WHERE id = $1 OR uid = $1
ORDER BY (id = $1) DESC
LIMIT 1;

-- name: api_app_list
-- A page of applications in seq order after $2 ($3: descending, before $2), only application
-- $1 when given (an application-scoped token); $4 is the page size plus one. $5 (the
-- console's search): only those whose name, uid or id contains it, ignoring case.
-- params: app_id, after_seq, descending, limit, search
(SELECT * FROM webhookd.api_apps
 WHERE NOT $3 AND ($1::text IS NULL OR id = $1) AND ($2::bigint IS NULL OR seq > $2)
   AND ($5::text IS NULL
        OR strpos(lower(name || ' ' || coalesce(uid, '') || ' ' || id), lower($5)) > 0)
 ORDER BY seq LIMIT $4)
UNION ALL
(SELECT * FROM webhookd.api_apps
 WHERE $3 AND ($1::text IS NULL OR id = $1) AND ($2::bigint IS NULL OR seq < $2)
   AND ($5::text IS NULL
        OR strpos(lower(name || ' ' || coalesce(uid, '') || ' ' || id), lower($5)) > 0)
 ORDER BY seq DESC LIMIT $4);

-- name: api_app_insert
-- A new application; a uid or tenant already taken violates a unique index.
-- params: app_id, uid, tenant_id, name, metadata
INSERT INTO webhookd.api_apps (id, uid, tenant_id, name, metadata)
VALUES ($1, $2, $3, $4, $5::jsonb)
RETURNING *;

-- name: api_app_update
-- Rename an application and replace its metadata.
-- params: app_id, name, metadata
UPDATE webhookd.api_apps
SET name = $2, metadata = $3::jsonb, updated_at = now()
WHERE id = $1
RETURNING *;

-- name: api_app_delete
-- Delete an application row (its tokens go with it); its endpoints are deleted first.
-- params: app_id
DELETE FROM webhookd.api_apps WHERE id = $1 RETURNING id;

-- name: api_endpoint_ids
-- The live endpoints of a tenant.
-- params: tenant_id
SELECT id FROM webhookd.endpoints WHERE tenant_id = $1 AND deleted_at IS NULL ORDER BY id;

-- name: api_endpoint_ids_all
-- Every endpoint of a tenant, deleted ones too (endpoints_tenant_all_idx): whose failed
-- deliveries the message log walks.
-- params: tenant_id
SELECT id FROM webhookd.endpoints WHERE tenant_id = $1 ORDER BY id;

-- name: api_endpoint_list
-- A page of a tenant's live endpoints in (created_at, id) order after ($2, $3) ($4:
-- descending, before it); $5 is the page size plus one. $6 (the console's search): only
-- those whose URL, description, uid or id contains it, ignoring case.
-- params: tenant_id, after_at, after_id, descending, limit, search
(SELECT * FROM webhookd.endpoints
 WHERE NOT $4 AND tenant_id = $1 AND deleted_at IS NULL
   AND ($2::timestamptz IS NULL OR (created_at, id) > ($2, $3::text))
   AND ($6::text IS NULL OR strpos(lower(url || ' ' || description || ' '
                                         || coalesce(uid, '') || ' ' || id), lower($6)) > 0)
 ORDER BY created_at, id LIMIT $5)
UNION ALL
(SELECT * FROM webhookd.endpoints
 WHERE $4 AND tenant_id = $1 AND deleted_at IS NULL
   AND ($2::timestamptz IS NULL OR (created_at, id) < ($2, $3::text))
   AND ($6::text IS NULL OR strpos(lower(url || ' ' || description || ' '
                                         || coalesce(uid, '') || ' ' || id), lower($6)) > 0)
 ORDER BY created_at DESC, id DESC LIMIT $5);

-- name: api_endpoint_get
-- A tenant's live endpoint by id or uid.
-- params: tenant_id, ref
SELECT * FROM webhookd.endpoints
WHERE tenant_id = $1 AND deleted_at IS NULL AND (id = $2 OR uid = $2)
ORDER BY (id = $2) DESC
LIMIT 1;

-- name: api_endpoint_get_for_update
-- A tenant's live endpoint by id, locked until the transaction ends.
-- params: tenant_id, endpoint_id
SELECT * FROM webhookd.endpoints
WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL
FOR UPDATE;

-- name: api_endpoint_insert
-- A new endpoint of tenant $2, with the API's fields (uid, metadata, enabled).
-- params: endpoint_id, tenant_id, url, description, event_types, secret, signature_scheme, signature_header, signature_prefix, headers, rate_per_s, burst, max_in_flight, timeout_ms, retry_schedule_ms, uid, metadata, enabled, disabled_reason, payload_format, payload_template, payload_title
INSERT INTO webhookd.endpoints (id, tenant_id, url, description, event_types, secret,
                                signature_scheme, signature_header, signature_prefix, headers,
                                rate_per_s, burst, max_in_flight, timeout_ms, retry_schedule_ms,
                                uid, metadata, enabled, disabled_reason, payload_format,
                                payload_template, payload_title)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb, $11, $12, $13, $14, $15, $16,
        $17::jsonb, $18, $19, $20, $21, $22)
RETURNING *;

-- name: api_endpoint_update
-- Write the settings the API may change (the row is locked by the caller).
-- params: endpoint_id, url, description, event_types, rate_per_s, burst, max_in_flight, timeout_ms, retry_schedule_ms, uid, metadata, enabled, disabled_reason, payload_format, payload_template, payload_title
UPDATE webhookd.endpoints
SET url = $2, description = $3, event_types = $4, rate_per_s = $5, burst = $6,
    max_in_flight = $7, timeout_ms = $8, retry_schedule_ms = $9, uid = $10,
    metadata = $11::jsonb, enabled = $12,
    disabled_reason = CASE WHEN $12 THEN NULL ELSE $13 END,
    payload_format = $14, payload_template = $15, payload_title = $16,
    version = version + 1, updated_at = now()
WHERE id = $1 AND deleted_at IS NULL
RETURNING *;

-- name: api_endpoint_set_headers
-- Replace an endpoint's custom headers (values sealed when keys are set).
-- params: endpoint_id, headers
UPDATE webhookd.endpoints
SET headers = $2::jsonb, version = version + 1, updated_at = now()
WHERE id = $1 AND deleted_at IS NULL
RETURNING id;

-- name: api_endpoint_stats
-- Svix's endpoint figures: deliveries waiting (pending, or held behind an earlier one of their
-- ordering key) and in flight now, dead letters and successful attempts in [$2, $3) (NULL:
-- unbounded). Each is a count over a partial index (held rows always have an ordering key,
-- which lets deliveries_ordering_idx serve them).
-- params: endpoint_id, since, until
SELECT
    (SELECT count(*) FROM webhookd.deliveries
     WHERE endpoint_id = $1 AND status = 'pending')
  + (SELECT count(*) FROM webhookd.deliveries
     WHERE endpoint_id = $1 AND status = 'held' AND ordering_key IS NOT NULL) AS pending,
    (SELECT count(*) FROM webhookd.deliveries
     WHERE endpoint_id = $1 AND status = 'delivering') AS sending,
    (SELECT count(*) FROM webhookd.deliveries
     WHERE endpoint_id = $1 AND status = 'failed'
       AND ($2::timestamptz IS NULL OR updated_at >= $2)
       AND ($3::timestamptz IS NULL OR updated_at < $3)) AS fail,
    (SELECT count(*) FROM webhookd.attempts
     WHERE endpoint_id = $1 AND status_code BETWEEN 200 AND 299
       AND ($2::timestamptz IS NULL OR started_at >= $2)
       AND ($3::timestamptz IS NULL OR started_at < $3)) AS success;

-- name: api_endpoint_state
-- An endpoint's shared limits and health: Retry-After or circuit-breaker pause, failing streak.
-- params: endpoint_id
SELECT s.paused_until, s.failing_since, s.consecutive_failures, s.tokens,
       s.paused_until IS NOT NULL AND s.paused_until > now() AS paused
FROM webhookd.endpoint_state s
WHERE s.endpoint_id = $1;

-- name: api_endpoint_resume
-- End an endpoint's pause now (a Retry-After or circuit-breaker cool-down); what it has
-- pending is due again at once (the pause had pushed its due_at).
-- params: endpoint_id
UPDATE webhookd.endpoint_state
SET paused_until = NULL,
    due_at = CASE WHEN due_at IS NOT NULL THEN now() END
WHERE endpoint_id = $1 AND paused_until IS NOT NULL;

-- name: api_message_insert
-- Enqueue a message for tenant $1 as an application does (the fan-out trigger makes its
-- deliveries and wakes the daemons). A msg_id the tenant already used inserts nothing: the
-- caller then reads the first message (idempotency).
-- params: tenant_id, msg_id, event_type, payload, deliver_after
INSERT INTO webhookd.outbox (tenant_id, msg_id, event_type, payload, deliver_after)
VALUES ($1, $2, $3, $4::jsonb, $5)
ON CONFLICT DO NOTHING
RETURNING id, msg_id, event_type, payload::text AS payload, deliver_after, created_at;

-- name: api_message_get
-- One message by outbox id, its payload as text.
-- params: message_id
SELECT id, msg_id, event_type, payload::text AS payload, deliver_after, created_at
FROM webhookd.outbox
WHERE id = $1;

-- name: api_message_find
-- The message $2 (a msg_id) of tenant $1: fanned out to the tenant, or sent to one of its
-- endpoints (send-example, or an application's direct insert); a fan-out one first.
-- params: tenant_id, msg_id
SELECT o.id, o.msg_id, o.event_type, o.payload::text AS payload, o.deliver_after, o.created_at
FROM webhookd.outbox o
WHERE o.msg_id = $2
  AND ((o.endpoint_id IS NULL AND coalesce(o.tenant_id, 'default') = $1)
       OR o.endpoint_id IN (SELECT e.id FROM webhookd.endpoints e WHERE e.tenant_id = $1))
ORDER BY (o.endpoint_id IS NULL) DESC, o.id DESC
LIMIT 1;

-- name: api_message_list
-- A page of the message log, newest first, before the cursor ($2, $3): tenant $1's messages
-- (NULL: every application's, for tokens not limited to one), of event types $4, created in
-- ($5, $6), with a delivery to endpoint $7, of status $8 (Svix's MessageStatus, from the
-- deliveries: docs/api.md), each NULL for any. At most $9 messages are looked at (an index
-- range: api_outbox_tenant_idx, api_outbox_endpoint_idx or outbox_created_idx, and each
-- one's deliveries through deliveries_message_idx), so a page costs the same however few
-- match; of those, up to $10 that match (matched), and when all $9 were looked at, the
-- oldest of them (not matched): where the next page goes on from.
-- params: tenant_id, before_at, before_id, event_types, after, before, endpoint_id, status, scan, limit
WITH scanned AS (
    SELECT w.id, w.created_at FROM (
        (SELECT o.id, o.created_at FROM webhookd.outbox o
         WHERE $1::text IS NOT NULL AND o.endpoint_id IS NULL
           AND coalesce(o.tenant_id, 'default') = $1
           AND ($2::timestamptz IS NULL OR (o.created_at, o.id) < ($2, $3::bigint))
           AND ($4::text[] IS NULL OR o.event_type = ANY ($4))
           AND ($5::timestamptz IS NULL OR o.created_at > $5)
           AND ($6::timestamptz IS NULL OR o.created_at < $6)
         ORDER BY o.created_at DESC, o.id DESC
         LIMIT $9)
        UNION ALL
        (SELECT o.id, o.created_at FROM webhookd.outbox o
         WHERE $1::text IS NOT NULL
           AND o.endpoint_id IN (SELECT e.id FROM webhookd.endpoints e WHERE e.tenant_id = $1)
           AND ($2::timestamptz IS NULL OR (o.created_at, o.id) < ($2, $3::bigint))
           AND ($4::text[] IS NULL OR o.event_type = ANY ($4))
           AND ($5::timestamptz IS NULL OR o.created_at > $5)
           AND ($6::timestamptz IS NULL OR o.created_at < $6)
         ORDER BY o.created_at DESC, o.id DESC
         LIMIT $9)
        UNION ALL
        (SELECT o.id, o.created_at FROM webhookd.outbox o
         WHERE $1::text IS NULL
           AND ($2::timestamptz IS NULL OR (o.created_at, o.id) < ($2, $3::bigint))
           AND ($4::text[] IS NULL OR o.event_type = ANY ($4))
           AND ($5::timestamptz IS NULL OR o.created_at > $5)
           AND ($6::timestamptz IS NULL OR o.created_at < $6)
         ORDER BY o.created_at DESC, o.id DESC
         LIMIT $9)
    ) w
    ORDER BY w.created_at DESC, w.id DESC
    LIMIT $9
), judged AS (
    SELECT c.id, c.created_at, st.deliveries, st.status
    FROM scanned c
    CROSS JOIN LATERAL (
        SELECT count(*) AS deliveries,
               CASE WHEN bool_or(d.status = 'failed') THEN 2
                    WHEN bool_or(d.status = 'delivering') THEN 3
                    WHEN bool_or(d.status IN ('pending', 'held')) THEN 1
                    ELSE 0 END AS status
        FROM webhookd.deliveries d
        WHERE d.message_id = c.id AND ($7::text IS NULL OR d.endpoint_id = $7)
    ) st
), picked AS (
    (SELECT j.id, j.status, true AS matched FROM judged j
     WHERE ($7::text IS NULL OR j.deliveries > 0) AND ($8::int IS NULL OR j.status = $8)
     ORDER BY j.created_at DESC, j.id DESC
     LIMIT $10)
    UNION ALL
    (SELECT j.id, j.status, false FROM judged j
     WHERE (SELECT count(*) FROM scanned) = $9
     ORDER BY j.created_at, j.id
     LIMIT 1)
)
SELECT o.id, o.msg_id, o.event_type, o.payload::text AS payload, o.deliver_after, o.created_at,
       p.status, p.matched, app.id AS app_id
FROM picked p
JOIN webhookd.outbox o ON o.id = p.id
LEFT JOIN LATERAL (
    SELECT a.id FROM webhookd.api_apps a
    WHERE a.tenant_id = coalesce((SELECT e.tenant_id FROM webhookd.endpoints e
                                  WHERE e.id = o.endpoint_id), o.tenant_id, 'default')
) app ON true
ORDER BY p.matched DESC, o.created_at DESC, o.id DESC;

-- name: api_message_list_back
-- api_message_list read the other way (a prevIterator): the messages just after the cursor
-- ($2, $3), oldest first (the caller shows them newest first); the boundary row is the newest
-- one looked at.
-- params: tenant_id, after_at, after_id, event_types, after, before, endpoint_id, status, scan, limit
WITH scanned AS (
    SELECT w.id, w.created_at FROM (
        (SELECT o.id, o.created_at FROM webhookd.outbox o
         WHERE $1::text IS NOT NULL AND o.endpoint_id IS NULL
           AND coalesce(o.tenant_id, 'default') = $1
           AND ($2::timestamptz IS NULL OR (o.created_at, o.id) > ($2, $3::bigint))
           AND ($4::text[] IS NULL OR o.event_type = ANY ($4))
           AND ($5::timestamptz IS NULL OR o.created_at > $5)
           AND ($6::timestamptz IS NULL OR o.created_at < $6)
         ORDER BY o.created_at, o.id
         LIMIT $9)
        UNION ALL
        (SELECT o.id, o.created_at FROM webhookd.outbox o
         WHERE $1::text IS NOT NULL
           AND o.endpoint_id IN (SELECT e.id FROM webhookd.endpoints e WHERE e.tenant_id = $1)
           AND ($2::timestamptz IS NULL OR (o.created_at, o.id) > ($2, $3::bigint))
           AND ($4::text[] IS NULL OR o.event_type = ANY ($4))
           AND ($5::timestamptz IS NULL OR o.created_at > $5)
           AND ($6::timestamptz IS NULL OR o.created_at < $6)
         ORDER BY o.created_at, o.id
         LIMIT $9)
        UNION ALL
        (SELECT o.id, o.created_at FROM webhookd.outbox o
         WHERE $1::text IS NULL
           AND ($2::timestamptz IS NULL OR (o.created_at, o.id) > ($2, $3::bigint))
           AND ($4::text[] IS NULL OR o.event_type = ANY ($4))
           AND ($5::timestamptz IS NULL OR o.created_at > $5)
           AND ($6::timestamptz IS NULL OR o.created_at < $6)
         ORDER BY o.created_at, o.id
         LIMIT $9)
    ) w
    ORDER BY w.created_at, w.id
    LIMIT $9
), judged AS (
    SELECT c.id, c.created_at, st.deliveries, st.status
    FROM scanned c
    CROSS JOIN LATERAL (
        SELECT count(*) AS deliveries,
               CASE WHEN bool_or(d.status = 'failed') THEN 2
                    WHEN bool_or(d.status = 'delivering') THEN 3
                    WHEN bool_or(d.status IN ('pending', 'held')) THEN 1
                    ELSE 0 END AS status
        FROM webhookd.deliveries d
        WHERE d.message_id = c.id AND ($7::text IS NULL OR d.endpoint_id = $7)
    ) st
), picked AS (
    (SELECT j.id, j.status, true AS matched FROM judged j
     WHERE ($7::text IS NULL OR j.deliveries > 0) AND ($8::int IS NULL OR j.status = $8)
     ORDER BY j.created_at, j.id
     LIMIT $10)
    UNION ALL
    (SELECT j.id, j.status, false FROM judged j
     WHERE (SELECT count(*) FROM scanned) = $9
     ORDER BY j.created_at DESC, j.id DESC
     LIMIT 1)
)
SELECT o.id, o.msg_id, o.event_type, o.payload::text AS payload, o.deliver_after, o.created_at,
       p.status, p.matched, app.id AS app_id
FROM picked p
JOIN webhookd.outbox o ON o.id = p.id
LEFT JOIN LATERAL (
    SELECT a.id FROM webhookd.api_apps a
    WHERE a.tenant_id = coalesce((SELECT e.tenant_id FROM webhookd.endpoints e
                                  WHERE e.id = o.endpoint_id), o.tenant_id, 'default')
) app ON true
ORDER BY p.matched DESC, o.created_at, o.id;

-- name: api_message_list_failed
-- api_message_list for failed messages (status 2): walked in message order from the failed
-- deliveries of endpoints $2 (deliveries_failed_log_idx; NULL: of every endpoint, through
-- deliveries_failed_log_all_idx), at most $8 of them, rather than from every message; the
-- messages are then those of tenant $1 (NULL: any) and of event types $5. A message with a
-- failed delivery is failed, whatever its other deliveries are doing.
-- params: tenant_id, endpoint_ids, before_at, before_id, event_types, after, before, scan, limit
WITH walked AS (
    SELECT w.created_at, w.message_id FROM (
        (SELECT d.created_at, d.message_id FROM webhookd.deliveries d
         WHERE $2::text[] IS NULL AND d.status = 'failed'
               AND ($3::timestamptz IS NULL OR (d.created_at, d.message_id) < ($3, $4::bigint))
               AND ($6::timestamptz IS NULL OR d.created_at > $6)
               AND ($7::timestamptz IS NULL OR d.created_at < $7)
         ORDER BY d.created_at DESC, d.message_id DESC
         LIMIT $8)
        UNION ALL
        (SELECT x.created_at, x.message_id
         FROM unnest($2::text[]) AS e(id)
         CROSS JOIN LATERAL (
             SELECT d.created_at, d.message_id FROM webhookd.deliveries d
             WHERE d.endpoint_id = e.id AND d.status = 'failed'
               AND ($3::timestamptz IS NULL OR (d.created_at, d.message_id) < ($3, $4::bigint))
               AND ($6::timestamptz IS NULL OR d.created_at > $6)
               AND ($7::timestamptz IS NULL OR d.created_at < $7)
             ORDER BY d.created_at DESC, d.message_id DESC
             LIMIT $8) x)
    ) w
    ORDER BY w.created_at DESC, w.message_id DESC
    LIMIT $8
), picked AS (
    (SELECT m.message_id AS id, true AS matched
     FROM (SELECT DISTINCT message_id FROM walked) m
     JOIN webhookd.outbox o ON o.id = m.message_id
     WHERE ($1::text IS NULL
            OR (o.endpoint_id IS NULL AND coalesce(o.tenant_id, 'default') = $1)
            OR o.endpoint_id IN (SELECT e.id FROM webhookd.endpoints e WHERE e.tenant_id = $1))
       AND ($5::text[] IS NULL OR o.event_type = ANY ($5))
     ORDER BY o.created_at DESC, o.id DESC
     LIMIT $9)
    UNION ALL
    (SELECT w.message_id, false FROM walked w
     WHERE (SELECT count(*) FROM walked) = $8
     ORDER BY w.created_at, w.message_id
     LIMIT 1)
)
SELECT o.id, o.msg_id, o.event_type, o.payload::text AS payload, o.deliver_after, o.created_at,
       2 AS status, p.matched, app.id AS app_id
FROM picked p
JOIN webhookd.outbox o ON o.id = p.id
LEFT JOIN LATERAL (
    SELECT a.id FROM webhookd.api_apps a
    WHERE a.tenant_id = coalesce((SELECT e.tenant_id FROM webhookd.endpoints e
                                  WHERE e.id = o.endpoint_id), o.tenant_id, 'default')
) app ON true
ORDER BY p.matched DESC, o.created_at DESC, o.id DESC;

-- name: api_message_list_failed_back
-- api_message_list_failed read the other way (a prevIterator), oldest first.
-- params: tenant_id, endpoint_ids, after_at, after_id, event_types, after, before, scan, limit
WITH walked AS (
    SELECT w.created_at, w.message_id FROM (
        (SELECT d.created_at, d.message_id FROM webhookd.deliveries d
         WHERE $2::text[] IS NULL AND d.status = 'failed'
               AND ($3::timestamptz IS NULL OR (d.created_at, d.message_id) > ($3, $4::bigint))
               AND ($6::timestamptz IS NULL OR d.created_at > $6)
               AND ($7::timestamptz IS NULL OR d.created_at < $7)
         ORDER BY d.created_at, d.message_id
         LIMIT $8)
        UNION ALL
        (SELECT x.created_at, x.message_id
         FROM unnest($2::text[]) AS e(id)
         CROSS JOIN LATERAL (
             SELECT d.created_at, d.message_id FROM webhookd.deliveries d
             WHERE d.endpoint_id = e.id AND d.status = 'failed'
               AND ($3::timestamptz IS NULL OR (d.created_at, d.message_id) > ($3, $4::bigint))
               AND ($6::timestamptz IS NULL OR d.created_at > $6)
               AND ($7::timestamptz IS NULL OR d.created_at < $7)
             ORDER BY d.created_at, d.message_id
             LIMIT $8) x)
    ) w
    ORDER BY w.created_at, w.message_id
    LIMIT $8
), picked AS (
    (SELECT m.message_id AS id, true AS matched
     FROM (SELECT DISTINCT message_id FROM walked) m
     JOIN webhookd.outbox o ON o.id = m.message_id
     WHERE ($1::text IS NULL
            OR (o.endpoint_id IS NULL AND coalesce(o.tenant_id, 'default') = $1)
            OR o.endpoint_id IN (SELECT e.id FROM webhookd.endpoints e WHERE e.tenant_id = $1))
       AND ($5::text[] IS NULL OR o.event_type = ANY ($5))
     ORDER BY o.created_at, o.id
     LIMIT $9)
    UNION ALL
    (SELECT w.message_id, false FROM walked w
     WHERE (SELECT count(*) FROM walked) = $8
     ORDER BY w.created_at DESC, w.message_id DESC
     LIMIT 1)
)
SELECT o.id, o.msg_id, o.event_type, o.payload::text AS payload, o.deliver_after, o.created_at,
       2 AS status, p.matched, app.id AS app_id
FROM picked p
JOIN webhookd.outbox o ON o.id = p.id
LEFT JOIN LATERAL (
    SELECT a.id FROM webhookd.api_apps a
    WHERE a.tenant_id = coalesce((SELECT e.tenant_id FROM webhookd.endpoints e
                                  WHERE e.id = o.endpoint_id), o.tenant_id, 'default')
) app ON true
ORDER BY p.matched DESC, o.created_at, o.id;

-- name: api_event_type_schemas
-- The JSON Schemas of an event type that is not archived (NULL: none, or no such type).
-- params: name
SELECT schemas FROM webhookd.api_event_types WHERE name = $1 AND NOT archived;

-- name: api_attempts_by_endpoint
-- A page of endpoint $1's attempts, newest first, before the cursor ($2, $3), started in
-- ($4, $5), succeeded or not ($6, NULL: both); $7 is the page size plus one. A range of
-- api_attempts_endpoint_idx, however many attempts the endpoint has.
-- params: endpoint_id, before_at, before_id, after, before, succeeded, limit
SELECT a.id, a.attempt, a.started_at, a.duration_ms, a.status_code, a.error_class, a.error,
       a.response_body, a.endpoint_id, d.attempt_base, o.msg_id, e.url
FROM webhookd.attempts a
JOIN webhookd.deliveries d ON d.id = a.delivery_id
JOIN webhookd.outbox o ON o.id = d.message_id
JOIN webhookd.endpoints e ON e.id = a.endpoint_id
WHERE a.endpoint_id = $1
  AND ($2::timestamptz IS NULL OR (a.started_at, a.id) < ($2, $3::bigint))
  AND ($4::timestamptz IS NULL OR a.started_at > $4)
  AND ($5::timestamptz IS NULL OR a.started_at < $5)
  AND ($6::boolean IS NULL OR (coalesce(a.status_code, 0) BETWEEN 200 AND 299) = $6)
ORDER BY a.started_at DESC, a.id DESC
LIMIT $7;

-- name: api_attempts_by_message
-- A page of the attempts at message $1 (only to endpoint $2 when given), newest first, before
-- the cursor ($3, $4), succeeded or not ($5); $6 is the page size plus one.
-- params: message_id, endpoint_id, before_at, before_id, succeeded, limit
SELECT a.id, a.attempt, a.started_at, a.duration_ms, a.status_code, a.error_class, a.error,
       a.response_body, d.endpoint_id, d.attempt_base, o.msg_id, e.url
FROM webhookd.deliveries d
JOIN webhookd.attempts a ON a.delivery_id = d.id
JOIN webhookd.outbox o ON o.id = d.message_id
JOIN webhookd.endpoints e ON e.id = d.endpoint_id
WHERE d.message_id = $1
  AND ($2::text IS NULL OR d.endpoint_id = $2)
  AND ($3::timestamptz IS NULL OR (a.started_at, a.id) < ($3, $4::bigint))
  AND ($5::boolean IS NULL OR (coalesce(a.status_code, 0) BETWEEN 200 AND 299) = $5)
ORDER BY a.started_at DESC, a.id DESC
LIMIT $6;

-- name: api_delivery_of
-- The delivery of message $1 to endpoint $2, with what a resend needs to know.
-- params: message_id, endpoint_id
SELECT d.id, d.status, e.enabled AS endpoint_enabled
FROM webhookd.deliveries d
JOIN webhookd.endpoints e ON e.id = d.endpoint_id
WHERE d.message_id = $1 AND d.endpoint_id = $2;

-- name: api_event_type_list
-- A page of event types by name after $2 ($3: descending, before $2), archived ones only when
-- $1; $4 is the page size plus one.
-- params: include_archived, after_name, descending, limit
(SELECT * FROM webhookd.api_event_types
 WHERE NOT $3 AND ($1 OR NOT archived) AND ($2::text IS NULL OR name > $2)
 ORDER BY name LIMIT $4)
UNION ALL
(SELECT * FROM webhookd.api_event_types
 WHERE $3 AND ($1 OR NOT archived) AND ($2::text IS NULL OR name < $2)
 ORDER BY name DESC LIMIT $4);

-- name: api_event_type_get
-- One event type, archived or not.
-- params: name
SELECT * FROM webhookd.api_event_types WHERE name = $1;

-- name: api_event_type_upsert
-- Create an event type, or (when $8) replace the settings of the one with that name; nothing
-- when it exists and not $8 (the caller answers 409). inserted: whether it is new.
-- params: name, description, archived, deprecated, schemas, group_name, feature_flags, replace
INSERT INTO webhookd.api_event_types AS t
    (name, description, archived, deprecated, schemas, group_name, feature_flags)
VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7)
ON CONFLICT (name) DO UPDATE
SET description = EXCLUDED.description, archived = EXCLUDED.archived,
    deprecated = EXCLUDED.deprecated, schemas = EXCLUDED.schemas,
    group_name = EXCLUDED.group_name, feature_flags = EXCLUDED.feature_flags,
    updated_at = now()
WHERE $8
RETURNING *, (xmax = 0) AS inserted;

-- name: api_event_type_archive
-- Archive an event type (Svix's delete): kept, listed only with include_archived, and no longer
-- applied to new messages.
-- params: name
UPDATE webhookd.api_event_types SET archived = true, updated_at = now()
WHERE name = $1
RETURNING name;

-- name: api_event_type_delete
-- Delete an event type for good (expunge=true).
-- params: name
DELETE FROM webhookd.api_event_types WHERE name = $1 RETURNING name;

-- name: api_dead_letters
-- A page of the dead letters of endpoints $1, latest failure first, before the cursor ($4, $5),
-- failed in [$2, $3); $6 is the page size plus one (deliveries_failed_idx per endpoint).
-- params: endpoint_ids, since, until, before_at, before_id, limit
SELECT d.id, d.endpoint_id, d.attempts, d.last_status_code, d.last_error, d.updated_at,
       o.msg_id, o.event_type
FROM webhookd.deliveries d
JOIN webhookd.outbox o ON o.id = d.message_id
WHERE d.status = 'failed' AND d.endpoint_id = ANY ($1::text[])
  AND ($2::timestamptz IS NULL OR d.updated_at >= $2)
  AND ($3::timestamptz IS NULL OR d.updated_at < $3)
  AND ($4::timestamptz IS NULL OR (d.updated_at, d.id) < ($4, $5::bigint))
ORDER BY d.updated_at DESC, d.id DESC
LIMIT $6;

-- name: api_app_for_message
-- What creating a message needs in one round trip: the application named by id or uid (as
-- api_app_get) and the JSON Schemas of event type $2 (NULL: none, or archived).
-- params: ref, event_type
SELECT a.*,
       (SELECT t.schemas FROM webhookd.api_event_types t
        WHERE t.name = $2 AND NOT t.archived) AS event_schemas
FROM webhookd.api_apps a
WHERE a.id = $1 OR a.uid = $1
ORDER BY (a.id = $1) DESC
LIMIT 1;

-- name: api_message_insert_batch
-- Enqueue several messages in one statement (the API gathers concurrent creates): one fan-out
-- trigger run and one NOTIFY for all. Rows whose (tenant, msg_id) is taken insert nothing.
-- params: tenant_ids, msg_ids, event_types, payloads, deliver_afters
INSERT INTO webhookd.outbox (tenant_id, msg_id, event_type, payload, deliver_after)
SELECT t, m, e, p::jsonb, d
FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[]) AS u(t, m, e, p, d)
ON CONFLICT DO NOTHING
RETURNING id, tenant_id, msg_id, event_type, payload::text AS payload, deliver_after, created_at;

-- name: api_attempts_by_endpoint_back
-- api_attempts_by_endpoint read the other way (a prevIterator): the attempts just after the
-- cursor ($2, $3), oldest first.
-- params: endpoint_id, after_at, after_id, after, before, succeeded, limit
SELECT a.id, a.attempt, a.started_at, a.duration_ms, a.status_code, a.error_class, a.error,
       a.response_body, a.endpoint_id, d.attempt_base, o.msg_id, e.url
FROM webhookd.attempts a
JOIN webhookd.deliveries d ON d.id = a.delivery_id
JOIN webhookd.outbox o ON o.id = d.message_id
JOIN webhookd.endpoints e ON e.id = a.endpoint_id
WHERE a.endpoint_id = $1
  AND (a.started_at, a.id) > ($2, $3::bigint)
  AND ($4::timestamptz IS NULL OR a.started_at > $4)
  AND ($5::timestamptz IS NULL OR a.started_at < $5)
  AND ($6::boolean IS NULL OR (coalesce(a.status_code, 0) BETWEEN 200 AND 299) = $6)
ORDER BY a.started_at, a.id
LIMIT $7;

-- name: api_attempts_by_message_back
-- api_attempts_by_message read the other way (a prevIterator), oldest first.
-- params: message_id, endpoint_id, after_at, after_id, succeeded, limit
SELECT a.id, a.attempt, a.started_at, a.duration_ms, a.status_code, a.error_class, a.error,
       a.response_body, d.endpoint_id, d.attempt_base, o.msg_id, e.url
FROM webhookd.deliveries d
JOIN webhookd.attempts a ON a.delivery_id = d.id
JOIN webhookd.outbox o ON o.id = d.message_id
JOIN webhookd.endpoints e ON e.id = d.endpoint_id
WHERE d.message_id = $1
  AND ($2::text IS NULL OR d.endpoint_id = $2)
  AND (a.started_at, a.id) > ($3, $4::bigint)
  AND ($5::boolean IS NULL OR (coalesce(a.status_code, 0) BETWEEN 200 AND 299) = $5)
ORDER BY a.started_at, a.id
LIMIT $6;

-- name: api_dead_letters_back
-- api_dead_letters read the other way (a prevIterator): failed just after the cursor, oldest
-- first.
-- params: endpoint_ids, since, until, after_at, after_id, limit
SELECT d.id, d.endpoint_id, d.attempts, d.last_status_code, d.last_error, d.updated_at,
       o.msg_id, o.event_type
FROM webhookd.deliveries d
JOIN webhookd.outbox o ON o.id = d.message_id
WHERE d.status = 'failed' AND d.endpoint_id = ANY ($1::text[])
  AND ($2::timestamptz IS NULL OR d.updated_at >= $2)
  AND ($3::timestamptz IS NULL OR d.updated_at < $3)
  AND (d.updated_at, d.id) > ($4, $5::bigint)
ORDER BY d.updated_at, d.id
LIMIT $6;

-- name: api_stats_attempts
-- The console's figures: attempts started in the last $2 seconds of endpoints $1 (NULL: every
-- endpoint), in buckets of $3 seconds: how many, how many succeeded (2xx), and the median and
-- 95th percentile of their durations (attempts_started_idx, or api_attempts_endpoint_idx).
-- params: endpoint_ids, window_s, bucket_s
SELECT to_timestamp(floor(extract(epoch FROM a.started_at) / $3) * $3) AS bucket,
       count(*) AS attempts,
       count(*) FILTER (WHERE a.status_code BETWEEN 200 AND 299) AS succeeded,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY a.duration_ms) AS p50_ms,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY a.duration_ms) AS p95_ms
FROM webhookd.attempts a
WHERE a.started_at >= now() - make_interval(secs => $2)
  AND ($1::text[] IS NULL OR a.endpoint_id = ANY ($1::text[]))
GROUP BY 1
ORDER BY 1;

-- name: api_stats_window
-- The same over the whole window (percentiles are not averages of the buckets' ones), and the
-- deliveries per second of its last minute.
-- params: endpoint_ids, window_s
SELECT count(*) AS attempts,
       count(*) FILTER (WHERE a.status_code BETWEEN 200 AND 299) AS succeeded,
       count(*) FILTER (WHERE a.status_code BETWEEN 200 AND 299
                        AND a.started_at >= now() - interval '60 seconds') AS last_minute,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY a.duration_ms) AS p50_ms,
       percentile_cont(0.95) WITHIN GROUP (ORDER BY a.duration_ms) AS p95_ms
FROM webhookd.attempts a
WHERE a.started_at >= now() - make_interval(secs => $2)
  AND ($1::text[] IS NULL OR a.endpoint_id = ANY ($1::text[]));

-- name: api_stats_backlog
-- Deliveries waiting for endpoints $1 (NULL: every endpoint): due now, scheduled later (a
-- retry, deliver_after, a pause), in flight; and dead letters of the last 24 hours. One
-- subquery each, so each reads its partial index (deliveries_due_idx, deliveries_lease_idx,
-- deliveries_failed_at_idx) rather than every failed delivery ever kept.
-- params: endpoint_ids
SELECT (SELECT count(*) FROM webhookd.deliveries d
        WHERE d.status = 'pending' AND d.next_attempt_at <= now()
          AND ($1::text[] IS NULL OR d.endpoint_id = ANY ($1::text[]))) AS due,
       (SELECT count(*) FROM webhookd.deliveries d
        WHERE d.status = 'pending' AND d.next_attempt_at > now()
          AND ($1::text[] IS NULL OR d.endpoint_id = ANY ($1::text[]))) AS scheduled,
       (SELECT count(*) FROM webhookd.deliveries d
        WHERE d.status = 'delivering'
          AND ($1::text[] IS NULL OR d.endpoint_id = ANY ($1::text[]))) AS delivering,
       (SELECT count(*) FROM webhookd.deliveries d
        WHERE d.status = 'failed' AND d.updated_at >= now() - interval '24 hours'
          AND ($1::text[] IS NULL OR d.endpoint_id = ANY ($1::text[]))) AS dead_24h;

-- name: api_stats_endpoints
-- The health of live endpoints $1 (NULL: every one): disabled (by hand or by webhookd: a
-- failing streak, a 410 Gone, reason $2), paused (a Retry-After or a breaker cool-down),
-- paused while failing (how an open circuit breaker shows in the database).
-- params: endpoint_ids, gone_reason
SELECT count(*) AS total,
       count(*) FILTER (WHERE NOT e.enabled) AS disabled,
       count(*) FILTER (WHERE NOT e.enabled AND (e.disabled_reason LIKE 'failing since %'
                                                 OR e.disabled_reason = $2)) AS auto_disabled,
       count(*) FILTER (WHERE s.paused_until > now()) AS paused,
       count(*) FILTER (WHERE s.paused_until > now() AND s.failing_since IS NOT NULL)
           AS breaker_open
FROM webhookd.endpoints e
LEFT JOIN webhookd.endpoint_state s ON s.endpoint_id = e.id
WHERE e.deleted_at IS NULL AND ($1::text[] IS NULL OR e.id = ANY ($1::text[]));

-- name: console_session_insert
-- A console login: session $1 (the SHA-256 of its id) acting as API token $2 for $3 seconds;
-- up to 1,000 expired sessions are deleted on the way (console_sessions_expires_idx), so the
-- table holds little more than live sessions without a task of its own.
-- params: id_hash, token_id, ttl_s
WITH purged AS (
    DELETE FROM webhookd.console_sessions
    WHERE id_hash IN (SELECT s.id_hash FROM webhookd.console_sessions s
                      WHERE s.expires_at <= now()
                      ORDER BY s.expires_at
                      LIMIT 1000)
)
INSERT INTO webhookd.console_sessions (id_hash, token_id, expires_at)
VALUES ($1, $2, now() + make_interval(secs => $3))
RETURNING token_id, expires_at;

-- name: console_session_get
-- The live console session whose id hashes to $1: the token it acts as.
-- params: id_hash
SELECT token_id, expires_at FROM webhookd.console_sessions
WHERE id_hash = $1 AND expires_at > now();

-- name: console_session_delete
-- A logout (or a session whose token no longer authenticates): the row goes.
-- params: id_hash
DELETE FROM webhookd.console_sessions WHERE id_hash = $1;

-- name: api_portal_link
-- A one-time portal link's token for application $3 (its id), living $4 seconds (at most 7
-- days), of scope $5 (admin, or read); made by a function, as the API's role may not insert
-- tokens.
-- params: token_id, token_hash, app_id, ttl_s, scope
SELECT webhookd.api_portal_link($1, $2, $3, $4, $5) AS expires_at;

-- name: api_portal_exchange
-- Use up live portal link $1 and make the portal session's token ($2, hash $3) for its
-- application, with its scope, expiring with it; no row when the link was used, expired or
-- never was.
-- params: link_id, token_id, token_hash
SELECT app_id, expires_at, scope FROM webhookd.api_portal_exchange($1, $2, $3);
