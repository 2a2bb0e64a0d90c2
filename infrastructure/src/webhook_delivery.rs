//! The webhook sender: works the outbox (`webhook_deliveries`) through — due
//! deliveries, one payment's in the order of its events, each signed (Standard
//! Webhooks) and sent by one process at a time, every attempt logged, failures
//! retried on a schedule of about three days, then given up.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use caisse_application::ports::{Clock, KeyLock, LogPosition, WebhookSecrets};
use caisse_application::AppError;
use caisse_domain::ids::WebhookEndpointId;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use rand::Rng;

use crate::dispatch_checkpoint;
use crate::sql::{bind_list, insert_rows, update_rows, values_rows, Db, SqlRow, SqlValue, Tx};
use crate::time::{parse_timestamp, timestamp_text};
use crate::webhook_http::{DeliveryAttempt, WebhookSender};
use crate::webhook_signature::{signature_header, HEADER_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP};

/// Delays before the 2nd, 3rd… attempt: about three days in all.
pub const RETRY_SCHEDULE: [Duration; 9] = [
    Duration::from_secs(5),
    Duration::from_secs(5 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(2 * 3600),
    Duration::from_secs(5 * 3600),
    Duration::from_secs(10 * 3600),
    Duration::from_secs(14 * 3600),
    Duration::from_secs(20 * 3600),
    Duration::from_secs(24 * 3600),
];

/// Longest wait a receiver's `Retry-After` can ask for.
pub const RETRY_AFTER_MAX: Duration = Duration::from_secs(24 * 3600);

/// Deliveries one process sends at the same time.
pub const SEND_CONCURRENCY: usize = 16;

/// Decrypted signing secrets kept per process, at most (then it starts over).
const SECRET_CACHE_MAX: usize = 10_000;

/// Deliveries claimed together, sent, then recorded together: at most
/// `CLAIM_CHUNK / SEND_CONCURRENCY` timeouts of 15 s (one minute), well within
/// the lease. Large enough that under load a pass is one chunk: two write
/// transactions beside the payments' own, whatever the number of deliveries.
const CLAIM_CHUNK: usize = 64;

/// How long a claimed delivery stays away from other senders while sent: what
/// a process that dies mid-send delays its deliveries by.
const CLAIM_LEASE_SECONDS: i64 = 300;

/// The webhook dispatcher's row in `notification_dispatch`.
const DISPATCHER: &str = "webhooks";

/// Rows per INSERT of a dispatch pass (17 parameters each).
const DISPATCH_ROWS_PER_INSERT: usize = 100;

/// How long an endpoint may fail every delivery before it is disabled.
pub const PERSISTENT_FAILURE_DAYS: i64 = 3;

/// Wall time of this process's dispatch passes, in µs, for `caisse bench`:
/// passes that sent something, their time in the recording transaction (on
/// SQLite, waiting for the single writer's lock included) and their time
/// sending.
static DISPATCH_PASSES: AtomicU64 = AtomicU64::new(0);
static DISPATCH_WRITE_MICROS: AtomicU64 = AtomicU64::new(0);
static DISPATCH_SEND_MICROS: AtomicU64 = AtomicU64::new(0);

/// (passes, µs writing, µs sending) of this process's dispatch passes so far.
pub fn dispatch_timings() -> (u64, u64, u64) {
    (
        DISPATCH_PASSES.load(Ordering::Relaxed),
        DISPATCH_WRITE_MICROS.load(Ordering::Relaxed),
        DISPATCH_SEND_MICROS.load(Ordering::Relaxed),
    )
}

fn add_micros(counter: &AtomicU64, since: std::time::Instant) {
    counter.fetch_add(since.elapsed().as_micros() as u64, Ordering::Relaxed);
}

/// What one pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DeliveryRun {
    pub succeeded: usize,
    /// Failed attempts that will be retried.
    pub retrying: usize,
    /// Deliveries given up after the whole schedule.
    pub failed: usize,
    /// New deliveries not attempted yet: behind a pending one of the same
    /// payment and endpoint (order per payment), or past the pass's time.
    pub queued: usize,
    /// Endpoints whose deliveries all failed for `PERSISTENT_FAILURE_DAYS`:
    /// the caller disables them (an event of their aggregate).
    pub endpoints_failing: Vec<WebhookEndpointId>,
}

impl DeliveryRun {
    /// Adds another pass's counts to this one's.
    pub fn absorb(&mut self, other: DeliveryRun) {
        self.succeeded += other.succeeded;
        self.retrying += other.retrying;
        self.failed += other.failed;
        self.queued += other.queued;
        for endpoint in other.endpoints_failing {
            if !self.endpoints_failing.contains(&endpoint) {
                self.endpoints_failing.push(endpoint);
            }
        }
    }
}

/// One delivery as GraphQL shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryRow {
    pub delivery_id: String,
    pub webhook_id: String,
    pub endpoint_id: String,
    pub shop_id: String,
    pub mode: String,
    pub event_type: String,
    pub subject_id: String,
    pub payload: String,
    pub status: String,
    pub attempts: i64,
    pub next_attempt_at: Option<String>,
    pub last_attempt_at: Option<String>,
    pub last_status_code: Option<i64>,
    pub last_error: Option<String>,
    pub created_at: String,
}

impl DeliveryRow {
    fn from_row(row: &SqlRow) -> Self {
        DeliveryRow {
            delivery_id: row.text("delivery_id"),
            webhook_id: row.text("webhook_id"),
            endpoint_id: row.text("endpoint_id"),
            shop_id: row.text("shop_id"),
            mode: row.text("mode"),
            event_type: row.text("event_type"),
            subject_id: row.text("subject_id"),
            payload: row.text("payload"),
            status: row.text("status"),
            attempts: row.int("attempts"),
            next_attempt_at: row.opt_text("next_attempt_at"),
            last_attempt_at: row.opt_text("last_attempt_at"),
            last_status_code: row.opt_int("last_status_code"),
            last_error: row.opt_text("last_error"),
            created_at: row.text("created_at"),
        }
    }
}

/// One attempt of a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptRow {
    pub attempt: i64,
    pub attempted_at: String,
    pub status_code: Option<i64>,
    pub latency_ms: i64,
    pub response_prefix: Option<String>,
    pub error: Option<String>,
}

/// An endpoint as the dispatcher found it: where to send and how to sign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DispatchEndpoint {
    pub endpoint_id: WebhookEndpointId,
    pub url: String,
    pub secret_version: u32,
    pub previous_secret_valid_until: Option<DateTime<Utc>>,
}

/// A delivery found in the log by the dispatcher (ADR 0013), before its first
/// attempt: not yet a row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewDelivery {
    pub webhook_id: String,
    pub endpoint: DispatchEndpoint,
    pub shop_id: String,
    pub mode: String,
    pub event_type: String,
    pub subject_id: String,
    /// The event's place in the log: the order of a subject's deliveries.
    pub position: LogPosition,
    pub payload: String,
    /// The event's instant: the delivery's creation, and when a queued one
    /// falls due.
    pub occurred_at: DateTime<Utc>,
}

pub struct WebhookDeliverer {
    /// Claims, results and reads (`Database::notification_db`).
    db: Db,
    /// A merchant's requests (`redeliverWebhook`, `sendTestWebhook`): durable
    /// before they are acknowledged.
    requests_db: Db,
    sender: WebhookSender,
    secrets: Arc<dyn WebhookSecrets>,
    clock: Arc<dyn Clock>,
    key_lock: Arc<dyn KeyLock>,
    /// One pass at a time in this process (the key lock covers the others).
    pass: tokio::sync::Mutex<()>,
    /// Signing secrets by endpoint and version, decrypted once.
    secret_cache: std::sync::Mutex<std::collections::HashMap<(WebhookEndpointId, u32), String>>,
}

impl WebhookDeliverer {
    pub fn new(
        db: Db,
        requests_db: Db,
        sender: WebhookSender,
        secrets: Arc<dyn WebhookSecrets>,
        clock: Arc<dyn Clock>,
        key_lock: Arc<dyn KeyLock>,
    ) -> Self {
        WebhookDeliverer {
            db,
            requests_db,
            sender,
            secrets,
            clock,
            key_lock,
            pass: tokio::sync::Mutex::new(()),
            secret_cache: Default::default(),
        }
    }

    /// Attempts every due delivery (at most `limit`), soonest first.
    pub async fn run_due(&self, limit: usize) -> Result<DeliveryRun, AppError> {
        let _pass = self.pass.lock().await;
        let now = timestamp_text(self.clock.now());
        // Due, its endpoint active, and no earlier delivery of the same payment
        // to the same endpoint still pending: one payment's events in order.
        let due = self
            .db
            .fetch_all(
                "SELECT d.delivery_id, e.url, e.secret_version, e.previous_secret_valid_until
                   FROM webhook_deliveries d
                   JOIN webhook_endpoints_view e ON e.endpoint_id = d.endpoint_id
                  WHERE d.status = 'PENDING' AND d.next_attempt_at <= $1 AND e.status = 'ACTIVE'
                    AND NOT EXISTS (
                        SELECT 1 FROM webhook_deliveries p
                         WHERE p.endpoint_id = d.endpoint_id AND p.subject_id = d.subject_id
                           AND p.status = 'PENDING'
                           AND (p.tx_id < d.tx_id OR (p.tx_id = d.tx_id AND p.global_position < d.global_position)))
                  ORDER BY d.next_attempt_at, d.tx_id, d.global_position
                  LIMIT $2",
                &[now.into(), (limit as i64).into()],
            )
            .await?;
        // By chunks: one update claims a chunk (and reads it), its deliveries
        // are sent a few at a time (a slow receiver holds one slot for its
        // 15 s, not the whole chunk), then their attempts are recorded in one
        // transaction. No connection is held while sending. Ordering per
        // payment is safe: the query gives only the first pending delivery of
        // each payment and endpoint.
        let mut run = DeliveryRun::default();
        for chunk in due.chunks(CLAIM_CHUNK) {
            let claimed = self.claim(chunk).await?;
            let attempted: Vec<Result<Attempted, AppError>> = futures::stream::iter(claimed)
                .map(|claimed| self.send(claimed))
                .buffer_unordered(SEND_CONCURRENCY)
                .collect()
                .await;
            let attempted = attempted.into_iter().collect::<Result<Vec<_>, _>>()?;
            for (endpoint_id, outcome) in self.record(attempted).await? {
                match outcome {
                    Outcome::Succeeded => run.succeeded += 1,
                    Outcome::Retrying => run.retrying += 1,
                    Outcome::Failed => {
                        run.failed += 1;
                        if !run.endpoints_failing.contains(&endpoint_id)
                            && self.is_failing(endpoint_id, self.clock.now()).await?
                        {
                            run.endpoints_failing.push(endpoint_id);
                        }
                    }
                }
            }
        }
        Ok(run)
    }

    /// Sends a delivery again now (`redeliverWebhook`, `sendTestWebhook`),
    /// whatever its state: same body, same `webhook-id`.
    pub async fn attempt_now(&self, delivery_id: &str) -> Result<(), AppError> {
        let _pass = self.pass.lock().await;
        let _lease = self
            .key_lock
            .acquire(&format!("webhook:{delivery_id}"))
            .await?;
        let Some(row) = self
            .db
            .fetch_optional(
                "SELECT d.delivery_id, d.webhook_id, d.endpoint_id, d.payload, d.attempts,
                        e.url, e.secret_version, e.previous_secret_valid_until
                   FROM webhook_deliveries d JOIN webhook_endpoints_view e ON e.endpoint_id = d.endpoint_id
                  WHERE d.delivery_id = $1",
                &[delivery_id.into()],
            )
            .await?
        else {
            return Ok(());
        };
        let attempted = self.send(Claimed::from_rows(&row, &row)?).await?;
        self.record(vec![attempted]).await?;
        Ok(())
    }

    /// Claims due deliveries in one atomic update that also reads them: one
    /// process wins each, the others see it moved. The claim leases them for
    /// a minute, so a process that dies mid-send leaves them to be retried,
    /// not lost. Answers the ones this process won.
    async fn claim(&self, due: &[SqlRow]) -> Result<Vec<Claimed>, AppError> {
        let now = self.clock.now();
        let mut params: Vec<SqlValue> = vec![
            timestamp_text(now).into(),
            timestamp_text(now + chrono::Duration::seconds(CLAIM_LEASE_SECONDS)).into(),
        ];
        let ids = bind_list(&mut params, due.iter().map(|row| row.text("delivery_id")));
        let claimed = self
            .db
            .fetch_all(
                &format!(
                    "UPDATE webhook_deliveries SET next_attempt_at = $2
                      WHERE delivery_id IN ({ids}) AND status = 'PENDING' AND next_attempt_at <= $1
                      RETURNING delivery_id, webhook_id, endpoint_id, payload, attempts"
                ),
                &params,
            )
            .await?;
        // In the order of the due query (soonest first), with its endpoint.
        let mut won = Vec::new();
        for row in due {
            let id = row.text("delivery_id");
            if let Some(delivery) = claimed.iter().find(|c| c.text("delivery_id") == id) {
                won.push(Claimed::from_rows(delivery, row)?);
            }
        }
        Ok(won)
    }

    /// One attempt: signs and sends the delivery, timed by the clock.
    async fn send(&self, claimed: Claimed) -> Result<Attempted, AppError> {
        let now = self.clock.now();
        let secrets = self.signing_secrets(&claimed, now).await?;
        let secret_refs: Vec<&str> = secrets.iter().map(String::as_str).collect();
        let body = claimed.payload.clone().into_bytes();
        let timestamp = now.timestamp();
        let headers = [
            (HEADER_ID, claimed.webhook_id.clone()),
            (HEADER_TIMESTAMP, timestamp.to_string()),
            (
                HEADER_SIGNATURE,
                signature_header(&secret_refs, &claimed.webhook_id, timestamp, &body),
            ),
        ];
        let attempt = self.sender.send(&claimed.url, &headers, body).await;
        Ok(Attempted {
            claimed,
            at: now,
            attempt,
        })
    }

    /// Records attempts in one transaction: each in the log, each delivery's
    /// new state. On PostgreSQL without waiting for the WAL flush: a crash
    /// loses at most the last records, and those deliveries are sent again
    /// after their lease (at least once; receivers deduplicate by
    /// `webhook-id`).
    async fn record(
        &self,
        attempted: Vec<Attempted>,
    ) -> Result<Vec<(WebhookEndpointId, Outcome)>, AppError> {
        if attempted.is_empty() {
            return Ok(Vec::new());
        }
        let mut tx = self.db.begin_unflushed().await?;
        insert_attempts(&mut tx, attempted.iter()).await?;
        let mut outcomes = Vec::new();
        let mut updates = Vec::new();
        for attempted in attempted {
            let result = AttemptResult::of(&attempted);
            let Attempted {
                claimed,
                at,
                attempt,
            } = attempted;
            updates.push((
                claimed.delivery_id,
                vec![
                    result.status.into(),
                    result.attempts.into(),
                    result.next_attempt_at.into(),
                    timestamp_text(at).into(),
                    attempt.status.map(i64::from).into(),
                    attempt.error.into(),
                ],
            ));
            outcomes.push((claimed.endpoint_id, result.outcome));
        }
        // Every delivery's new state in one statement.
        let (sql, params) = update_rows(
            "webhook_deliveries",
            "delivery_id",
            &[
                "status",
                "attempts",
                "next_attempt_at",
                "last_attempt_at",
                "last_status_code",
                "last_error",
            ],
            updates,
        );
        tx.execute(&sql, &params).await?;
        tx.commit().await?;
        Ok(outcomes)
    }

    /// Sends a dispatch pass's new deliveries and records them, with the
    /// dispatcher's checkpoint, in one transaction (ADR 0013): on the happy
    /// path a delivery is one row written once, with its attempt. `from` is
    /// the checkpoint the pass read the log after, `to` the last event it
    /// covered, `deliveries` in log order.
    ///
    /// One pass at a time over all processes: the pass first leases the
    /// dispatcher's row (`dispatch_checkpoint`), at `from`. Answers None,
    /// having sent nothing, when another pass holds it or has moved the
    /// checkpoint. A crash before
    /// the commit sends the pass again from `from`, with the same
    /// `webhook-id`s (at least once); the unique (endpoint, subject,
    /// `webhook-id`) index keeps the rows single.
    pub async fn dispatch(
        &self,
        from: LogPosition,
        to: LogPosition,
        deliveries: Vec<NewDelivery>,
    ) -> Result<Option<DeliveryRun>, AppError> {
        let empty = deliveries.is_empty();
        if !empty {
            DISPATCH_PASSES.fetch_add(1, Ordering::Relaxed);
        }
        dispatch_checkpoint::run_pass(
            &self.db,
            DISPATCHER,
            (from, to),
            self.clock.now(),
            empty,
            self.dispatch_leased(from, to, deliveries),
        )
        .await
    }

    /// `dispatch` once the pass holds the lease.
    async fn dispatch_leased(
        &self,
        from: LogPosition,
        to: LogPosition,
        deliveries: Vec<NewDelivery>,
    ) -> Result<Option<DeliveryRun>, AppError> {
        let blocked = self.pending_subjects(&deliveries).await?;
        // An endpoint being retried (a delivery that failed is still
        // pending) gets its new deliveries queued for the retry loop: a
        // receiver that is down or times out does not slow the first
        // attempts of every other shop. So does one that fails in this pass,
        // for the rest of the pass.
        let failing = std::sync::Mutex::new(self.retrying_endpoints(&deliveries).await?);
        // One group per endpoint and payment, in log order: the groups go
        // out side by side, each one's deliveries one after the other.
        let mut groups: Vec<Vec<NewDelivery>> = Vec::new();
        let mut group_of: std::collections::HashMap<(WebhookEndpointId, String), usize> =
            Default::default();
        for delivery in deliveries {
            let key = (delivery.endpoint.endpoint_id, delivery.subject_id.clone());
            let index = *group_of.entry(key).or_insert_with(|| {
                groups.push(Vec::new());
                groups.len() - 1
            });
            groups[index].push(delivery);
        }
        let sending_ends = tokio::time::Instant::now() + dispatch_checkpoint::SENDING_MAX;
        let sending = std::time::Instant::now();
        let dispatched: Vec<Result<Vec<Dispatched>, AppError>> = futures::stream::iter(groups)
            .map(|group| {
                let queue_all =
                    blocked.contains(&(group[0].endpoint.endpoint_id, group[0].subject_id.clone()));
                self.send_in_order(group, queue_all, sending_ends, &failing)
            })
            .buffer_unordered(SEND_CONCURRENCY)
            .collect()
            .await;
        let mut dispatched: Vec<Dispatched> = dispatched
            .into_iter()
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .flatten()
            .collect();
        add_micros(&DISPATCH_SEND_MICROS, sending);
        dispatched.sort_by_key(|d| d.delivery.position);
        self.record_dispatch(from, to, dispatched).await
    }

    /// The endpoints among `deliveries`' with a failed delivery still
    /// pending (being retried). The query reads the pending deliveries only
    /// (the partial due index; no DISTINCT, which SQLite answers by walking
    /// the endpoint index), then keeps this pass's endpoints: filtering by
    /// endpoint in SQL walks an endpoint's whole history instead (measured:
    /// −15 % on the SQLite notifications bench).
    async fn retrying_endpoints(
        &self,
        deliveries: &[NewDelivery],
    ) -> Result<std::collections::HashSet<WebhookEndpointId>, AppError> {
        let ours: std::collections::HashSet<WebhookEndpointId> =
            deliveries.iter().map(|d| d.endpoint.endpoint_id).collect();
        let rows = self
            .db
            .fetch_all(
                "SELECT endpoint_id FROM webhook_deliveries
                  WHERE status = 'PENDING' AND attempts > 0",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .filter_map(|row| WebhookEndpointId::parse(&row.text("endpoint_id")))
            .filter(|endpoint| ours.contains(endpoint))
            .collect())
    }

    /// The (endpoint, payment) pairs among `deliveries`' that have a delivery
    /// still pending: a new one queues behind it.
    async fn pending_subjects(
        &self,
        deliveries: &[NewDelivery],
    ) -> Result<std::collections::HashSet<(WebhookEndpointId, String)>, AppError> {
        let mut params: Vec<SqlValue> = Vec::new();
        let mut subjects: Vec<String> = deliveries.iter().map(|d| d.subject_id.clone()).collect();
        subjects.sort();
        subjects.dedup();
        let endpoints = bind_list(&mut params, endpoint_ids(deliveries));
        let subjects = bind_list(&mut params, subjects);
        let rows = self
            .db
            .fetch_all(
                &format!(
                    "SELECT DISTINCT endpoint_id, subject_id FROM webhook_deliveries
                      WHERE endpoint_id IN ({endpoints}) AND subject_id IN ({subjects})
                        AND status = 'PENDING'"
                ),
                &params,
            )
            .await?;
        Ok(rows
            .iter()
            .filter_map(|row| {
                WebhookEndpointId::parse(&row.text("endpoint_id"))
                    .map(|endpoint| (endpoint, row.text("subject_id")))
            })
            .collect())
    }

    /// One endpoint's deliveries about one payment, in order: each is
    /// attempted once the one before succeeded; after a failure (or with
    /// `queue_all`, or once the endpoint is `failing`, or past
    /// `sending_ends`) the rest wait in the queue.
    async fn send_in_order(
        &self,
        group: Vec<NewDelivery>,
        mut queue_all: bool,
        sending_ends: tokio::time::Instant,
        failing: &std::sync::Mutex<std::collections::HashSet<WebhookEndpointId>>,
    ) -> Result<Vec<Dispatched>, AppError> {
        let endpoint_id = group[0].endpoint.endpoint_id;
        let is_failing = || {
            failing
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .contains(&endpoint_id)
        };
        let mut dispatched = Vec::new();
        for delivery in group {
            queue_all = queue_all || is_failing() || tokio::time::Instant::now() >= sending_ends;
            let delivery_id = format!("whd_{}", uuid::Uuid::now_v7().simple());
            if queue_all {
                dispatched.push(Dispatched {
                    delivery,
                    delivery_id,
                    attempted: None,
                });
                continue;
            }
            let claimed = Claimed {
                delivery_id: delivery_id.clone(),
                webhook_id: delivery.webhook_id.clone(),
                endpoint_id: delivery.endpoint.endpoint_id,
                payload: delivery.payload.clone(),
                attempts: 0,
                url: delivery.endpoint.url.clone(),
                secret_version: delivery.endpoint.secret_version,
                previous_secret_valid_until: delivery.endpoint.previous_secret_valid_until,
            };
            let attempted = self.send(claimed).await?;
            queue_all = !attempted.attempt.success;
            if queue_all {
                failing
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .insert(endpoint_id);
            }
            dispatched.push(Dispatched {
                delivery,
                delivery_id,
                attempted: Some(attempted),
            });
        }
        Ok(dispatched)
    }

    /// A dispatch pass's one transaction: its deliveries as they stand after
    /// their first attempt, the attempts, the checkpoint moved to `to` and
    /// the lease released. Rolled back (None) if the checkpoint is no longer
    /// at `from`: the lease ran out and another pass took over.
    async fn record_dispatch(
        &self,
        from: LogPosition,
        to: LogPosition,
        dispatched: Vec<Dispatched>,
    ) -> Result<Option<DeliveryRun>, AppError> {
        let mut run = DeliveryRun::default();
        let mut rows: Vec<Vec<SqlValue>> = Vec::new();
        for Dispatched {
            delivery,
            delivery_id,
            attempted,
        } in &dispatched
        {
            let created_at = timestamp_text(delivery.occurred_at);
            let (status, attempts, next, last_at, last_code, last_error) = match attempted {
                None => {
                    run.queued += 1;
                    ("PENDING", 0, Some(created_at.clone()), None, None, None)
                }
                Some(attempted) => {
                    let result = AttemptResult::of(attempted);
                    match result.outcome {
                        Outcome::Succeeded => run.succeeded += 1,
                        Outcome::Retrying => run.retrying += 1,
                        Outcome::Failed => run.failed += 1,
                    }
                    (
                        result.status,
                        result.attempts,
                        result.next_attempt_at,
                        Some(timestamp_text(attempted.at)),
                        attempted.attempt.status.map(i64::from),
                        attempted.attempt.error.clone(),
                    )
                }
            };
            rows.push(vec![
                delivery_id.clone().into(),
                delivery.webhook_id.clone().into(),
                delivery.endpoint.endpoint_id.to_string().into(),
                delivery.shop_id.clone().into(),
                delivery.mode.clone().into(),
                delivery.event_type.clone().into(),
                delivery.subject_id.clone().into(),
                (delivery.position.tx_id as i64).into(),
                delivery.position.global_position.into(),
                delivery.payload.clone().into(),
                status.into(),
                attempts.into(),
                next.into(),
                last_at.into(),
                last_code.into(),
                last_error.into(),
                created_at.into(),
            ]);
        }
        let writing = std::time::Instant::now();
        let mut tx = self.db.begin_unflushed().await?;
        let inserted: std::collections::HashSet<String> = insert_rows(
            &mut tx,
            "INSERT INTO webhook_deliveries (delivery_id, webhook_id, endpoint_id, shop_id, mode,
                event_type, subject_id, tx_id, global_position, payload, status, attempts,
                next_attempt_at, last_attempt_at, last_status_code, last_error, created_at)",
            "ON CONFLICT (endpoint_id, subject_id, webhook_id) DO NOTHING RETURNING delivery_id",
            &rows,
            DISPATCH_ROWS_PER_INSERT,
            17,
            |_| String::new(),
        )
        .await?
        .iter()
        .map(|row| row.text("delivery_id"))
        .collect();
        // No row should be there already (rows and checkpoint commit
        // together); one that were would keep its own attempts.
        insert_attempts(
            &mut tx,
            dispatched
                .iter()
                .filter(|d| inserted.contains(&d.delivery_id))
                .filter_map(|d| d.attempted.as_ref()),
        )
        .await?;
        let moved = dispatch_checkpoint::commit_pass(
            &mut tx,
            DISPATCHER,
            from,
            to,
            &timestamp_text(self.clock.now()),
        )
        .await?;
        if !moved {
            tracing::warn!("a webhook dispatch pass outlived its lease; another pass took over");
            return Ok(None);
        }
        tx.commit().await?;
        add_micros(&DISPATCH_WRITE_MICROS, writing);
        Ok(Some(run))
    }

    /// The current secret, and the previous one during its 24 h overlap. A
    /// version's secret never changes (a rotation makes a new version), so
    /// each is decrypted once per process.
    async fn signing_secrets(
        &self,
        claimed: &Claimed,
        now: DateTime<Utc>,
    ) -> Result<Vec<String>, AppError> {
        let mut secrets = Vec::new();
        for version in caisse_domain::webhook::signing_secret_versions(
            claimed.secret_version,
            claimed.previous_secret_valid_until,
            now,
        ) {
            let key = (claimed.endpoint_id, version);
            let cached = self.secret_cache().get(&key).cloned();
            let secret = match cached {
                Some(secret) => Some(secret),
                None => {
                    let secret = self.secrets.secret(claimed.endpoint_id, version).await?;
                    if let Some(secret) = &secret {
                        let mut cache = self.secret_cache();
                        if cache.len() >= SECRET_CACHE_MAX {
                            cache.clear();
                        }
                        cache.insert(key, secret.clone());
                    }
                    secret
                }
            };
            secrets.extend(secret);
        }
        if secrets.is_empty() {
            return Err(AppError::internal("webhook endpoint without a secret"));
        }
        Ok(secrets)
    }

    fn secret_cache(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<(WebhookEndpointId, u32), String>>
    {
        self.secret_cache
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// No delivery of the endpoint succeeded for `PERSISTENT_FAILURE_DAYS`
    /// while some failed for good.
    async fn is_failing(
        &self,
        endpoint_id: WebhookEndpointId,
        now: DateTime<Utc>,
    ) -> Result<bool, AppError> {
        let since = timestamp_text(now - chrono::Duration::days(PERSISTENT_FAILURE_DAYS));
        let succeeded = self
            .db
            .fetch_optional(
                "SELECT 1 AS found FROM webhook_deliveries
                  WHERE endpoint_id = $1 AND status = 'SUCCEEDED' AND last_attempt_at >= $2
                  LIMIT 1",
                &[endpoint_id.to_string().into(), since.into()],
            )
            .await?;
        Ok(succeeded.is_none())
    }

    /// Puts a delivery back in the queue, due now (`redeliverWebhook`).
    pub async fn requeue(&self, delivery_id: &str) -> Result<(), AppError> {
        self.requests_db
            .execute(
                "UPDATE webhook_deliveries SET status = 'PENDING', next_attempt_at = $2
                  WHERE delivery_id = $1",
                &[delivery_id.into(), timestamp_text(self.clock.now()).into()],
            )
            .await?;
        Ok(())
    }

    /// A `webhook.test` delivery to one endpoint, due now; answers its id.
    pub async fn enqueue_test(
        &self,
        endpoint_id: WebhookEndpointId,
        shop_id: &str,
        mode: &str,
    ) -> Result<String, AppError> {
        let now = self.clock.now();
        let id = uuid::Uuid::now_v7().simple().to_string();
        let delivery_id = format!("whd_{id}");
        let body = serde_json::json!({
            "type": "webhook.test",
            "timestamp": timestamp_text(now),
            "data": { "endpointId": endpoint_id.to_string(), "shopId": shop_id, "mode": mode },
        })
        .to_string();
        let params: Vec<SqlValue> = vec![
            delivery_id.clone().into(),
            format!("msg_test_{id}").into(),
            endpoint_id.to_string().into(),
            shop_id.into(),
            mode.into(),
            "webhook.test".into(),
            endpoint_id.to_string().into(),
            body.into(),
            timestamp_text(now).into(),
        ];
        self.requests_db
            .execute(
                "INSERT INTO webhook_deliveries (delivery_id, webhook_id, endpoint_id, shop_id, mode,
                    event_type, subject_id, tx_id, global_position, payload, status, attempts,
                    next_attempt_at, created_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, 0, 0, $8, 'PENDING', 0, $9, $9)",
                &params,
            )
            .await?;
        Ok(delivery_id)
    }

    pub async fn delivery(&self, delivery_id: &str) -> Result<Option<DeliveryRow>, AppError> {
        Ok(self
            .db
            .fetch_optional(
                "SELECT * FROM webhook_deliveries WHERE delivery_id = $1",
                &[delivery_id.into()],
            )
            .await?
            .as_ref()
            .map(DeliveryRow::from_row))
    }

    /// An endpoint's deliveries, newest first.
    pub async fn deliveries(
        &self,
        endpoint_id: &str,
        status: Option<&str>,
        limit: usize,
    ) -> Result<Vec<DeliveryRow>, AppError> {
        let rows = match status {
            Some(status) => {
                self.db
                    .fetch_all(
                        "SELECT * FROM webhook_deliveries WHERE endpoint_id = $1 AND status = $2
                          ORDER BY created_at DESC, delivery_id DESC LIMIT $3",
                        &[endpoint_id.into(), status.into(), (limit as i64).into()],
                    )
                    .await?
            }
            None => {
                self.db
                    .fetch_all(
                        "SELECT * FROM webhook_deliveries WHERE endpoint_id = $1
                          ORDER BY created_at DESC, delivery_id DESC LIMIT $2",
                        &[endpoint_id.into(), (limit as i64).into()],
                    )
                    .await?
            }
        };
        Ok(rows.iter().map(DeliveryRow::from_row).collect())
    }

    pub async fn attempts(&self, delivery_id: &str) -> Result<Vec<AttemptRow>, AppError> {
        Ok(self
            .db
            .fetch_all(
                "SELECT * FROM webhook_attempts WHERE delivery_id = $1 ORDER BY attempt",
                &[delivery_id.into()],
            )
            .await?
            .iter()
            .map(|row| AttemptRow {
                attempt: row.int("attempt"),
                attempted_at: row.text("attempted_at"),
                status_code: row.opt_int("status_code"),
                latency_ms: row.int("latency_ms"),
                response_prefix: row.opt_text("response_prefix"),
                error: row.opt_text("error"),
            })
            .collect())
    }
}

enum Outcome {
    Succeeded,
    Retrying,
    Failed,
}

/// A delivery claimed for one attempt, with what sending it needs.
struct Claimed {
    delivery_id: String,
    webhook_id: String,
    endpoint_id: WebhookEndpointId,
    payload: String,
    /// Attempts before this one.
    attempts: i64,
    url: String,
    secret_version: u32,
    previous_secret_valid_until: Option<DateTime<Utc>>,
}

impl Claimed {
    /// From the delivery's columns and its endpoint's (`url`, `secret_version`,
    /// `previous_secret_valid_until`), which may be one row.
    fn from_rows(delivery: &SqlRow, endpoint: &SqlRow) -> Result<Self, AppError> {
        Ok(Claimed {
            delivery_id: delivery.text("delivery_id"),
            webhook_id: delivery.text("webhook_id"),
            endpoint_id: WebhookEndpointId::parse(&delivery.text("endpoint_id"))
                .ok_or_else(|| AppError::internal("webhook delivery of an unknown endpoint"))?,
            payload: delivery.text("payload"),
            attempts: delivery.int("attempts"),
            url: endpoint.text("url"),
            secret_version: endpoint.int("secret_version") as u32,
            previous_secret_valid_until: endpoint
                .opt_text("previous_secret_valid_until")
                .and_then(|text| parse_timestamp(&text)),
        })
    }
}

/// One attempt made, to record.
struct Attempted {
    claimed: Claimed,
    at: DateTime<Utc>,
    attempt: DeliveryAttempt,
}

/// The endpoints of `deliveries`, each once.
fn endpoint_ids(deliveries: &[NewDelivery]) -> Vec<String> {
    let mut endpoints: Vec<String> = deliveries
        .iter()
        .map(|d| d.endpoint.endpoint_id.to_string())
        .collect();
    endpoints.sort();
    endpoints.dedup();
    endpoints
}

/// A new delivery of a dispatch pass, attempted or queued.
struct Dispatched {
    delivery: NewDelivery,
    delivery_id: String,
    attempted: Option<Attempted>,
}

/// A delivery's state after an attempt.
struct AttemptResult {
    outcome: Outcome,
    status: &'static str,
    /// Attempts made, this one included.
    attempts: i64,
    next_attempt_at: Option<String>,
}

impl AttemptResult {
    fn of(attempted: &Attempted) -> Self {
        let attempts = attempted.claimed.attempts + 1;
        let attempt = &attempted.attempt;
        if attempt.success {
            return AttemptResult {
                outcome: Outcome::Succeeded,
                status: "SUCCEEDED",
                attempts,
                next_attempt_at: None,
            };
        }
        if (attempts as usize) <= RETRY_SCHEDULE.len() {
            let next = attempted.at + next_delay(attempts as usize, attempt.retry_after);
            return AttemptResult {
                outcome: Outcome::Retrying,
                status: "PENDING",
                attempts,
                next_attempt_at: Some(timestamp_text(next)),
            };
        }
        AttemptResult {
            outcome: Outcome::Failed,
            status: "FAILED",
            attempts,
            next_attempt_at: None,
        }
    }
}

/// Logs attempts, one statement for all.
async fn insert_attempts<'a>(
    tx: &mut Tx,
    attempted: impl Iterator<Item = &'a Attempted>,
) -> Result<(), AppError> {
    let mut params: Vec<SqlValue> = Vec::new();
    let mut count = 0;
    for Attempted {
        claimed,
        at,
        attempt,
    } in attempted
    {
        count += 1;
        params.extend([
            claimed.delivery_id.clone().into(),
            (claimed.attempts + 1).into(),
            timestamp_text(*at).into(),
            attempt.status.map(i64::from).into(),
            (attempt.latency_ms as i64).into(),
            Some(attempt.response_prefix.clone())
                .filter(|p| !p.is_empty())
                .into(),
            attempt.error.clone().into(),
        ]);
    }
    if count == 0 {
        return Ok(());
    }
    tx.execute(
        &format!(
            "INSERT INTO webhook_attempts (delivery_id, attempt, attempted_at, status_code,
                latency_ms, response_prefix, error) VALUES {}",
            values_rows(count, 7, 7, |_| String::new())
        ),
        &params,
    )
    .await?;
    Ok(())
}

/// The wait before the next attempt after `attempts` failed ones: the
/// schedule's step with ±10 % jitter, or the receiver's `Retry-After` when it
/// asks for longer (at most a day).
pub fn next_delay(attempts: usize, retry_after: Option<Duration>) -> chrono::Duration {
    let step = RETRY_SCHEDULE[(attempts - 1).min(RETRY_SCHEDULE.len() - 1)];
    let jitter = rand::thread_rng().gen_range(0.9..1.1);
    let scheduled = step.mul_f64(jitter);
    let wait = match retry_after {
        Some(asked) if asked > scheduled => asked.min(RETRY_AFTER_MAX),
        _ => scheduled,
    };
    chrono::Duration::from_std(wait).unwrap_or_else(|_| chrono::Duration::hours(24))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schedule_lasts_about_three_days_with_jitter() {
        let total: Duration = RETRY_SCHEDULE.iter().sum();
        assert!(total > Duration::from_secs(70 * 3600) && total < Duration::from_secs(80 * 3600));
        for _ in 0..100 {
            let first = next_delay(1, None).num_milliseconds();
            assert!((4_500..=5_500).contains(&first), "{first}");
        }
        let asked = next_delay(1, Some(Duration::from_secs(120)));
        assert_eq!(asked.num_seconds(), 120);
        let capped = next_delay(1, Some(Duration::from_secs(10 * 24 * 3600)));
        assert_eq!(capped.num_hours(), 24);
        // A short Retry-After does not shorten the schedule.
        assert!(next_delay(3, Some(Duration::from_secs(1))).num_minutes() >= 27);
    }
}
