//! Announcements (PRODUCT §4): HQ and regional managers send notices to many stores;
//! each store's staff read and acknowledge them, one receipt per staff member.
//!
//! The API records an announcement (a draft, or scheduled) and its
//! `announcement.scheduled` event; the `announcements` consumer group delivers it once
//! per targeted store (`fanout.rs`). The scheduler's jobs (`jobs.rs`) publish it when
//! the first store may see it, deliver it to stores opened since, remind stores that
//! have not acknowledged a required one and escalate, each exactly once.

mod dto;
mod fanout;
pub mod jobs;
pub mod metrics;
mod repo;
mod routes;
mod service;

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub use routes::router;

use crate::{
    auth::StoreStaff,
    events::{Event, consumer::Registry},
    ids::{AnnouncementId, RegionCode, StoreId},
    input::rules,
};

/// Whom in a store an announcement addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Audience {
    Associates,
    Managers,
    Everyone,
}

crate::string_enum!(Audience {
    Associates => "associates",
    Managers => "managers",
    Everyone => "everyone",
});

impl Audience {
    /// The audiences that include this staff member.
    fn including(staff: StoreStaff) -> [Audience; 2] {
        if staff.manager {
            [Audience::Managers, Audience::Everyone]
        } else {
            [Audience::Associates, Audience::Everyone]
        }
    }
}

/// Where an announcement is: stored as the first three; `expired` once its
/// `expires_at` has passed (no job needs to flip it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AnnouncementStatus {
    /// Kept by its author; no store sees it until it is published.
    Draft,
    /// Delivered (or being delivered) to its stores; no store may see it yet.
    Scheduled,
    /// Visible to the staff of at least one store.
    Published,
    /// Past `expires_at`: staff no longer see it.
    Expired,
}

crate::string_enum!(AnnouncementStatus {
    Draft => "draft",
    Scheduled => "scheduled",
    Published => "published",
    Expired => "expired",
});

/// Deliver an announcement to its stores (internal: the `announcements` group).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AnnouncementScheduled {
    pub announcement_id: AnnouncementId,
}

impl Event for AnnouncementScheduled {
    const ROUTING_KEY: &'static str = "announcement.scheduled";
}

/// The first store's staff may see an announcement (a push gateway notifies them).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AnnouncementPublished {
    pub announcement_id: AnnouncementId,
    pub title: String,
    pub priority: crate::tasks::Priority,
    pub audience: Audience,
    pub requires_ack: bool,
    pub region_scope: Option<RegionCode>,
    pub supersedes: Option<AnnouncementId>,
    pub target_count: Option<i32>,
}

impl Event for AnnouncementPublished {
    const ROUTING_KEY: &'static str = "announcement.published";
}

/// A staff member acknowledged an announcement (the first time only).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AnnouncementAcknowledged {
    pub announcement_id: AnnouncementId,
    pub store_id: StoreId,
    pub staff_subject: String,
    pub acknowledged_at: chrono::DateTime<chrono::Utc>,
}

impl Event for AnnouncementAcknowledged {
    const ROUTING_KEY: &'static str = "announcement.acknowledged";
}

/// A store has not acknowledged a required announcement: level 1 reminds the store
/// (its staff and manager), level 2 escalates to the store and regional managers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AnnouncementReminder {
    pub announcement_id: AnnouncementId,
    pub store_id: StoreId,
    pub store_code: String,
    pub region: RegionCode,
    pub level: i16,
}

impl Event for AnnouncementReminder {
    const ROUTING_KEY: &'static str = "announcement.reminder";
}

/// Every routing key this module emits.
pub const ROUTING_KEYS: &[&str] = &[
    AnnouncementScheduled::ROUTING_KEY,
    AnnouncementPublished::ROUTING_KEY,
    AnnouncementAcknowledged::ROUTING_KEY,
    AnnouncementReminder::ROUTING_KEY,
];

/// The consumer group that delivers announcements to stores.
pub const GROUP: &str = "announcements";

/// Adds the rules between this module's request fields to the OpenAPI document.
pub fn schema_rules(document: &mut serde_json::Value) {
    rules::add_to_document::<dto::NewAnnouncement>(document);
}

pub fn register_handlers(registry: &mut Registry) {
    registry.subscribe::<AnnouncementScheduled>(GROUP, Arc::new(fanout::FanOut));
}
