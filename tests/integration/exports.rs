//! Exports of payments (CM-9): CSV and .xlsx over HTTP read back (csv crate,
//! calamine) and compared row by row with the `payments(filter)` query, French
//! headers and separators, keys and isolation, bad parameters, and an export of
//! more than one keyset page.

use std::collections::HashMap;
use std::io::{Cursor, Read};

use caisse_tests::{data, next_reference_number, payment_input, TestApp};
use calamine::{Data, DataType, Reader, Xlsx};
use chrono::{DateTime, NaiveDate, NaiveDateTime};
use futures::StreamExt;
use serde_json::{json, Value};

const PAYMENTS: &str = "query($filter: PaymentFilterInput, $after: String) {
  payments(filter: $filter, first: 200, after: $after) {
    edges { node {
      id createdAt updatedAt orderReference shopId mode status channel captureMode captureDate
      currency amount authorisedAmount capturedAmount refundedAmount
      card { brand bin lastFour expiryMonth expiryYear holderName }
      buyerEmail refusal { code message } remittanceId duplicatedFrom
      threeDsStatus guarantee risk { outcome fired }
      history { type data }
    } }
    pageInfo { hasNextPage endCursor }
  }
}";

const HEADERS_EN: [&str; 30] = [
    "Payment ID",
    "Created at (UTC)",
    "Order reference",
    "Shop",
    "Mode",
    "Status",
    "Channel",
    "Capture mode",
    "Capture date",
    "Currency",
    "Amount",
    "Authorised",
    "Captured",
    "Refunded",
    "Card brand",
    "BIN",
    "Last four",
    "Expiry",
    "Cardholder",
    "Buyer e-mail",
    "Authorisation code",
    "Refusal code",
    "Refusal message",
    "Remittance ID",
    "Duplicated from",
    "Updated at (UTC)",
    "3-D Secure",
    "Payment guarantee",
    "Risk outcome",
    "Risk controls fired",
];

const HEADERS_FR: [&str; 30] = [
    "Identifiant du paiement",
    "Créé le (UTC)",
    "Référence de commande",
    "Boutique",
    "Mode",
    "Statut",
    "Canal",
    "Mode de capture",
    "Date de capture",
    "Devise",
    "Montant",
    "Autorisé",
    "Capturé",
    "Remboursé",
    "Marque de la carte",
    "BIN",
    "4 derniers chiffres",
    "Expiration",
    "Titulaire de la carte",
    "E-mail de l'acheteur",
    "Code d'autorisation",
    "Code de refus",
    "Motif du refus",
    "Identifiant de la remise",
    "Dupliqué depuis",
    "Modifié le (UTC)",
    "3-D Secure",
    "Garantie de paiement",
    "Verdict risque",
    "Contrôles déclenchés",
];

/// Columns holding amounts, instants and a date, by index.
const AMOUNT_COLUMNS: [usize; 4] = [10, 11, 12, 13];
const INSTANT_COLUMNS: [usize; 2] = [1, 25];
const DATE_COLUMN: usize = 8;
/// Free-text columns, where a leading `=` is neutralised in CSV.
const FREE_TEXT_COLUMNS: [usize; 3] = [2, 18, 19];

fn input_with(amount: &str, reference: &str, changes: Value) -> Value {
    let mut input = payment_input(amount, reference);
    for (key, value) in changes.as_object().expect("an object of changes") {
        input[key] = value.clone();
    }
    input
}

fn id_of(payment: &Value) -> String {
    payment["id"].as_str().expect("payment id").to_string()
}

async fn mutate(app: &TestApp, mutation: &str, variables: Value) -> Value {
    let response = app.graphql(mutation, variables).await;
    data(&response).clone()
}

/// GETs an export with `key` (none: no Authorization header).
async fn export(
    app: &TestApp,
    key: Option<&str>,
    format: &str,
    params: &[(&str, &str)],
) -> reqwest::Response {
    let mut request = app
        .client
        .get(format!("{}/exports/payments.{format}", app.address))
        .query(params);
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    request.send().await.expect("export request sent")
}

/// An export that must succeed, with its headers checked; returns the body.
async fn download(app: &TestApp, key: &str, format: &str, params: &[(&str, &str)]) -> Vec<u8> {
    let response = export(app, Some(key), format, params).await;
    assert_eq!(response.status(), 200, "{format} {params:?}");
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .unwrap_or_else(|| panic!("no {name} header"))
            .to_str()
            .unwrap()
            .to_string()
    };
    let content_type = header("content-type");
    match format {
        "csv" => assert_eq!(content_type, "text/csv; charset=utf-8"),
        _ => assert_eq!(
            content_type,
            "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
        ),
    }
    let disposition = header("content-disposition");
    assert!(
        disposition.starts_with("attachment; filename=\"payments-")
            && disposition.ends_with(&format!(".{format}\"")),
        "{disposition}"
    );
    response.bytes().await.expect("export body").to_vec()
}

/// Header and rows of a CSV export; checks the BOM and the line ends.
fn parse_csv(bytes: &[u8], separator: u8) -> (Vec<String>, Vec<Vec<String>>) {
    let body = bytes
        .strip_prefix("\u{feff}".as_bytes())
        .expect("CSV starts with a UTF-8 BOM");
    assert!(body.ends_with(b"\r\n"), "CRLF line ends");
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(separator)
        .has_headers(true)
        .from_reader(body);
    let header = reader
        .headers()
        .expect("CSV header")
        .iter()
        .map(str::to_string)
        .collect();
    let rows = reader
        .records()
        .map(|record| {
            record
                .expect("CSV record")
                .iter()
                .map(str::to_string)
                .collect()
        })
        .collect();
    (header, rows)
}

/// Sheet name, header and rows of an .xlsx export.
fn parse_xlsx(bytes: Vec<u8>) -> (String, Vec<String>, Vec<Vec<Data>>) {
    let mut workbook = Xlsx::new(Cursor::new(bytes)).expect("a readable .xlsx");
    let names = workbook.sheet_names();
    assert_eq!(names.len(), 1, "one sheet: {names:?}");
    let range = workbook
        .worksheet_range(&names[0])
        .expect("the sheet reads");
    let mut rows = range.rows().map(|row| row.to_vec());
    let header = rows
        .next()
        .expect("a header row")
        .iter()
        .map(|cell| cell.to_string())
        .collect();
    (names[0].clone(), header, rows.collect())
}

/// The number format of each Amount cell (column K), by row number, read from the
/// package's XML (calamine gives values, not formats).
fn amount_formats(bytes: &[u8]) -> HashMap<u32, String> {
    let mut archive = zip::ZipArchive::new(Cursor::new(bytes)).expect("an .xlsx is a zip");
    let mut read = |name: &str| {
        let mut text = String::new();
        archive
            .by_name(name)
            .unwrap_or_else(|_| panic!("{name} in the package"))
            .read_to_string(&mut text)
            .unwrap();
        text
    };
    let styles = read("xl/styles.xml");
    let sheet = read("xl/worksheets/sheet1.xml");
    let codes: HashMap<String, String> =
        regex::Regex::new(r#"<numFmt numFmtId="(\d+)" formatCode="([^"]*)"/>"#)
            .unwrap()
            .captures_iter(&styles)
            .map(|c| (c[1].to_string(), c[2].to_string()))
            .collect();
    let cell_xfs = &styles[styles.find("<cellXfs").expect("cellXfs")..];
    let cell_xfs = &cell_xfs[..cell_xfs.find("</cellXfs>").unwrap()];
    // Style index → number format id, in the order of the `<xf>` elements.
    let xfs: Vec<String> = regex::Regex::new(r#"<xf numFmtId="(\d+)""#)
        .unwrap()
        .captures_iter(cell_xfs)
        .map(|c| c[1].to_string())
        .collect();
    regex::Regex::new(r#"<c r="K(\d+)" s="(\d+)""#)
        .unwrap()
        .captures_iter(&sheet)
        .map(|c| {
            let format_id = &xfs[c[2].parse::<usize>().unwrap()];
            let code = codes.get(format_id).cloned().unwrap_or_default();
            (c[1].parse().unwrap(), code)
        })
        .collect()
}

/// Every payment `payments(filter)` returns, following the pages.
async fn payments_query(app: &TestApp, key: &str, filter: Value) -> Vec<Value> {
    let mut nodes = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let response = app
            .graphql_as(key, PAYMENTS, json!({ "filter": filter, "after": after }))
            .await;
        let connection = &data(&response)["payments"];
        for edge in connection["edges"].as_array().unwrap() {
            nodes.push(edge["node"].clone());
        }
        if connection["pageInfo"]["hasNextPage"] != true {
            return nodes;
        }
        after = connection["pageInfo"]["endCursor"]
            .as_str()
            .map(str::to_string);
    }
}

/// The authorisation code, which the `payments` query shows only in the history.
fn authorisation_code(node: &Value) -> String {
    fn find(value: &Value) -> Option<String> {
        match value {
            Value::Object(map) => map
                .get("authorisation_code")
                .and_then(Value::as_str)
                .map(str::to_string)
                .or_else(|| map.values().find_map(find)),
            Value::Array(items) => items.iter().find_map(find),
            _ => None,
        }
    }
    node["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|event| event["type"] == "PaymentAuthorised")
        .find_map(|event| find(&serde_json::from_str(event["data"].as_str().unwrap()).unwrap()))
        .unwrap_or_default()
}

/// The row the export must hold for a payment, as the query shows it (text form;
/// amounts with the decimal separator of `lang`).
fn expected_row(node: &Value, french: bool) -> Vec<String> {
    let text = |value: &Value| value.as_str().unwrap_or("").to_string();
    let amount = |name: &str| {
        let amount = text(&node[name]);
        if french {
            amount.replace('.', ",")
        } else {
            amount
        }
    };
    let card = &node["card"];
    vec![
        text(&node["id"]),
        text(&node["createdAt"]),
        text(&node["orderReference"]),
        text(&node["shopId"]),
        text(&node["mode"]),
        text(&node["status"]),
        text(&node["channel"]),
        text(&node["captureMode"]),
        text(&node["captureDate"]),
        text(&node["currency"]),
        amount("amount"),
        amount("authorisedAmount"),
        amount("capturedAmount"),
        amount("refundedAmount"),
        text(&card["brand"]),
        text(&card["bin"]),
        text(&card["lastFour"]),
        format!(
            "{:02}/{}",
            card["expiryMonth"].as_i64().unwrap(),
            card["expiryYear"].as_i64().unwrap()
        ),
        text(&card["holderName"]),
        text(&node["buyerEmail"]),
        authorisation_code(node),
        text(&node["refusal"]["code"]),
        text(&node["refusal"]["message"]),
        text(&node["remittanceId"]),
        text(&node["duplicatedFrom"]),
        text(&node["updatedAt"]),
        text(&node["threeDsStatus"]),
        text(&node["guarantee"]),
        text(&node["risk"]["outcome"]),
        node["risk"]["fired"]
            .as_array()
            .unwrap()
            .iter()
            .map(|control| control.as_str().unwrap())
            .collect::<Vec<_>>()
            .join(","),
    ]
}

/// What spreadsheets would run as a formula gets a leading `'` in CSV.
fn csv_text(column: usize, value: String) -> String {
    if FREE_TEXT_COLUMNS.contains(&column) && value.starts_with(['=', '+', '-', '@']) {
        format!("'{value}")
    } else {
        value
    }
}

fn assert_csv_matches(rows: &[Vec<String>], nodes: &[Value], french: bool) {
    assert_eq!(rows.len(), nodes.len(), "as many rows as the query returns");
    for (row, node) in rows.iter().zip(nodes) {
        let expected: Vec<String> = expected_row(node, french)
            .into_iter()
            .enumerate()
            .map(|(column, value)| csv_text(column, value))
            .collect();
        assert_eq!(row, &expected, "CSV row of {}", node["id"]);
    }
}

fn instant(text: &str) -> NaiveDateTime {
    DateTime::parse_from_rfc3339(text)
        .unwrap_or_else(|_| panic!("an instant: {text}"))
        .naive_utc()
}

fn assert_xlsx_matches(rows: &[Vec<Data>], nodes: &[Value]) {
    assert_eq!(rows.len(), nodes.len(), "as many rows as the query returns");
    for (row, node) in rows.iter().zip(nodes) {
        let expected = expected_row(node, false);
        for (column, (cell, text)) in row.iter().zip(&expected).enumerate() {
            let context = format!("column {column} of {}: {cell:?}", node["id"]);
            if AMOUNT_COLUMNS.contains(&column) {
                // A number cell, equal to the decimal amount.
                assert_eq!(
                    cell,
                    &Data::Float(text.parse::<f64>().unwrap()),
                    "{context}"
                );
            } else if INSTANT_COLUMNS.contains(&column) {
                let at = cell
                    .as_datetime()
                    .unwrap_or_else(|| panic!("a date cell: {context}"));
                let difference = (at - instant(text)).num_milliseconds().abs();
                assert!(difference <= 1, "{context}: {at} vs {text}");
            } else if column == DATE_COLUMN {
                let date = cell
                    .as_datetime()
                    .unwrap_or_else(|| panic!("a date cell: {context}"))
                    .date();
                assert_eq!(
                    date,
                    NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap(),
                    "{context}"
                );
            } else if text.is_empty() {
                assert_eq!(cell, &Data::Empty, "{context}");
            } else {
                // Text as it is: no formula prefix, leading zeros kept.
                assert_eq!(cell, &Data::String(text.clone()), "{context}");
            }
        }
    }
}

/// A mix of payments: statuses, cents, JPY and KWD, quotes and separators in free
/// text, a refund, a duplicate. Returns the refused payment's id.
async fn create_mix(app: &TestApp) -> String {
    // Captured by the remittance, then partly refunded and duplicated.
    let captured = app.captured_payment("100.05").await;
    mutate(
        app,
        "mutation($id: ID!) { refundPayment(id: $id, amount: \"0.05\") { id } }",
        json!({ "id": captured }),
    )
    .await;
    mutate(
        app,
        "mutation($id: ID!) { duplicatePayment(id: $id, amount: \"42.10\", orderReference: \"ORD-DUP\") { id } }",
        json!({ "id": captured }),
    )
    .await;
    app.clock.advance(chrono::Duration::minutes(5));
    app.create_payment(input_with(
        "12.34",
        "=SUM(1;2) \"quoted\", with commas",
        json!({ "card": { "number": "4970100000000006", "expiryMonth": 3, "expiryYear": 2031, "cvv": "123", "holderName": "Dupont; Jean, \"JD\"" } }),
    ))
    .await;
    app.create_payment(input_with(
        "1500",
        "ORD-JPY",
        json!({ "currency": "JPY", "channel": "MOTO" }),
    ))
    .await;
    app.create_payment(input_with("1.234", "ORD-KWD", json!({ "currency": "KWD" })))
        .await;
    app.create_payment(input_with(
        "0.99",
        "ORD-MANUAL",
        json!({ "captureMode": "MANUAL" }),
    ))
    .await;
    let refused = app
        .create_payment(input_with(
            "7.00",
            "ORD-REFUSED",
            json!({ "card": { "number": "4970100000000048", "expiryMonth": 12, "expiryYear": 2030, "cvv": "123" } }),
        ))
        .await;
    assert_eq!(refused["status"], "REFUSED", "{refused}");
    let cancelled = app
        .create_payment(payment_input("13.00", "ORD-CANCEL"))
        .await;
    mutate(
        app,
        "mutation($id: ID!) { cancelPayment(id: $id) { id } }",
        json!({ "id": id_of(&cancelled) }),
    )
    .await;
    // A live payment: never in a test key's export.
    let live = app
        .graphql_as(
            &app.live_key,
            caisse_tests::CREATE_PAYMENT,
            json!({ "input": payment_input("5.00", "ORD-LIVE") }),
        )
        .await;
    data(&live);
    id_of(&refused)
}

async fn exports_match_the_payments_query_row_by_row(app: TestApp) {
    create_mix(&app).await;
    let all = payments_query(&app, &app.test_key, json!({})).await;
    assert_eq!(all.len(), 8, "the test payments");

    // A filter leaving some out: the cancelled one and the JPY one.
    let params = [
        ("status", "AUTHORISED,AUTHORISED_TO_VALIDATE"),
        ("status", "PARTIALLY_REFUNDED"),
        ("status", "REFUSED"),
        ("amountMax", "1000"),
        ("createdFrom", "2026-03-02"),
    ];
    let filter = json!({
        "statuses": ["AUTHORISED", "AUTHORISED_TO_VALIDATE", "PARTIALLY_REFUNDED", "REFUSED"],
        "amountMax": "1000",
        "createdFrom": "2026-03-02",
    });
    let nodes = payments_query(&app, &app.test_key, filter).await;
    assert_eq!(nodes.len(), 6, "the filter selects some, not all");

    let csv = download(&app, &app.test_key, "csv", &params).await;
    let (header, rows) = parse_csv(&csv, b',');
    assert_eq!(header, HEADERS_EN);
    assert_csv_matches(&rows, &nodes, false);
    // Exact decimals with the currency's minor units.
    let amounts: Vec<&str> = rows.iter().map(|row| row[10].as_str()).collect();
    for amount in ["12.34", "1.234", "0.99", "7.00", "42.10", "100.05"] {
        assert!(amounts.contains(&amount), "{amount} in {amounts:?}");
    }

    let (sheet, header, rows) = parse_xlsx(download(&app, &app.test_key, "xlsx", &params).await);
    assert_eq!(sheet, "Payments");
    assert_eq!(header, HEADERS_EN);
    assert_xlsx_matches(&rows, &nodes);

    // French: headers, `;` and decimal commas; the .xlsx only changes its words.
    let csv = download(&app, &app.test_key, "csv", &[("lang", "fr")]).await;
    let (header, rows) = parse_csv(&csv, b';');
    assert_eq!(header, HEADERS_FR);
    assert_csv_matches(&rows, &all, true);
    let text = String::from_utf8(csv).expect("UTF-8");
    assert!(text.contains(";12,34;"), "decimal comma: {text}");
    assert!(text.contains(";1500;"), "JPY has no decimals: {text}");
    let xlsx = download(&app, &app.test_key, "xlsx", &[("lang", "fr")]).await;
    let formats = amount_formats(&xlsx);
    let (sheet, header, rows) = parse_xlsx(xlsx);
    assert_eq!(sheet, "Paiements");
    assert_eq!(header, HEADERS_FR);
    assert_xlsx_matches(&rows, &all);
    // Amounts are shown with their currency's decimals (EUR, JPY and KWD here).
    for (index, node) in all.iter().enumerate() {
        let expected = match node["currency"].as_str().unwrap() {
            "JPY" => "#,##0",
            "KWD" => "#,##0.000",
            _ => "#,##0.00",
        };
        assert_eq!(formats[&(index as u32 + 2)], expected, "{}", node["id"]);
    }

    // Another filter, on JPY only.
    let yen = payments_query(&app, &app.test_key, json!({ "currency": "JPY" })).await;
    assert_eq!(yen.len(), 1);
    let (_, rows) = parse_csv(
        &download(&app, &app.test_key, "csv", &[("currency", "JPY")]).await,
        b',',
    );
    assert_csv_matches(&rows, &yen, false);
}

async fn exports_are_authorised_and_isolated_like_graphql(app: TestApp) {
    let refused = create_mix(&app).await;

    for format in ["csv", "xlsx"] {
        for key in [None, Some("sk_test_unknown"), Some("not a key")] {
            let response = export(&app, key, format, &[]).await;
            assert_eq!(response.status(), 401, "{format} with {key:?}");
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["error"]["code"], "UNAUTHENTICATED", "{body}");
        }
    }

    // The live key sees the live payment only; the test key never sees it.
    let (_, live_rows) = parse_csv(&download(&app, &app.live_key, "csv", &[]).await, b',');
    assert_eq!(live_rows.len(), 1);
    assert_eq!(live_rows[0][4], "LIVE");
    assert_eq!(live_rows[0][2], "ORD-LIVE");
    let (_, test_rows) = parse_csv(&download(&app, &app.test_key, "csv", &[]).await, b',');
    assert_eq!(test_rows.len(), 8);
    assert!(test_rows.iter().all(|row| row[4] == "TEST"));
    assert!(test_rows.iter().any(|row| row[0] == refused));

    // Another merchant sees none of them, and our shop is not found for it.
    let other = app.other_merchant().await;
    for format in ["csv", "xlsx"] {
        for key in [&other.test_key, &other.live_key] {
            let body = download(&app, key, format, &[]).await;
            let rows = match format {
                "csv" => parse_csv(&body, b',').1.len(),
                _ => parse_xlsx(body).2.len(),
            };
            assert_eq!(rows, 0, "{format}: nothing of ours");
            let response =
                export(&app, Some(key), format, &[("shopId", app.shop_id.as_str())]).await;
            assert_eq!(response.status(), 404);
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["error"]["code"], "SHOP_NOT_FOUND", "{body}");
        }
    }
    // With our own shop named, the same as without.
    let (_, named) = parse_csv(
        &download(
            &app,
            &app.test_key,
            "csv",
            &[("shopId", app.shop_id.as_str())],
        )
        .await,
        b',',
    );
    assert_eq!(named, test_rows);

    // A bad parameter: 400 naming it, for both formats.
    let bad: [(&str, &str, &str); 9] = [
        ("createdFrom", "yesterday", "BAD_USER_INPUT"),
        ("createdTo", "2026-13-01", "BAD_USER_INPUT"),
        ("amountMin", "12.3456", "BAD_USER_INPUT"),
        ("currency", "XYZ", "BAD_USER_INPUT"),
        ("lastFour", "12a4", "BAD_USER_INPUT"),
        ("status", "PAID", "BAD_USER_INPUT"),
        ("cardBrand", "DISCOVER", "BAD_USER_INPUT"),
        ("lang", "de", "BAD_USER_INPUT"),
        ("colour", "blue", "BAD_USER_INPUT"),
    ];
    for format in ["csv", "xlsx"] {
        for (name, value, code) in bad {
            let response = export(&app, Some(&app.test_key), format, &[(name, value)]).await;
            assert_eq!(response.status(), 400, "{format} {name}={value}");
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["error"]["code"], code, "{body}");
            assert_eq!(body["error"]["field"], name, "{body}");
            assert!(
                body["error"]["message"].as_str().unwrap().starts_with(name),
                "{body}"
            );
        }
    }
}

async fn a_large_export_is_complete_and_in_order(app: TestApp) {
    // More than one keyset page (200 rows), some sharing their creation instant.
    const COUNT: usize = 250;
    let references: Vec<String> = (0..COUNT)
        .map(|_| format!("ORD-BULK-{}", next_reference_number()))
        .collect();
    for chunk in references.chunks(50) {
        futures::stream::iter(chunk.iter().enumerate())
            .map(|(index, reference)| {
                let amount = format!("{}.{:02}", 10 + index, index % 100);
                let app = &app;
                async move {
                    app.create_payment(payment_input(&amount, reference)).await;
                }
            })
            .buffer_unordered(4)
            .collect::<Vec<()>>()
            .await;
        app.clock.advance(chrono::Duration::seconds(30));
    }
    let nodes = payments_query(&app, &app.test_key, json!({})).await;
    assert_eq!(nodes.len(), COUNT);

    let (_, rows) = parse_csv(&download(&app, &app.test_key, "csv", &[]).await, b',');
    assert_csv_matches(&rows, &nodes, false);
    let (_, _, rows) = parse_xlsx(download(&app, &app.test_key, "xlsx", &[]).await);
    assert_xlsx_matches(&rows, &nodes);
}

caisse_tests::both_backends!(
    exports_match_the_payments_query_row_by_row,
    super::exports_match_the_payments_query_row_by_row
);
caisse_tests::both_backends!(
    exports_are_authorised_and_isolated_like_graphql,
    super::exports_are_authorised_and_isolated_like_graphql
);
caisse_tests::both_backends!(
    a_large_export_is_complete_and_in_order,
    super::a_large_export_is_complete_and_in_order
);
