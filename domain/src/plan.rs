//! The `PaymentPlan` aggregate: one order paid in instalments — pay in 3 without
//! fees (TY-1), pay in n (TY-2), deposit and balance (TY-5). Each instalment is a
//! payment of its own, linked to the plan; the plan records each attempt to pay
//! an instalment, its outcome, the retries and the plan's end.
//!
//! An attempt is recorded as started (with the id of the payment it creates)
//! before the payment is authorised, so a crash in between resumes with the same
//! payment id: an instalment is never charged twice.

use chrono::{DateTime, Days, NaiveDate, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

use crate::card::CardSnapshot;
use crate::ids::{Mode, PaymentId, PlanId, ShopId};
use crate::money::{Money, MoneyError};
use crate::payment::{Channel, Refusal};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PlanKind {
    /// TY-1: three instalments now, +30 and +60 days, computed by the service.
    PayIn3,
    /// TY-2: instalments given by the merchant.
    PayInN,
    /// TY-5: a deposit now and a balance on a date or on the merchant's call.
    DepositAndBalance,
}

impl PlanKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            PlanKind::PayIn3 => "PAY_IN_3",
            PlanKind::PayInN => "PAY_IN_N",
            PlanKind::DepositAndBalance => "DEPOSIT_AND_BALANCE",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedInstalment {
    /// 1-based.
    pub number: u32,
    pub amount: Money,
    /// None: charged when the merchant calls for it (a TY-5 balance).
    pub due_date: Option<NaiveDate>,
}

/// How a refused instalment is retried before it is marked failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetryPolicy {
    /// Attempts in all, the first included (at least 1).
    pub attempts_max: u32,
    /// Days between two attempts.
    pub interval_days: u32,
}

impl Default for RetryPolicy {
    /// Three attempts, three days apart.
    fn default() -> Self {
        RetryPolicy {
            attempts_max: 3,
            interval_days: 3,
        }
    }
}

/// Everything fixed when the plan is created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanDetails {
    pub plan_id: PlanId,
    pub shop_id: ShopId,
    pub mode: Mode,
    pub kind: PlanKind,
    pub order_reference: String,
    pub total: Money,
    pub channel: Channel,
    pub card: CardSnapshot,
    pub buyer_email: Option<String>,
    pub instalments: Vec<PlannedInstalment>,
    pub retry: RetryPolicy,
    pub occurred_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlanCommand {
    Create {
        details: Box<PlanDetails>,
    },
    /// Records that an attempt to pay an instalment starts, with the payment it creates.
    StartAttempt {
        number: u32,
        payment_id: PaymentId,
        occurred_at: DateTime<Utc>,
    },
    /// Records the outcome of the attempt in progress. `retry` false: a refusal
    /// is final (the buyer was there and can pay with another card).
    RecordAttempt {
        number: u32,
        payment_id: PaymentId,
        refusal: Option<Refusal>,
        retry: bool,
        today: NaiveDate,
        occurred_at: DateTime<Utc>,
    },
    /// The merchant calls for an instalment due on call (a TY-5 balance): due today.
    CallInstalment {
        number: u32,
        today: NaiveDate,
        occurred_at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PlanEvent {
    PlanCreated {
        /// Boxed: far larger than the other events (serialised the same).
        details: Box<PlanDetails>,
    },
    InstalmentAttemptStarted {
        number: u32,
        attempt: u32,
        payment_id: PaymentId,
        occurred_at: DateTime<Utc>,
    },
    InstalmentPaid {
        number: u32,
        payment_id: PaymentId,
        amount: Money,
        occurred_at: DateTime<Utc>,
    },
    /// Refused; retried on `next_attempt_on` unless the policy is exhausted.
    InstalmentAttemptFailed {
        number: u32,
        attempt: u32,
        payment_id: PaymentId,
        refusal: Refusal,
        next_attempt_on: Option<NaiveDate>,
        occurred_at: DateTime<Utc>,
    },
    /// Every attempt the policy allows was refused.
    InstalmentFailed {
        number: u32,
        amount: Money,
        occurred_at: DateTime<Utc>,
    },
    InstalmentCalled {
        number: u32,
        due_date: NaiveDate,
        occurred_at: DateTime<Utc>,
    },
    /// Every instalment paid.
    PlanCompleted { occurred_at: DateTime<Utc> },
    /// Every instalment settled, at least one failed.
    PlanDefaulted {
        failed_instalments: Vec<u32>,
        occurred_at: DateTime<Utc>,
    },
    /// The first payment, with the buyer present, was refused: the plan never
    /// starts and nothing more is charged.
    PlanRefused { occurred_at: DateTime<Utc> },
}

impl DomainEvent for PlanEvent {
    fn event_type(&self) -> String {
        match self {
            PlanEvent::PlanCreated { .. } => "PlanCreated",
            PlanEvent::InstalmentAttemptStarted { .. } => "InstalmentAttemptStarted",
            PlanEvent::InstalmentPaid { .. } => "InstalmentPaid",
            PlanEvent::InstalmentAttemptFailed { .. } => "InstalmentAttemptFailed",
            PlanEvent::InstalmentFailed { .. } => "InstalmentFailed",
            PlanEvent::InstalmentCalled { .. } => "InstalmentCalled",
            PlanEvent::PlanCompleted { .. } => "PlanCompleted",
            PlanEvent::PlanDefaulted { .. } => "PlanDefaulted",
            PlanEvent::PlanRefused { .. } => "PlanRefused",
        }
        .to_string()
    }
    fn event_version(&self) -> String {
        "1".to_string()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("payment plan not found")]
    NotFound,
    #[error("a payment plan with this id already exists")]
    AlreadyExists,
    #[error("instalments: {0}")]
    InvalidInstalments(String),
    #[error("instalment {0} does not exist")]
    NoSuchInstalment(u32),
    #[error("instalment {number} is already {status}")]
    InstalmentSettled { number: u32, status: &'static str },
    #[error("instalment {number} has an attempt in progress with payment {payment_id}")]
    AttemptInProgress { number: u32, payment_id: PaymentId },
    #[error("instalment {0} has no attempt in progress")]
    NoAttemptInProgress(u32),
    #[error("instalment {0} is not due on call")]
    NotOnCall(u32),
    #[error("the plan has ended ({status}): nothing more is charged")]
    PlanEnded { status: &'static str },
    #[error("{0}")]
    Money(#[from] MoneyError),
}

impl PlanError {
    pub fn code(&self) -> &'static str {
        match self {
            PlanError::NotFound => "PLAN_NOT_FOUND",
            PlanError::AlreadyExists => "PLAN_ALREADY_EXISTS",
            PlanError::InvalidInstalments(_) => "INVALID_INSTALMENTS",
            PlanError::NoSuchInstalment(_) => "INSTALMENT_NOT_FOUND",
            PlanError::InstalmentSettled { .. } => "INSTALMENT_ALREADY_SETTLED",
            PlanError::AttemptInProgress { .. } => "INSTALMENT_ATTEMPT_IN_PROGRESS",
            PlanError::NoAttemptInProgress(_) => "INSTALMENT_NO_ATTEMPT_IN_PROGRESS",
            PlanError::NotOnCall(_) => "INSTALMENT_NOT_ON_CALL",
            PlanError::PlanEnded { .. } => "PLAN_ENDED",
            PlanError::Money(error) => error.code(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum InstalmentStatus {
    /// Not charged yet (due later, or on call).
    #[default]
    Scheduled,
    /// An attempt was refused; another is planned.
    Retrying,
    Paid,
    Failed,
}

impl InstalmentStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            InstalmentStatus::Scheduled => "SCHEDULED",
            InstalmentStatus::Retrying => "RETRYING",
            InstalmentStatus::Paid => "PAID",
            InstalmentStatus::Failed => "FAILED",
        }
    }

    fn is_settled(&self) -> bool {
        matches!(self, InstalmentStatus::Paid | InstalmentStatus::Failed)
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstalmentState {
    pub status: InstalmentStatus,
    pub due_date: Option<NaiveDate>,
    pub attempts: u32,
    /// The payment of the attempt started and not yet recorded.
    pub in_progress: Option<PaymentId>,
    pub payments: Vec<PaymentId>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PlanStatus {
    #[default]
    Active,
    Completed,
    Defaulted,
    Refused,
}

impl PlanStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            PlanStatus::Active => "ACTIVE",
            PlanStatus::Completed => "COMPLETED",
            PlanStatus::Defaulted => "DEFAULTED",
            PlanStatus::Refused => "REFUSED",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentPlan {
    pub details: Option<PlanDetails>,
    pub status: PlanStatus,
    pub instalments: Vec<InstalmentState>,
}

/// Checks a schedule: numbered 1..n in order, amounts positive in the total's
/// currency and summing to it exactly, dates not decreasing, at most one on call
/// and only last.
pub fn check_instalments(
    total: &Money,
    instalments: &[PlannedInstalment],
) -> Result<(), PlanError> {
    let invalid = |message: &str| Err(PlanError::InvalidInstalments(message.to_string()));
    if instalments.is_empty() || instalments.len() > 24 {
        return invalid("a plan has 1 to 24 instalments");
    }
    let mut sum = Money::zero(total.currency());
    let mut previous_date: Option<NaiveDate> = None;
    for (index, instalment) in instalments.iter().enumerate() {
        if instalment.number as usize != index + 1 {
            return invalid("instalments are numbered 1, 2, 3… in order");
        }
        if instalment.amount.currency() != total.currency() {
            return invalid("every instalment is in the order's currency");
        }
        if instalment.amount.is_zero() {
            return invalid("every instalment amount is positive");
        }
        sum = sum.checked_add(&instalment.amount)?;
        match instalment.due_date {
            Some(date) => {
                if previous_date.is_some_and(|previous| date < previous) {
                    return invalid("due dates do not go backwards");
                }
                previous_date = Some(date);
            }
            None if index + 1 != instalments.len() => {
                return invalid("only the last instalment can be due on call");
            }
            None => {}
        }
    }
    if sum != *total {
        return Err(PlanError::InvalidInstalments(format!(
            "the instalments sum to {sum}, not the order amount {total}"
        )));
    }
    Ok(())
}

/// TY-1: three instalments, now and +30 and +60 days, the remainder cents on the
/// first so that the sum is exact.
pub fn pay_in_3(total: &Money, today: NaiveDate) -> Result<Vec<PlannedInstalment>, PlanError> {
    let minor = i64::try_from(total.in_minor_units()).map_err(|_| MoneyError::TooLarge)?;
    let base = minor / 3;
    let first = minor - 2 * base;
    if base == 0 {
        return Err(PlanError::InvalidInstalments(
            "the amount is too small to split in three".to_string(),
        ));
    }
    let currency = total.currency();
    [(1, first, 0), (2, base, 30), (3, base, 60)]
        .into_iter()
        .map(|(number, units, days)| {
            Ok(PlannedInstalment {
                number,
                amount: Money::from_minor_units(units, currency)?,
                due_date: Some(today + Days::new(days)),
            })
        })
        .collect()
}

impl PaymentPlan {
    pub fn instalment(&self, number: u32) -> Result<&InstalmentState, PlanError> {
        self.instalments
            .get((number as usize).wrapping_sub(1))
            .ok_or(PlanError::NoSuchInstalment(number))
    }

    pub fn planned(&self, number: u32) -> Result<&PlannedInstalment, PlanError> {
        self.details
            .as_ref()
            .and_then(|details| details.instalments.get((number as usize).wrapping_sub(1)))
            .ok_or(PlanError::NoSuchInstalment(number))
    }

    fn ensure_open(&self, number: u32) -> Result<&InstalmentState, PlanError> {
        if self.status == PlanStatus::Refused {
            return Err(PlanError::PlanEnded {
                status: self.status.as_str(),
            });
        }
        let instalment = self.instalment(number)?;
        if instalment.status.is_settled() {
            return Err(PlanError::InstalmentSettled {
                number,
                status: instalment.status.as_str(),
            });
        }
        Ok(instalment)
    }
}

impl Aggregate for PaymentPlan {
    const TYPE: &'static str = "PaymentPlan";
    type Command = PlanCommand;
    type Event = PlanEvent;
    type Error = PlanError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        if !matches!(command, PlanCommand::Create { .. }) && self.details.is_none() {
            return Err(PlanError::NotFound);
        }
        match command {
            PlanCommand::Create { details } => {
                if self.details.is_some() {
                    return Err(PlanError::AlreadyExists);
                }
                check_instalments(&details.total, &details.instalments)?;
                if details.retry.attempts_max == 0 {
                    return Err(PlanError::InvalidInstalments(
                        "the retry policy allows at least one attempt".to_string(),
                    ));
                }
                sink.write(PlanEvent::PlanCreated { details }, self).await;
            }
            PlanCommand::StartAttempt {
                number,
                payment_id,
                occurred_at,
            } => {
                let instalment = self.ensure_open(number)?;
                if let Some(in_progress) = instalment.in_progress {
                    return Err(PlanError::AttemptInProgress {
                        number,
                        payment_id: in_progress,
                    });
                }
                let attempt = instalment.attempts + 1;
                sink.write(
                    PlanEvent::InstalmentAttemptStarted {
                        number,
                        attempt,
                        payment_id,
                        occurred_at,
                    },
                    self,
                )
                .await;
            }
            PlanCommand::RecordAttempt {
                number,
                payment_id,
                refusal,
                retry: retry_allowed,
                today,
                occurred_at,
            } => {
                let instalment = self.ensure_open(number)?;
                if instalment.in_progress != Some(payment_id) {
                    return Err(PlanError::NoAttemptInProgress(number));
                }
                let attempt = instalment.attempts;
                let amount = self.planned(number)?.amount;
                let retry = self.details.as_ref().expect("exists").retry;
                match refusal {
                    None => {
                        sink.write(
                            PlanEvent::InstalmentPaid {
                                number,
                                payment_id,
                                amount,
                                occurred_at,
                            },
                            self,
                        )
                        .await;
                    }
                    Some(refusal) => {
                        let exhausted = !retry_allowed || attempt >= retry.attempts_max;
                        let next_attempt_on = (!exhausted)
                            .then(|| today + Days::new(u64::from(retry.interval_days.max(1))));
                        sink.write(
                            PlanEvent::InstalmentAttemptFailed {
                                number,
                                attempt,
                                payment_id,
                                refusal,
                                next_attempt_on,
                                occurred_at,
                            },
                            self,
                        )
                        .await;
                        if exhausted {
                            sink.write(
                                PlanEvent::InstalmentFailed {
                                    number,
                                    amount,
                                    occurred_at,
                                },
                                self,
                            )
                            .await;
                        }
                    }
                }
                // A refusal with the buyer present on the first instalment: the
                // plan never starts.
                if !retry_allowed
                    && number == 1
                    && self.instalments[0].status == InstalmentStatus::Failed
                {
                    sink.write(PlanEvent::PlanRefused { occurred_at }, self)
                        .await;
                    return Ok(());
                }
                // The plan ends when every instalment is settled.
                if self.instalments.iter().all(|i| i.status.is_settled()) {
                    let failed: Vec<u32> = self
                        .instalments
                        .iter()
                        .enumerate()
                        .filter(|(_, i)| i.status == InstalmentStatus::Failed)
                        .map(|(index, _)| index as u32 + 1)
                        .collect();
                    let event = if failed.is_empty() {
                        PlanEvent::PlanCompleted { occurred_at }
                    } else {
                        PlanEvent::PlanDefaulted {
                            failed_instalments: failed,
                            occurred_at,
                        }
                    };
                    sink.write(event, self).await;
                }
            }
            PlanCommand::CallInstalment {
                number,
                today,
                occurred_at,
            } => {
                let instalment = self.ensure_open(number)?;
                if instalment.due_date.is_some() {
                    return Err(PlanError::NotOnCall(number));
                }
                sink.write(
                    PlanEvent::InstalmentCalled {
                        number,
                        due_date: today,
                        occurred_at,
                    },
                    self,
                )
                .await;
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            PlanEvent::PlanCreated { details } => {
                self.instalments = details
                    .instalments
                    .iter()
                    .map(|planned| InstalmentState {
                        due_date: planned.due_date,
                        ..Default::default()
                    })
                    .collect();
                self.details = Some(*details);
            }
            PlanEvent::InstalmentAttemptStarted {
                number,
                attempt,
                payment_id,
                ..
            } => {
                if let Some(instalment) = self.instalments.get_mut(number as usize - 1) {
                    instalment.attempts = attempt;
                    instalment.in_progress = Some(payment_id);
                    instalment.payments.push(payment_id);
                }
            }
            PlanEvent::InstalmentPaid { number, .. } => {
                if let Some(instalment) = self.instalments.get_mut(number as usize - 1) {
                    instalment.status = InstalmentStatus::Paid;
                    instalment.in_progress = None;
                }
            }
            PlanEvent::InstalmentAttemptFailed {
                number,
                next_attempt_on,
                ..
            } => {
                if let Some(instalment) = self.instalments.get_mut(number as usize - 1) {
                    instalment.in_progress = None;
                    if let Some(date) = next_attempt_on {
                        instalment.status = InstalmentStatus::Retrying;
                        instalment.due_date = Some(date);
                    }
                }
            }
            PlanEvent::InstalmentFailed { number, .. } => {
                if let Some(instalment) = self.instalments.get_mut(number as usize - 1) {
                    instalment.status = InstalmentStatus::Failed;
                }
            }
            PlanEvent::InstalmentCalled {
                number, due_date, ..
            } => {
                if let Some(instalment) = self.instalments.get_mut(number as usize - 1) {
                    instalment.due_date = Some(due_date);
                }
            }
            PlanEvent::PlanCompleted { .. } => self.status = PlanStatus::Completed,
            PlanEvent::PlanDefaulted { .. } => self.status = PlanStatus::Defaulted,
            PlanEvent::PlanRefused { .. } => self.status = PlanStatus::Refused,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::card::{CardBrand, CardExpiry};
    use crate::money::Currency;
    use crate::payment::RefusalCategory;
    use chrono::TimeZone;
    use cqrs_es::test::TestFramework;
    use uuid::Uuid;

    fn eur(text: &str) -> Money {
        Money::parse_positive(text, "EUR").unwrap()
    }

    fn day(day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(2026, 3, day).unwrap()
    }

    fn at(day: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, day, 10, 0, 0).unwrap()
    }

    fn payment(n: u128) -> PaymentId {
        PaymentId::from_uuid(Uuid::from_u128(0xA000 + n))
    }

    fn refusal() -> Refusal {
        Refusal {
            code: "51".into(),
            message: "insufficient funds".into(),
            category: RefusalCategory::IssuerDeclined,
        }
    }

    fn details(instalments: Vec<PlannedInstalment>, attempts_max: u32) -> PlanDetails {
        PlanDetails {
            plan_id: PlanId::from_uuid(Uuid::from_u128(0x9001)),
            shop_id: ShopId::from_uuid(Uuid::from_u128(0x5409)),
            mode: Mode::Test,
            kind: PlanKind::PayInN,
            order_reference: "order-7".into(),
            total: instalments
                .iter()
                .try_fold(Money::zero(Currency::parse("EUR").unwrap()), |sum, i| {
                    sum.checked_add(&i.amount)
                })
                .unwrap(),
            channel: Channel::Ecommerce,
            card: CardSnapshot {
                token: "tok".into(),
                bin: "497010".into(),
                last_four: "0006".into(),
                brand: CardBrand::Cb,
                networks: vec![CardBrand::Cb, CardBrand::Visa],
                expiry: CardExpiry {
                    month: 12,
                    year: 2030,
                },
                fingerprint: "fp".into(),
                holder_name: None,
                issuing_country: None,
            },
            buyer_email: None,
            instalments,
            retry: RetryPolicy {
                attempts_max,
                interval_days: 3,
            },
            occurred_at: at(2),
        }
    }

    fn two_instalments(attempts_max: u32) -> PlanDetails {
        details(
            vec![
                PlannedInstalment {
                    number: 1,
                    amount: eur("40.00"),
                    due_date: Some(day(2)),
                },
                PlannedInstalment {
                    number: 2,
                    amount: eur("60.00"),
                    due_date: Some(day(12)),
                },
            ],
            attempts_max,
        )
    }

    fn created(attempts_max: u32) -> PlanEvent {
        PlanEvent::PlanCreated {
            details: Box::new(two_instalments(attempts_max)),
        }
    }

    fn started(number: u32, attempt: u32, n: u128) -> PlanEvent {
        PlanEvent::InstalmentAttemptStarted {
            number,
            attempt,
            payment_id: payment(n),
            occurred_at: at(2),
        }
    }

    fn paid(number: u32, n: u128, amount: &str) -> PlanEvent {
        PlanEvent::InstalmentPaid {
            number,
            payment_id: payment(n),
            amount: eur(amount),
            occurred_at: at(2),
        }
    }

    fn record(number: u32, n: u128, refused: bool, today: u32) -> PlanCommand {
        PlanCommand::RecordAttempt {
            number,
            payment_id: payment(n),
            refusal: refused.then(refusal),
            retry: true,
            today: day(today),
            occurred_at: at(today),
        }
    }

    #[test]
    fn pay_in_3_puts_the_remainder_cents_on_the_first_instalment() {
        let instalments = pay_in_3(&eur("100.00"), day(2)).unwrap();
        let amounts: Vec<String> = instalments.iter().map(|i| i.amount.to_string()).collect();
        assert_eq!(amounts, ["33.34 EUR", "33.33 EUR", "33.33 EUR"]);
        let dates: Vec<_> = instalments.iter().map(|i| i.due_date.unwrap()).collect();
        assert_eq!(
            dates,
            [
                day(2),
                NaiveDate::from_ymd_opt(2026, 4, 1).unwrap(),
                NaiveDate::from_ymd_opt(2026, 5, 1).unwrap()
            ]
        );
        assert!(pay_in_3(&eur("0.02"), day(2)).is_err());
        let jpy = Money::parse_positive("1000", "JPY").unwrap();
        let amounts: Vec<String> = pay_in_3(&jpy, day(2))
            .unwrap()
            .iter()
            .map(|i| i.amount.to_string())
            .collect();
        assert_eq!(amounts, ["334 JPY", "333 JPY", "333 JPY"]);
    }

    #[test]
    fn schedules_must_sum_exactly_and_be_in_order() {
        let planned = |number, amount: &str, due_date| PlannedInstalment {
            number,
            amount: eur(amount),
            due_date,
        };
        let total = eur("100.00");
        assert!(check_instalments(&total, &[planned(1, "100.00", Some(day(2)))]).is_ok());
        for bad in [
            vec![],
            vec![planned(1, "99.99", Some(day(2)))],
            vec![planned(2, "100.00", Some(day(2)))],
            vec![
                planned(1, "50.00", Some(day(5))),
                planned(2, "50.00", Some(day(4))),
            ],
            vec![planned(1, "50.00", None), planned(2, "50.00", Some(day(4)))],
        ] {
            assert!(
                matches!(
                    check_instalments(&total, &bad),
                    Err(PlanError::InvalidInstalments(_))
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn a_paid_last_instalment_completes_the_plan() {
        TestFramework::<PaymentPlan>::with(())
            .given(vec![
                created(3),
                started(1, 1, 1),
                paid(1, 1, "40.00"),
                started(2, 1, 2),
            ])
            .when(record(2, 2, false, 12))
            .then_expect_events(vec![
                PlanEvent::InstalmentPaid {
                    number: 2,
                    payment_id: payment(2),
                    amount: eur("60.00"),
                    occurred_at: at(12),
                },
                PlanEvent::PlanCompleted {
                    occurred_at: at(12),
                },
            ]);
    }

    #[test]
    fn a_refused_instalment_is_retried_then_fails_and_the_plan_defaults() {
        TestFramework::<PaymentPlan>::with(())
            .given(vec![
                created(2),
                started(1, 1, 1),
                paid(1, 1, "40.00"),
                started(2, 1, 2),
            ])
            .when(record(2, 2, true, 12))
            .then_expect_events(vec![PlanEvent::InstalmentAttemptFailed {
                number: 2,
                attempt: 1,
                payment_id: payment(2),
                refusal: refusal(),
                next_attempt_on: Some(day(15)),
                occurred_at: at(12),
            }]);
        TestFramework::<PaymentPlan>::with(())
            .given(vec![
                created(2),
                started(1, 1, 1),
                paid(1, 1, "40.00"),
                started(2, 1, 2),
                PlanEvent::InstalmentAttemptFailed {
                    number: 2,
                    attempt: 1,
                    payment_id: payment(2),
                    refusal: refusal(),
                    next_attempt_on: Some(day(15)),
                    occurred_at: at(12),
                },
                started(2, 2, 3),
            ])
            .when(record(2, 3, true, 15))
            .then_expect_events(vec![
                PlanEvent::InstalmentAttemptFailed {
                    number: 2,
                    attempt: 2,
                    payment_id: payment(3),
                    refusal: refusal(),
                    next_attempt_on: None,
                    occurred_at: at(15),
                },
                PlanEvent::InstalmentFailed {
                    number: 2,
                    amount: eur("60.00"),
                    occurred_at: at(15),
                },
                PlanEvent::PlanDefaulted {
                    failed_instalments: vec![2],
                    occurred_at: at(15),
                },
            ]);
    }

    #[test]
    fn a_first_payment_refused_with_the_buyer_present_refuses_the_plan() {
        TestFramework::<PaymentPlan>::with(())
            .given(vec![created(3), started(1, 1, 1)])
            .when(PlanCommand::RecordAttempt {
                number: 1,
                payment_id: payment(1),
                refusal: Some(refusal()),
                retry: false,
                today: day(2),
                occurred_at: at(2),
            })
            .then_expect_events(vec![
                PlanEvent::InstalmentAttemptFailed {
                    number: 1,
                    attempt: 1,
                    payment_id: payment(1),
                    refusal: refusal(),
                    next_attempt_on: None,
                    occurred_at: at(2),
                },
                PlanEvent::InstalmentFailed {
                    number: 1,
                    amount: eur("40.00"),
                    occurred_at: at(2),
                },
                PlanEvent::PlanRefused { occurred_at: at(2) },
            ]);
        TestFramework::<PaymentPlan>::with(())
            .given(vec![
                created(3),
                PlanEvent::PlanRefused { occurred_at: at(2) },
            ])
            .when(PlanCommand::StartAttempt {
                number: 2,
                payment_id: payment(5),
                occurred_at: at(12),
            })
            .then_expect_error(PlanError::PlanEnded { status: "REFUSED" });
    }

    #[test]
    fn an_attempt_in_progress_is_resumed_never_doubled() {
        TestFramework::<PaymentPlan>::with(())
            .given(vec![created(3), started(1, 1, 1)])
            .when(PlanCommand::StartAttempt {
                number: 1,
                payment_id: payment(9),
                occurred_at: at(2),
            })
            .then_expect_error(PlanError::AttemptInProgress {
                number: 1,
                payment_id: payment(1),
            });
        TestFramework::<PaymentPlan>::with(())
            .given(vec![created(3), started(1, 1, 1)])
            .when(record(1, 9, false, 2))
            .then_expect_error(PlanError::NoAttemptInProgress(1));
        TestFramework::<PaymentPlan>::with(())
            .given(vec![created(3), started(1, 1, 1), paid(1, 1, "40.00")])
            .when(PlanCommand::StartAttempt {
                number: 1,
                payment_id: payment(9),
                occurred_at: at(2),
            })
            .then_expect_error(PlanError::InstalmentSettled {
                number: 1,
                status: "PAID",
            });
    }

    #[test]
    fn only_an_instalment_due_on_call_can_be_called() {
        let mut on_call = two_instalments(3);
        on_call.instalments[1].due_date = None;
        TestFramework::<PaymentPlan>::with(())
            .given(vec![PlanEvent::PlanCreated {
                details: Box::new(on_call),
            }])
            .when(PlanCommand::CallInstalment {
                number: 2,
                today: day(10),
                occurred_at: at(10),
            })
            .then_expect_events(vec![PlanEvent::InstalmentCalled {
                number: 2,
                due_date: day(10),
                occurred_at: at(10),
            }]);
        TestFramework::<PaymentPlan>::with(())
            .given(vec![created(3)])
            .when(PlanCommand::CallInstalment {
                number: 2,
                today: day(10),
                occurred_at: at(10),
            })
            .then_expect_error(PlanError::NotOnCall(2));
    }
}
