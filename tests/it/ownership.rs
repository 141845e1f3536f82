//! One owner per table and per event (docs/ARCHITECTURE.md): only `src/tasks/` writes
//! `tasks`, `task_items` and `task_events`, and every event type the code declares is in
//! the catalogue of routing keys the worker knows about.

use std::{collections::BTreeSet, fs, path::Path};

fn sources(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in fs::read_dir(dir).expect("read dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn all_sources() -> Vec<(String, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    sources(&root.join("src"), &mut files);
    files
        .into_iter()
        .map(|p| {
            let text = fs::read_to_string(&p).expect("read source");
            let name = p
                .strip_prefix(root)
                .expect("under the root")
                .to_string_lossy()
                .into_owned();
            (name, text)
        })
        .collect()
}

/// `INSERT INTO t`, `UPDATE t`, `DELETE FROM t` for the task tables, in any case and
/// spacing, in `text`.
fn task_table_writes(text: &str) -> Vec<String> {
    let words: Vec<String> = text
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
        .map(str::to_ascii_lowercase)
        .collect();
    let tables = ["tasks", "task_items", "task_events"];
    let mut found = Vec::new();
    for (i, word) in words.iter().enumerate() {
        let target = match word.as_str() {
            "insert" if words.get(i + 1).is_some_and(|w| w == "into") => words.get(i + 2),
            "delete" if words.get(i + 1).is_some_and(|w| w == "from") => words.get(i + 2),
            "update" => words.get(i + 1),
            _ => None,
        };
        if let Some(table) = target.filter(|t| tables.contains(&t.as_str())) {
            found.push(format!("{word} … {table}"));
        }
    }
    found
}

#[test]
fn the_scan_finds_writes_however_they_are_spelt() {
    assert_eq!(task_table_writes("insert   into\n tasks (id)").len(), 1);
    assert_eq!(
        task_table_writes("WITH x AS (UPDATE task_items o SET").len(),
        1
    );
    assert_eq!(task_table_writes("DELETE FROM task_events WHERE").len(), 1);
    assert!(task_table_writes("SELECT * FROM tasks; UPDATE stores SET").is_empty());
}

#[test]
fn only_the_tasks_module_writes_task_tables() {
    let offenders: Vec<String> = all_sources()
        .into_iter()
        .filter(|(name, _)| !name.starts_with("src/tasks/"))
        .flat_map(|(name, text)| {
            task_table_writes(&text)
                .into_iter()
                .map(move |write| format!("{name}: {write}"))
        })
        .collect();
    assert!(
        offenders.is_empty(),
        "task tables written outside src/tasks/ (call its write API instead): {offenders:#?}"
    );
}

/// Routing keys declared in the source: `const ROUTING_KEY: &'static str = "…"` and the
/// `Name => "…",` lines of `task_events!`.
fn declared_routing_keys() -> BTreeSet<String> {
    let mut keys = BTreeSet::new();
    for (name, text) in all_sources() {
        for line in text.lines() {
            let line = line.trim();
            let declares = line.starts_with("const ROUTING_KEY: &'static str = \"")
                || (name == "src/tasks/events.rs" && line.contains(" => \""));
            let quoted = declares.then(|| line.split('"').nth(1)).flatten();
            if let Some(key) = quoted.filter(|k| k.contains('.')) {
                keys.insert(key.to_owned());
            }
        }
    }
    keys
}

#[test]
fn every_declared_event_is_in_the_catalogue() {
    let declared = declared_routing_keys();
    let catalogue: BTreeSet<String> = storeops::roles::worker::emitted_routing_keys()
        .into_iter()
        .map(str::to_owned)
        .collect();
    assert!(declared.contains("task.updated"), "{declared:?}");
    assert_eq!(declared, catalogue);
}
