//! The http(s) URLs the API takes (webhook targets, evidence objects), in one spelling:
//! ASCII (punycode for international domain names), a DNS name, a dotted IPv4 address
//! or an RFC 3986 IPv6 literal, an optional port, then visible ASCII. The OpenAPI
//! `pattern` and the server's check are the same regular expression ([`Shape`]); what
//! the expression admits, the URL parser also takes, but for one thing no regular
//! expression can check: a label spelled `xn--…` must be valid punycode. The server
//! parses the URL after matching it, and the document's description says so.

use std::sync::LazyLock;

use super::Shape;

/// The longest URL taken, as sent.
pub const MAX_URL_CHARS: usize = 2048;

/// A URL shape: one pattern, also the server's check ([`Shape`]), and a length.
pub struct UrlShape(Shape);

impl UrlShape {
    fn new(schemes: &str, rest: &str) -> Self {
        let dec_octet = "(25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])";
        let ipv4 = format!("({dec_octet}\\.){{3}}{dec_octet}");
        let h16 = "[0-9A-Fa-f]{1,4}";
        let ls32 = format!("({h16}:{h16}|{ipv4})");
        // RFC 3986 §3.2.2 IPv6address, alternative by alternative.
        let ipv6 = [
            format!("({h16}:){{6}}{ls32}"),
            format!("::({h16}:){{5}}{ls32}"),
            format!("({h16})?::({h16}:){{4}}{ls32}"),
            format!("(({h16}:){{0,1}}{h16})?::({h16}:){{3}}{ls32}"),
            format!("(({h16}:){{0,2}}{h16})?::({h16}:){{2}}{ls32}"),
            format!("(({h16}:){{0,3}}{h16})?::{h16}:{ls32}"),
            format!("(({h16}:){{0,4}}{h16})?::{ls32}"),
            format!("(({h16}:){{0,5}}{h16})?::{h16}"),
            format!("(({h16}:){{0,6}}{h16})?::"),
        ]
        .join("|");
        // The last label starts with a letter: a name ending in a number is an IPv4
        // address to a URL parser.
        let label = "[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?";
        let last_label = "[A-Za-z]([A-Za-z0-9-]*[A-Za-z0-9])?";
        let domain = format!("({label}\\.)*{last_label}\\.?");
        let port =
            "(6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[0-9]{1,4})";
        let pattern = format!("^{schemes}://({domain}|{ipv4}|\\[({ipv6})\\])(:{port})?{rest}$");
        Self(Shape::new(pattern))
    }

    /// Whether a URL as sent has this shape and length.
    pub fn admits(&self, raw: &str) -> bool {
        raw.len() <= MAX_URL_CHARS && self.0.admits(raw)
    }

    /// A URL as sent, when it has this shape and parses.
    pub fn parse(&self, raw: &str) -> Option<reqwest::Url> {
        self.admits(raw)
            .then(|| reqwest::Url::parse(raw).ok())
            .flatten()
    }

    /// The OpenAPI schema of a field holding such a URL.
    pub fn schema(&self) -> utoipa::openapi::schema::Object {
        self.0
            .schema()
            .max_length(Some(MAX_URL_CHARS))
            .description(Some(
                "Labels spelled `xn--…` must be valid punycode (IDNA); no pattern can say so.",
            ))
            .build()
    }
}

/// A webhook target: http or https, no credentials (`@` is not in a host), no
/// fragment.
pub static WEBHOOK: LazyLock<UrlShape> =
    LazyLock::new(|| UrlShape::new("https?", "([/?][\\x21\\x22\\x24-\\x7e]*)?"));

/// An evidence object: https.
pub static EVIDENCE: LazyLock<UrlShape> =
    LazyLock::new(|| UrlShape::new("https", "([/?#][\\x21-\\x7e]*)?"));

/// `schema_with` for a webhook target field.
pub fn webhook_schema() -> utoipa::openapi::schema::Object {
    WEBHOOK.schema()
}

/// `schema_with` for an evidence URL field.
pub fn evidence_schema() -> utoipa::openapi::schema::Object {
    EVIDENCE.schema()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_the_pattern_admits_the_parser_takes() {
        let admitted = [
            "http://a",
            "https://hooks.example.com/storeops?x=1",
            "https://xn--bcher-kva.example./p",
            "http://8.8.8.8:8080/",
            "http://[2606:4700:4700::1111]/",
            "http://[::]",
            "http://[::ffff:1.2.3.4]:443/a",
            "http://[1:2:3:4:5:6:7::]",
            "http://[::1:2:3:4:5:6:7]",
            "http://[1:2:3:4:5:6:1.2.3.4]",
            "https://h.example/\"{}<>`|\\^",
            "http://a:65535",
        ];
        for raw in admitted {
            assert!(WEBHOOK.admits(raw), "{raw}");
            assert!(reqwest::Url::parse(raw).is_ok(), "{raw}");
        }
        let refused = [
            "https://bücher.example/",
            "ftp://example.com",
            "https://user:pw@example.com",
            "https://example.com/#frag",
            "https://a_b.example/",
            "https://-a.example/",
            "http://1.2.3",
            "http://01.2.3.4",
            "http://256.1.1.1",
            "http://a.0x1",
            "http://[1::2:3:4:5:6:7:8]",
            "http://[1:2:3:4:5:6:7:8:9]",
            "http://[::1.02.3.4]",
            "http://[fe80::1%25eth0]",
            "http://[v1.x]",
            "http://[::g]",
            "http://a:65536",
            "http://a:",
            "HTTP://a",
            "http://a/ b",
            "not a url",
        ];
        for raw in refused {
            assert!(!WEBHOOK.admits(raw), "{raw}");
        }
        assert!(!WEBHOOK.admits(&format!("https://h.example/{}", "a".repeat(2_040))));
        // Punycode the pattern cannot check: the parse after it refuses.
        assert!(WEBHOOK.admits("https://xn--a.example/"));
        assert!(WEBHOOK.parse("https://xn--a.example/").is_none());
        assert!(WEBHOOK.parse("https://xn--bcher-kva.example/").is_some());
        assert!(EVIDENCE.admits("https://cdn.example/p.jpg#page=2"));
        assert!(!EVIDENCE.admits("http://cdn.example/p.jpg"));
    }
}
