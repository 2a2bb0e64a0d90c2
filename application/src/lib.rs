//! Caisse use cases: command services over the event store, retries on conflicts,
//! idempotency, and the ports (acquirer, vault, clock, event log) they need.
//!
//! Architecture invariant: no SQL, no HTTP. Adapters live in `caisse-infrastructure`
//! and `caisse-projections`; this crate only names what it needs from them.

pub mod command_runner;
pub mod context;
pub mod cut_off;
pub mod error;
pub mod merchants;
pub mod notifications;
pub mod payment_security;
pub mod payments;
pub mod plans;
pub mod ports;
pub mod reference;
pub mod remittances;
pub mod retention;
pub mod risk;
pub mod scheduler;
pub mod webhooks;

pub use command_runner::CommandRunner;
pub use context::{IdempotencyRequest, RequestContext};
pub use error::AppError;
