//! The double-entry journal: a lifecycle's entries and trial balance
//! through GraphQL, paging and date filters, deferred authorisations (TY-4),
//! isolation between merchants and modes, bad arguments, and `projections rebuild
//! journal` / `audit verify`.

use caisse_projections::audit;
use caisse_tests::{data, error_code, payment_input, TestApp};
use serde_json::{json, Value};

const JOURNAL: &str = "
query($shop: ID!, $from: String, $to: String, $first: Int, $after: String) {
  journal(shopId: $shop, from: $from, to: $to, first: $first, after: $after) {
    edges { cursor node {
      id globalPosition eventType occurredAt businessDate currency paymentId remittanceId
      lines { account debit credit }
    } }
    pageInfo { hasNextPage endCursor }
  }
}";

const TRIAL_BALANCE: &str = "
query($shop: ID!, $at: String) {
  trialBalance(shopId: $shop, at: $at) {
    currency totalDebit totalCredit balanced
    accounts { account debit credit balance }
  }
}";

/// The payments of the lifecycle and the remittance that captured two of them.
struct Lifecycle {
    /// EUR 100.00 lowered to 80.00, captured, then 30.00 refunded.
    modified: String,
    /// EUR 5.00 captured with it.
    small: String,
    /// EUR 20.00 to capture in 3 days, cancelled the next day.
    cancelled: String,
    remittance: String,
    /// The next day's remittance, carrying the refund as its only credit.
    credit_remittance: String,
}

async fn mutate(app: &TestApp, query: &str, variables: Value) {
    let response = app.graphql(query, variables).await;
    data(&response);
}

async fn run_lifecycle(app: &TestApp) -> Lifecycle {
    let id = |payment: Value| payment["id"].as_str().unwrap().to_string();
    let modified = id(app
        .create_payment(payment_input("100.00", "JOURNAL-1"))
        .await);
    mutate(
        app,
        "mutation($id: ID!) { modifyPayment(id: $id, amount: \"80.00\") { id } }",
        json!({ "id": modified }),
    )
    .await;
    let small = id(app.create_payment(payment_input("5.00", "JOURNAL-2")).await);
    let mut later = payment_input("20.00", "JOURNAL-3");
    later["captureDelayDays"] = json!(3);
    let cancelled = id(app.create_payment(later).await);
    let remittances = app.run_remittance().await;
    assert_eq!(remittances.as_array().unwrap().len(), 1, "{remittances}");
    assert_eq!(remittances[0]["paymentCount"], 2, "{remittances}");
    let remittance = remittances[0]["id"].as_str().unwrap().to_string();
    mutate(
        app,
        "mutation($id: ID!) { refundPayment(id: $id, amount: \"30.00\") { id } }",
        json!({ "id": modified }),
    )
    .await;
    // The cancellation happens on the next business day.
    app.clock.advance(chrono::Duration::days(1));
    mutate(
        app,
        "mutation($id: ID!) { cancelPayment(id: $id) { id } }",
        json!({ "id": cancelled }),
    )
    .await;
    // Nothing left to capture; the refund goes to the bank as a credit.
    let credits = app.run_remittance().await;
    assert_eq!(credits.as_array().unwrap().len(), 1, "{credits}");
    assert_eq!(credits[0]["paymentCount"], 0, "{credits}");
    let credit_remittance = credits[0]["id"].as_str().unwrap().to_string();
    Lifecycle {
        modified,
        small,
        cancelled,
        remittance,
        credit_remittance,
    }
}

/// Every entry of the journal, read page by page with `first` entries a page.
async fn whole_journal(app: &TestApp, key: &str, shop: &str, first: i64) -> Vec<Value> {
    let mut entries = Vec::new();
    let mut after = Value::Null;
    loop {
        let response = app
            .graphql_as(
                key,
                JOURNAL,
                json!({ "shop": shop, "first": first, "after": after }),
            )
            .await;
        let connection = data(&response)["journal"].clone();
        let edges = connection["edges"].as_array().unwrap();
        assert!(edges.len() as i64 <= first);
        entries.extend(edges.iter().map(|edge| edge["node"].clone()));
        if connection["pageInfo"]["hasNextPage"] != json!(true) {
            return entries;
        }
        assert_eq!(edges.len() as i64, first, "a page before the last is full");
        after = connection["pageInfo"]["endCursor"].clone();
    }
}

/// The entries with business dates within `from` and `to` (one page).
async fn dated(app: &TestApp, from: Option<&str>, to: Option<&str>) -> Vec<Value> {
    let response = app
        .graphql(
            JOURNAL,
            json!({ "shop": app.shop_id, "from": from, "to": to, "first": 200 }),
        )
        .await;
    data(&response)["journal"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|edge| edge["node"].clone())
        .collect()
}

fn lines(entry: &Value) -> Lines {
    entry["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|line| {
            (
                line["account"].as_str().unwrap().to_string(),
                line["debit"].as_str().unwrap().to_string(),
                line["credit"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn transfer(debit: &str, credit: &str, amount: &str) -> Lines {
    vec![
        (debit.to_string(), amount.to_string(), "0.00".to_string()),
        (credit.to_string(), "0.00".to_string(), amount.to_string()),
    ]
}

/// `(account, debit, credit)` of each line of an entry.
type Lines = Vec<(String, String, String)>;

/// The entries the lifecycle must produce, in log order: (event type, payment,
/// remittance, lines).
fn expected_entries(ledger: &Lifecycle) -> Vec<(&'static str, String, Option<String>, Lines)> {
    let holds = "authorisation_holds";
    let buyer = "buyer_funds";
    let receivable = "merchant_receivable";
    let remitted = "remitted_to_acquirer";
    let rem = Some(ledger.remittance.clone());
    // The remittance captures due payments in payment id order.
    let mut captured = vec![
        (ledger.modified.clone(), "80.00"),
        (ledger.small.clone(), "5.00"),
    ];
    captured.sort();
    let mut expected = vec![
        (
            "PaymentAuthorised",
            ledger.modified.clone(),
            None,
            transfer(holds, buyer, "100.00"),
        ),
        (
            "PaymentModified",
            ledger.modified.clone(),
            None,
            transfer(buyer, holds, "20.00"),
        ),
        (
            "PaymentAuthorised",
            ledger.small.clone(),
            None,
            transfer(holds, buyer, "5.00"),
        ),
        (
            "PaymentAuthorised",
            ledger.cancelled.clone(),
            None,
            transfer(holds, buyer, "20.00"),
        ),
    ];
    for (payment, amount) in &captured {
        expected.push((
            "PaymentCaptured",
            payment.clone(),
            rem.clone(),
            transfer(receivable, holds, amount),
        ));
    }
    for (payment, amount) in &captured {
        expected.push((
            "RemittanceSubmitted",
            payment.clone(),
            rem.clone(),
            transfer(remitted, receivable, amount),
        ));
    }
    // The refund lowers what the next remittance nets, then that remittance
    // takes it back from the acquirer.
    expected.push((
        "PaymentRefunded",
        ledger.modified.clone(),
        None,
        transfer(buyer, receivable, "30.00"),
    ));
    expected.push((
        "PaymentCancelled",
        ledger.cancelled.clone(),
        None,
        transfer(buyer, holds, "20.00"),
    ));
    expected.push((
        "RemittanceSubmitted",
        ledger.modified.clone(),
        Some(ledger.credit_remittance.clone()),
        transfer(receivable, remitted, "30.00"),
    ));
    expected
}

/// The trial balance's accounts as `(account, debit, credit, balance)`.
fn accounts(balance: &Value) -> Vec<(String, String, String, String)> {
    balance["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|account| {
            let text = |field: &str| account[field].as_str().unwrap().to_string();
            (
                text("account"),
                text("debit"),
                text("credit"),
                text("balance"),
            )
        })
        .collect()
}

fn row(
    account: &str,
    debit: &str,
    credit: &str,
    balance: &str,
) -> (String, String, String, String) {
    (
        account.to_string(),
        debit.to_string(),
        credit.to_string(),
        balance.to_string(),
    )
}

async fn trial_balance(app: &TestApp, key: &str, shop: &str, at: Option<&str>) -> Value {
    let response = app
        .graphql_as(key, TRIAL_BALANCE, json!({ "shop": shop, "at": at }))
        .await;
    data(&response)["trialBalance"].clone()
}

async fn a_lifecycle_makes_balanced_entries_and_a_zero_trial_balance(app: TestApp) {
    let ledger = run_lifecycle(&app).await;
    let entries = whole_journal(&app, &app.test_key, &app.shop_id, 200).await;
    let actual: Vec<_> = entries
        .iter()
        .map(|entry| {
            (
                entry["eventType"].as_str().unwrap(),
                entry["paymentId"].as_str().unwrap().to_string(),
                entry["remittanceId"].as_str().map(str::to_string),
                lines(entry),
            )
        })
        .collect();
    assert_eq!(actual, expected_entries(&ledger));
    for entry in &entries {
        assert_eq!(entry["currency"], "EUR");
        let position = entry["globalPosition"].as_i64().unwrap();
        assert!(
            entry["id"]
                .as_str()
                .unwrap()
                .starts_with(&format!("je_{position}_")),
            "{entry}"
        );
    }
    // One entry per payment of the remittance, numbered within its event.
    let remitted: Vec<&Value> = entries
        .iter()
        .filter(|entry| entry["eventType"] == "RemittanceSubmitted")
        .collect();
    assert_eq!(remitted[0]["globalPosition"], remitted[1]["globalPosition"]);
    assert_ne!(remitted[0]["id"], remitted[1]["id"]);
    let dates: Vec<&str> = entries
        .iter()
        .map(|entry| entry["businessDate"].as_str().unwrap())
        .collect();
    assert_eq!(dates[..9], ["2026-03-02"; 9]);
    assert_eq!(dates[9], "2026-03-03");

    // Small pages give the same entries, across the remittance's two entries too.
    for first in [1, 3, 4] {
        assert_eq!(
            whole_journal(&app, &app.test_key, &app.shop_id, first).await,
            entries,
            "pages of {first}"
        );
    }

    // Business date filters.
    assert_eq!(dated(&app, Some("2026-03-03"), None).await, entries[9..]);
    assert_eq!(dated(&app, None, Some("2026-03-02")).await, entries[..9]);
    assert_eq!(
        dated(&app, Some("2026-03-02"), Some("2026-03-03")).await,
        entries
    );
    assert_eq!(
        dated(&app, Some("2026-03-04"), None).await,
        Vec::<Value>::new()
    );

    // Trial balance now: every hold released or captured, every capture and
    // refund remitted, the buyers' 55.00 with the acquirer.
    let balance = trial_balance(&app, &app.test_key, &app.shop_id, None).await;
    assert_eq!(balance.as_array().unwrap().len(), 1, "{balance}");
    let eur = &balance[0];
    assert_eq!(eur["currency"], "EUR");
    assert_eq!(eur["totalDebit"], "395.00");
    assert_eq!(eur["totalCredit"], "395.00");
    assert_eq!(eur["balanced"], true);
    assert_eq!(
        accounts(eur),
        vec![
            row("authorisation_holds", "125.00", "125.00", "0.00"),
            row("buyer_funds", "70.00", "125.00", "-55.00"),
            row("merchant_receivable", "115.00", "115.00", "0.00"),
            row("remitted_to_acquirer", "85.00", "30.00", "55.00"),
        ]
    );

    // At the end of the first day the cancelled payment was still held and the
    // refund not yet sent: the next remittance would net -30.00.
    for at in [
        "2026-03-02",
        "2026-03-02T23:59:59Z",
        "2026-03-03T00:59:59+01:00",
    ] {
        let balance = trial_balance(&app, &app.test_key, &app.shop_id, Some(at)).await;
        let eur = &balance[0];
        assert_eq!(eur["totalDebit"], "345.00", "at {at}");
        assert_eq!(eur["totalCredit"], "345.00", "at {at}");
        assert_eq!(eur["balanced"], true);
        assert_eq!(
            accounts(eur),
            vec![
                row("authorisation_holds", "125.00", "105.00", "20.00"),
                row("buyer_funds", "50.00", "125.00", "-75.00"),
                row("merchant_receivable", "85.00", "115.00", "-30.00"),
                row("remitted_to_acquirer", "85.00", "0.00", "85.00"),
            ],
            "at {at}"
        );
    }
    // Before anything happened there is nothing to balance.
    assert_eq!(
        trial_balance(&app, &app.test_key, &app.shop_id, Some("2026-03-01")).await,
        json!([])
    );
}

caisse_tests::both_backends!(
    a_lifecycle_makes_balanced_entries_and_a_zero_trial_balance,
    super::a_lifecycle_makes_balanced_entries_and_a_zero_trial_balance
);

async fn another_merchant_or_mode_sees_none_of_the_journal(app: TestApp) {
    run_lifecycle(&app).await;
    let other = app.other_merchant().await;
    for query in [JOURNAL, TRIAL_BALANCE] {
        let response = app
            .graphql_as(&other.test_key, query, json!({ "shop": app.shop_id }))
            .await;
        assert_eq!(error_code(&response), "SHOP_NOT_FOUND", "{response}");
        assert!(response["data"].is_null(), "{response}");
    }
    // The other merchant's own shop, and our shop in live mode, have no entries.
    assert_eq!(
        whole_journal(&app, &other.test_key, &other.shop_id, 200).await,
        Vec::<Value>::new()
    );
    assert_eq!(
        whole_journal(&app, &app.live_key, &app.shop_id, 200).await,
        Vec::<Value>::new()
    );
    assert_eq!(
        trial_balance(&app, &app.live_key, &app.shop_id, None).await,
        json!([])
    );
    assert_eq!(
        trial_balance(&app, &other.test_key, &other.shop_id, None).await,
        json!([])
    );
    // A live payment goes to the live journal only (refused: live mode has no
    // acquirer, so it moves no money and makes no entry).
    let live = app
        .graphql_as(
            &app.live_key,
            caisse_tests::CREATE_PAYMENT,
            json!({ "input": payment_input("9.00", "JOURNAL-LIVE") }),
        )
        .await;
    assert_eq!(data(&live)["createPayment"]["status"], "REFUSED");
    assert_eq!(
        whole_journal(&app, &app.live_key, &app.shop_id, 200).await,
        Vec::<Value>::new()
    );
    assert_eq!(
        whole_journal(&app, &app.test_key, &app.shop_id, 200)
            .await
            .len(),
        11
    );
}

caisse_tests::both_backends!(
    another_merchant_or_mode_sees_none_of_the_journal,
    super::another_merchant_or_mode_sees_none_of_the_journal
);

async fn bad_journal_arguments_get_a_code_and_the_field(app: TestApp) {
    let shop = app.shop_id.as_str();
    let cases = [
        (JOURNAL, json!({ "shop": "shop_nope" }), "shopId"),
        (
            JOURNAL,
            json!({ "shop": shop, "from": "2026-13-01" }),
            "from",
        ),
        (JOURNAL, json!({ "shop": shop, "to": "tomorrow" }), "to"),
        (
            JOURNAL,
            json!({ "shop": shop, "from": "2026-03-03", "to": "2026-03-02" }),
            "to",
        ),
        (JOURNAL, json!({ "shop": shop, "first": 0 }), "first"),
        (JOURNAL, json!({ "shop": shop, "first": 201 }), "first"),
        (
            JOURNAL,
            json!({ "shop": shop, "after": "garbage" }),
            "after",
        ),
        // A cursor of another list is not a journal cursor.
        (
            JOURNAL,
            json!({ "shop": shop, "after": "cGF5MXwyMDI2LTAzLTAyVDEwOjAwOjAwLjAwMDAwMFp8cGF5XzE" }),
            "after",
        ),
        (TRIAL_BALANCE, json!({ "shop": "nope" }), "shopId"),
        (TRIAL_BALANCE, json!({ "shop": shop, "at": "noon" }), "at"),
        (
            TRIAL_BALANCE,
            json!({ "shop": shop, "at": "2026-03-02T25:00:00Z" }),
            "at",
        ),
    ];
    for (query, variables, field) in cases {
        let response = app.graphql(query, variables.clone()).await;
        assert_eq!(
            error_code(&response),
            "BAD_USER_INPUT",
            "{variables}: {response}"
        );
        assert_eq!(
            response["errors"][0]["extensions"]["field"], field,
            "{variables}: {response}"
        );
    }
}

caisse_tests::both_backends!(
    bad_journal_arguments_get_a_code_and_the_field,
    super::bad_journal_arguments_get_a_code_and_the_field
);

async fn a_rebuild_reproduces_the_journal_and_audit_reports_a_tampered_line(app: TestApp) {
    let ledger = run_lifecycle(&app).await;
    let report = audit::verify(app.state.db()).await.expect("audit runs");
    assert!(report.is_clean(), "{:#?}", report.findings);
    let journal = whole_journal(&app, &app.test_key, &app.shop_id, 200).await;
    let balance = trial_balance(&app, &app.test_key, &app.shop_id, None).await;
    assert_eq!(journal.len(), 11);

    // `caisse projections rebuild journal` replays the log into the same entries.
    let handle = app
        .state
        .projectors
        .get("journal")
        .expect("journal projection");
    let applied = handle.rebuild().await.expect("rebuild");
    assert!(
        applied >= report.events,
        "{applied} of {} events",
        report.events
    );
    assert_eq!(
        whole_journal(&app, &app.test_key, &app.shop_id, 200).await,
        journal
    );
    assert_eq!(
        trial_balance(&app, &app.test_key, &app.shop_id, None).await,
        balance
    );
    let report = audit::verify(app.state.db()).await.expect("audit runs");
    assert!(report.is_clean(), "{:#?}", report.findings);

    // Tamper with the credit line of the refund: the replay differs, the entry and
    // the shop's trial balance no longer balance, and GraphQL shows it.
    let changed = app
        .state
        .db()
        .execute(
            "UPDATE journal_lines SET credit_milli = credit_milli + 1000
              WHERE payment_id = $1 AND event_type = 'PaymentRefunded' AND credit_milli > 0",
            &[ledger.modified.as_str().into()],
        )
        .await
        .expect("tamper with the journal");
    assert_eq!(changed, 1);
    let tampered = trial_balance(&app, &app.test_key, &app.shop_id, None).await;
    assert_eq!(tampered[0]["balanced"], false);
    assert_eq!(tampered[0]["totalCredit"], "396.00");
    let report = audit::verify(app.state.db()).await.expect("audit runs");
    let refund = journal
        .iter()
        .find(|entry| entry["eventType"] == "PaymentRefunded")
        .unwrap();
    let refund_id = refund["id"].as_str().unwrap();
    for expected in [
        "journal_lines: row".to_string(),
        format!("journal_lines: entry {refund_id} does not balance: debits 30.00 EUR, credits 31.00 EUR"),
        format!("journal_lines: trial balance of shop {} (TEST, EUR) is not zero", app.shop_id),
    ] {
        assert!(
            report.findings.iter().any(|finding| finding.contains(&expected)),
            "{expected:?} not among {:#?}",
            report.findings
        );
    }
    assert!(
        report
            .findings
            .iter()
            .all(|finding| finding.contains("journal_lines")),
        "{:#?}",
        report.findings
    );

    // A rebuild repairs it.
    handle.rebuild().await.expect("rebuild");
    let report = audit::verify(app.state.db()).await.expect("audit runs");
    assert!(report.is_clean(), "{:#?}", report.findings);
    assert_eq!(
        trial_balance(&app, &app.test_key, &app.shop_id, None).await,
        balance
    );
}

caisse_tests::both_backends!(
    a_rebuild_reproduces_the_journal_and_audit_reports_a_tampered_line,
    super::a_rebuild_reproduces_the_journal_and_audit_reports_a_tampered_line
);

/// Deferred beyond the 7-day authorisation validity (TY-4): the order waits in
/// `deferred_authorisations` until the authorisation the day before capture holds
/// it or releases it.
async fn a_deferred_payment_waits_in_its_own_account_until_its_authorisation(app: TestApp) {
    let deferred = |amount: &str, reference: &str, card: &str| {
        let mut input = payment_input(amount, reference);
        input["captureDelayDays"] = json!(20);
        input["card"]["number"] = json!(card);
        input
    };
    let granted = app
        .create_payment(deferred("60.00", "JOURNAL-DEFERRED-1", "4970100000000006"))
        .await;
    assert_eq!(granted["status"], "WAITING_AUTHORISATION", "{granted}");
    // Accepted at payment time, insufficient funds at the deferred authorisation.
    let refused = app
        .create_payment(deferred("70.00", "JOURNAL-DEFERRED-2", "4970100000000071"))
        .await;
    assert_eq!(refused["status"], "WAITING_AUTHORISATION", "{refused}");
    mutate(
        &app,
        "mutation($id: ID!) { modifyPayment(id: $id, amount: \"50.00\") { id } }",
        json!({ "id": granted["id"] }),
    )
    .await;
    let waiting = trial_balance(&app, &app.test_key, &app.shop_id, None).await;
    assert_eq!(
        accounts(&waiting[0]),
        vec![
            row("buyer_funds", "10.00", "130.00", "-120.00"),
            row("deferred_authorisations", "130.00", "10.00", "120.00"),
        ]
    );

    // The day before the capture date the scheduler asks for both authorisations.
    app.clock
        .set(chrono::TimeZone::with_ymd_and_hms(&chrono::Utc, 2026, 3, 21, 0, 0, 0).unwrap());
    app.run_scheduler().await;
    let entries = whole_journal(&app, &app.test_key, &app.shop_id, 200).await;
    let actual: Vec<_> = entries
        .iter()
        .map(|entry| {
            (
                entry["eventType"].as_str().unwrap(),
                entry["paymentId"].clone(),
                lines(entry),
            )
        })
        .collect();
    assert_eq!(
        actual,
        vec![
            (
                "PaymentAwaitingAuthorisation",
                granted["id"].clone(),
                transfer("deferred_authorisations", "buyer_funds", "60.00")
            ),
            (
                "PaymentAwaitingAuthorisation",
                refused["id"].clone(),
                transfer("deferred_authorisations", "buyer_funds", "70.00")
            ),
            (
                "PaymentModified",
                granted["id"].clone(),
                transfer("buyer_funds", "deferred_authorisations", "10.00")
            ),
            (
                "DeferredAuthorisationGranted",
                granted["id"].clone(),
                transfer("authorisation_holds", "deferred_authorisations", "50.00")
            ),
            (
                "DeferredAuthorisationRefused",
                refused["id"].clone(),
                transfer("buyer_funds", "deferred_authorisations", "70.00")
            ),
        ]
    );
    let balance = trial_balance(&app, &app.test_key, &app.shop_id, None).await;
    assert_eq!(balance[0]["balanced"], true);
    assert_eq!(
        accounts(&balance[0]),
        vec![
            row("authorisation_holds", "50.00", "0.00", "50.00"),
            row("buyer_funds", "80.00", "130.00", "-50.00"),
            row("deferred_authorisations", "130.00", "130.00", "0.00"),
        ]
    );
    let report = audit::verify(app.state.db()).await.expect("audit runs");
    assert!(report.is_clean(), "{:#?}", report.findings);
}

caisse_tests::both_backends!(
    a_deferred_payment_waits_in_its_own_account_until_its_authorisation,
    super::a_deferred_payment_waits_in_its_own_account_until_its_authorisation
);
