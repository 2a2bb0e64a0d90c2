//! `caisse bench`: the throughput and latency benchmark of issue 2 — boots the real
//! server in-process against a fresh SQLite file and/or a fresh PostgreSQL database,
//! drives `createPayment` + `validatePayment` + `refundPayment` over HTTP GraphQL
//! with N keep-alive clients, and measures the PostgreSQL ceiling with pgbench in the
//! same run so the figure is a ratio (docs/performance.md).
//!
//! Each client loops: refund its oldest payment that a finished remittance has
//! captured, otherwise create a MANUAL-capture payment and validate it. A single
//! remitter task calls `runRemittance` every `--remittance-interval-ms` to capture the
//! validated payments. Counted commands are the successful create, validate and
//! refund mutations; the captures made by the remitter are server work on top of
//! them, reported apart. Only completions inside the measured window (after the
//! warm-up) count; every error is counted and printed with its code.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use caisse_application::merchants::InitInput;
use caisse_infrastructure::config::Secret;
use caisse_infrastructure::Config;
use serde_json::{json, Value};
use sqlx::Connection;

use crate::Application;

/// Where Debian's PostgreSQL 15 installs pgbench.
const PGBENCH_DEFAULT: &str = "/usr/lib/postgresql/15/bin/pgbench";
/// pgbench worker threads (`-j`), as in the reference measurement.
const PGBENCH_THREADS: usize = 2;
/// The accepted test card of the acquirer simulator (docs/test-cards.md).
pub(crate) const TEST_CARD: &str = "4970100000000006";
const AMOUNT: &str = "10.00";
/// Prefix of the databases this command creates (and drops at the end).
pub(crate) const DATABASE_PREFIX: &str = "caisse_bench_";

const CREATE_PAYMENT: &str =
    "mutation($input: CreatePaymentInput!) { createPayment(input: $input) { id status } }";
const VALIDATE_PAYMENT: &str = "mutation($id: ID!) { validatePayment(id: $id) { id status } }";
const REFUND_PAYMENT: &str =
    "mutation($id: ID!, $amount: String!) { refundPayment(id: $id, amount: $amount) { id status } }";
const RUN_REMITTANCE: &str =
    "mutation($shop: ID!) { runRemittance(shopId: $shop) { id paymentCount } }";

#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendChoice {
    Sqlite,
    Postgres,
    Both,
}

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// Which backend(s) to measure.
    #[arg(long, value_enum, default_value_t = BackendChoice::Both)]
    pub backend: BackendChoice,
    /// Concurrent HTTP clients, comma-separated: one measured run per value.
    #[arg(long, value_delimiter = ',', default_value = "8,32")]
    pub clients: Vec<usize>,
    /// Measured seconds per run (and the pgbench duration).
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Seconds of load before each measured window, not counted.
    #[arg(long, default_value_t = 2)]
    pub warmup_seconds: u64,
    /// PostgreSQL server to create the fresh `caisse_bench_<uuid>` database on.
    #[arg(
        long,
        env = "CAISSE_BENCH_POSTGRES_URL",
        default_value = "postgres://postgres@127.0.0.1:5432/postgres"
    )]
    pub postgres_url: String,
    /// The pgbench binary used for the ceiling.
    #[arg(long, default_value = PGBENCH_DEFAULT)]
    pub pgbench: PathBuf,
    /// Pause between the starts of two `runRemittance` calls, in milliseconds.
    #[arg(long, default_value_t = 200)]
    pub remittance_interval_ms: u64,
    /// Send a fresh `Idempotency-Key` header with every mutation, as a careful
    /// merchant integration would; off by default.
    #[arg(long)]
    pub idempotency_keys: bool,
    /// Experiments only: `ALTER DATABASE <bench db> SET NAME = 'VALUE'` before the
    /// server starts (e.g. synchronous_commit=off). Figures taken with it are not
    /// the benchmark's figures.
    #[arg(long = "database-setting", value_name = "NAME=VALUE", hide = true)]
    pub database_settings: Vec<String>,
    /// Issue 5: register one webhook endpoint for every event type (a receiver
    /// in this process answering 200) and merchant e-mails (over SMTP to a
    /// relay in this process), so payments run with notifications on.
    #[arg(long)]
    pub notifications: bool,
    /// Issue 5: the event types the merchant is e-mailed about in
    /// `--notifications` and `--ab-rounds` (comma-separated, among
    /// `emailEventTypes`, or `*`). The default is the payment confirmation
    /// (NT-1); `*` is the stress case where every authorisation, refund,
    /// cancellation and capture also goes out by e-mail.
    #[arg(long, value_delimiter = ',', default_value = "payment.authorised")]
    pub merchant_email_types: Vec<String>,
    /// Issue 5, the A/B measure of notifications: N rounds on one server and
    /// database, each driving a shop without notifications (and payments
    /// without a buyer e-mail) and a shop with them (`--notifications`' setup,
    /// payments with a buyer e-mail) in turn, ABBA order, the outboxes
    /// drained between phases; prints each phase and the change of the means
    /// and of the per-round medians. Machine drift hits both alike. No pgbench.
    #[arg(long, default_value_t = 0)]
    pub ab_rounds: usize,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Op {
    Create,
    Validate,
    Refund,
    Remittance,
}

impl Op {
    /// The commands the benchmark counts.
    const COUNTED: [Op; 3] = [Op::Create, Op::Validate, Op::Refund];

    fn name(self) -> &'static str {
        match self {
            Op::Create => "createPayment",
            Op::Validate => "validatePayment",
            Op::Refund => "refundPayment",
            Op::Remittance => "runRemittance",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// A failed call: its `extensions.code` (or transport/HTTP class) and one message.
struct CallError {
    code: String,
    message: String,
}

/// What one client (or the remitter) saw during one run.
#[derive(Default)]
struct Stats {
    /// Latencies in microseconds of successes inside the window, per `Op`.
    latencies: [Vec<u32>; 4],
    /// Payments captured by remittances that finished inside the window.
    captured: u64,
    /// (command, code) -> (count over the whole run incl. warm-up, sample message).
    errors: BTreeMap<(Op, String), (u64, String)>,
}

impl Stats {
    fn merge(&mut self, other: Stats) {
        for (mine, theirs) in self.latencies.iter_mut().zip(other.latencies) {
            mine.extend(theirs);
        }
        self.captured += other.captured;
        for (key, (count, message)) in other.errors {
            self.errors.entry(key).or_insert((0, message)).0 += count;
        }
    }

    fn error(&mut self, op: Op, error: CallError) {
        self.errors
            .entry((op, error.code))
            .or_insert((0, error.message))
            .0 += 1;
    }
}

/// Shared by the clients and the remitter of one run.
struct RunContext {
    endpoint: String,
    api_key: String,
    shop_id: String,
    tag: String,
    measure_from: Instant,
    stop_at: Instant,
    remittance_interval: Duration,
    idempotency_keys: bool,
    /// Payments give a buyer e-mail (so the buyer's confirmation is sent).
    buyer_email: bool,
    /// Number of `runRemittance` calls started / the highest one that succeeded.
    remittances_started: AtomicU64,
    remittances_completed: AtomicU64,
}

impl RunContext {
    fn in_window(&self, at: Instant) -> bool {
        at >= self.measure_from && at <= self.stop_at
    }

    fn record(&self, stats: &mut Stats, op: Op, started: Instant) {
        let ended = Instant::now();
        if self.in_window(ended) {
            let micros =
                u32::try_from(ended.duration_since(started).as_micros()).unwrap_or(u32::MAX);
            stats.latencies[op.index()].push(micros);
        }
    }
}

#[derive(Clone, Copy, Default)]
struct Latency {
    count: u64,
    p50_ms: f64,
    p99_ms: f64,
}

fn latency(samples: &mut [u32]) -> Latency {
    samples.sort_unstable();
    let at = |p: f64| {
        if samples.is_empty() {
            return 0.0;
        }
        let rank = ((p * samples.len() as f64).ceil() as usize).clamp(1, samples.len());
        f64::from(samples[rank - 1]) / 1000.0
    };
    Latency {
        count: samples.len() as u64,
        p50_ms: at(0.50),
        p99_ms: at(0.99),
    }
}

/// One measured run: one backend at one client count.
struct RunResult {
    backend: Backend,
    clients: usize,
    seconds: f64,
    per_op: BTreeMap<Op, Latency>,
    all: Latency,
    captured: u64,
    errors: BTreeMap<(Op, String), (u64, String)>,
    pgbench_tps: Option<f64>,
    cpu: Option<CpuUse>,
    /// PostgreSQL transactions committed in the bench database during the window.
    pg_transactions: Option<u64>,
}

impl RunResult {
    fn commands_per_second(&self) -> f64 {
        self.all.count as f64 / self.seconds
    }

    /// Machine CPU milliseconds (steal excluded) per counted command.
    fn cpu_ms_per_command(&self) -> Option<f64> {
        self.ms_per_command(|cpu| cpu.busy_seconds)
    }

    /// The same without the notification sinks' share: what the server (and
    /// the bench clients, alike in both phases) cost per command.
    fn server_cpu_ms_per_command(&self) -> Option<f64> {
        self.ms_per_command(|cpu| cpu.busy_seconds - cpu.sinks_seconds)
    }

    fn ms_per_command(&self, seconds: impl Fn(&CpuUse) -> f64) -> Option<f64> {
        let cpu = self.cpu.as_ref()?;
        (self.all.count > 0).then(|| seconds(cpu) * 1000.0 / self.all.count as f64)
    }

    fn ratio(&self) -> Option<f64> {
        self.pgbench_tps
            .filter(|tps| *tps > 0.0)
            .map(|tps| self.commands_per_second() / tps)
    }

    /// Commands the server ran in the window: the counted ones and the captures.
    fn server_commands(&self) -> u64 {
        self.all.count + self.captured
    }

    fn error_count(&self) -> u64 {
        self.errors.values().map(|(count, _)| count).sum()
    }
}

struct Machine {
    cpus: usize,
    cpu_model: String,
    postgres: Option<String>,
}

pub async fn run(args: BenchArgs, config: Config) -> anyhow::Result<()> {
    if args.clients.is_empty() || args.clients.contains(&0) {
        bail!("--clients needs one or more positive numbers, e.g. 8,32");
    }
    if args.seconds == 0 {
        bail!("--seconds must be at least 1");
    }
    let backends = match args.backend {
        BackendChoice::Sqlite => vec![Backend::Sqlite],
        BackendChoice::Postgres => vec![Backend::Postgres],
        BackendChoice::Both => vec![Backend::Sqlite, Backend::Postgres],
    };
    let wants_postgres = backends.contains(&Backend::Postgres);
    if wants_postgres && !args.pgbench.is_file() {
        bail!(
            "pgbench not found at {}: the PostgreSQL benchmark reports its figure as a ratio to pgbench, \
             so it cannot run without it. Install the PostgreSQL 15 client tools (Debian: postgresql-15) \
             or pass --pgbench PATH, or run with --backend sqlite.",
            args.pgbench.display()
        );
    }
    if cfg!(debug_assertions) {
        println!("WARNING: this is a debug build; measure with `cargo build --release -p caisse-api` and ./target/release/caisse bench");
    }
    let mut machine = Machine {
        cpus: cpu_count(),
        cpu_model: cpu_model(),
        postgres: None,
    };
    if wants_postgres {
        machine.postgres = Some(postgres_info(&args.postgres_url).await?);
    }
    print_machine(&machine, &config);

    let mut results = Vec::new();
    for backend in backends {
        let outcome = match backend {
            Backend::Sqlite => bench_sqlite(&args, &config).await,
            Backend::Postgres => bench_postgres(&args, &config).await,
        };
        results.extend(outcome.with_context(|| format!("{} benchmark", backend.name()))?);
    }
    print_report(&machine, &results, &args);
    Ok(())
}

pub(crate) fn cpu_count() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0)
}

pub(crate) fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|line| line.starts_with("model name"))
                .and_then(|line| line.split_once(':'))
                .map(|(_, model)| model.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".to_string())
}

/// A PostgreSQL URL without its password, for printing.
pub(crate) fn redacted(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) => {
            if parsed.password().is_some() {
                let _ = parsed.set_password(Some("***"));
            }
            parsed.to_string()
        }
        Err(_) => "<unparsable URL>".to_string(),
    }
}

pub(crate) async fn connect_admin(url: &str) -> anyhow::Result<sqlx::PgConnection> {
    sqlx::PgConnection::connect(url).await.with_context(|| {
        format!(
            "connecting to PostgreSQL at {} (is it running? see --postgres-url)",
            redacted(url)
        )
    })
}

pub(crate) async fn postgres_info(admin_url: &str) -> anyhow::Result<String> {
    let mut admin = connect_admin(admin_url).await?;
    let version: String = sqlx::query_scalar("SELECT version()")
        .fetch_one(&mut admin)
        .await?;
    let mut settings = Vec::new();
    for name in [
        "synchronous_commit",
        "fsync",
        "shared_buffers",
        "max_connections",
        "ssl",
    ] {
        let value: String = sqlx::query_scalar(&format!("SHOW {name}"))
            .fetch_one(&mut admin)
            .await?;
        settings.push(format!("{name}={value}"));
    }
    admin.close().await?;
    Ok(format!("{version} [{}]", settings.join(", ")))
}

fn print_machine(machine: &Machine, config: &Config) {
    println!("caisse bench — caisse {}", env!("CARGO_PKG_VERSION"));
    println!("  cpus        {} ({})", machine.cpus, machine.cpu_model);
    if let Some(postgres) = &machine.postgres {
        println!("  postgresql  {postgres}");
    }
    println!(
        "  server      in-process, same tokio runtime as the clients; pool {} connections (CAISSE_DATABASE_CONNECTIONS_MAX; SQLite at most 8)",
        config.database_connections_max
    );
    println!(
        "  mutations   wait up to {} ms for their views (CAISSE_PROJECTION_WAIT_MS_MAX)",
        config.projection_wait_ms_max
    );
}

async fn bench_sqlite(args: &BenchArgs, config: &Config) -> anyhow::Result<Vec<RunResult>> {
    let data_dir = tempfile::Builder::new()
        .prefix("caisse-bench-")
        .tempdir()
        .context("creating a temporary directory")?;
    let url = format!(
        "sqlite://{}",
        data_dir
            .path()
            .join(caisse_infrastructure::database::SQLITE_FILE_NAME)
            .display()
    );
    println!("\n== sqlite: {url}");
    let job = BackendJob {
        backend: Backend::Sqlite,
        config: bench_config(config, url, data_dir.path()),
        notifications: args.notifications,
        merchant_email_types: args.merchant_email_types.clone(),
        ab_rounds: args.ab_rounds,
        clients: args.clients.clone(),
        load: Load::from(args),
        pgbench: None,
        probe: None,
    };
    match until_interrupted(run_in_own_runtime(job)).await {
        Ok(outcome) => outcome,
        Err(signal) => {
            drop(data_dir);
            exit_interrupted(signal)
        }
    }
}

async fn bench_postgres(args: &BenchArgs, config: &Config) -> anyhow::Result<Vec<RunResult>> {
    let name = format!("{DATABASE_PREFIX}{}", uuid::Uuid::new_v4().simple());
    let mut url = reqwest::Url::parse(&args.postgres_url).context("parsing --postgres-url")?;
    url.set_path(&format!("/{name}"));
    let url = url.to_string();
    let mut admin = connect_admin(&args.postgres_url).await?;
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .context("creating the bench database")?;
    println!("\n== postgres: {}", redacted(&url));
    for setting in &args.database_settings {
        let applied = alter_database(&mut admin, &name, setting).await;
        if let Err(error) = applied {
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&mut admin)
                .await;
            return Err(error);
        }
        println!(
            "EXPERIMENT: database setting {setting} — not comparable with the benchmark's figures"
        );
    }
    let data_dir = tempfile::Builder::new()
        .prefix("caisse-bench-")
        .tempdir()
        .context("creating a temporary directory")?;
    let job = BackendJob {
        backend: Backend::Postgres,
        config: bench_config(config, url.clone(), data_dir.path()),
        notifications: args.notifications,
        merchant_email_types: args.merchant_email_types.clone(),
        ab_rounds: args.ab_rounds,
        clients: args.clients.clone(),
        load: Load::from(args),
        pgbench: (args.ab_rounds == 0).then(|| Pgbench {
            binary: args.pgbench.clone(),
            url: url.clone(),
            dir: data_dir.path().to_path_buf(),
        }),
        probe: Some(PgProbe {
            name: name.clone(),
            url,
        }),
    };
    let interrupted = until_interrupted(run_in_own_runtime(job)).await;
    let (outcome, interrupted) = match interrupted {
        Ok(outcome) => (outcome, None),
        Err(signal) => (Err(anyhow::anyhow!("{signal}")), Some(signal)),
    };
    // The server's runtime is gone, so are its connections; FORCE covers stragglers
    // (and an interrupted run, whose server may still be connected).
    let dropped = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut admin)
        .await;
    match (&outcome, dropped) {
        (_, Ok(_)) => println!("dropped database {name}"),
        (Ok(_), Err(error)) => {
            return Err(error).with_context(|| format!("dropping the bench database {name}"))
        }
        (Err(_), Err(error)) => eprintln!("could not drop the bench database {name}: {error}"),
    }
    if let Some(signal) = interrupted {
        drop(data_dir);
        exit_interrupted(signal);
    }
    outcome
}

async fn alter_database(
    admin: &mut sqlx::PgConnection,
    database: &str,
    setting: &str,
) -> anyhow::Result<()> {
    let Some((name, value)) = setting.split_once('=') else {
        bail!("--database-setting wants NAME=VALUE, got {setting}");
    };
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
    {
        bail!("--database-setting: {name} is not a setting name");
    }
    sqlx::query(&format!(
        "ALTER DATABASE {database} SET {name} = '{}'",
        value.replace('\'', "''")
    ))
    .execute(admin)
    .await
    .with_context(|| format!("applying {setting}"))?;
    Ok(())
}

pub(crate) fn bench_config(base: &Config, database_url: String, data_dir: &Path) -> Config {
    Config {
        listen: "127.0.0.1:0".parse().expect("valid address"),
        database_url: Some(Secret::new(database_url)),
        data_dir: data_dir.to_path_buf(),
        ..base.clone()
    }
}

struct Pgbench {
    binary: PathBuf,
    url: String,
    dir: PathBuf,
}

struct BackendJob {
    backend: Backend,
    config: Config,
    /// Webhook endpoint and merchant e-mails on (`--notifications`).
    notifications: bool,
    /// `--merchant-email-types`.
    merchant_email_types: Vec<String>,
    /// `--ab-rounds`: 0 for the usual runs.
    ab_rounds: usize,
    clients: Vec<usize>,
    load: Load,
    pgbench: Option<Pgbench>,
    /// The PostgreSQL database, for the CPU split and the transaction count.
    probe: Option<PgProbe>,
}

/// How each run drives the server.
#[derive(Clone)]
struct Load {
    warmup_seconds: u64,
    seconds: u64,
    remittance_interval: Duration,
    idempotency_keys: bool,
    /// Payments give a buyer e-mail (off in `--ab-rounds`' quiet phases:
    /// notifications off means no e-mail at all).
    buyer_email: bool,
    /// The notification sinks' thread, whose CPU time is read apart.
    sinks_stat: Option<PathBuf>,
}

impl From<&BenchArgs> for Load {
    fn from(args: &BenchArgs) -> Self {
        Load {
            warmup_seconds: args.warmup_seconds,
            seconds: args.seconds,
            remittance_interval: Duration::from_millis(args.remittance_interval_ms),
            idempotency_keys: args.idempotency_keys,
            buyer_email: true,
            sinks_stat: None,
        }
    }
}

/// The bench database: its name (to find its backend processes) and URL.
#[derive(Clone)]
struct PgProbe {
    name: String,
    url: String,
}

/// `Err(signal name)` when Ctrl-C or SIGTERM came first: the caller cleans up and
/// calls `exit_interrupted` (the in-process server stops on these signals too, so
/// the run could not go on anyway).
pub(crate) async fn until_interrupted<T>(
    work: impl std::future::Future<Output = anyhow::Result<T>>,
) -> Result<anyhow::Result<T>, &'static str> {
    let terminate = async {
        #[cfg(unix)]
        if let Ok(mut signal) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        {
            signal.recv().await;
            return;
        }
        std::future::pending::<()>().await
    };
    tokio::select! {
        outcome = work => Ok(outcome),
        _ = tokio::signal::ctrl_c() => Err("interrupted"),
        _ = terminate => Err("terminated"),
    }
}

/// Exits at once: the backend's thread may be blocked in a request or in pgbench,
/// and waiting for it would keep the process alive for the rest of the run.
pub(crate) fn exit_interrupted(signal: &str) -> ! {
    eprintln!("caisse bench: {signal}; no figures");
    std::process::exit(130)
}

/// Runs one backend in a runtime of its own, so that dropping the runtime stops the
/// server, its projector tasks and its pool before the next backend starts.
async fn run_in_own_runtime(job: BackendJob) -> anyhow::Result<Vec<RunResult>> {
    let thread = std::thread::Builder::new()
        .name(format!("bench-{}", job.backend.name()))
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            let outcome = runtime.block_on(bench_backend(job));
            runtime.shutdown_timeout(Duration::from_secs(5));
            outcome
        })?;
    tokio::task::spawn_blocking(move || thread.join())
        .await?
        .map_err(|_| anyhow::anyhow!("the benchmark thread panicked"))?
}

async fn bench_backend(job: BackendJob) -> anyhow::Result<Vec<RunResult>> {
    let mut config = job.config.clone();
    let sinks = if job.notifications || job.ab_rounds > 0 {
        Some(NotificationSinks::start()?)
    } else {
        None
    };
    if let Some(sinks) = &sinks {
        // The receiver listens on 127.0.0.1, on a random port.
        config.webhooks.allow_private_addresses = true;
        config.webhooks.allow_any_port = true;
        // E-mails leave over SMTP, as in production, to a relay in this
        // process (the directory mode's one file per e-mail is development
        // only, and its inode churn would be most of what it measures).
        config.mail.mode = caisse_infrastructure::config::MailMode::Smtp;
        config.mail.smtp_host = "127.0.0.1".to_string();
        config.mail.smtp_port = sinks.smtp_port;
        config.mail.smtp_tls = caisse_infrastructure::config::SmtpTls::None;
        config.mail.smtp_username = None;
        config.mail.smtp_password = None;
    }
    let application = Application::build(config)
        .await
        .context("starting the server")?;
    let endpoint = format!("http://127.0.0.1:{}/graphql", application.port());
    let state = application.state();
    let server = tokio::spawn(async move {
        if let Err(error) = application.run_until_stopped().await {
            eprintln!("server stopped: {error}");
        }
    });
    let init = state
        .merchants
        .init(InitInput {
            merchant_name: "Bench merchant".into(),
            shop_name: "Bench shop".into(),
            admin_email: "bench@example.com".into(),
        })
        .await
        .map_err(|error| anyhow::anyhow!("merchant init: {error}"))?;
    let api_key = init.test_api_key;
    let shop_id = init.shop_id.to_string();
    if job.ab_rounds > 0 {
        let sinks = sinks.as_ref().expect("sinks started for --ab-rounds");
        let results = notifications_ab(&job, &state, sinks, &endpoint, &api_key, &shop_id).await;
        server.abort();
        return results;
    }
    if job.notifications {
        let sinks = sinks.as_ref().expect("sinks started for --notifications");
        turn_notifications_on(&state, sinks, init.shop_id, &job.merchant_email_types).await?;
    }

    if let Some(pgbench) = &job.pgbench {
        prepare_pgbench(pgbench).await?;
    }
    let mut results = Vec::new();
    for &clients in &job.clients {
        println!(
            "{} · {clients} clients: warm-up {} s, measuring {} s …",
            job.backend.name(),
            job.load.warmup_seconds,
            job.load.seconds
        );
        let mut result = drive(
            job.backend,
            clients,
            &endpoint,
            &api_key,
            &shop_id,
            &job.load,
            job.probe.clone(),
        )
        .await;
        println!(
            "  {:.0} commands/s, p50 {:.1} ms, p99 {:.1} ms, {} captures, {} errors",
            result.commands_per_second(),
            result.all.p50_ms,
            result.all.p99_ms,
            result.captured,
            result.error_count()
        );
        if let Some(pgbench) = &job.pgbench {
            println!("  pgbench · {clients} clients, {} s …", job.load.seconds);
            let tps = run_pgbench(pgbench, clients, job.load.seconds).await?;
            println!(
                "  pgbench: {tps:.0} TPS, ratio {:.3}",
                result.commands_per_second() / tps
            );
            result.pgbench_tps = Some(tps);
        }
        results.push(result);
    }
    server.abort();
    Ok(results)
}

async fn drive(
    backend: Backend,
    clients: usize,
    endpoint: &str,
    api_key: &str,
    shop_id: &str,
    load: &Load,
    probe: Option<PgProbe>,
) -> RunResult {
    let sinks_stat = load.sinks_stat.clone();
    let seconds = load.seconds;
    let measure_from = Instant::now() + Duration::from_secs(load.warmup_seconds);
    let context = Arc::new(RunContext {
        endpoint: endpoint.to_string(),
        api_key: api_key.to_string(),
        shop_id: shop_id.to_string(),
        tag: uuid::Uuid::new_v4().simple().to_string()[..8].to_string(),
        measure_from,
        stop_at: measure_from + Duration::from_secs(seconds),
        remittance_interval: load.remittance_interval,
        idempotency_keys: load.idempotency_keys,
        buyer_email: load.buyer_email,
        remittances_started: AtomicU64::new(0),
        remittances_completed: AtomicU64::new(0),
    });
    let mut tasks = Vec::new();
    for index in 0..clients {
        tasks.push(tokio::spawn(client_loop(index, context.clone())));
    }
    tasks.push(tokio::spawn(remitter_loop(context.clone())));
    let stop_at = context.stop_at;
    let sampler = tokio::spawn(async move {
        let name = probe.as_ref().map(|probe| probe.name.as_str());
        let mut connection = match &probe {
            Some(probe) => sqlx::PgConnection::connect(&probe.url).await.ok(),
            None => None,
        };
        tokio::time::sleep_until(measure_from.into()).await;
        let cpu_before = cpu_sample(name, sinks_stat.as_deref());
        let xact_before = committed_transactions(connection.as_mut()).await;
        tokio::time::sleep_until(stop_at.into()).await;
        let cpu_after = cpu_sample(name, sinks_stat.as_deref());
        let xact_after = committed_transactions(connection.as_mut()).await;
        let cpu = cpu_before
            .zip(cpu_after)
            .map(|(before, after)| cpu_use(&before, &after));
        let transactions = xact_before
            .zip(xact_after)
            .map(|(before, after)| after.saturating_sub(before));
        (cpu, transactions)
    });
    let mut stats = Stats::default();
    for task in tasks {
        match task.await {
            Ok(client) => stats.merge(client),
            Err(error) => stats.error(
                Op::Create,
                CallError {
                    code: "CLIENT_TASK_FAILED".into(),
                    message: error.to_string(),
                },
            ),
        }
    }
    let (cpu, pg_transactions) = sampler.await.unwrap_or((None, None));
    let mut all: Vec<u32> = Op::COUNTED
        .iter()
        .flat_map(|op| stats.latencies[op.index()].iter().copied())
        .collect();
    let per_op = [Op::Create, Op::Validate, Op::Refund, Op::Remittance]
        .into_iter()
        .map(|op| (op, latency(&mut stats.latencies[op.index()])))
        .collect();
    RunResult {
        backend,
        clients,
        seconds: seconds as f64,
        per_op,
        all: latency(&mut all),
        captured: stats.captured,
        errors: stats.errors,
        pgbench_tps: None,
        cpu,
        pg_transactions,
    }
}

/// Transactions committed in the current database so far, as PostgreSQL's
/// cumulative statistics report them (flushed by busy backends about every second,
/// so a window's difference is approximate).
async fn committed_transactions(connection: Option<&mut sqlx::PgConnection>) -> Option<u64> {
    let connection = connection?;
    let count: i64 = sqlx::query_scalar(
        "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()",
    )
    .fetch_one(connection)
    .await
    .ok()?;
    u64::try_from(count).ok()
}

/// CPU use during a measured window, in percent of the whole machine (100 = every
/// core busy): this process (clients and server together), the PostgreSQL backends
/// serving the bench database, everything else (PostgreSQL's WAL writer and
/// checkpointer, other processes), waiting for the disk (iowait) and idle.
#[derive(Clone, Copy)]
struct CpuUse {
    caisse: f64,
    postgres: f64,
    other: f64,
    iowait: f64,
    idle: f64,
    /// Time the hypervisor gave the machine's CPUs to someone else, % (in `other`).
    steal: f64,
    /// CPU seconds the whole machine worked in the window (user, nice, system,
    /// irq, softirq: neither idle, iowait nor steal). What the work cost,
    /// whatever the hypervisor took meanwhile.
    busy_seconds: f64,
    /// Of which the notification sinks' thread (the merchant's receiver and
    /// the SMTP relay, which in production run on other machines).
    sinks_seconds: f64,
    /// SQLite: how long this process held the single writer's lock (ADR 0012)
    /// in the window, in seconds, over how many turns.
    write_lock_seconds: f64,
    write_lock_turns: u64,
    /// Bytes this process caused to be written to storage (`/proc/self/io`).
    written_bytes: u64,
}

/// Linux's USER_HZ: the unit of /proc/stat's counters.
const TICKS_PER_SECOND: f64 = 100.0;

/// Clock ticks from /proc.
struct CpuSample {
    total: u64,
    idle: u64,
    iowait: u64,
    steal: u64,
    caisse: u64,
    postgres: u64,
    /// The notification sinks' thread (`NotificationSinks`).
    sinks: u64,
    /// `sql::sqlite_write_turns()`: turns and µs held.
    write_turns: (u64, u64),
    /// `write_bytes` of `/proc/self/io`.
    written_bytes: u64,
}

fn cpu_sample(database: Option<&str>, sinks_stat: Option<&Path>) -> Option<CpuSample> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    // cpu  user nice system idle iowait irq softirq steal …
    let fields: Vec<u64> = stat
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .take(8)
        .filter_map(|f| f.parse().ok())
        .collect();
    if fields.len() < 5 {
        return None;
    }
    let mut sample = CpuSample {
        total: fields.iter().sum(),
        idle: fields[3],
        iowait: fields[4],
        steal: fields.get(7).copied().unwrap_or(0),
        caisse: process_ticks(Path::new("/proc/self/stat"))?,
        postgres: 0,
        sinks: sinks_stat.and_then(process_ticks).unwrap_or(0),
        write_turns: caisse_infrastructure::sql::sqlite_write_turns(),
        written_bytes: written_bytes().unwrap_or(0),
    };
    if let Some(database) = database {
        for entry in std::fs::read_dir("/proc").ok()?.flatten() {
            if !entry
                .file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
            {
                continue;
            }
            // A backend's title reads "postgres: user database host(port) state".
            let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
                continue;
            };
            if String::from_utf8_lossy(&cmdline).contains(database) {
                sample.postgres += process_ticks(&entry.path().join("stat")).unwrap_or(0);
            }
        }
    }
    Some(sample)
}

/// Bytes this process caused to be sent to storage so far.
fn written_bytes() -> Option<u64> {
    std::fs::read_to_string("/proc/self/io")
        .ok()?
        .lines()
        .find_map(|line| line.strip_prefix("write_bytes: "))?
        .trim()
        .parse()
        .ok()
}

/// utime + stime of a process (all its threads).
fn process_ticks(path: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    let fields: Vec<&str> = text[text.rfind(')')? + 1..].split_whitespace().collect();
    // Fields 14 and 15 of the man page; the slice starts at field 3.
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

fn cpu_use(before: &CpuSample, after: &CpuSample) -> CpuUse {
    let total = after.total.saturating_sub(before.total).max(1) as f64;
    let percent = |ticks: u64| 100.0 * ticks as f64 / total;
    let idle = percent(after.idle.saturating_sub(before.idle));
    let iowait = percent(after.iowait.saturating_sub(before.iowait));
    let caisse = percent(after.caisse.saturating_sub(before.caisse));
    let postgres = percent(after.postgres.saturating_sub(before.postgres));
    let steal_ticks = after.steal.saturating_sub(before.steal);
    let not_busy = after.idle.saturating_sub(before.idle)
        + after.iowait.saturating_sub(before.iowait)
        + steal_ticks;
    let busy_ticks = after
        .total
        .saturating_sub(before.total)
        .saturating_sub(not_busy);
    CpuUse {
        caisse,
        postgres,
        other: (100.0 - idle - iowait - caisse - postgres).max(0.0),
        iowait,
        idle,
        steal: percent(steal_ticks),
        busy_seconds: busy_ticks as f64 / TICKS_PER_SECOND,
        sinks_seconds: after.sinks.saturating_sub(before.sinks) as f64 / TICKS_PER_SECOND,
        write_lock_seconds: after.write_turns.1.saturating_sub(before.write_turns.1) as f64
            / 1_000_000.0,
        write_lock_turns: after.write_turns.0.saturating_sub(before.write_turns.0),
        written_bytes: after.written_bytes.saturating_sub(before.written_bytes),
    }
}

fn http_client() -> reqwest::Client {
    // One client (hence one keep-alive connection) per simulated merchant system.
    reqwest::Client::builder()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(1)
        .timeout(Duration::from_secs(60))
        .build()
        .expect("HTTP client")
}

/// POSTs one GraphQL request; `Ok(data)` only when there is no error at all.
async fn call(
    client: &reqwest::Client,
    context: &RunContext,
    query: &str,
    variables: Value,
) -> Result<Value, CallError> {
    let mut request = client
        .post(&context.endpoint)
        .bearer_auth(&context.api_key)
        .json(&json!({ "query": query, "variables": variables }));
    if context.idempotency_keys {
        request = request.header("Idempotency-Key", uuid::Uuid::new_v4().to_string());
    }
    let response = request.send().await.map_err(|error| CallError {
        code: "HTTP_TRANSPORT".into(),
        message: error.to_string(),
    })?;
    let status = response.status();
    let body: Value = response.json().await.map_err(|error| CallError {
        code: format!("HTTP_{}", status.as_u16()),
        message: error.to_string(),
    })?;
    if let Some(error) = body
        .get("errors")
        .and_then(Value::as_array)
        .and_then(|errors| errors.first())
    {
        return Err(CallError {
            code: error["extensions"]["code"]
                .as_str()
                .unwrap_or("NO_CODE")
                .to_string(),
            message: error["message"].as_str().unwrap_or_default().to_string(),
        });
    }
    if !status.is_success() {
        return Err(CallError {
            code: format!("HTTP_{}", status.as_u16()),
            message: body.to_string(),
        });
    }
    Ok(body["data"].clone())
}

/// A successful payment mutation must return the status the scenario expects.
fn payment_in_status(data: &Value, field: &str, expected: &str) -> Result<String, CallError> {
    let payment = &data[field];
    match (payment["id"].as_str(), payment["status"].as_str()) {
        (Some(id), Some(status)) if status == expected => Ok(id.to_string()),
        _ => Err(CallError {
            code: format!("UNEXPECTED_STATUS (want {expected})"),
            message: payment.to_string(),
        }),
    }
}

async fn client_loop(index: usize, context: Arc<RunContext>) -> Stats {
    let client = http_client();
    let mut stats = Stats::default();
    // Validated payments, each with the number of the first remittance started after
    // its validation: once that one has succeeded, the payment is captured.
    let mut validated: VecDeque<(String, u64)> = VecDeque::new();
    let mut sequence = 0u64;
    while Instant::now() < context.stop_at {
        let completed = context.remittances_completed.load(Ordering::Acquire);
        if validated
            .front()
            .is_some_and(|(_, needed)| completed >= *needed)
        {
            let (id, _) = validated.pop_front().expect("front exists");
            let started = Instant::now();
            let outcome = call(
                &client,
                &context,
                REFUND_PAYMENT,
                json!({ "id": id, "amount": AMOUNT }),
            )
            .await
            .and_then(|data| payment_in_status(&data, "refundPayment", "REFUNDED"));
            match outcome {
                Ok(_) => context.record(&mut stats, Op::Refund, started),
                Err(error) => {
                    if error.code == "PAYMENT_NOT_CAPTURED" {
                        // Should not happen (see above); retry after the next remittance.
                        validated.push_back((
                            id,
                            context.remittances_started.load(Ordering::Acquire) + 1,
                        ));
                    }
                    stats.error(Op::Refund, error);
                }
            }
            continue;
        }
        sequence += 1;
        let mut input = json!({
            "amount": AMOUNT,
            "currency": "EUR",
            "orderReference": format!("BENCH-{}-C{index}-S{sequence}", context.tag),
            "channel": "ECOMMERCE",
            "captureMode": "MANUAL",
            "card": { "number": TEST_CARD, "expiryMonth": 12, "expiryYear": 2030, "cvv": "123", "holderName": "Bench Buyer" },
            "buyerIp": "203.0.113.9"
        });
        if context.buyer_email {
            input["buyerEmail"] = json!("buyer@example.com");
        }
        let started = Instant::now();
        let created = call(&client, &context, CREATE_PAYMENT, json!({ "input": input }))
            .await
            .and_then(|data| payment_in_status(&data, "createPayment", "AUTHORISED_TO_VALIDATE"));
        let id = match created {
            Ok(id) => {
                context.record(&mut stats, Op::Create, started);
                id
            }
            Err(error) => {
                stats.error(Op::Create, error);
                continue;
            }
        };
        let started = Instant::now();
        let validated_ok = call(&client, &context, VALIDATE_PAYMENT, json!({ "id": id }))
            .await
            .and_then(|data| payment_in_status(&data, "validatePayment", "AUTHORISED"));
        match validated_ok {
            Ok(_) => {
                context.record(&mut stats, Op::Validate, started);
                // The views show it as due now (mutations wait for them), so any
                // remittance started from here on captures it.
                let needed = context.remittances_started.load(Ordering::Acquire) + 1;
                validated.push_back((id, needed));
            }
            Err(error) => stats.error(Op::Validate, error),
        }
    }
    stats
}

async fn remitter_loop(context: Arc<RunContext>) -> Stats {
    let client = http_client();
    let mut stats = Stats::default();
    while Instant::now() < context.stop_at {
        let started = Instant::now();
        let number = context.remittances_started.fetch_add(1, Ordering::AcqRel) + 1;
        match call(
            &client,
            &context,
            RUN_REMITTANCE,
            json!({ "shop": context.shop_id }),
        )
        .await
        {
            Ok(data) => {
                context
                    .remittances_completed
                    .fetch_max(number, Ordering::AcqRel);
                context.record(&mut stats, Op::Remittance, started);
                if context.in_window(Instant::now()) {
                    let remittances = data["runRemittance"]
                        .as_array()
                        .map(Vec::as_slice)
                        .unwrap_or_default();
                    stats.captured += remittances
                        .iter()
                        .filter_map(|r| r["paymentCount"].as_u64())
                        .sum::<u64>();
                }
            }
            Err(error) => stats.error(Op::Remittance, error),
        }
        let next = started + context.remittance_interval;
        if next > Instant::now() && next < context.stop_at {
            tokio::time::sleep_until(next.into()).await;
        }
    }
    stats
}

/// The events-like table and the one-INSERT-per-transaction script.
async fn prepare_pgbench(pgbench: &Pgbench) -> anyhow::Result<()> {
    let mut connection = connect_admin(&pgbench.url).await?;
    sqlx::query(
        "CREATE TABLE IF NOT EXISTS bench_events (
             id bigserial PRIMARY KEY,
             aggregate_id text,
             sequence bigint,
             payload json,
             recorded_at timestamptz DEFAULT now()
         )",
    )
    .execute(&mut connection)
    .await
    .context("creating bench_events")?;
    connection.close().await?;
    let script = "\\set n random(1, 1000000000)\n\
        INSERT INTO bench_events (aggregate_id, sequence, payload) VALUES ('pay_' || :client_id || '_' || :n, 1, \
        '{\"type\":\"PaymentAuthorised\",\"amount\":\"10.00\",\"currency\":\"EUR\",\"card\":{\"bin\":\"497010\",\"last_four\":\"0006\",\"brand\":\"CB\"}}');\n";
    std::fs::write(pgbench.dir.join("insert.sql"), script).context("writing the pgbench script")?;
    Ok(())
}

async fn run_pgbench(pgbench: &Pgbench, clients: usize, seconds: u64) -> anyhow::Result<f64> {
    let script = pgbench.dir.join("insert.sql");
    // The password, if any, goes by environment, not on a command line `ps` shows.
    let mut url = reqwest::Url::parse(&pgbench.url).context("parsing the bench database URL")?;
    let password = url.password().map(str::to_string);
    let _ = url.set_password(None);
    let mut command = tokio::process::Command::new(&pgbench.binary);
    if let Some(password) = password {
        command.env("PGPASSWORD", password);
    }
    let output = command
        .kill_on_drop(true)
        .arg("-n")
        .args(["-c", &clients.to_string()])
        .args(["-j", &PGBENCH_THREADS.min(clients).to_string()])
        .args(["-T", &seconds.to_string()])
        .arg("-f")
        .arg(&script)
        .arg(url.as_str())
        .output()
        .await
        .with_context(|| format!("starting {}", pgbench.binary.display()))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        bail!("pgbench failed ({}):\n{stdout}\n{stderr}", output.status);
    }
    parse_tps(&stdout)
        .with_context(|| format!("no `tps = N` in pgbench output:\n{stdout}\n{stderr}"))
}

/// The first `tps = N` of pgbench's report.
fn parse_tps(output: &str) -> Option<f64> {
    output.lines().find_map(|line| {
        let rest = line.trim().strip_prefix("tps = ")?;
        f64::from_str(rest.split_whitespace().next()?).ok()
    })
}

fn print_report(machine: &Machine, results: &[RunResult], args: &BenchArgs) {
    println!();
    println!(
        "== results ({} s measured per run after {} s warm-up, remittance every {} ms{})",
        args.seconds,
        args.warmup_seconds,
        args.remittance_interval_ms,
        if args.idempotency_keys {
            ", Idempotency-Key on every mutation"
        } else {
            ""
        }
    );
    println!("machine: {} cpus, {}", machine.cpus, machine.cpu_model);
    if let Some(postgres) = &machine.postgres {
        println!("postgres: {postgres}");
    }
    println!();
    println!(
        "{:<9} {:>7} {:>11} {:>7} {:>7} {:>11} {:>7} {:>12} {:>6}",
        "backend",
        "clients",
        "commands/s",
        "p50_ms",
        "p99_ms",
        "captures/s",
        "errors",
        "pgbench_tps",
        "ratio"
    );
    for result in results {
        println!(
            "{:<9} {:>7} {:>11.0} {:>7.1} {:>7.1} {:>11.0} {:>7} {:>12} {:>6}",
            result.backend.name(),
            result.clients,
            result.commands_per_second(),
            result.all.p50_ms,
            result.all.p99_ms,
            result.captured as f64 / result.seconds,
            result.error_count(),
            result
                .pgbench_tps
                .map(|tps| format!("{tps:.0}"))
                .unwrap_or_else(|| "-".into()),
            result
                .ratio()
                .map(|ratio| format!("{ratio:.3}"))
                .unwrap_or_else(|| "-".into()),
        );
    }
    println!();
    println!("per command:");
    println!(
        "{:<9} {:>7} {:<16} {:>9} {:>7} {:>7}",
        "backend", "clients", "command", "ops/s", "p50_ms", "p99_ms"
    );
    for result in results {
        for (op, latency) in &result.per_op {
            println!(
                "{:<9} {:>7} {:<16} {:>9.1} {:>7.1} {:>7.1}",
                result.backend.name(),
                result.clients,
                op.name(),
                latency.count as f64 / result.seconds,
                latency.p50_ms,
                latency.p99_ms
            );
        }
    }
    println!();
    println!(
        "cpu during the measured window, % of the machine ({} cpus = 100):",
        machine.cpus
    );
    println!(
        "{:<9} {:>7} {:>7} {:>12} {:>7} {:>7} {:>6} {:>12}",
        "backend", "clients", "caisse", "pg_backends", "other", "iowait", "idle", "pg_xact/cmd"
    );
    for result in results {
        if let Some(cpu) = result.cpu {
            let per_command = result
                .pg_transactions
                .filter(|_| result.server_commands() > 0)
                .map(|count| format!("{:.1}", count as f64 / result.server_commands() as f64))
                .unwrap_or_else(|| "-".into());
            println!(
                "{:<9} {:>7} {:>7.0} {:>12} {:>7.0} {:>7.0} {:>6.0} {:>12}",
                result.backend.name(),
                result.clients,
                cpu.caisse,
                if result.backend == Backend::Postgres {
                    format!("{:.0}", cpu.postgres)
                } else {
                    "-".into()
                },
                cpu.other,
                cpu.iowait,
                cpu.idle,
                per_command
            );
        }
    }
    println!("(caisse = this process: the HTTP clients and the server together; other = everything else on");
    println!(" the machine, PostgreSQL's WAL writer included; pg_xact/cmd = transactions committed in the bench");
    println!(" database per command the server ran, captures included; read-only autocommit statements count");
    println!(" as transactions too — approximate, from pg_stat_database)");
    println!();
    println!("commands/s counts successful createPayment + validatePayment + refundPayment completed in the window;");
    println!("captures/s are the payments captured by runRemittance (one more command each, not counted);");
    println!("ratio = commands/s / pgbench TPS (one-row INSERT per transaction) at the same client count.");
    let errors: Vec<_> = results
        .iter()
        .filter(|result| !result.errors.is_empty())
        .collect();
    if errors.is_empty() {
        println!("errors: none");
    } else {
        println!("errors (whole run, warm-up included):");
        for result in errors {
            for ((op, code), (count, message)) in &result.errors {
                println!(
                    "  {} · {} clients · {} · {code}: {count} (e.g. {message})",
                    result.backend.name(),
                    result.clients,
                    op.name()
                );
            }
        }
    }
    for result in results
        .iter()
        .filter(|result| result.backend == Backend::Postgres && result.clients == 8)
    {
        if let Some(ratio) = result.ratio() {
            let verdict = if ratio >= 0.35 { "meets" } else { "is below" };
            println!("target: ratio ≥ 0.35 at 8 clients on PostgreSQL — measured {ratio:.3}, which {verdict} the target");
        }
    }
}

/// `--ab-rounds`: the quiet shop (`quiet_key`, no notifications) and a second
/// merchant's shop with notifications on, driven in turn on one server.
async fn notifications_ab(
    job: &BackendJob,
    state: &std::sync::Arc<crate::state::AppState>,
    sinks: &NotificationSinks,
    endpoint: &str,
    quiet_key: &str,
    quiet_shop: &str,
) -> anyhow::Result<Vec<RunResult>> {
    let notified = state
        .merchants
        .init(InitInput {
            merchant_name: "Bench merchant with notifications".into(),
            shop_name: "Notified shop".into(),
            admin_email: "bench-notified@example.com".into(),
        })
        .await
        .map_err(|error| anyhow::anyhow!("merchant init: {error}"))?;
    turn_notifications_on(state, sinks, notified.shop_id, &job.merchant_email_types).await?;
    let notified_key = notified.test_api_key;
    let notified_shop = notified.shop_id.to_string();
    let mut results = Vec::new();
    for &clients in &job.clients {
        let mut off = Vec::new();
        let mut on = Vec::new();
        let mut off_cpu = Vec::new();
        let mut on_cpu = Vec::new();
        let mut off_server_cpu = Vec::new();
        let mut on_server_cpu = Vec::new();
        for round in 0..job.ab_rounds {
            // ABBA: off first in even rounds, on first in odd ones.
            let phases = if round % 2 == 0 {
                [false, true]
            } else {
                [true, false]
            };
            for notifications in phases {
                drain_outboxes(state).await;
                let (key, shop) = if notifications {
                    (notified_key.as_str(), notified_shop.as_str())
                } else {
                    (quiet_key, quiet_shop)
                };
                let load = Load {
                    buyer_email: notifications,
                    sinks_stat: Some(sinks.thread_stat.clone()),
                    ..job.load.clone()
                };
                let busy_before = state.projectors.busy_micros();
                let batches_before = state.projectors.batch_micros();
                let dispatch_before = caisse_infrastructure::webhook_delivery::dispatch_timings();
                let build_before = caisse_projections::webhook_dispatch::build_micros();
                let sent_before = notifications_sent(state).await;
                let result = drive(job.backend, clients, endpoint, key, shop, &load, None).await;
                // Warm-up included on both sides of the difference: per command
                // of the whole phase, approximately.
                let busy_after = state.projectors.busy_micros();
                let batches = state.projectors.batch_micros() - batches_before;
                let rate = result.commands_per_second();
                let cpu_ms = result.cpu_ms_per_command();
                let server_ms = result.server_cpu_ms_per_command();
                let ms = |ms: Option<f64>| {
                    ms.map(|ms| format!("{ms:.2}"))
                        .unwrap_or_else(|| "-".into())
                };
                // SQLite's single writer: the share of the window its lock was
                // held, and the turns and storage writes per command.
                let writer = match (job.backend, result.cpu, result.all.count) {
                    (Backend::Sqlite, Some(cpu), commands) if commands > 0 => format!(
                        "; write lock held {:.0} % of the window, {:.1} turns and {:.2} ms per command; {:.1} KB written per command",
                        100.0 * cpu.write_lock_seconds / result.seconds,
                        cpu.write_lock_turns as f64 / commands as f64,
                        1000.0 * cpu.write_lock_seconds / commands as f64,
                        cpu.written_bytes as f64 / 1024.0 / commands as f64,
                    ),
                    _ => String::new(),
                };
                println!(
                    "  round {} · {clients} clients · notifications {}: {rate:.0} commands/s, p50 {:.1} ms, p99 {:.1} ms, {} errors; cpu {} ms/command, without the sinks {}; steal {} %{writer}",
                    round + 1,
                    if notifications { "on " } else { "off" },
                    result.all.p50_ms,
                    result.all.p99_ms,
                    result.error_count(),
                    ms(cpu_ms),
                    ms(server_ms),
                    result.cpu.map(|cpu| format!("{:.0}", cpu.steal)).unwrap_or_else(|| "-".into()),
                );
                let phase_commands =
                    (rate * (job.load.seconds + job.load.warmup_seconds) as f64).max(1.0);
                let spent: Vec<String> = std::iter::once(("batches", batches))
                    .chain(busy_after.iter().map(|(name, after)| {
                        (*name, after - busy_before.get(name).copied().unwrap_or(0))
                    }))
                    .map(|(name, micros)| (name, micros as f64 / phase_commands))
                    .filter(|(_, per_command)| *per_command >= 5.0)
                    .map(|(name, per_command)| format!("{name} {per_command:.0}"))
                    .collect();
                println!("    projections, µs per command: {}", spent.join(", "));
                if notifications {
                    // After the phase's notifications are out: proof they flowed.
                    drain_outboxes(state).await;
                    let sent_after = notifications_sent(state).await;
                    println!(
                        "    notifications of the phase: {} webhook deliveries, {} e-mails",
                        sent_after.0 - sent_before.0,
                        sent_after.1 - sent_before.1,
                    );
                }
                let (passes, writing, sending) =
                    caisse_infrastructure::webhook_delivery::dispatch_timings();
                let building = caisse_projections::webhook_dispatch::build_micros() - build_before;
                if passes > dispatch_before.0 {
                    println!(
                        "    webhook dispatch: {} passes with deliveries; µs per command: building {:.0}, sending {:.0}, writing {:.0}",
                        passes - dispatch_before.0,
                        building as f64 / phase_commands,
                        (sending - dispatch_before.2) as f64 / phase_commands,
                        (writing - dispatch_before.1) as f64 / phase_commands,
                    );
                }
                if notifications {
                    on.push(rate);
                    on_cpu.push(cpu_ms);
                    on_server_cpu.push(server_ms);
                } else {
                    off.push(rate);
                    off_cpu.push(cpu_ms);
                    off_server_cpu.push(server_ms);
                }
                results.push(result);
            }
        }
        let mean = |rates: &[f64]| rates.iter().sum::<f64>() / rates.len() as f64;
        let mut ratios: Vec<f64> = on.iter().zip(&off).map(|(on, off)| on / off).collect();
        ratios.sort_by(f64::total_cmp);
        let median = ratios[ratios.len() / 2];
        println!(
            "  {} · {clients} clients · {} rounds: off mean {:.0}, on mean {:.0} commands/s; change of the means {:+.1} %; median per-round change {:+.1} % (per round: {})",
            job.backend.name(),
            job.ab_rounds,
            mean(&off),
            mean(&on),
            (mean(&on) / mean(&off) - 1.0) * 100.0,
            (median - 1.0) * 100.0,
            on.iter()
                .zip(&off)
                .map(|(on, off)| format!("{:+.1} %", (on / off - 1.0) * 100.0))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let (change, margin) = mean_change(on.iter().zip(&off).map(|(on, off)| on / off));
        println!(
            "  throughput: geometric mean of the per-round changes {change:+.1} % (± {margin:.1} %, two standard errors)"
        );
        // What each command cost the machine, steal excluded: on a machine whose
        // hypervisor takes a varying share of the CPUs, the steadier measure of
        // what notifications add; on a CPU-bound server throughput goes as its
        // inverse.
        for (what, on, off) in [
            ("cpu per command, whole machine", &on_cpu, &off_cpu),
            (
                "cpu per command without the sinks (the receiver and the relay)",
                &on_server_cpu,
                &off_server_cpu,
            ),
        ] {
            let pairs: Vec<(f64, f64)> = on
                .iter()
                .zip(off.iter())
                .filter_map(|(on, off)| Some(((*on)?, (*off)?)))
                .collect();
            if pairs.is_empty() || pairs.len() != job.ab_rounds {
                continue;
            }
            let (change, margin) = mean_change(pairs.iter().map(|(on, off)| on / off));
            let (on, off): (Vec<f64>, Vec<f64>) = pairs.into_iter().unzip();
            println!(
                "  {what}: off mean {:.2} ms, on mean {:.2} ms; geometric mean of the per-round changes {change:+.1} % (± {margin:.1} %): a CPU-bound machine would keep {:.1} % of its throughput",
                mean(&off),
                mean(&on),
                100.0 / (1.0 + change / 100.0)
            );
        }
    }
    Ok(results)
}

/// The geometric mean of ratios as a change in %, and two standard errors of
/// it (from the log ratios' spread), in % too.
fn mean_change(ratios: impl Iterator<Item = f64>) -> (f64, f64) {
    let logs: Vec<f64> = ratios.filter(|r| *r > 0.0).map(f64::ln).collect();
    if logs.is_empty() {
        return (0.0, 0.0);
    }
    let n = logs.len() as f64;
    let mean = logs.iter().sum::<f64>() / n;
    let variance = if logs.len() > 1 {
        logs.iter().map(|l| (l - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    let margin = 2.0 * (variance / n).sqrt();
    ((mean.exp() - 1.0) * 100.0, (margin.exp() - 1.0) * 100.0)
}

/// The far side of the notifications — the merchant's webhook receiver
/// (answering 200) and the SMTP relay — on a thread of their own with its own
/// runtime, as if on other machines: they never run on the server's workers,
/// and their CPU time is read apart, so the server's own cost per command can
/// be told from theirs. (They still share the machine's cores with it.)
struct NotificationSinks {
    webhook_url: String,
    smtp_port: u16,
    /// `/proc/<pid>/task/<tid>/stat` of the sinks' thread.
    thread_stat: PathBuf,
}

impl NotificationSinks {
    fn start() -> anyhow::Result<Self> {
        let (started, receive) = std::sync::mpsc::channel::<anyhow::Result<Self>>();
        std::thread::Builder::new()
            .name("bench-sinks".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(error) => {
                        let _ = started.send(Err(error.into()));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let sinks = async {
                        let thread = std::fs::read_link("/proc/thread-self")
                            .context("finding the sinks' thread in /proc")?;
                        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
                        let webhook_url = format!("http://{}/hooks", listener.local_addr()?);
                        let receiver = axum::Router::new()
                            .route("/hooks", axum::routing::post(|| async { "ok" }));
                        tokio::spawn(async move {
                            let _ = axum::serve(listener, receiver).await;
                        });
                        anyhow::Ok(NotificationSinks {
                            webhook_url,
                            smtp_port: smtp_sink().await?,
                            thread_stat: Path::new("/proc").join(thread).join("stat"),
                        })
                    };
                    let _ = started.send(sinks.await);
                    // Serve until the process ends.
                    std::future::pending::<()>().await
                });
            })?;
        receive.recv().context("the sinks' thread ended")?
    }
}

/// A minimal SMTP relay on 127.0.0.1 that accepts every message and keeps
/// none: the e-mails' way out in the notifications benchmark. Answers its port.
async fn smtp_sink() -> anyhow::Result<u16> {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let port = listener.local_addr()?.port();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let (read, mut write) = stream.into_split();
                let mut lines = BufReader::new(read);
                let mut line = String::new();
                let mut in_data = false;
                write.write_all(b"220 bench ESMTP\r\n").await?;
                loop {
                    line.clear();
                    if lines.read_line(&mut line).await? == 0 {
                        return Ok::<(), std::io::Error>(());
                    }
                    if in_data {
                        if line == ".\r\n" {
                            in_data = false;
                            write.write_all(b"250 queued\r\n").await?;
                        }
                        continue;
                    }
                    let command = line.trim_end().to_ascii_uppercase();
                    let answer: &[u8] = if command.starts_with("EHLO") {
                        b"250-bench\r\n250 8BITMIME\r\n"
                    } else if command == "DATA" {
                        in_data = true;
                        b"354 go on\r\n"
                    } else if command == "QUIT" {
                        write.write_all(b"221 bye\r\n").await?;
                        return Ok(());
                    } else {
                        b"250 OK\r\n"
                    };
                    write.write_all(answer).await?;
                }
            });
        }
    });
    Ok(port)
}

/// (webhook deliveries, e-mails) in the outboxes so far; (0, 0) if the count
/// fails.
async fn notifications_sent(state: &std::sync::Arc<crate::state::AppState>) -> (i64, i64) {
    state
        .database
        .db
        .fetch_optional(
            "SELECT (SELECT COUNT(*) FROM webhook_deliveries) AS webhooks,
                    (SELECT COUNT(*) FROM email_outbox) AS emails",
            &[],
        )
        .await
        .ok()
        .flatten()
        .map(|row| (row.int("webhooks"), row.int("emails")))
        .unwrap_or((0, 0))
}

/// Waits (30 s at most) until no event waits for a notification dispatcher
/// and no webhook delivery or e-mail is due, so a phase does not pay for the one
/// before.
async fn drain_outboxes(state: &std::sync::Arc<crate::state::AppState>) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        // (events not dispatched + webhook deliveries, e-mails) pending;
        // (0, 0) if the count fails.
        let (webhooks, emails) = state
            .database
            .db
            .fetch_optional(
                "SELECT (SELECT COUNT(*) FROM webhook_deliveries WHERE status = 'PENDING')
                      + (SELECT COUNT(*) FROM events WHERE global_position >
                            (SELECT global_position FROM notification_dispatch WHERE name = 'webhooks')) AS webhooks,
                        (SELECT COUNT(*) FROM email_outbox WHERE status = 'PENDING')
                      + (SELECT COUNT(*) FROM events WHERE global_position >
                            (SELECT global_position FROM notification_dispatch WHERE name = 'emails')) AS emails",
                &[],
            )
            .await
            .ok()
            .flatten()
            .map(|row| (row.int("webhooks"), row.int("emails")))
            .unwrap_or((0, 0));
        if webhooks + emails == 0 {
            return;
        }
        if Instant::now() >= deadline {
            println!(
                "  (outboxes not drained after 30 s: {webhooks} webhook events or deliveries, {emails} e-mail events or e-mails pending; going on)"
            );
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// One webhook endpoint for every event type, to the sinks' receiver
/// answering 200, and merchant e-mails for `email_types` (`--notifications`),
/// sent over SMTP to the sinks' relay.
async fn turn_notifications_on(
    state: &std::sync::Arc<crate::state::AppState>,
    sinks: &NotificationSinks,
    shop_id: caisse_domain::ShopId,
    email_types: &[String],
) -> anyhow::Result<()> {
    let url = sinks.webhook_url.clone();
    let context = caisse_application::RequestContext::system(
        caisse_domain::payment::AccessScope::single(shop_id, caisse_domain::Mode::Test),
        "bench",
    );
    // Experiments only: CAISSE_BENCH_NOTIFY=webhooks or emails turns on one
    // of the two, to see what each costs.
    let only = std::env::var("CAISSE_BENCH_NOTIFY").unwrap_or_default();
    if only != "emails" {
        state
            .webhooks
            .create(&context, shop_id, url, vec!["*".to_string()], None)
            .await
            .map_err(|error| anyhow::anyhow!("webhook endpoint: {error}"))?;
    }
    if only == "webhooks" {
        println!(
            "notifications on: one webhook endpoint, every event type (EXPERIMENT: no e-mails)"
        );
        return Ok(());
    }
    state
        .notifications
        .configure_merchant_emails(
            &context,
            shop_id,
            caisse_application::notifications::MerchantEmailsInput {
                addresses: vec!["orders@bench.example".to_string()],
                event_types: email_types.to_vec(),
                shop_display_name: Some("Bench shop".to_string()),
                logo_url: None,
                language: None,
            },
        )
        .await
        .map_err(|error| anyhow::anyhow!("merchant e-mails: {error}"))?;
    println!(
        "notifications on: {}merchant e-mails for {}; buyer confirmations{}",
        if only == "emails" {
            ""
        } else {
            "one webhook endpoint for every event type; "
        },
        email_types.join(", "),
        if only == "emails" {
            " (EXPERIMENT: no webhooks)"
        } else {
            ""
        }
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pgbench_tps() {
        let output = "number of failed transactions: 0 (0.000%)\nlatency average = 0.470 ms\n\
                      initial connection time = 9.1 ms\ntps = 17012.345678 (without initial connection time)\n";
        assert_eq!(parse_tps(output), Some(17012.345678));
        assert_eq!(parse_tps("nothing here"), None);
    }

    #[test]
    fn mean_change_is_the_geometric_mean_of_ratios() {
        let (change, margin) = super::mean_change([0.5, 2.0].into_iter());
        assert!(change.abs() < 1e-9, "{change}");
        assert!(margin > 0.0);
        let (change, margin) = super::mean_change([0.9, 0.9, 0.9].into_iter());
        assert!((change + 10.0).abs() < 1e-9, "{change}");
        assert!(margin.abs() < 1e-9);
    }

    #[test]
    fn percentiles_use_nearest_rank() {
        let mut samples: Vec<u32> = (1..=100).map(|ms| ms * 1000).collect();
        let latency = latency(&mut samples);
        assert_eq!(latency.count, 100);
        assert_eq!(latency.p50_ms, 50.0);
        assert_eq!(latency.p99_ms, 99.0);
    }
}
