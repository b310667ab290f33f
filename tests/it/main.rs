//! Integration tests: real PostgreSQL, the real `meridian` binary, and the
//! simulated clusters over real HTTP.

mod support;

mod auth;
mod catalog_api;
mod cli;
mod cli_token;
mod config_refused;
mod crash;
mod dashboard;
mod demo;
mod embedded;
mod gates;
mod openapi;
mod plans;
mod releases;
mod replicas;
mod rollouts;
mod stream;
mod watch_wake;
mod webhooks;
