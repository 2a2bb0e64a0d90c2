//! The GraphQL schema (async-graphql): queries, mutations, the `events`
//! subscription, types and cursors.

mod cursors;
mod journal;
pub(crate) mod mutation;
mod notifications;
mod plans;
pub(crate) mod query;
pub(crate) mod risk;
mod schedule;
pub(crate) mod subscription;
pub(crate) mod types;
mod webhooks;

use std::sync::Arc;

use async_graphql::{MergedObject, Schema};

use crate::state::AppState;

use mutation::CoreMutation;
use query::CoreQuery;
use subscription::SubscriptionRoot;

/// Every query, merged from one object per area so each area lives in its own file.
#[derive(MergedObject, Default)]
pub struct QueryRoot(
    CoreQuery,
    journal::JournalQuery,
    schedule::ScheduleQuery,
    plans::PlanQuery,
    risk::RiskQuery,
    webhooks::WebhookQuery,
    notifications::NotificationQuery,
);

/// Every mutation, merged from one object per area.
#[derive(MergedObject, Default)]
pub struct MutationRoot(
    CoreMutation,
    schedule::ScheduleMutation,
    plans::PlanMutation,
    risk::RiskMutation,
    webhooks::WebhookMutation,
    notifications::NotificationMutation,
);

pub type CaisseSchema = Schema<QueryRoot, MutationRoot, SubscriptionRoot>;

/// Deepest query accepted (history inside payments inside a remittance is 5).
pub const QUERY_DEPTH_MAX: usize = 12;
/// Largest query complexity accepted.
pub const QUERY_COMPLEXITY_MAX: usize = 2_000;

pub fn build_schema(state: Arc<AppState>) -> CaisseSchema {
    Schema::build(
        QueryRoot::default(),
        MutationRoot::default(),
        SubscriptionRoot,
    )
    .data(state)
    .limit_depth(QUERY_DEPTH_MAX)
    .limit_complexity(QUERY_COMPLEXITY_MAX)
    .finish()
}

/// Per-request data the HTTP layer (or, for a subscription, the WebSocket's
/// `connection_init`) puts into the GraphQL context.
#[derive(Clone)]
pub struct RequestData {
    pub caller: crate::auth::Caller,
    pub request_id: Option<String>,
    pub idempotency_key: Option<String>,
}
