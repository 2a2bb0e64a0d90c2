//! Payment plans end to end (TY-1 pay in 3, TY-2 pay in n, TY-5 deposit and
//! balance): instalments charged on their days by the scheduler with the card on
//! file, each its own payment, refused ones retried then failed — time moved by
//! the injected clock.

use caisse_tests::{both_backends, data, error_code, TestApp};
use chrono::{TimeZone, Utc};
use serde_json::{json, Value};

const PLAN_FIELDS: &str = "id kind status total currency paidCount
    instalments { number amount dueDate status attempts lastRefusalCode
                  payment { id status amount planId instalmentNumber capturedAmount } }";

const ACCEPTED: &str = "4970100000000006";
/// Accepted with the buyer present, insufficient funds for later charges.
const FUNDS_GONE_LATER: &str = "4970100000000071";
const DECLINED: &str = "4970100000000014";

fn plan_input(kind: &str, amount: &str, reference: &str, card: &str) -> Value {
    json!({
        "kind": kind,
        "amount": amount,
        "currency": "EUR",
        "orderReference": reference,
        "card": { "number": card, "expiryMonth": 12, "expiryYear": 2030, "cvv": "123" },
        "buyerEmail": "buyer@example.com"
    })
}

async fn create_plan(app: &TestApp, input: Value) -> Value {
    let response = app
        .graphql(
            &format!("mutation($input: CreatePaymentPlanInput!) {{ createPaymentPlan(input: $input) {{ {PLAN_FIELDS} }} }}"),
            json!({ "input": input }),
        )
        .await;
    data(&response)["createPaymentPlan"].clone()
}

async fn plan(app: &TestApp, id: &Value) -> Value {
    let response = app
        .graphql(
            &format!("query($id: ID!) {{ paymentPlan(id: $id) {{ {PLAN_FIELDS} }} }}"),
            json!({ "id": id }),
        )
        .await;
    data(&response)["paymentPlan"].clone()
}

fn statuses(plan: &Value) -> Vec<String> {
    plan["instalments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["status"].as_str().unwrap().to_string())
        .collect()
}

/// The scheduler at 00:30 UTC on a day of 2026, then after that day's cut-off.
async fn live_through(app: &TestApp, month: u32, day: u32) {
    app.clock
        .set(Utc.with_ymd_and_hms(2026, month, day, 0, 30, 0).unwrap());
    app.run_scheduler().await;
    app.clock
        .set(Utc.with_ymd_and_hms(2026, month, day, 21, 30, 0).unwrap());
    app.run_scheduler().await;
}

async fn pay_in_3_charges_now_then_at_30_and_60_days(app: TestApp) {
    let created = create_plan(
        &app,
        plan_input("PAY_IN_3", "100.00", "ORD-PAY-IN-3", ACCEPTED),
    )
    .await;
    assert_eq!(created["kind"], "PAY_IN_3");
    assert_eq!(created["status"], "ACTIVE");
    let amounts: Vec<&Value> = created["instalments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| &i["amount"])
        .collect();
    // The remainder cent goes on the first instalment.
    assert_eq!(amounts, [&json!("33.34"), &json!("33.33"), &json!("33.33")]);
    let due: Vec<&Value> = created["instalments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| &i["dueDate"])
        .collect();
    assert_eq!(
        due,
        [
            &json!("2026-03-02"),
            &json!("2026-04-01"),
            &json!("2026-05-01")
        ]
    );
    assert_eq!(statuses(&created), ["PAID", "SCHEDULED", "SCHEDULED"]);
    let first = &created["instalments"][0]["payment"];
    assert_eq!(first["status"], "AUTHORISED");
    assert_eq!(first["amount"], "33.34");
    assert_eq!(first["planId"], created["id"]);
    assert_eq!(first["instalmentNumber"], 1);

    live_through(&app, 3, 31).await;
    let before = plan(&app, &created["id"]).await;
    assert_eq!(statuses(&before), ["PAID", "SCHEDULED", "SCHEDULED"]);
    assert_eq!(
        before["instalments"][0]["payment"]["capturedAmount"],
        "33.34"
    );

    live_through(&app, 4, 1).await;
    let second = plan(&app, &created["id"]).await;
    assert_eq!(statuses(&second), ["PAID", "PAID", "SCHEDULED"]);
    assert_eq!(second["instalments"][1]["payment"]["status"], "CAPTURED");

    live_through(&app, 5, 1).await;
    let done = plan(&app, &created["id"]).await;
    assert_eq!(done["status"], "COMPLETED");
    assert_eq!(done["paidCount"], 3);
    let captured: Vec<&Value> = done["instalments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| &i["payment"]["capturedAmount"])
        .collect();
    assert_eq!(
        captured,
        [&json!("33.34"), &json!("33.33"), &json!("33.33")]
    );

    // The auditor's replay agrees with every view, the plans' and schedule's
    // included, and a rebuild gives the same plan.
    let report = caisse_projections::audit::verify(app.state.db())
        .await
        .expect("audit runs");
    assert!(report.is_clean(), "{:?}", report.findings);
    for name in ["plans", "schedule"] {
        app.state
            .projectors
            .get(name)
            .unwrap()
            .rebuild()
            .await
            .unwrap();
    }
    assert_eq!(plan(&app, &created["id"]).await, done);
}

async fn a_refused_instalment_is_retried_then_failed(app: TestApp) {
    let mut input = plan_input("PAY_IN_N", "100.00", "ORD-PAY-IN-N", FUNDS_GONE_LATER);
    input["instalments"] = json!([
        { "amount": "40.00", "dueDate": "2026-03-02" },
        { "amount": "60.00", "dueDate": "2026-03-12" }
    ]);
    let created = create_plan(&app, input).await;
    assert_eq!(statuses(&created), ["PAID", "SCHEDULED"]);

    // Refused on the 12th, retried 3 days later twice (3 attempts by default).
    live_through(&app, 3, 12).await;
    let retrying = plan(&app, &created["id"]).await;
    assert_eq!(statuses(&retrying), ["PAID", "RETRYING"]);
    assert_eq!(retrying["instalments"][1]["attempts"], 1);
    assert_eq!(retrying["instalments"][1]["dueDate"], "2026-03-15");
    assert_eq!(retrying["instalments"][1]["lastRefusalCode"], "51");
    assert_eq!(retrying["instalments"][1]["payment"]["status"], "REFUSED");

    live_through(&app, 3, 15).await;
    assert_eq!(
        plan(&app, &created["id"]).await["instalments"][1]["attempts"],
        2
    );
    live_through(&app, 3, 18).await;
    let failed = plan(&app, &created["id"]).await;
    assert_eq!(statuses(&failed), ["PAID", "FAILED"]);
    assert_eq!(failed["instalments"][1]["attempts"], 3);
    assert_eq!(failed["status"], "DEFAULTED");
    // Nothing more is tried afterwards.
    live_through(&app, 3, 25).await;
    assert_eq!(
        plan(&app, &created["id"]).await["instalments"][1]["attempts"],
        3
    );
}

async fn a_deposit_now_and_the_balance_on_its_date_or_on_call(app: TestApp) {
    let mut dated = plan_input(
        "DEPOSIT_AND_BALANCE",
        "100.00",
        "ORD-DEPOSIT-DATED",
        ACCEPTED,
    );
    dated["deposit"] = json!("30.00");
    dated["balanceDate"] = json!("2026-03-20");
    let dated = create_plan(&app, dated).await;
    assert_eq!(statuses(&dated), ["PAID", "SCHEDULED"]);
    assert_eq!(dated["instalments"][1]["amount"], "70.00");

    let mut on_call = plan_input(
        "DEPOSIT_AND_BALANCE",
        "500.00",
        "ORD-DEPOSIT-ON-CALL",
        ACCEPTED,
    );
    on_call["deposit"] = json!("150.00");
    let on_call = create_plan(&app, on_call).await;
    assert_eq!(on_call["instalments"][1]["dueDate"], Value::Null);

    // A dated balance is not called.
    let response = app
        .graphql(
            "mutation($id: ID!) { callPlanBalance(id: $id) { status } }",
            json!({ "id": dated["id"] }),
        )
        .await;
    assert_eq!(error_code(&response), "INSTALMENT_NOT_ON_CALL");

    live_through(&app, 3, 10).await;
    let response = app
        .graphql(
            &format!("mutation($id: ID!) {{ callPlanBalance(id: $id) {{ {PLAN_FIELDS} }} }}"),
            json!({ "id": on_call["id"] }),
        )
        .await;
    let called = &data(&response)["callPlanBalance"];
    assert_eq!(called["status"], "COMPLETED");
    assert_eq!(called["instalments"][1]["dueDate"], "2026-03-10");
    assert_eq!(called["instalments"][1]["payment"]["amount"], "350.00");

    assert_eq!(
        statuses(&plan(&app, &dated["id"]).await),
        ["PAID", "SCHEDULED"]
    );
    live_through(&app, 3, 20).await;
    let paid = plan(&app, &dated["id"]).await;
    assert_eq!(paid["status"], "COMPLETED");
    assert_eq!(paid["instalments"][1]["payment"]["capturedAmount"], "70.00");
}

async fn bad_plans_are_refused_with_their_field_and_change_nothing(app: TestApp) {
    let mut wrong_sum = plan_input("PAY_IN_N", "100.00", "ORD-BAD-SUM", ACCEPTED);
    wrong_sum["instalments"] = json!([
        { "amount": "40.00", "dueDate": "2026-03-02" },
        { "amount": "50.00", "dueDate": "2026-03-12" }
    ]);
    let mut later_first = plan_input("PAY_IN_N", "100.00", "ORD-LATE-FIRST", ACCEPTED);
    later_first["instalments"] = json!([{ "amount": "100.00", "dueDate": "2026-03-05" }]);
    let mut big_deposit = plan_input("DEPOSIT_AND_BALANCE", "100.00", "ORD-BIG-DEPOSIT", ACCEPTED);
    big_deposit["deposit"] = json!("100.00");
    let mut bad_date = plan_input("PAY_IN_N", "100.00", "ORD-BAD-DATE", ACCEPTED);
    bad_date["instalments"] = json!([{ "amount": "100.00", "dueDate": "02/03/2026" }]);
    for (input, code, field) in [
        (wrong_sum, "INVALID_INSTALMENTS", "instalments"),
        (later_first, "INVALID_INSTALMENTS", "instalments"),
        (
            plan_input("PAY_IN_3", "0.02", "ORD-TOO-SMALL", ACCEPTED),
            "INVALID_INSTALMENTS",
            "instalments",
        ),
        (big_deposit, "DEPOSIT_EXCEEDS_AMOUNT", "deposit"),
        (bad_date, "INVALID_DATE", "instalments.dueDate"),
        (
            plan_input("PAY_IN_3", "100.001", "ORD-DECIMALS", ACCEPTED),
            "AMOUNT_TOO_MANY_DECIMALS",
            "amount",
        ),
    ] {
        let response = app
            .graphql(
                "mutation($input: CreatePaymentPlanInput!) { createPaymentPlan(input: $input) { id } }",
                json!({ "input": input }),
            )
            .await;
        assert_eq!(error_code(&response), code, "{response}");
        assert_eq!(
            response["errors"][0]["extensions"]["field"], field,
            "{response}"
        );
    }
    let plans = app
        .state
        .db()
        .fetch_optional(
            "SELECT COUNT(*) AS n FROM events WHERE aggregate_type = 'PaymentPlan'",
            &[],
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(plans.int("n"), 0);

    // A first instalment refused with the buyer present fails the plan at once.
    let refused = create_plan(
        &app,
        plan_input("PAY_IN_3", "90.00", "ORD-REFUSED-FIRST", DECLINED),
    )
    .await;
    assert_eq!(refused["status"], "REFUSED");
    assert_eq!(statuses(&refused), ["FAILED", "SCHEDULED", "SCHEDULED"]);
    assert_eq!(refused["instalments"][0]["lastRefusalCode"], "05");
    // Nothing more is charged on it, ever.
    live_through(&app, 5, 2).await;
    let later = plan(&app, &refused["id"]).await;
    assert_eq!(later["status"], "REFUSED");
    assert_eq!(later["instalments"][1]["attempts"], 0);
    assert_eq!(later["instalments"][2]["attempts"], 0);

    // Another merchant sees nothing of it.
    let other = app.other_merchant().await;
    let response = app
        .graphql_as(
            &other.test_key,
            "query($id: ID!) { paymentPlan(id: $id) { id } }",
            json!({ "id": refused["id"] }),
        )
        .await;
    assert_eq!(error_code(&response), "PLAN_NOT_FOUND");
}

async fn repeating_a_plan_with_its_idempotency_key_charges_once(app: TestApp) {
    let query = "mutation($input: CreatePaymentPlanInput!) { createPaymentPlan(input: $input) { id instalments { status paymentId } } }";
    let input = plan_input("PAY_IN_3", "90.00", "ORD-PLAN-KEY", ACCEPTED);
    let first = app
        .graphql_with(
            &app.test_key,
            Some("plan-key-1"),
            query,
            json!({ "input": input }),
        )
        .await;
    let again = app
        .graphql_with(
            &app.test_key,
            Some("plan-key-1"),
            query,
            json!({ "input": input }),
        )
        .await;
    assert_eq!(
        data(&first)["createPaymentPlan"],
        data(&again)["createPaymentPlan"]
    );
    let count = |sql: &'static str| {
        let app = &app;
        async move {
            app.state
                .db()
                .fetch_optional(sql, &[])
                .await
                .unwrap()
                .unwrap()
                .int("n")
        }
    };
    assert_eq!(
        count("SELECT COUNT(*) AS n FROM events WHERE event_type = 'PlanCreated'").await,
        1
    );
    assert_eq!(count("SELECT COUNT(*) AS n FROM payments_view").await, 1);
    // The same key for another request is refused and changes nothing.
    let other = plan_input("PAY_IN_3", "91.00", "ORD-PLAN-KEY", ACCEPTED);
    let reused = app
        .graphql_with(
            &app.test_key,
            Some("plan-key-1"),
            query,
            json!({ "input": other }),
        )
        .await;
    assert_eq!(error_code(&reused), "IDEMPOTENCY_KEY_REUSED");
    assert_eq!(
        count("SELECT COUNT(*) AS n FROM events WHERE event_type = 'PlanCreated'").await,
        1
    );
}

both_backends!(
    plan_idempotency,
    super::repeating_a_plan_with_its_idempotency_key_charges_once
);
both_backends!(pay_in_3, super::pay_in_3_charges_now_then_at_30_and_60_days);
both_backends!(
    retried_then_failed,
    super::a_refused_instalment_is_retried_then_failed
);
both_backends!(
    deposit_and_balance,
    super::a_deposit_now_and_the_balance_on_its_date_or_on_call
);
both_backends!(
    bad_plans,
    super::bad_plans_are_refused_with_their_field_and_change_nothing
);

async fn plan_and_cut_off_events_reach_their_shop_s_log_only(app: TestApp) {
    create_plan(
        &app,
        plan_input("PAY_IN_3", "30.00", "ORD-PLAN-LOG", ACCEPTED),
    )
    .await;
    live_through(&app, 3, 2).await;
    let query = "{ events(first: 500) { events { aggregateType type } } }";
    let kinds = |response: &Value| -> Vec<(String, String)> {
        data(response)["events"]["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| {
                (
                    e["aggregateType"].as_str().unwrap().to_string(),
                    e["type"].as_str().unwrap().to_string(),
                )
            })
            .collect()
    };
    let mine = kinds(&app.graphql(query, json!({})).await);
    for (aggregate, event) in [
        ("PaymentPlan", "PlanCreated"),
        ("PaymentPlan", "InstalmentPaid"),
        ("DailyCutOff", "DailyCutOffCompleted"),
        ("Payment", "PaymentCaptured"),
    ] {
        assert!(
            mine.contains(&(aggregate.to_string(), event.to_string())),
            "{aggregate} {event} missing from {mine:?}"
        );
    }
    // The test key sees its mode's cut-off only, another merchant none of them.
    let cut_offs = mine
        .iter()
        .filter(|(aggregate, _)| aggregate == "DailyCutOff")
        .count();
    assert_eq!(cut_offs, 1, "{mine:?}");
    let other = app.other_merchant().await;
    let theirs = kinds(&app.graphql_as(&other.test_key, query, json!({})).await);
    assert!(
        !theirs
            .iter()
            .any(|(aggregate, _)| aggregate == "PaymentPlan" || aggregate == "DailyCutOff"),
        "{theirs:?}"
    );
}

both_backends!(
    plan_log,
    super::plan_and_cut_off_events_reach_their_shop_s_log_only
);
