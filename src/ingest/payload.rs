//! What senders post, and its validation. Price batches can be a million lines, so
//! their strings borrow from the request body instead of being copied, and field paths
//! are only built for the fields that are wrong.

use std::{borrow::Cow, sync::LazyLock};

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{
    Deserialize, Deserializer, Serialize,
    de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor},
};
use serde_json::json;
use utoipa::ToSchema;

use super::money::{Price, is_iso_4217};
use crate::{
    error::FieldError,
    input::{Shape, rules::CrossFieldRules},
};

/// Field errors reported per request; beyond this the sender has enough to fix.
const MAX_FIELD_ERRORS: usize = 50;
/// Lines per price batch (the body limit bounds it first in practice).
pub const MAX_PRICE_LINES: usize = 2_000_000;
const MAX_TARGETS: usize = 10_000;
const MAX_DELIVERY_LINES: usize = 1_000;

/// `POST /integrations/price-changes`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PriceBatch<'a> {
    /// The sender's id of the batch (idempotency key).
    #[serde(borrow)]
    #[schema(value_type = String, example = "ERP-2026-11-30-001", pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]{1,100}$")]
    pub batch_id: Cow<'a, str>,
    /// When the new prices apply: a wall-clock time in each store's own zone
    /// (`2026-12-01T06:00:00`), or an instant with an offset for every store.
    #[serde(borrow)]
    #[schema(schema_with = effective_at_schema)]
    pub effective_at: Cow<'a, str>,
    #[serde(borrow)]
    #[schema(min_items = 1, max_items = 2_000_000)]
    pub items: Vec<PriceLine<'a>>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PriceLine<'a> {
    #[serde(borrow)]
    #[schema(value_type = String, pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]{1,64}$")]
    pub sku: Cow<'a, str>,
    #[serde(borrow)]
    #[schema(value_type = String, pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]{1,200}$")]
    pub name: Cow<'a, str>,
    /// Exact: a JSON number or a decimal string (`9.99`, `"9.99"`), at most 4
    /// fractional digits, 0 to 9999999999.9999.
    #[schema(schema_with = super::money::price_schema)]
    pub new_price: Price,
    /// ISO 4217, e.g. `EUR`.
    #[serde(borrow)]
    #[schema(schema_with = super::money::currency_schema)]
    pub currency: Cow<'a, str>,
    /// ERP store codes; with `regions` absent too, the line applies to every store.
    #[serde(default, borrow)]
    #[schema(schema_with = target_codes_schema)]
    pub store_codes: Option<Vec<Cow<'a, str>>>,
    /// Region codes.
    #[serde(default, borrow)]
    #[schema(schema_with = target_codes_schema)]
    pub regions: Option<Vec<Cow<'a, str>>>,
}

/// A price line's `store_codes` or `regions`: 1-10,000 codes of 1-32 characters
/// without control characters (left out or null: every store).
fn target_codes_schema() -> utoipa::openapi::schema::Array {
    use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, SchemaType, Type};
    ArrayBuilder::new()
        .schema_type(SchemaType::from_iter([Type::Array, Type::Null]))
        .items(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some("^[^\\x00-\\x1f\\x7f-\\x9f]{1,32}$")),
        )
        .min_items(Some(1))
        .max_items(Some(MAX_TARGETS))
        .build()
}

/// When a price batch applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effective {
    At(DateTime<Utc>),
    /// In each store's own time zone.
    Local(NaiveDateTime),
}

/// `POST /integrations/deliveries`.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Delivery {
    /// The sender's id of the delivery; a re-sent delivery with changes updates its task.
    #[schema(pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]{1,100}$")]
    pub delivery_id: String,
    #[schema(pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]{1,32}$")]
    pub store_code: String,
    #[schema(pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]{1,200}$")]
    pub supplier: String,
    #[serde(deserialize_with = "crate::input::instant")]
    #[schema(pattern = "^20[0-9]{2}-")]
    pub expected_at: DateTime<Utc>,
    /// 1-1,000 lines, none when cancelled.
    #[serde(default)]
    #[schema(max_items = 1000)]
    pub lines: Vec<DeliveryLine>,
    #[serde(default)]
    pub status: Option<DeliveryStatus>,
}

impl CrossFieldRules for Delivery {
    fn cross_field_rules() -> Vec<serde_json::Value> {
        vec![json!({ "anyOf": [
            { "required": ["status"], "properties": { "status": { "const": "cancelled" } } },
            { "required": ["lines"], "properties": { "lines": { "minItems": 1 } } },
        ] })]
    }
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeliveryLine {
    #[schema(pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]{1,64}$")]
    pub sku: String,
    #[serde(deserialize_with = "crate::input::integer")]
    #[schema(minimum = 1, maximum = 1_000_000)]
    pub qty: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    Expected,
    Cancelled,
}

/// `POST /integrations/stock-alerts`.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StockAlert {
    /// The sender's id of the alert (idempotency key).
    #[schema(pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]{1,100}$")]
    pub alert_id: String,
    #[schema(pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]{1,32}$")]
    pub store_code: String,
    #[schema(pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]{1,64}$")]
    pub sku: String,
    #[serde(deserialize_with = "crate::input::integer")]
    #[schema(minimum = -1_000_000_000, maximum = 1_000_000_000)]
    pub on_hand: i64,
}

/// Collects field errors up to a bound; paths are built only for real errors.
#[derive(Default)]
struct Errors(Vec<FieldError>);

impl Errors {
    fn full(&self) -> bool {
        self.0.len() >= MAX_FIELD_ERRORS
    }

    fn push(&mut self, field: impl FnOnce() -> String, message: impl Into<String>) {
        if !self.full() {
            self.0.push(FieldError::new(field(), message));
        }
    }

    /// 1..=max characters, no control characters.
    fn text(&mut self, field: impl FnOnce() -> String, value: &str, max: usize) {
        let len = value.chars().count();
        if !(1..=max).contains(&len) || value.chars().any(char::is_control) {
            self.push(
                field,
                format!("must be 1-{max} characters without control characters"),
            );
        }
    }

    fn finish<T>(self, value: T) -> Result<T, Vec<FieldError>> {
        if self.0.is_empty() {
            Ok(value)
        } else {
            Err(self.0)
        }
    }
}

/// A price batch's fields other than its lines, as the streaming reader returns them.
#[derive(Debug)]
pub struct PriceBatchHeader {
    pub batch_id: String,
    pub effective_at: String,
    /// How many lines `items` held.
    pub lines: usize,
}

/// Reads a price batch line by line: `on_line` sees each line as it is parsed and none
/// is kept, so a batch of any size reads in constant memory. The same rules as
/// `PriceBatch` (unknown fields refused, every field required once).
pub fn read_price_batch<'de, D, F>(
    deserializer: D,
    on_line: F,
) -> Result<PriceBatchHeader, D::Error>
where
    D: Deserializer<'de>,
    F: FnMut(usize, PriceLine<'de>),
{
    deserializer.deserialize_struct(
        "PriceBatch",
        &["batch_id", "effective_at", "items"],
        BatchVisitor { on_line },
    )
}

#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "snake_case")]
enum BatchField {
    BatchId,
    EffectiveAt,
    Items,
}

struct BatchVisitor<F> {
    on_line: F,
}

impl<'de, F: FnMut(usize, PriceLine<'de>)> Visitor<'de> for BatchVisitor<F> {
    type Value = PriceBatchHeader;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a price batch object")
    }

    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<Self::Value, A::Error> {
        let (mut batch_id, mut effective_at, mut lines) = (None, None, None);
        while let Some(field) = map.next_key::<BatchField>()? {
            match field {
                BatchField::BatchId if batch_id.is_some() => {
                    return Err(de::Error::duplicate_field("batch_id"));
                }
                BatchField::BatchId => batch_id = Some(map.next_value::<String>()?),
                BatchField::EffectiveAt if effective_at.is_some() => {
                    return Err(de::Error::duplicate_field("effective_at"));
                }
                BatchField::EffectiveAt => effective_at = Some(map.next_value::<String>()?),
                BatchField::Items if lines.is_some() => {
                    return Err(de::Error::duplicate_field("items"));
                }
                BatchField::Items => {
                    lines = Some(map.next_value_seed(Lines {
                        on_line: &mut self.on_line,
                    })?);
                }
            }
        }
        Ok(PriceBatchHeader {
            batch_id: batch_id.ok_or_else(|| de::Error::missing_field("batch_id"))?,
            effective_at: effective_at.ok_or_else(|| de::Error::missing_field("effective_at"))?,
            lines: lines.ok_or_else(|| de::Error::missing_field("items"))?,
        })
    }
}

struct Lines<'f, F> {
    on_line: &'f mut F,
}

impl<'de, F: FnMut(usize, PriceLine<'de>)> DeserializeSeed<'de> for Lines<'_, F> {
    type Value = usize;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<usize, D::Error> {
        deserializer.deserialize_seq(self)
    }
}

impl<'de, F: FnMut(usize, PriceLine<'de>)> Visitor<'de> for Lines<'_, F> {
    type Value = usize;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("an array of price lines")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<usize, A::Error> {
        let mut n = 0;
        while let Some(line) = seq.next_element::<PriceLine<'de>>()? {
            if n == MAX_PRICE_LINES {
                return Err(de::Error::custom(format!(
                    "a batch holds at most {MAX_PRICE_LINES} lines"
                )));
            }
            (self.on_line)(n, line);
            n += 1;
        }
        Ok(n)
    }
}

/// Validates a price batch as its lines stream by.
#[derive(Default)]
pub struct PriceBatchCheck {
    errors: Errors,
}

impl PriceBatchCheck {
    pub fn line(&mut self, i: usize, line: &PriceLine<'_>) {
        if !self.errors.full() {
            line.validate(i, &mut self.errors);
        }
    }

    pub fn finish(mut self, header: &PriceBatchHeader) -> Result<Effective, Vec<FieldError>> {
        let errors = &mut self.errors;
        errors.text(|| "batch_id".into(), &header.batch_id, 100);
        let effective = parse_effective(&header.effective_at);
        if effective.is_none() {
            errors.push(
                || "effective_at".into(),
                "must be RFC 3339 (with an offset) or a local time like 2026-12-01T06:00:00, in the years 2000-2099",
            );
        }
        if header.lines == 0 {
            errors.push(
                || "items".into(),
                format!("must hold 1-{MAX_PRICE_LINES} lines"),
            );
        }
        self.errors
            .finish(effective.unwrap_or(Effective::At(DateTime::<Utc>::MIN_UTC)))
    }
}

impl PriceLine<'_> {
    fn validate(&self, i: usize, errors: &mut Errors) {
        errors.text(|| format!("items[{i}].sku"), &self.sku, 64);
        errors.text(|| format!("items[{i}].name"), &self.name, 200);
        if !is_iso_4217(&self.currency) {
            errors.push(
                || format!("items[{i}].currency"),
                "must be an ISO 4217 currency code like EUR",
            );
        }
        for (name, list) in [
            ("store_codes", &self.store_codes),
            ("regions", &self.regions),
        ] {
            let Some(list) = list else { continue };
            if list.is_empty() || list.len() > MAX_TARGETS {
                errors.push(
                    || format!("items[{i}].{name}"),
                    format!("must hold 1-{MAX_TARGETS} codes (or be left out for every store)"),
                );
            }
            for (j, code) in list.iter().enumerate() {
                errors.text(|| format!("items[{i}].{name}[{j}]"), code, 32);
            }
        }
    }
}

/// When a price batch applies: a store-local time, minutes or seconds (and a
/// fraction), or an RFC 3339 instant with seconds and an offset (`Z` or `±HH:MM`).
static EFFECTIVE: LazyLock<Shape> = LazyLock::new(|| {
    use crate::input::{DAY, HOUR_MINUTE, SECONDS};
    Shape::new(format!(
        "^{DAY}T{HOUR_MINUTE}({SECONDS}(Z|[+-]{HOUR_MINUTE})?)?$"
    ))
});

fn effective_at_schema() -> utoipa::openapi::schema::Object {
    EFFECTIVE.schema().examples(["2026-12-01T06:00:00"]).build()
}

/// [`EFFECTIVE`]'s spellings; `None` for anything else.
pub fn parse_effective(raw: &str) -> Option<Effective> {
    if !EFFECTIVE.admits(raw) {
        return None;
    }
    if let Some(at) = crate::input::written_rfc3339(raw) {
        return Some(Effective::At(at));
    }
    ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(raw, f).ok())
        .map(Effective::Local)
}

impl Delivery {
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errors = Errors::default();
        errors.text(|| "delivery_id".into(), &self.delivery_id, 100);
        errors.text(|| "store_code".into(), &self.store_code, 32);
        errors.text(|| "supplier".into(), &self.supplier, 200);
        let cancelled = self.status == Some(DeliveryStatus::Cancelled);
        if self.lines.len() > MAX_DELIVERY_LINES || (self.lines.is_empty() && !cancelled) {
            errors.push(
                || "lines".into(),
                format!("must hold 1-{MAX_DELIVERY_LINES} lines (unless cancelled)"),
            );
        }
        for (i, line) in self.lines.iter().enumerate() {
            errors.text(|| format!("lines[{i}].sku"), &line.sku, 64);
            if !(1..=1_000_000).contains(&line.qty) {
                errors.push(|| format!("lines[{i}].qty"), "must be 1-1,000,000");
            }
        }
        errors.finish(())
    }
}

impl StockAlert {
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errors = Errors::default();
        errors.text(|| "alert_id".into(), &self.alert_id, 100);
        errors.text(|| "store_code".into(), &self.store_code, 32);
        errors.text(|| "sku".into(), &self.sku, 64);
        if !(-1_000_000_000..=1_000_000_000).contains(&self.on_hand) {
            errors.push(|| "on_hand".into(), "must be within ±1,000,000,000");
        }
        errors.finish(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn effective_time_is_an_instant_or_local() {
        assert!(matches!(
            parse_effective("2026-12-01T06:00:00Z"),
            Some(Effective::At(_))
        ));
        assert!(matches!(
            parse_effective("2026-12-01T06:00:00"),
            Some(Effective::Local(_))
        ));
        assert!(matches!(
            parse_effective("2026-12-01T06:00"),
            Some(Effective::Local(_))
        ));
        assert!(matches!(
            parse_effective("2000-01-01T00:00:00.25+03:00"),
            Some(Effective::At(at)) if at.to_rfc3339() == "1999-12-31T21:00:00.250+00:00"
        ));
        assert!(matches!(
            parse_effective("2028-02-29T06:00"),
            Some(Effective::Local(_))
        ));
        for refused in [
            "tomorrow",
            "2020-11-31T02:09",
            "2026-02-29T06:00",
            "2026-12-01t06:00:00z",
            "2026-12-01 06:00:00Z",
            "2026-12-01T06:00Z",
            "2026-12-01T06:00:00+24:00",
            "1999-12-31T23:00:00Z",
        ] {
            assert_eq!(parse_effective(refused), None, "{refused}");
        }
    }

    fn stream(body: &str) -> Result<(PriceBatchHeader, Vec<String>), serde_json::Error> {
        let mut skus = Vec::new();
        let mut deserializer = serde_json::Deserializer::from_reader(body.as_bytes());
        let header = read_price_batch(&mut deserializer, |i, line| {
            skus.push(format!("{i}:{}:{}", line.sku, line.new_price));
        })?;
        deserializer.end()?;
        Ok((header, skus))
    }

    #[test]
    fn the_streaming_reader_keeps_the_batch_rules() {
        let (header, skus) = stream(
            r#"{"items": [{"sku": "A", "name": "a", "new_price": "9.99", "currency": "EUR"},
                          {"sku": "B", "name": "b", "new_price": 1e2, "currency": "EUR"}],
                "effective_at": "2030-01-01T06:00:00", "batch_id": "b"}"#,
        )
        .expect("reads in any field order");
        assert_eq!((header.batch_id.as_str(), header.lines), ("b", 2));
        assert_eq!(skus, ["0:A:9.99", "1:B:100"]);
        for (body, wanted) in [
            (
                r#"{"batch_id": "b", "batch_id": "c", "effective_at": "x", "items": []}"#,
                "duplicate field `batch_id`",
            ),
            (
                r#"{"batch_id": "b", "effective_at": "x", "items": [], "extra": 1}"#,
                "unknown field `extra`",
            ),
            (
                r#"{"batch_id": "b", "items": []}"#,
                "missing field `effective_at`",
            ),
            (
                r#"{"batch_id": "b", "effective_at": "x", "items": []} x"#,
                "trailing characters",
            ),
        ] {
            let error = stream(body).expect_err(body).to_string();
            assert!(error.contains(wanted), "{body}: {error}");
        }
    }

    #[test]
    fn price_errors_name_the_item() {
        let body = r#"{"batch_id": "b", "effective_at": "2026-12-01T06:00:00", "items": [
                {"sku": "A", "name": "a", "new_price": 1.5, "currency": "EUR"},
                {"sku": "", "name": "b", "new_price": "0.5", "currency": "eur", "store_codes": []}
            ]}"#;
        let mut check = PriceBatchCheck::default();
        let mut deserializer = serde_json::Deserializer::from_str(body);
        let header =
            read_price_batch(&mut deserializer, |i, line| check.line(i, &line)).expect("parses");
        let errors = check.finish(&header).expect_err("invalid");
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            ["items[1].sku", "items[1].currency", "items[1].store_codes"]
        );
    }
}
