//! The process's TLS crypto provider (ring) for every outbound HTTPS client: webhook
//! deliveries and the OTLP exporter. reqwest is built without a provider of its own so
//! the build needs no C toolchain beyond cc; this must run before any client is built.

/// Idempotent; safe to call from every place that builds a client.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}
