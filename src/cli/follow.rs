//! Following one rollout's event stream in the background: reconnects with
//! `Last-Event-ID` so no event is missed or repeated, and hands events over
//! a channel so callers can `select!` on them next to a timer or Ctrl-C.

use std::{sync::Arc, time::Duration};

use serde_json::Value;
use tokio::sync::mpsc;
use uuid::Uuid;

use super::{
    client::Client,
    exit::{CliError, Exit},
    model::Event,
    sse::Reader,
};

/// Waits between reconnection attempts, growing to the last one.
const BACKOFF: [Duration; 4] = [
    Duration::from_millis(500),
    Duration::from_secs(1),
    Duration::from_secs(2),
    Duration::from_secs(5),
];
/// A server that cannot be reconnected to for this long is reported, not
/// retried: the user is better told than left looking at a frozen screen.
const GIVE_UP_AFTER: Duration = Duration::from_secs(60);
/// A stream that stayed up this long resets the back-off.
const STABLE_AFTER: Duration = Duration::from_secs(10);
/// Events buffered between the stream and a slow consumer.
const CHANNEL_DEPTH: usize = 256;

/// An event as the CLI reads it, and as the server sent it (for `-o json`).
pub struct Followed {
    pub event: Event,
    pub raw: Value,
}

pub enum Update {
    Event(Box<Followed>),
    /// The stream cannot be had back (or the server refused it): the
    /// follower has stopped.
    Lost(CliError),
}

/// Starts following rollout `id` from its first event.
pub fn spawn(client: Arc<Client>, id: Uuid) -> mpsc::Receiver<Update> {
    let (sender, receiver) = mpsc::channel(CHANNEL_DEPTH);
    tokio::spawn(async move {
        if let Err(error) = follow(&client, id, &sender).await {
            let _ = sender.send(Update::Lost(error)).await;
        }
    });
    receiver
}

/// Waits for the next event, then takes every event already waiting, so a
/// burst costs the caller one refetch, not one per event.
pub async fn next_batch(receiver: &mut mpsc::Receiver<Update>) -> Result<Vec<Followed>, CliError> {
    let mut batch = Vec::new();
    let first = receiver
        .recv()
        .await
        .ok_or_else(|| CliError::failure("the event stream stopped unexpectedly"))?;
    let mut next = Some(first);
    while let Some(update) = next {
        match update {
            Update::Event(followed) => batch.push(*followed),
            Update::Lost(error) => return Err(error),
        }
        next = receiver.try_recv().ok();
    }
    Ok(batch)
}

async fn follow(client: &Client, id: Uuid, sender: &mpsc::Sender<Update>) -> Result<(), CliError> {
    let mut last_id: Option<i64> = None;
    let mut unreachable_since: Option<tokio::time::Instant> = None;
    let mut attempt = 0usize;
    loop {
        match client.event_stream(id, last_id).await {
            Ok(response) => {
                unreachable_since = None;
                let connected = tokio::time::Instant::now();
                let mut reader = Reader::new(response);
                // Read until the stream is lost; then reconnect below.
                while let Ok(sse) = reader.next().await {
                    if let Some(id) = sse.id.as_deref().and_then(|i| i.parse().ok()) {
                        last_id = Some(id);
                    }
                    let Ok(raw) = serde_json::from_str::<Value>(&sse.data) else {
                        continue;
                    };
                    let Ok(event) = serde_json::from_value::<Event>(raw.clone()) else {
                        continue;
                    };
                    let update = Update::Event(Box::new(Followed { event, raw }));
                    if sender.send(update).await.is_err() {
                        // Nobody listens any more.
                        return Ok(());
                    }
                }
                // A stream that held a while was healthy: start the back-off
                // afresh. One dropped at once keeps growing it.
                if connected.elapsed() >= STABLE_AFTER {
                    attempt = 0;
                }
            }
            // Only an unreachable server is worth retrying; a refusal
            // (401, 404 …) will not change by itself.
            Err(error) if error.exit == Exit::Connection => {
                let since = *unreachable_since.get_or_insert_with(tokio::time::Instant::now);
                if since.elapsed() >= GIVE_UP_AFTER {
                    return Err(CliError::new(
                        Exit::Connection,
                        format!(
                            "lost the event stream and could not reconnect for {GIVE_UP_AFTER:?}: {}",
                            error.message
                        ),
                    ));
                }
            }
            Err(error) => return Err(error),
        }
        let wait = BACKOFF[attempt.min(BACKOFF.len() - 1)];
        attempt += 1;
        tokio::time::sleep(wait).await;
    }
}
