//! Registering and changing clusters and applications one at a time (the
//! API's catalog writes), each with an audit event naming who did it.
//!
//! The config file's [`Store::reconcile`] upserts in bulk and records no
//! event: the file is its own record. A change through the API has no such
//! record, so the event log keeps one.

use std::collections::BTreeSet;

use sqlx::PgConnection;

use super::{
    CATALOG_CHANNEL, Result, Store, StoreError,
    catalog::{
        application_from_row, cluster_from_row, lock_catalog, upsert_application, upsert_cluster,
    },
    rollouts::{insert_events, notify},
};
use crate::domain::{Application, Cluster, EventKind, NewEvent};

/// What an update did: the names of the fields that differ (empty when the
/// request matched what was stored, and nothing was written).
pub type ChangedFields = Vec<&'static str>;

impl Store {
    /// The names of every plan (any version).
    pub async fn plan_names(&self) -> Result<BTreeSet<String>> {
        let rows: Vec<(String,)> = sqlx::query_as("SELECT DISTINCT name FROM plans")
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().map(|(name,)| name).collect())
    }

    /// Adds a cluster; [`StoreError::Conflict`] when the name is taken.
    pub async fn register_cluster(&self, cluster: &Cluster, actor: &str) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        lock_catalog(&mut tx).await?;
        if read_cluster(&mut tx, cluster.name.as_str())
            .await?
            .is_some()
        {
            return Err(StoreError::Conflict(format!(
                "cluster `{}` already exists; PUT /api/v1/clusters/{} changes it",
                cluster.name, cluster.name
            )));
        }
        upsert_cluster(&mut tx, cluster).await?;
        let message = format!(
            "cluster `{}` registered in region `{}`",
            cluster.name, cluster.region
        );
        let event = NewEvent {
            kind: EventKind::ClusterRegistered,
            cluster: Some(cluster.name.to_string()),
            actor: actor.to_owned(),
            message,
        };
        insert_event(&mut tx, &event).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Replaces a registered cluster's settings; [`StoreError::NotFound`]
    /// when there is no such cluster.
    pub async fn update_cluster(&self, cluster: &Cluster, actor: &str) -> Result<ChangedFields> {
        let mut tx = self.pool.begin().await?;
        lock_catalog(&mut tx).await?;
        let old = read_cluster(&mut tx, cluster.name.as_str())
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("cluster `{}`", cluster.name)))?;
        let changed: ChangedFields = [
            ("region", old.region != cluster.region),
            ("timezone", old.timezone != cluster.timezone),
            ("labels", old.labels != cluster.labels),
            ("context", old.context != cluster.context),
        ]
        .into_iter()
        .filter_map(|(field, differs)| differs.then_some(field))
        .collect();
        if changed.is_empty() {
            return Ok(changed);
        }
        upsert_cluster(&mut tx, cluster).await?;
        let message = format!("cluster `{}` changed: {}", cluster.name, changed.join(", "));
        let event = NewEvent {
            kind: EventKind::ClusterUpdated,
            cluster: Some(cluster.name.to_string()),
            actor: actor.to_owned(),
            message,
        };
        insert_event(&mut tx, &event).await?;
        tx.commit().await?;
        Ok(changed)
    }

    /// Adds an application; [`StoreError::Conflict`] when the name is taken.
    pub async fn register_application(&self, app: &Application, actor: &str) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        lock_catalog(&mut tx).await?;
        if read_application(&mut tx, &app.name).await?.is_some() {
            return Err(StoreError::Conflict(format!(
                "application `{}` already exists; PUT /api/v1/applications/{} changes it",
                app.name, app.name
            )));
        }
        upsert_application(&mut tx, app).await?;
        let message = format!(
            "application `{}` registered (namespace `{}`, plan `{}`)",
            app.name, app.namespace, app.plan
        );
        let event = NewEvent {
            kind: EventKind::ApplicationRegistered,
            cluster: None,
            actor: actor.to_owned(),
            message,
        };
        insert_event(&mut tx, &event).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Replaces a registered application; [`StoreError::NotFound`] when
    /// there is no such application. A rollout pins its plan version, not
    /// the application: one in flight renders the changed templates from
    /// its next apply on.
    pub async fn update_application(
        &self,
        app: &Application,
        actor: &str,
    ) -> Result<ChangedFields> {
        let mut tx = self.pool.begin().await?;
        lock_catalog(&mut tx).await?;
        let old = read_application(&mut tx, &app.name)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("application `{}`", app.name)))?;
        let changed: ChangedFields = [
            ("namespace", old.namespace != app.namespace),
            ("plan", old.plan != app.plan),
            ("templates", old.templates != app.templates),
            ("parameters", old.parameters != app.parameters),
        ]
        .into_iter()
        .filter_map(|(field, differs)| differs.then_some(field))
        .collect();
        if changed.is_empty() {
            return Ok(changed);
        }
        upsert_application(&mut tx, app).await?;
        let message = format!("application `{}` changed: {}", app.name, changed.join(", "));
        let event = NewEvent {
            kind: EventKind::ApplicationUpdated,
            cluster: None,
            actor: actor.to_owned(),
            message,
        };
        insert_event(&mut tx, &event).await?;
        tx.commit().await?;
        Ok(changed)
    }
}

async fn read_cluster(conn: &mut PgConnection, name: &str) -> Result<Option<Cluster>> {
    let row = sqlx::query(
        "SELECT name, region, timezone, labels, context FROM clusters WHERE name = $1 FOR UPDATE",
    )
    .bind(name)
    .fetch_optional(&mut *conn)
    .await?;
    row.map(|row| cluster_from_row(&row)).transpose()
}

async fn read_application(conn: &mut PgConnection, name: &str) -> Result<Option<Application>> {
    let row = sqlx::query(
        "SELECT name, namespace, plan_name, templates, parameters FROM applications WHERE name = $1 FOR UPDATE",
    )
    .bind(name)
    .fetch_optional(&mut *conn)
    .await?;
    row.map(|row| application_from_row(&row)).transpose()
}

/// Records a catalog change (an event of no rollout) and tells engines to
/// forget their copy of the catalog.
async fn insert_event(conn: &mut PgConnection, event: &NewEvent) -> Result<()> {
    insert_events(conn, None, std::slice::from_ref(event), None).await?;
    notify(conn, CATALOG_CHANNEL, "").await
}
