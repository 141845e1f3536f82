//! The store task list's body, written directly instead of through serde: it is the
//! hottest response (50 tasks of 14 fields), and serde_json's escaping of every key and
//! value was a third of the request's CPU. Only a title or a cursor can need escaping;
//! ids, timestamps, enums and numbers are plain ASCII. The bytes are exactly what the
//! derived `Serialize` writes (the tests compare them), which the OpenAPI document
//! describes.

use chrono::{DateTime, Datelike, SecondsFormat, Timelike, Utc};
use uuid::Uuid;

use super::dto::TaskSummaryDto;
use crate::http::pagination::Page;

/// A typical summary is ~420 bytes: one allocation for the whole page.
const BYTES_PER_TASK: usize = 480;

pub fn page(page: &Page<TaskSummaryDto>) -> Vec<u8> {
    let mut out = Vec::with_capacity(64 + page.items.len() * BYTES_PER_TASK);
    out.extend_from_slice(b"{\"items\":[");
    for (i, task) in page.items.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        summary(&mut out, task);
    }
    out.extend_from_slice(b"],\"next_cursor\":");
    match &page.next_cursor {
        Some(cursor) => escaped(&mut out, cursor),
        None => out.extend_from_slice(b"null"),
    }
    out.push(b'}');
    out
}

/// Fields in declaration order, as serde's derive writes them.
fn summary(out: &mut Vec<u8>, task: &TaskSummaryDto) {
    out.extend_from_slice(b"{\"id\":");
    uuid(out, task.id.0);
    out.extend_from_slice(b",\"store_id\":");
    uuid(out, task.store_id.0);
    out.extend_from_slice(b",\"kind\":");
    ascii(out, task.kind.as_str());
    out.extend_from_slice(b",\"source\":");
    ascii(out, task.source.as_str());
    out.extend_from_slice(b",\"title\":");
    escaped(out, &task.title);
    out.extend_from_slice(b",\"status\":");
    ascii(out, task.status.as_str());
    out.extend_from_slice(b",\"priority\":");
    ascii(out, task.priority.as_str());
    out.extend_from_slice(b",\"assignee_id\":");
    optional(out, task.assignee_id.map(|id| id.0), uuid);
    out.extend_from_slice(b",\"review_required\":");
    out.extend_from_slice(if task.review_required {
        b"true"
    } else {
        b"false"
    });
    out.extend_from_slice(b",\"due_at\":");
    timestamp(out, task.due_at);
    out.extend_from_slice(b",\"template_id\":");
    optional(out, task.template_id.map(|id| id.0), uuid);
    out.extend_from_slice(b",\"campaign_id\":");
    optional(out, task.campaign_id.map(|c| c.0), uuid);
    out.extend_from_slice(b",\"completed_at\":");
    optional(out, task.completed_at, timestamp);
    out.extend_from_slice(b",\"version\":");
    out.extend_from_slice(itoa::Buffer::new().format(task.version).as_bytes());
    out.push(b'}');
}

fn optional<T>(out: &mut Vec<u8>, value: Option<T>, write: fn(&mut Vec<u8>, T)) {
    match value {
        Some(value) => write(out, value),
        None => out.extend_from_slice(b"null"),
    }
}

/// A string known to hold no quote, backslash or control character.
fn ascii(out: &mut Vec<u8>, value: &str) {
    out.push(b'"');
    out.extend_from_slice(value.as_bytes());
    out.push(b'"');
}

fn uuid(out: &mut Vec<u8>, id: Uuid) {
    ascii(
        out,
        id.hyphenated().encode_lower(&mut Uuid::encode_buffer()),
    );
}

/// chrono's serde format: RFC 3339, as many fraction digits as needed (0, 3, 6 or 9), `Z`.
/// Written digit by digit: chrono's formatter goes through `fmt` machinery, ~650
/// instructions a timestamp, and the list has two per task.
fn timestamp(out: &mut Vec<u8>, at: DateTime<Utc>) {
    // Each accessor of a `DateTime` converts to local time again: convert once.
    let (date, time) = (at.naive_utc().date(), at.naive_utc().time());
    let nanos = time.nanosecond();
    if !(0..=9999).contains(&date.year()) || nanos >= 1_000_000_000 {
        // Years chrono writes with a sign, and leap seconds: its own formatter.
        return ascii(out, &at.to_rfc3339_opts(SecondsFormat::AutoSi, true));
    }
    out.push(b'"');
    digits(out, date.year().unsigned_abs(), 4);
    out.push(b'-');
    digits(out, date.month(), 2);
    out.push(b'-');
    digits(out, date.day(), 2);
    out.push(b'T');
    digits(out, time.hour(), 2);
    out.push(b':');
    digits(out, time.minute(), 2);
    out.push(b':');
    digits(out, time.second(), 2);
    let fraction = match nanos {
        0 => None,
        n if n % 1_000_000 == 0 => Some((n / 1_000_000, 3)),
        n if n % 1_000 == 0 => Some((n / 1_000, 6)),
        n => Some((n, 9)),
    };
    if let Some((value, width)) = fraction {
        out.push(b'.');
        digits(out, value, width);
    }
    out.extend_from_slice(b"Z\"");
}

/// `value` in decimal, zero-padded to `width` digits (it has no more).
fn digits(out: &mut Vec<u8>, value: u32, width: usize) {
    let start = out.len();
    out.resize(start + width, b'0');
    let mut rest = value;
    for slot in out[start..].iter_mut().rev() {
        // `rest % 10` is a single digit.
        *slot = b'0' + (rest % 10) as u8;
        rest /= 10;
    }
}

fn escaped(out: &mut Vec<u8>, value: &str) {
    // Writing into a Vec cannot fail; serde_json does the JSON escaping.
    let _ = serde_json::to_writer(&mut *out, value);
}

#[cfg(test)]
mod tests {
    use chrono::TimeZone;

    use super::*;
    use crate::{
        ids::{CampaignId, StaffId, StoreId, TaskId, TaskKind, TemplateId},
        tasks::{Priority, TaskSource, TaskStatus},
    };

    fn task(n: usize, title: &str) -> TaskSummaryDto {
        let at = Utc
            .with_ymd_and_hms(2026, 12, 1, 6, 30, 0)
            .single()
            .expect("valid")
            + chrono::Duration::nanoseconds([0, 120_000_000, 123_456_000, 123_456_789][n % 4]);
        let some = n.is_multiple_of(2);
        TaskSummaryDto {
            id: TaskId::generate(),
            store_id: StoreId(Uuid::now_v7()),
            kind: TaskKind::ALL[n % TaskKind::ALL.len()],
            source: TaskSource::ALL[n % TaskSource::ALL.len()],
            title: title.to_owned(),
            status: TaskStatus::ALL[n % TaskStatus::ALL.len()],
            priority: Priority::ALL[n % Priority::ALL.len()],
            assignee_id: some.then(|| StaffId(Uuid::now_v7())),
            review_required: some,
            due_at: at,
            template_id: some.then(|| TemplateId(Uuid::now_v7())),
            campaign_id: (!some).then(CampaignId::generate),
            completed_at: (!some).then_some(at),
            version: [1, 0, -3, i32::MAX][n % 4],
        }
    }

    #[test]
    fn writes_timestamps_as_chrono_does() {
        // A deterministic spread over 1900–2200 and every fraction width.
        let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
        for _ in 0..20_000 {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            let secs = (seed % 9_500_000_000) as i64 - 2_208_988_800;
            let nanos = match seed % 5 {
                0 => 0,
                1 => (seed >> 20) as u32 % 1000 * 1_000_000,
                2 => (seed >> 20) as u32 % 1_000_000 * 1000,
                _ => (seed >> 20) as u32 % 1_000_000_000,
            };
            let at = DateTime::from_timestamp(secs, nanos).expect("in range");
            let mut out = Vec::new();
            timestamp(&mut out, at);
            let expected = serde_json::to_string(&at).expect("serde");
            assert_eq!(String::from_utf8(out).expect("utf-8"), expected);
        }
    }

    #[test]
    fn writes_what_serde_writes() {
        let titles = [
            "Relabel milk",
            "",
            "Quote \" and backslash \\ and slash /",
            "Line\nbreak, tab\t, control \u{1} \u{1f}",
            "Молоко 1 л — акция 🎉",
        ];
        let items: Vec<_> = (0..24).map(|n| task(n, titles[n % titles.len()])).collect();
        for next_cursor in [None, Some("eyJhIjoiYiJ9".to_owned())] {
            for len in [0, 1, items.len()] {
                let page = Page {
                    items: items[..len].to_vec(),
                    next_cursor: next_cursor.clone(),
                };
                let expected = serde_json::to_string(&page).expect("serde");
                let written = String::from_utf8(super::page(&page)).expect("utf-8");
                assert_eq!(written, expected);
            }
        }
    }
}
