-- Issue 5: fewer and cheaper index writes per notification (measured: the
-- webhook outbox's writes, not the HTTP sends, were what notifications cost
-- the payments; docs/performance.md). The PostgreSQL twin of this file does
-- the same with ALTER and DROP; SQLite cannot drop a UNIQUE table constraint,
-- so the table is rebuilt.
--
-- * One index serves both the replay guard and the per-payment order: a
--   delivery is unique per endpoint, subject (the payment or plan, which the
--   `webhook-id` is derived from) and `webhook-id`. The former guard on
--   (endpoint, webhook-id) put each new delivery on a random page (the id is
--   a hash); payment ids are time-ordered, so new entries now land together.
-- * The due indexes hold only what is pending: a delivery or e-mail leaves
--   them when it is sent, instead of moving to a SUCCEEDED/SENT part that
--   nothing reads.
-- * The attempts log is keyed by its primary key alone (WITHOUT ROWID): one
--   b-tree written per attempt instead of a table and its key's index.
CREATE TABLE webhook_deliveries_new (
    delivery_id      TEXT PRIMARY KEY,
    -- Standard Webhooks `webhook-id`: stable per event, the receiver's dedup key.
    webhook_id       TEXT NOT NULL,
    endpoint_id      TEXT NOT NULL,
    shop_id          TEXT NOT NULL,
    mode             TEXT NOT NULL,
    event_type       TEXT NOT NULL,
    -- The payment (or plan) the event is about: its deliveries go in order.
    subject_id       TEXT NOT NULL,
    -- Commit order of the event in the log.
    tx_id            BIGINT NOT NULL,
    global_position  BIGINT NOT NULL,
    payload          TEXT NOT NULL,
    -- PENDING, SUCCEEDED or FAILED (the retry schedule ran out).
    status           TEXT NOT NULL,
    attempts         BIGINT NOT NULL,
    next_attempt_at  TEXT,
    last_attempt_at  TEXT,
    last_status_code BIGINT,
    last_error       TEXT,
    created_at       TEXT NOT NULL
);
INSERT INTO webhook_deliveries_new SELECT * FROM webhook_deliveries;
DROP TABLE webhook_deliveries;
ALTER TABLE webhook_deliveries_new RENAME TO webhook_deliveries;
CREATE UNIQUE INDEX webhook_deliveries_event ON webhook_deliveries (endpoint_id, subject_id, webhook_id);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'PENDING';
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id, created_at);

CREATE TABLE webhook_attempts_new (
    delivery_id      TEXT NOT NULL,
    attempt          BIGINT NOT NULL,
    attempted_at     TEXT NOT NULL,
    status_code      BIGINT,
    latency_ms       BIGINT NOT NULL,
    response_prefix  TEXT,
    error            TEXT,
    PRIMARY KEY (delivery_id, attempt)
) WITHOUT ROWID;
INSERT INTO webhook_attempts_new SELECT * FROM webhook_attempts;
DROP TABLE webhook_attempts;
ALTER TABLE webhook_attempts_new RENAME TO webhook_attempts;

DROP INDEX email_outbox_due;
CREATE INDEX email_outbox_due ON email_outbox (next_attempt_at) WHERE status = 'PENDING';
