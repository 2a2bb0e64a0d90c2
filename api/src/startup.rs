//! Builds the application (database, migrations, projectors, router) and serves
//! it. Tests boot the real server on port 0 through `Application::build_with_clock`.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use caisse_application::context::IdempotencyRequest;
use caisse_application::ports::{Clock, SystemClock};
use caisse_infrastructure::{Config, Database};
use serde_json::json;
use tokio::net::TcpListener;
use tower_http::request_id::{
    MakeRequestUuid, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tower_http::trace::TraceLayer;

use crate::auth::{authenticate, AuthError};
use crate::graphql::{build_schema, CaisseSchema, RequestData};
use crate::state::AppState;

const REQUEST_ID_HEADER: &str = "x-request-id";
const IDEMPOTENCY_KEY_HEADER: &str = "idempotency-key";

pub struct Application {
    listener: TcpListener,
    router: Router,
    state: Arc<AppState>,
}

#[derive(Clone)]
struct HttpState {
    app: Arc<AppState>,
    schema: CaisseSchema,
}

impl Application {
    pub async fn build(config: Config) -> anyhow::Result<Application> {
        Application::build_with_clock(config, Arc::new(SystemClock)).await
    }

    pub async fn build_with_clock(
        config: Config,
        clock: Arc<dyn Clock>,
    ) -> anyhow::Result<Application> {
        let database = Database::connect(&config).await?;
        database.migrate().await?;
        let listener = TcpListener::bind(config.listen).await?;
        let state = AppState::build(config, database, clock)?;
        state.load_reference().await?;
        state
            .projectors
            .catch_up_all()
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        state.projectors.spawn();
        state.spawn_reference_refresh();
        state.spawn_wal_checkpointer();
        if state.config.scheduler.enabled {
            state.spawn_scheduler();
        }
        let router = router(state.clone());
        tracing::info!(
            address = %listener.local_addr()?,
            database = %state.database.description,
            "caisse listening"
        );
        Ok(Application {
            listener,
            router,
            state,
        })
    }

    pub fn port(&self) -> u16 {
        self.listener
            .local_addr()
            .map(|addr| addr.port())
            .unwrap_or(0)
    }

    pub fn state(&self) -> Arc<AppState> {
        self.state.clone()
    }

    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(shutdown_signal())
            .await
    }
}

/// Ctrl-C or SIGTERM (what service managers send) stop the server gracefully.
async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {}
        _ = terminate => {}
    }
    tracing::info!("shutting down");
}

fn router(app: Arc<AppState>) -> Router {
    let production = app.config.production;
    let schema = build_schema(app.clone());
    let state = HttpState { app, schema };
    let request_id = HeaderName::from_static(REQUEST_ID_HEADER);
    let mut router = Router::new()
        .route("/graphql", post(graphql_handler))
        .route("/graphql/ws", get(graphql_ws_handler))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route(
            "/exports/payments.csv",
            crate::export::payments_route(state.app.clone(), crate::export::Format::Csv),
        )
        .route(
            "/exports/payments.xlsx",
            crate::export::payments_route(state.app.clone(), crate::export::Format::Xlsx),
        );
    if !production {
        router = router.route("/graphiql", get(graphiql));
    }
    router
        .with_state(state)
        .layer(PropagateRequestIdLayer::new(request_id.clone()))
        .layer(TraceLayer::new_for_http().make_span_with(|request: &Request<Body>| {
            let request_id = request
                .extensions()
                .get::<RequestId>()
                .and_then(|id| id.header_value().to_str().ok())
                .unwrap_or("-")
                .to_string();
            tracing::info_span!("request", method = %request.method(), path = %request.uri().path(), request_id)
        }))
        .layer(SetRequestIdLayer::new(request_id, MakeRequestUuid))
}

async fn graphiql() -> Html<String> {
    Html(
        async_graphql::http::GraphiQLSource::build()
            .endpoint("/graphql")
            .finish(),
    )
}

async fn readyz(State(state): State<HttpState>) -> Response {
    match state.app.db().fetch_optional("SELECT 1 AS ok", &[]).await {
        Ok(_) => (StatusCode::OK, "ready").into_response(),
        Err(error) => {
            tracing::error!(%error, "readiness check failed");
            (StatusCode::SERVICE_UNAVAILABLE, "database unavailable").into_response()
        }
    }
}

/// Prometheus text exposition: the log's head, each projection's checkpoint and
/// each notification dispatcher's (read from the database, so every process reports
/// the same lag), and build info.
async fn metrics(State(state): State<HttpState>) -> Response {
    let db = state.app.db();
    let head = match state.app.log.head().await {
        Ok(head) => head,
        Err(error) => {
            tracing::error!(%error, "metrics: reading the log head failed");
            return (StatusCode::SERVICE_UNAVAILABLE, "database unavailable").into_response();
        }
    };
    let checkpoints = db
        .fetch_all(
            "SELECT name, global_position FROM projection_checkpoints ORDER BY name",
            &[],
        )
        .await
        .unwrap_or_default();
    let dispatched = db
        .fetch_all(
            "SELECT name, global_position FROM notification_dispatch ORDER BY name",
            &[],
        )
        .await
        .unwrap_or_default();
    let mut body = String::new();
    body.push_str(
        "# HELP caisse_build_info Version of the running binary.\n# TYPE caisse_build_info gauge\n",
    );
    body.push_str(&format!(
        "caisse_build_info{{version=\"{}\"}} 1\n",
        env!("CARGO_PKG_VERSION")
    ));
    body.push_str("# HELP caisse_log_head_position Highest global position in the event log.\n");
    body.push_str("# TYPE caisse_log_head_position gauge\n");
    body.push_str(&format!(
        "caisse_log_head_position {}\n",
        head.global_position
    ));
    body.push_str(
        "# HELP caisse_projection_checkpoint_position Last log position a projection applied.\n",
    );
    body.push_str("# TYPE caisse_projection_checkpoint_position gauge\n");
    for row in &checkpoints {
        body.push_str(&format!(
            "caisse_projection_checkpoint_position{{projection=\"{}\"}} {}\n",
            row.text("name"),
            row.int("global_position")
        ));
    }
    body.push_str(
        "# HELP caisse_notification_dispatch_position Last log position a notification dispatcher sent.\n",
    );
    body.push_str("# TYPE caisse_notification_dispatch_position gauge\n");
    for row in &dispatched {
        body.push_str(&format!(
            "caisse_notification_dispatch_position{{dispatcher=\"{}\"}} {}\n",
            row.text("name"),
            row.int("global_position")
        ));
    }
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        body,
    )
        .into_response()
}

/// A GraphQL-shaped error for failures before the schema runs.
fn http_error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        Json(json!({ "errors": [{ "message": message, "extensions": { "code": code } }] })),
    )
        .into_response()
}

/// `GET /graphql/ws`: GraphQL subscriptions over WebSocket, subprotocol
/// graphql-transport-ws only; the API key comes in `connection_init`
/// (`graphql::subscription::serve_websocket`).
async fn graphql_ws_handler(
    State(state): State<HttpState>,
    headers: HeaderMap,
    upgrade: axum::extract::ws::WebSocketUpgrade,
) -> Response {
    use crate::graphql::subscription;
    let upgrade = upgrade
        .protocols([subscription::PROTOCOL.sec_websocket_protocol()])
        .max_message_size(state.app.config.request_body_bytes_max);
    if upgrade.selected_protocol().is_none() {
        return http_error(
            StatusCode::BAD_REQUEST,
            "UNSUPPORTED_PROTOCOL",
            "Sec-WebSocket-Protocol must offer graphql-transport-ws",
        );
    }
    let request_id = headers
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    upgrade.on_upgrade(move |socket| {
        subscription::serve_websocket(socket, state.app, state.schema, request_id)
    })
}

async fn graphql_handler(
    State(state): State<HttpState>,
    headers: HeaderMap,
    request: Request,
) -> Response {
    let caller = match authenticate(
        &state.app,
        headers.get("authorization").and_then(|v| v.to_str().ok()),
    )
    .await
    {
        Ok(caller) => caller,
        Err(AuthError::Unavailable) => {
            return http_error(
                StatusCode::SERVICE_UNAVAILABLE,
                "UNAVAILABLE",
                "authentication is unavailable",
            )
        }
        Err(error) => {
            return http_error(
                StatusCode::UNAUTHORIZED,
                crate::errors::codes::UNAUTHENTICATED,
                &error.to_string(),
            )
        }
    };
    let idempotency_key = match headers.get(IDEMPOTENCY_KEY_HEADER) {
        None => None,
        Some(value) => match value.to_str() {
            Ok(key)
                if !key.is_empty()
                    && key.len() <= IdempotencyRequest::KEY_LENGTH_MAX
                    && key.chars().all(|c| c.is_ascii_graphic()) =>
            {
                Some(key.to_string())
            }
            _ => {
                return http_error(
                    StatusCode::BAD_REQUEST,
                    crate::errors::codes::INVALID_IDEMPOTENCY_KEY,
                    "Idempotency-Key must be 1 to 255 printable ASCII characters",
                )
            }
        },
    };
    let body_limit = state.app.config.request_body_bytes_max;
    let body = match axum::body::to_bytes(request.into_body(), body_limit).await {
        Ok(body) => body,
        Err(_) => {
            return http_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "PAYLOAD_TOO_LARGE",
                &format!("request body exceeds {body_limit} bytes"),
            )
        }
    };
    let graphql_request: async_graphql::Request = match serde_json::from_slice(&body) {
        Ok(request) => request,
        Err(error) => {
            return http_error(
                StatusCode::BAD_REQUEST,
                "MALFORMED_REQUEST",
                &format!("body is not a GraphQL JSON request: {error}"),
            )
        }
    };
    let request_id = headers
        .get(REQUEST_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let data = RequestData {
        caller,
        request_id,
        idempotency_key,
    };
    let mut response = state.schema.execute(graphql_request.data(data)).await;
    for error in &mut response.errors {
        // Errors raised by async-graphql itself (syntax, unknown field, wrong type,
        // depth or complexity limit) carry no code; give them one.
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
    Json(response).into_response()
}
