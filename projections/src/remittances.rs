//! The `remittances` projection (CM-10): one row per remittance sent to the bank
//! (remittances_view), each remitted payment with its remittance's shop, mode,
//! currency and contract (remittance_payments), and every refund on its way to
//! the bank as a credit (remittance_refunds; docs/adr/0008).

use async_trait::async_trait;
use caisse_application::AppError;
use caisse_domain::payment::{Payment, PaymentEvent};
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
        &[
            "remittances_view",
            "remittance_payments",
            "remittance_refunds",
        ]
    }

    async fn apply(&self, tx: &mut Tx, event: &LoggedEvent) -> Result<(), AppError> {
        if event.aggregate_type == Payment::TYPE {
            return apply_payment_event(tx, event).await;
        }
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
                contract,
                business_date,
                payments,
                count,
                total,
                refunds,
                credit_count,
                credit_total,
                occurred_at,
            } => {
                let remittance_id = remittance_id.to_string();
                let shop_id = shop_id.to_string();
                let currency = total.currency().code().to_string();
                tx.execute(
                    "INSERT INTO remittances_view (remittance_id, shop_id, mode, currency, business_date,
                         payment_count, total_milli, bank_status, created_at, acquirer_contract,
                         credit_count, credit_total_milli)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, 'SUBMITTED', $8, $9, $10, $11)",
                    &[
                        remittance_id.as_str().into(),
                        shop_id.as_str().into(),
                        mode.as_str().into(),
                        currency.as_str().into(),
                        date_text(business_date).into(),
                        (count as i64).into(),
                        to_milli(&total).into(),
                        timestamp_text(occurred_at).into(),
                        contract.as_str().into(),
                        (credit_count as i64).into(),
                        credit_total.as_ref().map_or(0, to_milli).into(),
                    ],
                )
                .await?;
                for payment in &payments {
                    // ON CONFLICT: the domain never lists a payment twice; the
                    // clause only keeps the view able to accept whatever the log holds.
                    tx.execute(
                        "INSERT INTO remittance_payments (remittance_id, payment_id, shop_id, mode, currency,
                             acquirer_contract, amount_milli)
                         VALUES ($1, $2, $3, $4, $5, $6, $7)
                         ON CONFLICT (remittance_id, payment_id) DO NOTHING",
                        &[
                            remittance_id.as_str().into(),
                            payment.payment_id.to_string().into(),
                            shop_id.as_str().into(),
                            mode.as_str().into(),
                            currency.as_str().into(),
                            contract.as_str().into(),
                            to_milli(&payment.amount).into(),
                        ],
                    )
                    .await?;
                }
                for refund in &refunds {
                    tx.execute(
                        "UPDATE remittance_refunds SET recorded_in = $1 WHERE refund_id = $2",
                        &[
                            remittance_id.as_str().into(),
                            refund.refund_id.to_string().into(),
                        ],
                    )
                    .await?;
                }
            }
        }
        Ok(())
    }
}

/// A refund joins the credits waiting for the bank; `RefundRemitted` names the
/// remittance taking it.
async fn apply_payment_event(tx: &mut Tx, event: &LoggedEvent) -> Result<(), AppError> {
    // Most payment events do not concern remittances: skip them unparsed.
    if !matches!(
        event.event_type.as_str(),
        "PaymentRefunded" | "RefundRemitted"
    ) {
        return Ok(());
    }
    let payment_event: PaymentEvent =
        serde_json::from_value(event.payload.clone()).map_err(|error| {
            AppError::internal(format!(
                "payment event {}: {error}",
                event.position.global_position
            ))
        })?;
    match payment_event {
        PaymentEvent::PaymentRefunded {
            refund_id,
            amount,
            occurred_at,
            ..
        } => {
            // ON CONFLICT: refund ids are unique; see remittance_payments above.
            tx.execute(
                "INSERT INTO remittance_refunds (refund_id, payment_id, currency, amount_milli, refunded_at)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (refund_id) DO NOTHING",
                &[
                    refund_id.to_string().into(),
                    event.aggregate_id.as_str().into(),
                    amount.currency().code().into(),
                    to_milli(&amount).into(),
                    timestamp_text(occurred_at).into(),
                ],
            )
            .await?;
        }
        PaymentEvent::RefundRemitted {
            refund_id,
            remittance_id,
            occurred_at,
            ..
        } => {
            tx.execute(
                "UPDATE remittance_refunds SET remittance_id = $1, remitted_at = $2 WHERE refund_id = $3",
                &[
                    remittance_id.to_string().into(),
                    timestamp_text(occurred_at).into(),
                    refund_id.to_string().into(),
                ],
            )
            .await?;
        }
        // Every other payment event leaves the remittance views as they are.
        _ => {}
    }
    Ok(())
}
