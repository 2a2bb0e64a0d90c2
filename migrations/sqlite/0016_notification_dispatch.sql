-- Issue 5, ADR 0013: webhooks and e-mails are dispatched from the log by
-- tasks of their own, no longer queued by the `webhook_outbox` and
-- `email_outbox` projections inside the projector's transaction. One row per
-- dispatcher (`webhooks`, `emails`): its checkpoint (the last event it
-- dispatched) and its lease (a pass under way in some process: the others
-- leave the log alone until the lease is released or runs out).
CREATE TABLE notification_dispatch (
    name            TEXT PRIMARY KEY,
    tx_id           BIGINT NOT NULL,
    global_position BIGINT NOT NULL,
    -- Set while a pass sends; NULL between passes.
    lease_until     TEXT,
    updated_at      TEXT
);
-- Each starts where its projection stopped (no event sent twice, none
-- skipped), or at the start of the log on a new database.
INSERT INTO notification_dispatch (name, tx_id, global_position) VALUES (
    'webhooks',
    COALESCE((SELECT tx_id FROM projection_checkpoints WHERE name = 'webhook_outbox'), 0),
    COALESCE((SELECT global_position FROM projection_checkpoints WHERE name = 'webhook_outbox'), 0)
);
INSERT INTO notification_dispatch (name, tx_id, global_position) VALUES (
    'emails',
    COALESCE((SELECT tx_id FROM projection_checkpoints WHERE name = 'email_outbox'), 0),
    COALESCE((SELECT global_position FROM projection_checkpoints WHERE name = 'email_outbox'), 0)
);
DELETE FROM projection_checkpoints WHERE name IN ('webhook_outbox', 'email_outbox');
