//! The shortest path a new merchant takes: create a payment and read it back.

use caisse_tests::{data, payment_input, TestApp};
use serde_json::json;

async fn create_then_read(app: TestApp) {
    let payment = app.create_payment(payment_input("49.90", "ORD-1")).await;
    assert_eq!(payment["status"], "AUTHORISED");
    assert_eq!(payment["amount"], "49.90");
    assert_eq!(payment["card"]["brand"], "CB");
    assert_eq!(payment["card"]["lastFour"], "0006");
    let response = app
        .graphql(
            "query($id: ID!) { payment(id: $id) { id status history { type sequence } } }",
            json!({ "id": payment["id"] }),
        )
        .await;
    let read = &data(&response)["payment"];
    assert_eq!(read["status"], "AUTHORISED");
    assert_eq!(read["history"][0]["type"], "PaymentAuthorised");
}

caisse_tests::both_backends!(create_then_read_works, super::create_then_read);

async fn malformed_query_ids_are_bad_input_and_omitted_page_sizes_take_their_default(app: TestApp) {
    let response = app
        .graphql("{ payment(id: \"garbage\") { id } }", json!({}))
        .await;
    assert_eq!(
        caisse_tests::error_code(&response),
        "BAD_USER_INPUT",
        "{response}"
    );
    assert_eq!(response["errors"][0]["extensions"]["field"], "id");
    let response = app
        .graphql("{ remittance(id: \"garbage\") { id } }", json!({}))
        .await;
    assert_eq!(
        caisse_tests::error_code(&response),
        "BAD_USER_INPUT",
        "{response}"
    );
    for amount in ["1.00", "2.00", "3.00"] {
        app.create_payment(payment_input(amount, &format!("ORD-{amount}")))
            .await;
    }
    // `$first` declared but not sent: the argument's default applies.
    let response = app
        .graphql(
            "query($first: Int) { payments(first: $first) { edges { node { id } } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        data(&response)["payments"]["edges"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
    let response = app
        .graphql(
            "query($first: Int) { events(first: $first) { events { type } } }",
            json!({}),
        )
        .await;
    assert_eq!(
        data(&response)["events"]["events"]
            .as_array()
            .unwrap()
            .len(),
        3
    );
}

caisse_tests::both_backends!(
    malformed_query_ids_and_default_page_sizes,
    super::malformed_query_ids_are_bad_input_and_omitted_page_sizes_take_their_default
);

async fn card_numbers_typed_into_free_text_fields_are_refused(app: TestApp) {
    let mut input = payment_input("5.00", "ORDER 4970 1000 0000 0006");
    input["orderReference"] = json!("ORDER-4970100000000006");
    let response = app
        .graphql(caisse_tests::CREATE_PAYMENT, json!({ "input": input }))
        .await;
    assert_eq!(
        caisse_tests::error_code(&response),
        "INVALID_ORDER_REFERENCE",
        "{response}"
    );
    let mut input = payment_input("5.00", "ORD-OK");
    input["buyerEmail"] = json!("4970100000000006@example.com");
    let response = app
        .graphql(caisse_tests::CREATE_PAYMENT, json!({ "input": input }))
        .await;
    assert_eq!(
        caisse_tests::error_code(&response),
        "INVALID_EMAIL",
        "{response}"
    );
    // A long number that is not Luhn-valid is an ordinary reference.
    let payment = app
        .create_payment(payment_input("5.00", "ORDER-4970100000000007"))
        .await;
    assert_eq!(payment["status"], "AUTHORISED");
}

caisse_tests::both_backends!(
    card_numbers_in_free_text,
    super::card_numbers_typed_into_free_text_fields_are_refused
);

/// The card brand table comes from the configuration: a configured private range
/// is recognised, and a default range left out of it is no longer accepted.
#[tokio::test]
async fn configured_private_card_ranges_are_used_by_the_server() {
    use caisse_domain::card::{CardBrand, CardRanges, PrefixRange};
    let app = caisse_tests::spawn_app_with(caisse_tests::Backend::Sqlite, |config| {
        config.card_ranges = CardRanges {
            private_ranges: vec![PrefixRange {
                prefix: "504910".into(),
                brand: CardBrand::Sofinco,
            }],
            cb_cobadge_prefixes: vec![],
        };
    })
    .await
    .expect("SQLite app");
    let mut input = payment_input("9.00", "ORD-RANGES");
    input["card"]["number"] = json!("5049100000000000");
    let payment = app.create_payment(input).await;
    assert_eq!(payment["card"]["brand"], "SOFINCO");
    // No co-badge prefixes configured: the CB test card is plain VISA now.
    let payment = app
        .create_payment(payment_input("9.00", "ORD-RANGES-2"))
        .await;
    assert_eq!(payment["card"]["brand"], "VISA");
    assert_eq!(payment["card"]["networks"], json!(["VISA"]));
    // COFINOGA's default range is not configured: no brand recognises it.
    let mut input = payment_input("9.00", "ORD-RANGES-3");
    input["card"]["number"] = json!("6036160000000007");
    let response = app
        .graphql(caisse_tests::CREATE_PAYMENT, json!({ "input": input }))
        .await;
    assert_eq!(
        caisse_tests::error_code(&response),
        "CARD_BRAND_NOT_ACCEPTED",
        "{response}"
    );
}

async fn metrics_show_the_log_head_and_each_projections_checkpoint(app: TestApp) {
    app.create_payment(payment_input("3.00", "ORD-METRICS"))
        .await;
    let response = app
        .client
        .get(format!("{}/metrics", app.address))
        .send()
        .await
        .unwrap();
    assert!(response.status().is_success());
    let body = response.text().await.unwrap();
    let value = |name: &str| -> i64 {
        body.lines()
            .find(|line| line.starts_with(name))
            .and_then(|line| line.rsplit(' ').next())
            .and_then(|number| number.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing in\n{body}"))
    };
    let head = value("caisse_log_head_position ");
    assert!(
        head >= 6,
        "merchant setup and the payment are in the log: {body}"
    );
    // The mutation waited for its views, so every projection has reached the head.
    for projection in ["payments", "remittances", "accounts"] {
        let checkpoint = value(&format!(
            "caisse_projection_checkpoint_position{{projection=\"{projection}\"}}"
        ));
        assert_eq!(checkpoint, head, "{projection}: {body}");
    }
    // The dispatchers follow the views, in the background or when asked.
    app.state
        .deliver_webhooks()
        .await
        .expect("webhooks dispatched");
    app.state
        .deliver_emails()
        .await
        .expect("e-mails dispatched");
    let body = app
        .client
        .get(format!("{}/metrics", app.address))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for dispatcher in ["webhooks", "emails"] {
        assert!(
            body.contains(&format!(
                "caisse_notification_dispatch_position{{dispatcher=\"{dispatcher}\"}} {head}\n"
            )),
            "{body}"
        );
    }
    assert!(body.contains("caisse_build_info{version="));
}

caisse_tests::both_backends!(
    metrics,
    super::metrics_show_the_log_head_and_each_projections_checkpoint
);
