//! Bad input gets a specific error code (and field) and changes nothing: amounts, currencies, cards, references, contact data, malformed GraphQL and HTTP requests, ids and query depth.

use caisse_tests::{data, error_code, payment_input, TestApp, CREATE_PAYMENT};
use serde_json::{json, Value};

/// What a rejected request must leave as it was: the caller's log and payments.
async fn snapshot(app: &TestApp) -> (Value, Value) {
    let events = app
        .graphql(
            "{ events(first: 500) { events { globalPosition type } } }",
            json!({}),
        )
        .await;
    let payments = app
        .graphql(
            "{ payments(first: 200) { edges { node { id status amount refundedAmount } } } }",
            json!({}),
        )
        .await;
    (
        data(&events)["events"]["events"].clone(),
        data(&payments)["payments"]["edges"].clone(),
    )
}

fn input_with(changes: Value) -> Value {
    let mut input = payment_input("10.00", "ORD-VALID");
    for (key, value) in changes.as_object().expect("an object of changes") {
        input[key] = value.clone();
    }
    input
}

fn card_with(changes: Value) -> Value {
    let mut card = payment_input("1.00", "X")["card"].clone();
    for (key, value) in changes.as_object().expect("an object of changes") {
        card[key] = value.clone();
    }
    card
}

/// Sends a createPayment that must fail with `code` on `field`, and checks nothing changed.
async fn assert_create_rejected(app: &TestApp, input: Value, code: &str, field: &str) {
    let before = snapshot(app).await;
    let response = app.graphql(CREATE_PAYMENT, json!({ "input": input })).await;
    assert_eq!(error_code(&response), code, "{input}: {response}");
    assert_eq!(
        response["errors"][0]["extensions"]["field"], field,
        "{input}: {response}"
    );
    assert!(response["data"].is_null(), "{response}");
    assert_eq!(
        snapshot(app).await,
        before,
        "a rejected {input} changed something"
    );
}

/// Sends any request that must fail with `code`, and checks nothing changed.
async fn assert_rejected(app: &TestApp, query: &str, variables: Value, code: &str) -> Value {
    let before = snapshot(app).await;
    let response = app.graphql(query, variables.clone()).await;
    assert_eq!(
        error_code(&response),
        code,
        "{query} {variables}: {response}"
    );
    assert_eq!(
        snapshot(app).await,
        before,
        "a rejected {query} {variables} changed something"
    );
    response
}

async fn bad_amounts_and_currencies_get_their_code_and_change_nothing(app: TestApp) {
    app.create_payment(payment_input("1.00", "ORD-BASELINE"))
        .await;
    for currency in ["XYZ", "euro", "", "EU"] {
        assert_create_rejected(
            &app,
            input_with(json!({ "currency": currency })),
            "UNKNOWN_CURRENCY",
            "currency",
        )
        .await;
    }
    for (amount, currency) in [
        ("10.123", "EUR"),
        ("0.001", "EUR"),
        ("1500.5", "JPY"),
        ("1.0001", "KWD"),
        ("0.1", "CLP"),
    ] {
        assert_create_rejected(
            &app,
            input_with(json!({ "amount": amount, "currency": currency })),
            "AMOUNT_TOO_MANY_DECIMALS",
            "amount",
        )
        .await;
    }
    for amount in ["0", "0.00", "-5.00", "-0.01"] {
        assert_create_rejected(
            &app,
            input_with(json!({ "amount": amount })),
            "AMOUNT_NOT_POSITIVE",
            "amount",
        )
        .await;
    }
    for amount in [
        "abc", "1,50", "1e3", "", " ", "12.5.0", "€10", "10 EUR", "NaN", "0x10",
    ] {
        assert_create_rejected(
            &app,
            input_with(json!({ "amount": amount })),
            "INVALID_AMOUNT",
            "amount",
        )
        .await;
    }
    assert_create_rejected(
        &app,
        input_with(json!({ "amount": "1000000000" })),
        "AMOUNT_TOO_LARGE",
        "amount",
    )
    .await;

    // Amounts in JSON numbers are not money: the schema wants strings.
    let before = snapshot(&app).await;
    let response = app
        .graphql(
            CREATE_PAYMENT,
            json!({ "input": input_with(json!({ "amount": 10.5 })) }),
        )
        .await;
    assert_eq!(
        error_code(&response),
        "GRAPHQL_VALIDATION_FAILED",
        "{response}"
    );
    assert_eq!(snapshot(&app).await, before);

    // The boundaries that are fine.
    let yen = app
        .create_payment(input_with(json!({ "amount": "1500", "currency": "JPY" })))
        .await;
    assert_eq!(yen["amount"], "1500");
    let dinar = app
        .create_payment(input_with(json!({ "amount": "1.234", "currency": "KWD" })))
        .await;
    assert_eq!(dinar["amount"], "1.234");
    let trailing = app
        .create_payment(input_with(json!({ "amount": "12.500" })))
        .await;
    assert_eq!(
        trailing["amount"], "12.50",
        "trailing zeros are not extra decimals"
    );
}

async fn bad_cards_get_their_code_and_change_nothing(app: TestApp) {
    app.create_payment(payment_input("1.00", "ORD-BASELINE"))
        .await;
    let card_cases = [
        (
            json!({ "number": "4111111111111112" }),
            "CARD_LUHN_CHECK_FAILED",
            "card.number",
        ),
        (
            json!({ "number": "4970100000000007" }),
            "CARD_LUHN_CHECK_FAILED",
            "card.number",
        ),
        (
            json!({ "number": "4111" }),
            "INVALID_CARD_NUMBER",
            "card.number",
        ),
        (
            json!({ "number": "41111111111111111111" }),
            "INVALID_CARD_NUMBER",
            "card.number",
        ),
        (
            json!({ "number": "" }),
            "INVALID_CARD_NUMBER",
            "card.number",
        ),
        (
            json!({ "number": "4111-1111-1111-111a" }),
            "INVALID_CARD_NUMBER",
            "card.number",
        ),
        (
            json!({ "number": "6011000000000004" }),
            "CARD_BRAND_NOT_ACCEPTED",
            "card.number",
        ),
        (
            json!({ "expiryMonth": 2, "expiryYear": 2026 }),
            "CARD_EXPIRED",
            "card.expiryYear",
        ),
        (
            json!({ "expiryMonth": 12, "expiryYear": 2025 }),
            "CARD_EXPIRED",
            "card.expiryYear",
        ),
        (
            json!({ "expiryMonth": 12, "expiryYear": 25 }),
            "CARD_EXPIRED",
            "card.expiryYear",
        ),
        (
            json!({ "expiryMonth": 13, "expiryYear": 2030 }),
            "INVALID_CARD_EXPIRY",
            "card.expiryMonth",
        ),
        (
            json!({ "expiryMonth": 0, "expiryYear": 2030 }),
            "INVALID_CARD_EXPIRY",
            "card.expiryMonth",
        ),
        (
            json!({ "expiryMonth": -1, "expiryYear": 2030 }),
            "INVALID_CARD_EXPIRY",
            "card.expiryMonth",
        ),
        (
            json!({ "expiryMonth": 6, "expiryYear": 1999 }),
            "INVALID_CARD_EXPIRY",
            "card.expiryYear",
        ),
        (
            json!({ "expiryMonth": 6, "expiryYear": 30000 }),
            "INVALID_CARD_EXPIRY",
            "card.expiryYear",
        ),
        (json!({ "cvv": "12" }), "INVALID_CVV", "card.cvv"),
        (json!({ "cvv": "12a" }), "INVALID_CVV", "card.cvv"),
        (json!({ "cvv": "1234" }), "INVALID_CVV", "card.cvv"),
        (json!({ "cvv": "" }), "INVALID_CVV", "card.cvv"),
        (
            json!({ "brand": "AMEX" }),
            "BRAND_NOT_ON_CARD",
            "card.brand",
        ),
        (
            json!({ "holderName": "Jeanne 123456" }),
            "INVALID_HOLDER_NAME",
            "card.holderName",
        ),
    ];
    for (changes, code, field) in card_cases {
        assert_create_rejected(
            &app,
            input_with(json!({ "card": card_with(changes) })),
            code,
            field,
        )
        .await;
    }
    for channel in ["ECOMMERCE", "MCOMMERCE"] {
        assert_create_rejected(
            &app,
            input_with(json!({ "channel": channel, "card": card_with(json!({ "cvv": null })) })),
            "CVV_REQUIRED",
            "card.cvv",
        )
        .await;
    }
    // The card is valid through the end of its expiry month.
    let this_month = app
        .create_payment(input_with(
            json!({ "card": card_with(json!({ "expiryMonth": 3, "expiryYear": 2026 })) }),
        ))
        .await;
    assert_eq!(this_month["status"], "AUTHORISED");
    assert_eq!(this_month["card"]["expiryYear"], 2026);
    let spaced = app
        .create_payment(input_with(
            json!({ "card": card_with(json!({ "number": "4970 1000 0000 0006" })) }),
        ))
        .await;
    assert_eq!(
        spaced["card"]["lastFour"], "0006",
        "spaces in a typed number are fine"
    );
}

async fn bad_references_contacts_and_capture_delays_get_their_code_and_change_nothing(
    app: TestApp,
) {
    app.create_payment(payment_input("1.00", "ORD-BASELINE"))
        .await;
    let too_long = "R".repeat(65);
    for reference in ["", "   ", too_long.as_str(), "ORD\n1"] {
        assert_create_rejected(
            &app,
            input_with(json!({ "orderReference": reference })),
            "INVALID_ORDER_REFERENCE",
            "orderReference",
        )
        .await;
    }
    for email in [
        "not-an-email",
        "@example.com",
        "buyer@localhost",
        "bu yer@example.com",
    ] {
        assert_create_rejected(
            &app,
            input_with(json!({ "buyerEmail": email })),
            "INVALID_EMAIL",
            "buyerEmail",
        )
        .await;
    }
    for ip in ["999.1.1.1", "203.0.113", "localhost", "::g"] {
        assert_create_rejected(
            &app,
            input_with(json!({ "buyerIp": ip })),
            "INVALID_IP_ADDRESS",
            "buyerIp",
        )
        .await;
    }
    for days in [400, 366, -1] {
        assert_create_rejected(
            &app,
            input_with(json!({ "captureDelayDays": days })),
            "CAPTURE_DELAY_OUT_OF_RANGE",
            "captureDelayDays",
        )
        .await;
    }
    let last_day = app
        .create_payment(input_with(
            json!({ "captureDelayDays": 365, "buyerIp": "2001:db8::1" }),
        ))
        .await;
    assert_eq!(last_day["captureDate"], "2027-03-02");
    let reference = app
        .create_payment(input_with(json!({ "orderReference": "R".repeat(64) })))
        .await;
    assert_eq!(reference["status"], "AUTHORISED");
}

async fn bad_arguments_to_other_mutations_get_their_code_and_change_nothing(app: TestApp) {
    let captured = app.captured_payment("50.00").await;
    let authorised = app.create_payment(payment_input("20.00", "ORD-AUTH")).await;
    let refund =
        "mutation($id: ID!, $amount: String!) { refundPayment(id: $id, amount: $amount) { id } }";
    for (amount, code) in [
        ("abc", "INVALID_AMOUNT"),
        ("0", "AMOUNT_NOT_POSITIVE"),
        ("-1.00", "AMOUNT_NOT_POSITIVE"),
        ("1.001", "AMOUNT_TOO_MANY_DECIMALS"),
    ] {
        let response = assert_rejected(
            &app,
            refund,
            json!({ "id": captured, "amount": amount }),
            code,
        )
        .await;
        assert_eq!(
            response["errors"][0]["extensions"]["field"], "amount",
            "{response}"
        );
    }
    let modify = "mutation($id: ID!, $amount: String, $date: String) { modifyPayment(id: $id, amount: $amount, captureDate: $date) { id } }";
    assert_rejected(
        &app,
        modify,
        json!({ "id": authorised["id"], "amount": "0" }),
        "AMOUNT_NOT_POSITIVE",
    )
    .await;
    assert_rejected(
        &app,
        modify,
        json!({ "id": authorised["id"], "amount": "1.5.0" }),
        "INVALID_AMOUNT",
    )
    .await;
    assert_rejected(
        &app,
        modify,
        json!({ "id": authorised["id"], "date": "05/03/2026" }),
        "BAD_USER_INPUT",
    )
    .await;
    let duplicate = "mutation($id: ID!, $amount: String!, $reference: String!) {
        duplicatePayment(id: $id, amount: $amount, orderReference: $reference) { id } }";
    assert_rejected(
        &app,
        duplicate,
        json!({ "id": captured, "amount": "5.00", "reference": " " }),
        "INVALID_ORDER_REFERENCE",
    )
    .await;
    assert_rejected(
        &app,
        duplicate,
        json!({ "id": captured, "amount": "5.001", "reference": "DUP" }),
        "AMOUNT_TOO_MANY_DECIMALS",
    )
    .await;

    // Malformed ids are refused before anything is looked up.
    for id in [
        "garbage",
        "",
        "pay_",
        "pay_123",
        "shop_0190b5c2a3b47f3d9c1e2f3a4b5c6d7e",
    ] {
        for (mutation, variables) in [
            (
                "mutation($id: ID!) { validatePayment(id: $id) { id } }",
                json!({ "id": id }),
            ),
            (
                "mutation($id: ID!) { cancelPayment(id: $id) { id } }",
                json!({ "id": id }),
            ),
            (refund, json!({ "id": id, "amount": "1.00" })),
            (modify, json!({ "id": id, "amount": "1.00" })),
            (
                duplicate,
                json!({ "id": id, "amount": "1.00", "reference": "DUP" }),
            ),
        ] {
            let response = assert_rejected(&app, mutation, variables, "BAD_USER_INPUT").await;
            assert_eq!(
                response["errors"][0]["extensions"]["field"], "id",
                "{response}"
            );
        }
    }
    for shop in ["garbage", "pay_0190b5c2a3b47f3d9c1e2f3a4b5c6d7e"] {
        assert_rejected(
            &app,
            "mutation($shop: ID!) { runRemittance(shopId: $shop) { id } }",
            json!({ "shop": shop }),
            "BAD_USER_INPUT",
        )
        .await;
    }
}

async fn malformed_graphql_and_http_requests_are_rejected_and_change_nothing(app: TestApp) {
    app.create_payment(payment_input("1.00", "ORD-BASELINE"))
        .await;
    let before = snapshot(&app).await;

    // A required input field left out: a GraphQL validation error naming it.
    let mut missing = payment_input("10.00", "ORD-MISSING");
    missing.as_object_mut().unwrap().remove("amount");
    let response = app
        .graphql(CREATE_PAYMENT, json!({ "input": missing }))
        .await;
    let message = response["errors"][0]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("no error: {response}"));
    assert!(message.contains("amount"), "{message}");
    assert!(response["data"].is_null(), "{response}");
    assert_eq!(
        error_code(&response),
        "GRAPHQL_VALIDATION_FAILED",
        "{response}"
    );
    let response = app
        .graphql("mutation { createPayment(input: { currency: \"EUR\", orderReference: \"X\", channel: ECOMMERCE }) { id } }", json!({}))
        .await;
    let message = response["errors"][0]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("no error: {response}"));
    assert!(
        message.contains("amount") || message.contains("card"),
        "{message}"
    );
    assert_eq!(
        error_code(&response),
        "GRAPHQL_VALIDATION_FAILED",
        "{response}"
    );
    let response = app.graphql(CREATE_PAYMENT, json!({})).await;
    assert!(
        response["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("input")),
        "{response}"
    );
    assert_eq!(
        error_code(&response),
        "GRAPHQL_VALIDATION_FAILED",
        "{response}"
    );
    let response = app
        .graphql(
            "mutation { createPayment(input: { amount: \"1.00\" ",
            json!({}),
        )
        .await;
    assert_eq!(
        error_code(&response),
        "GRAPHQL_VALIDATION_FAILED",
        "a syntax error: {response}"
    );
    let response = app.graphql("{ paymentz { id } }", json!({})).await;
    assert_eq!(
        error_code(&response),
        "GRAPHQL_VALIDATION_FAILED",
        "an unknown field: {response}"
    );
    let response = app
        .graphql(
            CREATE_PAYMENT,
            json!({ "input": input_with(json!({ "channel": "CARRIER_PIGEON" })) }),
        )
        .await;
    assert_eq!(
        error_code(&response),
        "GRAPHQL_VALIDATION_FAILED",
        "an unknown enum value: {response}"
    );

    let url = format!("{}/graphql", app.address);
    let bearer = format!("Bearer {}", app.test_key);
    for body in ["{ not json", "", "[1, 2", "null", "\"query\""] {
        let response = app
            .client
            .post(&url)
            .header("Authorization", &bearer)
            .header("Content-Type", "application/json")
            .body(body)
            .send()
            .await
            .expect("request sent");
        assert_eq!(response.status().as_u16(), 400, "{body:?}");
        let json: Value = response.json().await.expect("JSON error body");
        assert_eq!(
            json["errors"][0]["extensions"]["code"], "MALFORMED_REQUEST",
            "{body:?}: {json}"
        );
    }

    // A body over 64 KiB is refused before it is parsed.
    let padding = "x".repeat(70 * 1024);
    let oversized = json!({ "query": CREATE_PAYMENT, "variables": { "input": input_with(json!({ "card": card_with(json!({ "holderName": padding })) })) } });
    let response = app
        .client
        .post(&url)
        .header("Authorization", &bearer)
        .json(&oversized)
        .send()
        .await
        .expect("request sent");
    assert_eq!(response.status().as_u16(), 413);
    let json: Value = response.json().await.expect("JSON error body");
    assert_eq!(
        json["errors"][0]["extensions"]["code"], "PAYLOAD_TOO_LARGE",
        "{json}"
    );
    // Just under the limit it is a normal request (here refused for its holder name).
    let padding = "x".repeat(60 * 1024);
    let large = json!({ "query": CREATE_PAYMENT, "variables": { "input": input_with(json!({ "card": card_with(json!({ "holderName": padding })) })) } });
    let response = app
        .client
        .post(&url)
        .header("Authorization", &bearer)
        .json(&large)
        .send()
        .await
        .expect("request sent");
    assert_eq!(response.status().as_u16(), 200);
    let json: Value = response.json().await.expect("JSON body");
    assert_eq!(error_code(&json), "INVALID_HOLDER_NAME");

    assert_eq!(
        snapshot(&app).await,
        before,
        "no malformed request changed anything"
    );
}

async fn too_deep_or_complex_queries_are_rejected(app: TestApp) {
    let payment = app.create_payment(payment_input("1.00", "ORD-1")).await;
    // The deepest real query is well within the limits.
    let response = app
        .graphql(
            "query($shop: ID!) { remittances(shopId: $shop) { edges { node { payments { history { type } card { brand } } } } } }",
            json!({ "shop": app.shop_id }),
        )
        .await;
    data(&response);

    let mut deep = String::from("name");
    for _ in 0..15 {
        deep = format!("ofType {{ {deep} }}");
    }
    let query = format!("{{ __type(name: \"Payment\") {{ fields {{ type {{ {deep} }} }} }} }}");
    let response = app.graphql(&query, json!({})).await;
    let message = response["errors"][0]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("not rejected: {response}"));
    assert!(message.to_lowercase().contains("deep"), "{message}");
    assert_eq!(
        error_code(&response),
        "GRAPHQL_VALIDATION_FAILED",
        "{response}"
    );
    assert!(response["data"].is_null(), "{response}");

    // Many aliases of a costly field exceed the complexity limit.
    let aliases: String = (0..300)
        .map(|i| {
            format!("p{i}: payment(id: $id) {{ id status amount currency history {{ type }} }} ")
        })
        .collect();
    let response = app
        .graphql(
            &format!("query($id: ID!) {{ {aliases} }}"),
            json!({ "id": payment["id"] }),
        )
        .await;
    let message = response["errors"][0]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("not rejected: {response}"));
    assert!(message.to_lowercase().contains("complex"), "{message}");
    assert_eq!(
        error_code(&response),
        "GRAPHQL_VALIDATION_FAILED",
        "{response}"
    );
    assert!(response["data"].is_null(), "{response}");
}

caisse_tests::both_backends!(
    bad_amounts_and_currencies_get_their_code_and_change_nothing,
    super::bad_amounts_and_currencies_get_their_code_and_change_nothing
);
caisse_tests::both_backends!(
    bad_cards_get_their_code_and_change_nothing,
    super::bad_cards_get_their_code_and_change_nothing
);
caisse_tests::both_backends!(
    bad_references_contacts_and_capture_delays_get_their_code_and_change_nothing,
    super::bad_references_contacts_and_capture_delays_get_their_code_and_change_nothing
);
caisse_tests::both_backends!(
    bad_arguments_to_other_mutations_and_malformed_ids_get_their_code_and_change_nothing,
    super::bad_arguments_to_other_mutations_get_their_code_and_change_nothing
);
caisse_tests::both_backends!(
    malformed_graphql_and_http_requests_are_rejected_and_change_nothing,
    super::malformed_graphql_and_http_requests_are_rejected_and_change_nothing
);
caisse_tests::both_backends!(
    too_deep_or_complex_queries_are_rejected,
    super::too_deep_or_complex_queries_are_rejected
);
