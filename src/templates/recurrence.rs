//! Recurrence rules in store-local time, and the instants they produce.
//!
//! DST: a local time that does not exist on a day (spring-forward gap, e.g. 02:30)
//! happens at the first valid minute after the gap; a local time that occurs twice
//! (fall-back overlap) happens once, at its first occurrence.

use chrono::{
    DateTime, Datelike, Duration, LocalResult, NaiveDate, NaiveTime, TimeZone, Utc, Weekday,
};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use crate::{error::FieldError, input::rules::CrossFieldRules, stores::Target};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Frequency {
    Daily,
    Weekly,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Day {
    Mon,
    Tue,
    Wed,
    Thu,
    Fri,
    Sat,
    Sun,
}

impl Day {
    fn weekday(self) -> Weekday {
        match self {
            Self::Mon => Weekday::Mon,
            Self::Tue => Weekday::Tue,
            Self::Wed => Weekday::Wed,
            Self::Thu => Weekday::Thu,
            Self::Fri => Weekday::Fri,
            Self::Sat => Weekday::Sat,
            Self::Sun => Weekday::Sun,
        }
    }
}

/// "Daily at 08:00" or "weekly on Mon and Thu at 07:30", in each store's local time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Recurrence {
    pub frequency: Frequency,
    /// Local time of day, `HH:MM`.
    #[schema(pattern = "^([01]?[0-9]|2[0-3]):[0-5][0-9]$")]
    pub at: String,
    /// For weekly schedules.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub weekdays: Vec<Day>,
    /// From the occurrence to due; default: the template's due window.
    #[serde(default, deserialize_with = "crate::input::optional_integer")]
    #[schema(minimum = 5, maximum = 43200)]
    pub due_window_minutes: Option<i32>,
    /// Which stores; default all.
    #[serde(default)]
    pub target: Option<Target>,
}

impl CrossFieldRules for Recurrence {
    fn cross_field_rules() -> Vec<serde_json::Value> {
        // A weekly schedule names at least one day.
        vec![json!({ "anyOf": [
            { "properties": { "frequency": { "const": "daily" } } },
            { "required": ["weekdays"], "properties": { "weekdays": { "minItems": 1 } } },
        ] })]
    }
}

impl Recurrence {
    pub fn time_of_day(&self) -> Option<NaiveTime> {
        NaiveTime::parse_from_str(&self.at, "%H:%M").ok()
    }

    pub fn validate(&self, field: &str, errors: &mut Vec<FieldError>) {
        if self.time_of_day().is_none() {
            errors.push(FieldError::new(
                format!("{field}.at"),
                "must be HH:MM (00:00-23:59)",
            ));
        }
        if self.frequency == Frequency::Weekly && self.weekdays.is_empty() {
            errors.push(FieldError::new(
                format!("{field}.weekdays"),
                "a weekly schedule names at least one day",
            ));
        }
        if let Some(target) = &self.target {
            target.validate(&format!("{field}.target"), errors);
        }
        if self
            .due_window_minutes
            .is_some_and(|m| !(5..=43_200).contains(&m))
        {
            errors.push(FieldError::new(
                format!("{field}.due_window_minutes"),
                "must be 5-43200",
            ));
        }
    }

    fn runs_on(&self, date: NaiveDate) -> bool {
        match self.frequency {
            Frequency::Daily => true,
            Frequency::Weekly => self.weekdays.iter().any(|d| d.weekday() == date.weekday()),
        }
    }

    /// Occurrences in `(from, to]` for a store in `tz`, oldest first, with the local
    /// date each belongs to (closure dates are local).
    pub fn occurrences(
        &self,
        tz: Tz,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Vec<(NaiveDate, DateTime<Utc>)> {
        let Some(time) = self.time_of_day() else {
            return Vec::new();
        };
        let first = from.with_timezone(&tz).date_naive() - Duration::days(1);
        let last = to.with_timezone(&tz).date_naive() + Duration::days(1);
        let mut out = Vec::new();
        let mut date = first;
        while date <= last {
            if self.runs_on(date)
                && let Some(at) = local_instant(tz, date, time)
                && at > from
                && at <= to
            {
                out.push((date, at));
            }
            date += Duration::days(1);
        }
        out
    }
}

/// The instant of a local wall-clock time, resolving DST gaps and overlaps.
pub fn local_instant(tz: Tz, date: NaiveDate, time: NaiveTime) -> Option<DateTime<Utc>> {
    let naive = date.and_time(time);
    match tz.from_local_datetime(&naive) {
        LocalResult::Single(at) => Some(at.with_timezone(&Utc)),
        LocalResult::Ambiguous(first, _) => Some(first.with_timezone(&Utc)),
        LocalResult::None => {
            // Inside a gap: the first minute that exists after it.
            (1..=180).find_map(
                |m| match tz.from_local_datetime(&(naive + Duration::minutes(m))) {
                    LocalResult::Single(at) => Some(at.with_timezone(&Utc)),
                    LocalResult::Ambiguous(first, _) => Some(first.with_timezone(&Utc)),
                    LocalResult::None => None,
                },
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn daily(at: &str) -> Recurrence {
        Recurrence {
            frequency: Frequency::Daily,
            at: at.into(),
            weekdays: Vec::new(),
            due_window_minutes: None,
            target: None,
        }
    }

    fn utc(s: &str) -> DateTime<Utc> {
        s.parse().expect("instant")
    }

    #[test]
    fn spring_forward_gap_moves_to_the_first_valid_minute() {
        // Berlin, 2026-03-29: 02:00 → 03:00. 02:30 does not exist.
        let tz: Tz = "Europe/Berlin".parse().expect("tz");
        let got = daily("02:30").occurrences(
            tz,
            utc("2026-03-28T12:00:00Z"),
            utc("2026-03-30T12:00:00Z"),
        );
        let instants: Vec<DateTime<Utc>> = got.iter().map(|(_, at)| *at).collect();
        assert_eq!(
            instants,
            vec![utc("2026-03-29T01:00:00Z"), utc("2026-03-30T00:30:00Z")]
        );
    }

    #[test]
    fn fall_back_overlap_happens_once() {
        // Berlin, 2026-10-25: 03:00 → 02:00. 02:30 occurs twice; schedule it once.
        let tz: Tz = "Europe/Berlin".parse().expect("tz");
        let got = daily("02:30").occurrences(
            tz,
            utc("2026-10-24T12:00:00Z"),
            utc("2026-10-25T12:00:00Z"),
        );
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].1, utc("2026-10-25T00:30:00Z"));
        // A normal time on that day is 25 hours after the previous day's.
        let eight = daily("08:00").occurrences(
            tz,
            utc("2026-10-23T12:00:00Z"),
            utc("2026-10-25T12:00:00Z"),
        );
        assert_eq!(eight[1].1 - eight[0].1, Duration::hours(25));
    }

    #[test]
    fn weekly_schedules_pick_their_days_in_local_time() {
        let tz: Tz = "Asia/Vladivostok".parse().expect("tz");
        let rule = Recurrence {
            frequency: Frequency::Weekly,
            at: "07:30".into(),
            weekdays: vec![Day::Mon, Day::Thu],
            due_window_minutes: None,
            target: None,
        };
        // Week of Mon 2026-11-23.
        let got = rule.occurrences(tz, utc("2026-11-22T00:00:00Z"), utc("2026-11-29T00:00:00Z"));
        let dates: Vec<String> = got.iter().map(|(d, _)| d.to_string()).collect();
        assert_eq!(dates, vec!["2026-11-23", "2026-11-26"]);
        // 07:30 in Vladivostok (UTC+10) is 21:30 UTC the day before.
        assert_eq!(got[0].1, utc("2026-11-22T21:30:00Z"));
    }
}
