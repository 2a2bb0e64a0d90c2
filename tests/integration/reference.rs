//! The risk reference tables loaded at run time (`caisse reference load`): a
//! running server swaps a new table in within its refresh interval, without
//! restart; a file that does not load is refused with its line and field, and
//! nothing is written.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use caisse_api::cli::{reference_load, reference_show};
use caisse_application::reference::ReferenceData;
use caisse_infrastructure::reference_store::{latest_versions, SHIPPED_BINS, SHIPPED_IP_COUNTRIES};
use caisse_tests::{both_backends, SecondServer, TestApp};

/// A server on the test app's database that looks for new tables every 50 ms
/// (the test app keeps the default 5 s).
async fn quick_refresh_server(app: &TestApp) -> SecondServer {
    app.second_server(|config| config.reference.refresh_interval_ms = 50)
        .await
}

fn write_file(app: &TestApp, name: &str, content: &str) -> PathBuf {
    let path = app.data_dir.path().join(name);
    std::fs::write(&path, content).expect("write the table file");
    path
}

async fn stored_tables(app: &TestApp) -> i64 {
    app.state
        .db()
        .fetch_optional("SELECT COUNT(*) AS n FROM reference_tables", &[])
        .await
        .unwrap()
        .unwrap()
        .int("n")
}

/// Waits (at most 5 s) until `server` holds tables that satisfy `ready`.
async fn wait_for(server: &SecondServer, ready: impl Fn(&ReferenceData) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !ready(&server.state.reference.current()) {
        assert!(
            Instant::now() < deadline,
            "the tables were not swapped within 5 s: {:?}",
            server.state.reference.current()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn bin_country(data: &ReferenceData, pan: &str) -> Option<String> {
    data.bins.lookup(pan).map(|range| range.country.to_string())
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap()
}

/// The shipped BIN table with BIN 497010 (the accepted test card) issued in Belgium.
fn belgian_bins() -> String {
    let content = SHIPPED_BINS.replace(
        "497010,497010,CB,CREDIT,FR,false,false",
        "497010,497010,CB,CREDIT,BE,false,false",
    );
    assert_ne!(content, SHIPPED_BINS);
    content
}

async fn a_loaded_bin_table_is_swapped_in_without_restart(app: TestApp) {
    let server = quick_refresh_server(&app).await;
    for state in [&app.state, &server.state] {
        let current = state.reference.current();
        assert_eq!(current.bins_version, "shipped");
        assert_eq!(current.ip_countries_version, "shipped");
        assert_eq!(
            bin_country(&current, "4970100000000006").as_deref(),
            Some("FR")
        );
    }

    let path = write_file(&app, "bins.csv", &belgian_bins());
    let output = reference_load(app.state.db(), Some(&path), None, "cli:test")
        .await
        .expect("a valid table loads");
    assert!(
        output.starts_with("BIN table loaded: version refdata_")
            && output.contains(", 8 ranges, sha256 "),
        "{output}"
    );
    assert_eq!(output.lines().count(), 1, "{output}");

    wait_for(&server, |data| {
        bin_country(data, "4970100000000006").as_deref() == Some("BE")
    })
    .await;
    let current = server.state.reference.current();
    let version = current.bins_version.clone();
    assert!(version.starts_with("refdata_"), "{version}");
    assert!(output.contains(&version), "{output}");
    assert_eq!(current.ip_countries_version, "shipped");
    assert!(
        current
            .bins
            .lookup("4970109912345678")
            .unwrap()
            .virtual_card
    );
    assert!(caisse_tests::captured_logs().contains(&format!("version={version}")));

    let show = reference_show(app.state.db()).await.unwrap();
    let lines: Vec<&str> = show.lines().collect();
    assert_eq!(lines.len(), 2, "{show}");
    assert!(lines[0].starts_with("BINS"), "{show}");
    assert!(
        lines[0].contains(&format!("version {version}  8 ranges  loaded ")),
        "{show}"
    );
    assert!(lines[0].contains(" by cli:test "), "{show}");
    assert!(lines[1].starts_with("IP_COUNTRIES"), "{show}");
    assert!(
        lines[1].contains("version shipped  5 ranges  built into the binary"),
        "{show}"
    );
    assert_eq!(stored_tables(&app).await, 1);
}

async fn a_malformed_table_is_refused_with_its_line_and_field(app: TestApp) {
    let good = write_file(&app, "bins.csv", &belgian_bins());
    reference_load(app.state.db(), Some(&good), None, "cli:test")
        .await
        .unwrap();
    let versions = latest_versions(app.state.db()).await.unwrap();
    assert!(versions.0.is_some() && versions.1.is_none(), "{versions:?}");
    let before = reference_show(app.state.db()).await.unwrap();
    assert_eq!(stored_tables(&app).await, 1);

    let bad = write_file(
        &app,
        "bad-bins.csv",
        "low,high,brand,product,country,virtual,systematic_authorisation\n\
         497010,497010,CB,CREDIT,DE,false,false\n\
         411111,411111,VISA,CREDIT,USA,false,false\n",
    );
    // With a valid IP table alongside: neither is written.
    let ips = write_file(&app, "ip.csv", SHIPPED_IP_COUNTRIES);
    let error = reference_load(app.state.db(), Some(&bad), Some(&ips), "cli:test")
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.starts_with(&format!(
            "{} line 3: country: \"USA\" is not an ISO 3166-1 alpha-2 country code",
            bad.display()
        )),
        "{error}"
    );
    assert!(error.contains("nothing was loaded"), "{error}");
    assert_eq!(stored_tables(&app).await, 1);
    assert_eq!(latest_versions(app.state.db()).await.unwrap(), versions);
    assert_eq!(reference_show(app.state.db()).await.unwrap(), before);

    // A file that is not there: nothing written either.
    let missing = app.data_dir.path().join("missing.csv");
    let error = reference_load(app.state.db(), None, Some(&missing), "cli:test")
        .await
        .unwrap_err();
    assert!(format!("{error:#}").contains("missing.csv"), "{error:#}");
    assert_eq!(stored_tables(&app).await, 1);

    // Nothing to load at all.
    assert!(reference_load(app.state.db(), None, None, "cli:test")
        .await
        .is_err());
    assert_eq!(stored_tables(&app).await, 1);
}

async fn a_loaded_ip_table_is_swapped_in_without_restart(app: TestApp) {
    let server = quick_refresh_server(&app).await;
    assert_eq!(
        server
            .state
            .reference
            .current()
            .ip_countries
            .lookup(ip("203.0.113.9")),
        Some("FR")
    );
    let content = "# DB-IP lite style, no header\n\
                   203.0.113.0,203.0.113.255,be\n\
                   2001:db8::,2001:db8:0:ffff:ffff:ffff:ffff:ffff,BE\n";
    let path = write_file(&app, "ip-country.csv", content);
    let output = reference_load(app.state.db(), None, Some(&path), "cli:test")
        .await
        .unwrap();
    assert!(
        output.starts_with("IP-to-country table loaded: version refdata_")
            && output.contains(", 2 ranges, sha256 "),
        "{output}"
    );

    wait_for(&server, |data| {
        data.ip_countries.lookup(ip("203.0.113.9")) == Some("BE")
    })
    .await;
    let current = server.state.reference.current();
    assert!(current.ip_countries_version.starts_with("refdata_"));
    assert_eq!(current.ip_countries.lookup(ip("2001:db8::1")), Some("BE"));
    assert_eq!(current.ip_countries.lookup(ip("192.0.2.1")), None);
    assert_eq!(current.bins_version, "shipped");

    // A server started now reads the loaded table at start.
    let restarted = app.second_server(|_| {}).await;
    let current = restarted.state.reference.current();
    assert_eq!(current.ip_countries.lookup(ip("203.0.113.9")), Some("BE"));
    assert_eq!(
        current.ip_countries_version,
        server.state.reference.current().ip_countries_version
    );
}

both_backends!(
    bin_table_swapped_without_restart,
    super::a_loaded_bin_table_is_swapped_in_without_restart
);
both_backends!(
    malformed_table_refused,
    super::a_malformed_table_is_refused_with_its_line_and_field
);
both_backends!(
    ip_table_swapped_without_restart,
    super::a_loaded_ip_table_is_swapped_in_without_restart
);

/// The risk controls of a running server read the swapped table at once: the
/// accepted test card, now issued in Belgium, no longer agrees with its French
/// buyer IP, and the decision names the table version that ruled.
async fn a_loaded_table_rules_the_next_payment(app: TestApp) {
    let server = quick_refresh_server(&app).await;
    let configure = app
        .graphql(
            "mutation($shop: ID!) { configureRiskControl(input: {shopId: $shop, control: COUNTRY_CONSISTENCY, mode: BLOCKING}) { shopId } }",
            serde_json::json!({ "shop": app.shop_id }),
        )
        .await;
    caisse_tests::data(&configure);
    let pay = |reference: &str| {
        let input = caisse_tests::payment_input("10.00", reference);
        app.client
            .post(format!("{}/graphql", server.address))
            .bearer_auth(&app.test_key)
            .json(&serde_json::json!({
                "query": "mutation($input: CreatePaymentInput!) { createPayment(input: $input) {
                    status card { issuingCountry } refusal { code } risk { binsVersion } } }",
                "variables": { "input": input }
            }))
            .send()
    };
    let before: serde_json::Value = pay("ORD-REF-BEFORE").await.unwrap().json().await.unwrap();
    let before = &caisse_tests::data(&before)["createPayment"];
    assert_eq!(before["status"], "AUTHORISED", "{before}");
    assert_eq!(before["card"]["issuingCountry"], "FR");
    assert_eq!(before["risk"]["binsVersion"], "shipped");

    let path = write_file(&app, "bins.csv", &belgian_bins());
    reference_load(app.state.db(), Some(&path), None, "cli:test")
        .await
        .expect("a valid table loads");
    wait_for(&server, |data| data.bins_version != "shipped").await;
    let version = server.state.reference.current().bins_version.clone();

    let after: serde_json::Value = pay("ORD-REF-AFTER").await.unwrap().json().await.unwrap();
    let after = &caisse_tests::data(&after)["createPayment"];
    assert_eq!(after["status"], "REFUSED", "{after}");
    assert_eq!(after["refusal"]["code"], "RISK_COUNTRY_INCONSISTENT");
    assert_eq!(after["card"]["issuingCountry"], "BE");
    assert_eq!(after["risk"]["binsVersion"], version.as_str());
}
both_backends!(
    a_loaded_table_rules_the_next_payment_on_a_running_server,
    super::a_loaded_table_rules_the_next_payment
);
