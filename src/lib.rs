//! storeops: the daily operations of a retail chain, as one modular monolith deployed
//! as api, worker and scheduler roles. See docs/ARCHITECTURE.md.

pub mod admin;
pub mod announcements;
pub mod auth;
pub mod campaigns;
pub mod cli;
pub mod config;
pub mod db;
pub mod error;
pub mod events;
pub mod evidence;
pub mod http;
pub mod ids;
pub mod ingest;
pub mod input;
pub mod maintenance;
pub mod metrics;
pub mod reporting;
pub mod roles;
pub mod scheduler;
pub mod schedules;
pub mod seed;
pub mod shutdown;
pub mod stores;
pub mod tasks;
pub mod telemetry;
pub mod templates;
pub mod tls;
pub mod webhooks;
