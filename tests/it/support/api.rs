//! A small client for Meridian's REST API.

use serde_json::{Value, json};
use uuid::Uuid;

use super::eventually;

/// The admin token every test server accepts: `ServerBuilder` starts
/// servers with it as `MERIDIAN_BOOTSTRAP_TOKEN`, and `Api` sends it unless
/// told otherwise.
pub const TEST_TOKEN: &str = "meridian-test-bootstrap-token-4f7c2a9e";

#[derive(Clone)]
pub struct Api {
    pub base: String,
    http: reqwest::Client,
    /// Sent as `Authorization: Bearer`; `None` sends no credentials.
    token: Option<String>,
}

impl Api {
    /// A client that authenticates with [`TEST_TOKEN`].
    pub fn new(base: &str) -> Api {
        super::install_crypto();
        Api {
            base: base.to_owned(),
            http: reqwest::Client::new(),
            token: Some(TEST_TOKEN.to_owned()),
        }
    }

    /// The same server with another token, or none.
    pub fn with_token(&self, token: Option<&str>) -> Api {
        Api {
            token: token.map(str::to_owned),
            ..self.clone()
        }
    }

    /// A request to `path` carrying this client's token.
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        let request = self.http.request(method, format!("{}{path}", self.base));
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    pub async fn ready(&self) -> bool {
        match self.http.get(format!("{}/readyz", self.base)).send().await {
            Ok(r) => r.status().is_success(),
            Err(_) => false,
        }
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let response = self
            .request(reqwest::Method::POST, path)
            .json(&body)
            .send()
            .await
            .expect("API reachable");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub async fn put(&self, path: &str, body: Value) -> (u16, Value) {
        let response = self
            .request(reqwest::Method::PUT, path)
            .json(&body)
            .send()
            .await
            .expect("API reachable");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let response = self
            .request(reqwest::Method::GET, path)
            .send()
            .await
            .expect("API reachable");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Creates a release and returns its rollout id.
    pub async fn release(&self, application: &str, version: &str, image: &str) -> Uuid {
        let (status, body) = self
            .post(
                "/api/v1/releases",
                json!({"application": application, "version": version, "image": image}),
            )
            .await;
        assert_eq!(status, 201, "create release: {body}");
        body["id"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .expect("rollout id")
    }

    pub async fn rollout(&self, id: Uuid) -> Value {
        let (status, body) = self.get(&format!("/api/v1/rollouts/{id}")).await;
        assert_eq!(status, 200, "get rollout: {body}");
        body
    }

    pub async fn events(&self, id: Uuid) -> Vec<Value> {
        let (status, body) = self.get(&format!("/api/v1/rollouts/{id}/events")).await;
        assert_eq!(status, 200, "get events: {body}");
        body["items"].as_array().cloned().unwrap_or_default()
    }

    pub async fn act(&self, id: Uuid, action: &str) -> (u16, Value) {
        self.post(
            &format!("/api/v1/rollouts/{id}/{action}"),
            json!({"reason": "test"}),
        )
        .await
    }

    /// Waits until the rollout reaches `state`, failing early if it ends in
    /// another terminal state.
    pub async fn wait_state(&self, id: Uuid, state: &str) -> Value {
        eventually(&format!("rollout {id} to be {state}"), || async move {
            let rollout = self.rollout(id).await;
            let now = rollout["state"].as_str().unwrap_or_default().to_owned();
            if now == state {
                return Some(rollout);
            }
            let terminal = ["succeeded", "rolled_back", "failed", "aborted"];
            assert!(
                !terminal.contains(&now.as_str()),
                "rollout ended {now}, expected {state}: {rollout:#}"
            );
            None
        })
        .await
    }

    /// Waits until `check` holds for the rollout.
    pub async fn wait_until(&self, id: Uuid, what: &str, check: impl Fn(&Value) -> bool) -> Value {
        eventually(what, || async {
            let rollout = self.rollout(id).await;
            check(&rollout).then_some(rollout)
        })
        .await
    }
}

/// The states of a rollout's targets, by cluster.
pub fn target_states(rollout: &Value) -> Vec<(String, String)> {
    rollout["stages"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s["targets"].as_array().cloned().unwrap_or_default())
        .map(|t| {
            (
                t["cluster"].as_str().unwrap_or_default().to_owned(),
                t["state"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect()
}
