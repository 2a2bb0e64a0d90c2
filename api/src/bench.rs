//! `caisse bench`: placeholder replaced below.

#[derive(clap::Args, Debug)]
pub struct BenchArgs {}

pub async fn run(_args: BenchArgs, _config: caisse_infrastructure::Config) -> anyhow::Result<()> {
    anyhow::bail!("not yet")
}
