//! Why a payment command was rejected, each with a stable machine code.

use crate::money::MoneyError;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PaymentError {
    #[error("payment not found")]
    NotFound,
    #[error("a payment with this id already exists")]
    AlreadyExists,
    #[error("payment is not waiting for validation (status {status})")]
    NotAwaitingValidation { status: String },
    #[error("payment was already sent to the bank in a remittance")]
    AlreadyRemitted,
    #[error("payment is cancelled")]
    AlreadyCancelled,
    #[error("payment was refused; nothing can be done to it but duplicate it")]
    Refused,
    #[error("payment has expired")]
    Expired,
    #[error("payment is not captured yet; cancel or modify it instead of refunding")]
    NotCaptured,
    #[error("refund of {requested} exceeds the refundable {refundable}")]
    RefundExceedsCaptured {
        requested: String,
        refundable: String,
    },
    #[error("a modified amount can only be lower than the authorised {authorised}")]
    ModifyAmountExceedsAuthorised { authorised: String },
    #[error("the capture date cannot be before today")]
    CaptureDateInPast,
    #[error("the authorisation is valid until {valid_until}; the capture date cannot be later")]
    CaptureDateBeyondValidity { valid_until: String },
    #[error("nothing to modify: give a new amount or a new capture date")]
    NothingToModify,
    #[error("payment can be duplicated only when captured, expired, cancelled or refused (status {status})")]
    NotDuplicable { status: String },
    #[error("payment is not due for capture")]
    NotDue,
    #[error("refund not found on this payment")]
    RefundNotFound,
    #[error("refund was already sent to the bank in a remittance")]
    RefundAlreadyRemitted,
    #[error("this payment is captured on {trigger}, not on this declaration")]
    CaptureTriggerMismatch { trigger: String },
    #[error("{what} was already declared for this payment")]
    AlreadyDeclared { what: &'static str },
    #[error("payment is not waiting for its deferred authorisation (status {status})")]
    NotWaitingAuthorisation { status: String },
    #[error("the authorisation is valid until {expires_at}; it cannot expire before")]
    NotExpiredYet { expires_at: String },
    #[error("payment is not waiting for a 3-D Secure challenge (status {status})")]
    NotAuthenticationPending { status: String },
    #[error("payment is waiting for its 3-D Secure challenge; nothing can be done to it until the result comes")]
    AuthenticationPending,
    #[error("payment was abandoned during 3-D Secure; nothing can be done to it but duplicate it")]
    Abandoned,
    #[error("{0}")]
    Money(#[from] MoneyError),
}

impl PaymentError {
    /// Stable code exposed as the GraphQL `extensions.code`.
    pub fn code(&self) -> &'static str {
        match self {
            PaymentError::NotFound => "PAYMENT_NOT_FOUND",
            PaymentError::AlreadyExists => "PAYMENT_ALREADY_EXISTS",
            PaymentError::NotAwaitingValidation { .. } => "PAYMENT_NOT_AWAITING_VALIDATION",
            PaymentError::AlreadyRemitted => "PAYMENT_ALREADY_REMITTED",
            PaymentError::AlreadyCancelled => "PAYMENT_ALREADY_CANCELLED",
            PaymentError::Refused => "PAYMENT_REFUSED",
            PaymentError::Expired => "PAYMENT_EXPIRED",
            PaymentError::NotCaptured => "PAYMENT_NOT_CAPTURED",
            PaymentError::RefundExceedsCaptured { .. } => "REFUND_EXCEEDS_CAPTURED",
            PaymentError::ModifyAmountExceedsAuthorised { .. } => {
                "MODIFY_AMOUNT_EXCEEDS_AUTHORISED"
            }
            PaymentError::CaptureDateInPast => "CAPTURE_DATE_IN_PAST",
            PaymentError::CaptureDateBeyondValidity { .. } => "CAPTURE_DATE_BEYOND_VALIDITY",
            PaymentError::NothingToModify => "NOTHING_TO_MODIFY",
            PaymentError::NotDuplicable { .. } => "PAYMENT_NOT_DUPLICABLE",
            PaymentError::NotDue => "PAYMENT_NOT_DUE",
            PaymentError::RefundNotFound => "REFUND_NOT_FOUND",
            PaymentError::RefundAlreadyRemitted => "REFUND_ALREADY_REMITTED",
            PaymentError::NotExpiredYet { .. } => "PAYMENT_NOT_EXPIRED_YET",
            PaymentError::NotWaitingAuthorisation { .. } => "PAYMENT_NOT_WAITING_AUTHORISATION",
            PaymentError::CaptureTriggerMismatch { .. } => "CAPTURE_TRIGGER_MISMATCH",
            PaymentError::AlreadyDeclared { .. } => "ALREADY_DECLARED",
            PaymentError::NotAuthenticationPending { .. } => "PAYMENT_NOT_AUTHENTICATION_PENDING",
            PaymentError::AuthenticationPending => "PAYMENT_AUTHENTICATION_PENDING",
            PaymentError::Abandoned => "PAYMENT_ABANDONED",
            PaymentError::Money(error) => error.code(),
        }
    }
}
