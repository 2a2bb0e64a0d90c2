//! The `caisse` binary: parses the command line and hands over to `caisse_api::cli`.

fn main() -> anyhow::Result<()> {
    caisse_api::cli::main()
}
