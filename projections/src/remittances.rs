//! The `remittances` projection: one row per remittance sent to the bank (CM-10).

use async_trait::async_trait;
use caisse_application::AppError;
use caisse_domain::remittance::{Remittance, RemittanceEvent};
use caisse_infrastructure::event_log::LoggedEvent;
use caisse_infrastructure::time::{date_text, timestamp_text};
use caisse_infrastructure::Tx;
use cqrs_es::Aggregate;

use crate::money::to_milli;
use crate::projector::Projection;

pub struct RemittancesProjection;

#[async_trait]
impl Projection for RemittancesProjection {
    fn name(&self) -> &'static str {
        "remittances"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["remittances_view"]
    }

    async fn apply(&self, tx: &mut Tx, event: &LoggedEvent) -> Result<(), AppError> {
        if event.aggregate_type != Remittance::TYPE {
            return Ok(());
        }
        let remittance_event: RemittanceEvent = serde_json::from_value(event.payload.clone())
            .map_err(|error| AppError::internal(format!("remittance event: {error}")))?;
        match remittance_event {
            RemittanceEvent::RemittanceSubmitted {
                remittance_id,
                shop_id,
                mode,
                business_date,
                count,
                total,
                occurred_at,
                ..
            } => {
                tx.execute(
                    "INSERT INTO remittances_view (remittance_id, shop_id, mode, currency, business_date,
                         payment_count, total_milli, bank_status, created_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, 'SUBMITTED', $8)",
                    &[
                        remittance_id.to_string().into(),
                        shop_id.to_string().into(),
                        mode.as_str().into(),
                        total.currency().code().into(),
                        date_text(business_date).into(),
                        (count as i64).into(),
                        to_milli(&total).into(),
                        timestamp_text(occurred_at).into(),
                    ],
                )
                .await?;
            }
        }
        Ok(())
    }
}
