//! The demo chain's task templates (`storeops seed`): five everyday store routines.

use sqlx::{Postgres, Transaction};

use crate::ids::seeded_uuid;

/// Everyday store routines (kind `checklist`), version 1, deterministic ids.
const TEMPLATES: [(&str, bool, i32, &str); 5] = [
    (
        "Opening checklist",
        false,
        20,
        r#"[{"key":"lights","label":"Lights and tills on","type":"check","required":true},{"key":"entrance","label":"Entrance clean (photo)","type":"photo","required":true},{"key":"note","label":"Remarks","type":"text"}]"#,
    ),
    (
        "Closing checklist",
        false,
        25,
        r#"[{"key":"tills","label":"Tills counted","type":"check","required":true},{"key":"doors","label":"Doors locked","type":"check","required":true}]"#,
    ),
    (
        "Fridge temperature log",
        false,
        10,
        r#"[{"key":"dairy","label":"Dairy fridge °C","type":"number","required":true},{"key":"meat","label":"Meat fridge °C","type":"number","required":true}]"#,
    ),
    (
        "Fresh produce check",
        true,
        30,
        r#"[{"key":"expired_removed","label":"Expired items removed","type":"check","required":true},{"key":"display","label":"Display photo","type":"photo","required":true}]"#,
    ),
    (
        "Cleaning round",
        false,
        15,
        r#"[{"key":"floors","label":"Floors","type":"check","required":true},{"key":"toilets","label":"Customer toilets","type":"check","required":false}]"#,
    ),
];

/// The demo chain's everyday routines; templates already there are kept.
pub async fn everyday_routines(tx: &mut Transaction<'_, Postgres>) -> Result<u64, sqlx::Error> {
    let mut inserted = 0;
    for (i, (title, review, minutes, checklist)) in TEMPLATES.iter().enumerate() {
        let id = seeded_uuid(4, i as u64);
        let fresh = sqlx::query(
            "INSERT INTO task_templates (id, current_version, created_by) VALUES ($1, 1, 'seed')
             ON CONFLICT DO NOTHING",
        )
        .bind(id)
        .execute(&mut **tx)
        .await?
        .rows_affected();
        if fresh == 0 {
            continue;
        }
        sqlx::query(
            "INSERT INTO task_template_versions (template_id, version, title, kind, checklist, review_required,
                                                estimated_minutes, due_window_minutes, created_by)
             VALUES ($1, 1, $2, 'checklist', $3::jsonb, $4, $5, 480, 'seed')",
        )
        .bind(id)
        .bind(title)
        .bind(checklist)
        .bind(review)
        .bind(minutes)
        .execute(&mut **tx)
        .await?;
        inserted += 1;
    }
    Ok(inserted)
}
