//! The `Payment` aggregate: one card transaction from authorisation to refunds.

mod aggregate;
mod commands;
mod errors;
mod events;

pub use aggregate::{Payment, PaymentStatus, RefundRecord};
pub use commands::{AccessScope, AuthorisationOutcome, PaymentCommand, Reauthorisation};
pub use errors::PaymentError;
pub use events::{
    Authorisation, CaptureMode, CaptureTrigger, Channel, InstalmentOf, PaymentDetails,
    PaymentEvent, Refusal, RefusalCategory, DEFAULT_AUTHORISATION_VALIDITY_DAYS,
};

#[cfg(test)]
mod tests;
