//! Every role and scope decision of the API, as methods of [`Principal`]. Each is an
//! exhaustive `match` on the caller's access, so a new role grants nothing until every
//! decision has been made for it; modules load what a decision needs (a store's region,
//! the regions a target names) and ask here.

use super::{Access, Principal};
use crate::{
    error::ApiError,
    ids::{RegionCode, StaffId, StoreId},
};

/// Which stores a staff principal can see, for list queries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreScope {
    All,
    Region(RegionCode),
    Store(StoreId),
}

/// A list query's store filter once a caller's scope has bounded what they asked for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScopeFilter {
    pub region: Option<RegionCode>,
    pub store: Option<StoreId>,
}

impl StoreScope {
    /// The filter for a list the caller narrowed to `requested` region: everything in
    /// scope by default; another region than a regional manager's own is refused.
    pub fn narrow(self, requested: Option<RegionCode>) -> Result<ScopeFilter, ApiError> {
        match self {
            Self::All => Ok(ScopeFilter {
                region: requested,
                store: None,
            }),
            Self::Region(own) => {
                if requested.as_ref().is_some_and(|r| *r != own) {
                    return Err(outside_scope("that region"));
                }
                Ok(ScopeFilter {
                    region: Some(own),
                    store: None,
                })
            }
            Self::Store(own) => Ok(ScopeFilter {
                region: requested,
                store: Some(own),
            }),
        }
    }
}

/// A store staff member as announcements address them: their store, and whether they
/// manage it (an announcement's audience names associates, managers or everyone).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreStaff {
    pub store_id: StoreId,
    pub manager: bool,
}

fn outside_scope(what: &str) -> ApiError {
    ApiError::Forbidden(format!("{what} is outside your scope"))
}

const INTEGRATIONS_ONLY: &str = "integration tokens may only call /api/v1/integrations";

impl Principal {
    /// Staff routes: every role but `integration`.
    pub fn store_scope(&self) -> Result<StoreScope, ApiError> {
        match &self.access {
            Access::Associate { store_id } | Access::StoreManager { store_id } => {
                Ok(StoreScope::Store(*store_id))
            }
            Access::RegionalManager { region } => Ok(StoreScope::Region(region.clone())),
            Access::Hq => Ok(StoreScope::All),
            Access::Integration => Err(ApiError::Forbidden(INTEGRATIONS_ONLY.to_owned())),
        }
    }

    /// Before a store named in a path is looked up: a single-store caller asking for
    /// another store is refused at once, so it learns nothing about which ids exist.
    pub fn ensure_may_look_up_store(&self, id: StoreId) -> Result<(), ApiError> {
        match self.store_scope()? {
            StoreScope::Store(own) if own != id => Err(outside_scope("this store")),
            StoreScope::Store(_) | StoreScope::Region(_) | StoreScope::All => Ok(()),
        }
    }

    /// May this caller read the given store (which lies in `region`)?
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
            Err(outside_scope("this store"))
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
        self.staff
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

    /// Start or complete a task (and upload its evidence): associates when it is
    /// assigned to them or to nobody; store managers and HQ always.
    pub fn ensure_works_on(&self, assignee: Option<StaffId>) -> Result<(), ApiError> {
        match self.access {
            Access::StoreManager { .. } | Access::Hq => Ok(()),
            Access::Associate { .. } => match assignee {
                None => Ok(()),
                Some(assignee) if Some(assignee) == self.staff_id() => Ok(()),
                // A state of the task, not a lack of rights: it may be reassigned back.
                Some(_) => Err(ApiError::Conflict(
                    "this task is assigned to someone else".to_owned(),
                )),
            },
            Access::RegionalManager { .. } | Access::Integration => Err(ApiError::Forbidden(
                "only store staff and HQ work on tasks".to_owned(),
            )),
        }
    }

    /// Store closures: the store's manager, its regional manager and HQ (the store
    /// itself is scope-checked when it is loaded).
    pub fn ensure_manages_store(&self) -> Result<(), ApiError> {
        match self.access {
            Access::StoreManager { .. } | Access::RegionalManager { .. } | Access::Hq => Ok(()),
            Access::Associate { .. } => Err(ApiError::Forbidden(
                "associates cannot change store closures".to_owned(),
            )),
            Access::Integration => Err(ApiError::Forbidden(INTEGRATIONS_ONLY.to_owned())),
        }
    }

    /// Where the caller may send work to many stores at once (campaigns, announcements):
    /// HQ anywhere (`None`), a regional manager within their region; nobody else.
    pub fn targeting_scope(&self) -> Result<Option<RegionCode>, ApiError> {
        match &self.access {
            Access::Hq => Ok(None),
            Access::RegionalManager { region } => Ok(Some(region.clone())),
            Access::Associate { .. } | Access::StoreManager { .. } | Access::Integration => {
                Err(ApiError::Forbidden(
                    "only regional managers and HQ send work to many stores".to_owned(),
                ))
            }
        }
    }

    /// A target naming `named_regions` (its region list, or the regions of its listed
    /// stores) is within the caller's targeting scope; returns that scope.
    pub fn ensure_targets_within_scope(
        &self,
        named_regions: &[RegionCode],
    ) -> Result<Option<RegionCode>, ApiError> {
        let scope = self.targeting_scope()?;
        if let Some(own) = &scope
            && named_regions.iter().any(|r| r != own)
        {
            return Err(ApiError::Forbidden(
                "a regional manager's work stays in their region".to_owned(),
            ));
        }
        Ok(scope)
    }

    /// May the caller see work sent to many stores by someone whose targeting scope was
    /// `region_scope` (None: chain-wide)? HQ sees all; a regional manager their region's.
    pub fn may_see_targeted(&self, region_scope: Option<&RegionCode>) -> Result<bool, ApiError> {
        Ok(match self.targeting_scope()? {
            None => true,
            Some(own) => region_scope == Some(&own),
        })
    }

    /// Announcements addressed to a store's staff: an associate or a store manager reads
    /// and acknowledges their own store's, and only for themselves (receipts are keyed by
    /// the caller's subject); nobody else has a store of their own to read for.
    pub fn store_staff(&self) -> Result<StoreStaff, ApiError> {
        match &self.access {
            Access::Associate { store_id } => Ok(StoreStaff {
                store_id: *store_id,
                manager: false,
            }),
            Access::StoreManager { store_id } => Ok(StoreStaff {
                store_id: *store_id,
                manager: true,
            }),
            Access::RegionalManager { .. } | Access::Hq => Err(ApiError::Forbidden(
                "only store staff read and acknowledge announcements".to_owned(),
            )),
            Access::Integration => Err(ApiError::Forbidden(INTEGRATIONS_ONLY.to_owned())),
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

/// The whole policy as one table: every decision for every role, so a change to any
/// rule shows here as a changed row.
#[cfg(test)]
mod tests {
    use super::*;

    const OWN_STORE: StoreId = StoreId(uuid::Uuid::from_u128(1));
    const OTHER_STORE: StoreId = StoreId(uuid::Uuid::from_u128(2));
    const ME: StaffId = StaffId(uuid::Uuid::from_u128(10));
    const COLLEAGUE: StaffId = StaffId(uuid::Uuid::from_u128(11));

    fn region(code: &str) -> RegionCode {
        RegionCode::parse(code).expect("region code")
    }

    fn principal(role: &str) -> Principal {
        let access = match role {
            "associate" => Access::Associate {
                store_id: OWN_STORE,
            },
            "store_manager" => Access::StoreManager {
                store_id: OWN_STORE,
            },
            "regional_manager" => Access::RegionalManager {
                region: region("north"),
            },
            "hq" => Access::Hq,
            "integration" => Access::Integration,
            other => panic!("no role {other}"),
        };
        Principal {
            subject: ME.to_string(),
            access,
            staff: Some(ME),
        }
    }

    type Decision = fn(&Principal) -> bool;

    /// (decision, [associate, store_manager, regional_manager, hq, integration]).
    fn table() -> Vec<(&'static str, Decision, [bool; 5])> {
        vec![
            (
                "staff routes",
                |p| p.store_scope().is_ok(),
                [true, true, true, true, false],
            ),
            (
                "look up own store",
                |p| p.ensure_may_look_up_store(OWN_STORE).is_ok(),
                [true, true, true, true, false],
            ),
            (
                "look up another store",
                |p| p.ensure_may_look_up_store(OTHER_STORE).is_ok(),
                [false, false, true, true, false],
            ),
            (
                "read own store (north)",
                |p| p.ensure_store_readable(OWN_STORE, &region("north")).is_ok(),
                [true, true, true, true, false],
            ),
            (
                "read another north store",
                |p| {
                    p.ensure_store_readable(OTHER_STORE, &region("north"))
                        .is_ok()
                },
                [false, false, true, true, false],
            ),
            (
                "read a south store",
                |p| {
                    p.ensure_store_readable(OTHER_STORE, &region("south"))
                        .is_ok()
                },
                [false, false, false, true, false],
            ),
            (
                "integration routes",
                |p| p.ensure_integration().is_ok(),
                [false, false, false, false, true],
            ),
            (
                "HQ work",
                |p| p.ensure_hq().is_ok(),
                [false, false, false, true, false],
            ),
            (
                "manage tasks",
                |p| p.ensure_manages_tasks().is_ok(),
                [false, true, false, true, false],
            ),
            (
                "work on an unassigned task",
                |p| p.ensure_works_on(None).is_ok(),
                [true, true, false, true, false],
            ),
            (
                "work on my task",
                |p| p.ensure_works_on(Some(ME)).is_ok(),
                [true, true, false, true, false],
            ),
            (
                "work on a colleague's task",
                |p| p.ensure_works_on(Some(COLLEAGUE)).is_ok(),
                [false, true, false, true, false],
            ),
            (
                "manage store closures",
                |p| p.ensure_manages_store().is_ok(),
                [false, true, true, true, false],
            ),
            (
                "target many stores",
                |p| p.targeting_scope().is_ok(),
                [false, false, true, true, false],
            ),
            (
                "target north",
                |p| p.ensure_targets_within_scope(&[region("north")]).is_ok(),
                [false, false, true, true, false],
            ),
            (
                "target south",
                |p| p.ensure_targets_within_scope(&[region("south")]).is_ok(),
                [false, false, false, true, false],
            ),
            (
                "see chain-wide work",
                |p| p.may_see_targeted(None).unwrap_or(false),
                [false, false, false, true, false],
            ),
            (
                "see north's work",
                |p| p.may_see_targeted(Some(&region("north"))).unwrap_or(false),
                [false, false, true, true, false],
            ),
            (
                "see south's work",
                |p| p.may_see_targeted(Some(&region("south"))).unwrap_or(false),
                [false, false, false, true, false],
            ),
            (
                "read and acknowledge announcements",
                |p| p.store_staff().is_ok(),
                [true, true, false, false, false],
            ),
            (
                "read announcements for managers",
                |p| p.store_staff().is_ok_and(|s| s.manager),
                [false, true, false, false, false],
            ),
            (
                "reports",
                |p| p.report_scope().is_ok(),
                [false, true, true, true, false],
            ),
            (
                "list another region",
                |p| {
                    p.store_scope()
                        .and_then(|s| s.narrow(Some(region("south"))))
                        .is_ok()
                },
                [true, true, false, true, false],
            ),
        ]
    }

    #[test]
    fn the_policy_table() {
        let roles = [
            "associate",
            "store_manager",
            "regional_manager",
            "hq",
            "integration",
        ];
        let mut wrong = Vec::new();
        for (decision, allowed, expected) in table() {
            for (role, expected) in roles.iter().zip(expected) {
                let actual = allowed(&principal(role));
                if actual != expected {
                    wrong.push(format!(
                        "{decision} by {role}: {actual}, expected {expected}"
                    ));
                }
            }
        }
        assert!(wrong.is_empty(), "{wrong:#?}");
    }

    #[test]
    fn narrowing_keeps_single_store_callers_on_their_store() {
        let filter = principal("associate")
            .store_scope()
            .and_then(|s| s.narrow(Some(region("south"))))
            .expect("narrowed");
        assert_eq!(filter.store, Some(OWN_STORE));
        let filter = principal("regional_manager")
            .store_scope()
            .and_then(|s| s.narrow(None))
            .expect("narrowed");
        assert_eq!(filter.region, Some(region("north")));
    }
}
