//! Payment commands. Outside answers (acquirer outcome, time) arrive inside them, so
//! handling a command is deterministic and safe to retry after a conflict.

use chrono::{DateTime, NaiveDate, Utc};

use crate::ids::{Mode, PaymentId, RefundId, RemittanceId, ShopId};
use crate::money::Money;

use super::events::{Authorisation, PaymentDetails, Refusal};

/// Who may act on a payment: the shops and the mode of the caller's credentials.
/// A payment outside the scope answers "not found", never with data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessScope {
    pub shop_ids: Vec<ShopId>,
    pub mode: Mode,
}

impl AccessScope {
    pub fn single(shop_id: ShopId, mode: Mode) -> Self {
        AccessScope {
            shop_ids: vec![shop_id],
            mode,
        }
    }

    pub fn allows(&self, shop_id: ShopId, mode: Mode) -> bool {
        self.mode == mode && self.shop_ids.contains(&shop_id)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthorisationOutcome {
    Approved(Authorisation),
    Declined(Refusal),
}

/// The acquirer's answer to a re-authorisation, and how long a new one holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reauthorisation {
    pub outcome: AuthorisationOutcome,
    pub validity_days: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PaymentCommand {
    /// Records the acquirer's answer to a new payment's authorisation request.
    Authorise {
        /// Boxed: the details are large and every other command is small.
        details: Box<PaymentDetails>,
        outcome: AuthorisationOutcome,
    },
    /// Records a payment deferred beyond the authorisation validity: the outcome
    /// of the card check made instead of an authorisation (TY-4).
    AwaitAuthorisation {
        details: Box<PaymentDetails>,
        card_check: AuthorisationOutcome,
    },
    /// Records a payment whose 3-D Secure authentication needs a challenge.
    AwaitAuthentication {
        details: Box<PaymentDetails>,
        abandon_at: DateTime<Utc>,
    },
    /// Records the challenge's result and what followed: the authorisation
    /// (or, with `card_check_only`, the card check of a payment deferred beyond
    /// the validity), or the refusal (3DS failed, a blocking control, the issuer).
    CompleteAuthentication {
        three_ds: crate::three_ds::ThreeDsResult,
        checks: Vec<crate::risk::ControlCheck>,
        outcome: AuthorisationOutcome,
        card_check_only: bool,
        occurred_at: DateTime<Utc>,
    },
    /// Issued by the scheduler when nobody answered the challenge in time.
    AbandonAuthentication { occurred_at: DateTime<Utc> },
    /// Records the authorisation asked the day before the capture date.
    CompleteDeferredAuthorisation {
        outcome: AuthorisationOutcome,
        occurred_at: DateTime<Utc>,
    },
    Validate {
        scope: AccessScope,
        occurred_at: DateTime<Utc>,
    },
    Modify {
        scope: AccessScope,
        amount: Option<Money>,
        capture_date: Option<NaiveDate>,
        today: NaiveDate,
        occurred_at: DateTime<Utc>,
    },
    Cancel {
        scope: AccessScope,
        occurred_at: DateTime<Utc>,
    },
    /// Issued by the scheduler when an authorisation nobody validated (or
    /// nothing was shipped or delivered under) has lapsed. `reauthorisation`
    /// carries the outcome when a new authorisation was asked instead.
    Expire {
        reauthorisation: Option<Reauthorisation>,
        occurred_at: DateTime<Utc>,
    },
    DeclareShipping {
        scope: AccessScope,
        carrier: Option<String>,
        tracking_number: Option<String>,
        today: NaiveDate,
        occurred_at: DateTime<Utc>,
    },
    DeclareDelivery {
        scope: AccessScope,
        today: NaiveDate,
        occurred_at: DateTime<Utc>,
    },
    /// Issued by the remittance for a payment it found due.
    Capture {
        remittance_id: RemittanceId,
        today: NaiveDate,
        occurred_at: DateTime<Utc>,
    },
    Refund {
        scope: AccessScope,
        refund_id: RefundId,
        amount: Money,
        occurred_at: DateTime<Utc>,
    },
    /// Issued by the remittance for a refund it sends to the bank as a credit.
    RemitRefund {
        remittance_id: RemittanceId,
        refund_id: RefundId,
        occurred_at: DateTime<Utc>,
    },
    /// Links the source payment to the new payment a duplication created.
    RecordDuplicate {
        scope: AccessScope,
        new_payment_id: PaymentId,
        amount: Money,
        occurred_at: DateTime<Utc>,
    },
}
