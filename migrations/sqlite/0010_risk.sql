-- Shared by both backends (same text). Risk controls, 3-D Secure and the payment
-- guarantee (issue 4: RC-1..8, SE-1, SE-2): what each payment's 3DS step and
-- risk assessment gave, the shops' settings and grey lists, each payment's risk
-- decision, per-day rule counts and the card outstanding. All derived from
-- events: the `payments` projection fills the new payments_view and
-- cash_movements columns, the `risk` projection owns the new tables.

-- ENROLLED, NOT_ENROLLED, UNKNOWN or NOT_CHECKED.
ALTER TABLE payments_view ADD COLUMN three_ds_enrolled TEXT NOT NULL DEFAULT 'NOT_CHECKED';
-- AUTHENTICATED, ATTEMPTED, FAILED, UNAVAILABLE, CHALLENGE_PENDING or NOT_PERFORMED.
ALTER TABLE payments_view ADD COLUMN three_ds_status TEXT NOT NULL DEFAULT 'NOT_PERFORMED';
ALTER TABLE payments_view ADD COLUMN three_ds_transaction_id TEXT;
-- YES, NO or UNKNOWN.
ALTER TABLE payments_view ADD COLUMN guarantee TEXT NOT NULL DEFAULT 'NO';
-- ACCEPTED, FLAGGED or REFUSED.
ALTER TABLE payments_view ADD COLUMN risk_outcome TEXT NOT NULL DEFAULT 'ACCEPTED';
-- The controls that fired, comma-separated (CARD_GREY_LIST,IP_GREY_LIST); NULL: none.
ALTER TABLE payments_view ADD COLUMN risk_fired TEXT;
-- The country the buyer declared and the card's issuing country (ISO alpha-2).
ALTER TABLE payments_view ADD COLUMN buyer_country TEXT;
ALTER TABLE payments_view ADD COLUMN card_country TEXT;
CREATE INDEX payments_view_guarantee ON payments_view (shop_id, mode, guarantee, created_at);
CREATE INDEX payments_view_risk_outcome ON payments_view (shop_id, mode, risk_outcome, created_at);

-- The payment's guarantee when the money moved, for the cash totals by guarantee.
ALTER TABLE cash_movements ADD COLUMN guarantee TEXT NOT NULL DEFAULT 'NO';
-- Kept with an archived payment, for the movements of its later events.
ALTER TABLE archived_payments ADD COLUMN guarantee TEXT NOT NULL DEFAULT 'NO';

-- The shops' grey lists (RC-1, RC-3, RC-4): one row per GreyListEntry aggregate,
-- removed entries kept (removed_at set). `seq` numbers the changes of one shop's
-- entries in the order the projection applied them (not the global position,
-- which on PostgreSQL is not commit order), so a cache reading `seq > n` misses
-- nothing.
CREATE TABLE grey_list_entries
(
    entry_id   TEXT PRIMARY KEY,
    shop_id    TEXT   NOT NULL,
    -- CARD, BIN, COUNTRY or IP.
    kind       TEXT   NOT NULL,
    -- Normalised: fingerprint, BIN, country code or canonical IP/CIDR.
    value      TEXT   NOT NULL,
    expires_at TEXT,
    comment    TEXT,
    added_at   TEXT   NOT NULL,
    -- The actor of the event's metadata.
    added_by   TEXT,
    removed_at TEXT,
    removed_by TEXT,
    seq        BIGINT NOT NULL
);
CREATE INDEX grey_list_entries_changes ON grey_list_entries (shop_id, seq);
CREATE INDEX grey_list_entries_value ON grey_list_entries (shop_id, kind, value);

-- Each shop's risk control settings (per shop, both modes).
CREATE TABLE risk_settings_view
(
    shop_id         TEXT NOT NULL,
    -- CARD_GREY_LIST, CARD_OUTSTANDING, …
    control         TEXT NOT NULL,
    -- OFF, INFORMATIVE or BLOCKING.
    mode            TEXT NOT NULL,
    parameters_json TEXT NOT NULL,
    updated_at      TEXT NOT NULL,
    PRIMARY KEY (shop_id, control)
);

-- Each shop's 3-D Secure enrolment, once configured (before: the default).
CREATE TABLE three_ds_settings_view
(
    shop_id    TEXT PRIMARY KEY,
    -- Comma-separated brands (CB,MASTERCARD,VISA) and channels (ECOMMERCE,MCOMMERCE).
    brands     TEXT NOT NULL,
    channels   TEXT NOT NULL,
    updated_at TEXT NOT NULL
);

-- One row per payment: the risk controls that ran on it and what they decided.
-- A payment waiting for its 3DS challenge gets its row then; the completion
-- adds the controls run after authentication.
CREATE TABLE risk_decisions
(
    payment_id       TEXT PRIMARY KEY,
    shop_id          TEXT   NOT NULL,
    mode             TEXT   NOT NULL,
    -- When the payment was assessed (its first event) and that day (UTC).
    occurred_at      TEXT   NOT NULL,
    business_date    TEXT   NOT NULL,
    -- ACCEPTED, FLAGGED or REFUSED.
    outcome          TEXT   NOT NULL,
    -- The controls that fired, comma-separated; NULL: none.
    fired            TEXT,
    -- The refusal the risk step gave (RISK_* or THREE_DS_FAILED); NULL otherwise.
    refusal_code     TEXT,
    -- Every check: [{control, mode, fired, reason, detail}] as the events carry them.
    checks_json      TEXT   NOT NULL,
    card_fingerprint TEXT   NOT NULL,
    amount_milli     BIGINT NOT NULL,
    currency         TEXT   NOT NULL,
    -- YES, NO or UNKNOWN.
    guarantee        TEXT   NOT NULL,
    -- The last event that changed the row.
    global_position  BIGINT NOT NULL
);
CREATE INDEX risk_decisions_listing ON risk_decisions (shop_id, mode, occurred_at, payment_id);
CREATE INDEX risk_decisions_outcome ON risk_decisions (shop_id, mode, outcome, occurred_at);

-- How often each control ran and fired, per shop, mode and day: once per payment
-- and control.
CREATE TABLE risk_rule_counts
(
    shop_id           TEXT   NOT NULL,
    mode              TEXT   NOT NULL,
    business_date     TEXT   NOT NULL,
    control           TEXT   NOT NULL,
    fired_blocking    BIGINT NOT NULL,
    fired_informative BIGINT NOT NULL,
    ran               BIGINT NOT NULL,
    PRIMARY KEY (shop_id, mode, business_date, control)
);

-- The card outstanding (RC-2) per card and day: payments counted, less those released.
CREATE TABLE risk_card_outstanding
(
    shop_id          TEXT   NOT NULL,
    mode             TEXT   NOT NULL,
    card_fingerprint TEXT   NOT NULL,
    business_date    TEXT   NOT NULL,
    currency         TEXT   NOT NULL,
    amount_milli     BIGINT NOT NULL,
    payment_count    BIGINT NOT NULL,
    PRIMARY KEY (shop_id, mode, card_fingerprint, business_date, currency)
);

-- Each reservation, so its release is taken off the day it was counted on.
CREATE TABLE risk_outstanding_reservations
(
    payment_id       TEXT PRIMARY KEY,
    shop_id          TEXT   NOT NULL,
    mode             TEXT   NOT NULL,
    card_fingerprint TEXT   NOT NULL,
    business_date    TEXT   NOT NULL,
    currency         TEXT   NOT NULL,
    amount_milli     BIGINT NOT NULL,
    -- 0 or 1.
    released         BIGINT NOT NULL
);
