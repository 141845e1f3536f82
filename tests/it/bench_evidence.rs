//! Benchmark (not a timed test; `make bench` runs it in release mode with --ignored):
//! 100 associates, each in their own store, upload a 2 MiB phone photo and complete their
//! task at the same moment, through a `storeops api` and a `storeops worker` process (the
//! release binary) against the real object store. Reports grant, upload and completion
//! p99, upload-to-thumbnail p99, and each process's peak RSS, beside baselines of the
//! same run: a request that does no evidence work (`GET /me`) at the same concurrency,
//! and the thumbnails made one after another in this process (the worker decodes one
//! photo at a time, so that is the floor). Writes target/bench/evidence.md.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures_util::future::join_all;
use serde_json::{Value, json};
use storeops::{auth::Role, evidence::ContentType, ids::StoreId};

use crate::common::{
    self, Process, client, eventually, put_upload, s3_env, teardown, url_for_database,
};

const ASSOCIATES: usize = 100;
const PHOTO_BYTES: usize = 2 * 1024 * 1024;

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// A 12-megapixel JPEG (a phone's 4032 × 3024) of about `target` bytes: a gradient
/// under pseudo-random noise, whose amplitude is searched so the encoder lands near
/// the size (flat pictures compress to almost nothing, photos do not).
fn phone_photo(target: usize) -> Vec<u8> {
    let (width, height) = (4032u32, 3024u32);
    let encode = |amplitude: u32| {
        let mut state = 0x9e37_79b9_u32;
        let picture = image::RgbImage::from_fn(width, height, |x, y| {
            state ^= state << 13;
            state ^= state >> 17;
            state ^= state << 5;
            let noise = if amplitude == 0 { 0 } else { state % amplitude };
            let base = x * 160 / width + y * 80 / height;
            let v = |shift: u32| ((base + shift + noise) % 256) as u8;
            image::Rgb([v(0), v(40), v(90)])
        });
        let mut out = std::io::Cursor::new(Vec::new());
        image::DynamicImage::ImageRgb8(picture)
            .write_to(&mut out, image::ImageFormat::Jpeg)
            .expect("encode JPEG");
        out.into_inner()
    };
    let (mut low, mut high) = (0u32, 64u32);
    let mut best = encode(high);
    for _ in 0..6 {
        let middle = (low + high) / 2;
        let photo = encode(middle);
        if photo.len() >= target {
            high = middle;
            best = photo;
        } else {
            low = middle;
        }
    }
    best
}

struct Associate {
    store: StoreId,
    token: String,
    task: String,
}

struct Timings {
    grant: Duration,
    upload: Duration,
    complete: Duration,
    uploaded_at: DateTime<Utc>,
}

/// VmHWM (peak resident set) of a process, in MiB.
fn peak_rss_mib(pid: u32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kib| kib / 1024.0)
}

async fn json(response: reqwest::Response, status: u16, what: &str) -> Value {
    let actual = response.status().as_u16();
    let body: Value = response.json().await.unwrap_or(Value::Null);
    assert_eq!(actual, status, "{what}: {body}");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run by `make bench`"]
async fn bench_photos_at_once() {
    let amqp = std::env::var("AMQP_URL").expect("AMQP_URL (run via make bench)");
    let (database, db) = common::fresh_database().await;
    storeops::seed::seed_chain(&db, ASSOCIATES as u32, 0)
        .await
        .expect("seed chain");
    let prefix = format!("b{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
    let mut env: Vec<(String, String)> = s3_env(&database);
    assert!(
        !env.is_empty(),
        "S3_BUCKET: run via make bench (scripts/dev-env)"
    );
    env.extend([
        (
            "DATABASE_URL".to_owned(),
            url_for_database(&common::database_url(), &database),
        ),
        ("AMQP_URL".to_owned(), amqp),
        ("AMQP_TOPOLOGY_PREFIX".to_owned(), prefix.clone()),
    ]);
    let env: Vec<(&str, String)> = env.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
    let api = Process::start(&["api"], &env);
    let worker = Process::start(&["worker"], &env);
    let http = client();
    api.wait_ready(&http, 200).await;
    worker.wait_ready(&http, 200).await;
    let idle = (
        peak_rss_mib(api.child.id()),
        peak_rss_mib(worker.child.id()),
    );

    // One associate per store, each with a task whose checklist wants a photo.
    let hq = common::token(Role::Hq, None, None);
    let template = json(
        http.post(format!("{}/api/v1/task-templates", api.http))
            .bearer_auth(&hq)
            .json(&json!({"title": "Shelf photo", "checklist": [
                {"key": "shelf", "label": "The shelf", "type": "photo", "required": true}
            ]}))
            .send()
            .await
            .expect("template"),
        201,
        "template",
    )
    .await;
    let staff: Vec<(uuid::Uuid, uuid::Uuid)> = sqlx::query_as(
        "SELECT DISTINCT ON (store_id) store_id, id FROM staff \
         WHERE role = 'associate' ORDER BY store_id, id",
    )
    .fetch_all(&db)
    .await
    .expect("associates");
    let mut associates = Vec::new();
    for (store, person) in staff {
        let store = StoreId(store);
        let manager = common::token(Role::StoreManager, Some(store), None);
        let task = json(
            http.post(format!("{}/api/v1/stores/{store}/tasks", api.http))
                .bearer_auth(&manager)
                .json(&json!({"template_id": template["id"]}))
                .send()
                .await
                .expect("task"),
            201,
            "task",
        )
        .await;
        let mut claims = common::claims(Role::Associate, Some(store), None);
        claims.sub = person.to_string();
        associates.push(Associate {
            store,
            token: common::signer().sign(&claims).expect("sign"),
            task: task["id"].as_str().expect("task id").to_owned(),
        });
    }
    assert_eq!(associates.len(), ASSOCIATES);
    let photo = phone_photo(PHOTO_BYTES);

    // Baseline: a request without evidence work, at the same concurrency.
    let me: Vec<Duration> = join_all(associates.iter().map(|a| {
        let http = http.clone();
        let url = format!("{}/api/v1/me", api.http);
        async move {
            let started = Instant::now();
            let response = http
                .get(url)
                .bearer_auth(&a.token)
                .send()
                .await
                .expect("me");
            assert_eq!(response.status(), 200);
            started.elapsed()
        }
    }))
    .await;

    // Everyone at once: grant, upload, complete; beside it, one prober sends `GET /me`
    // one after another (what a request without evidence work meets in the burst).
    let started_all = Instant::now();
    let burst_over = tokio_util::sync::CancellationToken::new();
    let prober = tokio::spawn({
        let (http, url, token, over) = (
            http.clone(),
            format!("{}/api/v1/me", api.http),
            associates[0].token.clone(),
            burst_over.clone(),
        );
        async move {
            let mut latencies = Vec::new();
            while !over.is_cancelled() {
                let started = Instant::now();
                let response = http.get(&url).bearer_auth(&token).send().await.expect("me");
                assert_eq!(response.status(), 200);
                latencies.push(started.elapsed());
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            latencies
        }
    });
    let timings: Vec<Timings> = join_all(associates.iter().map(|a| {
        let http = http.clone();
        let photo = photo.clone();
        let base = api.http.clone();
        async move {
            let t0 = Instant::now();
            let grant = json(
                http.post(format!("{base}/api/v1/tasks/{}/evidence", a.task))
                    .bearer_auth(&a.token)
                    .json(&json!({"item_key": "shelf", "content_type": "image/jpeg", "size_bytes": photo.len()}))
                    .send()
                    .await
                    .expect("grant"),
                201,
                "grant",
            )
            .await;
            let granted = t0.elapsed();
            let t1 = Instant::now();
            assert_eq!(put_upload(&grant, photo, "image/jpeg").await, 200, "upload");
            let uploaded = t1.elapsed();
            let uploaded_at = Utc::now();
            let t2 = Instant::now();
            json(
                http.post(format!("{base}/api/v1/tasks/{}/complete", a.task))
                    .bearer_auth(&a.token)
                    .json(&json!({"answers": {"shelf": {"evidence_id": grant["evidence_id"]}}}))
                    .send()
                    .await
                    .expect("complete"),
                200,
                &format!("complete in store {}", a.store),
            )
            .await;
            Timings {
                grant: granted,
                upload: uploaded,
                complete: t2.elapsed(),
                uploaded_at,
            }
        }
    }))
    .await;
    let requests_done = started_all.elapsed();
    burst_over.cancel();
    let me_in_burst = prober.await.expect("prober");
    eventually(Duration::from_secs(600), "every thumbnail made", || async {
        sqlx::query_scalar::<_, i64>("SELECT count(*) FROM evidence WHERE state = 'processed'")
            .fetch_one(&db)
            .await
            .unwrap_or(0)
            >= ASSOCIATES as i64
    })
    .await;
    let all_done = started_all.elapsed();
    let peak = (
        peak_rss_mib(api.child.id()),
        peak_rss_mib(worker.child.id()),
    );
    let processed: Vec<(String, DateTime<Utc>)> =
        sqlx::query_as("SELECT task_id::text, processed_at FROM evidence ORDER BY task_id")
            .fetch_all(&db)
            .await
            .expect("processed");
    let mut to_thumbnail: Vec<Duration> = processed
        .iter()
        .map(|(task, at)| {
            let (i, _) = associates
                .iter()
                .enumerate()
                .find(|(_, a)| &a.task == task)
                .expect("a task of the bench");
            (*at - timings[i].uploaded_at).to_std().unwrap_or_default()
        })
        .collect();
    drop(api);
    drop(worker);
    teardown(
        &storeops::events::topology::Topology {
            prefix,
            retry_delays: [5, 30, 300].map(Duration::from_secs).to_vec(),
            delivery_limit: 20,
        },
        &common::production_groups(),
    )
    .await;

    // Floor: the same thumbnails made one after another here (the same code, release).
    let floor_started = Instant::now();
    for _ in 0..5 {
        storeops::evidence::image::process(
            &photo,
            ContentType::Jpeg,
            50_000_000,
            320,
            chrono_tz::UTC,
        )
        .expect("thumbnail");
    }
    let one_thumbnail = floor_started.elapsed() / 5;

    let sorted = |mut v: Vec<Duration>| {
        v.sort();
        v
    };
    let me = sorted(me);
    let me_in_burst = sorted(me_in_burst);
    let grants = sorted(timings.iter().map(|t| t.grant).collect());
    let uploads = sorted(timings.iter().map(|t| t.upload).collect());
    let completes = sorted(timings.iter().map(|t| t.complete).collect());
    to_thumbnail.sort();
    let serial_floor = one_thumbnail * ASSOCIATES as u32;
    let report = format!(
        "### Photo evidence: {ASSOCIATES} associates upload a {:.1} MiB photo and complete at once\n\n\
         | measure | value |\n|---|---|\n\
         | grant p50 / p99 | {:.0} / **{:.0} ms** |\n\
         | baseline in the same run: `GET /me` at the same concurrency, p50 / p99 | {:.0} / {:.0} ms |\n\
         | baseline in the same run: `GET /me` one at a time during the burst ({} requests), p50 / p99 | {:.0} / {:.0} ms |\n\
         | upload to the object store (presigned PUT) p50 / p99 | {:.0} / {:.0} ms |\n\
         | completion (HEAD, range read, attach) p50 / p99 | {:.0} / {:.0} ms |\n\
         | upload-to-thumbnail p50 / p99 / max | {:.1} / **{:.1}** / {:.1} s |\n\
         | baseline: one thumbnail in this process (4032 × 3024 → 320 px); {ASSOCIATES} one after another | {:.0} ms; {:.1} s (p99 / that: {:.2}) |\n\
         | all requests answered / all thumbnails made | {:.1} s / {:.1} s |\n\
         | peak RSS idle → under the burst: api / worker | {:.0} → **{:.0} MiB** / {:.0} → **{:.0} MiB** |\n\n\
         One `storeops api` and one `storeops worker` (every group, decoding one photo at a \
         time) as processes of the release binary, SeaweedFS from scripts/dev-env.\n",
        photo.len() as f64 / 1_048_576.0,
        ms(percentile(&grants, 0.5)),
        ms(percentile(&grants, 0.99)),
        ms(percentile(&me, 0.5)),
        ms(percentile(&me, 0.99)),
        me_in_burst.len(),
        ms(percentile(&me_in_burst, 0.5)),
        ms(percentile(&me_in_burst, 0.99)),
        ms(percentile(&uploads, 0.5)),
        ms(percentile(&uploads, 0.99)),
        ms(percentile(&completes, 0.5)),
        ms(percentile(&completes, 0.99)),
        percentile(&to_thumbnail, 0.5).as_secs_f64(),
        percentile(&to_thumbnail, 0.99).as_secs_f64(),
        percentile(&to_thumbnail, 1.0).as_secs_f64(),
        ms(one_thumbnail),
        serial_floor.as_secs_f64(),
        percentile(&to_thumbnail, 0.99).as_secs_f64() / serial_floor.as_secs_f64(),
        requests_done.as_secs_f64(),
        all_done.as_secs_f64(),
        idle.0,
        peak.0,
        idle.1,
        peak.1,
    );
    println!("{report}");
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench");
    std::fs::create_dir_all(&dir).expect("bench dir");
    std::fs::write(dir.join("evidence.md"), report).expect("write report");
}
