//! Configuration from environment variables (12-factor), validated once at start-up.
//!
//! Every variable is parsed here and nowhere else; a bad value fails start-up with a
//! message naming the variable. Secrets are wrapped in [`Secret`] so they cannot reach
//! logs or error bodies by accident.

use std::{fmt, net::SocketAddr, path::PathBuf, str::FromStr, time::Duration};

/// A value that must never be printed: `Debug` and `Display` show `[redacted]`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// A connection URL that may carry a password; it prints without the password.
#[derive(Clone)]
pub struct ConnectionUrl(Secret);

impl ConnectionUrl {
    pub fn expose(&self) -> &str {
        self.0.expose()
    }
}

impl fmt::Debug for ConnectionUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for ConnectionUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&redact_url(self.0.expose()))
    }
}

/// `scheme://user:password@host/...` → `scheme://user:***@host/...`.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "[unparseable url]".to_owned();
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => {
            let user = userinfo.split(':').next().unwrap_or_default();
            format!("{scheme}://{user}:***@{host}{path}")
        }
        None => url.to_owned(),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Json,
    Pretty,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublicKeyAlgorithm {
    Rs256,
    Es256,
}

/// How bearer tokens are verified.
#[derive(Debug, Clone)]
pub enum JwtVerification {
    /// HS256 with a shared secret (local use, tests, small deployments).
    SharedSecret(Secret),
    /// RS256/ES256 with a PEM public key read from a file (production).
    PublicKey {
        path: PathBuf,
        algorithm: PublicKeyAlgorithm,
    },
    /// An OIDC resource server: the identity provider's keys, from its JWKS.
    Oidc(Box<OidcConfig>),
}

/// Trusting an OpenID provider's access tokens (SPEC §12 "Identity").
#[derive(Debug, Clone)]
pub struct OidcConfig {
    /// Exactly as the provider's discovery document and its tokens' `iss` spell it.
    pub issuer: String,
    pub audience: String,
    /// Asymmetric JWS algorithms only (`RS256`, `ES256`, …): never `none` or `HS*`.
    pub algorithms: Vec<String>,
    /// The JWKS is fresh for its `Cache-Control: max-age`, held within these bounds.
    pub jwks_min_cache: Duration,
    pub jwks_max_cache: Duration,
    /// An unknown `kid` refreshes the JWKS at most once per this interval.
    pub unknown_kid_refresh: Duration,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway: Duration,
    pub claims: ClaimsMapping,
}

/// Where role, store and region come from in a provider's tokens: configuration, not
/// code, since every provider spells them differently.
#[derive(Debug, Clone)]
pub struct ClaimsMapping {
    /// A claim holding a storeops role name (string or array); dotted paths reach nested
    /// claims (`realm_access.roles`).
    pub role_claim: String,
    /// The claim listing the user's groups (string or array).
    pub groups_claim: String,
    /// Group → role name, in precedence order: the first group the token has decides.
    pub group_roles: Vec<(String, String)>,
    pub store_claim: String,
    pub region_claim: String,
    /// The claim the staff directory is keyed on (`sub`; `oid` for Entra ID, `uid` for Okta).
    pub subject_claim: String,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {var}: {reason}")]
pub struct ConfigError {
    pub var: &'static str,
    pub reason: String,
}

impl ConfigError {
    fn new(var: &'static str, reason: impl Into<String>) -> Self {
        Self {
            var,
            reason: reason.into(),
        }
    }
}

/// The broker side: topology names, retries, consumer and relay tuning.
#[derive(Debug, Clone)]
pub struct EventsConfig {
    /// Prefix of every exchange and queue (`storeops` → `storeops.events`).
    pub topology_prefix: String,
    pub retry_delays: Vec<std::time::Duration>,
    pub delivery_limit: u32,
    pub message_timeout: std::time::Duration,
    /// 0 = the worker's concurrency.
    pub prefetch: u16,
    pub run_relay: bool,
    pub outbox_batch_size: i64,
    pub outbox_poll_interval: std::time::Duration,
}

#[derive(Debug, Clone)]
pub struct WebhookConfig {
    pub allow_private_networks: bool,
    pub timeout: std::time::Duration,
}

#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    pub lease_ttl: Duration,
    /// How often the overdue and expiry jobs look for work.
    pub tick: Duration,
    /// From the first overdue notice (store manager) to the second (regional manager).
    pub escalation_delay: Duration,
    /// Occurrences missed during downtime are created late only inside this window.
    pub catch_up: Duration,
}

/// Announcements' reminders: both delays count from when a store may see one.
#[derive(Debug, Clone)]
pub struct AnnouncementConfig {
    /// Until a store that has not acknowledged a required announcement is reminded.
    pub reminder_delay: Duration,
    /// Until it is escalated to the store and regional managers (after the reminder).
    pub escalation_delay: Duration,
}

#[derive(Debug, Clone)]
pub struct Retention {
    pub tasks: Duration,
    pub task_events: Duration,
    pub outbox: Duration,
    pub inbox: Duration,
    pub idempotency_keys: Duration,
    /// The store changes feed's log: an app offline longer than this resyncs (410).
    pub task_changes: Duration,
    pub webhook_deliveries: Duration,
    /// Raw integration requests (finished ones; their tasks stay).
    pub ingests: Duration,
    pub batch_size: i64,
    pub pause: Duration,
    /// The share of time pruning may keep the primary busy: after each batch it rests
    /// at least long enough to stay under it (1–100).
    pub duty_percent: u32,
}

/// Reporting reads (PRODUCT §7, §9): replica pools, lag limits, statistics refresh.
#[derive(Debug, Clone)]
pub struct ReportingConfig {
    /// Metric label per replica, in DATABASE_REPLICA_URLS order.
    pub replica_names: Vec<String>,
    /// A replica further behind than this is skipped.
    pub max_lag: std::time::Duration,
    pub lag_check_interval: std::time::Duration,
    /// Connections per reporting pool (each replica, and the primary as fallback).
    pub pool_max: usize,
    pub statement_timeout: std::time::Duration,
    /// How often the scheduler folds task changes into the daily statistics.
    pub stats_interval: std::time::Duration,
}

/// Worker settings of the ingest handlers.
#[derive(Debug, Clone)]
pub struct IngestOptions {
    /// Stores per `ingest.chunk` message (and per transaction).
    pub chunk_stores: usize,
}

impl Default for IngestOptions {
    fn default() -> Self {
        Self { chunk_stores: 40 }
    }
}

/// Where photo evidence lives: one bucket of AWS S3 or any S3-compatible store.
#[derive(Debug, Clone)]
pub struct ObjectStoreConfig {
    /// What storeops talks to (`https://s3.eu-central-1.amazonaws.com`,
    /// `http://seaweedfs.storage:8333`).
    pub endpoint: String,
    /// What presigned URLs name, when the store apps reach it by another address than
    /// the pods do (default: `endpoint`).
    pub public_endpoint: String,
    pub region: String,
    pub bucket: String,
    /// `endpoint/bucket/key` URLs, which self-hosted stores need; AWS takes either.
    pub path_style: bool,
    pub access_key_id: Secret,
    pub secret_access_key: Secret,
    /// Every key starts with this (empty in production; a test's own prefix).
    pub key_prefix: String,
}

/// Photo evidence (PRODUCT §4 "Evidence").
#[derive(Debug, Clone)]
pub struct EvidenceConfig {
    /// The largest photo a grant allows; the store refuses any other size.
    pub max_bytes: u64,
    /// How long an upload URL is valid (at most 15 minutes).
    pub grant_ttl: Duration,
    /// How long after its upload URL expired a photo may still be attached.
    pub attach_window: Duration,
    /// How long the presigned GET URLs of `GET /tasks/{id}/evidence` are valid.
    pub url_ttl: Duration,
    /// Decompression bombs: a photo of more pixels is refused.
    pub max_pixels: u64,
    /// The thumbnail's long side.
    pub thumbnail_px: u32,
    /// None: evidence is off (its routes answer 503).
    pub store: Option<ObjectStoreConfig>,
}

#[derive(Debug, Clone)]
pub struct Config {
    database_url: Option<ConnectionUrl>,
    pub database_replica_urls: Vec<ConnectionUrl>,
    amqp_url: Option<ConnectionUrl>,
    pub http_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    jwt: Option<JwtVerification>,
    pub log_format: LogFormat,
    pub shutdown_grace: Duration,
    pub shutdown_drain: Duration,
    pub db_pool_max: u32,
    pub db_pool_min: u32,
    pub db_acquire_timeout: Duration,
    pub db_statement_timeout: Duration,
    pub request_timeout: Duration,
    pub body_limit_bytes: usize,
    pub ingest_body_limit_bytes: usize,
    // The modules' settings: their types are here, below every module, so that
    // configuration depends on nothing and every module may read it.
    pub events: EventsConfig,
    pub webhooks: WebhookConfig,
    pub scheduler: SchedulerConfig,
    pub announcements: AnnouncementConfig,
    pub retention: Retention,
    pub reporting: ReportingConfig,
    pub ingest: IngestOptions,
    pub evidence: EvidenceConfig,
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Parses from any variable source, so validation is testable without touching the
    /// process environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = Env(&lookup);
        let database_url = env.url("DATABASE_URL", &["postgres", "postgresql"])?;
        let database_replica_urls = env
            .get("DATABASE_REPLICA_URLS")
            .map(|list| {
                list.split(',')
                    .map(str::trim)
                    .filter(|u| !u.is_empty())
                    .map(|u| parse_url("DATABASE_REPLICA_URLS", u, &["postgres", "postgresql"]))
                    .collect::<Result<Vec<_>, _>>()
            })
            .transpose()?
            .unwrap_or_default();
        let replica_names = match env.get("DATABASE_REPLICA_NAMES") {
            None => (0..database_replica_urls.len())
                .map(|i| i.to_string())
                .collect(),
            Some(list) => {
                let names: Vec<String> = list.split(',').map(|n| n.trim().to_owned()).collect();
                if names.len() != database_replica_urls.len() {
                    return Err(ConfigError::new(
                        "DATABASE_REPLICA_NAMES",
                        format!(
                            "names {} replicas but DATABASE_REPLICA_URLS has {}",
                            names.len(),
                            database_replica_urls.len()
                        ),
                    ));
                }
                if let Some(bad) = names.iter().find(|n| {
                    n.is_empty()
                        || n.len() > 32
                        || !n
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
                }) {
                    return Err(ConfigError::new(
                        "DATABASE_REPLICA_NAMES",
                        format!("{bad:?}: names are 1-32 letters, digits, '-' or '_'"),
                    ));
                }
                names
            }
        };
        let amqp_url = env.url("AMQP_URL", &["amqp", "amqps"])?;
        let jwt = match (
            env.get("AUTH_JWT_SECRET"),
            env.get("AUTH_JWT_PUBLIC_KEY_FILE"),
        ) {
            _ if env.get("AUTH_OIDC_ISSUER").is_some() => {
                if env.get("AUTH_JWT_SECRET").is_some()
                    || env.get("AUTH_JWT_PUBLIC_KEY_FILE").is_some()
                {
                    return Err(ConfigError::new(
                        "AUTH_OIDC_ISSUER",
                        "set AUTH_OIDC_ISSUER or AUTH_JWT_SECRET / AUTH_JWT_PUBLIC_KEY_FILE, not both",
                    ));
                }
                Some(JwtVerification::Oidc(Box::new(env.oidc()?)))
            }
            (Some(_), Some(_)) => {
                return Err(ConfigError::new(
                    "AUTH_JWT_SECRET",
                    "set either AUTH_JWT_SECRET or AUTH_JWT_PUBLIC_KEY_FILE, not both",
                ));
            }
            (Some(secret), None) => {
                if secret.len() < 32 {
                    return Err(ConfigError::new(
                        "AUTH_JWT_SECRET",
                        "must be at least 32 bytes long",
                    ));
                }
                Some(JwtVerification::SharedSecret(Secret::new(secret)))
            }
            (None, Some(path)) => {
                let algorithm = match env.get("AUTH_JWT_ALGORITHM").as_deref() {
                    None | Some("RS256") => PublicKeyAlgorithm::Rs256,
                    Some("ES256") => PublicKeyAlgorithm::Es256,
                    Some(other) => {
                        return Err(ConfigError::new(
                            "AUTH_JWT_ALGORITHM",
                            format!("must be RS256 or ES256, got {other:?}"),
                        ));
                    }
                };
                Some(JwtVerification::PublicKey {
                    path: PathBuf::from(path),
                    algorithm,
                })
            }
            (None, None) => None,
        };
        let log_format = match env.get("LOG_FORMAT").as_deref() {
            None | Some("pretty") => LogFormat::Pretty,
            Some("json") => LogFormat::Json,
            Some(other) => {
                return Err(ConfigError::new(
                    "LOG_FORMAT",
                    format!("must be json or pretty, got {other:?}"),
                ));
            }
        };
        let db_pool_max = env.parse_in("DATABASE_POOL_MAX", 20u32, 1..=1000)?;
        let db_pool_min = env.parse_in("DATABASE_POOL_MIN", 0u32, 0..=db_pool_max)?;
        Ok(Self {
            database_url,
            database_replica_urls,
            amqp_url,
            http_addr: env.parse("HTTP_ADDR", SocketAddr::from(([127, 0, 0, 1], 8080)))?,
            admin_addr: env.parse("ADMIN_ADDR", SocketAddr::from(([127, 0, 0, 1], 9464)))?,
            jwt,
            log_format,
            shutdown_grace: env.seconds("SHUTDOWN_GRACE_SECONDS", 30, 1..=3600)?,
            shutdown_drain: env.seconds("SHUTDOWN_DRAIN_SECONDS", 0, 0..=600)?,
            db_pool_max,
            db_pool_min,
            db_acquire_timeout: env.seconds("DATABASE_ACQUIRE_TIMEOUT_SECONDS", 5, 1..=120)?,
            db_statement_timeout: env.seconds(
                "DATABASE_STATEMENT_TIMEOUT_SECONDS",
                15,
                1..=3600,
            )?,
            request_timeout: env.seconds("HTTP_REQUEST_TIMEOUT_SECONDS", 30, 1..=600)?,
            body_limit_bytes: env.parse_in("HTTP_BODY_LIMIT_BYTES", 256 * 1024, 1024..=64 << 20)?,
            ingest_body_limit_bytes: env.parse_in(
                "HTTP_INGEST_BODY_LIMIT_BYTES",
                256 << 20,
                1024..=1 << 30,
            )?,
            events: EventsConfig {
                topology_prefix: env.topology_prefix()?,
                retry_delays: env
                    .millis_list("WORKER_RETRY_DELAYS_MS", &[5_000, 30_000, 300_000])?,
                delivery_limit: env.parse_in("WORKER_DELIVERY_LIMIT", 20, 1..=1000)?,
                message_timeout: env.seconds("WORKER_MESSAGE_TIMEOUT_SECONDS", 60, 1..=1500)?,
                prefetch: env.parse_in("WORKER_PREFETCH", 0, 0..=10_000)?,
                run_relay: env.parse("WORKER_RUN_RELAY", true)?,
                outbox_batch_size: env.parse_in("OUTBOX_BATCH_SIZE", 500, 1..=10_000)?,
                outbox_poll_interval: Duration::from_millis(env.parse_in(
                    "OUTBOX_POLL_INTERVAL_MS",
                    500,
                    10..=60_000,
                )?),
            },
            webhooks: WebhookConfig {
                allow_private_networks: env.parse("WEBHOOK_ALLOW_PRIVATE_NETWORKS", false)?,
                timeout: env.seconds("WEBHOOK_TIMEOUT_SECONDS", 10, 1..=120)?,
            },
            scheduler: SchedulerConfig {
                lease_ttl: env.seconds("SCHEDULER_LEASE_TTL_SECONDS", 15, 3..=300)?,
                tick: env.seconds("SCHEDULER_TICK_SECONDS", 30, 1..=3600)?,
                escalation_delay: env.seconds(
                    "SCHEDULER_ESCALATION_DELAY_SECONDS",
                    3600,
                    1..=604_800,
                )?,
                catch_up: env.seconds("SCHEDULE_CATCH_UP_SECONDS", 6 * 3600, 0..=7 * 86_400)?,
            },
            announcements: {
                let reminder_delay =
                    env.seconds("ANNOUNCEMENT_REMINDER_DELAY_SECONDS", 4 * 3600, 1..=604_800)?;
                let escalation_delay = env.seconds(
                    "ANNOUNCEMENT_ESCALATION_DELAY_SECONDS",
                    24 * 3600,
                    1..=1_209_600,
                )?;
                if escalation_delay <= reminder_delay {
                    return Err(ConfigError {
                        var: "ANNOUNCEMENT_ESCALATION_DELAY_SECONDS",
                        reason: "must be longer than ANNOUNCEMENT_REMINDER_DELAY_SECONDS"
                            .to_owned(),
                    });
                }
                AnnouncementConfig {
                    reminder_delay,
                    escalation_delay,
                }
            },
            retention: Retention {
                tasks: env.days("TASKS_RETENTION_DAYS", 400)?,
                task_events: env.days("TASK_EVENTS_RETENTION_DAYS", 400)?,
                outbox: env.seconds("OUTBOX_RETENTION_HOURS", 24, 1..=24 * 365)? * 3600,
                inbox: env.days("INBOX_RETENTION_DAYS", 7)?,
                idempotency_keys: env.seconds("IDEMPOTENCY_RETENTION_HOURS", 48, 1..=24 * 365)?
                    * 3600,
                task_changes: env.seconds("SYNC_CHANGES_RETENTION_HOURS", 72, 1..=24 * 90)? * 3600,
                webhook_deliveries: env.days("WEBHOOK_DELIVERIES_RETENTION_DAYS", 30)?,
                ingests: env.days("INGESTS_RETENTION_DAYS", 30)?,
                batch_size: env.parse_in("PRUNE_BATCH_SIZE", 500, 100..=100_000)?,
                pause: Duration::from_millis(env.parse_in("PRUNE_PAUSE_MS", 50, 0..=10_000)?),
                // Pruning is background work with hours to spare: at 1% of one core the
                // task list's p99 moved +8% on a 2-core host (docs/PERFORMANCE.md).
                duty_percent: env.parse_in("PRUNE_DUTY_PERCENT", 1, 1..=100)?,
            },
            reporting: ReportingConfig {
                replica_names,
                max_lag: env.seconds("REPLICA_MAX_LAG_SECONDS", 30, 1..=86_400)?,
                lag_check_interval: Duration::from_millis(env.parse_in(
                    "REPLICA_LAG_CHECK_INTERVAL_MS",
                    1000,
                    100..=60_000,
                )?),
                pool_max: env.parse_in("REPORT_POOL_MAX", 8, 1..=200)?,
                statement_timeout: env.seconds("REPORT_STATEMENT_TIMEOUT_SECONDS", 30, 1..=3600)?,
                stats_interval: env.seconds("REPORT_STATS_INTERVAL_SECONDS", 60, 5..=86_400)?,
            },
            ingest: IngestOptions {
                chunk_stores: env.parse_in("INGEST_CHUNK_STORES", 40, 1..=1000)?,
            },
            evidence: EvidenceConfig {
                max_bytes: env.parse_in("EVIDENCE_MAX_BYTES", 15 << 20, 1024..=100 << 20)?,
                grant_ttl: env.seconds("EVIDENCE_GRANT_TTL_SECONDS", 900, 1..=900)?,
                attach_window: env.seconds(
                    "EVIDENCE_ATTACH_WINDOW_SECONDS",
                    3600,
                    0..=7 * 86_400,
                )?,
                url_ttl: env.seconds("EVIDENCE_URL_TTL_SECONDS", 300, 1..=3600)?,
                max_pixels: env.parse_in("EVIDENCE_MAX_PIXELS", 50_000_000, 1..=500_000_000)?,
                thumbnail_px: env.parse_in("EVIDENCE_THUMBNAIL_PX", 320, 16..=2048)?,
                store: env.object_store()?,
            },
        })
    }

    pub fn database_url(&self) -> Result<&ConnectionUrl, ConfigError> {
        self.database_url
            .as_ref()
            .ok_or_else(|| ConfigError::new("DATABASE_URL", "is required for this command"))
    }

    pub fn amqp_url(&self) -> Result<&ConnectionUrl, ConfigError> {
        self.amqp_url
            .as_ref()
            .ok_or_else(|| ConfigError::new("AMQP_URL", "is required for this command"))
    }

    pub fn jwt(&self) -> Result<&JwtVerification, ConfigError> {
        self.jwt.as_ref().ok_or_else(|| {
            ConfigError::new(
                "AUTH_JWT_SECRET",
                "AUTH_JWT_SECRET, AUTH_JWT_PUBLIC_KEY_FILE or AUTH_OIDC_ISSUER is required for this command",
            )
        })
    }
}

struct Env<'a>(&'a dyn Fn(&str) -> Option<String>);

impl Env<'_> {
    /// Unset and empty are the same: an empty variable is how most deploy tools unset one.
    fn get(&self, name: &str) -> Option<String> {
        (self.0)(name).filter(|v| !v.trim().is_empty())
    }

    fn parse<T: FromStr>(&self, name: &'static str, default: T) -> Result<T, ConfigError>
    where
        T::Err: fmt::Display,
    {
        match self.get(name) {
            None => Ok(default),
            Some(raw) => raw
                .trim()
                .parse()
                .map_err(|e| ConfigError::new(name, format!("cannot parse {raw:?}: {e}"))),
        }
    }

    fn parse_in<T>(
        &self,
        name: &'static str,
        default: T,
        range: std::ops::RangeInclusive<T>,
    ) -> Result<T, ConfigError>
    where
        T: FromStr + PartialOrd + fmt::Debug,
        T::Err: fmt::Display,
    {
        let value = self.parse(name, default)?;
        if range.contains(&value) {
            Ok(value)
        } else {
            Err(ConfigError::new(
                name,
                format!(
                    "{value:?} is out of range {:?}..={:?}",
                    range.start(),
                    range.end()
                ),
            ))
        }
    }

    fn seconds(
        &self,
        name: &'static str,
        default: u64,
        range: std::ops::RangeInclusive<u64>,
    ) -> Result<Duration, ConfigError> {
        self.parse_in(name, default, range).map(Duration::from_secs)
    }

    /// Whole days, 1 day to 10 years.
    fn days(&self, name: &'static str, default: u64) -> Result<Duration, ConfigError> {
        self.parse_in(name, default, 1..=3650)
            .map(|d| Duration::from_secs(d * 86_400))
    }

    fn topology_prefix(&self) -> Result<String, ConfigError> {
        let prefix = self
            .get("AMQP_TOPOLOGY_PREFIX")
            .unwrap_or_else(|| "storeops".to_owned());
        let valid = (1..=64).contains(&prefix.len())
            && prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
        if valid {
            Ok(prefix)
        } else {
            Err(ConfigError::new(
                "AMQP_TOPOLOGY_PREFIX",
                "must be 1-64 letters, digits, '-', '_' or '.'",
            ))
        }
    }

    /// A comma-separated list of milliseconds, each 1..=86,400,000, at most 10.
    fn millis_list(
        &self,
        name: &'static str,
        default: &[u64],
    ) -> Result<Vec<Duration>, ConfigError> {
        let Some(raw) = self.get(name) else {
            return Ok(default.iter().copied().map(Duration::from_millis).collect());
        };
        let values = raw
            .split(',')
            .map(|v| v.trim().parse::<u64>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| ConfigError::new(name, format!("cannot parse {raw:?}: {e}")))?;
        if values.is_empty()
            || values.len() > 10
            || values.iter().any(|v| !(1..=86_400_000).contains(v))
        {
            return Err(ConfigError::new(
                name,
                "must list 1-10 delays of 1..=86400000 ms",
            ));
        }
        Ok(values.into_iter().map(Duration::from_millis).collect())
    }

    /// A secret from `name`, or from the file `name_FILE` names (Kubernetes Secrets
    /// mounted as files); both set is an error.
    fn secret(
        &self,
        name: &'static str,
        file_var: &'static str,
    ) -> Result<Option<Secret>, ConfigError> {
        match (self.get(name), self.get(file_var)) {
            (Some(_), Some(_)) => Err(ConfigError::new(
                name,
                format!("set either {name} or {file_var}, not both"),
            )),
            (Some(value), None) => Ok(Some(Secret::new(value.trim()))),
            (None, Some(path)) => std::fs::read_to_string(path.trim())
                .map(|value| Some(Secret::new(value.trim())))
                .map_err(|e| ConfigError::new(file_var, format!("cannot read {path:?}: {e}"))),
            (None, None) => Ok(None),
        }
    }

    /// The OIDC resource server's settings; called when `AUTH_OIDC_ISSUER` is set.
    fn oidc(&self) -> Result<OidcConfig, ConfigError> {
        let issuer = self
            .get("AUTH_OIDC_ISSUER")
            .map(|i| i.trim().to_owned())
            .unwrap_or_default();
        if !issuer_allowed(&issuer) {
            return Err(ConfigError::new(
                "AUTH_OIDC_ISSUER",
                "must be an https:// URL without credentials, query or fragment (http:// only for a loopback host)",
            ));
        }
        let audience = self
            .get("AUTH_OIDC_AUDIENCE")
            .map(|a| a.trim().to_owned())
            .ok_or_else(|| {
                ConfigError::new("AUTH_OIDC_AUDIENCE", "is required with AUTH_OIDC_ISSUER")
            })?;
        let algorithms: Vec<String> = self
            .get("AUTH_OIDC_ALGORITHMS")
            .unwrap_or_else(|| "RS256,ES256".to_owned())
            .split(',')
            .map(|a| a.trim().to_owned())
            .filter(|a| !a.is_empty())
            .collect();
        if let Some(bad) = algorithms
            .iter()
            .find(|a| !OIDC_ALGORITHMS.contains(&a.as_str()))
        {
            return Err(ConfigError::new(
                "AUTH_OIDC_ALGORITHMS",
                format!(
                    "{bad:?} is not allowed; choose from {}",
                    OIDC_ALGORITHMS.join(", ")
                ),
            ));
        }
        if algorithms.is_empty() {
            return Err(ConfigError::new(
                "AUTH_OIDC_ALGORITHMS",
                "must name at least one algorithm",
            ));
        }
        let jwks_min_cache = self.seconds("AUTH_OIDC_JWKS_MIN_CACHE_SECONDS", 60, 1..=86_400)?;
        let jwks_max_cache = self.seconds("AUTH_OIDC_JWKS_MAX_CACHE_SECONDS", 3600, 1..=86_400)?;
        if jwks_max_cache < jwks_min_cache {
            return Err(ConfigError::new(
                "AUTH_OIDC_JWKS_MAX_CACHE_SECONDS",
                "must be at least AUTH_OIDC_JWKS_MIN_CACHE_SECONDS",
            ));
        }
        let claim = |name: &'static str, default: &str| -> Result<String, ConfigError> {
            let value = self
                .get(name)
                .unwrap_or_else(|| default.to_owned())
                .trim()
                .to_owned();
            if value.len() > 100 || value.split('.').any(str::is_empty) {
                return Err(ConfigError::new(
                    name,
                    "must be a claim name (dots reach nested claims)",
                ));
            }
            Ok(value)
        };
        let group_roles = match self.get("AUTH_OIDC_GROUP_ROLES") {
            None => Vec::new(),
            Some(raw) => raw
                .split(',')
                .map(str::trim)
                .filter(|pair| !pair.is_empty())
                .map(|pair| match pair.rsplit_once('=') {
                    Some((group, role)) if !group.trim().is_empty() && !role.trim().is_empty() => {
                        Ok((group.trim().to_owned(), role.trim().to_owned()))
                    }
                    _ => Err(ConfigError::new(
                        "AUTH_OIDC_GROUP_ROLES",
                        format!("{pair:?}: write group=role, comma-separated"),
                    )),
                })
                .collect::<Result<Vec<_>, _>>()?,
        };
        Ok(OidcConfig {
            issuer,
            audience,
            algorithms,
            jwks_min_cache,
            jwks_max_cache,
            unknown_kid_refresh: self.seconds(
                "AUTH_OIDC_UNKNOWN_KID_REFRESH_SECONDS",
                10,
                1..=3600,
            )?,
            leeway: self.seconds("AUTH_OIDC_LEEWAY_SECONDS", 30, 0..=300)?,
            claims: ClaimsMapping {
                role_claim: claim("AUTH_OIDC_ROLE_CLAIM", "role")?,
                groups_claim: claim("AUTH_OIDC_GROUPS_CLAIM", "groups")?,
                group_roles,
                store_claim: claim("AUTH_OIDC_STORE_CLAIM", "store_id")?,
                region_claim: claim("AUTH_OIDC_REGION_CLAIM", "region")?,
                subject_claim: claim("AUTH_OIDC_SUBJECT_CLAIM", "sub")?,
            },
        })
    }

    /// The object store of photo evidence: none without `S3_BUCKET`.
    fn object_store(&self) -> Result<Option<ObjectStoreConfig>, ConfigError> {
        let Some(bucket) = self.get("S3_BUCKET") else {
            return Ok(None);
        };
        let bucket = bucket.trim().to_owned();
        let valid_bucket = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        if !valid_bucket {
            return Err(ConfigError::new(
                "S3_BUCKET",
                "must be 3-63 lowercase letters, digits, '-' or '.'",
            ));
        }
        let region = self
            .get("S3_REGION")
            .unwrap_or_else(|| "us-east-1".to_owned())
            .trim()
            .to_owned();
        if !(1..=32).contains(&region.len())
            || !region
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(ConfigError::new(
                "S3_REGION",
                "must be 1-32 lowercase letters, digits or '-'",
            ));
        }
        // Unset: AWS S3's regional endpoint.
        let endpoint = self
            .http_endpoint("S3_ENDPOINT")?
            .unwrap_or_else(|| format!("https://s3.{region}.amazonaws.com"));
        let public_endpoint = self
            .http_endpoint("S3_PUBLIC_ENDPOINT")?
            .unwrap_or_else(|| endpoint.clone());
        let access_key_id = self
            .secret("S3_ACCESS_KEY_ID", "S3_ACCESS_KEY_ID_FILE")?
            .ok_or_else(|| ConfigError::new("S3_ACCESS_KEY_ID", "is required with S3_BUCKET"))?;
        let secret_access_key = self
            .secret("S3_SECRET_ACCESS_KEY", "S3_SECRET_ACCESS_KEY_FILE")?
            .ok_or_else(|| {
                ConfigError::new("S3_SECRET_ACCESS_KEY", "is required with S3_BUCKET")
            })?;
        let key_prefix = self.get("S3_KEY_PREFIX").unwrap_or_default();
        if key_prefix.len() > 200
            || !key_prefix
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-_./".contains(&b))
        {
            return Err(ConfigError::new(
                "S3_KEY_PREFIX",
                "must be at most 200 letters, digits, '-', '_', '.' or '/'",
            ));
        }
        Ok(Some(ObjectStoreConfig {
            endpoint,
            public_endpoint,
            region,
            bucket,
            path_style: self.parse("S3_PATH_STYLE", false)?,
            access_key_id,
            secret_access_key,
            key_prefix,
        }))
    }

    /// An http(s) URL without credentials (it is printed in logs).
    fn http_endpoint(&self, name: &'static str) -> Result<Option<String>, ConfigError> {
        let Some(raw) = self.get(name) else {
            return Ok(None);
        };
        let raw = raw.trim().trim_end_matches('/').to_owned();
        let valid = (raw.starts_with("http://") || raw.starts_with("https://"))
            && !raw.contains('@')
            && raw
                .split_once("://")
                .is_some_and(|(_, rest)| !rest.is_empty());
        if valid {
            Ok(Some(raw))
        } else {
            Err(ConfigError::new(
                name,
                "must be an http:// or https:// URL without credentials",
            ))
        }
    }

    fn url(
        &self,
        name: &'static str,
        schemes: &[&str],
    ) -> Result<Option<ConnectionUrl>, ConfigError> {
        self.get(name)
            .map(|raw| parse_url(name, raw.trim(), schemes))
            .transpose()
    }
}

/// The signature algorithms an OIDC provider's tokens may use: asymmetric only, so a
/// published public key can never serve as an HMAC secret.
pub const OIDC_ALGORITHMS: &[&str] = &[
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "EdDSA",
];

/// https, or http to a loopback host (local development and tests); no credentials,
/// query or fragment.
pub fn issuer_allowed(issuer: &str) -> bool {
    let Some((scheme, rest)) = issuer.split_once("://") else {
        return false;
    };
    let authority = rest.split('/').next().unwrap_or_default();
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    let loopback = host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    let clean = !host.is_empty() && !rest.contains(['@', '?', '#']) && !rest.ends_with('/');
    clean && (scheme == "https" || (scheme == "http" && loopback))
}

fn parse_url(
    name: &'static str,
    raw: &str,
    schemes: &[&str],
) -> Result<ConnectionUrl, ConfigError> {
    match raw.split_once("://") {
        Some((scheme, rest)) if schemes.contains(&scheme) && !rest.is_empty() => {
            Ok(ConnectionUrl(Secret::new(raw)))
        }
        // Never echo the value: it may hold a password.
        _ => Err(ConfigError::new(
            name,
            format!("must be a URL starting with {}://", schemes.join(":// or ")),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn load(vars: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Config::from_lookup(|k| map.get(k).cloned())
    }

    #[test]
    fn defaults_apply_when_unset() {
        let config = load(&[]).expect("empty environment is valid");
        assert_eq!(config.http_addr.to_string(), "127.0.0.1:8080");
        assert_eq!(config.admin_addr.to_string(), "127.0.0.1:9464");
        assert!(config.database_url().is_err());
    }

    #[test]
    fn bad_values_name_the_variable_and_hide_secrets() {
        let err = load(&[("HTTP_ADDR", "nope")]).unwrap_err();
        assert_eq!(err.var, "HTTP_ADDR");
        let err = load(&[("DATABASE_URL", "mysql://u:hunter2@h/db")]).unwrap_err();
        assert_eq!(err.var, "DATABASE_URL");
        assert!(!err.to_string().contains("hunter2"));
        let err = load(&[("AUTH_JWT_SECRET", "short")]).unwrap_err();
        assert_eq!(err.var, "AUTH_JWT_SECRET");
        let err = load(&[("SHUTDOWN_GRACE_SECONDS", "0")]).unwrap_err();
        assert_eq!(err.var, "SHUTDOWN_GRACE_SECONDS");
        let err = load(&[("LOG_FORMAT", "xml")]).unwrap_err();
        assert_eq!(err.var, "LOG_FORMAT");
    }

    #[test]
    fn oidc_issuers_are_https_except_loopback_and_algorithms_asymmetric() {
        let oidc = |vars: &[(&str, &str)]| -> Result<OidcConfig, ConfigError> {
            match load(vars)?.jwt {
                Some(JwtVerification::Oidc(oidc)) => Ok(*oidc),
                other => panic!("not oidc: {other:?}"),
            }
        };
        let base = [("AUTH_OIDC_AUDIENCE", "storeops-api")];
        for ok in [
            "https://login.example.com/tenant/v2.0",
            "http://127.0.0.1:9080",
            "http://localhost:9080/realms/x",
            "http://[::1]:9080",
        ] {
            let config = oidc(&[base[0], ("AUTH_OIDC_ISSUER", ok)]).expect(ok);
            assert_eq!(config.issuer, ok);
            assert_eq!(config.algorithms, ["RS256", "ES256"]);
        }
        for bad in [
            "http://sso.example.com",
            "http://127.0.0.1.example.com",
            "https://u:p@sso.example.com",
            "https://sso.example.com/",
            "ftp://sso.example.com",
            "sso.example.com",
        ] {
            let err = oidc(&[base[0], ("AUTH_OIDC_ISSUER", bad)]).unwrap_err();
            assert_eq!(err.var, "AUTH_OIDC_ISSUER", "{bad}");
        }
        let issuer = ("AUTH_OIDC_ISSUER", "https://sso.example.com");
        assert_eq!(oidc(&[issuer]).unwrap_err().var, "AUTH_OIDC_AUDIENCE");
        let refused: &[(&[(&str, &str)], &str)] = &[
            (&[("AUTH_OIDC_ALGORITHMS", "none")], "AUTH_OIDC_ALGORITHMS"),
            (&[("AUTH_OIDC_ALGORITHMS", "HS256")], "AUTH_OIDC_ALGORITHMS"),
            (
                &[("AUTH_OIDC_ALGORITHMS", "RS256,HS512")],
                "AUTH_OIDC_ALGORITHMS",
            ),
            (
                &[("AUTH_JWT_SECRET", "0123456789abcdef0123456789abcdef")],
                "AUTH_OIDC_ISSUER",
            ),
            (
                &[
                    ("AUTH_OIDC_JWKS_MIN_CACHE_SECONDS", "600"),
                    ("AUTH_OIDC_JWKS_MAX_CACHE_SECONDS", "60"),
                ],
                "AUTH_OIDC_JWKS_MAX_CACHE_SECONDS",
            ),
            (&[("AUTH_OIDC_GROUP_ROLES", "hq")], "AUTH_OIDC_GROUP_ROLES"),
            (&[("AUTH_OIDC_ROLE_CLAIM", "a..b")], "AUTH_OIDC_ROLE_CLAIM"),
        ];
        for (extra, var) in refused {
            let mut vars = vec![base[0], issuer];
            vars.extend_from_slice(extra);
            assert_eq!(oidc(&vars).unwrap_err().var, *var, "{extra:?}");
        }
        let mapped = oidc(&[
            base[0],
            issuer,
            ("AUTH_OIDC_GROUP_ROLES", "storeops-hq=hq, /a=b/c=associate"),
            ("AUTH_OIDC_ROLE_CLAIM", "realm_access.roles"),
        ])
        .expect("mapped");
        assert_eq!(
            mapped.claims.group_roles,
            [
                ("storeops-hq".to_owned(), "hq".to_owned()),
                ("/a=b/c".to_owned(), "associate".to_owned())
            ]
        );
        assert_eq!(mapped.claims.role_claim, "realm_access.roles");
    }

    #[test]
    fn urls_print_without_passwords() {
        let config = load(&[
            ("DATABASE_URL", "postgres://app:hunter2@db:5432/storeops"),
            ("AUTH_JWT_SECRET", "0123456789abcdef0123456789abcdef"),
        ])
        .expect("valid");
        let url = config.database_url().expect("set");
        assert_eq!(url.to_string(), "postgres://app:***@db:5432/storeops");
        let debug = format!("{config:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(!debug.contains("0123456789abcdef"), "{debug}");
    }
}
