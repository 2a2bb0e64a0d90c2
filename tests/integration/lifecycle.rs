//! The whole card payment lifecycle through GraphQL over HTTP: create, validate, modify, cancel, remittance, refund, duplicate, test cards, brand detection and the event history.

use caisse_tests::{data, error_code, payment_input, TestApp};
use serde_json::{json, Value};

const PAYMENT_FIELDS: &str =
    "id status mode amount authorisedAmount currency capturedAmount refundedAmount refundableAmount
    channel captureMode captureDate orderReference remittanceId duplicatedFrom duplicates
    card { brand networks bin lastFour expiryMonth expiryYear } refusal { code message }";

fn payment_query() -> String {
    format!("query($id: ID!) {{ payment(id: $id) {{ {PAYMENT_FIELDS} }} }}")
}

async fn read_payment(app: &TestApp, id: &Value) -> Value {
    let response = app.graphql(&payment_query(), json!({ "id": id })).await;
    data(&response)["payment"].clone()
}

/// Runs a mutation on one payment and returns the JSON response as is.
async fn mutate(app: &TestApp, mutation: &str, arguments: &str, variables: Value) -> Value {
    let query = format!("mutation($id: ID!{arguments}) {{ {mutation} {{ {PAYMENT_FIELDS} }} }}");
    app.graphql(&query, variables).await
}

async fn validate(app: &TestApp, id: &Value) -> Value {
    mutate(app, "validatePayment(id: $id)", "", json!({ "id": id })).await
}

async fn cancel(app: &TestApp, id: &Value) -> Value {
    mutate(app, "cancelPayment(id: $id)", "", json!({ "id": id })).await
}

async fn refund(app: &TestApp, id: &Value, amount: &str) -> Value {
    mutate(
        app,
        "refundPayment(id: $id, amount: $amount)",
        ", $amount: String!",
        json!({ "id": id, "amount": amount }),
    )
    .await
}

async fn modify(
    app: &TestApp,
    id: &Value,
    amount: Option<&str>,
    capture_date: Option<&str>,
) -> Value {
    mutate(
        app,
        "modifyPayment(id: $id, amount: $amount, captureDate: $date)",
        ", $amount: String, $date: String",
        json!({ "id": id, "amount": amount, "date": capture_date }),
    )
    .await
}

async fn duplicate(app: &TestApp, id: &Value, amount: &str, order_reference: &str) -> Value {
    mutate(
        app,
        "duplicatePayment(id: $id, amount: $amount, orderReference: $reference)",
        ", $amount: String!, $reference: String!",
        json!({ "id": id, "amount": amount, "reference": order_reference }),
    )
    .await
}

/// Runs the remittance and returns the remittances created, with their payments.
async fn remit(app: &TestApp) -> Vec<Value> {
    let response = app
        .graphql(
            "mutation($shop: ID!) { runRemittance(shopId: $shop) {
                id shopId mode currency businessDate paymentCount total bankStatus payments { id status capturedAmount }
            } }",
            json!({ "shop": app.shop_id }),
        )
        .await;
    data(&response)["runRemittance"]
        .as_array()
        .expect("a list of remittances")
        .clone()
}

fn input_with(amount: &str, reference: &str, changes: Value) -> Value {
    let mut input = payment_input(amount, reference);
    for (key, value) in changes.as_object().expect("an object of changes") {
        input[key] = value.clone();
    }
    input
}

fn card(number: &str, cvv: Option<&str>) -> Value {
    json!({ "number": number, "expiryMonth": 12, "expiryYear": 2030, "cvv": cvv, "holderName": "Jeanne Test" })
}

fn ids(payments: &Value) -> Vec<String> {
    let mut ids: Vec<String> = payments
        .as_array()
        .expect("a list")
        .iter()
        .map(|p| p["id"].as_str().expect("an id").to_string())
        .collect();
    ids.sort();
    ids
}

fn sorted(mut values: Vec<String>) -> Vec<String> {
    values.sort();
    values
}

fn id_of(payment: &Value) -> String {
    payment["id"].as_str().expect("payment id").to_string()
}

async fn every_channel_and_capture_mode_is_recorded(app: TestApp) {
    let channels = [
        "ECOMMERCE",
        "MCOMMERCE",
        "MOTO",
        "CALL_CENTER",
        "ERP",
        "IVR",
    ];
    for channel in channels.iter() {
        for mode in ["AUTOMATIC", "MANUAL"] {
            let reference = format!("ORD-{channel}-{mode}");
            let payment = app
                .create_payment(input_with(
                    "12.34",
                    &reference,
                    json!({ "channel": channel, "captureMode": mode }),
                ))
                .await;
            let expected_status = if mode == "AUTOMATIC" {
                "AUTHORISED"
            } else {
                "AUTHORISED_TO_VALIDATE"
            };
            assert_eq!(
                payment["status"], expected_status,
                "{channel} {mode}: {payment}"
            );
            assert_eq!(payment["channel"], *channel);
            assert_eq!(payment["captureMode"], mode);
            assert_eq!(
                payment["captureDate"], "2026-03-02",
                "captured at the next remittance by default"
            );
            let read = read_payment(&app, &payment["id"]).await;
            assert_eq!(read["status"], expected_status);
            assert_eq!(read["channel"], *channel);
            assert_eq!(read["captureMode"], mode);
            assert_eq!(read["orderReference"], reference);
            assert_eq!(read["mode"], "TEST");
            assert_eq!(read["amount"], "12.34");
            assert_eq!(read["refusal"], Value::Null);
            assert_eq!(read["card"]["lastFour"], "0006");
            assert_eq!(read["card"]["bin"], "497010");
        }
    }
    // Without a buyer online, no CVV is needed.
    for channel in ["MOTO", "CALL_CENTER", "ERP", "IVR"] {
        let payment = app
            .create_payment(input_with(
                "5.00",
                &format!("NOCVV-{channel}"),
                json!({ "channel": channel, "card": card("4970100000000006", None) }),
            ))
            .await;
        assert_eq!(
            payment["status"], "AUTHORISED",
            "{channel} without CVV: {payment}"
        );
    }
    // The default capture mode is AUTOMATIC.
    let mut input = payment_input("1.00", "ORD-DEFAULT");
    input.as_object_mut().unwrap().remove("captureMode");
    let payment = app.create_payment(input).await;
    assert_eq!(payment["captureMode"], "AUTOMATIC");
    assert_eq!(payment["status"], "AUTHORISED");
}

async fn validating_a_manual_payment_makes_it_capturable_and_only_once(app: TestApp) {
    let manual = app
        .create_payment(input_with(
            "40.00",
            "ORD-MANUAL",
            json!({ "captureMode": "MANUAL" }),
        ))
        .await;
    assert_eq!(manual["status"], "AUTHORISED_TO_VALIDATE");
    assert!(
        remit(&app).await.is_empty(),
        "an unvalidated manual payment is not captured"
    );
    assert_eq!(
        read_payment(&app, &manual["id"]).await["status"],
        "AUTHORISED_TO_VALIDATE"
    );

    let validated = validate(&app, &manual["id"]).await;
    let validated = &data(&validated)["validatePayment"];
    assert_eq!(validated["status"], "AUTHORISED");
    assert_eq!(
        read_payment(&app, &manual["id"]).await["status"],
        "AUTHORISED"
    );

    let again = validate(&app, &manual["id"]).await;
    assert_eq!(
        error_code(&again),
        "PAYMENT_NOT_AWAITING_VALIDATION",
        "{again}"
    );

    let automatic = app.create_payment(payment_input("10.00", "ORD-AUTO")).await;
    let response = validate(&app, &automatic["id"]).await;
    assert_eq!(
        error_code(&response),
        "PAYMENT_NOT_AWAITING_VALIDATION",
        "{response}"
    );

    let remittances = remit(&app).await;
    assert_eq!(remittances.len(), 1);
    assert_eq!(remittances[0]["paymentCount"], 2);
    assert_eq!(remittances[0]["total"], "50.00");
    assert_eq!(
        ids(&remittances[0]["payments"]),
        sorted(vec![id_of(&manual), id_of(&automatic)])
    );
    let captured = read_payment(&app, &manual["id"]).await;
    assert_eq!(captured["status"], "CAPTURED");
    assert_eq!(captured["capturedAmount"], "40.00");

    let late = validate(&app, &manual["id"]).await;
    assert_eq!(error_code(&late), "PAYMENT_ALREADY_REMITTED", "{late}");
}

async fn modifying_lowers_the_amount_or_moves_the_capture_date_but_never_raises_the_amount(
    app: TestApp,
) {
    let payment = app
        .create_payment(payment_input("100.00", "ORD-MODIFY"))
        .await;
    let id = &payment["id"];

    let lowered = modify(&app, id, Some("80.00"), None).await;
    let lowered = &data(&lowered)["modifyPayment"];
    assert_eq!(lowered["amount"], "80.00");
    assert_eq!(lowered["authorisedAmount"], "100.00");
    assert_eq!(lowered["status"], "AUTHORISED");

    for higher in ["150.00", "90.00", "80.01"] {
        let response = modify(&app, id, Some(higher), None).await;
        assert_eq!(
            error_code(&response),
            "MODIFY_AMOUNT_EXCEEDS_AUTHORISED",
            "{higher}: {response}"
        );
    }
    let response = modify(&app, id, None, Some("2026-03-01")).await;
    assert_eq!(error_code(&response), "CAPTURE_DATE_IN_PAST", "{response}");
    let response = modify(&app, id, None, None).await;
    assert_eq!(error_code(&response), "NOTHING_TO_MODIFY", "{response}");

    let moved = modify(&app, id, None, Some("2026-03-05")).await;
    let moved = &data(&moved)["modifyPayment"];
    assert_eq!(moved["captureDate"], "2026-03-05");
    assert_eq!(
        moved["amount"], "80.00",
        "moving the date keeps the lowered amount"
    );

    let read = read_payment(&app, id).await;
    assert_eq!(read["amount"], "80.00");
    assert_eq!(read["authorisedAmount"], "100.00");
    assert_eq!(read["captureDate"], "2026-03-05");

    assert!(
        remit(&app).await.is_empty(),
        "not due before its new capture date"
    );
    app.clock.advance(chrono::Duration::days(2));
    assert!(remit(&app).await.is_empty(), "still not due the day before");
    app.clock.advance(chrono::Duration::days(1));
    let remittances = remit(&app).await;
    assert_eq!(remittances.len(), 1);
    assert_eq!(
        remittances[0]["total"], "80.00",
        "the lowered amount is what is captured"
    );
    assert_eq!(remittances[0]["businessDate"], "2026-03-05");
    let read = read_payment(&app, id).await;
    assert_eq!(read["status"], "CAPTURED");
    assert_eq!(read["capturedAmount"], "80.00");
    assert_eq!(read["refundableAmount"], "80.00");

    let response = modify(&app, id, Some("10.00"), None).await;
    assert_eq!(
        error_code(&response),
        "PAYMENT_ALREADY_REMITTED",
        "{response}"
    );
}

async fn cancelling_works_before_remittance_and_is_refused_after(app: TestApp) {
    let to_cancel = app
        .create_payment(payment_input("25.00", "ORD-CANCEL"))
        .await;
    let to_capture = app.create_payment(payment_input("30.00", "ORD-KEEP")).await;
    let manual = app
        .create_payment(input_with(
            "7.00",
            "ORD-MANUAL-CANCEL",
            json!({ "captureMode": "MANUAL" }),
        ))
        .await;

    let cancelled = cancel(&app, &to_cancel["id"]).await;
    assert_eq!(data(&cancelled)["cancelPayment"]["status"], "CANCELLED");
    let cancelled = cancel(&app, &manual["id"]).await;
    assert_eq!(
        data(&cancelled)["cancelPayment"]["status"],
        "CANCELLED",
        "a payment waiting for validation can be cancelled"
    );
    assert_eq!(
        read_payment(&app, &to_cancel["id"]).await["status"],
        "CANCELLED"
    );

    let again = cancel(&app, &to_cancel["id"]).await;
    assert_eq!(error_code(&again), "PAYMENT_ALREADY_CANCELLED", "{again}");
    let response = validate(&app, &manual["id"]).await;
    assert_eq!(
        error_code(&response),
        "PAYMENT_ALREADY_CANCELLED",
        "{response}"
    );
    let response = modify(&app, &to_cancel["id"], Some("1.00"), None).await;
    assert_eq!(
        error_code(&response),
        "PAYMENT_ALREADY_CANCELLED",
        "{response}"
    );

    let remittances = remit(&app).await;
    assert_eq!(remittances.len(), 1);
    assert_eq!(
        ids(&remittances[0]["payments"]),
        vec![id_of(&to_capture)],
        "cancelled payments are never captured"
    );
    assert_eq!(
        read_payment(&app, &to_cancel["id"]).await["status"],
        "CANCELLED"
    );

    let late = cancel(&app, &to_capture["id"]).await;
    assert_eq!(error_code(&late), "PAYMENT_ALREADY_REMITTED", "{late}");
    assert_eq!(
        read_payment(&app, &to_capture["id"]).await["status"],
        "CAPTURED"
    );
}

async fn remittance_captures_only_due_payments_once_with_right_totals(app: TestApp) {
    let first = app.create_payment(payment_input("10.00", "ORD-A")).await;
    let second = app.create_payment(payment_input("20.55", "ORD-B")).await;
    let dollars = app
        .create_payment(input_with("3.10", "ORD-USD", json!({ "currency": "USD" })))
        .await;
    let yen = app
        .create_payment(input_with("1500", "ORD-JPY", json!({ "currency": "JPY" })))
        .await;
    let manual = app
        .create_payment(input_with(
            "99.00",
            "ORD-MANUAL",
            json!({ "captureMode": "MANUAL" }),
        ))
        .await;
    let deferred = app
        .create_payment(input_with(
            "42.00",
            "ORD-DEFERRED",
            json!({ "captureDelayDays": 3 }),
        ))
        .await;
    assert_eq!(deferred["captureDate"], "2026-03-05");
    let refused = app
        .create_payment(input_with(
            "5.00",
            "ORD-REFUSED",
            json!({ "card": card("4970100000000014", Some("123")) }),
        ))
        .await;
    assert_eq!(refused["status"], "REFUSED");

    let remittances = remit(&app).await;
    assert_eq!(
        remittances.len(),
        3,
        "one remittance per currency: {remittances:?}"
    );
    let by_currency = |currency: &str| {
        remittances
            .iter()
            .find(|r| r["currency"] == currency)
            .unwrap_or_else(|| panic!("no {currency} remittance"))
            .clone()
    };
    let eur = by_currency("EUR");
    assert_eq!(eur["paymentCount"], 2);
    assert_eq!(eur["total"], "30.55");
    assert_eq!(eur["businessDate"], "2026-03-02");
    assert_eq!(eur["shopId"], app.shop_id.as_str());
    assert_eq!(eur["mode"], "TEST");
    assert_eq!(eur["bankStatus"], "SUBMITTED");
    assert_eq!(
        ids(&eur["payments"]),
        sorted(vec![id_of(&first), id_of(&second)])
    );
    let usd = by_currency("USD");
    assert_eq!(
        (usd["paymentCount"].clone(), usd["total"].clone()),
        (json!(1), json!("3.10"))
    );
    let jpy = by_currency("JPY");
    assert_eq!(
        (jpy["paymentCount"].clone(), jpy["total"].clone()),
        (json!(1), json!("1500"))
    );
    assert_eq!(ids(&jpy["payments"]), vec![id_of(&yen)]);
    assert_eq!(ids(&usd["payments"]), vec![id_of(&dollars)]);

    for (payment, amount) in [
        (&first, "10.00"),
        (&second, "20.55"),
        (&dollars, "3.10"),
        (&yen, "1500"),
    ] {
        let read = read_payment(&app, &payment["id"]).await;
        assert_eq!(read["status"], "CAPTURED");
        assert_eq!(read["capturedAmount"], amount);
        assert!(read["remittanceId"].is_string());
    }
    assert_eq!(
        read_payment(&app, &first["id"]).await["remittanceId"],
        eur["id"]
    );
    assert_eq!(
        read_payment(&app, &manual["id"]).await["status"],
        "AUTHORISED_TO_VALIDATE"
    );
    assert_eq!(
        read_payment(&app, &deferred["id"]).await["status"],
        "AUTHORISED"
    );
    assert_eq!(
        read_payment(&app, &refused["id"]).await["status"],
        "REFUSED"
    );

    assert!(
        remit(&app).await.is_empty(),
        "running twice captures nothing twice"
    );

    app.clock.advance(chrono::Duration::days(3));
    let later = remit(&app).await;
    assert_eq!(later.len(), 1);
    assert_eq!(later[0]["paymentCount"], 1);
    assert_eq!(later[0]["total"], "42.00");
    assert_eq!(later[0]["businessDate"], "2026-03-05");
    assert_eq!(ids(&later[0]["payments"]), vec![id_of(&deferred)]);
    assert_eq!(
        read_payment(&app, &deferred["id"]).await["status"],
        "CAPTURED"
    );
    assert_eq!(
        read_payment(&app, &manual["id"]).await["status"],
        "AUTHORISED_TO_VALIDATE"
    );
    assert!(remit(&app).await.is_empty());

    let response = app
        .graphql(
            "query($id: ID!) { remittance(id: $id) { id currency paymentCount total payments { id capturedAmount } } }",
            json!({ "id": eur["id"] }),
        )
        .await;
    let remittance = &data(&response)["remittance"];
    assert_eq!(remittance["total"], "30.55");
    assert_eq!(remittance["paymentCount"], 2);
    assert_eq!(
        ids(&remittance["payments"]),
        sorted(vec![id_of(&first), id_of(&second)])
    );

    let response = app
        .graphql(
            "query($shop: ID!) { remittances(shopId: $shop) { edges { node { id } } } }",
            json!({ "shop": app.shop_id }),
        )
        .await;
    let edges = data(&response)["remittances"]["edges"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(
        edges.len(),
        4,
        "three on the first day, one three days later"
    );
}

async fn refunds_are_partial_or_full_and_never_exceed_the_capture(app: TestApp) {
    let not_captured = app
        .create_payment(payment_input("15.00", "ORD-NOT-CAPTURED"))
        .await;
    let payment = app
        .create_payment(payment_input("100.00", "ORD-REFUND"))
        .await;
    let lowered = app
        .create_payment(payment_input("100.00", "ORD-LOWERED"))
        .await;
    data(&modify(&app, &lowered["id"], Some("60.00"), None).await);

    let response = refund(&app, &not_captured["id"], "5.00").await;
    assert_eq!(error_code(&response), "PAYMENT_NOT_CAPTURED", "{response}");

    remit(&app).await;
    let response = cancel(&app, &not_captured["id"]).await;
    assert_eq!(
        error_code(&response),
        "PAYMENT_ALREADY_REMITTED",
        "captured in the meantime: {response}"
    );

    let id = &payment["id"];
    let partial = refund(&app, id, "30.00").await;
    let partial = &data(&partial)["refundPayment"];
    assert_eq!(partial["status"], "PARTIALLY_REFUNDED");
    assert_eq!(partial["refundedAmount"], "30.00");
    assert_eq!(partial["refundableAmount"], "70.00");
    assert_eq!(partial["capturedAmount"], "100.00");

    let response = refund(&app, id, "70.01").await;
    assert_eq!(
        error_code(&response),
        "REFUND_EXCEEDS_CAPTURED",
        "{response}"
    );
    let read = read_payment(&app, id).await;
    assert_eq!(
        read["refundedAmount"], "30.00",
        "a rejected refund changes nothing"
    );
    assert_eq!(read["status"], "PARTIALLY_REFUNDED");

    let full = refund(&app, id, "70").await;
    let full = &data(&full)["refundPayment"];
    assert_eq!(full["status"], "REFUNDED");
    assert_eq!(full["refundedAmount"], "100.00");
    assert_eq!(full["refundableAmount"], "0.00");
    let response = refund(&app, id, "0.01").await;
    assert_eq!(
        error_code(&response),
        "REFUND_EXCEEDS_CAPTURED",
        "{response}"
    );
    let read = read_payment(&app, id).await;
    assert_eq!(read["status"], "REFUNDED");
    assert_eq!(read["refundedAmount"], "100.00");

    // The limit is what was captured, not what was authorised.
    let response = refund(&app, &lowered["id"], "60.01").await;
    assert_eq!(
        error_code(&response),
        "REFUND_EXCEEDS_CAPTURED",
        "{response}"
    );
    let response = refund(&app, &lowered["id"], "60.00").await;
    assert_eq!(data(&response)["refundPayment"]["status"], "REFUNDED");

    // A single full refund in one go.
    let whole = app.captured_payment("12.00").await;
    let response = refund(&app, &json!(whole), "12.00").await;
    assert_eq!(data(&response)["refundPayment"]["status"], "REFUNDED");
}

async fn duplicating_links_both_payments_and_is_allowed_only_after_the_end_of_a_payment(
    app: TestApp,
) {
    let captured = app
        .create_payment(payment_input("50.00", "ORD-SOURCE"))
        .await;
    remit(&app).await;
    let cancelled = app
        .create_payment(payment_input("20.00", "ORD-CANCELLED"))
        .await;
    data(&cancel(&app, &cancelled["id"]).await);
    let refused = app
        .create_payment(input_with(
            "9.00",
            "ORD-REFUSED",
            json!({ "card": card("4970100000000022", Some("123")) }),
        ))
        .await;
    assert_eq!(refused["status"], "REFUSED");

    let copy = duplicate(&app, &captured["id"], "15.00", "ORD-DUP-1").await;
    let copy = data(&copy)["duplicatePayment"].clone();
    assert_ne!(copy["id"], captured["id"]);
    assert_eq!(copy["status"], "AUTHORISED");
    assert_eq!(copy["amount"], "15.00");
    assert_eq!(copy["orderReference"], "ORD-DUP-1");
    assert_eq!(copy["duplicatedFrom"], captured["id"]);
    assert_eq!(copy["card"]["lastFour"], "0006");
    assert_eq!(copy["card"]["brand"], "CB");
    assert_eq!(copy["channel"], "ECOMMERCE");

    let source = read_payment(&app, &captured["id"]).await;
    assert_eq!(source["duplicates"], json!([copy["id"]]));
    assert_eq!(
        source["status"], "CAPTURED",
        "duplicating leaves the source as it was"
    );
    let read_copy = read_payment(&app, &copy["id"]).await;
    assert_eq!(read_copy["duplicatedFrom"], captured["id"]);
    assert_eq!(read_copy["duplicates"], json!([]));

    let second = duplicate(&app, &captured["id"], "5.00", "ORD-DUP-2").await;
    let second = data(&second)["duplicatePayment"].clone();
    let source = read_payment(&app, &captured["id"]).await;
    assert_eq!(source["duplicates"], json!([copy["id"], second["id"]]));

    let from_cancelled = duplicate(&app, &cancelled["id"], "20.00", "ORD-DUP-CANCELLED").await;
    let from_cancelled = data(&from_cancelled)["duplicatePayment"].clone();
    assert_eq!(from_cancelled["status"], "AUTHORISED");
    assert_eq!(from_cancelled["duplicatedFrom"], cancelled["id"]);
    assert_eq!(
        read_payment(&app, &cancelled["id"]).await["duplicates"],
        json!([from_cancelled["id"]])
    );

    // The same card is declined again by the simulator, and that is recorded.
    let from_refused = duplicate(&app, &refused["id"], "9.00", "ORD-DUP-REFUSED").await;
    let from_refused = data(&from_refused)["duplicatePayment"].clone();
    assert_eq!(from_refused["status"], "REFUSED");
    assert_eq!(from_refused["refusal"]["code"], "51");
    assert_eq!(from_refused["duplicatedFrom"], refused["id"]);
    assert_eq!(
        read_payment(&app, &refused["id"]).await["duplicates"],
        json!([from_refused["id"]])
    );

    let response = duplicate(&app, &copy["id"], "1.00", "ORD-DUP-AUTHORISED").await;
    assert_eq!(
        error_code(&response),
        "PAYMENT_NOT_DUPLICABLE",
        "{response}"
    );
    let manual = app
        .create_payment(input_with(
            "3.00",
            "ORD-MANUAL",
            json!({ "captureMode": "MANUAL" }),
        ))
        .await;
    let response = duplicate(&app, &manual["id"], "1.00", "ORD-DUP-MANUAL").await;
    assert_eq!(
        error_code(&response),
        "PAYMENT_NOT_DUPLICABLE",
        "{response}"
    );
    assert_eq!(
        read_payment(&app, &copy["id"]).await["duplicates"],
        json!([]),
        "a refused duplication records nothing"
    );

    // The new payments are ordinary payments in the views: readable, listed, and
    // captured by the next remittance.
    for (payment, status) in [
        (&second, "AUTHORISED"),
        (&from_cancelled, "AUTHORISED"),
        (&from_refused, "REFUSED"),
        (&manual, "AUTHORISED_TO_VALIDATE"),
    ] {
        let read = read_payment(&app, &payment["id"]).await;
        assert_eq!(read["status"], status, "{read}");
        assert_eq!(read["id"], payment["id"]);
    }
    let response = app
        .graphql(
            "{ payments(first: 50, filter: { statuses: [AUTHORISED] }) { edges { node { id duplicatedFrom } } } }",
            json!({}),
        )
        .await;
    let listed = data(&response)["payments"]["edges"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(
        sorted(
            listed
                .iter()
                .map(|edge| edge["node"]["id"].as_str().unwrap().to_string())
                .collect()
        ),
        sorted(vec![id_of(&copy), id_of(&second), id_of(&from_cancelled)])
    );
    let remittances = remit(&app).await;
    assert_eq!(remittances.len(), 1);
    assert_eq!(remittances[0]["total"], "40.00");
    assert_eq!(
        ids(&remittances[0]["payments"]),
        sorted(vec![id_of(&copy), id_of(&second), id_of(&from_cancelled)])
    );
}

async fn each_test_card_gives_its_outcome(app: TestApp) {
    let outcomes = [
        ("4970100000000014", "05"),
        ("4970100000000022", "51"),
        ("4970100000000030", "54"),
        ("4970100000000048", "59"),
        ("4970100000000055", "96"),
        ("4970100000000063", "91"),
    ];
    for (number, code) in outcomes {
        let payment = app
            .create_payment(input_with(
                "11.00",
                &format!("ORD-{code}"),
                json!({ "card": card(number, Some("123")) }),
            ))
            .await;
        assert_eq!(payment["status"], "REFUSED", "{number}: {payment}");
        assert_eq!(payment["refusal"]["code"], code, "{number}: {payment}");
        assert!(!payment["refusal"]["message"].as_str().unwrap().is_empty());
        assert_eq!(payment["card"]["lastFour"], &number[12..]);
        let read = read_payment(&app, &payment["id"]).await;
        assert_eq!(read["status"], "REFUSED");
        assert_eq!(read["refusal"]["code"], code);
        let response = refund(&app, &payment["id"], "1.00").await;
        assert_eq!(error_code(&response), "PAYMENT_REFUSED", "{response}");
    }
    let accepted = app.create_payment(payment_input("11.00", "ORD-OK")).await;
    assert_eq!(accepted["status"], "AUTHORISED");
    assert_eq!(accepted["refusal"], Value::Null);
    assert!(
        remit(&app).await.len() == 1,
        "refused payments are never captured"
    );
}

async fn card_brands_are_detected_from_the_number(app: TestApp) {
    let cards = [
        ("4111111111111111", "123", "VISA", vec!["VISA"]),
        ("5555550000000002", "123", "MASTERCARD", vec!["MASTERCARD"]),
        ("2223000000000007", "123", "MASTERCARD", vec!["MASTERCARD"]),
        // AMEX numbers have 15 digits and a four-digit CVV.
        ("378282246310005", "1234", "AMEX", vec!["AMEX"]),
        ("3530110000000000", "123", "JCB", vec!["JCB"]),
        ("36000000000008", "123", "DINERS", vec!["DINERS"]),
        ("6036160000000007", "123", "COFINOGA", vec!["COFINOGA"]),
        ("4970100000000006", "123", "CB", vec!["CB", "VISA"]),
    ];
    for (number, cvv, brand, networks) in cards {
        let payment = app
            .create_payment(input_with(
                "8.00",
                &format!("ORD-{brand}"),
                json!({ "card": card(number, Some(cvv)) }),
            ))
            .await;
        assert_eq!(payment["status"], "AUTHORISED", "{number}: {payment}");
        assert_eq!(payment["card"]["brand"], brand, "{number}");
        assert_eq!(payment["card"]["networks"], json!(networks), "{number}");
        assert_eq!(payment["card"]["bin"], &number[..6]);
        assert_eq!(payment["card"]["lastFour"], &number[number.len() - 4..]);
        assert_eq!(
            read_payment(&app, &payment["id"]).await["card"]["brand"],
            brand
        );
    }

    let mut chosen = card("4970100000000006", Some("123"));
    chosen["brand"] = json!("VISA");
    let payment = app
        .create_payment(input_with(
            "8.00",
            "ORD-CHOSEN-VISA",
            json!({ "card": chosen }),
        ))
        .await;
    assert_eq!(
        payment["card"]["brand"], "VISA",
        "the buyer's choice on a co-badged card is used"
    );
    assert_eq!(payment["card"]["networks"], json!(["CB", "VISA"]));
    assert_eq!(
        read_payment(&app, &payment["id"]).await["card"]["brand"],
        "VISA"
    );

    let mut wrong = card("4970100000000006", Some("123"));
    wrong["brand"] = json!("MASTERCARD");
    let response = app
        .graphql(
            caisse_tests::CREATE_PAYMENT,
            json!({ "input": input_with("8.00", "ORD-WRONG", json!({ "card": wrong })) }),
        )
        .await;
    assert_eq!(error_code(&response), "BRAND_NOT_ON_CARD", "{response}");

    let response = app
        .graphql(
            caisse_tests::CREATE_PAYMENT,
            json!({ "input": input_with("8.00", "ORD-AMEX-3", json!({ "card": card("378282246310005", Some("123")) })) }),
        )
        .await;
    assert_eq!(
        error_code(&response),
        "INVALID_CVV",
        "AMEX wants four digits: {response}"
    );
}

async fn history_lists_every_event_in_order_with_its_actor_and_position(app: TestApp) {
    let payment = app
        .create_payment(payment_input("100.00", "ORD-HISTORY"))
        .await;
    let id = &payment["id"];
    app.clock.advance(chrono::Duration::minutes(5));
    data(&modify(&app, id, Some("80.00"), None).await);
    app.clock.advance(chrono::Duration::hours(1));
    remit(&app).await;
    app.clock.advance(chrono::Duration::days(1));
    data(&refund(&app, id, "30.00").await);
    data(&refund(&app, id, "50.00").await);
    let copy = duplicate(&app, id, "10.00", "ORD-HISTORY-DUP").await;
    let copy = data(&copy)["duplicatePayment"].clone();

    let response = app
        .graphql(
            "query($id: ID!) { payment(id: $id) { history { type sequence globalPosition actor amount currency occurredAt } } }",
            json!({ "id": id }),
        )
        .await;
    let history = data(&response)["payment"]["history"]
        .as_array()
        .unwrap()
        .clone();
    let types: Vec<&str> = history
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "PaymentAuthorised",
            "PaymentModified",
            "PaymentCaptured",
            "PaymentRefunded",
            "PaymentRefunded",
            "PaymentDuplicated"
        ]
    );
    let sequences: Vec<i64> = history
        .iter()
        .map(|e| e["sequence"].as_i64().unwrap())
        .collect();
    assert_eq!(sequences, [1, 2, 3, 4, 5, 6]);
    let amounts: Vec<&str> = history
        .iter()
        .map(|e| e["amount"].as_str().unwrap())
        .collect();
    assert_eq!(
        amounts,
        ["100.00", "80.00", "80.00", "30.00", "50.00", "10.00"]
    );
    assert!(history.iter().all(|e| e["currency"] == "EUR"));
    let occurred: Vec<&str> = history
        .iter()
        .map(|e| e["occurredAt"].as_str().unwrap())
        .collect();
    assert!(
        occurred[0].starts_with("2026-03-02T10:00:00"),
        "{occurred:?}"
    );
    assert!(
        occurred[1].starts_with("2026-03-02T10:05:00"),
        "{occurred:?}"
    );
    assert!(
        occurred[2].starts_with("2026-03-02T11:05:00"),
        "{occurred:?}"
    );
    assert!(
        occurred[3].starts_with("2026-03-03T11:05:00"),
        "{occurred:?}"
    );
    for event in &history {
        let actor = event["actor"]
            .as_str()
            .unwrap_or_else(|| panic!("no actor on {event}"));
        assert!(actor.starts_with("api_key:"), "{actor}");
        assert!(
            !actor.contains(&app.test_key),
            "the actor never shows the whole key"
        );
    }
    let positions: Vec<i64> = history
        .iter()
        .map(|e| e["globalPosition"].as_i64().unwrap())
        .collect();
    assert!(
        positions.windows(2).all(|pair| pair[0] < pair[1]),
        "global positions increase: {positions:?}"
    );

    let response = app
        .graphql(
            "query($id: ID!) { payment(id: $id) { history { type sequence amount } } }",
            json!({ "id": copy["id"] }),
        )
        .await;
    let copy_history = data(&response)["payment"]["history"].clone();
    assert_eq!(
        copy_history,
        json!([{ "type": "PaymentAuthorised", "sequence": 1, "amount": "10.00" }])
    );

    let refused = app
        .create_payment(input_with(
            "4.00",
            "ORD-HISTORY-REFUSED",
            json!({ "card": card("4970100000000048", Some("123")) }),
        ))
        .await;
    let response = app
        .graphql(
            "query($id: ID!) { payment(id: $id) { history { type amount } } }",
            json!({ "id": refused["id"] }),
        )
        .await;
    assert_eq!(
        data(&response)["payment"]["history"],
        json!([{ "type": "PaymentRefused", "amount": "4.00" }])
    );
}

caisse_tests::both_backends!(
    every_channel_and_capture_mode_is_recorded_on_the_payment,
    super::every_channel_and_capture_mode_is_recorded
);
caisse_tests::both_backends!(
    a_manual_payment_is_captured_only_after_validation_and_validates_once,
    super::validating_a_manual_payment_makes_it_capturable_and_only_once
);
caisse_tests::both_backends!(
    modify_lowers_the_amount_or_moves_the_capture_date_but_never_raises_the_amount,
    super::modifying_lowers_the_amount_or_moves_the_capture_date_but_never_raises_the_amount
);
caisse_tests::both_backends!(
    cancel_works_before_remittance_and_is_refused_after,
    super::cancelling_works_before_remittance_and_is_refused_after
);
caisse_tests::both_backends!(
    remittance_captures_only_due_payments_once_with_right_totals,
    super::remittance_captures_only_due_payments_once_with_right_totals
);
caisse_tests::both_backends!(
    refunds_are_partial_or_full_and_never_exceed_the_capture,
    super::refunds_are_partial_or_full_and_never_exceed_the_capture
);
caisse_tests::both_backends!(
    duplicating_links_both_payments_and_is_allowed_only_from_captured_cancelled_or_refused,
    super::duplicating_links_both_payments_and_is_allowed_only_after_the_end_of_a_payment
);
caisse_tests::both_backends!(
    each_test_card_gives_its_refusal_code,
    super::each_test_card_gives_its_outcome
);
caisse_tests::both_backends!(
    card_brands_are_detected_from_the_number,
    super::card_brands_are_detected_from_the_number
);
caisse_tests::both_backends!(
    history_lists_every_event_in_order_with_its_actor_and_position,
    super::history_lists_every_event_in_order_with_its_actor_and_position
);
