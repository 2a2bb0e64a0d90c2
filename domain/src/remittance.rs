//! The `Remittance` aggregate: one batch sent to the bank for a shop, mode,
//! currency and acquirer contract (FEATURES CM-10). Its debits are the payments it
//! captured, its credits the refunds it carries (docs/adr/0008).

use std::collections::BTreeSet;

use chrono::{DateTime, NaiveDate, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

use crate::acquirer::default_contract;
use crate::ids::{Mode, PaymentId, RefundId, RemittanceId, ShopId};
use crate::money::{Money, MoneyError};

/// A debit: a payment this remittance captured.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemittedPayment {
    pub payment_id: PaymentId,
    pub amount: Money,
}

/// A credit: a refund sent to the bank with this remittance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemittedRefund {
    pub payment_id: PaymentId,
    pub refund_id: RefundId,
    pub amount: Money,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemittanceCommand {
    Submit {
        remittance_id: RemittanceId,
        shop_id: ShopId,
        mode: Mode,
        contract: String,
        business_date: NaiveDate,
        payments: Vec<RemittedPayment>,
        refunds: Vec<RemittedRefund>,
        occurred_at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RemittanceEvent {
    /// `count` and `total` are the debits (captures); `total` is zero, in the
    /// remittance's currency, when it carries only credits. The fields marked
    /// `serde(default)` are absent from remittances recorded before credits and
    /// contracts existed: those carried no refunds and were all simulator ones.
    RemittanceSubmitted {
        remittance_id: RemittanceId,
        shop_id: ShopId,
        mode: Mode,
        #[serde(default = "default_contract")]
        contract: String,
        business_date: NaiveDate,
        payments: Vec<RemittedPayment>,
        count: u64,
        total: Money,
        #[serde(default)]
        refunds: Vec<RemittedRefund>,
        #[serde(default)]
        credit_count: u64,
        /// `None` only on remittances recorded before credits existed (no credits).
        #[serde(default)]
        credit_total: Option<Money>,
        occurred_at: DateTime<Utc>,
    },
}

impl DomainEvent for RemittanceEvent {
    fn event_type(&self) -> String {
        match self {
            RemittanceEvent::RemittanceSubmitted { .. } => "RemittanceSubmitted".to_string(),
        }
    }
    fn event_version(&self) -> String {
        "1".to_string()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RemittanceError {
    #[error("remittance already submitted")]
    AlreadySubmitted,
    #[error("a remittance needs at least one payment or refund")]
    Empty,
    #[error("payment {0} is listed twice in the remittance")]
    DuplicatePayment(PaymentId),
    #[error("refund {0} is listed twice in the remittance")]
    DuplicateRefund(RefundId),
    #[error("{0}")]
    Money(#[from] MoneyError),
}

impl RemittanceError {
    /// Stable code exposed as the GraphQL `extensions.code`.
    pub fn code(&self) -> &'static str {
        match self {
            RemittanceError::AlreadySubmitted => "REMITTANCE_ALREADY_SUBMITTED",
            RemittanceError::Empty => "REMITTANCE_EMPTY",
            RemittanceError::DuplicatePayment(_) => "REMITTANCE_DUPLICATE_PAYMENT",
            RemittanceError::DuplicateRefund(_) => "REMITTANCE_DUPLICATE_REFUND",
            RemittanceError::Money(error) => error.code(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum BankStatus {
    #[default]
    Pending,
    /// Sent to the acquirer. Reconciliation of the acquirer's settlements (a later
    /// issue, FEATURES BK-2) moves it on from here.
    Submitted,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Remittance {
    pub remittance_id: Option<RemittanceId>,
    pub bank_status: BankStatus,
}

/// Sum of `amounts` in `currency`; a different currency is refused.
fn sum<'a>(
    currency: crate::money::Currency,
    mut amounts: impl Iterator<Item = &'a Money>,
) -> Result<Money, MoneyError> {
    amounts.try_fold(Money::zero(currency), |total, amount| {
        total.checked_add(amount)
    })
}

impl Aggregate for Remittance {
    const TYPE: &'static str = "Remittance";
    type Command = RemittanceCommand;
    type Event = RemittanceEvent;
    type Error = RemittanceError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        match command {
            RemittanceCommand::Submit {
                remittance_id,
                shop_id,
                mode,
                contract,
                business_date,
                payments,
                refunds,
                occurred_at,
            } => {
                if self.remittance_id.is_some() {
                    return Err(RemittanceError::AlreadySubmitted);
                }
                let currency = payments
                    .first()
                    .map(|payment| payment.amount.currency())
                    .or_else(|| refunds.first().map(|refund| refund.amount.currency()))
                    .ok_or(RemittanceError::Empty)?;
                let mut payment_ids = BTreeSet::new();
                if let Some(payment) = payments.iter().find(|p| !payment_ids.insert(p.payment_id)) {
                    return Err(RemittanceError::DuplicatePayment(payment.payment_id));
                }
                let mut refund_ids = BTreeSet::new();
                if let Some(refund) = refunds.iter().find(|r| !refund_ids.insert(r.refund_id)) {
                    return Err(RemittanceError::DuplicateRefund(refund.refund_id));
                }
                let total = sum(currency, payments.iter().map(|p| &p.amount))?;
                let credit_total = sum(currency, refunds.iter().map(|r| &r.amount))?;
                let event = RemittanceEvent::RemittanceSubmitted {
                    remittance_id,
                    shop_id,
                    mode,
                    contract,
                    business_date,
                    count: payments.len() as u64,
                    payments,
                    total,
                    credit_count: refunds.len() as u64,
                    refunds,
                    credit_total: Some(credit_total),
                    occurred_at,
                };
                sink.write(event, self).await;
                Ok(())
            }
        }
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            RemittanceEvent::RemittanceSubmitted { remittance_id, .. } => {
                self.remittance_id = Some(remittance_id);
                self.bank_status = BankStatus::Submitted;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;
    use uuid::Uuid;

    use super::*;

    fn money(amount: &str, currency: &str) -> Money {
        Money::parse_positive(amount, currency).unwrap()
    }

    fn payment(n: u128, amount: &str, currency: &str) -> RemittedPayment {
        RemittedPayment {
            payment_id: PaymentId::from_uuid(Uuid::from_u128(n)),
            amount: money(amount, currency),
        }
    }

    fn refund(n: u128, amount: &str, currency: &str) -> RemittedRefund {
        RemittedRefund {
            payment_id: PaymentId::from_uuid(Uuid::from_u128(n)),
            refund_id: RefundId::from_uuid(Uuid::from_u128(0xF000 + n)),
            amount: money(amount, currency),
        }
    }

    fn submit(payments: Vec<RemittedPayment>, refunds: Vec<RemittedRefund>) -> RemittanceCommand {
        RemittanceCommand::Submit {
            remittance_id: RemittanceId::from_uuid(Uuid::from_u128(0xB001)),
            shop_id: ShopId::from_uuid(Uuid::from_u128(0x5409)),
            mode: Mode::Test,
            contract: "SIMULATOR".to_string(),
            business_date: NaiveDate::from_ymd_opt(2026, 3, 2).unwrap(),
            payments,
            refunds,
            occurred_at: Utc.with_ymd_and_hms(2026, 3, 2, 18, 0, 0).unwrap(),
        }
    }

    async fn handle(
        remittance: &mut Remittance,
        command: RemittanceCommand,
    ) -> Result<Vec<RemittanceEvent>, RemittanceError> {
        let sink = EventSink::default();
        remittance.handle(command, &(), &sink).await?;
        Ok(sink.collect().await)
    }

    #[tokio::test]
    async fn a_remittance_records_its_debits_and_credits_with_their_counts_and_totals() {
        let mut remittance = Remittance::default();
        let events = handle(
            &mut remittance,
            submit(
                vec![payment(1, "80.00", "EUR"), payment(2, "5.50", "EUR")],
                vec![refund(3, "30.00", "EUR")],
            ),
        )
        .await
        .unwrap();
        let RemittanceEvent::RemittanceSubmitted {
            count,
            total,
            credit_count,
            credit_total,
            refunds,
            contract,
            ..
        } = &events[0];
        assert_eq!((*count, *total), (2, money("85.50", "EUR")));
        assert_eq!(
            (*credit_count, *credit_total),
            (1, Some(money("30.00", "EUR")))
        );
        assert_eq!(refunds, &vec![refund(3, "30.00", "EUR")]);
        assert_eq!(contract, "SIMULATOR");
        assert_eq!(remittance.bank_status, BankStatus::Submitted);
        // Submitted once: a second submission under the same id is refused.
        assert_eq!(
            handle(
                &mut remittance,
                submit(vec![payment(4, "1.00", "EUR")], vec![])
            )
            .await,
            Err(RemittanceError::AlreadySubmitted)
        );
    }

    #[tokio::test]
    async fn a_remittance_of_credits_only_has_zero_debits_in_its_currency() {
        let mut remittance = Remittance::default();
        let events = handle(
            &mut remittance,
            submit(vec![], vec![refund(1, "700", "JPY")]),
        )
        .await
        .unwrap();
        let RemittanceEvent::RemittanceSubmitted {
            count,
            total,
            credit_total,
            ..
        } = &events[0];
        assert_eq!(*count, 0);
        assert_eq!(*total, Money::zero(crate::Currency::parse("JPY").unwrap()));
        assert_eq!(*credit_total, Some(money("700", "JPY")));
    }

    #[tokio::test]
    async fn empty_mixed_currency_and_repeated_lines_are_refused() {
        let cases = [
            (submit(vec![], vec![]), RemittanceError::Empty),
            (
                submit(
                    vec![payment(1, "1.00", "EUR")],
                    vec![refund(2, "1.00", "USD")],
                ),
                RemittanceError::Money(MoneyError::CurrencyMismatch(
                    "EUR".to_string(),
                    "USD".to_string(),
                )),
            ),
            (
                submit(
                    vec![payment(1, "1.00", "EUR"), payment(1, "2.00", "EUR")],
                    vec![],
                ),
                RemittanceError::DuplicatePayment(PaymentId::from_uuid(Uuid::from_u128(1))),
            ),
            (
                submit(
                    vec![],
                    vec![refund(1, "1.00", "EUR"), refund(1, "2.00", "EUR")],
                ),
                RemittanceError::DuplicateRefund(RefundId::from_uuid(Uuid::from_u128(0xF001))),
            ),
        ];
        for (command, error) in cases {
            let mut remittance = Remittance::default();
            assert_eq!(handle(&mut remittance, command).await, Err(error));
            assert_eq!(remittance, Remittance::default());
        }
    }

    #[test]
    fn a_remittance_recorded_before_credits_and_contracts_still_reads() {
        let json = serde_json::json!({"RemittanceSubmitted": {
            "remittance_id": "0195f3c2-0000-7000-8000-00000000b001",
            "shop_id": "0195f3c2-0000-7000-8000-000000005409",
            "mode": "TEST",
            "business_date": "2026-03-02",
            "payments": [{"payment_id": "0195f3c2-0000-7000-8000-00000000a001",
                          "amount": {"amount": "42.00", "currency": "EUR"}}],
            "count": 1,
            "total": {"amount": "42.00", "currency": "EUR"},
            "occurred_at": "2026-03-02T18:00:00Z"
        }});
        let RemittanceEvent::RemittanceSubmitted {
            contract,
            refunds,
            credit_count,
            credit_total,
            count,
            ..
        } = serde_json::from_value(json).unwrap();
        assert_eq!(contract, "SIMULATOR");
        assert_eq!(
            (refunds, credit_count, credit_total, count),
            (vec![], 0, None, 1)
        );
    }
}
