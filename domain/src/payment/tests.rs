//! Given/when/then tests of the Payment aggregate and property tests of its money invariants.
//!
//! The given/when/then tests go through cqrs-es's `TestFramework`. In cqrs-es 0.5.0
//! `AggregateTestExecutor::when` is synchronous (it spins up its own current-thread
//! tokio runtime), so these are plain `#[test]`s; `when_async` is the async variant.

use chrono::{DateTime, NaiveDate, TimeZone, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::test::TestFramework;
use cqrs_es::Aggregate;
use proptest::prelude::*;
use rust_decimal::prelude::ToPrimitive;
use rust_decimal::Decimal;
use uuid::Uuid;

use super::*;
use crate::card::{CardBrand, CardExpiry, CardSnapshot};
use crate::ids::{Mode, PaymentId, RefundId, RemittanceId, ShopId};
use crate::money::{Currency, Money, MoneyError};

// ---------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------

fn shop_id() -> ShopId {
    ShopId::from_uuid(Uuid::from_u128(0x5409))
}

fn other_shop_id() -> ShopId {
    ShopId::from_uuid(Uuid::from_u128(0x5410))
}

fn payment_id() -> PaymentId {
    PaymentId::from_uuid(Uuid::from_u128(0xA001))
}

fn duplicate_id() -> PaymentId {
    PaymentId::from_uuid(Uuid::from_u128(0xA002))
}

fn remittance_id() -> RemittanceId {
    RemittanceId::from_uuid(Uuid::from_u128(0xB001))
}

fn refund_id(n: u128) -> RefundId {
    RefundId::from_uuid(Uuid::from_u128(0xC000 + n))
}

/// A day of March 2026.
fn day(day: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 3, day).expect("valid date")
}

/// An instant on a day of March 2026, on the hour.
fn at(day: u32, hour: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, day, hour, 0, 0)
        .single()
        .expect("valid instant")
}

/// The capture date of the payment in every given/when/then test.
const CAPTURE_DAY: u32 = 10;

fn eur(amount: &str) -> Money {
    Money::parse_positive(amount, "EUR").expect("valid EUR amount")
}

fn usd(amount: &str) -> Money {
    Money::parse_positive(amount, "USD").expect("valid USD amount")
}

fn eur_cents(cents: u64) -> Money {
    Money::positive(Decimal::new(cents as i64, 2), Currency::EUR).expect("positive EUR cents")
}

fn scope() -> AccessScope {
    AccessScope::single(shop_id(), Mode::Test)
}

fn card() -> CardSnapshot {
    CardSnapshot {
        token: "tok_test".to_string(),
        bin: "497010".to_string(),
        last_four: "0006".to_string(),
        brand: CardBrand::Cb,
        networks: vec![CardBrand::Cb, CardBrand::Visa],
        expiry: CardExpiry {
            month: 12,
            year: 2030,
        },
        fingerprint: "fp_test".to_string(),
        holder_name: Some("Jeanne Martin".to_string()),
        issuing_country: Some("FR".to_string()),
    }
}

fn details_with(
    capture_mode: CaptureMode,
    amount: Money,
    capture_date: NaiveDate,
) -> PaymentDetails {
    PaymentDetails {
        payment_id: payment_id(),
        shop_id: shop_id(),
        mode: Mode::Test,
        order_reference: "order-42".to_string(),
        amount,
        channel: Channel::Ecommerce,
        capture_mode,
        capture_date,
        capture_trigger: CaptureTrigger::Date,
        card: card(),
        buyer_email: Some("buyer@example.com".to_string()),
        buyer_ip: Some("203.0.113.7".to_string()),
        duplicated_from: None,
        instalment_of: None,
        authorisation_validity_days: DEFAULT_AUTHORISATION_VALIDITY_DAYS,
        acquirer_contract: crate::acquirer::SIMULATOR_CONTRACT.to_string(),
        buyer_country: None,
        buyer_language: None,
        three_ds: Default::default(),
        risk: Default::default(),
        occurred_at: at(2, 10),
    }
}

/// EUR 100.00, ecommerce, capture date 2026-03-10.
fn details(capture_mode: CaptureMode) -> PaymentDetails {
    details_with(capture_mode, eur("100.00"), day(CAPTURE_DAY))
}

fn authorisation() -> Authorisation {
    Authorisation {
        authorisation_code: "A1B2C3".to_string(),
        acquirer_reference: "acq-0001".to_string(),
    }
}

fn refusal() -> Refusal {
    Refusal {
        code: "51".to_string(),
        message: "insufficient funds".to_string(),
        category: RefusalCategory::IssuerDeclined,
    }
}

// Events ---------------------------------------------------------------------------------

fn authorised(capture_mode: CaptureMode) -> PaymentEvent {
    PaymentEvent::PaymentAuthorised {
        details: details(capture_mode),
        authorisation: authorisation(),
    }
}

fn refused() -> PaymentEvent {
    PaymentEvent::PaymentRefused {
        details: details(CaptureMode::Automatic),
        refusal: refusal(),
    }
}

fn validated() -> PaymentEvent {
    PaymentEvent::PaymentValidated {
        occurred_at: at(3, 9),
    }
}

fn modified_to(amount: &str) -> PaymentEvent {
    PaymentEvent::PaymentModified {
        previous_amount: eur("100.00"),
        amount: eur(amount),
        previous_capture_date: day(CAPTURE_DAY),
        capture_date: day(CAPTURE_DAY),
        occurred_at: at(3, 11),
    }
}

fn cancelled() -> PaymentEvent {
    PaymentEvent::PaymentCancelled {
        amount: eur("100.00"),
        occurred_at: at(4, 12),
    }
}

fn captured(amount: &str) -> PaymentEvent {
    PaymentEvent::PaymentCaptured {
        remittance_id: remittance_id(),
        amount: eur(amount),
        occurred_at: at(CAPTURE_DAY, 23),
    }
}

fn refunded(n: u128, amount: &str, refunded_total: &str) -> PaymentEvent {
    PaymentEvent::PaymentRefunded {
        refund_id: refund_id(n),
        amount: eur(amount),
        refunded_total: eur(refunded_total),
        occurred_at: at(15, 14),
    }
}

/// An automatic payment of EUR 100.00 captured in full.
fn captured_payment() -> Vec<PaymentEvent> {
    vec![authorised(CaptureMode::Automatic), captured("100.00")]
}

// Commands -------------------------------------------------------------------------------

fn authorise(capture_mode: CaptureMode) -> PaymentCommand {
    PaymentCommand::Authorise {
        details: Box::new(details(capture_mode)),
        outcome: AuthorisationOutcome::Approved(authorisation()),
    }
}

fn decline() -> PaymentCommand {
    PaymentCommand::Authorise {
        details: Box::new(details(CaptureMode::Automatic)),
        outcome: AuthorisationOutcome::Declined(refusal()),
    }
}

fn validate_in(scope: AccessScope) -> PaymentCommand {
    PaymentCommand::Validate {
        scope,
        occurred_at: at(3, 9),
    }
}

fn validate() -> PaymentCommand {
    validate_in(scope())
}

/// A modification requested on 2026-03-05 (`today`).
fn modify(amount: Option<Money>, capture_date: Option<NaiveDate>) -> PaymentCommand {
    PaymentCommand::Modify {
        scope: scope(),
        amount,
        capture_date,
        today: day(5),
        occurred_at: at(5, 11),
    }
}

fn cancel() -> PaymentCommand {
    PaymentCommand::Cancel {
        scope: scope(),
        occurred_at: at(4, 12),
    }
}

fn capture_on(today: NaiveDate) -> PaymentCommand {
    PaymentCommand::Capture {
        remittance_id: remittance_id(),
        today,
        occurred_at: at(CAPTURE_DAY, 23),
    }
}

fn refund_in(scope: AccessScope, n: u128, amount: Money) -> PaymentCommand {
    PaymentCommand::Refund {
        scope,
        refund_id: refund_id(n),
        amount,
        occurred_at: at(15, 14),
    }
}

fn refund(n: u128, amount: &str) -> PaymentCommand {
    refund_in(scope(), n, eur(amount))
}

fn record_duplicate() -> PaymentCommand {
    PaymentCommand::RecordDuplicate {
        scope: scope(),
        new_payment_id: duplicate_id(),
        amount: eur("100.00"),
        occurred_at: at(20, 8),
    }
}

fn duplicated() -> PaymentEvent {
    PaymentEvent::PaymentDuplicated {
        new_payment_id: duplicate_id(),
        amount: eur("100.00"),
        occurred_at: at(20, 8),
    }
}

// Harness --------------------------------------------------------------------------------

fn payment() -> TestFramework<Payment> {
    TestFramework::with(())
}

/// The state after `given` and the events `command` emits on top of it, all applied
/// through `apply` onto a fresh aggregate.
fn state_after(given: Vec<PaymentEvent>, command: PaymentCommand) -> Payment {
    replay(events_after(given, command))
}

/// `given` followed by the events `command` emits on top of it.
fn events_after(given: Vec<PaymentEvent>, command: PaymentCommand) -> Vec<PaymentEvent> {
    let emitted = payment()
        .given(given.clone())
        .when(command)
        .inspect_result()
        .expect("the command is accepted");
    given.into_iter().chain(emitted).collect()
}

fn replay(events: impl IntoIterator<Item = PaymentEvent>) -> Payment {
    let mut state = Payment::default();
    for event in events {
        state.apply(event);
    }
    state
}

// ---------------------------------------------------------------------------------------
// Authorise
// ---------------------------------------------------------------------------------------

#[test]
fn approved_authorisation_emits_payment_authorised() {
    payment()
        .given_no_previous_events()
        .when(authorise(CaptureMode::Automatic))
        .then_expect_events(vec![authorised(CaptureMode::Automatic)]);
}

#[test]
fn approved_automatic_payment_is_authorised() {
    let state = state_after(vec![], authorise(CaptureMode::Automatic));
    assert_eq!(state.status, PaymentStatus::Authorised);
    assert_eq!(state.amount, Some(eur("100.00")));
    assert_eq!(state.capture_date, Some(day(CAPTURE_DAY)));
}

#[test]
fn approved_manual_payment_awaits_validation() {
    let state = state_after(vec![], authorise(CaptureMode::Manual));
    assert_eq!(state.status, PaymentStatus::AuthorisedToValidate);
    assert!(!state.validated);
}

#[test]
fn declined_authorisation_emits_payment_refused() {
    payment()
        .given_no_previous_events()
        .when(decline())
        .then_expect_events(vec![refused()]);
}

#[test]
fn declined_payment_is_refused_and_keeps_the_refusal() {
    let state = state_after(vec![], decline());
    assert_eq!(state.status, PaymentStatus::Refused);
    assert_eq!(state.refusal, Some(refusal()));
}

#[test]
fn authorising_an_existing_payment_is_rejected() {
    payment()
        .given(vec![authorised(CaptureMode::Automatic)])
        .when(authorise(CaptureMode::Automatic))
        .then_expect_error(PaymentError::AlreadyExists);
}

#[test]
fn authorising_a_refused_payment_again_is_rejected() {
    payment()
        .given(vec![refused()])
        .when(authorise(CaptureMode::Automatic))
        .then_expect_error(PaymentError::AlreadyExists);
}

// ---------------------------------------------------------------------------------------
// Validate
// ---------------------------------------------------------------------------------------

#[test]
fn validating_a_payment_awaiting_validation_emits_payment_validated() {
    payment()
        .given(vec![authorised(CaptureMode::Manual)])
        .when(validate())
        .then_expect_events(vec![validated()]);
}

#[test]
fn an_authorised_payment_cannot_be_captured_after_its_authorisation_lapses() {
    // Authorised at(2, 10) with 7 days: valid until 9 March.
    payment()
        .given(vec![authorised(CaptureMode::Automatic)])
        .when(modify(None, Some(day(10))))
        .then_expect_error(PaymentError::CaptureDateBeyondValidity {
            valid_until: "2026-03-09".to_string(),
        });
    let moved = state_after(
        vec![authorised(CaptureMode::Automatic)],
        modify(None, Some(day(9))),
    );
    assert_eq!(moved.capture_date, Some(day(9)));
}

// Expire ---------------------------------------------------------------------------------

/// Authorised at(2, 10) with 7 days of validity: lapses at(9, 10).
fn expire_at(day: u32, hour: u32) -> PaymentCommand {
    PaymentCommand::Expire {
        reauthorisation: None,
        occurred_at: at(day, hour),
    }
}

fn expired() -> PaymentEvent {
    PaymentEvent::PaymentExpired {
        amount: eur("100.00"),
        reauthorisation_refusal: None,
        occurred_at: at(9, 10),
    }
}

#[test]
fn an_unvalidated_authorisation_expires_when_its_validity_ends() {
    payment()
        .given(vec![authorised(CaptureMode::Manual)])
        .when(expire_at(9, 10))
        .then_expect_events(vec![expired()]);
    let state = state_after(vec![authorised(CaptureMode::Manual)], expire_at(9, 10));
    assert_eq!(state.status, PaymentStatus::Expired);
}

#[test]
fn an_authorisation_does_not_expire_before_its_validity_ends() {
    payment()
        .given(vec![authorised(CaptureMode::Manual)])
        .when(expire_at(9, 9))
        .then_expect_error(PaymentError::NotExpiredYet {
            expires_at: at(9, 10).to_rfc3339(),
        });
}

#[test]
fn validated_or_automatic_payments_do_not_expire() {
    for given in [
        vec![authorised(CaptureMode::Manual), validated()],
        vec![authorised(CaptureMode::Automatic)],
    ] {
        payment()
            .given(given)
            .when(expire_at(20, 0))
            .then_expect_error(PaymentError::NotAwaitingValidation {
                status: "AUTHORISED".to_string(),
            });
    }
}

#[test]
fn final_payments_do_not_expire_again() {
    payment()
        .given(vec![authorised(CaptureMode::Manual), expired()])
        .when(expire_at(20, 0))
        .then_expect_error(PaymentError::Expired);
    payment()
        .given(vec![authorised(CaptureMode::Manual), cancelled()])
        .when(expire_at(20, 0))
        .then_expect_error(PaymentError::AlreadyCancelled);
    payment()
        .given(vec![refused()])
        .when(expire_at(20, 0))
        .then_expect_error(PaymentError::Refused);
}

#[test]
fn an_expired_payment_cannot_be_validated_or_cancelled_but_can_be_duplicated() {
    let given = vec![authorised(CaptureMode::Manual), expired()];
    payment()
        .given(given.clone())
        .when(validate())
        .then_expect_error(PaymentError::Expired);
    payment()
        .given(given.clone())
        .when(PaymentCommand::Cancel {
            scope: scope(),
            occurred_at: at(10, 0),
        })
        .then_expect_error(PaymentError::Expired);
    let state = state_after(
        given,
        PaymentCommand::RecordDuplicate {
            scope: scope(),
            new_payment_id: PaymentId::from_uuid(Uuid::from_u128(0xE1)),
            amount: eur("100.00"),
            occurred_at: at(10, 0),
        },
    );
    assert_eq!(state.duplicates.len(), 1);
}

#[test]
fn the_validity_comes_from_the_payment_details() {
    let mut details = details(CaptureMode::Manual);
    details.authorisation_validity_days = 30;
    let given = vec![PaymentEvent::PaymentAuthorised {
        details,
        authorisation: authorisation(),
    }];
    payment()
        .given(given)
        .when(expire_at(20, 0))
        .then_expect_error(PaymentError::NotExpiredYet {
            expires_at: Utc
                .with_ymd_and_hms(2026, 4, 1, 10, 0, 0)
                .unwrap()
                .to_rfc3339(),
        });
}

// At shipping and at delivery (TY-6, TY-7) ----------------------------------------------

fn authorised_on(trigger: CaptureTrigger) -> PaymentEvent {
    let mut details = details(CaptureMode::Automatic);
    details.capture_trigger = trigger;
    PaymentEvent::PaymentAuthorised {
        details,
        authorisation: authorisation(),
    }
}

fn declare_shipping() -> PaymentCommand {
    PaymentCommand::DeclareShipping {
        scope: scope(),
        carrier: Some("La Poste".to_string()),
        tracking_number: Some("6A123".to_string()),
        today: day(5),
        occurred_at: at(5, 15),
    }
}

fn declare_delivery() -> PaymentCommand {
    PaymentCommand::DeclareDelivery {
        scope: scope(),
        today: day(6),
        occurred_at: at(6, 15),
    }
}

#[test]
fn a_payment_captured_at_shipping_is_due_only_once_shipped() {
    let waiting = replay(vec![authorised_on(CaptureTrigger::Shipping)]);
    assert!(!waiting.is_due(day(30)));
    payment()
        .given(vec![authorised_on(CaptureTrigger::Shipping)])
        .when(declare_shipping())
        .then_expect_events(vec![PaymentEvent::ShipmentDeclared {
            carrier: Some("La Poste".to_string()),
            tracking_number: Some("6A123".to_string()),
            capture_date: Some(day(5)),
            occurred_at: at(5, 15),
        }]);
    let shipped = state_after(
        vec![authorised_on(CaptureTrigger::Shipping)],
        declare_shipping(),
    );
    assert!(shipped.is_due(day(5)));
    assert!(!shipped.is_due(day(4)));
}

#[test]
fn a_payment_captured_at_delivery_is_due_only_once_delivered() {
    let shipped = state_after(
        vec![authorised_on(CaptureTrigger::Delivery)],
        declare_shipping(),
    );
    assert!(
        !shipped.is_due(day(30)),
        "shipping alone does not make it due"
    );
    assert_eq!(shipped.capture_date, Some(day(CAPTURE_DAY)));
    let delivered = state_after(
        vec![
            authorised_on(CaptureTrigger::Delivery),
            PaymentEvent::ShipmentDeclared {
                carrier: None,
                tracking_number: None,
                capture_date: None,
                occurred_at: at(5, 15),
            },
        ],
        declare_delivery(),
    );
    assert!(delivered.is_due(day(6)));
}

#[test]
fn declarations_that_do_not_fit_the_trigger_are_refused() {
    payment()
        .given(vec![authorised(CaptureMode::Automatic)])
        .when(declare_shipping())
        .then_expect_error(PaymentError::CaptureTriggerMismatch {
            trigger: "its capture date".to_string(),
        });
    payment()
        .given(vec![authorised_on(CaptureTrigger::Shipping)])
        .when(declare_delivery())
        .then_expect_error(PaymentError::CaptureTriggerMismatch {
            trigger: "shipping".to_string(),
        });
    let shipped = vec![
        authorised_on(CaptureTrigger::Shipping),
        PaymentEvent::ShipmentDeclared {
            carrier: None,
            tracking_number: None,
            capture_date: Some(day(5)),
            occurred_at: at(5, 15),
        },
    ];
    payment()
        .given(shipped)
        .when(declare_shipping())
        .then_expect_error(PaymentError::AlreadyDeclared { what: "shipping" });
}

#[test]
fn an_undeclared_shipment_lapses_or_is_reauthorised() {
    let given = vec![authorised_on(CaptureTrigger::Shipping)];
    payment()
        .given(given.clone())
        .when(expire_at(9, 10))
        .then_expect_events(vec![expired()]);
    payment()
        .given(given.clone())
        .when(PaymentCommand::Expire {
            reauthorisation: Some(Reauthorisation {
                outcome: AuthorisationOutcome::Approved(authorisation()),
                validity_days: 7,
            }),
            occurred_at: at(9, 10),
        })
        .then_expect_events(vec![PaymentEvent::PaymentReauthorised {
            amount: eur("100.00"),
            authorisation: authorisation(),
            expires_at: at(16, 10),
            occurred_at: at(9, 10),
        }]);
    payment()
        .given(given.clone())
        .when(PaymentCommand::Expire {
            reauthorisation: Some(Reauthorisation {
                outcome: AuthorisationOutcome::Declined(refusal()),
                validity_days: 7,
            }),
            occurred_at: at(9, 10),
        })
        .then_expect_events(vec![PaymentEvent::PaymentExpired {
            amount: eur("100.00"),
            reauthorisation_refusal: Some(refusal()),
            occurred_at: at(9, 10),
        }]);
    // Once shipped it is captured, never expired.
    let mut shipped = given;
    shipped.push(PaymentEvent::ShipmentDeclared {
        carrier: None,
        tracking_number: None,
        capture_date: Some(day(5)),
        occurred_at: at(5, 15),
    });
    payment()
        .given(shipped)
        .when(expire_at(9, 10))
        .then_expect_error(PaymentError::NotAwaitingValidation {
            status: "AUTHORISED".to_string(),
        });
}

// Deferred beyond the validity (TY-4) ----------------------------------------------------

fn awaiting() -> PaymentEvent {
    PaymentEvent::PaymentAwaitingAuthorisation {
        details: details(CaptureMode::Automatic),
        card_check: authorisation(),
    }
}

fn complete_deferred(outcome: AuthorisationOutcome) -> PaymentCommand {
    PaymentCommand::CompleteDeferredAuthorisation {
        outcome,
        occurred_at: at(9, 0),
    }
}

#[test]
fn a_checked_card_makes_a_payment_wait_for_its_authorisation() {
    payment()
        .given_no_previous_events()
        .when(PaymentCommand::AwaitAuthorisation {
            details: Box::new(details(CaptureMode::Automatic)),
            card_check: AuthorisationOutcome::Approved(authorisation()),
        })
        .then_expect_events(vec![awaiting()]);
    let state = replay(vec![awaiting()]);
    assert_eq!(state.status, PaymentStatus::WaitingAuthorisation);
    assert!(
        !state.is_due(day(30)),
        "never captured before it is authorised"
    );
}

#[test]
fn a_declined_card_check_refuses_the_payment() {
    payment()
        .given_no_previous_events()
        .when(PaymentCommand::AwaitAuthorisation {
            details: Box::new(details(CaptureMode::Automatic)),
            card_check: AuthorisationOutcome::Declined(refusal()),
        })
        .then_expect_events(vec![refused()]);
}

#[test]
fn the_deferred_authorisation_authorises_or_refuses_the_current_amount() {
    payment()
        .given(vec![awaiting(), modified_to("80.00")])
        .when(complete_deferred(AuthorisationOutcome::Approved(
            authorisation(),
        )))
        .then_expect_events(vec![PaymentEvent::DeferredAuthorisationGranted {
            amount: eur("80.00"),
            authorisation: authorisation(),
            occurred_at: at(9, 0),
        }]);
    payment()
        .given(vec![awaiting()])
        .when(complete_deferred(AuthorisationOutcome::Declined(refusal())))
        .then_expect_events(vec![PaymentEvent::DeferredAuthorisationRefused {
            amount: eur("100.00"),
            refusal: refusal(),
            occurred_at: at(9, 0),
        }]);
    let granted = state_after(
        vec![awaiting()],
        complete_deferred(AuthorisationOutcome::Approved(authorisation())),
    );
    assert_eq!(granted.status, PaymentStatus::Authorised);
    assert_eq!(granted.authorised_at, Some(at(9, 0)));
    let refused = state_after(
        vec![awaiting()],
        complete_deferred(AuthorisationOutcome::Declined(refusal())),
    );
    assert_eq!(refused.status, PaymentStatus::Refused);
    assert_eq!(refused.refusal, Some(refusal()));
}

#[test]
fn only_a_waiting_payment_gets_a_deferred_authorisation() {
    payment()
        .given(vec![authorised(CaptureMode::Automatic)])
        .when(complete_deferred(AuthorisationOutcome::Approved(
            authorisation(),
        )))
        .then_expect_error(PaymentError::NotWaitingAuthorisation {
            status: "AUTHORISED".to_string(),
        });
    payment()
        .given(vec![awaiting(), cancelled()])
        .when(complete_deferred(AuthorisationOutcome::Approved(
            authorisation(),
        )))
        .then_expect_error(PaymentError::AlreadyCancelled);
}

#[test]
fn validated_payment_becomes_authorised() {
    let state = state_after(vec![authorised(CaptureMode::Manual)], validate());
    assert_eq!(state.status, PaymentStatus::Authorised);
    assert!(state.validated);
}

#[test]
fn validating_an_automatic_payment_is_rejected() {
    payment()
        .given(vec![authorised(CaptureMode::Automatic)])
        .when(validate())
        .then_expect_error(PaymentError::NotAwaitingValidation {
            status: "AUTHORISED".to_string(),
        });
}

#[test]
fn validating_twice_is_rejected() {
    payment()
        .given(vec![authorised(CaptureMode::Manual), validated()])
        .when(validate())
        .then_expect_error(PaymentError::NotAwaitingValidation {
            status: "AUTHORISED".to_string(),
        });
}

#[test]
fn validating_a_captured_payment_is_rejected_as_already_remitted() {
    payment()
        .given(vec![
            authorised(CaptureMode::Manual),
            validated(),
            captured("100.00"),
        ])
        .when(validate())
        .then_expect_error(PaymentError::AlreadyRemitted);
}

#[test]
fn validating_a_payment_of_another_shop_is_not_found() {
    payment()
        .given(vec![authorised(CaptureMode::Manual)])
        .when(validate_in(AccessScope::single(
            other_shop_id(),
            Mode::Test,
        )))
        .then_expect_error(PaymentError::NotFound);
}

#[test]
fn validating_a_test_payment_with_live_credentials_is_not_found() {
    payment()
        .given(vec![authorised(CaptureMode::Manual)])
        .when(validate_in(AccessScope::single(shop_id(), Mode::Live)))
        .then_expect_error(PaymentError::NotFound);
}

#[test]
fn validating_a_missing_payment_is_not_found() {
    payment()
        .given_no_previous_events()
        .when(validate())
        .then_expect_error(PaymentError::NotFound);
}

// ---------------------------------------------------------------------------------------
// Modify
// ---------------------------------------------------------------------------------------

#[test]
fn lowering_the_amount_emits_payment_modified() {
    payment()
        .given(vec![authorised(CaptureMode::Automatic)])
        .when(modify(Some(eur("80.00")), None))
        .then_expect_events(vec![PaymentEvent::PaymentModified {
            previous_amount: eur("100.00"),
            amount: eur("80.00"),
            previous_capture_date: day(CAPTURE_DAY),
            capture_date: day(CAPTURE_DAY),
            occurred_at: at(5, 11),
        }]);
}

#[test]
fn lowered_amount_becomes_the_amount_to_capture() {
    let state = state_after(
        vec![authorised(CaptureMode::Automatic)],
        modify(Some(eur("80.00")), None),
    );
    assert_eq!(state.amount, Some(eur("80.00")));
    assert_eq!(state.status, PaymentStatus::Authorised);
}

#[test]
fn keeping_the_same_amount_is_accepted() {
    payment()
        .given(vec![authorised(CaptureMode::Automatic)])
        .when(modify(Some(eur("100.00")), None))
        .then_expect_events(vec![PaymentEvent::PaymentModified {
            previous_amount: eur("100.00"),
            amount: eur("100.00"),
            previous_capture_date: day(CAPTURE_DAY),
            capture_date: day(CAPTURE_DAY),
            occurred_at: at(5, 11),
        }]);
}

#[test]
fn postponing_the_capture_date_emits_payment_modified() {
    // Within the authorisation's validity (until 9 March).
    payment()
        .given(vec![authorised(CaptureMode::Manual)])
        .when(modify(None, Some(day(8))))
        .then_expect_events(vec![PaymentEvent::PaymentModified {
            previous_amount: eur("100.00"),
            amount: eur("100.00"),
            previous_capture_date: day(CAPTURE_DAY),
            capture_date: day(8),
            occurred_at: at(5, 11),
        }]);
    // A payment waiting for its deferred authorisation may go further.
    let waiting = PaymentEvent::PaymentAwaitingAuthorisation {
        details: details(CaptureMode::Automatic),
        card_check: authorisation(),
    };
    let moved = state_after(vec![waiting], modify(None, Some(day(25))));
    assert_eq!(moved.capture_date, Some(day(25)));
}

#[test]
fn moving_the_capture_date_to_today_is_accepted() {
    let state = state_after(
        vec![authorised(CaptureMode::Automatic)],
        modify(None, Some(day(5))),
    );
    assert_eq!(state.capture_date, Some(day(5)));
}

#[test]
fn raising_the_amount_above_the_authorised_amount_is_rejected() {
    payment()
        .given(vec![authorised(CaptureMode::Automatic)])
        .when(modify(Some(eur("100.01")), None))
        .then_expect_error(PaymentError::ModifyAmountExceedsAuthorised {
            authorised: "100.00 EUR".to_string(),
        });
}

#[test]
fn raising_a_lowered_amount_back_is_rejected() {
    // The error's `authorised` field holds the current (lowered) amount, not the
    // amount originally authorised.
    payment()
        .given(vec![
            authorised(CaptureMode::Automatic),
            modified_to("80.00"),
        ])
        .when(modify(Some(eur("100.00")), None))
        .then_expect_error(PaymentError::ModifyAmountExceedsAuthorised {
            authorised: "80.00 EUR".to_string(),
        });
}

#[test]
fn moving_the_capture_date_into_the_past_is_rejected() {
    payment()
        .given(vec![authorised(CaptureMode::Automatic)])
        .when(modify(None, Some(day(4))))
        .then_expect_error(PaymentError::CaptureDateInPast);
}

#[test]
fn modifying_nothing_is_rejected() {
    payment()
        .given(vec![authorised(CaptureMode::Automatic)])
        .when(modify(None, None))
        .then_expect_error(PaymentError::NothingToModify);
}

#[test]
fn modifying_a_captured_payment_is_rejected_as_already_remitted() {
    payment()
        .given(captured_payment())
        .when(modify(Some(eur("80.00")), None))
        .then_expect_error(PaymentError::AlreadyRemitted);
}

#[test]
fn modifying_a_cancelled_payment_is_rejected_as_already_cancelled() {
    payment()
        .given(vec![authorised(CaptureMode::Automatic), cancelled()])
        .when(modify(Some(eur("80.00")), None))
        .then_expect_error(PaymentError::AlreadyCancelled);
}

#[test]
fn modifying_a_refused_payment_is_rejected_as_refused() {
    payment()
        .given(vec![refused()])
        .when(modify(Some(eur("80.00")), None))
        .then_expect_error(PaymentError::Refused);
}

#[test]
fn modifying_the_amount_in_another_currency_is_rejected() {
    payment()
        .given(vec![authorised(CaptureMode::Automatic)])
        .when(modify(Some(usd("80.00")), None))
        .then_expect_error(PaymentError::Money(MoneyError::CurrencyMismatch(
            "USD".to_string(),
            "EUR".to_string(),
        )));
}

#[test]
fn modifying_a_payment_of_another_shop_is_not_found() {
    payment()
        .given(vec![authorised(CaptureMode::Automatic)])
        .when(PaymentCommand::Modify {
            scope: AccessScope::single(other_shop_id(), Mode::Test),
            amount: Some(eur("80.00")),
            capture_date: None,
            today: day(5),
            occurred_at: at(5, 11),
        })
        .then_expect_error(PaymentError::NotFound);
}

#[test]
fn lowering_the_amount_to_zero_is_rejected() {
    let zero = Money::zero(Currency::EUR);
    payment()
        .given(vec![authorised(CaptureMode::Automatic)])
        .when(modify(Some(zero), None))
        .then_expect_error(PaymentError::Money(MoneyError::NotPositive));
}
// ---------------------------------------------------------------------------------------

#[test]
fn cancelling_an_authorised_payment_emits_payment_cancelled() {
    payment()
        .given(vec![authorised(CaptureMode::Automatic)])
        .when(cancel())
        .then_expect_events(vec![cancelled()]);
}

#[test]
fn cancelling_a_payment_awaiting_validation_is_accepted() {
    let state = state_after(vec![authorised(CaptureMode::Manual)], cancel());
    assert_eq!(state.status, PaymentStatus::Cancelled);
}

#[test]
fn cancelling_a_modified_payment_cancels_the_modified_amount() {
    payment()
        .given(vec![
            authorised(CaptureMode::Automatic),
            modified_to("80.00"),
        ])
        .when(cancel())
        .then_expect_events(vec![PaymentEvent::PaymentCancelled {
            amount: eur("80.00"),
            occurred_at: at(4, 12),
        }]);
}

#[test]
fn cancelling_a_captured_payment_is_rejected_as_already_remitted() {
    payment()
        .given(captured_payment())
        .when(cancel())
        .then_expect_error(PaymentError::AlreadyRemitted);
}

#[test]
fn cancelling_twice_is_rejected_as_already_cancelled() {
    payment()
        .given(vec![authorised(CaptureMode::Automatic), cancelled()])
        .when(cancel())
        .then_expect_error(PaymentError::AlreadyCancelled);
}

#[test]
fn cancelling_a_refused_payment_is_rejected_as_refused() {
    payment()
        .given(vec![refused()])
        .when(cancel())
        .then_expect_error(PaymentError::Refused);
}

#[test]
fn cancelling_a_missing_payment_is_not_found() {
    payment()
        .given_no_previous_events()
        .when(cancel())
        .then_expect_error(PaymentError::NotFound);
}

// ---------------------------------------------------------------------------------------
// Capture
// ---------------------------------------------------------------------------------------

#[test]
fn capturing_a_due_payment_emits_payment_captured_with_its_amount() {
    payment()
        .given(vec![authorised(CaptureMode::Automatic)])
        .when(capture_on(day(12)))
        .then_expect_events(vec![captured("100.00")]);
}

#[test]
fn payment_is_due_on_its_capture_date() {
    payment()
        .given(vec![authorised(CaptureMode::Automatic)])
        .when(capture_on(day(CAPTURE_DAY)))
        .then_expect_events(vec![captured("100.00")]);
}

#[test]
fn captured_payment_records_amount_and_remittance() {
    let state = state_after(
        vec![authorised(CaptureMode::Automatic)],
        capture_on(day(CAPTURE_DAY)),
    );
    assert_eq!(state.status, PaymentStatus::Captured);
    assert_eq!(state.captured, Some(eur("100.00")));
    assert_eq!(state.remittance_id, Some(remittance_id()));
}

#[test]
fn capturing_a_modified_payment_captures_the_modified_amount() {
    payment()
        .given(vec![
            authorised(CaptureMode::Automatic),
            modified_to("80.00"),
        ])
        .when(capture_on(day(CAPTURE_DAY)))
        .then_expect_events(vec![captured("80.00")]);
}

#[test]
fn capturing_a_validated_manual_payment_is_accepted() {
    payment()
        .given(vec![authorised(CaptureMode::Manual), validated()])
        .when(capture_on(day(CAPTURE_DAY)))
        .then_expect_events(vec![captured("100.00")]);
}

#[test]
fn capturing_before_the_capture_date_is_rejected_as_not_due() {
    payment()
        .given(vec![authorised(CaptureMode::Automatic)])
        .when(capture_on(day(CAPTURE_DAY - 1)))
        .then_expect_error(PaymentError::NotDue);
}

#[test]
fn capturing_a_payment_awaiting_validation_is_rejected_as_not_due() {
    payment()
        .given(vec![authorised(CaptureMode::Manual)])
        .when(capture_on(day(CAPTURE_DAY)))
        .then_expect_error(PaymentError::NotDue);
}

#[test]
fn capturing_a_cancelled_payment_is_rejected_as_already_cancelled() {
    payment()
        .given(vec![authorised(CaptureMode::Automatic), cancelled()])
        .when(capture_on(day(CAPTURE_DAY)))
        .then_expect_error(PaymentError::AlreadyCancelled);
}

#[test]
fn capturing_twice_is_rejected_as_already_remitted() {
    payment()
        .given(captured_payment())
        .when(capture_on(day(CAPTURE_DAY)))
        .then_expect_error(PaymentError::AlreadyRemitted);
}

#[test]
fn capturing_a_refused_payment_is_rejected_as_refused() {
    payment()
        .given(vec![refused()])
        .when(capture_on(day(CAPTURE_DAY)))
        .then_expect_error(PaymentError::Refused);
}

#[test]
fn capturing_a_missing_payment_is_not_found() {
    payment()
        .given_no_previous_events()
        .when(capture_on(day(CAPTURE_DAY)))
        .then_expect_error(PaymentError::NotFound);
}

// ---------------------------------------------------------------------------------------
// Refund
// ---------------------------------------------------------------------------------------

#[test]
fn partial_refund_emits_payment_refunded_with_the_running_total() {
    payment()
        .given(captured_payment())
        .when(refund(1, "30.00"))
        .then_expect_events(vec![refunded(1, "30.00", "30.00")]);
}

#[test]
fn partial_refund_leaves_the_payment_partially_refunded() {
    let state = state_after(captured_payment(), refund(1, "30.00"));
    assert_eq!(state.status, PaymentStatus::PartiallyRefunded);
    assert_eq!(state.refunded, Some(eur("30.00")));
}

#[test]
fn full_refund_emits_payment_refunded_for_the_captured_amount() {
    payment()
        .given(captured_payment())
        .when(refund(1, "100.00"))
        .then_expect_events(vec![refunded(1, "100.00", "100.00")]);
}

#[test]
fn full_refund_leaves_the_payment_refunded() {
    let state = state_after(captured_payment(), refund(1, "100.00"));
    assert_eq!(state.status, PaymentStatus::Refunded);
    assert_eq!(state.refunded, Some(eur("100.00")));
}

#[test]
fn second_refund_of_the_remainder_fully_refunds_the_payment() {
    let mut given = captured_payment();
    given.push(refunded(1, "30.00", "30.00"));
    let state = state_after(given, refund(2, "70.00"));
    assert_eq!(state.status, PaymentStatus::Refunded);
    assert_eq!(state.refunded, Some(eur("100.00")));
}

#[test]
fn refund_more_than_refundable_is_rejected() {
    payment()
        .given(captured_payment())
        .when(refund(1, "100.01"))
        .then_expect_error(PaymentError::RefundExceedsCaptured {
            requested: "100.01 EUR".to_string(),
            refundable: "100.00 EUR".to_string(),
        });
}

#[test]
fn second_refund_exceeding_the_remainder_is_rejected() {
    let mut given = captured_payment();
    given.push(refunded(1, "30.00", "30.00"));
    payment()
        .given(given)
        .when(refund(2, "70.01"))
        .then_expect_error(PaymentError::RefundExceedsCaptured {
            requested: "70.01 EUR".to_string(),
            refundable: "70.00 EUR".to_string(),
        });
}

#[test]
fn refunding_a_fully_refunded_payment_is_rejected() {
    let mut given = captured_payment();
    given.push(refunded(1, "100.00", "100.00"));
    payment()
        .given(given)
        .when(refund(2, "0.01"))
        .then_expect_error(PaymentError::RefundExceedsCaptured {
            requested: "0.01 EUR".to_string(),
            refundable: "0.00 EUR".to_string(),
        });
}

#[test]
fn refunds_are_limited_to_the_captured_modified_amount() {
    payment()
        .given(vec![
            authorised(CaptureMode::Automatic),
            modified_to("80.00"),
            captured("80.00"),
        ])
        .when(refund(1, "80.01"))
        .then_expect_error(PaymentError::RefundExceedsCaptured {
            requested: "80.01 EUR".to_string(),
            refundable: "80.00 EUR".to_string(),
        });
}

#[test]
fn refunding_before_capture_is_rejected_as_not_captured() {
    payment()
        .given(vec![authorised(CaptureMode::Automatic)])
        .when(refund(1, "10.00"))
        .then_expect_error(PaymentError::NotCaptured);
}

#[test]
fn refunding_a_refused_payment_is_rejected_as_refused() {
    payment()
        .given(vec![refused()])
        .when(refund(1, "10.00"))
        .then_expect_error(PaymentError::Refused);
}

#[test]
fn refunding_a_cancelled_payment_is_rejected_as_already_cancelled() {
    payment()
        .given(vec![authorised(CaptureMode::Automatic), cancelled()])
        .when(refund(1, "10.00"))
        .then_expect_error(PaymentError::AlreadyCancelled);
}

#[test]
fn refunding_in_another_currency_is_rejected() {
    payment()
        .given(captured_payment())
        .when(refund_in(scope(), 1, usd("10.00")))
        .then_expect_error(PaymentError::Money(MoneyError::CurrencyMismatch(
            "USD".to_string(),
            "EUR".to_string(),
        )));
}

#[test]
fn refunding_a_payment_of_another_shop_is_not_found() {
    payment()
        .given(captured_payment())
        .when(refund_in(
            AccessScope::single(other_shop_id(), Mode::Test),
            1,
            eur("10.00"),
        ))
        .then_expect_error(PaymentError::NotFound);
}

#[test]
fn zero_refund_is_rejected() {
    let zero = Money::zero(Currency::EUR);
    payment()
        .given(captured_payment())
        .when(refund_in(scope(), 1, zero))
        .then_expect_error(PaymentError::Money(MoneyError::NotPositive));
}
// ---------------------------------------------------------------------------------------

#[test]
fn duplicating_a_captured_payment_emits_payment_duplicated() {
    payment()
        .given(captured_payment())
        .when(record_duplicate())
        .then_expect_events(vec![duplicated()]);
}

#[test]
fn duplicating_a_partially_refunded_payment_is_accepted() {
    let mut given = captured_payment();
    given.push(refunded(1, "30.00", "30.00"));
    payment()
        .given(given)
        .when(record_duplicate())
        .then_expect_events(vec![duplicated()]);
}

#[test]
fn duplicating_a_refunded_payment_is_accepted() {
    let mut given = captured_payment();
    given.push(refunded(1, "100.00", "100.00"));
    payment()
        .given(given)
        .when(record_duplicate())
        .then_expect_events(vec![duplicated()]);
}

#[test]
fn duplicating_a_cancelled_payment_is_accepted() {
    payment()
        .given(vec![authorised(CaptureMode::Automatic), cancelled()])
        .when(record_duplicate())
        .then_expect_events(vec![duplicated()]);
}

#[test]
fn duplicating_a_refused_payment_is_accepted() {
    payment()
        .given(vec![refused()])
        .when(record_duplicate())
        .then_expect_events(vec![duplicated()]);
}

#[test]
fn recorded_duplicate_is_listed_on_the_source_payment_without_changing_its_status() {
    let state = state_after(vec![refused()], record_duplicate());
    assert_eq!(state.duplicates, vec![duplicate_id()]);
    assert_eq!(state.status, PaymentStatus::Refused);
}

#[test]
fn duplicating_an_authorised_payment_is_rejected() {
    payment()
        .given(vec![authorised(CaptureMode::Automatic)])
        .when(record_duplicate())
        .then_expect_error(PaymentError::NotDuplicable {
            status: "AUTHORISED".to_string(),
        });
}

#[test]
fn duplicating_a_payment_awaiting_validation_is_rejected() {
    payment()
        .given(vec![authorised(CaptureMode::Manual)])
        .when(record_duplicate())
        .then_expect_error(PaymentError::NotDuplicable {
            status: "AUTHORISED_TO_VALIDATE".to_string(),
        });
}

#[test]
fn duplicating_a_missing_payment_is_not_found() {
    payment()
        .given_no_previous_events()
        .when(record_duplicate())
        .then_expect_error(PaymentError::NotFound);
}

// ---------------------------------------------------------------------------------------
// Card data in events
// ---------------------------------------------------------------------------------------

/// Guards the shape of the card in the event log: if a field is added to
/// `CardSnapshot` (say a PAN or CVV), this test forces a conscious decision.
#[test]
fn card_snapshot_in_events_holds_token_bin_and_last_four_but_no_pan() {
    let events = payment()
        .given_no_previous_events()
        .when(authorise(CaptureMode::Automatic))
        .inspect_result()
        .expect("authorisation is accepted");
    let json = serde_json::to_value(&events).expect("events serialise");
    let card = &json[0]["PaymentAuthorised"]["details"]["card"];
    let mut fields: Vec<&str> = card
        .as_object()
        .expect("card is an object")
        .keys()
        .map(String::as_str)
        .collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        [
            "bin",
            "brand",
            "expiry",
            "fingerprint",
            "holder_name",
            "issuing_country",
            "last_four",
            "networks",
            "token"
        ]
    );
    assert_eq!(card["token"], "tok_test");
    assert_eq!(card["bin"], "497010");
    assert_eq!(card["last_four"], "0006");
    // No run of 13 or more digits (a PAN's length) anywhere in the serialised event.
    let text = json.to_string();
    let longest_digit_run = text
        .split(|c: char| !c.is_ascii_digit())
        .map(str::len)
        .max()
        .unwrap_or(0);
    assert!(
        longest_digit_run < 13,
        "event text holds a PAN-like number: {text}"
    );
}

// ---------------------------------------------------------------------------------------
// Property tests: random command sequences against an authorised payment
// ---------------------------------------------------------------------------------------

/// One command of a random sequence. Amounts are in basis points of the originally
/// authorised amount so that both sides of every limit are exercised whatever that
/// amount is; days are offsets from the original capture date.
#[derive(Debug, Clone)]
enum Step {
    Validate,
    Modify {
        amount_bp: Option<u64>,
        capture_date_offset: Option<i64>,
        today_offset: i64,
    },
    Cancel,
    Capture {
        today_offset: i64,
    },
    Refund {
        amount: RefundAmount,
    },
    RecordDuplicate,
    Expire {
        days_after_authorisation: i64,
    },
    CompleteDeferred {
        approved: bool,
    },
}

/// How much a random refund asks for. Exact remainders (and one cent more) are drawn
/// on purpose: random shares alone almost never hit the full-refund boundary.
#[derive(Debug, Clone)]
enum RefundAmount {
    ShareOfOriginal(u64),
    Remaining,
    RemainingPlusOneCent,
}

/// Weighted so that most sequences get past capture: a cancel ends a sequence's
/// interesting part, so it is drawn rarely.
fn step() -> impl Strategy<Value = Step> {
    let modify = (
        proptest::option::of(1u64..=20_000),
        proptest::option::of(-5i64..=10),
        -5i64..=5,
    )
        .prop_map(
            |(amount_bp, capture_date_offset, today_offset)| Step::Modify {
                amount_bp,
                capture_date_offset,
                today_offset,
            },
        );
    let refund_share = (1u64..=12_000).prop_map(|bp| Step::Refund {
        amount: RefundAmount::ShareOfOriginal(bp),
    });
    prop_oneof![
        3 => Just(Step::Validate),
        4 => modify,
        1 => Just(Step::Cancel),
        5 => (-5i64..=5).prop_map(|today_offset| Step::Capture { today_offset }),
        5 => refund_share,
        2 => Just(Step::Refund { amount: RefundAmount::Remaining }),
        1 => Just(Step::Refund { amount: RefundAmount::RemainingPlusOneCent }),
        1 => Just(Step::RecordDuplicate),
        1 => (5i64..=9).prop_map(|days| Step::Expire { days_after_authorisation: days }),
        2 => proptest::bool::weighted(0.8).prop_map(|approved| Step::CompleteDeferred { approved }),
    ]
}

/// `basis_points` of `cents`, at least one cent.
fn share_of(cents: u64, basis_points: u64) -> Money {
    eur_cents((cents * basis_points / 10_000).max(1))
}

fn offset(date: NaiveDate, days: i64) -> NaiveDate {
    date + chrono::Duration::days(days)
}

/// The command for `step`, the `index`th of the sequence, issued against `live`.
fn to_command(
    step: &Step,
    index: usize,
    live: &Payment,
    original_cents: u64,
    base_date: NaiveDate,
) -> PaymentCommand {
    let n = index as u128;
    let occurred_at = at(1, 0) + chrono::Duration::minutes(index as i64 + 1);
    match step {
        Step::Validate => PaymentCommand::Validate {
            scope: scope(),
            occurred_at,
        },
        Step::Modify {
            amount_bp,
            capture_date_offset,
            today_offset,
        } => PaymentCommand::Modify {
            scope: scope(),
            amount: amount_bp.map(|bp| share_of(original_cents, bp)),
            capture_date: capture_date_offset.map(|days| offset(base_date, days)),
            today: offset(base_date, *today_offset),
            occurred_at,
        },
        Step::Cancel => PaymentCommand::Cancel {
            scope: scope(),
            occurred_at,
        },
        Step::Capture { today_offset } => PaymentCommand::Capture {
            remittance_id: RemittanceId::from_uuid(Uuid::from_u128(0xB000 + n)),
            today: offset(base_date, *today_offset),
            occurred_at,
        },
        Step::Refund { amount } => {
            let remaining_cents = || {
                let captured = live.captured.map_or(Decimal::ZERO, |m| m.amount());
                let refunded = live.refunded.map_or(Decimal::ZERO, |m| m.amount());
                ((captured - refunded) * Decimal::ONE_HUNDRED)
                    .to_u64()
                    .expect("whole cents")
            };
            let amount = match amount {
                RefundAmount::ShareOfOriginal(bp) => share_of(original_cents, *bp),
                RefundAmount::Remaining => eur_cents(remaining_cents().max(1)),
                RefundAmount::RemainingPlusOneCent => eur_cents(remaining_cents() + 1),
            };
            PaymentCommand::Refund {
                scope: scope(),
                refund_id: refund_id(n),
                amount,
                occurred_at,
            }
        }
        Step::RecordDuplicate => PaymentCommand::RecordDuplicate {
            scope: scope(),
            new_payment_id: PaymentId::from_uuid(Uuid::from_u128(0xD000 + n)),
            amount: eur_cents(original_cents),
            occurred_at,
        },
        Step::CompleteDeferred { approved } => PaymentCommand::CompleteDeferredAuthorisation {
            outcome: if *approved {
                AuthorisationOutcome::Approved(authorisation())
            } else {
                AuthorisationOutcome::Declined(refusal())
            },
            occurred_at,
        },
        Step::Expire {
            days_after_authorisation,
        } => PaymentCommand::Expire {
            reauthorisation: None,
            occurred_at: live
                .details
                .as_ref()
                .expect("the payment exists")
                .occurred_at
                + chrono::Duration::days(*days_after_authorisation),
        },
    }
}

/// Whether `command` should be accepted in state `before`, from the rules of the
/// lifecycle written independently of the aggregate.
fn expected_to_be_accepted(before: &Payment, command: &PaymentCommand) -> bool {
    let awaiting_remittance = matches!(
        before.status,
        PaymentStatus::Authorised
            | PaymentStatus::AuthorisedToValidate
            | PaymentStatus::WaitingAuthorisation
    );
    let amount = before.amount.expect("the payment exists").amount();
    match command {
        PaymentCommand::Validate { .. } => before.status == PaymentStatus::AuthorisedToValidate,
        PaymentCommand::Modify {
            amount: new_amount,
            capture_date,
            today,
            ..
        } => {
            let valid_until = before.authorised_at.map(|authorised_at| {
                let details = before.details.as_ref().expect("the payment exists");
                (authorised_at
                    + chrono::Duration::days(i64::from(details.authorisation_validity_days)))
                .date_naive()
            });
            awaiting_remittance
                && (new_amount.is_some() || capture_date.is_some())
                && new_amount.is_none_or(|new| new.amount() <= amount)
                && capture_date.is_none_or(|date| date >= *today)
                && capture_date.is_none_or(|date| {
                    before.status == PaymentStatus::WaitingAuthorisation
                        || valid_until.is_none_or(|until| date <= until)
                })
        }
        PaymentCommand::Cancel { .. } => awaiting_remittance,
        PaymentCommand::Capture { today, .. } => {
            before.status == PaymentStatus::Authorised
                && before.capture_date.expect("the payment exists") <= *today
        }
        PaymentCommand::Refund {
            amount: requested, ..
        } => match before.captured {
            Some(captured) => {
                let refunded = before.refunded.map_or(Decimal::ZERO, |r| r.amount());
                requested.amount() <= captured.amount() - refunded
            }
            None => false,
        },
        PaymentCommand::RecordDuplicate { .. } => !awaiting_remittance,
        PaymentCommand::RemitRefund { refund_id, .. } => before
            .refunds
            .iter()
            .any(|refund| refund.refund_id == *refund_id && refund.remittance_id.is_none()),
        PaymentCommand::Expire { occurred_at, .. } => {
            let details = before.details.as_ref().expect("the payment exists");
            before.status == PaymentStatus::AuthorisedToValidate
                && before.authorised_at.is_some_and(|authorised_at| {
                    *occurred_at
                        >= authorised_at
                            + chrono::Duration::days(i64::from(details.authorisation_validity_days))
                })
        }
        PaymentCommand::CompleteDeferredAuthorisation { .. } => {
            before.status == PaymentStatus::WaitingAuthorisation
        }
        PaymentCommand::CompleteAuthentication { .. }
        | PaymentCommand::AbandonAuthentication { .. } => {
            before.status == PaymentStatus::AuthenticationPending
        }
        // Sequences use the DATE trigger, where declarations are refused.
        PaymentCommand::DeclareShipping { .. } | PaymentCommand::DeclareDelivery { .. } => false,
        PaymentCommand::Authorise { .. }
        | PaymentCommand::AwaitAuthorisation { .. }
        | PaymentCommand::AwaitAuthentication { .. } => false,
    }
}

/// The money invariants that must hold after every step.
fn check_invariants(
    live: &Payment,
    original: Money,
    log: &[PaymentEvent],
) -> Result<(), TestCaseError> {
    let original = original.amount();
    let amount = live.amount.expect("the payment exists").amount();
    prop_assert!(
        amount > Decimal::ZERO && amount <= original,
        "amount {amount} vs authorised {original}"
    );

    let captured = live.captured.map_or(Decimal::ZERO, |m| m.amount());
    let refunded = live.refunded.map_or(Decimal::ZERO, |m| m.amount());
    prop_assert!(
        captured <= original,
        "captured {captured} exceeds authorised {original}"
    );
    prop_assert!(
        refunded <= captured,
        "refunded {refunded} exceeds captured {captured}"
    );
    if live.captured.is_some() {
        // Nothing can change the amount once captured, so the two agree.
        prop_assert_eq!(live.captured, live.amount);
    }

    let is_captured = matches!(
        live.status,
        PaymentStatus::Captured | PaymentStatus::PartiallyRefunded | PaymentStatus::Refunded
    );
    prop_assert_eq!(is_captured, live.captured.is_some());
    prop_assert_eq!(
        live.status == PaymentStatus::Captured,
        is_captured && refunded.is_zero()
    );
    prop_assert_eq!(
        live.status == PaymentStatus::PartiallyRefunded,
        refunded > Decimal::ZERO && refunded < captured
    );
    prop_assert_eq!(
        live.status == PaymentStatus::Refunded,
        captured > Decimal::ZERO && refunded == captured
    );
    prop_assert!(live.status != PaymentStatus::New);
    // Refused only by its deferred authorisation (the sequence starts accepted),
    // and then nothing was ever captured.
    if live.status == PaymentStatus::Refused {
        prop_assert!(live.refusal.is_some() && live.captured.is_none());
    }
    // Only an unvalidated, uncaptured authorisation expires.
    if live.status == PaymentStatus::Expired {
        prop_assert!(!live.validated && live.captured.is_none());
    }

    let refunds_in_log: Decimal = log
        .iter()
        .filter_map(|event| match event {
            PaymentEvent::PaymentRefunded { amount, .. } => Some(amount.amount()),
            _ => None,
        })
        .sum();
    prop_assert_eq!(refunds_in_log, refunded);
    Ok(())
}

/// Handles `command` directly on `aggregate`. In cqrs-es 0.5.0 `EventSink::write`
/// applies each event to the aggregate as it is written, so after `handle` the
/// aggregate is the live state; the emitted events are returned for the replay check.
fn handle(
    runtime: &tokio::runtime::Runtime,
    aggregate: &mut Payment,
    command: PaymentCommand,
) -> (Result<(), PaymentError>, Vec<PaymentEvent>) {
    let sink = EventSink::default();
    let result = runtime.block_on(aggregate.handle(command, &(), &sink));
    (result, runtime.block_on(sink.collect()))
}

/// Authorises a payment, then runs `steps` on it one command at a time, checking after
/// each one the expected outcome, the money invariants and that replaying the event
/// log rebuilds the live state.
fn run_sequence(
    capture_mode: CaptureMode,
    deferred_beyond_validity: bool,
    original_cents: u64,
    steps: &[Step],
) -> Result<(), TestCaseError> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current-thread runtime");
    let base_date = day(CAPTURE_DAY);
    let original = eur_cents(original_cents);

    let mut live = Payment::default();
    let details = Box::new(details_with(capture_mode, original, base_date));
    let first = if deferred_beyond_validity {
        PaymentCommand::AwaitAuthorisation {
            details,
            card_check: AuthorisationOutcome::Approved(authorisation()),
        }
    } else {
        PaymentCommand::Authorise {
            details,
            outcome: AuthorisationOutcome::Approved(authorisation()),
        }
    };
    let (result, mut log) = handle(&runtime, &mut live, first);
    prop_assert_eq!(result, Ok(()));
    check_invariants(&live, original, &log)?;

    for (index, step) in steps.iter().enumerate() {
        let command = to_command(step, index, &live, original_cents, base_date);
        let before = live.clone();
        let expected = expected_to_be_accepted(&before, &command);
        let (result, events) = handle(&runtime, &mut live, command.clone());

        prop_assert_eq!(
            result.is_ok(),
            expected,
            "step {} {:?} on {:?}: {:?}",
            index,
            command,
            before.status,
            result
        );
        if result.is_ok() {
            prop_assert_eq!(events.len(), 1);
        } else {
            prop_assert!(events.is_empty());
            prop_assert_eq!(&live, &before, "a rejected command changed the state");
        }
        log.extend(events);

        check_invariants(&live, original, &log)?;
        let replayed = replay(log.iter().cloned());
        prop_assert_eq!(
            &replayed,
            &live,
            "replaying the log differs from the live state"
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn money_invariants_hold_along_any_command_sequence(
        capture_mode in prop_oneof![Just(CaptureMode::Automatic), Just(CaptureMode::Manual)],
        deferred_beyond_validity in proptest::bool::weighted(0.25),
        original_cents in 1u64..=10_000_000,
        steps in proptest::collection::vec(step(), 0..=20),
    ) {
        run_sequence(capture_mode, deferred_beyond_validity, original_cents, &steps)?;
    }
}

// ---------------------------------------------------------------------------------------
// Remitting refunds (CM-10, docs/adr/0008)
// ---------------------------------------------------------------------------------------

fn next_remittance_id() -> RemittanceId {
    RemittanceId::from_uuid(Uuid::from_u128(0xB002))
}

fn remit_refund(n: u128, remittance_id: RemittanceId) -> PaymentCommand {
    PaymentCommand::RemitRefund {
        remittance_id,
        refund_id: refund_id(n),
        occurred_at: at(16, 23),
    }
}

fn refund_remitted(n: u128, amount: &str, remittance_id: RemittanceId) -> PaymentEvent {
    PaymentEvent::RefundRemitted {
        refund_id: refund_id(n),
        remittance_id,
        amount: eur(amount),
        occurred_at: at(16, 23),
    }
}

#[test]
fn a_refund_is_remitted_with_its_amount() {
    let mut given = captured_payment();
    given.push(refunded(1, "30.00", "30.00"));
    payment()
        .given(given)
        .when(remit_refund(1, next_remittance_id()))
        .then_expect_events(vec![refund_remitted(1, "30.00", next_remittance_id())]);
}

#[test]
fn a_refund_is_remitted_once_whatever_the_remittance() {
    let mut given = captured_payment();
    given.push(refunded(1, "30.00", "30.00"));
    given.push(refund_remitted(1, "30.00", next_remittance_id()));
    for remittance_id in [next_remittance_id(), remittance_id()] {
        payment()
            .given(given.clone())
            .when(remit_refund(1, remittance_id))
            .then_expect_error(PaymentError::RefundAlreadyRemitted);
    }
}

#[test]
fn an_unknown_refund_cannot_be_remitted() {
    let mut given = captured_payment();
    given.push(refunded(1, "30.00", "30.00"));
    payment()
        .given(given)
        .when(remit_refund(2, next_remittance_id()))
        .then_expect_error(PaymentError::RefundNotFound);
    payment()
        .given(vec![])
        .when(remit_refund(1, next_remittance_id()))
        .then_expect_error(PaymentError::RefundNotFound);
}

#[test]
fn each_refund_is_remitted_on_its_own_and_the_state_keeps_which_remittance() {
    let mut given = captured_payment();
    given.push(refunded(1, "30.00", "30.00"));
    given.push(refund_remitted(1, "30.00", next_remittance_id()));
    given.push(refunded(2, "20.00", "50.00"));
    let state = state_after(given, remit_refund(2, remittance_id()));
    let remitted: Vec<_> = state
        .refunds
        .iter()
        .map(|refund| (refund.refund_id, refund.amount, refund.remittance_id))
        .collect();
    assert_eq!(
        remitted,
        vec![
            (refund_id(1), eur("30.00"), Some(next_remittance_id())),
            (refund_id(2), eur("20.00"), Some(remittance_id())),
        ]
    );
    // Remitting changes neither the status nor the refunded total.
    assert_eq!(state.status, PaymentStatus::PartiallyRefunded);
    assert_eq!(state.refunded, Some(eur("50.00")));
}

#[test]
fn payment_details_recorded_before_contracts_read_as_the_simulators() {
    let mut json = serde_json::to_value(details(CaptureMode::Automatic)).unwrap();
    json.as_object_mut().unwrap().remove("acquirer_contract");
    let details: PaymentDetails = serde_json::from_value(json).unwrap();
    assert_eq!(details.acquirer_contract, "SIMULATOR");
}

// ---------------------------------------------------------------------------------------
// 3-D Secure challenge (SE-1)
// ---------------------------------------------------------------------------------------

fn pending() -> PaymentEvent {
    let mut details = details(CaptureMode::Automatic);
    details.three_ds = crate::three_ds::ThreeDsResult::new(
        crate::three_ds::ThreeDsEnrolled::Enrolled,
        crate::three_ds::ThreeDsStatus::ChallengePending,
        Some("3ds_1".to_string()),
        None,
    );
    PaymentEvent::PaymentAuthenticationPending {
        details,
        abandon_at: at(2, 11),
    }
}

fn authenticated() -> crate::three_ds::ThreeDsResult {
    crate::three_ds::ThreeDsResult::new(
        crate::three_ds::ThreeDsEnrolled::Enrolled,
        crate::three_ds::ThreeDsStatus::Authenticated,
        Some("3ds_1".to_string()),
        Some("05".to_string()),
    )
}

#[test]
fn a_completed_challenge_records_the_result_then_the_authorisation() {
    let mut completed_details = details(CaptureMode::Automatic);
    completed_details.three_ds = authenticated();
    completed_details.occurred_at = at(2, 10) + chrono::Duration::minutes(2);
    TestFramework::<Payment>::with(())
        .given(vec![pending()])
        .when(PaymentCommand::CompleteAuthentication {
            three_ds: authenticated(),
            checks: vec![],
            outcome: AuthorisationOutcome::Approved(authorisation()),
            card_check_only: false,
            occurred_at: at(2, 10) + chrono::Duration::minutes(2),
        })
        .then_expect_events(vec![
            PaymentEvent::PaymentAuthenticated {
                three_ds: authenticated(),
                checks: vec![],
                occurred_at: at(2, 10) + chrono::Duration::minutes(2),
            },
            PaymentEvent::PaymentAuthorised {
                details: completed_details,
                authorisation: authorisation(),
            },
        ]);
}

#[test]
fn a_pending_payment_takes_no_other_action_and_is_completed_once() {
    TestFramework::<Payment>::with(())
        .given(vec![pending()])
        .when(PaymentCommand::Cancel {
            scope: scope(),
            occurred_at: at(2, 10),
        })
        .then_expect_error(PaymentError::AuthenticationPending);
    let complete = PaymentCommand::CompleteAuthentication {
        three_ds: authenticated(),
        checks: vec![],
        outcome: AuthorisationOutcome::Approved(authorisation()),
        card_check_only: false,
        occurred_at: at(2, 11),
    };
    TestFramework::<Payment>::with(())
        .given(vec![authorised(CaptureMode::Automatic)])
        .when(complete.clone())
        .then_expect_error(PaymentError::NotAuthenticationPending {
            status: "AUTHORISED".to_string(),
        });
    TestFramework::<Payment>::with(())
        .given(vec![
            pending(),
            PaymentEvent::PaymentAuthenticationAbandoned {
                occurred_at: at(2, 11),
            },
        ])
        .when(complete)
        .then_expect_error(PaymentError::NotAuthenticationPending {
            status: "ABANDONED".to_string(),
        });
}

#[test]
fn an_unanswered_challenge_is_abandoned_and_can_be_duplicated() {
    TestFramework::<Payment>::with(())
        .given(vec![pending()])
        .when(PaymentCommand::AbandonAuthentication {
            occurred_at: at(2, 11),
        })
        .then_expect_events(vec![PaymentEvent::PaymentAuthenticationAbandoned {
            occurred_at: at(2, 11),
        }]);
    let mut payment = Payment::default();
    payment.apply(pending());
    payment.apply(PaymentEvent::PaymentAuthenticationAbandoned {
        occurred_at: at(2, 11),
    });
    assert_eq!(payment.status, PaymentStatus::Abandoned);
    assert!(payment.ensure_duplicable(&scope()).is_ok());
}
