//! The OpenAPI document as a whole: what every schema in it must hold.

use storeops::{input::BLANK, roles::api::openapi, stores::target};

fn patterns(value: &serde_json::Value, found: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(fields) => {
            for (key, item) in fields {
                match item.as_str() {
                    Some(pattern) if key == "pattern" => found.push(pattern.to_owned()),
                    _ => patterns(item, found),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|i| patterns(i, found)),
        _ => {}
    }
}

/// Regular-expression dialects agree on the documented patterns only when they avoid
/// the shorthand classes, whose sets differ between ECMAScript, Python and Rust.
#[test]
fn documented_patterns_spell_their_classes_out() {
    let mut found = Vec::new();
    patterns(&openapi(), &mut found);
    assert!(found.len() > 20, "{found:?}");
    for pattern in found {
        assert!(regex::Regex::new(&pattern).is_ok(), "{pattern}");
        for shorthand in ["\\s", "\\S", "\\d", "\\D", "\\w", "\\W", "\\b"] {
            assert!(!pattern.contains(shorthand), "{pattern}");
        }
        if pattern.contains("u0085") {
            assert!(pattern.contains(BLANK), "{pattern}");
        }
    }
}

#[test]
fn the_document_states_the_target_limits() {
    let document = openapi();
    let target = &document["components"]["schemas"]["Target"]["properties"];
    assert_eq!(target["regions"]["maxItems"], target::MAX_REGIONS);
    assert_eq!(target["store_codes"]["maxItems"], target::MAX_STORE_CODES);
}

/// A target's region and store code items are checked by their types, and the
/// document says so with the same patterns.
#[test]
fn target_items_carry_their_patterns() {
    let document = openapi();
    let target = &document["components"]["schemas"]["Target"]["properties"];
    for (field, schema) in [("regions", "RegionCode"), ("store_codes", "StoreCode")] {
        let items = &target[field]["items"];
        let resolved = match items["$ref"].as_str() {
            Some(reference) => {
                &document["components"]["schemas"][reference.rsplit('/').next().unwrap_or_default()]
            }
            None => items,
        };
        assert!(
            resolved["pattern"].is_string(),
            "{field} ({schema}): {items}"
        );
    }
}

/// An operation that can answer 304 takes `If-None-Match` as a documented header: a
/// client generated from the document has no other way to send it (issue 28).
#[test]
fn conditional_reads_document_if_none_match() {
    let document = openapi();
    let mut conditional = Vec::new();
    for (path, item) in document["paths"].as_object().into_iter().flatten() {
        for (method, operation) in item.as_object().into_iter().flatten() {
            if operation["responses"].get("304").is_none() {
                continue;
            }
            conditional.push(format!("{method} {path}"));
            let declared = operation["parameters"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|p| p["in"] == "header" && p["name"] == "If-None-Match");
            assert!(
                declared,
                "{method} {path} answers 304 without If-None-Match"
            );
        }
    }
    assert!(
        conditional.contains(&"get /api/v1/stores/{store_id}/tasks".to_owned())
            && conditional.contains(&"get /api/v1/tasks/{task_id}".to_owned()),
        "{conditional:?}"
    );
}

/// A transition's 409 states what it carries, the task as it is now (`TaskConflict`), so
/// a generated client reads `current` as a task rather than as an untyped object.
#[test]
fn transition_conflicts_carry_the_task() {
    let document = openapi();
    let conflict = &document["components"]["schemas"]["TaskConflict"];
    assert_eq!(
        conflict["properties"]["current"]["$ref"],
        "#/components/schemas/TaskDto"
    );
    assert!(
        conflict["required"]
            .as_array()
            .is_some_and(|required| required.iter().any(|r| r == "current")),
        "{conflict}"
    );
    for action in ["start", "complete", "approve", "redo", "cancel"] {
        let answer = &document["paths"][format!("/api/v1/tasks/{{task_id}}/{action}")]["post"]["responses"]
            ["409"];
        assert_eq!(
            answer["content"]["application/problem+json"]["schema"]["$ref"],
            "#/components/schemas/TaskConflict",
            "{action}"
        );
    }
}
