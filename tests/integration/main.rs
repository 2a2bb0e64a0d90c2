//! Integration tests: the real server on port 0, over HTTP, on SQLite and PostgreSQL.

mod smoke;
