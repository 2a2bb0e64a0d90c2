//! The catch-up projector: one task per projection reads the global log after its
//! checkpoint and applies each event and the new checkpoint in one transaction.
//! Several processes may run it on one database: the checkpoint row is locked by
//! the first statement of the transaction, so batches never overlap.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use caisse_application::ports::{LogPosition, ProjectionWaiter};
use caisse_application::AppError;
use caisse_infrastructure::event_log::{EventLogReader, LoggedEvent};
use caisse_infrastructure::{Db, Tx};
use tokio::sync::{watch, Notify};

/// Events applied per transaction.
pub const BATCH_SIZE: usize = 500;
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

/// All projections of the service, in one place for the server, the CLI and tests.
pub fn all_projections() -> Vec<Arc<dyn Projection>> {
    vec![
        Arc::new(crate::payments::PaymentsProjection),
        Arc::new(crate::remittances::RemittancesProjection),
        Arc::new(crate::accounts::AccountsProjection),
    ]
}

pub struct Projector {
    projection: Arc<dyn Projection>,
    db: Db,
    log: EventLogReader,
    checkpoint: watch::Sender<LogPosition>,
    /// Wakes this projector's task when it is idle. `notify_waiters` on purpose:
    /// a busy task is not woken again, so under load batches grow instead of
    /// splitting into many small transactions (`notify_one` measured about 20 %
    /// slower in `caisse bench`); a missed wake-up costs at most one poll interval.
    wake: Notify,
}

impl Projector {
    pub fn new(projection: Arc<dyn Projection>, db: Db) -> Self {
        let (checkpoint, _) = watch::channel(LogPosition::default());
        Projector {
            projection,
            log: EventLogReader::new(db.clone()),
            db,
            checkpoint,
            wake: Notify::new(),
        }
    }

    pub fn name(&self) -> &'static str {
        self.projection.name()
    }

    /// Takes this projection's lock for the transaction and returns its checkpoint.
    ///
    /// PostgreSQL: a transaction-scoped advisory lock, which gives the transaction
    /// no xid; the log is then read before anything is written, so the reader's
    /// `pg_snapshot_xmin` horizon is not held back by this very transaction.
    /// SQLite: a write first, so the transaction holds the write lock from the start
    /// and never fails to upgrade a stale read.
    async fn lock_checkpoint(&self, tx: &mut Tx) -> Result<LogPosition, AppError> {
        let name = self.projection.name();
        if tx.is_postgres() {
            tx.execute(
                "SELECT pg_advisory_xact_lock(hashtextextended('caisse-projection:' || $1, 0))",
                &[name.into()],
            )
            .await?;
        } else {
            tx.execute(
                "INSERT INTO projection_checkpoints (name, tx_id, global_position) VALUES ($1, 0, 0)
                 ON CONFLICT (name) DO UPDATE SET name = excluded.name",
                &[name.into()],
            )
            .await?;
        }
        let row = tx
            .fetch_optional(
                "SELECT tx_id, global_position FROM projection_checkpoints WHERE name = $1",
                &[name.into()],
            )
            .await?;
        Ok(row
            .map(|row| LogPosition {
                tx_id: row.int("tx_id") as u64,
                global_position: row.int("global_position"),
            })
            .unwrap_or_default())
    }

    /// Writes the checkpoint, creating its row the first time.
    async fn store_checkpoint(&self, tx: &mut Tx, position: LogPosition) -> Result<(), AppError> {
        tx.execute(
            "INSERT INTO projection_checkpoints (name, tx_id, global_position, updated_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT (name) DO UPDATE
                SET tx_id = excluded.tx_id, global_position = excluded.global_position, updated_at = excluded.updated_at",
            &[
                self.projection.name().into(),
                (position.tx_id as i64).into(),
                position.global_position.into(),
                caisse_infrastructure::time::timestamp_text(chrono::Utc::now()).into(),
            ],
        )
        .await?;
        Ok(())
    }

    /// Applies one batch; returns how many events it applied.
    pub async fn run_batch(&self) -> Result<usize, AppError> {
        // A read-only look first: an idle pass writes nothing and takes no lock.
        // The position it starts from may be stale (another process may have moved
        // the checkpoint); the locked read below is the one that counts.
        let last_seen = *self.checkpoint.borrow();
        if self.log.read_after(last_seen, 1).await?.is_empty() {
            return Ok(0);
        }
        let mut tx = self.db.begin().await?;
        let checkpoint = self.lock_checkpoint(&mut tx).await?;
        let events = EventLogReader::read_after_in(&mut tx, checkpoint, BATCH_SIZE).await?;
        let Some(last) = events.last().map(|event| event.position) else {
            tx.commit().await?;
            self.checkpoint
                .send_if_modified(|current| replace_if_newer(current, checkpoint));
            return Ok(0);
        };
        if tx.is_postgres() {
            // Views are rebuilt from the log, so they need not wait for the WAL
            // flush (DESIGN.md "Performance model"); the events themselves do.
            tx.execute("SET LOCAL synchronous_commit = off", &[])
                .await?;
        }
        for event in &events {
            self.projection.apply(&mut tx, event).await?;
        }
        self.store_checkpoint(&mut tx, last).await?;
        tx.commit().await?;
        self.checkpoint
            .send_if_modified(|current| replace_if_newer(current, last));
        Ok(events.len())
    }

    /// Applies batches until the log has nothing more for this projection.
    pub async fn catch_up(&self) -> Result<usize, AppError> {
        let mut total = 0;
        loop {
            let applied = self.run_batch().await?;
            total += applied;
            if applied == 0 {
                return Ok(total);
            }
        }
    }

    /// Empties the views and the checkpoint in one transaction, then replays.
    pub async fn rebuild(&self) -> Result<usize, AppError> {
        let mut tx = self.db.begin().await?;
        self.lock_checkpoint(&mut tx).await?;
        for table in self.projection.tables() {
            tx.execute(&format!("DELETE FROM {table}"), &[]).await?;
        }
        self.store_checkpoint(&mut tx, LogPosition::default())
            .await?;
        tx.commit().await?;
        self.checkpoint.send_replace(LogPosition::default());
        self.catch_up().await
    }
}

fn replace_if_newer(current: &mut LogPosition, candidate: LogPosition) -> bool {
    if candidate > *current {
        *current = candidate;
        true
    } else {
        false
    }
}

/// The running projectors of one process, and the waiter mutations use.
pub struct Projectors {
    projectors: Vec<Arc<Projector>>,
    tasks: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
    wait_max: Duration,
}

impl Projectors {
    pub fn new(db: Db, wait_max: Duration) -> Self {
        let projectors = all_projections()
            .into_iter()
            .map(|p| Arc::new(Projector::new(p, db.clone())))
            .collect();
        Projectors {
            projectors,
            tasks: Default::default(),
            wait_max,
        }
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Projector>> {
        self.projectors
            .iter()
            .find(|projector| projector.name() == name)
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.projectors
            .iter()
            .map(|projector| projector.name())
            .collect()
    }

    pub async fn catch_up_all(&self) -> Result<(), AppError> {
        for projector in &self.projectors {
            projector.catch_up().await?;
        }
        Ok(())
    }

    /// Starts one background task per projection. Errors are logged and retried:
    /// a projection that fails stops advancing but never skips an event.
    pub fn spawn(self: &Arc<Self>) {
        let handles: Vec<_> = self
            .projectors
            .iter()
            .map(|projector| {
                let projector = projector.clone();
                tokio::spawn(async move {
                    loop {
                        match projector.catch_up().await {
                            Ok(_) => {}
                            Err(error) => {
                                tracing::error!(projection = projector.name(), %error, "projection batch failed; retrying");
                                tokio::time::sleep(Duration::from_secs(1)).await;
                            }
                        }
                        let _ = tokio::time::timeout(POLL_INTERVAL, projector.wake.notified()).await;
                    }
                })
            })
            .collect();
        self.tasks.lock().expect("projector tasks").extend(handles);
    }

    /// Stops the background tasks (a test app being dropped, a server stopping).
    pub fn stop(&self) {
        for task in self.tasks.lock().expect("projector tasks").drain(..) {
            task.abort();
        }
    }

    /// Checkpoints as last seen by this process.
    pub fn checkpoints(&self) -> BTreeMap<&'static str, LogPosition> {
        self.projectors
            .iter()
            .map(|p| (p.name(), *p.checkpoint.borrow()))
            .collect()
    }
}

#[async_trait]
impl ProjectionWaiter for Projectors {
    async fn wait_for(&self, position: LogPosition) {
        for projector in &self.projectors {
            projector.wake.notify_waiters();
        }
        let deadline = tokio::time::Instant::now() + self.wait_max;
        for projector in &self.projectors {
            let mut receiver = projector.checkpoint.subscribe();
            loop {
                if *receiver.borrow_and_update() >= position {
                    break;
                }
                // Another process may have applied it: wake our task to look.
                projector.wake.notify_waiters();
                let step = tokio::time::timeout(Duration::from_millis(50), receiver.changed());
                if tokio::time::timeout_at(deadline, step).await.is_err() {
                    tracing::warn!(
                        projection = projector.name(),
                        ?position,
                        "views lag behind a mutation's events"
                    );
                    return;
                }
            }
        }
    }
}
