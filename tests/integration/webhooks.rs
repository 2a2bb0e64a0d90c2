//! Webhook endpoints end to end over GraphQL (issue 5, RP-2, RP-3): created
//! with a secret shown once, listed without it, updated, rotated (the previous
//! secret signs for 24 h more), disabled and enabled, each an event; URLs
//! checked against SSRF with the production policy.

use caisse_tests::{both_backends, data, error_code, TestApp};
use serde_json::{json, Value};

const ENDPOINT: &str = "id shopId mode url eventTypes description status disabledReason
    secretVersion previousSecretValidUntil";

pub(crate) async fn create(app: &TestApp, url: &str, types: Value) -> Value {
    let query = format!(
        "mutation($input: CreateWebhookEndpointInput!) {{ createWebhookEndpoint(input: $input) {{
            secret endpoint {{ {ENDPOINT} }} }} }}"
    );
    app.graphql(
        &query,
        json!({ "input": { "shopId": app.shop_id, "url": url, "eventTypes": types, "description": "orders" } }),
    )
    .await
}

async fn endpoints_are_managed_as_events(app: TestApp) {
    let response = create(
        &app,
        "http://127.0.0.1:9/hooks",
        json!(["payment.refused", "payment.authorised"]),
    )
    .await;
    let created = &data(&response)["createWebhookEndpoint"];
    let secret = created["secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("whsec_"), "{secret}");
    let endpoint = &created["endpoint"];
    let id = endpoint["id"].clone();
    assert!(id.as_str().unwrap().starts_with("whe_"));
    assert_eq!(
        endpoint["eventTypes"],
        json!(["payment.authorised", "payment.refused"])
    );
    assert_eq!(endpoint["status"], "ACTIVE");
    assert_eq!(endpoint["secretVersion"], 1);
    assert_eq!(endpoint["mode"], "TEST");

    // Listed, never with its secret.
    let list = format!("query($shop: ID!) {{ webhookEndpoints(shopId: $shop) {{ {ENDPOINT} }} }}");
    let response = app.graphql(&list, json!({ "shop": app.shop_id })).await;
    let listed = data(&response)["webhookEndpoints"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["url"], "http://127.0.0.1:9/hooks");
    assert!(!response.to_string().contains(&secret));
    // The live key sees the live endpoints only.
    let response = app
        .graphql_as(&app.live_key, &list, json!({ "shop": app.shop_id }))
        .await;
    assert_eq!(data(&response)["webhookEndpoints"], json!([]));

    let update = format!(
        "mutation($input: UpdateWebhookEndpointInput!) {{ updateWebhookEndpoint(input: $input) {{ {ENDPOINT} }} }}"
    );
    let response = app
        .graphql(
            &update,
            json!({ "input": { "id": id, "eventTypes": ["payment.paid"] } }),
        )
        .await;
    assert_eq!(error_code(&response), "INVALID_WEBHOOK_ENDPOINT");
    assert_eq!(response["errors"][0]["extensions"]["field"], "eventTypes");
    let response = app
        .graphql(
            &update,
            json!({ "input": { "id": id, "eventTypes": ["*"] } }),
        )
        .await;
    assert_eq!(
        data(&response)["updateWebhookEndpoint"]["eventTypes"],
        json!(["*"])
    );

    let rotate = format!(
        "mutation($id: ID!) {{ rotateWebhookSecret(id: $id) {{ secret endpoint {{ {ENDPOINT} }} }} }}"
    );
    let response = app.graphql(&rotate, json!({ "id": id })).await;
    let rotated = &data(&response)["rotateWebhookSecret"];
    let new_secret = rotated["secret"].as_str().unwrap();
    assert!(new_secret.starts_with("whsec_") && new_secret != secret);
    assert_eq!(rotated["endpoint"]["secretVersion"], 2);
    assert_eq!(
        rotated["endpoint"]["previousSecretValidUntil"], "2026-03-03T10:00:00.000000Z",
        "{rotated}"
    );
    // Both secrets are kept (encrypted) and sign during the overlap.
    let endpoint_id = caisse_domain::ids::WebhookEndpointId::parse(id.as_str().unwrap()).unwrap();
    let endpoint = app
        .state
        .webhooks
        .load_for_delivery(endpoint_id)
        .await
        .unwrap();
    let signing = app
        .state
        .webhooks
        .signing_secrets(&endpoint, endpoint_id)
        .await
        .unwrap();
    assert_eq!(signing, [new_secret.to_string(), secret.clone()]);
    app.clock.advance(chrono::Duration::hours(25));
    let signing = app
        .state
        .webhooks
        .signing_secrets(&endpoint, endpoint_id)
        .await
        .unwrap();
    assert_eq!(signing, [new_secret.to_string()]);

    let disable =
        format!("mutation($id: ID!) {{ disableWebhookEndpoint(id: $id) {{ {ENDPOINT} }} }}");
    let response = app.graphql(&disable, json!({ "id": id })).await;
    let disabled = &data(&response)["disableWebhookEndpoint"];
    assert_eq!(disabled["status"], "DISABLED");
    assert_eq!(disabled["disabledReason"], "MERCHANT");
    let response = app.graphql(&disable, json!({ "id": id })).await;
    assert_eq!(error_code(&response), "WEBHOOK_ENDPOINT_UNCHANGED");
    let enable =
        format!("mutation($id: ID!) {{ enableWebhookEndpoint(id: $id) {{ {ENDPOINT} }} }}");
    let response = app.graphql(&enable, json!({ "id": id })).await;
    assert_eq!(data(&response)["enableWebhookEndpoint"]["status"], "ACTIVE");

    // Another merchant can neither see nor change it.
    let other = app.other_merchant().await;
    let response = app
        .graphql_as(&other.test_key, &disable, json!({ "id": id }))
        .await;
    assert_eq!(error_code(&response), "WEBHOOK_ENDPOINT_NOT_FOUND");

    // Every change is an event with its actor; no secret in the log.
    let response = app
        .graphql(
            "{ events(first: 200) { events { type actor data } } }",
            json!({}),
        )
        .await;
    let events = data(&response)["events"]["events"]
        .as_array()
        .unwrap()
        .clone();
    let types: Vec<&str> = events
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .filter(|t| t.starts_with("Webhook"))
        .collect();
    assert_eq!(
        types,
        [
            "WebhookEndpointCreated",
            "WebhookEndpointUpdated",
            "WebhookSecretRotated",
            "WebhookEndpointDisabled",
            "WebhookEndpointEnabled"
        ]
    );
    let log = serde_json::to_string(&events).unwrap();
    assert!(!log.contains(&secret) && !log.contains(new_secret));
}
both_backends!(
    webhook_endpoints_are_managed_as_events,
    super::endpoints_are_managed_as_events
);

async fn urls_are_checked_against_ssrf(app: TestApp) {
    // A server with the production policy (the test app allows loopback).
    let server = app
        .second_server(|config| config.webhooks = Default::default())
        .await;
    let create_on = |url: &'static str| {
        let client = app.client.clone();
        let address = server.address.clone();
        let key = app.test_key.clone();
        let shop = app.shop_id.clone();
        async move {
            client
                .post(format!("{address}/graphql"))
                .bearer_auth(key)
                .json(&json!({
                    "query": "mutation($input: CreateWebhookEndpointInput!) { createWebhookEndpoint(input: $input) { endpoint { id } } }",
                    "variables": { "input": { "shopId": shop, "url": url, "eventTypes": ["*"] } }
                }))
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    for (url, code) in [
        ("http://127.0.0.1/hooks", "WEBHOOK_URL_FORBIDDEN_ADDRESS"),
        ("http://10.1.2.3/hooks", "WEBHOOK_URL_FORBIDDEN_ADDRESS"),
        (
            "http://169.254.169.254/latest/meta-data",
            "WEBHOOK_URL_FORBIDDEN_ADDRESS",
        ),
        ("http://[::1]/hooks", "WEBHOOK_URL_FORBIDDEN_ADDRESS"),
        ("http://100.64.0.1/hooks", "WEBHOOK_URL_FORBIDDEN_ADDRESS"),
        ("http://localhost/hooks", "WEBHOOK_URL_FORBIDDEN_ADDRESS"),
        ("ftp://files.example/hooks", "WEBHOOK_URL_SCHEME"),
        ("https://93.184.216.34:8080/hooks", "WEBHOOK_URL_PORT"),
        ("not a url", "WEBHOOK_URL_INVALID"),
    ] {
        let response = create_on(url).await;
        assert_eq!(error_code(&response), code, "{url}: {response}");
        assert_eq!(response["errors"][0]["extensions"]["field"], "url", "{url}");
    }
    // A public address on a standard port is accepted.
    let response = create_on("https://93.184.216.34/hooks").await;
    assert!(data(&response)["createWebhookEndpoint"]["endpoint"]["id"].is_string());
}
both_backends!(
    webhook_urls_are_checked_against_ssrf,
    super::urls_are_checked_against_ssrf
);

/// A merchant's webhook receiver on a random port: records every request, and
/// answers 500 while `down` is set.
#[derive(Clone, Default)]
pub(crate) struct Receiver {
    received: std::sync::Arc<std::sync::Mutex<Vec<(axum::http::HeaderMap, String)>>>,
    down: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Receiver {
    pub(crate) async fn start() -> (Receiver, String) {
        let receiver = Receiver::default();
        let state = receiver.clone();
        let app = axum::Router::new()
            .route(
                "/hooks",
                axum::routing::post(
                    |axum::extract::State(state): axum::extract::State<Receiver>,
                     headers: axum::http::HeaderMap,
                     body: String| async move {
                        state.received.lock().unwrap().push((headers, body));
                        if state.down.load(std::sync::atomic::Ordering::SeqCst) {
                            (
                                axum::http::StatusCode::INTERNAL_SERVER_ERROR,
                                "down for maintenance",
                            )
                        } else {
                            (axum::http::StatusCode::OK, "ok")
                        }
                    },
                ),
            )
            .with_state(state);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hooks", listener.local_addr().unwrap());
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        (receiver, url)
    }

    pub(crate) fn set_down(&self, down: bool) {
        self.down.store(down, std::sync::atomic::Ordering::SeqCst);
    }

    /// The body of every request, in arrival order.
    pub(crate) fn bodies(&self) -> Vec<Value> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .map(|(_, body)| serde_json::from_str(body).unwrap())
            .collect()
    }

    /// (webhook-id, type, payment id) of every request, in arrival order.
    pub(crate) fn log(&self) -> Vec<(String, String, String)> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .map(|(headers, body)| {
                let body: Value = serde_json::from_str(body).unwrap();
                (
                    headers["webhook-id"].to_str().unwrap().to_string(),
                    body["type"].as_str().unwrap().to_string(),
                    body["data"]["id"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect()
    }
}

pub(crate) async fn deliver(app: &TestApp) -> caisse_infrastructure::webhook_delivery::DeliveryRun {
    app.state.deliver_webhooks().await.expect("deliveries run")
}

/// Waits until every view has applied the log: the dispatcher goes no
/// further than the endpoints view (a mutation answers after a bounded wait
/// for the views, which a busy PostgreSQL server can outlast).
pub(crate) async fn await_views(app: &TestApp) {
    app.state
        .projectors
        .catch_up_all()
        .await
        .expect("the views catch up");
}

async fn deliveries_are_signed_retried_in_order_and_deduplicable(app: TestApp) {
    let (receiver, url) = Receiver::start().await;
    let response = create(&app, &url, json!(["*"])).await;
    let created = &data(&response)["createWebhookEndpoint"];
    let secret = created["secret"].as_str().unwrap().to_string();
    let endpoint_id = created["endpoint"]["id"].clone();

    let payment = app
        .create_payment(caisse_tests::payment_input("42.00", "ORD-HOOK-1"))
        .await;
    await_views(&app).await;
    let run = deliver(&app).await;
    assert_eq!(run.succeeded, 1, "{run:?}");
    // Signed per Standard Webhooks, verified as the docs tell merchants to.
    let (headers, body) = receiver.received.lock().unwrap()[0].clone();
    let header = |name: &str| headers[name].to_str().unwrap().to_string();
    caisse_infrastructure::webhook_signature::verify(
        &secret,
        &header("webhook-id"),
        &header("webhook-timestamp"),
        &header("webhook-signature"),
        body.as_bytes(),
        caisse_application::ports::Clock::now(app.clock.as_ref()).timestamp(),
    )
    .expect("the signature verifies");
    let body: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(body["type"], "payment.authorised");
    assert_eq!(body["data"]["id"], payment["id"]);
    assert_eq!(body["data"]["orderReference"], "ORD-HOOK-1");
    assert_eq!(body["data"]["amount"], "42.00");
    assert_eq!(body["data"]["guarantee"], "YES");
    assert_eq!(body["data"]["riskOutcome"], "ACCEPTED");

    // The receiver goes down: a new payment and its cancellation wait, in order.
    receiver.set_down(true);
    let second = app
        .create_payment(caisse_tests::payment_input("10.00", "ORD-HOOK-2"))
        .await;
    let response = app
        .graphql(
            "mutation($id: ID!) { cancelPayment(id: $id) { status } }",
            json!({ "id": second["id"] }),
        )
        .await;
    data(&response);
    await_views(&app).await;
    let run = deliver(&app).await;
    // Only the authorisation is tried: the cancellation waits behind it.
    assert_eq!((run.succeeded, run.retrying), (0, 1), "{run:?}");
    assert_eq!(receiver.log().len(), 2);
    // Not due again before its delay (about 5 s).
    receiver.set_down(false);
    assert_eq!(deliver(&app).await.succeeded, 0);
    app.clock.advance(chrono::Duration::seconds(6));
    assert_eq!(deliver(&app).await.succeeded, 1);
    assert_eq!(deliver(&app).await.succeeded, 1);
    let log = receiver.log();
    let second_id = second["id"].as_str().unwrap().to_string();
    let of_second: Vec<&str> = log
        .iter()
        .filter(|(_, _, id)| *id == second_id)
        .map(|(_, kind, _)| kind.as_str())
        .collect();
    assert_eq!(
        of_second,
        [
            "payment.authorised",
            "payment.authorised",
            "payment.cancelled"
        ]
    );

    // Every attempt is logged.
    let response = app
        .graphql(
            "query($id: ID!) { webhookDeliveries(endpointId: $id) { id webhookId eventType status attempts
                attemptLog { attempt statusCode responsePrefix latencyMs } } }",
            json!({ "id": endpoint_id }),
        )
        .await;
    let deliveries = data(&response)["webhookDeliveries"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(deliveries.len(), 3);
    assert!(
        deliveries.iter().all(|d| d["status"] == "SUCCEEDED"),
        "{deliveries:?}"
    );
    let retried = deliveries
        .iter()
        .find(|d| d["attempts"] == 2)
        .expect("one retried");
    assert_eq!(retried["attemptLog"][0]["statusCode"], 500);
    assert_eq!(
        retried["attemptLog"][0]["responsePrefix"],
        "down for maintenance"
    );
    assert_eq!(retried["attemptLog"][1]["statusCode"], 200);

    // A redelivery keeps its webhook-id: after dedup the receiver saw each
    // event exactly once.
    let first_delivery = deliveries.last().unwrap().clone();
    let response = app
        .graphql(
            "mutation($id: ID!) { redeliverWebhook(id: $id) { status attempts } }",
            json!({ "id": first_delivery["id"] }),
        )
        .await;
    assert_eq!(data(&response)["redeliverWebhook"]["status"], "SUCCEEDED");
    let log = receiver.log();
    let distinct: std::collections::HashSet<&String> = log.iter().map(|(id, _, _)| id).collect();
    assert_eq!(log.len(), 5);
    assert_eq!(distinct.len(), 3);

    let response = app
        .graphql(
            "mutation($id: ID!) { sendTestWebhook(endpointId: $id) { eventType status attemptLog { statusCode } } }",
            json!({ "id": endpoint_id }),
        )
        .await;
    let test = &data(&response)["sendTestWebhook"];
    assert_eq!(test["eventType"], "webhook.test");
    assert_eq!(test["status"], "SUCCEEDED");
    assert_eq!(test["attemptLog"][0]["statusCode"], 200);
}
both_backends!(
    webhook_deliveries_are_signed_retried_in_order_and_deduplicable,
    super::deliveries_are_signed_retried_in_order_and_deduplicable
);

async fn a_receiver_down_for_three_days_disables_its_endpoint(app: TestApp) {
    let (receiver, url) = Receiver::start().await;
    let response = create(&app, &url, json!(["payment.authorised"])).await;
    let endpoint_id = data(&response)["createWebhookEndpoint"]["endpoint"]["id"].clone();
    // The merchant's addresses (for refunds only) are told all the same.
    let response = app
        .graphql(
            "mutation($shop: ID!) { configureMerchantEmails(input: {shopId: $shop,
                addresses: [\"ops@shop.example\"], eventTypes: [\"payment.refunded\"]}) { shopId } }",
            json!({ "shop": app.shop_id }),
        )
        .await;
    data(&response);
    receiver.set_down(true);
    app.create_payment(caisse_tests::payment_input("5.00", "ORD-HOOK-DOWN"))
        .await;
    await_views(&app).await;
    // Longer than the longest step with its jitter (24 h + 10 %), until the
    // schedule runs out (10 attempts).
    for _ in 0..20 {
        deliver(&app).await;
        app.clock.advance(chrono::Duration::hours(27));
        let deliveries = app
            .state
            .webhook_deliverer
            .deliveries(endpoint_id.as_str().unwrap(), Some("FAILED"), 1)
            .await
            .unwrap();
        if !deliveries.is_empty() {
            deliver(&app).await;
            break;
        }
    }
    let response = app
        .graphql(
            "query($shop: ID!, $id: ID!) { webhookEndpoints(shopId: $shop) { status disabledReason }
               webhookDeliveries(endpointId: $id) { status attempts } }",
            json!({ "shop": app.shop_id, "id": endpoint_id }),
        )
        .await;
    let answer = data(&response);
    assert_eq!(
        answer["webhookDeliveries"][0]["status"], "FAILED",
        "{answer}"
    );
    assert_eq!(answer["webhookDeliveries"][0]["attempts"], 10);
    assert_eq!(answer["webhookEndpoints"][0]["status"], "DISABLED");
    assert_eq!(
        answer["webhookEndpoints"][0]["disabledReason"],
        "PERSISTENT_FAILURE"
    );
    assert_eq!(receiver.log().len(), 10);
    // The merchant's addresses are told, whatever types they receive.
    app.state
        .deliver_emails()
        .await
        .expect("e-mails dispatched");
    let response = app
        .graphql(
            "query($shop: ID!) { emailOutbox(shopId: $shop) { recipient role eventType subject } }",
            json!({ "shop": app.shop_id }),
        )
        .await;
    let outbox = data(&response)["emailOutbox"].as_array().unwrap().clone();
    let alert = outbox
        .iter()
        .find(|e| e["eventType"] == "webhook.endpoint_disabled")
        .unwrap_or_else(|| panic!("no alert in {outbox:?}"));
    assert_eq!(alert["recipient"], "ops@shop.example");
    assert_eq!(alert["role"], "MERCHANT");
    assert!(
        alert["subject"].as_str().unwrap().contains("désactivé"),
        "{alert}"
    );

    // A disabled endpoint gets no payment data, not even a redelivery by
    // hand; a test event (no payment data) checks the fix before enabling.
    receiver.set_down(false);
    let failed = app
        .state
        .webhook_deliverer
        .deliveries(endpoint_id.as_str().unwrap(), Some("FAILED"), 1)
        .await
        .unwrap();
    let delivery_id = failed[0].delivery_id.clone();
    let redeliver = "mutation($id: ID!) { redeliverWebhook(id: $id) { status attempts } }";
    let response = app.graphql(redeliver, json!({ "id": delivery_id })).await;
    assert_eq!(error_code(&response), "WEBHOOK_ENDPOINT_DISABLED");
    assert_eq!(response["errors"][0]["extensions"]["field"], "id");
    assert!(response["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("PERSISTENT_FAILURE"));
    assert_eq!(receiver.log().len(), 10);
    let response = app
        .graphql(
            "mutation($id: ID!) { sendTestWebhook(endpointId: $id) { status eventType } }",
            json!({ "id": endpoint_id }),
        )
        .await;
    assert_eq!(data(&response)["sendTestWebhook"]["status"], "SUCCEEDED");
    assert_eq!(receiver.log().len(), 11);
    assert_eq!(receiver.log()[10].1, "webhook.test");
    // Enabled again, the failed delivery can be sent again, with its webhook-id.
    let response = app
        .graphql(
            "mutation($id: ID!) { enableWebhookEndpoint(id: $id) { status } }",
            json!({ "id": endpoint_id }),
        )
        .await;
    assert_eq!(data(&response)["enableWebhookEndpoint"]["status"], "ACTIVE");
    let response = app.graphql(redeliver, json!({ "id": delivery_id })).await;
    assert_eq!(data(&response)["redeliverWebhook"]["status"], "SUCCEEDED");
    let log = receiver.log();
    assert_eq!(log.len(), 12);
    assert_eq!(log[11].0, log[0].0);
}
both_backends!(
    a_receiver_down_for_three_days_disables_its_endpoint,
    super::a_receiver_down_for_three_days_disables_its_endpoint
);

/// Two `caisse serve` on one database deliver at the same time: each event
/// reaches the receiver once per attempt. First attempts: one process leases
/// the dispatch pass. Retries: each is claimed by an atomic update.
async fn two_senders_deliver_each_event_once(app: TestApp) {
    let (receiver, url) = Receiver::start().await;
    data(&create(&app, &url, json!(["payment.authorised"])).await);
    let second = app
        .second_server(|config| {
            config.webhooks.allow_private_addresses = true;
            config.webhooks.allow_any_port = true;
        })
        .await;
    receiver.set_down(true);
    for n in 0..12 {
        app.create_payment(caisse_tests::payment_input(
            "3.00",
            &format!("ORD-HOOK-TWO-{n}"),
        ))
        .await;
    }
    await_views(&app).await;
    let (first, other) = tokio::join!(
        app.state.deliver_webhooks(),
        second.state.deliver_webhooks()
    );
    let (first, other) = (first.unwrap(), other.unwrap());
    assert_eq!(first.retrying + other.retrying, 12, "{first:?} {other:?}");
    assert_eq!(receiver.log().len(), 12);

    receiver.set_down(false);
    app.clock.advance(chrono::Duration::seconds(6));
    let (first, other) = tokio::join!(
        app.state.deliver_webhooks(),
        second.state.deliver_webhooks()
    );
    let (first, other) = (first.unwrap(), other.unwrap());
    // Whatever one pass left (claimed by the other at the time), a last pass sends.
    let last = deliver(&app).await;
    assert_eq!(first.succeeded + other.succeeded + last.succeeded, 12);
    let log = receiver.log();
    let distinct: std::collections::HashSet<&String> = log.iter().map(|(id, _, _)| id).collect();
    assert_eq!(log.len(), 24);
    assert_eq!(distinct.len(), 12);
}
both_backends!(
    two_senders_deliver_each_event_once,
    super::two_senders_deliver_each_event_once
);
