-- Asymmetric signatures: `standard-ed25519` endpoints sign `v1a,<base64 ed25519>` with a
-- `whsk_` private key kept in `secret` (and `previous_secrets` during a rotation), so the
-- columns are unchanged; only the list of schemes grows.

ALTER TABLE webhookd.endpoints DROP CONSTRAINT endpoints_signature_scheme_check;
ALTER TABLE webhookd.endpoints ADD CONSTRAINT endpoints_signature_scheme_check
    CHECK (signature_scheme IN ('standard', 'standard-ed25519', 'hmac-sha256-hex'));
