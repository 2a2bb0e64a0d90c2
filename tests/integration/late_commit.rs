//! The global log's reader is safe against late commits: an append held open while later ones commit is still delivered, in order.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use caisse_application::ports::LogPosition;
use caisse_domain::card::{CardBrand, CardExpiry, CardSnapshot};
use caisse_domain::payment::{Authorisation, CaptureMode, Channel, PaymentDetails, PaymentEvent};
use caisse_domain::{Mode, Money, PaymentId, ShopId};
use caisse_tests::{data, payment_input, spawn_app, test_start, Backend, TestApp, CREATE_PAYMENT};
use serde_json::{json, Value};
use sqlx::Connection;
use uuid::Uuid;

const EVENTS: &str = "query($after: String, $first: Int!) {
  events(after: $after, first: $first) { events { cursor globalPosition aggregateType aggregateId sequence type } endCursor hasNextPage }
}";

async fn events_page(app: &TestApp, after: Option<&str>, first: i64) -> Value {
    let response = app
        .graphql(EVENTS, json!({ "after": after, "first": first }))
        .await;
    data(&response)["events"].clone()
}

fn aggregate_ids(page: &Value) -> Vec<String> {
    page["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|event| event["aggregateId"].as_str().unwrap().to_string())
        .collect()
}

/// A real `PaymentAuthorised` of the test shop, as the application would have written it.
fn authorised_event(payment_id: &str, shop_id: &str) -> Value {
    let details = PaymentDetails {
        payment_id: PaymentId::parse(payment_id).expect("payment id"),
        shop_id: ShopId::parse(shop_id).expect("shop id"),
        mode: Mode::Test,
        order_reference: "HELD-1".into(),
        amount: Money::parse_positive("12.34", "EUR").expect("amount"),
        channel: Channel::Ecommerce,
        capture_mode: CaptureMode::Automatic,
        capture_date: test_start().date_naive(),
        card: CardSnapshot {
            token: format!("tok_{}", Uuid::new_v4().simple()),
            bin: "497010".into(),
            last_four: "0006".into(),
            brand: CardBrand::Cb,
            networks: vec![CardBrand::Cb, CardBrand::Visa],
            expiry: CardExpiry {
                month: 12,
                year: 2030,
            },
            fingerprint: "ab".repeat(32),
            holder_name: Some("Held Test".into()),
            issuing_country: None,
        },
        buyer_email: None,
        buyer_ip: None,
        duplicated_from: None,
        instalment_of: None,
        authorisation_validity_days: 7,
        capture_trigger: Default::default(),
        acquirer_contract: caisse_domain::acquirer::SIMULATOR_CONTRACT.into(),
        buyer_country: None,
        buyer_language: None,
        three_ds: Default::default(),
        risk: Default::default(),
        occurred_at: test_start(),
    };
    let event = PaymentEvent::PaymentAuthorised {
        details,
        authorisation: Authorisation {
            authorisation_code: "424242".into(),
            acquirer_reference: "SIMHELD".into(),
        },
    };
    serde_json::to_value(&event).expect("event serialises")
}

/// Later payments' ids once all `count` of them are committed (read outside the held transaction).
async fn committed_payments_other_than(
    watcher: &mut sqlx::PgConnection,
    held_id: &str,
    count: usize,
) -> Vec<(String, i64)> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT aggregate_id, tx_id::text::bigint FROM events
              WHERE aggregate_type = 'Payment' AND aggregate_id <> $1 ORDER BY global_position",
        )
        .bind(held_id)
        .fetch_all(&mut *watcher)
        .await
        .expect("watch events");
        if rows.len() >= count {
            return rows;
        }
        assert!(
            Instant::now() < deadline,
            "later payments did not commit: {rows:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_held_open_while_later_ones_commit_is_still_delivered_first_to_events_and_to_the_projector(
) {
    let Some(app) = spawn_app(Backend::Postgres).await else {
        return;
    };
    let start_cursor = events_page(&app, None, 500).await["endCursor"]
        .as_str()
        .unwrap()
        .to_string();

    // 1. Append one event in a transaction we keep open.
    let held_id = format!("pay_{}", Uuid::now_v7().simple());
    let mut held = sqlx::PgConnection::connect(&app.database_url)
        .await
        .expect("held connection");
    let mut watcher = sqlx::PgConnection::connect(&app.database_url)
        .await
        .expect("watcher connection");
    sqlx::query("BEGIN")
        .execute(&mut held)
        .await
        .expect("begin");
    sqlx::query(
        "INSERT INTO events (aggregate_type, aggregate_id, sequence, event_type, event_version, payload, metadata)
         VALUES ('Payment', $1, 1, 'PaymentAuthorised', '1', $2::json, '{}')",
    )
    .bind(&held_id)
    .bind(authorised_event(&held_id, &app.shop_id).to_string())
    .execute(&mut held)
    .await
    .expect("held append");
    let held_tx: i64 = sqlx::query_scalar("SELECT pg_current_xact_id()::text::bigint")
        .fetch_one(&mut held)
        .await
        .expect("held tx");

    // 2. Three payments commit after it. Their mutations wait for views that cannot
    //    pass the held transaction, so they run in the background.
    let creates: Vec<_> = (0..3)
        .map(|index| {
            let client = app.client.clone();
            let url = format!("{}/graphql", app.address);
            let key = app.test_key.clone();
            let input = payment_input("10.00", &format!("LATER-{index}"));
            tokio::spawn(async move {
                let response: Value = client
                    .post(url)
                    .bearer_auth(key)
                    .json(&json!({ "query": CREATE_PAYMENT, "variables": { "input": input } }))
                    .send()
                    .await
                    .expect("request sent")
                    .json()
                    .await
                    .expect("JSON response");
                response
            })
        })
        .collect();
    let later = committed_payments_other_than(&mut watcher, &held_id, 3).await;
    assert_eq!(later.len(), 3);
    for (id, tx_id) in &later {
        assert!(
            *tx_id > held_tx,
            "{id} committed in tx {tx_id}, not after the held tx {held_tx}"
        );
    }
    let later_ids: Vec<String> = later.iter().map(|(id, _)| id.clone()).collect();

    // 3. While the held transaction is open, nothing from it or after it is read.
    let read = app
        .state
        .log
        .read_after(LogPosition::default(), 1_000)
        .await
        .expect("read the log");
    let read_ids: HashSet<&str> = read
        .iter()
        .map(|event| event.aggregate_id.as_str())
        .collect();
    for id in later_ids.iter().chain([&held_id]) {
        assert!(
            !read_ids.contains(id.as_str()),
            "the reader passed the held transaction: it returned {id}"
        );
    }
    for page in [
        events_page(&app, None, 500).await,
        events_page(&app, Some(&start_cursor), 500).await,
    ] {
        let ids = aggregate_ids(&page);
        for id in later_ids.iter().chain([&held_id]) {
            assert!(
                !ids.contains(id),
                "events passed the held transaction: {page}"
            );
        }
    }
    let not_yet = app
        .graphql(
            "query($id: ID!) { payment(id: $id) { id } }",
            json!({ "id": later_ids[0] }),
        )
        .await;
    assert!(
        not_yet.get("errors").is_some(),
        "the projector applied an event beyond the held transaction: {not_yet}"
    );
    let waiting_cursor = events_page(&app, Some(&start_cursor), 500).await["endCursor"]
        .as_str()
        .unwrap()
        .to_string();

    // 4. Commit: the held event arrives, before the three later ones.
    sqlx::query("COMMIT")
        .execute(&mut held)
        .await
        .expect("commit");
    for create in creates {
        let response = tokio::time::timeout(Duration::from_secs(10), create)
            .await
            .expect("mutation returns")
            .expect("task");
        let payment = &data(&response)["createPayment"];
        assert_eq!(payment["status"], "AUTHORISED", "{payment}");
        assert!(later_ids.contains(&payment["id"].as_str().unwrap().to_string()));
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let (from_start, from_waiting_cursor) = loop {
        let from_start = events_page(&app, Some(&start_cursor), 500).await;
        let from_waiting_cursor = events_page(&app, Some(&waiting_cursor), 500).await;
        if aggregate_ids(&from_start).len() >= 4 && aggregate_ids(&from_waiting_cursor).len() >= 4 {
            break (from_start, from_waiting_cursor);
        }
        assert!(
            Instant::now() < deadline,
            "the log never delivered all four events: {from_start}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    for page in [&from_start, &from_waiting_cursor] {
        let ids = aggregate_ids(page);
        assert_eq!(ids.len(), 4, "{page}");
        assert_eq!(
            ids[0], held_id,
            "the held event must come first, in commit order: {page}"
        );
        let rest: HashSet<&String> = ids[1..].iter().collect();
        assert_eq!(rest, later_ids.iter().collect::<HashSet<_>>());
        assert_eq!(page["events"][0]["type"], "PaymentAuthorised");
        assert_eq!(page["events"][0]["sequence"], 1);
    }
    // The list is in cursor order and each event is delivered once.
    let cursors: Vec<&str> = from_start["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| event["cursor"].as_str().unwrap())
        .collect();
    assert_eq!(cursors.iter().collect::<HashSet<_>>().len(), 4);
    let positions: Vec<LogPosition> = app
        .state
        .log
        .read_after(LogPosition::default(), 1_000)
        .await
        .expect("read the log")
        .into_iter()
        .filter(|event| event.aggregate_type == "Payment")
        .map(|event| event.position)
        .collect();
    assert_eq!(positions.len(), 4);
    assert!(
        positions.windows(2).all(|pair| pair[0] < pair[1]),
        "{positions:?}"
    );

    // 5. The projector delivered it to the payments view.
    let response = app
        .graphql("query($id: ID!) { payment(id: $id) { id status amount orderReference card { lastFour } } }", json!({ "id": held_id }))
        .await;
    let payment = &data(&response)["payment"];
    assert_eq!(payment["status"], "AUTHORISED");
    assert_eq!(payment["amount"], "12.34");
    assert_eq!(payment["orderReference"], "HELD-1");
    assert_eq!(payment["card"]["lastFour"], "0006");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_after_delivers_every_event_once_in_global_position_order_across_pages_on_sqlite() {
    let Some(app) = spawn_app(Backend::Sqlite).await else {
        return;
    };
    let mut ids = Vec::new();
    for index in 0..6 {
        let payment = app
            .create_payment(payment_input("20.00", &format!("PAGE-{index}")))
            .await;
        ids.push(payment["id"].as_str().unwrap().to_string());
    }
    app.run_remittance().await;
    for id in &ids[..3] {
        let response = app
            .graphql(
                "mutation($id: ID!) { refundPayment(id: $id, amount: \"5.00\") { id } }",
                json!({ "id": id }),
            )
            .await;
        data(&response);
    }

    let mut positions = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = events_page(&app, after.as_deref(), 4).await;
        let events = page["events"].as_array().expect("events");
        assert!(events.len() <= 4);
        positions.extend(
            events
                .iter()
                .map(|event| event["globalPosition"].as_i64().unwrap()),
        );
        pages += 1;
        assert!(pages < 50, "paging does not end");
        after = Some(page["endCursor"].as_str().unwrap().to_string());
        if page["hasNextPage"] == false {
            break;
        }
        assert_eq!(events.len(), 4, "a page before the last is full: {page}");
    }
    let expected: Vec<i64> = app
        .state
        .db()
        .fetch_all(
            "SELECT global_position FROM events WHERE aggregate_type IN ('Payment', 'Remittance') ORDER BY global_position",
            &[],
        )
        .await
        .expect("read positions")
        .iter()
        .map(|row| row.int("global_position"))
        .collect();
    // 6 authorisations, 6 captures, 1 remittance, 3 refunds.
    assert_eq!(expected.len(), 16);
    assert!(pages >= 4);
    assert_eq!(
        positions, expected,
        "pages must concatenate to the whole log of the shop, in order"
    );
    assert!(
        positions.windows(2).all(|pair| pair[1] == pair[0] + 1),
        "a gap in the log: {positions:?}"
    );

    // Nothing new: the last cursor stays put and returns nothing.
    let tail = events_page(&app, after.as_deref(), 4).await;
    assert_eq!(tail["events"], json!([]));
    assert_eq!(tail["endCursor"].as_str(), after.as_deref());
    assert_eq!(tail["hasNextPage"], false);
}
