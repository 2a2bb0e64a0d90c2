//! The catch-up projector: one task reads the global log after the projections'
//! checkpoints and applies each event to every projection still behind it, with
//! the new checkpoints, in one transaction. Several processes may run it on one
//! database: the transaction first takes the projector's lock, so batches never
//! overlap. On PostgreSQL each batch notifies the others (LISTEN/NOTIFY), which
//! look at once instead of at their next poll.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use caisse_application::ports::{LogPosition, ProjectionWaiter};
use caisse_application::AppError;
use caisse_infrastructure::event_log::{EventLogReader, LoggedEvent};
use caisse_infrastructure::{Db, Tx};
use tokio::sync::{watch, Notify};

/// Events read per transaction.
pub const BATCH_SIZE: usize = 500;
/// The PostgreSQL channel each batch notifies when it commits, so the other
/// processes' projectors (and the live subscriptions they wake) look at once
/// instead of at their next poll.
pub const NOTIFY_CHANNEL: &str = "caisse_projections";
/// How often an idle projector looks for events written by other processes.
const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// A view built from the log.
#[async_trait]
pub trait Projection: Send + Sync {
    /// Stable name: the checkpoint key and the `projections rebuild` argument.
    fn name(&self) -> &'static str;
    /// The tables this projection owns, emptied by a rebuild.
    fn tables(&self) -> &'static [&'static str];
    /// Applies one event inside the batch transaction. Events of other aggregates
    /// are ignored by returning `Ok(())`.
    async fn apply(&self, tx: &mut Tx, event: &LoggedEvent) -> Result<(), AppError>;
}

/// An event's payload as its aggregate's event type; a payload that does not
/// read is an internal error naming the event.
pub(crate) fn decode<E: serde::de::DeserializeOwned>(event: &LoggedEvent) -> Result<E, AppError> {
    serde_json::from_value(event.payload.clone()).map_err(|error| {
        AppError::internal(format!(
            "{} event {}: {error}",
            event.aggregate_type, event.position.global_position
        ))
    })
}

/// How far every projection of `names` has applied the log: the lowest of
/// their checkpoints, or the start of the log while one of them has none.
/// What reads several views at once must not go past it.
pub async fn horizon(db: &Db, names: &[&str]) -> Result<LogPosition, AppError> {
    let mut params = Vec::new();
    let list =
        caisse_infrastructure::sql::bind_list(&mut params, names.iter().map(|n| n.to_string()));
    let rows = db
        .fetch_all(
            &format!(
                "SELECT tx_id, global_position FROM projection_checkpoints WHERE name IN ({list})"
            ),
            &params,
        )
        .await?;
    if rows.len() < names.len() {
        return Ok(LogPosition::default());
    }
    Ok(rows
        .iter()
        .map(|row| LogPosition {
            tx_id: row.int("tx_id") as u64,
            global_position: row.int("global_position"),
        })
        .min()
        .unwrap_or_default())
}

/// All projections of the service, in one place for the server, the CLI and tests.
pub fn all_projections() -> Vec<Arc<dyn Projection>> {
    vec![
        Arc::new(crate::payments::PaymentsProjection),
        Arc::new(crate::remittances::RemittancesProjection),
        Arc::new(crate::accounts::AccountsProjection),
        Arc::new(crate::schedule::ScheduleProjection),
        Arc::new(crate::plans::PlansProjection),
        Arc::new(crate::journal::JournalProjection),
        Arc::new(crate::risk::RiskProjection),
        Arc::new(crate::webhooks::WebhooksProjection),
        Arc::new(crate::notifications::NotificationsProjection),
    ]
}

/// Runs every projection in one transaction per batch (docs/adr/0007): one read
/// of the log and one commit serve all views. Each projection keeps its own
/// checkpoint, so one can be rebuilt while the others stay where they are.
pub struct Projector {
    projections: Vec<Arc<dyn Projection>>,
    db: Db,
    log: EventLogReader,
    /// Last checkpoint seen by this process, per projection (same order).
    checkpoints: Vec<watch::Sender<LogPosition>>,
    /// Wakes the task when it is idle. `notify_waiters` on purpose: a busy task is
    /// not woken again, so under load batches grow instead of splitting into many
    /// small transactions (`notify_one` measured about 20 % slower in `caisse
    /// bench`); a missed wake-up costs at most one poll interval.
    wake: Notify,
    /// This process's name in its notifications: its own are not wake-ups.
    process_tag: String,
    /// Notifications from other processes received (PostgreSQL).
    notifications_received: std::sync::atomic::AtomicU64,
    /// Whether the LISTEN connection is up (PostgreSQL).
    listening: std::sync::atomic::AtomicBool,
    /// Wall time spent in each projection (`apply` and `finish_batch`), in
    /// µs, same order as `projections`: time inside the batch's transaction,
    /// so on SQLite time the single writer's lock is held (`caisse bench`).
    busy_micros: Vec<std::sync::atomic::AtomicU64>,
    /// Wall time of the batches that applied events, from their transaction's
    /// start to its commit (µs).
    batch_micros: std::sync::atomic::AtomicU64,
}

impl Projector {
    pub fn new(projections: Vec<Arc<dyn Projection>>, db: Db) -> Self {
        let checkpoints = projections
            .iter()
            .map(|_| watch::channel(LogPosition::default()).0)
            .collect();
        let busy_micros = projections.iter().map(|_| Default::default()).collect();
        Projector {
            projections,
            log: EventLogReader::new(db.clone()),
            db,
            checkpoints,
            wake: Notify::new(),
            process_tag: uuid::Uuid::new_v4().simple().to_string(),
            notifications_received: Default::default(),
            listening: Default::default(),
            busy_micros,
            batch_micros: Default::default(),
        }
    }

    fn set_listening(&self, listening: bool) {
        self.listening
            .store(listening, std::sync::atomic::Ordering::Relaxed);
    }

    fn index_of(&self, name: &str) -> Option<usize> {
        self.projections
            .iter()
            .position(|projection| projection.name() == name)
    }

    /// Takes the projector's lock for the transaction and returns every checkpoint.
    ///
    /// PostgreSQL: a transaction-scoped advisory lock, which gives the transaction
    /// no xid; the log is then read before anything is written, so the reader's
    /// `pg_snapshot_xmin` horizon is not held back by this very transaction.
    /// SQLite: a write first (any INSERT takes the write lock, conflict or not), so
    /// the transaction holds the write lock from the start and never fails to
    /// upgrade a stale read.
    async fn lock(&self, tx: &mut Tx) -> Result<Vec<LogPosition>, AppError> {
        if tx.is_postgres() {
            tx.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended('caisse-projector', 0))",
                &[],
            )
            .await?;
        } else {
            for projection in &self.projections {
                tx.execute(
                    "INSERT INTO projection_checkpoints (name, tx_id, global_position) VALUES ($1, 0, 0)
                     ON CONFLICT (name) DO NOTHING",
                    &[projection.name().into()],
                )
                .await?;
            }
        }
        let rows = tx
            .fetch_all(
                "SELECT name, tx_id, global_position FROM projection_checkpoints",
                &[],
            )
            .await?;
        Ok(self
            .projections
            .iter()
            .map(|projection| {
                rows.iter()
                    .find(|row| row.text("name") == projection.name())
                    .map(|row| LogPosition {
                        tx_id: row.int("tx_id") as u64,
                        global_position: row.int("global_position"),
                    })
                    .unwrap_or_default()
            })
            .collect())
    }

    /// Writes one projection's checkpoint, creating its row the first time.
    async fn store_checkpoint(
        &self,
        tx: &mut Tx,
        name: &str,
        position: LogPosition,
    ) -> Result<(), AppError> {
        tx.execute(
            "INSERT INTO projection_checkpoints (name, tx_id, global_position, updated_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (name) DO UPDATE
                SET tx_id = excluded.tx_id, global_position = excluded.global_position, updated_at = excluded.updated_at",
            &[
                name.into(),
                (position.tx_id as i64).into(),
                position.global_position.into(),
                caisse_infrastructure::time::timestamp_text(chrono::Utc::now()).into(),
            ],
        )
        .await?;
        Ok(())
    }

    fn publish(&self, positions: &[LogPosition]) {
        for (sender, position) in self.checkpoints.iter().zip(positions) {
            let position = *position;
            sender.send_if_modified(|current| {
                if position > *current {
                    *current = position;
                    true
                } else {
                    false
                }
            });
        }
    }

    /// Applies one batch; returns, per projection, how many events it applied.
    pub async fn run_batch(&self) -> Result<Vec<usize>, AppError> {
        let mut applied = vec![0; self.projections.len()];
        // A read-only look first: an idle pass writes nothing and takes no lock.
        // The position it starts from may be stale (another process may have moved
        // the checkpoints); the locked read below is the one that counts.
        let last_seen = self
            .checkpoints
            .iter()
            .map(|sender| *sender.borrow())
            .min()
            .unwrap_or_default();
        if self.log.read_after(last_seen, 1).await?.is_empty() {
            return Ok(applied);
        }
        let mut tx = self.db.begin().await?;
        let batch_started = std::time::Instant::now();
        let checkpoints = self.lock(&mut tx).await?;
        let start = checkpoints.iter().copied().min().unwrap_or_default();
        let events = EventLogReader::read_after_in(&mut tx, start, BATCH_SIZE).await?;
        let Some(last) = events.last().map(|event| event.position) else {
            tx.commit().await?;
            self.publish(&checkpoints);
            return Ok(applied);
        };
        if tx.is_postgres() {
            // Views are rebuilt from the log, so they need not wait for the WAL
            // flush (DESIGN.md "Performance model"); the events themselves do.
            tx.execute("SET LOCAL synchronous_commit = off", &[])
                .await?;
        }
        let mut busy = vec![std::time::Duration::ZERO; self.projections.len()];
        for event in &events {
            for (index, projection) in self.projections.iter().enumerate() {
                if event.position > checkpoints[index] {
                    let started = std::time::Instant::now();
                    projection.apply(&mut tx, event).await?;
                    busy[index] += started.elapsed();
                    applied[index] += 1;
                }
            }
        }
        for (total, spent) in self.busy_micros.iter().zip(busy) {
            total.fetch_add(
                spent.as_micros() as u64,
                std::sync::atomic::Ordering::Relaxed,
            );
        }
        let mut moved = checkpoints.clone();
        for (index, projection) in self.projections.iter().enumerate() {
            if last > checkpoints[index] {
                self.store_checkpoint(&mut tx, projection.name(), last)
                    .await?;
                moved[index] = last;
            }
        }
        if tx.is_postgres() {
            // Delivered at commit, to every listening process but this one.
            tx.execute(
                "SELECT pg_notify($1, $2)",
                &[NOTIFY_CHANNEL.into(), self.process_tag.clone().into()],
            )
            .await?;
        }
        tx.commit().await?;
        self.batch_micros.fetch_add(
            batch_started.elapsed().as_micros() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        self.publish(&moved);
        Ok(applied)
    }

    /// Applies batches until the log has nothing more; returns events applied per projection.
    pub async fn catch_up(&self) -> Result<Vec<usize>, AppError> {
        let mut total = vec![0; self.projections.len()];
        loop {
            let applied = self.run_batch().await?;
            if applied.iter().all(|count| *count == 0) {
                return Ok(total);
            }
            for (sum, count) in total.iter_mut().zip(applied) {
                *sum += count;
            }
        }
    }

    /// Empties one projection's views and resets its checkpoint in one transaction,
    /// then replays the log into it; returns how many events it applied.
    pub async fn rebuild(&self, name: &str) -> Result<usize, AppError> {
        let index = self.index_of(name).ok_or(AppError::NotFound)?;
        let projection = &self.projections[index];
        let mut tx = self.db.begin().await?;
        self.lock(&mut tx).await?;
        for table in projection.tables() {
            tx.execute(&format!("DELETE FROM {table}"), &[]).await?;
        }
        self.store_checkpoint(&mut tx, projection.name(), LogPosition::default())
            .await?;
        tx.commit().await?;
        self.checkpoints[index].send_replace(LogPosition::default());
        Ok(self.catch_up().await?[index])
    }
}

/// Listens on `NOTIFY_CHANNEL` and wakes the projector when another process
/// commits a batch: its next pass publishes the new checkpoints, which wakes
/// this process's live subscriptions. Polling stays the fallback: a lost
/// connection is retried, and notifications sent meanwhile are only late.
async fn listen(projector: Arc<Projector>, pool: sqlx::PgPool) {
    loop {
        let mut listener = match sqlx::postgres::PgListener::connect_with(&pool).await {
            Ok(listener) => listener,
            Err(sqlx::Error::PoolClosed) => return,
            Err(error) => {
                tracing::warn!(%error, "projection notifications: cannot connect; polling meanwhile");
                tokio::time::sleep(Duration::from_secs(5)).await;
                continue;
            }
        };
        if let Err(error) = listener.listen(NOTIFY_CHANNEL).await {
            tracing::warn!(%error, "projection notifications: LISTEN failed; polling meanwhile");
            tokio::time::sleep(Duration::from_secs(5)).await;
            continue;
        }
        projector.set_listening(true);
        loop {
            match listener.recv().await {
                Ok(notification) if notification.payload() == projector.process_tag => {}
                Ok(_) => {
                    projector
                        .notifications_received
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    projector.wake.notify_waiters();
                }
                // The server is stopping.
                Err(sqlx::Error::PoolClosed) => return,
                Err(error) => {
                    // recv reconnects by itself; a second failure in a row
                    // starts over after a pause.
                    tracing::warn!(%error, "projection notifications: connection lost");
                    projector.set_listening(false);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    break;
                }
            }
        }
    }
}

/// One projection of the projector, by name: what `projections rebuild` acts on.
pub struct ProjectionHandle {
    projector: Arc<Projector>,
    name: &'static str,
}

impl ProjectionHandle {
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// See [`Projector::rebuild`].
    pub async fn rebuild(&self) -> Result<usize, AppError> {
        self.projector.rebuild(self.name).await
    }
}

/// The projector of one process, its background task and the waiter mutations use.
pub struct Projectors {
    projector: Arc<Projector>,
    tasks: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
    wait_max: Duration,
}

impl Projectors {
    pub fn new(db: Db, wait_max: Duration) -> Self {
        Projectors {
            projector: Arc::new(Projector::new(all_projections(), db)),
            tasks: Default::default(),
            wait_max,
        }
    }

    pub fn get(&self, name: &str) -> Option<ProjectionHandle> {
        let index = self.projector.index_of(name)?;
        Some(ProjectionHandle {
            projector: self.projector.clone(),
            name: self.projector.projections[index].name(),
        })
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.projector
            .projections
            .iter()
            .map(|projection| projection.name())
            .collect()
    }

    pub async fn catch_up_all(&self) -> Result<(), AppError> {
        self.projector.catch_up().await.map(|_| ())
    }

    /// Starts the background task. Errors are logged and retried: a projection
    /// that fails stops advancing but never skips an event.
    pub fn spawn(self: &Arc<Self>) {
        let projector = self.projector.clone();
        let task = tokio::spawn(async move {
            loop {
                if let Err(error) = projector.catch_up().await {
                    tracing::error!(%error, "projection batch failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                let _ = tokio::time::timeout(POLL_INTERVAL, projector.wake.notified()).await;
            }
        });
        self.tasks.lock().expect("projector tasks").push(task);
        if let Db::Postgres(pool) = &self.projector.db {
            let task = tokio::spawn(listen(self.projector.clone(), pool.clone()));
            self.tasks.lock().expect("projector tasks").push(task);
        }
    }

    /// Batches other processes committed that this one heard of (PostgreSQL
    /// LISTEN/NOTIFY); always 0 on SQLite, whose writers share this process.
    pub fn notifications_received(&self) -> u64 {
        self.projector
            .notifications_received
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Whether this process is listening for other processes' batches: always
    /// false on SQLite; on PostgreSQL, true once `LISTEN` is up, and false
    /// while its connection is being re-established.
    pub fn listening(&self) -> bool {
        self.projector
            .listening
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Stops the background task (a test app being dropped, a server stopping).
    pub fn stop(&self) {
        for task in self.tasks.lock().expect("projector tasks").drain(..) {
            task.abort();
        }
    }

    /// One projection's checkpoint as this process sees it, changing when a batch
    /// commits here or the idle poll finds another process's: what live readers of
    /// the views (the `events` subscription) wait on.
    pub fn watch_checkpoint(&self, name: &str) -> Option<watch::Receiver<LogPosition>> {
        let index = self.projector.index_of(name)?;
        Some(self.projector.checkpoints[index].subscribe())
    }

    /// Wall time each projection has spent in this process's batches so far
    /// (µs, `apply` and `finish_batch`), by name.
    pub fn busy_micros(&self) -> BTreeMap<&'static str, u64> {
        self.projector
            .projections
            .iter()
            .zip(&self.projector.busy_micros)
            .map(|(projection, micros)| {
                (
                    projection.name(),
                    micros.load(std::sync::atomic::Ordering::Relaxed),
                )
            })
            .collect()
    }

    /// Wall time of this process's batches that applied events so far (µs),
    /// each from its transaction's start to its commit: the projections'
    /// work plus reading the log, the checkpoints and the commit.
    pub fn batch_micros(&self) -> u64 {
        self.projector
            .batch_micros
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Checkpoints as last seen by this process.
    pub fn checkpoints(&self) -> BTreeMap<&'static str, LogPosition> {
        self.projector
            .projections
            .iter()
            .zip(&self.projector.checkpoints)
            .map(|(projection, sender)| (projection.name(), *sender.borrow()))
            .collect()
    }
}

#[async_trait]
impl ProjectionWaiter for Projectors {
    async fn wait_for(&self, position: LogPosition) {
        self.projector.wake.notify_waiters();
        let deadline = tokio::time::Instant::now() + self.wait_max;
        for (projection, sender) in self
            .projector
            .projections
            .iter()
            .zip(&self.projector.checkpoints)
        {
            let mut receiver = sender.subscribe();
            loop {
                if *receiver.borrow_and_update() >= position {
                    break;
                }
                // Another process may have applied it: wake our task to look.
                self.projector.wake.notify_waiters();
                let step = tokio::time::timeout(Duration::from_millis(50), receiver.changed());
                if tokio::time::timeout_at(deadline, step).await.is_err() {
                    tracing::warn!(
                        projection = projection.name(),
                        ?position,
                        "views lag behind a mutation's events"
                    );
                    return;
                }
            }
        }
    }
}
