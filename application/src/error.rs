//! The application error: every way a use case can fail, each with a stable code.

use caisse_domain::card::CardError;
use caisse_domain::cut_off::CutOffError;
use caisse_domain::merchant::MerchantError;
use caisse_domain::money::MoneyError;
use caisse_domain::payment::PaymentError;
use caisse_domain::plan::PlanError;
use caisse_domain::remittance::RemittanceError;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0}")]
    Payment(#[from] PaymentError),
    #[error("{0}")]
    Merchant(#[from] MerchantError),
    #[error("{0}")]
    Remittance(#[from] RemittanceError),
    #[error("{0}")]
    CutOff(#[from] CutOffError),
    #[error("{0}")]
    Plan(#[from] PlanError),
    #[error("{field}: {source}")]
    Card {
        field: &'static str,
        source: CardError,
    },
    #[error("{field}: {source}")]
    Money {
        field: &'static str,
        source: MoneyError,
    },
    /// Input that is well-formed JSON but not acceptable.
    #[error("{field}: {message}")]
    Invalid {
        field: &'static str,
        code: &'static str,
        message: String,
    },
    /// A business rule said no, with nothing to point at in the input.
    #[error("{message}")]
    Rejected { code: &'static str, message: String },
    /// RC-2 refused the payment: the check says why (the payment records it).
    #[error("{0}")]
    Outstanding(#[from] caisse_domain::outstanding::OutstandingError),
    #[error("this Idempotency-Key was already used for a different request")]
    IdempotencyKeyReused,
    #[error("the payment kept changing under concurrent requests; retry")]
    ConcurrencyExhausted,
    #[error("not found")]
    NotFound,
    /// A database or other infrastructure failure: logged in full, shown generically.
    #[error("internal error: {0}")]
    Internal(String),
}

impl AppError {
    pub fn code(&self) -> &'static str {
        match self {
            AppError::Payment(error) => error.code(),
            AppError::Merchant(error) => error.code(),
            AppError::Remittance(error) => error.code(),
            AppError::CutOff(error) => error.code(),
            AppError::Plan(error) => error.code(),
            AppError::Card { source, .. } => source.code(),
            AppError::Money { source, .. } => source.code(),
            AppError::Invalid { code, .. } => code,
            AppError::Rejected { code, .. } => code,
            AppError::Outstanding(error) => error.code(),
            AppError::IdempotencyKeyReused => "IDEMPOTENCY_KEY_REUSED",
            AppError::ConcurrencyExhausted => "CONCURRENT_MODIFICATION",
            AppError::NotFound => "NOT_FOUND",
            AppError::Internal(_) => "INTERNAL_ERROR",
        }
    }

    pub fn internal(error: impl std::fmt::Display) -> Self {
        AppError::Internal(error.to_string())
    }

    pub fn money(field: &'static str) -> impl Fn(MoneyError) -> AppError {
        move |source| AppError::Money { field, source }
    }

    pub fn card(source: CardError) -> AppError {
        AppError::Card {
            field: source.field(),
            source,
        }
    }
}

impl From<caisse_domain::risk::RiskSettingsError> for AppError {
    fn from(error: caisse_domain::risk::RiskSettingsError) -> Self {
        use caisse_domain::risk::RiskSettingsError;
        match error {
            RiskSettingsError::InvalidParameter { field, message } => AppError::Invalid {
                field,
                code: "INVALID_RISK_SETTING",
                message,
            },
            other => AppError::Rejected {
                code: other.code(),
                message: other.to_string(),
            },
        }
    }
}

impl From<caisse_domain::grey_list::GreyListError> for AppError {
    fn from(error: caisse_domain::grey_list::GreyListError) -> Self {
        use caisse_domain::grey_list::GreyListError;
        match error {
            GreyListError::InvalidValue { field, message } => AppError::Invalid {
                field,
                code: "INVALID_GREY_LIST_VALUE",
                message,
            },
            other => AppError::Rejected {
                code: other.code(),
                message: other.to_string(),
            },
        }
    }
}

impl From<caisse_domain::notification::NotificationError> for AppError {
    fn from(error: caisse_domain::notification::NotificationError) -> Self {
        use caisse_domain::notification::NotificationError;
        match error {
            NotificationError::Invalid { field, message } => AppError::Invalid {
                field,
                code: "INVALID_NOTIFICATION_SETTING",
                message,
            },
        }
    }
}

impl From<caisse_domain::webhook::WebhookError> for AppError {
    fn from(error: caisse_domain::webhook::WebhookError) -> Self {
        use caisse_domain::webhook::WebhookError;
        match error {
            WebhookError::Invalid { field, message } => AppError::Invalid {
                field,
                code: "INVALID_WEBHOOK_ENDPOINT",
                message,
            },
            other => AppError::Rejected {
                code: other.code(),
                message: other.to_string(),
            },
        }
    }
}
