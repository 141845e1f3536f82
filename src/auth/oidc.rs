//! The identity provider's signing keys: discovery, the JWKS fetched and cached, keys
//! chosen by `kid`, and the signature and registered claims of its access tokens.
//!
//! A background task keeps the JWKS fresh (off the request path); a token naming an
//! unknown `kid` refreshes it once, rate-limited, so a key rotation needs no restart. A
//! failed refresh keeps the keys already held: the provider being down does not take
//! sign-in down with it, and readiness says degraded.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock, Weak},
    time::{Duration, Instant},
};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use jsonwebtoken::{
    Algorithm, DecodingKey, Validation,
    jwk::{AlgorithmParameters, EllipticCurve, Jwk, PublicKeyUse},
};
use serde_json::{Map, Value};

use super::metrics;
use crate::{config::OidcConfig, error::ApiError};

/// A discovery document or JWKS larger than this is refused.
const MAX_DOCUMENT_BYTES: usize = 1 << 20;
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// The background task looks at least this often (and updates the age gauge).
const TICK: Duration = Duration::from_secs(15);
/// After a failed refresh, the next attempt waits at most this long.
const MAX_RETRY: Duration = Duration::from_secs(30);

struct Key {
    key: DecodingKey,
    alg: Algorithm,
}

/// What one fetch of the JWKS gave.
#[derive(Default)]
struct KeySet {
    keys: HashMap<String, Arc<Key>>,
    /// The published keys as fetched: a refresh that changes nothing keeps the generation.
    raw: Vec<Value>,
    /// Bumped whenever the key set changes; tokens verified under another generation are
    /// verified again, so a removed key's tokens stop with its removal.
    generation: u64,
    fetched_at: Option<Instant>,
    fresh_until: Option<Instant>,
    last_attempt: Option<Instant>,
    last_error: Option<String>,
}

/// Where the provider's keys stand, for readiness.
pub struct KeyStatus {
    pub has_keys: bool,
    pub refresh_error: Option<String>,
}

pub(super) struct Provider {
    config: OidcConfig,
    algorithms: Vec<Algorithm>,
    http: reqwest::Client,
    keys: RwLock<KeySet>,
    /// One refresh at a time; holds the JWKS address found by discovery and when an
    /// unknown `kid` last refreshed.
    refresh: tokio::sync::Mutex<RefreshState>,
}

/// The published keys as fetched, the usable ones by `kid`, and the `max-age`.
type Fetched = (Vec<Value>, HashMap<String, Arc<Key>>, Option<Duration>);

#[derive(Default)]
struct RefreshState {
    jwks_uri: Option<String>,
    last_unknown_kid_refresh: Option<Instant>,
}

/// Why a token was refused, as a metric label and a problem detail.
pub(super) struct Refusal {
    pub outcome: &'static str,
    pub detail: String,
}

impl Refusal {
    fn new(outcome: &'static str, detail: impl Into<String>) -> Self {
        Self {
            outcome,
            detail: detail.into(),
        }
    }
}

impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> Self {
        ApiError::Unauthorized(refusal.detail)
    }
}

impl Provider {
    /// Starts the background refresh when a runtime is running (the api's): it ends when
    /// the provider is dropped.
    pub fn start(config: OidcConfig) -> Result<Arc<Self>, String> {
        let algorithms = config
            .algorithms
            .iter()
            .map(|a| a.parse::<Algorithm>().map_err(|e| format!("{a}: {e}")))
            .collect::<Result<Vec<_>, _>>()?;
        crate::tls::install_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("building the HTTP client: {e}"))?;
        let provider = Arc::new(Self {
            config,
            algorithms,
            http,
            keys: RwLock::default(),
            refresh: tokio::sync::Mutex::default(),
        });
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(keep_fresh(Arc::downgrade(&provider)));
        }
        Ok(provider)
    }

    pub fn status(&self) -> KeyStatus {
        let keys = self.keys.read().unwrap_or_else(|e| e.into_inner());
        KeyStatus {
            has_keys: !keys.keys.is_empty(),
            refresh_error: keys.last_error.clone(),
        }
    }

    pub fn leeway_seconds(&self) -> u64 {
        self.config.leeway.as_secs()
    }

    pub fn generation(&self) -> u64 {
        self.keys.read().map(|k| k.generation).unwrap_or(u64::MAX)
    }

    /// Checks signature, algorithm, `iss`, `aud`, `exp`, `nbf`; returns the claims and
    /// the key generation they were verified under.
    pub async fn verify(&self, token: &str) -> Result<(Map<String, Value>, u64), Refusal> {
        let header = raw_header(token)?;
        let alg_name = header.get("alg").and_then(Value::as_str).unwrap_or("");
        let alg = self
            .algorithms
            .iter()
            .copied()
            .find(|a| format!("{a:?}") == alg_name)
            .ok_or_else(|| {
                Refusal::new(
                    "algorithm",
                    format!("the token algorithm {alg_name:?} is not accepted"),
                )
            })?;
        let kid = header.get("kid").and_then(Value::as_str).map(str::to_owned);
        let (key, generation) = match self.find_key(kid.as_deref(), alg) {
            Some(found) => found,
            None => {
                if let Some(kid) = &kid {
                    self.refresh_for_unknown_kid(kid).await;
                }
                self.find_key(kid.as_deref(), alg).ok_or_else(|| {
                    Refusal::new(
                        "unknown_key",
                        match &kid {
                            Some(kid) => format!(
                                "the token's signing key {kid:?} is not one of the identity provider's keys"
                            ),
                            None => "the token names no signing key (kid)".to_owned(),
                        },
                    )
                })?
            }
        };
        if key.alg != alg {
            return Err(Refusal::new(
                "algorithm",
                format!("the token's key {kid:?} is not a {alg_name} key"),
            ));
        }
        let mut validation = Validation::new(alg);
        validation.leeway = self.config.leeway.as_secs();
        validation.validate_nbf = true;
        validation.set_issuer(&[&self.config.issuer]);
        validation.set_audience(&[&self.config.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key.key, &validation)
            .map_err(|e| {
                use jsonwebtoken::errors::ErrorKind;
                match e.kind() {
                    ErrorKind::ExpiredSignature => Refusal::new("expired", "the token has expired"),
                    ErrorKind::ImmatureSignature => {
                        Refusal::new("not_yet_valid", "the token is not valid yet (nbf)")
                    }
                    ErrorKind::InvalidIssuer => {
                        Refusal::new("wrong_issuer", "the token was issued by another issuer")
                    }
                    ErrorKind::InvalidAudience => {
                        Refusal::new("wrong_audience", "the token is meant for another audience")
                    }
                    ErrorKind::InvalidSignature => {
                        Refusal::new("bad_signature", "the token signature is invalid")
                    }
                    ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                        Refusal::new("algorithm", "the token algorithm is not accepted")
                    }
                    ErrorKind::MissingRequiredClaim(claim) => {
                        Refusal::new("malformed", format!("the token has no {claim} claim"))
                    }
                    _ => Refusal::new("malformed", "the token is malformed"),
                }
            })?;
        Ok((data.claims, generation))
    }

    /// The key for `kid`; a token without one may use the only key of its algorithm.
    fn find_key(&self, kid: Option<&str>, alg: Algorithm) -> Option<(Arc<Key>, u64)> {
        let keys = self.keys.read().ok()?;
        let key = match kid {
            Some(kid) => keys.keys.get(kid).cloned(),
            None => {
                let mut same_alg = keys.keys.values().filter(|k| k.alg == alg);
                match (same_alg.next(), same_alg.next()) {
                    (Some(only), None) => Some(only.clone()),
                    _ => None,
                }
            }
        }?;
        Some((key, keys.generation))
    }

    /// One refresh for an unknown `kid`, at most once per `unknown_kid_refresh`, so a
    /// flood of made-up kids cannot hammer the provider.
    async fn refresh_for_unknown_kid(&self, kid: &str) {
        let mut state = self.refresh.lock().await;
        // Another request may have fetched it while this one waited.
        if self
            .keys
            .read()
            .is_ok_and(|keys| keys.keys.contains_key(kid))
        {
            return;
        }
        if state
            .last_unknown_kid_refresh
            .is_some_and(|at| at.elapsed() < self.config.unknown_kid_refresh)
        {
            return;
        }
        state.last_unknown_kid_refresh = Some(Instant::now());
        self.refresh_locked(&mut state).await;
    }

    async fn refresh(&self) {
        let mut state = self.refresh.lock().await;
        self.refresh_locked(&mut state).await;
    }

    async fn refresh_locked(&self, state: &mut RefreshState) {
        let attempt = Instant::now();
        let outcome = self.fetch(state).await;
        let mut keys = self.keys.write().unwrap_or_else(|e| e.into_inner());
        keys.last_attempt = Some(attempt);
        match outcome {
            Ok((raw, parsed, max_age)) => {
                metrics::JWKS_REFRESHES.with_label_values(&["ok"]).inc();
                if raw != keys.raw {
                    keys.generation += 1;
                    keys.raw = raw;
                    keys.keys = parsed;
                }
                let fresh_for = max_age
                    .unwrap_or(Duration::ZERO)
                    .clamp(self.config.jwks_min_cache, self.config.jwks_max_cache);
                keys.fetched_at = Some(attempt);
                keys.fresh_until = Some(attempt + fresh_for);
                keys.last_error = None;
            }
            Err(error) => {
                metrics::JWKS_REFRESHES.with_label_values(&["error"]).inc();
                tracing::warn!(issuer = %self.config.issuer, %error, "cannot refresh the identity provider's keys; keeping the cached ones");
                // The next discovery may point elsewhere.
                state.jwks_uri = None;
                keys.last_error = Some(error);
            }
        }
        if let Some(at) = keys.fetched_at {
            metrics::JWKS_AGE.set(at.elapsed().as_secs_f64());
        }
    }

    /// Discovery (when the JWKS address is not known yet), then the JWKS.
    async fn fetch(&self, state: &mut RefreshState) -> Result<Fetched, String> {
        let jwks_uri = match &state.jwks_uri {
            Some(uri) => uri.clone(),
            None => {
                let url = format!("{}/.well-known/openid-configuration", self.config.issuer);
                let (discovery, _) = self.get_json(&url).await?;
                // OpenID Connect Discovery §4.3: the document must name the issuer exactly.
                if discovery.get("issuer").and_then(Value::as_str)
                    != Some(self.config.issuer.as_str())
                {
                    return Err(format!("{url}: its issuer is not {}", self.config.issuer));
                }
                let uri = discovery
                    .get("jwks_uri")
                    .and_then(Value::as_str)
                    .ok_or_else(|| format!("{url}: no jwks_uri"))?
                    .to_owned();
                let plain_http_allowed = self.config.issuer.starts_with("http://");
                if !(uri.starts_with("https://")
                    || plain_http_allowed && uri.starts_with("http://"))
                {
                    return Err(format!("{url}: jwks_uri {uri} is not https"));
                }
                state.jwks_uri = Some(uri.clone());
                uri
            }
        };
        let (jwks, cache_control) = self.get_json(&jwks_uri).await?;
        let raw = jwks
            .get("keys")
            .and_then(Value::as_array)
            .cloned()
            .ok_or_else(|| format!("{jwks_uri}: not a JWKS (no keys)"))?;
        let keys = raw
            .iter()
            .filter_map(|v| serde_json::from_value::<Jwk>(v.clone()).ok())
            .filter_map(|jwk| key_of(&jwk, &self.algorithms))
            .map(|(kid, key)| (kid, Arc::new(key)))
            .collect();
        Ok((raw, keys, max_age(cache_control.as_deref())))
    }

    async fn get_json(&self, url: &str) -> Result<(Value, Option<String>), String> {
        let mut response = self
            .http
            .get(url)
            .send()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("GET {url}: {}", response.status()));
        }
        let cache_control = response
            .headers()
            .get(reqwest::header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let mut body = Vec::new();
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?
        {
            body.extend_from_slice(&chunk);
            if body.len() > MAX_DOCUMENT_BYTES {
                return Err(format!("GET {url}: larger than {MAX_DOCUMENT_BYTES} bytes"));
            }
        }
        serde_json::from_slice(&body)
            .map(|v| (v, cache_control))
            .map_err(|e| format!("GET {url}: not JSON: {e}"))
    }

    /// How long the background task may sleep, and whether a refresh is due now.
    fn due(&self) -> (bool, Duration) {
        let keys = self.keys.read().unwrap_or_else(|e| e.into_inner());
        if let Some(at) = keys.fetched_at {
            metrics::JWKS_AGE.set(at.elapsed().as_secs_f64());
        }
        let now = Instant::now();
        let retry = self.config.jwks_min_cache.min(MAX_RETRY);
        let next = match (
            keys.fresh_until,
            keys.last_error.is_some(),
            keys.last_attempt,
        ) {
            (_, true, Some(attempt)) => attempt + retry,
            (Some(until), _, _) => until,
            _ => now,
        };
        (next <= now, next.saturating_duration_since(now).min(TICK))
    }
}

async fn keep_fresh(provider: Weak<Provider>) {
    loop {
        let Some(strong) = provider.upgrade() else {
            return;
        };
        let (due, wait) = strong.due();
        if due {
            strong.refresh().await;
            continue;
        }
        drop(strong);
        tokio::time::sleep(wait.max(Duration::from_millis(50))).await;
    }
}

/// The header as JSON, read before anything else so an `alg` the library cannot even
/// name (`none`) is refused as an algorithm, not as garbage.
fn raw_header(token: &str) -> Result<Map<String, Value>, Refusal> {
    let malformed = || Refusal::new("malformed", "the token is malformed");
    let encoded = token.split('.').next().ok_or_else(malformed)?;
    let bytes = URL_SAFE_NO_PAD
        .decode(encoded.trim_end_matches('='))
        .map_err(|_| malformed())?;
    serde_json::from_slice(&bytes).map_err(|_| malformed())
}

/// The `max-age` of a `Cache-Control` header; `no-store`/`no-cache` count as 0.
fn max_age(cache_control: Option<&str>) -> Option<Duration> {
    let value = cache_control?;
    let mut age = None;
    for directive in value.split(',').map(str::trim) {
        let lower = directive.to_ascii_lowercase();
        if lower == "no-store" || lower == "no-cache" {
            return Some(Duration::ZERO);
        }
        if let Some(seconds) = lower.strip_prefix("max-age=") {
            age = seconds
                .trim_matches('"')
                .parse()
                .ok()
                .map(Duration::from_secs);
        }
    }
    age
}

/// The verification key of one published JWK, or why it is skipped.
fn key_of(jwk: &Jwk, allowed: &[Algorithm]) -> Option<(String, Key)> {
    if matches!(jwk.common.public_key_use, Some(ref u) if *u != PublicKeyUse::Signature) {
        return None;
    }
    let kid = jwk.common.key_id.clone()?;
    let alg = match (&jwk.common.key_algorithm, &jwk.algorithm) {
        (Some(alg), _) => Algorithm::try_from(*alg).ok()?,
        (None, AlgorithmParameters::RSA(_)) => Algorithm::RS256,
        (None, AlgorithmParameters::EllipticCurve(ec)) => match ec.curve {
            EllipticCurve::P256 => Algorithm::ES256,
            EllipticCurve::P384 => Algorithm::ES384,
            _ => return None,
        },
        (None, AlgorithmParameters::OctetKeyPair(_)) => Algorithm::EdDSA,
        // Symmetric keys (`oct`) are never trusted, whatever the allow-list.
        (None, _) => return None,
    };
    if !allowed.contains(&alg) || matches!(jwk.algorithm, AlgorithmParameters::OctetKey(_)) {
        return None;
    }
    let key = DecodingKey::from_jwk(jwk).ok()?;
    Some((kid, Key { key, alg }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_control_gives_the_max_age() {
        assert_eq!(max_age(None), None);
        assert_eq!(
            max_age(Some("public, max-age=300")),
            Some(Duration::from_secs(300))
        );
        assert_eq!(max_age(Some("no-cache, max-age=300")), Some(Duration::ZERO));
        assert_eq!(max_age(Some("private")), None);
    }

    #[test]
    fn symmetric_and_encryption_keys_are_never_used() {
        let allowed = [Algorithm::RS256, Algorithm::ES256, Algorithm::HS256];
        let oct: Jwk = serde_json::from_value(serde_json::json!({
            "kty": "oct", "kid": "s", "k": "c2VjcmV0", "alg": "HS256"
        }))
        .expect("oct jwk");
        assert!(key_of(&oct, &allowed).is_none());
        let ec = serde_json::json!({
            "kty": "EC", "crv": "P-256", "kid": "e",
            "x": "WKn-ZIGevcwGIyyrzFoZNBdaq9_TsqzGl96oc0CWuis",
            "y": "y77t-RvAHRKTsSGdIYUfweuOvwrvDD-Q3Hv5J0fSKbE"
        });
        let signing: Jwk = serde_json::from_value(ec.clone()).expect("ec jwk");
        assert_eq!(
            key_of(&signing, &allowed).map(|(_, k)| k.alg),
            Some(Algorithm::ES256)
        );
        let mut encryption = ec;
        encryption["use"] = "enc".into();
        let encryption: Jwk = serde_json::from_value(encryption).expect("ec jwk");
        assert!(key_of(&encryption, &allowed).is_none());
    }
}
