//! The `caisse` command line: serve, migrate, init, projections rebuild, audit verify,
//! schedule list/run, retention run, reference load/show, export, bench.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use caisse_application::merchants::InitInput;
use caisse_application::ports::SystemClock;
use caisse_application::retention::created_before;
use caisse_infrastructure::reference_store::{self, ReferenceKind, ReferenceStoreError};
use caisse_infrastructure::time::{date_text, timestamp_text};
use caisse_infrastructure::{Config, Database, Db};
use caisse_projections::{audit, queries, Projectors};
use clap::{ArgGroup, Parser, Subcommand};

use crate::state::AppState;
use crate::Application;

#[derive(Parser)]
#[command(
    name = "caisse",
    version,
    about = "Caisse: event-sourced payment ledger and back office"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the HTTP server (GraphQL at /graphql).
    Serve,
    /// Apply database migrations and exit.
    Migrate,
    /// Create a merchant, its first shop, test and live API keys and an admin user.
    Init {
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
        #[arg(long, default_value = "My merchant")]
        merchant_name: String,
        #[arg(long, default_value = "My shop")]
        shop_name: String,
        #[arg(long, default_value = "admin@example.com")]
        admin_email: String,
        /// Create another merchant even if one exists.
        #[arg(long)]
        additional: bool,
    },
    /// Projection maintenance.
    Projections {
        #[command(subcommand)]
        command: ProjectionsCommand,
    },
    /// Auditor tools.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// History kept online (CM-12).
    Retention {
        #[command(subcommand)]
        command: RetentionCommand,
    },
    /// The scheduler's due work: expiries and re-authorisations, deferred
    /// authorisations, plan instalments, daily remittance cut-offs, retention.
    Schedule {
        #[command(subcommand)]
        command: ScheduleCommand,
    },
    /// The risk reference tables: BIN and IP-to-country (docs/reference-data.md).
    Reference {
        #[command(subcommand)]
        command: ReferenceCommand,
    },
    /// Benchmarks: HTTP throughput (the default, `bench http`), `bench cutoff`, `bench rebuild`, `bench risk`.
    Bench(Box<crate::bench_cli::BenchCommandArgs>),
    /// Export payments as CSV or Excel .xlsx (docs/exports.md).
    Export(Box<crate::export::ExportArgs>),
}

#[derive(Subcommand)]
enum ProjectionsCommand {
    /// Empty a projection's views and replay the whole log into them (`all` for every one).
    Rebuild { name: String },
    /// List projections and their checkpoints.
    Status,
}

#[derive(Subcommand)]
enum ScheduleCommand {
    /// List the work scheduled, soonest first, and what is due now.
    List,
    /// Do the work due now, once, and exit (what `caisse serve` does in the background).
    Run,
}

#[derive(Subcommand)]
enum ReferenceCommand {
    /// Check new tables and make them current; every `caisse serve` on the database
    /// swaps them in within `[reference] refresh_interval_ms`, without restart.
    /// A file that does not load is refused with its line and field; nothing is written.
    #[command(group(ArgGroup::new("tables").required(true).multiple(true).args(["bins", "ip_countries"])))]
    Load {
        /// A BIN table (CSV).
        #[arg(long, value_name = "FILE")]
        bins: Option<PathBuf>,
        /// An IP-to-country table (CSV, DB-IP lite format).
        #[arg(long, value_name = "FILE")]
        ip_countries: Option<PathBuf>,
    },
    /// The tables in force: version, ranges, when and by whom they were loaded.
    Show,
}

#[derive(Subcommand)]
enum RetentionCommand {
    /// Drop from the online views what is older than `retention_months` (the log keeps it).
    Run,
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Replay the log; check money invariants, sequences and that views equal their replay.
    Verify,
}

pub fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let config = Config::load()?;
    crate::telemetry::init(config.production);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(cli.command, config))
}

async fn connect(config: &Config) -> anyhow::Result<Database> {
    let database = Database::connect(config).await?;
    database.migrate().await?;
    Ok(database)
}

async fn run(command: Command, config: Config) -> anyhow::Result<()> {
    match command {
        Command::Serve => {
            Application::build(config)
                .await?
                .run_until_stopped()
                .await?
        }
        Command::Migrate => {
            let database = connect(&config).await?;
            println!("migrations applied to {}", database.description);
        }
        Command::Init {
            json,
            merchant_name,
            shop_name,
            admin_email,
            additional,
        } => {
            let database = connect(&config).await?;
            let state = AppState::build(config, database, Arc::new(SystemClock))?;
            state
                .projectors
                .catch_up_all()
                .await
                .map_err(anyhow_error)?;
            // The merchant service waits for its views, so they must be running.
            state.projectors.spawn();
            let existing = queries::list_merchants(state.db())
                .await
                .map_err(anyhow_error)?;
            if !existing.is_empty() && !additional {
                let list: Vec<String> = existing
                    .iter()
                    .map(|(id, name)| format!("{id} ({name})"))
                    .collect();
                bail!(
                    "a merchant already exists: {}. Its API keys were shown when it was created. \
                     Run `caisse init --additional` to create another merchant.",
                    list.join(", ")
                );
            }
            let email = admin_email.trim().to_lowercase();
            let taken = state
                .db()
                .fetch_optional(
                    "SELECT user_id FROM users_view WHERE email = $1",
                    &[email.as_str().into()],
                )
                .await
                .map_err(anyhow_error)?;
            if taken.is_some() {
                bail!("a user with e-mail {email} already exists; pass another --admin-email");
            }
            let output = state
                .merchants
                .init(InitInput {
                    merchant_name,
                    shop_name,
                    admin_email,
                })
                .await
                .map_err(anyhow_error)?;
            if json {
                let value = serde_json::json!({
                    "merchant_id": output.merchant_id.to_string(),
                    "shop_id": output.shop_id.to_string(),
                    "test_api_key": output.test_api_key,
                    "live_api_key": output.live_api_key,
                    "admin_email": output.admin_email,
                    "admin_password": output.admin_password,
                });
                println!("{}", serde_json::to_string_pretty(&value)?);
            } else {
                println!("Merchant created. Keep these secrets now: they are not shown again.");
                println!("  merchant_id     {}", output.merchant_id);
                println!("  shop_id         {}", output.shop_id);
                println!("  test_api_key    {}", output.test_api_key);
                println!("  live_api_key    {}", output.live_api_key);
                println!("  admin_email     {}", output.admin_email);
                println!("  admin_password  {}", output.admin_password);
            }
        }
        Command::Projections { command } => {
            let database = connect(&config).await?;
            let projectors =
                Projectors::new(database.db.clone(), std::time::Duration::from_secs(1));
            match command {
                ProjectionsCommand::Rebuild { name } => {
                    let names: Vec<&str> = if name == "all" {
                        projectors.names()
                    } else {
                        vec![name.as_str()]
                    };
                    for name in names {
                        let projector = projectors.get(name).with_context(|| {
                            format!(
                                "unknown projection `{name}`; known: {}, or all",
                                projectors.names().join(", ")
                            )
                        })?;
                        let started = std::time::Instant::now();
                        let applied = projector.rebuild().await.map_err(anyhow_error)?;
                        println!(
                            "rebuilt {name}: {applied} events in {:.2?}",
                            started.elapsed()
                        );
                    }
                }
                ProjectionsCommand::Status => {
                    projectors.catch_up_all().await.map_err(anyhow_error)?;
                    for (name, position) in projectors.checkpoints() {
                        println!(
                            "{name}: position {} (tx {})",
                            position.global_position, position.tx_id
                        );
                    }
                }
            }
        }
        Command::Audit {
            command: AuditCommand::Verify,
        } => {
            let database = connect(&config).await?;
            let report = audit::verify(&database.db).await.map_err(anyhow_error)?;
            println!(
                "audit: {} events, {} aggregates, {} payments replayed",
                report.events, report.aggregates, report.payments
            );
            for finding in &report.findings {
                println!("FINDING: {finding}");
            }
            if !report.is_clean() {
                bail!("audit found {} problem(s)", report.findings.len());
            }
            println!("audit: no findings");
        }
        Command::Retention {
            command: RetentionCommand::Run,
        } => {
            let database = connect(&config).await?;
            let state = AppState::build(config, database, Arc::new(SystemClock))?;
            state
                .projectors
                .catch_up_all()
                .await
                .map_err(anyhow_error)?;
            // The service waits for the views to apply the trim.
            state.projectors.spawn();
            println!("{}", retention_run(&state, "cli:retention").await?);
        }
        Command::Schedule { command } => {
            let database = connect(&config).await?;
            let state = AppState::build(config, database, Arc::new(SystemClock))?;
            state
                .projectors
                .catch_up_all()
                .await
                .map_err(anyhow_error)?;
            // Deferred authorisations and instalments judge payments on these.
            state.load_reference().await?;
            match command {
                ScheduleCommand::List => print!("{}", schedule_list(&state).await?),
                ScheduleCommand::Run => {
                    // The work waits for its views, so they must be running.
                    state.projectors.spawn();
                    let run = state.scheduler.run_due().await.map_err(anyhow_error)?;
                    println!(
                        "schedule: {} done {:?}, {} already done, {} locked by another process, {} failed",
                        run.done_total(),
                        run.done,
                        run.already_done,
                        run.skipped_locked,
                        run.failed
                    );
                    if run.failed > 0 {
                        bail!("{} scheduled item(s) failed; see the log", run.failed);
                    }
                }
            }
        }
        Command::Reference { command } => {
            let database = connect(&config).await?;
            match command {
                ReferenceCommand::Load { bins, ip_countries } => {
                    print!(
                        "{}",
                        reference_load(
                            &database.db,
                            bins.as_deref(),
                            ip_countries.as_deref(),
                            &cli_user(),
                        )
                        .await?
                    );
                    println!(
                        "every `caisse serve` on {} swaps it in within {} ms",
                        database.description, config.reference.refresh_interval_ms
                    );
                }
                ReferenceCommand::Show => print!("{}", reference_show(&database.db).await?),
            }
        }
        Command::Bench(args) => crate::bench_cli::run(*args, config).await?,
        Command::Export(args) => crate::export::run(*args, config).await?,
    }
    Ok(())
}

/// `caisse retention run`: trims the online views as of the state's clock and
/// says what left them. The counts are of rows older than the cutoff just before
/// the run, which the trim then removed.
pub async fn retention_run(state: &AppState, actor: &str) -> anyhow::Result<String> {
    let now = state.clock.now();
    let months = state.retention.retention_months();
    let cutoff = created_before(now, months).map_err(anyhow_error)?;
    let count = |sql: &'static str, bound: String| async move {
        state
            .db()
            .fetch_optional(sql, &[bound.into()])
            .await
            .map(|row| row.map(|row| row.int("n")).unwrap_or(0))
            .map_err(anyhow_error)
    };
    let payments = count(
        "SELECT COUNT(*) AS n FROM payments_view WHERE created_at < $1",
        timestamp_text(cutoff.and_hms_opt(0, 0, 0).expect("midnight").and_utc()),
    )
    .await?;
    let movements = count(
        "SELECT COUNT(*) AS n FROM cash_movements WHERE business_date < $1",
        date_text(cutoff),
    )
    .await?;
    let outcome = state
        .retention
        .run_as(now, actor)
        .await
        .map_err(anyhow_error)?;
    Ok(if outcome.trimmed {
        format!(
            "retention: online views trimmed as of {} ({months} months): {payments} payments archived \
             (still readable with `payment(id)`), {movements} cash movements dropped; the event log keeps everything",
            outcome.created_before
        )
    } else {
        format!(
            "retention: online views already trimmed as of {} ({months} months would give {}); nothing to do",
            outcome
                .trimmed_before
                .map(|date| date.to_string())
                .unwrap_or_default(),
            outcome.created_before
        )
    })
}

/// Who `caisse reference load` records as `loaded_by`: `cli:<OS user>`, or `cli`.
pub fn cli_user() -> String {
    ["USER", "LOGNAME", "USERNAME"]
        .iter()
        .find_map(|name| std::env::var(name).ok().filter(|user| !user.is_empty()))
        .map(|user| format!("cli:{user}"))
        .unwrap_or_else(|| "cli".to_string())
}

/// `caisse reference load`: reads the files, checks them with the domain parsers
/// and stores them in one transaction (all or nothing), then says what was
/// loaded, one line per table. A file that does not load is refused with
/// `<file> line N: field: message` and nothing is written.
pub async fn reference_load(
    db: &Db,
    bins: Option<&Path>,
    ip_countries: Option<&Path>,
    loaded_by: &str,
) -> anyhow::Result<String> {
    let files: Vec<(ReferenceKind, &Path)> = [
        (ReferenceKind::Bins, bins),
        (ReferenceKind::IpCountries, ip_countries),
    ]
    .into_iter()
    .filter_map(|(kind, path)| path.map(|path| (kind, path)))
    .collect();
    if files.is_empty() {
        bail!("nothing to load: pass --bins FILE, --ip-countries FILE or both");
    }
    let mut contents = Vec::with_capacity(files.len());
    for (kind, path) in &files {
        let content = std::fs::read_to_string(path)
            .with_context(|| format!("reading {} ({})", path.display(), kind.label()))?;
        contents.push((*kind, content));
    }
    let tables: Vec<(ReferenceKind, &str)> = contents
        .iter()
        .map(|(kind, content)| (*kind, content.as_str()))
        .collect();
    let saved = match reference_store::save_all(db, &tables, loaded_by).await {
        Ok(saved) => saved,
        Err(ReferenceStoreError::Invalid { kind, error }) => {
            let path = files
                .iter()
                .find(|(file_kind, _)| *file_kind == kind)
                .map(|(_, path)| path.display().to_string())
                .unwrap_or_default();
            bail!(
                "{path} {error}\n{} refused; nothing was loaded",
                kind.label()
            );
        }
        Err(ReferenceStoreError::Database(error)) => return Err(anyhow_error(error)),
    };
    let mut text = String::new();
    for table in saved {
        text.push_str(&format!(
            "{} loaded: version {}, {} ranges, sha256 {}\n",
            first_upper(table.kind.label()),
            table.version,
            table.rows,
            table.sha256
        ));
    }
    Ok(text)
}

fn first_upper(text: &str) -> String {
    let mut chars = text.chars();
    chars
        .next()
        .map(|first| first.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// `caisse reference show`: the table of each kind in force, one line each.
pub async fn reference_show(db: &Db) -> anyhow::Result<String> {
    let tables = reference_store::current_tables(db)
        .await
        .map_err(anyhow_error)?;
    let mut text = String::new();
    for table in tables {
        let loaded = match (&table.loaded_at, &table.loaded_by) {
            (Some(at), Some(by)) => format!("loaded {} by {by}", timestamp_text(*at)),
            _ => "built into the binary".to_string(),
        };
        text.push_str(&format!(
            "{:<12}  version {}  {} ranges  {loaded}  sha256 {}\n",
            table.kind.as_str(),
            table.version,
            table.rows,
            table.sha256
        ));
    }
    Ok(text)
}

/// `caisse schedule list`: one line per scheduled item, soonest first.
pub async fn schedule_list(state: &AppState) -> anyhow::Result<String> {
    let now = state.clock.now();
    let items = caisse_projections::schedule::ViewScheduledWork {
        db: state.db().clone(),
    }
    .all()
    .await
    .map_err(anyhow_error)?;
    let mut text = format!(
        "{} scheduled item(s) at {}\n",
        items.len(),
        timestamp_text(now)
    );
    for item in items {
        let subject = match &item.kind {
            caisse_application::ports::ScheduledKind::ExpireAuthorisation { payment_id }
            | caisse_application::ports::ScheduledKind::AuthoriseDeferred { payment_id }
            | caisse_application::ports::ScheduledKind::AbandonAuthentication { payment_id } => {
                format!("payment {payment_id}")
            }
            caisse_application::ports::ScheduledKind::RemittanceCutOff { business_date } => {
                format!("business day {business_date}")
            }
            caisse_application::ports::ScheduledKind::ChargeInstalment { plan_id, number } => {
                format!("plan {plan_id} instalment {number}")
            }
        };
        text.push_str(&format!(
            "{}  {:<5}  {:<21} shop {} {:<4} {subject}\n",
            timestamp_text(item.due_at),
            if item.due_at <= now { "DUE" } else { "later" },
            item.kind.as_str(),
            item.shop_id,
            item.mode.as_str(),
        ));
    }
    Ok(text)
}

fn anyhow_error(error: caisse_application::AppError) -> anyhow::Error {
    anyhow::anyhow!("{error}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_load_needs_at_least_one_table() {
        assert!(Cli::try_parse_from(["caisse", "reference", "load"]).is_err());
        for args in [
            &["caisse", "reference", "load", "--bins", "b.csv"][..],
            &["caisse", "reference", "load", "--ip-countries", "i.csv"][..],
            &[
                "caisse",
                "reference",
                "load",
                "--bins",
                "b.csv",
                "--ip-countries",
                "i.csv",
            ][..],
            &["caisse", "reference", "show"][..],
        ] {
            assert!(Cli::try_parse_from(args).is_ok(), "{args:?}");
        }
    }
}
