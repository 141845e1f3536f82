//! The stores every store-scoped request looks up (for scope checks and time zones),
//! cached in memory: master data that changes rarely, read on the hottest paths.
//! Entries live for [`TTL`]; a store moved to another region is seen there within it.

use std::{
    collections::HashMap,
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use sqlx::PgPool;

use super::repo::{self, StoreRow};
use crate::{
    auth::{StaffEntry, StaffLookup},
    error::ApiError,
    ids::StoreId,
};

pub const TTL: Duration = Duration::from_secs(30);
/// Far above the chain's ~1,000 stores; a bound, not a tuning knob.
const MAX_ENTRIES: usize = 100_000;

type Entries = HashMap<StoreId, (Instant, Arc<StoreRow>)>;

#[derive(Clone)]
pub struct StoreDirectory {
    db: PgPool,
    entries: Arc<RwLock<Entries>>,
}

impl StoreDirectory {
    pub fn new(db: PgPool) -> Self {
        Self {
            db,
            entries: Arc::default(),
        }
    }

    /// The store, from the cache when fresh; unknown ids always ask the database.
    pub async fn get(&self, id: StoreId) -> Result<Option<Arc<StoreRow>>, sqlx::Error> {
        if let Ok(entries) = self.entries.read()
            && let Some((at, row)) = entries.get(&id)
            && at.elapsed() < TTL
        {
            return Ok(Some(row.clone()));
        }
        let Some(row) = repo::find_store(&self.db, id).await?.map(Arc::new) else {
            return Ok(None);
        };
        if let Ok(mut entries) = self.entries.write() {
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
            entries.insert(id, (Instant::now(), row.clone()));
        }
        Ok(Some(row))
    }
}

/// The staff directory as sign-in through an identity provider asks it: by external
/// subject, never cached, so a staff member moved to another store is scoped to it on
/// the next request.
pub struct StaffBySubject(pub PgPool);

impl StaffLookup for StaffBySubject {
    fn by_subject<'a>(
        &'a self,
        subject: &'a str,
    ) -> futures_util::future::BoxFuture<'a, Result<Option<StaffEntry>, ApiError>> {
        Box::pin(async move {
            Ok(repo::staff_by_subject(&self.0, subject)
                .await?
                .map(|(staff_id, store_id)| StaffEntry { staff_id, store_id }))
        })
    }
}
