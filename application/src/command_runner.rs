//! Runs one command against one aggregate: load, handle, commit — and on an
//! optimistic-concurrency conflict, reload and run it again (bounded).

use std::collections::HashMap;

use cqrs_es::event_sink::EventSink;
use cqrs_es::persist::{PersistedEventRepository, PersistedEventStore};
use cqrs_es::{Aggregate, AggregateError, EventEnvelope, EventStore};

use crate::error::AppError;

/// Attempts before a conflict reaches the client as `CONCURRENT_MODIFICATION`.
/// Fifty concurrent refunds on one payment must all get a real answer, so this
/// is generous; each retry reloads a short aggregate.
pub const CONFLICT_ATTEMPTS_MAX: usize = 100;

pub struct Executed<A: Aggregate> {
    /// State after the command's events.
    pub aggregate: A,
    pub events: Vec<EventEnvelope<A>>,
}

impl<A: Aggregate> Executed<A> {
    /// Sequence of the last event written (0 if none).
    pub fn last_sequence(&self) -> usize {
        self.events.last().map(|event| event.sequence).unwrap_or(0)
    }
}

/// cqrs-es in pure event-store mode. We call the store directly instead of
/// `CqrsFramework::execute` so the caller gets the resulting state and envelopes
/// without loading the aggregate a second time (docs/adr/0002).
pub struct CommandRunner<R, A>
where
    R: PersistedEventRepository,
    A: Aggregate<Services = ()>,
{
    store: PersistedEventStore<R, A>,
}

impl<R, A> CommandRunner<R, A>
where
    R: PersistedEventRepository,
    A: Aggregate<Services = ()> + Clone + Send + Sync,
    A::Command: Clone + Send,
    A::Error: Into<AppError> + Clone + Send,
{
    pub fn new(repository: R) -> Self {
        CommandRunner {
            store: PersistedEventStore::new_event_store(repository),
        }
    }

    pub async fn load(&self, aggregate_id: &str) -> Result<A, AppError> {
        let context = self
            .store
            .load_aggregate(aggregate_id)
            .await
            .map_err(store_error)?;
        Ok(context.aggregate)
    }

    /// The aggregate's state right after its event `sequence` (an idempotent replay's
    /// "first result").
    pub async fn load_at(&self, aggregate_id: &str, sequence: usize) -> Result<A, AppError> {
        let events = self
            .store
            .load_events(aggregate_id)
            .await
            .map_err(store_error)?;
        let mut aggregate = A::default();
        for envelope in events.into_iter().take_while(|e| e.sequence <= sequence) {
            aggregate.apply(envelope.payload);
        }
        Ok(aggregate)
    }

    pub async fn load_events(&self, aggregate_id: &str) -> Result<Vec<EventEnvelope<A>>, AppError> {
        self.store
            .load_events(aggregate_id)
            .await
            .map_err(store_error)
    }

    pub async fn execute(
        &self,
        aggregate_id: &str,
        command: A::Command,
        metadata: HashMap<String, String>,
    ) -> Result<Executed<A>, AppError> {
        self.execute_with(aggregate_id, |_| Ok(command.clone()), metadata)
            .await
    }

    /// Like `execute`, with the command built from the freshly loaded state on each
    /// attempt: for commands that need something of the aggregate (a payment's
    /// currency to read an amount in) without loading it a second time.
    pub async fn execute_with(
        &self,
        aggregate_id: &str,
        build_command: impl Fn(&A) -> Result<A::Command, AppError>,
        metadata: HashMap<String, String>,
    ) -> Result<Executed<A>, AppError> {
        for _attempt in 0..CONFLICT_ATTEMPTS_MAX {
            let mut context = self
                .store
                .load_aggregate(aggregate_id)
                .await
                .map_err(store_error)?;
            let command = build_command(&context.aggregate)?;
            let sink: EventSink<A> = EventSink::default();
            context
                .aggregate
                .handle(command, &(), &sink)
                .await
                .map_err(Into::into)?;
            let events = sink.collect().await;
            let aggregate = context.aggregate.clone();
            if events.is_empty() {
                return Ok(Executed {
                    aggregate,
                    events: Vec::new(),
                });
            }
            match self.store.commit(events, context, metadata.clone()).await {
                Ok(envelopes) => {
                    return Ok(Executed {
                        aggregate,
                        events: envelopes,
                    })
                }
                Err(AggregateError::AggregateConflict) => {
                    // Someone appended first: reload and decide again on fresh state.
                    tokio::task::yield_now().await;
                    continue;
                }
                Err(error) => return Err(store_error(error)),
            }
        }
        Err(AppError::ConcurrencyExhausted)
    }
}

fn store_error<E: std::error::Error + Into<AppError>>(error: AggregateError<E>) -> AppError {
    match error {
        AggregateError::UserError(error) => error.into(),
        AggregateError::AggregateConflict => AppError::ConcurrencyExhausted,
        other => AppError::internal(other),
    }
}
