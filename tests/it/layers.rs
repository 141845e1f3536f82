//! The module graph: which top-level module of `src/` may use which is written once, in
//! docs/ARCHITECTURE.md ("Layers"), and this test holds the code to it exactly. An
//! import the table does not allow fails, and so does an allowed edge the code no
//! longer has (the table stays true); the table itself must have no cycle.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::Path,
};

type Graph = BTreeMap<String, BTreeSet<String>>;

/// The "may use" table between the `<!-- layers:… -->` markers of ARCHITECTURE.md:
/// a Markdown row `| module | a, b, c |` (or `—` for none) per module.
fn allowed(architecture: &str) -> Graph {
    let start = architecture
        .find("<!-- layers:begin -->")
        .expect("ARCHITECTURE.md has <!-- layers:begin -->");
    let end = architecture
        .find("<!-- layers:end -->")
        .expect("ARCHITECTURE.md has <!-- layers:end -->");
    let mut graph = Graph::new();
    for line in architecture[start..end].lines() {
        // A table row: | `module` | a, b, c |  (— for none).
        let cells: Vec<&str> = line
            .trim()
            .trim_matches('|')
            .split('|')
            .map(str::trim)
            .collect();
        let [module, uses] = cells[..] else {
            continue;
        };
        if uses == "may use" {
            continue; // the header
        }
        let module = module.trim_matches('`');
        if module.is_empty() || !module.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
            continue;
        }
        let targets = uses
            .split(',')
            .map(|u| u.trim().trim_matches('`').to_owned())
            .filter(|u| !u.is_empty() && u != "—")
            .collect();
        assert!(
            graph.insert(module.to_owned(), targets).is_none(),
            "{module} is listed twice"
        );
    }
    graph
}

/// Source text without comments (and character literals, which could hold a quote).
fn code_only(source: &str) -> String {
    let bytes = source.as_bytes();
    let mut out = String::with_capacity(source.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                let mut depth = 0;
                while i < bytes.len() {
                    if bytes[i] == b'/' && bytes.get(i + 1) == Some(&b'*') {
                        depth += 1;
                        i += 2;
                    } else if bytes[i] == b'*' && bytes.get(i + 1) == Some(&b'/') {
                        depth -= 1;
                        i += 2;
                        if depth == 0 {
                            break;
                        }
                    } else {
                        i += 1;
                    }
                }
            }
            b'r' if matches!(bytes.get(i + 1), Some(b'"' | b'#'))
                && (i == 0 || !(bytes[i - 1].is_ascii_alphanumeric() || bytes[i - 1] == b'_')) =>
            {
                let mut j = i + 1;
                let mut hashes = 0;
                while bytes.get(j) == Some(&b'#') {
                    hashes += 1;
                    j += 1;
                }
                if bytes.get(j) != Some(&b'"') {
                    out.push('r');
                    i += 1;
                    continue;
                }
                j += 1;
                let closing: Vec<u8> = std::iter::once(b'"')
                    .chain(std::iter::repeat_n(b'#', hashes))
                    .collect();
                let content = j;
                while j < bytes.len() && !bytes[j..].starts_with(&closing) {
                    j += 1;
                }
                out.push_str(&source[content..j]);
                i = j + closing.len();
            }
            b'"' => {
                // Kept: serde's `with = "crate::…"` paths in strings are real uses, and
                // no other string of ours names `crate::`. Skipped as a unit, so a `//`
                // inside (a URL) is not a comment.
                let content = i + 1;
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                out.push(' ');
                out.push_str(&source[content..i.min(bytes.len())]);
                out.push(' ');
                i += 1;
            }
            b'\''
                if bytes.get(i + 2) == Some(&b'\'')
                    || (bytes.get(i + 1) == Some(&b'\\')
                        && bytes[i..].iter().skip(2).take(10).any(|b| *b == b'\'')) =>
            {
                // A character literal ('"', '\n', '\u{..}'); lifetimes have no closing quote.
                i += 1;
                while i < bytes.len() && bytes[i] != b'\'' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            byte => {
                out.push(byte as char);
                i += 1;
            }
        }
    }
    out
}

/// The top-level modules a piece of code names through `crate::`, including inside
/// `use crate::{a, b::c}` groups.
fn crate_references(code: &str, modules: &BTreeSet<String>) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].chars().next_back();
        rest = &rest[at + "crate::".len()..];
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        if let Some(group) = rest.strip_prefix('{') {
            // The group's top-level names, up to its closing brace.
            let mut depth = 0;
            let mut name = String::new();
            let mut at_name_start = true;
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        if !name.is_empty() {
                            found.insert(std::mem::take(&mut name));
                        }
                        at_name_start = true;
                    }
                    c if at_name_start && depth == 0 && (c.is_ascii_alphanumeric() || c == '_') => {
                        name.push(c)
                    }
                    _ if !name.is_empty() => {
                        found.insert(std::mem::take(&mut name));
                        at_name_start = false;
                    }
                    _ => {}
                }
            }
            if !name.is_empty() {
                found.insert(name);
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            found.insert(name);
        }
    }
    found.retain(|name| modules.contains(name));
    found
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in fs::read_dir(dir).expect("read src").flatten() {
        let path = entry.path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The graph the code has: for each top-level module, the others it names.
fn actual(src: &Path) -> Graph {
    let modules: BTreeSet<String> = fs::read_dir(src)
        .expect("read src")
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let module = name.strip_suffix(".rs").unwrap_or(&name).to_owned();
            (module != "lib" && module != "main").then_some(module)
        })
        .collect();
    let mut graph: Graph = modules
        .iter()
        .map(|m| (m.clone(), BTreeSet::new()))
        .collect();
    let mut files = Vec::new();
    rust_files(src, &mut files);
    for file in files {
        let relative = file.strip_prefix(src).expect("under src");
        let first = relative
            .components()
            .next()
            .and_then(|c| c.as_os_str().to_str())
            .expect("a path");
        let module = first.strip_suffix(".rs").unwrap_or(first);
        if module == "lib" || module == "main" {
            continue;
        }
        let code = code_only(&fs::read_to_string(&file).expect("read source"));
        let uses = graph.get_mut(module).expect("a module of src/");
        uses.extend(
            crate_references(&code, &modules)
                .into_iter()
                .filter(|m| m != module),
        );
    }
    graph
}

/// A cycle of `graph`, if it has one.
fn cycle(graph: &Graph) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &Graph,
        state: &mut BTreeMap<String, u8>,
        path: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match state.get(node) {
            Some(2) => return None,
            Some(1) => {
                let start = path.iter().position(|n| n == node).unwrap_or(0);
                let mut cycle = path[start..].to_vec();
                cycle.push(node.to_owned());
                return Some(cycle);
            }
            _ => {}
        }
        state.insert(node.to_owned(), 1);
        path.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, state, path) {
                return Some(cycle);
            }
        }
        path.pop();
        state.insert(node.to_owned(), 2);
        None
    }
    let mut state = BTreeMap::new();
    graph
        .keys()
        .find_map(|node| visit(node, graph, &mut state, &mut Vec::new()))
}

#[test]
fn the_code_has_exactly_the_layers_architecture_md_draws() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let architecture =
        fs::read_to_string(root.join("docs/ARCHITECTURE.md")).expect("read ARCHITECTURE.md");
    let allowed = allowed(&architecture);
    assert!(allowed.len() > 20, "{allowed:?}");
    if let Some(cycle) = cycle(&allowed) {
        panic!("the allowed graph has a cycle: {}", cycle.join(" → "));
    }
    let actual = actual(&root.join("src"));
    let mut problems = Vec::new();
    for module in actual.keys() {
        if !allowed.contains_key(module) {
            problems.push(format!("{module} is not in the table"));
        }
    }
    for (module, uses) in &actual {
        let may = allowed.get(module).cloned().unwrap_or_default();
        for used in uses.difference(&may) {
            problems.push(format!(
                "{module} uses {used}, which the table does not allow"
            ));
        }
        for unused in may.difference(uses) {
            problems.push(format!(
                "{module} may use {unused} but no longer does: update the table"
            ));
        }
    }
    for module in allowed.keys() {
        if !actual.contains_key(module) {
            problems.push(format!("{module} is in the table but not in src/"));
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn the_reader_sees_imports_and_nothing_else() {
    let modules: BTreeSet<String> = ["a", "b", "c", "d", "e"].map(str::to_owned).into();
    let code = code_only(
        r#"use crate::{a::X, b::{Y, Z}, c};
           // crate::d in a comment
           #[serde(with = "crate::e::f")]
           let url = "https://example.com/"; /* crate::d */ let b = crate::b::Y;
           let quote = '"'; crate::c::f();"#,
    );
    let found = crate_references(&code, &modules);
    assert_eq!(found, ["a", "b", "c", "e"].map(str::to_owned).into());
}

#[test]
fn a_cycle_is_found() {
    let graph: Graph = [("a", "b"), ("b", "c"), ("c", "a")]
        .into_iter()
        .map(|(from, to)| (from.to_owned(), BTreeSet::from([to.to_owned()])))
        .collect();
    assert!(cycle(&graph).is_some());
    let dag: Graph = [("a", "b"), ("b", "c")]
        .into_iter()
        .map(|(from, to)| (from.to_owned(), BTreeSet::from([to.to_owned()])))
        .collect();
    assert_eq!(cycle(&dag), None);
}
