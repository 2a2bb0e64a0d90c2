-- The double-entry journal (FEATURES X-1, X-5), owned by the `journal` projection.
-- Shared by both backends (same text; integer and text columns only). Amounts are
-- integers in thousandths of the major unit ("milli"). See docs/journal.md.

-- One row per journal entry. An event yields zero, one or several entries (a
-- remittance yields one per remitted payment), numbered by `entry_index`.
-- `tx_id` and `global_position` are the event's log position: listing entries by
-- (tx_id, global_position, entry_index) is log (commit) order.
CREATE TABLE journal_entries
(
    global_position BIGINT NOT NULL,
    entry_index     BIGINT NOT NULL,
    entry_id        TEXT   NOT NULL,
    tx_id           BIGINT NOT NULL,
    shop_id         TEXT   NOT NULL,
    mode            TEXT   NOT NULL,
    currency        TEXT   NOT NULL,
    business_date   TEXT   NOT NULL,
    occurred_at     TEXT   NOT NULL,
    event_type      TEXT   NOT NULL,
    payment_id      TEXT,
    remittance_id   TEXT,
    PRIMARY KEY (global_position, entry_index)
);
CREATE INDEX journal_entries_listing ON journal_entries (shop_id, mode, tx_id, global_position, entry_index);
CREATE INDEX journal_entries_business_date ON journal_entries (shop_id, mode, business_date);
-- The projection finds a payment's shop and mode from its authorisation entry.
CREATE INDEX journal_entries_payment ON journal_entries (payment_id);

-- One row per debit or credit. `line_index` numbers the lines of one event across
-- all its entries, so (global_position, line_index) identifies a line. The entry's
-- columns are repeated so trial balances are one scan of this table.
CREATE TABLE journal_lines
(
    global_position BIGINT NOT NULL,
    line_index      BIGINT NOT NULL,
    entry_index     BIGINT NOT NULL,
    entry_id        TEXT   NOT NULL,
    tx_id           BIGINT NOT NULL,
    shop_id         TEXT   NOT NULL,
    mode            TEXT   NOT NULL,
    currency        TEXT   NOT NULL,
    business_date   TEXT   NOT NULL,
    occurred_at     TEXT   NOT NULL,
    event_type      TEXT   NOT NULL,
    payment_id      TEXT,
    remittance_id   TEXT,
    account         TEXT   NOT NULL,
    debit_milli     BIGINT NOT NULL,
    credit_milli    BIGINT NOT NULL,
    PRIMARY KEY (global_position, line_index)
);
CREATE INDEX journal_lines_business_date ON journal_lines (shop_id, mode, business_date);
-- Trial balances: totals per shop, mode, currency and account (optionally up to an instant).
CREATE INDEX journal_lines_trial_balance ON journal_lines (shop_id, mode, currency, account, occurred_at);
