//! A remittance interrupted between its captures and its record is completed by
//! the next remittance run, once it is old enough not to be still running.

use caisse_application::context::RequestContext;
use caisse_domain::payment::{AccessScope, PaymentCommand};
use caisse_domain::{Mode, PaymentId, RemittanceId, ShopId};
use caisse_tests::{data, payment_input, TestApp};
use serde_json::json;

async fn captures_left_without_their_remittance_are_recorded_by_the_next_run(app: TestApp) {
    let payment = app
        .create_payment(payment_input("42.00", "ORD-CRASH"))
        .await;
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
    let executed = app
        .state
        .payments
        .runner()
        .execute(&payment_id.to_string(), command, context.metadata(false))
        .await
        .expect("capture");
    // Wait for the views like a mutation does (other tests' open transactions on
    // the same PostgreSQL server may hold delivery back for a moment).
    let position = caisse_application::ports::EventLog::position_of(
        &app.state.log,
        "Payment",
        &payment_id.to_string(),
        executed.last_sequence(),
    )
    .await
    .unwrap();
    caisse_application::ports::ProjectionWaiter::wait_for(app.state.projectors.as_ref(), position)
        .await;

    // Too young: a remittance might still be running; nothing is recorded.
    assert_eq!(app.run_remittance().await, json!([]));
    app.clock.advance(chrono::Duration::minutes(11));
    let remittances = app.run_remittance().await;
    assert_eq!(remittances.as_array().unwrap().len(), 1, "{remittances}");
    assert_eq!(remittances[0]["id"], remittance_id.to_string());
    assert_eq!(remittances[0]["paymentCount"], 1);
    assert_eq!(remittances[0]["total"], "42.00");
    let response = app
        .graphql(
            "query($id: ID!) { remittance(id: $id) { payments { id status } } }",
            json!({ "id": remittance_id.to_string() }),
        )
        .await;
    assert_eq!(
        data(&response)["remittance"]["payments"][0]["id"],
        payment_id.to_string()
    );
    // Recorded once: the next run finds nothing left.
    assert_eq!(app.run_remittance().await, json!([]));
    let report = caisse_projections::audit::verify(app.state.db())
        .await
        .unwrap();
    assert!(report.is_clean(), "{:?}", report.findings);
}

caisse_tests::both_backends!(
    orphan_captures_are_recovered,
    super::captures_left_without_their_remittance_are_recorded_by_the_next_run
);

async fn a_duplicate_retried_after_a_crash_before_its_link_completes_the_link(app: TestApp) {
    let source_id = app.captured_payment("30.00").await;
    let source = PaymentId::parse(&source_id).unwrap();
    let scope = AccessScope::single(ShopId::parse(&app.shop_id).unwrap(), Mode::Test);
    let mut context = RequestContext::system(scope, "test:crash");
    context.idempotency = Some(caisse_application::IdempotencyRequest::new(
        &format!("{}:TEST", app.shop_id),
        "dup-1",
        "duplicatePayment",
        "{}",
    ));
    // The first attempt created the new payment, carrying the key, then crashed
    // before recording the link on the source.
    let mut details = app
        .state
        .payments
        .runner()
        .load(&source_id)
        .await
        .unwrap()
        .details
        .unwrap();
    let new_id = PaymentId::new();
    details.payment_id = new_id;
    details.duplicated_from = Some(source);
    let outcome = caisse_domain::payment::AuthorisationOutcome::Approved(
        caisse_domain::payment::Authorisation {
            authorisation_code: "123456".into(),
            acquirer_reference: "SIM1".into(),
        },
    );
    let command = PaymentCommand::Authorise {
        details: Box::new(details),
        outcome,
    };
    app.state
        .payments
        .runner()
        .execute(&new_id.to_string(), command, context.metadata(true))
        .await
        .unwrap();
    let before = app.state.payments.runner().load(&source_id).await.unwrap();
    assert!(before.duplicates.is_empty());

    // The client retries with the same key: same new payment, and the link is made.
    let retried = app
        .state
        .payments
        .duplicate(&context, source, "30.00".into(), "ORD-DUP".into())
        .await
        .unwrap();
    assert_eq!(retried.payment_id, new_id);
    let after = app.state.payments.runner().load(&source_id).await.unwrap();
    assert_eq!(after.duplicates, vec![new_id]);
    // A further retry does not link twice.
    app.state
        .payments
        .duplicate(&context, source, "30.00".into(), "ORD-DUP".into())
        .await
        .unwrap();
    let again = app.state.payments.runner().load(&source_id).await.unwrap();
    assert_eq!(again.duplicates, vec![new_id]);
    let response = app
        .graphql(
            "query($id: ID!) { payment(id: $id) { duplicates } }",
            json!({ "id": source_id }),
        )
        .await;
    assert_eq!(
        data(&response)["payment"]["duplicates"],
        json!([new_id.to_string()])
    );
}

caisse_tests::both_backends!(
    duplicate_links_are_completed_on_retry,
    super::a_duplicate_retried_after_a_crash_before_its_link_completes_the_link
);
