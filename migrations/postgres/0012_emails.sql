-- E-mail notifications (issue 5, NT-1, NT-2).

-- The `notifications` projection: each shop's merchant e-mail settings.
CREATE TABLE notification_settings_view (
    shop_id            TEXT PRIMARY KEY,
    -- Comma-separated (an address never holds a comma).
    addresses          TEXT NOT NULL,
    -- Comma-separated, sorted; `*` for every type.
    event_types        TEXT NOT NULL,
    shop_display_name  TEXT,
    logo_url           TEXT,
    -- Commit order of the last configuration: a replay of older events (a
    -- rebuild of the outbox) never e-mails the merchant again.
    configured_tx_id    BIGINT NOT NULL,
    configured_position BIGINT NOT NULL,
    updated_at         TEXT NOT NULL
);

-- The e-mail outbox: one e-mail per event, recipient role and address,
-- rendered by the `email_outbox` projection (never emptied by a rebuild: a
-- replay finds its e-mails already there) and sent by the mailer.
CREATE TABLE email_outbox (
    email_id         TEXT PRIMARY KEY,
    -- The event (aggregate and sequence), the role and the address: a replay
    -- inserts nothing twice.
    dedup_key        TEXT NOT NULL UNIQUE,
    shop_id          TEXT NOT NULL,
    mode             TEXT NOT NULL,
    recipient        TEXT NOT NULL,
    -- MERCHANT or BUYER.
    role             TEXT NOT NULL,
    language         TEXT NOT NULL,
    event_type       TEXT NOT NULL,
    subject          TEXT NOT NULL,
    text_body        TEXT NOT NULL,
    html_body        TEXT NOT NULL,
    -- The payment the e-mail is about.
    subject_id       TEXT NOT NULL,
    -- Commit order of the event in the log.
    tx_id            BIGINT NOT NULL,
    global_position  BIGINT NOT NULL,
    -- PENDING, SENT or FAILED (the retry schedule ran out).
    status           TEXT NOT NULL,
    attempts         BIGINT NOT NULL,
    next_attempt_at  TEXT,
    last_error       TEXT,
    created_at       TEXT NOT NULL,
    sent_at          TEXT
);
CREATE INDEX email_outbox_due ON email_outbox (status, next_attempt_at);
CREATE INDEX email_outbox_shop ON email_outbox (shop_id, created_at);
