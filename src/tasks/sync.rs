//! Sync for store apps on weak networks (PRODUCT §4 "Sync"): the store list's version,
//! which conditional GETs compare without running the list query, and the changes feed.
//!
//! Both come from triggers on `tasks` (and `staff`), so every writer keeps them true:
//! each statement logs its changed tasks in `task_changes` with its transaction's id,
//! and at commit the transaction bumps `store_versions` once for every store it changed
//! (migration 20261207000021).
//!
//! The feed never skips a change whatever order transactions commit in: it reads the log
//! in (transaction id, sequence) order, but only below the oldest transaction still
//! running (`pg_snapshot_xmin`). Every row below that bound belongs to a transaction
//! that has finished, so nothing can appear behind a position once a reader passed it;
//! rows of transactions still running wait for the next read.

use std::collections::HashMap;

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sqlx::{PgConnection, PgPool};
use utoipa::ToSchema;

use super::{TaskStatus, dto::TaskSummaryDto, repo};
use crate::ids::{StaffId, StoreId, TaskId};

/// The statement of [`store_version`], the store `$1` (no row before its first write);
/// the store task list reads it inside its own statement, whose `$1` is the store too.
pub(super) const STORE_VERSION: &str = "SELECT version FROM store_versions WHERE store_id = $1";

/// The version of a store's task lists: any change of its tasks or staff bumps it.
pub async fn store_version(db: &PgPool, store: StoreId) -> Result<i64, sqlx::Error> {
    Ok(sqlx::query_scalar(STORE_VERSION)
        .bind(store)
        .fetch_optional(db)
        .await?
        .unwrap_or(0))
}

/// Where a feed reader is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Token {
    /// Still reading the store's tasks as they are (the first sync), after task `after`;
    /// the log is to be read from transaction `from` once they are read.
    Snapshot { from: i64, after: Option<TaskId> },
    /// Read the log up to and including (`xid`, `seq`).
    Log { xid: i64, seq: i64 },
}

impl Token {
    pub fn encode(self) -> String {
        let text = match self {
            Self::Snapshot { from, after } => format!(
                "s.{from}.{}",
                after.map_or_else(String::new, |id| id.0.simple().to_string())
            ),
            Self::Log { xid, seq } => format!("c.{xid}.{seq}"),
        };
        URL_SAFE_NO_PAD.encode(text)
    }

    pub fn decode(raw: &str) -> Option<Self> {
        if raw.len() > 200 {
            return None;
        }
        let text = String::from_utf8(URL_SAFE_NO_PAD.decode(raw).ok()?).ok()?;
        let mut parts = text.splitn(3, '.');
        let kind = parts.next()?;
        let first: i64 = parts.next()?.parse().ok()?;
        let second = parts.next()?;
        match kind {
            "s" => Some(Self::Snapshot {
                from: first,
                after: match second {
                    "" => None,
                    id => Some(TaskId(uuid::Uuid::try_parse(id).ok()?)),
                },
            }),
            "c" => Some(Self::Log {
                xid: first,
                seq: second.parse().ok()?,
            }),
            _ => None,
        }
        .filter(|token| match token {
            Self::Snapshot { from, .. } => *from >= 0,
            Self::Log { xid, seq } => *xid >= 0 && *seq >= 0,
        })
    }

    fn xid(self) -> i64 {
        match self {
            Self::Snapshot { from, .. } => from,
            Self::Log { xid, .. } => xid,
        }
    }
}

/// Why a task left the synced view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RemovalReason {
    /// Done: it stays in the store's history and reports, not in its work.
    Done,
    Cancelled,
    Expired,
    /// Assigned to someone else (a feed read for one assignee).
    Reassigned,
    /// Deleted by pruning, long after it closed.
    Pruned,
}

/// A task that left the view: the app drops it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct RemovedTask {
    pub task_id: TaskId,
    pub reason: RemovalReason,
}

/// One page of the feed.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ChangesPage {
    /// Tasks that are new or changed, as the store task list shows them.
    pub changes: Vec<TaskSummaryDto>,
    /// Tasks that left the view since the token.
    pub removed: Vec<RemovedTask>,
    /// Pass as `since` to continue; keep it for the next sync.
    pub next_token: String,
    /// Another page is ready now; false: the app is in sync (until the next change).
    pub more: bool,
}

/// The synced view: the store's work still to finish (open, in progress, submitted for
/// review); a task leaves it when it is done, cancelled or expires.
fn removal(status: TaskStatus) -> Option<RemovalReason> {
    match status {
        TaskStatus::Done => Some(RemovalReason::Done),
        TaskStatus::Cancelled => Some(RemovalReason::Cancelled),
        TaskStatus::Expired => Some(RemovalReason::Expired),
        TaskStatus::Open | TaskStatus::InProgress | TaskStatus::Submitted => None,
    }
}

/// An associate's view: work assigned to them or to nobody.
fn assigned_away(task_assignee: Option<StaffId>, assignee: Option<StaffId>) -> bool {
    matches!((task_assignee, assignee), (Some(theirs), Some(mine)) if theirs != mine)
}

#[derive(Debug, thiserror::Error)]
pub enum FeedError {
    /// The token is older than the log keeps: start again without one.
    #[error("this sync token is older than the changes kept; sync again without `since`")]
    Gone,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// The oldest transaction still running: rows of older ones are final.
async fn watermark(conn: &mut PgConnection) -> Result<(i64, i64), sqlx::Error> {
    sqlx::query_as(
        "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint,
                (SELECT pruned_below FROM task_changes_horizon)",
    )
    .fetch_one(conn)
    .await
}

/// One page of a store's feed from `since` (none: a first sync).
pub async fn feed(
    db: &PgPool,
    store: StoreId,
    since: Option<Token>,
    assignee: Option<StaffId>,
    limit: i64,
) -> Result<ChangesPage, FeedError> {
    let mut conn = db.acquire().await?;
    let (xmin, pruned_below) = watermark(&mut conn).await?;
    let since = since.unwrap_or(Token::Snapshot {
        from: xmin,
        after: None,
    });
    if since.xid() < pruned_below {
        return Err(FeedError::Gone);
    }
    match since {
        Token::Snapshot { from, after } => {
            snapshot_page(&mut conn, store, from, after, assignee, limit).await
        }
        Token::Log { xid, seq } => {
            log_page(&mut conn, store, (xid, seq), xmin, assignee, limit).await
        }
    }
}

/// The first sync: the view as it is now, by task id. Changes made while it is read
/// are in the log after `from` (the oldest transaction running when it began), which
/// the feed reads next: a task may come twice, never not at all.
async fn snapshot_page(
    conn: &mut PgConnection,
    store: StoreId,
    from: i64,
    after: Option<TaskId>,
    assignee: Option<StaffId>,
    limit: i64,
) -> Result<ChangesPage, FeedError> {
    let rows = repo::in_view_after(conn, store, after, assignee, limit + 1).await?;
    let more = rows.len() > usize::try_from(limit).unwrap_or(usize::MAX);
    let rows: Vec<_> = rows
        .into_iter()
        .take(usize::try_from(limit).unwrap_or(0))
        .collect();
    let next = match (more, rows.last()) {
        (true, Some(last)) => Token::Snapshot {
            from,
            after: Some(last.id),
        },
        // Read to the end: from now on, the log.
        _ => Token::Log { xid: from, seq: 0 },
    };
    Ok(ChangesPage {
        changes: rows.into_iter().map(TaskSummaryDto::from).collect(),
        removed: Vec::new(),
        next_token: next.encode(),
        more,
    })
}

#[derive(sqlx::FromRow)]
struct Change {
    xid: i64,
    seq: i64,
    task_id: TaskId,
}

async fn log_page(
    conn: &mut PgConnection,
    store: StoreId,
    after: (i64, i64),
    xmin: i64,
    assignee: Option<StaffId>,
    limit: i64,
) -> Result<ChangesPage, FeedError> {
    let changes: Vec<Change> = sqlx::query_as(
        "SELECT xid, seq, task_id FROM task_changes
          WHERE store_id = $1 AND (xid, seq) > ($2, $3) AND xid < $4
          ORDER BY xid, seq LIMIT $5",
    )
    .bind(store)
    .bind(after.0)
    .bind(after.1)
    .bind(xmin)
    .bind(limit)
    .fetch_all(&mut *conn)
    .await?;
    let more = changes.len() == usize::try_from(limit).unwrap_or(usize::MAX);
    let next = changes.last().map_or(
        Token::Log {
            xid: after.0,
            seq: after.1,
        },
        |last| Token::Log {
            xid: last.xid,
            seq: last.seq,
        },
    );
    // Each task once, where it last changed in the page.
    let mut order: Vec<TaskId> = Vec::new();
    let mut last_seen: HashMap<TaskId, usize> = HashMap::new();
    for change in &changes {
        if let Some(at) = last_seen.get(&change.task_id) {
            order[*at] = TaskId(uuid::Uuid::nil());
        }
        last_seen.insert(change.task_id, order.len());
        order.push(change.task_id);
    }
    order.retain(|id| !id.0.is_nil());
    // Most polls find nothing new: no second query for them.
    let current: HashMap<TaskId, repo::TaskSummaryRow> = if order.is_empty() {
        HashMap::new()
    } else {
        repo::summaries(conn, store, &order)
            .await?
            .into_iter()
            .map(|row| (row.id, row))
            .collect()
    };
    let mut page = ChangesPage {
        changes: Vec::new(),
        removed: Vec::new(),
        next_token: next.encode(),
        more,
    };
    for id in order {
        match current.get(&id) {
            None => page.removed.push(RemovedTask {
                task_id: id,
                reason: RemovalReason::Pruned,
            }),
            Some(row) => match removal(row.status) {
                Some(reason) => page.removed.push(RemovedTask {
                    task_id: id,
                    reason,
                }),
                None if assigned_away(row.assignee_id, assignee) => {
                    page.removed.push(RemovedTask {
                        task_id: id,
                        reason: RemovalReason::Reassigned,
                    });
                }
                None => page.changes.push(TaskSummaryDto::from(row.clone())),
            },
        }
    }
    Ok(page)
}

/// Change log rows older than `before` go, a batch at a time; the horizon rises past
/// them, so tokens from before it answer 410. Answers how many went.
pub async fn prune_changes(
    conn: &mut PgConnection,
    before: DateTime<Utc>,
    limit: i64,
) -> Result<u64, sqlx::Error> {
    let deleted: i64 = sqlx::query_scalar(
        "WITH gone AS (
            DELETE FROM task_changes WHERE (store_id, xid, seq) IN (
                SELECT store_id, xid, seq FROM task_changes WHERE changed_at < $1
                 ORDER BY changed_at LIMIT $2)
            RETURNING xid
         ), horizon AS (
            UPDATE task_changes_horizon SET pruned_below = greatest(pruned_below, (SELECT max(xid) + 1 FROM gone))
             WHERE EXISTS (SELECT 1 FROM gone)
         )
         SELECT count(*) FROM gone",
    )
    .bind(before)
    .bind(limit)
    .fetch_one(conn)
    .await?;
    Ok(u64::try_from(deleted).unwrap_or(0))
}

/// Change log rows older than `before` (a dry run's count).
pub async fn count_changes(db: &PgPool, before: DateTime<Utc>) -> Result<u64, sqlx::Error> {
    let n: i64 = sqlx::query_scalar("SELECT count(*) FROM task_changes WHERE changed_at < $1")
        .bind(before)
        .fetch_one(db)
        .await?;
    Ok(u64::try_from(n).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_and_garbage_is_refused() {
        let id = TaskId(uuid::Uuid::now_v7());
        for token in [
            Token::Snapshot {
                from: 42,
                after: None,
            },
            Token::Snapshot {
                from: 42,
                after: Some(id),
            },
            Token::Log { xid: 7, seq: 99 },
        ] {
            assert_eq!(Token::decode(&token.encode()), Some(token));
        }
        for raw in [
            "",
            "x",
            "bm9wZQ",
            &URL_SAFE_NO_PAD.encode("c.-1.0"),
            &URL_SAFE_NO_PAD.encode("s.1.zz"),
        ] {
            assert_eq!(Token::decode(raw), None, "{raw}");
        }
    }

    #[test]
    fn the_view_keeps_the_days_work_and_drops_what_cannot_be_done() {
        assert_eq!(removal(TaskStatus::Submitted), None);
        assert_eq!(removal(TaskStatus::Done), Some(RemovalReason::Done));
        for status in TaskStatus::UNFINISHED {
            assert_eq!(removal(*status), None, "{status:?}");
        }
        assert_eq!(
            removal(TaskStatus::Cancelled),
            Some(RemovalReason::Cancelled)
        );
        let (me, you) = (
            StaffId(uuid::Uuid::from_u128(1)),
            StaffId(uuid::Uuid::from_u128(2)),
        );
        assert!(assigned_away(Some(you), Some(me)));
        assert!(!assigned_away(None, Some(me)));
        assert!(!assigned_away(Some(you), None));
    }
}
