//! Turns workload changes seen by the fleet's watches into wake-ups of the
//! rollouts that look at those workloads, in batches: one query per burst
//! of changes, not one per change.

use std::collections::BTreeSet;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::{fleet::WorkloadChanged, store::Store};

/// Changes waiting to be turned into wake-ups; beyond it the watches wait.
pub const CHANNEL_CAPACITY: usize = 4096;

pub async fn run(
    store: Store,
    mut changes: mpsc::Receiver<WorkloadChanged>,
    shutdown: CancellationToken,
) {
    loop {
        let first = tokio::select! {
            () = shutdown.cancelled() => return,
            change = changes.recv() => match change {
                Some(change) => change,
                None => return,
            },
        };
        let mut batch = BTreeSet::from([(first.cluster, first.namespace)]);
        while let Ok(change) = changes.try_recv() {
            batch.insert((change.cluster, change.namespace));
        }
        let pairs: Vec<(String, String)> = batch.into_iter().collect();
        match store.wake_watching(&pairs).await {
            Ok(woken) => tracing::trace!(changes = pairs.len(), woken, "watch wake-up"),
            // Polling still looks at these rollouts; only speed is lost.
            Err(error) => tracing::warn!(%error, "cannot wake rollouts after a watch event"),
        }
    }
}
