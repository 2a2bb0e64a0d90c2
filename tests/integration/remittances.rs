//! Remittances with debits and credits (CM-10, docs/adr/0008): one remittance per
//! currency and acquirer contract, refunds sent as credits exactly once (after a
//! remittance, from two cut-offs at once, after a crash), the journal still
//! balanced and the audit clean.

use std::collections::{BTreeMap, BTreeSet};

use caisse_application::context::RequestContext;
use caisse_application::ports::{Clock, EventLog, ProjectionWaiter};
use caisse_domain::payment::{AccessScope, Authorisation, AuthorisationOutcome, PaymentCommand};
use caisse_domain::{Mode, PaymentId, RemittanceId, ShopId};
use caisse_tests::{data, next_reference_number, payment_input, TestApp};
use serde_json::{json, Value};

const REMITTANCE_FIELDS: &str = "id currency contract bankStatus businessDate
    paymentCount total debitCount debitTotal creditCount creditTotal netTotal
    payments { id status } refunds { refundId paymentId amount currency refundedAt remittedAt }";

/// Runs the shop's remittance through GraphQL; the remittances it created.
async fn run_remittance(app: &TestApp) -> Vec<Value> {
    let response = app
        .graphql(
            &format!(
                "mutation($shop: ID!) {{ runRemittance(shopId: $shop) {{ {REMITTANCE_FIELDS} }} }}"
            ),
            json!({ "shop": app.shop_id }),
        )
        .await;
    data(&response)["runRemittance"].as_array().unwrap().clone()
}

/// Every remittance of the shop, newest first.
async fn all_remittances(app: &TestApp) -> Vec<Value> {
    let response = app
        .graphql(
            &format!(
                "query($shop: ID!) {{ remittances(shopId: $shop, first: 200) {{ edges {{ node {{ {REMITTANCE_FIELDS} }} }} }} }}"
            ),
            json!({ "shop": app.shop_id }),
        )
        .await;
    data(&response)["remittances"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|edge| edge["node"].clone())
        .collect()
}

async fn remittance(app: &TestApp, id: &str) -> Value {
    let response = app
        .graphql(
            &format!("query($id: ID!) {{ remittance(id: $id) {{ {REMITTANCE_FIELDS} }} }}"),
            json!({ "id": id }),
        )
        .await;
    data(&response)["remittance"].clone()
}

/// An authorised payment due today; its id.
async fn payment(app: &TestApp, amount: &str, currency: &str) -> String {
    let mut input = payment_input(amount, &format!("ORD-REM-{}", next_reference_number()));
    input["currency"] = json!(currency);
    let payment = app.create_payment(input).await;
    assert_eq!(payment["status"], "AUTHORISED", "{payment}");
    payment["id"].as_str().unwrap().to_string()
}

async fn refund(app: &TestApp, payment_id: &str, amount: &str) {
    let response = app
        .graphql(
            "mutation($id: ID!, $amount: String!) { refundPayment(id: $id, amount: $amount) { id } }",
            json!({ "id": payment_id, "amount": amount }),
        )
        .await;
    data(&response);
}

/// The remittance of `currency` among `remittances` (exactly one).
fn of_currency<'a>(remittances: &'a [Value], currency: &str) -> &'a Value {
    let matching: Vec<&Value> = remittances
        .iter()
        .filter(|remittance| remittance["currency"] == currency)
        .collect();
    assert_eq!(matching.len(), 1, "{currency} in {remittances:#?}");
    matching[0]
}

/// `(count, total)` of the debits and of the credits, and the net.
fn figures(remittance: &Value) -> (i64, &str, i64, &str, &str) {
    (
        remittance["debitCount"].as_i64().unwrap(),
        remittance["debitTotal"].as_str().unwrap(),
        remittance["creditCount"].as_i64().unwrap(),
        remittance["creditTotal"].as_str().unwrap(),
        remittance["netTotal"].as_str().unwrap(),
    )
}

fn ids(list: &Value, field: &str) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|item| item[field].as_str().unwrap().to_string())
        .collect()
}

/// The trial balance is zero in every currency and nothing waits to be remitted.
async fn journal_balanced_and_everything_remitted(app: &TestApp) {
    let response = app
        .graphql(
            "query($shop: ID!) { trialBalance(shopId: $shop) {
                currency balanced accounts { account balance } } }",
            json!({ "shop": app.shop_id }),
        )
        .await;
    let balances = data(&response)["trialBalance"].as_array().unwrap().clone();
    assert!(!balances.is_empty());
    for balance in &balances {
        assert_eq!(balance["balanced"], true, "{balance}");
        for account in balance["accounts"].as_array().unwrap() {
            if account["account"] == "merchant_receivable" {
                let zero = account["balance"]
                    .as_str()
                    .unwrap()
                    .chars()
                    .all(|c| c == '0' || c == '.');
                assert!(zero, "left to remit: {balance}");
            }
        }
    }
}

async fn audit_is_clean(app: &TestApp) {
    let report = caisse_projections::audit::verify(app.state.db())
        .await
        .expect("audit runs");
    assert!(report.is_clean(), "{:#?}", report.findings);
}

fn system_context(app: &TestApp) -> RequestContext {
    let scope = AccessScope::single(ShopId::parse(&app.shop_id).unwrap(), Mode::Test);
    RequestContext::system(scope, "test:remittances")
}

/// Runs a payment command as a service would, then waits for the views.
async fn execute(app: &TestApp, payment_id: &str, command: PaymentCommand) {
    let executed = app
        .state
        .payments
        .runner()
        .execute(payment_id, command, system_context(app).metadata(false))
        .await
        .expect("command accepted");
    let position = app
        .state
        .log
        .position_of("Payment", payment_id, executed.last_sequence())
        .await
        .unwrap();
    app.state.projectors.wait_for(position).await;
}

async fn captures_and_refunds_of_several_currencies_make_one_remittance_per_currency(app: TestApp) {
    let eur_a = payment(&app, "100.00", "EUR").await;
    let eur_b = payment(&app, "20.00", "EUR").await;
    let usd = payment(&app, "50.00", "USD").await;
    let jpy = payment(&app, "1500", "JPY").await;
    let first = run_remittance(&app).await;
    assert_eq!(first.len(), 3, "{first:#?}");
    for remittance in &first {
        assert_eq!(remittance["contract"], "SIMULATOR");
        assert_eq!(remittance["bankStatus"], "SUBMITTED");
        assert_eq!(remittance["refunds"], json!([]));
        // The fields of before keep meaning the captures.
        assert_eq!(remittance["paymentCount"], remittance["debitCount"]);
        assert_eq!(remittance["total"], remittance["debitTotal"]);
    }
    assert_eq!(
        figures(of_currency(&first, "EUR")),
        (2, "120.00", 0, "0.00", "120.00")
    );
    let mut first_eur = vec![eur_a.clone(), eur_b.clone()];
    first_eur.sort();
    assert_eq!(
        ids(&of_currency(&first, "EUR")["payments"], "id"),
        first_eur
    );
    assert_eq!(
        figures(of_currency(&first, "USD")),
        (1, "50.00", 0, "0.00", "50.00")
    );
    assert_eq!(
        figures(of_currency(&first, "JPY")),
        (1, "1500", 0, "0", "1500")
    );

    // Refunds, and one more EUR payment, go with the next remittances.
    refund(&app, &eur_a, "30.00").await;
    refund(&app, &eur_a, "10.00").await;
    refund(&app, &usd, "50.00").await;
    refund(&app, &jpy, "500").await;
    let eur_c = payment(&app, "15.00", "EUR").await;
    let second = run_remittance(&app).await;
    assert_eq!(second.len(), 3, "{second:#?}");
    let eur = of_currency(&second, "EUR");
    assert_eq!(figures(eur), (1, "15.00", 2, "40.00", "-25.00"));
    assert_eq!(ids(&eur["payments"], "id"), vec![eur_c.clone()]);
    assert_eq!(eur["payments"][0]["status"], "CAPTURED");
    let eur_refunds = eur["refunds"].as_array().unwrap();
    assert_eq!(
        ids(&eur["refunds"], "paymentId"),
        vec![eur_a.clone(), eur_a.clone()]
    );
    let amounts: Vec<&str> = eur_refunds
        .iter()
        .map(|r| r["amount"].as_str().unwrap())
        .collect();
    assert_eq!(amounts, vec!["30.00", "10.00"]);
    let refund_ids: BTreeSet<String> = ids(&eur["refunds"], "refundId").into_iter().collect();
    assert_eq!(refund_ids.len(), 2);
    assert!(
        refund_ids.iter().all(|id| id.starts_with("ref_")),
        "{refund_ids:?}"
    );
    assert!(eur_refunds.iter().all(|r| r["remittedAt"].is_string()));
    // A remittance of credits only: no debits, a negative net.
    let usd_remittance = of_currency(&second, "USD");
    assert_eq!(figures(usd_remittance), (0, "0.00", 1, "50.00", "-50.00"));
    assert_eq!(usd_remittance["payments"], json!([]));
    assert_eq!(
        ids(&usd_remittance["refunds"], "paymentId"),
        vec![usd.clone()]
    );
    assert_eq!(
        figures(of_currency(&second, "JPY")),
        (0, "0", 1, "500", "-500")
    );
    // `remittance(id)` reads the same, and so does the list.
    assert_eq!(remittance(&app, eur["id"].as_str().unwrap()).await, *eur);
    let listed = all_remittances(&app).await;
    assert_eq!(listed.len(), 6);
    assert!(listed.contains(eur) && listed.contains(usd_remittance));

    // Nothing is sent twice.
    assert_eq!(run_remittance(&app).await, Vec::<Value>::new());
    journal_balanced_and_everything_remitted(&app).await;
    audit_is_clean(&app).await;
}

caisse_tests::both_backends!(
    several_currencies_give_one_remittance_each_with_debits_and_credits,
    super::captures_and_refunds_of_several_currencies_make_one_remittance_per_currency
);

async fn a_refund_made_after_a_remittance_goes_in_the_next_one_exactly_once(app: TestApp) {
    let payment_id = app.captured_payment("80.00").await;
    refund(&app, &payment_id, "20.00").await;
    let first = run_remittance(&app).await;
    assert_eq!(first.len(), 1, "{first:#?}");
    assert_eq!(figures(&first[0]), (0, "0.00", 1, "20.00", "-20.00"));
    // A refund made after that remittance goes in the next one only.
    refund(&app, &payment_id, "10.00").await;
    let second = run_remittance(&app).await;
    assert_eq!(second.len(), 1, "{second:#?}");
    assert_eq!(figures(&second[0]), (0, "0.00", 1, "10.00", "-10.00"));
    assert_ne!(
        first[0]["refunds"][0]["refundId"],
        second[0]["refunds"][0]["refundId"]
    );
    assert_eq!(run_remittance(&app).await, Vec::<Value>::new());

    // The payment's history says which remittance took each refund.
    let response = app
        .graphql(
            "query($id: ID!) { payment(id: $id) { status refundedAmount history { type data } } }",
            json!({ "id": payment_id }),
        )
        .await;
    let payment = &data(&response)["payment"];
    assert_eq!(payment["status"], "PARTIALLY_REFUNDED");
    assert_eq!(payment["refundedAmount"], "30.00");
    let remitted: Vec<String> = payment["history"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|event| event["type"] == "RefundRemitted")
        .map(|event| {
            let data: Value = serde_json::from_str(event["data"].as_str().unwrap()).unwrap();
            data["RefundRemitted"]["remittance_id"]
                .as_str()
                .unwrap()
                .to_string()
        })
        .collect();
    let expected: Vec<String> = [&first[0], &second[0]]
        .iter()
        .map(|remittance| {
            RemittanceId::parse(remittance["id"].as_str().unwrap())
                .unwrap()
                .as_uuid()
                .to_string()
        })
        .collect();
    let remitted: Vec<String> = remitted
        .iter()
        .map(|id| RemittanceId::parse(id).unwrap().as_uuid().to_string())
        .collect();
    assert_eq!(remitted, expected);
    journal_balanced_and_everything_remitted(&app).await;
    audit_is_clean(&app).await;
}

caisse_tests::both_backends!(
    a_refund_after_a_remittance_goes_in_the_next_one,
    super::a_refund_made_after_a_remittance_goes_in_the_next_one_exactly_once
);

/// Two cut-offs of the same shop at once, twice: once with captures and refunds
/// to send, once with refunds only.
async fn two_cut_offs_at_once_put_every_capture_and_refund_in_exactly_one_remittance(app: TestApp) {
    let mut captured = Vec::new();
    for index in 0..6 {
        captured.push(payment(&app, &format!("{}.00", 10 + index), "EUR").await);
    }
    assert_eq!(run_remittance(&app).await.len(), 1);
    for payment_id in &captured {
        refund(&app, payment_id, "1.00").await;
    }
    let mut due = Vec::new();
    for index in 0..6 {
        due.push(payment(&app, &format!("{}.50", 20 + index), "EUR").await);
    }
    due.push(payment(&app, "7.00", "USD").await);
    due.push(payment(&app, "8.00", "USD").await);
    let (left, right) = tokio::join!(run_remittance(&app), run_remittance(&app));
    assert!(!left.is_empty() || !right.is_empty());

    // More refunds, and two service-level runs at once.
    for payment_id in &captured {
        refund(&app, payment_id, "2.00").await;
    }
    let shop = ShopId::parse(&app.shop_id).unwrap();
    let context = system_context(&app);
    let (left, right) = tokio::join!(
        app.state.remittances.run(&context, shop),
        app.state.remittances.run(&context, shop)
    );
    let created = left.unwrap().len() + right.unwrap().len();
    assert!(created >= 1);

    let remittances = all_remittances(&app).await;
    let mut payments: BTreeMap<String, usize> = BTreeMap::new();
    let mut refunds: BTreeMap<String, usize> = BTreeMap::new();
    let mut credited: BTreeMap<String, usize> = BTreeMap::new();
    for remittance in &remittances {
        assert_eq!(
            remittance["debitCount"].as_u64().unwrap() as usize,
            remittance["payments"].as_array().unwrap().len()
        );
        assert_eq!(
            remittance["creditCount"].as_u64().unwrap() as usize,
            remittance["refunds"].as_array().unwrap().len()
        );
        for id in ids(&remittance["payments"], "id") {
            *payments.entry(id).or_default() += 1;
        }
        for refund in remittance["refunds"].as_array().unwrap() {
            *refunds
                .entry(refund["refundId"].as_str().unwrap().to_string())
                .or_default() += 1;
            *credited
                .entry(refund["paymentId"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
    }
    // Every capture in exactly one remittance, every refund too.
    let expected: BTreeSet<String> = captured.iter().chain(&due).cloned().collect();
    assert_eq!(payments.keys().cloned().collect::<BTreeSet<_>>(), expected);
    assert!(payments.values().all(|count| *count == 1), "{payments:?}");
    assert_eq!(refunds.len(), 12, "{refunds:?}");
    assert!(refunds.values().all(|count| *count == 1), "{refunds:?}");
    assert_eq!(
        credited,
        captured
            .iter()
            .map(|id| (id.clone(), 2))
            .collect::<BTreeMap<_, _>>()
    );
    // Credits total 6 × 3.00, whichever remittances carry them.
    let credit_milli: i64 = remittances
        .iter()
        .map(|remittance| {
            let text = remittance["creditTotal"].as_str().unwrap();
            (text.parse::<f64>().unwrap() * 1000.0).round() as i64
        })
        .sum();
    assert_eq!(credit_milli, 18_000);
    assert_eq!(run_remittance(&app).await, Vec::<Value>::new());
    journal_balanced_and_everything_remitted(&app).await;
    audit_is_clean(&app).await;
}

caisse_tests::both_backends!(
    concurrent_cut_offs_remit_each_capture_and_refund_once,
    super::two_cut_offs_at_once_put_every_capture_and_refund_in_exactly_one_remittance
);

/// A payment like `template` (a payment of the shop) authorised under `contract`.
async fn payment_under_contract(app: &TestApp, template: &str, contract: &str) -> String {
    let source = app.state.payments.runner().load(template).await.unwrap();
    let mut details = source.details.expect("the template exists");
    details.payment_id = PaymentId::new();
    details.order_reference = format!("ORD-CONTRACT-{}", next_reference_number());
    details.acquirer_contract = contract.to_string();
    let payment_id = details.payment_id.to_string();
    let command = PaymentCommand::Authorise {
        details: Box::new(details),
        outcome: AuthorisationOutcome::Approved(Authorisation {
            authorisation_code: "123456".into(),
            acquirer_reference: "ACME000000000001".into(),
        }),
    };
    execute(app, &payment_id, command).await;
    payment_id
}

async fn payments_of_two_contracts_go_in_two_remittances(app: TestApp) {
    let simulator = payment(&app, "12.00", "EUR").await;
    let acme = payment_under_contract(&app, &simulator, "ACME-2").await;
    let remittances = run_remittance(&app).await;
    assert_eq!(remittances.len(), 2, "{remittances:#?}");
    let by_contract: BTreeMap<String, Vec<String>> = remittances
        .iter()
        .map(|remittance| {
            (
                remittance["contract"].as_str().unwrap().to_string(),
                ids(&remittance["payments"], "id"),
            )
        })
        .collect();
    assert_eq!(
        by_contract,
        BTreeMap::from([
            ("ACME-2".to_string(), vec![acme.clone()]),
            ("SIMULATOR".to_string(), vec![simulator.clone()]),
        ])
    );
    // A refund goes back under the contract of its payment.
    refund(&app, &acme, "2.00").await;
    let credits = run_remittance(&app).await;
    assert_eq!(credits.len(), 1, "{credits:#?}");
    assert_eq!(credits[0]["contract"], "ACME-2");
    assert_eq!(figures(&credits[0]), (0, "0.00", 1, "2.00", "-2.00"));
    journal_balanced_and_everything_remitted(&app).await;
    audit_is_clean(&app).await;
}

caisse_tests::both_backends!(
    one_remittance_per_acquirer_contract,
    super::payments_of_two_contracts_go_in_two_remittances
);

async fn a_refund_remitted_before_a_crash_is_recorded_by_the_next_run_once(app: TestApp) {
    let payment_id = app.captured_payment("40.00").await;
    refund(&app, &payment_id, "15.00").await;
    let payment = app.state.payments.runner().load(&payment_id).await.unwrap();
    let refund_id = payment.refunds[0].refund_id;
    // What a crash after `RefundRemitted` and before `RemittanceSubmitted` leaves.
    let remittance_id = RemittanceId::new();
    let command = PaymentCommand::RemitRefund {
        remittance_id,
        refund_id,
        occurred_at: app.clock.now(),
    };
    execute(&app, &payment_id, command).await;

    // Too young to be taken for a crash, and no longer waiting: nothing is sent.
    assert_eq!(run_remittance(&app).await, Vec::<Value>::new());
    app.clock.advance(chrono::Duration::minutes(11));
    let recovered = run_remittance(&app).await;
    assert_eq!(recovered.len(), 1, "{recovered:#?}");
    assert_eq!(recovered[0]["id"], remittance_id.to_string());
    assert_eq!(figures(&recovered[0]), (0, "0.00", 1, "15.00", "-15.00"));
    assert_eq!(
        recovered[0]["refunds"][0]["refundId"],
        refund_id.to_string()
    );
    assert_eq!(run_remittance(&app).await, Vec::<Value>::new());
    journal_balanced_and_everything_remitted(&app).await;
    audit_is_clean(&app).await;
}

caisse_tests::both_backends!(
    orphan_refunds_are_recovered_once,
    super::a_refund_remitted_before_a_crash_is_recorded_by_the_next_run_once
);
