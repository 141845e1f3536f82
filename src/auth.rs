//! Bearer-token authentication and the one place where roles and scopes are decided.
//!
//! The `authenticate` middleware guards the whole `/api` tree, so a route cannot be added
//! without authentication; handlers take a [`Principal`] and ask it scope questions.

use std::sync::Arc;

use axum::{
    extract::{FromRequestParts, Request, State},
    http::{header, request::Parts},
    middleware::Next,
    response::Response,
};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{
    config::{JwtVerification, PublicKeyAlgorithm, Secret},
    error::ApiError,
    stores::{RegionCode, StaffId, StoreId},
};

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

/// Which stores a staff principal can see, for list queries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreScope {
    All,
    Region(RegionCode),
    Store(StoreId),
}

/// The authenticated caller.
#[derive(Debug, Clone)]
pub struct Principal {
    pub subject: String,
    pub access: Access,
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

    /// Staff routes: every role but `integration`.
    pub fn store_scope(&self) -> Result<StoreScope, ApiError> {
        match &self.access {
            Access::Associate { store_id } | Access::StoreManager { store_id } => {
                Ok(StoreScope::Store(*store_id))
            }
            Access::RegionalManager { region } => Ok(StoreScope::Region(region.clone())),
            Access::Hq => Ok(StoreScope::All),
            Access::Integration => Err(ApiError::Forbidden(
                "integration tokens may only call /api/v1/integrations".to_owned(),
            )),
        }
    }

    /// May this caller read the given store?
    pub fn ensure_store_readable(
        &self,
        store_id: StoreId,
        region: &RegionCode,
    ) -> Result<(), ApiError> {
        let allowed = match self.store_scope()? {
            StoreScope::All => true,
            StoreScope::Region(own) => own == *region,
            StoreScope::Store(own) => own == store_id,
        };
        if allowed {
            Ok(())
        } else {
            Err(ApiError::Forbidden(
                "this store is outside your scope".to_owned(),
            ))
        }
    }

    /// Integration routes: only `integration` tokens.
    pub fn ensure_integration(&self) -> Result<(), ApiError> {
        match self.access {
            Access::Integration => Ok(()),
            Access::Associate { .. }
            | Access::StoreManager { .. }
            | Access::RegionalManager { .. }
            | Access::Hq => Err(ApiError::Forbidden(
                "only integration tokens may call integration routes".to_owned(),
            )),
        }
    }

    /// HQ-only work: templates, webhooks.
    pub fn ensure_hq(&self) -> Result<(), ApiError> {
        match self.access {
            Access::Hq => Ok(()),
            Access::Associate { .. }
            | Access::StoreManager { .. }
            | Access::RegionalManager { .. }
            | Access::Integration => Err(ApiError::Forbidden("only HQ may do this".to_owned())),
        }
    }

    /// The caller's staff id, when their token's `sub` is one (staff tokens).
    pub fn staff_id(&self) -> Option<StaffId> {
        self.subject.parse().ok().map(StaffId)
    }

    /// Store managers and HQ manage tasks: create, assign, approve, redo, cancel.
    pub fn ensure_manages_tasks(&self) -> Result<(), ApiError> {
        match self.access {
            Access::StoreManager { .. } | Access::Hq => Ok(()),
            Access::Associate { .. } | Access::RegionalManager { .. } | Access::Integration => Err(
                ApiError::Forbidden("only the store's manager or HQ may do this".to_owned()),
            ),
        }
    }

    /// Start or complete a task: associates when it is assigned to them or to nobody;
    /// store managers and HQ always.
    pub fn ensure_works_on(&self, assignee: Option<StaffId>) -> Result<(), ApiError> {
        match self.access {
            Access::StoreManager { .. } | Access::Hq => Ok(()),
            Access::Associate { .. } => match assignee {
                None => Ok(()),
                Some(assignee) if Some(assignee) == self.staff_id() => Ok(()),
                Some(_) => Err(ApiError::Forbidden(
                    "this task is assigned to someone else".to_owned(),
                )),
            },
            Access::RegionalManager { .. } | Access::Integration => Err(ApiError::Forbidden(
                "only store staff and HQ work on tasks".to_owned(),
            )),
        }
    }

    /// Store closures: the store's manager, its regional manager and HQ (the store
    /// itself is scope-checked by `ScopedStore`).
    pub fn ensure_manages_store(&self) -> Result<(), ApiError> {
        match self.access {
            Access::StoreManager { .. } | Access::RegionalManager { .. } | Access::Hq => Ok(()),
            Access::Associate { .. } => Err(ApiError::Forbidden(
                "associates cannot change store closures".to_owned(),
            )),
            Access::Integration => Err(ApiError::Forbidden(
                "integration tokens may only call /api/v1/integrations".to_owned(),
            )),
        }
    }

    /// Where the caller may run campaigns: HQ anywhere (`None`), a regional manager in
    /// their region; nobody else.
    pub fn campaign_scope(&self) -> Result<Option<RegionCode>, ApiError> {
        match &self.access {
            Access::Hq => Ok(None),
            Access::RegionalManager { region } => Ok(Some(region.clone())),
            Access::Associate { .. } | Access::StoreManager { .. } | Access::Integration => Err(
                ApiError::Forbidden("campaigns are run by regional managers and HQ".to_owned()),
            ),
        }
    }

    /// Which stores the caller's reports cover: store managers their store, regional
    /// managers their region, HQ everything; associates and integrations none.
    pub fn report_scope(&self) -> Result<StoreScope, ApiError> {
        match &self.access {
            Access::Hq => Ok(StoreScope::All),
            Access::RegionalManager { region } => Ok(StoreScope::Region(region.clone())),
            Access::StoreManager { store_id } => Ok(StoreScope::Store(*store_id)),
            Access::Associate { .. } | Access::Integration => Err(ApiError::Forbidden(
                "reports are for store managers, regional managers and HQ".to_owned(),
            )),
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
}

/// Verifies bearer tokens; built once at start-up.
pub struct JwtVerifier {
    key: DecodingKey,
    validation: Validation,
    verified: VerifiedTokens,
}

/// How many seconds past `exp` a token is still accepted (clock skew).
const LEEWAY_SECONDS: u64 = 30;

/// Tokens this process has verified, by their exact text, until they expire. The mobile
/// app sends one token for hours; checking its signature again on every request cost
/// more than the rest of a store task list request with HS256, and RS256 or ES256
/// verification in production costs several times that. A token's text decides its
/// verification completely (the key never changes while the process runs), so a hit
/// only re-checks the expiry. Only valid tokens enter; the map is bounded by emptying
/// it when full, which only costs the next requests a verification each.
#[derive(Default)]
struct VerifiedTokens(std::sync::RwLock<std::collections::HashMap<Box<str>, (Principal, i64)>>);

const MAX_VERIFIED_TOKENS: usize = 10_000;

impl VerifiedTokens {
    fn get(&self, token: &str, now: i64) -> Option<Principal> {
        let entries = self.0.read().ok()?;
        let (principal, exp) = entries.get(token)?;
        let leeway = i64::try_from(LEEWAY_SECONDS).unwrap_or(0);
        (*exp >= now - leeway).then(|| principal.clone())
    }

    fn insert(&self, token: &str, principal: &Principal, exp: i64) {
        if let Ok(mut entries) = self.0.write() {
            if entries.len() >= MAX_VERIFIED_TOKENS {
                entries.clear();
            }
            entries.insert(token.into(), (principal.clone(), exp));
        }
    }
}

impl JwtVerifier {
    pub fn new(config: &JwtVerification) -> Result<Self, AuthError> {
        let (key, algorithm) = match config {
            JwtVerification::SharedSecret(secret) => (
                DecodingKey::from_secret(secret.expose().as_bytes()),
                Algorithm::HS256,
            ),
            JwtVerification::PublicKey { path, algorithm } => {
                let pem = std::fs::read(path).map_err(|source| AuthError::KeyFile {
                    path: path.display().to_string(),
                    source,
                })?;
                match algorithm {
                    PublicKeyAlgorithm::Rs256 => (
                        DecodingKey::from_rsa_pem(&pem).map_err(AuthError::Key)?,
                        Algorithm::RS256,
                    ),
                    PublicKeyAlgorithm::Es256 => (
                        DecodingKey::from_ec_pem(&pem).map_err(AuthError::Key)?,
                        Algorithm::ES256,
                    ),
                }
            }
        };
        // Exactly one algorithm: a token cannot pick its own (no `none`, no HS/RS confusion).
        let mut validation = Validation::new(algorithm);
        validation.leeway = LEEWAY_SECONDS;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Ok(Self {
            key,
            validation,
            verified: VerifiedTokens::default(),
        })
    }

    pub fn verify(&self, token: &str) -> Result<Principal, ApiError> {
        let now = chrono::Utc::now().timestamp();
        if let Some(principal) = self.verified.get(token, now) {
            return Ok(principal);
        }
        let data =
            jsonwebtoken::decode::<Claims>(token, &self.key, &self.validation).map_err(|e| {
                use jsonwebtoken::errors::ErrorKind;
                let reason = match e.kind() {
                    ErrorKind::ExpiredSignature => "the token has expired",
                    ErrorKind::InvalidSignature => "the token signature is invalid",
                    ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                        "the token algorithm is not accepted"
                    }
                    _ => "the token is malformed",
                };
                ApiError::Unauthorized(reason.to_owned())
            })?;
        let exp = data.claims.exp;
        let principal = principal_from_claims(data.claims)?;
        self.verified.insert(token, &principal, exp);
        Ok(principal)
    }
}

fn principal_from_claims(claims: Claims) -> Result<Principal, ApiError> {
    let missing =
        |claim: &str| ApiError::Unauthorized(format!("the token's role requires a {claim} claim"));
    let access = match claims.role {
        Role::Associate => Access::Associate {
            store_id: claims.store_id.ok_or_else(|| missing("store_id"))?,
        },
        Role::StoreManager => Access::StoreManager {
            store_id: claims.store_id.ok_or_else(|| missing("store_id"))?,
        },
        Role::RegionalManager => Access::RegionalManager {
            region: claims
                .region
                .as_deref()
                .and_then(|r| RegionCode::parse(r).ok())
                .ok_or_else(|| missing("region"))?,
        },
        Role::Hq => Access::Hq,
        Role::Integration => Access::Integration,
    };
    if claims.sub.is_empty() || claims.sub.len() > 200 {
        return Err(ApiError::Unauthorized(
            "the token's sub claim is invalid".to_owned(),
        ));
    }
    Ok(Principal {
        subject: claims.sub,
        access,
    })
}

/// Signs HS256 tokens for `storeops token` and the tests.
pub struct JwtSigner {
    key: EncodingKey,
}

impl JwtSigner {
    pub fn new(config: &JwtVerification) -> Result<Self, AuthError> {
        match config {
            JwtVerification::SharedSecret(secret) => Ok(Self::from_secret(secret)),
            JwtVerification::PublicKey { .. } => Err(AuthError::CannotSign),
        }
    }

    pub fn from_secret(secret: &Secret) -> Self {
        Self {
            key: EncodingKey::from_secret(secret.expose().as_bytes()),
        }
    }

    pub fn sign(&self, claims: &Claims) -> Result<String, AuthError> {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.key)
            .map_err(AuthError::Sign)
    }
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
    let principal = verifier.verify(token)?;
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

impl<S: Send + Sync> FromRequestParts<S> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Principal>().cloned().ok_or_else(|| {
            ApiError::Unauthorized("an Authorization: Bearer token is required".to_owned())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> Secret {
        Secret::new("test-secret-test-secret-test-secret!")
    }

    fn claims(role: Role) -> Claims {
        Claims {
            sub: "u1".into(),
            role,
            store_id: None,
            region: None,
            exp: chrono::Utc::now().timestamp() + 60,
            iat: None,
        }
    }

    #[test]
    fn verified_tokens_expire_and_stay_bounded() {
        let cache = VerifiedTokens::default();
        let principal = Principal {
            subject: "u1".into(),
            access: Access::Hq,
        };
        let now = 1_000_000;
        cache.insert("fresh", &principal, now + 60);
        cache.insert("in-leeway", &principal, now - 10);
        cache.insert("expired", &principal, now - 31);
        assert_eq!(cache.get("fresh", now).map(|p| p.access), Some(Access::Hq));
        assert!(cache.get("in-leeway", now).is_some());
        assert!(
            cache.get("expired", now).is_none(),
            "re-verified, and refused"
        );
        assert!(cache.get("never-seen", now).is_none());
        for n in 0..MAX_VERIFIED_TOKENS {
            cache.insert(&format!("t{n}"), &principal, now + 60);
        }
        let size = cache.0.read().map(|entries| entries.len()).unwrap_or(0);
        assert!(size <= MAX_VERIFIED_TOKENS, "{size}");
    }

    #[test]
    fn a_token_verified_once_is_accepted_again_and_a_tampered_one_is_not() {
        let config = JwtVerification::SharedSecret(secret());
        let verifier = JwtVerifier::new(&config).expect("verifier");
        let signer = JwtSigner::new(&config).expect("signer");
        let token = signer.sign(&claims(Role::Hq)).expect("sign");
        for _ in 0..2 {
            assert_eq!(verifier.verify(&token).expect("valid").access, Access::Hq);
        }
        let mut tampered = token.clone();
        tampered.pop();
        assert!(matches!(
            verifier.verify(&tampered),
            Err(ApiError::Unauthorized(_))
        ));
    }

    #[test]
    fn round_trip_and_role_claims_are_required() {
        let config = JwtVerification::SharedSecret(secret());
        let verifier = JwtVerifier::new(&config).expect("verifier");
        let signer = JwtSigner::new(&config).expect("signer");
        let token = signer.sign(&claims(Role::Hq)).expect("sign");
        assert_eq!(verifier.verify(&token).expect("valid").access, Access::Hq);
        let token = signer.sign(&claims(Role::Associate)).expect("sign");
        assert!(matches!(
            verifier.verify(&token),
            Err(ApiError::Unauthorized(_))
        ));
    }
}
