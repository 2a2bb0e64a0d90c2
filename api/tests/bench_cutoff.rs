//! `caisse bench cutoff` and `caisse bench rebuild` keep working: a small run of
//! each on SQLite must capture every payment and rebuild every projection. Not a
//! timed test: the figures printed are not checked.

use std::process::{Command, Output};

fn caisse(args: &[&str]) -> Output {
    let data_dir = tempfile::tempdir().unwrap();
    Command::new(env!("CARGO_BIN_EXE_caisse"))
        .args(args)
        // The bench makes its own database; nothing of the caller's may leak in.
        .env("CAISSE_DATA_DIR", data_dir.path())
        .env_remove("CAISSE_DATABASE_URL")
        .env_remove("CAISSE_CONFIG")
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("caisse runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn the_cut_off_bench_captures_every_payment() {
    let output = caisse(&[
        "bench",
        "cutoff",
        "--backend",
        "sqlite",
        "--payments",
        "200",
    ]);
    let stdout = text(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        text(&output.stderr)
    );
    assert!(
        stdout.contains("sqlite: 200 of 200 payments captured"),
        "{stdout}"
    );
    let row = stdout
        .lines()
        .find(|line| line.starts_with("sqlite ") && line.split_whitespace().nth(1) == Some("200"))
        .unwrap_or_else(|| panic!("no figures row in {stdout}"));
    // The last two columns: remittances and captured payments.
    let columns: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(columns[columns.len() - 2..], ["1", "200"], "{row}");
}

#[test]
fn the_rebuild_bench_rebuilds_every_projection() {
    let output = caisse(&["bench", "rebuild", "--backend", "sqlite", "--events", "230"]);
    let stdout = text(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        text(&output.stderr)
    );
    for projection in ["payments", "remittances", "accounts", "journal", "all"] {
        assert!(
            stdout.lines().any(|line| line.starts_with("sqlite ")
                && line.split_whitespace().nth(4) == Some(projection)),
            "no row for {projection} in {stdout}"
        );
    }
}

#[test]
fn bench_without_a_subcommand_is_still_the_http_bench() {
    // Options without a subcommand are `bench http`'s; a bad one is refused by it.
    for args in [
        &["bench", "--backend", "sqlite", "--clients", "0"][..],
        &["bench", "http", "--backend", "sqlite", "--clients", "0"][..],
    ] {
        let output = caisse(args);
        assert!(!output.status.success());
        assert!(
            text(&output.stderr).contains("--clients needs one or more positive numbers"),
            "{args:?}: {}",
            text(&output.stderr)
        );
    }
}
