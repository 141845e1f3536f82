//! The demo chain's regions, stores, closures and staff (`storeops seed`, `crate::seed`). The same arguments always
//! produce the same ids and rows, so a re-run inserts nothing new (ON CONFLICT DO
//! NOTHING) and tests can rely on the shape. Rows go in as UNNEST batches: a
//! 1,000-store chain with 25,000 staff takes well under a second.

use chrono::NaiveDate;
use sqlx::{Postgres, Transaction};
use uuid::Uuid;

use super::{OpeningHours, StoreFormat};
use crate::ids::seeded_uuid;

struct SeedRegion {
    code: &'static str,
    name: &'static str,
    /// Share of the chain's stores, per mille.
    share: u32,
    /// Store time zones; the first is the region's.
    zones: &'static [&'static str],
    cities: &'static [&'static str],
}

const fn region(
    code: &'static str,
    name: &'static str,
    share: u32,
    zones: &'static [&'static str],
    cities: &'static [&'static str],
) -> SeedRegion {
    SeedRegion {
        code,
        name,
        share,
        zones,
        cities,
    }
}

/// Regions from Kaliningrad (UTC+2) to Vladivostok (UTC+10).
const REGIONS: [SeedRegion; 10] = [
    region(
        "kaliningrad",
        "Kaliningrad",
        40,
        &["Europe/Kaliningrad"],
        &["Kaliningrad", "Sovetsk", "Chernyakhovsk"],
    ),
    region(
        "moscow",
        "Moscow",
        260,
        &["Europe/Moscow"],
        &["Moscow", "Zelenograd", "Khimki", "Podolsk", "Balashikha"],
    ),
    region(
        "volga",
        "Volga",
        120,
        &["Europe/Samara", "Europe/Ulyanovsk", "Europe/Volgograd"],
        &["Samara", "Tolyatti", "Ulyanovsk", "Volgograd"],
    ),
    region(
        "ural",
        "Ural",
        110,
        &["Asia/Yekaterinburg"],
        &["Yekaterinburg", "Chelyabinsk", "Tyumen", "Perm"],
    ),
    region(
        "omsk",
        "Omsk",
        80,
        &["Asia/Omsk"],
        &["Omsk", "Tara", "Isilkul"],
    ),
    region(
        "siberia",
        "Siberia",
        100,
        &["Asia/Novosibirsk", "Asia/Barnaul", "Asia/Tomsk"],
        &["Novosibirsk", "Barnaul", "Tomsk"],
    ),
    region(
        "krasnoyarsk",
        "Krasnoyarsk",
        70,
        &["Asia/Krasnoyarsk"],
        &["Krasnoyarsk", "Achinsk", "Norilsk"],
    ),
    region(
        "baikal",
        "Baikal",
        60,
        &["Asia/Irkutsk"],
        &["Irkutsk", "Angarsk", "Bratsk"],
    ),
    region(
        "yakutia",
        "Yakutia",
        50,
        &["Asia/Yakutsk", "Asia/Chita"],
        &["Yakutsk", "Mirny", "Chita"],
    ),
    region(
        "far-east",
        "Far East",
        110,
        &["Asia/Vladivostok"],
        &["Vladivostok", "Khabarovsk", "Nakhodka", "Ussuriysk"],
    ),
];

const STREETS: [&str; 12] = [
    "Lenina",
    "Mira",
    "Sadovaya",
    "Gagarina",
    "Pushkina",
    "Sovetskaya",
    "Lesnaya",
    "Shkolnaya",
    "Naberezhnaya",
    "Tsentralnaya",
    "Molodezhnaya",
    "Zarechnaya",
];
const FIRST_NAMES: [&str; 16] = [
    "Anna", "Maria", "Elena", "Olga", "Irina", "Natalia", "Svetlana", "Tatiana", "Ivan", "Dmitry",
    "Alexei", "Sergei", "Andrei", "Pavel", "Nikolai", "Mikhail",
];
const LAST_INITIALS: &str = "ABVGDEZIKLMNOPRSTUFKh";
pub const STAFF_PER_STORE: u32 = 25;

fn region_for(store_index: u32, stores: u32) -> usize {
    // Spread stores over regions by their share, deterministically.
    let position = u64::from(store_index) * 1000 / u64::from(stores.max(1));
    let mut cumulative = 0u64;
    for (i, region) in REGIONS.iter().enumerate() {
        cumulative += u64::from(region.share);
        if position < cumulative {
            return i;
        }
    }
    REGIONS.len() - 1
}

fn format_for(store_index: u32) -> StoreFormat {
    match store_index % 20 {
        0 => StoreFormat::Hypermarket,
        1..=8 => StoreFormat::Supermarket,
        9..=17 => StoreFormat::Convenience,
        _ => StoreFormat::Express,
    }
}

fn hours_for(format: StoreFormat) -> OpeningHours {
    match format {
        StoreFormat::Hypermarket => OpeningHours::every_day("08:00", "23:00"),
        StoreFormat::Supermarket => OpeningHours::every_day("08:00", "22:00"),
        StoreFormat::Convenience => OpeningHours::every_day("07:00", "23:00"),
        StoreFormat::Express => OpeningHours::every_day("00:00", "24:00"),
    }
}

/// The chain's regions, stores, their closure days and staff, in one transaction:
/// (regions, stores, closures, staff) inserted.
pub async fn chain(
    tx: &mut Transaction<'_, Postgres>,
    stores: u32,
) -> Result<(u64, u64, u64, u64), sqlx::Error> {
    let regions = insert_regions(tx).await?;
    // Region ids as stored (an existing region keeps its id).
    let region_ids: Vec<Uuid> = sqlx::query_scalar(
        "SELECT r.id FROM unnest($1::text[]) WITH ORDINALITY AS c(code, n)
           JOIN regions r ON r.code = c.code ORDER BY c.n",
    )
    .bind(REGIONS.iter().map(|r| r.code).collect::<Vec<_>>())
    .fetch_all(&mut **tx)
    .await?;
    const STORE_BATCH: u32 = 1_000;
    let (mut inserted_stores, mut closures, mut staff) = (0, 0, 0);
    let mut start = 0;
    while start < stores {
        let end = (start + STORE_BATCH).min(stores);
        let batch = StoreBatch::build(start..end, stores, &region_ids);
        inserted_stores += batch.insert(tx).await?;
        closures += batch.insert_closures(tx).await?;
        staff += batch.insert_staff(tx).await?;
        start = end;
    }
    Ok((regions, inserted_stores, closures, staff))
}

async fn insert_regions(tx: &mut Transaction<'_, Postgres>) -> Result<u64, sqlx::Error> {
    let ids: Vec<Uuid> = (0..REGIONS.len() as u64)
        .map(|i| seeded_uuid(1, i))
        .collect();
    let result = sqlx::query(
        "INSERT INTO regions (id, code, name, time_zone)
         SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[])
         ON CONFLICT DO NOTHING",
    )
    .bind(ids)
    .bind(REGIONS.iter().map(|r| r.code).collect::<Vec<_>>())
    .bind(REGIONS.iter().map(|r| r.name).collect::<Vec<_>>())
    .bind(REGIONS.iter().map(|r| r.zones[0]).collect::<Vec<_>>())
    .execute(&mut **tx)
    .await?;
    Ok(result.rows_affected())
}

/// Column arrays for one batch of stores.
#[derive(Default)]
struct StoreBatch {
    ids: Vec<Uuid>,
    codes: Vec<String>,
    names: Vec<String>,
    region_ids: Vec<Uuid>,
    formats: Vec<&'static str>,
    time_zones: Vec<&'static str>,
    hours: Vec<serde_json::Value>,
}

impl StoreBatch {
    fn build(range: std::ops::Range<u32>, total: u32, region_ids: &[Uuid]) -> Self {
        let mut batch = Self::default();
        for i in range {
            let region = region_for(i, total);
            let SeedRegion { zones, cities, .. } = &REGIONS[region];
            let format = format_for(i);
            let city = cities[i as usize % cities.len()];
            let street = STREETS[(i as usize / cities.len()) % STREETS.len()];
            batch.ids.push(seeded_uuid(2, u64::from(i)));
            batch.codes.push(format!("S{:05}", i + 1));
            batch.names.push(format!("{city}, {street} {}", 1 + i % 97));
            batch.region_ids.push(region_ids[region]);
            batch.formats.push(format.as_str());
            batch.time_zones.push(zones[i as usize % zones.len()]);
            batch
                .hours
                .push(serde_json::to_value(hours_for(format)).unwrap_or_default());
        }
        batch
    }

    async fn insert(&self, tx: &mut Transaction<'_, Postgres>) -> Result<u64, sqlx::Error> {
        let result = sqlx::query(
            "INSERT INTO stores (id, code, name, region_id, format, time_zone, opening_hours)
             SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::uuid[], $5::text[], $6::text[], $7::jsonb[])
             ON CONFLICT DO NOTHING",
        )
        .bind(&self.ids)
        .bind(&self.codes)
        .bind(&self.names)
        .bind(&self.region_ids)
        .bind(&self.formats)
        .bind(&self.time_zones)
        .bind(&self.hours)
        .execute(&mut **tx)
        .await?;
        Ok(result.rows_affected())
    }

    /// Every tenth store closes on New Year's Day; every 50th has a refit day.
    async fn insert_closures(
        &self,
        tx: &mut Transaction<'_, Postgres>,
    ) -> Result<u64, sqlx::Error> {
        let mut store_ids = Vec::new();
        let mut dates = Vec::new();
        let mut reasons = Vec::new();
        for (k, id) in self.ids.iter().enumerate() {
            let n = seeded_index(&self.codes[k]);
            if n.is_multiple_of(10) {
                for year in [2027, 2028] {
                    store_ids.push(*id);
                    dates.push(NaiveDate::from_ymd_opt(year, 1, 1));
                    reasons.push("New Year");
                }
            }
            if n % 50 == 7 {
                store_ids.push(*id);
                dates.push(NaiveDate::from_ymd_opt(2027, 3, 1 + (n % 28)));
                reasons.push("Refit");
            }
        }
        let result = sqlx::query(
            "INSERT INTO store_closures (store_id, closed_on, reason)
             SELECT * FROM unnest($1::uuid[], $2::date[], $3::text[])
             ON CONFLICT DO NOTHING",
        )
        .bind(store_ids)
        .bind(dates)
        .bind(reasons)
        .execute(&mut **tx)
        .await?;
        Ok(result.rows_affected())
    }

    /// One manager and 24 associates per store.
    async fn insert_staff(&self, tx: &mut Transaction<'_, Postgres>) -> Result<u64, sqlx::Error> {
        let capacity = self.ids.len() * STAFF_PER_STORE as usize;
        let mut ids = Vec::with_capacity(capacity);
        let mut store_ids = Vec::with_capacity(capacity);
        let mut refs = Vec::with_capacity(capacity);
        let mut names = Vec::with_capacity(capacity);
        let mut roles = Vec::with_capacity(capacity);
        for (k, store_id) in self.ids.iter().enumerate() {
            let n = seeded_index(&self.codes[k]);
            for j in 0..STAFF_PER_STORE {
                let serial = u64::from(n) * u64::from(STAFF_PER_STORE) + u64::from(j);
                let first = FIRST_NAMES[(serial as usize * 7 + 3) % FIRST_NAMES.len()];
                let initial = LAST_INITIALS
                    .chars()
                    .nth((serial as usize * 11) % LAST_INITIALS.len())
                    .unwrap_or('A');
                ids.push(seeded_uuid(3, serial));
                store_ids.push(*store_id);
                refs.push(format!("EMP-{}-{j:02}", self.codes[k]));
                names.push(format!("{first} {initial}."));
                roles.push(if j == 0 { "store_manager" } else { "associate" });
            }
        }
        let result = sqlx::query(
            "INSERT INTO staff (id, store_id, external_ref, display_name, role)
             SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[])
             ON CONFLICT DO NOTHING",
        )
        .bind(ids)
        .bind(store_ids)
        .bind(refs)
        .bind(names)
        .bind(roles)
        .execute(&mut **tx)
        .await?;
        Ok(result.rows_affected())
    }
}

/// `S00042` → 41: the store's index in the seeded chain.
fn seeded_index(code: &str) -> u32 {
    code[1..].parse::<u32>().map_or(0, |n| n.saturating_sub(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_deterministic_v7_and_ordered() {
        let a = seeded_uuid(2, 5);
        assert_eq!(a, seeded_uuid(2, 5));
        assert_eq!(a.get_version_num(), 7);
        assert!(seeded_uuid(2, 5) < seeded_uuid(2, 6));
        assert_ne!(seeded_uuid(2, 5), seeded_uuid(3, 5));
    }

    #[test]
    fn every_region_gets_stores() {
        let mut counts = [0u32; REGIONS.len()];
        for i in 0..1000 {
            counts[region_for(i, 1000)] += 1;
        }
        assert!(counts.iter().all(|&c| c > 0), "{counts:?}");
        assert_eq!(counts[1], 260);
        for region in &REGIONS {
            for zone in region.zones {
                assert!(zone.parse::<chrono_tz::Tz>().is_ok(), "{zone}");
            }
        }
    }
}
