//! Payment typologies end to end (TY-3, TY-4, TY-6, TY-7): pay at order,
//! deferred within the authorisation validity and beyond it (card check now,
//! authorisation the day before capture), captured at shipping or at delivery
//! (expiry or re-authorisation when nothing is declared) — time moved by the
//! injected clock.

use caisse_tests::{both_backends, data, payment_input, TestApp};
use chrono::{TimeZone, Utc};
use serde_json::{json, Value};

const PAYMENT: &str =
    "query($id: ID!) { payment(id: $id) { status amount authorisedAmount capturedAmount captureDate
    refusal { code } history { type actor amount } } }";

async fn payment(app: &TestApp, id: &Value) -> Value {
    let response = app.graphql(PAYMENT, json!({ "id": id })).await;
    data(&response)["payment"].clone()
}

fn history_types(payment: &Value) -> Vec<String> {
    payment["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| event["type"].as_str().unwrap().to_string())
        .collect()
}

fn deferred(amount: &str, reference: &str, days: u32, card: &str) -> Value {
    let mut input = payment_input(amount, reference);
    input["captureDelayDays"] = json!(days);
    input["card"]["number"] = json!(card);
    input
}

const ACCEPTED: &str = "4970100000000006";
/// Accepted at payment time, insufficient funds at the deferred authorisation.
const FUNDS_GONE_LATER: &str = "4970100000000071";
const DECLINED: &str = "4970100000000014";

/// At 22:30 in Paris (21:30 UTC in March) on a day of March 2026.
async fn after_cut_off_of(app: &TestApp, day: u32) {
    let (month, day) = if day > 31 { (4, day - 31) } else { (3, day) };
    app.clock
        .set(Utc.with_ymd_and_hms(2026, month, day, 21, 30, 0).unwrap());
    app.run_scheduler().await;
}

async fn deferred_within_the_validity_is_authorised_now_and_captured_on_its_day(app: TestApp) {
    // The clock starts on 2026-03-02; 5 days is within the 7-day validity.
    let created = app
        .create_payment(deferred("40.00", "ORD-DEFERRED-5", 5, ACCEPTED))
        .await;
    assert_eq!(created["status"], "AUTHORISED");
    assert_eq!(created["captureDate"], "2026-03-07");
    after_cut_off_of(&app, 6).await;
    assert_eq!(payment(&app, &created["id"]).await["status"], "AUTHORISED");
    after_cut_off_of(&app, 7).await;
    let captured = payment(&app, &created["id"]).await;
    assert_eq!(captured["status"], "CAPTURED");
    assert_eq!(captured["capturedAmount"], "40.00");
}

async fn deferred_beyond_the_validity_waits_then_is_authorised_the_day_before_capture(
    app: TestApp,
) {
    let created = app
        .create_payment(deferred("60.00", "ORD-DEFERRED-20", 20, ACCEPTED))
        .await;
    assert_eq!(created["status"], "WAITING_AUTHORISATION", "{created}");
    // Only the card was checked: nothing is authorised yet.
    assert_eq!(
        payment(&app, &created["id"]).await["authorisedAmount"],
        "0.00"
    );
    assert_eq!(created["captureDate"], "2026-03-22");
    // Nothing is authorised yet, so nothing shows as authorised in the totals.
    let response = app
        .graphql(
            "query($shop: ID!) { cashSummary(shopId: $shop, from: \"2026-03-02\", to: \"2026-03-02\") { authorised { count } } }",
            json!({ "shop": app.shop_id }),
        )
        .await;
    assert_eq!(data(&response)["cashSummary"], json!([]));
    let response = app
        .graphql(
            "query($shop: ID!) { scheduledWork(shopId: $shop) { kind paymentId dueAt } }",
            json!({ "shop": app.shop_id }),
        )
        .await;
    let work = data(&response)["scheduledWork"].as_array().unwrap().clone();
    assert!(
        work.contains(
            &json!({ "kind": "AUTHORISE_DEFERRED", "paymentId": created["id"],
                               "dueAt": "2026-03-21T00:00:00+00:00" })
        ),
        "{work:?}"
    );

    after_cut_off_of(&app, 20).await;
    assert_eq!(
        payment(&app, &created["id"]).await["status"],
        "WAITING_AUTHORISATION"
    );
    // The day before the capture date: authorised.
    app.clock
        .set(Utc.with_ymd_and_hms(2026, 3, 21, 0, 0, 0).unwrap());
    let run = app.run_scheduler().await;
    assert_eq!(run.done.get("AUTHORISE_DEFERRED"), Some(&1), "{run:?}");
    let granted = payment(&app, &created["id"]).await;
    assert_eq!(granted["status"], "AUTHORISED");
    assert_eq!(granted["authorisedAmount"], "60.00");
    after_cut_off_of(&app, 21).await;
    assert_eq!(payment(&app, &created["id"]).await["status"], "AUTHORISED");
    after_cut_off_of(&app, 22).await;
    let captured = payment(&app, &created["id"]).await;
    assert_eq!(captured["status"], "CAPTURED");
    assert_eq!(
        history_types(&captured),
        [
            "PaymentAwaitingAuthorisation",
            "DeferredAuthorisationGranted",
            "PaymentCaptured"
        ]
    );
    assert_eq!(captured["history"][1]["actor"], "scheduler");
    assert_eq!(captured["history"][1]["amount"], "60.00");
}

async fn a_deferred_authorisation_refused_later_is_recorded_as_refused(app: TestApp) {
    let created = app
        .create_payment(deferred("70.00", "ORD-FUNDS-GONE", 20, FUNDS_GONE_LATER))
        .await;
    assert_eq!(created["status"], "WAITING_AUTHORISATION");
    app.clock
        .set(Utc.with_ymd_and_hms(2026, 3, 21, 0, 0, 0).unwrap());
    app.run_scheduler().await;
    after_cut_off_of(&app, 22).await;
    let refused = payment(&app, &created["id"]).await;
    assert_eq!(refused["status"], "REFUSED");
    assert_eq!(refused["refusal"]["code"], "51");
    assert_eq!(refused["authorisedAmount"], "0.00");
    assert_eq!(
        history_types(&refused),
        [
            "PaymentAwaitingAuthorisation",
            "DeferredAuthorisationRefused"
        ]
    );
    // Refused on the day of the attempt in the totals.
    let response = app
        .graphql(
            "query($shop: ID!) { cashSummary(shopId: $shop, from: \"2026-03-21\", to: \"2026-03-21\") { refused { count amount } } }",
            json!({ "shop": app.shop_id }),
        )
        .await;
    assert_eq!(
        data(&response)["cashSummary"][0]["refused"],
        json!({ "count": 1, "amount": "70.00" })
    );

    // A card refused at the card check is refused at once.
    let declined = app
        .create_payment(deferred("10.00", "ORD-CHECK-DECLINED", 20, DECLINED))
        .await;
    assert_eq!(declined["status"], "REFUSED");
    assert_eq!(declined["refusal"]["code"], "05");
}

async fn a_waiting_payment_can_be_cancelled_or_modified_before_its_authorisation(app: TestApp) {
    let cancelled = app
        .create_payment(deferred("15.00", "ORD-WAIT-CANCEL", 20, ACCEPTED))
        .await;
    let moved = app
        .create_payment(deferred("25.00", "ORD-WAIT-MOVE", 20, ACCEPTED))
        .await;
    let response = app
        .graphql(
            "mutation($id: ID!) { cancelPayment(id: $id) { status } }",
            json!({ "id": cancelled["id"] }),
        )
        .await;
    assert_eq!(data(&response)["cancelPayment"]["status"], "CANCELLED");
    // Nothing was authorised, so nothing shows as cancelled in the totals.
    let response = app
        .graphql(
            "query($shop: ID!) { cashSummary(shopId: $shop, from: \"2026-03-02\", to: \"2026-03-02\") { cancelled { count } } }",
            json!({ "shop": app.shop_id }),
        )
        .await;
    assert_eq!(data(&response)["cashSummary"], json!([]));
    // Lowered and brought forward to the 12th: authorised on the 11th.
    let response = app
        .graphql(
            "mutation($id: ID!) { modifyPayment(id: $id, amount: \"20.00\", captureDate: \"2026-03-12\") { status amount captureDate } }",
            json!({ "id": moved["id"] }),
        )
        .await;
    assert_eq!(
        data(&response)["modifyPayment"],
        json!({ "status": "WAITING_AUTHORISATION", "amount": "20.00", "captureDate": "2026-03-12" })
    );
    app.clock
        .set(Utc.with_ymd_and_hms(2026, 3, 11, 0, 0, 0).unwrap());
    let run = app.run_scheduler().await;
    assert_eq!(run.done.get("AUTHORISE_DEFERRED"), Some(&1), "{run:?}");
    let authorised = payment(&app, &moved["id"]).await;
    assert_eq!(authorised["status"], "AUTHORISED");
    assert_eq!(authorised["history"][2]["amount"], "20.00");
    after_cut_off_of(&app, 12).await;
    assert_eq!(payment(&app, &moved["id"]).await["capturedAmount"], "20.00");
    assert_eq!(payment(&app, &cancelled["id"]).await["status"], "CANCELLED");
}

async fn a_manual_payment_authorised_late_waits_for_validation_then_lapses(app: TestApp) {
    let mut input = deferred("35.00", "ORD-MANUAL-DEFERRED", 20, ACCEPTED);
    input["captureMode"] = json!("MANUAL");
    let created = app.create_payment(input).await;
    assert_eq!(created["status"], "WAITING_AUTHORISATION");
    app.clock
        .set(Utc.with_ymd_and_hms(2026, 3, 21, 0, 0, 0).unwrap());
    app.run_scheduler().await;
    assert_eq!(
        payment(&app, &created["id"]).await["status"],
        "AUTHORISED_TO_VALIDATE"
    );
    // Validity counts from the late authorisation: 7 days after the 21st.
    after_cut_off_of(&app, 27).await;
    assert_eq!(
        payment(&app, &created["id"]).await["status"],
        "AUTHORISED_TO_VALIDATE"
    );
    app.clock
        .set(Utc.with_ymd_and_hms(2026, 3, 28, 0, 0, 0).unwrap());
    app.run_scheduler().await;
    assert_eq!(payment(&app, &created["id"]).await["status"], "EXPIRED");
}

const SHIPMENT: &str = "query($id: ID!) { payment(id: $id) { status captureTrigger captureDate
    shipment { carrier trackingNumber } deliveredAt history { type actor } } }";

fn on(trigger: &str, amount: &str, reference: &str, card: &str) -> Value {
    let mut input = payment_input(amount, reference);
    input["captureTrigger"] = json!(trigger);
    input["card"]["number"] = json!(card);
    input
}

async fn a_payment_captured_at_shipping_waits_for_the_declaration(app: TestApp) {
    let created = app
        .create_payment(on("SHIPPING", "50.00", "ORD-SHIP", ACCEPTED))
        .await;
    assert_eq!(created["status"], "AUTHORISED");
    // Cut-offs pass; without a shipping declaration nothing is captured.
    after_cut_off_of(&app, 4).await;
    let waiting = app.graphql(SHIPMENT, json!({ "id": created["id"] })).await;
    assert_eq!(data(&waiting)["payment"]["status"], "AUTHORISED");
    assert_eq!(data(&waiting)["payment"]["captureTrigger"], "SHIPPING");

    // Delivery is not what this payment waits for.
    let response = app
        .graphql(
            "mutation($id: ID!) { declareDelivery(id: $id) { status } }",
            json!({ "id": created["id"] }),
        )
        .await;
    assert_eq!(
        caisse_tests::error_code(&response),
        "CAPTURE_TRIGGER_MISMATCH"
    );

    app.clock
        .set(Utc.with_ymd_and_hms(2026, 3, 5, 9, 0, 0).unwrap());
    let response = app
        .graphql(
            r#"mutation($id: ID!) { declareShipping(id: $id, carrier: "La Poste", trackingNumber: "6A12345678901") {
                status captureDate shipment { carrier trackingNumber } } }"#,
            json!({ "id": created["id"] }),
        )
        .await;
    assert_eq!(
        data(&response)["declareShipping"],
        json!({ "status": "AUTHORISED", "captureDate": "2026-03-05",
                "shipment": { "carrier": "La Poste", "trackingNumber": "6A12345678901" } })
    );
    // Twice is refused.
    let response = app
        .graphql(
            "mutation($id: ID!) { declareShipping(id: $id) { status } }",
            json!({ "id": created["id"] }),
        )
        .await;
    assert_eq!(caisse_tests::error_code(&response), "ALREADY_DECLARED");
    after_cut_off_of(&app, 5).await;
    let captured = app.graphql(SHIPMENT, json!({ "id": created["id"] })).await;
    let captured = &data(&captured)["payment"];
    assert_eq!(captured["status"], "CAPTURED");
    assert_eq!(
        history_types(captured),
        ["PaymentAuthorised", "ShipmentDeclared", "PaymentCaptured"]
    );

    // A tracking number that is a card number is refused and changes nothing.
    let other = app
        .create_payment(on("SHIPPING", "5.00", "ORD-SHIP-PAN", ACCEPTED))
        .await;
    let response = app
        .graphql(
            r#"mutation($id: ID!) { declareShipping(id: $id, trackingNumber: "4970100000000006") { status } }"#,
            json!({ "id": other["id"] }),
        )
        .await;
    assert_eq!(caisse_tests::error_code(&response), "INVALID_TEXT");
    assert_eq!(
        response["errors"][0]["extensions"]["field"],
        "trackingNumber"
    );
    let unchanged = app.graphql(SHIPMENT, json!({ "id": other["id"] })).await;
    assert_eq!(data(&unchanged)["payment"]["shipment"], Value::Null);

    // Shipping and delivery triggers need automatic capture and no delay.
    let mut manual = on("SHIPPING", "5.00", "ORD-SHIP-MANUAL", ACCEPTED);
    manual["captureMode"] = json!("MANUAL");
    let response = app
        .graphql(caisse_tests::CREATE_PAYMENT, json!({ "input": manual }))
        .await;
    assert_eq!(
        caisse_tests::error_code(&response),
        "INVALID_CAPTURE_TRIGGER"
    );
}

async fn a_payment_captured_at_delivery_waits_for_the_delivery(app: TestApp) {
    let created = app
        .create_payment(on("DELIVERY", "80.00", "ORD-DELIVER", ACCEPTED))
        .await;
    app.clock
        .set(Utc.with_ymd_and_hms(2026, 3, 3, 9, 0, 0).unwrap());
    let response = app
        .graphql(
            r#"mutation($id: ID!) { declareShipping(id: $id, carrier: "DHL") { status captureDate } }"#,
            json!({ "id": created["id"] }),
        )
        .await;
    // Shipping is recorded but does not make it due.
    assert_eq!(
        data(&response)["declareShipping"],
        json!({ "status": "AUTHORISED", "captureDate": "2026-03-02" })
    );
    after_cut_off_of(&app, 4).await;
    assert_eq!(payment(&app, &created["id"]).await["status"], "AUTHORISED");
    app.clock
        .set(Utc.with_ymd_and_hms(2026, 3, 6, 9, 0, 0).unwrap());
    let response = app
        .graphql(
            "mutation($id: ID!) { declareDelivery(id: $id) { captureDate deliveredAt } }",
            json!({ "id": created["id"] }),
        )
        .await;
    assert_eq!(
        data(&response)["declareDelivery"]["captureDate"],
        "2026-03-06"
    );
    after_cut_off_of(&app, 6).await;
    assert_eq!(payment(&app, &created["id"]).await["status"], "CAPTURED");
}

async fn nothing_declared_before_the_validity_ends_expires_the_payment(app: TestApp) {
    let created = app
        .create_payment(on("SHIPPING", "45.00", "ORD-NEVER-SHIPPED", ACCEPTED))
        .await;
    app.clock
        .set(Utc.with_ymd_and_hms(2026, 3, 9, 10, 0, 0).unwrap());
    app.run_scheduler().await;
    let expired = payment(&app, &created["id"]).await;
    assert_eq!(expired["status"], "EXPIRED");
    assert_eq!(history_types(&expired).last().unwrap(), "PaymentExpired");
}

async fn configured_brands_are_reauthorised_instead_of_expiring(app: TestApp) {
    let created = app
        .create_payment(on("DELIVERY", "45.00", "ORD-REAUTH", ACCEPTED))
        .await;
    let funds_gone = app
        .create_payment(on(
            "DELIVERY",
            "46.00",
            "ORD-REAUTH-REFUSED",
            FUNDS_GONE_LATER,
        ))
        .await;
    let never_delivered = app
        .create_payment(on("DELIVERY", "47.00", "ORD-REAUTH-ONCE", ACCEPTED))
        .await;
    // Seven days on, both authorisations lapse; the brand (CB) is renewed.
    app.clock
        .set(Utc.with_ymd_and_hms(2026, 3, 9, 10, 0, 0).unwrap());
    app.run_scheduler().await;
    let renewed = payment(&app, &created["id"]).await;
    assert_eq!(renewed["status"], "AUTHORISED");
    assert_eq!(
        history_types(&renewed).last().unwrap(),
        "PaymentReauthorised"
    );
    let refused = payment(&app, &funds_gone["id"]).await;
    assert_eq!(refused["status"], "EXPIRED");
    assert_eq!(history_types(&refused).last().unwrap(), "PaymentExpired");
    // The new hold lasts another seven days; delivered within it, captured.
    app.clock
        .set(Utc.with_ymd_and_hms(2026, 3, 15, 9, 0, 0).unwrap());
    app.run_scheduler().await;
    assert_eq!(payment(&app, &created["id"]).await["status"], "AUTHORISED");
    app.graphql(
        "mutation($id: ID!) { declareDelivery(id: $id) { status } }",
        json!({ "id": created["id"] }),
    )
    .await;
    after_cut_off_of(&app, 15).await;
    assert_eq!(payment(&app, &created["id"]).await["status"], "CAPTURED");
    // Renewed once (the default `reauthorisations_max`), then it lapses for good.
    app.clock
        .set(Utc.with_ymd_and_hms(2026, 3, 16, 10, 0, 0).unwrap());
    app.run_scheduler().await;
    let lapsed = payment(&app, &never_delivered["id"]).await;
    assert_eq!(lapsed["status"], "EXPIRED");
    assert_eq!(
        history_types(&lapsed),
        ["PaymentAuthorised", "PaymentReauthorised", "PaymentExpired"]
    );
}

both_backends!(
    captured_at_shipping,
    super::a_payment_captured_at_shipping_waits_for_the_declaration
);
both_backends!(
    captured_at_delivery,
    super::a_payment_captured_at_delivery_waits_for_the_delivery
);
both_backends!(
    undeclared_shipment_expires,
    super::nothing_declared_before_the_validity_ends_expires_the_payment
);
mod reauthorisation {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite() {
        run(caisse_tests::Backend::Sqlite).await;
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres() {
        run(caisse_tests::Backend::Postgres).await;
    }
    async fn run(backend: caisse_tests::Backend) {
        let app = caisse_tests::spawn_app_with(backend, |config| {
            config.authorisation_validity.reauthorise_brands =
                vec![caisse_domain::card::CardBrand::Cb];
        })
        .await;
        if let Some(app) = app {
            super::configured_brands_are_reauthorised_instead_of_expiring(app).await;
        }
    }
}
both_backends!(
    deferred_within_validity,
    super::deferred_within_the_validity_is_authorised_now_and_captured_on_its_day
);
both_backends!(
    deferred_beyond_validity,
    super::deferred_beyond_the_validity_waits_then_is_authorised_the_day_before_capture
);
both_backends!(
    deferred_refused_later,
    super::a_deferred_authorisation_refused_later_is_recorded_as_refused
);
both_backends!(
    waiting_payment_cancel_modify,
    super::a_waiting_payment_can_be_cancelled_or_modified_before_its_authorisation
);
both_backends!(
    manual_deferred_lapses,
    super::a_manual_payment_authorised_late_waits_for_validation_then_lapses
);

async fn each_typology_shows_on_the_payment_and_in_the_list(app: TestApp) {
    let mut deferred = payment_input("12.00", "ORD-TYPO-DEFERRED");
    deferred["captureDelayDays"] = json!(3);
    let mut in_3 = payment_input("90.00", "ORD-TYPO-IN-3");
    in_3["plan"] = json!({ "kind": "PAY_IN_3" });
    let mut deposit = payment_input("100.00", "ORD-TYPO-DEPOSIT");
    deposit["plan"] = json!({ "kind": "DEPOSIT_AND_BALANCE", "deposit": "20.00" });
    let mut in_n = payment_input("50.00", "ORD-TYPO-IN-N");
    in_n["plan"] = json!({ "kind": "PAY_IN_N", "instalments": [
        { "amount": "10.00", "dueDate": "2026-03-02" },
        { "amount": "40.00", "dueDate": "2026-04-02" }
    ] });
    let cases = [
        (
            payment_input("11.00", "ORD-TYPO-AT-ORDER"),
            "PAY_AT_ORDER",
            "11.00",
        ),
        (deferred, "DEFERRED", "12.00"),
        (
            on("SHIPPING", "13.00", "ORD-TYPO-SHIPPING", ACCEPTED),
            "AT_SHIPPING",
            "13.00",
        ),
        (
            on("DELIVERY", "14.00", "ORD-TYPO-DELIVERY", ACCEPTED),
            "AT_DELIVERY",
            "14.00",
        ),
        (in_3, "PAY_IN_3", "30.00"),
        (deposit, "DEPOSIT_AND_BALANCE", "20.00"),
        (in_n, "PAY_IN_N", "10.00"),
    ];
    let query = "mutation($input: CreatePaymentInput!) { createPayment(input: $input) {
        id status amount typology planId instalmentNumber } }";
    for (input, typology, amount) in &cases {
        let response = app.graphql(query, json!({ "input": input })).await;
        let payment = &data(&response)["createPayment"];
        assert_eq!(payment["typology"], *typology, "{payment}");
        assert_eq!(payment["amount"], *amount, "{payment}");
        if typology.starts_with("PAY_IN") || *typology == "DEPOSIT_AND_BALANCE" {
            // Through createPayment, an instalment plan answers its first payment.
            assert_eq!(payment["instalmentNumber"], 1, "{payment}");
            let plan = app
                .graphql(
                    "query($id: ID!) { paymentPlan(id: $id) { kind instalments { status } } }",
                    json!({ "id": payment["planId"] }),
                )
                .await;
            assert_eq!(data(&plan)["paymentPlan"]["kind"], *typology);
        } else {
            assert_eq!(payment["planId"], Value::Null);
        }
    }
    // The list shows them too.
    let response = app
        .graphql(
            "{ payments(first: 50) { edges { node { orderReference typology } } } }",
            json!({}),
        )
        .await;
    let listed: Vec<(String, String)> = data(&response)["payments"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|edge| {
            (
                edge["node"]["orderReference"].as_str().unwrap().to_string(),
                edge["node"]["typology"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert!(
        listed.contains(&("ORD-TYPO-SHIPPING".into(), "AT_SHIPPING".into())),
        "{listed:?}"
    );
    assert!(
        listed.contains(&("ORD-TYPO-IN-3/1".into(), "PAY_IN_3".into())),
        "{listed:?}"
    );

    // A plan cannot be combined with another capture.
    let mut bad = payment_input("40.00", "ORD-TYPO-BAD");
    bad["plan"] = json!({ "kind": "PAY_IN_3" });
    bad["captureMode"] = json!("MANUAL");
    let response = app.graphql(query, json!({ "input": bad })).await;
    assert_eq!(caisse_tests::error_code(&response), "INVALID_PLAN");
    assert_eq!(response["errors"][0]["extensions"]["field"], "plan");
}

both_backends!(
    typology_visible,
    super::each_typology_shows_on_the_payment_and_in_the_list
);
