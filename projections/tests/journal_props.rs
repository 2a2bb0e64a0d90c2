//! Property tests of the journal's accounting rules: random payment lifecycles run
//! on the real `Payment` and `Remittance` aggregates, and their events go through
//! `payment_entries` / `remittance_entries`. Every entry balances, the trial
//! balance of each currency is zero after every event, and each payment's account
//! balances match what its aggregate says.

use std::collections::{BTreeMap, BTreeSet};

use caisse_domain::card::{CardBrand, CardExpiry, CardSnapshot};
use caisse_domain::ids::RefundId;
use caisse_domain::payment::{
    AccessScope, Authorisation, AuthorisationOutcome, CaptureMode, Channel, Payment,
    PaymentCommand, PaymentDetails, PaymentEvent, PaymentStatus, Refusal, RefusalCategory,
    DEFAULT_AUTHORISATION_VALIDITY_DAYS,
};
use caisse_domain::remittance::{
    Remittance, RemittanceCommand, RemittanceError, RemittanceEvent, RemittedPayment,
    RemittedRefund,
};
use caisse_domain::{Currency, Mode, Money, PaymentId, RemittanceId, ShopId};
use caisse_projections::journal::{
    payment_entries, remittance_entries, Account, Entry, PaymentBalances,
};
use caisse_projections::money::to_milli;
use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use proptest::prelude::*;
use rust_decimal::Decimal;
use uuid::Uuid;

/// Currencies with 2, 0 and 3 minor units.
const CURRENCIES: [&str; 3] = ["EUR", "JPY", "KWD"];

#[derive(Debug, Clone)]
struct PaymentSpec {
    currency: usize,
    /// Amount in minor units of the currency.
    minor_units: i64,
    capture_mode: CaptureMode,
    approved: bool,
    /// Deferred beyond the authorisation validity (TY-4): a card check first.
    deferred: bool,
}

#[derive(Debug, Clone)]
enum Step {
    /// The deferred authorisation, asked the day before capture: granted or refused.
    CompleteDeferred(usize, bool),
    Validate(usize),
    /// New amount as basis points of the current one.
    Modify(usize, i64),
    Cancel(usize),
    Expire(usize),
    Capture(usize),
    /// Amount as basis points of the captured amount (over 10 000 is refused).
    Refund(usize, i64),
    RefundRemaining(usize),
    Duplicate(usize),
    /// Records a remittance of every capture not yet remitted, per remittance id.
    Remit,
}

fn payment_spec() -> impl Strategy<Value = PaymentSpec> {
    (
        0..CURRENCIES.len(),
        1i64..=10_000_000,
        prop_oneof![Just(CaptureMode::Automatic), Just(CaptureMode::Manual)],
        prop::bool::weighted(0.9),
        prop::bool::weighted(0.3),
    )
        .prop_map(
            |(currency, minor_units, capture_mode, approved, deferred)| PaymentSpec {
                currency,
                minor_units,
                capture_mode,
                approved,
                deferred,
            },
        )
}

fn step() -> impl Strategy<Value = Step> {
    let payment = 0usize..4;
    prop_oneof![
        3 => (payment.clone(), prop::bool::weighted(0.8))
            .prop_map(|(p, granted)| Step::CompleteDeferred(p, granted)),
        3 => payment.clone().prop_map(Step::Validate),
        3 => (payment.clone(), 1i64..=10_000).prop_map(|(p, bp)| Step::Modify(p, bp)),
        1 => payment.clone().prop_map(Step::Cancel),
        1 => payment.clone().prop_map(Step::Expire),
        5 => payment.clone().prop_map(Step::Capture),
        5 => (payment.clone(), 1i64..=12_000).prop_map(|(p, bp)| Step::Refund(p, bp)),
        2 => payment.clone().prop_map(Step::RefundRemaining),
        1 => payment.prop_map(Step::Duplicate),
        3 => Just(Step::Remit),
    ]
}

fn shop_id() -> ShopId {
    ShopId::from_uuid(Uuid::from_u128(0x5409))
}

fn scope() -> AccessScope {
    AccessScope::single(shop_id(), Mode::Test)
}

fn start() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 3, 2, 10, 0, 0).unwrap()
}

fn today() -> NaiveDate {
    start().date_naive()
}

fn money(minor_units: i64, currency: Currency) -> Money {
    Money::positive(Decimal::new(minor_units, currency.minor_units()), currency)
        .expect("a positive amount in the currency's minor units")
}

/// `basis_points` of `amount`, at least one minor unit.
fn share(amount: &Money, basis_points: i64) -> Money {
    let currency = amount.currency();
    let minor = to_milli(amount) / 10i64.pow(3 - currency.minor_units());
    money((minor * basis_points / 10_000).max(1), currency)
}

fn details(index: usize, spec: &PaymentSpec) -> PaymentDetails {
    let currency = Currency::parse(CURRENCIES[spec.currency]).unwrap();
    PaymentDetails {
        payment_id: payment_id(index),
        shop_id: shop_id(),
        mode: Mode::Test,
        order_reference: format!("order-{index}"),
        amount: money(spec.minor_units, currency),
        channel: Channel::Ecommerce,
        capture_mode: spec.capture_mode,
        capture_date: today(),
        capture_trigger: Default::default(),
        instalment_of: None,
        acquirer_contract: caisse_domain::acquirer::default_contract(),
        buyer_country: None,
        buyer_language: None,
        three_ds: Default::default(),
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
            fingerprint: "fp_test".to_string(),
            holder_name: None,
            issuing_country: None,
        },
        buyer_email: None,
        buyer_ip: None,
        duplicated_from: None,
        authorisation_validity_days: DEFAULT_AUTHORISATION_VALIDITY_DAYS,
        occurred_at: start(),
    }
}

fn authorisation() -> Authorisation {
    Authorisation {
        authorisation_code: "A1".to_string(),
        acquirer_reference: "acq".to_string(),
    }
}

fn refusal() -> Refusal {
    Refusal {
        code: "51".to_string(),
        message: "insufficient funds".to_string(),
        category: RefusalCategory::IssuerDeclined,
    }
}

fn payment_id(index: usize) -> PaymentId {
    PaymentId::from_uuid(Uuid::from_u128(0xA000 + index as u128))
}

/// The aggregates, the journal built from their events, and what the test
/// remembers about remittances (the payment aggregate does not know whether its
/// remittance was recorded).
struct World {
    runtime: tokio::runtime::Runtime,
    payments: Vec<Payment>,
    /// Remittance id of the current run, per currency, and its captures so far.
    open_runs: BTreeMap<Currency, RemittanceId>,
    pending: BTreeMap<RemittanceId, Vec<RemittedPayment>>,
    remitted: BTreeSet<String>,
    /// Refunds not yet sent to the bank: payment index and refund id.
    pending_refunds: Vec<(usize, RefundId)>,
    /// Debits minus credits, per payment and account.
    balances: BTreeMap<(String, Account), i64>,
    /// Debits minus credits, per currency (the trial balance).
    trial: BTreeMap<Currency, i64>,
    /// Currency of each payment's lines.
    currencies: BTreeMap<String, Currency>,
    entries: usize,
    next_id: u128,
}

impl World {
    fn fresh_id(&mut self) -> Uuid {
        self.next_id += 1;
        Uuid::from_u128(0xF000_0000 + self.next_id)
    }

    fn handle_payment(
        &mut self,
        index: usize,
        command: PaymentCommand,
    ) -> Result<Vec<PaymentEvent>, TestCaseError> {
        let sink = EventSink::default();
        let before = self.payments[index].clone();
        let result = self
            .runtime
            .block_on(self.payments[index].handle(command, &(), &sink));
        let events = self.runtime.block_on(sink.collect());
        match result {
            Ok(()) => {}
            // Random steps often break a lifecycle rule; a rejection changes nothing.
            Err(_) => {
                prop_assert!(events.is_empty(), "a rejected command emitted events");
                prop_assert_eq!(&self.payments[index], &before);
            }
        }
        let id = payment_id(index).to_string();
        for event in &events {
            let before = self.balances_of(&id);
            let entries = payment_entries(&id, &before, event);
            self.post(&entries, event_currency(event).or(before.currency))?;
        }
        Ok(events)
    }

    /// Adds entries to the journal, checking each one and the trial balance.
    fn post(&mut self, entries: &[Entry], currency: Option<Currency>) -> Result<(), TestCaseError> {
        for entry in entries {
            prop_assert!(entry.is_balanced(), "unbalanced entry {:?}", entry);
            prop_assert_eq!(entry.lines.len(), 2);
            prop_assert!(entry
                .lines
                .iter()
                .all(|line| (line.debit_milli > 0) != (line.credit_milli > 0)
                    && line.debit_milli >= 0
                    && line.credit_milli >= 0));
            if let Some(currency) = currency {
                prop_assert_eq!(entry.currency, currency);
            }
            let payment = entry
                .payment_id
                .clone()
                .expect("every entry names its payment");
            self.currencies.insert(payment.clone(), entry.currency);
            for line in &entry.lines {
                let change = line.debit_milli - line.credit_milli;
                *self
                    .balances
                    .entry((payment.clone(), line.account))
                    .or_default() += change;
                *self.trial.entry(entry.currency).or_default() += change;
            }
            self.entries += 1;
        }
        for (currency, balance) in &self.trial {
            prop_assert_eq!(*balance, 0, "trial balance of {} is not zero", currency);
        }
        Ok(())
    }

    fn remit(&mut self) -> Result<(), TestCaseError> {
        self.open_runs.clear();
        for (remittance_id, payments) in std::mem::take(&mut self.pending) {
            let mut remittance = Remittance::default();
            let sink = EventSink::default();
            let command = RemittanceCommand::Submit {
                remittance_id,
                shop_id: shop_id(),
                mode: Mode::Test,
                contract: caisse_domain::acquirer::default_contract(),
                business_date: today(),
                payments: payments.clone(),
                refunds: vec![],
                occurred_at: start() + Duration::hours(1),
            };
            let result = self
                .runtime
                .block_on(remittance.handle(command, &(), &sink));
            prop_assert!(
                matches!(result, Ok(()) | Err(RemittanceError::Empty)),
                "{:?}",
                result
            );
            for event in self.runtime.block_on(sink.collect()) {
                let entries = remittance_entries(&event);
                let RemittanceEvent::RemittanceSubmitted { payments, .. } = &event;
                prop_assert_eq!(entries.len(), payments.len());
                for (entry, payment) in entries.iter().zip(payments) {
                    prop_assert_eq!(entry.remittance_id.clone(), Some(remittance_id.to_string()));
                    prop_assert_eq!(
                        entry.payment_id.clone(),
                        Some(payment.payment_id.to_string())
                    );
                }
                self.post(&entries, None)?;
                for payment in payments {
                    self.remitted.insert(payment.payment_id.to_string());
                }
            }
        }
        self.remit_refunds()
    }

    /// Sends the refunds of payments whose capture is remitted, one remittance of
    /// credits per currency, as the cut-off does (docs/adr/0008).
    fn remit_refunds(&mut self) -> Result<(), TestCaseError> {
        let mut credits: BTreeMap<Currency, (RemittanceId, Vec<RemittedRefund>)> = BTreeMap::new();
        let mut waiting = Vec::new();
        for (index, refund_id) in std::mem::take(&mut self.pending_refunds) {
            if !self.remitted.contains(&payment_id(index).to_string()) {
                waiting.push((index, refund_id));
                continue;
            }
            let currency = self.payments[index].amount.expect("exists").currency();
            let remittance_id = match credits.get(&currency) {
                Some((id, _)) => *id,
                None => RemittanceId::from_uuid(self.fresh_id()),
            };
            let command = PaymentCommand::RemitRefund {
                remittance_id,
                refund_id,
                occurred_at: start() + Duration::hours(1),
            };
            let events = self.handle_payment(index, command)?;
            prop_assert_eq!(events.len(), 1, "a pending refund is remitted once");
            let PaymentEvent::RefundRemitted { amount, .. } = &events[0] else {
                return Err(TestCaseError::fail("RemitRefund emits RefundRemitted"));
            };
            // Never twice: a second attempt is refused and changes nothing.
            let again = PaymentCommand::RemitRefund {
                remittance_id: RemittanceId::from_uuid(self.fresh_id()),
                refund_id,
                occurred_at: start() + Duration::hours(1),
            };
            prop_assert!(self.handle_payment(index, again)?.is_empty());
            credits
                .entry(currency)
                .or_insert_with(|| (remittance_id, Vec::new()))
                .1
                .push(RemittedRefund {
                    payment_id: payment_id(index),
                    refund_id,
                    amount: *amount,
                });
        }
        self.pending_refunds = waiting;
        for (_currency, (remittance_id, refunds)) in credits {
            let mut remittance = Remittance::default();
            let sink = EventSink::default();
            let command = RemittanceCommand::Submit {
                remittance_id,
                shop_id: shop_id(),
                mode: Mode::Test,
                contract: caisse_domain::acquirer::default_contract(),
                business_date: today(),
                payments: vec![],
                refunds: refunds.clone(),
                occurred_at: start() + Duration::hours(1),
            };
            let result = self
                .runtime
                .block_on(remittance.handle(command, &(), &sink));
            prop_assert!(result.is_ok(), "{:?}", result);
            for event in self.runtime.block_on(sink.collect()) {
                let entries = remittance_entries(&event);
                prop_assert_eq!(entries.len(), refunds.len());
                self.post(&entries, None)?;
            }
        }
        Ok(())
    }

    /// The payment's balances as the projection reads them from its lines.
    fn balances_of(&self, payment: &str) -> PaymentBalances {
        let mut before = PaymentBalances::default();
        for ((id, account), balance) in &self.balances {
            if id == payment {
                before.balances.insert(*account, *balance);
                before.currency = self.currencies.get(id).copied();
            }
        }
        before
    }

    fn balance(&self, payment: &str, account: Account) -> i64 {
        self.balances
            .get(&(payment.to_string(), account))
            .copied()
            .unwrap_or(0)
    }

    /// Each payment's accounts against its aggregate's state.
    fn check_balances(&self) -> Result<(), TestCaseError> {
        for (index, payment) in self.payments.iter().enumerate() {
            let id = payment_id(index).to_string();
            let milli = |money: Option<Money>| money.as_ref().map_or(0, to_milli);
            let held = match payment.status {
                PaymentStatus::Authorised | PaymentStatus::AuthorisedToValidate => {
                    milli(payment.amount)
                }
                _ => 0,
            };
            let awaiting = match payment.status {
                PaymentStatus::WaitingAuthorisation => milli(payment.amount),
                _ => 0,
            };
            let captured = milli(payment.captured);
            let refunded = milli(payment.refunded);
            let remitted = if self.remitted.contains(&id) {
                captured
            } else {
                0
            };
            let refunds_remitted: i64 = payment
                .refunds
                .iter()
                .filter(|refund| refund.remittance_id.is_some())
                .map(|refund| to_milli(&refund.amount))
                .sum();
            prop_assert_eq!(
                self.balance(&id, Account::AuthorisationHolds),
                held,
                "holds of {:?}",
                payment.status
            );
            prop_assert_eq!(
                self.balance(&id, Account::MerchantReceivable)
                    + self.balance(&id, Account::RemittedToAcquirer),
                captured - refunded,
                "receivable side = captured - refunded"
            );
            prop_assert_eq!(
                self.balance(&id, Account::MerchantReceivable),
                (captured - remitted) - (refunded - refunds_remitted),
                "receivable = captures and refunds not yet remitted"
            );
            prop_assert_eq!(
                self.balance(&id, Account::RemittedToAcquirer),
                remitted - refunds_remitted
            );
            prop_assert_eq!(
                self.balance(&id, Account::DeferredAuthorisations),
                awaiting,
                "deferred authorisations of {:?}",
                payment.status
            );
            prop_assert_eq!(
                self.balance(&id, Account::BuyerFunds),
                -(held + awaiting + captured - refunded),
                "buyer funds = what is held, awaiting or paid"
            );
        }
        Ok(())
    }
}

/// The currency of a payment event's money, when it carries some.
fn event_currency(event: &PaymentEvent) -> Option<Currency> {
    match event {
        PaymentEvent::PaymentAuthorised { details, .. }
        | PaymentEvent::PaymentAwaitingAuthorisation { details, .. }
        | PaymentEvent::PaymentRefused { details, .. }
        | PaymentEvent::PaymentAuthenticationPending { details, .. } => {
            Some(details.amount.currency())
        }
        PaymentEvent::PaymentValidated { .. }
        | PaymentEvent::PaymentAuthenticated { .. }
        | PaymentEvent::PaymentAuthenticationAbandoned { .. }
        | PaymentEvent::DeferredAuthorisationGranted { .. }
        | PaymentEvent::DeferredAuthorisationRefused { .. }
        | PaymentEvent::ShipmentDeclared { .. }
        | PaymentEvent::DeliveryDeclared { .. } => None,
        PaymentEvent::PaymentModified { amount, .. }
        | PaymentEvent::PaymentReauthorised { amount, .. }
        | PaymentEvent::PaymentCancelled { amount, .. }
        | PaymentEvent::PaymentExpired { amount, .. }
        | PaymentEvent::PaymentCaptured { amount, .. }
        | PaymentEvent::PaymentRefunded { amount, .. }
        | PaymentEvent::RefundRemitted { amount, .. }
        | PaymentEvent::PaymentDuplicated { amount, .. } => Some(amount.currency()),
    }
}

fn run(specs: &[PaymentSpec], steps: &[Step]) -> Result<World, TestCaseError> {
    let mut world = World {
        runtime: tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a current-thread runtime"),
        payments: vec![Payment::default(); specs.len()],
        open_runs: BTreeMap::new(),
        pending: BTreeMap::new(),
        remitted: BTreeSet::new(),
        pending_refunds: Vec::new(),
        balances: BTreeMap::new(),
        trial: BTreeMap::new(),
        currencies: BTreeMap::new(),
        entries: 0,
        next_id: 0,
    };
    for (index, spec) in specs.iter().enumerate() {
        let outcome = if spec.approved {
            AuthorisationOutcome::Approved(authorisation())
        } else {
            AuthorisationOutcome::Declined(refusal())
        };
        let details = Box::new(details(index, spec));
        let command = if spec.deferred {
            PaymentCommand::AwaitAuthorisation {
                details,
                card_check: outcome,
            }
        } else {
            PaymentCommand::Authorise { details, outcome }
        };
        prop_assert_eq!(world.handle_payment(index, command)?.len(), 1);
    }
    world.check_balances()?;

    for (number, step) in steps.iter().enumerate() {
        let occurred_at = start() + Duration::minutes(number as i64 + 1);
        let index = match step {
            Step::CompleteDeferred(p, _)
            | Step::Validate(p)
            | Step::Modify(p, _)
            | Step::Cancel(p)
            | Step::Expire(p)
            | Step::Capture(p)
            | Step::Refund(p, _)
            | Step::RefundRemaining(p)
            | Step::Duplicate(p) => p % specs.len(),
            Step::Remit => {
                world.remit()?;
                world.check_balances()?;
                continue;
            }
        };
        let payment = world.payments[index].clone();
        let amount = payment
            .amount
            .expect("every payment was authorised or refused");
        let remaining = || {
            let captured = payment.captured.unwrap_or(Money::zero(amount.currency()));
            let refunded = payment.refunded.unwrap_or(Money::zero(amount.currency()));
            captured
                .checked_sub(&refunded)
                .expect("refunded <= captured")
        };
        let command = match step {
            Step::CompleteDeferred(_, granted) => PaymentCommand::CompleteDeferredAuthorisation {
                outcome: if *granted {
                    AuthorisationOutcome::Approved(authorisation())
                } else {
                    AuthorisationOutcome::Declined(refusal())
                },
                occurred_at,
            },
            Step::Validate(_) => PaymentCommand::Validate {
                scope: scope(),
                occurred_at,
            },
            Step::Modify(_, basis_points) => PaymentCommand::Modify {
                scope: scope(),
                amount: Some(share(&amount, *basis_points)),
                capture_date: None,
                today: today(),
                occurred_at,
            },
            Step::Cancel(_) => PaymentCommand::Cancel {
                scope: scope(),
                occurred_at,
            },
            Step::Expire(_) => PaymentCommand::Expire {
                reauthorisation: None,
                occurred_at: start()
                    + Duration::days(i64::from(DEFAULT_AUTHORISATION_VALIDITY_DAYS))
                    + Duration::minutes(number as i64),
            },
            Step::Capture(_) => {
                let remittance_id = match world.open_runs.get(&amount.currency()) {
                    Some(id) => *id,
                    None => {
                        let id = RemittanceId::from_uuid(world.fresh_id());
                        world.open_runs.insert(amount.currency(), id);
                        id
                    }
                };
                PaymentCommand::Capture {
                    remittance_id,
                    today: today(),
                    occurred_at,
                }
            }
            Step::Refund(_, basis_points) => PaymentCommand::Refund {
                scope: scope(),
                refund_id: RefundId::from_uuid(world.fresh_id()),
                amount: share(payment.captured.as_ref().unwrap_or(&amount), *basis_points),
                occurred_at,
            },
            Step::RefundRemaining(_) => {
                let remaining = remaining();
                PaymentCommand::Refund {
                    scope: scope(),
                    refund_id: RefundId::from_uuid(world.fresh_id()),
                    amount: if remaining.is_zero() {
                        money(1, amount.currency())
                    } else {
                        remaining
                    },
                    occurred_at,
                }
            }
            Step::Duplicate(_) => PaymentCommand::RecordDuplicate {
                scope: scope(),
                new_payment_id: PaymentId::from_uuid(world.fresh_id()),
                amount,
                occurred_at,
            },
            Step::Remit => unreachable!("handled above"),
        };
        for event in world.handle_payment(index, command)? {
            if let PaymentEvent::PaymentRefunded { refund_id, .. } = event {
                world.pending_refunds.push((index, refund_id));
            }
            if let PaymentEvent::PaymentCaptured {
                remittance_id,
                amount,
                ..
            } = event
            {
                world
                    .pending
                    .entry(remittance_id)
                    .or_default()
                    .push(RemittedPayment {
                        payment_id: payment_id(index),
                        amount,
                    });
            }
        }
        world.check_balances()?;
    }
    // Finally every capture is remitted, as the next remittance run would do.
    world.remit()?;
    world.check_balances()?;
    Ok(world)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn entries_balance_and_accounts_follow_the_aggregates(
        specs in prop::collection::vec(payment_spec(), 1..=4),
        steps in prop::collection::vec(step(), 0..=30),
    ) {
        run(&specs, &steps)?;
    }
}

/// One fixed lifecycle, so the property above is known to reach every rule.
#[test]
fn a_full_lifecycle_reaches_every_accounting_rule() {
    let specs = vec![
        PaymentSpec {
            currency: 0,
            minor_units: 10_000,
            capture_mode: CaptureMode::Automatic,
            approved: true,
            deferred: false,
        },
        PaymentSpec {
            currency: 0,
            minor_units: 2_000,
            capture_mode: CaptureMode::Automatic,
            approved: true,
            deferred: false,
        },
        PaymentSpec {
            currency: 1,
            minor_units: 700,
            capture_mode: CaptureMode::Manual,
            approved: true,
            deferred: false,
        },
        PaymentSpec {
            currency: 2,
            minor_units: 1_234,
            capture_mode: CaptureMode::Automatic,
            approved: false,
            deferred: false,
        },
        PaymentSpec {
            currency: 0,
            minor_units: 4_000,
            capture_mode: CaptureMode::Automatic,
            approved: true,
            deferred: true,
        },
        PaymentSpec {
            currency: 0,
            minor_units: 900,
            capture_mode: CaptureMode::Automatic,
            approved: true,
            deferred: true,
        },
    ];
    let steps = vec![
        Step::Modify(0, 8_000),
        Step::Modify(4, 7_500),
        Step::CompleteDeferred(4, true),
        Step::Capture(0),
        Step::Capture(4),
        Step::Remit,
        Step::Refund(0, 3_750),
        Step::Cancel(1),
        Step::Expire(2),
        Step::Duplicate(3),
        Step::CompleteDeferred(5, false),
        Step::RefundRemaining(0),
    ];
    let world = run(&specs, &steps).expect("the lifecycle keeps the journal right");
    let statuses: Vec<PaymentStatus> = world.payments.iter().map(|p| p.status).collect();
    assert_eq!(
        statuses,
        vec![
            PaymentStatus::Refunded,
            PaymentStatus::Cancelled,
            PaymentStatus::Expired,
            PaymentStatus::Refused,
            PaymentStatus::Captured,
            PaymentStatus::Refused,
        ]
    );
    // Three authorisations and two deferred orders (not the refusal), two
    // modifications, the grant, two captures and their two remittance entries,
    // two refunds and their two remittance entries, the cancellation, the expiry
    // and the deferred refusal.
    assert_eq!(world.entries, 19);
    // EUR 40.00 deferred, lowered to 30.00 while waiting, granted, captured, remitted.
    let deferred = payment_id(4).to_string();
    assert_eq!(world.balance(&deferred, Account::DeferredAuthorisations), 0);
    assert_eq!(world.balance(&deferred, Account::AuthorisationHolds), 0);
    assert_eq!(
        world.balance(&deferred, Account::RemittedToAcquirer),
        30_000
    );
    assert_eq!(world.balance(&deferred, Account::BuyerFunds), -30_000);
    let refused = payment_id(5).to_string();
    assert_eq!(world.balance(&refused, Account::DeferredAuthorisations), 0);
    assert_eq!(world.balance(&refused, Account::BuyerFunds), 0);
    let eur = Currency::EUR;
    let first = payment_id(0).to_string();
    // EUR 100.00 lowered to 80.00, captured, remitted, refunded 30.00 then 50.00.
    assert_eq!(world.balance(&first, Account::AuthorisationHolds), 0);
    assert_eq!(world.balance(&first, Account::MerchantReceivable), 0);
    assert_eq!(world.balance(&first, Account::RemittedToAcquirer), 0);
    assert_eq!(world.balance(&first, Account::BuyerFunds), 0);
    assert_eq!(world.trial.get(&eur), Some(&0));
}

/// Balances part-way: what an auditor would read after the capture and one refund.
#[test]
fn balances_part_way_through_a_lifecycle() {
    let specs = vec![PaymentSpec {
        currency: 0,
        minor_units: 10_000,
        capture_mode: CaptureMode::Automatic,
        approved: true,
        deferred: false,
    }];
    let steps = vec![
        Step::Modify(0, 8_000),
        Step::Capture(0),
        Step::Remit,
        Step::Refund(0, 3_750),
    ];
    let world = run(&specs, &steps).expect("the lifecycle keeps the journal right");
    let id = payment_id(0).to_string();
    assert_eq!(world.balance(&id, Account::AuthorisationHolds), 0);
    assert_eq!(world.balance(&id, Account::MerchantReceivable), 0);
    assert_eq!(world.balance(&id, Account::RemittedToAcquirer), 50_000);
    assert_eq!(world.balance(&id, Account::BuyerFunds), -50_000);
}
