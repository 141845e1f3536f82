//! A realistic load of a 1,000-store chain on storeops (PRODUCT §14), with goose.
//!
//! Every user is one person with a real token of their role, signed with the
//! cluster's AUTH_JWT_SECRET: associates poll their store's list, open tasks, start and
//! complete them; store managers create (with Idempotency-Key, as the app does),
//! approve and send back work; regional managers and HQ read reports and the CSV export;
//! HQ sends a campaign now and then; integrations post price batches, deliveries and
//! stock alerts. Every response is checked (status, content type, body shape), not just
//! that something answered.
//!
//! `STOREOPS_URL=http://127.0.0.1:8088 AUTH_JWT_SECRET=… storeops-load --users 300
//! --increase-rate 50 --run-time 2m --report-file report.html` (goose's own options).

use std::{sync::OnceLock, time::Duration};

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
    /// Open tasks seen in the last list, to open, start and complete.
    seen: Vec<Value>,
}

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

/// Sends one request and checks its status, that a JSON body parses, and `check` on
/// the body; answers the body (`Null` after a failure, which is recorded with what
/// came back).
#[allow(clippy::too_many_arguments)]
async fn call(
    user: &mut GooseUser,
    method: GooseMethod,
    path: &str,
    name: &str,
    body: Option<Value>,
    idempotency_key: Option<String>,
    expected: u16,
    check: Check,
) -> Result<Value, Box<TransactionError>> {
    call_expecting(
        user,
        method,
        path,
        name,
        body,
        idempotency_key,
        &[expected],
        check,
    )
    .await
}

/// As [`call`], accepting any of `expected`: a 409 is the right answer when a colleague
/// in the same store started or finished the task a moment before (the app reloads).
#[allow(clippy::too_many_arguments)]
async fn call_expecting(
    user: &mut GooseUser,
    method: GooseMethod,
    path: &str,
    name: &str,
    body: Option<Value>,
    idempotency_key: Option<String>,
    expected: &[u16],
    check: Check,
) -> Result<Value, Box<TransactionError>> {
    let mut builder = user
        .get_request_builder(&method, path)?
        .bearer_auth(person(user).token.clone());
    if let Some(body) = body {
        builder = builder.json(&body);
    }
    if let Some(key) = idempotency_key {
        builder = builder.header("idempotency-key", key);
    }
    let request = GooseRequest::builder()
        .set_request_builder(builder)
        .name(name)
        .build();
    let mut goose = user.request(request).await?;
    let response = match goose.response {
        Ok(response) => response,
        Err(error) => {
            let detail = error.to_string();
            user.set_failure(name, &mut goose.request, None, Some(&detail))?;
            return Ok(Value::Null);
        }
    };
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().await.unwrap_or_default();
    if !expected.contains(&status) {
        user.set_failure(
            &format!("{name}: {status} (expected {expected:?})"),
            &mut goose.request,
            Some(&headers),
            Some(&text),
        )?;
        return Ok(Value::Null);
    }
    let is_json = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.contains("json"));
    if status == 409 {
        // A fair answer (see above), not a failure: goose counts every non-2xx as one.
        user.set_success(&mut goose.request)?;
        return Ok(Value::Null);
    }
    let value = if is_json {
        match serde_json::from_str::<Value>(&text) {
            Ok(value) => value,
            Err(e) => {
                user.set_failure(
                    &format!("{name}: body is not JSON ({e})"),
                    &mut goose.request,
                    Some(&headers),
                    Some(&text),
                )?;
                return Ok(Value::Null);
            }
        }
    } else {
        Value::String(text)
    };
    if let Err(missing) = check(&value) {
        user.set_failure(
            &format!("{name}: {missing}"),
            &mut goose.request,
            Some(&headers),
            None,
        )?;
        return Ok(Value::Null);
    }
    Ok(value)
}

// ------------------------------------------------------------------ associates

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
    user.set_session_data(Person {
        token,
        store: Some(store),
        seen: Vec::new(),
    });
    Ok(())
}

async fn list_store_tasks(user: &mut GooseUser) -> TransactionResult {
    let store = person(user).store.clone().expect("a store");
    let page = call(
        user,
        GooseMethod::Get,
        &format!(
            "/api/v1/stores/{}/tasks?status=open,in_progress&limit=50",
            store.id
        ),
        "list store tasks",
        None,
        None,
        200,
        |page| match page["items"].as_array() {
            Some(items) if items.iter().all(|t| t["id"].is_string()) => Ok(()),
            _ => Err("no items, or an item without an id"),
        },
    )
    .await?;
    let items = page["items"].as_array().cloned().unwrap_or_default();
    if items.iter().any(|t| t["store_id"] != store.id.as_str()) {
        return Err(Box::new(TransactionError::Custom(
            "list: an item of another store".to_owned(),
        )));
    }
    user.get_session_data_unchecked_mut::<Person>().seen = items;
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
    let detail = call(
        user,
        GooseMethod::Get,
        &format!("/api/v1/tasks/{id}"),
        "open task",
        None,
        None,
        200,
        |task| {
            if task["version"].is_i64() && task["status"].is_string() {
                Ok(())
            } else {
                Err("no version or status")
            }
        },
    )
    .await?;
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
        let started = call_expecting(
            user,
            GooseMethod::Post,
            &format!("/api/v1/tasks/{id}/start"),
            "start task",
            None,
            None,
            &[200, 409],
            |task| match task["status"].as_str() {
                Some("in_progress") => Ok(()),
                _ => Err("not in progress"),
            },
        )
        .await?;
        if started.is_null() {
            return Ok(()); // a colleague has it
        }
    }
    call_expecting(
        user,
        GooseMethod::Post,
        &format!("/api/v1/tasks/{id}/complete"),
        "complete task",
        Some(json!({"note": "done", "evidence": [
            {"url": "https://cdn.example.com/evidence/shelf.jpg", "content_type": "image/jpeg"}
        ]})),
        None,
        &[200, 409],
        |task| match task["status"].as_str() {
            Some("done" | "submitted") => Ok(()),
            _ => Err("neither done nor submitted"),
        },
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
    user.set_session_data(Person {
        token,
        store: Some(store),
        seen: Vec::new(),
    });
    Ok(())
}

async fn create_task(user: &mut GooseUser) -> TransactionResult {
    let store = person(user).store.clone().expect("a store");
    let due = chrono::Utc::now() + chrono::Duration::hours(rand::rng().random_range(1..48));
    call(
        user,
        GooseMethod::Post,
        &format!("/api/v1/stores/{}/tasks", store.id),
        "create task",
        Some(json!({
            "title": "Face up the chilled aisle",
            "description": "Bring every product to the front edge.",
            "priority": "normal",
            "due_at": due.to_rfc3339(),
        })),
        Some(uuid::Uuid::new_v4().to_string()),
        201,
        |task| match task["status"].as_str() {
            Some("open") => Ok(()),
            _ => Err("not open"),
        },
    )
    .await
    .map(drop)
}

async fn review_work(user: &mut GooseUser) -> TransactionResult {
    let store = person(user).store.clone().expect("a store");
    let page = call(
        user,
        GooseMethod::Get,
        &format!(
            "/api/v1/stores/{}/tasks?status=submitted&limit=20",
            store.id
        ),
        "list submitted",
        None,
        None,
        200,
        |page| {
            if page["items"].is_array() {
                Ok(())
            } else {
                Err("no items")
            }
        },
    )
    .await?;
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
    call_expecting(
        user,
        GooseMethod::Post,
        &format!("/api/v1/tasks/{id}/{action}"),
        name,
        body,
        None,
        &[200, 409],
        |task| match task["status"].as_str() {
            Some("done" | "in_progress") => Ok(()),
            _ => Err("neither done nor back in progress"),
        },
    )
    .await
    .map(drop)
}

// ------------------------------------------------------------------ regional, HQ

async fn regional_start(user: &mut GooseUser) -> TransactionResult {
    let region = chain()
        .regions
        .choose(&mut rand::rng())
        .cloned()
        .unwrap_or_default();
    let mut claims = claims("load-regional", "regional_manager");
    claims.region = Some(&region);
    let token = token(&chain().secret, &claims);
    user.set_session_data(Person {
        token,
        store: None,
        seen: Vec::new(),
    });
    Ok(())
}

async fn compliance_report(user: &mut GooseUser) -> TransactionResult {
    let to = chrono::Utc::now().date_naive();
    let from = to - chrono::Duration::days(6);
    call(
        user,
        GooseMethod::Get,
        &format!("/api/v1/reports/compliance?group_by=store&from={from}&to={to}"),
        "compliance report",
        None,
        None,
        200,
        |report| {
            if report["groups"].is_array() && report["totals"].is_object() {
                Ok(())
            } else {
                Err("no groups or totals")
            }
        },
    )
    .await
    .map(drop)
}

async fn overdue_report(user: &mut GooseUser) -> TransactionResult {
    call(
        user,
        GooseMethod::Get,
        "/api/v1/reports/overdue?limit=20",
        "overdue report",
        None,
        None,
        200,
        |report| {
            if report["items"].is_array() {
                Ok(())
            } else {
                Err("no items")
            }
        },
    )
    .await
    .map(drop)
}

async fn hq_start(user: &mut GooseUser) -> TransactionResult {
    let token = token(&chain().secret, &claims("load-hq", "hq"));
    user.set_session_data(Person {
        token,
        store: None,
        seen: Vec::new(),
    });
    Ok(())
}

async fn csv_export(user: &mut GooseUser) -> TransactionResult {
    let region = chain()
        .regions
        .choose(&mut rand::rng())
        .cloned()
        .unwrap_or_default();
    let to = chrono::Utc::now().date_naive();
    call(
        user,
        GooseMethod::Get,
        &format!("/api/v1/reports/tasks.csv?from={to}&to={to}&region={region}"),
        "tasks.csv export",
        None,
        None,
        200,
        |csv| match csv.as_str() {
            Some(text) if text.lines().next().is_some_and(|h| h.contains(',')) => Ok(()),
            _ => Err("no CSV header row"),
        },
    )
    .await
    .map(drop)
}

async fn campaign(user: &mut GooseUser) -> TransactionResult {
    let region = chain()
        .regions
        .choose(&mut rand::rng())
        .cloned()
        .unwrap_or_default();
    let due = chrono::Utc::now() + chrono::Duration::hours(24);
    call(
        user,
        GooseMethod::Post,
        "/api/v1/campaigns",
        "create campaign",
        Some(json!({
            "title": "Check the promotion shelf labels",
            "target": {"regions": [region]},
            "due_at": due.to_rfc3339(),
        })),
        None,
        202,
        accepted,
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
    user.set_session_data(Person {
        token,
        store: None,
        seen: Vec::new(),
    });
    Ok(())
}

async fn price_batch(user: &mut GooseUser) -> TransactionResult {
    let store = random_store();
    let batch = uuid::Uuid::new_v4().to_string();
    let items: Vec<Value> = (0..50)
        .map(|i| {
            json!({"sku": format!("SKU-{:05}", rand::rng().random_range(0..20_000) + i),
                   "name": "Oat milk 1 l", "new_price": 1.29, "currency": "EUR",
                   "store_codes": [store.code]})
        })
        .collect();
    let effective = chrono::Utc::now() + chrono::Duration::hours(2);
    let posted = call(
        user,
        GooseMethod::Post,
        "/api/v1/integrations/price-changes",
        "post price batch",
        Some(json!({"batch_id": batch, "effective_at": effective.to_rfc3339(), "items": items})),
        None,
        202,
        accepted,
    )
    .await?;
    if let Some(status_url) = posted["status_url"].as_str() {
        call(
            user,
            GooseMethod::Get,
            status_url,
            "ingest status",
            None,
            None,
            200,
            |status| {
                if status["status"].is_string() {
                    Ok(())
                } else {
                    Err("no status")
                }
            },
        )
        .await?;
    }
    Ok(())
}

async fn delivery(user: &mut GooseUser) -> TransactionResult {
    let store = random_store();
    let expected = chrono::Utc::now() + chrono::Duration::hours(6);
    call(
        user,
        GooseMethod::Post,
        "/api/v1/integrations/deliveries",
        "post delivery",
        Some(json!({
            "delivery_id": uuid::Uuid::new_v4().to_string(),
            "store_code": store.code,
            "supplier": "Dairy North",
            "expected_at": expected.to_rfc3339(),
            "lines": [{"sku": "SKU-00001", "qty": 24}, {"sku": "SKU-00002", "qty": 12}],
        })),
        None,
        202,
        accepted,
    )
    .await
    .map(drop)
}

async fn stock_alert(user: &mut GooseUser) -> TransactionResult {
    let store = random_store();
    call(
        user,
        GooseMethod::Post,
        "/api/v1/integrations/stock-alerts",
        "post stock alert",
        Some(json!({
            "alert_id": uuid::Uuid::new_v4().to_string(),
            "store_code": store.code,
            "sku": format!("SKU-{:05}", rand::rng().random_range(0..500)),
            "on_hand": rand::rng().random_range(0..3),
        })),
        None,
        202,
        accepted,
    )
    .await
    .map(drop)
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
    let think = |min, max| (Duration::from_millis(min), Duration::from_millis(max));
    let (a_min, a_max) = think(500, 1500);
    let (m_min, m_max) = think(1000, 3000);
    let (r_min, r_max) = think(2000, 6000);
    GooseAttack::initialize()?
        .register_scenario(
            scenario!("associate")
                .set_weight(70)?
                .set_wait_time(a_min, a_max)?
                .register_transaction(transaction!(associate_start).set_on_start())
                .register_transaction(transaction!(list_store_tasks).set_weight(10)?)
                .register_transaction(transaction!(open_task).set_weight(4)?)
                .register_transaction(transaction!(work_on_task).set_weight(2)?),
        )
        .register_scenario(
            scenario!("store manager")
                .set_weight(15)?
                .set_wait_time(m_min, m_max)?
                .register_transaction(transaction!(manager_start).set_on_start())
                .register_transaction(transaction!(list_store_tasks).set_weight(4)?)
                .register_transaction(transaction!(create_task).set_weight(2)?)
                .register_transaction(transaction!(review_work).set_weight(2)?)
                .register_transaction(transaction!(overdue_report).set_weight(1)?),
        )
        .register_scenario(
            scenario!("regional manager")
                .set_weight(5)?
                .set_wait_time(r_min, r_max)?
                .register_transaction(transaction!(regional_start).set_on_start())
                .register_transaction(transaction!(compliance_report).set_weight(3)?)
                .register_transaction(transaction!(overdue_report).set_weight(3)?),
        )
        .register_scenario(
            scenario!("hq")
                .set_weight(2)?
                .set_wait_time(r_min, r_max)?
                .register_transaction(transaction!(hq_start).set_on_start())
                .register_transaction(transaction!(compliance_report).set_weight(10)?)
                .register_transaction(transaction!(csv_export).set_weight(2)?)
                .register_transaction(transaction!(campaign).set_weight(1)?),
        )
        .register_scenario(
            scenario!("integration")
                .set_weight(3)?
                .set_wait_time(m_min, m_max)?
                .register_transaction(transaction!(integration_start).set_on_start())
                .register_transaction(transaction!(price_batch).set_weight(1)?)
                .register_transaction(transaction!(delivery).set_weight(3)?)
                .register_transaction(transaction!(stock_alert).set_weight(3)?),
        )
        .set_default(GooseDefault::Host, base.as_str())?
        .execute()
        .await?;
    Ok(())
}
