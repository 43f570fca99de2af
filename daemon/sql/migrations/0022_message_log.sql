-- The message log's filters (docs/api.md, "Message log"): by status and endpoint, of one
-- application or of every one. A page walks the messages newest first (api_outbox_tenant_idx,
-- outbox_created_idx) and reads each one's deliveries (deliveries_message_idx), a bounded
-- number of messages per page. Failed messages are the ones operators look for, and may be
-- few among millions: they are walked in message order from these two indexes instead, which
-- hold failed deliveries only, so the delivery path pays for them only when a delivery fails
-- for good (a delivery's created_at is its message's, set by the fan-out trigger).
CREATE INDEX deliveries_failed_log_idx ON webhookd.deliveries (endpoint_id, created_at, message_id)
    WHERE status = 'failed';
CREATE INDEX deliveries_failed_log_all_idx ON webhookd.deliveries (created_at, message_id)
    WHERE status = 'failed';

-- Every endpoint of a tenant, deleted ones too (their failed deliveries stay in the log).
CREATE INDEX endpoints_tenant_all_idx ON webhookd.endpoints (tenant_id);
