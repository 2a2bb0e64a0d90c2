//! Racing commands on one payment: conflicts are retried, so money invariants hold and no client sees a spurious conflict.

use std::str::FromStr;

use caisse_tests::{data, payment_input, TestApp};
use rust_decimal::Decimal;
use serde_json::{json, Value};

const REFUND: &str = "mutation($id: ID!, $amount: String!) { refundPayment(id: $id, amount: $amount) { id refundedAmount } }";
const CANCEL: &str = "mutation($id: ID!) { cancelPayment(id: $id) { id status } }";
const REMITTANCE: &str =
    "mutation($shop: ID!) { runRemittance(shopId: $shop) { id paymentCount total } }";
const PAYMENT: &str = "query($id: ID!) {
  payment(id: $id) { id status capturedAmount refundedAmount remittanceId history { type amount } }
}";

/// What a task needs to post GraphQL on its own (the helpers borrow the app).
#[derive(Clone)]
struct Poster {
    client: reqwest::Client,
    url: String,
    key: String,
}

impl Poster {
    fn new(app: &TestApp) -> Self {
        Poster {
            client: app.client.clone(),
            url: format!("{}/graphql", app.address),
            key: app.test_key.clone(),
        }
    }

    async fn post(&self, query: &str, variables: Value) -> Value {
        self.client
            .post(&self.url)
            .bearer_auth(&self.key)
            .json(&json!({ "query": query, "variables": variables }))
            .send()
            .await
            .expect("request sent")
            .json()
            .await
            .expect("JSON response")
    }
}

fn decimal(value: &Value) -> Decimal {
    Decimal::from_str(
        value
            .as_str()
            .unwrap_or_else(|| panic!("not a decimal string: {value}")),
    )
    .unwrap_or_else(|error| panic!("{value}: {error}"))
}

fn first_error_code(response: &Value) -> Option<String> {
    response["errors"][0]["extensions"]["code"]
        .as_str()
        .map(str::to_string)
}

async fn fifty_concurrent_partial_refunds_never_refund_more_than_was_captured(app: TestApp) {
    let payment_id = app.captured_payment("100.00").await;
    let poster = Poster::new(&app);

    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let poster = poster.clone();
            let payment_id = payment_id.clone();
            tokio::spawn(async move {
                poster
                    .post(REFUND, json!({ "id": payment_id, "amount": "3.00" }))
                    .await
            })
        })
        .collect();
    let mut successes = 0usize;
    let mut exceeded = 0usize;
    let mut conflicts = 0usize;
    let mut others = Vec::new();
    for task in tasks {
        let response = task.await.expect("refund task");
        match first_error_code(&response) {
            None => {
                assert_eq!(data(&response)["refundPayment"]["id"], payment_id.as_str());
                successes += 1;
            }
            Some(code) if code == "REFUND_EXCEEDS_CAPTURED" => exceeded += 1,
            Some(code) if code == "CONCURRENT_MODIFICATION" => conflicts += 1,
            Some(_) => others.push(response),
        }
    }
    assert!(
        others.is_empty(),
        "{} of 50 refunds failed for another reason than the captured amount (codes {:?}); first: {}",
        others.len(),
        others.iter().map(|r| first_error_code(r).unwrap_or_default()).collect::<std::collections::BTreeSet<_>>(),
        others[0]
    );
    assert_eq!(
        conflicts, 0,
        "conflicts must be retried, never shown to the client"
    );
    assert_eq!(successes + exceeded, 50);
    assert!(
        successes <= 33,
        "{successes} refunds of 3.00 accepted on a 100.00 capture"
    );
    // Every refusal said the capture was exhausted, so refunds stopped only when
    // a 34th would have gone over: exactly 33 were accepted.
    assert_eq!(
        successes, 33,
        "refunds were refused while 3.00 was still refundable"
    );

    let response = app.graphql(PAYMENT, json!({ "id": payment_id })).await;
    let payment = &data(&response)["payment"];
    let refunded = decimal(&payment["refundedAmount"]);
    assert_eq!(refunded, Decimal::from(3) * Decimal::from(successes as u64));
    assert!(refunded <= decimal(&payment["capturedAmount"]));
    assert_eq!(decimal(&payment["capturedAmount"]), Decimal::from(100));
    let history = payment["history"].as_array().expect("history");
    let refund_events: Vec<&Value> = history
        .iter()
        .filter(|event| event["type"] == "PaymentRefunded")
        .collect();
    assert_eq!(
        refund_events.len(),
        successes,
        "one PaymentRefunded event per accepted refund: {history:?}"
    );
    for event in refund_events {
        assert_eq!(decimal(&event["amount"]), Decimal::from(3));
    }
}

caisse_tests::both_backends!(
    fifty_concurrent_partial_refunds_never_refund_more_than_was_captured,
    super::fifty_concurrent_partial_refunds_never_refund_more_than_was_captured
);

async fn a_cancellation_racing_the_remittance_leaves_each_payment_either_cancelled_or_captured(
    app: TestApp,
) {
    let mut payment_ids = Vec::new();
    for index in 0..8 {
        let payment = app
            .create_payment(payment_input("25.00", &format!("RACE-{index}")))
            .await;
        assert_eq!(payment["status"], "AUTHORISED", "{payment}");
        payment_ids.push(payment["id"].as_str().unwrap().to_string());
    }
    let poster = Poster::new(&app);

    let remittance = {
        let poster = poster.clone();
        let shop_id = app.shop_id.clone();
        tokio::spawn(async move { poster.post(REMITTANCE, json!({ "shop": shop_id })).await })
    };
    let cancels: Vec<_> = payment_ids
        .iter()
        .map(|payment_id| {
            let poster = poster.clone();
            let payment_id = payment_id.clone();
            tokio::spawn(async move { poster.post(CANCEL, json!({ "id": payment_id })).await })
        })
        .collect();
    let remittance = remittance.await.expect("remittance task");
    let remitted_count: i64 = data(&remittance)["runRemittance"]
        .as_array()
        .expect("remittances")
        .iter()
        .map(|r| r["paymentCount"].as_i64().unwrap())
        .sum();

    let mut captured = 0i64;
    for (payment_id, cancel) in payment_ids.iter().zip(cancels) {
        let cancel = cancel.await.expect("cancel task");
        let response = app.graphql(PAYMENT, json!({ "id": payment_id })).await;
        let payment = &data(&response)["payment"];
        let types: Vec<&str> = payment["history"]
            .as_array()
            .expect("history")
            .iter()
            .map(|event| event["type"].as_str().unwrap())
            .collect();
        let was_cancelled = types.contains(&"PaymentCancelled");
        let was_captured = types.contains(&"PaymentCaptured");
        assert!(
            was_cancelled != was_captured,
            "{payment_id} must be exactly one of cancelled or captured: {types:?}"
        );
        match first_error_code(&cancel) {
            None => {
                assert_eq!(data(&cancel)["cancelPayment"]["status"], "CANCELLED");
                assert!(
                    was_cancelled,
                    "{payment_id}: cancel answered OK but history is {types:?}"
                );
                assert_eq!(payment["status"], "CANCELLED");
                assert_eq!(payment["remittanceId"], Value::Null);
            }
            Some(code) => {
                assert_eq!(code, "PAYMENT_ALREADY_REMITTED", "{cancel}");
                assert!(
                    was_captured,
                    "{payment_id}: cancel refused but history is {types:?}"
                );
                assert_eq!(payment["status"], "CAPTURED");
                assert_eq!(decimal(&payment["capturedAmount"]), Decimal::from(25));
                captured += 1;
            }
        }
    }
    assert_eq!(
        remitted_count, captured,
        "the remittance counts exactly the payments it captured"
    );
}

caisse_tests::both_backends!(
    a_cancellation_racing_the_remittance_leaves_each_payment_either_cancelled_or_captured,
    super::a_cancellation_racing_the_remittance_leaves_each_payment_either_cancelled_or_captured
);
