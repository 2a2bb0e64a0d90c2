//! Test helpers: boot the real server on port 0 against a temporary SQLite file or
//! a fresh PostgreSQL database, call GraphQL over HTTP, and capture logs.
//!
//! PostgreSQL comes from `CAISSE_TEST_POSTGRES_URL` (default: the machine's
//! `postgres://postgres@127.0.0.1:5432/postgres`). When it is unreachable the
//! PostgreSQL half of a test is skipped with a message — unless
//! `CAISSE_REQUIRE_POSTGRES=1` (set by `.ci/run`), which turns that into a failure.

use std::io::Write;
use std::sync::{Arc, Mutex, OnceLock};

use caisse_api::state::AppState;
use caisse_api::Application;
use caisse_application::merchants::InitInput;
use caisse_application::ports::ManualClock;
use caisse_infrastructure::Config;
use chrono::{TimeZone, Utc};
use serde_json::{json, Value};
use sqlx::Connection;

pub use caisse_infrastructure;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs an async test body once per backend: `both_backends!(name, body_fn)`
/// creates `mod name { fn sqlite(); fn postgres(); }`.
#[macro_export]
macro_rules! both_backends {
    ($name:ident, $body:path) => {
        mod $name {
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                if let Some(app) = caisse_tests::spawn_app(caisse_tests::Backend::Sqlite).await {
                    $body(app).await;
                }
            }
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                if let Some(app) = caisse_tests::spawn_app(caisse_tests::Backend::Postgres).await {
                    $body(app).await;
                }
            }
        }
    };
}

/// Everything written by `tracing` in this test process, for the PAN scan.
pub fn captured_logs() -> String {
    String::from_utf8_lossy(&log_buffer().lock().expect("log buffer")).into_owned()
}

fn log_buffer() -> &'static Arc<Mutex<Vec<u8>>> {
    static BUFFER: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();
    BUFFER.get_or_init(|| Arc::new(Mutex::new(Vec::new())))
}

#[derive(Clone)]
struct BufferWriter;

impl Write for BufferWriter {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        log_buffer()
            .lock()
            .expect("log buffer")
            .extend_from_slice(bytes);
        if std::env::var_os("TEST_LOG").is_some() {
            std::io::stderr().write_all(bytes)?;
        }
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn init_logs() {
    static INIT: OnceLock<()> = OnceLock::new();
    INIT.get_or_init(|| {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(
                "debug,sqlx=info,hyper=info,h2=info,tower=info",
            ))
            .with_writer(|| BufferWriter)
            .with_ansi(false)
            .try_init();
    });
}

pub fn postgres_admin_url() -> String {
    std::env::var("CAISSE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

fn postgres_required() -> bool {
    matches!(
        std::env::var("CAISSE_REQUIRE_POSTGRES").as_deref(),
        Ok("1") | Ok("true")
    )
}

/// Creates a fresh database; `None` (or a panic when required) if PostgreSQL is unreachable.
pub async fn create_postgres_database() -> Option<(String, String)> {
    let admin_url = postgres_admin_url();
    let mut admin = match sqlx::PgConnection::connect(&admin_url).await {
        Ok(connection) => connection,
        Err(error) => {
            if postgres_required() {
                panic!("PostgreSQL required (CAISSE_REQUIRE_POSTGRES) but unreachable at {admin_url}: {error}");
            }
            eprintln!("SKIPPED: PostgreSQL unreachable at {admin_url} ({error}); set CAISSE_REQUIRE_POSTGRES=1 to fail instead");
            return None;
        }
    };
    let name = format!("caisse_test_{}", uuid::Uuid::new_v4().simple());
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .expect("create test database");
    let (base, _) = admin_url.rsplit_once('/').expect("database URL has a path");
    Some((name.clone(), format!("{base}/{name}")))
}

pub fn drop_postgres_database(name: &str) {
    let name = name.to_string();
    // Drop runs outside any runtime: use a short-lived one on its own thread.
    let _ = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            if let Ok(mut admin) = sqlx::PgConnection::connect(&postgres_admin_url()).await {
                let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut admin)
                    .await;
            }
        });
    })
    .join();
}

pub struct TestApp {
    pub backend: Backend,
    pub address: String,
    pub client: reqwest::Client,
    pub state: Arc<AppState>,
    pub clock: Arc<ManualClock>,
    pub merchant_id: String,
    pub shop_id: String,
    pub test_key: String,
    pub live_key: String,
    /// The database URL the server uses (for tests that open their own connection).
    pub database_url: String,
    pub data_dir: tempfile::TempDir,
    postgres_database: Option<String>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.server.abort();
        self.state.stop_background();
        if let Some(name) = &self.postgres_database {
            drop_postgres_database(name);
        }
    }
}

/// Another `caisse serve` on the same database and clock as a test app (several
/// processes on one PostgreSQL, or a restart). Stopped when dropped.
pub struct SecondServer {
    pub address: String,
    pub state: Arc<AppState>,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for SecondServer {
    fn drop(&mut self) {
        self.server.abort();
        self.state.stop_background();
    }
}

/// A second merchant's credentials, for isolation tests.
pub struct OtherMerchant {
    pub shop_id: String,
    pub test_key: String,
    pub live_key: String,
}

/// The instant every test starts at: 2026-03-02 10:00 UTC (a Monday).
pub fn test_start() -> chrono::DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 2, 10, 0, 0).unwrap()
}

pub async fn spawn_app(backend: Backend) -> Option<TestApp> {
    spawn_app_with(backend, |_| {}).await
}

/// `spawn_app` with a change to the server's configuration.
pub async fn spawn_app_with(
    backend: Backend,
    configure: impl FnOnce(&mut Config),
) -> Option<TestApp> {
    init_logs();
    let data_dir = tempfile::tempdir().expect("temporary directory");
    let (postgres_database, database_url) = match backend {
        Backend::Sqlite => (
            None,
            format!("sqlite://{}", data_dir.path().join("caisse.db").display()),
        ),
        Backend::Postgres => {
            let (name, url) = create_postgres_database().await?;
            (Some(name), url)
        }
    };
    let mut config = Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        database_url: Some(caisse_infrastructure::config::Secret::new(
            database_url.clone(),
        )),
        data_dir: data_dir.path().to_path_buf(),
        ..Config::default()
    };
    // Tests move the clock and run the scheduler by hand (`app.run_scheduler()`);
    // those about the background loop turn it back on.
    config.scheduler.enabled = false;
    // Webhook receivers of the tests listen on 127.0.0.1 on a random port; the
    // SSRF tests start a server with the production policy.
    config.webhooks.allow_private_addresses = true;
    config.webhooks.allow_any_port = true;
    configure(&mut config);
    let clock = Arc::new(ManualClock::new(test_start()));
    let application = Application::build_with_clock(config, clock.clone())
        .await
        .expect("application starts");
    let address = format!("http://127.0.0.1:{}", application.port());
    let state = application.state();
    let server = tokio::spawn(async move {
        let _ = application.run_until_stopped().await;
    });
    let init = state
        .merchants
        .init(InitInput {
            merchant_name: "Test merchant".into(),
            shop_name: "Test shop".into(),
            admin_email: "admin@example.com".into(),
        })
        .await
        .expect("merchant init");
    Some(TestApp {
        backend,
        address,
        client: reqwest::Client::new(),
        state,
        clock,
        merchant_id: init.merchant_id.to_string(),
        shop_id: init.shop_id.to_string(),
        test_key: init.test_api_key,
        live_key: init.live_api_key,
        database_url,
        data_dir,
        postgres_database,
        server,
    })
}

impl TestApp {
    /// POSTs a GraphQL request with the test key; returns the whole JSON response.
    pub async fn graphql(&self, query: &str, variables: Value) -> Value {
        self.graphql_as(&self.test_key, query, variables).await
    }

    pub async fn graphql_as(&self, key: &str, query: &str, variables: Value) -> Value {
        self.graphql_with(key, None, query, variables).await
    }

    pub async fn graphql_with(
        &self,
        key: &str,
        idempotency_key: Option<&str>,
        query: &str,
        variables: Value,
    ) -> Value {
        let mut request = self
            .client
            .post(format!("{}/graphql", self.address))
            .bearer_auth(key)
            .json(&json!({ "query": query, "variables": variables }));
        if let Some(idempotency_key) = idempotency_key {
            request = request.header("Idempotency-Key", idempotency_key);
        }
        request
            .send()
            .await
            .expect("request sent")
            .json()
            .await
            .expect("JSON response")
    }

    pub async fn other_merchant(&self) -> OtherMerchant {
        let init = self
            .state
            .merchants
            .init(InitInput {
                merchant_name: "Other merchant".into(),
                shop_name: "Other shop".into(),
                admin_email: format!("other-{}@example.com", uuid::Uuid::new_v4().simple()),
            })
            .await
            .expect("second merchant init");
        OtherMerchant {
            shop_id: init.shop_id.to_string(),
            test_key: init.test_api_key,
            live_key: init.live_api_key,
        }
    }
}

/// The `data` of a response, failing the test with the errors if there are any.
pub fn data(response: &Value) -> &Value {
    assert!(
        response.get("errors").is_none(),
        "unexpected GraphQL errors: {response}"
    );
    &response["data"]
}

/// The `extensions.code` of the first error.
pub fn error_code(response: &Value) -> String {
    response["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no error code in {response}"))
        .to_string()
}

pub const CREATE_PAYMENT: &str = "
mutation Create($input: CreatePaymentInput!) {
  createPayment(input: $input) {
    id status amount currency capturedAmount refundedAmount channel captureMode captureDate
    card { brand networks bin lastFour expiryMonth expiryYear }
    refusal { code message }
    duplicatedFrom
  }
}";

/// A valid e-commerce payment input on the accepted test card.
pub fn payment_input(amount: &str, order_reference: &str) -> Value {
    json!({
        "amount": amount,
        "currency": "EUR",
        "orderReference": order_reference,
        "channel": "ECOMMERCE",
        "card": { "number": "4970100000000006", "expiryMonth": 12, "expiryYear": 2030, "cvv": "123", "holderName": "Jeanne Test" },
        "buyerEmail": "buyer@example.com",
        "buyerIp": "203.0.113.9"
    })
}

/// A number unique within this test process, for order references.
pub fn next_reference_number() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

impl TestApp {
    /// Starts another server on this app's database and clock; `configure` changes
    /// its configuration (its scheduler is off unless `configure` turns it on).
    pub async fn second_server(&self, configure: impl FnOnce(&mut Config)) -> SecondServer {
        let mut config = Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            database_url: Some(caisse_infrastructure::config::Secret::new(
                self.database_url.clone(),
            )),
            data_dir: self.data_dir.path().to_path_buf(),
            ..Config::default()
        };
        config.scheduler.enabled = false;
        configure(&mut config);
        let application = Application::build_with_clock(config, self.clock.clone())
            .await
            .expect("second server starts");
        let address = format!("http://127.0.0.1:{}", application.port());
        let state = application.state();
        let server = tokio::spawn(async move {
            let _ = application.run_until_stopped().await;
        });
        SecondServer {
            address,
            state,
            server,
        }
    }

    /// Runs the work due at the test clock's time, as the scheduler loop would.
    pub async fn run_scheduler(&self) -> caisse_application::scheduler::SchedulerRun {
        self.state
            .scheduler
            .run_due()
            .await
            .expect("scheduled work runs")
    }

    /// Creates a payment and returns the `createPayment` object.
    pub async fn create_payment(&self, input: Value) -> Value {
        let response = self
            .graphql(CREATE_PAYMENT, json!({ "input": input }))
            .await;
        data(&response)["createPayment"].clone()
    }

    /// Runs the remittance of the default shop and returns the remittances.
    pub async fn run_remittance(&self) -> Value {
        let response = self
            .graphql(
                "mutation($shop: ID!) { runRemittance(shopId: $shop) { id paymentCount total currency } }",
                json!({ "shop": self.shop_id }),
            )
            .await;
        data(&response)["runRemittance"].clone()
    }

    /// Creates and captures a payment; returns its id.
    pub async fn captured_payment(&self, amount: &str) -> String {
        let payment = self
            .create_payment(payment_input(
                amount,
                // A counter, not a random UUID: a run of a UUID's hex digits can
                // be a Luhn-valid card-like number, which createPayment refuses.
                &format!("ORD-CAPTURED-{}", next_reference_number()),
            ))
            .await;
        assert_eq!(payment["status"], "AUTHORISED", "{payment}");
        self.run_remittance().await;
        payment["id"].as_str().unwrap().to_string()
    }
}
