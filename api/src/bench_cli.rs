//! `caisse bench [http|cutoff|rebuild|risk]`: which benchmark to run. `caisse bench`
//! alone, with or without options, is `caisse bench http`, as it was before the
//! others existed (docs/performance.md).

use caisse_infrastructure::Config;

#[derive(clap::Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BenchCommandArgs {
    #[command(subcommand)]
    pub command: Option<BenchCommand>,
    /// Without a subcommand: the options of `caisse bench http`.
    #[command(flatten)]
    pub http: crate::bench::BenchArgs,
}

#[derive(clap::Subcommand, Debug)]
pub enum BenchCommand {
    /// Throughput and latency through the HTTP GraphQL endpoint, as a ratio to
    /// pgbench (the default).
    Http(crate::bench::BenchArgs),
    /// The daily remittance cut-off of N payments due today, as the scheduler runs it.
    Cutoff(crate::bench_cutoff::CutoffArgs),
    /// Rebuild speed of each projection (events/s) over a realistic log.
    Rebuild(crate::bench_rebuild::RebuildArgs),
    /// The latency the full risk rule set adds to one payment, in memory, with
    /// grey lists of 100k entries and an IP table of 1M ranges (issue 4).
    Risk(crate::bench_risk::RiskArgs),
}

pub async fn run(args: BenchCommandArgs, config: Config) -> anyhow::Result<()> {
    match args.command {
        None => crate::bench::run(args.http, config).await,
        Some(BenchCommand::Http(http)) => crate::bench::run(http, config).await,
        Some(BenchCommand::Cutoff(cutoff)) => crate::bench_cutoff::run(cutoff, config).await,
        Some(BenchCommand::Rebuild(rebuild)) => crate::bench_rebuild::run(rebuild, config).await,
        Some(BenchCommand::Risk(risk)) => crate::bench_risk::run(risk).await,
    }
}
