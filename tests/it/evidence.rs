//! Photo evidence against the real object store (SeaweedFS from scripts/dev-env): the
//! whole path (grant → upload with the presigned URL → complete → a worker's thumbnail
//! → the reviewer's presigned URLs), and every refusal: uploads the store refuses
//! (another size, another type, after expiry), and answers completion refuses (a PNG
//! declared JPEG, a pixel bomb, another task's photo, an expired or reused grant, a
//! photo never uploaded), another store's task, pruning.

use std::time::Duration;

use crate::common::{
    self, RunningWorker, TestApp, assert_problem, eventually, grant_photo, jpeg, put_upload,
    teardown, test_topology, token,
};
use serde_json::{Value, json};
use storeops::{auth::Role, ids::StoreId};

struct Ctx {
    app: TestApp,
    store: StoreId,
    hq: String,
    manager: String,
    associate: String,
}

async fn setup(env: &[(&str, &str)]) -> Ctx {
    let app = TestApp::spawn_configured(2, false, env).await;
    let store = app.stores().await[0].id;
    let staff: uuid::Uuid = sqlx::query_scalar(
        "SELECT id FROM staff WHERE store_id = $1 AND role = 'associate' ORDER BY id LIMIT 1",
    )
    .bind(store)
    .fetch_one(&app.db)
    .await
    .expect("staff");
    let mut claims = common::claims(Role::Associate, Some(store), None);
    claims.sub = staff.to_string();
    Ctx {
        associate: common::signer().sign(&claims).expect("sign"),
        hq: token(Role::Hq, None, None),
        manager: token(Role::StoreManager, Some(store), None),
        app,
        store,
    }
}

impl Ctx {
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> reqwest::Response {
        let mut request = self
            .app
            .client
            .request(method, self.app.url(path))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        request.send().await.expect("request")
    }

    async fn json(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<Value>,
        status: u16,
    ) -> Value {
        let response = self.send(method, path, token, body).await;
        let actual = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        assert_eq!(actual, status, "{path}: {body}");
        body
    }

    /// A task of a template with one required photo item, `review` as given.
    async fn photo_task(&self, review: bool) -> Value {
        let template = self
            .json(
                reqwest::Method::POST,
                "/api/v1/task-templates",
                &self.hq,
                Some(
                    json!({"title": "Shelf photo", "review_required": review, "checklist": [
                        {"key": "shelf", "label": "The shelf", "type": "photo", "required": true}
                    ]}),
                ),
                201,
            )
            .await;
        self.json(
            reqwest::Method::POST,
            &format!("/api/v1/stores/{}/tasks", self.store),
            &self.manager,
            Some(json!({"template_id": template["id"]})),
            201,
        )
        .await
    }

    async fn complete(&self, task: &Value, evidence: &str) -> reqwest::Response {
        self.send(
            reqwest::Method::POST,
            &format!(
                "/api/v1/tasks/{}/complete",
                task["id"].as_str().expect("id")
            ),
            &self.associate,
            Some(json!({"answers": {"shelf": {"evidence_id": evidence}}})),
        )
        .await
    }

    /// The associate's grant for the task's photo item.
    async fn grant(&self, task: &Value, content_type: &str, size: usize) -> Value {
        grant_photo(
            &self.app,
            task,
            "shelf",
            &self.associate,
            content_type,
            size,
        )
        .await
    }

    /// A grant for `bytes` of `content_type`, and the upload it allows.
    async fn uploaded(&self, task: &Value, bytes: Vec<u8>, content_type: &str) -> Value {
        let grant = grant_photo(
            &self.app,
            task,
            "shelf",
            &self.associate,
            content_type,
            bytes.len(),
        )
        .await;
        assert_eq!(put_upload(&grant, bytes, content_type).await, 200, "upload");
        grant
    }

    /// The one refusal of a completion: 422 naming the photo item, with `message`.
    async fn refused(&self, task: &Value, evidence: &str, message: &str) {
        let problem = assert_problem(self.complete(task, evidence).await, 422).await;
        assert_eq!(problem["errors"][0]["field"], "answers.shelf", "{problem}");
        let said = problem["errors"][0]["message"].as_str().unwrap_or_default();
        assert!(said.contains(message), "{said:?} should say {message:?}");
    }
}

fn id(value: &Value) -> &str {
    value["evidence_id"].as_str().expect("evidence id")
}

/// A PNG that declares `side` × `side` pixels in a few dozen bytes: its header alone.
fn png_bomb(side: u32) -> Vec<u8> {
    fn crc32(bytes: &[u8]) -> u32 {
        let mut crc = 0xFFFF_FFFFu32;
        for &byte in bytes {
            crc ^= u32::from(byte);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = b"IHDR".to_vec();
    ihdr.extend_from_slice(&side.to_be_bytes());
    ihdr.extend_from_slice(&side.to_be_bytes());
    ihdr.extend_from_slice(&[8, 2, 0, 0, 0]);
    png.extend_from_slice(&13u32.to_be_bytes());
    png.extend_from_slice(&ihdr);
    png.extend_from_slice(&crc32(&ihdr).to_be_bytes());
    // A start of image data (zlib of nothing), so a reader finds the header complete.
    let mut idat = b"IDAT".to_vec();
    idat.extend_from_slice(&[0x78, 0x9c, 0x03, 0x00, 0x00, 0x00, 0x00, 0x01]);
    png.extend_from_slice(&8u32.to_be_bytes());
    png.extend_from_slice(&idat);
    png.extend_from_slice(&crc32(&idat).to_be_bytes());
    png.extend_from_slice(&0u32.to_be_bytes());
    png.extend_from_slice(b"IEND");
    png.extend_from_slice(&crc32(b"IEND").to_be_bytes());
    png
}

#[tokio::test]
async fn a_photo_goes_from_the_phone_to_the_reviewer() {
    common::init_logs();
    let ctx = setup(&[]).await;
    let task = ctx.photo_task(true).await;
    let photo = jpeg(1200, 800);
    let grant = ctx.grant(&task, "image/jpeg", photo.len()).await;
    assert_eq!(grant["upload"]["method"], "PUT");
    assert_eq!(grant["upload"]["headers"]["Content-Type"], "image/jpeg");
    assert_eq!(
        grant["upload"]["headers"]["Content-Length"],
        photo.len().to_string()
    );
    let expires: chrono::DateTime<chrono::Utc> = grant["expires_at"]
        .as_str()
        .expect("expiry")
        .parse()
        .expect("instant");
    assert!(expires <= chrono::Utc::now() + chrono::Duration::minutes(15));
    assert_eq!(put_upload(&grant, photo.clone(), "image/jpeg").await, 200);

    let submitted = ctx.complete(&task, id(&grant)).await;
    assert_eq!(submitted.status(), 200);
    let submitted: Value = submitted.json().await.expect("json");
    assert_eq!(submitted["status"], "submitted");
    assert_eq!(
        submitted["answers"]["shelf"]["evidence_id"],
        grant["evidence_id"]
    );

    // The attachment is announced with ids and metadata, never a URL.
    let payload: Value =
        sqlx::query_scalar("SELECT payload FROM outbox WHERE routing_key = 'evidence.attached'")
            .fetch_one(&ctx.app.db)
            .await
            .expect("evidence.attached");
    assert_eq!(payload["evidence_id"], grant["evidence_id"]);
    assert_eq!(payload["size_bytes"], photo.len());
    assert!(!payload.to_string().contains("http"), "{payload}");

    // A worker makes the thumbnail.
    let topology = test_topology(&[200]);
    let s3 = common::s3_env(&ctx.app.database);
    let s3: Vec<(&str, &str)> = s3.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let worker = RunningWorker::groups(&ctx.app.db, &topology, &["evidence"], 2, &s3);
    let path = format!(
        "/api/v1/tasks/{}/evidence",
        task["id"].as_str().expect("id")
    );
    eventually(Duration::from_secs(30), "thumbnail made", || async {
        let page = ctx
            .json(reqwest::Method::GET, &path, &ctx.manager, None, 200)
            .await;
        page["items"][0]["state"] == "processed"
    })
    .await;
    let page = ctx
        .json(reqwest::Method::GET, &path, &ctx.manager, None, 200)
        .await;
    let shown = &page["items"][0];
    assert_eq!(
        (shown["width"].as_i64(), shown["height"].as_i64()),
        (Some(1200), Some(800))
    );
    assert_eq!(shown["item_key"], "shelf");
    let original = common::client()
        .get(shown["url"].as_str().expect("url"))
        .send()
        .await
        .expect("original");
    assert_eq!(original.status(), 200);
    assert_eq!(original.bytes().await.expect("bytes").to_vec(), photo);
    let thumbnail = common::client()
        .get(shown["thumbnail_url"].as_str().expect("thumbnail url"))
        .send()
        .await
        .expect("thumbnail")
        .bytes()
        .await
        .expect("bytes");
    let thumbnail = image::load_from_memory(&thumbnail).expect("a JPEG");
    assert_eq!(thumbnail.width(), 320);
    assert!(
        (213..=214).contains(&thumbnail.height()),
        "{}",
        thumbnail.height()
    );

    // Whoever sees the task sees the photos; another store's staff do not.
    let other_store = ctx.app.stores().await[1].id;
    let outsider = token(Role::StoreManager, Some(other_store), None);
    assert_problem(
        ctx.send(reqwest::Method::GET, &path, &outsider, None).await,
        404,
    )
    .await;
    ctx.json(reqwest::Method::GET, &path, &ctx.hq, None, 200)
        .await;
    worker.shutdown().await;
    teardown(&topology, &[]).await;
}

#[tokio::test]
async fn the_object_store_refuses_what_was_not_granted() {
    let ctx = setup(&[]).await;
    let task = ctx.photo_task(false).await;
    let photo = jpeg(64, 48);
    let grant = ctx.grant(&task, "image/jpeg", photo.len()).await;
    // Larger than granted, and of another type: the signed headers do not match.
    let mut larger = photo.clone();
    larger.extend_from_slice(&[0; 4096]);
    assert_eq!(put_upload(&grant, larger, "image/jpeg").await, 403);
    assert_eq!(put_upload(&grant, photo.clone(), "image/png").await, 403);
    // Nothing was stored, so the completion finds no photo.
    ctx.refused(&task, id(&grant), "has not been uploaded")
        .await;
    // The grant itself still works.
    assert_eq!(put_upload(&grant, photo, "image/jpeg").await, 200);
    assert_eq!(ctx.complete(&task, id(&grant)).await.status(), 200);
}

#[tokio::test]
async fn completion_checks_the_photo_itself() {
    let ctx = setup(&[]).await;
    let task = ctx.photo_task(false).await;

    // A PNG declared as a JPEG: the store takes it (type and size as signed), the
    // signature check does not.
    let png = {
        let mut out = std::io::Cursor::new(Vec::new());
        image::DynamicImage::new_rgb8(8, 8)
            .write_to(&mut out, image::ImageFormat::Png)
            .expect("png");
        out.into_inner()
    };
    let grant = ctx.uploaded(&task, png, "image/jpeg").await;
    ctx.refused(&task, id(&grant), "not an image of the granted type")
        .await;

    // A decompression bomb: 100,000 × 100,000 pixels declared in 77 bytes.
    let bomb = png_bomb(100_000);
    let grant = ctx.uploaded(&task, bomb, "image/png").await;
    ctx.refused(&task, id(&grant), "more pixels than allowed")
        .await;

    // Never uploaded.
    let grant = ctx.grant(&task, "image/jpeg", 1000).await;
    ctx.refused(&task, id(&grant), "has not been uploaded")
        .await;

    // Another task's photo.
    let other = ctx.photo_task(false).await;
    let photo = jpeg(32, 32);
    let foreign = ctx.uploaded(&other, photo, "image/jpeg").await;
    ctx.refused(&task, id(&foreign), "no such evidence for this task")
        .await;
    ctx.refused(
        &task,
        "0190a0a0-0000-7000-8000-000000000000",
        "no such evidence for this task",
    )
    .await;

    // A photo item answered with a URL is not a photo.
    let problem = assert_problem(
        ctx.send(
            reqwest::Method::POST,
            &format!(
                "/api/v1/tasks/{}/complete",
                task["id"].as_str().expect("id")
            ),
            &ctx.associate,
            Some(json!({"answers": {"shelf": {"url": "https://cdn.example.com/x.jpg"}}})),
        )
        .await,
        422,
    )
    .await;
    assert_eq!(problem["errors"][0]["field"], "answers.shelf");
    assert_eq!(
        sqlx::query_scalar::<_, String>("SELECT status FROM tasks WHERE id = $1::uuid")
            .bind(task["id"].as_str())
            .fetch_one(&ctx.app.db)
            .await
            .expect("status"),
        "open",
        "nothing was completed"
    );
}

#[tokio::test]
async fn a_photo_is_attached_once() {
    let ctx = setup(&[]).await;
    let task = ctx.photo_task(true).await;
    let photo = jpeg(40, 30);
    let grant = ctx.uploaded(&task, photo, "image/jpeg").await;
    assert_eq!(ctx.complete(&task, id(&grant)).await.status(), 200);
    let path = format!("/api/v1/tasks/{}/redo", task["id"].as_str().expect("id"));
    let redo = ctx
        .send(reqwest::Method::POST, &path, &ctx.manager, None)
        .await;
    assert_eq!(redo.status(), 200);
    // Sent back: the same photo cannot be attached again; a new one must be taken.
    ctx.refused(&task, id(&grant), "already attached").await;
}

#[tokio::test]
async fn an_expired_grant_is_refused_by_the_store_and_by_completion() {
    let ctx = setup(&[
        ("EVIDENCE_GRANT_TTL_SECONDS", "1"),
        ("EVIDENCE_ATTACH_WINDOW_SECONDS", "0"),
    ])
    .await;
    let task = ctx.photo_task(false).await;
    let photo = jpeg(16, 16);
    let grant = ctx.grant(&task, "image/jpeg", photo.len()).await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    assert_eq!(put_upload(&grant, photo, "image/jpeg").await, 403);
    ctx.refused(&task, id(&grant), "expired").await;

    // Pruning releases the expired grant and deletes its object (none here).
    let mut evidence = common::evidence_config(&ctx.app.database);
    evidence.attach_window = Duration::ZERO;
    let pruner = storeops::maintenance::Pruner {
        db: ctx.app.db.clone(),
        retention: storeops::config::Config::from_lookup(|_| None)
            .expect("defaults")
            .retention,
        evidence: storeops::evidence::Evidence::new(&evidence).expect("evidence"),
    };
    let report = pruner.run_once(false).await.expect("prune");
    assert!(report.rows.contains(&("evidence", 1)), "{:?}", report.rows);
    assert!(
        report.rows.contains(&("evidence_objects", 1)),
        "{:?}",
        report.rows
    );
    assert_eq!(
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM evidence")
            .fetch_one(&ctx.app.db)
            .await
            .expect("count"),
        0
    );
}

#[tokio::test]
async fn grants_follow_the_task_and_its_scope() {
    let ctx = setup(&[]).await;
    let task = ctx.photo_task(false).await;
    let path = format!(
        "/api/v1/tasks/{}/evidence",
        task["id"].as_str().expect("id")
    );
    let body = |item: &str, content_type: &str, size: u64| {
        Some(json!({"item_key": item, "content_type": content_type, "size_bytes": size}))
    };
    // Another store's staff: the task does not exist for them.
    let other_store = ctx.app.stores().await[1].id;
    let outsider = token(Role::StoreManager, Some(other_store), None);
    assert_problem(
        ctx.send(
            reqwest::Method::POST,
            &path,
            &outsider,
            body("shelf", "image/jpeg", 10),
        )
        .await,
        404,
    )
    .await;
    // A regional manager does not work on tasks.
    let region = ctx.app.stores().await[0].region.clone();
    let regional = token(Role::RegionalManager, None, Some(&region));
    assert_problem(
        ctx.send(
            reqwest::Method::POST,
            &path,
            &regional,
            body("shelf", "image/jpeg", 10),
        )
        .await,
        403,
    )
    .await;
    // Only photo items, allowed types, sizes within the limit.
    for (item, content_type, size, field) in [
        ("nope", "image/jpeg", 10, "item_key"),
        ("shelf", "image/gif", 10, "content_type"),
        ("shelf", "image/jpeg", 0, "size_bytes"),
        ("shelf", "image/jpeg", 16 << 20, "size_bytes"),
    ] {
        let problem = assert_problem(
            ctx.send(
                reqwest::Method::POST,
                &path,
                &ctx.associate,
                body(item, content_type, size),
            )
            .await,
            422,
        )
        .await;
        assert_eq!(problem["errors"][0]["field"], field, "{problem}");
    }
    // Done work takes no more photos.
    let photo = jpeg(8, 8);
    let grant = ctx.uploaded(&task, photo, "image/jpeg").await;
    assert_eq!(ctx.complete(&task, id(&grant)).await.status(), 200);
    assert_problem(
        ctx.send(
            reqwest::Method::POST,
            &path,
            &ctx.associate,
            body("shelf", "image/jpeg", 10),
        )
        .await,
        409,
    )
    .await;
}
