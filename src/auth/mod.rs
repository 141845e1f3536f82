//! Bearer-token authentication and the one place where roles and scopes are decided.
//!
//! The `authenticate` middleware guards the whole `/api` tree, so a route cannot be added
//! without authentication; handlers take a [`Principal`] and ask it scope questions
//! (`policy.rs`: every decision, and the table that tests them all). Tokens are verified
//! in `jwt.rs`.

use std::sync::Arc;

use axum::{
    extract::{FromRequestParts, Request, State},
    http::{header, request::Parts},
    middleware::Next,
    response::Response,
};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{
    error::ApiError,
    ids::{RegionCode, StaffId, StoreId},
};

mod jwt;
mod mapping;
mod oidc;
mod policy;

pub use jwt::{JwtSigner, JwtVerifier};
pub use oidc::KeyStatus;
pub use policy::{ScopeFilter, StoreScope, StoreStaff};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Associate,
    StoreManager,
    RegionalManager,
    Hq,
    Integration,
}

impl std::str::FromStr for Role {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        serde_json::from_value(serde_json::Value::String(s.to_owned())).map_err(|_| {
            format!(
                "unknown role {s:?}; expected associate, store_manager, regional_manager, hq or integration"
            )
        })
    }
}

/// The JWT claims of §4.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub role: Role,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store_id: Option<StoreId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    pub exp: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
}

/// What a verified token may reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    Associate { store_id: StoreId },
    StoreManager { store_id: StoreId },
    RegionalManager { region: RegionCode },
    Hq,
    Integration,
}

/// The authenticated caller.
#[derive(Debug, Clone)]
pub struct Principal {
    pub subject: String,
    pub access: Access,
    /// Their row in the staff directory, when they are store staff.
    pub staff: Option<StaffId>,
}

/// A member of the staff directory, as an identity provider's user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaffEntry {
    pub staff_id: StaffId,
    pub store_id: StoreId,
}

/// The staff directory by external subject (the provider's stable user id); owned by
/// the module that owns staff, asked on every request so a move applies at once.
pub trait StaffLookup: Send + Sync {
    fn by_subject<'a>(
        &'a self,
        subject: &'a str,
    ) -> futures_util::future::BoxFuture<'a, Result<Option<StaffEntry>, ApiError>>;
}

impl Principal {
    pub fn role(&self) -> Role {
        match self.access {
            Access::Associate { .. } => Role::Associate,
            Access::StoreManager { .. } => Role::StoreManager,
            Access::RegionalManager { .. } => Role::RegionalManager,
            Access::Hq => Role::Hq,
            Access::Integration => Role::Integration,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("cannot read public key file {path}: {source}")]
    KeyFile {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid public key: {0}")]
    Key(jsonwebtoken::errors::Error),
    #[error("cannot sign token: {0}")]
    Sign(jsonwebtoken::errors::Error),
    #[error("tokens can only be minted with AUTH_JWT_SECRET (HS256)")]
    CannotSign,
    #[error("identity provider settings: {0}")]
    Mapping(String),
}

/// Middleware for the `/api` tree: no valid bearer token, no entry.
pub async fn authenticate(
    State(verifier): State<Arc<JwtVerifier>>,
    mut request: Request,
    next: Next,
) -> Result<Response, ApiError> {
    let header = request
        .headers()
        .get(header::AUTHORIZATION)
        .ok_or_else(|| {
            ApiError::Unauthorized("an Authorization: Bearer token is required".to_owned())
        })?;
    let token = header
        .to_str()
        .ok()
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| {
            ApiError::Unauthorized("the Authorization header must be 'Bearer <token>'".to_owned())
        })?;
    let principal = verifier.verify(token).await?;
    tracing::Span::current().record("role", tracing::field::debug(principal.role()));
    request.extensions_mut().insert(principal);
    Ok(next.run(request).await)
}

/// Middleware for staff route groups: integration tokens stop here, before any
/// extractor or body parsing runs, so they always get 403.
pub async fn require_staff(request: Request, next: Next) -> Result<Response, ApiError> {
    match request.extensions().get::<Principal>() {
        None => Err(ApiError::Unauthorized(
            "an Authorization: Bearer token is required".to_owned(),
        )),
        Some(principal) => {
            principal.store_scope()?;
            Ok(next.run(request).await)
        }
    }
}

/// Middleware for the integration routes: only integration tokens; staff get 403
/// before the (possibly very large) body is read.
pub async fn require_integration(request: Request, next: Next) -> Result<Response, ApiError> {
    match request.extensions().get::<Principal>() {
        None => Err(ApiError::Unauthorized(
            "an Authorization: Bearer token is required".to_owned(),
        )),
        Some(principal) => {
            principal.ensure_integration()?;
            Ok(next.run(request).await)
        }
    }
}

/// An HQ caller; anyone else gets 403 before the request body is read.
pub struct HqPrincipal(pub Principal);

impl<S: Send + Sync> FromRequestParts<S> for HqPrincipal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let principal = Principal::from_request_parts(parts, state).await?;
        principal.ensure_hq()?;
        Ok(Self(principal))
    }
}

/// `storeops_auth_*`: verifications and the identity provider's keys.
mod metrics {
    use std::sync::LazyLock;

    use prometheus::{Gauge, IntCounterVec, Opts};

    use crate::metrics::register;

    pub static VERIFICATIONS: LazyLock<IntCounterVec> = LazyLock::new(|| {
        register(
            IntCounterVec::new(
                Opts::new(
                    "storeops_auth_verifications_total",
                    "Bearer tokens verified, by outcome (ok, expired, bad_signature, unknown_key, wrong_issuer, wrong_audience, algorithm, not_yet_valid, malformed, unmappable).",
                ),
                &["outcome"],
            )
            .expect("metric"),
        )
    });

    pub static JWKS_REFRESHES: LazyLock<IntCounterVec> = LazyLock::new(|| {
        register(
            IntCounterVec::new(
                Opts::new(
                    "storeops_auth_jwks_refreshes_total",
                    "Fetches of the identity provider's JWKS, by outcome (ok, error).",
                ),
                &["outcome"],
            )
            .expect("metric"),
        )
    });

    pub static JWKS_AGE: LazyLock<Gauge> = LazyLock::new(|| {
        register(
            Gauge::new(
                "storeops_auth_jwks_age_seconds",
                "Seconds since the identity provider's keys were last fetched successfully.",
            )
            .expect("metric"),
        )
    });

    pub fn init() {
        LazyLock::force(&VERIFICATIONS);
        LazyLock::force(&JWKS_REFRESHES);
        LazyLock::force(&JWKS_AGE);
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Principal>().cloned().ok_or_else(|| {
            ApiError::Unauthorized("an Authorization: Bearer token is required".to_owned())
        })
    }
}
