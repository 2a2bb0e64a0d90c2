//! The `events` subscription over WebSocket: graphql-transport-ws on
//! `/graphql/ws`, a replay from a cursor then live events, a resume after a
//! disconnection with no gap and no duplicate, the API key in `connection_init`,
//! and the filter. A real server and a real WebSocket client, on both backends.

use std::time::Duration;

use caisse_tests::{data, error_code, next_reference_number, payment_input, TestApp};
use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

const SUBSCRIBE: &str = "subscription($after: String, $filter: EventFilterInput) {
  events(after: $after, filter: $filter) { cursor globalPosition aggregateType aggregateId sequence type }
}";

const EVENTS: &str = "query($after: String) {
  events(after: $after, first: 500) {
    events { cursor globalPosition aggregateType aggregateId sequence type }
    endCursor hasNextPage
  }
}";

/// How long a test waits for an event it expects.
const EVENT_WAIT: Duration = Duration::from_secs(10);
/// How long a test watches for an event it does not expect.
const QUIET_WAIT: Duration = Duration::from_millis(1_500);

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

#[derive(Debug)]
enum Received {
    Message(Value),
    /// The server closed the connection: its close code and reason, if it sent them.
    Closed(Option<(u16, String)>),
    Timeout,
}

/// The WebSocket URL of a server at `address` (`http://127.0.0.1:port`).
fn ws_url(address: &str) -> String {
    format!("{}/graphql/ws", address.replacen("http://", "ws://", 1))
}

/// Opens `/graphql/ws` with graphql-transport-ws and sends `connection_init`.
async fn open(address: &str, init_payload: Value) -> Socket {
    let mut request = ws_url(address).into_client_request().expect("request");
    request.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        "graphql-transport-ws".parse().unwrap(),
    );
    let (mut socket, response) = tokio_tungstenite::connect_async(request)
        .await
        .expect("WebSocket upgrade");
    assert_eq!(
        response.headers()["sec-websocket-protocol"],
        "graphql-transport-ws"
    );
    send(
        &mut socket,
        json!({ "type": "connection_init", "payload": init_payload }),
    )
    .await;
    socket
}

async fn send(socket: &mut Socket, message: Value) {
    socket
        .send(Message::Text(message.to_string().into()))
        .await
        .expect("message sent");
}

/// The next protocol message within `wait`, answering the server's pings.
async fn receive(socket: &mut Socket, wait: Duration) -> Received {
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let Ok(next) = tokio::time::timeout_at(deadline, socket.next()).await else {
            return Received::Timeout;
        };
        match next {
            None | Some(Err(_)) => return Received::Closed(None),
            Some(Ok(Message::Text(text))) => {
                let message: Value = serde_json::from_str(&text).expect("a JSON message");
                if message["type"] == "ping" {
                    send(socket, json!({ "type": "pong" })).await;
                    continue;
                }
                return Received::Message(message);
            }
            Some(Ok(Message::Close(frame))) => {
                return Received::Closed(
                    frame.map(|frame| (u16::from(frame.code), frame.reason.to_string())),
                )
            }
            Some(Ok(_)) => {}
        }
    }
}

async fn expect_ack(socket: &mut Socket) {
    match receive(socket, EVENT_WAIT).await {
        Received::Message(message) if message["type"] == "connection_ack" => {}
        other => panic!("expected connection_ack, got {other:?}"),
    }
}

/// Connects to the server at `address` with `init_payload`, expects the acknowledgement, and starts
/// subscription "1".
async fn subscribe_with(
    address: &str,
    init_payload: Value,
    after: Option<&str>,
    filter: Value,
) -> Socket {
    let mut socket = open(address, init_payload).await;
    expect_ack(&mut socket).await;
    send(
        &mut socket,
        json!({
            "id": "1",
            "type": "subscribe",
            "payload": { "query": SUBSCRIBE, "variables": { "after": after, "filter": filter } }
        }),
    )
    .await;
    socket
}

/// `subscribe_with` the test key.
async fn subscribe(app: &TestApp, after: Option<&str>, filter: Value) -> Socket {
    let init = json!({ "Authorization": format!("Bearer {}", app.test_key) });
    subscribe_with(&app.address, init, after, filter).await
}

/// The next event of subscription "1", or None if none came within `wait`.
async fn next_event(socket: &mut Socket, wait: Duration) -> Option<Value> {
    match receive(socket, wait).await {
        Received::Timeout => None,
        Received::Message(message) if message["type"] == "next" && message["id"] == "1" => {
            assert!(
                message["payload"].get("errors").is_none(),
                "subscription error: {message}"
            );
            Some(message["payload"]["data"]["events"].clone())
        }
        other => panic!("expected an event, got {other:?}"),
    }
}

/// Exactly `count` events, each within `EVENT_WAIT`.
async fn next_events(socket: &mut Socket, count: usize) -> Vec<Value> {
    let mut events = Vec::new();
    while events.len() < count {
        match next_event(socket, EVENT_WAIT).await {
            Some(event) => events.push(event),
            None => panic!(
                "only {} of {count} events arrived: {events:#?}",
                events.len()
            ),
        }
    }
    events
}

/// No event arrives for a while (nothing left over, nothing twice).
async fn assert_quiet(socket: &mut Socket) {
    if let Some(event) = next_event(socket, QUIET_WAIT).await {
        panic!("unexpected event {event}");
    }
}

/// The test shop's whole log, from the `events` query (every page).
async fn all_events(app: &TestApp) -> Vec<Value> {
    let mut events = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let response = app.graphql(EVENTS, json!({ "after": after })).await;
        let page = &data(&response)["events"];
        events.extend(page["events"].as_array().expect("events").iter().cloned());
        if page["hasNextPage"] != true {
            return events;
        }
        after = Some(page["endCursor"].as_str().expect("endCursor").to_string());
    }
}

/// The `endCursor` of the whole log as the `events` query sees it now.
async fn end_cursor(app: &TestApp) -> String {
    let response = app
        .graphql(
            "{ events(first: 500) { endCursor hasNextPage } }",
            json!({}),
        )
        .await;
    let page = &data(&response)["events"];
    assert_eq!(page["hasNextPage"], false, "{response}");
    page["endCursor"].as_str().expect("endCursor").to_string()
}

async fn create_payments(app: &TestApp, count: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for _ in 0..count {
        let payment = app
            .create_payment(payment_input(
                "12.50",
                &format!("ORD-SUB-{}", next_reference_number()),
            ))
            .await;
        assert_eq!(payment["status"], "AUTHORISED", "{payment}");
        ids.push(payment["id"].as_str().expect("payment id").to_string());
    }
    ids
}

async fn refund(app: &TestApp, payment_id: &str, amount: &str) {
    let response = app
        .graphql(
            "mutation($id: ID!, $amount: String!) { refundPayment(id: $id, amount: $amount) { id } }",
            json!({ "id": payment_id, "amount": amount }),
        )
        .await;
    data(&response);
}

// (a) A subscription without a cursor replays the log in its order, with cursors
// that the `events` query continues from.
caisse_tests::both_backends!(
    replays_the_log_in_order,
    super::replays_the_log_in_order_body
);
async fn replays_the_log_in_order_body(app: TestApp) {
    let ids = create_payments(&app, 3).await;
    let expected = all_events(&app).await;
    assert!(expected.len() >= 3, "{expected:#?}");

    let mut socket = subscribe(&app, None, Value::Null).await;
    let received = next_events(&mut socket, expected.len()).await;
    assert_eq!(
        received, expected,
        "the subscription replays the log in order"
    );
    for id in &ids {
        assert!(
            received.iter().any(|event| event["aggregateId"] == *id),
            "no event of {id}"
        );
    }
    // Each event's cursor is an `events` cursor: the query continues after it.
    let response = app
        .graphql(EVENTS, json!({ "after": received[0]["cursor"] }))
        .await;
    assert_eq!(data(&response)["events"]["events"][0], received[1]);
    assert_quiet(&mut socket).await;
}

// (b) A client that drops its connection mid-stream and resumes with the last
// cursor it received gets every event exactly once.
caisse_tests::both_backends!(resumes_without_gap_or_duplicate, super::resumes_body);
async fn resumes_body(app: TestApp) {
    create_payments(&app, 3).await;
    let mut socket = subscribe(&app, None, Value::Null).await;
    let mut received = next_events(&mut socket, 2).await;
    // An abrupt disconnection, events still to come.
    drop(socket);

    // Events committed while the client is away.
    create_payments(&app, 2).await;
    let expected = all_events(&app).await;
    assert!(expected.len() > 2 + 2, "{expected:#?}");

    let last = received.last().unwrap()["cursor"]
        .as_str()
        .unwrap()
        .to_string();
    let mut socket = subscribe(&app, Some(&last), Value::Null).await;
    received.extend(next_events(&mut socket, expected.len() - received.len()).await);
    assert_eq!(
        received, expected,
        "no gap and no duplicate after the resume"
    );
    assert_quiet(&mut socket).await;

    // And the resumed subscription goes on live.
    let id = create_payments(&app, 1).await.remove(0);
    let expected = all_events(&app).await;
    received.extend(next_events(&mut socket, expected.len() - received.len()).await);
    assert_eq!(received, expected);
    assert!(received.last().unwrap()["aggregateId"] == id.as_str());
    assert_quiet(&mut socket).await;
}

// (c) An event committed after the subscription started arrives within seconds.
caisse_tests::both_backends!(streams_new_events_live, super::live_body);
async fn live_body(app: TestApp) {
    create_payments(&app, 1).await;
    let after = end_cursor(&app).await;
    let mut socket = subscribe(&app, Some(&after), Value::Null).await;
    // Let the subscription reach the end of the log and wait there.
    assert_quiet(&mut socket).await;

    let started = std::time::Instant::now();
    let id = create_payments(&app, 1).await.remove(0);
    let event = next_event(&mut socket, Duration::from_secs(5))
        .await
        .expect("the new payment's event within 5 s");
    eprintln!(
        "{:?}: live event {:?} after {:?}",
        app.backend,
        event["type"],
        started.elapsed()
    );
    assert_eq!(event["aggregateId"], id.as_str());
    assert_eq!(event["aggregateType"], "Payment");
    let expected = all_events(&app).await;
    assert!(expected.contains(&event));
}

// (c') Several processes on one database: a subscriber of one server sees the
// events another server commits. On PostgreSQL the projector that did not take
// the batch hears of it by LISTEN/NOTIFY and publishes it at once; its poll is
// the fallback (and the only way on SQLite).
caisse_tests::both_backends!(
    streams_events_committed_by_another_process,
    super::another_process_body
);
async fn another_process_body(app: TestApp) {
    let second = app.second_server(|_| {}).await;
    let after = end_cursor(&app).await;
    let init = json!({ "Authorization": format!("Bearer {}", app.test_key) });
    let mut socket = subscribe_with(&second.address, init, Some(&after), Value::Null).await;
    assert_quiet(&mut socket).await;
    if app.backend == caisse_tests::Backend::Postgres {
        // Both LISTEN connections up before the payment, or its NOTIFY is lost
        // (the poll would still deliver it, but this test is about NOTIFY).
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !(app.state.projectors.listening() && second.state.projectors.listening()) {
            assert!(
                std::time::Instant::now() < deadline,
                "LISTEN not up within 10 s"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    } else {
        assert!(!app.state.projectors.listening());
    }
    let heard = || {
        app.state.projectors.notifications_received()
            + second.state.projectors.notifications_received()
    };
    let heard_before = heard();

    // Committed through the first server.
    let id = create_payments(&app, 1).await.remove(0);
    let event = next_event(&mut socket, Duration::from_secs(5))
        .await
        .expect("the other process's event within 5 s");
    assert_eq!(event["aggregateId"], id.as_str());
    if app.backend == caisse_tests::Backend::Postgres {
        // Whichever projector took the batch (the first server's, woken by its
        // mutation, or the second's, on its poll), the other one hears of it by
        // NOTIFY; the notification may arrive just after the poll did the work.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while heard() == heard_before && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(heard() > heard_before, "neither server heard a NOTIFY");
        eprintln!(
            "notifications heard: first server {}, second server {}",
            app.state.projectors.notifications_received(),
            second.state.projectors.notifications_received()
        );
    } else {
        assert_eq!(heard(), 0);
    }
}

// (d) The key in `connection_init` decides who is connected: an unknown or missing
// key is refused, another merchant sees none of this shop's events, and naming
// another merchant's shop is SHOP_NOT_FOUND.
caisse_tests::both_backends!(authorisation, super::authorisation_body);
async fn authorisation_body(app: TestApp) {
    for payload in [
        json!({ "Authorization": "Bearer sk_test_unknownunknownunknown" }),
        json!({ "apiKey": "sk_live_unknown" }),
        json!({}),
        Value::Null,
    ] {
        let mut socket = open(&app.address, payload.clone()).await;
        match receive(&mut socket, EVENT_WAIT).await {
            Received::Closed(Some((4403, reason))) => assert!(reason.starts_with("Forbidden")),
            other => panic!("{payload} was not refused: {other:?}"),
        }
    }

    // Without graphql-transport-ws the upgrade itself is refused.
    let request = ws_url(&app.address).into_client_request().expect("request");
    match tokio_tungstenite::connect_async(request).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 400)
        }
        other => panic!("upgrade without the subprotocol: {:?}", other.map(|_| ())),
    }

    let ids = create_payments(&app, 1).await;
    let other = app.other_merchant().await;
    // The other merchant's key, as a bare `apiKey`: none of our events.
    let mut socket = subscribe_with(
        &app.address,
        json!({ "apiKey": other.test_key }),
        None,
        Value::Null,
    )
    .await;
    while let Some(event) = next_event(&mut socket, QUIET_WAIT).await {
        assert!(event["aggregateId"] != ids[0].as_str(), "{event}");
    }

    // The lower-case field works; another merchant's shop is not found.
    let init = json!({ "authorization": format!("Bearer {}", app.test_key) });
    let filter = json!({ "shopId": other.shop_id });
    let mut socket = subscribe_with(&app.address, init, None, filter).await;
    match receive(&mut socket, EVENT_WAIT).await {
        Received::Message(message) if message["type"] == "next" => {
            assert_eq!(
                error_code(&message["payload"]),
                "SHOP_NOT_FOUND",
                "{message}"
            )
        }
        other => panic!("expected SHOP_NOT_FOUND, got {other:?}"),
    }
    match receive(&mut socket, EVENT_WAIT).await {
        Received::Message(message) if message["type"] == "complete" => {}
        other => panic!("expected complete, got {other:?}"),
    }

    // Our own shop, named, is fine; a bad cursor is refused like in the query.
    let init = json!({ "Authorization": format!("Bearer {}", app.test_key) });
    let filter = json!({ "shopId": app.shop_id });
    let mut socket = subscribe_with(&app.address, init.clone(), None, filter).await;
    let event = next_event(&mut socket, EVENT_WAIT).await.expect("an event");
    assert_eq!(event["aggregateId"], ids[0].as_str());
    let mut socket = subscribe_with(&app.address, init, Some("not a cursor"), Value::Null).await;
    match receive(&mut socket, EVENT_WAIT).await {
        Received::Message(message) if message["type"] == "next" => {
            assert_eq!(
                error_code(&message["payload"]),
                "BAD_USER_INPUT",
                "{message}"
            )
        }
        other => panic!("expected BAD_USER_INPUT, got {other:?}"),
    }
}

// (e) `filter.types` yields only events of those types, replayed and live.
caisse_tests::both_backends!(filters_by_type, super::filter_body);
async fn filter_body(app: TestApp) {
    let captured = app.captured_payment("40.00").await;
    refund(&app, &captured, "5.00").await;
    create_payments(&app, 1).await;
    let refunds: Vec<Value> = all_events(&app)
        .await
        .into_iter()
        .filter(|event| event["type"] == "PaymentRefunded")
        .collect();
    assert_eq!(refunds.len(), 1, "{refunds:#?}");

    let filter = json!({ "types": ["PaymentRefunded"], "shopId": app.shop_id });
    let mut socket = subscribe(&app, None, filter).await;
    assert_eq!(next_events(&mut socket, 1).await, refunds);
    assert_quiet(&mut socket).await;

    // Live: a new payment is not a refund; a second refund is.
    create_payments(&app, 1).await;
    refund(&app, &captured, "7.00").await;
    let event = next_event(&mut socket, EVENT_WAIT)
        .await
        .expect("the second refund");
    assert_eq!(event["type"], "PaymentRefunded");
    assert_eq!(event["aggregateId"], captured.as_str());
    assert_quiet(&mut socket).await;
}
