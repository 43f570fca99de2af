-- A msg_id goes out as the webhook-id header (and into the signed content): one that a header
-- cannot carry (empty, a control character such as CR or LF, blanks at either end, longer
-- than 256 characters) used to be accepted, then retried for about 28 hours as internal_error.
-- It is refused at insert now. NOT VALID: rows already there do not block the migration; the
-- daemon dead-letters any such delivery at its next attempt (error class invalid_message).
-- (0007..0009 are left to work under way on other branches.)
ALTER TABLE webhookd.outbox
    ADD CONSTRAINT outbox_msg_id_sendable CHECK (
        msg_id <> ''
        AND length(msg_id) <= 256
        AND msg_id !~ '[\x01-\x1f\x7f-\x9f]'
        AND msg_id !~ '^\s|\s$'
    ) NOT VALID;
