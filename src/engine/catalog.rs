//! The catalog (clusters, applications) as the engine reads it: kept for a
//! moment instead of read on every tick. Catalog changes are rare and a
//! rollout pins what it needs (release, plan version), so a change showing
//! up one refresh later costs nothing; reading 100 clusters per tick at a
//! thousand ticks a second would. Plan versions never change once
//! written, so those are kept for good.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
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
    /// Held while the clusters are read, so the ticks that find the cache
    /// empty together (a burst after start or after a change) wait for one
    /// read instead of each reading every cluster.
    clusters_loading: tokio::sync::Mutex<()>,
    /// Bumped by [`CatalogCache::clear`]: a read that began before a clear
    /// may hold the old catalog, so it is used but not kept.
    generation: AtomicU64,
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
    pub async fn clusters(&self, store: &Store) -> Result<Clusters, StoreError> {
        self.clusters_from(|| store.clusters()).await
    }

    async fn clusters_from<F, Fut>(&self, read: F) -> Result<Clusters, StoreError>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<Vec<Cluster>, StoreError>>,
    {
        if let Some(clusters) = self.cached_clusters() {
            return Ok(clusters);
        }
        let _loading = self.clusters_loading.lock().await;
        if let Some(clusters) = self.cached_clusters() {
            return Ok(clusters);
        }
        let generation = self.generation.load(Ordering::Acquire);
        let fresh: HashMap<String, Cluster> = read()
            .await?
            .into_iter()
            .map(|c| (c.name.to_string(), c))
            .collect();
        let fresh = Arc::new(fresh);
        let mut cached = lock(&self.clusters);
        if self.generation.load(Ordering::Acquire) == generation {
            *cached = Some((Instant::now(), Arc::clone(&fresh)));
        }
        Ok(fresh)
    }

    fn cached_clusters(&self) -> Option<Clusters> {
        lock(&self.clusters)
            .as_ref()
            .filter(|(at, _)| at.elapsed() < CATALOG_TTL)
            .map(|(_, clusters)| Arc::clone(clusters))
    }

    /// Forgets everything; the next read goes to the database.
    pub fn clear(&self) {
        // Bumped before emptying: a read that checked the old generation
        // kept its result before the emptying below, which removes it.
        self.generation.fetch_add(1, Ordering::AcqRel);
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
        let generation = self.generation.load(Ordering::Acquire);
        let fresh = Arc::new(store.application(name).await?);
        let mut cached = lock(&self.applications);
        if self.generation.load(Ordering::Acquire) == generation {
            cached.insert(name.to_owned(), (Instant::now(), Arc::clone(&fresh)));
        }
        Ok(fresh)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    fn cluster(name: &str) -> Cluster {
        Cluster {
            name: crate::domain::ClusterName::parse(name).expect("cluster name"),
            region: "europe".to_owned(),
            timezone: chrono_tz::Europe::Paris,
            labels: Default::default(),
            context: name.to_owned(),
        }
    }

    #[tokio::test]
    async fn ticks_that_miss_together_wait_for_one_read() {
        let cache = CatalogCache::default();
        let reads = AtomicUsize::new(0);
        let read = || async {
            reads.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(Duration::from_millis(20)).await;
            Ok(vec![cluster("eu-1")])
        };
        let found = futures::future::join_all((0..16).map(|_| cache.clusters_from(read))).await;
        assert!(
            found
                .iter()
                .all(|c| c.as_ref().is_ok_and(|c| c.contains_key("eu-1")))
        );
        assert_eq!(reads.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_read_that_a_change_overtook_is_used_but_not_kept() {
        let cache = CatalogCache::default();
        let stale = cache
            .clusters_from(|| async {
                // The catalog changes while this read is on its way.
                cache.clear();
                Ok(vec![cluster("eu-1")])
            })
            .await
            .expect("read");
        assert!(stale.contains_key("eu-1"));
        let fresh = cache
            .clusters_from(|| async { Ok(vec![cluster("eu-2")]) })
            .await
            .expect("read");
        assert!(fresh.contains_key("eu-2"), "the overtaken read was kept");
    }
}
