//! Meridian: a multi-cluster staged rollout orchestrator.
//!
//! The folder tree is the architecture: `domain` decides without IO, the other
//! modules are the drivers around it.

/// HTTP API, health endpoints and metrics.
pub mod api;
/// The client commands (`release`, `rollout`, `plan`, `cluster`) over the REST API.
pub mod cli;
/// Reads the wall clock; the only place that does.
pub mod clock;
/// The `serve --config` YAML file: parsed once into domain types.
pub mod config;
/// `meridian demo` and `meridian sim`.
pub mod demo;
/// Pure rollout logic: plans, selectors, the rollout state machine.
pub mod domain;
/// The IO driver: claims due rollouts, observes, decides, acts, commits.
pub mod engine;
/// Kubernetes through `kube`: per-cluster clients, render, apply, observe.
pub mod fleet;
/// Gate readings: Prometheus queries, HTTP checks, threshold and baseline verdicts.
pub mod health;
/// Wiring of the whole service: `serve`.
pub mod server;
/// Simulated Kubernetes API servers (a test double, also used by `demo`).
pub mod sim;
/// PostgreSQL: migrations, catalog, rollouts, targets, events, leases.
pub mod store;
/// Logging set-up.
pub mod telemetry;
/// Webhooks: signed, retried deliveries of events to registered URLs.
pub mod webhooks;
