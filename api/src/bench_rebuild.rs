//! `caisse bench rebuild`: how fast each projection is rebuilt from the log
//! (`caisse projections rebuild NAME`), in events per second, on a fresh SQLite
//! file and/or a fresh PostgreSQL database (docs/performance.md, "Projection
//! rebuild").
//!
//! The log is a realistic mix made with the cut-off bench's loader: payments
//! created (AUTOMATIC and MANUAL capture), some validated, some cancelled, a daily
//! cut-off capturing what is due, then some refunds in full or in part. The
//! background projector is stopped before the rebuilds, so each rebuild alone
//! replays the whole log.

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use caisse_domain::PaymentId;
use caisse_infrastructure::Config;

use crate::bench::{Backend, BackendChoice};
use crate::bench_cutoff::{
    app_error, backends, on_fresh_database, print_machine, rate, BenchApp, Fate, FollowUp,
};

/// The mix, per ten payments: 23 payment events (PaymentAuthorised, then
/// PaymentValidated, PaymentCancelled, PaymentCaptured, PaymentRefunded as fits).
const MIX: [Fate; 10] = [
    Fate::Refunded,
    Fate::PartiallyRefunded,
    Fate::Captured,
    Fate::Captured,
    Fate::Captured,
    Fate::Captured,
    Fate::ValidatedThenCaptured,
    Fate::ValidatedThenCaptured,
    Fate::Cancelled,
    Fate::LeftToValidate,
];
const MIX_EVENTS: usize = 23;

#[derive(clap::Args, Debug)]
pub struct RebuildArgs {
    /// Which backend(s) to measure.
    #[arg(long, value_enum, default_value_t = BackendChoice::Both)]
    pub backend: BackendChoice,
    /// About how many events the log holds: payments are created until the mix
    /// reaches it (2.3 events per payment; the merchant, the remittance and the
    /// cut-offs add a few).
    #[arg(long, default_value_t = 100_000)]
    pub events: usize,
    /// Commands run at the same time while loading.
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

/// One projection's rebuild.
struct Rebuilt {
    name: &'static str,
    applied: usize,
    took: Duration,
}

/// One backend's figures.
struct RebuildResult {
    backend: Backend,
    payments: usize,
    events: i64,
    load: Duration,
    rebuilt: Vec<Rebuilt>,
}

pub async fn run(args: RebuildArgs, config: Config) -> anyhow::Result<()> {
    if args.events == 0 {
        bail!("--events must be at least 1");
    }
    let backends = backends(args.backend);
    print_machine(
        "caisse bench rebuild",
        &backends,
        &args.postgres_url,
        &config,
    )
    .await?;
    let payments = (args.events * MIX.len()).div_ceil(MIX_EVENTS);
    println!(
        "  log         {payments} payments: per ten, 4 captured, 2 validated then captured, 1 refunded in full, \
         1 in part, 1 cancelled, 1 left to validate; {} commands at a time",
        args.concurrency
    );
    let mut results = Vec::new();
    for backend in backends {
        let result = on_fresh_database(backend, &args.postgres_url, &config, |config| {
            rebuild_on(backend, config, payments, &args)
        })
        .await
        .with_context(|| format!("{} rebuild benchmark", backend.name()))?;
        results.push(result);
    }
    print_rebuild_report(&results);
    Ok(())
}

async fn rebuild_on(
    backend: Backend,
    config: Config,
    payments: usize,
    args: &RebuildArgs,
) -> anyhow::Result<RebuildResult> {
    let concurrency = args.concurrency;
    let app = BenchApp::start(config, args.no_analyze).await?;
    let outcome = async {
        let started = Instant::now();
        let fates: Vec<Fate> = (0..payments).map(|index| MIX[index % MIX.len()]).collect();
        let ids = app.create_payments(&fates, concurrency).await?;
        let with_fate = |fate: Fate| -> Vec<PaymentId> {
            ids.iter()
                .zip(&fates)
                .filter(|(_, candidate)| **candidate == fate)
                .map(|(id, _)| *id)
                .collect()
        };
        let before_cut_off = [
            (FollowUp::Validate, Fate::ValidatedThenCaptured),
            (FollowUp::Cancel, Fate::Cancelled),
        ];
        for (follow_up, fate) in before_cut_off {
            app.follow_up(follow_up, &with_fate(fate), concurrency)
                .await?;
        }
        println!("  cut-off …");
        app.run_cut_off().await?;
        let captured = fates.iter().filter(|fate| fate.is_captured()).count();
        app.outcome().await?.check_captured(captured)?;
        let after_cut_off = [
            (FollowUp::RefundAll, Fate::Refunded),
            (FollowUp::RefundPart, Fate::PartiallyRefunded),
        ];
        for (follow_up, fate) in after_cut_off {
            app.follow_up(follow_up, &with_fate(fate), concurrency)
                .await?;
        }
        app.catch_up().await?;
        let load = started.elapsed();
        let before = app.outcome().await?;
        println!(
            "  log: {} events, loaded in {:.1} s",
            before.events,
            load.as_secs_f64()
        );

        // From here on only the rebuilds touch the views.
        app.state.projectors.stop();
        let mut rebuilt = Vec::new();
        for name in app.state.projectors.names() {
            let handle = app
                .state
                .projectors
                .get(name)
                .context("a listed projection exists")?;
            let started = Instant::now();
            let applied = handle.rebuild().await.map_err(app_error)?;
            let took = started.elapsed();
            println!(
                "  rebuilt {name}: {applied} events in {:.2} s",
                took.as_secs_f64()
            );
            rebuilt.push(Rebuilt {
                name,
                applied,
                took,
            });
        }
        // The rebuilt views must say what the incremental ones said.
        let after = app.outcome().await?;
        let counts = |outcome: &crate::bench_cutoff::Outcome| {
            (
                outcome.remittances,
                outcome.remitted_payments,
                outcome.captured_in_view,
            )
        };
        if counts(&before) != counts(&after) {
            bail!(
                "the rebuilt views differ: (remittances, remitted payments, captured) {:?} before, {:?} after",
                counts(&before),
                counts(&after)
            );
        }
        Ok(RebuildResult {
            backend,
            payments,
            events: before.events,
            load,
            rebuilt,
        })
    }
    .await;
    app.stop().await;
    outcome
}

fn print_rebuild_report(results: &[RebuildResult]) {
    println!(
        "\n{:<8} {:>8} {:>8} {:>7}  {:<12} {:>8} {:>8} {:>9}",
        "backend", "payments", "events", "load_s", "projection", "applied", "seconds", "events/s"
    );
    for result in results {
        let row = |name: &str, applied: usize, seconds: f64| {
            println!(
                "{:<8} {:>8} {:>8} {:>7.1}  {:<12} {:>8} {:>8.2} {:>9.0}",
                result.backend.name(),
                result.payments,
                result.events,
                result.load.as_secs_f64(),
                name,
                applied,
                seconds,
                rate(applied, seconds)
            );
        };
        for rebuilt in &result.rebuilt {
            row(rebuilt.name, rebuilt.applied, rebuilt.took.as_secs_f64());
        }
        // `caisse projections rebuild all` rebuilds them one after the other.
        let seconds: f64 = result
            .rebuilt
            .iter()
            .map(|rebuilt| rebuilt.took.as_secs_f64())
            .sum();
        let applied = result.events.max(0) as usize;
        row("all", applied, seconds);
    }
    println!(
        "\nevents/s: events of the log replayed per second (every projection reads every event and \
         ignores those of other aggregates). all: the projections one after the other, as \
         `caisse projections rebuild all` does; its rate is log events over the total time."
    );
}
