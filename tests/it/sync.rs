//! Sync for store apps on weak networks: the store task list's ETag changes after every
//! kind of write (HTTP transitions and PATCH, campaign fan-out, price batches,
//! deliveries, stock alerts, recurring occurrences, escalation, expiry, pruning, staff
//! changes) and only then; 304 carries no body; the changes feed pages changes and
//! removals, answers 410 for a token older than the log, and never skips a change when
//! transactions commit out of the order of their numbers; an offline replay gets its
//! first answer and a conflicting write the task as it is now.

use std::time::Duration;

use crate::common::{
    self, RunningWorker, TestApp, assert_problem, eventually, teardown, test_topology, token,
};
use reqwest::StatusCode;
use serde_json::{Value, json};
use storeops::{
    auth::Role,
    ids::StoreId,
    tasks::{TaskStatus, fixture::TaskFixture},
};

struct Ctx {
    app: TestApp,
    store: StoreId,
    code: String,
    hq: String,
    manager: String,
}

async fn setup() -> Ctx {
    let app = TestApp::spawn(2).await;
    let first = app.stores().await[0].clone();
    Ctx {
        hq: token(Role::Hq, None, None),
        manager: token(Role::StoreManager, Some(first.id), None),
        store: first.id,
        code: first.code,
        app,
    }
}

impl Ctx {
    fn list_path(&self) -> String {
        format!("/api/v1/stores/{}/tasks?limit=200", self.store)
    }

    /// The list's status, ETag and body, asked conditionally on `known`.
    async fn list(&self, known: Option<&str>) -> (StatusCode, String, Vec<u8>) {
        let mut request = self
            .app
            .client
            .get(self.app.url(&self.list_path()))
            .bearer_auth(&self.manager);
        if let Some(tag) = known {
            request = request.header("If-None-Match", tag);
        }
        let response = request.send().await.expect("list");
        let status = response.status();
        let etag = response
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        (status, etag, response.bytes().await.expect("body").to_vec())
    }

    async fn etag(&self) -> String {
        let (status, etag, _) = self.list(None).await;
        assert_eq!(status, 200);
        assert!(etag.starts_with('"'), "{etag}");
        etag
    }

    /// After `what` happened, the old tag no longer matches, and the new one does.
    async fn changed_since(&self, old: &str, what: &str) -> String {
        let (status, etag, body) = self.list(Some(old)).await;
        assert_eq!(
            status, 200,
            "{what}: the list changed, so the old tag must not match"
        );
        assert!(!body.is_empty());
        assert_ne!(etag, old, "{what}");
        let (status, again, body) = self.list(Some(&etag)).await;
        assert_eq!(status, 304, "{what}: nothing changed since");
        assert!(body.is_empty(), "a 304 has no body");
        assert_eq!(again, etag);
        etag
    }

    async fn post(&self, path: &str, token: &str, body: Value) -> reqwest::Response {
        self.app
            .client
            .post(self.app.url(path))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .expect("post")
    }

    async fn create(&self, body: Value) -> Value {
        let response = self
            .post(
                &format!("/api/v1/stores/{}/tasks", self.store),
                &self.manager,
                body,
            )
            .await;
        assert_eq!(response.status(), 201);
        response.json().await.expect("task")
    }

    /// PATCH a task as the store's manager, unconditionally.
    async fn patch(&self, task: &str, body: Value) -> reqwest::Response {
        self.app
            .client
            .patch(self.app.url(&format!("/api/v1/tasks/{task}")))
            .bearer_auth(&self.manager)
            .header("If-Match", "*")
            .json(&body)
            .send()
            .await
            .expect("patch")
    }

    /// A feed page of one assignee's view.
    async fn assignee_page(&self, since: &str, assignee: uuid::Uuid) -> Value {
        let path = format!(
            "/api/v1/stores/{}/changes?since={since}&assignee={assignee}",
            self.store
        );
        self.app
            .get(&path, &self.manager)
            .await
            .json()
            .await
            .expect("page")
    }

    async fn feed(&self, since: Option<&str>, limit: u32) -> reqwest::Response {
        let mut path = format!("/api/v1/stores/{}/changes?limit={limit}", self.store);
        if let Some(since) = since {
            path.push_str(&format!("&since={since}"));
        }
        self.app.get(&path, &self.manager).await
    }

    /// Reads the feed from `since` until `done` holds for what it named, as an app polls:
    /// a change is served once no older transaction of the cluster is still running
    /// (the feed's watermark), so a transaction of another test may hold it back a moment.
    async fn catch_up(
        &self,
        mut since: String,
        done: impl Fn(&[String], &[(String, String)]) -> bool,
    ) -> (String, Vec<String>, Vec<(String, String)>) {
        let (mut changed, mut removed) = (Vec::new(), Vec::new());
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let (next, more_changed, more_removed) = self.drain(since).await;
            since = next;
            changed.extend(more_changed);
            removed.extend(more_removed);
            if done(&changed, &removed) {
                return (since, changed, removed);
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the feed never served it: {changed:?} {removed:?}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    /// The first page for `assignee` from `since` that names anything (bounded, as
    /// [`Ctx::catch_up`]).
    async fn assignee_catch_up(&self, since: &str, assignee: uuid::Uuid) -> Value {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            let page = self.assignee_page(since, assignee).await;
            let named = |field: &str| page[field].as_array().is_some_and(|a| !a.is_empty());
            if named("changes") || named("removed") {
                return page;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "nothing for {assignee}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    /// Reads the feed from `since` until it says it is in sync; every task id it named.
    async fn drain(&self, mut since: String) -> (String, Vec<String>, Vec<(String, String)>) {
        let (mut changed, mut removed) = (Vec::new(), Vec::new());
        loop {
            let response = self.feed(Some(&since), 2).await;
            assert_eq!(response.status(), 200);
            let page: Value = response.json().await.expect("page");
            for task in page["changes"].as_array().expect("changes") {
                changed.push(task["id"].as_str().expect("id").to_owned());
            }
            for gone in page["removed"].as_array().expect("removed") {
                removed.push((
                    gone["task_id"].as_str().expect("id").to_owned(),
                    gone["reason"].as_str().expect("reason").to_owned(),
                ));
            }
            since = page["next_token"].as_str().expect("token").to_owned();
            if page["more"] == false {
                return (since, changed, removed);
            }
        }
    }
}

/// `storeops_tasks_created_total` by (kind, source), from this process's registry.
fn created_counts() -> std::collections::HashMap<(String, String), f64> {
    storeops::metrics::render()
        .lines()
        .filter_map(|line| line.strip_prefix("storeops_tasks_created_total{"))
        .filter_map(|rest| {
            let (labels, value) = rest.split_once("} ")?;
            let label = |name: &str| {
                labels
                    .split(',')
                    .find_map(|l| l.strip_prefix(&format!("{name}=\"")))
                    .map(|v| v.trim_end_matches('"').to_owned())
            };
            Some((
                (label("kind")?, label("source")?),
                value.trim().parse().ok()?,
            ))
        })
        .collect()
}

#[tokio::test]
async fn the_list_tag_changes_after_every_writer_and_only_then() {
    common::init_logs();
    let ctx = setup().await;
    let created_before = created_counts();
    let mut etag = ctx.etag().await;
    // Reads change nothing.
    let (status, _, body) = ctx.list(Some(&etag)).await;
    assert_eq!(status, 304);
    assert!(body.is_empty());
    let (status, _, _) = ctx.list(Some(&format!("W/{etag}"))).await;
    assert_eq!(status, 304, "compared weakly");
    let (status, _, _) = ctx.list(Some("\"s0\", *")).await;
    assert_eq!(status, 304, "* matches");

    // HTTP: create, transitions, PATCH.
    let task = ctx.create(json!({"title": "Face up the shelves"})).await;
    etag = ctx.changed_since(&etag, "create").await;
    let id = task["id"].as_str().expect("id");
    let response = ctx
        .post(
            &format!("/api/v1/tasks/{id}/start"),
            &ctx.manager,
            json!({}),
        )
        .await;
    assert_eq!(response.status(), 200);
    etag = ctx.changed_since(&etag, "start").await;
    let patched = ctx.patch(id, json!({"priority": "urgent"})).await;
    assert_eq!(patched.status(), 200);
    etag = ctx.changed_since(&etag, "PATCH").await;

    // Workers: a campaign, a price batch, a delivery, a stock alert, an occurrence.
    let topology = test_topology(&[200]);
    let worker = RunningWorker::groups(
        &ctx.app.db,
        &topology,
        &["campaigns", "ingest", "schedules"],
        4,
        &[],
    );
    worker.wait_connected().await;
    let count = |sql: &'static str| {
        let db = ctx.app.db.clone();
        async move {
            sqlx::query_scalar::<_, i64>(sql)
                .fetch_one(&db)
                .await
                .unwrap_or(0)
        }
    };
    let response = ctx
        .post(
            "/api/v1/campaigns",
            &ctx.hq,
            json!({"title": "Window display", "target": {"all": true}, "due_at": "2030-01-01T10:00:00Z"}),
        )
        .await;
    assert_eq!(response.status(), 202);
    eventually(Duration::from_secs(30), "campaign fanned out", || async {
        count("SELECT count(*) FROM tasks WHERE source = 'campaign'").await == 2
    })
    .await;
    etag = ctx.changed_since(&etag, "campaign fan-out").await;

    let integration = token(Role::Integration, None, None);
    let batch = json!({"batch_id": "PB-SYNC", "effective_at": "2030-01-01T06:00:00Z",
        "items": [{"sku": "4607001", "name": "Milk", "new_price": "1.29", "currency": "EUR", "store_codes": [ctx.code]}]});
    assert_eq!(
        ctx.post("/api/v1/integrations/price-changes", &integration, batch)
            .await
            .status(),
        202
    );
    eventually(Duration::from_secs(30), "price batch applied", || async {
        count("SELECT count(*) FROM tasks WHERE kind = 'price_relabel'").await == 1
    })
    .await;
    etag = ctx.changed_since(&etag, "price batch").await;

    let delivery = json!({"delivery_id": "D-SYNC", "store_code": ctx.code, "supplier": "Fresh Farms",
        "expected_at": "2030-01-01T08:00:00Z", "lines": [{"sku": "A", "qty": 3}]});
    assert_eq!(
        ctx.post("/api/v1/integrations/deliveries", &integration, delivery)
            .await
            .status(),
        202
    );
    eventually(Duration::from_secs(30), "delivery applied", || async {
        count("SELECT count(*) FROM tasks WHERE kind = 'receiving'").await == 1
    })
    .await;
    etag = ctx.changed_since(&etag, "delivery").await;

    let alert = json!({"alert_id": "A-SYNC", "store_code": ctx.code, "sku": "B", "on_hand": 0});
    assert_eq!(
        ctx.post("/api/v1/integrations/stock-alerts", &integration, alert)
            .await
            .status(),
        202
    );
    eventually(Duration::from_secs(30), "stock alert applied", || async {
        count("SELECT count(*) FROM tasks WHERE kind = 'restock'").await == 1
    })
    .await;
    etag = ctx.changed_since(&etag, "stock alert").await;

    let template: uuid::Uuid = sqlx::query_scalar(
        "SELECT id FROM task_templates WHERE created_by = 'seed' ORDER BY id LIMIT 1",
    )
    .fetch_one(&ctx.app.db)
    .await
    .expect("a template");
    let mut tx = ctx.app.db.begin().await.expect("begin");
    storeops::events::outbox::enqueue(
        &mut tx,
        &storeops::schedules::ScheduleDue {
            template_id: storeops::ids::TemplateId(template),
            version: 1,
            occurrence_at: "2030-01-01T07:00:00Z".parse().expect("instant"),
            local_date: "2030-01-01".parse().expect("day"),
            store_ids: vec![ctx.store],
        },
    )
    .await
    .expect("schedule.due");
    tx.commit().await.expect("commit");
    eventually(Duration::from_secs(30), "occurrence created", || async {
        count("SELECT count(*) FROM tasks WHERE source = 'schedule'").await == 1
    })
    .await;
    etag = ctx.changed_since(&etag, "recurring occurrence").await;
    worker.shutdown().await;
    teardown(&topology, &[]).await;

    // Every writer counted what it created, by kind and source (other tests in this
    // process may add to the same counters, never take away).
    let created_after = created_counts();
    for (kind, source, at_least) in [
        ("adhoc", "manual", 1.0),
        ("adhoc", "campaign", 2.0),
        ("price_relabel", "price_change", 1.0),
        ("receiving", "delivery", 1.0),
        ("restock", "stock_alert", 1.0),
        ("checklist", "schedule", 1.0),
    ] {
        let key = (kind.to_owned(), source.to_owned());
        let grew = created_after.get(&key).copied().unwrap_or(0.0)
            - created_before.get(&key).copied().unwrap_or(0.0);
        assert!(
            grew >= at_least,
            "storeops_tasks_created_total{{kind={kind}, source={source}}} grew by {grew}"
        );
    }

    // The scheduler's jobs: escalation of overdue work, expiry.
    let now = chrono::Utc::now();
    TaskFixture::new(ctx.store, "Overdue")
        .due_at(now - chrono::Duration::minutes(5))
        .insert(&ctx.app.db)
        .await
        .expect("overdue task");
    etag = ctx.changed_since(&etag, "a task written directly").await;
    let jobs = storeops::tasks::jobs::jobs(
        &ctx.app.db,
        &storeops::tasks::jobs::TaskJobsConfig {
            tick: Duration::from_secs(1),
            escalation_delay: Duration::from_secs(3600),
        },
    );
    let job = |name: &str| jobs.iter().find(|j| j.name() == name).expect("job").clone();
    job("overdue").run().await.expect("overdue");
    etag = ctx.changed_since(&etag, "escalation").await;
    TaskFixture::new(ctx.store, "Expiring")
        .due_at(now - chrono::Duration::hours(2))
        .expires_at(now - chrono::Duration::minutes(1))
        .insert(&ctx.app.db)
        .await
        .expect("expiring task");
    etag = ctx.changed_since(&etag, "a task written directly").await;
    job("expiry").run().await.expect("expiry");
    etag = ctx.changed_since(&etag, "expiry").await;

    // Pruning removes a long-closed task.
    TaskFixture::new(ctx.store, "Long done")
        .status(TaskStatus::Done)
        .due_at(now - chrono::Duration::days(500))
        .updated_at(now - chrono::Duration::days(500))
        .completed_at(Some(now - chrono::Duration::days(500)))
        .insert(&ctx.app.db)
        .await
        .expect("old task");
    etag = ctx.changed_since(&etag, "a task written directly").await;
    let pruner = storeops::maintenance::Pruner {
        db: ctx.app.db.clone(),
        retention: storeops::config::Config::from_lookup(|_| None)
            .expect("defaults")
            .retention,
        evidence: storeops::evidence::Evidence::new(&common::evidence_config(&ctx.app.database))
            .expect("evidence"),
    };
    let report = pruner.run_once(false).await.expect("prune");
    assert!(report.rows.contains(&("tasks", 1)), "{:?}", report.rows);
    etag = ctx.changed_since(&etag, "pruning").await;

    // Staff: a change of who works in the store.
    sqlx::query("UPDATE staff SET active = false WHERE id = (SELECT id FROM staff WHERE store_id = $1 LIMIT 1)")
        .bind(ctx.store)
        .execute(&ctx.app.db)
        .await
        .expect("staff change");
    etag = ctx.changed_since(&etag, "staff change").await;

    // Another store's writes leave this store's tag alone.
    let other = ctx.app.stores().await[1].id;
    TaskFixture::new(other, "Elsewhere")
        .insert(&ctx.app.db)
        .await
        .expect("other store");
    let (status, _, _) = ctx.list(Some(&etag)).await;
    assert_eq!(status, 304, "another store's write");
}

#[tokio::test]
async fn a_task_answers_304_until_it_changes() {
    let ctx = setup().await;
    let task = ctx.create(json!({"title": "Check the dates"})).await;
    let path = format!("/api/v1/tasks/{}", task["id"].as_str().expect("id"));
    let first = ctx.app.get(&path, &ctx.manager).await;
    let etag = first.headers()["etag"].to_str().expect("etag").to_owned();
    let conditional = |tag: String| {
        let (client, url, token) = (
            ctx.app.client.clone(),
            ctx.app.url(&path),
            ctx.manager.clone(),
        );
        async move {
            client
                .get(url)
                .bearer_auth(token)
                .header("If-None-Match", tag)
                .send()
                .await
                .expect("get")
        }
    };
    let again = conditional(etag.clone()).await;
    assert_eq!(again.status(), 304);
    assert!(again.bytes().await.expect("body").is_empty());
    ctx.post(&format!("{path}/start"), &ctx.manager, json!({}))
        .await;
    assert_eq!(conditional(etag).await.status(), 200);
}

#[tokio::test]
async fn the_feed_pages_changes_and_removals_and_resyncs_when_too_old() {
    let ctx = setup().await;
    let a = ctx.create(json!({"title": "A"})).await;
    let b = ctx.create(json!({"title": "B"})).await;
    let c = ctx.create(json!({"title": "C"})).await;
    // A first sync: the store's work, two at a time, then a token for what follows.
    let first = ctx.feed(None, 2).await;
    assert_eq!(first.status(), 200);
    let page: Value = first.json().await.expect("page");
    assert_eq!(page["changes"].as_array().map(Vec::len), Some(2));
    assert_eq!(page["more"], true);
    let (token, seen, removed) = ctx
        .drain(page["next_token"].as_str().expect("token").to_owned())
        .await;
    let mut all: Vec<String> = page["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .map(|t| t["id"].as_str().expect("id").to_owned())
        .chain(seen)
        .collect();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 3, "{all:?}");
    assert!(removed.is_empty());

    // Changes since: one started, one cancelled, one done; and a new one.
    let id = |t: &Value| t["id"].as_str().expect("id").to_owned();
    ctx.post(
        &format!("/api/v1/tasks/{}/start", id(&a)),
        &ctx.manager,
        json!({}),
    )
    .await;
    ctx.post(
        &format!("/api/v1/tasks/{}/cancel", id(&b)),
        &ctx.manager,
        json!({}),
    )
    .await;
    ctx.post(
        &format!("/api/v1/tasks/{}/complete", id(&c)),
        &ctx.manager,
        json!({}),
    )
    .await;
    let d = ctx.create(json!({"title": "D"})).await;
    let (token, changed, removed) = ctx
        .catch_up(token, |changed, removed| {
            changed.contains(&id(&d))
                && [id(&b), id(&c)]
                    .iter()
                    .all(|gone| removed.iter().any(|(task, _)| task == gone))
        })
        .await;
    let mut changed = changed;
    changed.sort();
    changed.dedup();
    let mut expected = vec![id(&a), id(&d)];
    expected.sort();
    assert_eq!(changed, expected);
    // A task changed by several statements may be named on more than one page.
    let mut removed = removed;
    removed.sort();
    removed.dedup();
    let mut want = vec![
        (id(&b), "cancelled".to_owned()),
        (id(&c), "done".to_owned()),
    ];
    want.sort();
    assert_eq!(removed, want);
    // In sync: nothing more.
    let (same, changed, removed) = ctx.drain(token.clone()).await;
    assert!(changed.is_empty() && removed.is_empty());
    assert_eq!(same, token);

    // An associate's view: work reassigned to someone else leaves it.
    let staff: Vec<uuid::Uuid> = sqlx::query_scalar(
        "SELECT id FROM staff WHERE store_id = $1 AND role = 'associate' ORDER BY id LIMIT 2",
    )
    .bind(ctx.store)
    .fetch_all(&ctx.app.db)
    .await
    .expect("staff");
    let mine = ctx
        .create(json!({"title": "Mine", "assignee_id": staff[0]}))
        .await;
    let page = ctx.assignee_catch_up(&token, staff[0]).await;
    assert_eq!(page["changes"][0]["id"], mine["id"]);
    let token = page["next_token"].as_str().expect("token").to_owned();
    let reassign = ctx
        .patch(&id(&mine), json!({"assignee_id": staff[1]}))
        .await;
    assert_eq!(reassign.status(), 200);
    let page = ctx.assignee_catch_up(&token, staff[0]).await;
    assert_eq!(page["removed"][0]["task_id"], mine["id"]);
    assert_eq!(page["removed"][0]["reason"], "reassigned");

    // The log is pruned: a token from before it is gone, and a new sync works.
    let mut conn = ctx.app.db.acquire().await.expect("conn");
    storeops::tasks::sync::prune_changes(
        &mut conn,
        chrono::Utc::now() + chrono::Duration::hours(1),
        10_000,
    )
    .await
    .expect("prune");
    let gone = assert_problem(ctx.feed(Some(&token), 10).await, 410).await;
    assert!(
        gone["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("without `since`"),
        "{gone}"
    );
    assert_eq!(ctx.feed(None, 10).await.status(), 200);
    // A token that is not one: 422.
    assert_problem(ctx.feed(Some("bm90LWEtdG9rZW4"), 10).await, 422).await;
}

#[tokio::test]
async fn the_feed_never_skips_a_change_committed_out_of_order() {
    let ctx = setup().await;
    let page: Value = ctx.feed(None, 200).await.json().await.expect("page");
    let token = page["next_token"].as_str().expect("token").to_owned();

    // T1 writes first (the lower transaction id and sequence number), T2 second; T2
    // commits first. A reader that only remembered the highest number it had seen
    // would read T2's change, then never look below it again and lose T1's.
    let mut t1 = ctx.app.db.begin().await.expect("t1");
    let first = TaskFixture::new(ctx.store, "Written first, committed last")
        .insert_in(&mut t1)
        .await
        .expect("t1 write");
    let mut t2 = ctx.app.db.begin().await.expect("t2");
    let second = TaskFixture::new(ctx.store, "Written second, committed first")
        .insert_in(&mut t2)
        .await
        .expect("t2 write");
    t2.commit().await.expect("t2 commit");

    let (token, while_open, _) = ctx.drain(token).await;
    assert!(
        !while_open.contains(&first.0.to_string()),
        "an uncommitted write is not shown"
    );
    t1.commit().await.expect("t1 commit");
    let (first_id, second_id) = (first.0.to_string(), second.0.to_string());
    let (_, after, _) = ctx
        .catch_up(token, |after, _| {
            after.contains(&first_id)
                && (after.contains(&second_id) || while_open.contains(&second_id))
        })
        .await;
    let seen: Vec<String> = while_open.into_iter().chain(after).collect();
    for task in [first, second] {
        assert!(
            seen.contains(&task.0.to_string()),
            "{task:?} was skipped: {seen:?}"
        );
    }
}

#[tokio::test]
async fn offline_replays_get_their_first_answer_and_conflicts_the_task_as_it_is() {
    let ctx = setup().await;
    let staff: uuid::Uuid = sqlx::query_scalar(
        "SELECT id FROM staff WHERE store_id = $1 AND role = 'associate' ORDER BY id LIMIT 1",
    )
    .bind(ctx.store)
    .fetch_one(&ctx.app.db)
    .await
    .expect("staff");
    let mut claims = common::claims(Role::Associate, Some(ctx.store), None);
    claims.sub = staff.to_string();
    let associate = common::signer().sign(&claims).expect("sign");
    let complete = |task: &Value, key: &str| {
        let (client, url, token, key) = (
            ctx.app.client.clone(),
            ctx.app.url(&format!(
                "/api/v1/tasks/{}/complete",
                task["id"].as_str().expect("id")
            )),
            associate.clone(),
            key.to_owned(),
        );
        async move {
            client
                .post(url)
                .bearer_auth(token)
                .header("Idempotency-Key", key)
                .json(&json!({"note": "done"}))
                .send()
                .await
                .expect("complete")
        }
    };
    let task = ctx.create(json!({"title": "Count the tills"})).await;
    let first = complete(&task, "k-1").await;
    assert_eq!(first.status(), 200);
    let first: Value = first.json().await.expect("json");
    // Resent after reconnecting: the same answer, nothing done twice.
    let again = complete(&task, "k-1").await;
    assert_eq!(again.status(), 200);
    assert_eq!(again.json::<Value>().await.expect("json"), first);
    let history: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM task_events WHERE task_id = $1::uuid AND kind = 'completed'",
    )
    .bind(task["id"].as_str())
    .fetch_one(&ctx.app.db)
    .await
    .expect("history");
    assert_eq!(history, 1);
    // The same key for another request: 422.
    let other = ctx.create(json!({"title": "Other"})).await;
    assert_problem(complete(&other, "k-1").await, 422).await;

    // Cancelled while the app was offline: 409 with the task as it is now.
    let cancelled = ctx.create(json!({"title": "Called off"})).await;
    ctx.post(
        &format!(
            "/api/v1/tasks/{}/cancel",
            cancelled["id"].as_str().expect("id")
        ),
        &ctx.manager,
        json!({"reason": "not needed"}),
    )
    .await;
    let conflict = assert_problem(complete(&cancelled, "k-2").await, 409).await;
    assert_eq!(conflict["current"]["status"], "cancelled");
    assert_eq!(conflict["current"]["id"], cancelled["id"]);

    // Reassigned to a colleague meanwhile: 409 too, with the new assignee.
    let colleague: uuid::Uuid = sqlx::query_scalar(
        "SELECT id FROM staff WHERE store_id = $1 AND role = 'associate' AND id <> $2 LIMIT 1",
    )
    .bind(ctx.store)
    .bind(staff)
    .fetch_one(&ctx.app.db)
    .await
    .expect("colleague");
    let theirs = ctx
        .create(json!({"title": "Theirs", "assignee_id": colleague}))
        .await;
    let conflict = assert_problem(complete(&theirs, "k-3").await, 409).await;
    assert_eq!(conflict["current"]["assignee_id"], colleague.to_string());
}
