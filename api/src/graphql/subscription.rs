//! Subscription root: the `events` subscription, the event log streamed live over
//! WebSocket (graphql-transport-ws on `GET /graphql/ws`) for integrators.
//!
//! A subscription replays the caller's events from its cursor, then follows the log:
//! the same scan as the `events` query (`query::scan_owned_events`, so the same
//! ownership rules and projected horizon), one page at a time. Each event carries
//! its cursor; a client that reconnects with the last cursor it received gets the
//! next event, with no gap and no duplicate.
//!
//! Wake-ups: when a page comes back empty the stream waits until the projections
//! that tell owners apart move (this process's projector publishes each batch it
//! commits, and its idle poll publishes what other processes committed), or at most
//! `POLL_INTERVAL`, then reads again.
//!
//! Backpressure: the stream is pulled. The WebSocket writer asks for the next event
//! only once the previous one is sent, and the stream reads a page only when the
//! one before is drained, so a slow subscriber holds at most one page.
//!
//! The connection (`serve_websocket`): the API key comes in `connection_init`'s
//! payload, checked like the HTTP handler's header before async-graphql takes the
//! connection over; an unknown key closes it with 4403.

use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use async_graphql::http::{WebSocketProtocols, WsMessage};
use async_graphql::{Context, InputObject, Subscription, ID};
use axum::extract::ws::{CloseFrame, Message, WebSocket};
use caisse_application::ports::LogPosition;
use caisse_infrastructure::event_log::LoggedEvent;
use futures::{SinkExt, Stream, StreamExt};
use serde_json::Value;
use tokio::sync::watch;

use super::cursors::parse_log_cursor;
use super::query::{parse_shop_id, request, scan_owned_events, state, HORIZON_PROJECTIONS};
use super::types::LogEvent;
use super::{CaisseSchema, RequestData};
use crate::auth::{authenticate, AuthError, Caller};
use crate::errors::{app_error, bad_input, not_found};
use crate::state::AppState;

/// Owned events read ahead of the subscriber, at most.
pub const SUBSCRIPTION_PAGE_SIZE: usize = 100;
/// Longest wait between two reads of an idle subscription (the fallback when no
/// wake-up comes, e.g. events only another process has projected so far).
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// Most event types one filter may name.
const FILTER_TYPES_MAX: usize = 100;
/// The one WebSocket subprotocol served: graphql-transport-ws (the `graphql-ws`
/// library's protocol; async-graphql calls it `GraphQLWS`).
pub const PROTOCOL: WebSocketProtocols = WebSocketProtocols::GraphQLWS;
/// How long a new connection may take to send `connection_init` (then 4408).
const CONNECTION_INIT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(InputObject, Default)]
pub struct EventFilterInput {
    /// Only events of these types (e.g. `PaymentRefunded`); every type when absent.
    pub types: Option<Vec<String>>,
    /// The caller's shop (the key's shop); another shop is `SHOP_NOT_FOUND`.
    pub shop_id: Option<ID>,
}

#[derive(Default)]
pub struct SubscriptionRoot;

#[Subscription]
impl SubscriptionRoot {
    /// The events of the caller's shop and mode, in commit order: first those after
    /// `after` (from the start of the log when absent), then each new one as the
    /// views apply it. Pass the `cursor` of the last event received as `after` to
    /// resume after a disconnection.
    async fn events(
        &self,
        ctx: &Context<'_>,
        after: Option<String>,
        filter: Option<EventFilterInput>,
    ) -> async_graphql::Result<impl Stream<Item = async_graphql::Result<LogEvent>>> {
        let state = state(ctx)?.clone();
        let caller = request(ctx)?.caller.clone();
        let cursor = match after.as_deref() {
            Some(text) => {
                parse_log_cursor(text).ok_or_else(|| bad_input("after", "not an events cursor"))?
            }
            None => LogPosition::default(),
        };
        let filter = filter.unwrap_or_default();
        if let Some(shop_id) = &filter.shop_id {
            if parse_shop_id("filter.shopId", shop_id)? != caller.shop_id {
                return Err(not_found("shop"));
            }
        }
        let types = match filter.types {
            None => None,
            Some(types) if types.is_empty() => {
                return Err(bad_input(
                    "filter.types",
                    "must not be empty; omit it for every type",
                ))
            }
            Some(types) if types.len() > FILTER_TYPES_MAX => {
                return Err(bad_input(
                    "filter.types",
                    format!("at most {FILTER_TYPES_MAX} types"),
                ))
            }
            Some(types) => Some(types.into_iter().collect()),
        };
        let wake = HORIZON_PROJECTIONS
            .iter()
            .filter_map(|name| state.projectors.watch_checkpoint(name))
            .collect();
        let tail = Tail {
            state,
            caller,
            types,
            cursor,
            pending: VecDeque::new(),
            read_now: true,
            wake,
            failed: false,
        };
        Ok(futures::stream::unfold(tail, Tail::next))
    }
}

/// The state of one subscription between two events.
struct Tail {
    state: Arc<AppState>,
    caller: Caller,
    types: Option<HashSet<String>>,
    /// Where the next read starts: past every event examined, owned or not.
    cursor: LogPosition,
    /// Events read and not yet handed to the subscriber (one page at most).
    pending: VecDeque<LoggedEvent>,
    /// The last read stopped at its bound, not at the end: read again at once.
    read_now: bool,
    /// The checkpoints of the projections the horizon is made of.
    wake: Vec<watch::Receiver<LogPosition>>,
    /// A read failed: the error was sent and the stream ends (the client resumes
    /// from its last cursor).
    failed: bool,
}

impl Tail {
    async fn next(mut self) -> Option<(async_graphql::Result<LogEvent>, Tail)> {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return Some((Ok(LogEvent::new(event)), self));
            }
            if self.failed {
                return None;
            }
            if !self.read_now {
                self.wait().await;
            }
            // Marked seen before the read: a batch committed during it wakes the
            // next wait instead of being missed.
            for receiver in &mut self.wake {
                receiver.borrow_and_update();
            }
            match scan_owned_events(
                &self.state,
                &self.caller,
                self.cursor,
                SUBSCRIPTION_PAGE_SIZE,
            )
            .await
            {
                Ok(scan) => {
                    self.cursor = scan.end;
                    self.read_now = scan.has_more;
                    let types = &self.types;
                    self.pending.extend(scan.events.into_iter().filter(|event| {
                        types
                            .as_ref()
                            .is_none_or(|types| types.contains(&event.event_type))
                    }));
                }
                Err(error) => {
                    self.failed = true;
                    return Some((Err(app_error(error)), self));
                }
            }
        }
    }

    /// Until a projection of the horizon moves, or `POLL_INTERVAL` at most.
    async fn wait(&mut self) {
        if self.wake.is_empty() {
            tokio::time::sleep(POLL_INTERVAL).await;
            return;
        }
        let changes = self
            .wake
            .iter_mut()
            .map(|receiver| Box::pin(receiver.changed()));
        match tokio::time::timeout(POLL_INTERVAL, futures::future::select_all(changes)).await {
            Ok((Ok(()), _, _)) | Err(_) => {}
            // The projector is gone (the server is stopping): poll.
            Ok((Err(_), _, _)) => tokio::time::sleep(POLL_INTERVAL).await,
        }
    }
}

/// Serves one upgraded WebSocket: `connection_init` first, whose payload names the
/// API key (`{"Authorization": "Bearer sk_…"}`, `authorization`, or a bare
/// `apiKey`), resolved like the HTTP header; then async-graphql runs the protocol
/// with the caller's `RequestData` in every subscription's context.
pub async fn serve_websocket(
    socket: WebSocket,
    app: Arc<AppState>,
    schema: CaisseSchema,
    request_id: Option<String>,
) {
    let (mut sink, mut incoming) = socket.split();
    let first = match tokio::time::timeout(CONNECTION_INIT_TIMEOUT, next_data(&mut incoming)).await
    {
        Ok(Some(first)) => first,
        // The client went away.
        Ok(None) => return,
        Err(_) => {
            return close(&mut sink, 4408, "Connection initialisation timeout").await;
        }
    };
    let payload = match serde_json::from_slice::<Value>(&first) {
        Ok(message) if message["type"] == "connection_init" => message["payload"].clone(),
        Ok(_) => return close(&mut sink, 4401, "Unauthorized: send connection_init first").await,
        Err(_) => return close(&mut sink, 4400, "Invalid message").await,
    };
    let caller = match authenticate(&app, authorization_of(&payload).as_deref()).await {
        Ok(caller) => caller,
        Err(AuthError::Unavailable) => {
            return close(&mut sink, 4500, "authentication is unavailable").await;
        }
        Err(AuthError::Missing) => {
            return close(
                &mut sink,
                4403,
                "Forbidden: connection_init payload needs {\"Authorization\": \"Bearer <api key>\"}",
            )
            .await;
        }
        Err(AuthError::Unknown) => {
            return close(&mut sink, 4403, "Forbidden: unknown or revoked API key").await;
        }
    };
    let mut data = async_graphql::Data::default();
    data.insert(RequestData {
        caller,
        request_id,
        idempotency_key: None,
    });
    // async-graphql sees the same `connection_init` and acknowledges it.
    let input = futures::stream::once(std::future::ready(first)).chain(
        incoming
            .take_while(|message| std::future::ready(message.is_ok()))
            .filter_map(|message| {
                std::future::ready(match message {
                    Ok(message @ (Message::Text(_) | Message::Binary(_))) => {
                        Some(message.into_data())
                    }
                    _ => None,
                })
            }),
    );
    let output = async_graphql::http::WebSocket::new(WithCodes(schema), input, PROTOCOL)
        .connection_data(data);
    futures::pin_mut!(output);
    // One message at a time: the next is produced only once this one is written.
    while let Some(message) = output.next().await {
        let message = match message {
            WsMessage::Text(text) => Message::Text(text.into()),
            WsMessage::Close(code, reason) => Message::Close(Some(CloseFrame {
                code,
                reason: reason.into(),
            })),
        };
        if sink.send(message).await.is_err() {
            break;
        }
    }
}

/// The schema, with a code on every error as over HTTP: those async-graphql raises
/// itself (syntax, unknown field, depth or complexity) get
/// `GRAPHQL_VALIDATION_FAILED`.
#[derive(Clone)]
struct WithCodes(CaisseSchema);

impl async_graphql::Executor for WithCodes {
    async fn execute(&self, request: async_graphql::Request) -> async_graphql::Response {
        let mut response = self.0.execute(request).await;
        give_codes(&mut response);
        response
    }

    fn execute_stream(
        &self,
        request: async_graphql::Request,
        session_data: Option<Arc<async_graphql::Data>>,
    ) -> futures::stream::BoxStream<'static, async_graphql::Response> {
        async_graphql::Executor::execute_stream(&self.0, request, session_data)
            .map(|mut response| {
                give_codes(&mut response);
                response
            })
            .boxed()
    }
}

fn give_codes(response: &mut async_graphql::Response) {
    for error in &mut response.errors {
        let has_code = error
            .extensions
            .as_ref()
            .is_some_and(|extensions| extensions.get("code").is_some());
        if !has_code {
            error
                .extensions
                .get_or_insert_with(Default::default)
                .set("code", crate::errors::codes::GRAPHQL_VALIDATION_FAILED);
        }
    }
}

/// The `Authorization` value a `connection_init` payload carries, if any.
fn authorization_of(payload: &Value) -> Option<String> {
    let header = payload
        .get("Authorization")
        .or_else(|| payload.get("authorization"))
        .and_then(Value::as_str);
    match header {
        Some(header) => Some(header.to_string()),
        None => payload
            .get("apiKey")
            .and_then(Value::as_str)
            .map(|key| format!("Bearer {key}")),
    }
}

/// The next text or binary message; None once the client is gone.
async fn next_data(
    incoming: &mut futures::stream::SplitStream<WebSocket>,
) -> Option<axum::body::Bytes> {
    loop {
        match incoming.next().await? {
            Ok(message @ (Message::Text(_) | Message::Binary(_))) => {
                return Some(message.into_data())
            }
            Ok(Message::Close(_)) | Err(_) => return None,
            Ok(Message::Ping(_) | Message::Pong(_)) => {}
        }
    }
}

async fn close(sink: &mut futures::stream::SplitSink<WebSocket, Message>, code: u16, reason: &str) {
    let _ = sink
        .send(Message::Close(Some(CloseFrame {
            code,
            reason: reason.into(),
        })))
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_read_from_any_of_the_three_fields() {
        let bearer = Some("Bearer sk_test_1".to_string());
        let payload = serde_json::json!({ "Authorization": "Bearer sk_test_1" });
        assert_eq!(authorization_of(&payload), bearer);
        let payload = serde_json::json!({ "authorization": "Bearer sk_test_1" });
        assert_eq!(authorization_of(&payload), bearer);
        let payload = serde_json::json!({ "apiKey": "sk_test_1" });
        assert_eq!(authorization_of(&payload), bearer);
        assert_eq!(authorization_of(&Value::Null), None);
        assert_eq!(authorization_of(&serde_json::json!({ "apiKey": 1 })), None);
    }
}
