//! Caisse adapters: configuration, database pools and migrations, the event
//! repository over postgres-es / sqlite-es, our global-log reader, the card vault,
//! the test-environment acquirer and the store of the risk reference tables.
//!
//! Architecture invariant: every SQL statement that touches `events` outside the
//! cqrs-es crates lives in `event_log.rs`.

pub mod acquirer;
pub mod config;
pub mod database;
pub mod dispatch_checkpoint;
pub mod event_log;
pub mod event_repository;
pub mod key_lock;
pub mod mailer;
pub mod reference_store;
pub mod sql;
pub mod three_ds;
pub mod time;
pub mod vault;
pub mod webhook_delivery;
pub mod webhook_http;
pub mod webhook_secrets;
pub mod webhook_signature;

pub use config::Config;
pub use database::Database;
pub use sql::{Db, SqlRow, SqlValue, Tx};
