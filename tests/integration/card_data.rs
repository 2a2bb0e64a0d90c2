//! No PAN and no CVV in any event, log line, error or view: scans every table, the SQLite files, the logs and the responses after a run.

use std::path::Path;

use caisse_tests::{captured_logs, data, error_code, Backend, TestApp, CREATE_PAYMENT};
use regex::Regex;
use serde_json::{json, Value};

/// Card numbers the run submits (all Luhn-valid).
const ACCEPTED: &[&str] = &[
    "4970100000000006", // CB/VISA, accepted test card
    "4111111111111111", // VISA
    "5555555555554444", // MASTERCARD
    "2223000048400011", // MASTERCARD 2-series
];
const AMEX: &str = "378282246310005";
const REFUSED: &[&str] = &[
    "4970100000000014",
    "4970100000000022",
    "4970100000000030",
    "4970100000000048",
    "4970100000000055",
];
/// One digit off the accepted test card: refused by the Luhn check.
const BAD_LUHN: &str = "4970100000000007";
/// Unusual CVVs, so a leak cannot hide among ordinary numbers.
const CVV: &str = "917";
const AMEX_CVV: &str = "4917";

fn luhn(digits: &[u8]) -> bool {
    let mut sum = 0u32;
    for (index, digit) in digits.iter().rev().enumerate() {
        let mut value = u32::from(digit - b'0');
        if index % 2 == 1 {
            value *= 2;
            if value > 9 {
                value -= 9;
            }
        }
        sum += value;
    }
    sum.is_multiple_of(10)
}

/// Luhn-valid 13–19 digit numbers that start like a card (2–6) inside `text`, each with
/// the text around it: every window of every run of 13 or more digits. A run inside a
/// long hexadecimal string (ids, tokens, fingerprints, hashes, checksums) is hex noise,
/// not a number: in the raw SQLite file such strings sit right next to other columns.
fn card_number_hits(text: &str) -> Vec<(String, String)> {
    let runs = Regex::new(r"[0-9]{13,}").expect("regex");
    let bytes = text.as_bytes();
    let mut hits = Vec::new();
    for run in runs.find_iter(text) {
        let (mut start, mut end) = (run.start(), run.end());
        while start > 0 && bytes[start - 1].is_ascii_hexdigit() {
            start -= 1;
        }
        while end < bytes.len() && bytes[end].is_ascii_hexdigit() {
            end += 1;
        }
        let hex = &bytes[start..end];
        if hex.len() >= 24 && hex.iter().any(u8::is_ascii_alphabetic) {
            continue;
        }
        let context = String::from_utf8_lossy(
            &bytes[run.start().saturating_sub(40)..(run.end() + 40).min(bytes.len())],
        )
        .escape_debug()
        .to_string();
        let digits = run.as_str().as_bytes();
        for length in 13..=19.min(digits.len()) {
            for offset in 0..=digits.len() - length {
                let window = &digits[offset..offset + length];
                if (b'2'..=b'6').contains(&window[0]) && luhn(window) {
                    hits.push((
                        String::from_utf8_lossy(window).into_owned(),
                        context.clone(),
                    ));
                }
            }
        }
    }
    hits
}

/// Each PAN the run used, also when written with spaces or dashes between digits.
fn known_pan_patterns() -> Vec<(String, Regex)> {
    ACCEPTED
        .iter()
        .chain(REFUSED)
        .chain([&AMEX, &BAD_LUHN])
        .map(|pan| {
            let pattern: Vec<String> = pan.chars().map(|c| c.to_string()).collect();
            (
                pan.to_string(),
                Regex::new(&format!("(^|[^0-9]){}($|[^0-9])", pattern.join("[ -]?")))
                    .expect("regex"),
            )
        })
        .collect()
}

/// A CVV as a token of its own (not inside a longer word or number), or next to a CVV-like name.
fn cvv_patterns() -> Vec<Regex> {
    let mut patterns = Vec::new();
    for cvv in [CVV, AMEX_CVV] {
        patterns
            .push(Regex::new(&format!("(^|[^0-9A-Za-z]){cvv}($|[^0-9A-Za-z])")).expect("regex"));
    }
    patterns
}

fn cvv_label_pattern() -> Regex {
    Regex::new(&format!(
        r"(?i)(cvv|cvc|cvn|cid|security.?code)\W{{0,6}}({CVV}|{AMEX_CVV})\b"
    ))
    .expect("regex")
}

/// Every finding in one text, described with where it was.
fn scan(place: &str, text: &str, findings: &mut Vec<String>) {
    for (hit, context) in card_number_hits(text) {
        findings.push(format!(
            "{place}: Luhn-valid card number {hit} in \"{context}\""
        ));
    }
    for (pan, pattern) in known_pan_patterns() {
        if pattern.is_match(text) {
            findings.push(format!("{place}: submitted card number {pan}"));
        }
    }
    if cvv_label_pattern().is_match(text) {
        findings.push(format!("{place}: a CVV next to its label"));
    }
}

/// Standard or URL-safe base64, padding optional; `None` if it is not base64.
fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let mut bits = 0u32;
    let mut count = 0;
    let mut out = Vec::new();
    for c in text.trim_end_matches('=').bytes() {
        let value = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        };
        bits = (bits << 6) | u32::from(value);
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
        }
    }
    Some(out)
}

#[test]
fn the_card_number_scanner_finds_pans_in_any_text_and_ignores_identifiers_and_amounts() {
    let mut findings = Vec::new();
    scan("json", r#"{"card":"4970100000000006"}"#, &mut findings);
    assert!(
        findings
            .iter()
            .any(|f| f.contains("Luhn-valid card number 4970100000000006")),
        "{findings:?}"
    );
    findings.clear();
    scan("log", "pan=4111 1111 1111 1111 declined", &mut findings);
    assert_eq!(findings.len(), 1, "{findings:?}");
    findings.clear();
    scan("glued", "ref123782822463100059", &mut findings);
    assert!(
        findings.iter().any(|f| f.contains("378282246310005")),
        "a PAN glued to other digits: {findings:?}"
    );
    findings.clear();
    scan("log", "card { cvv: \"917\" }", &mut findings);
    assert_eq!(findings.len(), 1, "{findings:?}");

    findings.clear();
    scan(
        "ids",
        "pay_0195f3a2b7c87d1e9a0b1c2d3e4f5a6b tok_8c1f0e2d3b4a59687766554433221100 \
         amount_milli=49900 position=17 2026-03-02T10:00:00.000000Z 497010******0006 SIM000123456789",
        &mut findings,
    );
    assert!(findings.is_empty(), "{findings:?}");
    assert!(
        card_number_hits("x4970100000000006y").len() == 1,
        "a PAN inside a short word is still found"
    );
    assert!(!card_number_hits("4970100000000007")
        .iter()
        .any(|(hit, _)| hit == "4970100000000007"));
    assert_eq!(
        card_number_hits("abc4970100000000006").len(),
        1,
        "a PAN after a few hex letters is still found"
    );
    // A hash glued to the next column in the raw file: hex noise.
    assert!(card_number_hits("example.comab5696946848355cdef0123456789abcdef0123key_").is_empty());
    assert_eq!(
        base64_decode("NDk3MDEwMDAwMDAwMDAwNg==").as_deref(),
        Some(b"4970100000000006".as_slice())
    );
}

/// Everything one run sent back to the client.
struct Run {
    responses: Vec<Value>,
}

impl Run {
    async fn send(&mut self, app: &TestApp, query: &str, variables: Value) -> Value {
        let response = app.graphql(query, variables).await;
        self.responses.push(response.clone());
        response
    }

    async fn create(
        &mut self,
        app: &TestApp,
        number: &str,
        cvv: Option<&str>,
        reference: &str,
    ) -> Value {
        let input = json!({
            "amount": "42.50",
            "currency": "EUR",
            "orderReference": reference,
            "channel": if cvv.is_some() { "ECOMMERCE" } else { "MOTO" },
            "card": { "number": number, "expiryMonth": 11, "expiryYear": 2031, "cvv": cvv, "holderName": "Jeanne Test" },
            "buyerEmail": "buyer@example.com",
        });
        self.send(app, CREATE_PAYMENT, json!({ "input": input }))
            .await
    }
}

async fn card_numbers_and_cvvs_never_reach_storage_logs_errors_or_views(app: TestApp) {
    let mut run = Run {
        responses: Vec::new(),
    };
    let mut accepted = Vec::new();
    for (index, number) in ACCEPTED.iter().enumerate() {
        let response = run
            .create(&app, number, Some(CVV), &format!("CARD-OK-{index}"))
            .await;
        let payment = &data(&response)["createPayment"];
        assert_eq!(payment["status"], "AUTHORISED", "{number}: {payment}");
        assert_eq!(payment["card"]["lastFour"], &number[number.len() - 4..]);
        accepted.push(payment["id"].as_str().unwrap().to_string());
    }
    let response = run.create(&app, AMEX, Some(AMEX_CVV), "CARD-AMEX").await;
    assert_eq!(data(&response)["createPayment"]["card"]["brand"], "AMEX");
    let response = run.create(&app, ACCEPTED[0], None, "CARD-MOTO").await;
    assert_eq!(data(&response)["createPayment"]["status"], "AUTHORISED");
    let mut refused = Vec::new();
    for (index, number) in REFUSED.iter().enumerate() {
        let response = run
            .create(&app, number, Some(CVV), &format!("CARD-KO-{index}"))
            .await;
        let payment = &data(&response)["createPayment"];
        assert_eq!(payment["status"], "REFUSED", "{number}: {payment}");
        refused.push(payment["id"].as_str().unwrap().to_string());
    }

    let response = run
        .send(
            &app,
            "mutation($id: ID!) { cancelPayment(id: $id) { id status } }",
            json!({ "id": accepted[3] }),
        )
        .await;
    assert_eq!(data(&response)["cancelPayment"]["status"], "CANCELLED");
    let response = run
        .send(
            &app,
            "mutation($shop: ID!) { runRemittance(shopId: $shop) { id paymentCount } }",
            json!({ "shop": app.shop_id }),
        )
        .await;
    assert!(
        data(&response)["runRemittance"][0]["paymentCount"]
            .as_i64()
            .unwrap()
            >= 5
    );
    let refund = "mutation($id: ID!, $amount: String!) { refundPayment(id: $id, amount: $amount) { id refundedAmount } }";
    data(
        &run.send(
            &app,
            refund,
            json!({ "id": accepted[0], "amount": "10.00" }),
        )
        .await,
    );
    data(
        &run.send(
            &app,
            refund,
            json!({ "id": accepted[1], "amount": "42.50" }),
        )
        .await,
    );
    let duplicate = "mutation($id: ID!, $amount: String!, $ref: String!) {
      duplicatePayment(id: $id, amount: $amount, orderReference: $ref) { id status card { lastFour } }
    }";
    let response = run
        .send(
            &app,
            duplicate,
            json!({ "id": accepted[2], "amount": "5.00", "ref": "CARD-DUP-1" }),
        )
        .await;
    assert_eq!(data(&response)["duplicatePayment"]["status"], "AUTHORISED");
    let response = run
        .send(
            &app,
            duplicate,
            json!({ "id": refused[0], "amount": "5.00", "ref": "CARD-DUP-2" }),
        )
        .await;
    assert_eq!(data(&response)["duplicatePayment"]["status"], "REFUSED");

    // Rejected input that carries a card number: the error must not echo it.
    let response = run.create(&app, BAD_LUHN, Some(CVV), "CARD-LUHN").await;
    assert_eq!(error_code(&response), "CARD_LUHN_CHECK_FAILED");
    let response = run.create(&app, ACCEPTED[1], Some("91"), "CARD-CVV").await;
    assert_eq!(error_code(&response), "INVALID_CVV");
    let mut input = json!({
        "amount": "42.50", "currency": "EUR", "orderReference": "CARD-HOLDER", "channel": "ECOMMERCE",
        "card": { "number": ACCEPTED[2], "expiryMonth": 11, "expiryYear": 2031, "cvv": CVV, "holderName": ACCEPTED[2] },
    });
    let response = run
        .send(&app, CREATE_PAYMENT, json!({ "input": input.clone() }))
        .await;
    assert_eq!(error_code(&response), "INVALID_HOLDER_NAME");
    input["card"]["holderName"] = json!("Jeanne Test");
    input["currency"] = json!("ZZZ");
    let response = run
        .send(&app, CREATE_PAYMENT, json!({ "input": input.clone() }))
        .await;
    assert!(response.get("errors").is_some(), "{response}");
    input["currency"] = json!("EUR");
    input["card"]["expiryYear"] = json!(2020);
    let response = run
        .send(&app, CREATE_PAYMENT, json!({ "input": input.clone() }))
        .await;
    assert!(response.get("errors").is_some(), "{response}");
    input["card"]["expiryYear"] = json!(2031);
    input["amount"] = json!(42.5);
    let response = run
        .send(&app, CREATE_PAYMENT, json!({ "input": input.clone() }))
        .await;
    assert!(
        response.get("errors").is_some(),
        "an amount as a JSON number is refused: {response}"
    );

    // Reads of the views and of the log.
    run.send(&app, "{ payments(first: 50) { edges { node { id status card { bin lastFour } history { data } } } } }", json!({}))
        .await;
    let log = run
        .send(
            &app,
            "{ events(first: 500) { events { aggregateId type data } } }",
            json!({}),
        )
        .await;
    assert!(
        data(&log)["events"]["events"].as_array().unwrap().len() >= 20,
        "{log}"
    );

    let mut findings = Vec::new();

    // (a) Every column of every table.
    let db = app.state.db();
    let columns: Vec<(String, String)> = match app.backend {
        Backend::Postgres => db
            .fetch_all(
                "SELECT table_name::text AS t, column_name::text AS c FROM information_schema.columns
                  WHERE table_schema = 'public' ORDER BY 1, 2",
                &[],
            )
            .await
            .expect("list columns")
            .iter()
            .map(|row| (row.text("t"), row.text("c")))
            .collect(),
        Backend::Sqlite => {
            let mut columns = Vec::new();
            let tables = db.fetch_all("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name", &[]).await.expect("tables");
            for table in tables {
                let table = table.text("name");
                for column in db.fetch_all("SELECT name FROM pragma_table_info($1)", &[table.as_str().into()]).await.expect("columns") {
                    columns.push((table.clone(), column.text("name")));
                }
            }
            columns
        }
    };
    let tables: Vec<&str> = columns.iter().map(|(table, _)| table.as_str()).collect();
    for table in [
        "events",
        "card_vault",
        "payments_view",
        "cash_movements",
        "remittances_view",
    ] {
        assert!(
            tables.contains(&table),
            "table {table} not scanned: {tables:?}"
        );
    }
    for (table, column) in &columns {
        let name = column.to_lowercase();
        assert!(
            !["pan", "cvv", "cvc", "card_number"]
                .iter()
                .any(|bad| name == *bad || name.ends_with(&format!("_{bad}"))),
            "{table}.{column} is a column for card data that must not be stored"
        );
        let sql = match app.backend {
            Backend::Postgres => format!("SELECT \"{column}\"::text AS v FROM \"{table}\""),
            Backend::Sqlite => format!(
                "SELECT CASE WHEN typeof(\"{column}\") = 'blob' THEN hex(\"{column}\") ELSE CAST(\"{column}\" AS TEXT) END AS v FROM \"{table}\""
            ),
        };
        let values = db
            .fetch_all(&sql, &[])
            .await
            .unwrap_or_else(|error| panic!("{sql}: {error}"));
        let text: Vec<String> = values.iter().filter_map(|row| row.opt_text("v")).collect();
        scan(
            &format!("table {table}.{column}"),
            &text.join("\n"),
            &mut findings,
        );
    }

    // The vault keeps ciphertext: decoded, it still holds no card number.
    let vault = db
        .fetch_all("SELECT token, nonce, ciphertext FROM card_vault", &[])
        .await
        .expect("vault rows");
    assert!(
        vault.len() >= ACCEPTED.len() + REFUSED.len(),
        "every authorised card went through the vault"
    );
    for row in &vault {
        for column in ["nonce", "ciphertext"] {
            let text = row.text(column);
            let bytes = base64_decode(&text)
                .unwrap_or_else(|| panic!("card_vault.{column} is not base64: {text}"));
            let decoded = String::from_utf8_lossy(&bytes);
            scan(
                &format!("card_vault.{column} decoded"),
                &decoded,
                &mut findings,
            );
            for pan in ACCEPTED.iter().chain(REFUSED).chain([&AMEX]) {
                if bytes
                    .windows(pan.len())
                    .any(|window| window == pan.as_bytes())
                {
                    findings.push(format!(
                        "card_vault.{column} of {} holds {pan} in clear",
                        row.text("token")
                    ));
                }
            }
        }
    }

    // The SQLite files themselves, free pages and write-ahead log included.
    if app.backend == Backend::Sqlite {
        let mut files = Vec::new();
        collect_files(app.data_dir.path(), &mut files);
        assert!(
            files.iter().any(|file| file.ends_with("caisse.db")),
            "{files:?}"
        );
        for file in files {
            let bytes =
                std::fs::read(&file).unwrap_or_else(|error| panic!("{}: {error}", file.display()));
            scan(
                &format!("file {}", file.display()),
                &String::from_utf8_lossy(&bytes),
                &mut findings,
            );
        }
    }

    // (b) The logs of this test process.
    let logs = captured_logs();
    assert!(!logs.is_empty(), "the server logs through tracing");
    scan("captured logs", &logs, &mut findings);

    // Errors and views as the client saw them.
    for response in &run.responses {
        scan("a GraphQL response", &response.to_string(), &mut findings);
        for pattern in cvv_patterns() {
            if pattern.is_match(&response.to_string()) {
                findings.push(format!("a GraphQL response holds a CVV: {response}"));
            }
        }
    }

    // (c) The CVV is nowhere in the events, not even as a lone token.
    let sql = match app.backend {
        Backend::Postgres => "SELECT aggregate_id, sequence, payload::text AS payload, metadata::text AS metadata FROM events",
        Backend::Sqlite => "SELECT aggregate_id, sequence, payload, metadata FROM events",
    };
    let events = db.fetch_all(sql, &[]).await.expect("events");
    assert!(events.len() >= 20);
    for event in &events {
        for column in ["payload", "metadata"] {
            let text = event.text(column);
            for pattern in cvv_patterns() {
                if pattern.is_match(&text) {
                    findings.push(format!(
                        "events.{column} of {} #{} holds a CVV: {text}",
                        event.text("aggregate_id"),
                        event.int("sequence")
                    ));
                }
            }
            let value: Value = serde_json::from_str(&text).expect("events hold JSON");
            cvv_in_json(
                &value,
                &format!("events.{column} of {}", event.text("aggregate_id")),
                &mut findings,
            );
        }
    }

    findings.sort();
    findings.dedup();
    assert!(
        findings.is_empty(),
        "card data found:\n{}",
        findings.join("\n")
    );
}

caisse_tests::both_backends!(
    card_numbers_and_cvvs_never_reach_storage_logs_errors_or_views,
    super::card_numbers_and_cvvs_never_reach_storage_logs_errors_or_views
);

fn collect_files(dir: &Path, files: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read data dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            collect_files(&path, files);
        } else {
            files.push(path);
        }
    }
}

/// Keys named like a CVV, or a CVV as a whole JSON value.
fn cvv_in_json(value: &Value, place: &str, findings: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                let key_lower = key.to_lowercase();
                if [
                    "cvv",
                    "cvc",
                    "cvv2",
                    "cvc2",
                    "securitycode",
                    "security_code",
                ]
                .contains(&key_lower.as_str())
                {
                    findings.push(format!("{place}: a `{key}` field"));
                }
                cvv_in_json(inner, place, findings);
            }
        }
        Value::Array(items) => items
            .iter()
            .for_each(|item| cvv_in_json(item, place, findings)),
        Value::String(text) if text == CVV || text == AMEX_CVV => {
            findings.push(format!("{place}: the CVV as a value"))
        }
        Value::Number(number) if number.to_string() == CVV || number.to_string() == AMEX_CVV => {
            findings.push(format!("{place}: the CVV as a number"))
        }
        _ => {}
    }
}
