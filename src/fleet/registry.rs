//! Which kubeconfig context each cluster uses, and its client, built the
//! first time the cluster is needed.
//!
//! Clusters can be registered through the API while the service runs, so
//! the set of clients cannot be fixed at start. The engine tells the
//! registry each cluster's context as it reads the catalog
//! ([`Registry::track`]); a client is built when a cluster without one is
//! first used, and built again when its context changed. The kubeconfig
//! file is the one known at start; it is read again when it lacks a
//! context, since whoever registers a cluster may have added its context
//! to the file after the service started.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use kube::config::Kubeconfig;
use tokio_util::sync::DropGuard;

use super::FleetOptions;
use super::budget::Budget;
use super::cluster::ClusterClient;
use super::connect::{client_for, read_kubeconfig, watch_client_for};
use super::error::FleetError;
use super::watch::Watches;

pub(crate) struct Registry {
    /// `None` when no kubeconfig was known at start: building any client
    /// then fails with a message saying how to name one.
    path: Option<PathBuf>,
    options: FleetOptions,
    /// Where each cluster's watches report; `None`: not watched.
    watches: Option<Watches>,
    /// The parsed file, read on first need and again when it lacks a
    /// context.
    kubeconfig: RwLock<Option<Arc<Kubeconfig>>>,
    /// The context each cluster should use, as last told.
    wanted: RwLock<BTreeMap<String, String>>,
    built: RwLock<BTreeMap<String, Built>>,
}

/// A client, the context it was built from, and its watches (stopped
/// when this is dropped).
struct Built {
    context: String,
    client: ClusterClient,
    _watches: Option<DropGuard>,
}

impl Registry {
    pub(crate) fn new(
        path: Option<PathBuf>,
        options: FleetOptions,
        watches: Option<Watches>,
    ) -> Registry {
        Registry {
            path,
            options,
            watches,
            kubeconfig: RwLock::new(None),
            wanted: RwLock::new(BTreeMap::new()),
            built: RwLock::new(BTreeMap::new()),
        }
    }

    /// Records the context each cluster should use. Cheap: nothing is built
    /// until a cluster is used.
    pub(crate) fn track<'a>(&self, clusters: impl IntoIterator<Item = (&'a str, &'a str)>) {
        let mut wanted = write(&self.wanted);
        for (name, context) in clusters {
            if wanted.get(name).map(String::as_str) != Some(context) {
                wanted.insert(name.to_owned(), context.to_owned());
            }
        }
    }

    /// The client for `cluster`, built now if it has none or its context
    /// changed since it was built.
    pub(crate) async fn client(&self, cluster: &str) -> Result<ClusterClient, FleetError> {
        let Some(context) = read(&self.wanted).get(cluster).cloned() else {
            return Err(FleetError::UnknownCluster(cluster.to_owned()));
        };
        if let Some(built) = read(&self.built).get(cluster)
            && built.context == context
        {
            return Ok(built.client.clone());
        }
        let (client, watches) = self.build(cluster, &context).await?;
        let mut built = write(&self.built);
        if let Some(theirs) = built.get(cluster)
            && theirs.context == context
        {
            // Another tick built it meanwhile: keep theirs, drop ours
            // (and so stop its watches).
            return Ok(theirs.client.clone());
        }
        // Replacing a client drops its watches, which stops them.
        let previous = built.insert(
            cluster.to_owned(),
            Built {
                context: context.clone(),
                client: client.clone(),
                _watches: watches,
            },
        );
        drop(built);
        match previous {
            Some(old) if old.context != context => {
                tracing::info!(cluster, old = %old.context, new = %context, "kubeconfig context changed; new client built");
            }
            Some(_) => {}
            None => tracing::info!(cluster, %context, "client built for the cluster"),
        }
        Ok(client)
    }

    async fn build(
        &self,
        cluster: &str,
        context: &str,
    ) -> Result<(ClusterClient, Option<DropGuard>), FleetError> {
        let Some(path) = &self.path else {
            return Err(FleetError::Config {
                cluster: cluster.to_owned(),
                message: "no kubeconfig is known: set `kubeconfig` in the config file, --kubeconfig or KUBECONFIG, and restart".to_owned(),
            });
        };
        let kubeconfig = self.kubeconfig_with(path, cluster, context)?;
        let client = client_for(
            &kubeconfig,
            path,
            cluster,
            context,
            self.options.call_timeout,
        )
        .await?;
        let watches = match &self.watches {
            None => None,
            Some(watches) => match watch_client_for(&kubeconfig, path, cluster, context).await {
                Ok(watch_client) => Some(watches.start(cluster, &watch_client)),
                Err(error) => {
                    tracing::warn!(cluster, %error, "no watch for this cluster; polling only");
                    None
                }
            },
        };
        let client = ClusterClient {
            name: cluster.to_owned(),
            client,
            budget: Budget {
                timeout: self.options.call_timeout,
                attempts: self.options.attempts.max(1),
            },
            field_manager: self.options.field_manager.clone(),
            known_namespaces: Arc::default(),
        };
        Ok((client, watches))
    }

    /// The kubeconfig, read again from `path` when the copy in memory has
    /// no `context` (or none was read yet). A file that cannot be read
    /// again leaves the copy in memory in use.
    fn kubeconfig_with(
        &self,
        path: &Path,
        cluster: &str,
        context: &str,
    ) -> Result<Arc<Kubeconfig>, FleetError> {
        let cached = read(&self.kubeconfig).clone();
        if let Some(config) = &cached
            && has_context(config, context)
        {
            return Ok(Arc::clone(config));
        }
        match (read_kubeconfig(path, cluster), cached) {
            (Ok(fresh), _) => {
                let fresh = Arc::new(fresh);
                *write(&self.kubeconfig) = Some(Arc::clone(&fresh));
                Ok(fresh)
            }
            // `client_for` then names the missing context and the file.
            (Err(e), Some(cached)) => {
                tracing::warn!(error = %e, "cannot read the kubeconfig again; using the copy read before");
                Ok(cached)
            }
            (Err(e), None) => Err(e),
        }
    }
}

fn has_context(config: &Kubeconfig, context: &str) -> bool {
    config.contexts.iter().any(|c| c.name == context)
}

/// A poisoned lock only means another task panicked while holding it; the
/// maps stay consistent (every write is one insert), so keep using them.
fn read<T>(lock: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    lock.read()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write<T>(lock: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    lock.write()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
