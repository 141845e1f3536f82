#!/usr/bin/env python3
"""A store app's day, through a client generated from storeops' OpenAPI document only.

Run by scripts/test-client, which generates the package `storeops_client` with
openapi-python-client from what `storeops openapi` prints and puts it on PYTHONPATH.
Every HTTP request below goes through that generated client (no hand-written request,
no raw JSON); only the set-up outside the API uses the binary (a database of the run's
own, `storeops all`, `storeops token`). The day (issue 28, PRODUCT §4 "Sync"):

  1. the manager plans the morning: three tasks, two of them for one associate;
  2. the associate's app syncs for the first time on the changes feed, two at a time;
  3. it polls the store's task list and one task conditionally: ETag, then 304 without
     a body while nothing changed;
  4. it starts a task: the old ETag no longer matches and the feed brings the change;
  5. it completes the task with an Idempotency-Key, and resends it after "reconnecting":
     the same answer, and the task's history has one completion;
  6. the manager cancels a task while the app is offline; the app's completion answers
     409 with the task as it is now (cancelled);
  7. back online, the feed names both tasks as removed from the associate's work (done,
     cancelled).

The generated client raises on any status the document does not list for an operation.
The last line is `store-app-day: N passed, N failed`; the exit code is 0 only when all
passed.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable
from uuid import UUID

from storeops_client import AuthenticatedClient
from storeops_client.api.stores import list_staff, list_stores
from storeops_client.api.tasks import (
    cancel_task,
    complete_task,
    create_task,
    get_task,
    list_store_tasks,
    start_task,
    store_changes,
    task_history,
)
from storeops_client.models import (
    ChangesPage,
    CompleteBody,
    EmptyBody,
    NewTaskBody,
    ReasonBody,
    StaffRole,
    TaskConflict,
    TaskDto,
    TaskStatus,
)
from storeops_client.types import UNSET, Response

import local_storeops
from local_storeops import Failed, Server

JWT_SECRET = "storeops-store-app-day-secret-0123456789abcdef"


def log(message: str) -> None:
    print(f"store-app-day: {message}", file=sys.stderr, flush=True)


class Day:
    """The checks of the day, counted."""

    def __init__(self) -> None:
        self.passed = 0

    def check(self, condition: bool, what: str) -> None:
        if not condition:
            raise Failed(what)
        self.passed += 1
        log(f"ok: {what}")

    def answer(self, response: Response[Any], status: int, what: str) -> Any:
        """The parsed body of a response that must have `status`."""
        if response.status_code != status:
            raise Failed(f"{what}: expected {status}, got {int(response.status_code)}: {response.content[:300]!r}")
        self.passed += 1
        log(f"ok: {what} ({status})")
        return response.parsed


def client(base: str, token: str) -> AuthenticatedClient:
    # Undocumented statuses raise: the document must list every answer the day gets.
    return AuthenticatedClient(base_url=base, token=token, raise_on_unexpected_status=True, timeout=30.0)


def sync(day: Day, app: AuthenticatedClient, store: UUID, me: UUID, since: str | None, what: str
         ) -> tuple[str, dict[UUID, Any], dict[UUID, str]]:
    """Reads the feed from `since` (none: a first sync) until it says the app is in sync."""
    changed: dict[UUID, Any] = {}
    removed: dict[UUID, str] = {}
    pages = 0
    while True:
        page = day.answer(
            store_changes.sync_detailed(store, client=app, since=since or UNSET, assignee=me, limit=2),
            200, f"{what}: feed page {pages + 1}")
        assert isinstance(page, ChangesPage)
        pages += 1
        for task in page.changes:
            changed[task.id] = task
        for gone in page.removed:
            removed[gone.task_id] = gone.reason.value
        since = page.next_token
        if not page.more:
            return since, changed, removed
        if pages > 100:
            raise Failed(f"{what}: the feed did not end within 100 pages")


def sync_until(day: Day, app: AuthenticatedClient, store: UUID, me: UUID, since: str, what: str,
               arrived: Callable[[dict[UUID, Any], dict[UUID, str]], bool], wait_s: float = 30.0
               ) -> tuple[str, dict[UUID, Any], dict[UUID, str]]:
    """Syncs from `since` again and again, as an app does, until what it waits for has
    arrived or `wait_s` has passed: the feed serves a change once every older transaction
    of the cluster has finished, so other work on the same PostgreSQL delays it."""
    changed: dict[UUID, Any] = {}
    removed: dict[UUID, str] = {}
    deadline = time.monotonic() + wait_s
    while True:
        since, more, gone = sync(day, app, store, me, since, what)
        changed.update(more)
        removed.update(gone)
        if arrived(changed, removed) or time.monotonic() > deadline:
            return since, changed, removed
        time.sleep(0.5)


def the_day(day: Day, base: str, binary: Path) -> None:
    hq = client(base, local_storeops.token(binary, JWT_SECRET, "hq", "store-app-day-hq@example.com"))
    store = day.answer(list_stores.sync_detailed(client=hq, limit=1), 200, "HQ lists a store").items[0]
    staff = day.answer(list_staff.sync_detailed(store.id, client=hq, limit=200), 200, "HQ lists its staff").items
    associates = [s.id for s in staff if s.role == StaffRole.ASSOCIATE and s.active]
    managers = [s.id for s in staff if s.role == StaffRole.STORE_MANAGER and s.active]
    if len(associates) < 2 or not managers:
        raise Failed(f"store {store.code} has fewer than two associates or no manager")
    me = associates[0]
    manager = client(base, local_storeops.token(binary, JWT_SECRET, "store_manager", str(managers[0]),
                                                store=str(store.id)))
    app = client(base, local_storeops.token(binary, JWT_SECRET, "associate", str(me), store=str(store.id)))

    # 1. The manager plans the morning.
    def create(title: str, assignee: UUID | None) -> TaskDto:
        body = NewTaskBody(title=title, assignee_id=assignee if assignee else UNSET)
        return day.answer(create_task.sync_detailed(store.id, client=manager, body=body), 201,
                          f"the manager creates {title!r}")

    tills = create("Count the tills", me)
    shelves = create("Face the shelves", None)
    fridges = create("Check the fridge temperatures", me)

    # 2. The app's first sync: the associate's work and the store's unassigned work.
    token, changed, removed = sync(day, app, store.id, me, None, "first sync")
    day.check({tills.id, shelves.id, fridges.id} <= changed.keys() and not removed,
              "the first sync brings the associate's and the unassigned tasks, nothing removed")
    _, again, gone = sync(day, app, store.id, me, token, "sync again")
    # The feed serves a change once every older transaction of the cluster has finished,
    # and may name a task again (PRODUCT §4): while other work runs on the same PostgreSQL
    # (make test fuzzes beside this), a sync right after may repeat what the first
    # brought, never anything else.
    day.check(not gone and all(changed.get(t) == summary for t, summary in again.items()),
              f"a sync right after brings nothing new ({len(again)} repeated as they were)")

    # 3. Conditional polls: ETag, then 304 without a body.
    full = list_store_tasks.sync_detailed(store.id, client=app, limit=200)
    listed = day.answer(full, 200, "the app polls the store's task list")
    etag = full.headers.get("etag", "")
    day.check(etag.startswith('"') and {tills.id, shelves.id, fridges.id} <= {t.id for t in listed.items},
              f"the list names the three tasks, tagged {etag}")
    poll = list_store_tasks.sync_detailed(store.id, client=app, limit=200, if_none_match=etag)
    day.answer(poll, 304, "the next poll, with If-None-Match")
    day.check(poll.content == b"" and poll.headers.get("etag") == etag, "304 has no body and the same ETag")
    one = get_task.sync_detailed(tills.id, client=app)
    day.answer(one, 200, "the app reads a task")
    task_tag = one.headers.get("etag", "")
    day.answer(get_task.sync_detailed(tills.id, client=app, if_none_match=task_tag), 304,
               "the task again, with If-None-Match")

    # 4. Start: the list's tag moves on, and the feed brings the change.
    # (openapi-python-client sends its UNSET marker for an optional body left out: pass one.)
    started = day.answer(start_task.sync_detailed(tills.id, client=app, body=EmptyBody(),
                                                  idempotency_key=f"start-{tills.id}"),
                         200, "the associate starts 'Count the tills'")
    day.check(started.status == TaskStatus.IN_PROGRESS, "the task is in progress")
    after = list_store_tasks.sync_detailed(store.id, client=app, limit=200, if_none_match=etag)
    day.answer(after, 200, "a poll with the old ETag after the start")
    day.check(after.headers.get("etag") not in ("", etag), "the list has a new ETag")
    def started_arrived(changed: dict[UUID, Any], _removed: dict[UUID, str]) -> bool:
        return tills.id in changed and changed[tills.id].status == TaskStatus.IN_PROGRESS

    token, changed, removed = sync_until(day, app, store.id, me, token, "sync after the start", started_arrived)
    # (Removals of tasks the app never held may come too, when a transaction older than the
    # first sync's token delayed the seed's changes: the app ignores them.)
    day.check(started_arrived(changed, removed) and not removed.keys() & {tills.id, shelves.id, fridges.id},
              "the feed brings the started task")

    # 5. Complete with an Idempotency-Key; the app resends it after reconnecting.
    key = f"complete-{tills.id}"
    done = CompleteBody(note="Three tills, all counted")
    first = complete_task.sync_detailed(tills.id, client=app, body=done, idempotency_key=key)
    completed = day.answer(first, 200, "the associate completes it with an Idempotency-Key")
    day.check(completed.status == TaskStatus.DONE, "the task is done")
    replay = complete_task.sync_detailed(tills.id, client=app, body=done, idempotency_key=key)
    day.answer(replay, 200, "the same completion, resent")
    day.check(replay.content == first.content and replay.parsed.to_dict() == completed.to_dict(),
              "the replay answers the first answer")
    history = day.answer(task_history.sync_detailed(tills.id, client=app, limit=200), 200, "the task's history")
    day.check(sum(1 for e in history.items if e.kind == "completed") == 1, "one completion in the history")

    # 6. Cancelled while the app was offline: 409 with the task as it is now.
    day.answer(cancel_task.sync_detailed(fridges.id, client=manager, body=ReasonBody(reason="Done by the night shift")),
               200, "the manager cancels 'Check the fridge temperatures'")
    conflict = day.answer(
        complete_task.sync_detailed(fridges.id, client=app, body=CompleteBody(note="2-4 °C everywhere"),
                                    idempotency_key=f"complete-{fridges.id}"),
        409, "the offline completion of the cancelled task")
    day.check(isinstance(conflict, TaskConflict) and conflict.current.id == fridges.id
              and conflict.current.status == TaskStatus.CANCELLED,
              "the conflict carries the task as it is now (a TaskDto): cancelled")

    # 7. Back online: both tasks have left the associate's work.
    token, changed, removed = sync_until(day, app, store.id, me, token, "sync after reconnecting",
                                         lambda _, removed: {tills.id, fridges.id} <= removed.keys())
    held = {t: removed.get(t) for t in (tills.id, shelves.id, fridges.id)}
    day.check(held == {tills.id: "done", shelves.id: None, fridges.id: "cancelled"},
              f"the feed names the done and the cancelled task as removed ({held})")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bin", default=os.environ.get("STOREOPS_BIN", "target/debug/storeops"))
    parser.add_argument("--log-dir", help="keep the server's log here (default: a temporary directory)")
    args = parser.parse_args()
    for var in ("DATABASE_URL", "AMQP_URL"):
        if not os.environ.get(var):
            parser.error(f"{var} is not set (run through scripts/test-client)")

    work = Path(tempfile.mkdtemp(prefix="storeops-app-day-"))
    log_dir = Path(args.log_dir) if args.log_dir else work
    log_dir.mkdir(parents=True, exist_ok=True)
    # A private copy: the binary may be rebuilt while this runs.
    binary = work / "storeops"
    shutil.copy2(args.bin, binary)
    pid = os.getpid()
    db_name = f"storeops_appday_{pid}"
    prefix = f"storeops-appday-{pid}"
    local_storeops.drop_stale_databases("storeops_appday_", log)
    day = Day()
    server: Server | None = None
    failure = ""
    started = time.monotonic()
    try:
        env = local_storeops.run_env(db_name, secret=JWT_SECRET, topology_prefix=prefix,
                                     RUST_LOG=os.environ.get("APP_DAY_RUST_LOG", "warn"))
        local_storeops.create_seeded_database(binary, env, db_name, stores=2, days=1)
        server = Server(binary, env, log_dir / "server.log", ["--queues", "campaigns,ingest"])
        server.start()
        log(f"storeops all on {server.base}, database {db_name}")
        the_day(day, server.base, binary)
    except Failed as e:
        failure = str(e)
    except Exception:  # noqa: BLE001 - a generated client's error is a failed day
        failure = traceback.format_exc()
    finally:
        if server is not None:
            server.stop()
        local_storeops.drop_database(db_name, log)
        local_storeops.delete_queues(prefix, log)
        binary.unlink(missing_ok=True)
        if failure and not args.log_dir:
            log(f"server log kept in {log_dir}")
        elif not args.log_dir:
            shutil.rmtree(work, ignore_errors=True)
    if failure:
        log(f"FAILED: {failure}")
    log(f"{day.passed} checks passed in {time.monotonic() - started:.1f} s")
    print(f"store-app-day: {0 if failure else 1} passed, {1 if failure else 0} failed")
    return 1 if failure else 0


if __name__ == "__main__":
    sys.exit(main())
