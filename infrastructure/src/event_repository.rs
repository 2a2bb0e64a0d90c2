//! The event repository cqrs-es writes through: postgres-es or sqlite-es, wrapped
//! so the idempotency key is stored once per command and its unique-index
//! violation is told apart from an optimistic-lock conflict.

use std::sync::Arc;

use caisse_application::context::METADATA_IDEMPOTENCY_KEY;
use cqrs_es::persist::{
    PersistedEventRepository, PersistenceError, ReplayStream, SerializedEvent, SerializedSnapshot,
};
use cqrs_es::Aggregate;
use postgres_es::PostgresEventRepository;
use serde_json::Value;
use sqlite_es::SqliteEventRepository;

use crate::event_log::EventLogReader;
use crate::sql::Db;

#[derive(Clone)]
pub struct EventRepository {
    inner: Arc<Inner>,
    log: EventLogReader,
}

enum Inner {
    Postgres(PostgresEventRepository),
    /// With its pool, for this process's turn at the write lock.
    Sqlite(SqliteEventRepository, sqlx::SqlitePool),
}

/// The idempotency key of this command is already in the log.
#[derive(Debug, thiserror::Error)]
#[error("idempotency key already used")]
pub struct IdempotencyKeyTaken;

impl EventRepository {
    pub fn new(db: &Db) -> Self {
        let inner = match db {
            Db::Postgres(pool) => Inner::Postgres(PostgresEventRepository::new(pool.clone())),
            Db::Sqlite(pool) => {
                Inner::Sqlite(SqliteEventRepository::new(pool.clone()), pool.clone())
            }
        };
        EventRepository {
            inner: Arc::new(inner),
            log: EventLogReader::new(db.clone()),
        }
    }
}

fn idempotency_key(event: &SerializedEvent) -> Option<String> {
    event
        .metadata
        .get(METADATA_IDEMPOTENCY_KEY)
        .and_then(Value::as_str)
        .map(str::to_string)
}

impl PersistedEventRepository for EventRepository {
    async fn get_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        match self.inner.as_ref() {
            Inner::Postgres(repo) => repo.get_events::<A>(aggregate_id).await,
            Inner::Sqlite(repo, _) => repo.get_events::<A>(aggregate_id).await,
        }
    }

    async fn get_last_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
        last_sequence: usize,
    ) -> Result<Vec<SerializedEvent>, PersistenceError> {
        match self.inner.as_ref() {
            Inner::Postgres(repo) => repo.get_last_events::<A>(aggregate_id, last_sequence).await,
            Inner::Sqlite(repo, _) => repo.get_last_events::<A>(aggregate_id, last_sequence).await,
        }
    }

    async fn get_snapshot<A: Aggregate>(
        &self,
        _aggregate_id: &str,
    ) -> Result<Option<SerializedSnapshot>, PersistenceError> {
        // Pure event-store mode (DESIGN.md): snapshots are never read.
        Ok(None)
    }

    async fn persist<A: Aggregate>(
        &self,
        events: &[SerializedEvent],
        snapshot_update: Option<(String, Value, usize)>,
    ) -> Result<(), PersistenceError> {
        assert!(
            snapshot_update.is_none(),
            "snapshots are not used (DESIGN.md, event store)"
        );
        // One command, one idempotency key: only its first event carries it, so the
        // unique index can hold however many events the command wrote.
        let mut events = events.to_vec();
        for event in events.iter_mut().skip(1) {
            if let Value::Object(metadata) = &mut event.metadata {
                metadata.remove(METADATA_IDEMPOTENCY_KEY);
            }
        }
        let result = match self.inner.as_ref() {
            Inner::Postgres(repo) => repo.persist::<A>(&events, None).await,
            Inner::Sqlite(repo, pool) => {
                let _turn = crate::sql::sqlite_write_permit(pool)
                    .await
                    .map_err(|error| PersistenceError::UnknownError(Box::new(error)))?;
                repo.persist::<A>(&events, None).await
            }
        };
        match (result, events.first().and_then(idempotency_key)) {
            (Err(error), Some(key)) => {
                // postgres-es reports every unique violation as an optimistic lock and
                // sqlite-es reports ours as unknown; ask the log which one it was.
                match self.log.find_idempotent_record(&key).await {
                    Ok(Some(_)) => Err(PersistenceError::UnknownError(Box::new(
                        IdempotencyKeyTaken,
                    ))),
                    _ => Err(error),
                }
            }
            (result, _) => result,
        }
    }

    async fn stream_events<A: Aggregate>(
        &self,
        aggregate_id: &str,
    ) -> Result<ReplayStream, PersistenceError> {
        match self.inner.as_ref() {
            Inner::Postgres(repo) => repo.stream_events::<A>(aggregate_id).await,
            Inner::Sqlite(repo, _) => repo.stream_events::<A>(aggregate_id).await,
        }
    }

    async fn stream_all_events<A: Aggregate>(&self) -> Result<ReplayStream, PersistenceError> {
        // The crates' version orders per aggregate and ends silently on a database
        // error (DESIGN.md); replays read the global log through `EventLogReader`.
        Err(PersistenceError::UnknownError(
            "stream_all_events is not supported: read the global log with EventLogReader".into(),
        ))
    }
}
