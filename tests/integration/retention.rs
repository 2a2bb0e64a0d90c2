//! Retention of the online views (CM-12): old payments leave `payments` and `cashSummary`, `payment(id)` still answers from the log with `archived: true`, a late refund of an archived payment works without resurrecting its row, the audit stays clean, a rebuild gives the same views, and a second run the same day appends nothing.

use caisse_application::ports::Clock;
use caisse_application::retention::RetentionOutcome;
use caisse_domain::retention::VIEW_RETENTION_ID;
use caisse_infrastructure::Db;
use caisse_projections::audit;
use caisse_tests::{data, error_code, payment_input, test_start, Backend, TestApp};
use chrono::{Months, NaiveDate};
use serde_json::{json, Value};

/// The aggregate type string, part of the log's contract.
const RETENTION_TYPE: &str = "ViewRetention";

const PAYMENT: &str = "query($id: ID!) { payment(id: $id) {
    id status archived amount capturedAmount refundedAmount refundableAmount remittanceId
    card { lastFour } history { type sequence amount }
} }";

const PAYMENTS: &str = "{ payments(first: 200) { edges { node { id archived } } } }";

const REFUND: &str = "mutation($id: ID!, $amount: String!) {
    refundPayment(id: $id, amount: $amount) { id status archived refundedAmount }
}";

const CASH_SUMMARY: &str = "query($shop: ID!, $from: String!, $to: String!) {
    cashSummary(shopId: $shop, from: $from, to: $to) {
        date authorised { count amount } captured { count amount } refunded { count amount }
        cancelled { count amount }
    }
}";

fn date(year: i32, month: u32, day: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(year, month, day).expect("valid date")
}

fn id_of(payment: &Value) -> String {
    payment["id"].as_str().expect("payment id").to_string()
}

async fn read_payment(app: &TestApp, id: &str) -> Value {
    let response = app.graphql(PAYMENT, json!({ "id": id })).await;
    data(&response)["payment"].clone()
}

async fn listed_ids(app: &TestApp) -> Vec<String> {
    let response = app.graphql(PAYMENTS, json!({})).await;
    data(&response)["payments"]["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .map(|edge| {
            assert_eq!(edge["node"]["archived"], false, "{edge}");
            id_of(&edge["node"])
        })
        .collect()
}

async fn cash_summary(app: &TestApp, from: &str, to: &str) -> Vec<Value> {
    let response = app
        .graphql(
            CASH_SUMMARY,
            json!({ "shop": app.shop_id, "from": from, "to": to }),
        )
        .await;
    data(&response)["cashSummary"]
        .as_array()
        .expect("cash summary")
        .clone()
}

fn history_types(payment: &Value) -> Vec<String> {
    payment["history"]
        .as_array()
        .expect("history")
        .iter()
        .map(|event| event["type"].as_str().expect("type").to_string())
        .collect()
}

/// Every row of the payments projection's tables, in a stable order.
async fn payments_views(db: &Db) -> Vec<Vec<(String, Option<String>)>> {
    let mut rows = Vec::new();
    for table in ["payments_view", "cash_movements", "archived_payments"] {
        let sql = format!("SELECT * FROM {table} ORDER BY 1, 2");
        for row in db.fetch_all(&sql, &[]).await.expect("read view") {
            let mut normalized = row.normalized();
            normalized.insert(0, ("table".to_string(), Some(table.to_string())));
            rows.push(normalized);
        }
    }
    rows
}

async fn retention_events(app: &TestApp) -> usize {
    app.state
        .log
        .aggregate_events(RETENTION_TYPE, VIEW_RETENTION_ID)
        .await
        .expect("retention events")
        .len()
}

fn assert_audit_clean(report: &audit::AuditReport) {
    assert!(
        report.is_clean(),
        "unexpected audit findings: {:#?}",
        report.findings
    );
}

async fn old_payments_leave_the_online_views_and_stay_readable_from_the_log(app: TestApp) {
    // 2026-03-02: a captured payment and a cancelled one.
    let old_captured = app.captured_payment("100.00").await;
    let old_cancelled = id_of(
        &app.create_payment(payment_input("20.00", "RETENTION-OLD-CANCELLED"))
            .await,
    );
    let response = app
        .graphql(
            "mutation($id: ID!) { cancelPayment(id: $id) { status } }",
            json!({ "id": old_cancelled }),
        )
        .await;
    assert_eq!(data(&response)["cancelPayment"]["status"], "CANCELLED");
    let old_remittance = read_payment(&app, &old_captured).await["remittanceId"].clone();

    // Sixteen months later, 2027-07-02: a recent payment.
    let later = test_start()
        .checked_add_months(Months::new(16))
        .expect("valid instant");
    app.clock.set(later);
    let recent = id_of(
        &app.create_payment(payment_input("42.00", "RETENTION-RECENT"))
            .await,
    );
    let mut listed = listed_ids(&app).await;
    listed.sort();
    let mut all = vec![old_captured.clone(), old_cancelled.clone(), recent.clone()];
    all.sort();
    assert_eq!(listed, all, "before the retention, every payment is online");

    // The operator command's code path, as `caisse retention run` runs it.
    let report = caisse_api::cli::retention_run(&app.state, "cli:retention")
        .await
        .expect("retention runs");
    assert!(
        report.contains("trimmed as of 2026-04-02 (15 months)"),
        "{report}"
    );
    // Two payments; their movements: two authorisations, a capture, a cancellation.
    assert!(
        report.contains("2 payments archived") && report.contains("4 cash movements dropped"),
        "{report}"
    );
    assert_eq!(retention_events(&app).await, 1);
    let events = app
        .state
        .log
        .aggregate_events(RETENTION_TYPE, VIEW_RETENTION_ID)
        .await
        .expect("retention events");
    assert_eq!(events[0].event_type, "OnlineViewsTrimmed");
    assert_eq!(
        events[0].payload["OnlineViewsTrimmed"]["created_before"],
        "2026-04-02"
    );
    assert_eq!(events[0].metadata["actor"], "cli:retention");

    // `payments` lists only the recent one.
    assert_eq!(listed_ids(&app).await, vec![recent.clone()]);
    let response = app
        .graphql(
            "query($filter: PaymentFilterInput) { payments(filter: $filter) { edges { node { id } } } }",
            json!({ "filter": { "createdTo": "2026-03-31" } }),
        )
        .await;
    assert_eq!(
        data(&response)["payments"]["edges"],
        json!([]),
        "no filter brings archived payments back into the list"
    );

    // `payment(id)` of an old one answers from the log.
    let captured = read_payment(&app, &old_captured).await;
    assert_eq!(captured["id"], old_captured.as_str());
    assert_eq!(captured["archived"], true);
    assert_eq!(captured["status"], "CAPTURED");
    assert_eq!(captured["amount"], "100.00");
    assert_eq!(captured["capturedAmount"], "100.00");
    assert_eq!(captured["refundedAmount"], "0.00");
    assert_eq!(captured["refundableAmount"], "100.00");
    assert_eq!(captured["remittanceId"], old_remittance);
    assert_eq!(captured["card"]["lastFour"], "0006");
    assert_eq!(
        history_types(&captured),
        vec!["PaymentAuthorised", "PaymentCaptured"]
    );
    let cancelled = read_payment(&app, &old_cancelled).await;
    assert_eq!(cancelled["archived"], true);
    assert_eq!(cancelled["status"], "CANCELLED");
    assert_eq!(cancelled["amount"], "20.00");
    assert_eq!(
        history_types(&cancelled),
        vec!["PaymentAuthorised", "PaymentCancelled"]
    );
    assert_eq!(read_payment(&app, &recent).await["archived"], false);

    // Outside the caller's scope it is still not found: the live key of the same
    // shop, and another merchant.
    let query_as = |key: String| {
        let app = &app;
        let id = old_captured.clone();
        async move { app.graphql_as(&key, PAYMENT, json!({ "id": id })).await }
    };
    assert_eq!(
        error_code(&query_as(app.live_key.clone()).await),
        "PAYMENT_NOT_FOUND"
    );
    let other = app.other_merchant().await;
    assert_eq!(
        error_code(&query_as(other.test_key.clone()).await),
        "PAYMENT_NOT_FOUND"
    );

    // The cash summary of the old day is gone; today's has the recent payment.
    assert_eq!(
        cash_summary(&app, "2026-03-01", "2026-04-30").await,
        Vec::<Value>::new()
    );
    let today = cash_summary(&app, "2027-07-02", "2027-07-02").await;
    assert_eq!(today.len(), 1, "{today:?}");
    assert_eq!(
        today[0]["authorised"],
        json!({ "count": 1, "amount": "42.00" })
    );

    // The old remittance stays listed (remittances_view is not trimmed); the
    // payments it lists are those still online.
    let response = app
        .graphql(
            "query($id: ID!) { remittance(id: $id) { paymentCount total payments { id } } }",
            json!({ "id": old_remittance }),
        )
        .await;
    assert_eq!(
        data(&response)["remittance"],
        json!({ "paymentCount": 1, "total": "100.00", "payments": [] })
    );

    // A refund of the old captured payment still works; its row stays archived,
    // and today's cash summary records the refund.
    let response = app
        .graphql(REFUND, json!({ "id": old_captured, "amount": "30.00" }))
        .await;
    let refund = &data(&response)["refundPayment"];
    assert_eq!(refund["status"], "PARTIALLY_REFUNDED");
    assert_eq!(refund["refundedAmount"], "30.00");
    assert_eq!(refund["archived"], true);
    assert_eq!(listed_ids(&app).await, vec![recent.clone()]);
    let refunded = read_payment(&app, &old_captured).await;
    assert_eq!(refunded["archived"], true);
    assert_eq!(refunded["status"], "PARTIALLY_REFUNDED");
    assert_eq!(refunded["refundedAmount"], "30.00");
    assert_eq!(refunded["refundableAmount"], "70.00");
    assert_eq!(
        history_types(&refunded),
        vec!["PaymentAuthorised", "PaymentCaptured", "PaymentRefunded"]
    );
    let today = cash_summary(&app, "2027-07-02", "2027-07-02").await;
    assert_eq!(today.len(), 1, "{today:?}");
    assert_eq!(
        today[0]["refunded"],
        json!({ "count": 1, "amount": "30.00" })
    );
    assert_eq!(
        today[0]["authorised"],
        json!({ "count": 1, "amount": "42.00" })
    );
    let online = app
        .state
        .db()
        .fetch_all(
            "SELECT payment_id FROM payments_view WHERE payment_id = $1",
            &[old_captured.as_str().into()],
        )
        .await
        .expect("read payments_view");
    assert!(online.is_empty(), "the refund resurrected the archived row");

    // The log still gives every event of the old payment to the `events` query.
    let response = app
        .graphql(
            "{ events(first: 500) { events { aggregateId type } } }",
            json!({}),
        )
        .await;
    let types: Vec<&str> = data(&response)["events"]["events"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|event| event["aggregateId"] == old_captured.as_str())
        .map(|event| event["type"].as_str().expect("type"))
        .collect();
    assert_eq!(
        types,
        vec!["PaymentAuthorised", "PaymentCaptured", "PaymentRefunded"]
    );

    // The audit replays the trim at its place in the log: the views equal it.
    assert_audit_clean(&audit::verify(app.state.db()).await.expect("audit runs"));

    // `projections rebuild all` gives the same views.
    let before = payments_views(app.state.db()).await;
    assert!(
        before
            .iter()
            .any(|row| row.contains(&("payment_id".to_string(), Some(old_cancelled.clone())))),
        "archived_payments keeps the cancelled payment"
    );
    for name in app.state.projectors.names() {
        app.state
            .projectors
            .get(name)
            .expect("projection")
            .rebuild()
            .await
            .expect("rebuild");
    }
    assert_eq!(payments_views(app.state.db()).await, before);
    assert_eq!(listed_ids(&app).await, vec![recent.clone()]);
    assert_eq!(read_payment(&app, &old_captured).await, refunded);
    assert_audit_clean(&audit::verify(app.state.db()).await.expect("audit runs"));

    // A second run the same day appends nothing and changes nothing.
    let again = caisse_api::cli::retention_run(&app.state, "cli:retention")
        .await
        .expect("retention runs again");
    assert!(
        again.contains("already trimmed as of 2026-04-02") && again.contains("nothing to do"),
        "{again}"
    );
    let outcome = app
        .state
        .retention
        .run(app.clock.now())
        .await
        .expect("the service runs");
    assert_eq!(
        outcome,
        RetentionOutcome {
            created_before: date(2026, 4, 2),
            retention_months: 15,
            trimmed: false,
            trimmed_before: Some(date(2026, 4, 2)),
        }
    );
    assert_eq!(retention_events(&app).await, 1);
    assert_eq!(payments_views(app.state.db()).await, before);
}

caisse_tests::both_backends!(
    old_payments_leave_the_online_views_and_stay_readable_from_the_log,
    super::old_payments_leave_the_online_views_and_stay_readable_from_the_log
);

/// `retention_months` from the configuration sets the cutoff; each later day
/// trims one more day, and only what is older than the cutoff leaves.
async fn the_configured_retention_sets_the_cutoff(backend: Backend) {
    let Some(app) =
        caisse_tests::spawn_app_with(backend, |config| config.retention_months = 1).await
    else {
        return;
    };
    // 2026-03-02 and 2026-03-03.
    let first = id_of(
        &app.create_payment(payment_input("10.00", "RETENTION-1"))
            .await,
    );
    app.clock.advance(chrono::Duration::days(1));
    let second = id_of(
        &app.create_payment(payment_input("11.00", "RETENTION-2"))
            .await,
    );

    // 2026-04-03: one month keeps 2026-03-03 onwards.
    app.clock.advance(chrono::Duration::days(31));
    let outcome = app
        .state
        .retention
        .run(app.clock.now())
        .await
        .expect("the service runs");
    assert_eq!(outcome.created_before, date(2026, 3, 3));
    assert_eq!(outcome.retention_months, 1);
    assert!(outcome.trimmed);
    assert_eq!(listed_ids(&app).await, vec![second.clone()]);
    assert_eq!(read_payment(&app, &first).await["archived"], true);
    assert_eq!(read_payment(&app, &second).await["archived"], false);

    // The next day, the next day's payments leave too.
    app.clock.advance(chrono::Duration::days(1));
    let outcome = app
        .state
        .retention
        .run(app.clock.now())
        .await
        .expect("the service runs");
    assert_eq!(outcome.created_before, date(2026, 3, 4));
    assert!(outcome.trimmed);
    assert_eq!(listed_ids(&app).await, Vec::<String>::new());
    assert_eq!(read_payment(&app, &second).await["archived"], true);
    assert_eq!(retention_events(&app).await, 2);
    assert_audit_clean(&audit::verify(app.state.db()).await.expect("audit runs"));
}

mod the_configured_retention_sets_the_cutoff {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        super::the_configured_retention_sets_the_cutoff(caisse_tests::Backend::Sqlite).await;
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        super::the_configured_retention_sets_the_cutoff(caisse_tests::Backend::Postgres).await;
    }
}
