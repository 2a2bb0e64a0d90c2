//! Caisse projections: catch-up consumers of the global log that build the views
//! (payments, cash movements, remittances, accounts, risk), their checkpoints, the
//! read-side queries, `projections rebuild` and `audit verify`.
//!
//! Architecture invariant: a view row and its projection's checkpoint are written
//! in the same transaction, so each event takes effect exactly once.

pub mod accounts;
pub mod audit;
mod dispatch;
pub mod email_dispatch;
pub mod email_templates;
pub mod journal;
pub mod journal_queries;
pub mod money;
pub mod notifications;
pub mod payments;
pub mod plans;
pub mod projector;
pub mod queries;
pub mod remittances;
pub mod risk;
pub mod risk_queries;
#[cfg(test)]
mod risk_tests;
pub mod schedule;
pub mod webhook_dispatch;
pub mod webhooks;

pub use projector::{Projection, ProjectionHandle, Projector, Projectors};
