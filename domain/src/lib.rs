//! Caisse domain: aggregates, commands, events, errors and value types, with no I/O.
//!
//! Architecture invariant: this crate depends only on cqrs-es, serde, rust_decimal,
//! uuid, chrono and thiserror. It never touches a database, the network or a clock;
//! time and outside answers (the acquirer's outcome, the vault's token) come in
//! through commands.

pub mod acquirer;
pub mod card;
pub mod cut_off;
pub mod grey_list;
pub mod ids;
pub mod merchant;
pub mod money;
pub mod notification;
pub mod outstanding;
pub mod payment;
pub mod plan;
pub mod reference;
pub mod remittance;
pub mod retention;
pub mod risk;
pub mod three_ds;
pub mod webhook;

pub use ids::{Mode, PaymentId, RemittanceId, ShopId};
pub use money::{Currency, Money, MoneyError};
