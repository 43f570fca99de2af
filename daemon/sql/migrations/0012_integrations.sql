-- Chat incoming webhooks (Slack, Discord, Microsoft Teams): an endpoint may have its body
-- rendered from a template over the event instead of the payload sent as it is. `raw` (the
-- default) is the behaviour before this migration. The template and title are checked when
-- written (`endpoint add | update | import`, the API) and parsed when the daemon loads the
-- endpoint; NULL means the format's default text.
ALTER TABLE webhookd.endpoints
    ADD COLUMN payload_format text NOT NULL DEFAULT 'raw'
        CONSTRAINT endpoints_payload_format_known
        CHECK (payload_format IN ('raw', 'slack', 'discord', 'teams')),
    ADD COLUMN payload_template text
        CONSTRAINT endpoints_payload_template_size CHECK (length(payload_template) <= 40000),
    ADD COLUMN payload_title text
        CONSTRAINT endpoints_payload_title_size CHECK (length(payload_title) <= 40000),
    -- Egress: NULL follows delivery.proxy, 'none' goes direct, else an http:// proxy URL
    -- without credentials (a proxy that needs them is configured in delivery.proxy, so that
    -- its password is never stored in the database).
    ADD COLUMN proxy text
        CONSTRAINT endpoints_proxy_size CHECK (length(proxy) <= 2048);
