//! The webhook dispatcher end to end (ADR 0013, issue 5): bodies built from
//! the events, not the views; the endpoints an event goes to; a pass lost
//! before its commit sent again with the same `webhook-id`s, its rows single.

use caisse_application::ports::LogPosition;
use caisse_projections::money::milli_to_string;
use caisse_tests::{both_backends, data, TestApp};
use serde_json::{json, Value};

use crate::webhooks::{await_views, create, deliver, Receiver};

async fn mutate(app: &TestApp, query: &str, variables: Value) -> Value {
    let response = app.graphql(query, variables).await;
    data(&response).clone()
}

fn id(payment: &Value) -> String {
    payment["id"].as_str().unwrap().to_string()
}

/// An authorisation validated at once: by the time the dispatcher reads the
/// log the view shows AUTHORISED, yet the authorisation's body still shows
/// the payment as the authorisation left it. And for payments in every kind
/// of state, the body of a payment's last event agrees with the payments
/// view field for field.
async fn bodies_show_the_payment_as_each_event_left_it(app: TestApp) {
    let (receiver, url) = Receiver::start().await;
    data(&create(&app, &url, json!(["*"])).await);

    let mut manual = caisse_tests::payment_input("25.00", "ORD-DISPATCH-MANUAL");
    manual["captureMode"] = json!("MANUAL");
    let manual = app.create_payment(manual).await;
    assert_eq!(manual["status"], "AUTHORISED_TO_VALIDATE", "{manual}");
    mutate(
        &app,
        "mutation($id: ID!) { validatePayment(id: $id) { status } }",
        json!({ "id": manual["id"] }),
    )
    .await;
    let modified = app
        .create_payment(caisse_tests::payment_input("40.00", "ORD-DISPATCH-MOD"))
        .await;
    // Dispatched now: its modification below is replayed in a later pass
    // from the state this one kept, not from the log.
    await_views(&app).await;
    deliver(&app).await;
    mutate(
        &app,
        "mutation($id: ID!) { modifyPayment(id: $id, amount: \"15.00\") { id } }",
        json!({ "id": modified["id"] }),
    )
    .await;
    let mut refused = caisse_tests::payment_input("30.00", "ORD-DISPATCH-REFUSED");
    refused["card"]["number"] = json!("4970100000000022");
    let refused = app.create_payment(refused).await;
    assert_eq!(refused["status"], "REFUSED", "{refused}");
    let cancelled = app
        .create_payment(caisse_tests::payment_input("12.00", "ORD-DISPATCH-CANCEL"))
        .await;
    mutate(
        &app,
        "mutation($id: ID!) { cancelPayment(id: $id) { status } }",
        json!({ "id": cancelled["id"] }),
    )
    .await;
    let refunded = app.captured_payment("50.00").await;
    mutate(
        &app,
        "mutation($id: ID!) { refundPayment(id: $id, amount: \"20.00\") { id } }",
        json!({ "id": refunded }),
    )
    .await;
    await_views(&app).await;
    let run = deliver(&app).await;
    assert_eq!((run.retrying, run.queued), (0, 0), "{run:?}");

    let bodies = receiver.bodies();
    let of = |payment_id: &str| -> Vec<Value> {
        bodies
            .iter()
            .filter(|body| body["data"]["id"] == payment_id)
            .cloned()
            .collect()
    };
    let manual_bodies = of(&id(&manual));
    let steps: Vec<(&str, &str)> = manual_bodies
        .iter()
        .map(|b| {
            (
                b["type"].as_str().unwrap(),
                b["data"]["status"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        steps,
        [
            ("payment.authorised", "AUTHORISED_TO_VALIDATE"),
            ("payment.validated", "AUTHORISED"),
            // The remittance of `captured_payment` below captured it too.
            ("payment.captured", "CAPTURED"),
        ]
    );
    let modified_bodies = of(&id(&modified));
    assert_eq!(modified_bodies[0]["data"]["amount"], "40.00");
    assert_eq!(modified_bodies[1]["type"], "payment.modified");
    assert_eq!(modified_bodies[1]["data"]["amount"], "15.00");
    assert_eq!(modified_bodies[1]["data"]["eventAmount"], "15.00");

    // The last body of each payment against its row in the payments view.
    for payment_id in [
        id(&manual),
        id(&modified),
        id(&refused),
        id(&cancelled),
        refunded.clone(),
    ] {
        let last = of(&payment_id).last().cloned().expect("delivered");
        let row = app
            .state
            .db()
            .fetch_optional(
                "SELECT * FROM payments_view WHERE payment_id = $1",
                &[payment_id.clone().into()],
            )
            .await
            .unwrap()
            .expect("in the view");
        let currency = row.text("currency");
        let money = |column: &str| milli_to_string(row.int(column), &currency);
        let data = &last["data"];
        let expected = json!({
            "id": payment_id,
            "shopId": row.text("shop_id"),
            "mode": row.text("mode"),
            "orderReference": row.text("order_reference"),
            "status": row.text("status"),
            "amount": money("amount_milli"),
            "currency": currency,
            "authorisedAmount": money("authorised_milli"),
            "capturedAmount": money("captured_milli"),
            "refundedAmount": money("refunded_milli"),
            "guarantee": row.text("guarantee"),
            "threeDsStatus": row.text("three_ds_status"),
            "riskOutcome": row.text("risk_outcome"),
            "refusal": row.opt_text("refusal_code").map(|code| json!({
                "code": code, "message": row.opt_text("refusal_message") })),
            "eventAmount": data["eventAmount"],
            "planId": row.opt_text("plan_id"),
        });
        assert_eq!(data, &expected, "{}", last["type"]);
    }
    let refunded_last = of(&refunded).last().cloned().unwrap();
    assert_eq!(refunded_last["type"], "payment.refunded");
    assert_eq!(refunded_last["data"]["status"], "PARTIALLY_REFUNDED");
    assert_eq!(refunded_last["data"]["refundedAmount"], "20.00");
}
both_backends!(
    webhook_bodies_show_the_payment_as_each_event_left_it,
    super::bodies_show_the_payment_as_each_event_left_it
);

/// An endpoint gets the events committed after its creation, and only while
/// it is active when they are dispatched.
async fn an_endpoint_gets_the_events_after_it_while_active(app: TestApp) {
    let (receiver, url) = Receiver::start().await;
    let before = app
        .create_payment(caisse_tests::payment_input("8.00", "ORD-DISPATCH-BEFORE"))
        .await;
    let created = create(&app, &url, json!(["*"])).await;
    let endpoint_id = data(&created)["createWebhookEndpoint"]["endpoint"]["id"].clone();
    mutate(
        &app,
        "mutation($id: ID!) { cancelPayment(id: $id) { status } }",
        json!({ "id": before["id"] }),
    )
    .await;
    let after = app
        .create_payment(caisse_tests::payment_input("9.00", "ORD-DISPATCH-AFTER"))
        .await;
    await_views(&app).await;
    deliver(&app).await;
    // Order holds per payment, not across them: sorted.
    let mut seen: Vec<(String, String)> = receiver
        .log()
        .into_iter()
        .map(|(_, kind, payment)| (kind, payment))
        .collect();
    seen.sort();
    assert_eq!(
        seen,
        [
            ("payment.authorised".to_string(), id(&after)),
            ("payment.cancelled".to_string(), id(&before)),
        ]
    );

    // Disabled between an event and its dispatch: the event is not sent,
    // then or after the endpoint is enabled again.
    let while_disabled = app
        .create_payment(caisse_tests::payment_input("7.00", "ORD-DISPATCH-OFF"))
        .await;
    mutate(
        &app,
        "mutation($id: ID!) { disableWebhookEndpoint(id: $id) { status } }",
        json!({ "id": endpoint_id }),
    )
    .await;
    await_views(&app).await;
    deliver(&app).await;
    assert_eq!(receiver.log().len(), 2);
    mutate(
        &app,
        "mutation($id: ID!) { enableWebhookEndpoint(id: $id) { status } }",
        json!({ "id": endpoint_id }),
    )
    .await;
    let enabled = app
        .create_payment(caisse_tests::payment_input("6.00", "ORD-DISPATCH-ON"))
        .await;
    await_views(&app).await;
    deliver(&app).await;
    let log = receiver.log();
    assert_eq!(log.len(), 3, "{log:?}");
    assert_eq!(log[2].2, id(&enabled));
    let deliveries = app
        .state
        .webhook_deliverer
        .deliveries(endpoint_id.as_str().unwrap(), None, 50)
        .await
        .unwrap();
    assert_eq!(deliveries.len(), 3);
    assert!(deliveries
        .iter()
        .all(|d| d.subject_id != id(&while_disabled)));
}
both_backends!(
    an_endpoint_gets_the_events_after_it_while_active,
    super::an_endpoint_gets_the_events_after_it_while_active
);

/// Moves the dispatcher's checkpoint back, as a crash before a pass's commit
/// leaves it.
async fn set_checkpoint(app: &TestApp, position: LogPosition) {
    app.state
        .db()
        .execute(
            "UPDATE notification_dispatch SET tx_id = $1, global_position = $2, lease_until = NULL
              WHERE name = 'webhooks'",
            &[
                (position.tx_id as i64).into(),
                position.global_position.into(),
            ],
        )
        .await
        .unwrap();
}

/// A pass that sent its deliveries but died before its commit is sent again
/// from the old checkpoint, with the same `webhook-id`; the receiver
/// deduplicates, and the outbox keeps one row per delivery.
async fn a_pass_lost_before_its_commit_is_sent_again_with_the_same_ids(app: TestApp) {
    let (receiver, url) = Receiver::start().await;
    let created = create(&app, &url, json!(["payment.authorised"])).await;
    let endpoint_id = data(&created)["createWebhookEndpoint"]["endpoint"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    app.create_payment(caisse_tests::payment_input("4.00", "ORD-DISPATCH-CRASH"))
        .await;
    await_views(&app).await;
    let before = app.state.webhook_dispatcher.checkpoint().await.unwrap();
    assert_eq!(deliver(&app).await.succeeded, 1);
    assert!(app.state.webhook_dispatcher.checkpoint().await.unwrap() > before);

    // The commit never happened: no row, no attempt, the checkpoint behind.
    let db = app.state.db();
    db.execute(
        "DELETE FROM webhook_attempts WHERE delivery_id IN
            (SELECT delivery_id FROM webhook_deliveries WHERE endpoint_id = $1)",
        &[endpoint_id.clone().into()],
    )
    .await
    .unwrap();
    db.execute(
        "DELETE FROM webhook_deliveries WHERE endpoint_id = $1",
        &[endpoint_id.clone().into()],
    )
    .await
    .unwrap();
    set_checkpoint(&app, before).await;
    assert_eq!(deliver(&app).await.succeeded, 1);
    // Rows there but the checkpoint behind: sent again, still one row.
    set_checkpoint(&app, before).await;
    deliver(&app).await;

    let log = receiver.log();
    assert_eq!(log.len(), 3);
    assert!(log.iter().all(|(webhook_id, _, _)| *webhook_id == log[0].0));
    let deliveries = app
        .state
        .webhook_deliverer
        .deliveries(&endpoint_id, None, 50)
        .await
        .unwrap();
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0].status, "SUCCEEDED");
    assert_eq!(deliveries[0].webhook_id, log[0].0);
    let attempts = app
        .state
        .webhook_deliverer
        .attempts(&deliveries[0].delivery_id)
        .await
        .unwrap();
    assert_eq!(attempts.len(), 1);
}
both_backends!(
    a_webhook_pass_lost_before_its_commit_is_sent_again_with_the_same_ids,
    super::a_pass_lost_before_its_commit_is_sent_again_with_the_same_ids
);

/// An endpoint being retried gets its new deliveries queued for the retry
/// loop, not attempted by the dispatcher: a receiver that is down (or times
/// out) does not hold back the first attempts of the others.
async fn a_failing_endpoint_is_left_to_the_retry_loop(app: TestApp) {
    let (down, down_url) = Receiver::start().await;
    let (up, up_url) = Receiver::start().await;
    down.set_down(true);
    data(&create(&app, &down_url, json!(["payment.authorised"])).await);
    data(&create(&app, &up_url, json!(["payment.authorised"])).await);
    app.create_payment(caisse_tests::payment_input("3.00", "ORD-DISPATCH-FAIL-1"))
        .await;
    await_views(&app).await;
    let first = app.state.webhook_dispatcher.run_pass().await.unwrap();
    assert_eq!(
        (first.run.succeeded, first.run.retrying, first.run.queued),
        (1, 1, 0),
        "{first:?}"
    );

    app.create_payment(caisse_tests::payment_input("4.00", "ORD-DISPATCH-FAIL-2"))
        .await;
    await_views(&app).await;
    let second = app.state.webhook_dispatcher.run_pass().await.unwrap();
    // The healthy endpoint at once; the failing one's is queued, untried.
    assert_eq!(
        (second.run.succeeded, second.run.retrying, second.run.queued),
        (1, 0, 1),
        "{second:?}"
    );
    assert_eq!((down.log().len(), up.log().len()), (1, 2));
    // The retry loop tries it (its payment has nothing pending before it);
    // the first payment's retry is not due yet.
    let retried = app.state.retry_webhooks().await.unwrap();
    assert_eq!(retried.retrying, 1, "{retried:?}");
    assert_eq!(down.log().len(), 2);
    // Back up: everything goes once its delay has passed.
    down.set_down(false);
    app.clock.advance(chrono::Duration::minutes(6));
    assert_eq!(app.state.retry_webhooks().await.unwrap().succeeded, 2);
    let ids: std::collections::HashSet<String> =
        down.log().into_iter().map(|(id, _, _)| id).collect();
    assert_eq!(ids.len(), 2);
}
both_backends!(
    a_failing_webhook_endpoint_is_left_to_the_retry_loop,
    super::a_failing_endpoint_is_left_to_the_retry_loop
);
