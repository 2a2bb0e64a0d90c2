-- Webhooks (issue 5, RP-2, RP-3).

-- The signing secrets of webhook endpoints, encrypted with a key derived from
-- the vault key (AES-256-GCM, the endpoint id and version as associated data).
-- Not a view: secrets never enter an event, so a rebuild does not touch them.
CREATE TABLE webhook_secrets (
    endpoint_id  TEXT NOT NULL,
    version      BIGINT NOT NULL,
    key_id       TEXT NOT NULL,
    nonce        TEXT NOT NULL,
    ciphertext   TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    PRIMARY KEY (endpoint_id, version)
);

-- The `webhooks` projection: each endpoint as its events leave it.
CREATE TABLE webhook_endpoints_view (
    endpoint_id                  TEXT PRIMARY KEY,
    shop_id                      TEXT NOT NULL,
    mode                         TEXT NOT NULL,
    url                          TEXT NOT NULL,
    -- Comma-separated, sorted; `*` for every type.
    event_types                  TEXT NOT NULL,
    description                  TEXT,
    -- ACTIVE or DISABLED.
    status                       TEXT NOT NULL,
    disabled_reason              TEXT,
    secret_version               BIGINT NOT NULL,
    -- Commit order of its creation: older events are never sent to it.
    created_tx_id                BIGINT NOT NULL,
    created_position             BIGINT NOT NULL,
    previous_secret_valid_until  TEXT,
    created_at                   TEXT NOT NULL,
    updated_at                   TEXT NOT NULL
);
CREATE INDEX webhook_endpoints_view_shop ON webhook_endpoints_view (shop_id, mode, created_at);

-- The webhook outbox: one delivery per event and subscribed endpoint, written
-- by the `webhook_outbox` projection (never emptied by a rebuild: a replay
-- finds its deliveries already there) and worked through by the sender.
CREATE TABLE webhook_deliveries (
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
    created_at       TEXT NOT NULL,
    UNIQUE (endpoint_id, webhook_id)
);
CREATE INDEX webhook_deliveries_due ON webhook_deliveries (status, next_attempt_at);
CREATE INDEX webhook_deliveries_endpoint ON webhook_deliveries (endpoint_id, created_at);
CREATE INDEX webhook_deliveries_subject ON webhook_deliveries (endpoint_id, subject_id, status);

-- Every attempt of every delivery: status, latency, the start of the answer.
CREATE TABLE webhook_attempts (
    delivery_id      TEXT NOT NULL,
    attempt          BIGINT NOT NULL,
    attempted_at     TEXT NOT NULL,
    status_code      BIGINT,
    latency_ms       BIGINT NOT NULL,
    response_prefix  TEXT,
    error            TEXT,
    PRIMARY KEY (delivery_id, attempt)
);
