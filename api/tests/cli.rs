//! The `caisse` binary as an operator runs it: init (twice), migrate, serve,
//! projections rebuild and audit verify, on the embedded SQLite default.

use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn caisse(data_dir: &std::path::Path, args: &[&str]) -> Output {
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

#[test]
fn an_operator_can_init_serve_rebuild_and_audit_with_the_binary() {
    let data_dir = tempfile::tempdir().unwrap();

    let migrate = caisse(data_dir.path(), &["migrate"]);
    assert!(migrate.status.success(), "{}", text(&migrate.stderr));
    assert!(data_dir.path().join("caisse.db").exists());

    let init = caisse(data_dir.path(), &["init", "--json"]);
    assert!(init.status.success(), "{}", text(&init.stderr));
    let output: serde_json::Value =
        serde_json::from_slice(&init.stdout).expect("stdout is only JSON");
    for key in [
        "merchant_id",
        "shop_id",
        "test_api_key",
        "live_api_key",
        "admin_email",
        "admin_password",
    ] {
        assert!(
            output[key].as_str().is_some_and(|v| !v.is_empty()),
            "{key} missing in {output}"
        );
    }
    let test_key = output["test_api_key"].as_str().unwrap().to_string();
    assert!(test_key.starts_with("sk_test_"));
    assert!(output["live_api_key"]
        .as_str()
        .unwrap()
        .starts_with("sk_live_"));
    assert!(
        data_dir.path().join("vault.key").exists(),
        "a development vault key is generated"
    );

    // Twice: refused, with the reason, and nothing created.
    let again = caisse(data_dir.path(), &["init", "--json"]);
    assert!(!again.status.success());
    assert!(
        text(&again.stderr).contains("a merchant already exists"),
        "{}",
        text(&again.stderr)
    );
    assert!(again.stdout.is_empty());
    // Another merchant on purpose, with the e-mail already taken: refused too.
    let taken = caisse(data_dir.path(), &["init", "--additional", "--json"]);
    assert!(!taken.status.success());
    assert!(
        text(&taken.stderr).contains("already exists"),
        "{}",
        text(&taken.stderr)
    );

    // The API key is stored hashed: it is nowhere in the database file.
    let database = std::fs::read(data_dir.path().join("caisse.db")).unwrap();
    let wal = std::fs::read(data_dir.path().join("caisse.db-wal")).unwrap_or_default();
    for bytes in [&database, &wal] {
        assert!(!bytes
            .windows(test_key.len())
            .any(|w| w == test_key.as_bytes()));
    }

    // serve on a free port, answer /healthz and a GraphQL call, stop on SIGTERM.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = Command::new(env!("CARGO_BIN_EXE_caisse"))
        .arg("serve")
        .env("CAISSE_DATA_DIR", data_dir.path())
        .env("CAISSE_LISTEN", format!("127.0.0.1:{port}"))
        .env_remove("CAISSE_DATABASE_URL")
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
        loop {
            if let Ok(response) = client.get(format!("http://127.0.0.1:{port}/healthz")).send().await {
                assert!(response.status().is_success());
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(30), "server did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let response: serde_json::Value = client
            .post(format!("http://127.0.0.1:{port}/graphql"))
            .bearer_auth(&test_key)
            .json(&serde_json::json!({"query": "mutation { createPayment(input: {amount: \"12.30\", currency: \"EUR\", orderReference: \"CLI-1\", channel: MOTO, card: {number: \"4970100000000006\", expiryMonth: 12, expiryYear: 2031}}) { id status amount } }"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(response["data"]["createPayment"]["status"], "AUTHORISED", "{response}");
        assert_eq!(response["data"]["createPayment"]["amount"], "12.30");
    });
    let pid = server.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    let started = Instant::now();
    let status = loop {
        if let Some(status) = server.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "server ignored SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "graceful shutdown exits 0: {status:?}");

    let rebuild = caisse(data_dir.path(), &["projections", "rebuild", "all"]);
    assert!(rebuild.status.success(), "{}", text(&rebuild.stderr));
    assert!(
        text(&rebuild.stdout).contains("rebuilt payments"),
        "{}",
        text(&rebuild.stdout)
    );
    let unknown = caisse(data_dir.path(), &["projections", "rebuild", "nonsense"]);
    assert!(!unknown.status.success());
    assert!(text(&unknown.stderr).contains("unknown projection"));

    let audit = caisse(data_dir.path(), &["audit", "verify"]);
    assert!(
        audit.status.success(),
        "{}{}",
        text(&audit.stdout),
        text(&audit.stderr)
    );
    assert!(
        text(&audit.stdout).contains("audit: no findings"),
        "{}",
        text(&audit.stdout)
    );
}
