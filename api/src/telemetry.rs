//! Structured logs with `tracing`: JSON lines in production, readable text otherwise.

use tracing_subscriber::{fmt, EnvFilter};

pub fn init(json: bool) {
    let filter =
        EnvFilter::try_from_env("CAISSE_LOG").unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    // Logs go to stderr so `caisse init --json` prints clean JSON on stdout.
    let builder = fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr);
    // `try_init`: tests start several servers in one process.
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
