//! Dashboards and alerts only query metrics the code exports (PRODUCT §10: metric names
//! are a contract). Every `storeops_*` name in dashboards/ must be declared in src/.

use std::{collections::BTreeSet, fs, path::Path};

fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = text.as_bytes();
    let mut i = 0;
    while let Some(pos) = text[i..].find("storeops_") {
        let start = i + pos;
        let preceded_by_word =
            start > 0 && (bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let end = text[start..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .map_or(text.len(), |e| start + e);
        if !preceded_by_word {
            names.insert(text[start..end].to_owned());
        }
        i = end;
    }
    names
}

fn files(dir: &Path, extensions: &[&str], out: &mut Vec<std::path::PathBuf>) {
    for entry in fs::read_dir(dir).expect("read dir").flatten() {
        let path = entry.path();
        if path.is_dir() {
            files(&path, extensions, out);
        } else if path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| extensions.contains(&e))
        {
            out.push(path);
        }
    }
}

#[test]
fn every_dashboard_and_alert_metric_is_exported_by_the_code() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut sources = Vec::new();
    files(&root.join("src"), &["rs"], &mut sources);
    let exported: BTreeSet<String> = sources
        .iter()
        .flat_map(|p| metric_names(&fs::read_to_string(p).expect("read source")))
        .collect();
    assert!(
        exported.contains("storeops_http_requests_total"),
        "{exported:?}"
    );

    let mut queries = Vec::new();
    files(
        &root.join("dashboards"),
        &["json", "yaml", "yml"],
        &mut queries,
    );
    assert!(
        !queries.is_empty(),
        "dashboards/ has no dashboards or rules"
    );
    let mut used = 0;
    for path in queries {
        // Unit-test fixtures may name series freely; they are checked by promtool.
        if path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().contains("_test"))
        {
            continue;
        }
        for name in metric_names(&fs::read_to_string(&path).expect("read dashboard")) {
            let base = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix).filter(|b| exported.contains(*b)))
                .unwrap_or(&name);
            assert!(
                exported.contains(base),
                "{} queries {name}, which the code does not export",
                path.display()
            );
            used += 1;
        }
    }
    assert!(used > 0, "no storeops_ metric is used by any dashboard");
}
