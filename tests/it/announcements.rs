//! Announcements through HTTP, the worker and the scheduler: targeting and scope,
//! delivery exactly once per store even when the delivery message arrives twice, the
//! lifecycle (draft, scheduled, published, expired) and corrections, receipts that are
//! idempotent and scoped to the caller's store and person, progress against receipts
//! counted by hand, and reminders then escalation exactly once across a leader change.

use crate::common;

use std::time::{Duration, Instant};

use common::{
    Process, RunningWorker, SeededStore, TestApp, assert_problem, claims, client, eventually,
    signer, teardown, test_topology, token,
};
use serde_json::{Value, json};
use storeops::{auth::Role, events::outbox};

const GROUP: &str = storeops::announcements::GROUP;

async fn post(app: &TestApp, token: &str, path: &str, body: Option<Value>) -> reqwest::Response {
    let request = app
        .client
        .post(app.url(&format!("/api/v1{path}")))
        .bearer_auth(token);
    let request = match body {
        Some(body) => request.json(&body),
        None => request,
    };
    request.send().await.expect("send")
}

/// A POST without a body that must succeed; its JSON answer.
async fn answer(app: &TestApp, token: &str, path: &str) -> Value {
    let response = post(app, token, path, None).await;
    assert_eq!(response.status(), 200, "{path}");
    response.json().await.expect("json")
}

async fn create(app: &TestApp, token: &str, body: Value) -> Value {
    let response = post(app, token, "/announcements", Some(body)).await;
    assert_eq!(response.status(), 201);
    assert!(response.headers().contains_key("location"));
    response.json().await.expect("json")
}

async fn get(app: &TestApp, token: &str, path: &str) -> Value {
    let response = app.get(&format!("/api/v1{path}"), token).await;
    assert_eq!(response.status(), 200, "{path}");
    response.json().await.expect("json")
}

/// A staff member's token: `sub` names the person, so two colleagues differ.
fn staff(role: Role, store: &SeededStore, person: &str) -> String {
    let mut claims = claims(role, Some(store.id), None);
    claims.sub = person.to_owned();
    signer().sign(&claims).expect("sign")
}

fn worker(app: &TestApp, topology: &storeops::events::topology::Topology) -> RunningWorker {
    RunningWorker::groups(&app.db, topology, &[GROUP], 2, &[])
}

async fn wait_published(app: &TestApp, token: &str, id: &str) -> Value {
    let path = format!("/announcements/{id}");
    eventually(
        Duration::from_secs(60),
        "announcement published",
        || async { get(app, token, &path).await["status"] == "published" },
    )
    .await;
    get(app, token, &path).await
}

/// The ids a staff member's list shows.
async fn listed(app: &TestApp, token: &str, query: &str) -> Vec<String> {
    get(app, token, &format!("/me/announcements{query}")).await["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|a| a["id"].as_str().expect("id").to_owned())
        .collect()
}

#[tokio::test]
async fn a_region_gets_one_delivery_per_store_and_receipts_add_up() {
    common::init_logs();
    let app = TestApp::spawn(60).await;
    let stores = app.stores().await;
    // The region with the most stores.
    let in_region = |region: &str| stores.iter().filter(|s| s.region == region).count();
    let region = stores
        .iter()
        .map(|s| s.region.clone())
        .max_by_key(|r| in_region(r))
        .expect("a region");
    let inside: Vec<&SeededStore> = stores.iter().filter(|s| s.region == region).collect();
    let outside = stores
        .iter()
        .find(|s| s.region != region)
        .expect("another region");
    assert!(inside.len() >= 4, "the region has a few stores");
    let topology = test_topology(&[200]);
    let worker = worker(&app, &topology);
    worker.wait_connected().await;
    let hq = token(Role::Hq, None, None);

    let created = create(&app, &hq, json!({"title": "Recall: batch 42", "body": "Take batch 42 of the yoghurt off the shelves.", "priority": "urgent", "target": {"regions": [region]}, "requires_ack": true})).await;
    let id = created["id"].as_str().expect("id").to_owned();
    assert_eq!(created["status"], "scheduled");
    let announcement = wait_published(&app, &hq, &id).await;
    assert_eq!(announcement["target_count"], inside.len());
    assert_eq!(announcement["progress"]["stores_reached"], inside.len());

    // The same delivery requested again under a new message id: nothing doubles.
    let mut tx = app.db.begin().await.expect("begin");
    outbox::enqueue(
        &mut tx,
        &storeops::announcements::AnnouncementScheduled {
            announcement_id: id.parse().expect("id"),
        },
    )
    .await
    .expect("enqueue");
    tx.commit().await.expect("commit");
    eventually(
        Duration::from_secs(30),
        "second delivery handled",
        || async {
            sqlx::query_scalar::<_, i64>("SELECT count(*) FROM inbox WHERE consumer_group = $1")
                .bind(GROUP)
                .fetch_one(&app.db)
                .await
                .unwrap_or(0)
                == 2
        },
    )
    .await;
    let deliveries: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM announcement_deliveries WHERE announcement_id = $1::uuid",
    )
    .bind(&id)
    .fetch_one(&app.db)
    .await
    .expect("count");
    assert_eq!(deliveries, inside.len() as i64);
    let published: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM outbox WHERE routing_key = 'announcement.published'",
    )
    .fetch_one(&app.db)
    .await
    .expect("count");
    assert_eq!(published, 1, "published once");

    // Staff of a targeted store see it, tagged; the tag holds until something changes.
    let alice = staff(Role::Associate, inside[0], "alice");
    let bob = staff(Role::Associate, inside[0], "bob");
    let first = app.get("/api/v1/me/announcements", &alice).await;
    assert_eq!(first.status(), 200);
    let etag = first
        .headers()
        .get("etag")
        .expect("etag")
        .to_str()
        .expect("text")
        .to_owned();
    let page: Value = first.json().await.expect("json");
    assert_eq!(page["items"][0]["id"], id.as_str());
    assert_eq!(page["items"][0]["read_at"], Value::Null);
    let again = app
        .client
        .get(app.url("/api/v1/me/announcements"))
        .bearer_auth(&alice)
        .header("if-none-match", &etag)
        .send()
        .await
        .expect("send");
    assert_eq!(again.status(), 304);

    // Reading twice records one receipt with the first time; acknowledging implies it.
    let read: Value = answer(&app, &alice, &format!("/announcements/{id}/read")).await;
    let reread: Value = answer(&app, &alice, &format!("/announcements/{id}/read")).await;
    assert_eq!(read["read_at"], reread["read_at"]);
    assert_eq!(read["acknowledged_at"], Value::Null);
    let changed = app
        .client
        .get(app.url("/api/v1/me/announcements"))
        .bearer_auth(&alice)
        .header("if-none-match", &etag)
        .send()
        .await
        .expect("send");
    assert_eq!(changed.status(), 200, "her read changes her list");
    assert!(listed(&app, &alice, "?unread=true").await.is_empty());
    assert_eq!(listed(&app, &bob, "?unread=true").await, vec![id.clone()]);
    let acked: Value = answer(&app, &alice, &format!("/announcements/{id}/acknowledge")).await;
    let reacked: Value = answer(&app, &alice, &format!("/announcements/{id}/acknowledge")).await;
    assert_eq!(acked["read_at"], read["read_at"]);
    assert_ne!(acked["acknowledged_at"], Value::Null);
    assert_eq!(acked["acknowledged_at"], reacked["acknowledged_at"]);
    let carol = staff(Role::Associate, inside[1], "carol");
    let direct: Value = answer(&app, &carol, &format!("/announcements/{id}/acknowledge")).await;
    assert_ne!(
        direct["read_at"],
        Value::Null,
        "acknowledging implies reading"
    );
    answer(
        &app,
        &staff(Role::Associate, inside[2], "dan"),
        &format!("/announcements/{id}/read"),
    )
    .await;
    answer(
        &app,
        &staff(Role::StoreManager, inside[3], "erin"),
        &format!("/announcements/{id}/acknowledge"),
    )
    .await;
    let acknowledged: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM outbox WHERE routing_key = 'announcement.acknowledged'",
    )
    .fetch_one(&app.db)
    .await
    .expect("count");
    assert_eq!(acknowledged, 3, "one event per first acknowledgement");

    // Scoped: another region's associate cannot see or acknowledge it, nor can HQ or
    // an integration act as staff; receipts always land on the caller's own store.
    let stranger = staff(Role::Associate, outside, "frank");
    assert!(listed(&app, &stranger, "").await.is_empty());
    assert_problem(
        post(
            &app,
            &stranger,
            &format!("/announcements/{id}/acknowledge"),
            None,
        )
        .await,
        404,
    )
    .await;
    assert_problem(
        post(&app, &hq, &format!("/announcements/{id}/acknowledge"), None).await,
        403,
    )
    .await;
    assert_problem(app.get("/api/v1/me/announcements", &hq).await, 403).await;
    let foreign_receipts: i64 =
        sqlx::query_scalar("SELECT count(*) FROM announcement_receipts WHERE store_id = $1")
            .bind(outside.id)
            .fetch_one(&app.db)
            .await
            .expect("count");
    assert_eq!(foreign_receipts, 0);

    // Progress by hand: stores 0 (alice), 1 (carol), 3 (erin) acknowledged; store 2 (dan)
    // only read.
    let announcement = get(&app, &hq, &format!("/announcements/{id}")).await;
    let n = inside.len() as f64;
    assert_eq!(announcement["progress"]["stores_reached"], inside.len());
    assert_eq!(announcement["progress"]["stores_read"], 4);
    assert_eq!(announcement["progress"]["stores_acknowledged"], 3);
    assert!(
        (announcement["progress"]["ack_ratio"]
            .as_f64()
            .expect("ratio")
            - 3.0 / n)
            .abs()
            < 1e-9
    );
    assert!(
        (announcement["progress"]["read_ratio"]
            .as_f64()
            .expect("ratio")
            - 4.0 / n)
            .abs()
            < 1e-9
    );
    assert_eq!(
        announcement["regions"].as_array().expect("regions").len(),
        1
    );
    assert_eq!(announcement["regions"][0]["region"], region.as_str());
    assert_eq!(announcement["regions"][0]["stores_acknowledged"], 3);
    let store0 = get(&app, &hq, &format!("/announcements/{id}/stores?limit=1")).await;
    assert_eq!(store0["items"][0]["store_code"], inside[0].code.as_str());
    assert_eq!(store0["items"][0]["read_by"], 1);
    assert_eq!(store0["items"][0]["acknowledged_by"], 1);
    let mut pending = Vec::new();
    let mut cursor = String::new();
    loop {
        let page = get(
            &app,
            &hq,
            &format!("/announcements/{id}/stores?unacknowledged=true&limit=2{cursor}"),
        )
        .await;
        pending.extend(
            page["items"]
                .as_array()
                .expect("items")
                .iter()
                .map(|s| s["store_code"].as_str().expect("code").to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => break,
        }
    }
    assert_eq!(pending.len(), inside.len() - 3);
    assert!(pending.contains(&inside[2].code));

    // The CSV: one line per reader, one per store nobody read in.
    let csv = app
        .get(&format!("/api/v1/announcements/{id}/receipts.csv"), &hq)
        .await;
    assert_eq!(csv.status(), 200);
    assert!(
        csv.headers()["content-type"]
            .to_str()
            .expect("type")
            .starts_with("text/csv")
    );
    let csv = csv.text().await.expect("text");
    let lines: Vec<&str> = csv.lines().collect();
    assert_eq!(
        lines[0],
        "store_code,region,visible_at,staff,read_at,acknowledged_at"
    );
    assert_eq!(lines.len() - 1, 4 + (inside.len() - 4));
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&format!("{},", inside[0].code)) && l.contains(",alice,"))
    );

    // Another region's manager does not see it; HQ's analysts' view has the receipts.
    let other = token(Role::RegionalManager, None, Some(&outside.region));
    assert_problem(
        app.get(&format!("/api/v1/announcements/{id}"), &other)
            .await,
        404,
    )
    .await;
    let analysed: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM reporting.announcement_receipts WHERE announcement_id = $1::uuid AND acknowledged_at IS NOT NULL",
    )
    .bind(&id)
    .fetch_one(&app.db)
    .await
    .expect("view");
    assert_eq!(analysed, 3);

    worker.shutdown().await;
    teardown(&topology, &[GROUP]).await;
}

#[tokio::test]
async fn drafts_schedules_audiences_expiry_and_corrections() {
    let app = TestApp::spawn(12).await;
    let stores = app.stores().await;
    let store = &stores[0];
    let region = store.region.clone();
    let foreign = stores
        .iter()
        .find(|s| s.region != region)
        .expect("another region");
    let hq = token(Role::Hq, None, None);
    let regional = token(Role::RegionalManager, None, Some(&region));
    let associate = staff(Role::Associate, store, "ann");
    let manager = staff(Role::StoreManager, store, "max");

    // Who may send where, and what a request needs.
    let notice = |target: Value| json!({"title": "t", "body": "b", "target": target});
    for (who, target) in [
        (&regional, json!({"regions": [foreign.region]})),
        (&regional, json!({"store_codes": [foreign.code]})),
        (&manager, json!({"all": true})),
    ] {
        let response = post(&app, who, "/announcements", Some(notice(target))).await;
        assert_problem(response, 403).await;
    }
    for (body, field) in [
        (
            json!({"title": " ", "body": "b", "target": {"all": true}}),
            "title",
        ),
        (
            json!({"title": "t", "body": "", "target": {"all": true}}),
            "body",
        ),
        (json!({"title": "t", "body": "b", "target": {}}), "target"),
        (
            json!({"title": "t", "body": "b", "target": {"store_codes": ["S99999"]}}),
            "target.store_codes",
        ),
        (
            json!({"title": "t", "body": "b", "target": {"all": true}, "publish_at": "2030-01-01T10:00:00Z", "publish_local": "2030-01-01T10:00:00"}),
            "publish_at",
        ),
        (
            json!({"title": "t", "body": "b", "target": {"all": true}, "expires_at": "2020-01-01T10:00:00Z"}),
            "expires_at",
        ),
        (
            json!({"title": "t", "body": "b", "target": {"all": true}, "supersedes": "01890000-0000-7000-8000-000000000000"}),
            "supersedes",
        ),
    ] {
        let problem = assert_problem(
            post(&app, &hq, "/announcements", Some(body.clone())).await,
            422,
        )
        .await;
        assert_eq!(problem["errors"][0]["field"], field, "{body}: {problem}");
    }

    let topology = test_topology(&[200]);
    let worker = worker(&app, &topology);
    worker.wait_connected().await;

    // A draft reaches nobody until it is published, once.
    let draft = create(&app, &regional, json!({"title": "Inventory day", "body": "Count everything on Sunday.", "target": {"all": true}, "draft": true})).await;
    let draft_id = draft["id"].as_str().expect("id").to_owned();
    assert_eq!(draft["status"], "draft");
    assert_eq!(draft["region_scope"], region.as_str());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(listed(&app, &associate, "").await.is_empty());
    assert_problem(
        post(
            &app,
            &associate,
            &format!("/announcements/{draft_id}/read"),
            None,
        )
        .await,
        404,
    )
    .await;
    answer(
        &app,
        &regional,
        &format!("/announcements/{draft_id}/publish"),
    )
    .await;
    wait_published(&app, &regional, &draft_id).await;
    assert_problem(
        post(
            &app,
            &regional,
            &format!("/announcements/{draft_id}/publish"),
            None,
        )
        .await,
        409,
    )
    .await;
    assert_eq!(listed(&app, &associate, "").await, vec![draft_id.clone()]);
    let in_region = stores.iter().filter(|s| s.region == region).count();
    assert_eq!(
        get(&app, &hq, &format!("/announcements/{draft_id}")).await["target_count"],
        in_region
    );

    // Managers only: the associate does not see it, nor may they acknowledge it.
    let managers = create(&app, &hq, json!({"title": "Shift plans", "body": "Send next month's plans.", "target": {"store_codes": [store.code]}, "audience": "managers"})).await;
    let managers_id = managers["id"].as_str().expect("id").to_owned();
    wait_published(&app, &hq, &managers_id).await;
    assert!(!listed(&app, &associate, "").await.contains(&managers_id));
    assert!(listed(&app, &manager, "").await.contains(&managers_id));
    assert_problem(
        post(
            &app,
            &associate,
            &format!("/announcements/{managers_id}/acknowledge"),
            None,
        )
        .await,
        404,
    )
    .await;

    // Later: delivered now, seen by nobody until its time; local times per store zone.
    // A month ahead, at 09:00 in each store's zone.
    let month_ahead = (chrono::Utc::now() + chrono::Duration::days(30))
        .format("%Y-%m-%dT09:00:00")
        .to_string();
    let later = create(&app, &hq, json!({"title": "New year", "body": "Opening hours change.", "target": {"all": true}, "publish_local": month_ahead})).await;
    let later_id = later["id"].as_str().expect("id").to_owned();
    eventually(Duration::from_secs(30), "delivered", || async {
        get(&app, &hq, &format!("/announcements/{later_id}")).await["target_count"] == stores.len()
    })
    .await;
    let later = get(&app, &hq, &format!("/announcements/{later_id}")).await;
    assert_eq!(later["status"], "scheduled");
    assert_eq!(later["progress"]["stores_reached"], 0);
    assert!(!listed(&app, &associate, "").await.contains(&later_id));
    let hours: Vec<f64> = sqlx::query_scalar(
        "SELECT DISTINCT EXTRACT(HOUR FROM d.visible_at AT TIME ZONE s.time_zone)::float8
           FROM announcement_deliveries d JOIN stores s ON s.id = d.store_id WHERE d.announcement_id = $1::uuid",
    )
    .bind(&later_id)
    .fetch_all(&app.db)
    .await
    .expect("hours");
    assert_eq!(hours, vec![9.0]);

    // A correction: staff see the link both ways; one correction per announcement.
    let fix = create(&app, &regional, json!({"title": "Inventory day (Saturday)", "body": "Count everything on Saturday.", "target": {"all": true}, "supersedes": draft_id})).await;
    let fix_id = fix["id"].as_str().expect("id").to_owned();
    wait_published(&app, &regional, &fix_id).await;
    let page = get(&app, &associate, "/me/announcements").await;
    let items = page["items"].as_array().expect("items");
    assert_eq!(items[0]["id"], fix_id.as_str(), "newest first");
    assert_eq!(items[0]["supersedes"], draft_id.as_str());
    let old = items
        .iter()
        .find(|a| a["id"] == draft_id.as_str())
        .expect("old one listed");
    assert_eq!(old["superseded_by"], fix_id.as_str());
    assert_eq!(
        get(&app, &hq, &format!("/announcements/{draft_id}")).await["superseded_by"],
        fix_id.as_str()
    );
    assert_problem(
        post(
            &app,
            &hq,
            "/announcements",
            Some(
                json!({"title": "t", "body": "b", "target": {"all": true}, "supersedes": draft_id}),
            ),
        )
        .await,
        409,
    )
    .await;
    let other_region = token(Role::RegionalManager, None, Some(&foreign.region));
    let problem = assert_problem(
        post(
            &app,
            &other_region,
            "/announcements",
            Some(json!({"title": "t", "body": "b", "target": {"all": true}, "supersedes": fix_id})),
        )
        .await,
        422,
    )
    .await;
    assert_eq!(problem["errors"][0]["field"], "supersedes");

    // Pages: newest first, by cursor.
    let first = get(&app, &associate, "/me/announcements?limit=1").await;
    assert_eq!(first["items"][0]["id"], fix_id.as_str());
    let next = first["next_cursor"].as_str().expect("cursor");
    let second = get(
        &app,
        &associate,
        &format!("/me/announcements?limit=1&cursor={next}"),
    )
    .await;
    assert_eq!(second["items"][0]["id"], draft_id.as_str());
    assert_problem(
        app.get("/api/v1/me/announcements?cursor=nonsense", &associate)
            .await,
        422,
    )
    .await;

    // Expired: gone from the list, its status says so, receipts refused.
    sqlx::query(
        "UPDATE announcements SET expires_at = now() - interval '1 second' WHERE id = $1::uuid",
    )
    .bind(&fix_id)
    .execute(&app.db)
    .await
    .expect("expire");
    assert!(!listed(&app, &associate, "").await.contains(&fix_id));
    assert_eq!(
        get(&app, &hq, &format!("/announcements/{fix_id}")).await["status"],
        "expired"
    );
    assert_problem(
        post(
            &app,
            &associate,
            &format!("/announcements/{fix_id}/read"),
            None,
        )
        .await,
        409,
    )
    .await;

    worker.shutdown().await;
    teardown(&topology, &[GROUP]).await;
}

fn scheduler(database_url: &str) -> Process {
    Process::start(
        &["scheduler"],
        &[
            ("DATABASE_URL", database_url.to_owned()),
            ("SCHEDULER_LEASE_TTL_SECONDS", "3".to_owned()),
            ("SCHEDULER_TICK_SECONDS", "1".to_owned()),
            ("ANNOUNCEMENT_REMINDER_DELAY_SECONDS", "2".to_owned()),
            ("ANNOUNCEMENT_ESCALATION_DELAY_SECONDS", "10".to_owned()),
        ],
    )
}

#[tokio::test]
async fn reminders_then_escalation_once_each_across_a_leader_change() {
    let (database, db) = common::fresh_database().await;
    storeops::seed::seed_chain(&db, 3, 0).await.expect("seed");
    let url = common::url_for_database(&common::database_url(), &database);
    // A required announcement delivered to three stores (as the fan-out writes it), one
    // of which acknowledged it.
    let id = uuid::Uuid::now_v7();
    sqlx::query(
        "INSERT INTO announcements (id, title, body, target, audience, requires_ack, publish_at, status, created_by, fanned_out_at, published_at, target_count)
         VALUES ($1, 'Safety notice', 'Wear gloves.', '{\"all\": true}', 'everyone', true, now(), 'published', 'hq', now(), now(), 3)",
    )
    .bind(id)
    .execute(&db)
    .await
    .expect("announcement");
    sqlx::query(
        "INSERT INTO announcement_deliveries (announcement_id, store_id, visible_at)
         SELECT $1, id, now() FROM stores",
    )
    .bind(id)
    .execute(&db)
    .await
    .expect("deliveries");
    let acknowledging: uuid::Uuid =
        sqlx::query_scalar("SELECT id FROM stores ORDER BY code LIMIT 1")
            .fetch_one(&db)
            .await
            .expect("store");
    sqlx::query(
        "INSERT INTO announcement_receipts (announcement_id, store_id, staff_subject, read_at, acknowledged_at)
         VALUES ($1, $2, 'ann', now(), now())",
    )
    .bind(id)
    .bind(acknowledging)
    .execute(&db)
    .await
    .expect("receipt");

    let client = client();
    let reminders = |level: i64| {
        let db = db.clone();
        async move {
            sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM outbox WHERE routing_key = 'announcement.reminder' AND (payload->>'level')::bigint = $1",
            )
            .bind(level)
            .fetch_one(&db)
            .await
            .expect("count")
        }
    };
    let mut first = scheduler(&url);
    first.wait_ready(&client, 200).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while reminders(1).await < 2 {
        assert!(Instant::now() < deadline, "no reminders");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The leader dies without releasing; a second process takes over and escalates.
    let mut second = scheduler(&url);
    second.wait_ready(&client, 200).await;
    first.signal("KILL");
    let _ = first.wait_exit(Duration::from_secs(5)).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while reminders(2).await < 2 {
        assert!(Instant::now() < deadline, "no escalation");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        reminders(1).await,
        2,
        "each unacknowledging store reminded once"
    );
    assert_eq!(reminders(2).await, 2, "and escalated once");
    let about_acknowledged: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM outbox WHERE routing_key = 'announcement.reminder' AND payload->>'store_id' = $1::text",
    )
    .bind(acknowledging)
    .fetch_one(&db)
    .await
    .expect("count");
    assert_eq!(
        about_acknowledged, 0,
        "a store that acknowledged is left alone"
    );
    let metrics = client
        .get(format!("{}/metrics", second.admin))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("storeops_announcement_reminders_total{level=\"2\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains("storeops_announcement_ack_ratio{"),
        "{metrics}"
    );
    // A store opened since the delivery: the leader sends the announcement (still in
    // force) to the workers again, once.
    sqlx::query(
        "INSERT INTO stores (id, code, name, region_id, format, time_zone, opening_hours)
         SELECT gen_random_uuid(), 'NEW-0001', 'Opened later', region_id, format, time_zone, opening_hours
           FROM stores LIMIT 1",
    )
    .execute(&db)
    .await
    .expect("new store");
    let redelivered = || {
        let db = db.clone();
        async move {
            sqlx::query_scalar::<_, i64>(
                "SELECT count(*) FROM outbox WHERE routing_key = 'announcement.scheduled' AND payload->>'announcement_id' = $1::text",
            )
            .bind(id)
            .fetch_one(&db)
            .await
            .expect("count")
        }
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while redelivered().await < 1 {
        assert!(Instant::now() < deadline, "not sent to the workers again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(redelivered().await, 1, "once, until the workers deliver it");
    second.signal("TERM");
    let _ = second.wait_exit(Duration::from_secs(15)).await;
}

/// A chain-wide announcement reaches 1,000 stores in one delivery; the time it took is
/// printed (docs/PERFORMANCE.md keeps the figures).
#[tokio::test]
async fn a_chain_wide_announcement_reaches_a_thousand_stores() {
    let app = TestApp::spawn(1000).await;
    let topology = test_topology(&[200]);
    let worker = worker(&app, &topology);
    worker.wait_connected().await;
    let hq = token(Role::Hq, None, None);
    let started = Instant::now();
    let created = create(&app, &hq, json!({"title": "Chain-wide", "body": "Every store.", "target": {"all": true}, "requires_ack": true})).await;
    let id = created["id"].as_str().expect("id").to_owned();
    let announcement = wait_published(&app, &hq, &id).await;
    let took = started.elapsed();
    assert_eq!(announcement["target_count"], 1000);
    assert_eq!(announcement["progress"]["stores_reached"], 1000);
    let fan_out_ms: f64 = sqlx::query_scalar(
        "SELECT EXTRACT(EPOCH FROM fanned_out_at - created_at)::float8 * 1000 FROM announcements WHERE id = $1::uuid",
    )
    .bind(&id)
    .fetch_one(&app.db)
    .await
    .expect("timing");
    println!(
        "announcement to 1000 stores: published after {took:?} (request to delivery committed: {fan_out_ms:.0} ms)"
    );
    let store = app.stores().await.pop().expect("a store");
    let associate = staff(Role::Associate, &store, "last");
    assert_eq!(listed(&app, &associate, "").await, vec![id]);
    worker.shutdown().await;
    teardown(&topology, &[GROUP]).await;
}
