//! Rules between fields, which a derived schema cannot state: "exactly one of", "this
//! unless that". A type lists them ([`CrossFieldRules`]) next to the validation that
//! checks them; the OpenAPI document adds them to the type's component as `allOf`, so
//! the document says what the server checks.

use serde_json::{Map, Value, json};

/// JSON Schemas every value of the type also satisfies.
pub trait CrossFieldRules: utoipa::ToSchema {
    fn cross_field_rules() -> Vec<Value>;
}

/// The field is present and not null.
pub fn given(field: &str) -> Value {
    json!({ "required": [field], "properties": { field: { "not": { "type": "null" } } } })
}

/// At least one of the fields is given.
pub fn any_given(fields: &[&str]) -> Value {
    json!({ "anyOf": fields.iter().map(|f| given(f)).collect::<Vec<_>>() })
}

/// Exactly one of the fields is given; the others are absent or null.
pub fn one_given(fields: &[&str]) -> Value {
    json!({ "oneOf": fields.iter().map(|f| given(f)).collect::<Vec<_>>() })
}

/// At most one of the fields is given (none is fine).
pub fn at_most_one_given(fields: &[&str]) -> Value {
    json!({ "not": { "anyOf": fields.iter().enumerate().flat_map(|(i, a)| {
        fields[i + 1..].iter().map(move |b| json!({ "allOf": [given(a), given(b)] }))
    }).collect::<Vec<_>>() } })
}

/// Adds `T`'s rules to its component in a serialized OpenAPI document.
///
/// # Panics
/// When the component is missing or a rule names a property it does not have: the
/// rules were written for another shape of the type (caught by every test that
/// builds the document).
pub fn add_to_document<T: CrossFieldRules>(document: &mut Value) {
    let name = T::name();
    let component = document
        .pointer_mut(&format!("/components/schemas/{name}"))
        .and_then(Value::as_object_mut)
        .unwrap_or_else(|| panic!("the OpenAPI document has no component {name}"));
    let rules = T::cross_field_rules();
    for rule in &rules {
        for property in named_properties(rule) {
            assert!(
                component
                    .get("properties")
                    .and_then(|p| p.get(&property))
                    .is_some(),
                "a rule of {name} names {property}, which it does not have"
            );
        }
    }
    match component.get_mut("allOf").and_then(Value::as_array_mut) {
        Some(all_of) => all_of.extend(rules),
        None => {
            component.insert("allOf".to_owned(), Value::Array(rules));
        }
    }
}

/// The property names a rule mentions at its top level (in `required` and
/// `properties`, also inside its `anyOf`/`oneOf`/`allOf`/`not`).
fn named_properties(rule: &Value) -> Vec<String> {
    let Some(rule) = rule.as_object() else {
        return Vec::new();
    };
    let mut names: Vec<String> = rule
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|n| n.as_str().map(str::to_owned))
        .chain(
            rule.get("properties")
                .and_then(Value::as_object)
                .into_iter()
                .flat_map(Map::keys)
                .cloned(),
        )
        .collect();
    for nested in ["anyOf", "oneOf", "allOf"] {
        for branch in rule
            .get(nested)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            names.extend(named_properties(branch));
        }
    }
    if let Some(not) = rule.get("not") {
        names.extend(named_properties(not));
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_name_the_properties_they_constrain() {
        let rule = json!({ "oneOf": [given("due_at"), { "not": given("title") }] });
        assert_eq!(
            named_properties(&rule),
            ["due_at", "due_at", "title", "title"]
        );
        assert_eq!(
            one_given(&["a", "b"]),
            json!({ "oneOf": [
                { "required": ["a"], "properties": { "a": { "not": { "type": "null" } } } },
                { "required": ["b"], "properties": { "b": { "not": { "type": "null" } } } },
            ] })
        );
    }
}
