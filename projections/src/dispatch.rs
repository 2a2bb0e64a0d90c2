//! What the notification dispatchers (`webhook_dispatch`, `email_dispatch`;
//! ADR 0013) share: the events a pass covers, read from the log after the
//! dispatcher's own checkpoint and never past the projections whose views it
//! reads (an endpoint or a setting made just before an event is known when
//! the event is dispatched).

use caisse_application::ports::LogPosition;
use caisse_application::AppError;
use caisse_infrastructure::dispatch_checkpoint;
use caisse_infrastructure::event_log::{EventLogReader, LoggedEvent};
use caisse_infrastructure::Db;

/// Events read per pass.
pub(crate) const PASS_EVENTS_MAX: usize = 500;

/// The events of one pass.
pub(crate) struct PassEvents {
    /// The checkpoint the pass starts from.
    pub from: LogPosition,
    /// In commit order; empty when there is nothing new.
    pub events: Vec<LoggedEvent>,
    /// The read hit `PASS_EVENTS_MAX`: more may be waiting.
    pub full: bool,
}

/// The events after the dispatcher `name`'s checkpoint that every projection
/// of `views` has applied.
pub(crate) async fn pass_events(
    db: &Db,
    log: &EventLogReader,
    name: &str,
    views: &[&str],
) -> Result<PassEvents, AppError> {
    let from = dispatch_checkpoint::read(db, name).await?;
    let horizon = crate::projector::horizon(db, views).await?;
    if horizon <= from {
        return Ok(PassEvents {
            from,
            events: Vec::new(),
            full: false,
        });
    }
    let mut events = log.read_after(from, PASS_EVENTS_MAX).await?;
    let read = events.len();
    events.retain(|event| event.position <= horizon);
    Ok(PassEvents {
        from,
        full: read == PASS_EVENTS_MAX && events.len() == read,
        events,
    })
}
