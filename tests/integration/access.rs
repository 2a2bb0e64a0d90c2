//! Who sees what: test and live keys are separate worlds, another merchant gets not-found for our ids and shop, and a missing or wrong API key gets HTTP 401.

use caisse_tests::{data, error_code, payment_input, TestApp, CREATE_PAYMENT};
use serde_json::{json, Value};

const PAYMENT: &str = "query($id: ID!) { payment(id: $id) { id status mode refusal { code } } }";
const PAYMENT_IDS: &str = "{ payments(first: 200) { edges { node { id } } } }";
const EVENT_AGGREGATES: &str = "{ events(first: 500) { events { aggregateId } } }";

async fn create_as(app: &TestApp, key: &str, input: Value) -> Value {
    let response = app
        .graphql_as(key, CREATE_PAYMENT, json!({ "input": input }))
        .await;
    data(&response)["createPayment"].clone()
}

async fn visible_payment_ids(app: &TestApp, key: &str) -> Vec<Value> {
    let response = app.graphql_as(key, PAYMENT_IDS, json!({})).await;
    data(&response)["payments"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|edge| edge["node"]["id"].clone())
        .collect()
}

async fn event_aggregates(app: &TestApp, key: &str) -> Vec<Value> {
    let response = app.graphql_as(key, EVENT_AGGREGATES, json!({})).await;
    data(&response)["events"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| event["aggregateId"].clone())
        .collect()
}

async fn read_as(app: &TestApp, key: &str, id: &Value) -> Value {
    app.graphql_as(key, PAYMENT, json!({ "id": id })).await
}

/// Every payment mutation on `id` with `key`; each must answer PAYMENT_NOT_FOUND.
async fn assert_mutations_not_found(app: &TestApp, key: &str, id: &Value) {
    let mutations = [
        ("mutation($id: ID!) { validatePayment(id: $id) { id } }", json!({ "id": id })),
        ("mutation($id: ID!) { cancelPayment(id: $id) { id } }", json!({ "id": id })),
        ("mutation($id: ID!) { modifyPayment(id: $id, amount: \"1.00\") { id } }", json!({ "id": id })),
        ("mutation($id: ID!) { modifyPayment(id: $id, captureDate: \"2026-03-20\") { id } }", json!({ "id": id })),
        ("mutation($id: ID!) { refundPayment(id: $id, amount: \"1.00\") { id } }", json!({ "id": id })),
        ("mutation($id: ID!) { duplicatePayment(id: $id, amount: \"1.00\", orderReference: \"DUP\") { id } }", json!({ "id": id })),
    ];
    for (mutation, variables) in mutations {
        let response = app.graphql_as(key, mutation, variables).await;
        assert_eq!(
            error_code(&response),
            "PAYMENT_NOT_FOUND",
            "{mutation}: {response}"
        );
        assert!(response["data"].is_null(), "no data leaks: {response}");
    }
}

async fn live_payments_are_refused_and_separate_from_test_payments(app: TestApp) {
    let live = create_as(&app, &app.live_key, payment_input("20.00", "ORD-LIVE")).await;
    assert_eq!(
        live["status"], "REFUSED",
        "live mode is never simulated: {live}"
    );
    assert_eq!(live["refusal"]["code"], "ACQUIRER_NOT_CONFIGURED");
    let test = app.create_payment(payment_input("30.00", "ORD-TEST")).await;
    assert_eq!(test["status"], "AUTHORISED");

    let read = read_as(&app, &app.live_key, &live["id"]).await;
    assert_eq!(data(&read)["payment"]["mode"], "LIVE");
    assert_eq!(
        data(&read)["payment"]["refusal"]["code"],
        "ACQUIRER_NOT_CONFIGURED"
    );
    let read = read_as(&app, &app.test_key, &test["id"]).await;
    assert_eq!(data(&read)["payment"]["mode"], "TEST");

    let response = read_as(&app, &app.test_key, &live["id"]).await;
    assert_eq!(
        error_code(&response),
        "PAYMENT_NOT_FOUND",
        "the test key never sees a live payment: {response}"
    );
    assert!(response["data"].is_null());
    let response = read_as(&app, &app.live_key, &test["id"]).await;
    assert_eq!(
        error_code(&response),
        "PAYMENT_NOT_FOUND",
        "the live key never sees a test payment: {response}"
    );

    assert_eq!(
        visible_payment_ids(&app, &app.test_key).await,
        vec![test["id"].clone()]
    );
    assert_eq!(
        visible_payment_ids(&app, &app.live_key).await,
        vec![live["id"].clone()]
    );
    assert_eq!(
        event_aggregates(&app, &app.test_key).await,
        vec![test["id"].clone()]
    );
    assert_eq!(
        event_aggregates(&app, &app.live_key).await,
        vec![live["id"].clone()]
    );

    // A filter naming the shop does not widen the mode.
    let response = app
        .graphql_as(
            &app.test_key,
            "query($shop: ID!) { payments(filter: { shopId: $shop, statuses: [REFUSED] }) { edges { node { id } } } }",
            json!({ "shop": app.shop_id }),
        )
        .await;
    assert_eq!(data(&response)["payments"]["edges"], json!([]));

    // The cash summary of each mode counts only its own payments.
    let summary =
        "query($shop: ID!) { cashSummary(shopId: $shop, from: \"2026-03-02\", to: \"2026-03-02\") {
        authorised { count amount } refused { count amount } } }";
    let response = app
        .graphql_as(&app.test_key, summary, json!({ "shop": app.shop_id }))
        .await;
    assert_eq!(
        data(&response)["cashSummary"],
        json!([{ "authorised": { "count": 1, "amount": "30.00" }, "refused": { "count": 0, "amount": "0.00" } }])
    );
    let response = app
        .graphql_as(&app.live_key, summary, json!({ "shop": app.shop_id }))
        .await;
    assert_eq!(
        data(&response)["cashSummary"],
        json!([{ "authorised": { "count": 0, "amount": "0.00" }, "refused": { "count": 1, "amount": "20.00" } }])
    );
}

async fn mutations_on_the_other_modes_payment_answer_payment_not_found(app: TestApp) {
    let live = create_as(&app, &app.live_key, payment_input("20.00", "ORD-LIVE")).await;
    let captured = app.captured_payment("40.00").await;
    let test = app.create_payment(payment_input("30.00", "ORD-TEST")).await;

    assert_mutations_not_found(&app, &app.test_key, &live["id"]).await;
    assert_mutations_not_found(&app, &app.live_key, &test["id"]).await;
    assert_mutations_not_found(&app, &app.live_key, &json!(captured)).await;
    // A well-formed id that exists nowhere answers the same.
    assert_mutations_not_found(
        &app,
        &app.test_key,
        &json!(caisse_domain::PaymentId::new().to_string()),
    )
    .await;

    // The live key's remittance does not capture test payments.
    let response = app
        .graphql_as(
            &app.live_key,
            "mutation($shop: ID!) { runRemittance(shopId: $shop) { id } }",
            json!({ "shop": app.shop_id }),
        )
        .await;
    assert_eq!(data(&response)["runRemittance"], json!([]));
    let response = read_as(&app, &app.test_key, &test["id"]).await;
    assert_eq!(
        data(&response)["payment"]["status"],
        "AUTHORISED",
        "untouched by the live key"
    );
    let response = read_as(&app, &app.test_key, &json!(captured)).await;
    assert_eq!(
        data(&response)["payment"]["status"],
        "CAPTURED",
        "not refunded by the live key"
    );
    let response = read_as(&app, &app.live_key, &live["id"]).await;
    assert_eq!(data(&response)["payment"]["status"], "REFUSED");

    let response = app
        .graphql_as(
            &app.live_key,
            "{ events(first: 500) { events { type } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        data(&response)["events"]["events"],
        json!([{ "type": "PaymentRefused" }]),
        "the failed attempts appended nothing"
    );
}

async fn another_merchant_gets_not_found_for_our_payments_shop_and_remittances(app: TestApp) {
    let other = app.other_merchant().await;
    let captured = app.captured_payment("22.00").await;
    let authorised = app.create_payment(payment_input("11.00", "ORD-OURS")).await;
    let remittance_id = {
        let response = app
            .graphql(
                "query($id: ID!) { payment(id: $id) { remittanceId } }",
                json!({ "id": captured }),
            )
            .await;
        data(&response)["payment"]["remittanceId"].clone()
    };
    let theirs = create_as(&app, &other.test_key, payment_input("5.00", "ORD-THEIRS")).await;

    for id in [&authorised["id"], &json!(captured)] {
        let response = read_as(&app, &other.test_key, id).await;
        assert_eq!(error_code(&response), "PAYMENT_NOT_FOUND", "{response}");
        assert!(response["data"].is_null());
        let response = read_as(&app, &other.live_key, id).await;
        assert_eq!(error_code(&response), "PAYMENT_NOT_FOUND", "{response}");
        assert_mutations_not_found(&app, &other.test_key, id).await;
    }
    // A foreign payment is indistinguishable from one that does not exist.
    let foreign = read_as(&app, &other.test_key, &authorised["id"]).await;
    let missing = read_as(
        &app,
        &other.test_key,
        &json!(caisse_domain::PaymentId::new().to_string()),
    )
    .await;
    assert_eq!(foreign, missing);
    let response = read_as(&app, &app.test_key, &theirs["id"]).await;
    assert_eq!(
        error_code(&response),
        "PAYMENT_NOT_FOUND",
        "and the other way round: {response}"
    );
    assert_mutations_not_found(&app, &app.test_key, &theirs["id"]).await;

    let response = app
        .graphql_as(
            &other.test_key,
            "query($id: ID!) { remittance(id: $id) { id payments { id } } }",
            json!({ "id": remittance_id }),
        )
        .await;
    assert_eq!(error_code(&response), "REMITTANCE_NOT_FOUND", "{response}");

    let shop_queries = [
        "query($shop: ID!) { cashSummary(shopId: $shop, from: \"2026-03-01\", to: \"2026-03-31\") { date } }",
        "query($shop: ID!) { remittances(shopId: $shop) { edges { node { id } } } }",
        "mutation($shop: ID!) { runRemittance(shopId: $shop) { id } }",
    ];
    for query in shop_queries {
        let response = app
            .graphql_as(&other.test_key, query, json!({ "shop": app.shop_id }))
            .await;
        assert_eq!(
            error_code(&response),
            "SHOP_NOT_FOUND",
            "{query}: {response}"
        );
        assert!(response["data"].is_null(), "{response}");
        let response = app
            .graphql_as(&app.test_key, query, json!({ "shop": other.shop_id }))
            .await;
        assert_eq!(
            error_code(&response),
            "SHOP_NOT_FOUND",
            "{query}: {response}"
        );
    }
    let response = app
        .graphql_as(
            &other.test_key,
            "query($shop: ID!) { payments(filter: { shopId: $shop }) { edges { node { id } } } }",
            json!({ "shop": app.shop_id }),
        )
        .await;
    assert_eq!(
        data(&response)["payments"]["edges"],
        json!([]),
        "a foreign shop filter yields nothing"
    );

    let response = app
        .graphql(
            "query($id: ID!) { payment(id: $id) { status } }",
            json!({ "id": authorised["id"] }),
        )
        .await;
    assert_eq!(
        data(&response)["payment"]["status"],
        "AUTHORISED",
        "their runRemittance on our shop captured nothing"
    );

    assert_eq!(
        visible_payment_ids(&app, &other.test_key).await,
        vec![theirs["id"].clone()]
    );
    assert_eq!(
        event_aggregates(&app, &other.test_key).await,
        vec![theirs["id"].clone()]
    );
    let ours = event_aggregates(&app, &app.test_key).await;
    assert!(!ours.contains(&theirs["id"]));
    assert!(
        ours.contains(&authorised["id"])
            && ours.contains(&json!(captured))
            && ours.contains(&remittance_id)
    );
}

async fn post_raw(app: &TestApp, authorization: Option<&str>, body: Value) -> (u16, Value) {
    let mut request = app
        .client
        .post(format!("{}/graphql", app.address))
        .json(&body);
    if let Some(authorization) = authorization {
        request = request.header("Authorization", authorization);
    }
    let response = request.send().await.expect("request sent");
    let status = response.status().as_u16();
    (status, response.json().await.expect("JSON error body"))
}

async fn a_missing_or_wrong_api_key_gets_http_401(app: TestApp) {
    app.create_payment(payment_input("10.00", "ORD-1")).await;
    let create = json!({ "query": CREATE_PAYMENT, "variables": { "input": payment_input("99.00", "ORD-UNAUTHENTICATED") } });
    let revoked_shape = format!("{}x", app.test_key);
    let authorizations = [
        None,
        Some("Bearer "),
        Some("Bearer"),
        Some("Basic dXNlcjpwYXNz"),
        Some("bearer sk_test_lowercase_scheme"),
        Some("Bearer sk_test_0000000000000000000000000000"),
        Some("Bearer sk_live_0000000000000000000000000000"),
        Some("Bearer pk_test_not_a_secret_key"),
        Some(revoked_shape.as_str()),
    ];
    for authorization in authorizations {
        let authorization = authorization.map(|a| {
            if a.starts_with("sk_") {
                format!("Bearer {a}")
            } else {
                a.to_string()
            }
        });
        let (status, body) = post_raw(&app, authorization.as_deref(), create.clone()).await;
        assert_eq!(status, 401, "{authorization:?}: {body}");
        assert_eq!(
            body["errors"][0]["extensions"]["code"], "UNAUTHENTICATED",
            "{authorization:?}: {body}"
        );
        assert!(body.get("data").is_none_or(Value::is_null), "{body}");
    }
    let (status, body) = post_raw(
        &app,
        Some(&format!(
            "Bearer {}",
            "sk_test_".to_string() + &"a".repeat(200)
        )),
        create.clone(),
    )
    .await;
    assert_eq!(
        (status, body["errors"][0]["extensions"]["code"].clone()),
        (401, json!("UNAUTHENTICATED"))
    );

    let (status, _) = post_raw(
        &app,
        Some(&format!("Bearer {}", app.test_key)),
        json!({ "query": PAYMENT_IDS }),
    )
    .await;
    assert_eq!(status, 200, "the right key still works");
    assert_eq!(
        visible_payment_ids(&app, &app.test_key).await.len(),
        1,
        "nothing was created without a key"
    );
}

caisse_tests::both_backends!(
    live_payments_are_refused_as_acquirer_not_configured_and_invisible_to_the_test_key,
    super::live_payments_are_refused_and_separate_from_test_payments
);
caisse_tests::both_backends!(
    mutations_on_the_other_modes_payment_answer_payment_not_found,
    super::mutations_on_the_other_modes_payment_answer_payment_not_found
);
caisse_tests::both_backends!(
    another_merchant_gets_not_found_for_our_payments_shop_and_remittances,
    super::another_merchant_gets_not_found_for_our_payments_shop_and_remittances
);
caisse_tests::both_backends!(
    a_missing_or_wrong_api_key_gets_http_401_unauthenticated,
    super::a_missing_or_wrong_api_key_gets_http_401
);
