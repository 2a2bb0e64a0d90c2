-- The scheduler's to-do list (issue 3): work due later, derived from events by the
-- `schedule` projection, so nothing is lost across restarts. An item leaves the
-- list when the event that does the work is projected.
CREATE TABLE schedule_items
(
    item_id         TEXT PRIMARY KEY,
    -- EXPIRE_AUTHORISATION or AUTHORISE_DEFERRED (subject: a payment),
    -- CHARGE_INSTALMENT (subject: a payment plan) or REMITTANCE_CUT_OFF (subject: a shop).
    kind            TEXT   NOT NULL,
    subject_id      TEXT   NOT NULL,
    shop_id         TEXT   NOT NULL,
    mode            TEXT   NOT NULL,
    -- UTC instant from which the item is due.
    due_at          TEXT   NOT NULL,
    -- The business day of a cut-off; NULL for other kinds.
    business_date   TEXT,
    -- The event that scheduled it.
    global_position BIGINT NOT NULL
);
CREATE INDEX schedule_items_due ON schedule_items (due_at, item_id);

-- Each shop's remittance cut-off setting per mode, to schedule the cut-off after each one.
CREATE TABLE shop_cut_offs
(
    shop_id      TEXT NOT NULL,
    mode         TEXT NOT NULL,
    cut_off_time TEXT NOT NULL,
    time_zone    TEXT NOT NULL,
    PRIMARY KEY (shop_id, mode)
);

-- Payments waiting for their deferred authorisation (TY-4), with what the
-- schedule needs once it is granted (a manual-capture one then lapses unless validated).
CREATE TABLE schedule_waiting_payments
(
    payment_id    TEXT PRIMARY KEY,
    shop_id       TEXT   NOT NULL,
    mode          TEXT   NOT NULL,
    capture_mode  TEXT   NOT NULL,
    validity_days BIGINT NOT NULL
);
