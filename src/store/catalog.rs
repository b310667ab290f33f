//! Clusters, applications and plans: the catalog a rollout is built from.

use std::collections::BTreeMap;

use sqlx::{PgConnection, Row};

use super::{Result, Store, StoreError};
use crate::{
    config::Config,
    domain::{Application, Cluster, ClusterName, Parameters, Plan, plan::PlanSpec},
};

/// What reconciling a config file changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    pub clusters_changed: usize,
    pub applications_changed: usize,
    /// (plan name, new version)
    pub new_plan_versions: Vec<(String, i32)>,
}

impl ReconcileReport {
    pub fn is_empty(&self) -> bool {
        *self == Self::default()
    }
}

/// Advisory lock key that serialises catalog writers (see `lock_catalog`).
const CATALOG_LOCK: i64 = 72_201;

/// Serialises every catalog writer: config reconcilers (several replicas
/// starting at once), plan saves and the API's catalog writes.
pub(super) async fn lock_catalog(conn: &mut PgConnection) -> Result<()> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(CATALOG_LOCK)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

impl Store {
    /// Brings the catalog in line with a config file, in one transaction:
    /// unchanged entries are not touched, a changed plan becomes a new
    /// version.
    pub async fn reconcile(&self, config: &Config) -> Result<ReconcileReport> {
        let mut tx = self.pool.begin().await?;
        // Serialise reconcilers (several replicas starting at once).
        lock_catalog(&mut tx).await?;
        let mut report = ReconcileReport::default();
        for cluster in &config.clusters {
            if upsert_cluster(&mut tx, cluster).await? {
                report.clusters_changed += 1;
            }
        }
        for (spec, plan) in &config.plans {
            if let Some(version) = insert_plan_version(&mut tx, spec, plan).await? {
                report.new_plan_versions.push((plan.name.clone(), version));
            }
        }
        for app in &config.applications {
            if upsert_application(&mut tx, app).await? {
                report.applications_changed += 1;
            }
        }
        tx.commit().await?;
        Ok(report)
    }

    pub async fn clusters(&self) -> Result<Vec<Cluster>> {
        let rows = sqlx::query(
            "SELECT name, region, timezone, labels, context FROM clusters ORDER BY region, name",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter().map(|row| cluster_from_row(&row)).collect()
    }

    pub async fn applications(&self) -> Result<Vec<Application>> {
        let rows = sqlx::query(
            "SELECT name, namespace, plan_name, templates, parameters FROM applications ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|row| application_from_row(&row))
            .collect()
    }

    pub async fn application(&self, name: &str) -> Result<Application> {
        let row = sqlx::query(
            "SELECT name, namespace, plan_name, templates, parameters FROM applications WHERE name = $1",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("application `{name}`")))?;
        application_from_row(&row)
    }

    /// The plan at a given version (the one a rollout pinned).
    pub async fn plan(&self, name: &str, version: i32) -> Result<Plan> {
        let (plan,): (serde_json::Value,) =
            sqlx::query_as("SELECT plan FROM plans WHERE name = $1 AND version = $2")
                .bind(name)
                .bind(version)
                .fetch_optional(&self.pool)
                .await?
                .ok_or_else(|| StoreError::NotFound(format!("plan `{name}` version {version}")))?;
        plan_from_json(name, plan)
    }
}

/// Stores `plan` as its next version unless the latest version has the
/// same spec; returns the new version, if any.
async fn insert_plan_version(
    conn: &mut PgConnection,
    spec: &PlanSpec,
    plan: &Plan,
) -> Result<Option<i32>> {
    let spec_json = to_json(spec)?;
    let latest: Option<(i32, serde_json::Value)> = sqlx::query_as(
        "SELECT version, spec FROM plans WHERE name = $1 ORDER BY version DESC LIMIT 1",
    )
    .bind(&plan.name)
    .fetch_optional(&mut *conn)
    .await?;
    let next = match latest {
        Some((_, ref stored)) if *stored == spec_json => return Ok(None),
        Some((version, _)) => version + 1,
        None => 1,
    };
    sqlx::query("INSERT INTO plans (name, version, spec, plan) VALUES ($1, $2, $3, $4)")
        .bind(&plan.name)
        .bind(next)
        .bind(&spec_json)
        .bind(to_json(plan)?)
        .execute(&mut *conn)
        .await?;
    Ok(Some(next))
}

/// One stored plan version, as written.
#[derive(Clone, Debug, serde::Serialize, sqlx::FromRow, utoipa::ToSchema)]
pub struct PlanVersion {
    pub name: String,
    pub version: i32,
    /// The plan as it was written (the shape `POST /api/v1/plans` takes).
    #[schema(value_type = crate::domain::plan::PlanSpec)]
    pub spec: serde_json::Value,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

impl Store {
    /// Saves a plan from the API: a new version when it differs from the
    /// latest. Returns (version, whether it is new).
    pub async fn save_plan(&self, spec: &PlanSpec, plan: &Plan) -> Result<(i32, bool)> {
        let mut tx = self.pool.begin().await?;
        lock_catalog(&mut tx).await?;
        let saved = match insert_plan_version(&mut tx, spec, plan).await? {
            Some(version) => (version, true),
            None => (latest_plan(&mut tx, &plan.name).await?.0, false),
        };
        tx.commit().await?;
        Ok(saved)
    }

    /// The latest version of every plan.
    pub async fn latest_plans(&self) -> Result<Vec<PlanVersion>> {
        Ok(sqlx::query_as(
            "SELECT DISTINCT ON (name) name, version, spec, created_at FROM plans ORDER BY name, version DESC",
        )
        .fetch_all(&self.pool)
        .await?)
    }

    /// Every version of one plan, newest first.
    pub async fn plan_versions(&self, name: &str) -> Result<Vec<PlanVersion>> {
        let versions: Vec<PlanVersion> = sqlx::query_as(
            "SELECT name, version, spec, created_at FROM plans WHERE name = $1 ORDER BY version DESC",
        )
        .bind(name)
        .fetch_all(&self.pool)
        .await?;
        if versions.is_empty() {
            return Err(StoreError::NotFound(format!("plan `{name}`")));
        }
        Ok(versions)
    }
}

pub(super) async fn latest_plan(conn: &mut PgConnection, name: &str) -> Result<(i32, Plan)> {
    let (version, plan): (i32, serde_json::Value) = sqlx::query_as(
        "SELECT version, plan FROM plans WHERE name = $1 ORDER BY version DESC LIMIT 1",
    )
    .bind(name)
    .fetch_optional(&mut *conn)
    .await?
    .ok_or_else(|| StoreError::NotFound(format!("plan `{name}`")))?;
    Ok((version, plan_from_json(name, plan)?))
}

/// A stored plan (its `plan` column) read back.
pub(super) fn plan_from_json(name: &str, plan: serde_json::Value) -> Result<Plan> {
    serde_json::from_value(plan).map_err(|e| StoreError::Corrupt(format!("plan {name}: {e}")))
}

/// Every cluster as one JSON array, a column for a statement that reads
/// more than the clusters; [`clusters_from_json`] reads it back.
macro_rules! clusters_as_json {
    () => {
        "(SELECT coalesce(json_agg(json_build_object(
                    'name', name, 'region', region, 'timezone', timezone,
                    'labels', labels, 'context', context) ORDER BY name), '[]')
            FROM clusters)"
    };
}
pub(super) use clusters_as_json;

pub(super) fn clusters_from_json(clusters: serde_json::Value) -> Result<Vec<Cluster>> {
    serde_json::from_value(clusters).map_err(|e| StoreError::Corrupt(format!("clusters: {e}")))
}

pub(super) async fn upsert_cluster(conn: &mut PgConnection, cluster: &Cluster) -> Result<bool> {
    let result = sqlx::query(
        "INSERT INTO clusters (name, region, timezone, labels, context)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (name) DO UPDATE
            SET region = EXCLUDED.region, timezone = EXCLUDED.timezone,
                labels = EXCLUDED.labels, context = EXCLUDED.context, updated_at = now()
          WHERE (clusters.region, clusters.timezone, clusters.labels, clusters.context)
             IS DISTINCT FROM (EXCLUDED.region, EXCLUDED.timezone, EXCLUDED.labels, EXCLUDED.context)",
    )
    .bind(cluster.name.as_str())
    .bind(&cluster.region)
    .bind(cluster.timezone.name())
    .bind(to_json(&cluster.labels)?)
    .bind(&cluster.context)
    .execute(&mut *conn)
    .await?;
    Ok(result.rows_affected() > 0)
}

pub(super) async fn upsert_application(conn: &mut PgConnection, app: &Application) -> Result<bool> {
    let result = sqlx::query(
        "INSERT INTO applications (name, namespace, plan_name, templates, parameters)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (name) DO UPDATE
            SET namespace = EXCLUDED.namespace, plan_name = EXCLUDED.plan_name,
                templates = EXCLUDED.templates, parameters = EXCLUDED.parameters, updated_at = now()
          WHERE (applications.namespace, applications.plan_name, applications.templates, applications.parameters)
             IS DISTINCT FROM (EXCLUDED.namespace, EXCLUDED.plan_name, EXCLUDED.templates, EXCLUDED.parameters)",
    )
    .bind(&app.name)
    .bind(&app.namespace)
    .bind(&app.plan)
    .bind(to_json(&app.templates)?)
    .bind(to_json(&app.parameters)?)
    .execute(&mut *conn)
    .await?;
    Ok(result.rows_affected() > 0)
}

pub(super) fn cluster_from_row(row: &sqlx::postgres::PgRow) -> Result<Cluster> {
    let name: String = row.try_get("name")?;
    let timezone: String = row.try_get("timezone")?;
    let labels: serde_json::Value = row.try_get("labels")?;
    Ok(Cluster {
        name: ClusterName::parse(&name).map_err(StoreError::Corrupt)?,
        region: row.try_get("region")?,
        timezone: timezone
            .parse()
            .map_err(|e| StoreError::Corrupt(format!("cluster {name} timezone: {e}")))?,
        labels: serde_json::from_value::<BTreeMap<String, String>>(labels)
            .map_err(|e| StoreError::Corrupt(format!("cluster {name} labels: {e}")))?,
        context: row.try_get("context")?,
    })
}

pub(super) fn application_from_row(row: &sqlx::postgres::PgRow) -> Result<Application> {
    let name: String = row.try_get("name")?;
    let templates: serde_json::Value = row.try_get("templates")?;
    let parameters: serde_json::Value = row.try_get("parameters")?;
    Ok(Application {
        namespace: row.try_get("namespace")?,
        plan: row.try_get("plan_name")?,
        templates: serde_json::from_value(templates)
            .map_err(|e| StoreError::Corrupt(format!("application {name} templates: {e}")))?,
        parameters: serde_json::from_value::<Parameters>(parameters)
            .map_err(|e| StoreError::Corrupt(format!("application {name} parameters: {e}")))?,
        name,
    })
}

pub(super) fn to_json<T: serde::Serialize>(value: &T) -> Result<serde_json::Value> {
    serde_json::to_value(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}
