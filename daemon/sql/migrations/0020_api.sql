-- The management HTTP API (`webhookd api`, daemon/api/): applications, API tokens, event types,
-- and what its lists need to be fast. Everything here is additive: the delivery path neither
-- reads nor needs any of it, except the attempts trigger below, which fills one column.

-- An application is a tenant, as Svix calls one. tenant_id is what the outbox and endpoints
-- hold: the uid when the application was created with one, else its id. It never changes, so
-- an application's endpoints and messages stay its own (uid can be set only at creation).
CREATE TABLE webhookd.api_apps (
    id          text PRIMARY KEY,
    seq         bigserial NOT NULL UNIQUE,                 -- list order and page cursor
    uid         text UNIQUE,
    tenant_id   text NOT NULL UNIQUE,
    name        text NOT NULL,
    metadata    jsonb NOT NULL DEFAULT '{}',
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);

-- Every tenant that has endpoints has an application, however the endpoint was made
-- (`webhookd endpoint add --tenant acme`, SQL, or the API), so GET /api/v1/app/acme finds it.
-- SECURITY DEFINER: the roles that write endpoints (admin, API, and the daemon disabling one)
-- need no right on api_apps for this.
CREATE FUNCTION webhookd.api_app_for_tenant() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $$
BEGIN
    INSERT INTO webhookd.api_apps (id, uid, tenant_id, name)
    SELECT 'app_' || replace(gen_random_uuid()::text, '-', ''), t.tenant_id, t.tenant_id,
           t.tenant_id
    FROM (SELECT DISTINCT n.tenant_id FROM new_rows n WHERE n.deleted_at IS NULL) t
    WHERE NOT EXISTS (SELECT 1 FROM webhookd.api_apps a WHERE a.tenant_id = t.tenant_id)
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END
$$;

CREATE TRIGGER api_app_for_new_tenant AFTER INSERT ON webhookd.endpoints
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION webhookd.api_app_for_tenant();
CREATE TRIGGER api_app_for_moved_tenant AFTER UPDATE ON webhookd.endpoints
    REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION webhookd.api_app_for_tenant();

INSERT INTO webhookd.api_apps (id, uid, tenant_id, name)
SELECT 'app_' || replace(gen_random_uuid()::text, '-', ''), t.tenant_id, t.tenant_id, t.tenant_id
FROM (SELECT DISTINCT tenant_id FROM webhookd.endpoints WHERE deleted_at IS NULL
      ORDER BY tenant_id) t;

-- API tokens: only a SHA-256 of each is kept (tokens are 256 random bits, so a fast hash is
-- enough); the id is also inside the token, so a lookup is by id and the hash comparison
-- happens in constant time in the API process.
CREATE TABLE webhookd.api_tokens (
    id          text PRIMARY KEY,
    token_hash  bytea NOT NULL,
    scope       text NOT NULL CHECK (scope IN ('admin', 'read')),
    app_id      text REFERENCES webhookd.api_apps (id) ON DELETE CASCADE,
    description text NOT NULL DEFAULT '',
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz,
    revoked_at  timestamptz
);

-- Event types, with an optional JSON Schema per version ({"1": {...}}): a message of a type
-- with a schema is validated against its highest version when it is created through the API.
CREATE TABLE webhookd.api_event_types (
    name          text PRIMARY KEY,
    description   text NOT NULL DEFAULT '',
    archived      boolean NOT NULL DEFAULT false,
    deprecated    boolean NOT NULL DEFAULT false,
    schemas       jsonb,
    group_name    text,
    feature_flags text[],
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);

-- Svix's endpoint fields webhookd had no column for. A uid names an endpoint within its tenant.
ALTER TABLE webhookd.endpoints
    ADD COLUMN uid text,
    ADD COLUMN metadata jsonb NOT NULL DEFAULT '{}';
CREATE UNIQUE INDEX api_endpoints_uid_uidx ON webhookd.endpoints (tenant_id, uid)
    WHERE uid IS NOT NULL AND deleted_at IS NULL;
CREATE INDEX api_endpoints_list_idx ON webhookd.endpoints (tenant_id, created_at, id)
    WHERE deleted_at IS NULL;

-- Messages of a tenant, newest first, in pages (fan-out rows), and rows addressed to one
-- endpoint (send-example, or an application's direct insert).
CREATE INDEX api_outbox_tenant_idx
    ON webhookd.outbox ((coalesce(tenant_id, 'default')), created_at, id)
    WHERE endpoint_id IS NULL;
CREATE INDEX api_outbox_endpoint_idx ON webhookd.outbox (endpoint_id, created_at, id)
    WHERE endpoint_id IS NOT NULL;

-- Attempts of one endpoint, newest first, in pages: a page is an index range however many
-- attempts the endpoint has. The daemon's outcome writes give the endpoint; for any other
-- writer it is copied from the delivery (a row trigger that runs only then: it is not on the
-- hot path).
ALTER TABLE webhookd.attempts ADD COLUMN endpoint_id text;
UPDATE webhookd.attempts a SET endpoint_id = d.endpoint_id
FROM webhookd.deliveries d WHERE d.id = a.delivery_id;

CREATE FUNCTION webhookd.attempt_endpoint() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.endpoint_id IS NULL THEN
        SELECT d.endpoint_id INTO NEW.endpoint_id
        FROM webhookd.deliveries d WHERE d.id = NEW.delivery_id;
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER attempt_endpoint BEFORE INSERT ON webhookd.attempts
    FOR EACH ROW WHEN (NEW.endpoint_id IS NULL) EXECUTE FUNCTION webhookd.attempt_endpoint();

CREATE INDEX api_attempts_endpoint_idx ON webhookd.attempts (endpoint_id, started_at, id)
    INCLUDE (status_code);
