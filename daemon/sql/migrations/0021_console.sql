-- The console and the tenants' portal (docs/console.md). A portal link carries a one-time
-- token: it may only be exchanged, once, for the portal's session token (kind 'portal'),
-- scoped to the same application and expiring with it. Tokens made by `api-token create`
-- are of kind 'api', as every token before this migration.
ALTER TABLE webhookd.api_tokens
    ADD COLUMN kind text NOT NULL DEFAULT 'api' CHECK (kind IN ('api', 'portal-link', 'portal'));

-- The API role may not make tokens (docs/operating.md, database roles); these two functions,
-- run as the schema owner, make only portal tokens: a link for one application, and a
-- session in exchange for a live link (used up in the same statement, so once), with the
-- link's scope (admin, or read for Svix's readOnly; the scope column's CHECK holds it).
CREATE FUNCTION webhookd.api_portal_link(p_id text, p_hash bytea, p_app text, p_ttl_s float8,
                                         p_scope text)
RETURNS timestamptz
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    INSERT INTO webhookd.api_tokens (id, token_hash, scope, app_id, description, expires_at,
                                     kind)
    SELECT p_id, p_hash, p_scope, a.id, 'app portal link',
           now() + make_interval(secs => least(greatest(p_ttl_s, 1), 7 * 86400)), 'portal-link'
    FROM webhookd.api_apps a WHERE a.id = p_app
    RETURNING expires_at
$$;

CREATE FUNCTION webhookd.api_portal_exchange(p_link text, p_id text, p_hash bytea)
RETURNS TABLE (app_id text, expires_at timestamptz, scope text)
LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$
    WITH used AS (
        UPDATE webhookd.api_tokens
        SET revoked_at = now()
        WHERE id = p_link AND kind = 'portal-link' AND revoked_at IS NULL
          AND expires_at > now()
        RETURNING app_id, expires_at, scope
    )
    INSERT INTO webhookd.api_tokens (id, token_hash, scope, app_id, description, expires_at,
                                     kind)
    SELECT p_id, p_hash, used.scope, used.app_id, 'app portal session', used.expires_at, 'portal'
    FROM used
    RETURNING app_id, expires_at, scope
$$;
REVOKE ALL ON FUNCTION webhookd.api_portal_link(text, bytea, text, float8, text) FROM PUBLIC;
REVOKE ALL ON FUNCTION webhookd.api_portal_exchange(text, text, bytea) FROM PUBLIC;
