//! The `ViewRetention` aggregate: the decisions to drop old rows from the online
//! views (FEATURES CM-12), recorded as events so a rebuild of the views replays
//! them at the same place in the log and gives the same, trimmed, views.
//!
//! There is one instance for the whole service (`VIEW_RETENTION_ID`), not one per
//! mode or shop: the retention period is one setting of the deployment and the
//! trim applies to every shop and mode alike, so one stream orders every trim, and
//! two retention jobs racing (two processes, or a scheduler and an operator) meet
//! on the same aggregate: the loser retries on fresh state and appends nothing.
//! The stream grows by at most one event a day, so it stays short enough to load.

use chrono::{DateTime, NaiveDate, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};

/// The id of the one `ViewRetention` aggregate.
pub const VIEW_RETENTION_ID: &str = "online-views";
/// Shortest retention accepted, in months.
pub const RETENTION_MONTHS_MIN: u32 = 1;
/// Longest retention accepted, in months (ten years).
pub const RETENTION_MONTHS_MAX: u32 = 120;
/// Retention when none is configured: 15 months online (CM-12).
pub const RETENTION_MONTHS_DEFAULT: u32 = 15;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetentionCommand {
    /// Drop from the online views what was created before `created_before`.
    Trim {
        created_before: NaiveDate,
        /// The setting `created_before` was computed from, kept for the record.
        retention_months: u32,
        occurred_at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum RetentionEvent {
    /// The online views no longer hold rows created before `created_before`
    /// (payments by creation instant, cash movements by business date). The log
    /// keeps every event.
    OnlineViewsTrimmed {
        created_before: NaiveDate,
        retention_months: u32,
        occurred_at: DateTime<Utc>,
    },
}

impl DomainEvent for RetentionEvent {
    fn event_type(&self) -> String {
        match self {
            RetentionEvent::OnlineViewsTrimmed { .. } => "OnlineViewsTrimmed".to_string(),
        }
    }

    fn event_version(&self) -> String {
        "1".to_string()
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RetentionError {
    #[error(
        "retention_months must be between {RETENTION_MONTHS_MIN} and {RETENTION_MONTHS_MAX}, not {months}"
    )]
    MonthsOutOfRange { months: u32 },
    /// A trim up to a date after its own day would drop rows of today or later.
    #[error("created_before {created_before} is after the day of the trim {today}")]
    CutoffInFuture {
        created_before: NaiveDate,
        today: NaiveDate,
    },
}

impl RetentionError {
    /// Stable code exposed to clients and operators.
    pub fn code(&self) -> &'static str {
        match self {
            RetentionError::MonthsOutOfRange { .. } => "INVALID_RETENTION_MONTHS",
            RetentionError::CutoffInFuture { .. } => "RETENTION_CUTOFF_IN_FUTURE",
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViewRetention {
    /// The online views hold nothing created before this date (None: never trimmed).
    pub trimmed_before: Option<NaiveDate>,
}

impl Aggregate for ViewRetention {
    const TYPE: &'static str = "ViewRetention";
    type Command = RetentionCommand;
    type Event = RetentionEvent;
    type Error = RetentionError;
    type Services = ();

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), Self::Error> {
        match command {
            RetentionCommand::Trim {
                created_before,
                retention_months,
                occurred_at,
            } => {
                if !(RETENTION_MONTHS_MIN..=RETENTION_MONTHS_MAX).contains(&retention_months) {
                    return Err(RetentionError::MonthsOutOfRange {
                        months: retention_months,
                    });
                }
                let today = occurred_at.date_naive();
                if created_before > today {
                    return Err(RetentionError::CutoffInFuture {
                        created_before,
                        today,
                    });
                }
                // Already trimmed up to this date or a later one (a second run the
                // same day, or a longer retention set since): nothing to drop, and
                // rows already dropped cannot come back, so nothing is recorded.
                if self
                    .trimmed_before
                    .is_some_and(|previous| created_before <= previous)
                {
                    return Ok(());
                }
                let event = RetentionEvent::OnlineViewsTrimmed {
                    created_before,
                    retention_months,
                    occurred_at,
                };
                sink.write(event, self).await;
                Ok(())
            }
        }
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            RetentionEvent::OnlineViewsTrimmed { created_before, .. } => {
                self.trimmed_before = Some(created_before);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! Given/when/then tests of the ViewRetention aggregate (cqrs-es `TestFramework`;
    //! `when` is synchronous in cqrs-es 0.5.0, so these are plain `#[test]`s).

    use chrono::TimeZone;
    use cqrs_es::test::TestFramework;

    use super::*;

    fn retention() -> TestFramework<ViewRetention> {
        TestFramework::with(())
    }

    fn date(year: i32, month: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(year, month, day).expect("valid date")
    }

    fn noon(year: i32, month: u32, day: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(year, month, day, 12, 0, 0)
            .single()
            .expect("valid instant")
    }

    fn trim(created_before: NaiveDate, occurred_at: DateTime<Utc>) -> RetentionCommand {
        RetentionCommand::Trim {
            created_before,
            retention_months: 15,
            occurred_at,
        }
    }

    fn trimmed(created_before: NaiveDate, occurred_at: DateTime<Utc>) -> RetentionEvent {
        RetentionEvent::OnlineViewsTrimmed {
            created_before,
            retention_months: 15,
            occurred_at,
        }
    }

    #[test]
    fn a_first_trim_records_its_date() {
        retention()
            .given_no_previous_events()
            .when(trim(date(2026, 4, 2), noon(2027, 7, 2)))
            .then_expect_events(vec![trimmed(date(2026, 4, 2), noon(2027, 7, 2))]);
    }

    #[test]
    fn a_trim_after_the_previous_date_is_recorded() {
        retention()
            .given(vec![trimmed(date(2026, 4, 2), noon(2027, 7, 2))])
            .when(trim(date(2026, 4, 3), noon(2027, 7, 3)))
            .then_expect_events(vec![trimmed(date(2026, 4, 3), noon(2027, 7, 3))]);
    }

    #[test]
    fn a_second_trim_to_the_same_date_records_nothing() {
        retention()
            .given(vec![trimmed(date(2026, 4, 2), noon(2027, 7, 2))])
            .when(trim(date(2026, 4, 2), noon(2027, 7, 2)))
            .then_expect_events(vec![]);
    }

    #[test]
    fn a_trim_to_an_earlier_date_records_nothing() {
        // A longer retention set since the last trim: the rows it would keep are
        // already gone from the views, so there is nothing to do.
        retention()
            .given(vec![trimmed(date(2026, 4, 2), noon(2027, 7, 2))])
            .when(RetentionCommand::Trim {
                created_before: date(2025, 7, 3),
                retention_months: 24,
                occurred_at: noon(2027, 7, 3),
            })
            .then_expect_events(vec![]);
    }

    #[test]
    fn a_retention_of_zero_months_is_refused() {
        retention()
            .given_no_previous_events()
            .when(RetentionCommand::Trim {
                created_before: date(2027, 7, 2),
                retention_months: 0,
                occurred_at: noon(2027, 7, 2),
            })
            .then_expect_error(RetentionError::MonthsOutOfRange { months: 0 });
    }

    #[test]
    fn a_retention_beyond_ten_years_is_refused() {
        retention()
            .given_no_previous_events()
            .when(RetentionCommand::Trim {
                created_before: date(2017, 3, 2),
                retention_months: 121,
                occurred_at: noon(2027, 7, 2),
            })
            .then_expect_error(RetentionError::MonthsOutOfRange { months: 121 });
    }

    #[test]
    fn a_cutoff_after_the_day_of_the_trim_is_refused() {
        retention()
            .given_no_previous_events()
            .when(trim(date(2027, 7, 3), noon(2027, 7, 2)))
            .then_expect_error(RetentionError::CutoffInFuture {
                created_before: date(2027, 7, 3),
                today: date(2027, 7, 2),
            });
    }

    #[test]
    fn the_event_type_string_is_stable() {
        let event = trimmed(date(2026, 4, 2), noon(2027, 7, 2));
        assert_eq!(event.event_type(), "OnlineViewsTrimmed");
        assert_eq!(event.event_version(), "1");
    }

    #[test]
    fn replaying_the_events_gives_the_latest_date() {
        let mut state = ViewRetention::default();
        state.apply(trimmed(date(2026, 4, 2), noon(2027, 7, 2)));
        state.apply(trimmed(date(2026, 4, 3), noon(2027, 7, 3)));
        assert_eq!(state.trimmed_before, Some(date(2026, 4, 3)));
    }
}
