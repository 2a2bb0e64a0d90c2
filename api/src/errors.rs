//! The one mapping from application errors to GraphQL errors: a stable code in
//! `extensions.code`, the field when there is one, and never internal details.

use async_graphql::ErrorExtensions;
use caisse_application::AppError;

/// Codes of errors raised by the API layer itself (the others come from `AppError::code`).
pub mod codes {
    /// 401: no `Authorization: Bearer` header, or an unknown key.
    pub const UNAUTHENTICATED: &str = "UNAUTHENTICATED";
    /// 400: an argument that is not even the right shape (bad id, bad cursor, bad date).
    pub const BAD_USER_INPUT: &str = "BAD_USER_INPUT";
    /// The query itself is invalid: syntax, unknown field, wrong argument type,
    /// missing argument, depth or complexity over the limits.
    pub const GRAPHQL_VALIDATION_FAILED: &str = "GRAPHQL_VALIDATION_FAILED";
    /// 400: Idempotency-Key header too long or not printable ASCII.
    pub const INVALID_IDEMPOTENCY_KEY: &str = "INVALID_IDEMPOTENCY_KEY";
}

pub fn app_error(error: AppError) -> async_graphql::Error {
    let code = error.code();
    let field = match &error {
        AppError::Card { field, .. }
        | AppError::Money { field, .. }
        | AppError::Invalid { field, .. } => Some(*field),
        _ => None,
    };
    let message = match &error {
        AppError::Internal(detail) => {
            tracing::error!(%detail, "internal error");
            "internal error; the incident was logged".to_string()
        }
        other => other.to_string(),
    };
    async_graphql::Error::new(message).extend_with(|_, extensions| {
        extensions.set("code", code);
        if let Some(field) = field {
            extensions.set("field", field);
        }
    })
}

pub fn bad_input(field: &str, message: impl Into<String>) -> async_graphql::Error {
    let field = field.to_string();
    async_graphql::Error::new(format!("{field}: {}", message.into())).extend_with(
        move |_, extensions| {
            extensions.set("code", codes::BAD_USER_INPUT);
            extensions.set("field", field.as_str());
        },
    )
}

/// `PAYMENT_NOT_FOUND`, `REMITTANCE_NOT_FOUND`, `SHOP_NOT_FOUND`: the same code a
/// mutation gives for the same thing, whether it is missing or someone else's.
pub fn not_found(what: &str) -> async_graphql::Error {
    let code = format!("{}_NOT_FOUND", what.to_uppercase());
    async_graphql::Error::new(format!("{what} not found")).extend_with(move |_, extensions| {
        extensions.set("code", code.as_str());
    })
}
