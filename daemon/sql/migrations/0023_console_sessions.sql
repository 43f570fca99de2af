-- Console logins (docs/console.md, security model), kept here rather than in one API process's
-- memory: they survive a restart of `webhookd api`, and any of several API processes behind one
-- address accepts them. A row holds no secret: the SHA-256 of the session id the cookie
-- carries (256 random bits, so a fast hash is enough; the lookup is by it), and the id of the
-- API token the session acts as, never the token itself (every request checks that token as
-- its own would be: revoked or expired, the session ends). The CSRF token is an HMAC keyed by
-- the session id, so it is not stored either.
CREATE TABLE webhookd.console_sessions (
    id_hash     bytea PRIMARY KEY,
    token_id    text NOT NULL REFERENCES webhookd.api_tokens (id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);
-- Logins delete expired rows, a bounded number at a time, oldest first.
CREATE INDEX console_sessions_expires_idx ON webhookd.console_sessions (expires_at);
