//! The read side over GraphQL: `payments` filters, ordering and keyset pagination, `cashSummary` totals, `remittances` pagination and the `events` log with its cursors.

use std::collections::HashSet;

use caisse_tests::{data, error_code, payment_input, TestApp};
use serde_json::{json, Value};

const PAYMENTS: &str = "query($filter: PaymentFilterInput, $first: Int, $after: String) {
  payments(filter: $filter, first: $first, after: $after) {
    edges { cursor node { id status amount currency channel createdAt card { brand lastFour } } }
    pageInfo { hasNextPage endCursor }
  }
}";

const EVENTS: &str = "query($after: String, $first: Int) {
  events(after: $after, first: $first) {
    events { cursor globalPosition aggregateType aggregateId sequence type actor }
    endCursor hasNextPage
  }
}";

fn input_with(amount: &str, reference: &str, changes: Value) -> Value {
    let mut input = payment_input(amount, reference);
    for (key, value) in changes.as_object().expect("an object of changes") {
        input[key] = value.clone();
    }
    input
}

fn card(number: &str) -> Value {
    json!({ "number": number, "expiryMonth": 12, "expiryYear": 2030, "cvv": "123" })
}

fn id_of(payment: &Value) -> String {
    payment["id"].as_str().expect("payment id").to_string()
}

/// The ids of one page of `payments`, in the order returned.
async fn payment_ids(app: &TestApp, filter: Value) -> Vec<String> {
    let response = app
        .graphql(PAYMENTS, json!({ "filter": filter, "first": 200 }))
        .await;
    let connection = &data(&response)["payments"];
    assert_eq!(connection["pageInfo"]["hasNextPage"], false);
    connection["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|edge| edge["node"]["id"].as_str().unwrap().to_string())
        .collect()
}

fn set(ids: &[String]) -> HashSet<String> {
    ids.iter().cloned().collect()
}

fn ids_of(payments: &[&Value]) -> HashSet<String> {
    payments.iter().map(|payment| id_of(payment)).collect()
}

async fn refund(app: &TestApp, id: &str, amount: &str) {
    let response = app
        .graphql(
            "mutation($id: ID!, $amount: String!) { refundPayment(id: $id, amount: $amount) { id } }",
            json!({ "id": id, "amount": amount }),
        )
        .await;
    data(&response);
}

async fn cancel(app: &TestApp, id: &str) {
    let response = app
        .graphql(
            "mutation($id: ID!) { cancelPayment(id: $id) { id } }",
            json!({ "id": id }),
        )
        .await;
    data(&response);
}

/// Asserts that `filter` selects exactly `expected`, each once.
async fn check(app: &TestApp, filter: Value, expected: Vec<&Value>) {
    let got = payment_ids(app, filter.clone()).await;
    assert_eq!(got.len(), set(&got).len(), "no duplicate rows for {filter}");
    assert_eq!(set(&got), ids_of(&expected), "filter {filter}");
}

async fn filtering_by_creation_date_accepts_dates_and_instants(app: TestApp) {
    let monday = app.create_payment(payment_input("10.00", "ORD-MON")).await;
    app.clock.advance(chrono::Duration::days(1));
    let tuesday = app.create_payment(payment_input("10.00", "ORD-TUE")).await;
    app.clock.advance(chrono::Duration::days(1));
    let wednesday = app.create_payment(payment_input("10.00", "ORD-WED")).await;
    let (mon, tue, wed) = (id_of(&monday), id_of(&tuesday), id_of(&wednesday));

    assert_eq!(
        payment_ids(&app, json!({})).await,
        [wed.clone(), tue.clone(), mon.clone()],
        "newest first"
    );
    assert_eq!(
        payment_ids(&app, json!({ "createdFrom": "2026-03-03" })).await,
        [wed.clone(), tue.clone()]
    );
    assert_eq!(
        payment_ids(&app, json!({ "createdTo": "2026-03-03" })).await,
        [tue.clone(), mon.clone()],
        "a date `to` is inclusive"
    );
    assert_eq!(
        payment_ids(
            &app,
            json!({ "createdFrom": "2026-03-03", "createdTo": "2026-03-03" })
        )
        .await,
        std::slice::from_ref(&tue)
    );
    assert_eq!(
        payment_ids(&app, json!({ "createdFrom": "2026-03-05" })).await,
        Vec::<String>::new()
    );
    assert_eq!(
        payment_ids(&app, json!({ "createdTo": "2026-03-01" })).await,
        Vec::<String>::new()
    );

    // Instants: `from` inclusive, `to` exclusive, any offset.
    assert_eq!(
        payment_ids(&app, json!({ "createdFrom": "2026-03-03T10:00:00Z" })).await,
        [wed.clone(), tue.clone()]
    );
    assert_eq!(
        payment_ids(
            &app,
            json!({ "createdFrom": "2026-03-03T10:00:00.000001Z" })
        )
        .await,
        std::slice::from_ref(&wed)
    );
    assert_eq!(
        payment_ids(&app, json!({ "createdTo": "2026-03-03T10:00:00Z" })).await,
        std::slice::from_ref(&mon)
    );
    assert_eq!(
        payment_ids(&app, json!({ "createdTo": "2026-03-03T11:00:01+01:00" })).await,
        [tue.clone(), mon.clone()]
    );
    assert_eq!(
        payment_ids(
            &app,
            json!({ "createdFrom": "2026-03-02T09:00:00Z", "createdTo": "2026-03-04T09:59:59Z" })
        )
        .await,
        [tue, mon]
    );

    for bad in ["yesterday", "2026-13-01", "03/03/2026"] {
        let response = app
            .graphql(
                PAYMENTS,
                json!({ "filter": { "createdFrom": bad }, "first": 20 }),
            )
            .await;
        assert_eq!(error_code(&response), "BAD_USER_INPUT", "{bad}: {response}");
    }
}

async fn each_payments_filter_selects_exactly_its_payments(app: TestApp) {
    let visa = app
        .create_payment(input_with(
            "10.00",
            "ORD-VISA",
            json!({ "card": card("4111111111111111") }),
        ))
        .await;
    let master = app
        .create_payment(input_with(
            "25.50",
            "ORD-MC",
            json!({ "card": card("5555550000000002"), "channel": "MOTO" }),
        ))
        .await;
    let cb = app
        .create_payment(input_with(
            "99.99",
            "ORD-CB",
            json!({ "channel": "MCOMMERCE" }),
        ))
        .await;
    let dollars = app
        .create_payment(input_with(
            "25.50",
            "ORD-USD",
            json!({ "currency": "USD", "channel": "IVR" }),
        ))
        .await;
    let yen = app
        .create_payment(input_with(
            "3000",
            "ORD-JPY",
            json!({ "currency": "JPY", "channel": "ERP" }),
        ))
        .await;
    let refused = app
        .create_payment(input_with(
            "7.00",
            "ORD-REFUSED",
            json!({ "card": card("4970100000000048"), "channel": "CALL_CENTER" }),
        ))
        .await;
    let manual = app
        .create_payment(input_with(
            "12.00",
            "ORD-MANUAL",
            json!({ "captureMode": "MANUAL" }),
        ))
        .await;
    let cancelled = app
        .create_payment(payment_input("13.00", "ORD-CANCEL"))
        .await;
    cancel(&app, &id_of(&cancelled)).await;
    let all = [
        &visa, &master, &cb, &dollars, &yen, &refused, &manual, &cancelled,
    ];
    assert_eq!(set(&payment_ids(&app, json!({})).await), ids_of(&all));

    check(&app, json!({ "statuses": ["REFUSED"] }), vec![&refused]).await;
    check(
        &app,
        json!({ "statuses": ["AUTHORISED_TO_VALIDATE", "CANCELLED"] }),
        vec![&manual, &cancelled],
    )
    .await;
    check(
        &app,
        json!({ "statuses": ["AUTHORISED"] }),
        vec![&visa, &master, &cb, &dollars, &yen],
    )
    .await;
    check(&app, json!({ "statuses": ["CAPTURED"] }), vec![]).await;
    check(&app, json!({ "orderReference": "ORD-MC" }), vec![&master]).await;
    check(&app, json!({ "orderReference": "ORD-NONE" }), vec![]).await;
    check(
        &app,
        json!({ "amountMin": "25.50" }),
        vec![&master, &cb, &dollars, &yen],
    )
    .await;
    check(
        &app,
        json!({ "amountMax": "12" }),
        vec![&visa, &refused, &manual],
    )
    .await;
    check(
        &app,
        json!({ "amountMin": "12.00", "amountMax": "25.50" }),
        vec![&master, &dollars, &manual, &cancelled],
    )
    .await;
    check(
        &app,
        json!({ "amountMin": "25.51", "amountMax": "99.98" }),
        vec![],
    )
    .await;
    check(&app, json!({ "currency": "USD" }), vec![&dollars]).await;
    check(&app, json!({ "currency": "jpy" }), vec![&yen]).await;
    check(
        &app,
        json!({ "currency": "EUR" }),
        vec![&visa, &master, &cb, &refused, &manual, &cancelled],
    )
    .await;
    check(&app, json!({ "cardBrand": "VISA" }), vec![&visa]).await;
    check(&app, json!({ "cardBrand": "MASTERCARD" }), vec![&master]).await;
    check(
        &app,
        json!({ "cardBrand": "CB" }),
        vec![&cb, &dollars, &yen, &refused, &manual, &cancelled],
    )
    .await;
    check(&app, json!({ "cardBrand": "AMEX" }), vec![]).await;
    check(&app, json!({ "lastFour": "1111" }), vec![&visa]).await;
    check(&app, json!({ "lastFour": "0002" }), vec![&master]).await;
    check(&app, json!({ "lastFour": "0048" }), vec![&refused]).await;
    check(&app, json!({ "channel": "MOTO" }), vec![&master]).await;
    check(&app, json!({ "channel": "MCOMMERCE" }), vec![&cb]).await;
    check(&app, json!({ "channel": "IVR" }), vec![&dollars]).await;
    check(&app, json!({ "channel": "ERP" }), vec![&yen]).await;
    check(&app, json!({ "channel": "CALL_CENTER" }), vec![&refused]).await;
    check(
        &app,
        json!({ "channel": "ECOMMERCE" }),
        vec![&visa, &manual, &cancelled],
    )
    .await;
    check(
        &app,
        json!({ "channel": "ECOMMERCE", "amountMin": "12.50", "cardBrand": "CB" }),
        vec![&cancelled],
    )
    .await;
    check(&app, json!({ "shopId": app.shop_id }), all.to_vec()).await;

    for (filter, field) in [
        (json!({ "lastFour": "111" }), "filter.lastFour"),
        (json!({ "lastFour": "abcd" }), "filter.lastFour"),
        (json!({ "amountMin": "ten" }), "filter.amountMin"),
        (json!({ "amountMax": "-1" }), "filter.amountMax"),
        (json!({ "currency": "XXX" }), "filter.currency"),
        (json!({ "shopId": "not-a-shop" }), "filter.shopId"),
    ] {
        let response = app
            .graphql(PAYMENTS, json!({ "filter": filter, "first": 20 }))
            .await;
        assert_eq!(
            error_code(&response),
            "BAD_USER_INPUT",
            "{filter}: {response}"
        );
        assert_eq!(
            response["errors"][0]["extensions"]["field"], field,
            "{response}"
        );
    }
}

async fn payments_come_newest_first_and_keyset_pages_have_no_gap_or_duplicate(app: TestApp) {
    let mut created = Vec::new();
    for index in 0..11 {
        // Pairs share an instant, so the tie-break on the id is exercised too.
        if index % 2 == 0 {
            app.clock.advance(chrono::Duration::minutes(7));
        }
        let payment = app
            .create_payment(payment_input(
                &format!("{}.00", index + 1),
                &format!("ORD-{index}"),
            ))
            .await;
        created.push(payment);
    }
    let response = app.graphql(PAYMENTS, json!({ "first": 200 })).await;
    let whole: Vec<Value> = data(&response)["payments"]["edges"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(whole.len(), 11);
    let created_at: Vec<&str> = whole
        .iter()
        .map(|edge| edge["node"]["createdAt"].as_str().unwrap())
        .collect();
    assert!(
        created_at.windows(2).all(|pair| pair[0] >= pair[1]),
        "newest first: {created_at:?}"
    );
    assert_eq!(
        whole[0]["node"]["id"], created[10]["id"],
        "the last created is first"
    );
    assert_eq!(
        set(&whole
            .iter()
            .map(|e| e["node"]["id"].as_str().unwrap().to_string())
            .collect::<Vec<_>>()),
        ids_of(&created.iter().collect::<Vec<_>>())
    );

    for size in [1, 2, 3, 4, 10, 11] {
        let mut pages = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let response = app
                .graphql(PAYMENTS, json!({ "first": size, "after": after }))
                .await;
            let connection = data(&response)["payments"].clone();
            let edges = connection["edges"].as_array().unwrap().clone();
            assert!(edges.len() <= size, "page larger than {size}");
            let has_next = connection["pageInfo"]["hasNextPage"].as_bool().unwrap();
            if has_next {
                assert_eq!(edges.len(), size, "only the last page may be short");
                assert_eq!(
                    connection["pageInfo"]["endCursor"],
                    edges.last().unwrap()["cursor"]
                );
            }
            pages.extend(edges);
            after = connection["pageInfo"]["endCursor"]
                .as_str()
                .map(str::to_string);
            if !has_next {
                break;
            }
            assert!(pages.len() <= 11, "pagination does not end");
        }
        let paged: Vec<&Value> = pages.iter().map(|edge| &edge["node"]["id"]).collect();
        let single: Vec<&Value> = whole.iter().map(|edge| &edge["node"]["id"]).collect();
        assert_eq!(
            paged, single,
            "pages of {size} give the same rows in the same order, no gap, no duplicate"
        );
    }

    // Filters and pagination together.
    let filter = json!({ "amountMin": "3.00", "amountMax": "9.00" });
    let first_page = app
        .graphql(PAYMENTS, json!({ "filter": filter, "first": 4 }))
        .await;
    let first_page = data(&first_page)["payments"].clone();
    assert_eq!(first_page["pageInfo"]["hasNextPage"], true);
    let second_page = app
        .graphql(
            PAYMENTS,
            json!({ "filter": filter, "first": 4, "after": first_page["pageInfo"]["endCursor"] }),
        )
        .await;
    let second_page = data(&second_page)["payments"].clone();
    assert_eq!(second_page["pageInfo"]["hasNextPage"], false);
    let amounts: Vec<&str> = first_page["edges"]
        .as_array()
        .unwrap()
        .iter()
        .chain(second_page["edges"].as_array().unwrap())
        .map(|edge| edge["node"]["amount"].as_str().unwrap())
        .collect();
    assert_eq!(
        amounts,
        ["9.00", "8.00", "7.00", "6.00", "5.00", "4.00", "3.00"]
    );

    // A payment created after the first page was read does not shift the next page.
    let page = app.graphql(PAYMENTS, json!({ "first": 5 })).await;
    let cursor = data(&page)["payments"]["pageInfo"]["endCursor"].clone();
    app.clock.advance(chrono::Duration::minutes(7));
    app.create_payment(payment_input("50.00", "ORD-LATE")).await;
    let next = app
        .graphql(PAYMENTS, json!({ "first": 5, "after": cursor }))
        .await;
    let next_ids: Vec<&Value> = data(&next)["payments"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["node"]["id"])
        .collect();
    let expected: Vec<&Value> = whole[5..10]
        .iter()
        .map(|edge| &edge["node"]["id"])
        .collect();
    assert_eq!(next_ids, expected);

    for first in [0, -1, 201, 1000] {
        let response = app.graphql(PAYMENTS, json!({ "first": first })).await;
        assert_eq!(
            error_code(&response),
            "BAD_USER_INPUT",
            "first {first}: {response}"
        );
    }
    let response = app
        .graphql(PAYMENTS, json!({ "after": "not-a-cursor", "first": 20 }))
        .await;
    assert_eq!(error_code(&response), "BAD_USER_INPUT", "{response}");
}

/// The cash summary entry of one day, currency and channel.
fn entry<'a>(summary: &'a [Value], date: &str, currency: &str, channel: &str) -> &'a Value {
    summary
        .iter()
        .find(|e| e["date"] == date && e["currency"] == currency && e["channel"] == channel)
        .unwrap_or_else(|| panic!("no entry {date} {currency} {channel} in {summary:?}"))
}

fn totals(entry: &Value) -> Value {
    json!({
        "authorised": entry["authorised"], "captured": entry["captured"], "refunded": entry["refunded"],
        "cancelled": entry["cancelled"], "refused": entry["refused"],
    })
}

fn count_amount(count: i64, amount: &str) -> Value {
    json!({ "count": count, "amount": amount })
}

async fn cash_summary(app: &TestApp, from: &str, to: &str) -> Vec<Value> {
    let response = app
        .graphql(
            "query($shop: ID!, $from: String!, $to: String!) { cashSummary(shopId: $shop, from: $from, to: $to) {
                date currency channel
                authorised { count amount } captured { count amount } refunded { count amount }
                cancelled { count amount } refused { count amount }
            } }",
            json!({ "shop": app.shop_id, "from": from, "to": to }),
        )
        .await;
    data(&response)["cashSummary"].as_array().unwrap().clone()
}

async fn cash_summary_totals_each_day_currency_and_channel_exactly(app: TestApp) {
    // Monday 2026-03-02.
    let a = app.create_payment(payment_input("10.00", "ORD-A")).await;
    app.create_payment(payment_input("20.55", "ORD-B")).await;
    let d = app.create_payment(payment_input("5.00", "ORD-D")).await;
    cancel(&app, &id_of(&d)).await;
    app.create_payment(input_with(
        "7.25",
        "ORD-C",
        json!({ "card": card("4970100000000014") }),
    ))
    .await;
    app.create_payment(input_with("3.33", "ORD-E", json!({ "channel": "MOTO" })))
        .await;
    app.create_payment(input_with("1.00", "ORD-F", json!({ "currency": "USD" })))
        .await;
    app.create_payment(input_with("1500", "ORD-G", json!({ "currency": "JPY" })))
        .await;
    app.create_payment(input_with(
        "0.10",
        "ORD-M",
        json!({ "captureMode": "MANUAL" }),
    ))
    .await;
    app.run_remittance().await;

    // Tuesday 2026-03-03.
    app.clock.advance(chrono::Duration::days(1));
    refund(&app, &id_of(&a), "4.00").await;
    refund(&app, &id_of(&a), "0.01").await;
    app.create_payment(payment_input("2.00", "ORD-H")).await;
    app.create_payment(input_with(
        "8.00",
        "ORD-I",
        json!({ "card": card("4970100000000055") }),
    ))
    .await;

    let summary = cash_summary(&app, "2026-03-02", "2026-03-03").await;
    assert_eq!(summary.len(), 5, "{summary:?}");
    assert_eq!(
        totals(entry(&summary, "2026-03-02", "EUR", "ECOMMERCE")),
        json!({
            "authorised": count_amount(4, "35.65"),
            "captured": count_amount(2, "30.55"),
            "refunded": count_amount(0, "0.00"),
            "cancelled": count_amount(1, "5.00"),
            "refused": count_amount(1, "7.25"),
        })
    );
    assert_eq!(
        totals(entry(&summary, "2026-03-02", "EUR", "MOTO")),
        json!({
            "authorised": count_amount(1, "3.33"),
            "captured": count_amount(1, "3.33"),
            "refunded": count_amount(0, "0.00"),
            "cancelled": count_amount(0, "0.00"),
            "refused": count_amount(0, "0.00"),
        })
    );
    assert_eq!(
        totals(entry(&summary, "2026-03-02", "USD", "ECOMMERCE")),
        json!({
            "authorised": count_amount(1, "1.00"),
            "captured": count_amount(1, "1.00"),
            "refunded": count_amount(0, "0.00"),
            "cancelled": count_amount(0, "0.00"),
            "refused": count_amount(0, "0.00"),
        })
    );
    assert_eq!(
        totals(entry(&summary, "2026-03-02", "JPY", "ECOMMERCE")),
        json!({
            "authorised": count_amount(1, "1500"),
            "captured": count_amount(1, "1500"),
            "refunded": count_amount(0, "0"),
            "cancelled": count_amount(0, "0"),
            "refused": count_amount(0, "0"),
        })
    );
    assert_eq!(
        totals(entry(&summary, "2026-03-03", "EUR", "ECOMMERCE")),
        json!({
            "authorised": count_amount(1, "2.00"),
            "captured": count_amount(0, "0.00"),
            "refunded": count_amount(2, "4.01"),
            "cancelled": count_amount(0, "0.00"),
            "refused": count_amount(1, "8.00"),
        })
    );

    let tuesday = cash_summary(&app, "2026-03-03", "2026-03-03").await;
    assert_eq!(tuesday.len(), 1);
    assert_eq!(tuesday[0]["date"], "2026-03-03");
    let monday = cash_summary(&app, "2026-03-01", "2026-03-02").await;
    assert_eq!(monday.len(), 4);
    assert!(monday.iter().all(|e| e["date"] == "2026-03-02"));
    assert!(cash_summary(&app, "2026-03-04", "2026-04-30")
        .await
        .is_empty());

    let response = app
        .graphql(
            "query($shop: ID!) { cashSummary(shopId: $shop, from: \"2026-03-03\", to: \"2026-03-02\") { date } }",
            json!({ "shop": app.shop_id }),
        )
        .await;
    assert_eq!(error_code(&response), "BAD_USER_INPUT", "{response}");
    let response = app
        .graphql(
            "query($shop: ID!) { cashSummary(shopId: $shop, from: \"March\", to: \"2026-03-02\") { date } }",
            json!({ "shop": app.shop_id }),
        )
        .await;
    assert_eq!(error_code(&response), "BAD_USER_INPUT", "{response}");
}

const REMITTANCES: &str =
    "query($shop: ID!, $first: Int, $after: String, $from: String, $to: String) {
  remittances(shopId: $shop, first: $first, after: $after, from: $from, to: $to) {
    edges { cursor node { id businessDate currency paymentCount total } }
    pageInfo { hasNextPage endCursor }
  }
}";

async fn remittances_are_newest_first_and_paginate_without_gap(app: TestApp) {
    let mut created = Vec::new();
    for day in 0..5 {
        app.create_payment(payment_input(
            &format!("{}.00", day + 1),
            &format!("ORD-{day}"),
        ))
        .await;
        let remittances = app.run_remittance().await;
        assert_eq!(remittances.as_array().unwrap().len(), 1);
        created.push(remittances[0]["id"].as_str().unwrap().to_string());
        app.clock.advance(chrono::Duration::days(1));
    }
    let response = app
        .graphql(REMITTANCES, json!({ "shop": app.shop_id, "first": 50 }))
        .await;
    let whole: Vec<Value> = data(&response)["remittances"]["edges"]
        .as_array()
        .unwrap()
        .clone();
    let ids: Vec<String> = whole
        .iter()
        .map(|e| e["node"]["id"].as_str().unwrap().to_string())
        .collect();
    let mut newest_first = created.clone();
    newest_first.reverse();
    assert_eq!(ids, newest_first);
    let dates: Vec<&str> = whole
        .iter()
        .map(|e| e["node"]["businessDate"].as_str().unwrap())
        .collect();
    assert_eq!(
        dates,
        [
            "2026-03-06",
            "2026-03-05",
            "2026-03-04",
            "2026-03-03",
            "2026-03-02"
        ]
    );
    assert_eq!(whole[0]["node"]["total"], "5.00");
    assert_eq!(whole[0]["node"]["paymentCount"], 1);

    let mut paged = Vec::new();
    let mut after: Option<String> = None;
    let mut page_sizes = Vec::new();
    loop {
        let response = app
            .graphql(
                REMITTANCES,
                json!({ "shop": app.shop_id, "first": 2, "after": after }),
            )
            .await;
        let connection = data(&response)["remittances"].clone();
        let edges = connection["edges"].as_array().unwrap();
        page_sizes.push(edges.len());
        paged.extend(
            edges
                .iter()
                .map(|e| e["node"]["id"].as_str().unwrap().to_string()),
        );
        if connection["pageInfo"]["hasNextPage"] == false {
            break;
        }
        after = connection["pageInfo"]["endCursor"]
            .as_str()
            .map(str::to_string);
        assert!(page_sizes.len() < 10, "pagination does not end");
    }
    assert_eq!(page_sizes, [2, 2, 1]);
    assert_eq!(paged, newest_first);

    let response = app
        .graphql(
            REMITTANCES,
            json!({ "shop": app.shop_id, "from": "2026-03-03", "to": "2026-03-04", "first": 20 }),
        )
        .await;
    let dates: Vec<Value> = data(&response)["remittances"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["node"]["businessDate"].clone())
        .collect();
    assert_eq!(dates, [json!("2026-03-04"), json!("2026-03-03")]);

    for first in [0, 1000] {
        let response = app
            .graphql(REMITTANCES, json!({ "shop": app.shop_id, "first": first }))
            .await;
        assert_eq!(
            error_code(&response),
            "BAD_USER_INPUT",
            "first {first}: {response}"
        );
    }
    let response = app
        .graphql(
            REMITTANCES,
            json!({ "shop": app.shop_id, "after": "garbage", "first": 20 }),
        )
        .await;
    assert_eq!(error_code(&response), "BAD_USER_INPUT", "{response}");
}

/// Every event visible to the test key, read with pages of `size`.
async fn read_events(app: &TestApp, after: Option<String>, size: i64) -> (Vec<Value>, String) {
    let mut events = Vec::new();
    let mut after = after;
    let mut pages = 0;
    loop {
        let response = app
            .graphql(EVENTS, json!({ "after": after, "first": size }))
            .await;
        let connection = data(&response)["events"].clone();
        let page = connection["events"].as_array().unwrap().clone();
        assert!(page.len() as i64 <= size);
        events.extend(page);
        after = Some(connection["endCursor"].as_str().unwrap().to_string());
        if connection["hasNextPage"] == false {
            return (events, after.unwrap());
        }
        pages += 1;
        assert!(pages < 1000, "events pagination does not end");
    }
}

async fn events_give_the_callers_log_in_commit_order_and_cursors_resume_without_gap(app: TestApp) {
    let other = app.other_merchant().await;
    let mut ours = HashSet::new();
    let mut automatic = Vec::new();
    for index in 0..4 {
        let payment = app
            .create_payment(payment_input("10.00", &format!("ORD-{index}")))
            .await;
        ours.insert(id_of(&payment));
        automatic.push(id_of(&payment));
        // Foreign events interleave with ours in the global log.
        let foreign = app
            .graphql_as(
                &other.test_key,
                caisse_tests::CREATE_PAYMENT,
                json!({ "input": payment_input("1.00", "FOREIGN") }),
            )
            .await;
        data(&foreign);
    }
    let manual = app
        .create_payment(input_with(
            "5.00",
            "ORD-MANUAL",
            json!({ "captureMode": "MANUAL" }),
        ))
        .await;
    ours.insert(id_of(&manual));
    let remittances = app.run_remittance().await;
    let remittance_id = remittances[0]["id"].as_str().unwrap().to_string();
    refund(&app, &automatic[0], "1.00").await;

    let response = app.graphql(EVENTS, json!({ "first": 500 })).await;
    let connection = data(&response)["events"].clone();
    assert_eq!(connection["hasNextPage"], false);
    let whole = connection["events"].as_array().unwrap().clone();
    // 5 authorisations, 4 captures, 1 remittance, 1 refund.
    assert_eq!(whole.len(), 11, "{whole:?}");
    let positions: Vec<i64> = whole
        .iter()
        .map(|e| e["globalPosition"].as_i64().unwrap())
        .collect();
    assert!(
        positions.windows(2).all(|pair| pair[0] < pair[1]),
        "commit order: {positions:?}"
    );
    for event in &whole {
        let aggregate = event["aggregateId"].as_str().unwrap();
        assert!(
            ours.contains(aggregate) || aggregate == remittance_id,
            "foreign event {event}"
        );
        assert!(event["actor"].as_str().unwrap().starts_with("api_key:"));
    }
    let types: Vec<&str> = whole.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(
        types.iter().filter(|t| **t == "PaymentAuthorised").count(),
        5
    );
    assert_eq!(types.iter().filter(|t| **t == "PaymentCaptured").count(), 4);
    assert_eq!(
        types
            .iter()
            .filter(|t| **t == "RemittanceSubmitted")
            .count(),
        1
    );
    assert_eq!(types.last(), Some(&"PaymentRefunded"));
    assert_eq!(
        whole
            .iter()
            .filter(|e| e["aggregateType"] == "Remittance")
            .count(),
        1
    );

    for size in [1, 2, 3] {
        let (paged, _) = read_events(&app, None, size).await;
        assert_eq!(
            paged, whole,
            "pages of {size} give the whole log, no gap, no duplicate"
        );
    }

    // Resuming from any event's cursor gives exactly what follows it.
    let cursor = whole[4]["cursor"].as_str().unwrap().to_string();
    let (rest, _) = read_events(&app, Some(cursor), 2).await;
    assert_eq!(rest, whole[5..].to_vec());

    // At the end, the cursor stays put, then picks up only new events.
    let end = connection["endCursor"].as_str().unwrap().to_string();
    let response = app
        .graphql(EVENTS, json!({ "after": end, "first": 10 }))
        .await;
    let idle = data(&response)["events"].clone();
    assert_eq!(idle["events"], json!([]));
    assert_eq!(idle["hasNextPage"], false);
    let idle_cursor = idle["endCursor"].as_str().unwrap().to_string();
    app.graphql_as(
        &other.test_key,
        caisse_tests::CREATE_PAYMENT,
        json!({ "input": payment_input("1.00", "FOREIGN-2") }),
    )
    .await;
    let fresh = app.create_payment(payment_input("3.00", "ORD-NEW")).await;
    let (new_events, _) = read_events(&app, Some(idle_cursor), 2).await;
    assert_eq!(new_events.len(), 1, "{new_events:?}");
    assert_eq!(new_events[0]["aggregateId"], fresh["id"]);
    assert_eq!(new_events[0]["type"], "PaymentAuthorised");
    assert!(new_events[0]["globalPosition"].as_i64().unwrap() > *positions.last().unwrap());

    for first in [0, 501] {
        let response = app.graphql(EVENTS, json!({ "first": first })).await;
        assert_eq!(
            error_code(&response),
            "BAD_USER_INPUT",
            "first {first}: {response}"
        );
    }
    let response = app
        .graphql(EVENTS, json!({ "after": "bm90LWEtY3Vyc29y", "first": 20 }))
        .await;
    assert_eq!(error_code(&response), "BAD_USER_INPUT", "{response}");
}

caisse_tests::both_backends!(
    payments_filter_by_creation_date_with_dates_and_instants,
    super::filtering_by_creation_date_accepts_dates_and_instants
);
caisse_tests::both_backends!(
    each_payments_filter_selects_exactly_its_payments,
    super::each_payments_filter_selects_exactly_its_payments
);
caisse_tests::both_backends!(
    payments_come_newest_first_and_keyset_pages_have_no_gap_or_duplicate,
    super::payments_come_newest_first_and_keyset_pages_have_no_gap_or_duplicate
);
caisse_tests::both_backends!(
    cash_summary_totals_each_day_currency_and_channel_exactly,
    super::cash_summary_totals_each_day_currency_and_channel_exactly
);
caisse_tests::both_backends!(
    remittances_are_newest_first_and_paginate_without_gap,
    super::remittances_are_newest_first_and_paginate_without_gap
);
caisse_tests::both_backends!(
    events_give_the_callers_log_in_commit_order_and_cursors_resume_without_gap,
    super::events_give_the_callers_log_in_commit_order_and_cursors_resume_without_gap
);
