-- Issue 5: fewer and cheaper index writes per notification (measured: the
-- webhook outbox's writes, not the HTTP sends, were what notifications cost
-- the payments; docs/performance.md).
--
-- * One index serves both the replay guard and the per-payment order: a
--   delivery is unique per endpoint, subject (the payment or plan, which the
--   `webhook-id` is derived from) and `webhook-id`. The former guard on
--   (endpoint, webhook-id) put each new delivery on a random page (the id is
--   a hash); payment ids are time-ordered, so new entries now land together.
-- * The due indexes hold only what is pending: a delivery or e-mail leaves
--   them when it is sent, instead of moving to a SUCCEEDED/SENT part that
--   nothing reads.
-- The SQLite twin of this file rebuilds the table (SQLite cannot drop a
-- UNIQUE table constraint) to the same effect.
ALTER TABLE webhook_deliveries DROP CONSTRAINT webhook_deliveries_endpoint_id_webhook_id_key;
DROP INDEX webhook_deliveries_subject;
DROP INDEX webhook_deliveries_due;
CREATE UNIQUE INDEX webhook_deliveries_event ON webhook_deliveries (endpoint_id, subject_id, webhook_id);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (next_attempt_at) WHERE status = 'PENDING';

DROP INDEX email_outbox_due;
CREATE INDEX email_outbox_due ON email_outbox (next_attempt_at) WHERE status = 'PENDING';
