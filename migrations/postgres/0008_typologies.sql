-- Typologies (issue 3): what makes a payment due (TY-6 at shipping, TY-7 at
-- delivery) and the merchant's declarations, and the payment plan an instalment
-- belongs to (TY-1, TY-2, TY-5).
ALTER TABLE payments_view ADD COLUMN capture_trigger TEXT NOT NULL DEFAULT 'DATE';
-- PAY_AT_ORDER, DEFERRED, AT_SHIPPING, AT_DELIVERY, PAY_IN_3, PAY_IN_N, DEPOSIT_AND_BALANCE.
ALTER TABLE payments_view ADD COLUMN typology TEXT NOT NULL DEFAULT 'PAY_AT_ORDER';
ALTER TABLE payments_view ADD COLUMN shipped_at TEXT;
ALTER TABLE payments_view ADD COLUMN carrier TEXT;
ALTER TABLE payments_view ADD COLUMN tracking_number TEXT;
ALTER TABLE payments_view ADD COLUMN delivered_at TEXT;
ALTER TABLE payments_view ADD COLUMN plan_id TEXT;
ALTER TABLE payments_view ADD COLUMN instalment_number BIGINT;
CREATE INDEX payments_view_plan ON payments_view (plan_id);

-- The owner of each payment plan, for the schedule of its instalments.
CREATE TABLE schedule_plans
(
    plan_id TEXT PRIMARY KEY,
    shop_id TEXT NOT NULL,
    mode    TEXT NOT NULL
);

-- Payment plans (TY-1, TY-2, TY-5) and their instalments, for `paymentPlan`.
CREATE TABLE plans_view
(
    plan_id         TEXT PRIMARY KEY,
    shop_id         TEXT   NOT NULL,
    mode            TEXT   NOT NULL,
    kind            TEXT   NOT NULL,
    order_reference TEXT   NOT NULL,
    currency        TEXT   NOT NULL,
    total_milli     BIGINT NOT NULL,
    status          TEXT   NOT NULL,
    created_at      TEXT   NOT NULL,
    updated_at      TEXT   NOT NULL
);
CREATE INDEX plans_view_listing ON plans_view (shop_id, mode, created_at);

CREATE TABLE plan_instalments_view
(
    plan_id             TEXT   NOT NULL,
    instalment_number   BIGINT NOT NULL,
    amount_milli        BIGINT NOT NULL,
    -- NULL while due on the merchant's call.
    due_date            TEXT,
    -- SCHEDULED, RETRYING, PAID or FAILED.
    status              TEXT   NOT NULL,
    attempts            BIGINT NOT NULL,
    -- The payment of the latest attempt.
    payment_id          TEXT,
    last_refusal_code   TEXT,
    PRIMARY KEY (plan_id, instalment_number)
);
