//! The catalog (clusters, applications) as the engine reads it: kept for a
//! moment instead of read on every tick. Catalog changes are rare and a
//! rollout pins what it needs (release, plan version), so a change showing
//! up one refresh later costs nothing; reading 100 clusters per tick at a
//! thousand ticks a second would. Plan versions never change once
//! written, so those are kept for good.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::domain::{Application, Cluster, Plan};
use crate::store::{Store, StoreError};

/// How long a read of the catalog is reused. Every catalog write also
/// sends a notification that empties the cache at once, so this only
/// bounds how stale it gets when a notification is lost (the listener
/// reconnecting).
pub const CATALOG_TTL: Duration = Duration::from_secs(10);

/// Clusters by name, shared by the ticks that read them.
pub type Clusters = Arc<HashMap<String, Cluster>>;

#[derive(Default)]
pub struct CatalogCache {
    clusters: Mutex<Option<(Instant, Clusters)>>,
    applications: Mutex<HashMap<String, (Instant, Arc<Application>)>>,
    /// By name and version: a stored version is never rewritten.
    plans: Mutex<HashMap<(String, i32), Arc<Plan>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the lock cannot leave a half-written cache
    // entry (entries are replaced whole), so a poisoned lock is still good.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl CatalogCache {
    pub async fn clusters(
        &self,
        store: &Store,
    ) -> Result<Arc<HashMap<String, Cluster>>, StoreError> {
        if let Some((at, clusters)) = lock(&self.clusters).as_ref()
            && at.elapsed() < CATALOG_TTL
        {
            return Ok(Arc::clone(clusters));
        }
        let fresh: HashMap<String, Cluster> = store
            .clusters()
            .await?
            .into_iter()
            .map(|c| (c.name.to_string(), c))
            .collect();
        let fresh = Arc::new(fresh);
        *lock(&self.clusters) = Some((Instant::now(), Arc::clone(&fresh)));
        Ok(fresh)
    }

    /// Forgets everything; the next read goes to the database.
    pub fn clear(&self) {
        *lock(&self.clusters) = None;
        lock(&self.applications).clear();
    }

    /// A plan version, read once: a rollout pins the version it started
    /// with, and gate ticks ask for it at every gate interval.
    pub async fn plan(
        &self,
        store: &Store,
        name: &str,
        version: i32,
    ) -> Result<Arc<Plan>, StoreError> {
        let key = (name.to_owned(), version);
        if let Some(plan) = lock(&self.plans).get(&key) {
            return Ok(Arc::clone(plan));
        }
        let plan = Arc::new(store.plan(name, version).await?);
        lock(&self.plans).insert(key, Arc::clone(&plan));
        Ok(plan)
    }

    pub async fn application(
        &self,
        store: &Store,
        name: &str,
    ) -> Result<Arc<Application>, StoreError> {
        if let Some((at, app)) = lock(&self.applications).get(name)
            && at.elapsed() < CATALOG_TTL
        {
            return Ok(Arc::clone(app));
        }
        let fresh = Arc::new(store.application(name).await?);
        lock(&self.applications).insert(name.to_owned(), (Instant::now(), Arc::clone(&fresh)));
        Ok(fresh)
    }
}
