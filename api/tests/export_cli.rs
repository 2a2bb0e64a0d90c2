//! `caisse export` as an operator runs it on the embedded SQLite default: payments
//! made through a served binary, then exported as CSV and .xlsx with filters.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn caisse(data_dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_caisse"))
        .args(args)
        .env("CAISSE_DATA_DIR", data_dir)
        .env_remove("CAISSE_DATABASE_URL")
        .env_remove("CAISSE_CONFIG")
        .env("RUST_BACKTRACE", "0")
        .output()
        .expect("caisse runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Serves the data directory on a free port, creates the payments with the test
/// key, and stops the server with SIGTERM.
fn create_payments(data_dir: &Path, test_key: &str, inputs: &[&str]) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = Command::new(env!("CARGO_BIN_EXE_caisse"))
        .arg("serve")
        .env("CAISSE_DATA_DIR", data_dir)
        .env("CAISSE_LISTEN", format!("127.0.0.1:{port}"))
        .env_remove("CAISSE_DATABASE_URL")
        .env_remove("CAISSE_CONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let client = reqwest::Client::new();
        let started = Instant::now();
        while client
            .get(format!("http://127.0.0.1:{port}/healthz"))
            .send()
            .await
            .is_err()
        {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "server did not start"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        for input in inputs {
            let query = format!("mutation {{ createPayment(input: {input}) {{ id status }} }}");
            let response: serde_json::Value = client
                .post(format!("http://127.0.0.1:{port}/graphql"))
                .bearer_auth(test_key)
                .json(&serde_json::json!({ "query": query }))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            assert!(
                response["data"]["createPayment"]["id"].is_string(),
                "{response}"
            );
        }
    });
    let pid = server.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let started = Instant::now();
    while server.try_wait().unwrap().is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "server ignored SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The lines of a CSV export after its BOM.
fn csv_lines(path: &Path) -> Vec<String> {
    let content = std::fs::read_to_string(path).expect("CSV is UTF-8");
    let body = content.strip_prefix('\u{feff}').expect("a UTF-8 BOM");
    assert!(body.ends_with("\r\n"));
    body.split("\r\n")
        .filter(|line| !line.is_empty())
        .map(str::to_string)
        .collect()
}

#[test]
fn an_operator_exports_payments_as_csv_and_xlsx_with_the_binary() {
    let data_dir = tempfile::tempdir().unwrap();
    let init = caisse(data_dir.path(), &["init", "--json"]);
    assert!(init.status.success(), "{}", text(&init.stderr));
    let output: serde_json::Value = serde_json::from_slice(&init.stdout).unwrap();
    let shop = output["shop_id"].as_str().unwrap().to_string();
    let test_key = output["test_api_key"].as_str().unwrap().to_string();
    create_payments(
        data_dir.path(),
        &test_key,
        &[
            r#"{amount: "12.30", currency: "EUR", orderReference: "CLI-1, with a comma", channel: MOTO, card: {number: "4970100000000006", expiryMonth: 12, expiryYear: 2031}}"#,
            r#"{amount: "1500", currency: "JPY", orderReference: "CLI-2", channel: ECOMMERCE, card: {number: "4970100000000006", expiryMonth: 1, expiryYear: 2032, cvv: "123"}}"#,
            r#"{amount: "7.25", currency: "EUR", orderReference: "CLI-3", channel: ECOMMERCE, card: {number: "4970100000000048", expiryMonth: 12, expiryYear: 2031, cvv: "123"}}"#,
        ],
    );
    let out = |name: &str| data_dir.path().join(name);
    let path_text = |name: &str| out(name).display().to_string();

    // Everything, in English.
    let all = caisse(
        data_dir.path(),
        &[
            "export",
            "--format",
            "csv",
            "--shop",
            &shop,
            "--mode",
            "test",
            "--output",
            &path_text("all.csv"),
        ],
    );
    assert!(all.status.success(), "{}", text(&all.stderr));
    assert!(
        text(&all.stdout).contains("exported 3 payments"),
        "{}",
        text(&all.stdout)
    );
    let lines = csv_lines(&out("all.csv"));
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert!(lines[0].starts_with("Payment ID,Created at (UTC),Order reference,Shop,"));
    // Newest first, as the `payments` query orders them.
    assert!(lines[1].contains(",CLI-3,") && lines[1].contains(",REFUSED,"));
    assert!(lines[2].contains(",CLI-2,") && lines[2].contains(",1500,1500,0,0,"));
    assert!(
        lines[3].contains(",\"CLI-1, with a comma\",") && lines[3].contains(",12.30,12.30,"),
        "{}",
        lines[3]
    );

    // Filters as flags, in French.
    let filtered = caisse(
        data_dir.path(),
        &[
            "export",
            "--format",
            "csv",
            "--lang",
            "fr",
            "--shop",
            &shop,
            "--mode",
            "test",
            "--status",
            "AUTHORISED,CAPTURED",
            "--currency",
            "EUR",
            "--output",
            &path_text("fr.csv"),
        ],
    );
    assert!(filtered.status.success(), "{}", text(&filtered.stderr));
    let lines = csv_lines(&out("fr.csv"));
    assert_eq!(lines.len(), 2, "{lines:?}");
    assert!(lines[0].starts_with("Identifiant du paiement;Créé le (UTC);"));
    assert!(lines[1].contains(";CLI-1, with a comma;") && lines[1].contains(";12,30;12,30;"));

    // .xlsx: a zip package (read back cell by cell by the integration tests).
    let xlsx = caisse(
        data_dir.path(),
        &[
            "export",
            "--format",
            "xlsx",
            "--shop",
            &shop,
            "--mode",
            "test",
            "--output",
            &path_text("all.xlsx"),
        ],
    );
    assert!(xlsx.status.success(), "{}", text(&xlsx.stderr));
    assert!(text(&xlsx.stdout).contains("exported 3 payments"));
    let bytes = std::fs::read(out("all.xlsx")).unwrap();
    assert!(bytes.starts_with(b"PK\x03\x04"), "an .xlsx is a zip file");

    // Live mode has none of the test payments.
    let live = caisse(
        data_dir.path(),
        &[
            "export",
            "--format",
            "csv",
            "--shop",
            &shop,
            "--mode",
            "live",
            "--output",
            &path_text("live.csv"),
        ],
    );
    assert!(live.status.success(), "{}", text(&live.stderr));
    assert_eq!(csv_lines(&out("live.csv")).len(), 1, "the header only");

    // A bad flag is named, an unknown shop refused, and neither writes a file.
    let bad = caisse(
        data_dir.path(),
        &[
            "export",
            "--format",
            "csv",
            "--shop",
            &shop,
            "--mode",
            "test",
            "--created-from",
            "yesterday",
            "--output",
            &path_text("bad.csv"),
        ],
    );
    assert!(!bad.status.success());
    assert!(
        text(&bad.stderr).contains("--created-from"),
        "{}",
        text(&bad.stderr)
    );
    let unknown_shop = caisse(
        data_dir.path(),
        &[
            "export",
            "--format",
            "xlsx",
            "--shop",
            "shop_0190a4b2-6c1e-7c4e-9a51-1f5f2b9d3e10",
            "--mode",
            "test",
            "--output",
            &path_text("other.xlsx"),
        ],
    );
    assert!(!unknown_shop.status.success());
    assert!(
        text(&unknown_shop.stderr).contains("no shop"),
        "{}",
        text(&unknown_shop.stderr)
    );
    assert!(!out("bad.csv").exists() && !out("other.xlsx").exists());
}
