//! Task templates: versioned checklists HQ defines once and stores run many times.
//! A change writes a new version; a task keeps the version it was created from, and
//! its answers are validated against that version.

mod recurrence;
mod repo;
mod routes;
pub mod seed;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub use recurrence::{Day, Frequency, Recurrence, local_instant};
pub use repo::{TemplateVersionRow, find_version};
pub use routes::router;

use crate::{
    error::FieldError,
    ids::{TaskKind, TemplateId},
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ItemType {
    /// Ticked or not: the answer is `true`/`false`.
    Check,
    /// A measurement: the answer is a number.
    Number,
    /// Free text, up to 2,000 characters.
    Text,
    /// A photo: the answer is `{"evidence_id": ...}` of a photo uploaded through an
    /// evidence grant (`POST /tasks/{task_id}/evidence`).
    Photo,
}

/// One line of a checklist.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChecklistItem {
    /// Stable key answers refer to.
    #[schema(pattern = "^[a-z0-9_]{1,64}$")]
    pub key: String,
    #[schema(
        max_length = 200,
        pattern = "^[^\\x00]*[^\\x00\\t-\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000][^\\x00]*$"
    )]
    pub label: String,
    #[serde(rename = "type")]
    pub item_type: ItemType,
    #[serde(default)]
    pub required: bool,
}

/// A photo item's answer: the evidence id of an uploaded photo. Completion attaches it
/// only once the photo is in the object store with its granted size, type and an image
/// signature of that type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PhotoAnswer {
    pub evidence_id: crate::ids::EvidenceId,
}

impl PhotoAnswer {
    /// The photo answers among `answers` (any item whose answer has this shape; which
    /// items are photos is checked against the template with the rest).
    pub fn in_answers(
        answers: &serde_json::Map<String, serde_json::Value>,
    ) -> Vec<(String, crate::ids::EvidenceId)> {
        answers
            .iter()
            .filter_map(|(key, value)| {
                serde_json::from_value::<PhotoAnswer>(value.clone())
                    .ok()
                    .map(|photo| (key.clone(), photo.evidence_id))
            })
            .collect()
    }
}

/// A reference to a picture hosted elsewhere (a system's own camera archive, say),
/// listed with a completion: kept as sent, never fetched or verified, and never a
/// photo item's answer (that takes an uploaded photo, [`PhotoAnswer`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EvidenceRef {
    /// https URL of the stored object, in ASCII (punycode for international domain names).
    #[schema(schema_with = crate::input::url::evidence_schema)]
    pub url: String,
    #[schema(max_length = 100, pattern = "^[^\\x00]*$")]
    pub content_type: Option<String>,
    /// At most 1 GiB.
    #[serde(default, deserialize_with = "crate::input::optional_integer")]
    #[schema(maximum = 1_073_741_824)]
    pub size_bytes: Option<u64>,
    #[serde(default, deserialize_with = "crate::input::optional_instant")]
    #[schema(pattern = "^20[0-9]{2}-")]
    pub taken_at: Option<chrono::DateTime<chrono::Utc>>,
    /// The checklist item it belongs to, if any.
    #[schema(pattern = "^[^\\x00]*$")]
    pub item_key: Option<String>,
}

/// The largest evidence object a reference may describe.
const MAX_EVIDENCE_BYTES: u64 = 1 << 30;

impl EvidenceRef {
    pub fn validate(&self, field: &str, errors: &mut Vec<FieldError>) {
        if crate::input::url::EVIDENCE.parse(&self.url).is_none() {
            errors.push(FieldError::new(
                format!("{field}.url"),
                "must be an https URL in ASCII of at most 2048 characters",
            ));
        }
        if self
            .size_bytes
            .is_some_and(|size| size > MAX_EVIDENCE_BYTES)
        {
            errors.push(FieldError::new(
                format!("{field}.size_bytes"),
                "must be at most 1 GiB",
            ));
        }
        if self.content_type.as_ref().is_some_and(|c| c.len() > 100) {
            errors.push(FieldError::new(
                format!("{field}.content_type"),
                "must be at most 100 characters",
            ));
        }
    }
}

/// The template a task or campaign is made from, and its title: the title as sent
/// (1-200 characters, not all blank; kept trimmed), else the template's. An unknown
/// template is reported alone: the title is then not also missing.
pub async fn template_and_title(
    conn: &mut sqlx::PgConnection,
    template_id: Option<TemplateId>,
    title: Option<&str>,
    errors: &mut Vec<FieldError>,
) -> Result<(Option<TemplateVersionRow>, String), sqlx::Error> {
    let template = match template_id {
        Some(id) => {
            let found = find_version(conn, id, None).await?;
            if found.is_none() {
                errors.push(FieldError::new("template_id", "no such template"));
                return Ok((None, String::new()));
            }
            found
        }
        None => None,
    };
    let title = match (title, &template) {
        (Some(title), _) => {
            crate::input::required_text("title", title, 200).unwrap_or_else(|error| {
                errors.push(error);
                String::new()
            })
        }
        (None, Some(template)) => template.title.clone(),
        (None, None) => {
            errors.push(FieldError::new(
                "title",
                "is required unless a template gives one",
            ));
            String::new()
        }
    };
    Ok((template, title))
}

/// The kind of a task made from `template`, unless the request names one: the
/// template's, else ad hoc.
pub fn task_kind(requested: Option<TaskKind>, template: Option<&TemplateVersionRow>) -> TaskKind {
    requested
        .or(template.map(|t| t.kind))
        .unwrap_or(TaskKind::Adhoc)
}

/// Checks a checklist definition; `field` prefixes error paths.
pub fn validate_checklist(items: &[ChecklistItem], field: &str, errors: &mut Vec<FieldError>) {
    if items.len() > 100 {
        errors.push(FieldError::new(field, "at most 100 items"));
    }
    let mut keys = std::collections::HashSet::new();
    for (i, item) in items.iter().enumerate() {
        let valid_key = (1..=64).contains(&item.key.len())
            && item
                .key
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !valid_key {
            errors.push(FieldError::new(
                format!("{field}[{i}].key"),
                "must match ^[a-z0-9_]{1,64}$",
            ));
        } else if !keys.insert(item.key.as_str()) {
            errors.push(FieldError::new(
                format!("{field}[{i}].key"),
                "duplicates an earlier key",
            ));
        }
        if let Err(error) =
            crate::input::required_text(&format!("{field}[{i}].label"), &item.label, 200)
        {
            errors.push(error);
        }
    }
}

/// Checks completion answers against a checklist: every required item answered with
/// the right type, no unknown keys. Errors are named `answers.<key>`.
pub fn validate_answers(
    items: &[ChecklistItem],
    answers: &serde_json::Map<String, serde_json::Value>,
    errors: &mut Vec<FieldError>,
) {
    for key in answers.keys() {
        if !items.iter().any(|i| &i.key == key) {
            errors.push(FieldError::new(
                format!("answers.{key}"),
                "is not an item of this checklist",
            ));
        }
    }
    for item in items {
        let field = format!("answers.{}", item.key);
        let Some(value) = answers.get(&item.key).filter(|v| !v.is_null()) else {
            if item.required {
                errors.push(FieldError::new(
                    field,
                    format!("is required ({})", item.label),
                ));
            }
            continue;
        };
        match item.item_type {
            ItemType::Check => match value.as_bool() {
                Some(true) => {}
                Some(false) if !item.required => {}
                Some(false) => {
                    errors.push(FieldError::new(field, "is required and must be checked"))
                }
                None => errors.push(FieldError::new(field, "must be true or false")),
            },
            ItemType::Number => {
                if !value.as_f64().is_some_and(f64::is_finite) {
                    errors.push(FieldError::new(field, "must be a number"));
                }
            }
            ItemType::Text => match value.as_str() {
                Some(text) if item.required && text.trim().is_empty() => {
                    errors.push(FieldError::new(field, "must not be empty"));
                }
                Some(text) if text.chars().count() > 2000 => {
                    errors.push(FieldError::new(field, "must be at most 2000 characters"));
                }
                Some(_) => {}
                None => errors.push(FieldError::new(field, "must be text")),
            },
            ItemType::Photo => {
                if serde_json::from_value::<PhotoAnswer>(value.clone()).is_err() {
                    errors.push(FieldError::new(
                        field,
                        "must be {\"evidence_id\": \"...\"} of a photo uploaded with POST /tasks/{task_id}/evidence",
                    ));
                }
            }
        }
    }
}

/// A template version as the API shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct TemplateDto {
    pub id: TemplateId,
    pub version: i32,
    pub title: String,
    pub description: Option<String>,
    pub kind: TaskKind,
    pub checklist: Vec<ChecklistItem>,
    pub review_required: bool,
    pub estimated_minutes: Option<i32>,
    /// Default time from creation to due, in minutes.
    pub due_window_minutes: i32,
    /// When set, the scheduler creates a task per targeted store at each occurrence.
    pub recurrence: Option<Recurrence>,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

/// Adds the rules between this module's request fields to the OpenAPI document.
pub fn schema_rules(document: &mut serde_json::Value) {
    crate::input::rules::add_to_document::<Recurrence>(document);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(key: &str, item_type: ItemType, required: bool) -> ChecklistItem {
        ChecklistItem {
            key: key.into(),
            label: key.into(),
            item_type,
            required,
        }
    }

    #[test]
    fn answers_are_checked_item_by_item() {
        let items = vec![
            item("clean", ItemType::Check, true),
            item("temp", ItemType::Number, true),
            item("note", ItemType::Text, false),
            item("shelf", ItemType::Photo, true),
        ];
        let answers = serde_json::json!({"clean": false, "temp": "cold", "extra": 1});
        let mut errors = Vec::new();
        validate_answers(&items, answers.as_object().expect("object"), &mut errors);
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            vec![
                "answers.extra",
                "answers.clean",
                "answers.temp",
                "answers.shelf"
            ]
        );

        let answers = serde_json::json!({"clean": true, "temp": 4.5, "shelf": {"evidence_id": "0190a0a0-0000-7000-8000-000000000001"}});
        let mut errors = Vec::new();
        validate_answers(&items, answers.as_object().expect("object"), &mut errors);
        assert!(errors.is_empty(), "{errors:?}");

        // A photo is an uploaded photo's evidence id, not a URL.
        let answers = serde_json::json!({"clean": true, "temp": 4.5, "shelf": {"url": "https://cdn.example.com/p.jpg"}});
        let mut errors = Vec::new();
        validate_answers(&items, answers.as_object().expect("object"), &mut errors);
        let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, vec!["answers.shelf"]);
    }
}
