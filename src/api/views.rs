//! The JSON shapes the API answers, built from store records.

use axum::{Json, extract::State};
use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{ApiError, AppState, error::Problem};
use crate::{
    domain::{Application, Cluster, RolloutState, TargetState},
    store::{ReleaseRecord, RolloutRecord},
};

/// A rollout: where one release is on its way around the fleet.
#[derive(Serialize, ToSchema)]
#[schema(as = Rollout)]
pub struct RolloutView {
    pub id: Uuid,
    pub application: String,
    #[schema(value_type = super::openapi::ReleaseSchema)]
    pub release: ReleaseRecord,
    #[schema(value_type = RolloutState)]
    pub state: &'static str,
    /// 0-based index into `stages`.
    pub current_stage: usize,
    pub current_stage_name: Option<String>,
    pub plan: PlanRef,
    pub stages: Vec<StageView>,
    pub reason: Option<String>,
    pub bake_started_at: Option<DateTime<Utc>>,
    pub created_by: String,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub links: Links,
}

/// The plan version a rollout travels (fixed at its start).
#[derive(Serialize, ToSchema)]
pub struct PlanRef {
    pub name: String,
    pub version: i32,
}

#[derive(Serialize, ToSchema)]
#[schema(as = RolloutStage)]
pub struct StageView {
    pub name: String,
    pub max_parallel: u32,
    pub bake_seconds: f64,
    pub approval: bool,
    pub targets: Vec<TargetView>,
}

/// One cluster inside one rollout.
#[derive(Serialize, ToSchema)]
#[schema(as = RolloutTarget)]
pub struct TargetView {
    pub cluster: String,
    pub region: String,
    #[schema(value_type = TargetState)]
    pub state: &'static str,
    pub message: Option<String>,
    /// Order in which the cluster was changed (rollback goes backwards).
    pub apply_order: Option<u32>,
    pub updated_at: Option<DateTime<Utc>>,
}

/// Where to find a rollout: the API and the dashboard.
#[derive(Serialize, ToSchema)]
#[schema(as = RolloutLinks)]
pub struct Links {
    #[serde(rename = "self")]
    pub self_: String,
    pub events: String,
    pub dashboard: String,
}

/// An item about one rollout (an event, a gate reading) with the rollout's
/// links, so every item that names a rollout leads to its dashboard page.
#[derive(Serialize, ToSchema)]
pub struct Linked<T> {
    #[serde(flatten)]
    pub item: T,
    pub links: Links,
}

impl<T> Linked<T> {
    /// Each of `items` with the links of rollout `id`.
    pub fn all(items: Vec<T>, public_url: &str, id: Uuid) -> Vec<Linked<T>> {
        items
            .into_iter()
            .map(|item| Linked {
                item,
                links: links(public_url, id),
            })
            .collect()
    }
}

impl RolloutView {
    pub fn of(record: &RolloutRecord, public_url: &str) -> Self {
        let m = &record.machine;
        let stages = m
            .stages
            .iter()
            .enumerate()
            .map(|(i, s)| StageView {
                name: s.name.clone(),
                max_parallel: s.max_parallel,
                bake_seconds: s.bake.num_milliseconds() as f64 / 1000.0,
                approval: s.approval,
                targets: m
                    .targets
                    .iter()
                    .filter(|t| t.stage == i)
                    .map(|t| TargetView {
                        cluster: t.cluster.clone(),
                        region: t.region.clone(),
                        state: t.state.as_str(),
                        message: t.message.clone(),
                        apply_order: t.apply_seq,
                        updated_at: t.updated_at,
                    })
                    .collect(),
            })
            .collect();
        let id = record.id;
        RolloutView {
            id,
            application: record.release.application.clone(),
            release: record.release.clone(),
            state: m.state.as_str(),
            current_stage: m.current_stage,
            current_stage_name: m.stages.get(m.current_stage).map(|s| s.name.clone()),
            plan: PlanRef {
                name: record.plan_name.clone(),
                version: record.plan_version,
            },
            stages,
            reason: m.reason.clone(),
            bake_started_at: m.bake_started_at,
            created_by: record.created_by.clone(),
            created_at: record.created_at,
            updated_at: record.updated_at,
            finished_at: m.finished_at,
            links: links(public_url, id),
        }
    }
}

pub fn links(public_url: &str, id: Uuid) -> Links {
    Links {
        self_: format!("{public_url}/api/v1/rollouts/{id}"),
        events: format!("{public_url}/api/v1/rollouts/{id}/events"),
        dashboard: format!("{public_url}/rollouts/{id}"),
    }
}

/// A cluster Meridian may change (never its credentials).
#[derive(Serialize, ToSchema)]
#[schema(as = Cluster)]
pub struct ClusterView {
    pub name: String,
    pub region: String,
    pub timezone: String,
    pub labels: std::collections::BTreeMap<String, String>,
}

impl From<Cluster> for ClusterView {
    fn from(c: Cluster) -> Self {
        // The kubeconfig context stays on the server.
        Self {
            name: c.name.to_string(),
            region: c.region,
            timezone: c.timezone.name().to_owned(),
            labels: c.labels,
        }
    }
}

/// Something deployable.
#[derive(Serialize, ToSchema)]
#[schema(as = Application)]
pub struct ApplicationView {
    pub name: String,
    pub namespace: String,
    pub plan: String,
}

impl From<Application> for ApplicationView {
    fn from(a: Application) -> Self {
        Self {
            name: a.name,
            namespace: a.namespace,
            plan: a.plan,
        }
    }
}

#[derive(Serialize, ToSchema)]
pub struct Items<T> {
    pub items: Vec<T>,
}

/// One page of a long list; `next_cursor` (when present) fetches the next.
#[derive(Serialize, ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// The clusters Meridian may change.
#[utoipa::path(
    get,
    path = "/clusters",
    operation_id = "list_clusters",
    tag = "catalog",
    responses((status = 200, description = "Every cluster", body = Items<ClusterView>)),
)]
pub async fn clusters(State(state): State<AppState>) -> Result<Json<Items<ClusterView>>, ApiError> {
    let items = state
        .store
        .clusters()
        .await?
        .into_iter()
        .map(Into::into)
        .collect();
    Ok(Json(Items { items }))
}

/// The applications Meridian deploys.
#[utoipa::path(
    get,
    path = "/applications",
    operation_id = "list_applications",
    tag = "catalog",
    responses((status = 200, description = "Every application", body = Items<ApplicationView>)),
)]
pub async fn applications(
    State(state): State<AppState>,
) -> Result<Json<Items<ApplicationView>>, ApiError> {
    let items = state
        .store
        .applications()
        .await?
        .into_iter()
        .map(Into::into)
        .collect();
    Ok(Json(Items { items }))
}

/// One cluster.
#[utoipa::path(
    get,
    path = "/clusters/{name}",
    operation_id = "get_cluster",
    tag = "catalog",
    params(("name" = String, Path, description = "The cluster's name")),
    responses(
        (status = 200, description = "The cluster", body = ClusterView),
        (status = 400, description = "The name is not valid UTF-8", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such cluster", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn cluster(
    State(state): State<AppState>,
    name: Result<axum::extract::Path<String>, axum::extract::rejection::PathRejection>,
) -> Result<Json<ClusterView>, ApiError> {
    let axum::extract::Path(name) = name?;
    state
        .store
        .clusters()
        .await?
        .into_iter()
        .find(|c| c.name.as_str() == name)
        .map(|c| Json(c.into()))
        .ok_or_else(|| ApiError::not_found(format!("cluster `{name}` not found")))
}

/// One application.
#[utoipa::path(
    get,
    path = "/applications/{name}",
    operation_id = "get_application",
    tag = "catalog",
    params(("name" = String, Path, description = "The application's name")),
    responses(
        (status = 200, description = "The application", body = ApplicationView),
        (status = 400, description = "The name is not valid UTF-8", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such application", body = Problem, content_type = "application/problem+json"),
    ),
)]
pub async fn application(
    State(state): State<AppState>,
    name: Result<axum::extract::Path<String>, axum::extract::rejection::PathRejection>,
) -> Result<Json<ApplicationView>, ApiError> {
    let axum::extract::Path(name) = name?;
    super::error::check_no_nul("the name", &name)?;
    Ok(Json(state.store.application(&name).await?.into()))
}
