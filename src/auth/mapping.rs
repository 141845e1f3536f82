//! From an identity provider's claims to a storeops role, store and region, as the
//! configuration says (`AUTH_OIDC_*_CLAIM`, `AUTH_OIDC_GROUP_ROLES`); the store of store
//! staff may come from the staff directory instead, looked up on every request.

use serde_json::{Map, Value};

use super::{Access, AuthError, Principal, Role, StaffLookup};
use crate::{
    config::ClaimsMapping,
    error::ApiError,
    ids::{RegionCode, StoreId},
};

/// The mapping, its role names checked once at start-up.
pub(super) struct ClaimsMap {
    role_claim: String,
    groups_claim: String,
    group_roles: Vec<(String, Role)>,
    store_claim: String,
    region_claim: String,
    subject_claim: String,
}

/// What a verified token says about its bearer, before the staff directory is asked.
/// Cached with the token; the directory's answer never is, so a move to another store
/// applies on the next request.
#[derive(Debug, Clone)]
pub(super) struct Identity {
    subject: String,
    role: Role,
    store_id: Option<StoreId>,
    region: Option<RegionCode>,
    directory_key: Option<String>,
}

impl ClaimsMap {
    pub fn new(mapping: &ClaimsMapping) -> Result<Self, AuthError> {
        let group_roles = mapping
            .group_roles
            .iter()
            .map(|(group, role)| {
                role.parse::<Role>()
                    .map(|role| (group.clone(), role))
                    .map_err(|e| AuthError::Mapping(format!("AUTH_OIDC_GROUP_ROLES: {group}: {e}")))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            role_claim: mapping.role_claim.clone(),
            groups_claim: mapping.groups_claim.clone(),
            group_roles,
            store_claim: mapping.store_claim.clone(),
            region_claim: mapping.region_claim.clone(),
            subject_claim: mapping.subject_claim.clone(),
        })
    }

    /// The role from the role claim (the first value naming a role), else from the first
    /// mapped group; store and region from their claims. 403 naming what is missing.
    pub fn identity(&self, claims: &Map<String, Value>) -> Result<Identity, ApiError> {
        let subject = claims
            .get("sub")
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty() && s.len() <= 200)
            .ok_or_else(|| ApiError::Unauthorized("the token's sub claim is invalid".to_owned()))?
            .to_owned();
        let from_claim = strings(claim(claims, &self.role_claim)).find_map(|v| v.parse().ok());
        let role = match from_claim {
            Some(role) => role,
            None => {
                let groups: Vec<&str> = strings(claim(claims, &self.groups_claim)).collect();
                self.group_roles
                    .iter()
                    .find(|(group, _)| groups.contains(&group.as_str()))
                    .map(|(_, role)| *role)
                    .ok_or_else(|| {
                        ApiError::Forbidden(format!(
                            "the token maps to no storeops role: no {:?} claim naming a role{}",
                            self.role_claim,
                            if self.group_roles.is_empty() {
                                String::new()
                            } else {
                                format!(
                                    ", and no group in {:?} that is mapped to one",
                                    self.groups_claim
                                )
                            }
                        ))
                    })?
            }
        };
        let store_id = match claim(claims, &self.store_claim) {
            None => None,
            Some(value) => Some(
                value
                    .as_str()
                    .and_then(|s| s.parse::<uuid::Uuid>().ok())
                    .map(StoreId)
                    .ok_or_else(|| {
                        ApiError::Forbidden(format!(
                            "the token's {:?} claim is not a store id",
                            self.store_claim
                        ))
                    })?,
            ),
        };
        let region = match claim(claims, &self.region_claim) {
            None => None,
            Some(value) => Some(
                value
                    .as_str()
                    .and_then(|r| RegionCode::parse(r).ok())
                    .ok_or_else(|| {
                        ApiError::Forbidden(format!(
                            "the token's {:?} claim is not a region code",
                            self.region_claim
                        ))
                    })?,
            ),
        };
        let directory_key = claim(claims, &self.subject_claim)
            .and_then(Value::as_str)
            .map(str::to_owned);
        Ok(Identity {
            subject,
            role,
            store_id,
            region,
            directory_key,
        })
    }

    /// The principal, asking the staff directory for store staff: it gives their staff
    /// id, and their store when no claim does.
    pub async fn principal(
        &self,
        identity: Identity,
        staff: Option<&dyn StaffLookup>,
    ) -> Result<Principal, ApiError> {
        let needs = |what: &str, claim: &str| {
            ApiError::Forbidden(format!(
                "the token's role {:?} needs {what}: no {claim:?} claim{}",
                identity.role,
                if what == "a store" {
                    format!(
                        ", and {:?} {:?} is not an active member of the staff directory",
                        self.subject_claim,
                        identity.directory_key.as_deref().unwrap_or("(missing)")
                    )
                } else {
                    String::new()
                }
            ))
        };
        let entry = match (identity.role, staff, identity.directory_key.as_deref()) {
            (Role::Associate | Role::StoreManager, Some(staff), Some(key)) => {
                staff.by_subject(key).await?
            }
            _ => None,
        };
        let store = identity.store_id.or(entry.as_ref().map(|e| e.store_id));
        let access = match identity.role {
            Role::Associate => Access::Associate {
                store_id: store.ok_or_else(|| needs("a store", &self.store_claim))?,
            },
            Role::StoreManager => Access::StoreManager {
                store_id: store.ok_or_else(|| needs("a store", &self.store_claim))?,
            },
            Role::RegionalManager => Access::RegionalManager {
                region: identity
                    .region
                    .clone()
                    .ok_or_else(|| needs("a region", &self.region_claim))?,
            },
            Role::Hq => Access::Hq,
            Role::Integration => Access::Integration,
        };
        Ok(Principal {
            subject: identity.subject,
            access,
            staff: entry.map(|e| e.staff_id),
        })
    }
}

/// A claim by name; dots reach into objects (`realm_access.roles`).
fn claim<'a>(claims: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    let mut parts = path.split('.');
    let mut value = claims.get(parts.next()?)?;
    for part in parts {
        value = value.get(part)?;
    }
    (!value.is_null()).then_some(value)
}

/// A claim's string values: a string, or the strings of an array.
fn strings(value: Option<&Value>) -> impl Iterator<Item = &str> {
    let (one, many) = match value {
        Some(Value::String(s)) => (Some(s.as_str()), None),
        Some(Value::Array(items)) => (None, Some(items.iter().filter_map(Value::as_str))),
        _ => (None, None),
    };
    one.into_iter().chain(many.into_iter().flatten())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(group_roles: &[(&str, &str)], role_claim: &str) -> ClaimsMap {
        ClaimsMap::new(&ClaimsMapping {
            role_claim: role_claim.to_owned(),
            groups_claim: "groups".to_owned(),
            group_roles: group_roles
                .iter()
                .map(|(g, r)| ((*g).to_owned(), (*r).to_owned()))
                .collect(),
            store_claim: "store_id".to_owned(),
            region_claim: "region".to_owned(),
            subject_claim: "sub".to_owned(),
        })
        .expect("mapping")
    }

    fn claims(value: serde_json::Value) -> Map<String, Value> {
        value.as_object().cloned().expect("object")
    }

    #[test]
    fn role_from_claim_then_first_mapped_group() {
        let m = map(
            &[("storeops-hq", "hq"), ("storeops-associates", "associate")],
            "realm_access.roles",
        );
        let nested = claims(serde_json::json!({
            "sub": "u", "realm_access": {"roles": ["offline_access", "regional_manager"]},
            "groups": ["storeops-hq"], "region": "moscow"
        }));
        assert_eq!(
            m.identity(&nested).expect("mapped").role,
            Role::RegionalManager
        );
        let grouped = claims(serde_json::json!({
            "sub": "u", "groups": ["all-staff", "storeops-associates", "storeops-hq"]
        }));
        assert_eq!(
            m.identity(&grouped).expect("mapped").role,
            Role::Hq,
            "map order decides"
        );
        let none = claims(serde_json::json!({"sub": "u", "groups": ["contractors"]}));
        let Err(ApiError::Forbidden(detail)) = m.identity(&none) else {
            panic!("not 403")
        };
        assert!(detail.contains("groups"), "{detail}");
    }

    #[test]
    fn unknown_role_names_in_the_map_fail_start_up() {
        let result = ClaimsMap::new(&ClaimsMapping {
            role_claim: "role".into(),
            groups_claim: "groups".into(),
            group_roles: vec![("g".into(), "admin".into())],
            store_claim: "store_id".into(),
            region_claim: "region".into(),
            subject_claim: "sub".into(),
        });
        assert!(matches!(result, Err(AuthError::Mapping(_))));
    }

    #[tokio::test]
    async fn store_staff_without_store_are_refused_with_what_is_missing() {
        let m = map(&[], "role");
        let identity = m
            .identity(&claims(
                serde_json::json!({"sub": "ext-1", "role": "associate"}),
            ))
            .expect("identity");
        let Err(ApiError::Forbidden(detail)) = m.principal(identity, None).await else {
            panic!("not 403")
        };
        assert!(
            detail.contains("store_id") && detail.contains("ext-1"),
            "{detail}"
        );
        let bad_store =
            claims(serde_json::json!({"sub": "x", "role": "associate", "store_id": "7"}));
        assert!(matches!(
            m.identity(&bad_store),
            Err(ApiError::Forbidden(_))
        ));
    }
}
