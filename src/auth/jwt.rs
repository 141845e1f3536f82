//! Bearer tokens: verification of HS256 (a shared secret) or RS256/ES256 (a public key
//! file), the cache of tokens already verified, and HS256 signing for `storeops token`.

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};

use super::{Access, AuthError, Claims, Principal, Role};
use crate::{
    config::{JwtVerification, PublicKeyAlgorithm, Secret},
    error::ApiError,
    ids::RegionCode,
};

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
