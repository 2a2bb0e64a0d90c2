//! Caisse API: the axum router, the GraphQL schema, authentication, error mapping,
//! the `caisse` command line and the benchmark.
//!
//! Architecture invariant: only this crate knows the JSON shapes of the outside
//! world; GraphQL types are DTOs built from domain state and view rows.

pub mod auth;
pub mod bench;
pub mod bench_cli;
pub mod bench_cutoff;
pub mod bench_rebuild;
pub mod bench_risk;
pub mod cli;
pub mod errors;
pub mod export;
pub mod graphql;
pub mod startup;
pub mod state;
pub mod telemetry;

pub use startup::Application;
