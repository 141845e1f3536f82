//! Which stores a piece of HQ's work reaches: every store, regions, formats or a list of
//! store codes. Campaigns, recurring schedules and announcements all target stores this
//! way, so the type, its checks and its SQL live once, with the stores.

use serde::{Deserialize, Serialize};
use serde_json::json;
use sqlx::{PgConnection, PgPool};
use utoipa::ToSchema;

use super::StoreFormat;
use crate::{
    error::FieldError,
    ids::{RegionCode, StoreCode, StoreId},
    input::rules::CrossFieldRules,
};

/// Which stores get the work: exactly one of the fields.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Target {
    /// Every store (of the caller's region, for a regional manager).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub all: Option<bool>,
    /// Region codes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_items = 100)]
    pub regions: Option<Vec<RegionCode>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub formats: Option<Vec<StoreFormat>>,
    /// ERP store codes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_items = 100_000)]
    pub store_codes: Option<Vec<StoreCode>>,
}

/// The most names a target lists (the schema attributes repeat them).
pub const MAX_REGIONS: usize = 100;
pub const MAX_STORE_CODES: usize = 100_000;

impl Target {
    /// Every store of the chain.
    pub fn everywhere() -> Self {
        Self {
            all: Some(true),
            ..Self::default()
        }
    }

    /// The ways of naming stores, and whether this target uses each; it must use
    /// exactly one (a list counts when non-empty).
    fn ways(&self) -> [(&'static str, bool); 4] {
        let listed = |len: Option<usize>| len.is_some_and(|len| len > 0);
        [
            ("all", self.all == Some(true)),
            ("regions", listed(self.regions.as_ref().map(Vec::len))),
            ("formats", listed(self.formats.as_ref().map(Vec::len))),
            (
                "store_codes",
                listed(self.store_codes.as_ref().map(Vec::len)),
            ),
        ]
    }

    pub fn validate(&self, field: &str, errors: &mut Vec<FieldError>) {
        if self.ways().iter().filter(|(_, used)| *used).count() != 1 {
            errors.push(FieldError::new(
                field,
                "name exactly one of all: true, regions, formats or store_codes (non-empty)",
            ));
        }
        if self.regions.as_ref().is_some_and(|r| r.len() > MAX_REGIONS)
            || self
                .store_codes
                .as_ref()
                .is_some_and(|c| c.len() > MAX_STORE_CODES)
        {
            errors.push(FieldError::new(
                field,
                format!("names at most {MAX_REGIONS} regions or {MAX_STORE_CODES} stores"),
            ));
        }
    }

    /// Whether every named store and region exists: field errors under `field`.
    pub async fn check_names(
        &self,
        db: &PgPool,
        field: &str,
        errors: &mut Vec<FieldError>,
    ) -> Result<(), sqlx::Error> {
        let (unknown_codes, unknown_regions) = unknown_names(db, self).await?;
        for code in unknown_codes.iter().take(20) {
            errors.push(FieldError::new(
                format!("{field}.store_codes"),
                format!("unknown store {code}"),
            ));
        }
        for region in &unknown_regions {
            errors.push(FieldError::new(
                format!("{field}.regions"),
                format!("unknown region {region}"),
            ));
        }
        Ok(())
    }

    /// The regions this target names by name: its region list, or the regions of its
    /// listed stores. `all` and `formats` name none (a caller's scope bounds them).
    pub async fn named_regions(&self, db: &PgPool) -> Result<Vec<RegionCode>, sqlx::Error> {
        if let Some(regions) = &self.regions {
            return Ok(regions.clone());
        }
        match &self.store_codes {
            Some(codes) => {
                sqlx::query_scalar(
                    "SELECT DISTINCT r.code FROM stores s JOIN regions r ON r.id = s.region_id
                  WHERE s.code = ANY($1) ORDER BY r.code",
                )
                .bind(codes)
                .fetch_all(db)
                .await
            }
            None => Ok(Vec::new()),
        }
    }

    fn formats(&self) -> Vec<&'static str> {
        self.formats.iter().flatten().map(|f| f.as_str()).collect()
    }

    /// The targeted stores grouped by time zone (schedules plan per zone).
    pub async fn stores_by_time_zone(
        &self,
        conn: &mut PgConnection,
    ) -> Result<Vec<(String, Vec<StoreId>)>, sqlx::Error> {
        sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT s.time_zone, array_agg(s.id ORDER BY s.code) FROM stores s JOIN regions r ON r.id = s.region_id
              WHERE {TARGET_FILTER} AND $1::int IS NULL
              GROUP BY s.time_zone ORDER BY s.time_zone"
        )))
        .bind(None::<i32>)
        .bind(self.all.unwrap_or(false))
        .bind(self.regions.as_deref().unwrap_or_default())
        .bind(self.formats())
        .bind(self.store_codes.as_deref().unwrap_or_default())
        .bind(None::<RegionCode>)
        .fetch_all(conn)
        .await
    }

    /// The next chunk of targeted stores within `region_scope` (ordered by code, after
    /// `after_code`): the chunk's last store code (None when done) and the stores' ids.
    pub async fn chunk(
        &self,
        conn: &mut PgConnection,
        region_scope: Option<&RegionCode>,
        after_code: Option<&str>,
        limit: i64,
    ) -> Result<(Option<String>, Vec<StoreId>), sqlx::Error> {
        let stores: Vec<(StoreId, String)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT s.id, s.code FROM stores s JOIN regions r ON r.id = s.region_id
              WHERE {TARGET_FILTER} AND ($1::text IS NULL OR s.code > $1)
              ORDER BY s.code LIMIT $7"
        )))
        .bind(after_code)
        .bind(self.all.unwrap_or(false))
        .bind(self.regions.as_deref().unwrap_or_default())
        .bind(self.formats())
        .bind(self.store_codes.as_deref().unwrap_or_default())
        .bind(region_scope)
        .bind(limit)
        .fetch_all(conn)
        .await?;
        let last = stores.last().map(|(_, code)| code.clone());
        Ok((last, stores.into_iter().map(|(id, _)| id).collect()))
    }

    /// Whether `store` is one of the targeted stores within `region_scope`.
    pub async fn reaches(
        &self,
        conn: &mut PgConnection,
        region_scope: Option<&RegionCode>,
        store: StoreId,
    ) -> Result<bool, sqlx::Error> {
        sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT EXISTS (SELECT 1 FROM stores s JOIN regions r ON r.id = s.region_id
              WHERE {TARGET_FILTER} AND s.id = $1)"
        )))
        .bind(store)
        .bind(self.all.unwrap_or(false))
        .bind(self.regions.as_deref().unwrap_or_default())
        .bind(self.formats())
        .bind(self.store_codes.as_deref().unwrap_or_default())
        .bind(region_scope)
        .fetch_one(conn)
        .await
    }
}

/// The WHERE clause of a target over `stores s JOIN regions r` (parameters $2..$6: all,
/// regions, formats, store codes, region scope).
const TARGET_FILTER: &str = "($2 OR r.code = ANY($3) OR s.format = ANY($4) OR s.code = ANY($5))
    AND ($6::text IS NULL OR r.code = $6)";

/// The store codes and region codes a target names that do not exist.
async fn unknown_names(
    db: &PgPool,
    target: &Target,
) -> Result<(Vec<String>, Vec<String>), sqlx::Error> {
    let unknown_codes: Vec<String> = match &target.store_codes {
        Some(codes) => sqlx::query_scalar(
            "SELECT c FROM unnest($1::text[]) AS c WHERE NOT EXISTS (SELECT 1 FROM stores s WHERE s.code = c)",
        )
        .bind(codes)
        .fetch_all(db)
        .await?,
        None => Vec::new(),
    };
    let unknown_regions: Vec<String> = match &target.regions {
        Some(regions) => sqlx::query_scalar(
            "SELECT c FROM unnest($1::text[]) AS c WHERE NOT EXISTS (SELECT 1 FROM regions r WHERE r.code = c)",
        )
        .bind(regions)
        .fetch_all(db)
        .await?,
        None => Vec::new(),
    };
    Ok((unknown_codes, unknown_regions))
}

impl CrossFieldRules for Target {
    fn cross_field_rules() -> Vec<serde_json::Value> {
        let ways = Target::default().ways().map(|(way, _)| way);
        // `all` is a flag; the other ways are lists, unnamed when absent, null or empty.
        let named = |way: &str| match way {
            "all" => json!({ "const": true }),
            _ => json!({ "type": "array", "minItems": 1 }),
        };
        let unnamed = |way: &str| match way {
            "all" => json!({ "not": { "const": true } }),
            _ => json!({ "maxItems": 0 }),
        };
        let branches = ways.map(|way| {
            let properties: serde_json::Map<_, _> = ways
                .iter()
                .map(|&other| {
                    let rule = if other == way {
                        named(other)
                    } else {
                        unnamed(other)
                    };
                    (other.to_owned(), rule)
                })
                .collect();
            json!({ "required": [way], "properties": properties })
        });
        vec![json!({ "oneOf": branches })]
    }
}
