//! The webhook dispatcher (ADR 0013): reads the global log after its own
//! checkpoint (`webhook_dispatch`) and turns each payment and plan event into
//! one delivery per active endpoint of its shop and mode that subscribes to
//! its type, with the body it carries; the sender
//! (`caisse_infrastructure::webhook_delivery`) gives each its first attempt
//! at once and writes it, already attempted, with the checkpoint, in one
//! transaction per pass. Nothing is written inside the projector's
//! transaction, so notifications do not slow payments down (issue 5).
//!
//! A body is "the payment as this event left it": the dispatcher replays the
//! payment's events up to this one, never reads the view (which may already
//! show a later state). It never runs ahead of the `webhooks` projection, so
//! an endpoint created just before an event is known when the event is
//! dispatched; an endpoint gets only the events after its creation.

use std::collections::HashMap;
use std::sync::Arc;

use caisse_application::ports::LogPosition;
use caisse_application::AppError;
use caisse_domain::ids::WebhookEndpointId;
use caisse_domain::payment::{Payment, PaymentEvent};
use caisse_domain::plan::{PaymentPlan, PlanEvent};
use caisse_domain::webhook::subscribes_to;
use caisse_domain::Money;
use caisse_infrastructure::event_log::{EventLogReader, LoggedEvent};
use caisse_infrastructure::time::{parse_timestamp, timestamp_text};
use caisse_infrastructure::webhook_delivery::{
    DeliveryRun, DispatchEndpoint, NewDelivery, WebhookDeliverer,
};
use caisse_infrastructure::Db;
use cqrs_es::Aggregate;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::money::{milli_to_string, to_milli};
use crate::projector::decode;

/// Events read per pass.
const PASS_EVENTS_MAX: usize = 500;
/// A pass stops after the event that brings it this many deliveries: with
/// 16 sent at a time it ends within its lease even when receivers time out.
const PASS_DELIVERIES_MAX: usize = 256;

/// What one pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DispatchPass {
    /// Events of the log the pass covered.
    pub events: usize,
    /// Its deliveries' first attempts.
    pub run: DeliveryRun,
    /// It stopped at one of its limits: more may be waiting.
    pub full: bool,
}

pub struct WebhookDispatcher {
    db: Db,
    log: EventLogReader,
    deliverer: Arc<WebhookDeliverer>,
}

/// An endpoint as a pass sees it.
#[derive(Clone)]
struct ActiveEndpoint {
    target: DispatchEndpoint,
    event_types: Vec<String>,
    /// Commit order of its creation: it gets only the events after it.
    created: LogPosition,
}

/// A webhook event found in the log, with its body's `data`.
struct Notice {
    event_type: &'static str,
    occurred_at: chrono::DateTime<chrono::Utc>,
    data: Value,
}

impl WebhookDispatcher {
    pub fn new(db: Db, deliverer: Arc<WebhookDeliverer>) -> Self {
        WebhookDispatcher {
            log: EventLogReader::new(db.clone()),
            db,
            deliverer,
        }
    }

    /// Dispatches the events committed since the last pass (some of them, up
    /// to the pass's limits): sends each delivery's first attempt and records
    /// them. Another process's pass under way makes this one a no-op.
    pub async fn run_pass(&self) -> Result<DispatchPass, AppError> {
        let from = self.checkpoint().await?;
        let horizon = self.endpoints_horizon().await?;
        if horizon <= from {
            return Ok(DispatchPass::default());
        }
        let mut events = self.log.read_after(from, PASS_EVENTS_MAX).await?;
        let read = events.len();
        events.retain(|event| event.position <= horizon);
        let full = read == PASS_EVENTS_MAX && events.len() == read;
        let Some(last) = events.last() else {
            return Ok(DispatchPass::default());
        };
        let mut to = last.position;
        let notices = self.notices(&events).await?;
        let mut endpoints: HashMap<(String, String), Vec<ActiveEndpoint>> = HashMap::new();
        let mut deliveries = Vec::new();
        let mut covered = events.len();
        let mut capped = false;
        for (index, event) in events.iter().enumerate() {
            if let Some(notice) = notices.get(&(event.aggregate_id.clone(), event.sequence)) {
                self.add_deliveries(event, notice, &mut endpoints, &mut deliveries)
                    .await?;
            }
            if deliveries.len() >= PASS_DELIVERIES_MAX && index + 1 < events.len() {
                to = event.position;
                covered = index + 1;
                capped = true;
                break;
            }
        }
        let run = self
            .deliverer
            .dispatch(from, to, deliveries)
            .await?
            .unwrap_or_default();
        Ok(DispatchPass {
            events: covered,
            run,
            full: full || capped,
        })
    }

    /// The last event dispatched.
    pub async fn checkpoint(&self) -> Result<LogPosition, AppError> {
        let row = self
            .db
            .fetch_optional(
                "SELECT tx_id, global_position FROM webhook_dispatch WHERE name = 'webhooks'",
                &[],
            )
            .await?
            .ok_or_else(|| AppError::internal("webhook_dispatch has no row (migration 0016)"))?;
        Ok(LogPosition {
            tx_id: row.int("tx_id") as u64,
            global_position: row.int("global_position"),
        })
    }

    /// How far the `webhooks` projection (the endpoints view) has applied the
    /// log: the dispatcher goes no further.
    async fn endpoints_horizon(&self) -> Result<LogPosition, AppError> {
        Ok(self
            .db
            .fetch_optional(
                "SELECT tx_id, global_position FROM projection_checkpoints WHERE name = 'webhooks'",
                &[],
            )
            .await?
            .map(|row| LogPosition {
                tx_id: row.int("tx_id") as u64,
                global_position: row.int("global_position"),
            })
            .unwrap_or_default())
    }

    /// The webhook events among `events`, each with its `data`, keyed by
    /// (aggregate, sequence): the payments and plans they are about replayed
    /// up to each of them, all read in one query per aggregate type.
    async fn notices(
        &self,
        events: &[LoggedEvent],
    ) -> Result<HashMap<(String, i64), Notice>, AppError> {
        let mut notices = HashMap::new();
        for aggregate_type in [Payment::TYPE, PaymentPlan::TYPE] {
            let mut wanted: HashMap<String, Vec<i64>> = HashMap::new();
            for event in events.iter().filter(|e| e.aggregate_type == aggregate_type) {
                if is_webhook_event(event)? {
                    wanted
                        .entry(event.aggregate_id.clone())
                        .or_default()
                        .push(event.sequence);
                }
            }
            if wanted.is_empty() {
                continue;
            }
            let ids: Vec<String> = wanted.keys().cloned().collect();
            let history = self.log.events_of_aggregates(aggregate_type, &ids).await?;
            for subject in history.chunk_by(|a, b| a.aggregate_id == b.aggregate_id) {
                let sequences = &wanted[&subject[0].aggregate_id];
                let replayed = if aggregate_type == Payment::TYPE {
                    replay_payment(subject, sequences)?
                } else {
                    replay_plan(subject, sequences)?
                };
                for (sequence, notice) in replayed {
                    notices.insert((subject[0].aggregate_id.clone(), sequence), notice);
                }
            }
        }
        Ok(notices)
    }

    /// One delivery per endpoint of the event's shop and mode that is active
    /// now, existed before the event, and subscribes to its type.
    async fn add_deliveries(
        &self,
        event: &LoggedEvent,
        notice: &Notice,
        endpoints: &mut HashMap<(String, String), Vec<ActiveEndpoint>>,
        deliveries: &mut Vec<NewDelivery>,
    ) -> Result<(), AppError> {
        let shop_id = notice.data["shopId"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let mode = notice.data["mode"].as_str().unwrap_or_default().to_string();
        let key = (shop_id.clone(), mode.clone());
        if !endpoints.contains_key(&key) {
            let active = self.active_endpoints(&shop_id, &mode).await?;
            endpoints.insert(key.clone(), active);
        }
        let targets: Vec<&ActiveEndpoint> = endpoints[&key]
            .iter()
            .filter(|endpoint| endpoint.created < event.position)
            .filter(|endpoint| subscribes_to(&endpoint.event_types, notice.event_type))
            .collect();
        if targets.is_empty() {
            return Ok(());
        }
        let payload = json!({
            "type": notice.event_type,
            "timestamp": timestamp_text(notice.occurred_at),
            "data": notice.data,
        })
        .to_string();
        let webhook_id = webhook_id(&event.aggregate_id, event.sequence);
        for endpoint in targets {
            deliveries.push(NewDelivery {
                webhook_id: webhook_id.clone(),
                endpoint: endpoint.target.clone(),
                shop_id: shop_id.clone(),
                mode: mode.clone(),
                event_type: notice.event_type.to_string(),
                subject_id: event.aggregate_id.clone(),
                position: event.position,
                payload: payload.clone(),
                occurred_at: notice.occurred_at,
            });
        }
        Ok(())
    }

    async fn active_endpoints(
        &self,
        shop_id: &str,
        mode: &str,
    ) -> Result<Vec<ActiveEndpoint>, AppError> {
        let rows = self
            .db
            .fetch_all(
                "SELECT endpoint_id, url, event_types, secret_version, previous_secret_valid_until,
                        created_tx_id, created_position
                   FROM webhook_endpoints_view
                  WHERE shop_id = $1 AND mode = $2 AND status = 'ACTIVE'",
                &[shop_id.into(), mode.into()],
            )
            .await?;
        let mut endpoints = Vec::new();
        for row in rows {
            let endpoint_id = WebhookEndpointId::parse(&row.text("endpoint_id"))
                .ok_or_else(|| AppError::internal("webhook endpoint with a malformed id"))?;
            endpoints.push(ActiveEndpoint {
                target: DispatchEndpoint {
                    endpoint_id,
                    url: row.text("url"),
                    secret_version: row.int("secret_version") as u32,
                    previous_secret_valid_until: row
                        .opt_text("previous_secret_valid_until")
                        .and_then(|text| parse_timestamp(&text)),
                },
                event_types: row
                    .text("event_types")
                    .split(',')
                    .map(str::to_string)
                    .collect(),
                created: LogPosition {
                    tx_id: row.int("created_tx_id") as u64,
                    global_position: row.int("created_position"),
                },
            });
        }
        Ok(endpoints)
    }
}

/// Whether the event is one merchants can subscribe to.
fn is_webhook_event(event: &LoggedEvent) -> Result<bool, AppError> {
    Ok(if event.aggregate_type == Payment::TYPE {
        payment_event_type(&decode::<PaymentEvent>(event)?).is_some()
    } else {
        plan_event_type(&decode::<PlanEvent>(event)?).is_some()
    })
}

/// A payment's events applied in order; at each of `sequences`, the notice
/// of that event with the payment as it left it.
fn replay_payment(
    history: &[LoggedEvent],
    sequences: &[i64],
) -> Result<Vec<(i64, Notice)>, AppError> {
    let mut payment = Payment::default();
    let mut notices = Vec::new();
    for logged in history {
        if logged.sequence > *sequences.iter().max().unwrap_or(&0) {
            break;
        }
        let event: PaymentEvent = decode(logged)?;
        let event_type = payment_event_type(&event);
        let occurred_at = event.occurred_at();
        let amount = event_amount(&event);
        payment.apply(event);
        if let (Some(event_type), true) = (event_type, sequences.contains(&logged.sequence)) {
            if let Some(data) = payment_data(&logged.aggregate_id, &payment, amount) {
                notices.push((
                    logged.sequence,
                    Notice {
                        event_type,
                        occurred_at,
                        data,
                    },
                ));
            }
        }
    }
    Ok(notices)
}

/// A plan's events applied in order; at each of `sequences`, its notice.
fn replay_plan(history: &[LoggedEvent], sequences: &[i64]) -> Result<Vec<(i64, Notice)>, AppError> {
    let mut plan = PaymentPlan::default();
    let mut notices = Vec::new();
    for logged in history {
        if logged.sequence > *sequences.iter().max().unwrap_or(&0) {
            break;
        }
        let event: PlanEvent = decode(logged)?;
        let found = plan_event_type(&event);
        plan.apply(event);
        if let (Some((event_type, occurred_at)), true) =
            (found, sequences.contains(&logged.sequence))
        {
            if let Some(data) = plan_data(&logged.aggregate_id, &plan) {
                notices.push((
                    logged.sequence,
                    Notice {
                        event_type,
                        occurred_at,
                        data,
                    },
                ));
            }
        }
    }
    Ok(notices)
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

/// The webhook type of a plan event, with its instant; None for the plan's
/// own bookkeeping.
fn plan_event_type(event: &PlanEvent) -> Option<(&'static str, chrono::DateTime<chrono::Utc>)> {
    match event {
        PlanEvent::PlanCompleted { occurred_at } => Some(("plan.completed", *occurred_at)),
        PlanEvent::PlanDefaulted { occurred_at, .. } => Some(("plan.defaulted", *occurred_at)),
        _ => None,
    }
}

/// The payment as the merchant's server gets it. The same fields, computed
/// the same way, as the payments view (`payments.rs`): the aggregate and the
/// view follow the same events (a test compares them on both backends).
fn payment_data(payment_id: &str, payment: &Payment, event_amount: Option<Money>) -> Option<Value> {
    let details = payment.details.as_ref()?;
    let currency = details.amount.currency().code().to_string();
    let currency = currency.as_str();
    let money = |amount: Option<Money>| {
        milli_to_string(amount.as_ref().map(to_milli).unwrap_or(0), currency)
    };
    let refusal = payment
        .refusal
        .as_ref()
        .map(|refusal| json!({ "code": refusal.code, "message": refusal.message }));
    Some(json!({
        "id": payment_id,
        "shopId": details.shop_id.to_string(),
        "mode": details.mode.as_str(),
        "orderReference": details.order_reference,
        "status": payment.status.as_str(),
        "amount": money(payment.amount),
        "currency": currency,
        "authorisedAmount": money(payment.authorised),
        "capturedAmount": money(payment.captured),
        "refundedAmount": money(payment.refunded),
        "guarantee": details.three_ds.guarantee.as_str(),
        "threeDsStatus": details.three_ds.status.as_str(),
        "riskOutcome": details.risk.outcome().as_str(),
        "refusal": refusal,
        "eventAmount": event_amount.map(|amount| milli_to_string(to_milli(&amount), currency)),
        "planId": details.instalment_of.map(|link| link.plan_id.to_string()),
    }))
}

fn plan_data(plan_id: &str, plan: &PaymentPlan) -> Option<Value> {
    let details = plan.details.as_ref()?;
    let currency = details.total.currency().code().to_string();
    let currency = currency.as_str();
    Some(json!({
        "id": plan_id,
        "shopId": details.shop_id.to_string(),
        "mode": details.mode.as_str(),
        "kind": details.kind.as_str(),
        "orderReference": details.order_reference,
        "status": plan.status.as_str(),
        "total": milli_to_string(to_milli(&details.total), currency),
        "currency": currency,
    }))
}
