//! The `Remittance` aggregate: one batch of captures sent to the bank for a shop,
//! mode and currency (FEATURES CM-10).

use chrono::{DateTime, NaiveDate, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

use crate::ids::{Mode, PaymentId, RemittanceId, ShopId};
use crate::money::{Money, MoneyError};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemittedPayment {
    pub payment_id: PaymentId,
    pub amount: Money,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemittanceCommand {
    Submit {
        remittance_id: RemittanceId,
        shop_id: ShopId,
        mode: Mode,
        business_date: NaiveDate,
        payments: Vec<RemittedPayment>,
        occurred_at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RemittanceEvent {
    RemittanceSubmitted {
        remittance_id: RemittanceId,
        shop_id: ShopId,
        mode: Mode,
        business_date: NaiveDate,
        payments: Vec<RemittedPayment>,
        count: u64,
        total: Money,
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
    #[error("a remittance needs at least one payment")]
    Empty,
    #[error("{0}")]
    Money(#[from] MoneyError),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum BankStatus {
    #[default]
    Pending,
    /// Sent to the acquirer; settlement comes with reconciliation (a later issue).
    Submitted,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Remittance {
    pub remittance_id: Option<RemittanceId>,
    pub bank_status: BankStatus,
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
                business_date,
                payments,
                occurred_at,
            } => {
                if self.remittance_id.is_some() {
                    return Err(RemittanceError::AlreadySubmitted);
                }
                let first = payments.first().ok_or(RemittanceError::Empty)?;
                let mut total = Money::zero(first.amount.currency());
                for payment in &payments {
                    total = total.checked_add(&payment.amount)?;
                }
                let event = RemittanceEvent::RemittanceSubmitted {
                    remittance_id,
                    shop_id,
                    mode,
                    business_date,
                    count: payments.len() as u64,
                    payments,
                    total,
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
