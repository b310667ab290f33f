//! Webhooks: every new event that matches a registered webhook becomes one
//! delivery row; a worker on every replica claims due deliveries with a
//! lease and POSTs them, signed, retrying with backoff.
//!
//! Pure parts (what a webhook wants, body, signature, retry schedule) are
//! separate from the IO (the HTTP sender and the worker loop), so they are
//! tested without a network.

mod filter;
mod payload;
mod retry;
mod secret;
mod sender;
mod signing;
mod worker;

pub use filter::{EventFilter, FilterError, Format};
pub use payload::{EventContext, render};
pub use retry::RetryPolicy;
pub use secret::Secret;
pub use sender::{DELIVERY_HEADER, EVENT_HEADER, Outcome, Request, Sender};
pub use signing::{SIGNATURE_HEADER, signature, verify};
pub use worker::{WebhookWorker, WorkerConfig};
