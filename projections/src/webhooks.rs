//! The `webhooks` projection: each webhook endpoint as its events leave it
//! (`webhook_endpoints_view`), and its reads for GraphQL and the dispatcher.

use async_trait::async_trait;
use caisse_application::AppError;
use caisse_domain::webhook::{WebhookEndpoint, WebhookEvent};
use caisse_domain::{Mode, ShopId};
use caisse_infrastructure::event_log::LoggedEvent;
use caisse_infrastructure::time::timestamp_text;
use caisse_infrastructure::{Db, SqlRow, SqlValue, Tx};
use cqrs_es::Aggregate;

use crate::projector::{decode, Projection};

pub struct WebhooksProjection;

#[async_trait]
impl Projection for WebhooksProjection {
    fn name(&self) -> &'static str {
        "webhooks"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["webhook_endpoints_view"]
    }

    async fn apply(&self, tx: &mut Tx, event: &LoggedEvent) -> Result<(), AppError> {
        if event.aggregate_type != WebhookEndpoint::TYPE {
            return Ok(());
        }
        let webhook_event: WebhookEvent = decode(event)?;
        let endpoint_id = event.aggregate_id.clone();
        match webhook_event {
            WebhookEvent::WebhookEndpointCreated {
                shop_id,
                mode,
                url,
                event_types,
                description,
                secret_version,
                occurred_at,
                ..
            } => {
                let at = timestamp_text(occurred_at);
                let params: Vec<SqlValue> = vec![
                    endpoint_id.into(),
                    shop_id.to_string().into(),
                    mode.as_str().into(),
                    url.into(),
                    event_types.join(",").into(),
                    description.into(),
                    i64::from(secret_version).into(),
                    at.clone().into(),
                    at.into(),
                    (event.position.tx_id as i64).into(),
                    event.position.global_position.into(),
                ];
                tx.execute(
                    "INSERT INTO webhook_endpoints_view (endpoint_id, shop_id, mode, url, event_types,
                        description, status, secret_version, created_at, updated_at,
                        created_tx_id, created_position)
                     VALUES ($1, $2, $3, $4, $5, $6, 'ACTIVE', $7, $8, $9, $10, $11)",
                    &params,
                )
                .await?;
            }
            WebhookEvent::WebhookEndpointUpdated {
                url,
                event_types,
                description,
                occurred_at,
            } => {
                tx.execute(
                    "UPDATE webhook_endpoints_view SET url = $2, event_types = $3, description = $4,
                        updated_at = $5 WHERE endpoint_id = $1",
                    &[
                        endpoint_id.into(),
                        url.into(),
                        event_types.join(",").into(),
                        description.into(),
                        timestamp_text(occurred_at).into(),
                    ],
                )
                .await?;
            }
            WebhookEvent::WebhookSecretRotated {
                secret_version,
                previous_secret_valid_until,
                occurred_at,
            } => {
                tx.execute(
                    "UPDATE webhook_endpoints_view SET secret_version = $2,
                        previous_secret_valid_until = $3, updated_at = $4 WHERE endpoint_id = $1",
                    &[
                        endpoint_id.into(),
                        i64::from(secret_version).into(),
                        timestamp_text(previous_secret_valid_until).into(),
                        timestamp_text(occurred_at).into(),
                    ],
                )
                .await?;
            }
            WebhookEvent::WebhookEndpointDisabled {
                reason,
                occurred_at,
            } => {
                tx.execute(
                    "UPDATE webhook_endpoints_view SET status = 'DISABLED', disabled_reason = $2,
                        updated_at = $3 WHERE endpoint_id = $1",
                    &[
                        endpoint_id.into(),
                        reason.as_str().into(),
                        timestamp_text(occurred_at).into(),
                    ],
                )
                .await?;
            }
            WebhookEvent::WebhookEndpointEnabled { occurred_at } => {
                tx.execute(
                    "UPDATE webhook_endpoints_view SET status = 'ACTIVE', disabled_reason = NULL,
                        updated_at = $2 WHERE endpoint_id = $1",
                    &[endpoint_id.into(), timestamp_text(occurred_at).into()],
                )
                .await?;
            }
        }
        Ok(())
    }
}

/// One endpoint as the view holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookEndpointRow {
    pub endpoint_id: String,
    pub shop_id: String,
    pub mode: String,
    pub url: String,
    pub event_types: Vec<String>,
    pub description: Option<String>,
    /// ACTIVE or DISABLED.
    pub status: String,
    pub disabled_reason: Option<String>,
    pub secret_version: i64,
    pub previous_secret_valid_until: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl WebhookEndpointRow {
    fn from_row(row: &SqlRow) -> Self {
        WebhookEndpointRow {
            endpoint_id: row.text("endpoint_id"),
            shop_id: row.text("shop_id"),
            mode: row.text("mode"),
            url: row.text("url"),
            event_types: row
                .text("event_types")
                .split(',')
                .filter(|t| !t.is_empty())
                .map(str::to_string)
                .collect(),
            description: row.opt_text("description"),
            status: row.text("status"),
            disabled_reason: row.opt_text("disabled_reason"),
            secret_version: row.int("secret_version"),
            previous_secret_valid_until: row.opt_text("previous_secret_valid_until"),
            created_at: row.text("created_at"),
            updated_at: row.text("updated_at"),
        }
    }
}

/// A shop's endpoints in one mode, oldest first.
pub async fn list_endpoints(
    db: &Db,
    shop_id: ShopId,
    mode: Mode,
) -> Result<Vec<WebhookEndpointRow>, AppError> {
    Ok(db
        .fetch_all(
            "SELECT * FROM webhook_endpoints_view WHERE shop_id = $1 AND mode = $2
             ORDER BY created_at, endpoint_id",
            &[shop_id.to_string().into(), mode.as_str().into()],
        )
        .await?
        .iter()
        .map(WebhookEndpointRow::from_row)
        .collect())
}
