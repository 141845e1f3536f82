//! Store tasks through HTTP: templates and versions, create with Idempotency-Key, the
//! store task list, ETag/If-Match, the transition table, review, permissions, history,
//! concurrent completion, and the outbox events every change emits.

use crate::common;

use common::{TestApp, assert_problem, token};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use storeops::{auth::Role, ids::StoreId};
use uuid::Uuid;

struct Ctx {
    app: TestApp,
    store: StoreId,
    other_store: StoreId,
    hq: String,
    manager: String,
    associates: Vec<(Uuid, String)>,
}

async fn setup() -> Ctx {
    let app = TestApp::spawn(4).await;
    let stores = app.stores().await;
    let (store, other_store) = (stores[0].id, stores[1].id);
    let staff: Vec<Uuid> = sqlx::query_scalar(
        "SELECT id FROM staff WHERE store_id = $1 AND role = 'associate' ORDER BY id LIMIT 2",
    )
    .bind(store)
    .fetch_all(&app.db)
    .await
    .expect("staff");
    let associates = staff
        .into_iter()
        .map(|id| {
            let mut claims = common::claims(Role::Associate, Some(store), None);
            claims.sub = id.to_string();
            (id, common::signer().sign(&claims).expect("sign"))
        })
        .collect();
    Ctx {
        hq: token(Role::Hq, None, None),
        manager: token(Role::StoreManager, Some(store), None),
        associates,
        app,
        store,
        other_store,
    }
}

impl Ctx {
    async fn call(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> reqwest::Response {
        let mut request = self
            .app
            .client
            .request(method, self.app.url(path))
            .bearer_auth(token);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.expect("request")
    }

    async fn ok(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<Value>,
        status: u16,
    ) -> (Value, Option<String>) {
        let response = self.call(method.clone(), path, token, body, &[]).await;
        let actual = response.status().as_u16();
        let etag = response
            .headers()
            .get("etag")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let json: Value = response.json().await.unwrap_or(Value::Null);
        assert_eq!(actual, status, "{method} {path}: {json}");
        (json, etag)
    }

    async fn create_task(&self, body: Value) -> Value {
        self.ok(
            Method::POST,
            &format!("/api/v1/stores/{}/tasks", self.store),
            &self.manager,
            Some(body),
            201,
        )
        .await
        .0
    }

    async fn transition(
        &self,
        task: &Value,
        action: &str,
        token: &str,
        body: Option<Value>,
    ) -> reqwest::Response {
        let path = format!(
            "/api/v1/tasks/{}/{action}",
            task["id"].as_str().expect("id")
        );
        self.call(Method::POST, &path, token, body, &[]).await
    }

    async fn checklist_template(&self, review_required: bool) -> Value {
        self.ok(
            Method::POST,
            "/api/v1/task-templates",
            &self.hq,
            Some(json!({
                "title": "Open the store",
                "review_required": review_required,
                "estimated_minutes": 15,
                "checklist": [
                    {"key": "lights", "label": "Lights on", "type": "check", "required": true},
                    {"key": "fridge_temp", "label": "Fridge temperature", "type": "number", "required": true},
                    {"key": "entrance", "label": "Entrance photo", "type": "photo", "required": true},
                    {"key": "note", "label": "Remarks", "type": "text"}
                ]
            })),
            201,
        )
        .await
        .0
    }
}

impl Ctx {
    /// Answers of the checklist template, with an entrance photo uploaded for `task` by
    /// `token` (a grant, then the upload it allows), and a picture hosted elsewhere.
    async fn good_answers(&self, task: &Value, token: &str) -> Value {
        let photo = common::upload_photo(&self.app, task, "entrance", token).await;
        json!({"answers": {"lights": true, "fridge_temp": 3.5, "entrance": {"evidence_id": photo}},
               "evidence": [{"url": "https://cdn.example.com/e.jpg", "content_type": "image/jpeg", "item_key": "entrance"}]})
    }
}

#[tokio::test]
async fn templates_are_versioned_and_hq_only() {
    let ctx = setup().await;
    let template = ctx.checklist_template(false).await;
    let id = template["id"].as_str().expect("id");
    assert_eq!(template["version"], 1);
    assert_problem(
        ctx.call(
            Method::POST,
            "/api/v1/task-templates",
            &ctx.manager,
            Some(json!({"title": "x"})),
            &[],
        )
        .await,
        403,
    )
    .await;
    let bad = ctx
        .call(Method::POST, "/api/v1/task-templates", &ctx.hq, Some(json!({"title": "x", "checklist": [{"key": "Bad Key", "label": "l", "type": "check"}]})), &[])
        .await;
    let problem = assert_problem(bad, 422).await;
    assert_eq!(problem["errors"][0]["field"], "checklist[0].key");

    let (v2, _) = ctx
        .ok(
            Method::PATCH,
            &format!("/api/v1/task-templates/{id}"),
            &ctx.hq,
            Some(json!({"title": "Open the store v2"})),
            200,
        )
        .await;
    assert_eq!(v2["version"], 2);
    assert_eq!(v2["checklist"].as_array().map(Vec::len), Some(4));
    let (v1, _) = ctx
        .ok(
            Method::GET,
            &format!("/api/v1/task-templates/{id}?version=1"),
            &ctx.manager,
            None,
            200,
        )
        .await;
    assert_eq!(v1["title"], "Open the store");
    let (current, _) = ctx
        .ok(
            Method::GET,
            &format!("/api/v1/task-templates/{id}"),
            &ctx.associates[0].1,
            None,
            200,
        )
        .await;
    assert_eq!(current["version"], 2);

    // A task made from v2 keeps v2 after v3 changes the checklist.
    let task = ctx.create_task(json!({"template_id": id})).await;
    assert_eq!(task["template_version"], 2);
    assert_eq!(task["kind"], "checklist");
    ctx.ok(
        Method::PATCH,
        &format!("/api/v1/task-templates/{id}"),
        &ctx.hq,
        Some(json!({"checklist": []})),
        200,
    )
    .await;
    let done = ctx
        .transition(
            &task,
            "complete",
            &ctx.manager,
            Some(ctx.good_answers(&task, &ctx.manager).await),
        )
        .await;
    assert_eq!(done.status(), 200, "v2's checklist still applies");
}

#[tokio::test]
async fn create_honours_idempotency_keys_and_roles() {
    let ctx = setup().await;
    let path = format!("/api/v1/stores/{}/tasks", ctx.store);
    let body = json!({"title": "Clean the windows", "priority": "high"});
    let first = ctx
        .call(
            Method::POST,
            &path,
            &ctx.manager,
            Some(body.clone()),
            &[("idempotency-key", "k-1")],
        )
        .await;
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.expect("json");
    let again = ctx
        .call(
            Method::POST,
            &path,
            &ctx.manager,
            Some(body.clone()),
            &[("idempotency-key", "k-1")],
        )
        .await;
    assert_eq!(again.status(), 201);
    let again: Value = again.json().await.expect("json");
    assert_eq!(first["id"], again["id"], "a retry returns the same task");
    let different = ctx
        .call(
            Method::POST,
            &path,
            &ctx.manager,
            Some(json!({"title": "Something else"})),
            &[("idempotency-key", "k-1")],
        )
        .await;
    assert_problem(different, 422).await;
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM tasks")
        .fetch_one(&ctx.app.db)
        .await
        .expect("count");
    assert_eq!(count, 1);

    assert_problem(
        ctx.call(
            Method::POST,
            &path,
            &ctx.associates[0].1,
            Some(body.clone()),
            &[],
        )
        .await,
        403,
    )
    .await;
    let regional = token(Role::RegionalManager, None, Some("kaliningrad"));
    let response = ctx
        .call(Method::POST, &path, &regional, Some(body.clone()), &[])
        .await;
    assert!(matches!(response.status().as_u16(), 403 | 404));
    let problem = assert_problem(
        ctx.call(
            Method::POST,
            &path,
            &ctx.manager,
            Some(json!({"priority": "high"})),
            &[],
        )
        .await,
        422,
    )
    .await;
    assert_eq!(problem["errors"][0]["field"], "title");
    let other_staff: Uuid = sqlx::query_scalar("SELECT id FROM staff WHERE store_id = $1 LIMIT 1")
        .bind(ctx.other_store)
        .fetch_one(&ctx.app.db)
        .await
        .expect("staff");
    let problem = assert_problem(
        ctx.call(
            Method::POST,
            &path,
            &ctx.manager,
            Some(json!({"title": "t", "assignee_id": other_staff})),
            &[],
        )
        .await,
        422,
    )
    .await;
    assert_eq!(problem["errors"][0]["field"], "assignee_id");
}

#[tokio::test]
async fn the_store_task_list_filters_and_pages() {
    let ctx = setup().await;
    let base = chrono::Utc::now() + chrono::Duration::hours(1);
    let assignee = ctx.associates[0].0;
    for i in 0..57 {
        let mut body =
            json!({"title": format!("Task {i}"), "due_at": base + chrono::Duration::minutes(i)});
        if i % 3 == 0 {
            body["assignee_id"] = json!(assignee);
        }
        ctx.create_task(body).await;
    }
    let mut seen = Vec::new();
    let mut cursor = String::new();
    for _ in 0..10 {
        let (page, _) = ctx
            .ok(
                Method::GET,
                &format!(
                    "/api/v1/stores/{}/tasks?limit=20&status=open{cursor}",
                    ctx.store
                ),
                &ctx.associates[1].1,
                None,
                200,
            )
            .await;
        seen.extend(
            page["items"]
                .as_array()
                .expect("items")
                .iter()
                .map(|t| t["due_at"].as_str().expect("due").to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), 57);
    // The list's items keep the documented shape and agree with GET, field for field.
    let (page, _) = ctx
        .ok(
            Method::GET,
            &format!("/api/v1/stores/{}/tasks?limit=3", ctx.store),
            &ctx.manager,
            None,
            200,
        )
        .await;
    let items: Vec<storeops::tasks::TaskSummaryDto> =
        serde_json::from_value(page["items"].clone()).expect("items match TaskSummaryDto");
    assert_eq!(items.len(), 3);
    let (full, _) = ctx
        .ok(
            Method::GET,
            &format!("/api/v1/tasks/{}", items[0].id),
            &ctx.manager,
            None,
            200,
        )
        .await;
    let full: storeops::tasks::TaskDto = serde_json::from_value(full).expect("task");
    let summary = storeops::tasks::TaskSummaryDto {
        id: full.id,
        store_id: full.store_id,
        kind: full.kind,
        source: full.source,
        title: full.title,
        status: full.status,
        priority: full.priority,
        assignee_id: full.assignee_id,
        review_required: full.review_required,
        due_at: full.due_at,
        template_id: full.template_id,
        campaign_id: full.campaign_id,
        completed_at: full.completed_at,
        version: full.version,
    };
    assert_eq!(items[0], summary);
    let keys: Vec<&String> = page["items"][0]
        .as_object()
        .expect("object")
        .keys()
        .collect();
    assert_eq!(keys.len(), 14, "{keys:?}");
    assert!(seen.windows(2).all(|w| w[0] <= w[1]), "ordered by due time");

    let (mine, _) = ctx
        .ok(
            Method::GET,
            &format!(
                "/api/v1/stores/{}/tasks?assignee={assignee}&limit=200",
                ctx.store
            ),
            &ctx.manager,
            None,
            200,
        )
        .await;
    assert_eq!(mine["items"].as_array().map(Vec::len), Some(19));
    let cutoff =
        (base + chrono::Duration::minutes(10)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let (early, _) = ctx
        .ok(
            Method::GET,
            &format!("/api/v1/stores/{}/tasks?due_before={cutoff}", ctx.store),
            &ctx.manager,
            None,
            200,
        )
        .await;
    assert_eq!(early["items"].as_array().map(Vec::len), Some(10));
    // Several statuses and filters at once: the assignee's tasks among the first ten.
    let (combined, _) = ctx
        .ok(
            Method::GET,
            &format!(
                "/api/v1/stores/{}/tasks?status=open,done&assignee={assignee}&due_before={cutoff}",
                ctx.store
            ),
            &ctx.manager,
            None,
            200,
        )
        .await;
    assert_eq!(combined["items"].as_array().map(Vec::len), Some(4));
    let (none, _) = ctx
        .ok(
            Method::GET,
            &format!("/api/v1/stores/{}/tasks?status=done&kind=adhoc", ctx.store),
            &ctx.manager,
            None,
            200,
        )
        .await;
    assert_eq!(none["items"].as_array().map(Vec::len), Some(0));
    let problem = assert_problem(
        ctx.call(
            Method::GET,
            &format!("/api/v1/stores/{}/tasks?status=finished", ctx.store),
            &ctx.manager,
            None,
            &[],
        )
        .await,
        422,
    )
    .await;
    assert_eq!(problem["errors"][0]["field"], "status");
    assert_problem(
        ctx.call(
            Method::GET,
            &format!("/api/v1/stores/{}/tasks", ctx.other_store),
            &ctx.manager,
            None,
            &[],
        )
        .await,
        403,
    )
    .await;
}

#[tokio::test]
async fn etags_guard_patches() {
    let ctx = setup().await;
    let task = ctx.create_task(json!({"title": "Restock aisle 4"})).await;
    let path = format!("/api/v1/tasks/{}", task["id"].as_str().expect("id"));
    let (_, etag) = ctx.ok(Method::GET, &path, &ctx.manager, None, 200).await;
    let etag = etag.expect("etag");
    let patch = json!({"priority": "urgent", "assignee_id": ctx.associates[0].0});
    assert_problem(
        ctx.call(Method::PATCH, &path, &ctx.manager, Some(patch.clone()), &[])
            .await,
        428,
    )
    .await;
    assert_problem(
        ctx.call(
            Method::PATCH,
            &path,
            &ctx.manager,
            Some(patch.clone()),
            &[("if-match", "\"999\"")],
        )
        .await,
        412,
    )
    .await;
    let response = ctx
        .call(
            Method::PATCH,
            &path,
            &ctx.manager,
            Some(patch.clone()),
            &[("if-match", &etag)],
        )
        .await;
    assert_eq!(response.status(), 200);
    let new_etag = response
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .expect("etag")
        .to_owned();
    assert_ne!(new_etag, etag);
    let updated: Value = response.json().await.expect("json");
    assert_eq!(updated["priority"], "urgent");
    // The old ETag is stale now.
    assert_problem(
        ctx.call(
            Method::PATCH,
            &path,
            &ctx.manager,
            Some(json!({"assignee_id": null})),
            &[("if-match", &etag)],
        )
        .await,
        412,
    )
    .await;
    let response = ctx
        .call(
            Method::PATCH,
            &path,
            &ctx.manager,
            Some(json!({"assignee_id": null})),
            &[("if-match", &new_etag)],
        )
        .await;
    assert_eq!(response.status(), 200);
    assert!(response.json::<Value>().await.expect("json")["assignee_id"].is_null());
    assert_problem(
        ctx.call(
            Method::PATCH,
            &path,
            &ctx.associates[0].1,
            Some(json!({"priority": "low"})),
            &[("if-match", "*")],
        )
        .await,
        403,
    )
    .await;
}

#[tokio::test]
async fn the_lifecycle_follows_the_transition_table() {
    let ctx = setup().await;
    let template = ctx.checklist_template(false).await;
    let task = ctx
        .create_task(json!({"template_id": template["id"]}))
        .await;
    let associate = &ctx.associates[0].1;

    assert_problem(
        ctx.transition(&task, "approve", &ctx.manager, None).await,
        409,
    )
    .await;
    let started = ctx.transition(&task, "start", associate, None).await;
    assert_eq!(started.status(), 200);
    assert_problem(ctx.transition(&task, "start", associate, None).await, 409).await;

    // Each missing or mistyped required item is named.
    let bad = ctx
        .transition(
            &task,
            "complete",
            associate,
            Some(json!({"answers": {"lights": "yes", "bogus": 1}})),
        )
        .await;
    let problem = assert_problem(bad, 422).await;
    let mut fields: Vec<String> = problem["errors"]
        .as_array()
        .expect("errors")
        .iter()
        .map(|e| e["field"].as_str().expect("field").to_owned())
        .collect();
    fields.sort();
    assert_eq!(
        fields,
        vec![
            "answers.bogus",
            "answers.entrance",
            "answers.fridge_temp",
            "answers.lights"
        ]
    );
    let bad_evidence = json!({"answers": {"lights": true, "fridge_temp": 4, "entrance": {"url": "http://insecure.example.com/x.jpg"}}});
    let problem = assert_problem(
        ctx.transition(&task, "complete", associate, Some(bad_evidence))
            .await,
        422,
    )
    .await;
    assert_eq!(problem["errors"][0]["field"], "answers.entrance");

    let answers = ctx.good_answers(&task, associate).await;
    let done = ctx
        .transition(&task, "complete", associate, Some(answers.clone()))
        .await;
    assert_eq!(done.status(), 200);
    let done: Value = done.json().await.expect("json");
    assert_eq!(done["status"], "done");
    assert_eq!(done["answers"]["fridge_temp"], 3.5);
    assert!(done["completed_at"].is_string());
    assert_problem(
        ctx.transition(&done, "complete", associate, Some(answers))
            .await,
        409,
    )
    .await;
    assert_problem(
        ctx.transition(&done, "cancel", &ctx.manager, None).await,
        409,
    )
    .await;

    // The audit trail, and a comment in it.
    let task_path = format!("/api/v1/tasks/{}", task["id"].as_str().expect("id"));
    ctx.ok(
        Method::POST,
        &format!("{task_path}/comments"),
        &ctx.manager,
        Some(json!({"body": "Well done"})),
        201,
    )
    .await;
    let (history, _) = ctx
        .ok(
            Method::GET,
            &format!("{task_path}/history"),
            associate,
            None,
            200,
        )
        .await;
    let kinds: Vec<&str> = history["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|e| e["kind"].as_str().expect("kind"))
        .collect();
    assert_eq!(kinds, vec!["created", "started", "completed", "commented"]);

    // Every change went to the outbox.
    // Outbox ids are v7, in the order the events were written.
    let keys: Vec<String> = sqlx::query_scalar("SELECT routing_key FROM outbox ORDER BY id")
        .fetch_all(&ctx.app.db)
        .await
        .expect("outbox");
    assert_eq!(
        keys,
        vec![
            "task.created",
            "task.started",
            "evidence.attached",
            "task.completed"
        ]
    );
}

#[tokio::test]
async fn review_sends_work_to_the_manager() {
    let ctx = setup().await;
    let template = ctx.checklist_template(true).await;
    let task = ctx
        .create_task(json!({"template_id": template["id"], "assignee_id": ctx.associates[0].0}))
        .await;
    assert!(task["review_required"].as_bool().expect("bool"));

    // Assigned to associate 0: associate 1 may not work on it. That is the task's state
    // (it may be reassigned), so a conflict carrying the task as it is.
    let conflict = assert_problem(
        ctx.transition(&task, "start", &ctx.associates[1].1, None)
            .await,
        409,
    )
    .await;
    assert_eq!(conflict["current"]["id"], task["id"]);
    assert_eq!(
        conflict["current"]["assignee_id"],
        ctx.associates[0].0.to_string()
    );
    let submitted: Value = ctx
        .transition(
            &task,
            "complete",
            &ctx.associates[0].1,
            Some(ctx.good_answers(&task, &ctx.associates[0].1).await),
        )
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(submitted["status"], "submitted");
    assert_problem(
        ctx.transition(&task, "approve", &ctx.associates[0].1, None)
            .await,
        403,
    )
    .await;
    let redo: Value = ctx
        .transition(
            &task,
            "redo",
            &ctx.manager,
            Some(json!({"reason": "Photo is blurry"})),
        )
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(redo["status"], "in_progress");
    let again: Value = ctx
        .transition(
            &task,
            "complete",
            &ctx.associates[0].1,
            Some(ctx.good_answers(&task, &ctx.associates[0].1).await),
        )
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(again["status"], "submitted");
    let approved: Value = ctx
        .transition(&task, "approve", &ctx.manager, None)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(approved["status"], "done");

    let keys: Vec<String> = sqlx::query_scalar("SELECT routing_key FROM outbox ORDER BY id")
        .fetch_all(&ctx.app.db)
        .await
        .expect("outbox");
    assert_eq!(
        keys,
        vec![
            "task.created",
            "evidence.attached",
            "task.submitted",
            "task.reopened",
            "evidence.attached",
            "task.submitted",
            "task.completed"
        ]
    );

    let cancelled_task = ctx.create_task(json!({"title": "Never mind"})).await;
    assert_problem(
        ctx.transition(&cancelled_task, "cancel", &ctx.associates[0].1, None)
            .await,
        403,
    )
    .await;
    let cancelled: Value = ctx
        .transition(
            &cancelled_task,
            "cancel",
            &ctx.manager,
            Some(json!({"reason": "duplicate"})),
        )
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(cancelled["status"], "cancelled");
}

#[tokio::test]
async fn scope_hides_other_stores_tasks_and_bad_bodies_are_precise() {
    let ctx = setup().await;
    let task = ctx.create_task(json!({"title": "Private"})).await;
    let path = format!("/api/v1/tasks/{}", task["id"].as_str().expect("id"));
    let other_manager = token(Role::StoreManager, Some(ctx.other_store), None);
    for who in [
        &other_manager,
        &token(Role::Associate, Some(ctx.other_store), None),
    ] {
        assert_problem(ctx.call(Method::GET, &path, who, None, &[]).await, 404).await;
        assert_problem(
            ctx.call(Method::POST, &format!("{path}/cancel"), who, None, &[])
                .await,
            404,
        )
        .await;
    }
    ctx.ok(Method::GET, &path, &token(Role::Hq, None, None), None, 200)
        .await;

    let response = ctx
        .app
        .client
        .post(ctx.app.url(&format!("{path}/complete")))
        .bearer_auth(&ctx.manager)
        .header("content-type", "text/plain")
        .body("done!")
        .send()
        .await
        .expect("send");
    assert_problem(response, 415).await;
    let response = ctx
        .app
        .client
        .post(ctx.app.url(&format!("{path}/complete")))
        .bearer_auth(&ctx.manager)
        .header("content-type", "application/json")
        .body("{oops")
        .send()
        .await
        .expect("send");
    assert_problem(response, 400).await;
    let problem = assert_problem(
        ctx.transition(
            &task,
            "complete",
            &ctx.manager,
            Some(json!({"answers": {"x": 1}})),
        )
        .await,
        422,
    )
    .await;
    assert_eq!(problem["errors"][0]["field"], "answers.x");
    let problem = assert_problem(
        ctx.transition(&task, "cancel", &ctx.manager, Some(json!({"reason": 5})))
            .await,
        422,
    )
    .await;
    assert_eq!(problem["errors"][0]["field"], "reason");
    assert_problem(
        ctx.call(
            Method::GET,
            "/api/v1/tasks/not-a-uuid",
            &ctx.manager,
            None,
            &[],
        )
        .await,
        400,
    )
    .await;
}

#[tokio::test]
async fn two_clients_completing_at_once_one_wins() {
    let ctx = setup().await;
    for round in 0..5 {
        let task = ctx
            .create_task(json!({"title": format!("Race {round}")}))
            .await;
        let (a, b) = tokio::join!(
            ctx.transition(&task, "complete", &ctx.associates[0].1, None),
            ctx.transition(&task, "complete", &ctx.associates[1].1, None),
        );
        let mut statuses = [a.status(), b.status()];
        statuses.sort();
        assert_eq!(statuses[0], StatusCode::OK, "round {round}");
        assert!(
            matches!(statuses[1].as_u16(), 409 | 412),
            "round {round}: {statuses:?}"
        );
        let completions: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM task_events WHERE task_id = $1 AND kind = 'completed'",
        )
        .bind(Uuid::parse_str(task["id"].as_str().expect("id")).expect("uuid"))
        .fetch_one(&ctx.app.db)
        .await
        .expect("count");
        assert_eq!(completions, 1, "round {round}");
    }
}
