//! Payment state and the rules of its lifecycle (DESIGN.md "Statuses").

use chrono::NaiveDate;
use cqrs_es::event_sink::EventSink;
use cqrs_es::Aggregate;
use serde::{Deserialize, Serialize};

use crate::ids::{PaymentId, RefundId, RemittanceId};
use crate::money::{Money, MoneyError};

use super::commands::{AccessScope, AuthorisationOutcome, PaymentCommand, Reauthorisation};
use super::errors::PaymentError;
use super::events::{CaptureMode, CaptureTrigger, PaymentDetails, PaymentEvent, Refusal};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PaymentStatus {
    /// No event yet: the aggregate does not exist.
    #[default]
    New,
    /// Authorised, to be captured at the first remittance on or after its capture date.
    Authorised,
    /// Authorised with manual capture: waits for `validatePayment`.
    AuthorisedToValidate,
    /// Deferred beyond the authorisation validity: card checked, authorised the
    /// day before the capture date (TY-4).
    WaitingAuthorisation,
    Captured,
    PartiallyRefunded,
    Refunded,
    Cancelled,
    Expired,
    Refused,
    /// 3-D Secure asked for a challenge; nothing authorised until its result.
    AuthenticationPending,
    /// The challenge was never answered: nothing was authorised.
    Abandoned,
}

impl PaymentStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            PaymentStatus::New => "NEW",
            PaymentStatus::Authorised => "AUTHORISED",
            PaymentStatus::AuthorisedToValidate => "AUTHORISED_TO_VALIDATE",
            PaymentStatus::WaitingAuthorisation => "WAITING_AUTHORISATION",
            PaymentStatus::Captured => "CAPTURED",
            PaymentStatus::PartiallyRefunded => "PARTIALLY_REFUNDED",
            PaymentStatus::Refunded => "REFUNDED",
            PaymentStatus::Cancelled => "CANCELLED",
            PaymentStatus::Expired => "EXPIRED",
            PaymentStatus::Refused => "REFUSED",
            PaymentStatus::AuthenticationPending => "AUTHENTICATION_PENDING",
            PaymentStatus::Abandoned => "ABANDONED",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [
            PaymentStatus::Authorised,
            PaymentStatus::AuthorisedToValidate,
            PaymentStatus::WaitingAuthorisation,
            PaymentStatus::Captured,
            PaymentStatus::PartiallyRefunded,
            PaymentStatus::Refunded,
            PaymentStatus::Cancelled,
            PaymentStatus::Expired,
            PaymentStatus::Refused,
            PaymentStatus::AuthenticationPending,
            PaymentStatus::Abandoned,
        ]
        .into_iter()
        .find(|status| status.as_str() == text)
    }

    fn is_captured(&self) -> bool {
        matches!(
            self,
            PaymentStatus::Captured | PaymentStatus::PartiallyRefunded | PaymentStatus::Refunded
        )
    }
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Payment {
    pub details: Option<PaymentDetails>,
    pub status: PaymentStatus,
    /// Amount to capture: the authorised amount, possibly lowered by `modifyPayment`.
    pub amount: Option<Money>,
    pub capture_date: Option<NaiveDate>,
    pub captured: Option<Money>,
    pub refunded: Option<Money>,
    pub remittance_id: Option<RemittanceId>,
    pub refusal: Option<Refusal>,
    pub validated: bool,
    pub duplicates: Vec<PaymentId>,
    /// Every refund, oldest first, with the remittance that sent it to the bank.
    #[serde(default)]
    pub refunds: Vec<RefundRecord>,
    /// When the authorisation in force was given (at payment time, or the day
    /// before capture for a payment deferred beyond the validity).
    pub authorised_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Set by a re-authorisation: it holds until then, whatever the brand's validity.
    pub reauthorised_until: Option<chrono::DateTime<chrono::Utc>>,
    /// How many times the authorisation was renewed.
    pub reauthorisations: u32,
    /// What is or was authorised: the amount at authorisation, or at the
    /// deferred authorisation; None while only the card was checked.
    pub authorised: Option<Money>,
    pub shipped_at: Option<chrono::DateTime<chrono::Utc>>,
    pub carrier: Option<String>,
    pub tracking_number: Option<String>,
    pub delivered_at: Option<chrono::DateTime<chrono::Utc>>,
    /// When the last event happened.
    pub updated_at: Option<chrono::DateTime<chrono::Utc>>,
}

/// One refund of a payment and, once sent to the bank, its remittance (CM-10).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundRecord {
    pub refund_id: RefundId,
    pub amount: Money,
    pub remittance_id: Option<RemittanceId>,
}

impl Payment {
    /// The payment's details if the caller may see it; `NotFound` otherwise, so a
    /// payment of another shop or mode is indistinguishable from a missing one.
    pub fn visible_details(&self, scope: &AccessScope) -> Result<&PaymentDetails, PaymentError> {
        match &self.details {
            Some(details) if scope.allows(details.shop_id, details.mode) => Ok(details),
            _ => Err(PaymentError::NotFound),
        }
    }

    pub fn ensure_duplicable(&self, scope: &AccessScope) -> Result<&PaymentDetails, PaymentError> {
        let details = self.visible_details(scope)?;
        match self.status {
            PaymentStatus::Captured
            | PaymentStatus::PartiallyRefunded
            | PaymentStatus::Refunded
            | PaymentStatus::Expired
            | PaymentStatus::Cancelled
            | PaymentStatus::Refused
            | PaymentStatus::Abandoned => Ok(details),
            status => Err(PaymentError::NotDuplicable {
                status: status.as_str().to_string(),
            }),
        }
    }

    /// When an authorisation still waiting for validation expires: its validity
    /// counted from the authorisation.
    pub fn authorisation_expires_at(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        let details = self.details.as_ref()?;
        if let Some(until) = self.reauthorised_until {
            return Some(until);
        }
        Some(
            self.authorised_at?
                + chrono::Duration::days(i64::from(details.authorisation_validity_days)),
        )
    }

    /// Whether the remittance of `today` should capture this payment.
    pub fn is_due(&self, today: NaiveDate) -> bool {
        self.status == PaymentStatus::Authorised
            && self.capture_date.is_some_and(|date| date <= today)
            && !self.waits_for_a_declaration()
    }

    /// Whether it is captured on shipping or delivery and that has not been declared.
    pub fn waits_for_a_declaration(&self) -> bool {
        match self.details.as_ref().map(|d| d.capture_trigger) {
            Some(CaptureTrigger::Shipping) => self.shipped_at.is_none(),
            Some(CaptureTrigger::Delivery) => self.delivered_at.is_none(),
            _ => false,
        }
    }

    /// Whether the authorisation in force can lapse: nobody validated it, or
    /// the shipping or delivery that makes it due has not been declared.
    pub fn can_lapse(&self) -> bool {
        self.status == PaymentStatus::AuthorisedToValidate
            || (self.status == PaymentStatus::Authorised && self.waits_for_a_declaration())
    }

    /// Rejects actions on payments that are no longer before remittance.
    fn ensure_before_remittance(&self) -> Result<(), PaymentError> {
        match self.status {
            PaymentStatus::Authorised
            | PaymentStatus::AuthorisedToValidate
            | PaymentStatus::WaitingAuthorisation => Ok(()),
            status if status.is_captured() => Err(PaymentError::AlreadyRemitted),
            PaymentStatus::Cancelled => Err(PaymentError::AlreadyCancelled),
            PaymentStatus::Refused => Err(PaymentError::Refused),
            PaymentStatus::Expired => Err(PaymentError::Expired),
            PaymentStatus::AuthenticationPending => Err(PaymentError::AuthenticationPending),
            PaymentStatus::Abandoned => Err(PaymentError::Abandoned),
            _ => Err(PaymentError::NotFound),
        }
    }

    fn current_amount(&self) -> Money {
        self.amount.expect("an existing payment has an amount")
    }

    fn refundable(&self) -> Result<Money, PaymentError> {
        let captured = self
            .captured
            .expect("captured payments have a captured amount");
        let refunded = self
            .refunded
            .unwrap_or_else(|| Money::zero(captured.currency()));
        Ok(captured.checked_sub(&refunded)?)
    }
}

impl Aggregate for Payment {
    const TYPE: &'static str = "Payment";
    type Command = PaymentCommand;
    type Event = PaymentEvent;
    type Error = PaymentError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        match command {
            PaymentCommand::Authorise { details, outcome } => {
                if self.details.is_some() {
                    return Err(PaymentError::AlreadyExists);
                }
                let event = match outcome {
                    AuthorisationOutcome::Approved(authorisation) => {
                        PaymentEvent::PaymentAuthorised {
                            details: *details,
                            authorisation,
                        }
                    }
                    AuthorisationOutcome::Declined(refusal) => PaymentEvent::PaymentRefused {
                        details: *details,
                        refusal,
                    },
                };
                sink.write(event, self).await;
            }
            PaymentCommand::AwaitAuthentication {
                details,
                abandon_at,
            } => {
                if self.details.is_some() {
                    return Err(PaymentError::AlreadyExists);
                }
                let event = PaymentEvent::PaymentAuthenticationPending {
                    details: *details,
                    abandon_at,
                };
                sink.write(event, self).await;
            }
            PaymentCommand::CompleteAuthentication {
                three_ds,
                checks,
                outcome,
                card_check_only,
                occurred_at,
            } => {
                if self.details.is_none() {
                    return Err(PaymentError::NotFound);
                }
                if self.status != PaymentStatus::AuthenticationPending {
                    return Err(PaymentError::NotAuthenticationPending {
                        status: self.status.as_str().to_string(),
                    });
                }
                let mut details = self.details.clone().expect("checked above");
                details.three_ds = three_ds.clone();
                details.risk.checks.extend(checks.iter().cloned());
                details.occurred_at = occurred_at;
                let authenticated = PaymentEvent::PaymentAuthenticated {
                    three_ds,
                    checks,
                    occurred_at,
                };
                let outcome_event = match outcome {
                    AuthorisationOutcome::Approved(card_check) if card_check_only => {
                        PaymentEvent::PaymentAwaitingAuthorisation {
                            details,
                            card_check,
                        }
                    }
                    AuthorisationOutcome::Approved(authorisation) => {
                        PaymentEvent::PaymentAuthorised {
                            details,
                            authorisation,
                        }
                    }
                    AuthorisationOutcome::Declined(refusal) => {
                        PaymentEvent::PaymentRefused { details, refusal }
                    }
                };
                sink.write(authenticated, self).await;
                sink.write(outcome_event, self).await;
            }
            PaymentCommand::AbandonAuthentication { occurred_at } => {
                if self.details.is_none() {
                    return Err(PaymentError::NotFound);
                }
                if self.status != PaymentStatus::AuthenticationPending {
                    return Err(PaymentError::NotAuthenticationPending {
                        status: self.status.as_str().to_string(),
                    });
                }
                sink.write(
                    PaymentEvent::PaymentAuthenticationAbandoned { occurred_at },
                    self,
                )
                .await;
            }
            PaymentCommand::AwaitAuthorisation {
                details,
                card_check,
            } => {
                if self.details.is_some() {
                    return Err(PaymentError::AlreadyExists);
                }
                let event = match card_check {
                    AuthorisationOutcome::Approved(card_check) => {
                        PaymentEvent::PaymentAwaitingAuthorisation {
                            details: *details,
                            card_check,
                        }
                    }
                    AuthorisationOutcome::Declined(refusal) => PaymentEvent::PaymentRefused {
                        details: *details,
                        refusal,
                    },
                };
                sink.write(event, self).await;
            }
            PaymentCommand::CompleteDeferredAuthorisation {
                outcome,
                occurred_at,
            } => {
                if self.details.is_none() {
                    return Err(PaymentError::NotFound);
                }
                if self.status != PaymentStatus::WaitingAuthorisation {
                    self.ensure_before_remittance()?;
                    return Err(PaymentError::NotWaitingAuthorisation {
                        status: self.status.as_str().to_string(),
                    });
                }
                let amount = self.current_amount();
                let event = match outcome {
                    AuthorisationOutcome::Approved(authorisation) => {
                        PaymentEvent::DeferredAuthorisationGranted {
                            amount,
                            authorisation,
                            occurred_at,
                        }
                    }
                    AuthorisationOutcome::Declined(refusal) => {
                        PaymentEvent::DeferredAuthorisationRefused {
                            amount,
                            refusal,
                            occurred_at,
                        }
                    }
                };
                sink.write(event, self).await;
            }
            PaymentCommand::Validate { scope, occurred_at } => {
                self.visible_details(&scope)?;
                if self.status != PaymentStatus::AuthorisedToValidate {
                    self.ensure_before_remittance()?;
                    return Err(PaymentError::NotAwaitingValidation {
                        status: self.status.as_str().to_string(),
                    });
                }
                sink.write(PaymentEvent::PaymentValidated { occurred_at }, self)
                    .await;
            }
            PaymentCommand::Modify {
                scope,
                amount,
                capture_date,
                today,
                occurred_at,
            } => {
                self.visible_details(&scope)?;
                self.ensure_before_remittance()?;
                if amount.is_none() && capture_date.is_none() {
                    return Err(PaymentError::NothingToModify);
                }
                let previous_amount = self.current_amount();
                let new_amount = amount.unwrap_or(previous_amount);
                if new_amount.is_zero() {
                    return Err(MoneyError::NotPositive.into());
                }
                if new_amount.cmp_amount(&previous_amount)? == std::cmp::Ordering::Greater {
                    return Err(PaymentError::ModifyAmountExceedsAuthorised {
                        authorised: previous_amount.to_string(),
                    });
                }
                let previous_capture_date = self.capture_date.expect("existing payment");
                let new_capture_date = capture_date.unwrap_or(previous_capture_date);
                if capture_date.is_some_and(|date| date < today) {
                    return Err(PaymentError::CaptureDateInPast);
                }
                // An authorisation already given lapses at the end of its validity:
                // its capture cannot move past it (a waiting one is authorised the
                // day before whatever date it gets).
                if let (Some(date), Some(expires_at)) =
                    (capture_date, self.authorisation_expires_at())
                {
                    if self.status != PaymentStatus::WaitingAuthorisation
                        && date > expires_at.date_naive()
                    {
                        return Err(PaymentError::CaptureDateBeyondValidity {
                            valid_until: expires_at.date_naive().to_string(),
                        });
                    }
                }
                let event = PaymentEvent::PaymentModified {
                    previous_amount,
                    amount: new_amount,
                    previous_capture_date,
                    capture_date: new_capture_date,
                    occurred_at,
                };
                sink.write(event, self).await;
            }
            PaymentCommand::Cancel { scope, occurred_at } => {
                self.visible_details(&scope)?;
                self.ensure_before_remittance()?;
                let amount = self.current_amount();
                sink.write(
                    PaymentEvent::PaymentCancelled {
                        amount,
                        occurred_at,
                    },
                    self,
                )
                .await;
            }
            PaymentCommand::Expire {
                reauthorisation,
                occurred_at,
            } => {
                if self.details.is_none() {
                    return Err(PaymentError::NotFound);
                }
                // Only an authorisation nobody validated, or one still waiting
                // for shipping or delivery, lapses; the others are captured.
                if !self.can_lapse() {
                    self.ensure_before_remittance()?;
                    return Err(PaymentError::NotAwaitingValidation {
                        status: self.status.as_str().to_string(),
                    });
                }
                let expires_at = self
                    .authorisation_expires_at()
                    .expect("an authorised payment has an expiry");
                if occurred_at < expires_at {
                    return Err(PaymentError::NotExpiredYet {
                        expires_at: expires_at.to_rfc3339(),
                    });
                }
                let amount = self.current_amount();
                let event = match reauthorisation {
                    Some(Reauthorisation {
                        outcome: AuthorisationOutcome::Approved(authorisation),
                        validity_days,
                    }) => PaymentEvent::PaymentReauthorised {
                        amount,
                        authorisation,
                        expires_at: occurred_at + chrono::Duration::days(i64::from(validity_days)),
                        occurred_at,
                    },
                    Some(Reauthorisation {
                        outcome: AuthorisationOutcome::Declined(refusal),
                        ..
                    }) => PaymentEvent::PaymentExpired {
                        amount,
                        reauthorisation_refusal: Some(refusal),
                        occurred_at,
                    },
                    None => PaymentEvent::PaymentExpired {
                        amount,
                        reauthorisation_refusal: None,
                        occurred_at,
                    },
                };
                sink.write(event, self).await;
            }
            PaymentCommand::DeclareShipping {
                scope,
                carrier,
                tracking_number,
                today,
                occurred_at,
            } => {
                let details = self.visible_details(&scope)?;
                let trigger = details.capture_trigger;
                self.ensure_before_remittance()?;
                if trigger == CaptureTrigger::Date {
                    return Err(PaymentError::CaptureTriggerMismatch {
                        trigger: "its capture date".to_string(),
                    });
                }
                if self.shipped_at.is_some() {
                    return Err(PaymentError::AlreadyDeclared { what: "shipping" });
                }
                let capture_date = (trigger == CaptureTrigger::Shipping).then_some(today);
                sink.write(
                    PaymentEvent::ShipmentDeclared {
                        carrier,
                        tracking_number,
                        capture_date,
                        occurred_at,
                    },
                    self,
                )
                .await;
            }
            PaymentCommand::DeclareDelivery {
                scope,
                today,
                occurred_at,
            } => {
                let details = self.visible_details(&scope)?;
                let trigger = details.capture_trigger;
                self.ensure_before_remittance()?;
                if trigger != CaptureTrigger::Delivery {
                    return Err(PaymentError::CaptureTriggerMismatch {
                        trigger: match trigger {
                            CaptureTrigger::Shipping => "shipping",
                            _ => "its capture date",
                        }
                        .to_string(),
                    });
                }
                if self.delivered_at.is_some() {
                    return Err(PaymentError::AlreadyDeclared { what: "delivery" });
                }
                sink.write(
                    PaymentEvent::DeliveryDeclared {
                        capture_date: Some(today),
                        occurred_at,
                    },
                    self,
                )
                .await;
            }
            PaymentCommand::Capture {
                remittance_id,
                today,
                occurred_at,
            } => {
                if self.details.is_none() {
                    return Err(PaymentError::NotFound);
                }
                self.ensure_before_remittance()?;
                if !self.is_due(today) {
                    return Err(PaymentError::NotDue);
                }
                let amount = self.current_amount();
                let event = PaymentEvent::PaymentCaptured {
                    remittance_id,
                    amount,
                    occurred_at,
                };
                sink.write(event, self).await;
            }
            PaymentCommand::Refund {
                scope,
                refund_id,
                amount,
                occurred_at,
            } => {
                self.visible_details(&scope)?;
                if !self.status.is_captured() {
                    self.ensure_before_remittance()?;
                    return Err(PaymentError::NotCaptured);
                }
                if amount.is_zero() {
                    return Err(MoneyError::NotPositive.into());
                }
                let refundable = self.refundable()?;
                if amount.cmp_amount(&refundable)? == std::cmp::Ordering::Greater {
                    return Err(PaymentError::RefundExceedsCaptured {
                        requested: amount.to_string(),
                        refundable: refundable.to_string(),
                    });
                }
                let already = self
                    .refunded
                    .unwrap_or_else(|| Money::zero(amount.currency()));
                let refunded_total = already.checked_add(&amount)?;
                let event = PaymentEvent::PaymentRefunded {
                    refund_id,
                    amount,
                    refunded_total,
                    occurred_at,
                };
                sink.write(event, self).await;
            }
            PaymentCommand::RemitRefund {
                remittance_id,
                refund_id,
                occurred_at,
            } => {
                let refund = self
                    .refunds
                    .iter()
                    .find(|refund| refund.refund_id == refund_id)
                    .ok_or(PaymentError::RefundNotFound)?;
                // What makes a refund go to the bank once, whoever runs the
                // remittance and whatever the views say (docs/adr/0008).
                if refund.remittance_id.is_some() {
                    return Err(PaymentError::RefundAlreadyRemitted);
                }
                let event = PaymentEvent::RefundRemitted {
                    refund_id,
                    remittance_id,
                    amount: refund.amount,
                    occurred_at,
                };
                sink.write(event, self).await;
            }
            PaymentCommand::RecordDuplicate {
                scope,
                new_payment_id,
                amount,
                occurred_at,
            } => {
                self.ensure_duplicable(&scope)?;
                let event = PaymentEvent::PaymentDuplicated {
                    new_payment_id,
                    amount,
                    occurred_at,
                };
                sink.write(event, self).await;
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        self.updated_at = Some(event.occurred_at());
        match event {
            PaymentEvent::PaymentAuthorised { details, .. } => {
                self.status = match details.capture_mode {
                    CaptureMode::Automatic => PaymentStatus::Authorised,
                    CaptureMode::Manual => PaymentStatus::AuthorisedToValidate,
                };
                self.amount = Some(details.amount);
                self.capture_date = Some(details.capture_date);
                self.authorised_at = Some(details.occurred_at);
                self.authorised = Some(details.amount);
                self.details = Some(details);
            }
            PaymentEvent::PaymentAuthenticationPending { details, .. } => {
                self.status = PaymentStatus::AuthenticationPending;
                self.amount = Some(details.amount);
                self.capture_date = Some(details.capture_date);
                self.details = Some(details);
            }
            // The completed details follow in the next event.
            PaymentEvent::PaymentAuthenticated { .. } => {}
            PaymentEvent::PaymentAuthenticationAbandoned { .. } => {
                self.status = PaymentStatus::Abandoned;
            }
            PaymentEvent::PaymentAwaitingAuthorisation { details, .. } => {
                self.status = PaymentStatus::WaitingAuthorisation;
                self.amount = Some(details.amount);
                self.capture_date = Some(details.capture_date);
                self.details = Some(details);
            }
            PaymentEvent::DeferredAuthorisationGranted {
                amount,
                occurred_at,
                ..
            } => {
                self.authorised = Some(amount);
                let capture_mode = self.details.as_ref().map(|d| d.capture_mode);
                self.status = match capture_mode {
                    Some(CaptureMode::Manual) => PaymentStatus::AuthorisedToValidate,
                    _ => PaymentStatus::Authorised,
                };
                self.authorised_at = Some(occurred_at);
            }
            PaymentEvent::DeferredAuthorisationRefused { refusal, .. } => {
                self.status = PaymentStatus::Refused;
                self.refusal = Some(refusal);
            }
            PaymentEvent::PaymentRefused { details, refusal } => {
                self.status = PaymentStatus::Refused;
                self.amount = Some(details.amount);
                // The views show the amount asked of the issuer for a refusal.
                self.authorised = Some(details.amount);
                self.capture_date = Some(details.capture_date);
                self.details = Some(details);
                self.refusal = Some(refusal);
            }
            PaymentEvent::PaymentValidated { .. } => {
                self.validated = true;
                self.status = PaymentStatus::Authorised;
            }
            PaymentEvent::PaymentModified {
                amount,
                capture_date,
                ..
            } => {
                self.amount = Some(amount);
                self.capture_date = Some(capture_date);
            }
            PaymentEvent::PaymentCancelled { .. } => {
                self.status = PaymentStatus::Cancelled;
            }
            PaymentEvent::PaymentExpired { .. } => {
                self.status = PaymentStatus::Expired;
            }
            PaymentEvent::ShipmentDeclared {
                carrier,
                tracking_number,
                capture_date,
                occurred_at,
            } => {
                self.shipped_at = Some(occurred_at);
                self.carrier = carrier;
                self.tracking_number = tracking_number;
                if let Some(date) = capture_date {
                    self.capture_date = Some(date);
                }
            }
            PaymentEvent::DeliveryDeclared {
                capture_date,
                occurred_at,
            } => {
                self.delivered_at = Some(occurred_at);
                if let Some(date) = capture_date {
                    self.capture_date = Some(date);
                }
            }
            PaymentEvent::PaymentReauthorised {
                expires_at,
                occurred_at,
                ..
            } => {
                self.authorised_at = Some(occurred_at);
                self.reauthorised_until = Some(expires_at);
                self.reauthorisations += 1;
            }
            PaymentEvent::PaymentCaptured {
                remittance_id,
                amount,
                ..
            } => {
                self.status = PaymentStatus::Captured;
                self.captured = Some(amount);
                self.remittance_id = Some(remittance_id);
            }
            PaymentEvent::PaymentRefunded {
                refund_id,
                amount,
                refunded_total,
                ..
            } => {
                self.refunds.push(RefundRecord {
                    refund_id,
                    amount,
                    remittance_id: None,
                });
                let fully = self.captured == Some(refunded_total);
                self.refunded = Some(refunded_total);
                self.status = if fully {
                    PaymentStatus::Refunded
                } else {
                    PaymentStatus::PartiallyRefunded
                };
            }
            PaymentEvent::PaymentDuplicated { new_payment_id, .. } => {
                self.duplicates.push(new_payment_id);
            }
            PaymentEvent::RefundRemitted {
                refund_id,
                remittance_id,
                ..
            } => {
                if let Some(refund) = self
                    .refunds
                    .iter_mut()
                    .find(|refund| refund.refund_id == refund_id)
                {
                    refund.remittance_id = Some(remittance_id);
                }
            }
        }
    }
}
