//! Meridian: a multi-cluster staged rollout orchestrator.
//!
//! The folder tree is the architecture: `domain` decides without IO, the other
//! modules are the drivers around it.

/// Reads the wall clock; the only place that does.
pub mod clock;
/// The `serve --config` YAML file: parsed once into domain types.
pub mod config;
/// Pure rollout logic: plans, selectors, the rollout state machine.
pub mod domain;
/// PostgreSQL: migrations, catalog, rollouts, targets, events, leases.
pub mod store;
/// The IO driver: claims due rollouts, observes, decides, acts, commits.
#[cfg(any())] // WIP-GATE
pub mod engine;
/// Kubernetes through `kube`: per-cluster clients, render, apply, observe.
pub mod fleet;
/// Simulated Kubernetes API servers (a test double, also used by `demo`).
pub mod sim;
/// HTTP API, health endpoints and metrics.
#[cfg(any())] // WIP-GATE
pub mod api;
/// Logging set-up.
pub mod telemetry;
/// Wiring of the whole service: `serve`.
#[cfg(any())] // WIP-GATE
pub mod server;
/// `meridian demo` and `meridian sim`.
#[cfg(any())] // WIP-GATE
pub mod demo;
