//! Integration tests: the real server on port 0, over HTTP, on SQLite and PostgreSQL.

mod access;
mod audit;
mod card_data;
mod concurrency;
mod emails;
mod exports;
mod idempotency;
mod journal;
mod late_commit;
mod lifecycle;
mod plans;
mod queries;
mod recovery;
mod reference;
mod remittances;
mod retention;
mod risk;
mod scheduler;
mod smoke;
mod subscriptions;
mod typologies;
mod validation;
mod webhook_dispatch;
mod webhooks;
