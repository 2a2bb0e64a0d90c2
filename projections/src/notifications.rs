//! The `notifications` projection: each shop's merchant e-mail settings as
//! their last `MerchantEmailsConfigured` left them (`notification_settings_view`),
//! read by the `email_outbox` projection and by GraphQL.

use async_trait::async_trait;
use caisse_application::AppError;
use caisse_domain::notification::{NotificationEvent, ShopNotifications};
use caisse_domain::ShopId;
use caisse_infrastructure::event_log::LoggedEvent;
use caisse_infrastructure::time::timestamp_text;
use caisse_infrastructure::{Db, SqlRow, SqlValue, Tx};
use cqrs_es::Aggregate;

use crate::projector::{decode, Projection};

pub struct NotificationsProjection;

#[async_trait]
impl Projection for NotificationsProjection {
    fn name(&self) -> &'static str {
        "notifications"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["notification_settings_view"]
    }

    async fn apply(&self, tx: &mut Tx, event: &LoggedEvent) -> Result<(), AppError> {
        if event.aggregate_type != ShopNotifications::TYPE {
            return Ok(());
        }
        let notification_event: NotificationEvent = decode(event)?;
        match notification_event {
            NotificationEvent::MerchantEmailsConfigured {
                shop_id,
                addresses,
                event_types,
                shop_display_name,
                logo_url,
                language,
                occurred_at,
            } => {
                let params: Vec<SqlValue> = vec![
                    shop_id.to_string().into(),
                    addresses.join(",").into(),
                    event_types.join(",").into(),
                    shop_display_name.into(),
                    logo_url.into(),
                    timestamp_text(occurred_at).into(),
                    (event.position.tx_id as i64).into(),
                    event.position.global_position.into(),
                    language.into(),
                ];
                tx.execute(
                    "INSERT INTO notification_settings_view (shop_id, addresses, event_types,
                        shop_display_name, logo_url, updated_at, configured_tx_id, configured_position, language)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
                     ON CONFLICT (shop_id) DO UPDATE SET addresses = excluded.addresses,
                        event_types = excluded.event_types,
                        shop_display_name = excluded.shop_display_name,
                        logo_url = excluded.logo_url, updated_at = excluded.updated_at,
                        configured_tx_id = excluded.configured_tx_id,
                        configured_position = excluded.configured_position,
                        language = excluded.language",
                    &params,
                )
                .await?;
            }
        }
        Ok(())
    }
}

/// A shop's merchant e-mail settings as the view holds them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotificationSettingsRow {
    pub shop_id: String,
    pub addresses: Vec<String>,
    pub event_types: Vec<String>,
    pub shop_display_name: Option<String>,
    pub logo_url: Option<String>,
    /// The language of the merchant's e-mails (one of `LANGUAGES`).
    pub language: String,
    pub updated_at: String,
    /// Commit order of the configuration (tx id, position): e-mails are only
    /// written for events after it.
    pub configured: (i64, i64),
}

impl NotificationSettingsRow {
    pub(crate) fn from_row(row: &SqlRow) -> Self {
        let list = |column: &str| {
            row.text(column)
                .split(',')
                .filter(|t| !t.is_empty())
                .map(str::to_string)
                .collect()
        };
        NotificationSettingsRow {
            shop_id: row.text("shop_id"),
            addresses: list("addresses"),
            event_types: list("event_types"),
            shop_display_name: row.opt_text("shop_display_name"),
            logo_url: row.opt_text("logo_url"),
            language: row.text("language"),
            updated_at: row.text("updated_at"),
            configured: (row.int("configured_tx_id"), row.int("configured_position")),
        }
    }
}

/// A shop's settings; None before any were configured.
pub async fn merchant_email_settings(
    db: &Db,
    shop_id: ShopId,
) -> Result<Option<NotificationSettingsRow>, AppError> {
    Ok(db
        .fetch_optional(
            "SELECT * FROM notification_settings_view WHERE shop_id = $1",
            &[shop_id.to_string().into()],
        )
        .await?
        .as_ref()
        .map(NotificationSettingsRow::from_row))
}
