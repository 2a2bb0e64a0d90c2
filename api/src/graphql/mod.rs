//! The GraphQL schema (async-graphql): queries, mutations, types and cursors.

mod cursors;
mod mutation;
mod query;
mod types;

use std::sync::Arc;

use async_graphql::{EmptySubscription, Schema};

use crate::state::AppState;

pub use mutation::MutationRoot;
pub use query::QueryRoot;

pub type CaisseSchema = Schema<QueryRoot, MutationRoot, EmptySubscription>;

/// Deepest query accepted (history inside payments inside a remittance is 5).
pub const QUERY_DEPTH_MAX: usize = 12;
/// Largest query complexity accepted.
pub const QUERY_COMPLEXITY_MAX: usize = 2_000;

pub fn build_schema(state: Arc<AppState>) -> CaisseSchema {
    Schema::build(QueryRoot, MutationRoot, EmptySubscription)
        .data(state)
        .limit_depth(QUERY_DEPTH_MAX)
        .limit_complexity(QUERY_COMPLEXITY_MAX)
        .finish()
}

/// Per-request data the HTTP layer puts into the GraphQL context.
#[derive(Clone)]
pub struct RequestData {
    pub caller: crate::auth::Caller,
    pub request_id: Option<String>,
    pub idempotency_key: Option<String>,
}
