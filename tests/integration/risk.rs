//! Risk controls, 3-D Secure and the payment guarantee end to end over GraphQL
//! (FEATURES SE-1, SE-2, RC-1..8): each 3DS outcome of the simulator, the
//! challenge and its abandonment, each control in each mode, grey lists as
//! events, the outstanding cap under concurrency, decisions and counters.

use caisse_application::ports::Clock;
use caisse_tests::{both_backends, data, error_code, payment_input, TestApp};
use serde_json::{json, Value};

const PAYMENT_FIELDS: &str =
    "id status amount authorisedAmount guarantee threeDsEnrolled threeDsStatus
    card { issuingCountry fingerprint } refusal { code message }
    risk { outcome checks { control mode fired reason detail } }";

async fn create(app: &TestApp, input: Value) -> Value {
    let query = format!(
        "mutation($input: CreatePaymentInput!) {{ createPayment(input: $input) {{ {PAYMENT_FIELDS} }} }}"
    );
    let response = app.graphql(&query, json!({ "input": input })).await;
    data(&response)["createPayment"].clone()
}

async fn payment(app: &TestApp, id: &Value) -> Value {
    let query = format!(
        "query($id: ID!) {{ payment(id: $id) {{ {PAYMENT_FIELDS} history {{ type actor }} }} }}"
    );
    let response = app.graphql(&query, json!({ "id": id })).await;
    data(&response)["payment"].clone()
}

fn with_card(amount: &str, card: &str) -> Value {
    let mut input = payment_input(
        amount,
        &format!("ORD-RISK-{}", caisse_tests::next_reference_number()),
    );
    input["card"]["number"] = json!(card);
    input
}

fn history_types(payment: &Value) -> Vec<String> {
    payment["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| event["type"].as_str().unwrap().to_string())
        .collect()
}

fn check<'a>(payment: &'a Value, control: &str) -> Option<&'a Value> {
    payment["risk"]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["control"] == control)
}

const FRICTIONLESS: &str = "4970100000000006";
const CHALLENGE: &str = "4970100000000105";
const AUTHENTICATION_FAILED: &str = "4970100000000113";
const NOT_ENROLLED: &str = "4970100000000121";
const DIRECTORY_UNAVAILABLE: &str = "4970100000000139";
const ATTEMPTED: &str = "4970100000000147";
const VIRTUAL: &str = "4970109900000008";
const VISA_ELECTRON: &str = "4917300000000008";

async fn configure(app: &TestApp, input: Value) -> Value {
    let mut input = input;
    input["shopId"] = json!(app.shop_id);
    app.graphql(
        "mutation($input: ConfigureRiskControlInput!) { configureRiskControl(input: $input) {
            controls { control mode outstandingWindowDays outstandingAmountMax shopCountries } } }",
        json!({ "input": input }),
    )
    .await
}

async fn set_mode(app: &TestApp, control: &str, mode: &str, extra: Value) {
    let mut input = json!({ "control": control, "mode": mode });
    if let (Some(input), Some(extra)) = (input.as_object_mut(), extra.as_object()) {
        for (key, value) in extra {
            input.insert(key.clone(), value.clone());
        }
    }
    let response = configure(app, input).await;
    data(&response);
}

async fn add_entry(app: &TestApp, entry: Value) -> Value {
    let mut entry = entry;
    entry["shopId"] = json!(app.shop_id);
    app.graphql(
        "mutation($input: AddGreyListEntryInput!) { addGreyListEntry(input: $input) }",
        json!({ "input": entry }),
    )
    .await
}

async fn three_ds_outcomes_give_their_guarantee(app: TestApp) {
    let cases = [
        (
            FRICTIONLESS,
            "AUTHORISED",
            "ENROLLED",
            "AUTHENTICATED",
            "YES",
        ),
        (ATTEMPTED, "AUTHORISED", "ENROLLED", "ATTEMPTED", "YES"),
        (AUTHENTICATION_FAILED, "REFUSED", "ENROLLED", "FAILED", "NO"),
        (
            NOT_ENROLLED,
            "AUTHORISED",
            "NOT_ENROLLED",
            "NOT_PERFORMED",
            "NO",
        ),
        (
            DIRECTORY_UNAVAILABLE,
            "AUTHORISED",
            "UNKNOWN",
            "UNAVAILABLE",
            "UNKNOWN",
        ),
    ];
    let mut ids = Vec::new();
    for (card, status, enrolled, three_ds_status, guarantee) in cases {
        let created = create(&app, with_card("20.00", card)).await;
        assert_eq!(created["status"], status, "{card}: {created}");
        assert_eq!(created["threeDsEnrolled"], enrolled, "{card}: {created}");
        assert_eq!(
            created["threeDsStatus"], three_ds_status,
            "{card}: {created}"
        );
        assert_eq!(created["guarantee"], guarantee, "{card}: {created}");
        // The same in the views (cash management) as in the real-time answer.
        let viewed = payment(&app, &created["id"]).await;
        assert_eq!(viewed["guarantee"], guarantee, "{card}: {viewed}");
        assert_eq!(viewed["threeDsStatus"], three_ds_status);
        ids.push((created["id"].clone(), guarantee));
    }
    let failed = payment(&app, &ids[2].0).await;
    assert_eq!(failed["refusal"]["code"], "THREE_DS_FAILED");
    // MOTO has no buyer browser: not authenticated, no guarantee.
    let mut moto = with_card("20.00", FRICTIONLESS);
    moto["channel"] = json!("MOTO");
    moto["card"]["cvv"] = Value::Null;
    let moto = create(&app, moto).await;
    assert_eq!(moto["status"], "AUTHORISED");
    assert_eq!(moto["threeDsEnrolled"], "NOT_CHECKED");
    assert_eq!(moto["threeDsStatus"], "NOT_PERFORMED");
    assert_eq!(moto["guarantee"], "NO");
    // The guarantee is in the event history too (SE-2 b).
    let response = app
        .graphql(
            "query($id: ID!) { payment(id: $id) { history { type data } } }",
            json!({ "id": ids[0].0 }),
        )
        .await;
    let history = data(&response)["payment"]["history"]
        .as_array()
        .unwrap()
        .clone();
    let authorised = history
        .iter()
        .find(|e| e["type"] == "PaymentAuthorised")
        .unwrap();
    let event: Value = serde_json::from_str(authorised["data"].as_str().unwrap()).unwrap();
    assert_eq!(
        event["PaymentAuthorised"]["details"]["three_ds"]["guarantee"], "YES",
        "{event}"
    );
    // Filters and totals by guarantee (SE-2 c).
    let response = app
        .graphql(
            "{ yes: payments(filter: {guarantee: YES}) { edges { node { id guarantee } } }
               unknown: payments(filter: {guarantee: UNKNOWN}) { edges { node { id } } } }",
            json!({}),
        )
        .await;
    let yes = data(&response)["yes"]["edges"].as_array().unwrap().clone();
    assert_eq!(yes.len(), 2, "{response}");
    assert!(yes.iter().all(|p| p["node"]["guarantee"] == "YES"));
    assert_eq!(
        data(&response)["unknown"]["edges"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let response = app
        .graphql(
            "query($shop: ID!) { cashSummary(shopId: $shop, from: \"2026-03-02\", to: \"2026-03-02\") {
                channel byGuarantee { guarantee kind count total } } }",
            json!({ "shop": app.shop_id }),
        )
        .await;
    let ecommerce = data(&response)["cashSummary"]
        .as_array()
        .unwrap()
        .iter()
        .find(|entry| entry["channel"] == "ECOMMERCE")
        .unwrap()
        .clone();
    let by_guarantee = ecommerce["byGuarantee"].as_array().unwrap().clone();
    let authorised_with = |guarantee: &str| {
        by_guarantee
            .iter()
            .find(|t| t["guarantee"] == guarantee && t["kind"] == "AUTHORISED")
            .map(|t| {
                (
                    t["count"].as_i64().unwrap(),
                    t["total"].as_str().unwrap().to_string(),
                )
            })
    };
    assert_eq!(
        authorised_with("YES"),
        Some((2, "40.00".to_string())),
        "{response}"
    );
    assert_eq!(
        authorised_with("NO"),
        Some((1, "20.00".to_string())),
        "{response}"
    );
    assert!(by_guarantee
        .iter()
        .any(|t| t["guarantee"] == "NO" && t["kind"] == "REFUSED" && t["count"] == 1));
    assert_eq!(
        authorised_with("UNKNOWN"),
        Some((1, "20.00".to_string())),
        "{response}"
    );
}
both_backends!(
    three_ds_outcomes_give_their_guarantee_in_the_answer_history_and_views,
    super::three_ds_outcomes_give_their_guarantee
);

async fn complete(app: &TestApp, id: &Value, result: &str) -> Value {
    let query = format!(
        "mutation($id: ID!, $result: ChallengeResult!) {{ completeThreeDsChallenge(paymentId: $id, result: $result) {{ {PAYMENT_FIELDS} }} }}"
    );
    app.graphql(&query, json!({ "id": id, "result": result }))
        .await
}

async fn a_challenge_waits_for_its_result(app: TestApp) {
    let pending = create(&app, with_card("75.00", CHALLENGE)).await;
    assert_eq!(pending["status"], "AUTHENTICATION_PENDING", "{pending}");
    assert_eq!(pending["threeDsStatus"], "CHALLENGE_PENDING");
    assert_eq!(pending["guarantee"], "UNKNOWN");
    assert_eq!(pending["authorisedAmount"], "0.00");
    // Nothing can be done to it until the result comes.
    let response = app
        .graphql(
            "mutation($id: ID!) { cancelPayment(id: $id) { status } }",
            json!({ "id": pending["id"] }),
        )
        .await;
    assert_eq!(error_code(&response), "PAYMENT_AUTHENTICATION_PENDING");
    let response = complete(&app, &pending["id"], "SUCCESS").await;
    let completed = &data(&response)["completeThreeDsChallenge"];
    assert_eq!(completed["status"], "AUTHORISED", "{completed}");
    assert_eq!(completed["threeDsStatus"], "AUTHENTICATED");
    assert_eq!(completed["guarantee"], "YES");
    let viewed = payment(&app, &pending["id"]).await;
    assert_eq!(viewed["status"], "AUTHORISED");
    assert_eq!(viewed["authorisedAmount"], "75.00");
    assert_eq!(viewed["guarantee"], "YES");
    assert_eq!(
        history_types(&viewed),
        [
            "PaymentAuthenticationPending",
            "PaymentAuthenticated",
            "PaymentAuthorised"
        ]
    );
    // A second result is refused: one authorisation only.
    let response = complete(&app, &pending["id"], "SUCCESS").await;
    assert_eq!(error_code(&response), "PAYMENT_NOT_AUTHENTICATION_PENDING");

    let failed = create(&app, with_card("30.00", CHALLENGE)).await;
    let response = complete(&app, &failed["id"], "FAILURE").await;
    let refused = &data(&response)["completeThreeDsChallenge"];
    assert_eq!(refused["status"], "REFUSED");
    assert_eq!(refused["refusal"]["code"], "THREE_DS_FAILED");
    assert_eq!(refused["guarantee"], "NO");
    let viewed = payment(&app, &failed["id"]).await;
    assert_eq!(viewed["status"], "REFUSED");

    // Nobody answers: the scheduler abandons it after the timeout (15 min).
    let abandoned = create(&app, with_card("12.00", CHALLENGE)).await;
    app.clock.advance(chrono::Duration::minutes(10));
    app.run_scheduler().await;
    assert_eq!(
        payment(&app, &abandoned["id"]).await["status"],
        "AUTHENTICATION_PENDING"
    );
    app.clock.advance(chrono::Duration::minutes(6));
    app.run_scheduler().await;
    let viewed = payment(&app, &abandoned["id"]).await;
    assert_eq!(viewed["status"], "ABANDONED", "{viewed}");
    assert_eq!(
        history_types(&viewed),
        [
            "PaymentAuthenticationPending",
            "PaymentAuthenticationAbandoned"
        ]
    );
    let response = complete(&app, &abandoned["id"], "SUCCESS").await;
    assert_eq!(error_code(&response), "PAYMENT_NOT_AUTHENTICATION_PENDING");
}
both_backends!(
    a_challenge_waits_then_is_authorised_refused_or_abandoned,
    super::a_challenge_waits_for_its_result
);

async fn three_ds_enrolment_is_per_brand_and_channel(app: TestApp) {
    let response = app
        .graphql(
            "mutation($shop: ID!) { configureThreeDs(input: {shopId: $shop, brands: [CB], channels: [ECOMMERCE]}) {
                threeDsBrands threeDsChannels } }",
            json!({ "shop": app.shop_id }),
        )
        .await;
    assert_eq!(
        data(&response)["configureThreeDs"]["threeDsBrands"],
        json!(["CB"])
    );
    let mut visa = with_card("10.00", FRICTIONLESS);
    visa["card"]["brand"] = json!("VISA");
    let visa = create(&app, visa).await;
    assert_eq!(visa["threeDsEnrolled"], "NOT_CHECKED", "{visa}");
    assert_eq!(visa["guarantee"], "NO");
    let cb = create(&app, with_card("10.00", FRICTIONLESS)).await;
    assert_eq!(cb["guarantee"], "YES");
    let mut mobile = with_card("10.00", FRICTIONLESS);
    mobile["channel"] = json!("MCOMMERCE");
    assert_eq!(create(&app, mobile).await["threeDsEnrolled"], "NOT_CHECKED");
    // MOTO cannot be authenticated: a clear error naming the field.
    let response = app
        .graphql(
            "mutation($shop: ID!) { configureThreeDs(input: {shopId: $shop, brands: [CB], channels: [MOTO]}) { threeDsBrands } }",
            json!({ "shop": app.shop_id }),
        )
        .await;
    assert_eq!(error_code(&response), "INVALID_RISK_SETTING");
    assert_eq!(response["errors"][0]["extensions"]["field"], "channels");
    let response = app
        .graphql(
            "mutation($shop: ID!) { configureThreeDs(input: {shopId: $shop, brands: [AMEX], channels: [ECOMMERCE]}) { threeDsBrands } }",
            json!({ "shop": app.shop_id }),
        )
        .await;
    assert_eq!(response["errors"][0]["extensions"]["field"], "brands");
}
both_backends!(
    three_ds_enrolment_is_per_brand_and_channel_and_checked,
    super::three_ds_enrolment_is_per_brand_and_channel
);

/// One control through OFF, INFORMATIVE and BLOCKING: the payment made by
/// `input` passes unchecked, passes flagged, then is refused with `reason`.
async fn in_each_mode(
    app: &TestApp,
    control: &str,
    extra: Value,
    input: impl Fn() -> Value,
    reason: &str,
) {
    let off = create(app, input()).await;
    assert_eq!(off["status"], "AUTHORISED", "{control} OFF: {off}");
    assert!(check(&off, control).is_none(), "{control} OFF ran: {off}");
    assert_eq!(off["risk"]["outcome"], "ACCEPTED");

    set_mode(app, control, "INFORMATIVE", extra.clone()).await;
    let informative = create(app, input()).await;
    assert_eq!(
        informative["status"], "AUTHORISED",
        "{control} INFORMATIVE: {informative}"
    );
    let fired = check(&informative, control).expect("the control ran");
    assert_eq!(fired["fired"], true, "{control}: {informative}");
    assert_eq!(fired["mode"], "INFORMATIVE");
    assert_eq!(fired["reason"], reason);
    assert_eq!(informative["risk"]["outcome"], "FLAGGED");

    set_mode(app, control, "BLOCKING", extra).await;
    let blocked = create(app, input()).await;
    assert_eq!(
        blocked["status"], "REFUSED",
        "{control} BLOCKING: {blocked}"
    );
    assert_eq!(blocked["refusal"]["code"], reason);
    assert!(!blocked["refusal"]["message"].as_str().unwrap().is_empty());
    assert_eq!(blocked["risk"]["outcome"], "REFUSED");
    // The decision is part of the payment's events and of the views.
    let viewed = payment(app, &blocked["id"]).await;
    assert_eq!(viewed["risk"]["outcome"], "REFUSED", "{viewed}");
    assert_eq!(check(&viewed, control).unwrap()["fired"], true);
    assert_eq!(history_types(&viewed), ["PaymentRefused"]);
    set_mode(app, control, "OFF", json!({})).await;
}

async fn grey_lists_in_each_mode(app: TestApp) {
    let card = "4970100000000204";
    let response = add_entry(
        &app,
        json!({ "list": "CARD", "cardNumber": card, "comment": "chargeback 2026-02" }),
    )
    .await;
    data(&response);
    in_each_mode(
        &app,
        "CARD_GREY_LIST",
        json!({}),
        || with_card("15.00", card),
        "RISK_CARD_GREY_LISTED",
    )
    .await;
    data(&add_entry(&app, json!({ "list": "BIN", "value": "49701099" })).await);
    in_each_mode(
        &app,
        "CARD_GREY_LIST",
        json!({}),
        || with_card("15.00", VIRTUAL),
        "RISK_BIN_GREY_LISTED",
    )
    .await;
    data(&add_entry(&app, json!({ "list": "COUNTRY", "value": "gb" })).await);
    in_each_mode(
        &app,
        "CARD_COUNTRY_GREY_LIST",
        json!({}),
        || with_card("15.00", VISA_ELECTRON),
        "RISK_CARD_COUNTRY_GREY_LISTED",
    )
    .await;
    data(&add_entry(&app, json!({ "list": "IP", "value": "198.51.100.0/24" })).await);
    data(&add_entry(&app, json!({ "list": "IP", "value": "2001:db8:1::/48" })).await);
    in_each_mode(
        &app,
        "IP_GREY_LIST",
        json!({}),
        || {
            let mut input = with_card("15.00", FRICTIONLESS);
            input["buyerIp"] = json!("198.51.100.77");
            input
        },
        "RISK_IP_GREY_LISTED",
    )
    .await;
    in_each_mode(
        &app,
        "IP_GREY_LIST",
        json!({}),
        || {
            let mut input = with_card("15.00", FRICTIONLESS);
            input["buyerIp"] = json!("2001:db8:1:2::9");
            input
        },
        "RISK_IP_GREY_LISTED",
    )
    .await;
}
both_backends!(
    grey_list_controls_off_informative_blocking,
    super::grey_lists_in_each_mode
);

async fn card_filters_in_each_mode(app: TestApp) {
    in_each_mode(
        &app,
        "VIRTUAL_CARD",
        json!({}),
        || with_card("15.00", VIRTUAL),
        "RISK_VIRTUAL_CARD",
    )
    .await;
    in_each_mode(
        &app,
        "SYSTEMATIC_AUTHORISATION_CARD",
        json!({}),
        || with_card("15.00", VISA_ELECTRON),
        "RISK_SYSTEMATIC_AUTHORISATION_CARD",
    )
    .await;
    // FR card, FR IP, buyer says DE.
    in_each_mode(
        &app,
        "COUNTRY_CONSISTENCY",
        json!({}),
        || {
            let mut input = with_card("15.00", FRICTIONLESS);
            input["buyerCountry"] = json!("DE");
            input
        },
        "RISK_COUNTRY_INCONSISTENT",
    )
    .await;
    // Everything FR, but the shop sells to BE and LU only.
    in_each_mode(
        &app,
        "COUNTRY_CONSISTENCY",
        json!({ "shopCountries": ["BE", "LU"] }),
        || with_card("15.00", FRICTIONLESS),
        "RISK_COUNTRY_INCONSISTENT",
    )
    .await;
    // A not-enrolled card gives no guarantee.
    in_each_mode(
        &app,
        "PAYMENT_GUARANTEE",
        json!({}),
        || with_card("150.00", NOT_ENROLLED),
        "RISK_NO_GUARANTEE",
    )
    .await;
    // Below the minimum amount the guarantee filter lets it through.
    set_mode(
        &app,
        "PAYMENT_GUARANTEE",
        "BLOCKING",
        json!({ "guaranteeAmountMin": "100.00" }),
    )
    .await;
    let small = create(&app, with_card("50.00", NOT_ENROLLED)).await;
    assert_eq!(small["status"], "AUTHORISED", "{small}");
    assert_eq!(check(&small, "PAYMENT_GUARANTEE").unwrap()["fired"], false);
    // After a challenge, RC-8 runs on the challenge's outcome.
    set_mode(&app, "PAYMENT_GUARANTEE", "BLOCKING", json!({})).await;
    let pending = create(&app, with_card("150.00", CHALLENGE)).await;
    assert!(check(&pending, "PAYMENT_GUARANTEE").is_none(), "{pending}");
    let response = complete(&app, &pending["id"], "SUCCESS").await;
    let completed = &data(&response)["completeThreeDsChallenge"];
    assert_eq!(completed["status"], "AUTHORISED");
    assert_eq!(
        check(completed, "PAYMENT_GUARANTEE").unwrap()["fired"],
        false
    );
    // A phone order can never carry a guarantee: the filter is not its to fail.
    let mut moto = with_card("150.00", FRICTIONLESS);
    moto["channel"] = json!("MOTO");
    moto["card"]["cvv"] = Value::Null;
    let moto = create(&app, moto).await;
    assert_eq!(moto["status"], "AUTHORISED", "{moto}");
    assert_eq!(moto["guarantee"], "NO");
    assert!(check(&moto, "PAYMENT_GUARANTEE").is_none(), "{moto}");
}
both_backends!(
    card_and_country_and_guarantee_filters_off_informative_blocking,
    super::card_filters_in_each_mode
);

async fn outstanding_in_each_mode(app: TestApp) {
    let card = "4970100000000303";
    let limits = json!({ "outstanding": { "windowDays": 7, "amountMax": "100.00" } });
    // OFF: nothing counted.
    assert_eq!(
        create(&app, with_card("60.00", card)).await["status"],
        "AUTHORISED"
    );
    set_mode(&app, "CARD_OUTSTANDING", "INFORMATIVE", limits.clone()).await;
    let first = create(&app, with_card("60.00", card)).await;
    assert_eq!(
        check(&first, "CARD_OUTSTANDING").unwrap()["fired"],
        false,
        "{first}"
    );
    let second = create(&app, with_card("60.00", card)).await;
    assert_eq!(second["status"], "AUTHORISED");
    let fired = check(&second, "CARD_OUTSTANDING").unwrap();
    assert_eq!(fired["fired"], true, "{second}");
    assert_eq!(fired["reason"], "RISK_CARD_OUTSTANDING_EXCEEDED");
    set_mode(&app, "CARD_OUTSTANDING", "BLOCKING", limits.clone()).await;
    let blocked = create(&app, with_card("5.00", card)).await;
    assert_eq!(blocked["status"], "REFUSED", "{blocked}");
    assert_eq!(blocked["refusal"]["code"], "RISK_CARD_OUTSTANDING_EXCEEDED");
    // Another card is not affected.
    assert_eq!(
        create(&app, with_card("60.00", FRICTIONLESS)).await["status"],
        "AUTHORISED"
    );
    // The window rolls: 8 days later the card is free again.
    app.clock.advance(chrono::Duration::days(8));
    assert_eq!(
        create(&app, with_card("60.00", card)).await["status"],
        "AUTHORISED"
    );
    // A count cap.
    set_mode(
        &app,
        "CARD_OUTSTANDING",
        "BLOCKING",
        json!({ "outstanding": { "windowDays": 1, "countMax": 2 } }),
    )
    .await;
    let counted = "4970100000000311";
    assert_eq!(
        create(&app, with_card("1.00", counted)).await["status"],
        "AUTHORISED"
    );
    assert_eq!(
        create(&app, with_card("1.00", counted)).await["status"],
        "AUTHORISED"
    );
    let third = create(&app, with_card("1.00", counted)).await;
    assert_eq!(
        third["refusal"]["code"], "RISK_CARD_OUTSTANDING_EXCEEDED",
        "{third}"
    );
    // A payment the issuer refuses gives its outstanding back.
    let declined = "4970100000000014";
    set_mode(
        &app,
        "CARD_OUTSTANDING",
        "BLOCKING",
        json!({ "outstanding": { "windowDays": 1, "countMax": 1 } }),
    )
    .await;
    assert_eq!(
        create(&app, with_card("1.00", declined)).await["refusal"]["code"],
        "05"
    );
    assert_eq!(
        create(&app, with_card("1.00", declined)).await["refusal"]["code"],
        "05"
    );
}
both_backends!(
    card_outstanding_off_informative_blocking_and_window,
    super::outstanding_in_each_mode
);

async fn settings_are_checked_and_recorded(app: TestApp) {
    let response = configure(
        &app,
        json!({ "control": "CARD_OUTSTANDING", "mode": "BLOCKING" }),
    )
    .await;
    assert_eq!(error_code(&response), "INVALID_RISK_SETTING");
    assert_eq!(response["errors"][0]["extensions"]["field"], "outstanding");
    let response = configure(
        &app,
        json!({ "control": "CARD_OUTSTANDING", "mode": "BLOCKING",
        "outstanding": { "windowDays": 0, "countMax": 3 } }),
    )
    .await;
    assert_eq!(
        response["errors"][0]["extensions"]["field"],
        "outstanding.windowDays"
    );
    let response = configure(
        &app,
        json!({ "control": "VIRTUAL_CARD", "mode": "BLOCKING", "shopCountries": ["FR"] }),
    )
    .await;
    assert_eq!(
        response["errors"][0]["extensions"]["field"],
        "shopCountries"
    );
    let response = configure(&app, json!({ "control": "COUNTRY_CONSISTENCY", "mode": "BLOCKING", "shopCountries": ["France"] })).await;
    assert_eq!(
        response["errors"][0]["extensions"]["field"],
        "shopCountries"
    );
    let response = configure(&app, json!({ "control": "VIRTUAL_CARD", "mode": "OFF" })).await;
    assert_eq!(error_code(&response), "RISK_SETTING_UNCHANGED");
    set_mode(&app, "VIRTUAL_CARD", "BLOCKING", json!({})).await;
    let response = app
        .graphql(
            "query($shop: ID!) { riskSettings(shopId: $shop) { controls { control feature mode } threeDsBrands threeDsChannels } }",
            json!({ "shop": app.shop_id }),
        )
        .await;
    let settings = &data(&response)["riskSettings"];
    let controls = settings["controls"].as_array().unwrap();
    assert_eq!(controls.len(), 8);
    let virtual_card = controls
        .iter()
        .find(|c| c["control"] == "VIRTUAL_CARD")
        .unwrap();
    assert_eq!(virtual_card["mode"], "BLOCKING");
    assert_eq!(virtual_card["feature"], "RC-5");
    assert_eq!(
        settings["threeDsBrands"],
        json!(["CB", "VISA", "MASTERCARD"])
    );
    // Another merchant cannot touch this shop's settings.
    let other = app.other_merchant().await;
    let response = app
        .graphql_as(
            &other.test_key,
            "mutation($shop: ID!) { configureRiskControl(input: {shopId: $shop, control: VIRTUAL_CARD, mode: OFF}) { shopId } }",
            json!({ "shop": app.shop_id }),
        )
        .await;
    assert_eq!(error_code(&response), "SHOP_NOT_FOUND");
    // Who changed what, when: the event log.
    let response = app
        .graphql(
            "{ events(first: 200) { events { type actor aggregateType } } }",
            json!({}),
        )
        .await;
    let events = data(&response)["events"]["events"]
        .as_array()
        .unwrap()
        .clone();
    let configured = events
        .iter()
        .find(|e| e["type"] == "RiskControlConfigured")
        .unwrap_or_else(|| panic!("no RiskControlConfigured in {events:?}"));
    assert!(
        configured["actor"]
            .as_str()
            .unwrap()
            .starts_with("api_key:"),
        "{configured}"
    );
}
both_backends!(
    risk_settings_are_checked_recorded_and_scoped,
    super::settings_are_checked_and_recorded
);

async fn grey_list_entries_are_managed_as_events(app: TestApp) {
    let response = add_entry(&app, json!({ "list": "IP", "value": "203.0.113.5/24" })).await;
    assert_eq!(error_code(&response), "INVALID_GREY_LIST_VALUE");
    assert_eq!(response["errors"][0]["extensions"]["field"], "value");
    assert!(response["errors"][0]["message"]
        .as_str()
        .unwrap()
        .contains("203.0.113.0/24"));
    let response = add_entry(&app, json!({ "list": "CARD", "value": FRICTIONLESS })).await;
    assert_eq!(
        response["errors"][0]["extensions"]["field"],
        "cardFingerprint"
    );
    let response = add_entry(&app, json!({ "list": "BIN", "value": "12345" })).await;
    assert_eq!(error_code(&response), "INVALID_GREY_LIST_VALUE");
    let expires = app.clock.now() + chrono::Duration::days(2);
    let response = add_entry(&app, json!({ "list": "COUNTRY", "value": "FR", "comment": "campaign", "expiresAt": expires.to_rfc3339() })).await;
    let entry_id = data(&response)["addGreyListEntry"].clone();
    let response = add_entry(&app, json!({ "list": "COUNTRY", "value": "fr" })).await;
    assert_eq!(error_code(&response), "GREY_LIST_ENTRY_EXISTS");
    set_mode(&app, "CARD_COUNTRY_GREY_LIST", "BLOCKING", json!({})).await;
    assert_eq!(
        create(&app, with_card("9.00", FRICTIONLESS)).await["status"],
        "REFUSED"
    );
    // Expired: it no longer applies.
    app.clock.advance(chrono::Duration::days(3));
    assert_eq!(
        create(&app, with_card("9.00", FRICTIONLESS)).await["status"],
        "AUTHORISED"
    );
    data(&add_entry(&app, json!({ "list": "COUNTRY", "value": "FR" })).await);
    data(
        &add_entry(
            &app,
            json!({ "list": "BIN", "value": "555555", "comment": "Belgian debit" }),
        )
        .await,
    );
    let response = app
        .graphql(
            "query($shop: ID!) { all: greyListEntries(shopId: $shop) { id list value comment addedBy removedAt }
                countries: greyListEntries(shopId: $shop, list: COUNTRY) { id }
                search: greyListEntries(shopId: $shop, search: \"belgian\") { value } }",
            json!({ "shop": app.shop_id }),
        )
        .await;
    let lists = data(&response);
    assert_eq!(lists["countries"].as_array().unwrap().len(), 1, "{lists}");
    assert_eq!(lists["search"], json!([{ "value": "555555" }]));
    let country = lists["countries"][0]["id"].clone();
    assert_eq!(country, entry_id);
    assert_eq!(
        create(&app, with_card("9.00", FRICTIONLESS)).await["status"],
        "REFUSED"
    );
    // Removal takes effect on the next payment.
    let response = app
        .graphql(
            "mutation($id: ID!) { removeGreyListEntry(entryId: $id) }",
            json!({ "id": country }),
        )
        .await;
    assert_eq!(data(&response)["removeGreyListEntry"], true);
    assert_eq!(
        create(&app, with_card("9.00", FRICTIONLESS)).await["status"],
        "AUTHORISED"
    );
    let response = app
        .graphql(
            "mutation($id: ID!) { removeGreyListEntry(entryId: $id) }",
            json!({ "id": country }),
        )
        .await;
    assert_eq!(error_code(&response), "GREY_LIST_ENTRY_NOT_FOUND");
    // Another merchant neither sees nor removes it.
    let other = app.other_merchant().await;
    let bin = app
        .graphql(
            "query($shop: ID!) { greyListEntries(shopId: $shop, list: BIN) { id } }",
            json!({ "shop": app.shop_id }),
        )
        .await;
    let bin_id = data(&bin)["greyListEntries"][0]["id"].clone();
    let response = app
        .graphql_as(
            &other.test_key,
            "mutation($id: ID!) { removeGreyListEntry(entryId: $id) }",
            json!({ "id": bin_id }),
        )
        .await;
    assert_eq!(error_code(&response), "GREY_LIST_ENTRY_NOT_FOUND");
}
both_backends!(
    grey_list_entries_are_added_searched_expired_and_removed,
    super::grey_list_entries_are_managed_as_events
);

async fn twenty_parallel_payments_on_one_card(app: TestApp) {
    set_mode(
        &app,
        "CARD_OUTSTANDING",
        "BLOCKING",
        json!({ "outstanding": { "windowDays": 7, "amountMax": "100.00" } }),
    )
    .await;
    let card = "4970100000000402";
    let attempts = (0..20).map(|_| {
        let app = &app;
        async move { create(app, with_card("30.00", card)).await }
    });
    let results = futures::future::join_all(attempts).await;
    let authorised: Vec<&Value> = results
        .iter()
        .filter(|p| p["status"] == "AUTHORISED")
        .collect();
    let refused: Vec<&Value> = results
        .iter()
        .filter(|p| p["status"] == "REFUSED")
        .collect();
    assert_eq!(authorised.len() + refused.len(), 20, "{results:?}");
    // 3 × 30.00 fit under 100.00; a fourth would not. Never more.
    assert_eq!(authorised.len(), 3, "{results:?}");
    assert!(refused
        .iter()
        .all(|p| p["refusal"]["code"] == "RISK_CARD_OUTSTANDING_EXCEEDED"));
    // The counter agrees.
    let fingerprint = authorised[0]["card"]["fingerprint"].clone();
    let response = app
        .graphql(
            "query($shop: ID!, $card: String) { riskCounters(shopId: $shop, from: \"2026-03-02\", to: \"2026-03-02\", cardFingerprint: $card, windowDays: 7) {
                outstanding { cardFingerprint amount currency paymentCount }
                rules { businessDate control ran firedBlocking firedInformative } } }",
            json!({ "shop": app.shop_id, "card": fingerprint }),
        )
        .await;
    let counters = &data(&response)["riskCounters"];
    assert_eq!(counters["outstanding"][0]["amount"], "90.00", "{counters}");
    assert_eq!(counters["outstanding"][0]["paymentCount"], 3);
    let rule = counters["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["control"] == "CARD_OUTSTANDING")
        .unwrap();
    assert_eq!(rule["ran"], 20, "{counters}");
    assert_eq!(rule["firedBlocking"], 17);
    let response = app
        .graphql(
            "query($shop: ID!) { riskDecisions(shopId: $shop, outcome: REFUSED, control: CARD_OUTSTANDING, first: 50) {
                paymentId outcome fired refusalCode checks { control fired } } }",
            json!({ "shop": app.shop_id }),
        )
        .await;
    let decisions = data(&response)["riskDecisions"].as_array().unwrap().clone();
    assert_eq!(decisions.len(), 17, "{decisions:?}");
    assert!(decisions
        .iter()
        .all(|d| d["refusalCode"] == "RISK_CARD_OUTSTANDING_EXCEEDED"
            && d["fired"] == json!(["CARD_OUTSTANDING"])));
}
both_backends!(
    the_outstanding_cap_holds_under_twenty_parallel_payments,
    super::twenty_parallel_payments_on_one_card
);
