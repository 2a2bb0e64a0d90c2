//! The `CardOutstanding` aggregate (FEATURES RC-2): what one card spent at one
//! shop, payment by payment. Its optimistic concurrency is what makes the cap
//! hold under concurrent payments: two payments on one card that both read the
//! same outstanding cannot both commit; the second is re-run on the new state.

use chrono::{DateTime, Duration, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

use crate::ids::{Mode, PaymentId, ShopId};
use crate::money::Money;
use crate::risk::{
    outstanding_check, ControlCheck, ControlMode, OutstandingLimits, OutstandingTotals,
};

/// The aggregate id of one card's outstanding at one shop, in one mode.
pub fn card_outstanding_id(shop_id: ShopId, mode: Mode, fingerprint: &str) -> String {
    format!("outstanding_{shop_id}_{}_{fingerprint}", mode.as_str())
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutstandingCommand {
    /// Counts a payment in the card's outstanding if the caps allow it (or the
    /// control is informative). Answers the control's verdict either way.
    Reserve {
        shop_id: ShopId,
        payment_id: PaymentId,
        amount: Money,
        mode: ControlMode,
        limits: OutstandingLimits,
        occurred_at: DateTime<Utc>,
    },
    /// Takes a payment that ended without an authorisation back out.
    Release {
        payment_id: PaymentId,
        occurred_at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum OutstandingEvent {
    OutstandingReserved {
        shop_id: ShopId,
        payment_id: PaymentId,
        amount: Money,
        /// The verdict the control gave, kept with the counter it read.
        check: ControlCheck,
        occurred_at: DateTime<Utc>,
    },
    OutstandingReleased {
        shop_id: ShopId,
        payment_id: PaymentId,
        amount: Money,
        occurred_at: DateTime<Utc>,
    },
}

impl DomainEvent for OutstandingEvent {
    fn event_type(&self) -> String {
        match self {
            OutstandingEvent::OutstandingReserved { .. } => "OutstandingReserved",
            OutstandingEvent::OutstandingReleased { .. } => "OutstandingReleased",
        }
        .to_string()
    }
    fn event_version(&self) -> String {
        "1".to_string()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutstandingError {
    /// Blocking and over a cap: nothing is recorded; the check says why.
    #[error("{}", .0.detail)]
    Exceeded(Box<ControlCheck>),
}

impl OutstandingError {
    pub fn code(&self) -> &'static str {
        match self {
            OutstandingError::Exceeded(_) => "RISK_CARD_OUTSTANDING_EXCEEDED",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    pub payment_id: PaymentId,
    pub amount: Money,
    pub at: DateTime<Utc>,
    pub released: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CardOutstanding {
    pub shop_id: Option<ShopId>,
    pub reservations: Vec<Reservation>,
    /// The verdict of the last reservation, so the caller reads it after commit.
    pub last_check: Option<ControlCheck>,
}

impl CardOutstanding {
    /// The outstanding over the window ending at `now`, in `amount`'s currency.
    pub fn totals(&self, window_days: u32, now: DateTime<Utc>, like: Money) -> OutstandingTotals {
        let since = now - Duration::days(i64::from(window_days));
        let mut totals = OutstandingTotals {
            amount: Money::zero(like.currency()),
            count: 0,
        };
        for reservation in &self.reservations {
            if reservation.released || reservation.at <= since {
                continue;
            }
            totals.count += 1;
            if let Ok(sum) = totals.amount.checked_add(&reservation.amount) {
                totals.amount = sum;
            }
        }
        totals
    }
}

impl Aggregate for CardOutstanding {
    const TYPE: &'static str = "CardOutstanding";
    type Command = OutstandingCommand;
    type Event = OutstandingEvent;
    type Error = OutstandingError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        match command {
            OutstandingCommand::Reserve {
                shop_id,
                payment_id,
                amount,
                mode,
                limits,
                occurred_at,
            } => {
                if self.reservations.iter().any(|r| r.payment_id == payment_id) {
                    return Ok(());
                }
                let before = self.totals(limits.window_days, occurred_at, amount);
                let check = outstanding_check(mode, &limits, before, amount);
                if check.fired && mode == ControlMode::Blocking {
                    return Err(OutstandingError::Exceeded(Box::new(check)));
                }
                let event = OutstandingEvent::OutstandingReserved {
                    shop_id,
                    payment_id,
                    amount,
                    check,
                    occurred_at,
                };
                sink.write(event, self).await;
            }
            OutstandingCommand::Release {
                payment_id,
                occurred_at,
            } => {
                let Some(reservation) = self
                    .reservations
                    .iter()
                    .find(|r| r.payment_id == payment_id && !r.released)
                else {
                    return Ok(());
                };
                let event = OutstandingEvent::OutstandingReleased {
                    shop_id: self.shop_id.expect("a reservation records its shop"),
                    payment_id,
                    amount: reservation.amount,
                    occurred_at,
                };
                sink.write(event, self).await;
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            OutstandingEvent::OutstandingReserved {
                shop_id,
                payment_id,
                amount,
                check,
                occurred_at,
            } => {
                self.shop_id = Some(shop_id);
                self.reservations.push(Reservation {
                    payment_id,
                    amount,
                    at: occurred_at,
                    released: false,
                });
                self.last_check = Some(check);
            }
            OutstandingEvent::OutstandingReleased { payment_id, .. } => {
                for reservation in &mut self.reservations {
                    if reservation.payment_id == payment_id {
                        reservation.released = true;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::risk::RiskControl;
    use chrono::TimeZone;
    use cqrs_es::test::TestFramework;

    fn at(day: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 3, day, 12, 0, 0).unwrap()
    }

    fn eur(amount: &str) -> Money {
        Money::parse_positive(amount, "EUR").unwrap()
    }

    fn limits() -> OutstandingLimits {
        OutstandingLimits {
            window_days: 7,
            amount_max: Some(eur("100.00")),
            count_max: None,
        }
    }

    fn reserved(
        shop_id: ShopId,
        payment_id: PaymentId,
        amount: &str,
        day: u32,
    ) -> OutstandingEvent {
        OutstandingEvent::OutstandingReserved {
            shop_id,
            payment_id,
            amount: eur(amount),
            check: ControlCheck {
                control: RiskControl::CardOutstanding,
                mode: ControlMode::Blocking,
                fired: false,
                reason: None,
                detail: String::new(),
            },
            occurred_at: at(day),
        }
    }

    #[test]
    fn a_blocking_cap_refuses_without_counting_and_the_window_rolls() {
        let shop_id = ShopId::new();
        let given = vec![reserved(shop_id, PaymentId::new(), "80.00", 1)];
        let reserve = |day| OutstandingCommand::Reserve {
            shop_id,
            payment_id: PaymentId::new(),
            amount: eur("30.00"),
            mode: ControlMode::Blocking,
            limits: limits(),
            occurred_at: at(day),
        };
        TestFramework::<CardOutstanding>::with(())
            .given(given.clone())
            .when(reserve(2))
            .then_expect_error_message(
                "card outstanding over 7 days would be 110.00 EUR > cap 100.00 EUR",
            );
        // Eight days later the first payment has left the window.
        let mut state = CardOutstanding::default();
        for event in given {
            state.apply(event);
        }
        let totals = state.totals(7, at(9), eur("1.00"));
        assert_eq!(totals.count, 0);
        assert!(totals.amount.is_zero());
    }

    #[test]
    fn a_released_payment_no_longer_counts() {
        let shop_id = ShopId::new();
        let payment_id = PaymentId::new();
        let mut state = CardOutstanding::default();
        state.apply(reserved(shop_id, payment_id, "80.00", 1));
        state.apply(OutstandingEvent::OutstandingReleased {
            shop_id,
            payment_id,
            amount: eur("80.00"),
            occurred_at: at(1),
        });
        assert_eq!(state.totals(7, at(2), eur("1.00")).count, 0);
    }
}
