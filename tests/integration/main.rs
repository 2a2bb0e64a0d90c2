//! Integration tests: the real server on port 0, over HTTP, on SQLite and PostgreSQL.

mod access;
mod audit;
mod card_data;
mod concurrency;
mod idempotency;
mod late_commit;
mod lifecycle;
mod queries;
mod recovery;
mod smoke;
mod validation;
