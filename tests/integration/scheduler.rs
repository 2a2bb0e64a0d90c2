//! The scheduler: expiry of unvalidated authorisations, the daily remittance
//! cut-off in the shop's time zone, exactly once with two processes, and work
//! missed while stopped done on restart — time moved by the injected clock.

use caisse_tests::{both_backends, data, error_code, payment_input, TestApp};
use chrono::{Duration, TimeZone, Utc};
use serde_json::{json, Value};

const PAYMENT: &str = "query($id: ID!) { payment(id: $id) { id status capturedAmount remittanceId
    history { type actor } } }";

async fn payment(app: &TestApp, id: &Value) -> Value {
    let response = app.graphql(PAYMENT, json!({ "id": id })).await;
    data(&response)["payment"].clone()
}

async fn manual_payment(app: &TestApp, amount: &str, reference: &str) -> Value {
    let mut input = payment_input(amount, reference);
    input["captureMode"] = json!("MANUAL");
    let created = app.create_payment(input).await;
    assert_eq!(created["status"], "AUTHORISED_TO_VALIDATE", "{created}");
    created["id"].clone()
}

/// Work done on payments and remittances, leaving out the daily retention of
/// the online views (which the first pass of each day also runs).
fn payment_work(run: &caisse_application::scheduler::SchedulerRun) -> usize {
    run.done_total() - run.done.get("RETENTION").copied().unwrap_or(0)
}

/// Counts the events of a type in the global log.
async fn count_events(app: &TestApp, event_type: &str) -> i64 {
    app.state
        .db()
        .fetch_optional(
            "SELECT COUNT(*) AS n FROM events WHERE event_type = $1",
            &[event_type.into()],
        )
        .await
        .unwrap()
        .unwrap()
        .int("n")
}

async fn unvalidated_authorisations_expire_after_their_validity(app: TestApp) {
    let lapsing = manual_payment(&app, "25.00", "ORD-LAPSING").await;
    let validated = manual_payment(&app, "30.00", "ORD-VALIDATED").await;
    let response = app
        .graphql(
            "mutation($id: ID!) { validatePayment(id: $id) { status } }",
            json!({ "id": validated }),
        )
        .await;
    assert_eq!(data(&response)["validatePayment"]["status"], "AUTHORISED");

    // Six days on, the authorisation is still valid (7 days for CB/VISA by default).
    app.clock.advance(Duration::days(6));
    let run = app.run_scheduler().await;
    assert_eq!(run.done.get("EXPIRE_AUTHORISATION"), None, "{run:?}");
    assert_eq!(
        payment(&app, &lapsing).await["status"],
        "AUTHORISED_TO_VALIDATE"
    );

    app.clock.advance(Duration::days(1));
    let run = app.run_scheduler().await;
    assert_eq!(run.done.get("EXPIRE_AUTHORISATION"), Some(&1), "{run:?}");
    let expired = payment(&app, &lapsing).await;
    assert_eq!(expired["status"], "EXPIRED");
    let last = expired["history"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(
        last,
        json!({ "type": "PaymentExpired", "actor": "scheduler" })
    );
    // The validated one never expires: its day's cut-off captured it.
    assert_eq!(payment(&app, &validated).await["status"], "CAPTURED");

    // Final: it can no longer be validated, but it can be duplicated (CM-3).
    let response = app
        .graphql(
            "mutation($id: ID!) { validatePayment(id: $id) { status } }",
            json!({ "id": lapsing }),
        )
        .await;
    assert_eq!(error_code(&response), "PAYMENT_EXPIRED");
    let response = app
        .graphql(
            "mutation($id: ID!) { duplicatePayment(id: $id, amount: \"25.00\", orderReference: \"ORD-AGAIN\") { status } }",
            json!({ "id": lapsing }),
        )
        .await;
    assert_eq!(
        data(&response)["duplicatePayment"]["status"],
        "AUTHORISED_TO_VALIDATE"
    );

    // The expiry shows in the cash-management totals of its day.
    let response = app
        .graphql(
            "query($shop: ID!) { cashSummary(shopId: $shop, from: \"2026-03-09\", to: \"2026-03-09\") { expired { count amount } } }",
            json!({ "shop": app.shop_id }),
        )
        .await;
    assert_eq!(
        data(&response)["cashSummary"][0]["expired"],
        json!({ "count": 1, "amount": "25.00" })
    );

    // Running again does nothing more.
    let run = app.run_scheduler().await;
    assert_eq!(payment_work(&run), 0, "{run:?}");
    assert_eq!(count_events(&app, "PaymentExpired").await, 1);
}

async fn the_daily_cut_off_captures_what_is_due_at_22_00_in_paris(app: TestApp) {
    // The clock starts on Monday 2026-03-02 at 10:00 UTC (11:00 in Paris).
    let today = app
        .create_payment(payment_input("10.00", "ORD-TODAY"))
        .await;
    let mut deferred = payment_input("20.00", "ORD-IN-TWO-DAYS");
    deferred["captureDelayDays"] = json!(2);
    let deferred = app.create_payment(deferred).await;

    // 21:59 in Paris (20:59 UTC): not yet.
    app.clock
        .set(Utc.with_ymd_and_hms(2026, 3, 2, 20, 59, 0).unwrap());
    let run = app.run_scheduler().await;
    assert_eq!(payment_work(&run), 0, "{run:?}");
    assert_eq!(payment(&app, &today["id"]).await["status"], "AUTHORISED");

    // 22:00 in Paris: the cut-off of the test and live modes of the shop.
    app.clock
        .set(Utc.with_ymd_and_hms(2026, 3, 2, 21, 0, 0).unwrap());
    let run = app.run_scheduler().await;
    assert_eq!(run.done.get("REMITTANCE_CUT_OFF"), Some(&2), "{run:?}");
    let captured = payment(&app, &today["id"]).await;
    assert_eq!(captured["status"], "CAPTURED");
    assert_eq!(captured["capturedAmount"], "10.00");
    let captured_history = captured["history"].as_array().unwrap();
    assert_eq!(
        captured_history.last().unwrap(),
        &json!({ "type": "PaymentCaptured", "actor": "scheduler" })
    );
    assert_eq!(payment(&app, &deferred["id"]).await["status"], "AUTHORISED");
    let response = app
        .graphql(
            "query($shop: ID!) { remittances(shopId: $shop) { edges { node { businessDate paymentCount total } } } }",
            json!({ "shop": app.shop_id }),
        )
        .await;
    assert_eq!(
        data(&response)["remittances"]["edges"],
        json!([{ "node": { "businessDate": "2026-03-02", "paymentCount": 1, "total": "10.00" } }])
    );

    // Two days later, after 22:00 on Wednesday: Tuesday's and Wednesday's cut-offs
    // run, and the deferred payment is captured on its capture date.
    app.clock
        .set(Utc.with_ymd_and_hms(2026, 3, 4, 21, 30, 0).unwrap());
    let run = app.run_scheduler().await;
    assert_eq!(run.done.get("REMITTANCE_CUT_OFF"), Some(&4), "{run:?}");
    let captured = payment(&app, &deferred["id"]).await;
    assert_eq!(captured["status"], "CAPTURED");
    let response = app
        .graphql(
            "query($shop: ID!) { remittances(shopId: $shop) { edges { node { businessDate paymentCount total } } } }",
            json!({ "shop": app.shop_id }),
        )
        .await;
    assert_eq!(
        data(&response)["remittances"]["edges"][0],
        json!({ "node": { "businessDate": "2026-03-04", "paymentCount": 1, "total": "20.00" } })
    );
    assert_eq!(count_events(&app, "DailyCutOffCompleted").await, 6);
    assert_eq!(count_events(&app, "PaymentCaptured").await, 2);
}

async fn two_schedulers_on_one_database_capture_each_payment_once(app: TestApp) {
    let second = app.second_server(|_| {}).await;
    let mut ids = Vec::new();
    for index in 0..20 {
        let created = app
            .create_payment(payment_input("5.00", &format!("ORD-TWICE-{index}")))
            .await;
        ids.push(created["id"].clone());
    }
    let lapsing = manual_payment(&app, "7.00", "ORD-LAPSING-TWICE").await;
    app.clock
        .set(Utc.with_ymd_and_hms(2026, 3, 9, 21, 0, 0).unwrap());
    // Both processes look at the same due work at the same time, twice over.
    for _ in 0..2 {
        let (first, other) = tokio::join!(
            app.state.scheduler.run_due(),
            second.state.scheduler.run_due()
        );
        let (first, other) = (first.unwrap(), other.unwrap());
        assert!(
            payment_work(&first) + payment_work(&other) <= 1 + 2 * 8,
            "{first:?} {other:?}"
        );
    }
    assert_eq!(count_events(&app, "PaymentCaptured").await, 20);
    assert_eq!(count_events(&app, "PaymentExpired").await, 1);
    // Eight business days (2 to 9 March) for two modes: one cut-off each.
    assert_eq!(count_events(&app, "DailyCutOffCompleted").await, 16);
    let remitted = app
        .state
        .db()
        .fetch_optional(
            "SELECT CAST(SUM(payment_count) AS BIGINT) AS n FROM remittances_view",
            &[],
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        remitted.int("n"),
        20,
        "every payment in exactly one remittance"
    );
    for id in &ids {
        assert_eq!(payment(&app, id).await["status"], "CAPTURED");
    }
    assert_eq!(payment(&app, &lapsing).await["status"], "EXPIRED");
}

async fn work_missed_while_stopped_is_done_when_the_service_starts(app: TestApp) {
    // This server's scheduler is off: the service is "down" from here on.
    let lapsing = manual_payment(&app, "12.00", "ORD-DOWN-LAPSING").await;
    let due = app
        .create_payment(payment_input("13.00", "ORD-DOWN-DUE"))
        .await;
    app.clock.advance(Duration::days(8));

    // A process starting with its scheduler on does the missed work by itself.
    let restarted = app
        .second_server(|config| {
            config.scheduler.enabled = true;
            config.scheduler.interval_ms = 50;
        })
        .await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let expired = payment(&app, &lapsing).await["status"] == "EXPIRED";
        let captured = payment(&app, &due["id"]).await["status"] == "CAPTURED";
        if expired && captured {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "missed work not done after restart"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    drop(restarted);
    // The list left holds only the next cut-offs.
    let list = caisse_api::cli::schedule_list(&app.state).await.unwrap();
    assert!(list.starts_with("2 scheduled item(s)"), "{list}");
    assert!(list.contains("REMITTANCE_CUT_OFF"), "{list}");
    assert!(!list.contains("EXPIRE_AUTHORISATION"), "{list}");
}

async fn the_retention_job_runs_once_a_day(app: TestApp) {
    let first = app.run_scheduler().await;
    assert_eq!(first.done.get("RETENTION"), Some(&1), "{first:?}");
    assert_eq!(app.run_scheduler().await.done.get("RETENTION"), None);
    app.clock.advance(Duration::days(1));
    assert_eq!(app.run_scheduler().await.done.get("RETENTION"), Some(&1));
    assert_eq!(count_events(&app, "OnlineViewsTrimmed").await, 2);
}

async fn schedule_list_shows_what_is_due(app: TestApp) {
    let lapsing = manual_payment(&app, "9.00", "ORD-LISTED").await;
    let list = caisse_api::cli::schedule_list(&app.state).await.unwrap();
    let id = lapsing.as_str().unwrap();
    let line = list
        .lines()
        .find(|line| line.contains(id))
        .unwrap_or_else(|| panic!("{list}"));
    assert!(line.contains("EXPIRE_AUTHORISATION"), "{line}");
    assert!(line.contains("later"), "{line}");
    assert!(line.starts_with("2026-03-09T10:00:00"), "{line}");
    app.clock.advance(Duration::days(7));
    let list = caisse_api::cli::schedule_list(&app.state).await.unwrap();
    assert!(
        list.lines()
            .any(|line| line.contains(id) && line.contains("DUE")),
        "{list}"
    );
}

both_backends!(
    unvalidated_authorisations_expire,
    super::unvalidated_authorisations_expire_after_their_validity
);
both_backends!(
    daily_cut_off_at_22_00_paris,
    super::the_daily_cut_off_captures_what_is_due_at_22_00_in_paris
);
both_backends!(
    two_schedulers_capture_once,
    super::two_schedulers_on_one_database_capture_each_payment_once
);
both_backends!(
    missed_work_done_on_restart,
    super::work_missed_while_stopped_is_done_when_the_service_starts
);
both_backends!(schedule_list, super::schedule_list_shows_what_is_due);
both_backends!(retention_daily, super::the_retention_job_runs_once_a_day);

const SET_CUT_OFF: &str = "mutation($shop: ID!, $time: String!, $zone: String!) {
  setRemittanceCutOff(shopId: $shop, time: $time, timeZone: $zone) {
    mode time timeZone nextBusinessDate nextDueAt } }";

async fn each_mode_of_a_shop_has_its_own_cut_off_time_and_zone(app: TestApp) {
    let response = app
        .graphql(
            SET_CUT_OFF,
            json!({ "shop": app.shop_id, "time": "18:30", "zone": "America/New_York" }),
        )
        .await;
    // 18:30 in New York on 2026-03-02 (EST, UTC-5) is 23:30 UTC.
    assert_eq!(
        data(&response)["setRemittanceCutOff"],
        json!({ "mode": "TEST", "time": "18:30:00", "timeZone": "America/New_York",
                "nextBusinessDate": "2026-03-02", "nextDueAt": "2026-03-02T23:30:00+00:00" })
    );
    // The live mode keeps the default.
    let response = app
        .graphql_as(
            &app.live_key,
            "query($shop: ID!) { remittanceCutOff(shopId: $shop) { time timeZone nextDueAt } }",
            json!({ "shop": app.shop_id }),
        )
        .await;
    assert_eq!(
        data(&response)["remittanceCutOff"],
        json!({ "time": "22:00:00", "timeZone": "Europe/Paris", "nextDueAt": "2026-03-02T21:00:00+00:00" })
    );

    let payment = app
        .create_payment(payment_input("11.00", "ORD-NEW-YORK"))
        .await;
    // At 22:00 in Paris only the live cut-off runs; the test one waits for New York.
    app.clock
        .set(Utc.with_ymd_and_hms(2026, 3, 2, 21, 0, 0).unwrap());
    assert_eq!(payment_work(&app.run_scheduler().await), 1);
    assert_eq!(payment_status(&app, &payment["id"]).await, "AUTHORISED");
    app.clock
        .set(Utc.with_ymd_and_hms(2026, 3, 2, 23, 30, 0).unwrap());
    assert_eq!(payment_work(&app.run_scheduler().await), 1);
    assert_eq!(payment_status(&app, &payment["id"]).await, "CAPTURED");

    let response = app
        .graphql(
            "query($shop: ID!) { scheduledWork(shopId: $shop) { kind businessDate dueAt } }",
            json!({ "shop": app.shop_id }),
        )
        .await;
    assert_eq!(
        data(&response)["scheduledWork"],
        json!([{ "kind": "REMITTANCE_CUT_OFF", "businessDate": "2026-03-03", "dueAt": "2026-03-03T23:30:00+00:00" }])
    );

    // Bad input names its field and changes nothing.
    let events_before = count_events(&app, "RemittanceCutOffChanged").await;
    for (time, zone, code, field) in [
        ("25:00", "Europe/Paris", "INVALID_TIME", "time"),
        ("noon", "Europe/Paris", "INVALID_TIME", "time"),
        ("22:00", "Mars/Olympus", "INVALID_TIME_ZONE", "timeZone"),
    ] {
        let response = app
            .graphql(
                SET_CUT_OFF,
                json!({ "shop": app.shop_id, "time": time, "zone": zone }),
            )
            .await;
        assert_eq!(error_code(&response), code, "{response}");
        assert_eq!(
            response["errors"][0]["extensions"]["field"], field,
            "{response}"
        );
    }
    let other = app.other_merchant().await;
    let response = app
        .graphql(
            SET_CUT_OFF,
            json!({ "shop": other.shop_id, "time": "20:00", "zone": "Europe/Paris" }),
        )
        .await;
    assert_eq!(error_code(&response), "SHOP_NOT_FOUND");
    assert_eq!(
        count_events(&app, "RemittanceCutOffChanged").await,
        events_before
    );
}

async fn payment_status(app: &TestApp, id: &Value) -> String {
    payment(app, id).await["status"]
        .as_str()
        .unwrap()
        .to_string()
}

both_backends!(
    cut_off_per_shop_and_mode,
    super::each_mode_of_a_shop_has_its_own_cut_off_time_and_zone
);
