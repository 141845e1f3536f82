//! What the API accepts, checked where a request is read, once for every field of its
//! kind: instants and days inside the calendar the business works in (and PostgreSQL
//! can store), and no NUL character in any text (PostgreSQL refuses it in `text` and
//! `jsonb`). The OpenAPI document states the same bounds (`pattern` on the fields that
//! use these readers), so it cannot promise more than the server takes.

pub mod objects;
pub mod rules;
pub mod url;

use std::sync::LazyLock;

use chrono::{DateTime, Datelike, FixedOffset, NaiveDate, NaiveDateTime, Utc};
use regex::Regex;
use serde::{Deserialize, Deserializer, de::Error as _};

use crate::error::FieldError;

/// Years an instant or a day sent to the API may fall in.
pub const FIRST_YEAR: i32 = 2000;
pub const LAST_YEAR: i32 = 2099;

/// The OpenAPI `pattern` of an instant or day in [`FIRST_YEAR`]..=[`LAST_YEAR`]
/// (the attributes repeat it as a literal).
pub const YEAR_PATTERN: &str = "^20[0-9]{2}-";

fn in_calendar(year: i32) -> Result<(), String> {
    if (FIRST_YEAR..=LAST_YEAR).contains(&year) {
        Ok(())
    } else {
        Err(format!("must be in the years {FIRST_YEAR} to {LAST_YEAR}"))
    }
}

/// Whether an instant is one the API may have stored and so put in a cursor: the
/// calendar's years as written, moved by a UTC offset or a due window past its edges.
pub fn within_reach(at: &DateTime<Utc>) -> bool {
    ((FIRST_YEAR - 1)..=(LAST_YEAR + 1)).contains(&at.year())
}

/// An RFC 3339 instant as sent, checked by the year it was written in, in UTC.
pub fn written_rfc3339(raw: &str) -> Option<DateTime<Utc>> {
    rfc3339(raw).ok().and_then(|at| written_instant(at).ok())
}

/// An instant as JSON Schema's `format: date-time` spells it (RFC 3339 §5.6): chrono's
/// parser also takes a space for the `T` and U+2212 for the offset's minus, and serde's
/// reader unpadded fields and `UTC`, which the document does not admit.
fn rfc3339(raw: &str) -> Result<DateTime<FixedOffset>, String> {
    let shape = || {
        "must be an RFC 3339 date-time, YYYY-MM-DDTHH:MM:SS[.fraction] and Z or ±HH:MM".to_owned()
    };
    if !raw.is_ascii() || !matches!(raw.as_bytes().get(10), Some(b'T' | b't')) {
        return Err(shape());
    }
    DateTime::parse_from_rfc3339(raw).map_err(|_| shape())
}

/// A day as JSON Schema's `format: date` spells it, `YYYY-MM-DD` (serde's reader also
/// takes unpadded fields and spaces).
fn full_date(raw: &str) -> Result<NaiveDate, String> {
    let shape = || "must be a day, YYYY-MM-DD".to_owned();
    let digits_at =
        |range: std::ops::Range<usize>| raw.as_bytes()[range].iter().all(u8::is_ascii_digit);
    if raw.len() != 10
        || !raw.is_ascii()
        || raw.as_bytes()[4] != b'-'
        || raw.as_bytes()[7] != b'-'
        || !(digits_at(0..4) && digits_at(5..7) && digits_at(8..10))
    {
        return Err(shape());
    }
    NaiveDate::parse_from_str(raw, "%Y-%m-%d").map_err(|_| shape())
}

/// A day in the business calendar.
pub fn check_day(day: &NaiveDate) -> Result<(), String> {
    in_calendar(day.year())
}

/// An instant as sent, checked by the year it was written in (what the documented
/// pattern can see), then taken to UTC: `2000-01-01T00:00:02+02:01` is in the calendar
/// although it is 1999 in UTC (PostgreSQL stores either).
fn written_instant(at: DateTime<FixedOffset>) -> Result<DateTime<Utc>, String> {
    in_calendar(at.year())?;
    Ok(at.with_timezone(&Utc))
}

fn calendar_instant(raw: &str) -> Result<DateTime<Utc>, String> {
    written_instant(rfc3339(raw)?)
}

/// `deserialize_with` for an instant field.
pub fn instant<'de, D: Deserializer<'de>>(d: D) -> Result<DateTime<Utc>, D::Error> {
    calendar_instant(&String::deserialize(d)?).map_err(D::Error::custom)
}

/// `deserialize_with` for an optional instant field (with `#[serde(default)]`).
pub fn optional_instant<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<DateTime<Utc>>, D::Error> {
    Option::<String>::deserialize(d)?
        .map(|raw| calendar_instant(&raw))
        .transpose()
        .map_err(D::Error::custom)
}

/// The characters free text may not consist of only: Unicode White_Space, which
/// `str::trim` removes, spelled as a regular-expression class body. Documented patterns
/// use it instead of `\s`, which means a different set in ECMAScript, Python and Rust.
pub const BLANK: &str =
    "\\t-\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000";

/// Optional free text: at most `max` characters as sent (what `maxLength` counts), kept
/// trimmed; blank means none.
pub fn optional_text(
    field: &str,
    text: Option<String>,
    max: usize,
) -> Result<Option<String>, FieldError> {
    match text {
        Some(text) if text.chars().count() > max => Err(FieldError::new(
            field,
            format!("must be at most {max} characters"),
        )),
        text => Ok(text.map(|t| t.trim().to_owned()).filter(|t| !t.is_empty())),
    }
}

/// Required free text: 1-`max` characters as sent, not all [`BLANK`]; kept trimmed.
pub fn required_text(field: &str, text: &str, max: usize) -> Result<String, FieldError> {
    if text.chars().count() > max || text.trim().is_empty() {
        return Err(FieldError::new(
            field,
            format!("must be 1-{max} characters, not all blank"),
        ));
    }
    Ok(text.trim().to_owned())
}

/// A string's shape: one regular expression that is both the OpenAPI `pattern` and the
/// server's check, so the document cannot promise more or less than the server takes.
pub struct Shape {
    pattern: String,
    regex: Regex,
}

impl Shape {
    /// # Panics
    /// When the pattern does not compile (a constant: caught by every test using it).
    pub fn new(pattern: String) -> Self {
        let regex = Regex::new(&pattern).expect("a shape's pattern compiles");
        Self { pattern, regex }
    }

    pub fn pattern(&self) -> &str {
        &self.pattern
    }

    pub fn admits(&self, raw: &str) -> bool {
        self.regex.is_match(raw)
    }

    /// The OpenAPI schema of a string of this shape; callers add the rest.
    pub fn schema(&self) -> utoipa::openapi::schema::ObjectBuilder {
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some(self.pattern()))
    }
}

/// A real day of the business calendar, `YYYY-MM-DD` (a pattern fragment): months of
/// their length, 29 February in leap years (every fourth year from 2000 to 2099).
pub const DAY: &str = "(20[0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|1[0-9]|2[0-8])|20[0-9]{2}-(0[13-9]|1[0-2])-(29|30)|20[0-9]{2}-(0[13578]|1[02])-31|20([02468][048]|[13579][26])-02-29)";

/// `HH:MM` of a day (a pattern fragment), also a UTC offset's spelling.
pub const HOUR_MINUTE: &str = "([01][0-9]|2[0-3]):[0-5][0-9]";

/// `:SS[.fraction]` (a pattern fragment).
pub const SECONDS: &str = ":[0-5][0-9](\\.[0-9]{1,9})?";

/// A store-local date and time, `YYYY-MM-DDTHH:MM:SS[.fraction]`. No JSON Schema
/// `format` says "without an offset".
pub static LOCAL: LazyLock<Shape> =
    LazyLock::new(|| Shape::new(format!("^{DAY}T{HOUR_MINUTE}{SECONDS}$")));

/// A store-local date and time as [`LOCAL`] spells it.
fn local(raw: &str) -> Result<NaiveDateTime, String> {
    let shape = || {
        format!(
            "must be a local date and time YYYY-MM-DDTHH:MM:SS in the years {FIRST_YEAR} to {LAST_YEAR}"
        )
    };
    if !LOCAL.admits(raw) {
        return Err(shape());
    }
    NaiveDateTime::parse_from_str(raw, "%Y-%m-%dT%H:%M:%S%.f").map_err(|_| shape())
}

/// `deserialize_with` for an optional store-local date and time.
pub fn optional_local<'de, D: Deserializer<'de>>(d: D) -> Result<Option<NaiveDateTime>, D::Error> {
    Option::<String>::deserialize(d)?
        .map(|raw| local(&raw))
        .transpose()
        .map_err(D::Error::custom)
}

/// `schema_with` for an optional store-local date and time.
pub fn local_schema() -> utoipa::openapi::schema::Object {
    use utoipa::openapi::schema::{SchemaType, Type};
    LOCAL
        .schema()
        .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
        .examples(["2026-12-01T18:00:00"])
        .build()
}

fn calendar_day(raw: &str) -> Result<NaiveDate, String> {
    let day = full_date(raw)?;
    check_day(&day)?;
    Ok(day)
}

/// `deserialize_with` for a day field.
pub fn day<'de, D: Deserializer<'de>>(d: D) -> Result<NaiveDate, D::Error> {
    calendar_day(&String::deserialize(d)?).map_err(D::Error::custom)
}

/// `deserialize_with` for an optional day field (with `#[serde(default)]`).
pub fn optional_day<'de, D: Deserializer<'de>>(d: D) -> Result<Option<NaiveDate>, D::Error> {
    Option::<String>::deserialize(d)?
        .map(|raw| calendar_day(&raw))
        .transpose()
        .map_err(D::Error::custom)
}

/// Whether JSON text holds a NUL character in a string (`\u0000`; a raw NUL byte is
/// not JSON at all). An escaped backslash followed by `u0000` is just text.
pub fn json_has_nul(json: &[u8]) -> bool {
    let needle = b"u0000";
    let mut at = 0;
    while let Some(found) = json[at..]
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + at)
    {
        let backslashes = json[..found]
            .iter()
            .rev()
            .take_while(|&&b| b == b'\\')
            .count();
        if backslashes % 2 == 1 {
            return true;
        }
        at = found + 1;
    }
    false
}

/// The path of the first string holding a NUL in a JSON document (`title`,
/// `items[3].label`; `body` for the document itself), for the problem's field error.
pub fn nul_path(json: &serde_json::Value) -> Option<String> {
    fn walk(value: &serde_json::Value, path: &str) -> Option<String> {
        let here = || {
            if path.is_empty() {
                "body".to_owned()
            } else {
                path.to_owned()
            }
        };
        match value {
            serde_json::Value::String(s) if s.contains('\0') => Some(here()),
            serde_json::Value::Array(items) => items
                .iter()
                .enumerate()
                .find_map(|(i, item)| walk(item, &format!("{path}[{i}]"))),
            serde_json::Value::Object(fields) => fields.iter().find_map(|(key, item)| {
                if key.contains('\0') {
                    return Some(here());
                }
                let path = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                walk(item, &path)
            }),
            _ => None,
        }
    }
    walk(json, "")
}

/// `deserialize_with` for an integer field. JSON Schema's `integer` (which the OpenAPI
/// document states) includes numbers written with a zero fraction, such as `5.0`, so
/// they are accepted too; any other fraction, or a value outside the type, is refused.
pub fn integer<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<i64> + TryFrom<u64>,
{
    struct IntegerVisitor<T>(std::marker::PhantomData<T>);

    impl<T: TryFrom<i64> + TryFrom<u64>> serde::de::Visitor<'_> for IntegerVisitor<T> {
        type Value = T;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("an integer")
        }

        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<T, E> {
            T::try_from(v).map_err(|_| E::custom(format!("{v} is out of range")))
        }

        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<T, E> {
            T::try_from(v).map_err(|_| E::custom(format!("{v} is out of range")))
        }

        fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<T, E> {
            // Integral and within ±2^53, where every integer is exact in a double.
            const EXACT: f64 = 9_007_199_254_740_992.0;
            if v.fract() == 0.0 && v.abs() <= EXACT {
                self.visit_i64(v as i64)
            } else {
                Err(E::custom(format!("{v} is not an integer")))
            }
        }
    }

    deserializer.deserialize_any(IntegerVisitor(std::marker::PhantomData))
}

/// `deserialize_with` for an optional integer field (with `#[serde(default)]`).
pub fn optional_integer<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<i64> + TryFrom<u64>,
{
    #[derive(Deserialize)]
    struct Integer<T: TryFrom<i64> + TryFrom<u64>>(#[serde(deserialize_with = "integer")] T);
    Ok(Option::<Integer<T>>::deserialize(deserializer)?.map(|Integer(v)| v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_escapes_are_told_from_escaped_backslashes() {
        assert!(json_has_nul(br#"{"title": "a\u0000b"}"#));
        assert!(json_has_nul(br#"{"title": "\\\u0000"}"#));
        assert!(!json_has_nul(br#"{"title": "\\u0000"}"#));
        assert!(!json_has_nul(br#"{"title": "u0000"}"#));
        assert!(!json_has_nul(br#"{"n": 10000}"#));
    }

    #[test]
    fn the_nul_is_found_by_path() {
        let value: serde_json::Value =
            serde_json::from_str(r#"{"a": 1, "items": [{"x": "ok"}, {"x": "b\u0000"}]}"#)
                .expect("json");
        assert_eq!(nul_path(&value).as_deref(), Some("items[1].x"));
        let value: serde_json::Value = serde_json::from_str(r#""\u0000""#).expect("json");
        assert_eq!(nul_path(&value).as_deref(), Some("body"));
    }

    #[test]
    fn instants_outside_the_calendar_are_refused() {
        let read = |s: &str| instant(serde_json::Value::String(s.to_owned()));
        assert!(read("2026-12-02T10:00:00Z").is_ok());
        assert!(read("1999-12-31T23:59:59Z").is_err());
        assert!(read("2100-01-01T00:00:00Z").is_err());
        assert!(read("+200000-01-01T00:00:00Z").is_err());
        // The year as written, whatever the offset makes of it in UTC.
        assert!(read("2000-01-01T00:00:02+02:01").is_ok());
        assert!(read("2099-12-31T23:00:00-05:00").is_ok());
        let day = |s: &str| super::day(serde_json::Value::String(s.to_owned()));
        assert!(day("2026-12-24").is_ok());
        assert!(day("-262143-01-01").is_err());
        assert!(day("0000-01-01").is_err());
    }

    /// Only what `format: date-time` and `format: date` admit; serde's chrono readers
    /// take more.
    #[test]
    fn instants_and_days_have_the_documented_spelling() {
        let read = |s: &str| instant(serde_json::Value::String(s.to_owned()));
        for ok in [
            "2026-12-02T10:00:00Z",
            "2026-12-02t10:00:00z",
            "2026-12-02T10:00:00.123456789+05:30",
            "2026-12-02T10:00:00-00:00",
        ] {
            assert!(read(ok).is_ok(), "{ok}");
        }
        for bad in [
            "2026-12-02 10:00:00Z",
            "2026-12-2T10:00:00Z",
            "2026-12-02T1:00:00Z",
            "2026-12-02T10:00:00UTC",
            "2026-12-02T10:00:00 +02:00",
            "2026-12-02T10:00:00+0200",
            "2026-12-02T10:00:00\u{2212}02:00",
            "2026-12-02T10:00Z",
            "2026-12-02T10:00:00",
            "2026-02-30T10:00:00Z",
        ] {
            assert!(read(bad).is_err(), "{bad}");
        }
        let day = |s: &str| super::day(serde_json::Value::String(s.to_owned()));
        for bad in [
            "2026-12-2",
            "2026-1-02",
            "2026-12-02 ",
            " 2026-12-02",
            "2026 -12-02",
            "2026-02-30",
            "２026-12-02",
        ] {
            assert!(day(bad).is_err(), "{bad}");
        }
        assert!(day("2028-02-29").is_ok());
    }

    #[test]
    fn local_times_have_one_spelling_and_real_days() {
        for ok in [
            "2026-12-01T18:00:00",
            "2028-02-29T00:00:00",
            "2000-02-29T23:59:59.5",
            "2099-12-31T23:59:59.123456789",
            "2026-04-30T07:30:00",
        ] {
            assert!(local(ok).is_ok(), "{ok}");
        }
        for bad in [
            "2026-02-29T10:00:00",
            "2026-04-31T10:00:00",
            "2026-12-01T24:00:00",
            "2026-12-01T18:00",
            "2026-12-01 18:00:00",
            "2026-12-01T18:00:60",
            "2026-12-01T18:00:00Z",
            "2026-12-01T18:00:00.",
            "1999-12-31T10:00:00",
            "+2026-12-01T18:00:00",
            "2009-\u{c3}g.3",
        ] {
            assert!(local(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn integers_may_be_written_with_a_zero_fraction() {
        #[derive(serde::Deserialize)]
        struct Body {
            #[serde(deserialize_with = "super::integer")]
            n: u32,
            #[serde(default, deserialize_with = "super::optional_integer")]
            m: Option<i32>,
        }
        let read = |json: &str| serde_json::from_str::<Body>(json).map(|b| (b.n, b.m));
        assert_eq!(read(r#"{"n": 5, "m": -2.0}"#).ok(), Some((5, Some(-2))));
        assert_eq!(read(r#"{"n": 5.0, "m": null}"#).ok(), Some((5, None)));
        assert_eq!(read(r#"{"n": 1440.0}"#).ok(), Some((1440, None)));
        for bad in [
            r#"{"n": 5.5}"#,
            r#"{"n": -1}"#,
            r#"{"n": 4294967296}"#,
            r#"{"n": 1e300}"#,
            r#"{"n": "5"}"#,
        ] {
            assert!(read(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn blank_is_what_trim_removes() {
        let blank = Regex::new(&format!("^[{BLANK}]$")).expect("class");
        for c in (0..=0x10_ffff).filter_map(char::from_u32) {
            assert_eq!(
                blank.is_match(c.encode_utf8(&mut [0; 4])),
                c.is_whitespace(),
                "{c:?}"
            );
        }
        assert_eq!(required_text("t", " \u{85}\u{3000} ", 5).ok(), None);
        assert_eq!(
            required_text("t", "\u{feff}", 5).ok().as_deref(),
            Some("\u{feff}")
        );
        assert_eq!(required_text("t", " abc ", 5).ok().as_deref(), Some("abc"));
        assert_eq!(optional_text("t", Some(" \t ".into()), 3).ok(), Some(None));
        assert!(optional_text("t", Some("abcd".into()), 3).is_err());
    }
}
