//! Payment events. Their type strings are part of the log's contract and never change.

use chrono::{DateTime, NaiveDate, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use crate::card::CardSnapshot;
use crate::ids::{Mode, PaymentId, RefundId, RemittanceId, ShopId};
use crate::money::Money;

/// Sales channel the payment came through (FEATURES CH-1..6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Channel {
    Ecommerce,
    Mcommerce,
    /// Mail order / telephone order through the virtual POS (CH-1).
    Moto,
    CallCenter,
    Erp,
    Ivr,
}

impl Channel {
    pub fn as_str(&self) -> &'static str {
        match self {
            Channel::Ecommerce => "ECOMMERCE",
            Channel::Mcommerce => "MCOMMERCE",
            Channel::Moto => "MOTO",
            Channel::CallCenter => "CALL_CENTER",
            Channel::Erp => "ERP",
            Channel::Ivr => "IVR",
        }
    }

    /// Whether the buyer types the card themselves, so a CVV is expected.
    pub fn is_buyer_present_online(&self) -> bool {
        matches!(self, Channel::Ecommerce | Channel::Mcommerce)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CaptureMode {
    /// Captured at the first remittance on or after the capture date.
    Automatic,
    /// Waits for the merchant's validation before it can be captured.
    Manual,
}

/// The plan and instalment a payment pays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstalmentOf {
    pub plan_id: crate::ids::PlanId,
    pub number: u32,
    /// The plan's kind, so the payment shows its typology on its own.
    #[serde(default)]
    pub kind: Option<crate::plan::PlanKind>,
}

/// What makes an authorised payment due for capture (TY-3, TY-4, TY-6, TY-7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum CaptureTrigger {
    /// Its capture date (at order, or deferred).
    #[default]
    Date,
    /// The merchant's shipping declaration (TY-6).
    Shipping,
    /// The merchant's delivery declaration (TY-7).
    Delivery,
}

impl CaptureTrigger {
    pub fn as_str(&self) -> &'static str {
        match self {
            CaptureTrigger::Date => "DATE",
            CaptureTrigger::Shipping => "SHIPPING",
            CaptureTrigger::Delivery => "DELIVERY",
        }
    }
}

/// Everything fixed when the payment is created.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentDetails {
    pub payment_id: PaymentId,
    pub shop_id: ShopId,
    pub mode: Mode,
    pub order_reference: String,
    pub amount: Money,
    pub channel: Channel,
    pub capture_mode: CaptureMode,
    pub capture_date: NaiveDate,
    /// Absent from payments recorded before triggers existed: their date.
    #[serde(default)]
    pub capture_trigger: CaptureTrigger,
    pub card: CardSnapshot,
    pub buyer_email: Option<String>,
    pub buyer_ip: Option<String>,
    /// Set on a payment created by `duplicatePayment` (CM-3).
    pub duplicated_from: Option<PaymentId>,
    /// Set on an instalment of a payment plan (TY-1, TY-2, TY-5).
    #[serde(default)]
    pub instalment_of: Option<InstalmentOf>,
    /// Days the issuer holds the authorisation (per brand, from configuration). An
    /// authorisation still waiting for validation after it expires (EXPIRED).
    #[serde(default = "default_authorisation_validity_days")]
    pub authorisation_validity_days: u32,
    /// The acquirer contract the payment was authorised under: its capture and its
    /// refunds are remitted under it (CM-10). Absent from payments recorded before
    /// contracts were, all of them the simulator's.
    #[serde(default = "crate::acquirer::default_contract")]
    pub acquirer_contract: String,
    /// The country the buyer declared (ISO alpha-2), for RC-7.
    #[serde(default)]
    pub buyer_country: Option<String>,
    /// The buyer's language for the e-mails (fr, en, de, es, it, nl, pt, sv;
    /// lower-case); absent, the buyer's e-mail is in French (issue 5, NT-2).
    #[serde(default)]
    pub buyer_language: Option<String>,
    /// The 3-D Secure step's outcome and the guarantee it gives (SE-1, SE-2).
    #[serde(default)]
    pub three_ds: crate::three_ds::ThreeDsResult,
    /// Every risk control that ran, which fired and why (RC-1..8).
    #[serde(default)]
    pub risk: crate::risk::RiskAssessment,
    pub occurred_at: DateTime<Utc>,
}

impl PaymentDetails {
    /// The typology (FEATURES TY-1..7) the payment was made under: its plan's
    /// kind for an instalment, AT_SHIPPING / AT_DELIVERY, DEFERRED when its
    /// capture date was later than its day, PAY_AT_ORDER otherwise.
    pub fn typology(&self) -> &'static str {
        if let Some(kind) = self.instalment_of.and_then(|link| link.kind) {
            return kind.as_str();
        }
        match self.capture_trigger {
            CaptureTrigger::Shipping => "AT_SHIPPING",
            CaptureTrigger::Delivery => "AT_DELIVERY",
            CaptureTrigger::Date if self.capture_date > self.occurred_at.date_naive() => "DEFERRED",
            CaptureTrigger::Date => "PAY_AT_ORDER",
        }
    }
}

/// The usual validity of a card authorisation, and the value for payments recorded
/// before the validity was part of their details.
pub const DEFAULT_AUTHORISATION_VALIDITY_DAYS: u32 = 7;

fn default_authorisation_validity_days() -> u32 {
    DEFAULT_AUTHORISATION_VALIDITY_DAYS
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Authorisation {
    pub authorisation_code: String,
    pub acquirer_reference: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RefusalCategory {
    /// The issuer declined (network reason code such as 05, 51, 54, 59).
    IssuerDeclined,
    /// The acquirer or issuer could not answer (timeout, system error).
    Technical,
    /// No acquirer contract is configured for this mode.
    AcquirerNotConfigured,
    /// A blocking risk control fired (`RISK_*` code); the acquirer was not asked.
    Risk,
    /// 3-D Secure authentication failed (`THREE_DS_FAILED`); not authorised.
    Authentication,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refusal {
    /// Network reason code (e.g. "51") or our own code (`ACQUIRER_NOT_CONFIGURED`).
    pub code: String,
    pub message: String,
    pub category: RefusalCategory,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PaymentEvent {
    PaymentAuthorised {
        details: PaymentDetails,
        authorisation: Authorisation,
    },
    PaymentRefused {
        details: PaymentDetails,
        refusal: Refusal,
    },
    /// 3-D Secure asked for a challenge: nothing is authorised until its result
    /// comes (`completeThreeDsChallenge`), or the payment is abandoned at
    /// `abandon_at`.
    PaymentAuthenticationPending {
        details: PaymentDetails,
        abandon_at: DateTime<Utc>,
    },
    /// The challenge's result, with the controls that ran after it (RC-8). The
    /// payment's authorisation or refusal follows in the same commit, as a
    /// `PaymentAuthorised`, `PaymentRefused` or `PaymentAwaitingAuthorisation`
    /// carrying the completed details.
    PaymentAuthenticated {
        three_ds: crate::three_ds::ThreeDsResult,
        checks: Vec<crate::risk::ControlCheck>,
        occurred_at: DateTime<Utc>,
    },
    /// Nobody answered the challenge in time: nothing was authorised.
    PaymentAuthenticationAbandoned {
        occurred_at: DateTime<Utc>,
    },
    /// Deferred beyond the authorisation validity (TY-4): the card was checked,
    /// the real authorisation comes the day before the capture date.
    PaymentAwaitingAuthorisation {
        details: PaymentDetails,
        card_check: Authorisation,
    },
    DeferredAuthorisationGranted {
        /// The amount authorised (the payment's amount, possibly modified since).
        amount: Money,
        authorisation: Authorisation,
        occurred_at: DateTime<Utc>,
    },
    /// Final, like a refusal at payment time.
    DeferredAuthorisationRefused {
        amount: Money,
        refusal: Refusal,
        occurred_at: DateTime<Utc>,
    },
    PaymentValidated {
        occurred_at: DateTime<Utc>,
    },
    PaymentModified {
        previous_amount: Money,
        amount: Money,
        previous_capture_date: NaiveDate,
        capture_date: NaiveDate,
        occurred_at: DateTime<Utc>,
    },
    PaymentCancelled {
        amount: Money,
        occurred_at: DateTime<Utc>,
    },
    /// The authorisation lapsed before the payment was validated (or shipped or
    /// delivered): final, the hold on the buyer's card is released.
    PaymentExpired {
        amount: Money,
        /// Set when a re-authorisation was tried and refused.
        #[serde(default)]
        reauthorisation_refusal: Option<Refusal>,
        occurred_at: DateTime<Utc>,
    },
    /// The merchant shipped the order. With a SHIPPING trigger this makes the
    /// payment due: `capture_date` is the day it becomes due.
    ShipmentDeclared {
        carrier: Option<String>,
        tracking_number: Option<String>,
        capture_date: Option<NaiveDate>,
        occurred_at: DateTime<Utc>,
    },
    /// The order reached the buyer. With a DELIVERY trigger this makes the
    /// payment due.
    DeliveryDeclared {
        capture_date: Option<NaiveDate>,
        occurred_at: DateTime<Utc>,
    },
    /// The authorisation was about to lapse before shipping or delivery, and the
    /// brand allows a new one (per configuration): a fresh hold until `expires_at`.
    PaymentReauthorised {
        amount: Money,
        authorisation: Authorisation,
        expires_at: DateTime<Utc>,
        occurred_at: DateTime<Utc>,
    },
    PaymentCaptured {
        remittance_id: RemittanceId,
        amount: Money,
        occurred_at: DateTime<Utc>,
    },
    PaymentRefunded {
        refund_id: RefundId,
        amount: Money,
        refunded_total: Money,
        occurred_at: DateTime<Utc>,
    },
    /// The refund goes to the bank as a credit of this remittance (CM-10): at most
    /// once per refund (docs/adr/0008).
    RefundRemitted {
        refund_id: RefundId,
        remittance_id: RemittanceId,
        amount: Money,
        occurred_at: DateTime<Utc>,
    },
    PaymentDuplicated {
        new_payment_id: PaymentId,
        amount: Money,
        occurred_at: DateTime<Utc>,
    },
}

impl PaymentEvent {
    /// What the event moved, when it moved an amount: the amount asked for an
    /// authorisation or refusal, the new amount of a modification, the amount
    /// captured, refunded, cancelled, expired or duplicated.
    pub fn amount(&self) -> Option<Money> {
        match self {
            PaymentEvent::PaymentAuthorised { details, .. }
            | PaymentEvent::PaymentRefused { details, .. }
            | PaymentEvent::PaymentAwaitingAuthorisation { details, .. }
            | PaymentEvent::PaymentAuthenticationPending { details, .. } => Some(details.amount),
            PaymentEvent::DeferredAuthorisationGranted { amount, .. }
            | PaymentEvent::DeferredAuthorisationRefused { amount, .. }
            | PaymentEvent::PaymentModified { amount, .. }
            | PaymentEvent::PaymentReauthorised { amount, .. }
            | PaymentEvent::PaymentCancelled { amount, .. }
            | PaymentEvent::PaymentExpired { amount, .. }
            | PaymentEvent::PaymentCaptured { amount, .. }
            | PaymentEvent::PaymentRefunded { amount, .. }
            | PaymentEvent::RefundRemitted { amount, .. }
            | PaymentEvent::PaymentDuplicated { amount, .. } => Some(*amount),
            PaymentEvent::PaymentValidated { .. }
            | PaymentEvent::PaymentAuthenticated { .. }
            | PaymentEvent::PaymentAuthenticationAbandoned { .. }
            | PaymentEvent::ShipmentDeclared { .. }
            | PaymentEvent::DeliveryDeclared { .. } => None,
        }
    }

    pub fn occurred_at(&self) -> DateTime<Utc> {
        match self {
            PaymentEvent::PaymentAuthorised { details, .. }
            | PaymentEvent::PaymentRefused { details, .. }
            | PaymentEvent::PaymentAwaitingAuthorisation { details, .. }
            | PaymentEvent::PaymentAuthenticationPending { details, .. } => details.occurred_at,
            PaymentEvent::PaymentValidated { occurred_at }
            | PaymentEvent::PaymentAuthenticated { occurred_at, .. }
            | PaymentEvent::PaymentAuthenticationAbandoned { occurred_at }
            | PaymentEvent::DeferredAuthorisationGranted { occurred_at, .. }
            | PaymentEvent::DeferredAuthorisationRefused { occurred_at, .. }
            | PaymentEvent::PaymentModified { occurred_at, .. }
            | PaymentEvent::PaymentCancelled { occurred_at, .. }
            | PaymentEvent::PaymentExpired { occurred_at, .. }
            | PaymentEvent::ShipmentDeclared { occurred_at, .. }
            | PaymentEvent::DeliveryDeclared { occurred_at, .. }
            | PaymentEvent::PaymentReauthorised { occurred_at, .. }
            | PaymentEvent::PaymentCaptured { occurred_at, .. }
            | PaymentEvent::PaymentRefunded { occurred_at, .. }
            | PaymentEvent::RefundRemitted { occurred_at, .. }
            | PaymentEvent::PaymentDuplicated { occurred_at, .. } => *occurred_at,
        }
    }
}

impl DomainEvent for PaymentEvent {
    fn event_type(&self) -> String {
        match self {
            PaymentEvent::PaymentAuthorised { .. } => "PaymentAuthorised",
            PaymentEvent::PaymentRefused { .. } => "PaymentRefused",
            PaymentEvent::PaymentAwaitingAuthorisation { .. } => "PaymentAwaitingAuthorisation",
            PaymentEvent::PaymentAuthenticationPending { .. } => "PaymentAuthenticationPending",
            PaymentEvent::PaymentAuthenticated { .. } => "PaymentAuthenticated",
            PaymentEvent::PaymentAuthenticationAbandoned { .. } => "PaymentAuthenticationAbandoned",
            PaymentEvent::DeferredAuthorisationGranted { .. } => "DeferredAuthorisationGranted",
            PaymentEvent::DeferredAuthorisationRefused { .. } => "DeferredAuthorisationRefused",
            PaymentEvent::PaymentValidated { .. } => "PaymentValidated",
            PaymentEvent::PaymentModified { .. } => "PaymentModified",
            PaymentEvent::PaymentCancelled { .. } => "PaymentCancelled",
            PaymentEvent::PaymentExpired { .. } => "PaymentExpired",
            PaymentEvent::ShipmentDeclared { .. } => "ShipmentDeclared",
            PaymentEvent::DeliveryDeclared { .. } => "DeliveryDeclared",
            PaymentEvent::PaymentReauthorised { .. } => "PaymentReauthorised",
            PaymentEvent::PaymentCaptured { .. } => "PaymentCaptured",
            PaymentEvent::PaymentRefunded { .. } => "PaymentRefunded",
            PaymentEvent::RefundRemitted { .. } => "RefundRemitted",
            PaymentEvent::PaymentDuplicated { .. } => "PaymentDuplicated",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        "1".to_string()
    }
}
