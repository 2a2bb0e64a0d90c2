//! The `accounts` projection: merchants, shops, API keys (by hash) and users.

use async_trait::async_trait;
use caisse_application::AppError;
use caisse_domain::merchant::{Merchant, MerchantEvent, UserRole};
use caisse_infrastructure::event_log::LoggedEvent;
use caisse_infrastructure::time::timestamp_text;
use caisse_infrastructure::Tx;
use cqrs_es::Aggregate;

use crate::projector::Projection;

pub struct AccountsProjection;

#[async_trait]
impl Projection for AccountsProjection {
    fn name(&self) -> &'static str {
        "accounts"
    }

    fn tables(&self) -> &'static [&'static str] {
        &[
            "merchants_view",
            "shops_view",
            "api_keys_view",
            "users_view",
        ]
    }

    async fn apply(&self, tx: &mut Tx, event: &LoggedEvent) -> Result<(), AppError> {
        if event.aggregate_type != Merchant::TYPE {
            return Ok(());
        }
        let merchant_event: MerchantEvent = serde_json::from_value(event.payload.clone())
            .map_err(|error| AppError::internal(format!("merchant event: {error}")))?;
        let merchant_id = event.aggregate_id.as_str();
        match merchant_event {
            MerchantEvent::MerchantCreated {
                name, occurred_at, ..
            } => {
                tx.execute(
                    "INSERT INTO merchants_view (merchant_id, name, created_at) VALUES ($1, $2, $3)",
                    &[merchant_id.into(), name.into(), timestamp_text(occurred_at).into()],
                )
                .await?;
            }
            MerchantEvent::ShopCreated {
                shop_id,
                name,
                occurred_at,
                ..
            } => {
                tx.execute(
                    "INSERT INTO shops_view (shop_id, merchant_id, name, created_at) VALUES ($1, $2, $3, $4)",
                    &[shop_id.to_string().into(), merchant_id.into(), name.into(), timestamp_text(occurred_at).into()],
                )
                .await?;
            }
            // Kept by the `schedule` projection, which plans the cut-offs.
            MerchantEvent::RemittanceCutOffChanged { .. } => {}
            MerchantEvent::ApiKeyIssued {
                key_id,
                shop_id,
                mode,
                key_prefix,
                key_hash,
                occurred_at,
            } => {
                tx.execute(
                    "INSERT INTO api_keys_view (key_hash, key_id, key_prefix, shop_id, merchant_id, mode, created_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7)",
                    &[
                        key_hash.into(),
                        key_id.to_string().into(),
                        key_prefix.into(),
                        shop_id.to_string().into(),
                        merchant_id.into(),
                        mode.as_str().into(),
                        timestamp_text(occurred_at).into(),
                    ],
                )
                .await?;
            }
            MerchantEvent::UserCreated {
                user_id,
                email,
                password_hash,
                role,
                occurred_at,
            } => {
                let role = match role {
                    UserRole::Admin => "ADMIN",
                };
                tx.execute(
                    "INSERT INTO users_view (user_id, merchant_id, email, password_hash, role, created_at)
                     VALUES ($1, $2, $3, $4, $5, $6)",
                    &[
                        user_id.to_string().into(),
                        merchant_id.into(),
                        email.into(),
                        password_hash.into(),
                        role.into(),
                        timestamp_text(occurred_at).into(),
                    ],
                )
                .await?;
            }
        }
        Ok(())
    }
}
