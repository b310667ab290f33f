//! The JSON shapes the API answers, built from store records.

use axum::{Json, extract::State};
use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use super::{ApiError, AppState};
use crate::{
    domain::{Application, Cluster},
    store::{ReleaseRecord, RolloutRecord},
};

#[derive(Serialize)]
pub struct RolloutView {
    pub id: Uuid,
    pub application: String,
    pub release: ReleaseRecord,
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

#[derive(Serialize)]
pub struct PlanRef {
    pub name: String,
    pub version: i32,
}

#[derive(Serialize)]
pub struct StageView {
    pub name: String,
    pub max_parallel: u32,
    pub bake_seconds: f64,
    pub approval: bool,
    pub targets: Vec<TargetView>,
}

#[derive(Serialize)]
pub struct TargetView {
    pub cluster: String,
    pub region: String,
    pub state: &'static str,
    pub message: Option<String>,
    /// Order in which the cluster was changed (rollback goes backwards).
    pub apply_order: Option<u32>,
    pub updated_at: Option<DateTime<Utc>>,
}

#[derive(Serialize)]
pub struct Links {
    #[serde(rename = "self")]
    pub self_: String,
    pub events: String,
    pub dashboard: String,
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

#[derive(Serialize)]
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

#[derive(Serialize)]
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

#[derive(Serialize)]
pub struct Items<T> {
    pub items: Vec<T>,
}

/// One page of a long list; `next_cursor` (when present) fetches the next.
#[derive(Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

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

pub async fn cluster(
    State(state): State<AppState>,
    axum::extract::Path(name): axum::extract::Path<String>,
) -> Result<Json<ClusterView>, ApiError> {
    state
        .store
        .clusters()
        .await?
        .into_iter()
        .find(|c| c.name.as_str() == name)
        .map(|c| Json(c.into()))
        .ok_or_else(|| ApiError::not_found(format!("cluster `{name}` not found")))
}

pub async fn application(
    State(state): State<AppState>,
    axum::extract::Path(name): axum::extract::Path<String>,
) -> Result<Json<ApplicationView>, ApiError> {
    Ok(Json(state.store.application(&name).await?.into()))
}
