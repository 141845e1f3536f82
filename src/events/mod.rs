//! Events between modules and to the outside: the RabbitMQ connection and topology.
//! (The outbox relay, consumer registry and webhooks build on this.)

pub mod broker;

/// The topic exchange every domain event is published to (SPEC §5).
pub const EVENTS_EXCHANGE: &str = "storeops.events";
