-- Shared by both backends (same text). CM-12: the payments the retention dropped
-- from payments_view, with what a later event of theirs needs (a refund of an old
-- payment still records its cash movement) and what the `payment` query and the
-- `events` log need to tell them apart from unknown ids and to check their owner.
-- Part of the `payments` projection: never trimmed, rebuilt from the log.
CREATE TABLE archived_payments
(
    payment_id TEXT PRIMARY KEY,
    shop_id    TEXT NOT NULL,
    mode       TEXT NOT NULL,
    currency   TEXT NOT NULL,
    channel    TEXT NOT NULL,
    created_at TEXT NOT NULL
);
