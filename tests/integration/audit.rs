//! `audit verify` and `projections rebuild`: a clean ledger verifies clean, tampered views and forged events are reported, rebuilt views are right again, and stored events cannot be changed.

use std::time::Duration;

use caisse_domain::ids::RefundId;
use caisse_domain::payment::PaymentEvent;
use caisse_domain::Money;
use caisse_infrastructure::config::Secret;
use caisse_infrastructure::{Config, Database, Db};
use caisse_projections::audit::{self, AuditReport};
use caisse_projections::Projectors;
use caisse_tests::{data, error_code, payment_input, test_start, Backend, TestApp};
use serde_json::{json, Value};

/// The payments of the lifecycle, by role.
struct Ledger {
    refunded_partly: String,
    refunded_fully: String,
    manual: String,
    cancelled: String,
    deferred: String,
}

async fn mutate(app: &TestApp, query: &str, variables: Value) -> Value {
    let response = app.graphql(query, variables).await;
    data(&response).clone()
}

/// Several payments through every kind of transition, then a remittance.
async fn run_lifecycle(app: &TestApp) -> Ledger {
    let create = |amount: &str, reference: &str| payment_input(amount, reference);
    let refunded_partly = app.create_payment(create("100.00", "AUDIT-1")).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let refunded_fully = app.create_payment(create("50.00", "AUDIT-2")).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut manual_input = create("70.00", "AUDIT-3");
    manual_input["captureMode"] = json!("MANUAL");
    let manual = app.create_payment(manual_input).await;
    assert_eq!(manual["status"], "AUTHORISED_TO_VALIDATE");
    let manual = manual["id"].as_str().unwrap().to_string();
    mutate(
        app,
        "mutation($id: ID!) { validatePayment(id: $id) { id } }",
        json!({ "id": manual }),
    )
    .await;
    let cancelled = app.create_payment(create("20.00", "AUDIT-4")).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    mutate(
        app,
        "mutation($id: ID!) { cancelPayment(id: $id) { id } }",
        json!({ "id": cancelled }),
    )
    .await;
    let modified = app.create_payment(create("40.00", "AUDIT-5")).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    mutate(
        app,
        "mutation($id: ID!) { modifyPayment(id: $id, amount: \"15.00\") { id } }",
        json!({ "id": modified }),
    )
    .await;
    let mut refused_input = create("30.00", "AUDIT-6");
    refused_input["card"]["number"] = json!("4970100000000022");
    assert_eq!(app.create_payment(refused_input).await["status"], "REFUSED");
    let mut deferred_input = create("60.00", "AUDIT-7");
    deferred_input["captureDelayDays"] = json!(3);
    let deferred = app.create_payment(deferred_input).await["id"]
        .as_str()
        .unwrap()
        .to_string();

    let remittances = app.run_remittance().await;
    assert_eq!(remittances[0]["paymentCount"], 4, "{remittances}");
    let refund =
        "mutation($id: ID!, $amount: String!) { refundPayment(id: $id, amount: $amount) { id } }";
    mutate(
        app,
        refund,
        json!({ "id": refunded_partly, "amount": "20.00" }),
    )
    .await;
    mutate(
        app,
        refund,
        json!({ "id": refunded_partly, "amount": "10.00" }),
    )
    .await;
    mutate(
        app,
        refund,
        json!({ "id": refunded_fully, "amount": "50.00" }),
    )
    .await;
    Ledger {
        refunded_partly,
        refunded_fully,
        manual,
        cancelled,
        deferred,
    }
}

async fn refunded_amount(app: &TestApp, payment_id: &str) -> String {
    let response = app
        .graphql(
            "query($id: ID!) { payment(id: $id) { refundedAmount } }",
            json!({ "id": payment_id }),
        )
        .await;
    data(&response)["payment"]["refundedAmount"]
        .as_str()
        .unwrap()
        .to_string()
}

fn assert_clean(report: &AuditReport) {
    assert!(
        report.is_clean(),
        "unexpected audit findings: {:#?}",
        report.findings
    );
    assert!(report.events > 0);
}

async fn a_tampered_view_is_reported_by_audit_and_repaired_by_a_rebuild(app: TestApp) {
    let ledger = run_lifecycle(&app).await;
    let report = audit::verify(app.state.db()).await.expect("audit runs");
    assert_clean(&report);
    // 7 payments, the remittance, and the merchant's own aggregates.
    assert_eq!(report.payments, 7, "{report:?}");
    assert!(report.aggregates > report.payments);
    assert!(report.events >= 7 + 4 + 3 + 3, "{report:?}");
    assert_eq!(
        refunded_amount(&app, &ledger.refunded_partly).await,
        "30.00"
    );

    let changed = app
        .state
        .db()
        .execute(
            "UPDATE payments_view SET refunded_milli = refunded_milli + 1000 WHERE payment_id = $1",
            &[ledger.refunded_partly.as_str().into()],
        )
        .await
        .expect("tamper with the view");
    assert_eq!(changed, 1);
    assert_eq!(
        refunded_amount(&app, &ledger.refunded_partly).await,
        "31.00"
    );
    let report = audit::verify(app.state.db()).await.expect("audit runs");
    assert!(!report.is_clean(), "a tampered view went unnoticed");
    assert!(
        report
            .findings
            .iter()
            .any(|finding| finding.contains("payments_view")
                && finding.contains(&ledger.refunded_partly)),
        "the finding names the view and the row: {:#?}",
        report.findings
    );
    assert!(
        report
            .findings
            .iter()
            .all(|finding| finding.contains("payments_view")),
        "{:#?}",
        report.findings
    );

    let applied = app
        .state
        .projectors
        .get("payments")
        .expect("payments projector")
        .rebuild()
        .await
        .expect("rebuild");
    assert!(
        applied >= report.events,
        "the rebuild replays the whole log ({applied} of {} events)",
        report.events
    );
    assert_clean(&audit::verify(app.state.db()).await.expect("audit runs"));
    assert_eq!(
        refunded_amount(&app, &ledger.refunded_partly).await,
        "30.00"
    );
    assert_eq!(refunded_amount(&app, &ledger.refunded_fully).await, "50.00");
    let response = app
        .graphql(
            "query($a: ID!, $b: ID!, $c: ID!) { a: payment(id: $a) { status } b: payment(id: $b) { status } c: payment(id: $c) { status } }",
            json!({ "a": ledger.manual, "b": ledger.cancelled, "c": ledger.deferred }),
        )
        .await;
    assert_eq!(
        data(&response),
        &json!({ "a": { "status": "CAPTURED" }, "b": { "status": "CANCELLED" }, "c": { "status": "AUTHORISED" } })
    );
}

caisse_tests::both_backends!(
    a_tampered_view_is_reported_by_audit_and_repaired_by_a_rebuild,
    super::a_tampered_view_is_reported_by_audit_and_repaired_by_a_rebuild
);

async fn a_duplicated_payment_reaches_the_views_and_the_audit_stays_clean(app: TestApp) {
    let source = app.captured_payment("80.00").await;
    let response = app
        .graphql(
            "mutation($id: ID!) { duplicatePayment(id: $id, amount: \"5.00\", orderReference: \"AUDIT-DUP\") { id status duplicatedFrom } }",
            json!({ "id": source }),
        )
        .await;
    let duplicate = data(&response)["duplicatePayment"].clone();
    assert_eq!(duplicate["status"], "AUTHORISED");
    assert_eq!(duplicate["duplicatedFrom"], source.as_str());

    // The source's PaymentDuplicated event must be projected like any other.
    let report = audit::verify(app.state.db())
        .await
        .expect("audit runs: every projection applies every event");
    assert_clean(&report);
    let response = app
        .graphql(
            "query($id: ID!, $dup: ID!) { source: payment(id: $id) { status history { type } } copy: payment(id: $dup) { duplicatedFrom amount } }",
            json!({ "id": source, "dup": duplicate["id"] }),
        )
        .await;
    let views = data(&response);
    assert_eq!(views["source"]["status"], "CAPTURED");
    assert_eq!(
        views["source"]["history"]
            .as_array()
            .unwrap()
            .last()
            .unwrap()["type"],
        "PaymentDuplicated"
    );
    assert_eq!(
        views["copy"],
        json!({ "duplicatedFrom": source, "amount": "5.00" })
    );
    let checkpoints = app
        .state
        .db()
        .fetch_all(
            "SELECT name, global_position FROM projection_checkpoints",
            &[],
        )
        .await
        .expect("checkpoints");
    let head = app.state.log.head().await.expect("head");
    for checkpoint in checkpoints {
        assert_eq!(
            checkpoint.int("global_position"),
            head.global_position,
            "projection {} is stuck",
            checkpoint.text("name")
        );
    }
}

caisse_tests::both_backends!(
    a_duplicated_payment_reaches_the_views_and_the_audit_stays_clean,
    super::a_duplicated_payment_reaches_the_views_and_the_audit_stays_clean
);

/// Appends one event behind the application's back (as a bug or an intruder would).
async fn forge(db: &Db, payment_id: &str, sequence: i64, event: &PaymentEvent) {
    let sql = if db.is_postgres() {
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
         VALUES ('Payment', $1, $2, $3, '1', CAST($4 AS json), '{}')"
    } else {
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
         VALUES ('Payment', $1, $2, $3, '1', $4, '{}')"
    };
    let event_type = cqrs_es_event_type(event);
    let payload = serde_json::to_string(event).expect("event serialises");
    db.execute(
        sql,
        &[
            payment_id.into(),
            sequence.into(),
            event_type.into(),
            payload.into(),
        ],
    )
    .await
    .expect("forged append");
}

fn cqrs_es_event_type(event: &PaymentEvent) -> String {
    serde_json::to_value(event)
        .expect("event serialises")
        .as_object()
        .and_then(|o| o.keys().next().cloned())
        .expect("tagged")
}

async fn last_sequence(db: &Db, payment_id: &str) -> i64 {
    db.fetch_optional(
        "SELECT MAX(sequence) AS s FROM events WHERE aggregate_id = $1",
        &[payment_id.into()],
    )
    .await
    .expect("sequence")
    .expect("row")
    .int("s")
}

async fn audit_reports_a_forged_over_refund_and_a_sequence_gap_in_the_log(app: TestApp) {
    let captured = app.captured_payment("100.00").await;
    let authorised = app
        .create_payment(payment_input("40.00", "AUDIT-GAP"))
        .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_clean(&audit::verify(app.state.db()).await.expect("audit runs"));

    let db = app.state.db();
    let over_refund = PaymentEvent::PaymentRefunded {
        refund_id: RefundId::new(),
        amount: Money::parse_positive("150.00", "EUR").unwrap(),
        refunded_total: Money::parse_positive("150.00", "EUR").unwrap(),
        occurred_at: test_start(),
    };
    forge(
        db,
        &captured,
        last_sequence(db, &captured).await + 1,
        &over_refund,
    )
    .await;
    let validated = PaymentEvent::PaymentValidated {
        occurred_at: test_start(),
    };
    forge(
        db,
        &authorised,
        last_sequence(db, &authorised).await + 2,
        &validated,
    )
    .await;

    let report = audit::verify(db).await.expect("audit runs");
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.contains(&captured) && f.contains("exceeds captured")),
        "over-refund not reported: {:#?}",
        report.findings
    );
    assert!(
        report
            .findings
            .iter()
            .any(|f| f.contains(&authorised) && f.contains("gap")),
        "sequence gap not reported: {:#?}",
        report.findings
    );
    assert!(
        report
            .findings
            .iter()
            .all(|f| f.contains(&captured) || f.contains(&authorised)),
        "only the forged aggregates are reported: {:#?}",
        report.findings
    );
}

caisse_tests::both_backends!(
    audit_reports_a_forged_over_refund_and_a_sequence_gap_in_the_log,
    super::audit_reports_a_forged_over_refund_and_a_sequence_gap_in_the_log
);

/// The whole events table as text, to prove a refused change left it as it was.
async fn events_snapshot(db: &Db) -> Vec<Vec<(String, Option<String>)>> {
    let sql = if db.is_postgres() {
        "SELECT aggregate_type, aggregate_id, sequence, event_type, event_version, payload::text AS payload,
                metadata::text AS metadata, global_position, tx_id::text AS tx_id, recorded_at::text AS recorded_at
           FROM events ORDER BY global_position"
    } else {
        "SELECT aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata,
                global_position, recorded_at FROM events ORDER BY global_position"
    };
    db.fetch_all(sql, &[])
        .await
        .expect("read events")
        .iter()
        .map(|row| row.normalized())
        .collect()
}

async fn stored_events_reject_every_update_and_delete(app: TestApp) {
    let payment_id = app.captured_payment("25.00").await;
    let db = app.state.db();
    let before = events_snapshot(db).await;
    assert!(before.len() > 3);

    let json_value = if db.is_postgres() {
        "CAST('{}' AS json)"
    } else {
        "'{}'"
    };
    let recorded_at = if db.is_postgres() {
        "CAST('2000-01-01T00:00:00Z' AS timestamptz)"
    } else {
        "'2000-01-01T00:00:00.000Z'"
    };
    let mut changes = vec![
        ("aggregate_type", "'Forged'".to_string()),
        ("aggregate_id", "'pay_forged'".to_string()),
        ("sequence", "99".to_string()),
        ("event_type", "'PaymentForged'".to_string()),
        ("event_version", "'2'".to_string()),
        ("payload", json_value.to_string()),
        ("metadata", json_value.to_string()),
        ("global_position", "999999".to_string()),
        ("global_position", "global_position".to_string()),
        ("recorded_at", recorded_at.to_string()),
    ];
    if db.is_postgres() {
        changes.push(("tx_id", "CAST('1' AS xid8)".to_string()));
    }
    let mut allowed = Vec::new();
    for (column, value) in changes {
        for filter in ["aggregate_id = $1", "1 = 1 OR aggregate_id = $1"] {
            let sql = format!("UPDATE events SET {column} = {value} WHERE {filter}");
            if let Ok(rows) = db.execute(&sql, &[payment_id.as_str().into()]).await {
                allowed.push(format!("`{sql}` changed {rows} rows"));
            }
        }
    }
    for filter in ["aggregate_id = $1", "1 = 1 OR aggregate_id = $1"] {
        let sql = format!("DELETE FROM events WHERE {filter}");
        match db.execute(&sql, &[payment_id.as_str().into()]).await {
            Ok(rows) => allowed.push(format!("`{sql}` deleted {rows} rows")),
            Err(error) => {
                let error = error.to_string();
                assert!(
                    error.contains("events are immutable"),
                    "refused for the stated reason: {error}"
                );
            }
        }
    }
    assert!(
        allowed.is_empty(),
        "events must be immutable, but these were allowed:\n{}",
        allowed.join("\n")
    );
    assert_eq!(
        events_snapshot(db).await,
        before,
        "the events table changed"
    );

    // The application still works on top of the untouched log.
    let response = app
        .graphql(
            "mutation($id: ID!) { refundPayment(id: $id, amount: \"5.00\") { refundedAmount } }",
            json!({ "id": payment_id }),
        )
        .await;
    assert_eq!(data(&response)["refundPayment"]["refundedAmount"], "5.00");
    let response = app
        .graphql(
            "mutation($id: ID!) { refundPayment(id: $id, amount: \"25.00\") { refundedAmount } }",
            json!({ "id": payment_id }),
        )
        .await;
    assert_eq!(error_code(&response), "REFUND_EXCEEDS_CAPTURED");
}

caisse_tests::both_backends!(
    stored_events_reject_every_update_and_delete,
    super::stored_events_reject_every_update_and_delete
);

/// What `caisse audit verify` and `caisse projections rebuild` do, on their own
/// connection to the database, as a separate process would.
async fn cli_database(app: &TestApp) -> Database {
    let config = Config {
        database_url: Some(Secret::new(app.database_url.clone())),
        data_dir: app.data_dir.path().to_path_buf(),
        ..Config::default()
    };
    let database = Database::connect(&config).await.expect("the CLI connects");
    database
        .migrate()
        .await
        .expect("the CLI migrates (already applied: nothing to do)");
    database
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_audit_and_rebuild_of_all_projections_work_on_the_embedded_sqlite_file() {
    let Some(app) = caisse_tests::spawn_app(Backend::Sqlite).await else {
        return;
    };
    let ledger = run_lifecycle(&app).await;
    let database = cli_database(&app).await;
    assert!(
        database.description.starts_with("sqlite://"),
        "{}",
        database.description
    );

    // `caisse audit verify` on a clean ledger.
    let report = audit::verify(&database.db).await.expect("audit runs");
    assert_clean(&report);
    let server_report = audit::verify(app.state.db()).await.expect("audit runs");
    assert_eq!(
        (report.events, report.aggregates, report.payments),
        (
            server_report.events,
            server_report.aggregates,
            server_report.payments
        )
    );

    // Tamper with two views; the CLI audit names both and would exit non-zero.
    database
        .db
        .execute(
            "UPDATE remittances_view SET total_milli = total_milli + 1",
            &[],
        )
        .await
        .expect("tamper with remittances");
    database
        .db
        .execute(
            "DELETE FROM cash_movements WHERE payment_id = $1",
            &[ledger.refunded_fully.as_str().into()],
        )
        .await
        .expect("tamper with cash movements");
    let report = audit::verify(&database.db).await.expect("audit runs");
    assert!(!report.is_clean());
    for table in ["remittances_view", "cash_movements"] {
        assert!(
            report.findings.iter().any(|f| f.contains(table)),
            "{table} not reported: {:#?}",
            report.findings
        );
    }

    // `caisse projections rebuild all`, then the audit is clean again.
    let projectors = Projectors::new(database.db.clone(), Duration::from_secs(1));
    let names = projectors.names();
    for name in ["payments", "remittances", "accounts"] {
        assert!(names.contains(&name), "{names:?}");
    }
    for name in names {
        projectors
            .get(name)
            .expect("known projection")
            .rebuild()
            .await
            .expect("rebuild");
    }
    assert_clean(&audit::verify(&database.db).await.expect("audit runs"));
    projectors.catch_up_all().await.expect("projections status");
    let checkpoints = projectors.checkpoints();
    assert!(
        checkpoints
            .values()
            .all(|position| position.global_position as usize == report.events),
        "{checkpoints:?}"
    );

    // The running server reads the rebuilt views.
    let response = app
        .graphql(
            "query($shop: ID!) { remittances(shopId: $shop) { edges { node { total paymentCount } } } }",
            json!({ "shop": app.shop_id }),
        )
        .await;
    assert_eq!(
        data(&response)["remittances"]["edges"][0]["node"]["total"],
        "235.00"
    );
    assert_eq!(
        refunded_amount(&app, &ledger.refunded_partly).await,
        "30.00"
    );
}
