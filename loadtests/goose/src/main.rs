//! A realistic load of a 1,000-store chain on storeops (PRODUCT §14), with goose.
//!
//! Every user is one person with a real token of their role, signed with the
//! cluster's AUTH_JWT_SECRET. Weighted as a chain's day is (loadtests/README.md): mostly
//! store phones polling their store's work the way the app does — the task list with
//! If-None-Match (304 while nothing changed) and the changes feed from the last token —
//! with opening, starting and completing tasks (with Idempotency-Key, as the app does)
//! a small share; store managers create, approve and send back work; regional managers
//! and HQ read reports and the CSV export; integrations post deliveries and stock
//! alerts. Chain-wide events keep a real chain's pace whatever the number of users:
//! one campaign to every store and one regional price batch (LOAD_CAMPAIGN_EVERY,
//! LOAD_PRICE_BATCH_EVERY seconds; the first of each early in the run). Every response
//! is checked (status, content type, body shape), not just that something answered.
//!
//! `STOREOPS_URL=http://127.0.0.1:8088 AUTH_JWT_SECRET=… storeops-load --users 1000
//! --increase-rate 100 --run-time 2m --report-file report.html` (goose's own options).

use std::{
    sync::{Mutex, OnceLock},
    time::{Duration, Instant},
};

use goose::prelude::*;
use rand::{Rng, seq::IndexedRandom};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Stores, their staff and regions, read once through the API before the attack.
struct Chain {
    stores: Vec<Store>,
    regions: Vec<String>,
    secret: String,
}

#[derive(Clone, Deserialize)]
struct Store {
    id: String,
    code: String,
    #[serde(skip)]
    staff: Vec<String>,
}

#[derive(Deserialize)]
struct Page<T> {
    items: Vec<T>,
    next_cursor: Option<String>,
}

static CHAIN: OnceLock<Chain> = OnceLock::new();

fn chain() -> &'static Chain {
    CHAIN.get().expect("the chain is loaded before the attack")
}

#[derive(Serialize)]
struct Claims<'a> {
    sub: &'a str,
    role: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    store_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    region: Option<&'a str>,
    exp: i64,
}

fn token(secret: &str, claims: &Claims<'_>) -> String {
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        claims,
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("HS256 signing cannot fail")
}

fn claims<'a>(sub: &'a str, role: &'a str) -> Claims<'a> {
    Claims {
        sub,
        role,
        store_id: None,
        region: None,
        exp: chrono::Utc::now().timestamp() + 6 * 3600,
    }
}

/// Who this goose user is, for the whole run.
#[derive(Clone)]
struct Person {
    token: String,
    store: Option<Store>,
    /// Open tasks seen in the last list or sync, to open, start and complete.
    seen: Vec<Value>,
    /// The ETag of the last list read: sent as If-None-Match.
    etag: Option<String>,
    /// The changes feed's `next_token` (none: the next sync is a first sync).
    sync_token: Option<String>,
    /// The ETag of the last announcements read, and those still to acknowledge.
    announcements_etag: Option<String>,
    to_acknowledge: Vec<String>,
}

impl Person {
    fn new(token: String, store: Option<Store>) -> Self {
        Self {
            token,
            store,
            seen: Vec::new(),
            etag: None,
            sync_token: None,
            announcements_etag: None,
            to_acknowledge: Vec::new(),
        }
    }
}

/// A chain-wide event at a real chain's pace, whatever the number of users: due once
/// `first` after the first ask, then every `every`.
struct Pace {
    next: Mutex<Option<Instant>>,
    first: Duration,
    every: Duration,
}

impl Pace {
    fn from_env(var: &str, first: Duration, every_default: Duration) -> Self {
        let every = std::env::var(var)
            .ok()
            .and_then(|v| v.parse().ok())
            .map_or(every_default, Duration::from_secs);
        Self {
            next: Mutex::new(None),
            first,
            every,
        }
    }

    /// Whether the event is due now (and then it is the caller's).
    fn take(&self) -> bool {
        let now = Instant::now();
        let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
        let due = *next.get_or_insert(now + self.first);
        if now < due {
            return false;
        }
        *next = Some(now + self.every);
        true
    }
}

static CAMPAIGNS: OnceLock<Pace> = OnceLock::new();
static PRICE_BATCHES: OnceLock<Pace> = OnceLock::new();
static ANNOUNCEMENTS: OnceLock<Pace> = OnceLock::new();

async fn load_chain(base: &str, secret: &str) -> Result<Chain, String> {
    let client = reqwest::Client::new();
    let hq = token(secret, &claims("load-hq", "hq"));
    let get = |path: String| {
        let client = client.clone();
        let hq = hq.clone();
        let url = format!("{base}{path}");
        async move {
            let response = client
                .get(&url)
                .bearer_auth(hq)
                .send()
                .await
                .map_err(|e| format!("{url}: {e}"))?;
            if !response.status().is_success() {
                return Err(format!("{url}: {}", response.status()));
            }
            response
                .json::<Value>()
                .await
                .map_err(|e| format!("{url}: {e}"))
        }
    };
    let mut stores: Vec<Store> = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = get(format!(
            "/api/v1/stores?limit=200{}",
            cursor
                .as_deref()
                .map(|c| format!("&cursor={c}"))
                .unwrap_or_default()
        ))
        .await?;
        let page: Page<Store> = serde_json::from_value(page).map_err(|e| e.to_string())?;
        stores.extend(page.items);
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    for store in &mut stores {
        let staff = get(format!("/api/v1/stores/{}/staff?limit=200", store.id)).await?;
        store.staff = staff["items"]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter(|s| s["role"] == "associate" && s["active"] == true)
                    .filter_map(|s| s["id"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
    }
    let regions = get("/api/v1/regions".to_owned()).await?;
    let regions = regions["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|r| r["code"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    if stores.is_empty() {
        return Err("the chain has no stores: seed it first".to_owned());
    }
    Ok(Chain {
        stores,
        regions,
        secret: secret.to_owned(),
    })
}

fn person(user: &GooseUser) -> &Person {
    user.get_session_data_unchecked::<Person>()
}

fn random_store() -> Store {
    chain()
        .stores
        .choose(&mut rand::rng())
        .expect("stores")
        .clone()
}

/// What a good answer's body holds; `Err` says what is missing.
type Check = fn(&Value) -> Result<(), &'static str>;

/// One request of a user, and what its answer must be.
struct Call<'a> {
    method: GooseMethod,
    path: String,
    name: &'static str,
    body: Option<Value>,
    headers: Vec<(&'static str, String)>,
    /// Statuses that are right; the 2xx among them must pass `check`.
    expected: &'a [u16],
    check: Check,
}

impl<'a> Call<'a> {
    fn new(method: GooseMethod, path: String, name: &'static str, expected: &'a [u16]) -> Self {
        Self {
            method,
            path,
            name,
            body: None,
            headers: Vec::new(),
            expected,
            check: |_| Ok(()),
        }
    }

    fn get(path: String, name: &'static str, check: Check) -> Self {
        Self::new(GooseMethod::Get, path, name, &[200]).checking(check)
    }

    fn checking(mut self, check: Check) -> Self {
        self.check = check;
        self
    }

    fn json(mut self, body: Value) -> Self {
        self.body = Some(body);
        self
    }

    fn header(mut self, name: &'static str, value: String) -> Self {
        self.headers.push((name, value));
        self
    }

    /// As the app sends a write: with a fresh Idempotency-Key.
    fn idempotent(self) -> Self {
        self.header("idempotency-key", uuid::Uuid::new_v4().to_string())
    }
}

/// What came back: the status, the ETag, and the body (`Null` without one, or after a
/// failure, which is recorded with what came back).
struct Answer {
    status: u16,
    etag: Option<String>,
    body: Value,
}

/// Sends `call` and checks its answer: the status, that a JSON body parses, and the
/// check on a 2xx body. A 304, 409 or 410 it expects is a fair answer without a body,
/// not a failure: nothing changed; a colleague in the same store started or finished
/// the task a moment before; a sync token too old.
async fn send(user: &mut GooseUser, call: Call<'_>) -> Result<Answer, Box<TransactionError>> {
    let mut builder = user
        .get_request_builder(&call.method, &call.path)?
        .bearer_auth(person(user).token.clone());
    if let Some(body) = call.body {
        builder = builder.json(&body);
    }
    for (name, value) in call.headers {
        builder = builder.header(name, value);
    }
    // Goose records the first expected status as a success by itself; another one that
    // is right is corrected below (and not listed in goose's error table).
    let request = GooseRequest::builder()
        .set_request_builder(builder)
        .name(call.name)
        .expect_status_code(call.expected[0])
        .build();
    let mut goose = user.request(request).await?;
    let failed = |status| Answer {
        status,
        etag: None,
        body: Value::Null,
    };
    let response = match goose.response {
        Ok(response) => response,
        Err(error) => {
            let detail = error.to_string();
            user.set_failure(call.name, &mut goose.request, None, Some(&detail))?;
            return Ok(failed(0));
        }
    };
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let etag = headers
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let text = response.text().await.unwrap_or_default();
    if !call.expected.contains(&status) {
        user.set_failure(
            &format!("{}: {status} (expected {:?})", call.name, call.expected),
            &mut goose.request,
            Some(&headers),
            Some(&text),
        )?;
        return Ok(failed(status));
    }
    if !goose.request.success {
        goose.request.error.clear();
        user.set_success(&mut goose.request)?;
    }
    if matches!(status, 304 | 409 | 410) {
        return Ok(Answer {
            status,
            etag,
            body: Value::Null,
        });
    }
    let is_json = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.contains("json"));
    let body = if is_json {
        match serde_json::from_str::<Value>(&text) {
            Ok(value) => value,
            Err(e) => {
                user.set_failure(
                    &format!("{}: body is not JSON ({e})", call.name),
                    &mut goose.request,
                    Some(&headers),
                    Some(&text),
                )?;
                return Ok(failed(status));
            }
        }
    } else {
        Value::String(text)
    };
    if let Err(missing) = (call.check)(&body) {
        user.set_failure(
            &format!("{}: {missing}", call.name),
            &mut goose.request,
            Some(&headers),
            None,
        )?;
        return Ok(failed(status));
    }
    Ok(Answer { status, etag, body })
}

// ------------------------------------------------------------------ store phones

async fn associate_start(user: &mut GooseUser) -> TransactionResult {
    let store = random_store();
    let sub = store
        .staff
        .choose(&mut rand::rng())
        .cloned()
        .unwrap_or_else(|| "load-associate".to_owned());
    let mut claims = claims(&sub, "associate");
    claims.store_id = Some(&store.id);
    let token = token(&chain().secret, &claims);
    user.set_session_data(Person::new(token, Some(store)));
    // The app's first sync when it starts: the store's unfinished work, then a token.
    sync_changes(user).await
}

fn store_of(user: &GooseUser) -> Store {
    person(user).store.clone().expect("a store")
}

fn items(page: &Value) -> Result<(), &'static str> {
    match page["items"].as_array() {
        Some(items) if items.iter().all(|t| t["id"].is_string()) => Ok(()),
        _ => Err("no items, or an item without an id"),
    }
}

/// The store's open list, as the app polls it: with the last ETag, so that an unchanged
/// list is a 304 without a body.
async fn poll_store_tasks(user: &mut GooseUser) -> TransactionResult {
    let store = store_of(user);
    let path = format!(
        "/api/v1/stores/{}/tasks?status=open,in_progress&limit=50",
        store.id
    );
    let call = match person(user).etag.clone() {
        Some(etag) => Call::new(GooseMethod::Get, path, "poll store tasks", &[304, 200])
            .header("if-none-match", etag),
        None => Call::new(GooseMethod::Get, path, "poll store tasks", &[200]),
    }
    .checking(items);
    let answer = send(user, call).await?;
    if answer.status != 200 {
        return Ok(());
    }
    let items = answer.body["items"].as_array().cloned().unwrap_or_default();
    if items.iter().any(|t| t["store_id"] != store.id.as_str()) {
        return Err(Box::new(TransactionError::Custom(
            "list: an item of another store".to_owned(),
        )));
    }
    let person = user.get_session_data_unchecked_mut::<Person>();
    person.seen = items;
    person.etag = answer.etag;
    Ok(())
}

/// The changes feed from the last token (a first sync without one), every page that is
/// ready: changed tasks replace what the phone holds, removed ones leave it.
async fn sync_changes(user: &mut GooseUser) -> TransactionResult {
    let store = store_of(user);
    // Bounded: a phone far behind catches up over several syncs.
    for _ in 0..5 {
        let since = person(user)
            .sync_token
            .as_deref()
            .map(|t| format!("&since={t}"))
            .unwrap_or_default();
        let answer = send(
            user,
            Call::new(
                GooseMethod::Get,
                format!("/api/v1/stores/{}/changes?limit=100{since}", store.id),
                if since.is_empty() {
                    "first sync"
                } else {
                    "sync changes"
                },
                &[200, 410],
            )
            .checking(|page| {
                if page["changes"].is_array()
                    && page["removed"].is_array()
                    && page["next_token"].is_string()
                {
                    Ok(())
                } else {
                    Err("no changes, removed or next_token")
                }
            }),
        )
        .await?;
        let person = user.get_session_data_unchecked_mut::<Person>();
        if answer.status == 410 {
            // Too long offline: the next sync starts over.
            person.sync_token = None;
            return Ok(());
        }
        if answer.status != 200 {
            return Ok(());
        }
        let page = answer.body;
        let gone: Vec<&str> = page["removed"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|r| r["task_id"].as_str())
            .collect();
        let changed = page["changes"].as_array().cloned().unwrap_or_default();
        person.seen.retain(|t| {
            let id = t["id"].as_str().unwrap_or_default();
            !gone.contains(&id) && !changed.iter().any(|c| c["id"] == id)
        });
        person.seen.extend(
            changed
                .into_iter()
                .filter(|t| matches!(t["status"].as_str(), Some("open" | "in_progress"))),
        );
        person.sync_token = page["next_token"].as_str().map(str::to_owned);
        if page["more"] != true {
            return Ok(());
        }
    }
    Ok(())
}

fn pick_seen(user: &GooseUser, adhoc_only: bool) -> Option<Value> {
    let seen: Vec<&Value> = person(user)
        .seen
        .iter()
        .filter(|t| !adhoc_only || t["template_id"].is_null())
        .collect();
    seen.choose(&mut rand::rng()).map(|t| (*t).clone())
}

async fn open_task(user: &mut GooseUser) -> TransactionResult {
    let Some(task) = pick_seen(user, false) else {
        return Ok(());
    };
    let id = task["id"].as_str().unwrap_or_default().to_owned();
    let detail = send(
        user,
        Call::get(format!("/api/v1/tasks/{id}"), "open task", |task| {
            if task["version"].is_i64() && task["status"].is_string() {
                Ok(())
            } else {
                Err("no version or status")
            }
        }),
    )
    .await?
    .body;
    if !detail.is_null() && detail["id"] != id.as_str() {
        return Err(Box::new(TransactionError::Custom(
            "open task: answered another task".to_owned(),
        )));
    }
    Ok(())
}

async fn work_on_task(user: &mut GooseUser) -> TransactionResult {
    // Checklists need their template's answers; the app completes those screen by
    // screen, so the load completes the tasks without one.
    let Some(task) = pick_seen(user, true) else {
        return Ok(());
    };
    let id = task["id"].as_str().unwrap_or_default().to_owned();
    user.get_session_data_unchecked_mut::<Person>()
        .seen
        .retain(|t| t["id"] != id.as_str());
    if task["status"] == "open" {
        let started = send(
            user,
            Call::new(
                GooseMethod::Post,
                format!("/api/v1/tasks/{id}/start"),
                "start task",
                &[200, 409],
            )
            .idempotent()
            .checking(|task| match task["status"].as_str() {
                Some("in_progress") => Ok(()),
                _ => Err("not in progress"),
            }),
        )
        .await?;
        if started.status != 200 {
            return Ok(()); // a colleague has it
        }
    }
    send(
        user,
        Call::new(
            GooseMethod::Post,
            format!("/api/v1/tasks/{id}/complete"),
            "complete task",
            &[200, 409],
        )
        .idempotent()
        .json(json!({"note": "done", "evidence": [
            {"url": "https://cdn.example.com/evidence/shelf.jpg", "content_type": "image/jpeg"}
        ]}))
        .checking(|task| match task["status"].as_str() {
            Some("done" | "submitted") => Ok(()),
            _ => Err("neither done nor submitted"),
        }),
    )
    .await
    .map(drop)
}

// ------------------------------------------------------------------ store managers

async fn manager_start(user: &mut GooseUser) -> TransactionResult {
    let store = random_store();
    let mut claims = claims("load-manager", "store_manager");
    claims.store_id = Some(&store.id);
    let token = token(&chain().secret, &claims);
    user.set_session_data(Person::new(token, Some(store)));
    Ok(())
}

async fn create_task(user: &mut GooseUser) -> TransactionResult {
    let store = store_of(user);
    let due = chrono::Utc::now() + chrono::Duration::hours(rand::rng().random_range(1..48));
    send(
        user,
        Call::new(
            GooseMethod::Post,
            format!("/api/v1/stores/{}/tasks", store.id),
            "create task",
            &[201],
        )
        .idempotent()
        .json(json!({
            "title": "Face up the chilled aisle",
            "description": "Bring every product to the front edge.",
            "priority": "normal",
            "due_at": due.to_rfc3339(),
        }))
        .checking(|task| match task["status"].as_str() {
            Some("open") => Ok(()),
            _ => Err("not open"),
        }),
    )
    .await
    .map(drop)
}

async fn review_work(user: &mut GooseUser) -> TransactionResult {
    let store = store_of(user);
    let page = send(
        user,
        Call::get(
            format!(
                "/api/v1/stores/{}/tasks?status=submitted&limit=20",
                store.id
            ),
            "list submitted",
            items,
        ),
    )
    .await?
    .body;
    let Some(task) = page["items"]
        .as_array()
        .and_then(|items| items.choose(&mut rand::rng()).cloned())
    else {
        return Ok(());
    };
    let id = task["id"].as_str().unwrap_or_default();
    // Most work is approved; some is sent back.
    let (action, name, body) = if rand::rng().random_bool(0.85) {
        ("approve", "approve task", None)
    } else {
        (
            "redo",
            "redo task",
            Some(json!({"reason": "photo is blurred"})),
        )
    };
    let mut call = Call::new(
        GooseMethod::Post,
        format!("/api/v1/tasks/{id}/{action}"),
        name,
        &[200, 409],
    )
    .idempotent()
    .checking(|task| match task["status"].as_str() {
        Some("done" | "in_progress") => Ok(()),
        _ => Err("neither done nor back in progress"),
    });
    if let Some(body) = body {
        call = call.json(body);
    }
    send(user, call).await.map(drop)
}

// ------------------------------------------------------------------ regional, HQ

fn random_region() -> String {
    chain()
        .regions
        .choose(&mut rand::rng())
        .cloned()
        .unwrap_or_default()
}

async fn regional_start(user: &mut GooseUser) -> TransactionResult {
    let region = random_region();
    let mut claims = claims("load-regional", "regional_manager");
    claims.region = Some(&region);
    let token = token(&chain().secret, &claims);
    user.set_session_data(Person::new(token, None));
    Ok(())
}

async fn compliance_report(user: &mut GooseUser) -> TransactionResult {
    let to = chrono::Utc::now().date_naive();
    let from = to - chrono::Duration::days(6);
    send(
        user,
        Call::get(
            format!("/api/v1/reports/compliance?group_by=store&from={from}&to={to}"),
            "compliance report",
            |report| {
                if report["groups"].is_array() && report["totals"].is_object() {
                    Ok(())
                } else {
                    Err("no groups or totals")
                }
            },
        ),
    )
    .await
    .map(drop)
}

async fn overdue_report(user: &mut GooseUser) -> TransactionResult {
    send(
        user,
        Call::get(
            "/api/v1/reports/overdue?limit=20".to_owned(),
            "overdue report",
            |report| {
                if report["items"].is_array() {
                    Ok(())
                } else {
                    Err("no items")
                }
            },
        ),
    )
    .await
    .map(drop)
}

async fn hq_start(user: &mut GooseUser) -> TransactionResult {
    let token = token(&chain().secret, &claims("load-hq", "hq"));
    user.set_session_data(Person::new(token, None));
    Ok(())
}

async fn csv_export(user: &mut GooseUser) -> TransactionResult {
    let region = random_region();
    let to = chrono::Utc::now().date_naive();
    send(
        user,
        Call::get(
            format!("/api/v1/reports/tasks.csv?from={to}&to={to}&region={region}"),
            "tasks.csv export",
            |csv| match csv.as_str() {
                Some(text) if text.lines().next().is_some_and(|h| h.contains(',')) => Ok(()),
                _ => Err("no CSV header row"),
            },
        ),
    )
    .await
    .map(drop)
}

/// A campaign to every store, at a chain's pace (LOAD_CAMPAIGN_EVERY); between two,
/// HQ reads the compliance report instead.
async fn campaign(user: &mut GooseUser) -> TransactionResult {
    if !CAMPAIGNS.get().is_some_and(Pace::take) {
        return compliance_report(user).await;
    }
    let due = chrono::Utc::now() + chrono::Duration::hours(24);
    send(
        user,
        Call::new(
            GooseMethod::Post,
            "/api/v1/campaigns".to_owned(),
            "create campaign (every store)",
            &[202],
        )
        .json(json!({
            "title": "Check the promotion shelf labels",
            "target": {"all": true},
            "due_at": due.to_rfc3339(),
        }))
        .checking(accepted),
    )
    .await
    .map(drop)
}

/// A chain-wide notice that every store must acknowledge, at a chain's pace (a few a
/// day); otherwise the compliance report.
async fn announcement(user: &mut GooseUser) -> TransactionResult {
    if !ANNOUNCEMENTS.get().is_some_and(Pace::take) {
        return compliance_report(user).await;
    }
    send(
        user,
        Call::new(
            GooseMethod::Post,
            "/api/v1/announcements".to_owned(),
            "announce (every store)",
            &[201],
        )
        .json(json!({
            "title": "Recall: batch 4711 of the house yoghurt",
            "body": "Take every pot of batch 4711 off the shelves and count them.",
            "priority": "high",
            "target": {"all": true},
            "requires_ack": true,
        }))
        .checking(|body| {
            if body["id"].is_string() {
                Ok(())
            } else {
                Err("announcement: no id")
            }
        }),
    )
    .await
    .map(drop)
}

/// The phone's announcements, conditionally (mostly 304); keeps those it must acknowledge.
async fn poll_announcements(user: &mut GooseUser) -> TransactionResult {
    let path = "/api/v1/me/announcements?limit=20".to_owned();
    let call = match person(user).announcements_etag.clone() {
        Some(etag) => Call::new(GooseMethod::Get, path, "poll announcements", &[304, 200])
            .header("if-none-match", etag),
        None => Call::new(GooseMethod::Get, path, "poll announcements", &[200]),
    }
    .checking(items);
    let answer = send(user, call).await?;
    if answer.status != 200 {
        return Ok(());
    }
    let to_acknowledge = answer.body["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["requires_ack"] == true && a["acknowledged_at"].is_null())
        .filter_map(|a| a["id"].as_str().map(str::to_owned))
        .collect();
    let person = user.get_session_data_unchecked_mut::<Person>();
    person.announcements_etag = answer.etag;
    person.to_acknowledge = to_acknowledge;
    Ok(())
}

/// Acknowledges one announcement the phone holds (else polls them).
async fn acknowledge(user: &mut GooseUser) -> TransactionResult {
    let Some(id) = user
        .get_session_data_unchecked_mut::<Person>()
        .to_acknowledge
        .pop()
    else {
        return poll_announcements(user).await;
    };
    send(
        user,
        Call::new(
            GooseMethod::Post,
            format!("/api/v1/announcements/{id}/acknowledge"),
            "acknowledge announcement",
            &[200],
        )
        .json(json!({}))
        .idempotent()
        .checking(|body| {
            if body["acknowledged_at"].is_string() {
                Ok(())
            } else {
                Err("acknowledge: no acknowledged_at")
            }
        }),
    )
    .await
    .map(drop)
}

/// A 202 says where to follow the work.
fn accepted(body: &Value) -> Result<(), &'static str> {
    if body["status_url"].is_string() && body["id"].is_string() {
        Ok(())
    } else {
        Err("no id or status URL")
    }
}

// ------------------------------------------------------------------ integrations

async fn integration_start(user: &mut GooseUser) -> TransactionResult {
    let token = token(&chain().secret, &claims("load-erp", "integration"));
    user.set_session_data(Person::new(token, None));
    Ok(())
}

/// A regional price change of 500 SKUs, at a chain's pace (LOAD_PRICE_BATCH_EVERY),
/// then its status; between two, a stock alert.
async fn price_batch(user: &mut GooseUser) -> TransactionResult {
    if !PRICE_BATCHES.get().is_some_and(Pace::take) {
        return stock_alert(user).await;
    }
    let region = random_region();
    let items: Vec<Value> = (0..500)
        .map(|i| {
            json!({"sku": format!("SKU-{:05}", i * 37 % 20_000),
                   "name": "Oat milk 1 l", "new_price": 1.29, "currency": "EUR",
                   "regions": [region]})
        })
        .collect();
    let effective = chrono::Utc::now() + chrono::Duration::hours(2);
    let posted = send(
        user,
        Call::new(
            GooseMethod::Post,
            "/api/v1/integrations/price-changes".to_owned(),
            "post price batch (a region, 500 SKUs)",
            &[202],
        )
        .json(json!({"batch_id": uuid::Uuid::new_v4().to_string(),
                     "effective_at": effective.to_rfc3339(), "items": items}))
        .checking(accepted),
    )
    .await?
    .body;
    if let Some(status_url) = posted["status_url"].as_str() {
        send(
            user,
            Call::get(status_url.to_owned(), "ingest status", |status| {
                if status["status"].is_string() {
                    Ok(())
                } else {
                    Err("no status")
                }
            }),
        )
        .await?;
    }
    Ok(())
}

async fn delivery(user: &mut GooseUser) -> TransactionResult {
    let store = random_store();
    let expected = chrono::Utc::now() + chrono::Duration::hours(6);
    send(
        user,
        Call::new(
            GooseMethod::Post,
            "/api/v1/integrations/deliveries".to_owned(),
            "post delivery",
            &[202],
        )
        .json(json!({
            "delivery_id": uuid::Uuid::new_v4().to_string(),
            "store_code": store.code,
            "supplier": "Dairy North",
            "expected_at": expected.to_rfc3339(),
            "lines": [{"sku": "SKU-00001", "qty": 24}, {"sku": "SKU-00002", "qty": 12}],
        }))
        .checking(accepted),
    )
    .await
    .map(drop)
}

async fn stock_alert(user: &mut GooseUser) -> TransactionResult {
    let store = random_store();
    send(
        user,
        Call::new(
            GooseMethod::Post,
            "/api/v1/integrations/stock-alerts".to_owned(),
            "post stock alert",
            &[202],
        )
        .json(json!({
            "alert_id": uuid::Uuid::new_v4().to_string(),
            "store_code": store.code,
            "sku": format!("SKU-{:05}", rand::rng().random_range(0..500)),
            "on_hand": rand::rng().random_range(0..3),
        }))
        .checking(accepted),
    )
    .await
    .map(drop)
}

// ------------------------------------------------------------------ the mix

/// An index of `weights`, drawn in proportion to them. Each scenario is one transaction
/// that draws what its person does next: goose's own transaction weights run in rounds,
/// so a run shorter than a round would not keep the proportions.
fn draw(weights: &[u32]) -> usize {
    let mut left = rand::rng().random_range(0..weights.iter().sum::<u32>());
    for (i, weight) in weights.iter().enumerate() {
        if left < *weight {
            return i;
        }
        left -= weight;
    }
    weights.len() - 1
}

async fn store_phone(user: &mut GooseUser) -> TransactionResult {
    match draw(&[120, 30, 15, 4, 1, 1]) {
        0 => poll_store_tasks(user).await,
        1 => sync_changes(user).await,
        2 => poll_announcements(user).await,
        3 => open_task(user).await,
        4 => acknowledge(user).await,
        _ => work_on_task(user).await,
    }
}

async fn store_manager(user: &mut GooseUser) -> TransactionResult {
    match draw(&[20, 1, 2, 1]) {
        0 => poll_store_tasks(user).await,
        1 => create_task(user).await,
        2 => review_work(user).await,
        _ => overdue_report(user).await,
    }
}

async fn regional_manager(user: &mut GooseUser) -> TransactionResult {
    match draw(&[1, 1]) {
        0 => compliance_report(user).await,
        _ => overdue_report(user).await,
    }
}

async fn hq(user: &mut GooseUser) -> TransactionResult {
    match draw(&[10, 2, 1, 1]) {
        0 => compliance_report(user).await,
        1 => csv_export(user).await,
        2 => campaign(user).await,
        _ => announcement(user).await,
    }
}

async fn integration(user: &mut GooseUser) -> TransactionResult {
    match draw(&[1, 2, 1]) {
        0 => delivery(user).await,
        1 => stock_alert(user).await,
        _ => price_batch(user).await,
    }
}

#[tokio::main]
async fn main() -> Result<(), GooseError> {
    let base = std::env::var("STOREOPS_URL").unwrap_or_else(|_| "http://127.0.0.1:8088".into());
    let secret = std::env::var("AUTH_JWT_SECRET").map_err(|_| GooseError::InvalidOption {
        option: "AUTH_JWT_SECRET".to_owned(),
        value: String::new(),
        detail: "set it to the secret the api verifies tokens with".to_owned(),
    })?;
    let loaded = load_chain(&base, &secret)
        .await
        .map_err(|detail| GooseError::InvalidOption {
            option: "STOREOPS_URL".to_owned(),
            value: base.clone(),
            detail,
        })?;
    eprintln!(
        "storeops-load: {} stores, {} regions at {base}",
        loaded.stores.len(),
        loaded.regions.len()
    );
    let _ = CHAIN.set(loaded);
    let _ = CAMPAIGNS.set(Pace::from_env(
        "LOAD_CAMPAIGN_EVERY",
        Duration::from_secs(30),
        Duration::from_secs(3600),
    ));
    let _ = PRICE_BATCHES.set(Pace::from_env(
        "LOAD_PRICE_BATCH_EVERY",
        Duration::from_secs(60),
        Duration::from_secs(1800),
    ));
    let _ = ANNOUNCEMENTS.set(Pace::from_env(
        "LOAD_ANNOUNCEMENT_EVERY",
        Duration::from_secs(45),
        Duration::from_secs(3600),
    ));
    let think = |min, max| (Duration::from_millis(min), Duration::from_millis(max));
    let (a_min, a_max) = think(500, 1500);
    let (m_min, m_max) = think(1000, 3000);
    let (r_min, r_max) = think(2000, 6000);
    // The weights and why: loadtests/README.md ("The mix").
    GooseAttack::initialize()?
        .register_scenario(
            scenario!("store phone")
                .set_weight(950)?
                .set_wait_time(a_min, a_max)?
                .register_transaction(transaction!(associate_start).set_on_start())
                .register_transaction(transaction!(store_phone)),
        )
        .register_scenario(
            scenario!("store manager")
                .set_weight(40)?
                .set_wait_time(m_min, m_max)?
                .register_transaction(transaction!(manager_start).set_on_start())
                .register_transaction(transaction!(store_manager)),
        )
        .register_scenario(
            scenario!("regional manager")
                .set_weight(4)?
                .set_wait_time(r_min, r_max)?
                .register_transaction(transaction!(regional_start).set_on_start())
                .register_transaction(transaction!(regional_manager)),
        )
        .register_scenario(
            scenario!("hq")
                .set_weight(2)?
                .set_wait_time(r_min, r_max)?
                .register_transaction(transaction!(hq_start).set_on_start())
                .register_transaction(transaction!(hq)),
        )
        .register_scenario(
            scenario!("integration")
                .set_weight(4)?
                .set_wait_time(r_min, r_max)?
                .register_transaction(transaction!(integration_start).set_on_start())
                .register_transaction(transaction!(integration)),
        )
        .set_default(GooseDefault::Host, base.as_str())?
        .execute()
        .await?;
    Ok(())
}
