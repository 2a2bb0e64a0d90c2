//! The retention use case (CM-12): record that the online views drop what is older
//! than the configured number of months. The projections do the deleting when they
//! reach the event, so a rebuild of the views trims them at the same point.

use std::collections::HashMap;
use std::sync::Arc;

use caisse_domain::retention::{
    RetentionCommand, RetentionError, RetentionEvent, ViewRetention, VIEW_RETENTION_ID,
};
use chrono::{DateTime, Months, NaiveDate, Utc};
use cqrs_es::persist::PersistedEventRepository;
use cqrs_es::Aggregate;

use crate::command_runner::CommandRunner;
use crate::context::METADATA_ACTOR;
use crate::error::AppError;
use crate::ports::{EventLog, ProjectionWaiter};

/// Actor recorded on the events of a retention run that names no other.
pub const RETENTION_ACTOR: &str = "system:retention";

/// What one run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetentionOutcome {
    /// Rows created before this date (UTC) are no longer in the online views.
    pub created_before: NaiveDate,
    pub retention_months: u32,
    /// False when the views were already trimmed up to this date or a later one:
    /// nothing was appended.
    pub trimmed: bool,
    /// The date the views are trimmed up to after this run (the previous one when
    /// `trimmed` is false).
    pub trimmed_before: Option<NaiveDate>,
}

// The error enum lives in the domain and `AppError` in this crate; the command
// runner needs the conversion, and the retention is the only user of it.
impl From<RetentionError> for AppError {
    fn from(error: RetentionError) -> Self {
        AppError::Invalid {
            field: "retention_months",
            code: error.code(),
            message: error.to_string(),
        }
    }
}

/// The first day the online views keep at `now`: the same calendar day
/// `retention_months` months earlier (UTC), or that month's last day when it is
/// shorter (31 May less 3 months is 28 or 29 February).
pub fn created_before(now: DateTime<Utc>, retention_months: u32) -> Result<NaiveDate, AppError> {
    now.date_naive()
        .checked_sub_months(Months::new(retention_months))
        .ok_or_else(|| {
            AppError::internal(format!(
                "{retention_months} months before {now} is out of the calendar"
            ))
        })
}

pub struct RetentionService<R>
where
    R: PersistedEventRepository,
{
    runner: CommandRunner<R, ViewRetention>,
    retention_months: u32,
    log: Arc<dyn EventLog>,
    waiter: Arc<dyn ProjectionWaiter>,
}

impl<R> RetentionService<R>
where
    R: PersistedEventRepository,
{
    pub fn new(
        repository: R,
        retention_months: u32,
        log: Arc<dyn EventLog>,
        waiter: Arc<dyn ProjectionWaiter>,
    ) -> Self {
        RetentionService {
            runner: CommandRunner::new(repository),
            retention_months,
            log,
            waiter,
        }
    }

    pub fn retention_months(&self) -> u32 {
        self.retention_months
    }

    /// Trims the online views as of `now`, recorded with the system actor. Running
    /// it again the same day appends nothing.
    pub async fn run(&self, now: DateTime<Utc>) -> Result<RetentionOutcome, AppError> {
        self.run_as(now, RETENTION_ACTOR).await
    }

    /// `run`, with the actor to record (e.g. `cli:retention` for an operator).
    pub async fn run_as(
        &self,
        now: DateTime<Utc>,
        actor: &str,
    ) -> Result<RetentionOutcome, AppError> {
        let created_before = created_before(now, self.retention_months)?;
        let command = RetentionCommand::Trim {
            created_before,
            retention_months: self.retention_months,
            occurred_at: now,
        };
        let metadata = HashMap::from([(METADATA_ACTOR.to_string(), actor.to_string())]);
        let executed = self
            .runner
            .execute(VIEW_RETENTION_ID, command, metadata)
            .await?;
        let trimmed = executed
            .events
            .iter()
            .any(|envelope| matches!(envelope.payload, RetentionEvent::OnlineViewsTrimmed { .. }));
        if trimmed {
            // Like every command: answer once the views have applied the event, so
            // the caller (an operator, a test) sees the trimmed views.
            let position = self
                .log
                .position_of(
                    ViewRetention::TYPE,
                    VIEW_RETENTION_ID,
                    executed.last_sequence(),
                )
                .await?;
            self.waiter.wait_for(position).await;
        }
        Ok(RetentionOutcome {
            created_before,
            retention_months: self.retention_months,
            trimmed,
            trimmed_before: executed.aggregate.trimmed_before,
        })
    }
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;

    fn date(year: i32, month: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(year, month, day).expect("valid date")
    }

    #[test]
    fn the_cutoff_is_the_same_day_months_earlier() {
        let now = Utc.with_ymd_and_hms(2027, 7, 2, 10, 0, 0).unwrap();
        assert_eq!(created_before(now, 15).unwrap(), date(2026, 4, 2));
        assert_eq!(created_before(now, 1).unwrap(), date(2027, 6, 2));
    }

    #[test]
    fn the_cutoff_is_the_last_day_of_a_shorter_month() {
        let now = Utc.with_ymd_and_hms(2027, 5, 31, 23, 59, 59).unwrap();
        assert_eq!(created_before(now, 3).unwrap(), date(2027, 2, 28));
        let now = Utc.with_ymd_and_hms(2028, 5, 31, 0, 0, 0).unwrap();
        assert_eq!(created_before(now, 3).unwrap(), date(2028, 2, 29));
    }
}
