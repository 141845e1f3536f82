//! Bearer tokens: verification of HS256 (a shared secret), RS256/ES256 (a public key
//! file) or an OIDC provider's tokens (its JWKS, `oidc.rs`), the cache of tokens already
//! verified, and HS256 signing for `storeops token`.

use std::sync::Arc;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};

use super::{
    Access, AuthError, Claims, Principal, Role, StaffLookup,
    mapping::{ClaimsMap, Identity},
    metrics,
    oidc::{KeyStatus, Provider},
};
use crate::{
    config::{JwtVerification, PublicKeyAlgorithm, Secret},
    error::ApiError,
    ids::{RegionCode, StaffId},
};

/// Verifies bearer tokens; built once at start-up.
pub struct JwtVerifier {
    mode: Mode,
}

enum Mode {
    /// One key of this process's configuration: the claims are storeops's own.
    Fixed {
        key: DecodingKey,
        validation: Validation,
        verified: VerifiedTokens<Principal>,
    },
    /// The identity provider's keys; claims mapped by configuration, store staff looked
    /// up in the directory on every request.
    Oidc {
        provider: Arc<Provider>,
        claims: ClaimsMap,
        staff: Option<Arc<dyn StaffLookup>>,
        verified: VerifiedTokens<Identity>,
    },
}

/// How many seconds past `exp` a token is still accepted (clock skew).
const LEEWAY_SECONDS: u64 = 30;

/// Tokens this process has verified, by their exact text, until they expire. The mobile
/// app sends one token for hours; checking its signature again on every request cost
/// more than the rest of a store task list request with HS256, and RS256 or ES256
/// verification in production costs several times that. A token's text and the key set
/// decide its verification completely, so a hit only re-checks the expiry and that the
/// keys are those it was verified with (a key removed from the JWKS ends its tokens).
/// Only valid tokens enter; the map is bounded by emptying it when full, which only
/// costs the next requests a verification each.
struct VerifiedTokens<V>(std::sync::RwLock<std::collections::HashMap<Box<str>, Verified<V>>>);

struct Verified<V> {
    value: V,
    exp: i64,
    generation: u64,
}

impl<V> Default for VerifiedTokens<V> {
    fn default() -> Self {
        Self(std::sync::RwLock::default())
    }
}

const MAX_VERIFIED_TOKENS: usize = 10_000;

impl<V: Clone> VerifiedTokens<V> {
    fn get(&self, token: &str, now: i64, generation: u64, leeway: u64) -> Option<V> {
        let entries = self.0.read().ok()?;
        let entry = entries.get(token)?;
        let leeway = i64::try_from(leeway).unwrap_or(0);
        (entry.exp >= now - leeway && entry.generation == generation).then(|| entry.value.clone())
    }

    fn insert(&self, token: &str, value: &V, exp: i64, generation: u64) {
        if let Ok(mut entries) = self.0.write() {
            if entries.len() >= MAX_VERIFIED_TOKENS {
                entries.clear();
            }
            entries.insert(
                token.into(),
                Verified {
                    value: value.clone(),
                    exp,
                    generation,
                },
            );
        }
    }
}

impl JwtVerifier {
    /// `staff` answers which store a provider's user works in (OIDC mode only).
    pub fn new(
        config: &JwtVerification,
        staff: Option<Arc<dyn StaffLookup>>,
    ) -> Result<Self, AuthError> {
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
            JwtVerification::Oidc(oidc) => {
                metrics::init();
                return Ok(Self {
                    mode: Mode::Oidc {
                        claims: ClaimsMap::new(&oidc.claims)?,
                        provider: Provider::start((**oidc).clone()).map_err(AuthError::Mapping)?,
                        staff,
                        verified: VerifiedTokens::default(),
                    },
                });
            }
        };
        metrics::init();
        // Exactly one algorithm: a token cannot pick its own (no `none`, no HS/RS confusion).
        let mut validation = Validation::new(algorithm);
        validation.leeway = LEEWAY_SECONDS;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Ok(Self {
            mode: Mode::Fixed {
                key,
                validation,
                verified: VerifiedTokens::default(),
            },
        })
    }

    /// The identity provider's keys, in OIDC mode.
    pub fn key_status(&self) -> Option<KeyStatus> {
        match &self.mode {
            Mode::Fixed { .. } => None,
            Mode::Oidc { provider, .. } => Some(provider.status()),
        }
    }

    pub async fn verify(&self, token: &str) -> Result<Principal, ApiError> {
        let result = self.verify_counted(token).await;
        let outcome = match &result {
            Ok(_) => "ok",
            Err((outcome, _)) => outcome,
        };
        metrics::VERIFICATIONS.with_label_values(&[outcome]).inc();
        result.map_err(|(_, error)| error)
    }

    async fn verify_counted(&self, token: &str) -> Result<Principal, (&'static str, ApiError)> {
        let now = chrono::Utc::now().timestamp();
        match &self.mode {
            Mode::Fixed {
                key,
                validation,
                verified,
            } => {
                if let Some(principal) = verified.get(token, now, 0, LEEWAY_SECONDS) {
                    return Ok(principal);
                }
                let data = jsonwebtoken::decode::<Claims>(token, key, validation).map_err(|e| {
                    use jsonwebtoken::errors::ErrorKind;
                    let (outcome, reason) = match e.kind() {
                        ErrorKind::ExpiredSignature => ("expired", "the token has expired"),
                        ErrorKind::InvalidSignature => {
                            ("bad_signature", "the token signature is invalid")
                        }
                        ErrorKind::InvalidAlgorithm | ErrorKind::InvalidAlgorithmName => {
                            ("algorithm", "the token algorithm is not accepted")
                        }
                        _ => ("malformed", "the token is malformed"),
                    };
                    (outcome, ApiError::Unauthorized(reason.to_owned()))
                })?;
                let exp = data.claims.exp;
                let principal =
                    principal_from_claims(data.claims).map_err(|e| ("unmappable", e))?;
                verified.insert(token, &principal, exp, 0);
                Ok(principal)
            }
            Mode::Oidc {
                provider,
                claims,
                staff,
                verified,
            } => {
                let leeway = provider.leeway_seconds();
                let identity = match verified.get(token, now, provider.generation(), leeway) {
                    Some(identity) => identity,
                    None => {
                        let (token_claims, generation) = provider
                            .verify(token)
                            .await
                            .map_err(|refusal| (refusal.outcome, refusal.into()))?;
                        let identity = claims
                            .identity(&token_claims)
                            .map_err(|e| ("unmappable", e))?;
                        let exp = token_claims
                            .get("exp")
                            .and_then(serde_json::Value::as_i64)
                            .unwrap_or(now);
                        verified.insert(token, &identity, exp, generation);
                        identity
                    }
                };
                claims
                    .principal(identity, staff.as_deref())
                    .await
                    .map_err(|e| ("unmappable", e))
            }
        }
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
        // storeops's own staff tokens carry the staff id as their subject.
        staff: claims.sub.parse::<uuid::Uuid>().ok().map(StaffId),
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
            JwtVerification::PublicKey { .. } | JwtVerification::Oidc(_) => {
                Err(AuthError::CannotSign)
            }
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
            staff: None,
        };
        let now = 1_000_000;
        let get = |token: &str| cache.get(token, now, 0, LEEWAY_SECONDS);
        cache.insert("fresh", &principal, now + 60, 0);
        cache.insert("in-leeway", &principal, now - 10, 0);
        cache.insert("expired", &principal, now - 31, 0);
        cache.insert("older keys", &principal, now + 60, 1);
        assert_eq!(get("fresh").map(|p| p.access), Some(Access::Hq));
        assert!(get("in-leeway").is_some());
        assert!(get("expired").is_none(), "re-verified, and refused");
        assert!(get("never-seen").is_none());
        assert!(
            get("older keys").is_none(),
            "verified again with the keys of now"
        );
        for n in 0..MAX_VERIFIED_TOKENS {
            cache.insert(&format!("t{n}"), &principal, now + 60, 0);
        }
        let size = cache.0.read().map(|entries| entries.len()).unwrap_or(0);
        assert!(size <= MAX_VERIFIED_TOKENS, "{size}");
    }

    #[tokio::test]
    async fn a_token_verified_once_is_accepted_again_and_a_tampered_one_is_not() {
        let config = JwtVerification::SharedSecret(secret());
        let verifier = JwtVerifier::new(&config, None).expect("verifier");
        let signer = JwtSigner::new(&config).expect("signer");
        let token = signer.sign(&claims(Role::Hq)).expect("sign");
        for _ in 0..2 {
            assert_eq!(
                verifier.verify(&token).await.expect("valid").access,
                Access::Hq
            );
        }
        let mut tampered = token.clone();
        tampered.pop();
        assert!(matches!(
            verifier.verify(&tampered).await,
            Err(ApiError::Unauthorized(_))
        ));
    }

    #[tokio::test]
    async fn round_trip_and_role_claims_are_required() {
        let config = JwtVerification::SharedSecret(secret());
        let verifier = JwtVerifier::new(&config, None).expect("verifier");
        let signer = JwtSigner::new(&config).expect("signer");
        let token = signer.sign(&claims(Role::Hq)).expect("sign");
        assert_eq!(
            verifier.verify(&token).await.expect("valid").access,
            Access::Hq
        );
        let token = signer.sign(&claims(Role::Associate)).expect("sign");
        assert!(matches!(
            verifier.verify(&token).await,
            Err(ApiError::Unauthorized(_))
        ));
    }
}
