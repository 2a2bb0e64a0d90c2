//! Tests of the 3-D Secure and risk side of the views: the `payments`,
//! `schedule` and `risk` projections fed event by event, on SQLite in memory
//! and, when it is reachable, on PostgreSQL (`CAISSE_TEST_POSTGRES_URL`, as the
//! integration tests; `CAISSE_REQUIRE_POSTGRES=1` turns unreachable into a
//! failure).

use caisse_application::ports::{GreyListSource, LogPosition};
use caisse_domain::card::{CardBrand, CardExpiry, CardSnapshot};
use caisse_domain::grey_list::{GreyListEvent, GreyListKind};
use caisse_domain::outstanding::{card_outstanding_id, OutstandingEvent};
use caisse_domain::payment::{
    Authorisation, CaptureMode, Channel, PaymentDetails, PaymentEvent, Refusal, RefusalCategory,
    DEFAULT_AUTHORISATION_VALIDITY_DAYS,
};
use caisse_domain::risk::{
    risk_settings_id, ControlCheck, ControlMode, ControlParameters, ControlSetting, RiskControl,
    RiskOutcome, RiskSettingsEvent,
};
use caisse_domain::three_ds::{ThreeDsEnrolled, ThreeDsEnrolment, ThreeDsResult, ThreeDsStatus};
use caisse_domain::{Mode, Money, PaymentId, ShopId};
use caisse_infrastructure::event_log::LoggedEvent;
use caisse_infrastructure::Db;
use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use cqrs_es::DomainEvent;
use serde::Serialize;
use uuid::Uuid;

use crate::payments::PaymentsProjection;
use crate::projector::Projection;
use crate::queries::{self, ReadScope};
use crate::risk::{RiskProjection, ViewGreyLists};
use crate::risk_queries::{self, GreyListFilter, RiskDecisionFilter};
use crate::schedule::ScheduleProjection;

fn shop() -> ShopId {
    ShopId::from_uuid(Uuid::from_u128(0x5409))
}

fn at(day: u32, hour: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, day, hour, 0, 0).unwrap()
}

fn date(day: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 3, day).unwrap()
}

fn scope() -> ReadScope {
    ReadScope {
        shop_ids: vec![shop()],
        mode: Mode::Test,
    }
}

const FINGERPRINT: &str = "ab12";

fn check(control: RiskControl, mode: ControlMode, fired: bool) -> ControlCheck {
    ControlCheck {
        control,
        mode,
        fired,
        reason: fired.then(|| format!("RISK_{}", control.as_str())),
        detail: "test".to_string(),
    }
}

fn details(payment: u128, amount: &str, occurred_at: DateTime<Utc>) -> PaymentDetails {
    PaymentDetails {
        payment_id: PaymentId::from_uuid(Uuid::from_u128(payment)),
        shop_id: shop(),
        mode: Mode::Test,
        order_reference: format!("order-{payment}"),
        amount: Money::parse_positive(amount, "EUR").unwrap(),
        channel: Channel::Ecommerce,
        capture_mode: CaptureMode::Automatic,
        capture_date: occurred_at.date_naive(),
        capture_trigger: Default::default(),
        instalment_of: None,
        acquirer_contract: caisse_domain::acquirer::default_contract(),
        buyer_country: Some("FR".to_string()),
        buyer_language: None,
        three_ds: ThreeDsResult::not_performed(),
        risk: Default::default(),
        card: CardSnapshot {
            token: "tok_test".to_string(),
            bin: "497010".to_string(),
            last_four: "0006".to_string(),
            brand: CardBrand::Cb,
            networks: vec![CardBrand::Cb, CardBrand::Visa],
            expiry: CardExpiry {
                month: 12,
                year: 2030,
            },
            fingerprint: FINGERPRINT.to_string(),
            holder_name: None,
            issuing_country: Some("FR".to_string()),
        },
        buyer_email: None,
        buyer_ip: Some("203.0.113.7".to_string()),
        duplicated_from: None,
        authorisation_validity_days: DEFAULT_AUTHORISATION_VALIDITY_DAYS,
        occurred_at,
    }
}

fn payment_id(payment: u128) -> String {
    PaymentId::from_uuid(Uuid::from_u128(payment)).to_string()
}

/// Builds the log as the projector reads it.
#[derive(Default)]
struct Log {
    events: Vec<LoggedEvent>,
    sequences: std::collections::BTreeMap<String, i64>,
}

impl Log {
    fn push<E: DomainEvent + Serialize>(
        &mut self,
        aggregate_type: &str,
        aggregate_id: &str,
        event: E,
    ) {
        self.push_by(aggregate_type, aggregate_id, event, "user:ops@example.com");
    }

    fn push_by<E: DomainEvent + Serialize>(
        &mut self,
        aggregate_type: &str,
        aggregate_id: &str,
        event: E,
        actor: &str,
    ) {
        let sequence = self.sequences.entry(aggregate_id.to_string()).or_default();
        *sequence += 1;
        self.events.push(LoggedEvent {
            position: LogPosition {
                tx_id: 0,
                global_position: self.events.len() as i64 + 1,
            },
            aggregate_type: aggregate_type.to_string(),
            aggregate_id: aggregate_id.to_string(),
            sequence: *sequence,
            event_type: event.event_type(),
            event_version: event.event_version(),
            payload: serde_json::to_value(&event).unwrap(),
            metadata: serde_json::json!({ "actor": actor }),
            recorded_at: at(1, 0),
        });
    }

    fn payment(&mut self, payment: u128, event: PaymentEvent) {
        self.push("Payment", &payment_id(payment), event);
    }
}

/// Applies the events not applied yet to the three projections, in one transaction.
async fn project(db: &Db, log: &Log, from: usize) {
    let projections: [&dyn Projection; 3] =
        [&PaymentsProjection, &ScheduleProjection, &RiskProjection];
    let mut tx = db.begin().await.unwrap();
    for event in &log.events[from..] {
        for projection in projections {
            projection
                .apply(&mut tx, event)
                .await
                .unwrap_or_else(|error| {
                    panic!("{} on {}: {error}", projection.name(), event.event_type)
                });
        }
    }
    tx.commit().await.unwrap();
}

async fn count(db: &Db, sql: &str) -> i64 {
    db.fetch_optional(sql, &[]).await.unwrap().unwrap().int("n")
}

// ---------------------------------------------------------------------------
// The scenarios, run on each backend
// ---------------------------------------------------------------------------

/// Pending → authenticated → authorised: one payment row with the final status
/// and guarantee, one decision, every control counted once.
async fn a_challenge_completes_into_one_row_and_one_decision(db: &Db, log: &mut Log) {
    let start = log.events.len();
    const PAYMENT: u128 = 0xA001;
    let id = payment_id(PAYMENT);
    let mut pending = details(PAYMENT, "120.00", at(2, 10));
    pending.three_ds = ThreeDsResult::new(
        ThreeDsEnrolled::Enrolled,
        ThreeDsStatus::ChallengePending,
        Some("3ds-tx-1".to_string()),
        None,
    );
    pending.risk.checks = vec![
        check(RiskControl::CardGreyList, ControlMode::Informative, true),
        check(RiskControl::IpGreyList, ControlMode::Blocking, false),
    ];
    log.payment(
        PAYMENT,
        PaymentEvent::PaymentAuthenticationPending {
            details: pending.clone(),
            abandon_at: at(2, 10) + Duration::minutes(15),
        },
    );
    project(db, log, start).await;

    let row = db
        .fetch_optional(
            "SELECT status, authorised_milli, guarantee, three_ds_status, risk_outcome, risk_fired
               FROM payments_view WHERE payment_id = $1",
            &[id.as_str().into()],
        )
        .await
        .unwrap()
        .expect("a row while pending");
    assert_eq!(row.text("status"), "AUTHENTICATION_PENDING");
    assert_eq!(row.int("authorised_milli"), 0);
    assert_eq!(row.text("guarantee"), "UNKNOWN");
    assert_eq!(row.text("three_ds_status"), "CHALLENGE_PENDING");
    assert_eq!(row.text("risk_outcome"), "FLAGGED");
    assert_eq!(
        row.opt_text("risk_fired").as_deref(),
        Some("CARD_GREY_LIST")
    );
    assert_eq!(
        count(db, "SELECT COUNT(*) AS n FROM cash_movements").await,
        0
    );
    let item = db
        .fetch_optional(
            "SELECT kind, subject_id, due_at FROM schedule_items WHERE item_id = $1",
            &[format!("ABANDON_AUTHENTICATION:{id}").into()],
        )
        .await
        .unwrap()
        .expect("the abandonment is scheduled");
    assert_eq!(item.text("kind"), "ABANDON_AUTHENTICATION");
    assert_eq!(item.text("due_at"), "2026-03-02T10:15:00.000000Z");
    let work = crate::schedule::ViewScheduledWork { db: db.clone() };
    let listed = work.for_shop(shop(), Mode::Test, 10).await.unwrap();
    assert!(listed.iter().any(|item| matches!(
        &item.kind,
        caisse_application::ports::ScheduledKind::AbandonAuthentication { payment_id }
            if payment_id.to_string() == id
    )));

    // The challenge's result and, in the same commit, the authorisation.
    let from = log.events.len();
    let three_ds = ThreeDsResult::new(
        ThreeDsEnrolled::Enrolled,
        ThreeDsStatus::Authenticated,
        Some("3ds-tx-1".to_string()),
        Some("05".to_string()),
    );
    let after = vec![check(
        RiskControl::PaymentGuarantee,
        ControlMode::Blocking,
        false,
    )];
    log.payment(
        PAYMENT,
        PaymentEvent::PaymentAuthenticated {
            three_ds: three_ds.clone(),
            checks: after.clone(),
            occurred_at: at(2, 10) + Duration::minutes(3),
        },
    );
    let mut completed = pending.clone();
    completed.three_ds = three_ds;
    completed.risk.checks.extend(after);
    completed.occurred_at = at(2, 10) + Duration::minutes(3);
    log.payment(
        PAYMENT,
        PaymentEvent::PaymentAuthorised {
            details: completed,
            authorisation: Authorisation {
                authorisation_code: "A12345".to_string(),
                acquirer_reference: "acq-1".to_string(),
            },
        },
    );
    project(db, log, from).await;

    let rows = queries::list_payments(db, &scope(), &Default::default(), 10, None)
        .await
        .unwrap()
        .0;
    assert_eq!(rows.len(), 1, "one row per payment");
    let row = &rows[0];
    assert_eq!(row.status, "AUTHORISED");
    assert_eq!(row.authorised_milli, 120_000);
    assert_eq!(row.authorisation_code.as_deref(), Some("A12345"));
    assert_eq!(row.guarantee, "YES");
    assert_eq!(row.three_ds_enrolled, "ENROLLED");
    assert_eq!(row.three_ds_status, "AUTHENTICATED");
    assert_eq!(row.three_ds_transaction_id.as_deref(), Some("3ds-tx-1"));
    assert_eq!(row.risk_outcome, "FLAGGED");
    assert_eq!(row.risk_fired.as_deref(), Some("CARD_GREY_LIST"));
    assert_eq!(row.buyer_country.as_deref(), Some("FR"));
    assert_eq!(row.card_country.as_deref(), Some("FR"));
    assert_eq!(
        row.created_at, "2026-03-02T10:00:00.000000Z",
        "kept from the first event"
    );
    assert_eq!(row.updated_at, "2026-03-02T10:03:00.000000Z");
    assert_eq!(row.last_sequence, 3);
    let filter = queries::PaymentFilter {
        guarantee: Some("YES".to_string()),
        risk_outcome: Some("FLAGGED".to_string()),
        ..Default::default()
    };
    let found = queries::list_payments(db, &scope(), &filter, 10, None)
        .await
        .unwrap()
        .0;
    assert_eq!(found.len(), 1);
    let filter = queries::PaymentFilter {
        guarantee: Some("NO".to_string()),
        ..Default::default()
    };
    assert!(queries::list_payments(db, &scope(), &filter, 10, None)
        .await
        .unwrap()
        .0
        .is_empty());

    // One AUTHORISED movement, with the guarantee; the abandonment unscheduled.
    let summary = queries::cash_summary(db, &scope(), shop(), date(1), date(3))
        .await
        .unwrap();
    assert_eq!(summary.len(), 1);
    assert_eq!(
        summary[0].totals,
        vec![("AUTHORISED".to_string(), 1, 120_000)]
    );
    assert_eq!(
        summary[0].by_guarantee,
        vec![("YES".to_string(), "AUTHORISED".to_string(), 1, 120_000)]
    );
    assert_eq!(
        count(
            db,
            "SELECT COUNT(*) AS n FROM schedule_items WHERE kind = 'ABANDON_AUTHENTICATION'"
        )
        .await,
        0
    );

    // One decision with every check; each control counted once.
    let (decisions, more) =
        risk_queries::risk_decisions(db, &scope(), &RiskDecisionFilter::default(), 10, None)
            .await
            .unwrap();
    assert!(!more);
    assert_eq!(decisions.len(), 1);
    let decision = &decisions[0];
    assert_eq!(decision.payment_id, id);
    assert_eq!(decision.outcome, "FLAGGED");
    assert_eq!(decision.guarantee, "YES");
    assert_eq!(decision.occurred_at, "2026-03-02T10:00:00.000000Z");
    assert_eq!(decision.business_date, "2026-03-02");
    assert_eq!(decision.fired_controls(), vec!["CARD_GREY_LIST"]);
    assert_eq!(decision.refusal_code, None);
    assert_eq!(decision.card_fingerprint, FINGERPRINT);
    assert_eq!(decision.amount_milli, 120_000);
    let controls: Vec<RiskControl> = decision
        .checks()
        .unwrap()
        .iter()
        .map(|c| c.control)
        .collect();
    assert_eq!(
        controls,
        vec![
            RiskControl::CardGreyList,
            RiskControl::IpGreyList,
            RiskControl::PaymentGuarantee
        ]
    );
    let counts = risk_queries::rule_counts(db, &scope(), shop(), date(2), date(2))
        .await
        .unwrap();
    let counts: Vec<(String, i64, i64, i64)> = counts
        .into_iter()
        .map(|c| (c.control, c.ran, c.fired_blocking, c.fired_informative))
        .collect();
    let mut expected = vec![
        ("CARD_GREY_LIST".to_string(), 1, 0, 1),
        ("IP_GREY_LIST".to_string(), 1, 0, 0),
        ("PAYMENT_GUARANTEE".to_string(), 1, 0, 0),
    ];
    let mut sorted = counts.clone();
    sorted.sort();
    expected.sort();
    assert_eq!(sorted, expected);

    // A second payment refused by a blocking control; then the filters.
    const REFUSED: u128 = 0xA002;
    let mut refused = details(REFUSED, "30.00", at(2, 11));
    refused.risk.checks = vec![check(RiskControl::IpGreyList, ControlMode::Blocking, true)];
    let from = log.events.len();
    log.payment(
        REFUSED,
        PaymentEvent::PaymentRefused {
            details: refused,
            refusal: Refusal {
                code: "RISK_IP_GREY_LISTED".to_string(),
                message: "grey-listed IP".to_string(),
                category: RefusalCategory::Risk,
            },
        },
    );
    project(db, log, from).await;
    let by_control = RiskDecisionFilter {
        control: Some(RiskControl::IpGreyList),
        ..Default::default()
    };
    let (found, _) = risk_queries::risk_decisions(db, &scope(), &by_control, 10, None)
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].payment_id, payment_id(REFUSED));
    assert_eq!(found[0].outcome, "REFUSED");
    assert_eq!(
        found[0].refusal_code.as_deref(),
        Some("RISK_IP_GREY_LISTED")
    );
    let by_outcome = RiskDecisionFilter {
        outcome: Some(RiskOutcome::Flagged),
        ..Default::default()
    };
    let (found, _) = risk_queries::risk_decisions(db, &scope(), &by_outcome, 10, None)
        .await
        .unwrap();
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].payment_id, id);
    // Newest first, a page at a time.
    let (page, more) =
        risk_queries::risk_decisions(db, &scope(), &RiskDecisionFilter::default(), 1, None)
            .await
            .unwrap();
    assert!(more);
    assert_eq!(page[0].payment_id, payment_id(REFUSED));
    let (page, more) = risk_queries::risk_decisions(
        db,
        &scope(),
        &RiskDecisionFilter::default(),
        1,
        Some(&page[0].cursor()),
    )
    .await
    .unwrap();
    assert!(!more);
    assert_eq!(page[0].payment_id, id);
    let ip = risk_queries::rule_counts(db, &scope(), shop(), date(2), date(2))
        .await
        .unwrap()
        .into_iter()
        .find(|c| c.control == "IP_GREY_LIST")
        .unwrap();
    assert_eq!((ip.ran, ip.fired_blocking, ip.fired_informative), (2, 1, 0));
    // Another mode sees none of it.
    let live = ReadScope {
        shop_ids: vec![shop()],
        mode: Mode::Live,
    };
    assert!(
        risk_queries::risk_decisions(db, &live, &RiskDecisionFilter::default(), 10, None)
            .await
            .unwrap()
            .0
            .is_empty()
    );
}

/// Nobody answers the challenge: ABANDONED, nothing authorised, the attempt
/// counted as a movement of its own kind.
async fn an_abandoned_challenge_ends_the_payment(db: &Db, log: &mut Log) {
    let start = log.events.len();
    const PAYMENT: u128 = 0xA003;
    let id = payment_id(PAYMENT);
    let mut pending = details(PAYMENT, "55.50", at(4, 9));
    pending.three_ds = ThreeDsResult::new(
        ThreeDsEnrolled::Enrolled,
        ThreeDsStatus::ChallengePending,
        None,
        None,
    );
    log.payment(
        PAYMENT,
        PaymentEvent::PaymentAuthenticationPending {
            details: pending,
            abandon_at: at(4, 10),
        },
    );
    log.payment(
        PAYMENT,
        PaymentEvent::PaymentAuthenticationAbandoned {
            occurred_at: at(4, 10),
        },
    );
    project(db, log, start).await;
    let row = queries::get_payment(db, &scope(), &id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.status, "ABANDONED");
    assert_eq!(row.authorised_milli, 0);
    assert_eq!(row.guarantee, "UNKNOWN");
    let summary = queries::cash_summary(db, &scope(), shop(), date(4), date(4))
        .await
        .unwrap();
    assert_eq!(
        summary[0].totals,
        vec![("ABANDONED".to_string(), 1, 55_500)]
    );
    assert_eq!(
        summary[0].by_guarantee,
        vec![("UNKNOWN".to_string(), "ABANDONED".to_string(), 1, 55_500)]
    );
    assert_eq!(
        count(
            db,
            "SELECT COUNT(*) AS n FROM schedule_items WHERE kind = 'ABANDON_AUTHENTICATION'"
        )
        .await,
        0
    );
    let decision = risk_queries::risk_decision(db, &scope(), &id)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(decision.outcome, "ACCEPTED");
    assert_eq!(decision.guarantee, "UNKNOWN");
}

/// Reservations add to the day they were made; a release takes its amount off
/// that day, whenever it comes.
async fn outstanding_sums_reservations_less_releases(db: &Db, log: &mut Log) {
    let start = log.events.len();
    let aggregate = card_outstanding_id(shop(), Mode::Test, FINGERPRINT);
    let other_card = card_outstanding_id(shop(), Mode::Test, "cd34");
    let reserve =
        |payment: u128, amount: &str, occurred_at| OutstandingEvent::OutstandingReserved {
            shop_id: shop(),
            payment_id: PaymentId::from_uuid(Uuid::from_u128(payment)),
            amount: Money::parse_positive(amount, "EUR").unwrap(),
            check: check(
                RiskControl::CardOutstanding,
                ControlMode::Informative,
                false,
            ),
            occurred_at,
        };
    log.push(
        "CardOutstanding",
        &aggregate,
        reserve(0xB001, "100.00", at(10, 9)),
    );
    log.push(
        "CardOutstanding",
        &aggregate,
        reserve(0xB002, "40.00", at(11, 9)),
    );
    log.push(
        "CardOutstanding",
        &aggregate,
        reserve(0xB003, "7.25", at(12, 9)),
    );
    log.push(
        "CardOutstanding",
        &other_card,
        reserve(0xB004, "5.00", at(12, 9)),
    );
    // The payment of day 11 ended without an authorisation, released on day 12.
    log.push(
        "CardOutstanding",
        &aggregate,
        OutstandingEvent::OutstandingReleased {
            shop_id: shop(),
            payment_id: PaymentId::from_uuid(Uuid::from_u128(0xB002)),
            amount: Money::parse_positive("40.00", "EUR").unwrap(),
            occurred_at: at(12, 10),
        },
    );
    project(db, log, start).await;
    let totals = |rows: Vec<risk_queries::OutstandingRow>| -> Vec<(String, i64, i64)> {
        rows.into_iter()
            .map(|row| (row.card_fingerprint, row.amount_milli, row.payment_count))
            .collect()
    };
    let all = risk_queries::card_outstanding(db, &scope(), shop(), None, 7, date(12))
        .await
        .unwrap();
    assert_eq!(
        totals(all),
        vec![
            ("ab12".to_string(), 107_250, 2),
            ("cd34".to_string(), 5_000, 1)
        ]
    );
    // A window of 2 days ending on the 12th: the 11th and the 12th.
    let recent =
        risk_queries::card_outstanding(db, &scope(), shop(), Some(FINGERPRINT), 2, date(12))
            .await
            .unwrap();
    assert_eq!(totals(recent), vec![("ab12".to_string(), 7_250, 1)]);
    // The released day left nothing behind.
    assert_eq!(
        count(
            db,
            "SELECT COUNT(*) AS n FROM risk_card_outstanding WHERE business_date = '2026-03-11'"
        )
        .await,
        0
    );
    assert_eq!(
        count(
            db,
            "SELECT COUNT(*) AS n FROM risk_outstanding_reservations WHERE released = 1"
        )
        .await,
        1
    );
}

/// Grey lists: added, removed, added again; read incrementally by `seq`;
/// listed with a search. Settings: the latest per control.
async fn grey_lists_and_settings(db: &Db, log: &mut Log) {
    let start = log.events.len();
    let added =
        |kind, value: &str, comment: Option<&str>, occurred_at| GreyListEvent::GreyListEntryAdded {
            shop_id: shop(),
            kind,
            value: value.to_string(),
            expires_at: Some(at(28, 0)),
            comment: comment.map(str::to_string),
            occurred_at,
        };
    log.push(
        "GreyListEntry",
        "grey_1",
        added(GreyListKind::Country, "RU", Some("Fraud wave"), at(5, 9)),
    );
    log.push(
        "GreyListEntry",
        "grey_2",
        added(GreyListKind::Ip, "203.0.113.0/24", None, at(5, 10)),
    );
    log.push_by(
        "GreyListEntry",
        "grey_1",
        GreyListEvent::GreyListEntryRemoved {
            shop_id: shop(),
            kind: GreyListKind::Country,
            value: "RU".to_string(),
            occurred_at: at(6, 9),
        },
        "user:lead@example.com",
    );
    log.push(
        "ShopRiskSettings",
        &risk_settings_id(shop()),
        RiskSettingsEvent::RiskControlConfigured {
            shop_id: shop(),
            control: RiskControl::IpGreyList,
            previous: None,
            setting: ControlSetting {
                mode: ControlMode::Informative,
                parameters: ControlParameters::default(),
            },
            occurred_at: at(5, 8),
        },
    );
    log.push(
        "ShopRiskSettings",
        &risk_settings_id(shop()),
        RiskSettingsEvent::RiskControlConfigured {
            shop_id: shop(),
            control: RiskControl::IpGreyList,
            previous: None,
            setting: ControlSetting {
                mode: ControlMode::Blocking,
                parameters: ControlParameters::default(),
            },
            occurred_at: at(6, 8),
        },
    );
    log.push(
        "ShopRiskSettings",
        &risk_settings_id(shop()),
        RiskSettingsEvent::RiskControlConfigured {
            shop_id: shop(),
            control: RiskControl::CountryConsistency,
            previous: None,
            setting: ControlSetting {
                mode: ControlMode::Informative,
                parameters: ControlParameters {
                    shop_countries: vec!["FR".to_string(), "BE".to_string()],
                    ..Default::default()
                },
            },
            occurred_at: at(6, 8),
        },
    );
    log.push(
        "ShopRiskSettings",
        &risk_settings_id(shop()),
        RiskSettingsEvent::ThreeDsEnrolmentConfigured {
            shop_id: shop(),
            previous: ThreeDsEnrolment::default(),
            enrolment: ThreeDsEnrolment {
                brands: vec![CardBrand::Cb, CardBrand::Visa],
                channels: vec![Channel::Ecommerce],
            },
            occurred_at: at(6, 8),
        },
    );
    project(db, log, start).await;

    let source = ViewGreyLists { db: db.clone() };
    let changes = source.changed_since(shop(), 0).await.unwrap();
    let seen: Vec<(String, bool, i64)> = changes
        .iter()
        .map(|row| (row.entry_id.clone(), row.removed, row.seq))
        .collect();
    assert_eq!(
        seen,
        vec![
            ("grey_2".to_string(), false, 2),
            ("grey_1".to_string(), true, 3)
        ]
    );
    assert_eq!(changes[0].kind, GreyListKind::Ip);
    assert_eq!(changes[0].expires_at, Some(at(28, 0)));
    assert!(source.changed_since(shop(), 3).await.unwrap().is_empty());
    assert!(source
        .changed_since(ShopId::from_uuid(Uuid::from_u128(1)), 0)
        .await
        .unwrap()
        .is_empty());

    // Added again: a later change, listed anew.
    let from = log.events.len();
    log.push(
        "GreyListEntry",
        "grey_1",
        added(GreyListKind::Country, "RU", None, at(7, 9)),
    );
    project(db, log, from).await;
    let changes = source.changed_since(shop(), 3).await.unwrap();
    assert_eq!(changes.len(), 1);
    assert_eq!(
        (
            changes[0].entry_id.as_str(),
            changes[0].removed,
            changes[0].seq
        ),
        ("grey_1", false, 4)
    );
    let row = db
        .fetch_optional(
            "SELECT added_by, removed_at, removed_by FROM grey_list_entries WHERE entry_id = 'grey_1'",
            &[],
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        row.opt_text("added_by").as_deref(),
        Some("user:ops@example.com")
    );
    assert_eq!(row.opt_text("removed_at"), None);

    // Listing: search on value or comment, whatever the case; removed ones on demand.
    let list = |filter: GreyListFilter| {
        let db = db.clone();
        async move {
            risk_queries::list_grey_list_entries(&db, &scope(), shop(), &filter, 10, None)
                .await
                .unwrap()
                .0
                .into_iter()
                .map(|row| row.entry_id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        list(GreyListFilter::default()).await,
        vec!["grey_1", "grey_2"]
    );
    assert_eq!(
        list(GreyListFilter {
            search: Some("113.0".to_string()),
            ..Default::default()
        })
        .await,
        vec!["grey_2"]
    );
    assert_eq!(
        list(GreyListFilter {
            kind: Some(GreyListKind::Country),
            ..Default::default()
        })
        .await,
        vec!["grey_1"]
    );
    // `%` is no wildcard.
    assert!(list(GreyListFilter {
        search: Some("%".to_string()),
        ..Default::default()
    })
    .await
    .is_empty());
    let from = log.events.len();
    log.push(
        "GreyListEntry",
        "grey_2",
        GreyListEvent::GreyListEntryRemoved {
            shop_id: shop(),
            kind: GreyListKind::Ip,
            value: "203.0.113.0/24".to_string(),
            occurred_at: at(8, 9),
        },
    );
    log.push(
        "GreyListEntry",
        "grey_3",
        added(GreyListKind::Bin, "497010", Some("FRAUD ring"), at(8, 10)),
    );
    project(db, log, from).await;
    assert_eq!(
        list(GreyListFilter::default()).await,
        vec!["grey_3", "grey_1"]
    );
    assert_eq!(
        list(GreyListFilter {
            search: Some("fraud".to_string()),
            include_removed: true,
            ..Default::default()
        })
        .await,
        vec!["grey_3"]
    );
    assert_eq!(
        list(GreyListFilter {
            include_removed: true,
            ..Default::default()
        })
        .await,
        vec!["grey_3", "grey_1", "grey_2"]
    );
    // Per shop whatever the mode; nothing for another shop.
    let live = ReadScope {
        shop_ids: vec![shop()],
        mode: Mode::Live,
    };
    assert_eq!(
        risk_queries::list_grey_list_entries(
            db,
            &live,
            shop(),
            &GreyListFilter::default(),
            10,
            None
        )
        .await
        .unwrap()
        .0
        .len(),
        2
    );
    let stranger = ReadScope {
        shop_ids: vec![ShopId::from_uuid(Uuid::from_u128(1))],
        mode: Mode::Test,
    };
    assert!(risk_queries::list_grey_list_entries(
        db,
        &stranger,
        shop(),
        &GreyListFilter::default(),
        10,
        None
    )
    .await
    .unwrap()
    .0
    .is_empty());

    let (settings, three_ds) = risk_queries::risk_settings(db, &live, shop())
        .await
        .unwrap();
    let modes: Vec<(&str, &str)> = settings
        .iter()
        .map(|s| (s.control.as_str(), s.mode.as_str()))
        .collect();
    assert_eq!(
        modes,
        vec![
            ("IP_GREY_LIST", "BLOCKING"),
            ("COUNTRY_CONSISTENCY", "INFORMATIVE")
        ]
    );
    assert_eq!(
        settings[1].parameters().unwrap().shop_countries,
        vec!["FR", "BE"]
    );
    let three_ds = three_ds.expect("configured");
    assert_eq!(three_ds.brands, vec!["CB", "VISA"]);
    assert_eq!(three_ds.channels, vec!["ECOMMERCE"]);
    let (settings, three_ds) = risk_queries::risk_settings(db, &stranger, shop())
        .await
        .unwrap();
    assert!(settings.is_empty() && three_ds.is_none());
}

async fn run_all(db: &Db) {
    let mut log = Log::default();
    a_challenge_completes_into_one_row_and_one_decision(db, &mut log).await;
    an_abandoned_challenge_ends_the_payment(db, &mut log).await;
    outstanding_sums_reservations_less_releases(db, &mut log).await;
    grey_lists_and_settings(db, &mut log).await;
    // Replayed at once into a fresh database (a rebuild), the log gives the
    // same rows as applied step by step.
    let replay = crate::audit::fresh_memory_database().await.unwrap();
    project(&replay, &log, 0).await;
    let projections: [&dyn Projection; 3] =
        [&PaymentsProjection, &ScheduleProjection, &RiskProjection];
    for projection in projections {
        for table in projection.tables() {
            let sql = format!("SELECT * FROM {table}");
            let mut stored = db.fetch_all(&sql, &[]).await.unwrap();
            let mut replayed = replay.fetch_all(&sql, &[]).await.unwrap();
            stored.sort_by_cached_key(|row| row.normalized());
            replayed.sort_by_cached_key(|row| row.normalized());
            let stored: Vec<_> = stored.iter().map(|row| row.normalized()).collect();
            let replayed: Vec<_> = replayed.iter().map(|row| row.normalized()).collect();
            assert_eq!(stored, replayed, "{table} as replayed");
        }
    }
    for table in RiskProjection.tables() {
        assert!(
            count(db, &format!("SELECT COUNT(*) AS n FROM {table}")).await > 0,
            "{table} was filled"
        );
    }
}

#[tokio::test]
async fn sqlite() {
    let db = crate::audit::fresh_memory_database().await.unwrap();
    run_all(&db).await;
}

static POSTGRES_MIGRATIONS: sqlx::migrate::Migrator = sqlx::migrate!("../migrations/postgres");

#[tokio::test]
async fn postgres() {
    use sqlx::Connection;
    let admin_url = std::env::var("CAISSE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string());
    let required = matches!(
        std::env::var("CAISSE_REQUIRE_POSTGRES").as_deref(),
        Ok("1") | Ok("true")
    );
    let mut admin = match sqlx::PgConnection::connect(&admin_url).await {
        Ok(connection) => connection,
        Err(error) => {
            assert!(
                !required,
                "PostgreSQL required but unreachable at {admin_url}: {error}"
            );
            eprintln!("SKIPPED: PostgreSQL unreachable at {admin_url} ({error})");
            return;
        }
    };
    let name = format!("caisse_projections_test_{}", Uuid::new_v4().simple());
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&mut admin)
        .await
        .expect("create test database");
    let (base, _) = admin_url.rsplit_once('/').expect("database URL has a path");
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(2)
        .connect(&format!("{base}/{name}"))
        .await
        .expect("connect to the test database");
    // Run, then drop the database whatever happened.
    let outcome = async {
        POSTGRES_MIGRATIONS.run(&pool).await.expect("migrate");
        let db = Db::Postgres(pool.clone());
        tokio::spawn(async move { run_all(&db).await }).await
    }
    .await;
    pool.close().await;
    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
        .execute(&mut admin)
        .await;
    if let Err(error) = outcome {
        std::panic::resume_unwind(error.into_panic());
    }
}
