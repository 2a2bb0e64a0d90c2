-- Shared by both backends (same text). CM-10: remittances per shop, mode, currency
-- and acquirer contract, with the captures as debits and the refunds as credits
-- (docs/adr/0008).

-- The contract each payment was authorised under; the cut-off groups by it.
-- Payments recorded before contracts were are all the simulator's.
ALTER TABLE payments_view ADD COLUMN acquirer_contract TEXT NOT NULL DEFAULT 'SIMULATOR';

-- A remittance's contract and credits; `payment_count` / `total_milli` stay its
-- debits (the captures).
ALTER TABLE remittances_view ADD COLUMN acquirer_contract TEXT NOT NULL DEFAULT 'SIMULATOR';
ALTER TABLE remittances_view ADD COLUMN credit_count BIGINT NOT NULL DEFAULT 0;
ALTER TABLE remittances_view ADD COLUMN credit_total_milli BIGINT NOT NULL DEFAULT 0;

-- Each remitted payment with the shop, mode, currency and contract of its
-- remittance: where a later refund of the payment is sent. Part of the
-- `remittances` projection, never trimmed.
CREATE TABLE remittance_payments
(
    remittance_id     TEXT   NOT NULL,
    payment_id        TEXT   NOT NULL,
    shop_id           TEXT   NOT NULL,
    mode              TEXT   NOT NULL,
    currency          TEXT   NOT NULL,
    acquirer_contract TEXT   NOT NULL,
    amount_milli      BIGINT NOT NULL,
    PRIMARY KEY (remittance_id, payment_id)
);
CREATE INDEX remittance_payments_payment ON remittance_payments (payment_id);

-- Every refund and its way to the bank: `remittance_id` once a `RefundRemitted`
-- names it, `recorded_in` once a `RemittanceSubmitted` lists it. Both NULL: waiting
-- for the next remittance; only `recorded_in` NULL: a remittance left half-done.
CREATE TABLE remittance_refunds
(
    refund_id     TEXT PRIMARY KEY,
    payment_id    TEXT   NOT NULL,
    currency      TEXT   NOT NULL,
    amount_milli  BIGINT NOT NULL,
    refunded_at   TEXT   NOT NULL,
    remittance_id TEXT,
    remitted_at   TEXT,
    recorded_in   TEXT
);
CREATE INDEX remittance_refunds_unrecorded ON remittance_refunds (recorded_in, remittance_id);
CREATE INDEX remittance_refunds_payment ON remittance_refunds (payment_id);

-- The remittances projection fills the new tables, and the journal now books a
-- refund against the receivable until its remittance: both replay the log from
-- its start (views are disposable; the projector refills them on start).
DELETE FROM remittances_view;
DELETE FROM journal_lines;
DELETE FROM journal_entries;
DELETE FROM projection_checkpoints WHERE name IN ('remittances', 'journal');
