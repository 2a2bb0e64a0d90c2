//! The `Payment` aggregate: one card transaction from authorisation to refunds.

mod aggregate;
mod commands;
mod errors;
mod events;

pub use aggregate::{Payment, PaymentStatus};
pub use commands::{AccessScope, AuthorisationOutcome, PaymentCommand};
pub use errors::PaymentError;
pub use events::{
    Authorisation, CaptureMode, Channel, PaymentDetails, PaymentEvent, Refusal, RefusalCategory,
    DEFAULT_AUTHORISATION_VALIDITY_DAYS,
};

#[cfg(test)]
mod tests;
