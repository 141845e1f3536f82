//! The migration ladder: every down migration is proven by applying each migration,
//! reverting it, and applying it again, then reverting everything to an empty schema.

use crate::common;

use storeops::db::MIGRATOR;

async fn schema_objects(pool: &sqlx::PgPool) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT c.relkind::text || ':' || c.relname FROM pg_class c
           JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
            AND c.relname NOT LIKE '\\_sqlx\\_migrations%'
          UNION ALL
         SELECT 'type:' || t.typname FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
          WHERE n.nspname = 'public' AND t.typtype IN ('e', 'd')
          UNION ALL
         SELECT 'constraint:' || c.conrelid::regclass::text || '.' || c.conname FROM pg_constraint c
           JOIN pg_namespace n ON n.oid = c.connamespace
          WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
            AND c.conrelid::regclass::text NOT LIKE '\\_sqlx\\_migrations%'
          UNION ALL
         SELECT 'options:' || c.relname || '=' || array_to_string(c.reloptions, ',') FROM pg_class c
           JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
            AND c.reloptions IS NOT NULL
          UNION ALL
         -- Columns by name and type (not position: a reverted column comes back last).
         SELECT 'column:' || c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
                || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
           FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
           JOIN pg_namespace n ON n.oid = c.relnamespace
          WHERE n.nspname = 'public' AND c.relkind IN ('r', 'p') AND a.attnum > 0 AND NOT a.attisdropped
            AND c.relname NOT LIKE '\\_sqlx\\_migrations%'
          UNION ALL
         SELECT 'schema:' || nspname FROM pg_namespace
          WHERE nspname NOT IN ('public', 'pg_catalog', 'information_schema', 'pg_toast')
            AND nspname NOT LIKE 'pg\\_%'
          ORDER BY 1",
    )
    .fetch_all(pool)
    .await
    .expect("list schema objects")
}

#[tokio::test]
async fn every_migration_reverts_cleanly() {
    let pool = common::empty_database().await;
    let baseline = schema_objects(&pool).await;
    let versions: Vec<i64> = MIGRATOR
        .iter()
        .filter(|m| m.migration_type.is_up_migration())
        .map(|m| m.version)
        .collect();
    assert!(!versions.is_empty());
    let mut previous = 0;
    let mut before = baseline.clone();
    for &version in &versions {
        MIGRATOR
            .run_to(version, &pool)
            .await
            .unwrap_or_else(|e| panic!("up to {version}: {e}"));
        let applied = schema_objects(&pool).await;
        assert_ne!(applied, before, "migration {version} changed nothing");
        MIGRATOR
            .undo(&pool, previous)
            .await
            .unwrap_or_else(|e| panic!("down from {version}: {e}"));
        assert_eq!(
            schema_objects(&pool).await,
            before,
            "reverting {version} did not restore the schema"
        );
        MIGRATOR
            .run_to(version, &pool)
            .await
            .unwrap_or_else(|e| panic!("re-apply {version}: {e}"));
        assert_eq!(
            schema_objects(&pool).await,
            applied,
            "re-applying {version} differs"
        );
        before = applied;
        previous = version;
    }
    MIGRATOR.undo(&pool, 0).await.expect("revert all");
    assert_eq!(
        schema_objects(&pool).await,
        baseline,
        "reverting everything left objects behind"
    );
}

#[tokio::test]
async fn down_steps_and_status_agree() {
    let pool = common::empty_database().await;
    MIGRATOR.run(&pool).await.expect("up");
    let status = storeops::db::migration_status(&pool).await.expect("status");
    assert!(status.iter().all(|(_, _, applied)| *applied));
    storeops::db::check_schema(&pool)
        .await
        .expect("schema current");
    let reverted = storeops::db::migrate_down(&pool, 1).await.expect("down 1");
    assert_eq!(reverted, vec![storeops::db::expected_schema_version()]);
    assert!(
        storeops::db::check_schema(&pool).await.is_err(),
        "readiness must notice an old schema"
    );
    let status = storeops::db::migration_status(&pool).await.expect("status");
    assert_eq!(status.iter().filter(|(_, _, applied)| !*applied).count(), 1);
}
