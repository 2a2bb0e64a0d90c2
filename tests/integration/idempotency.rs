//! The `Idempotency-Key` header on mutations: a repeat returns the first result and appends nothing, a reused key with another request is an error, keys are scoped per merchant and mode, concurrent repeats make one payment, and bad keys are refused.

use caisse_tests::{data, error_code, payment_input, TestApp, CREATE_PAYMENT};
use serde_json::{json, Value};

const REFUND: &str = "mutation($id: ID!, $amount: String!) {
  refundPayment(id: $id, amount: $amount) { id status capturedAmount refundedAmount refundableAmount }
}";

/// How many events the key's caller sees in the log.
async fn event_count(app: &TestApp, key: &str) -> usize {
    let response = app
        .graphql_as(
            key,
            "{ events(first: 500) { events { globalPosition } hasNextPage } }",
            json!({}),
        )
        .await;
    let events = &data(&response)["events"];
    assert_eq!(events["hasNextPage"], false);
    events["events"].as_array().unwrap().len()
}

async fn payment_count(app: &TestApp, key: &str) -> usize {
    let response = app
        .graphql_as(
            key,
            "{ payments(first: 200) { edges { node { id } } } }",
            json!({}),
        )
        .await;
    data(&response)["payments"]["edges"]
        .as_array()
        .unwrap()
        .len()
}

async fn create_with(app: &TestApp, key: &str, idempotency_key: &str, input: Value) -> Value {
    app.graphql_with(
        key,
        Some(idempotency_key),
        CREATE_PAYMENT,
        json!({ "input": input }),
    )
    .await
}

async fn repeating_a_create_returns_the_same_payment_and_appends_nothing(app: TestApp) {
    let input = payment_input("49.90", "ORD-IDEM");
    let first = create_with(&app, &app.test_key, "idem-1", input.clone()).await;
    let first = data(&first)["createPayment"].clone();
    assert_eq!(first["status"], "AUTHORISED");
    let events = event_count(&app, &app.test_key).await;
    assert_eq!(events, 1);

    for _ in 0..3 {
        let again = create_with(&app, &app.test_key, "idem-1", input.clone()).await;
        assert_eq!(
            data(&again)["createPayment"],
            first,
            "a repeat returns the first result, field for field"
        );
    }
    assert_eq!(
        event_count(&app, &app.test_key).await,
        events,
        "a repeat appends nothing"
    );
    assert_eq!(payment_count(&app, &app.test_key).await, 1);

    // Without a key, the same request is a new payment.
    let other = app.create_payment(input.clone()).await;
    assert_ne!(other["id"], first["id"]);
    assert_eq!(payment_count(&app, &app.test_key).await, 2);

    // The first result, even after the payment moved on.
    app.run_remittance().await;
    let again = create_with(&app, &app.test_key, "idem-1", input.clone()).await;
    let again = data(&again)["createPayment"].clone();
    assert_eq!(again["id"], first["id"]);
    assert_eq!(
        again["status"], "AUTHORISED",
        "the result recorded for the key, not the current state"
    );
    let response = app
        .graphql(
            "query($id: ID!) { payment(id: $id) { status } }",
            json!({ "id": first["id"] }),
        )
        .await;
    assert_eq!(data(&response)["payment"]["status"], "CAPTURED");

    // A refused payment is replayed as refused, without a second authorisation.
    let mut refused_input = payment_input("5.00", "ORD-REFUSED");
    refused_input["card"]["number"] = json!("4970100000000014");
    let refused = create_with(&app, &app.test_key, "idem-refused", refused_input.clone()).await;
    let refused = data(&refused)["createPayment"].clone();
    assert_eq!(refused["status"], "REFUSED");
    let events = event_count(&app, &app.test_key).await;
    let again = create_with(&app, &app.test_key, "idem-refused", refused_input).await;
    assert_eq!(data(&again)["createPayment"], refused);
    assert_eq!(event_count(&app, &app.test_key).await, events);
}

async fn the_same_key_with_another_request_is_rejected_as_reused(app: TestApp) {
    let first = create_with(
        &app,
        &app.test_key,
        "idem-1",
        payment_input("10.00", "ORD-1"),
    )
    .await;
    let first = data(&first)["createPayment"].clone();
    let events = event_count(&app, &app.test_key).await;

    for changed in [
        payment_input("10.01", "ORD-1"),
        payment_input("10.00", "ORD-2"),
    ] {
        let response = create_with(&app, &app.test_key, "idem-1", changed.clone()).await;
        assert_eq!(
            error_code(&response),
            "IDEMPOTENCY_KEY_REUSED",
            "{changed}: {response}"
        );
        assert!(response["data"].is_null());
    }
    // The key belongs to that createPayment: another operation cannot use it either.
    let response = app
        .graphql_with(
            &app.test_key,
            Some("idem-1"),
            "mutation($id: ID!) { cancelPayment(id: $id) { id status } }",
            json!({ "id": first["id"] }),
        )
        .await;
    assert_eq!(
        error_code(&response),
        "IDEMPOTENCY_KEY_REUSED",
        "{response}"
    );
    assert_eq!(
        event_count(&app, &app.test_key).await,
        events,
        "nothing appended by a reused key"
    );
    let response = app
        .graphql(
            "query($id: ID!) { payment(id: $id) { status } }",
            json!({ "id": first["id"] }),
        )
        .await;
    assert_eq!(
        data(&response)["payment"]["status"],
        "AUTHORISED",
        "not cancelled"
    );

    // A request that was rejected did not consume its key.
    let response = create_with(
        &app,
        &app.test_key,
        "idem-2",
        payment_input("10.001", "ORD-3"),
    )
    .await;
    assert_eq!(error_code(&response), "AMOUNT_TOO_MANY_DECIMALS");
    let response = create_with(
        &app,
        &app.test_key,
        "idem-2",
        payment_input("10.00", "ORD-3"),
    )
    .await;
    assert_eq!(data(&response)["createPayment"]["status"], "AUTHORISED");

    // Repeating a cancel with its key returns the cancelled payment, not an error.
    let cancel = "mutation($id: ID!) { cancelPayment(id: $id) { id status } }";
    let cancelled = app
        .graphql_with(
            &app.test_key,
            Some("cancel-1"),
            cancel,
            json!({ "id": first["id"] }),
        )
        .await;
    assert_eq!(data(&cancelled)["cancelPayment"]["status"], "CANCELLED");
    let events = event_count(&app, &app.test_key).await;
    let again = app
        .graphql_with(
            &app.test_key,
            Some("cancel-1"),
            cancel,
            json!({ "id": first["id"] }),
        )
        .await;
    assert_eq!(
        data(&again)["cancelPayment"],
        data(&cancelled)["cancelPayment"]
    );
    assert_eq!(event_count(&app, &app.test_key).await, events);
    let without_key = app.graphql(cancel, json!({ "id": first["id"] })).await;
    assert_eq!(error_code(&without_key), "PAYMENT_ALREADY_CANCELLED");
}

async fn keys_are_independent_between_merchants_and_modes(app: TestApp) {
    let other = app.other_merchant().await;
    let input = payment_input("10.00", "ORD-SHARED");
    let ours = create_with(&app, &app.test_key, "idem-1", input.clone()).await;
    let ours = data(&ours)["createPayment"].clone();
    let theirs = create_with(&app, &other.test_key, "idem-1", input.clone()).await;
    let theirs = data(&theirs)["createPayment"].clone();
    assert_ne!(
        theirs["id"], ours["id"],
        "the same key string of another merchant is another request"
    );
    assert_eq!(theirs["status"], "AUTHORISED");
    let theirs_different = create_with(
        &app,
        &other.test_key,
        "idem-2",
        payment_input("99.00", "ORD-THEIRS"),
    )
    .await;
    data(&theirs_different);
    let live = create_with(&app, &app.live_key, "idem-1", input.clone()).await;
    let live = data(&live)["createPayment"].clone();
    assert_ne!(
        live["id"], ours["id"],
        "and so is the same key in live mode"
    );
    assert_eq!(live["status"], "REFUSED");

    // Each one still replays its own.
    let again = create_with(&app, &app.test_key, "idem-1", input.clone()).await;
    assert_eq!(data(&again)["createPayment"]["id"], ours["id"]);
    let again = create_with(&app, &other.test_key, "idem-1", input.clone()).await;
    assert_eq!(data(&again)["createPayment"]["id"], theirs["id"]);
    // Our "idem-2" is still free although the other merchant used it.
    let fresh = create_with(
        &app,
        &app.test_key,
        "idem-2",
        payment_input("1.00", "ORD-FRESH"),
    )
    .await;
    assert_eq!(data(&fresh)["createPayment"]["status"], "AUTHORISED");

    assert_eq!(payment_count(&app, &app.test_key).await, 2);
    assert_eq!(payment_count(&app, &other.test_key).await, 2);
    assert_eq!(payment_count(&app, &app.live_key).await, 1);
}

async fn repeating_a_refund_with_its_key_refunds_once(app: TestApp) {
    let id = app.captured_payment("100.00").await;
    let first = app
        .graphql_with(
            &app.test_key,
            Some("refund-1"),
            REFUND,
            json!({ "id": id, "amount": "30.00" }),
        )
        .await;
    let first = data(&first)["refundPayment"].clone();
    assert_eq!(first["status"], "PARTIALLY_REFUNDED");
    assert_eq!(first["refundedAmount"], "30.00");
    let events = event_count(&app, &app.test_key).await;

    for _ in 0..3 {
        let again = app
            .graphql_with(
                &app.test_key,
                Some("refund-1"),
                REFUND,
                json!({ "id": id, "amount": "30.00" }),
            )
            .await;
        assert_eq!(data(&again)["refundPayment"], first);
    }
    assert_eq!(
        event_count(&app, &app.test_key).await,
        events,
        "refunded once"
    );
    let read = app
        .graphql(
            "query($id: ID!) { payment(id: $id) { refundedAmount history { type } } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(data(&read)["payment"]["refundedAmount"], "30.00");
    let refunds = data(&read)["payment"]["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "PaymentRefunded")
        .count();
    assert_eq!(refunds, 1);

    // A new key is a new refund; the old key still answers with its own result.
    let second = app
        .graphql_with(
            &app.test_key,
            Some("refund-2"),
            REFUND,
            json!({ "id": id, "amount": "30.00" }),
        )
        .await;
    assert_eq!(data(&second)["refundPayment"]["refundedAmount"], "60.00");
    let again = app
        .graphql_with(
            &app.test_key,
            Some("refund-1"),
            REFUND,
            json!({ "id": id, "amount": "30.00" }),
        )
        .await;
    assert_eq!(data(&again)["refundPayment"], first);
    let response = app
        .graphql_with(
            &app.test_key,
            Some("refund-1"),
            REFUND,
            json!({ "id": id, "amount": "31.00" }),
        )
        .await;
    assert_eq!(error_code(&response), "IDEMPOTENCY_KEY_REUSED");

    // A refund rejected for its amount does not consume the key.
    let response = app
        .graphql_with(
            &app.test_key,
            Some("refund-3"),
            REFUND,
            json!({ "id": id, "amount": "50.00" }),
        )
        .await;
    assert_eq!(error_code(&response), "REFUND_EXCEEDS_CAPTURED");
    let response = app
        .graphql_with(
            &app.test_key,
            Some("refund-3"),
            REFUND,
            json!({ "id": id, "amount": "40.00" }),
        )
        .await;
    assert_eq!(data(&response)["refundPayment"]["status"], "REFUNDED");
    let read = app
        .graphql(
            "query($id: ID!) { payment(id: $id) { refundedAmount status } }",
            json!({ "id": id }),
        )
        .await;
    assert_eq!(
        data(&read)["payment"],
        json!({ "refundedAmount": "100.00", "status": "REFUNDED" })
    );
}

async fn concurrent_creates_with_the_same_key_make_exactly_one_payment(app: TestApp) {
    let events_before = event_count(&app, &app.test_key).await;
    let body = json!({ "query": CREATE_PAYMENT, "variables": { "input": payment_input("77.00", "ORD-CONCURRENT") } });
    let url = format!("{}/graphql", app.address);
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let client = app.client.clone();
            let (url, body, key) = (url.clone(), body.clone(), app.test_key.clone());
            tokio::spawn(async move {
                let response = client
                    .post(url)
                    .bearer_auth(key)
                    .header("Idempotency-Key", "idem-concurrent")
                    .json(&body)
                    .send()
                    .await
                    .expect("request sent");
                let status = response.status().as_u16();
                (
                    status,
                    response.json::<Value>().await.expect("JSON response"),
                )
            })
        })
        .collect();
    let responses: Vec<(u16, Value)> = futures::future::join_all(tasks)
        .await
        .into_iter()
        .map(|result| result.expect("task"))
        .collect();
    for (status, response) in &responses {
        assert_eq!(*status, 200, "{response}");
        assert!(
            response.get("errors").is_none(),
            "every concurrent repeat gets the first result, not an error: {response}"
        );
    }
    let ids: std::collections::HashSet<&str> = responses
        .iter()
        .map(|(_, response)| response["data"]["createPayment"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids.len(),
        1,
        "all ten responses carry the same payment: {ids:?}"
    );
    assert_eq!(
        payment_count(&app, &app.test_key).await,
        1,
        "exactly one payment"
    );
    assert_eq!(
        event_count(&app, &app.test_key).await,
        events_before + 1,
        "exactly one event"
    );
    let again = create_with(
        &app,
        &app.test_key,
        "idem-concurrent",
        payment_input("77.00", "ORD-CONCURRENT"),
    )
    .await;
    assert_eq!(
        data(&again)["createPayment"]["id"],
        *ids.iter().next().unwrap()
    );
}

async fn invalid_idempotency_keys_are_refused_with_http_400(app: TestApp) {
    let url = format!("{}/graphql", app.address);
    let body = json!({ "query": CREATE_PAYMENT, "variables": { "input": payment_input("10.00", "ORD-KEY") } });
    for key in [
        "k".repeat(300),
        "k".repeat(256),
        String::new(),
        "has space".to_string(),
        "tab\there".to_string(),
    ] {
        let response = app
            .client
            .post(&url)
            .bearer_auth(&app.test_key)
            .header("Idempotency-Key", key.as_str())
            .json(&body)
            .send()
            .await
            .expect("request sent");
        assert_eq!(
            response.status().as_u16(),
            400,
            "key of {} characters",
            key.len()
        );
        let json: Value = response.json().await.expect("JSON error body");
        assert_eq!(
            json["errors"][0]["extensions"]["code"], "INVALID_IDEMPOTENCY_KEY",
            "{json}"
        );
    }
    assert_eq!(
        payment_count(&app, &app.test_key).await,
        0,
        "nothing created"
    );

    let longest = "k".repeat(255);
    let first = create_with(
        &app,
        &app.test_key,
        &longest,
        payment_input("10.00", "ORD-KEY"),
    )
    .await;
    let again = create_with(
        &app,
        &app.test_key,
        &longest,
        payment_input("10.00", "ORD-KEY"),
    )
    .await;
    assert_eq!(
        data(&first)["createPayment"],
        data(&again)["createPayment"],
        "255 characters are fine"
    );
    assert_eq!(payment_count(&app, &app.test_key).await, 1);
}

caisse_tests::both_backends!(
    repeating_a_create_with_the_same_key_returns_the_same_payment_and_appends_nothing,
    super::repeating_a_create_returns_the_same_payment_and_appends_nothing
);
caisse_tests::both_backends!(
    the_same_key_with_another_request_is_rejected_as_reused,
    super::the_same_key_with_another_request_is_rejected_as_reused
);
caisse_tests::both_backends!(
    keys_are_independent_between_merchants_and_modes,
    super::keys_are_independent_between_merchants_and_modes
);
caisse_tests::both_backends!(
    repeating_a_refund_with_its_key_refunds_once,
    super::repeating_a_refund_with_its_key_refunds_once
);
caisse_tests::both_backends!(
    concurrent_creates_with_the_same_key_make_exactly_one_payment,
    super::concurrent_creates_with_the_same_key_make_exactly_one_payment
);
caisse_tests::both_backends!(
    an_invalid_idempotency_key_is_refused_with_http_400,
    super::invalid_idempotency_keys_are_refused_with_http_400
);

/// Two `caisse serve` processes on one PostgreSQL database: the same key sent to
/// both at once makes one payment, and the card is vaulted (and so authorised)
/// once — the second request waits for the first and replays it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_key_sent_to_two_servers_on_one_database_authorises_once() {
    let Some(app) = caisse_tests::spawn_app(caisse_tests::Backend::Postgres).await else {
        return;
    };
    let config = caisse_infrastructure::Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        database_url: Some(caisse_infrastructure::config::Secret::new(
            app.database_url.clone(),
        )),
        data_dir: app.data_dir.path().to_path_buf(),
        ..caisse_infrastructure::Config::default()
    };
    let second = caisse_api::Application::build_with_clock(config, app.clock.clone())
        .await
        .expect("second server");
    let second_address = format!("http://127.0.0.1:{}", second.port());
    let second_state = second.state();
    let server = tokio::spawn(async move {
        let _ = second.run_until_stopped().await;
    });

    for round in 0..5 {
        let key = format!("two-servers-{round}");
        // The timeout test card makes the simulated acquirer answer after 200 ms,
        // so without a lock shared by the servers both would be inside it at once.
        let mut input = payment_input("15.00", &format!("ORD-TWO-{round}"));
        input["card"]["number"] = json!("4970100000000063");
        let body =
            json!({ "query": caisse_tests::CREATE_PAYMENT, "variables": { "input": input } });
        let requests = [
            app.address.clone(),
            second_address.clone(),
            app.address.clone(),
            second_address.clone(),
        ]
        .into_iter()
        .map(|address| {
            let client = app.client.clone();
            let (key, body, api_key) = (key.clone(), body.clone(), app.test_key.clone());
            tokio::spawn(async move {
                let response: serde_json::Value = client
                    .post(format!("{address}/graphql"))
                    .bearer_auth(api_key)
                    .header("Idempotency-Key", key)
                    .json(&body)
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                response
            })
        })
        // Spawn all four before awaiting any.
        .collect::<Vec<_>>();
        let mut ids = std::collections::BTreeSet::new();
        for request in requests {
            let response = request.await.unwrap();
            ids.insert(
                data(&response)["createPayment"]["id"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            );
        }
        assert_eq!(ids.len(), 1, "round {round}: {ids:?}");
    }
    let vaulted = app
        .state
        .db()
        .fetch_optional("SELECT COUNT(*) AS n FROM card_vault", &[])
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        vaulted.int("n"),
        5,
        "one vaulted card (one authorisation) per key"
    );
    second_state.projectors.stop();
    server.abort();
}
