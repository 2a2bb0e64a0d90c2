//! The `webhook_outbox` projection: turns each payment and plan event into one
//! delivery per active endpoint of its shop and mode that subscribes to its
//! type (`webhook_deliveries`), with the body it will carry. Driven by the log
//! like every view, so no request waits for a merchant's server; the sender
//! (`caisse_api::webhooks`) works the deliveries through.
//!
//! Each batch reads a shop's endpoints once and inserts its deliveries a
//! hundred per statement at its end (`finish_batch`): notifications must not
//! slow payments down (issue 5).
//!
//! The deliveries are state, not a view: `tables()` is empty so a rebuild does
//! not empty them, and a replay inserts nothing twice (one row per endpoint,
//! subject and `webhook-id`: migration 0015), nor sends an endpoint events
//! older than the endpoint.

use std::collections::HashMap;

use async_trait::async_trait;
use caisse_application::AppError;
use caisse_domain::payment::{Payment, PaymentEvent};
use caisse_domain::plan::{PaymentPlan, PlanEvent};
use caisse_domain::webhook::{subscribes_to, WebhookEndpoint};
use caisse_domain::Money;
use caisse_infrastructure::event_log::LoggedEvent;
use caisse_infrastructure::time::timestamp_text;
use caisse_infrastructure::{SqlValue, Tx};
use cqrs_es::Aggregate;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::money::{milli_to_string, to_milli};
use crate::projector::{decode, insert_rows, Projection};

/// The columns of a queued delivery, in `INSERT_COLUMNS` order.
const COLUMNS_PER_ROW: usize = 11;
/// Deliveries per INSERT statement (11 parameters each, well under both
/// backends' limits).
const ROWS_PER_INSERT: usize = 100;

#[derive(Default)]
pub struct WebhookOutboxProjection {
    batch: std::sync::Mutex<Batch>,
}

/// What one projector batch keeps between its events: the endpoints of each
/// shop and mode it met (read once; dropped when an endpoint event passes,
/// since the endpoints view has just changed in this transaction), and the
/// deliveries to insert at its end.
#[derive(Default)]
struct Batch {
    endpoints: HashMap<(String, String), Vec<ActiveEndpoint>>,
    rows: Vec<Vec<SqlValue>>,
}

#[derive(Clone)]
struct ActiveEndpoint {
    endpoint_id: String,
    event_types: Vec<String>,
    /// Commit order of its creation: it gets only the events after it.
    created: (i64, i64),
}

impl WebhookOutboxProjection {
    fn batch(&self) -> std::sync::MutexGuard<'_, Batch> {
        // A panic while holding it leaves nothing half-written worth keeping.
        self.batch
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The active endpoints of a shop and mode, from this batch's cache.
    async fn active_endpoints(
        &self,
        tx: &mut Tx,
        shop_id: &str,
        mode: &str,
    ) -> Result<Vec<ActiveEndpoint>, AppError> {
        let key = (shop_id.to_string(), mode.to_string());
        if let Some(endpoints) = self.batch().endpoints.get(&key) {
            return Ok(endpoints.clone());
        }
        let endpoints: Vec<ActiveEndpoint> = tx
            .fetch_all(
                "SELECT endpoint_id, event_types, created_tx_id, created_position
                   FROM webhook_endpoints_view
                  WHERE shop_id = $1 AND mode = $2 AND status = 'ACTIVE'",
                &[shop_id.into(), mode.into()],
            )
            .await?
            .iter()
            .map(|row| ActiveEndpoint {
                endpoint_id: row.text("endpoint_id"),
                event_types: row
                    .text("event_types")
                    .split(',')
                    .map(str::to_string)
                    .collect(),
                created: (row.int("created_tx_id"), row.int("created_position")),
            })
            .collect();
        self.batch().endpoints.insert(key, endpoints.clone());
        Ok(endpoints)
    }
}

/// The Standard Webhooks `webhook-id` of an event: stable, the same for every
/// endpoint, retry and redelivery.
pub fn webhook_id(aggregate_id: &str, sequence: i64) -> String {
    let digest = Sha256::digest(format!("{aggregate_id}/{sequence}").as_bytes());
    format!("msg_{}", &hex::encode(digest)[..32])
}

/// The webhook type of a payment event; None for events that are not a
/// merchant-visible step of their own.
pub fn payment_event_type(event: &PaymentEvent) -> Option<&'static str> {
    Some(match event {
        PaymentEvent::PaymentAuthorised { .. }
        | PaymentEvent::DeferredAuthorisationGranted { .. } => "payment.authorised",
        PaymentEvent::PaymentRefused { .. } | PaymentEvent::DeferredAuthorisationRefused { .. } => {
            "payment.refused"
        }
        PaymentEvent::PaymentAuthenticationAbandoned { .. } => "payment.abandoned",
        PaymentEvent::PaymentAuthenticationPending { .. } => "payment.authentication_pending",
        PaymentEvent::PaymentAwaitingAuthorisation { .. } => "payment.awaiting_authorisation",
        PaymentEvent::PaymentValidated { .. } => "payment.validated",
        PaymentEvent::PaymentModified { .. } => "payment.modified",
        PaymentEvent::PaymentCancelled { .. } => "payment.cancelled",
        PaymentEvent::PaymentExpired { .. } => "payment.expired",
        PaymentEvent::PaymentReauthorised { .. } => "payment.reauthorised",
        PaymentEvent::ShipmentDeclared { .. } => "payment.shipped",
        PaymentEvent::DeliveryDeclared { .. } => "payment.delivered",
        PaymentEvent::PaymentCaptured { .. } => "payment.captured",
        PaymentEvent::PaymentRefunded { .. } => "payment.refunded",
        PaymentEvent::PaymentDuplicated { .. } => "payment.duplicated",
        // The outcome follows in the same commit; the remittance of a refund
        // is the bank's business.
        PaymentEvent::PaymentAuthenticated { .. } | PaymentEvent::RefundRemitted { .. } => {
            return None
        }
    })
}

/// What the event moved, when it moved an amount.
pub(crate) fn event_amount(event: &PaymentEvent) -> Option<Money> {
    match event {
        PaymentEvent::PaymentAuthorised { details, .. }
        | PaymentEvent::PaymentRefused { details, .. }
        | PaymentEvent::PaymentAwaitingAuthorisation { details, .. }
        | PaymentEvent::PaymentAuthenticationPending { details, .. } => Some(details.amount),
        PaymentEvent::DeferredAuthorisationGranted { amount, .. }
        | PaymentEvent::DeferredAuthorisationRefused { amount, .. }
        | PaymentEvent::PaymentModified { amount, .. }
        | PaymentEvent::PaymentReauthorised { amount, .. }
        | PaymentEvent::PaymentCancelled { amount, .. }
        | PaymentEvent::PaymentExpired { amount, .. }
        | PaymentEvent::PaymentCaptured { amount, .. }
        | PaymentEvent::PaymentRefunded { amount, .. }
        | PaymentEvent::RefundRemitted { amount, .. }
        | PaymentEvent::PaymentDuplicated { amount, .. } => Some(*amount),
        PaymentEvent::PaymentValidated { .. }
        | PaymentEvent::PaymentAuthenticated { .. }
        | PaymentEvent::PaymentAuthenticationAbandoned { .. }
        | PaymentEvent::ShipmentDeclared { .. }
        | PaymentEvent::DeliveryDeclared { .. } => None,
    }
}

#[async_trait]
impl Projection for WebhookOutboxProjection {
    fn name(&self) -> &'static str {
        "webhook_outbox"
    }

    fn tables(&self) -> &'static [&'static str] {
        &[]
    }

    fn begin_batch(&self) {
        *self.batch() = Batch::default();
    }

    async fn apply(&self, tx: &mut Tx, event: &LoggedEvent) -> Result<(), AppError> {
        if event.aggregate_type == WebhookEndpoint::TYPE {
            // The endpoints view changed just before, in this transaction.
            self.batch().endpoints.clear();
            return Ok(());
        }
        let (event_type, occurred_at, data) = if event.aggregate_type == Payment::TYPE {
            let payment_event: PaymentEvent = decode(event)?;
            let Some(event_type) = payment_event_type(&payment_event) else {
                return Ok(());
            };
            let data = payment_data(tx, &event.aggregate_id, &payment_event).await?;
            (event_type, payment_event.occurred_at(), data)
        } else if event.aggregate_type == PaymentPlan::TYPE {
            let (event_type, occurred_at) = match decode::<PlanEvent>(event)? {
                PlanEvent::PlanCompleted { occurred_at } => ("plan.completed", occurred_at),
                PlanEvent::PlanDefaulted { occurred_at, .. } => ("plan.defaulted", occurred_at),
                _ => return Ok(()),
            };
            let data = plan_data(tx, &event.aggregate_id).await?;
            (event_type, occurred_at, data)
        } else {
            return Ok(());
        };
        let Some(data) = data else {
            // Not in the views (archived): nobody to tell by shop.
            return Ok(());
        };
        let shop_id = data["shopId"].as_str().unwrap_or_default().to_string();
        let mode = data["mode"].as_str().unwrap_or_default().to_string();
        let tx_id = event.position.tx_id as i64;
        let position = event.position.global_position;
        // Endpoints that existed before this event, active now.
        let endpoints: Vec<ActiveEndpoint> = self
            .active_endpoints(tx, &shop_id, &mode)
            .await?
            .into_iter()
            .filter(|endpoint| endpoint.created < (tx_id, position))
            .filter(|endpoint| subscribes_to(&endpoint.event_types, event_type))
            .collect();
        if endpoints.is_empty() {
            return Ok(());
        }
        let body = json!({
            "type": event_type,
            "timestamp": timestamp_text(occurred_at),
            "data": data,
        })
        .to_string();
        let webhook_id = webhook_id(&event.aggregate_id, event.sequence);
        // Due from the event's own instant (the injected clock's time, not
        // the database's), so a delivery is never due before its event.
        let now = timestamp_text(occurred_at);
        let mut batch = self.batch();
        for endpoint in endpoints {
            batch.rows.push(vec![
                format!("whd_{}", uuid::Uuid::now_v7().simple()).into(),
                webhook_id.clone().into(),
                endpoint.endpoint_id.into(),
                shop_id.clone().into(),
                mode.clone().into(),
                event_type.into(),
                event.aggregate_id.clone().into(),
                tx_id.into(),
                position.into(),
                body.clone().into(),
                now.clone().into(),
            ]);
        }
        Ok(())
    }

    /// The batch's deliveries, a hundred per statement.
    async fn finish_batch(&self, tx: &mut Tx) -> Result<(), AppError> {
        let rows = std::mem::take(&mut self.batch().rows);
        insert_rows(
            tx,
            "INSERT INTO webhook_deliveries (delivery_id, webhook_id, endpoint_id, shop_id, mode,
                event_type, subject_id, tx_id, global_position, payload, status, attempts,
                next_attempt_at, created_at)",
            "ON CONFLICT (endpoint_id, subject_id, webhook_id) DO NOTHING",
            &rows,
            ROWS_PER_INSERT,
            COLUMNS_PER_ROW - 1,
            |p| {
                format!(
                    "'PENDING', 0, {}, {}",
                    p(COLUMNS_PER_ROW),
                    p(COLUMNS_PER_ROW)
                )
            },
        )
        .await?;
        Ok(())
    }
}

/// The payment as the merchant's server gets it: the view row after the
/// event (the payments projection ran first in this transaction).
async fn payment_data(
    tx: &mut Tx,
    payment_id: &str,
    event: &PaymentEvent,
) -> Result<Option<Value>, AppError> {
    let Some(row) = tx
        .fetch_optional(
            "SELECT * FROM payments_view WHERE payment_id = $1",
            &[payment_id.into()],
        )
        .await?
    else {
        return Ok(None);
    };
    let currency = row.text("currency");
    let money = |column: &str| milli_to_string(row.int(column), &currency);
    let refusal = row
        .opt_text("refusal_code")
        .map(|code| json!({ "code": code, "message": row.opt_text("refusal_message") }));
    Ok(Some(json!({
        "id": payment_id,
        "shopId": row.text("shop_id"),
        "mode": row.text("mode"),
        "orderReference": row.text("order_reference"),
        "status": row.text("status"),
        "amount": money("amount_milli"),
        "currency": currency,
        "authorisedAmount": money("authorised_milli"),
        "capturedAmount": money("captured_milli"),
        "refundedAmount": money("refunded_milli"),
        "guarantee": row.text("guarantee"),
        "threeDsStatus": row.text("three_ds_status"),
        "riskOutcome": row.text("risk_outcome"),
        "refusal": refusal,
        "eventAmount": event_amount(event).map(|amount| milli_to_string(to_milli(&amount), &currency)),
        "planId": row.opt_text("plan_id"),
    })))
}

async fn plan_data(tx: &mut Tx, plan_id: &str) -> Result<Option<Value>, AppError> {
    let Some(row) = tx
        .fetch_optional(
            "SELECT * FROM plans_view WHERE plan_id = $1",
            &[plan_id.into()],
        )
        .await?
    else {
        return Ok(None);
    };
    let currency = row.text("currency");
    Ok(Some(json!({
        "id": plan_id,
        "shopId": row.text("shop_id"),
        "mode": row.text("mode"),
        "kind": row.text("kind"),
        "orderReference": row.text("order_reference"),
        "status": row.text("status"),
        "total": milli_to_string(row.int("total_milli"), &currency),
        "currency": currency,
    })))
}
