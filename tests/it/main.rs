//! The integration tests: one binary (crates.io's layout), so the crate and the harness
//! are compiled and linked once rather than once per file. Each module is one area;
//! `common` is the harness that boots the real app on a random port against a fresh
//! database and a random broker prefix. (`tests/trace_propagation.rs` is its own
//! binary: it installs a process-wide OpenTelemetry subscriber.)

mod announcements;
mod auth_matrix;
mod bench_events;
mod bench_evidence;
mod broker_restart;
mod campaigns;
mod common;
mod dashboards;
mod db_restart;
mod document;
mod events;
mod evidence;
mod hostile;
mod integrations;
mod layers;
mod lifecycle;
mod migrations;
mod oidc;
mod ownership;
mod problems;
mod pruning;
mod reporting;
mod routing;
mod scheduler;
mod schedules;
mod stores;
mod sync;
mod task_items;
mod tasks;
mod webhooks;
