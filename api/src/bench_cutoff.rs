//! `caisse bench cutoff`: the daily remittance cut-off of N payments due today,
//! run as the scheduler runs it, on a fresh SQLite file and/or a fresh PostgreSQL
//! database (docs/performance.md, "Remittance cut-off").
//!
//! The payments are created through the application layer (`PaymentService::create`
//! with a system context, a bounded number at a time), not over HTTP: 100k HTTP
//! round trips would measure the loader, not the cut-off. The clock is a
//! `ManualClock` starting, like the tests, on Monday 2026-03-02 at 10:00 UTC; it is
//! then set to the shop's cut-off (22:00 in Paris) and `Scheduler::run_due` is
//! timed. Every payment must end CAPTURED, in the log and in the remittances, or
//! the command fails.
//!
//! The loader, the fresh database and the final checks are shared with
//! `caisse bench rebuild` (bench_rebuild.rs).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use caisse_application::merchants::InitInput;
use caisse_application::payments::{CardInput, CreatePaymentInput};
use caisse_application::ports::{Clock, DuePayments, ManualClock, ScheduledKind};
use caisse_application::RequestContext;
use caisse_domain::payment::{AccessScope, CaptureMode, CaptureTrigger, Channel, PaymentStatus};
use caisse_domain::{Mode, PaymentId, ShopId};
use caisse_infrastructure::{Config, Database, Db};
use caisse_projections::queries::ViewDuePayments;
use caisse_projections::schedule::ViewScheduledWork;
use chrono::TimeZone;
use futures::StreamExt;
use sqlx::Connection;

use crate::bench::{Backend, BackendChoice};
use crate::state::AppState;

/// The amount of every payment the benches create.
const AMOUNT: &str = "10.00";
/// The actor recorded in the metadata of the events the loader causes.
const LOADER_ACTOR: &str = "bench";
/// How often the bench's stand-in for autovacuum looks for tables to analyze.
const AUTOANALYZE_INTERVAL: Duration = Duration::from_secs(10);

#[derive(clap::Args, Debug)]
pub struct CutoffArgs {
    /// Which backend(s) to measure.
    #[arg(long, value_enum, default_value_t = BackendChoice::Both)]
    pub backend: BackendChoice,
    /// Payments due today, all captured by the one cut-off.
    #[arg(long, default_value_t = 100_000)]
    pub payments: usize,
    /// Payments created at the same time while loading (not during the cut-off,
    /// which captures one payment after the other, as the scheduler does).
    #[arg(long, default_value_t = 32)]
    pub concurrency: usize,
    /// On a PostgreSQL server whose autovacuum is off, do not stand in for it
    /// (ANALYZE of the tables a tenth of which changed, every 10 s).
    #[arg(long)]
    pub no_analyze: bool,
    /// PostgreSQL server to create the fresh `caisse_bench_<uuid>` database on.
    #[arg(
        long,
        env = "CAISSE_BENCH_POSTGRES_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    pub postgres_url: String,
}

/// What becomes of one payment the loader creates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fate {
    /// AUTOMATIC capture today: captured by the cut-off.
    Captured,
    /// Captured, then refunded in full.
    Refunded,
    /// Captured, then refunded in part.
    PartiallyRefunded,
    /// MANUAL capture, validated, then captured by the cut-off.
    ValidatedThenCaptured,
    /// MANUAL capture, cancelled before the cut-off.
    Cancelled,
    /// MANUAL capture, never validated: still waiting after the cut-off.
    LeftToValidate,
}

impl Fate {
    fn capture_mode(self) -> CaptureMode {
        match self {
            Fate::Captured | Fate::Refunded | Fate::PartiallyRefunded => CaptureMode::Automatic,
            Fate::ValidatedThenCaptured | Fate::Cancelled | Fate::LeftToValidate => {
                CaptureMode::Manual
            }
        }
    }

    pub(crate) fn is_captured(self) -> bool {
        !matches!(self, Fate::Cancelled | Fate::LeftToValidate)
    }
}

/// A command the loader runs on payments it created, before or after the cut-off.
#[derive(Clone, Copy, Debug)]
pub(crate) enum FollowUp {
    Validate,
    Cancel,
    RefundAll,
    RefundPart,
}

impl FollowUp {
    pub(crate) fn name(self) -> &'static str {
        match self {
            FollowUp::Validate => "validate",
            FollowUp::Cancel => "cancel",
            FollowUp::RefundAll => "refund (full)",
            FollowUp::RefundPart => "refund (part)",
        }
    }

    fn expected(self) -> PaymentStatus {
        match self {
            FollowUp::Validate => PaymentStatus::Authorised,
            FollowUp::Cancel => PaymentStatus::Cancelled,
            FollowUp::RefundAll => PaymentStatus::Refunded,
            FollowUp::RefundPart => PaymentStatus::PartiallyRefunded,
        }
    }
}

/// One backend's state for a bench: the application as `caisse serve` wires it
/// (projectors running, scheduler loop not), on a clock the bench moves.
pub(crate) struct BenchApp {
    pub state: Arc<AppState>,
    pub clock: Arc<ManualClock>,
    pub shop_id: ShopId,
    context: RequestContext,
}

/// The instant every bench starts at, as in the tests: Monday 2026-03-02 10:00 UTC.
fn bench_start() -> chrono::DateTime<chrono::Utc> {
    chrono::Utc
        .with_ymd_and_hms(2026, 3, 2, 10, 0, 0)
        .single()
        .expect("a valid instant")
}

impl BenchApp {
    /// Migrates the (fresh) database of `config`, starts the projectors and creates
    /// the merchant whose test shop receives every payment.
    pub(crate) async fn start(config: Config, no_analyze: bool) -> anyhow::Result<BenchApp> {
        let database = Database::connect(&config).await?;
        database.migrate().await?;
        // A server in service runs autovacuum, which analyzes a table each time a
        // tenth of it changed. Without it (this machine's CI configuration) the
        // planner never gets statistics for the views, and the journal's lookup of
        // a payment's lines becomes a sequential scan per event: quadratic in the
        // load (docs/performance.md). The bench then does what autovacuum would.
        let autoanalyze = match &database.db {
            Db::Postgres(_) if !no_analyze => {
                let row = database
                    .db
                    .fetch_optional(
                        "SELECT setting FROM pg_settings WHERE name = 'autovacuum'",
                        &[],
                    )
                    .await
                    .map_err(app_error)?;
                let off = row.is_some_and(|row| row.text("setting") == "off");
                if off {
                    println!(
                        "  autovacuum is off on this server: the bench analyzes the tables as \
                         autovacuum would (--no-analyze to skip)"
                    );
                }
                off
            }
            _ => false,
        };
        let clock = Arc::new(ManualClock::new(bench_start()));
        let state = AppState::build(config, database, clock.clone())?;
        state.projectors.catch_up_all().await.map_err(app_error)?;
        // Services wait for their views, so the projectors must run.
        state.projectors.spawn();
        if autoanalyze {
            let task = spawn_autoanalyze(state.db().clone());
            state
                .background
                .lock()
                .expect("background tasks")
                .push(task);
        }
        let init = state
            .merchants
            .init(InitInput {
                merchant_name: "Bench merchant".into(),
                shop_name: "Bench shop".into(),
                admin_email: "bench@example.com".into(),
            })
            .await
            .map_err(|error| anyhow::anyhow!("merchant init: {error}"))?;
        let context =
            RequestContext::system(AccessScope::single(init.shop_id, Mode::Test), LOADER_ACTOR);
        Ok(BenchApp {
            state,
            clock,
            shop_id: init.shop_id,
            context,
        })
    }

    /// Stops the projectors and closes the pool, so the database can be dropped.
    pub(crate) async fn stop(self) {
        self.state.stop_background();
        match self.state.db() {
            Db::Postgres(pool) => pool.close().await,
            Db::Sqlite(pool) => pool.close().await,
        }
    }

    /// Creates one payment per fate, `concurrency` at a time, all captured today
    /// if captured at all; returns their ids in the order of `fates`.
    pub(crate) async fn create_payments(
        &self,
        fates: &[Fate],
        concurrency: usize,
    ) -> anyhow::Result<Vec<PaymentId>> {
        let total = fates.len();
        let started = Instant::now();
        let mut ids = vec![None; total];
        let mut created = futures::stream::iter(fates.iter().copied().enumerate())
            .map(|(index, fate)| async move { (index, self.create_payment(index, fate).await) })
            .buffer_unordered(concurrency.max(1));
        let mut done = 0;
        while let Some((index, outcome)) = created.next().await {
            ids[index] = Some(outcome.with_context(|| format!("creating payment #{index}"))?);
            done += 1;
            progress("created", done, total, started);
        }
        Ok(ids.into_iter().flatten().collect())
    }

    async fn create_payment(&self, index: usize, fate: Fate) -> anyhow::Result<PaymentId> {
        let capture_mode = fate.capture_mode();
        let input = CreatePaymentInput {
            amount: AMOUNT.into(),
            currency: "EUR".into(),
            order_reference: format!("BENCH-{index}"),
            channel: Channel::Ecommerce,
            card: CardInput {
                number: crate::bench::TEST_CARD.into(),
                expiry_month: 12,
                expiry_year: 2030,
                cvv: Some("123".into()),
                holder_name: None,
                brand: None,
            },
            capture_mode,
            capture_delay_days: None,
            // Captured on its date (today), by the cut-off.
            capture_trigger: CaptureTrigger::Date,
            buyer_email: None,
            buyer_ip: None,
            buyer_country: None,
            buyer_language: None,
        };
        let result = self
            .state
            .payments
            .create(&self.context, input)
            .await
            .map_err(app_error)?;
        let expected = match capture_mode {
            CaptureMode::Automatic => PaymentStatus::Authorised,
            CaptureMode::Manual => PaymentStatus::AuthorisedToValidate,
        };
        if result.payment.status != expected {
            bail!(
                "payment {} is {}, expected {} (is {} still the simulator's accepted card?)",
                result.payment_id,
                result.payment.status.as_str(),
                expected.as_str(),
                crate::bench::TEST_CARD
            );
        }
        Ok(result.payment_id)
    }

    /// Runs `follow_up` on each payment, `concurrency` at a time, and checks the
    /// status each ends in.
    pub(crate) async fn follow_up(
        &self,
        follow_up: FollowUp,
        ids: &[PaymentId],
        concurrency: usize,
    ) -> anyhow::Result<()> {
        let (total, started) = (ids.len(), Instant::now());
        let mut results = futures::stream::iter(ids.iter().copied())
            .map(|id| async move { (id, self.run_follow_up(follow_up, id).await) })
            .buffer_unordered(concurrency.max(1));
        let mut done = 0;
        while let Some((id, outcome)) = results.next().await {
            let status = outcome
                .map_err(app_error)
                .with_context(|| format!("{} of payment {id}", follow_up.name()))?;
            if status != follow_up.expected() {
                bail!(
                    "{} of payment {id}: status {}, expected {}",
                    follow_up.name(),
                    status.as_str(),
                    follow_up.expected().as_str()
                );
            }
            done += 1;
            progress(follow_up.name(), done, total, started);
        }
        Ok(())
    }

    async fn run_follow_up(
        &self,
        follow_up: FollowUp,
        id: PaymentId,
    ) -> Result<PaymentStatus, caisse_application::AppError> {
        let payments = &self.state.payments;
        let result = match follow_up {
            FollowUp::Validate => payments.validate(&self.context, id).await?,
            FollowUp::Cancel => payments.cancel(&self.context, id).await?,
            FollowUp::RefundAll => payments.refund(&self.context, id, AMOUNT.into()).await?,
            FollowUp::RefundPart => payments.refund(&self.context, id, "4.00".into()).await?,
        };
        Ok(result.payment.status)
    }

    /// Waits until every view has applied the whole log.
    pub(crate) async fn catch_up(&self) -> anyhow::Result<()> {
        self.state
            .projectors
            .catch_up_all()
            .await
            .map_err(app_error)
    }

    /// Sets the clock to the shop's first daily cut-off and runs the due work as the
    /// scheduler's loop would; the views are caught up first, so the cut-off sees
    /// every payment, and again at the end, so the checks see every capture.
    pub(crate) async fn run_cut_off(&self) -> anyhow::Result<CutOff> {
        self.catch_up().await?;
        let items = ViewScheduledWork {
            db: self.state.db().clone(),
        }
        .all()
        .await
        .map_err(app_error)?;
        let Some(at) = items
            .iter()
            .filter(|item| {
                item.shop_id == self.shop_id
                    && matches!(item.kind, ScheduledKind::RemittanceCutOff { .. })
            })
            .map(|item| item.due_at)
            .max()
        else {
            bail!("no remittance cut-off scheduled for the bench shop");
        };
        self.clock.set(at);
        // The query the cut-off starts with, timed alone to tell it from the captures.
        let started = Instant::now();
        let due = ViewDuePayments {
            db: self.state.db().clone(),
        }
        .list_due(self.shop_id, Mode::Test, self.clock.today())
        .await
        .map_err(app_error)?;
        let list_due = started.elapsed();
        let started = Instant::now();
        let run = self.state.scheduler.run_due().await.map_err(app_error)?;
        let run_due = started.elapsed();
        self.catch_up().await?;
        let views = started.elapsed();
        Ok(CutOff {
            at,
            due: due.len(),
            list_due,
            run_due,
            views,
            cut_offs_done: run
                .done
                .get(caisse_projections::schedule::REMITTANCE_CUT_OFF)
                .copied()
                .unwrap_or(0),
        })
    }

    /// What the log and the views say after the cut-off.
    pub(crate) async fn outcome(&self) -> anyhow::Result<Outcome> {
        let db = self.state.db();
        let count = |sql: &'static str| async move {
            db.fetch_optional(sql, &[])
                .await
                .map_err(app_error)?
                .map(|row| row.int("n"))
                .context("a count returns one row")
        };
        Ok(Outcome {
            events: count("SELECT COUNT(*) AS n FROM events").await?,
            captured_events: count(
                "SELECT COUNT(*) AS n FROM events WHERE event_type = 'PaymentCaptured'",
            )
            .await?,
            remittances: count("SELECT COUNT(*) AS n FROM remittances_view").await?,
            remitted_payments: count(
                "SELECT CAST(COALESCE(SUM(payment_count), 0) AS BIGINT) AS n FROM remittances_view",
            )
            .await?,
            captured_in_view: count(
                "SELECT COUNT(*) AS n FROM payments_view WHERE status IN ('CAPTURED', 'REFUNDED', 'PARTIALLY_REFUNDED')",
            )
            .await?,
        })
    }
}

/// The timed cut-off.
pub(crate) struct CutOff {
    /// The instant the clock was set to.
    pub at: chrono::DateTime<chrono::Utc>,
    /// Payments `list_due` returned just before.
    pub due: usize,
    pub list_due: Duration,
    /// `Scheduler::run_due`: captures, remittance, cut-off record, each waiting
    /// (bounded by CAISSE_PROJECTION_WAIT_MS_MAX) for its views.
    pub run_due: Duration,
    /// From the start of `run_due` until every view has applied every capture.
    pub views: Duration,
    /// REMITTANCE_CUT_OFF items done (one per mode of the shop).
    pub cut_offs_done: usize,
}

/// Counts from the log and the views.
pub(crate) struct Outcome {
    pub events: i64,
    pub captured_events: i64,
    pub remittances: i64,
    pub remitted_payments: i64,
    /// Payments the payments view shows as captured (refunded ones included).
    pub captured_in_view: i64,
}

impl Outcome {
    /// Fails loudly unless exactly `expected` payments were captured, in the log,
    /// in the remittances and in the payments view.
    pub(crate) fn check_captured(&self, expected: usize) -> anyhow::Result<()> {
        let expected = expected as i64;
        let mut problems = Vec::new();
        if self.captured_events != expected {
            problems.push(format!("{} PaymentCaptured events", self.captured_events));
        }
        if self.remitted_payments != expected {
            problems.push(format!(
                "{} payments in {} remittance(s)",
                self.remitted_payments, self.remittances
            ));
        }
        if self.captured_in_view != expected {
            problems.push(format!(
                "{} captured payments in payments_view",
                self.captured_in_view
            ));
        }
        if !problems.is_empty() {
            bail!(
                "expected {expected} payments captured, found {}",
                problems.join(", ")
            );
        }
        Ok(())
    }
}

/// Prints a progress line at every tenth of `total` (and at the end).
fn progress(what: &str, done: usize, total: usize, started: Instant) {
    let step = (total / 10).max(1);
    if done.is_multiple_of(step) || done == total {
        let seconds = started.elapsed().as_secs_f64();
        println!(
            "  {what}: {done}/{total} in {seconds:.1} s ({:.0}/s)",
            rate(done, seconds)
        );
    }
}

/// Does what autovacuum's autoanalyze would (`BenchApp::start`): every interval,
/// ANALYZE each table of which more than a tenth changed since its last analyze
/// (PostgreSQL's defaults: `autovacuum_analyze_scale_factor` 0.1, threshold 50).
/// Its own task, so the work it waits behind keeps going.
fn spawn_autoanalyze(db: Db) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(AUTOANALYZE_INTERVAL).await;
            if let Err(error) = autoanalyze(&db).await {
                tracing::warn!(%error, "bench autoanalyze failed");
            }
        }
    })
}

async fn autoanalyze(db: &Db) -> Result<(), caisse_application::AppError> {
    let tables = db
        .fetch_all(
            "SELECT CAST(relname AS TEXT) AS name FROM pg_stat_user_tables
              WHERE n_mod_since_analyze > 50 + 0.1 * n_live_tup",
            &[],
        )
        .await?;
    for table in tables {
        let name = table.text("name").replace('"', "\"\"");
        db.execute(&format!("ANALYZE \"{name}\""), &[]).await?;
    }
    Ok(())
}

pub(crate) fn rate(count: usize, seconds: f64) -> f64 {
    if seconds > 0.0 {
        count as f64 / seconds
    } else {
        0.0
    }
}

pub(crate) fn app_error(error: caisse_application::AppError) -> anyhow::Error {
    anyhow::anyhow!("{error}")
}

pub(crate) fn backends(choice: BackendChoice) -> Vec<Backend> {
    match choice {
        BackendChoice::Sqlite => vec![Backend::Sqlite],
        BackendChoice::Postgres => vec![Backend::Postgres],
        BackendChoice::Both => vec![Backend::Sqlite, Backend::Postgres],
    }
}

/// The header every bench prints: version, build, CPUs, PostgreSQL and pool.
pub(crate) async fn print_machine(
    title: &str,
    backends: &[Backend],
    postgres_url: &str,
    config: &Config,
) -> anyhow::Result<()> {
    if cfg!(debug_assertions) {
        println!("WARNING: this is a debug build; measure with `cargo build --release -p caisse-api` and ./target/release/caisse bench");
    }
    println!("{title} — caisse {}", env!("CARGO_PKG_VERSION"));
    println!(
        "  cpus        {} ({})",
        crate::bench::cpu_count(),
        crate::bench::cpu_model()
    );
    if backends.contains(&Backend::Postgres) {
        println!(
            "  postgresql  {}",
            crate::bench::postgres_info(postgres_url).await?
        );
    }
    println!(
        "  pool        {} connections (CAISSE_DATABASE_CONNECTIONS_MAX; SQLite at most 8)",
        config.database_connections_max
    );
    Ok(())
}

/// A fresh database for one backend: a SQLite file in a temporary directory, or a
/// `caisse_bench_<uuid>` database on the PostgreSQL server, dropped by `remove`.
struct FreshDatabase {
    config: Config,
    data_dir: tempfile::TempDir,
    /// The PostgreSQL database's name and an admin connection to drop it with.
    postgres: Option<(String, sqlx::PgConnection)>,
}

impl FreshDatabase {
    async fn create(backend: Backend, postgres_url: &str, base: &Config) -> anyhow::Result<Self> {
        let data_dir = tempfile::Builder::new()
            .prefix("caisse-bench-")
            .tempdir()
            .context("creating a temporary directory")?;
        let (url, postgres) = match backend {
            Backend::Sqlite => {
                let file = data_dir
                    .path()
                    .join(caisse_infrastructure::database::SQLITE_FILE_NAME);
                (format!("sqlite://{}", file.display()), None)
            }
            Backend::Postgres => {
                let name = format!(
                    "{}{}",
                    crate::bench::DATABASE_PREFIX,
                    uuid::Uuid::new_v4().simple()
                );
                let mut url =
                    reqwest::Url::parse(postgres_url).context("parsing --postgres-url")?;
                url.set_path(&format!("/{name}"));
                let mut admin = crate::bench::connect_admin(postgres_url).await?;
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(&mut admin)
                    .await
                    .context("creating the bench database")?;
                (url.to_string(), Some((name, admin)))
            }
        };
        println!("\n== {}: {}", backend.name(), crate::bench::redacted(&url));
        Ok(FreshDatabase {
            config: crate::bench::bench_config(base, url, data_dir.path()),
            data_dir,
            postgres,
        })
    }

    async fn remove(self) -> anyhow::Result<()> {
        if let Some((name, mut admin)) = self.postgres {
            // FORCE: connections the bench left behind (an error, an interruption).
            sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut admin)
                .await
                .with_context(|| format!("dropping the bench database {name}"))?;
            admin.close().await?;
            println!("dropped database {name}");
        }
        drop(self.data_dir);
        Ok(())
    }
}

/// Runs `work` on a fresh database of `backend` and removes the database after,
/// whatever the outcome; Ctrl-C or SIGTERM remove it too, then exit.
pub(crate) async fn on_fresh_database<T, F, Fut>(
    backend: Backend,
    postgres_url: &str,
    base: &Config,
    work: F,
) -> anyhow::Result<T>
where
    F: FnOnce(Config) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let fresh = FreshDatabase::create(backend, postgres_url, base).await?;
    let outcome = crate::bench::until_interrupted(work(fresh.config.clone())).await;
    let removed = fresh.remove().await;
    match outcome {
        Err(signal) => {
            if let Err(error) = removed {
                eprintln!("{error:#}");
            }
            crate::bench::exit_interrupted(signal)
        }
        Ok(Err(error)) => {
            if let Err(removal) = removed {
                eprintln!("{removal:#}");
            }
            Err(error)
        }
        Ok(Ok(value)) => removed.map(|()| value),
    }
}

/// One backend's figures.
struct CutoffResult {
    backend: Backend,
    payments: usize,
    load: Duration,
    cut_off: CutOff,
    outcome: Outcome,
}

pub async fn run(args: CutoffArgs, config: Config) -> anyhow::Result<()> {
    if args.payments == 0 {
        bail!("--payments must be at least 1");
    }
    let backends = backends(args.backend);
    print_machine(
        "caisse bench cutoff",
        &backends,
        &args.postgres_url,
        &config,
    )
    .await?;
    println!(
        "  load        {} payments of EUR {AMOUNT}, AUTOMATIC capture today, {} created at a time (PaymentService::create)",
        args.payments, args.concurrency
    );
    let mut results = Vec::new();
    for backend in backends {
        let result = on_fresh_database(backend, &args.postgres_url, &config, |config| {
            cutoff_on(backend, config, &args)
        })
        .await
        .with_context(|| format!("{} cut-off benchmark", backend.name()))?;
        results.push(result);
    }
    print_cutoff_report(&results);
    Ok(())
}

async fn cutoff_on(
    backend: Backend,
    config: Config,
    args: &CutoffArgs,
) -> anyhow::Result<CutoffResult> {
    let app = BenchApp::start(config, args.no_analyze).await?;
    let outcome = async {
        let fates = vec![Fate::Captured; args.payments];
        let started = Instant::now();
        app.create_payments(&fates, args.concurrency).await?;
        app.catch_up().await?;
        let load = started.elapsed();
        println!("  cut-off …");
        let cut_off = app.run_cut_off().await?;
        let outcome = app.outcome().await?;
        println!(
            "  cut-off at {}: {} due, run_due {:.1} s, views caught up after {:.1} s; {} PaymentCaptured, {} payments in {} remittance(s)",
            cut_off.at,
            cut_off.due,
            cut_off.run_due.as_secs_f64(),
            cut_off.views.as_secs_f64(),
            outcome.captured_events,
            outcome.remitted_payments,
            outcome.remittances
        );
        outcome.check_captured(args.payments)?;
        Ok(CutoffResult {
            backend,
            payments: args.payments,
            load,
            cut_off,
            outcome,
        })
    }
    .await;
    app.stop().await;
    outcome
}

fn print_cutoff_report(results: &[CutoffResult]) {
    println!(
        "\n{:<8} {:>8} {:>8} {:>10} {:>11} {:>9} {:>11} {:>8} {:>11} {:>9}",
        "backend",
        "payments",
        "load_s",
        "created/s",
        "list_due_ms",
        "cutoff_s",
        "captures/s",
        "views_s",
        "remittances",
        "captured"
    );
    for result in results {
        let cut_off = &result.cut_off;
        let cut_off_seconds = cut_off.run_due.as_secs_f64();
        println!(
            "{:<8} {:>8} {:>8.1} {:>10.0} {:>11.1} {:>9.1} {:>11.0} {:>8.1} {:>11} {:>9}",
            result.backend.name(),
            result.payments,
            result.load.as_secs_f64(),
            rate(result.payments, result.load.as_secs_f64()),
            cut_off.list_due.as_secs_f64() * 1000.0,
            cut_off_seconds,
            rate(result.payments, cut_off_seconds),
            cut_off.views.as_secs_f64(),
            result.outcome.remittances,
            result.outcome.captured_events
        );
    }
    println!(
        "\ncutoff_s: Scheduler::run_due at the shop's cut-off (the captures one after the other, the \
         remittance, the cut-off record); views_s: from its start until every view applied every capture."
    );
    for result in results {
        println!(
            "{}: {} of {} payments captured, {} cut-off(s) done (one per mode of the shop)",
            result.backend.name(),
            result.outcome.captured_events,
            result.payments,
            result.cut_off.cut_offs_done
        );
    }
}
