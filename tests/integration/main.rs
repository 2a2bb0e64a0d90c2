//! Integration tests: the real server on port 0, over HTTP, on SQLite and PostgreSQL.

mod access;
mod audit;
mod card_data;
mod concurrency;
mod scheduler;
mod exports;
mod idempotency;
mod journal;
mod late_commit;
mod lifecycle;
mod queries;
mod recovery;
mod retention;
mod smoke;
mod typologies;
mod validation;
