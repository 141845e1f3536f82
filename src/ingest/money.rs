//! Exact money for price batches (PRODUCT §4: `new_price` is a JSON number or a decimal
//! string with at most 4 fractional digits, exact; `currency` is ISO 4217).
//!
//! A price never passes through binary floating point: a JSON number is read from its
//! text as written on the wire (serde_json's `RawValue`), so `0.1` is exactly 1/10 and
//! `9999999999.9999` is not rounded to `10000000000`. Amounts are integers in units of
//! 1/10,000, the scale of the `numeric(14,4)` column they are stored in.

use std::{borrow::Cow, fmt};

/// Units per whole currency unit: the column's scale is 4.
const UNITS_PER_WHOLE: i64 = 10_000;
/// Fractional digits the column keeps.
const FRACTION_DIGITS: i128 = 4;
/// Integer digits the column keeps (`numeric(14,4)`: 14 − 4).
const INTEGER_DIGITS: i128 = 10;
/// 9_999_999_999.9999, the largest amount the column holds.
const MAX_UNITS: i64 = 99_999_999_999_999;
/// Exponents are clamped to this magnitude while read. Any non-zero number with a larger
/// exponent is out of range (or has too many decimals) whatever its digits, since no
/// text in memory has anywhere near 2^80 digits; clamping keeps the sums below exact in
/// `i128` and the work linear in the text's length.
const EXPONENT_CLAMP: i128 = 1 << 80;

/// A price from 0 to 9,999,999,999.9999 in units of 1/10,000 (9.99 is 99_900).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Price(i64);

/// Why a price was refused; `message` is what the sender is told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PriceError {
    Syntax,
    TooManyDecimals,
    OutOfRange,
}

impl PriceError {
    pub fn message(&self) -> &'static str {
        match self {
            Self::Syntax => "must be a JSON number or a decimal string like \"9.99\"",
            Self::TooManyDecimals => "must have at most 4 fractional digits",
            Self::OutOfRange => "must be from 0 to 9999999999.9999",
        }
    }
}

impl fmt::Display for PriceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for PriceError {}

impl Price {
    pub const ZERO: Price = Price(0);
    pub const MAX: Price = Price(MAX_UNITS);

    /// The amount in units of 1/10,000.
    pub fn units(self) -> i64 {
        self.0
    }

    /// An amount read back in units of 1/10,000 (e.g. from the `numeric(14,4)` column).
    pub fn from_units(units: i64) -> Result<Price, PriceError> {
        if (0..=MAX_UNITS).contains(&units) {
            Ok(Price(units))
        } else {
            Err(PriceError::OutOfRange)
        }
    }

    /// The text of a JSON number exactly as it was sent (RFC 8259:
    /// `-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?`, nothing around it).
    ///
    /// The value decides, not the spelling: `1.23450`, `1e2` and `12345e-4` are accepted
    /// because they are exactly 1.2345, 100 and 1.2345; `1.23456` and `1e-5` are not.
    /// Zero is zero whatever its sign or exponent (`-0`, `0e-400`).
    pub fn from_json_number(text: &str) -> Result<Price, PriceError> {
        let (negative, rest) = strip_minus(text.as_bytes());
        let (integer, rest) = leading_digits(rest);
        // RFC 8259 allows neither an empty integer part nor a leading zero before digits.
        if integer.is_empty() || (integer.len() > 1 && integer[0] == b'0') {
            return Err(PriceError::Syntax);
        }
        let (fraction, rest) = fraction_part(rest)?;
        let (exponent, rest) = match rest {
            [b'e' | b'E', rest @ ..] => {
                let (exponent_negative, rest) = match rest {
                    [b'+', rest @ ..] => (false, rest),
                    [b'-', rest @ ..] => (true, rest),
                    rest => (false, rest),
                };
                let (digits, rest) = leading_digits(rest);
                if digits.is_empty() {
                    return Err(PriceError::Syntax);
                }
                (clamped_exponent(digits, exponent_negative), rest)
            }
            rest => (0, rest),
        };
        if !rest.is_empty() {
            return Err(PriceError::Syntax);
        }
        exact(negative, integer, fraction, exponent)
    }

    /// A price sent as a JSON string: `-?[0-9]+(\.[0-9]+)?` and nothing else (no
    /// exponent, spaces, `+`, `.5` or `5.`).
    ///
    /// Leading zeros are accepted (`"09.99"` is 9.99): zero-padded columns are common in
    /// ERP exports and the value is unambiguous. Fractional digits follow the same
    /// value rule as numbers (`"1.50000"` is 1.5), and `"-0"` is zero.
    pub fn from_decimal_string(text: &str) -> Result<Price, PriceError> {
        let (negative, rest) = strip_minus(text.as_bytes());
        let (integer, rest) = leading_digits(rest);
        if integer.is_empty() {
            return Err(PriceError::Syntax);
        }
        let (fraction, rest) = fraction_part(rest)?;
        if !rest.is_empty() {
            return Err(PriceError::Syntax);
        }
        exact(negative, integer, fraction, 0)
    }

    /// One JSON value as written: a string goes to `from_decimal_string`, a number to
    /// `from_json_number`; anything else is a syntax error.
    fn from_raw_json(text: &str) -> Result<Price, PriceError> {
        match text.as_bytes().first() {
            Some(b'"') => Self::from_decimal_string(&json_string_content(text)?),
            Some(b'-' | b'0'..=b'9') => Self::from_json_number(text),
            _ => Err(PriceError::Syntax),
        }
    }
}

impl fmt::Display for Price {
    /// The exact decimal, trailing fractional zeros trimmed: `9.99`, `0.1`, `100`, `0`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let whole = self.0 / UNITS_PER_WHOLE;
        let mut fraction = self.0 % UNITS_PER_WHOLE;
        if fraction == 0 {
            return write!(f, "{whole}");
        }
        let mut width = 4;
        while fraction % 10 == 0 {
            fraction /= 10;
            width -= 1;
        }
        write!(f, "{whole}.{fraction:0width$}")
    }
}

fn strip_minus(bytes: &[u8]) -> (bool, &[u8]) {
    match bytes {
        [b'-', rest @ ..] => (true, rest),
        rest => (false, rest),
    }
}

/// The run of ASCII digits at the start, and what follows it.
fn leading_digits(bytes: &[u8]) -> (&[u8], &[u8]) {
    let end = bytes
        .iter()
        .position(|b| !b.is_ascii_digit())
        .unwrap_or(bytes.len());
    bytes.split_at(end)
}

/// An optional `.` with at least one digit after it (`5.` is refused).
fn fraction_part(bytes: &[u8]) -> Result<(&[u8], &[u8]), PriceError> {
    match bytes {
        [b'.', rest @ ..] => {
            let (fraction, rest) = leading_digits(rest);
            if fraction.is_empty() {
                Err(PriceError::Syntax)
            } else {
                Ok((fraction, rest))
            }
        }
        rest => Ok((&[], rest)),
    }
}

fn clamped_exponent(digits: &[u8], negative: bool) -> i128 {
    let magnitude = digits.iter().fold(0_i128, |acc, &d| {
        (acc * 10 + i128::from(d - b'0')).min(EXPONENT_CLAMP)
    });
    if negative { -magnitude } else { magnitude }
}

/// The price `(−)integer.fraction × 10^exponent`, exactly.
///
/// Leading and trailing zeros are stripped first, so a 10,000-digit `0.000…0001000…`
/// costs two scans and no big-number arithmetic: what is left are the significant digits
/// S and a power of ten, and the checks below bound S to 14 digits before it is built.
fn exact(
    negative: bool,
    integer: &[u8],
    fraction: &[u8],
    exponent: i128,
) -> Result<Price, PriceError> {
    let digits = || integer.iter().chain(fraction).copied();
    let total = integer.len() + fraction.len();
    let Some(first) = digits().position(|d| d != b'0') else {
        return Ok(Price::ZERO);
    };
    if negative {
        return Err(PriceError::OutOfRange);
    }
    let trailing_zeros = digits().rev().position(|d| d != b'0').unwrap_or(0);
    let significant = total - first - trailing_zeros;
    // value = S × 10^scale, where S has `significant` digits and no trailing zero.
    let scale = exponent - fraction.len() as i128 + trailing_zeros as i128;
    if significant as i128 + scale > INTEGER_DIGITS {
        return Err(PriceError::OutOfRange);
    }
    if scale < -FRACTION_DIGITS {
        return Err(PriceError::TooManyDecimals);
    }
    // Now S has at most 14 digits and 0 <= scale + 4 <= 13, so the units fit in i64;
    // checked arithmetic all the same, rather than trusting that argument blindly.
    let significand = digits()
        .skip(first)
        .take(significant)
        .try_fold(0_i64, |acc, d| {
            acc.checked_mul(10)?.checked_add(i64::from(d - b'0'))
        });
    let shift = u32::try_from(scale + FRACTION_DIGITS).map_err(|_| PriceError::OutOfRange)?;
    let units = significand
        .and_then(|s| s.checked_mul(10_i64.checked_pow(shift)?))
        .ok_or(PriceError::OutOfRange)?;
    Price::from_units(units)
}

/// The content of a JSON string literal (a `RawValue`'s text, so already valid JSON).
/// Without a backslash the content is the text between the quotes; only escaped
/// strings pay for a real JSON decode.
fn json_string_content(text: &str) -> Result<Cow<'_, str>, PriceError> {
    match text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
        Some(content) if !content.contains(['\\', '"']) => Ok(Cow::Borrowed(content)),
        _ => serde_json::from_str::<String>(text)
            .map(Cow::Owned)
            .map_err(|_| PriceError::Syntax),
    }
}

impl<'de> serde::Deserialize<'de> for Price {
    /// A JSON number or string, read from the value's text as sent (needs serde_json's
    /// `raw_value` feature; `serde_path_to_error` forwards the newtype-struct request
    /// `RawValue` relies on). Booleans, null, arrays and objects are refused.
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw =
            <Box<serde_json::value::RawValue> as serde::Deserialize>::deserialize(deserializer)?;
        Price::from_raw_json(raw.get()).map_err(|e| serde::de::Error::custom(e.message()))
    }
}

impl serde::Serialize for Price {
    /// As the exact decimal string (`"9.99"`), which every JSON reader keeps exact.
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl utoipa::PartialSchema for Price {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        price_schema()
    }
}

impl utoipa::ToSchema for Price {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("Price")
    }
}

/// What a `Price` field accepts, for the OpenAPI document: a number from 0 to
/// 9999999999.9999 with at most 4 fractional digits (`multipleOf`), or a decimal string
/// of at most 10 integral and 1-4 fractional digits.
///
/// The string pattern is stricter than the parser (which also takes `"-0"` and trailing
/// zeros past the fourth digit): what the document promises is always accepted.
/// A field of type `Price` refers to the `Price` component; `#[schema(schema_with =
/// price_schema)]` inlines it instead.
pub fn price_schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};

    // utoipa::Number has no exact decimal variant, so the document's bounds are f64
    // literals; they are only ever printed, never used for a price. `multipleOf` is
    // meant as JSON Schema defines it, on the number as written (9.99 is a multiple of
    // 0.0001), as the server reads it; validators that divide in binary floating point
    // get it wrong.
    const DOCUMENTED_MAXIMUM: f64 = 9_999_999_999.999_9;
    const DOCUMENTED_STEP: f64 = 0.000_1;
    OneOfBuilder::new()
        .item(
            ObjectBuilder::new()
                .schema_type(Type::Number)
                .minimum(Some(0))
                .maximum(Some(DOCUMENTED_MAXIMUM))
                .multiple_of(Some(DOCUMENTED_STEP)),
        )
        .item(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(r"^[0-9]{1,10}(\.[0-9]{1,4})?$")),
        )
        .description(Some(
            "Exact price: a JSON number or a decimal string, at most 4 fractional digits, \
             from 0 to 9999999999.9999",
        ))
        .examples([
            serde_json::Value::from("9.99"),
            serde_json::Value::from(100),
        ])
        .into()
}

/// What a currency field accepts, for the OpenAPI document: one of the ISO 4217 codes.
pub fn currency_schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(ISO_4217.iter().copied()))
        .description(Some("ISO 4217 currency code"))
        .examples([serde_json::Value::from("EUR")])
        .into()
}

/// ISO 4217 list one (current currency and funds codes) as published by the
/// maintenance agency (SIX) for 1 January 2026: BGN withdrawn (Bulgaria uses EUR from
/// 2026-01-01), ANG replaced by XCG (2025-03), ZWL by ZWG (2024-09), SLL withdrawn
/// (2023-12), HRK withdrawn (2023-01), CUC withdrawn (2021-06); XAD (Arab Accounting
/// Dinar) listed. Fund codes and units of account (BOV, CHE, CHW, CLF, COU, MXV, USN,
/// UYI, UYW, XBA-XBD, XDR, XSU, XUA) and precious metals (XAG, XAU, XPD, XPT) are
/// kept; XTS (testing) and XXX (no currency) are left out since no price is in them.
/// Sorted (binary search), one entry per code.
const ISO_4217: &[&str] = &[
    "AED", "AFN", "ALL", "AMD", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD", "BDT", "BHD",
    "BIF", "BMD", "BND", "BOB", "BOV", "BRL", "BSD", "BTN", "BWP", "BYN", "BZD", "CAD", "CDF",
    "CHE", "CHF", "CHW", "CLF", "CLP", "CNY", "COP", "COU", "CRC", "CUP", "CVE", "CZK", "DJF",
    "DKK", "DOP", "DZD", "EGP", "ERN", "ETB", "EUR", "FJD", "FKP", "GBP", "GEL", "GHS", "GIP",
    "GMD", "GNF", "GTQ", "GYD", "HKD", "HNL", "HTG", "HUF", "IDR", "ILS", "INR", "IQD", "IRR",
    "ISK", "JMD", "JOD", "JPY", "KES", "KGS", "KHR", "KMF", "KPW", "KRW", "KWD", "KYD", "KZT",
    "LAK", "LBP", "LKR", "LRD", "LSL", "LYD", "MAD", "MDL", "MGA", "MKD", "MMK", "MNT", "MOP",
    "MRU", "MUR", "MVR", "MWK", "MXN", "MXV", "MYR", "MZN", "NAD", "NGN", "NIO", "NOK", "NPR",
    "NZD", "OMR", "PAB", "PEN", "PGK", "PHP", "PKR", "PLN", "PYG", "QAR", "RON", "RSD", "RUB",
    "RWF", "SAR", "SBD", "SCR", "SDG", "SEK", "SGD", "SHP", "SLE", "SOS", "SRD", "SSP", "STN",
    "SVC", "SYP", "SZL", "THB", "TJS", "TMT", "TND", "TOP", "TRY", "TTD", "TWD", "TZS", "UAH",
    "UGX", "USD", "USN", "UYI", "UYU", "UYW", "UZS", "VED", "VES", "VND", "VUV", "WST", "XAD",
    "XAF", "XAG", "XAU", "XBA", "XBB", "XBC", "XBD", "XCD", "XCG", "XDR", "XOF", "XPD", "XPF",
    "XPT", "XSU", "XUA", "YER", "ZAR", "ZMW", "ZWG",
];

/// Whether `code` is a current ISO 4217 alphabetic code, exactly as listed (upper case).
pub fn is_iso_4217(code: &str) -> bool {
    ISO_4217.binary_search(&code).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn number(text: &str) -> Result<i64, PriceError> {
        Price::from_json_number(text).map(Price::units)
    }

    fn string(text: &str) -> Result<i64, PriceError> {
        Price::from_decimal_string(text).map(Price::units)
    }

    #[test]
    fn numbers_are_exact() {
        assert_eq!(number("9.99"), Ok(99_900));
        assert_eq!(number("0.1"), Ok(1_000));
        assert_eq!(number("0"), Ok(0));
        assert_eq!(number("100"), Ok(1_000_000));
        assert_eq!(number("0.0001"), Ok(1));
        assert_eq!(number("9999999999.9999"), Ok(99_999_999_999_999));
        assert_eq!(number("9999999999.9999"), Ok(Price::MAX.units()));
    }

    #[test]
    fn exponents_are_exact() {
        assert_eq!(number("1e2"), Ok(1_000_000));
        assert_eq!(number("1E+2"), Ok(1_000_000));
        assert_eq!(number("1e+0"), Ok(10_000));
        assert_eq!(number("1.5e-3"), Ok(15));
        assert_eq!(number("12345e-4"), Ok(12_345));
        assert_eq!(number("0.00099e1"), Ok(99));
        assert_eq!(number("1e-4"), Ok(1));
        assert_eq!(number("1e-5"), Err(PriceError::TooManyDecimals));
        assert_eq!(number("1e9"), Ok(10_000_000_000_000));
        assert_eq!(number("9.9999999999999e9"), Ok(99_999_999_999_999));
        assert_eq!(number("1e10"), Err(PriceError::OutOfRange));
        assert_eq!(number("1e0000000000000000000000000002"), Ok(1_000_000));
    }

    #[test]
    fn fractional_digits_are_judged_by_value() {
        assert_eq!(number("0.00001"), Err(PriceError::TooManyDecimals));
        assert_eq!(number("1.23456"), Err(PriceError::TooManyDecimals));
        assert_eq!(number("1.23450"), Ok(12_345));
        assert_eq!(number("0.10000"), Ok(1_000));
        assert_eq!(number("0.000000"), Ok(0));
    }

    #[test]
    fn negative_prices_are_out_of_range_but_negative_zero_is_zero() {
        assert_eq!(number("-1"), Err(PriceError::OutOfRange));
        assert_eq!(number("-0.0001"), Err(PriceError::OutOfRange));
        assert_eq!(number("-1e-9"), Err(PriceError::OutOfRange));
        assert_eq!(number("-0"), Ok(0));
        assert_eq!(number("-0.0"), Ok(0));
        assert_eq!(number("-0e5"), Ok(0));
    }

    #[test]
    fn range_is_that_of_numeric_14_4() {
        assert_eq!(number("10000000000"), Err(PriceError::OutOfRange));
        assert_eq!(number("10000000000.0"), Err(PriceError::OutOfRange));
        assert_eq!(number("9999999999.99999"), Err(PriceError::TooManyDecimals));
        assert_eq!(number("99999999999.99999"), Err(PriceError::OutOfRange));
    }

    #[test]
    fn huge_exponents_neither_overflow_nor_loop() {
        assert_eq!(number("1e400"), Err(PriceError::OutOfRange));
        assert_eq!(number("1e-400"), Err(PriceError::TooManyDecimals));
        assert_eq!(number("0e-400"), Ok(0));
        assert_eq!(number("0.0e999"), Ok(0));
        assert_eq!(number("0e99999999999999999999999999999999999999999"), Ok(0));
        let exponent = "9".repeat(10_000);
        assert_eq!(
            number(&format!("1e{exponent}")),
            Err(PriceError::OutOfRange)
        );
        assert_eq!(
            number(&format!("1e-{exponent}")),
            Err(PriceError::TooManyDecimals)
        );
        assert_eq!(
            number(&format!("-1e-{exponent}")),
            Err(PriceError::OutOfRange)
        );
    }

    #[test]
    fn ten_thousand_digits_are_fine() {
        let ones = "1".repeat(10_000);
        assert_eq!(number(&ones), Err(PriceError::OutOfRange));
        assert_eq!(
            number(&format!("0.{ones}")),
            Err(PriceError::TooManyDecimals)
        );
        let zeros = "0".repeat(10_000);
        assert_eq!(number(&format!("0.{zeros}")), Ok(0));
        assert_eq!(number(&format!("9.99{zeros}")), Ok(99_900));
        assert_eq!(
            number(&format!("0.{zeros}1")),
            Err(PriceError::TooManyDecimals)
        );
        // 10,000 digits that an exponent brings back into range, both ways.
        assert_eq!(number(&format!("1{zeros}e-10000")), Ok(10_000));
        assert_eq!(number(&format!("0.{zeros}5e10001")), Ok(50_000));
        assert_eq!(number(&format!("1{zeros}")), Err(PriceError::OutOfRange));
        assert_eq!(string(&format!("9.99{zeros}")), Ok(99_900));
        assert_eq!(string(&format!("{zeros}9.99")), Ok(99_900));
    }

    #[test]
    fn json_number_syntax_is_rfc_8259() {
        for text in [
            "", "-", "+1", " 1", "1 ", ".5", "5.", "01", "-01", "00", "1e", "1e+", "1.e2", "1.5.5",
            "0x10", "1_000", "NaN", "Infinity", "--1", "1,5", "\"9.99\"", "1e2.5",
        ] {
            assert_eq!(number(text), Err(PriceError::Syntax), "{text:?}");
        }
    }

    #[test]
    fn decimal_strings() {
        assert_eq!(string("9.99"), Ok(99_900));
        assert_eq!(string("0.1"), Ok(1_000));
        assert_eq!(string("0.5"), Ok(5_000));
        assert_eq!(string("09.99"), Ok(99_900));
        assert_eq!(string("100"), Ok(1_000_000));
        assert_eq!(string("1.50000"), Ok(15_000));
        assert_eq!(string("9999999999.9999"), Ok(99_999_999_999_999));
        assert_eq!(string("-0"), Ok(0));
        assert_eq!(string("9.99999"), Err(PriceError::TooManyDecimals));
        assert_eq!(string("10000000000"), Err(PriceError::OutOfRange));
        assert_eq!(string("-1"), Err(PriceError::OutOfRange));
        for text in [
            "", "1e2", "1E2", " 9.99", "9.99 ", "+1", ".5", "5.", "-", "9,99", "1.2.3", "١",
            "9.99\n",
        ] {
            assert_eq!(string(text), Err(PriceError::Syntax), "{text:?}");
        }
    }

    #[test]
    fn raw_json_values_dispatch_on_their_first_byte() {
        assert_eq!(Price::from_raw_json("9.99").map(Price::units), Ok(99_900));
        assert_eq!(
            Price::from_raw_json("\"9.99\"").map(Price::units),
            Ok(99_900)
        );
        assert_eq!(Price::from_raw_json("\"1e2\""), Err(PriceError::Syntax));
        for text in ["null", "true", "false", "[]", "[1]", "{}", ""] {
            assert_eq!(
                Price::from_raw_json(text),
                Err(PriceError::Syntax),
                "{text:?}"
            );
        }
    }

    #[test]
    fn display_is_the_exact_decimal() {
        let shown = |units| Price::from_units(units).map(|p| p.to_string());
        assert_eq!(shown(99_900), Ok("9.99".to_owned()));
        assert_eq!(shown(1_000), Ok("0.1".to_owned()));
        assert_eq!(shown(1_000_000), Ok("100".to_owned()));
        assert_eq!(shown(0), Ok("0".to_owned()));
        assert_eq!(shown(1), Ok("0.0001".to_owned()));
        assert_eq!(shown(10_010), Ok("1.001".to_owned()));
        assert_eq!(shown(99_999_999_999_999), Ok("9999999999.9999".to_owned()));
        assert_eq!(shown(-1), Err(PriceError::OutOfRange));
        assert_eq!(shown(100_000_000_000_000), Err(PriceError::OutOfRange));
    }

    #[test]
    fn display_round_trips() {
        for units in [
            0,
            1,
            10,
            100,
            1_000,
            9_999,
            10_000,
            99_900,
            12_345,
            1_000_000,
            10_000_001,
            99_999_999_999_999,
        ] {
            let price = Price::from_units(units).expect("in range");
            let text = price.to_string();
            assert_eq!(Price::from_decimal_string(&text), Ok(price), "{text}");
            assert_eq!(Price::from_json_number(&text), Ok(price), "{text}");
        }
    }

    #[test]
    fn messages_name_the_rule() {
        assert_eq!(
            PriceError::Syntax.message(),
            "must be a JSON number or a decimal string like \"9.99\""
        );
        assert_eq!(
            PriceError::TooManyDecimals.message(),
            "must have at most 4 fractional digits"
        );
        assert_eq!(
            PriceError::OutOfRange.message(),
            "must be from 0 to 9999999999.9999"
        );
    }

    #[test]
    fn currencies() {
        for code in [
            "EUR", "USD", "JPY", "CHF", "GBP", "ZWG", "SLE", "VES", "VED", "XCG",
        ] {
            assert!(is_iso_4217(code), "{code}");
        }
        for code in [
            "eur", "EU", "EURO", "", "XXX", "XTS", "HRK", "SLL", "ZWL", "ANG", "BGN", "CUC", "Eur",
            " EUR",
        ] {
            assert!(!is_iso_4217(code), "{code:?}");
        }
    }

    #[test]
    fn currency_list_is_sorted_unique_and_upper_case() {
        assert!(ISO_4217.windows(2).all(|pair| pair[0] < pair[1]));
        assert!(
            ISO_4217
                .iter()
                .all(|code| code.len() == 3 && code.bytes().all(|b| b.is_ascii_uppercase()))
        );
    }

    #[test]
    fn serde_reads_numbers_and_strings_exactly() {
        let read = |json: &str| serde_json::from_str::<Price>(json).map(Price::units);
        assert_eq!(read("9.99").ok(), Some(99_900));
        assert_eq!(read(" 0.1 ").ok(), Some(1_000));
        assert_eq!(read("1e2").ok(), Some(1_000_000));
        assert_eq!(read("9999999999.9999").ok(), Some(99_999_999_999_999));
        assert_eq!(read("1e400").ok(), None);
        assert_eq!(read("\"9.99\"").ok(), Some(99_900));
        assert_eq!(read(r#""\u0039.99""#).ok(), Some(99_900));
        assert_eq!(read("\"1e2\"").ok(), None);
        assert_eq!(read("\" 9.99\"").ok(), None);
        for json in ["null", "true", "[]", "[9.99]", "{}"] {
            let error = read(json).expect_err(json).to_string();
            assert!(
                error.contains(PriceError::Syntax.message()),
                "{json}: {error}"
            );
        }
        let error = read("1.23456").expect_err("too precise").to_string();
        assert!(
            error.contains(PriceError::TooManyDecimals.message()),
            "{error}"
        );
        let error = read("-1").expect_err("negative").to_string();
        assert!(error.contains(PriceError::OutOfRange.message()), "{error}");
    }

    #[test]
    fn serde_reads_prices_inside_structs() {
        #[derive(serde::Deserialize)]
        struct Line {
            new_price: Price,
        }
        let line: Line = serde_json::from_str(r#"{"new_price": 1.5e-3}"#).expect("a valid price");
        assert_eq!(line.new_price.units(), 15);
        let error = serde_json::from_str::<Line>(r#"{"new_price": 1e-5}"#)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            error.contains(PriceError::TooManyDecimals.message()),
            "{error}"
        );
    }

    #[test]
    fn serde_writes_the_exact_decimal_string() {
        let price = Price::from_json_number("9.990").expect("valid");
        assert_eq!(
            serde_json::to_string(&price).ok(),
            Some("\"9.99\"".to_owned())
        );
        let back: Price = serde_json::from_str("\"9.99\"").expect("reads back");
        assert_eq!(back, price);
    }
}
