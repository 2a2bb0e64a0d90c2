//! A remittance interrupted between its captures and its record is completed by
//! the next remittance run, once it is old enough not to be still running.

use caisse_application::context::RequestContext;
use caisse_domain::payment::{AccessScope, PaymentCommand};
use caisse_domain::{Mode, PaymentId, RemittanceId, ShopId};
use caisse_tests::{data, payment_input, TestApp};
use serde_json::json;

async fn captures_left_without_their_remittance_are_recorded_by_the_next_run(app: TestApp) {
    let payment = app.create_payment(payment_input("42.00", "ORD-CRASH")).await;
    let payment_id = PaymentId::parse(payment["id"].as_str().unwrap()).unwrap();
    // What a crash after the capture and before `RemittanceSubmitted` leaves behind.
    let remittance_id = RemittanceId::new();
    let scope = AccessScope::single(ShopId::parse(&app.shop_id).unwrap(), Mode::Test);
    let context = RequestContext::system(scope, "test:crash");
    let command = PaymentCommand::Capture {
        remittance_id,
        today: caisse_application::ports::Clock::today(app.clock.as_ref()),
        occurred_at: caisse_application::ports::Clock::now(app.clock.as_ref()),
    };
    app.state
        .payments
        .runner()
        .execute(&payment_id.to_string(), command, context.metadata(false))
        .await
        .expect("capture");
    app.state.projectors.catch_up_all().await.unwrap();

    // Too young: a remittance might still be running; nothing is recorded.
    assert_eq!(app.run_remittance().await, json!([]));
    app.clock.advance(chrono::Duration::minutes(11));
    let remittances = app.run_remittance().await;
    assert_eq!(remittances.as_array().unwrap().len(), 1, "{remittances}");
    assert_eq!(remittances[0]["id"], remittance_id.to_string());
    assert_eq!(remittances[0]["paymentCount"], 1);
    assert_eq!(remittances[0]["total"], "42.00");
    let response = app
        .graphql("query($id: ID!) { remittance(id: $id) { payments { id status } } }", json!({ "id": remittance_id.to_string() }))
        .await;
    assert_eq!(data(&response)["remittance"]["payments"][0]["id"], payment_id.to_string());
    // Recorded once: the next run finds nothing left.
    assert_eq!(app.run_remittance().await, json!([]));
    let report = caisse_projections::audit::verify(app.state.db()).await.unwrap();
    assert!(report.is_clean(), "{:?}", report.findings);
}

caisse_tests::both_backends!(
    orphan_captures_are_recovered,
    super::captures_left_without_their_remittance_are_recorded_by_the_next_run
);
