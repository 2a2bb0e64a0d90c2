-- Shared by both backends (same text; integer and text columns only). Amounts are
-- integers in thousandths of the major unit ("milli"), exact for every currency.
CREATE TABLE card_vault
(
    token       TEXT PRIMARY KEY,
    key_id      TEXT NOT NULL,
    nonce       TEXT NOT NULL,
    ciphertext  TEXT NOT NULL,
    created_at  TEXT NOT NULL
);

CREATE TABLE projection_checkpoints
(
    name            TEXT PRIMARY KEY,
    tx_id           BIGINT NOT NULL DEFAULT 0,
    global_position BIGINT NOT NULL DEFAULT 0,
    updated_at      TEXT
);

CREATE TABLE payments_view
(
    payment_id         TEXT PRIMARY KEY,
    shop_id            TEXT   NOT NULL,
    mode               TEXT   NOT NULL,
    order_reference    TEXT   NOT NULL,
    status             TEXT   NOT NULL,
    currency           TEXT   NOT NULL,
    amount_milli       BIGINT NOT NULL,
    authorised_milli   BIGINT NOT NULL,
    captured_milli     BIGINT NOT NULL DEFAULT 0,
    refunded_milli     BIGINT NOT NULL DEFAULT 0,
    channel            TEXT   NOT NULL,
    capture_mode       TEXT   NOT NULL,
    capture_date       TEXT   NOT NULL,
    card_brand         TEXT   NOT NULL,
    card_networks      TEXT   NOT NULL,
    card_bin           TEXT   NOT NULL,
    card_last_four     TEXT   NOT NULL,
    card_expiry_month  BIGINT NOT NULL,
    card_expiry_year   BIGINT NOT NULL,
    card_holder_name   TEXT,
    buyer_email        TEXT,
    buyer_ip           TEXT,
    authorisation_code TEXT,
    refusal_code       TEXT,
    refusal_message    TEXT,
    remittance_id      TEXT,
    duplicated_from    TEXT,
    created_at         TEXT   NOT NULL,
    updated_at         TEXT   NOT NULL,
    last_sequence      BIGINT NOT NULL
);
-- Newest first per shop and mode, keyset on (created_at, payment_id).
CREATE INDEX payments_view_listing ON payments_view (shop_id, mode, created_at, payment_id);
CREATE INDEX payments_view_due ON payments_view (shop_id, mode, status, capture_date);
CREATE INDEX payments_view_order_reference ON payments_view (shop_id, mode, order_reference);
CREATE INDEX payments_view_remittance ON payments_view (remittance_id);

-- One row per money movement, for cash-management totals (cashSummary).
CREATE TABLE cash_movements
(
    global_position BIGINT NOT NULL,
    payment_id      TEXT   NOT NULL,
    shop_id         TEXT   NOT NULL,
    mode            TEXT   NOT NULL,
    business_date   TEXT   NOT NULL,
    currency        TEXT   NOT NULL,
    channel         TEXT   NOT NULL,
    kind            TEXT   NOT NULL,
    amount_milli    BIGINT NOT NULL,
    PRIMARY KEY (global_position, kind)
);
CREATE INDEX cash_movements_summary ON cash_movements (shop_id, mode, business_date);

CREATE TABLE remittances_view
(
    remittance_id TEXT PRIMARY KEY,
    shop_id       TEXT   NOT NULL,
    mode          TEXT   NOT NULL,
    currency      TEXT   NOT NULL,
    business_date TEXT   NOT NULL,
    payment_count BIGINT NOT NULL,
    total_milli   BIGINT NOT NULL,
    bank_status   TEXT   NOT NULL,
    created_at    TEXT   NOT NULL
);
CREATE INDEX remittances_view_listing ON remittances_view (shop_id, mode, created_at, remittance_id);

CREATE TABLE merchants_view
(
    merchant_id TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    created_at  TEXT NOT NULL
);
CREATE TABLE shops_view
(
    shop_id     TEXT PRIMARY KEY,
    merchant_id TEXT NOT NULL,
    name        TEXT NOT NULL,
    created_at  TEXT NOT NULL
);
CREATE TABLE api_keys_view
(
    key_hash    TEXT PRIMARY KEY,
    key_id      TEXT NOT NULL,
    key_prefix  TEXT NOT NULL,
    shop_id     TEXT NOT NULL,
    merchant_id TEXT NOT NULL,
    mode        TEXT NOT NULL,
    created_at  TEXT NOT NULL
);
CREATE TABLE users_view
(
    user_id       TEXT PRIMARY KEY,
    merchant_id   TEXT NOT NULL,
    email         TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    role          TEXT NOT NULL,
    created_at    TEXT NOT NULL
);
-- Not UNIQUE: a view must accept every event the log holds. Global uniqueness of
-- e-mails is checked before a user is created (`caisse init`).
CREATE INDEX users_view_email ON users_view (email);
