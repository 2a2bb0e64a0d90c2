//! GraphQL for webhook endpoints (issue 5, RP-2, RP-3): a shop's URLs, the
//! event types each subscribes to, its signing secret (shown once), rotation,
//! and turning it off and on.

use async_graphql::{Context, InputObject, Object, SimpleObject, ID};
use caisse_application::webhooks::EndpointResult;
use caisse_application::AppError;
use caisse_domain::ids::WebhookEndpointId;
use caisse_domain::webhook::{WebhookEndpoint, WEBHOOK_EVENT_TYPES};
use caisse_infrastructure::time::timestamp_text;
use caisse_infrastructure::webhook_delivery::DeliveryRow;
use caisse_projections::webhooks::{list_endpoints, WebhookEndpointRow};

use crate::errors::{app_error, bad_input};
use crate::graphql::mutation::context;
use crate::graphql::query::{request, state};
use crate::graphql::risk::caller_shop;

#[derive(Default)]
pub struct WebhookQuery;

#[derive(Default)]
pub struct WebhookMutation;

/// A URL of the merchant's that receives the shop's events of one mode.
#[derive(SimpleObject)]
pub struct WebhookEndpointNode {
    pub id: String,
    pub shop_id: String,
    pub mode: String,
    pub url: String,
    /// The event types it receives; `*` for all.
    pub event_types: Vec<String>,
    pub description: Option<String>,
    /// ACTIVE or DISABLED.
    pub status: String,
    /// MERCHANT or PERSISTENT_FAILURE when disabled.
    pub disabled_reason: Option<String>,
    /// Version of the signing secret in force (1, then +1 per rotation).
    pub secret_version: i64,
    /// Until then the previous secret signs beside the new one.
    pub previous_secret_valid_until: Option<String>,
    pub created_at: Option<String>,
    pub updated_at: Option<String>,
}

impl From<WebhookEndpointRow> for WebhookEndpointNode {
    fn from(row: WebhookEndpointRow) -> Self {
        WebhookEndpointNode {
            id: row.endpoint_id,
            shop_id: row.shop_id,
            mode: row.mode,
            url: row.url,
            event_types: row.event_types,
            description: row.description,
            status: row.status,
            disabled_reason: row.disabled_reason,
            secret_version: row.secret_version,
            previous_secret_valid_until: row.previous_secret_valid_until,
            created_at: Some(row.created_at),
            updated_at: Some(row.updated_at),
        }
    }
}

fn node(result: &EndpointResult) -> WebhookEndpointNode {
    let endpoint = &result.endpoint;
    WebhookEndpointNode {
        id: result.endpoint_id.to_string(),
        shop_id: endpoint.shop_id.map(|s| s.to_string()).unwrap_or_default(),
        mode: endpoint
            .mode
            .map(|m| m.as_str().to_string())
            .unwrap_or_default(),
        url: endpoint.url.clone(),
        event_types: endpoint.event_types.clone(),
        description: endpoint.description.clone(),
        status: if endpoint.active {
            "ACTIVE"
        } else {
            "DISABLED"
        }
        .to_string(),
        disabled_reason: endpoint.disabled_reason.map(|r| r.as_str().to_string()),
        secret_version: i64::from(endpoint.secret_version),
        previous_secret_valid_until: endpoint.previous_secret_valid_until.map(timestamp_text),
        created_at: None,
        updated_at: None,
    }
}

/// An endpoint with its signing secret: the only time the secret is shown.
#[derive(SimpleObject)]
pub struct WebhookEndpointWithSecret {
    pub endpoint: WebhookEndpointNode,
    /// `whsec_…`: keep it; it is never shown again (rotate it if lost).
    pub secret: String,
}

#[derive(InputObject)]
pub struct CreateWebhookEndpointInput {
    pub shop_id: ID,
    /// http(s) on port 80 or 443 (or an operator-allowed port); never a
    /// private, loopback, link-local or metadata address.
    pub url: String,
    /// Event types to receive (see `webhookEventTypes`), or `["*"]`.
    pub event_types: Vec<String>,
    pub description: Option<String>,
}

#[derive(InputObject)]
pub struct UpdateWebhookEndpointInput {
    pub id: ID,
    pub url: Option<String>,
    pub event_types: Option<Vec<String>>,
    pub description: Option<String>,
}

/// One attempt of a delivery.
#[derive(SimpleObject)]
pub struct WebhookAttempt {
    pub attempt: i64,
    pub attempted_at: String,
    /// The receiver's HTTP status; none when no answer came.
    pub status_code: Option<i64>,
    pub latency_ms: i64,
    /// The first 512 bytes of the receiver's answer.
    pub response_prefix: Option<String>,
    /// Timeout, connection refused, forbidden address…
    pub error: Option<String>,
}

/// One event sent (or to send) to one endpoint.
#[derive(SimpleObject)]
#[graphql(complex)]
pub struct WebhookDelivery {
    pub id: String,
    /// The `webhook-id` header: the same on every attempt and redelivery.
    pub webhook_id: String,
    pub endpoint_id: String,
    pub event_type: String,
    /// The payment (or plan) the event is about.
    pub subject_id: String,
    /// The JSON body, as signed.
    pub payload: String,
    /// PENDING, SUCCEEDED or FAILED (the retry schedule ran out).
    pub status: String,
    pub attempts: i64,
    pub next_attempt_at: Option<String>,
    pub last_attempt_at: Option<String>,
    pub last_status_code: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: String,
}

impl From<DeliveryRow> for WebhookDelivery {
    fn from(row: DeliveryRow) -> Self {
        WebhookDelivery {
            id: row.delivery_id,
            webhook_id: row.webhook_id,
            endpoint_id: row.endpoint_id,
            event_type: row.event_type,
            subject_id: row.subject_id,
            payload: row.payload,
            status: row.status,
            attempts: row.attempts,
            next_attempt_at: row.next_attempt_at,
            last_attempt_at: row.last_attempt_at,
            last_status_code: row.last_status_code,
            last_error: row.last_error,
            created_at: row.created_at,
        }
    }
}

#[async_graphql::ComplexObject]
impl WebhookDelivery {
    /// Every attempt, oldest first.
    async fn attempt_log(&self, ctx: &Context<'_>) -> async_graphql::Result<Vec<WebhookAttempt>> {
        Ok(state(ctx)?
            .webhook_deliverer
            .attempts(&self.id)
            .await
            .map_err(app_error)?
            .into_iter()
            .map(|row| WebhookAttempt {
                attempt: row.attempt,
                attempted_at: row.attempted_at,
                status_code: row.status_code,
                latency_ms: row.latency_ms,
                response_prefix: row.response_prefix,
                error: row.error,
            })
            .collect())
    }
}

/// A delivery of the caller's shop and mode; `WEBHOOK_DELIVERY_NOT_FOUND` otherwise.
async fn caller_delivery(ctx: &Context<'_>, id: &ID) -> async_graphql::Result<DeliveryRow> {
    let caller = &request(ctx)?.caller;
    let not_found = || {
        app_error(AppError::Rejected {
            code: "WEBHOOK_DELIVERY_NOT_FOUND",
            message: "webhook delivery not found".to_string(),
        })
    };
    let row = state(ctx)?
        .webhook_deliverer
        .delivery(id.as_str())
        .await
        .map_err(app_error)?
        .ok_or_else(not_found)?;
    if row.shop_id != caller.shop_id.to_string() || row.mode != caller.mode.as_str() {
        return Err(not_found());
    }
    Ok(row)
}

/// A disabled endpoint receives no payment data, not even a redelivery asked
/// for by hand: it was turned off by the merchant (a wrong or compromised
/// URL) or after persistent failure. The merchant checks a fix with
/// `sendTestWebhook`, then enables it (`enableWebhookEndpoint`), which also
/// resumes its pending deliveries.
fn refuse_disabled(
    field: &'static str,
    endpoint_id: &str,
    endpoint: &WebhookEndpoint,
) -> async_graphql::Result<()> {
    if endpoint.active {
        return Ok(());
    }
    let reason = endpoint
        .disabled_reason
        .map(|reason| format!(" ({})", reason.as_str()))
        .unwrap_or_default();
    Err(app_error(AppError::Invalid {
        field,
        code: "WEBHOOK_ENDPOINT_DISABLED",
        message: format!(
            "the webhook endpoint {endpoint_id} is disabled{reason}; enable it with enableWebhookEndpoint first"
        ),
    }))
}

/// Largest page of deliveries.
const DELIVERIES_PAGE_MAX: i32 = 200;

fn parse_endpoint_id(field: &str, id: &ID) -> async_graphql::Result<WebhookEndpointId> {
    WebhookEndpointId::parse(id.as_str())
        .ok_or_else(|| bad_input(field, "not a webhook endpoint id (whe_…)"))
}

fn with_secret(result: EndpointResult) -> async_graphql::Result<WebhookEndpointWithSecret> {
    let secret = result
        .secret
        .clone()
        .ok_or_else(|| app_error(AppError::internal("no secret to show")))?;
    Ok(WebhookEndpointWithSecret {
        endpoint: node(&result),
        secret,
    })
}

#[Object]
impl WebhookQuery {
    /// The shop's webhook endpoints in the caller's mode.
    async fn webhook_endpoints(
        &self,
        ctx: &Context<'_>,
        shop_id: ID,
    ) -> async_graphql::Result<Vec<WebhookEndpointNode>> {
        let shop_id = caller_shop(ctx, &shop_id)?;
        let mode = request(ctx)?.caller.mode;
        Ok(list_endpoints(state(ctx)?.db(), shop_id, mode)
            .await
            .map_err(app_error)?
            .into_iter()
            .map(WebhookEndpointNode::from)
            .collect())
    }

    /// An endpoint's deliveries, newest first.
    async fn webhook_deliveries(
        &self,
        ctx: &Context<'_>,
        endpoint_id: ID,
        #[graphql(desc = "PENDING, SUCCEEDED or FAILED")] status: Option<String>,
        #[graphql(desc = "Page size, 1 to 200 (default 50)")] first: Option<i32>,
    ) -> async_graphql::Result<Vec<WebhookDelivery>> {
        let id = parse_endpoint_id("endpointId", &endpoint_id)?;
        state(ctx)?
            .webhooks
            .load(&context(ctx)?, id)
            .await
            .map_err(app_error)?;
        if let Some(status) = &status {
            if !["PENDING", "SUCCEEDED", "FAILED"].contains(&status.as_str()) {
                return Err(bad_input("status", "PENDING, SUCCEEDED or FAILED"));
            }
        }
        let first = first.unwrap_or(50);
        if !(1..=DELIVERIES_PAGE_MAX).contains(&first) {
            return Err(bad_input(
                "first",
                format!("must be between 1 and {DELIVERIES_PAGE_MAX}"),
            ));
        }
        Ok(state(ctx)?
            .webhook_deliverer
            .deliveries(&id.to_string(), status.as_deref(), first as usize)
            .await
            .map_err(app_error)?
            .into_iter()
            .map(WebhookDelivery::from)
            .collect())
    }

    /// Every event type an endpoint can subscribe to.
    async fn webhook_event_types(&self) -> Vec<String> {
        WEBHOOK_EVENT_TYPES.iter().map(|t| t.to_string()).collect()
    }
}

#[Object]
impl WebhookMutation {
    /// Registers a webhook endpoint; answers its signing secret, once.
    async fn create_webhook_endpoint(
        &self,
        ctx: &Context<'_>,
        input: CreateWebhookEndpointInput,
    ) -> async_graphql::Result<WebhookEndpointWithSecret> {
        let shop_id = caller_shop(ctx, &input.shop_id)?;
        let result = state(ctx)?
            .webhooks
            .create(
                &context(ctx)?,
                shop_id,
                input.url,
                input.event_types,
                input.description,
            )
            .await
            .map_err(app_error)?;
        with_secret(result)
    }

    /// Changes an endpoint's URL, event types or description.
    async fn update_webhook_endpoint(
        &self,
        ctx: &Context<'_>,
        input: UpdateWebhookEndpointInput,
    ) -> async_graphql::Result<WebhookEndpointNode> {
        let endpoint_id = parse_endpoint_id("id", &input.id)?;
        let result = state(ctx)?
            .webhooks
            .update(
                &context(ctx)?,
                endpoint_id,
                input.url,
                input.event_types,
                input.description,
            )
            .await
            .map_err(app_error)?;
        Ok(node(&result))
    }

    /// A new signing secret, answered once; the previous one keeps signing
    /// beside it for 24 hours so the merchant can switch without losing events.
    async fn rotate_webhook_secret(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<WebhookEndpointWithSecret> {
        let endpoint_id = parse_endpoint_id("id", &id)?;
        let result = state(ctx)?
            .webhooks
            .rotate_secret(&context(ctx)?, endpoint_id)
            .await
            .map_err(app_error)?;
        with_secret(result)
    }

    /// Stops deliveries to an endpoint (they resume with `enableWebhookEndpoint`).
    async fn disable_webhook_endpoint(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<WebhookEndpointNode> {
        let endpoint_id = parse_endpoint_id("id", &id)?;
        let result = state(ctx)?
            .webhooks
            .set_active(&context(ctx)?, endpoint_id, false)
            .await
            .map_err(app_error)?;
        Ok(node(&result))
    }

    /// Sends a delivery again now (same body, same `webhook-id`), whatever its
    /// state; answers it with the new attempt in its log. Refused
    /// (`WEBHOOK_ENDPOINT_DISABLED`) while its endpoint is disabled.
    async fn redeliver_webhook(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<WebhookDelivery> {
        let row = caller_delivery(ctx, &id).await?;
        let endpoint_id = WebhookEndpointId::parse(&row.endpoint_id)
            .ok_or_else(|| app_error(AppError::internal("a delivery without an endpoint id")))?;
        let endpoint = state(ctx)?
            .webhooks
            .load(&context(ctx)?, endpoint_id)
            .await
            .map_err(app_error)?;
        refuse_disabled("id", &row.endpoint_id, &endpoint)?;
        let deliverer = &state(ctx)?.webhook_deliverer;
        deliverer
            .requeue(&row.delivery_id)
            .await
            .map_err(app_error)?;
        deliverer
            .attempt_now(&row.delivery_id)
            .await
            .map_err(app_error)?;
        Ok(caller_delivery(ctx, &id).await?.into())
    }

    /// Sends a `webhook.test` event to an endpoint at once, even a disabled
    /// one (it carries no payment data: a merchant checks a fix before
    /// enabling); answers the delivery with its first attempt.
    async fn send_test_webhook(
        &self,
        ctx: &Context<'_>,
        endpoint_id: ID,
    ) -> async_graphql::Result<WebhookDelivery> {
        let id = parse_endpoint_id("endpointId", &endpoint_id)?;
        let endpoint = state(ctx)?
            .webhooks
            .load(&context(ctx)?, id)
            .await
            .map_err(app_error)?;
        let deliverer = &state(ctx)?.webhook_deliverer;
        let delivery_id = deliverer
            .enqueue_test(
                id,
                &endpoint.shop_id.map(|s| s.to_string()).unwrap_or_default(),
                endpoint.mode.map(|m| m.as_str()).unwrap_or_default(),
            )
            .await
            .map_err(app_error)?;
        deliverer
            .attempt_now(&delivery_id)
            .await
            .map_err(app_error)?;
        Ok(caller_delivery(ctx, &ID(delivery_id)).await?.into())
    }

    async fn enable_webhook_endpoint(
        &self,
        ctx: &Context<'_>,
        id: ID,
    ) -> async_graphql::Result<WebhookEndpointNode> {
        let endpoint_id = parse_endpoint_id("id", &id)?;
        let result = state(ctx)?
            .webhooks
            .set_active(&context(ctx)?, endpoint_id, true)
            .await
            .map_err(app_error)?;
        Ok(node(&result))
    }
}
