//! Where webhooks may point. Targets in private, loopback, link-local and other
//! non-public ranges are refused (SSRF), unless WEBHOOK_ALLOW_PRIVATE_NETWORKS=true.
//! Checked when a webhook is created and again, after DNS, before every delivery.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use reqwest::Url;

use crate::input::url::{MAX_URL_CHARS, WEBHOOK};

/// Parses a target URL of the documented shape ([`crate::input::url::WEBHOOK`]).
pub fn parse(raw: &str) -> Result<Url, String> {
    WEBHOOK.parse(raw).ok_or_else(|| {
        format!(
            "must be an http(s) URL of at most {MAX_URL_CHARS} ASCII characters (valid \
             punycode for international domain names), without credentials or fragment"
        )
    })
}

/// Whether an address is outside the public internet.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_private_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_private_v4(v4);
            }
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local
                || (first & 0xffc0) == 0xfe80 // link-local
                || v6 == Ipv6Addr::LOCALHOST
        }
    }
}

fn is_private_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // carrier-grade NAT
        || (a == 198 && (b == 18 || b == 19)) // benchmarking
        || a >= 240
}

/// When a name does not resolve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unresolvable {
    /// At creation: the receiver may simply not be in DNS yet; delivery checks again.
    Accept,
    /// At delivery: nothing to send to.
    Refuse,
}

/// Resolves the target and refuses it if any address is private (unless allowed).
pub async fn check(
    url: &Url,
    allow_private: bool,
    unresolvable: Unresolvable,
) -> Result<(), String> {
    if allow_private {
        return Ok(());
    }
    let host = url.host_str().unwrap_or_default();
    let port = url.port_or_known_default().unwrap_or(443);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let addresses: Vec<IpAddr> = match host.parse::<IpAddr>() {
        Ok(ip) => vec![ip],
        Err(_) => {
            let lookup = tokio::time::timeout(
                std::time::Duration::from_secs(3),
                tokio::net::lookup_host((host, port)),
            )
            .await;
            match lookup {
                Ok(Ok(addresses)) => addresses.map(|addr| addr.ip()).collect(),
                _ if unresolvable == Unresolvable::Accept => return Ok(()),
                Ok(Err(e)) => return Err(format!("cannot resolve {host}: {e}")),
                Err(_) => return Err(format!("cannot resolve {host}: timed out")),
            }
        }
    };
    match addresses.into_iter().find(|ip| is_private(*ip)) {
        Some(ip) => Err(format!(
            "{host} resolves to {ip}, a private, loopback or link-local address"
        )),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_ranges_are_recognised() {
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "100.64.0.1",
            "::1",
            "fe80::1",
            "fd00::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(is_private(ip.parse().expect("ip")), "{ip}");
        }
        for ip in ["8.8.8.8", "1.1.1.1", "2606:4700:4700::1111"] {
            assert!(!is_private(ip.parse().expect("ip")), "{ip}");
        }
    }

    #[test]
    fn url_shapes() {
        assert!(parse("https://hooks.example.com/storeops").is_ok());
        assert!(parse("ftp://example.com").is_err());
        assert!(parse("https://user:pw@example.com").is_err());
        assert!(parse("not a url").is_err());
        assert!(parse("https://bücher.example/").is_err());
        // Percent-encoding lengthens it past 4,000 characters; what is kept is as sent.
        let raw = format!("https://h.example/{}", "\"".repeat(2_020));
        assert!(parse(&raw).is_ok_and(|url| url.as_str().len() > MAX_URL_CHARS));
    }
}
