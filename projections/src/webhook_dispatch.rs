//! The webhook dispatcher (ADR 0013): reads the global log after its own
//! checkpoint (`notification_dispatch`, row `webhooks`) and turns each
//! payment and plan event into one delivery per active endpoint of its shop
//! and mode that subscribes to its type, with the body it carries; the sender
//! (`caisse_infrastructure::webhook_delivery`) gives each its first attempt
//! at once and writes it, already attempted, with the checkpoint, in one
//! transaction per pass. Nothing is written inside the projector's
//! transaction, so notifications do not slow payments down (issue 5).
//!
//! A body is "the payment as this event left it": the dispatcher replays the
//! payment's events up to this one, never reads the view (which may already
//! show a later state). It never runs ahead of the views it reads
//! (`dispatch::pass_events`), so an endpoint created just before an event is
//! known when the event is dispatched; an endpoint gets only the events after
//! its creation.

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

use crate::dispatch::{pass_events, PassEvents};
use crate::money::{milli_to_string, to_milli};
use crate::projector::decode;

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

/// Wall time this process's passes spent reading the log and building their
/// deliveries (replays included), in µs, for `caisse bench`.
static BUILD_MICROS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// µs this process's passes spent building their deliveries so far.
pub fn build_micros() -> u64 {
    BUILD_MICROS.load(std::sync::atomic::Ordering::Relaxed)
}

pub struct WebhookDispatcher {
    db: Db,
    log: EventLogReader,
    deliverer: Arc<WebhookDeliverer>,
    /// Payments as the previous passes left them: most events need no read
    /// of their payment's history.
    payments: std::sync::Mutex<StateCache<Payment>>,
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
            payments: Default::default(),
        }
    }

    /// Dispatches the events committed since the last pass (some of them, up
    /// to the pass's limits): sends each delivery's first attempt and records
    /// them. Another process's pass under way makes this one a no-op.
    pub async fn run_pass(&self) -> Result<DispatchPass, AppError> {
        let building = std::time::Instant::now();
        // The views it reads: the endpoints, and the shops of payments and plans.
        let PassEvents { from, events, full } = pass_events(
            &self.db,
            &self.log,
            "webhooks",
            &["webhooks", "payments", "plans"],
        )
        .await?;
        let Some(last) = events.last() else {
            return Ok(DispatchPass::default());
        };
        let mut to = last.position;
        let mut endpoints: HashMap<(String, String), Vec<ActiveEndpoint>> = HashMap::new();
        let notices = self.notices(&events, &mut endpoints).await?;
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
        BUILD_MICROS.fetch_add(
            building.elapsed().as_micros() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        match self.deliverer.dispatch(from, to, deliveries).await? {
            Some(run) => Ok(DispatchPass {
                events: covered,
                run,
                full: full || capped,
            }),
            // Another process's pass holds the log: it goes on, not this one.
            None => Ok(DispatchPass::default()),
        }
    }

    /// The last event dispatched.
    pub async fn checkpoint(&self) -> Result<LogPosition, AppError> {
        caisse_infrastructure::dispatch_checkpoint::read(&self.db, "webhooks").await
    }

    /// The webhook events among `events` that some endpoint of their shop and
    /// mode may want, each with its `data`, keyed by (aggregate, sequence).
    /// `endpoints` caches each shop's.
    async fn notices(
        &self,
        events: &[LoggedEvent],
        endpoints: &mut HashMap<(String, String), Vec<ActiveEndpoint>>,
    ) -> Result<HashMap<(String, i64), Notice>, AppError> {
        let mut notices = self
            .notices_of::<Payment>(events, endpoints, Some(&self.payments))
            .await?;
        notices.extend(
            self.notices_of::<PaymentPlan>(events, endpoints, None)
                .await?,
        );
        Ok(notices)
    }

    /// `notices` for one aggregate type: each subject with an event to
    /// notify is replayed through this pass's events, from the state its
    /// previous event left (kept from the previous pass in `cache`, else read
    /// again from the log). Payments of shops without an active endpoint are
    /// not replayed.
    async fn notices_of<S: Subject>(
        &self,
        events: &[LoggedEvent],
        endpoints: &mut HashMap<(String, String), Vec<ActiveEndpoint>>,
        cache: Option<&std::sync::Mutex<StateCache<S>>>,
    ) -> Result<HashMap<(String, i64), Notice>, AppError> {
        // Each subject's events in this pass, decoded once, in order.
        let mut subjects: Vec<String> = Vec::new();
        let mut pass_events: HashMap<String, Vec<(&LoggedEvent, S::Event)>> = HashMap::new();
        for event in events.iter().filter(|e| e.aggregate_type == S::TYPE) {
            let decoded: S::Event = decode(event)?;
            let entry = pass_events
                .entry(event.aggregate_id.clone())
                .or_insert_with(|| {
                    subjects.push(event.aggregate_id.clone());
                    Vec::new()
                });
            entry.push((event, decoded));
        }
        subjects.retain(|subject| {
            pass_events[subject]
                .iter()
                .any(|(_, event)| S::describe(event).is_some())
        });
        if subjects.is_empty() {
            return Ok(HashMap::new());
        }
        // A payment's (or plan's) shop and mode never change: the view's
        // are the event's. One no longer in the views (archived) has nobody
        // to tell.
        let mut listened = std::collections::HashSet::new();
        for (subject, shop) in self.shops_of(S::VIEW, subjects.iter()).await? {
            if !endpoints.contains_key(&shop) {
                let active = self.active_endpoints(&shop.0, &shop.1).await?;
                endpoints.insert(shop.clone(), active);
            }
            if !endpoints[&shop].is_empty() {
                listened.insert(subject);
            }
        }
        subjects.retain(|subject| listened.contains(subject));

        // Where each subject's replay starts.
        let mut states: HashMap<String, S> = HashMap::new();
        let mut unknown: Vec<String> = Vec::new();
        for subject in &subjects {
            let first = pass_events[subject][0].0.sequence;
            let cached = cache.and_then(|cache| lock(cache).remove(subject));
            match cached {
                _ if first == 1 => {
                    states.insert(subject.clone(), S::default());
                }
                Some((sequence, state)) if sequence == first - 1 => {
                    states.insert(subject.clone(), state);
                }
                _ => unknown.push(subject.clone()),
            }
        }
        let history = self.log.events_of_aggregates(S::TYPE, &unknown).await?;
        for earlier in history.chunk_by(|a, b| a.aggregate_id == b.aggregate_id) {
            let subject = &earlier[0].aggregate_id;
            let first = pass_events[subject][0].0.sequence;
            let mut state = S::default();
            for logged in earlier.iter().take_while(|e| e.sequence < first) {
                state.apply(decode(logged)?);
            }
            states.insert(subject.clone(), state);
        }

        let mut notices = HashMap::new();
        for subject in subjects {
            let Some(mut state) = states.remove(&subject) else {
                continue;
            };
            let mut last = 0;
            for (logged, event) in pass_events.remove(&subject).unwrap_or_default() {
                let described = S::describe(&event);
                state.apply(event);
                last = logged.sequence;
                let Some(described) = described else {
                    continue;
                };
                if let Some(data) = state.data(&subject, &described) {
                    notices.insert(
                        (subject.clone(), logged.sequence),
                        Notice {
                            event_type: described.event_type,
                            occurred_at: described.occurred_at,
                            data,
                        },
                    );
                }
            }
            if let Some(cache) = cache {
                let mut cache = lock(cache);
                if cache.len() >= STATE_CACHE_MAX {
                    cache.clear();
                }
                cache.insert(subject, (last, state));
            }
        }
        Ok(notices)
    }

    /// The shop and mode of each payment (or plan) in `ids`, from its view.
    async fn shops_of(
        &self,
        (table, key): (&str, &str),
        ids: impl Iterator<Item = &String>,
    ) -> Result<Vec<(String, (String, String))>, AppError> {
        let mut params = Vec::new();
        let list = caisse_infrastructure::sql::bind_list(&mut params, ids.cloned());
        Ok(self
            .db
            .fetch_all(
                &format!("SELECT {key} AS id, shop_id, mode FROM {table} WHERE {key} IN ({list})"),
                &params,
            )
            .await?
            .iter()
            .map(|row| (row.text("id"), (row.text("shop_id"), row.text("mode"))))
            .collect())
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

/// Payments' states as the previous passes left them, by payment id: the
/// last sequence applied and the state.
type StateCache<S> = HashMap<String, (i64, S)>;

/// States kept between passes, at most (then it starts over): a payment's
/// next event usually comes within seconds.
const STATE_CACHE_MAX: usize = 10_000;

fn lock<T>(mutex: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding it leaves a cache, which is only ever a shortcut.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// What an event notifies, read before it is applied.
struct Described {
    event_type: &'static str,
    occurred_at: chrono::DateTime<chrono::Utc>,
    /// What the event moved (payments).
    amount: Option<Money>,
}

/// An aggregate whose events are webhooks: payments and plans.
trait Subject: Aggregate + Default + Send {
    /// Its view and the view's key: where its shop and mode are read.
    const VIEW: (&'static str, &'static str);
    /// Whether the event is one merchants can subscribe to, and what it says.
    fn describe(event: &Self::Event) -> Option<Described>;
    /// The body's `data`: the subject as the event left it.
    fn data(&self, id: &str, described: &Described) -> Option<Value>;
}

impl Subject for Payment {
    const VIEW: (&'static str, &'static str) = ("payments_view", "payment_id");

    fn describe(event: &PaymentEvent) -> Option<Described> {
        Some(Described {
            event_type: payment_event_type(event)?,
            occurred_at: event.occurred_at(),
            amount: event.amount(),
        })
    }

    fn data(&self, id: &str, described: &Described) -> Option<Value> {
        payment_data(id, self, described.amount)
    }
}

impl Subject for PaymentPlan {
    const VIEW: (&'static str, &'static str) = ("plans_view", "plan_id");

    fn describe(event: &PlanEvent) -> Option<Described> {
        let (event_type, occurred_at) = plan_event_type(event)?;
        Some(Described {
            event_type,
            occurred_at,
            amount: None,
        })
    }

    fn data(&self, id: &str, _described: &Described) -> Option<Value> {
        plan_data(id, self)
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
