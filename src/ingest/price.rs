//! Price batches: planned once, applied in chunks of stores.
//!
//! Planning (`ingest.received`, one transaction): stream the stored body once, keeping
//! each line compact (interned strings, exact price) and resolving it to its stores
//! (every store, store codes, regions; unknown names become item errors), keep one line
//! per store and SKU (the later line wins), cut the stores in code order into chunks
//! and write each chunk as one row of column arrays as it is cut, then enqueue one
//! `ingest.chunk` per chunk.
//!
//! Applying (`ingest.chunk`, one short transaction per chunk): lock the chunk (applied
//! already → no-op, whatever the message id), lock its stores against other batches,
//! create one relabel task per store, supersede older active items of the same store
//! and SKU, insert the items with one `INSERT … SELECT unnest(…)` (a plain insert
//! unless a newer batch already holds items there), cancel older relabel
//! tasks left with nothing to do, count, and finish the ingest with its last chunk.

use std::{collections::HashMap, hash::BuildHasher, io::Read};

use futures_util::future::BoxFuture;
use hashbrown::{DefaultHashBuilder, HashTable};
use sqlx::{Postgres, Transaction};

use super::{
    IngestChunk, ItemError, MAX_REPORTED_ERRORS, Source, handler, metrics,
    payload::{MAX_PRICE_LINES, read_price_batch},
    repo::{self, ChunkArrays, Counts, ReceivedIngest},
};
use crate::{
    events::{
        EventHandler,
        consumer::{HandlerError, Message},
        outbox,
    },
    ids::{IngestId, StoreId, TaskId, TaskKind},
    tasks::{
        Priority, relabel,
        write::{self, Due, ManyTasks, Origin},
    },
};

/// Per-item errors: the first ones kept, all counted.
#[derive(Default)]
struct ItemErrors {
    kept: Vec<ItemError>,
    count: usize,
}

impl ItemErrors {
    fn push(
        &mut self,
        item: usize,
        field: impl FnOnce() -> String,
        message: impl FnOnce() -> String,
    ) {
        self.count += 1;
        if self.kept.len() < MAX_REPORTED_ERRORS {
            self.kept.push(ItemError {
                item: u32::try_from(item).ok(),
                field: field(),
                message: message(),
            });
        }
    }
}

/// A batch's strings, each stored once in one arena (an ERP batch repeats every SKU's
/// name and currency in every store's lines).
#[derive(Default)]
struct Strings {
    arena: String,
    spans: Vec<(u32, u32)>,
    index: HashTable<u32>,
    hasher: DefaultHashBuilder,
}

/// The text of string `id`.
fn span<'a>(arena: &'a str, spans: &[(u32, u32)], id: u32) -> &'a str {
    let (start, end) = spans[id as usize];
    &arena[start as usize..end as usize]
}

impl Strings {
    fn get(&self, id: u32) -> &str {
        span(&self.arena, &self.spans, id)
    }

    fn intern(&mut self, text: &str) -> u32 {
        let Self {
            arena,
            spans,
            index,
            hasher,
        } = self;
        let hash = hasher.hash_one(text);
        if let Some(&id) = index.find(hash, |&id| span(arena, spans, id) == text) {
            return id;
        }
        let id = spans.len() as u32;
        let start = arena.len() as u32;
        arena.push_str(text);
        spans.push((start, arena.len() as u32));
        let (arena, spans) = (&*arena, &*spans);
        index.insert_unique(hash, id, |&id| hasher.hash_one(span(arena, spans, id)));
        id
    }
}

/// One price line as the plan keeps it: interned strings and the exact price (20
/// bytes: a million lines are 20 MB).
#[derive(Clone, Copy)]
#[repr(C, packed(4))]
struct Line {
    sku: u32,
    name: u32,
    currency: u32,
    price_units: i64,
}

/// A batch read from its stored body: compact lines, each store's lines, item errors.
struct ReadBatch {
    strings: Strings,
    lines: Vec<Line>,
    /// Per store (in `stores` order): indices into `lines`, ascending.
    per_store: Vec<Vec<u32>>,
    errors: ItemErrors,
}

/// Streams the stored body once: each line is interned and resolved to its stores
/// (every store, store codes, regions; unknown names become item errors) as it is
/// parsed, so only the compact plan stays in memory, never the body or its lines.
fn read_batch(
    body: &mut dyn Read,
    stores: &[repo::StoreRef],
    expected_lines: usize,
) -> Result<ReadBatch, serde_json::Error> {
    let by_code: HashMap<&str, usize> = stores
        .iter()
        .enumerate()
        .map(|(i, s)| (s.code.as_str(), i))
        .collect();
    let mut by_region: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, store) in stores.iter().enumerate() {
        by_region.entry(store.region.as_str()).or_default().push(i);
    }
    let mut read = ReadBatch {
        strings: Strings::default(),
        // Sized once from the count the api stored: no doubling of the largest vector.
        lines: Vec::with_capacity(expected_lines.min(MAX_PRICE_LINES)),
        per_store: vec![Vec::new(); stores.len()],
        errors: ItemErrors::default(),
    };
    let ReadBatch {
        strings,
        lines,
        per_store,
        errors,
    } = &mut read;
    let mut deserializer = serde_json::Deserializer::from_reader(body);
    read_price_batch(&mut deserializer, |i, line| {
        let n = i as u32;
        lines.push(Line {
            sku: strings.intern(&line.sku),
            name: strings.intern(&line.name),
            currency: strings.intern(&line.currency),
            price_units: line.new_price.units(),
        });
        if line.store_codes.is_none() && line.regions.is_none() {
            for lines in per_store.iter_mut() {
                lines.push(n);
            }
            return;
        }
        for (j, code) in line.store_codes.iter().flatten().enumerate() {
            match by_code.get(code.as_ref()) {
                Some(&s) => per_store[s].push(n),
                None => errors.push(
                    i,
                    || format!("items[{i}].store_codes[{j}]"),
                    || format!("unknown store {code}"),
                ),
            }
        }
        for (j, region) in line.regions.iter().flatten().enumerate() {
            match by_region.get(region.as_ref()) {
                Some(members) => {
                    for &s in members {
                        per_store[s].push(n);
                    }
                }
                None => errors.push(
                    i,
                    || format!("items[{i}].regions[{j}]"),
                    || format!("unknown region {region}"),
                ),
            }
        }
    })?;
    deserializer.end()?;
    Ok(read)
}

/// Keeps one line per SKU in a store's (ascending) lines: the later line wins, the
/// earlier is reported once. A store named twice by the same line counts once.
fn dedupe(
    lines_of: &[Line],
    lines: &mut Vec<u32>,
    last: &mut HashMap<u32, u32>,
    reported: &mut [bool],
    errors: &mut ItemErrors,
) {
    last.clear();
    lines.dedup();
    let mut duplicates = false;
    for &n in lines.iter() {
        if let Some(earlier) = last.insert(lines_of[n as usize].sku, n) {
            duplicates = true;
            let e = earlier as usize;
            if !reported[e] {
                reported[e] = true;
                errors.push(
                    e,
                    || format!("items[{e}].sku"),
                    || format!("replaced by items[{n}], a later line for the same SKU"),
                );
            }
        }
    }
    if duplicates {
        lines.retain(|&n| {
            let sku = lines_of[n as usize].sku;
            last.get(&sku) == Some(&n)
        });
    }
}

/// Plans a price batch into chunks (see the module docs).
pub async fn plan(
    tx: &mut Transaction<'static, Postgres>,
    ingest: ReceivedIngest,
    chunk_stores: usize,
) -> Result<(), HandlerError> {
    let stores = repo::stores(tx).await?;
    // Parsing a large batch is seconds of CPU: off the runtime's threads.
    let reading = tokio::task::spawn_blocking(move || {
        let expected_lines = usize::try_from(ingest.item_count).unwrap_or(0);
        let read = read_batch(&mut ingest.body(), &stores, expected_lines);
        (ingest, stores, read)
    });
    let (ingest, stores, read) = reading
        .await
        .map_err(|e| HandlerError::Retryable(format!("planning ingest: {e}")))?;
    let mut batch = match read {
        Ok(batch) => batch,
        Err(e) => return handler::fail_unreadable(tx, &ingest, Source::PriceChange, &e).await,
    };
    let mut last = HashMap::new();
    let mut reported = vec![false; batch.lines.len()];
    for lines in &mut batch.per_store {
        if lines.len() > 1 {
            lines.sort_unstable();
            dedupe(
                &batch.lines,
                lines,
                &mut last,
                &mut reported,
                &mut batch.errors,
            );
        }
    }
    drop(reported);
    // Chunks are written as they are cut: one chunk's arrays in memory at a time.
    let mut chunks = 0;
    let mut chunk = ChunkArrays::default();
    let strings = &batch.strings;
    let stores_with_lines: Vec<usize> = (0..stores.len())
        .filter(|&s| !batch.per_store[s].is_empty())
        .collect();
    for (k, &s) in stores_with_lines.iter().enumerate() {
        chunk.store_ids.push(stores[s].id);
        let position = chunk.store_ids.len() as i32;
        for &n in &batch.per_store[s] {
            let line = batch.lines[n as usize];
            chunk.item_store.push(position);
            chunk.skus.push(strings.get(line.sku));
            chunk.names.push(strings.get(line.name));
            chunk.price_units.push(line.price_units);
            chunk.currencies.push(strings.get(line.currency));
        }
        if chunk.store_ids.len() >= chunk_stores || k + 1 == stores_with_lines.len() {
            repo::insert_chunk(tx, ingest.id, chunks, &chunk).await?;
            chunks += 1;
            // Reused: a fresh set of arrays per chunk leaves the allocator holding the
            // freed ones (measured: the worker's peak RSS, docs/PERFORMANCE.md).
            chunk.clear();
        }
    }
    let events: Vec<IngestChunk> = (0..chunks)
        .map(|chunk_no| IngestChunk {
            ingest_id: ingest.id,
            chunk_no,
        })
        .collect();
    outbox::enqueue_many(tx, &events).await?;
    let errors = &batch.errors;
    let error_count = i32::try_from(errors.count).unwrap_or(i32::MAX);
    repo::mark_planned(tx, ingest.id, chunks, &errors.kept, error_count).await?;
    metrics::count(Source::PriceChange, "rejected", errors.count);
    tracing::info!(
        ingest_id = %ingest.id,
        lines = batch.lines.len(),
        chunks,
        errors = errors.count,
        "price batch planned"
    );
    Ok(())
}

/// `ingest.chunk`: applies one planned chunk (see the module docs).
pub struct ApplyChunk;

impl EventHandler<IngestChunk> for ApplyChunk {
    fn handle<'a>(
        &'a self,
        tx: &'a mut Transaction<'static, Postgres>,
        event: IngestChunk,
        _message: &'a Message,
    ) -> BoxFuture<'a, Result<(), HandlerError>> {
        Box::pin(async move { apply(tx, event.ingest_id, event.chunk_no).await })
    }

    fn on_dead<'a>(
        &'a self,
        tx: &'a mut Transaction<'static, Postgres>,
        event: Option<IngestChunk>,
        reason: &'a str,
    ) -> BoxFuture<'a, Result<(), sqlx::Error>> {
        Box::pin(async move {
            match event {
                Some(chunk) => {
                    handler::fail_dead(tx, chunk.ingest_id, Some(chunk.chunk_no), reason).await
                }
                None => Ok(()),
            }
        })
    }
}

async fn apply(
    tx: &mut Transaction<'static, Postgres>,
    ingest_id: IngestId,
    chunk_no: i32,
) -> Result<(), HandlerError> {
    let Some(chunk) = repo::lock_chunk(tx, ingest_id, chunk_no).await? else {
        return Err(HandlerError::Permanent(format!(
            "chunk {chunk_no} of ingest {ingest_id} does not exist"
        )));
    };
    if chunk.applied {
        return Ok(());
    }
    relabel::lock_stores(tx, &chunk.store_ids).await?;
    let effective = match (chunk.effective_at, chunk.effective_local) {
        (Some(at), _) => at.to_rfc3339(),
        (None, Some(local)) => format!("{local} store time"),
        (None, None) => "now".to_owned(),
    };
    let due = match (chunk.effective_at, chunk.effective_local) {
        (Some(at), _) => Due::At(at),
        (None, Some(local)) => Due::Local(local),
        (None, None) => Due::At(chrono::Utc::now()),
    };
    let title: String = format!("Relabel prices: batch {}", chunk.batch_id)
        .chars()
        .take(200)
        .collect();
    let description =
        format!("New shelf prices effective {effective}: relabel every item of this task.");
    let created = write::create_many(
        tx,
        &ManyTasks {
            stores: &chunk.store_ids,
            origin: Origin::PriceBatch(ingest_id),
            kind: TaskKind::PriceRelabel,
            title: &title,
            description: Some(&description),
            template: None,
            priority: Priority::Normal,
            review_required: false,
            due,
            created_by: &chunk.received_by,
        },
    )
    .await?;
    // Each store's task, aligned with the chunk's stores (the items name them by position).
    let by_store: HashMap<StoreId, TaskId> = created.iter().map(|t| (t.store_id, t.id)).collect();
    let tasks: Vec<TaskId> = match chunk
        .store_ids
        .iter()
        .map(|store| by_store.get(store).copied())
        .collect::<Option<Vec<_>>>()
    {
        Some(tasks) => tasks,
        // Only if the chunk was half-applied by hand: use the tasks that exist.
        None => relabel::relabel_tasks(tx, ingest_id, &chunk.store_ids).await?,
    };
    let beside = relabel::active_items_beside(tx, ingest_id, &chunk.store_ids).await?;
    let superseded = if beside.older {
        relabel::supersede_items(tx, ingest_id, chunk_no).await?
    } else {
        Vec::new()
    };
    let mut written =
        relabel::insert_items(tx, ingest_id, chunk_no, &tasks, beside.not_older).await?;
    // Items of closed tasks were `closed`, not superseded: their tasks are history.
    let superseded_items: u64 = superseded.iter().map(|(_, items)| *items as u64).sum();
    let mut touched: Vec<TaskId> = superseded.iter().map(|(task, _)| *task).collect();
    let mut late = 0;
    if written < u64::try_from(chunk.item_count).unwrap_or(0) {
        // A newer batch reached some of these stores first: its items stay active.
        late = relabel::insert_items_already_superseded(tx, ingest_id, chunk_no, &tasks).await?;
        written += late;
        touched.extend(tasks.iter().copied());
    }
    touched.sort_unstable();
    touched.dedup();
    let emptied = relabel::cancel_emptied(tx, &touched, ingest_id).await?;
    let created_ids: Vec<TaskId> = created.iter().map(|t| t.id).collect();
    let counts = Counts {
        tasks_created: created.len() as i32,
        tasks_updated: touched
            .iter()
            .filter(|t| !emptied.contains(t) && !created_ids.contains(t))
            .count() as i32,
        tasks_superseded: emptied.len() as i32,
        tasks_cancelled: 0,
        items_created: written as i32,
        items_superseded: (superseded_items + late) as i32,
    };
    repo::mark_chunk_applied(tx, ingest_id, chunk_no).await?;
    repo::record_progress(tx, ingest_id, &counts, &[], true, false).await?;
    metrics::count(Source::PriceChange, "applied", written as usize);
    Ok(())
}
