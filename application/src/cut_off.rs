//! When a shop's daily remittance cut-off falls, in its own time zone (CM-10).

use chrono::{DateTime, Days, LocalResult, NaiveDate, Offset, TimeZone, Utc};
use chrono_tz::Tz;

use caisse_domain::merchant::CutOffSchedule;

use crate::error::AppError;

/// The IANA time zone of a schedule; an unknown name is a field error.
pub fn time_zone(schedule: &CutOffSchedule) -> Result<Tz, AppError> {
    schedule
        .time_zone
        .parse::<Tz>()
        .map_err(|_| AppError::Invalid {
            field: "timeZone",
            code: "INVALID_TIME_ZONE",
            message: format!(
                "{:?} is not an IANA time zone name such as Europe/Paris",
                schedule.time_zone
            ),
        })
}

/// The instant of the cut-off of `business_date`: its local time on that day.
/// When a clock change skips that local time, the cut-off happens at the same
/// wall-clock time read with the offset in force before the change; when it
/// repeats, at the first occurrence.
pub fn cut_off_instant(schedule: &CutOffSchedule, business_date: NaiveDate) -> DateTime<Utc> {
    // Zones in events were checked when recorded; a zone that a later tz database
    // dropped falls back to UTC rather than stopping every cut-off.
    let zone = time_zone(schedule).unwrap_or(Tz::UTC);
    let local = business_date.and_time(schedule.time);
    match zone.from_local_datetime(&local) {
        LocalResult::Single(at) | LocalResult::Ambiguous(at, _) => at.with_timezone(&Utc),
        LocalResult::None => {
            // A gap is at most a few hours: the offset three hours earlier is the
            // one in force before it.
            let before = local - chrono::Duration::hours(3);
            let offset_seconds = zone
                .from_local_datetime(&before)
                .earliest()
                .map(|at| at.offset().fix().local_minus_utc())
                .unwrap_or(0);
            local.and_utc() - chrono::Duration::seconds(i64::from(offset_seconds))
        }
    }
}

/// The first cut-off strictly after `after`: its business date and instant.
pub fn next_cut_off(schedule: &CutOffSchedule, after: DateTime<Utc>) -> (NaiveDate, DateTime<Utc>) {
    let zone = time_zone(schedule).unwrap_or(Tz::UTC);
    let mut date = after.with_timezone(&zone).date_naive();
    loop {
        let at = cut_off_instant(schedule, date);
        if at > after {
            return (date, at);
        }
        date = date + Days::new(1);
    }
}

/// The cut-off that follows the one of `business_date`.
pub fn following_cut_off(
    schedule: &CutOffSchedule,
    business_date: NaiveDate,
) -> (NaiveDate, DateTime<Utc>) {
    let date = business_date + Days::new(1);
    (date, cut_off_instant(schedule, date))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::NaiveTime;

    fn paris() -> CutOffSchedule {
        CutOffSchedule::default()
    }

    #[test]
    fn the_default_cut_off_is_22_00_in_paris_in_winter_and_summer() {
        let winter = NaiveDate::from_ymd_opt(2026, 3, 2).unwrap();
        assert_eq!(
            cut_off_instant(&paris(), winter),
            Utc.with_ymd_and_hms(2026, 3, 2, 21, 0, 0).unwrap()
        );
        let summer = NaiveDate::from_ymd_opt(2026, 7, 1).unwrap();
        assert_eq!(
            cut_off_instant(&paris(), summer),
            Utc.with_ymd_and_hms(2026, 7, 1, 20, 0, 0).unwrap()
        );
    }

    #[test]
    fn the_next_cut_off_is_today_before_it_and_tomorrow_after_it() {
        let morning = Utc.with_ymd_and_hms(2026, 3, 2, 10, 0, 0).unwrap();
        assert_eq!(
            next_cut_off(&paris(), morning).0,
            NaiveDate::from_ymd_opt(2026, 3, 2).unwrap()
        );
        let night = Utc.with_ymd_and_hms(2026, 3, 2, 21, 0, 0).unwrap();
        assert_eq!(
            next_cut_off(&paris(), night).0,
            NaiveDate::from_ymd_opt(2026, 3, 3).unwrap()
        );
    }

    #[test]
    fn a_cut_off_inside_a_skipped_hour_still_happens_that_day() {
        // Paris skips 02:00–03:00 on 2026-03-29.
        let schedule = CutOffSchedule {
            time: NaiveTime::from_hms_opt(2, 30, 0).unwrap(),
            time_zone: "Europe/Paris".into(),
        };
        let date = NaiveDate::from_ymd_opt(2026, 3, 29).unwrap();
        let at = cut_off_instant(&schedule, date);
        assert_eq!(at, Utc.with_ymd_and_hms(2026, 3, 29, 1, 30, 0).unwrap());
    }

    #[test]
    fn unknown_time_zones_are_refused() {
        let schedule = CutOffSchedule {
            time_zone: "Mars/Olympus".into(),
            ..paris()
        };
        assert!(time_zone(&schedule).is_err());
    }
}
