//! Bearer tokens with roles: who may call what, tokens that end, the
//! first admin token, and the names recorded as actors.

use std::process::Command;

use reqwest::Method;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::support::{
    Api, Server, ServerBuilder, Sim, TestDb,
    api::TEST_TOKEN,
    config::{app_yaml, write_config},
    eventually,
    process::binary,
};

/// One quick stage, so a rollout can finish within a test.
const QUICK: &str = r#"  - name: quick
    stages:
      - {name: canary, clusters: {names: [use1-canary]}, bake: 1s}
"#;
/// A bake long enough that the rollout is still running when acted on.
const SLOW: &str = r#"  - name: slow
    stages:
      - {name: canary, clusters: {names: [use1-canary]}, bake: 10m}
"#;

/// The roles in order of power; a role allows what every earlier one does.
const ROLES: [&str; 4] = ["viewer", "deployer", "operator", "admin"];

struct World {
    db: TestDb,
    _sim: Sim,
    server: Server,
    _dir: tempfile::TempDir,
}

async fn world(plan: &str, plan_name: &str) -> World {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = TestDb::new().await;
    let sim = Sim::start(dir.path()).await;
    let config = write_config(
        dir.path(),
        &sim.kubeconfig,
        plan,
        &app_yaml("shop", plan_name, 1, 20),
    );
    let server = ServerBuilder::new(&db.url, &config, dir.path(), "auth")
        .start()
        .await;
    World {
        db,
        _sim: sim,
        server,
        _dir: dir,
    }
}

/// Creates a token through the API (as the bootstrap admin); returns its id
/// and secret.
async fn create_token(
    api: &Api,
    name: &str,
    role: &str,
    expires_at: Option<String>,
) -> (Uuid, String) {
    let mut body = json!({"name": name, "role": role});
    if let Some(at) = expires_at {
        body["expires_at"] = json!(at);
    }
    let (status, created) = api.post("/api/v1/tokens", body).await;
    assert_eq!(status, 201, "create token {name}: {created}");
    let id = created["id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("id");
    let secret = created["token"].as_str().expect("secret").to_owned();
    assert!(secret.starts_with("mrd_"), "{secret}");
    (id, secret)
}

fn hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// A response as the matrix looks at it.
struct Reply {
    status: u16,
    challenge: Option<String>,
    body: String,
}

async fn send(api: &Api, method: Method, path: &str, body: Option<Value>) -> Reply {
    let mut request = api.request(method, path);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("API reachable");
    let status = response.status().as_u16();
    let challenge = response
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    // The event stream never ends: its status and headers are the answer.
    let streaming = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    let body = if streaming {
        String::new()
    } else {
        response.text().await.unwrap_or_default()
    };
    Reply {
        status,
        challenge,
        body,
    }
}

/// One row of the endpoint table: what it needs, and what a caller allowed
/// to use it gets (a success or a domain answer, never 401/403).
struct Endpoint {
    name: &'static str,
    method: Method,
    path: String,
    needs: &'static str,
    allowed: &'static [u16],
    body: fn(usize) -> Option<Value>,
}

fn no_body(_: usize) -> Option<Value> {
    None
}

/// A valid application body for the catalog rows of the matrix.
fn matrix_app(name: &str) -> Value {
    json!({
        "name": name,
        "namespace": name,
        "plan": "quick",
        "templates": ["apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {v: \"{{ version }}\"}\n"],
    })
}

#[tokio::test]
async fn every_role_gets_exactly_the_endpoints_the_role_table_allows_and_no_body_holds_a_token_hash()
 {
    let w = world(QUICK, "quick").await;
    let admin_api = &w.server.api;
    let rollout = admin_api
        .release("shop", "1.0.0", "registry.example/shop:1.0.0")
        .await;
    admin_api.wait_state(rollout, "succeeded").await;

    let mut secrets = vec![TEST_TOKEN.to_owned()];
    let mut callers: Vec<(&str, Api)> = vec![("none", admin_api.with_token(None))];
    for role in ROLES {
        let (_, secret) = create_token(admin_api, &format!("matrix-{role}"), role, None).await;
        callers.push((role, admin_api.with_token(Some(&secret))));
        secrets.push(secret);
    }

    let endpoints = [
        Endpoint {
            name: "GET rollouts",
            method: Method::GET,
            path: "/api/v1/rollouts".into(),
            needs: "viewer",
            allowed: &[200],
            body: no_body,
        },
        Endpoint {
            name: "GET rollout",
            method: Method::GET,
            path: format!("/api/v1/rollouts/{rollout}"),
            needs: "viewer",
            allowed: &[200],
            body: no_body,
        },
        Endpoint {
            name: "GET events",
            method: Method::GET,
            path: format!("/api/v1/rollouts/{rollout}/events"),
            needs: "viewer",
            allowed: &[200],
            body: no_body,
        },
        Endpoint {
            name: "GET gates",
            method: Method::GET,
            path: format!("/api/v1/rollouts/{rollout}/gates"),
            needs: "viewer",
            allowed: &[200],
            body: no_body,
        },
        Endpoint {
            name: "GET clusters",
            method: Method::GET,
            path: "/api/v1/clusters".into(),
            needs: "viewer",
            allowed: &[200],
            body: no_body,
        },
        Endpoint {
            name: "GET applications",
            method: Method::GET,
            path: "/api/v1/applications".into(),
            needs: "viewer",
            allowed: &[200],
            body: no_body,
        },
        Endpoint {
            name: "GET stream",
            method: Method::GET,
            path: "/api/v1/events/stream".into(),
            needs: "viewer",
            allowed: &[200],
            body: no_body,
        },
        Endpoint {
            name: "POST releases",
            method: Method::POST,
            path: "/api/v1/releases".into(),
            needs: "deployer",
            // Queued behind whatever is active, so always created.
            allowed: &[201],
            body: |n| {
                Some(json!({
                    "application": "shop",
                    "version": format!("2.0.{n}"),
                    "image": format!("registry.example/shop:2.0.{n}"),
                    "on_active": "queue",
                }))
            },
        },
        Endpoint {
            name: "POST rollout action",
            method: Method::POST,
            path: format!("/api/v1/rollouts/{rollout}/pause"),
            needs: "operator",
            // The rollout succeeded: there is nothing left to pause.
            allowed: &[409],
            body: |_| Some(json!({"reason": "matrix"})),
        },
        Endpoint {
            name: "POST clusters",
            method: Method::POST,
            path: "/api/v1/clusters".into(),
            needs: "admin",
            allowed: &[201],
            body: |n| Some(json!({"name": format!("matrix-{n}"), "region": "matrix"})),
        },
        Endpoint {
            name: "PUT cluster",
            method: Method::PUT,
            path: "/api/v1/clusters/use1-canary".into(),
            needs: "admin",
            // The same settings as the config file's: nothing changes.
            allowed: &[200],
            body: |_| {
                Some(json!({"region": "us-east", "timezone": "America/New_York",
                            "labels": {"tier": "canary", "size": "small"}}))
            },
        },
        Endpoint {
            name: "POST applications",
            method: Method::POST,
            path: "/api/v1/applications".into(),
            needs: "admin",
            allowed: &[201],
            body: |n| Some(matrix_app(&format!("matrix-app-{n}"))),
        },
        Endpoint {
            name: "PUT application",
            method: Method::PUT,
            path: "/api/v1/applications/no-such-app".into(),
            needs: "admin",
            allowed: &[404],
            body: |_| Some(matrix_app("no-such-app")),
        },
        Endpoint {
            name: "POST tokens",
            method: Method::POST,
            path: "/api/v1/tokens".into(),
            needs: "admin",
            allowed: &[201],
            body: |n| Some(json!({"name": format!("made-by-matrix-{n}"), "role": "viewer"})),
        },
        Endpoint {
            name: "GET tokens",
            method: Method::GET,
            path: "/api/v1/tokens".into(),
            needs: "admin",
            allowed: &[200],
            body: no_body,
        },
        Endpoint {
            name: "DELETE tokens",
            method: Method::DELETE,
            path: format!("/api/v1/tokens/{}", Uuid::new_v4()),
            needs: "admin",
            allowed: &[404],
            body: no_body,
        },
    ];

    let mut bodies = Vec::new();
    let mut failures = Vec::new();
    let mut n = 0;
    for endpoint in &endpoints {
        let needed = ROLES
            .iter()
            .position(|r| *r == endpoint.needs)
            .expect("known role");
        for (caller, api) in &callers {
            n += 1;
            let reply = send(
                api,
                endpoint.method.clone(),
                &endpoint.path,
                (endpoint.body)(n),
            )
            .await;
            let held = ROLES.iter().position(|r| r == caller);
            let expected = match held {
                None => "401",
                Some(held) if held < needed => "403",
                Some(_) => "allowed",
            };
            let ok = match expected {
                "401" => {
                    reply.status == 401
                        && reply
                            .challenge
                            .as_deref()
                            .is_some_and(|c| c.starts_with("Bearer"))
                }
                "403" => {
                    reply.status == 403 && reply.body.contains(&format!("`{}`", endpoint.needs))
                }
                _ => endpoint.allowed.contains(&reply.status),
            };
            if !ok {
                failures.push(format!(
                    "{} as {caller}: expected {expected} {:?}, got {} {:?} {}",
                    endpoint.name, endpoint.allowed, reply.status, reply.challenge, reply.body
                ));
            }
            bodies.push(reply.body);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // Secrets created by the matrix itself are in `bodies`; their hashes
    // must be nowhere, nor any hash of a token known here.
    for body in &bodies {
        let created: Value = serde_json::from_str(body).unwrap_or_default();
        if let Some(secret) = created["token"].as_str() {
            secrets.push(secret.to_owned());
        }
    }
    let (_, listing) = admin_api.get("/api/v1/tokens").await;
    bodies.push(listing.to_string());
    for secret in &secrets {
        let hash = hash(secret);
        for body in &bodies {
            assert!(!body.contains(&hash), "a body holds a token hash: {body}");
        }
        assert!(
            !listing.to_string().contains(secret.as_str()),
            "the listing holds a secret: {listing}"
        );
    }
    for body in &bodies {
        assert!(!body.contains("secret_hash"), "{body}");
    }
    let items = listing["items"].as_array().expect("items");
    assert!(
        items
            .iter()
            .any(|t| t["name"] == "matrix-operator" && t["role"] == "operator")
    );
}

#[tokio::test]
async fn a_token_created_through_the_api_stops_working_once_revoked_and_once_expired() {
    let w = world(QUICK, "quick").await;
    let admin = &w.server.api;

    let (id, secret) = create_token(admin, "short-lived-ci", "deployer", None).await;
    let ci = admin.with_token(Some(&secret));
    assert_eq!(ci.get("/api/v1/rollouts").await.0, 200);
    assert_eq!(
        admin
            .request(Method::DELETE, &format!("/api/v1/tokens/{id}"))
            .send()
            .await
            .expect("reachable")
            .status(),
        204
    );
    let revoked = send(&ci, Method::GET, "/api/v1/rollouts", None).await;
    assert_eq!(revoked.status, 401, "{}", revoked.body);
    assert!(revoked.body.contains("revoked"), "{}", revoked.body);
    let (_, listing) = admin.get("/api/v1/tokens").await;
    assert!(
        !listing.to_string().contains(&id.to_string()),
        "a revoked token leaves the list: {listing}"
    );
    let again = send(admin, Method::DELETE, &format!("/api/v1/tokens/{id}"), None).await;
    assert_eq!(again.status, 404, "{}", again.body);
    // Its name is free again.
    create_token(admin, "short-lived-ci", "viewer", None).await;

    let expires_at = (chrono::Utc::now() + chrono::Duration::seconds(3)).to_rfc3339();
    let (_, secret) = create_token(admin, "expiring", "viewer", Some(expires_at)).await;
    let expiring = admin.with_token(Some(&secret));
    assert_eq!(expiring.get("/api/v1/clusters").await.0, 200);
    let expired = eventually("the token to expire", || {
        let expiring = expiring.clone();
        async move {
            let reply = send(&expiring, Method::GET, "/api/v1/clusters", None).await;
            (reply.status != 200).then_some(reply)
        }
    })
    .await;
    assert_eq!(expired.status, 401, "{}", expired.body);
    assert!(expired.body.contains("expired"), "{}", expired.body);

    let past = send(
        admin,
        Method::POST,
        "/api/v1/tokens",
        Some(
            json!({"name": "already-over", "role": "viewer", "expires_at": "2001-01-01T00:00:00Z"}),
        ),
    )
    .await;
    assert_eq!(past.status, 422, "{}", past.body);
    let bad_role = send(
        admin,
        Method::POST,
        "/api/v1/tokens",
        Some(json!({"name": "root", "role": "root"})),
    )
    .await;
    assert_eq!(bad_role.status, 422, "{}", bad_role.body);
    assert!(
        bad_role.body.contains("viewer, deployer, operator, admin"),
        "{}",
        bad_role.body
    );
    let taken = send(
        admin,
        Method::POST,
        "/api/v1/tokens",
        Some(json!({"name": "expiring", "role": "viewer"})),
    )
    .await;
    assert_eq!(
        taken.status, 409,
        "a live token keeps its name: {}",
        taken.body
    );
}

#[tokio::test]
async fn the_secret_printed_by_token_create_works_against_a_running_server() {
    let w = world(QUICK, "quick").await;
    let output = Command::new(binary())
        .args([
            "token",
            "create",
            "--role",
            "operator",
            "--name",
            "from-cli",
            "--expires-in",
            "1h",
        ])
        .env("DATABASE_URL", &w.db.url)
        .output()
        .expect("run meridian token create");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stderr}");
    let secret = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    assert!(
        secret.starts_with("mrd_"),
        "only the secret on stdout: {secret:?}"
    );
    assert!(
        !stderr.contains(&secret),
        "the secret is printed once: {stderr}"
    );
    assert!(stderr.contains("from-cli"), "{stderr}");

    let operator = w.server.api.with_token(Some(&secret));
    let (status, body) = operator.get("/api/v1/rollouts").await;
    assert_eq!(status, 200, "{body}");
    let refused = send(&operator, Method::GET, "/api/v1/tokens", None).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(
        refused.body.contains("`admin`"),
        "names the role needed: {}",
        refused.body
    );

    let (_, listing) = w.server.api.get("/api/v1/tokens").await;
    let token = listing["items"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|t| t["name"] == "from-cli")
        .cloned()
        .expect("listed");
    assert_eq!(token["role"], "operator");
    assert_eq!(token["created_by"], "cli");
    assert!(token["expires_at"].is_string(), "{token}");

    let refused = Command::new(binary())
        .args(["token", "create", "--role", "root"])
        .env("DATABASE_URL", &w.db.url)
        .output()
        .expect("run meridian token create");
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("unknown role"));
}

#[tokio::test]
async fn the_bootstrap_token_is_an_admin_and_open_endpoints_and_unknown_routes_need_no_token() {
    let w = world(QUICK, "quick").await;
    let bootstrap = &w.server.api;
    let (status, listing) = bootstrap.get("/api/v1/tokens").await;
    assert_eq!(status, 200, "{listing}");
    let (status, created) = bootstrap
        .post(
            "/api/v1/tokens",
            json!({"name": "first-admin", "role": "admin"}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["created_by"], "bootstrap");

    let anonymous = bootstrap.with_token(None);
    for path in [
        "/healthz",
        "/readyz",
        "/metrics",
        "/",
        &format!("/rollouts/{}", Uuid::new_v4()),
        "/assets/app.js",
        "/assets/style.css",
    ] {
        let reply = send(&anonymous, Method::GET, path, None).await;
        assert_eq!(reply.status, 200, "{path} stays open: {}", reply.body);
    }
    let unknown = send(&anonymous, Method::GET, "/api/v1/no-such-thing", None).await;
    assert_eq!(unknown.status, 404, "{}", unknown.body);

    let wrong = bootstrap.with_token(Some(
        "mrd_0000000000000000000000000000000000000000000000000000000000000000",
    ));
    let reply = send(&wrong, Method::GET, "/api/v1/rollouts", None).await;
    assert_eq!(reply.status, 401, "{}", reply.body);
    assert!(reply.challenge.is_some_and(|c| c.starts_with("Bearer")));
    let basic = anonymous
        .request(Method::GET, "/api/v1/rollouts")
        .basic_auth("admin", Some(TEST_TOKEN))
        .send()
        .await
        .expect("reachable");
    assert_eq!(basic.status(), 401, "only bearer tokens count");

    // Browsers' EventSource cannot send headers: the stream takes the token
    // in its query, and only the stream does.
    let url = |token: &str| format!("/api/v1/events/stream?access_token={token}");
    let reply = send(&anonymous, Method::GET, &url(TEST_TOKEN), None).await;
    assert_eq!(reply.status, 200, "{}", reply.body);
    let reply = send(&anonymous, Method::GET, &url("mrd_wrong"), None).await;
    assert_eq!(reply.status, 401, "{}", reply.body);
    let reply = send(&anonymous, Method::GET, "/api/v1/events/stream", None).await;
    assert_eq!(reply.status, 401, "{}", reply.body);
    assert!(reply.body.contains("access_token"), "{}", reply.body);
    let reply = send(
        &anonymous,
        Method::GET,
        &format!("/api/v1/rollouts?access_token={TEST_TOKEN}"),
        None,
    )
    .await;
    assert_eq!(reply.status, 401, "{}", reply.body);

    let log = std::fs::read_to_string(&w.server.log).expect("server log");
    assert!(!log.contains(TEST_TOKEN), "the log holds a token");
}

#[tokio::test]
async fn the_actor_on_releases_rollouts_and_actions_is_the_name_of_the_token_that_did_it() {
    let w = world(SLOW, "slow").await;
    let admin = &w.server.api;
    let (_, deploy) = create_token(admin, "ci-pipeline", "deployer", None).await;
    let (_, operate) = create_token(admin, "oncall-alice", "operator", None).await;

    let id = admin
        .with_token(Some(&deploy))
        .release("shop", "1.0.0", "registry.example/shop:1.0.0")
        .await;
    let rollout = admin.rollout(id).await;
    assert_eq!(rollout["created_by"], "ci-pipeline", "{rollout:#}");
    assert_eq!(
        rollout["release"]["created_by"], "ci-pipeline",
        "{rollout:#}"
    );

    admin
        .wait_until(id, "the canary to bake", |r| {
            r["bake_started_at"].is_string()
        })
        .await;
    let (status, body) = admin.with_token(Some(&operate)).act(id, "pause").await;
    assert_eq!(status, 202, "{body}");
    admin.wait_state(id, "paused").await;
    let events = admin.events(id).await;
    let paused = events
        .iter()
        .find(|e| e["kind"] == "paused")
        .unwrap_or_else(|| panic!("a paused event: {events:#?}"));
    assert_eq!(paused["actor"], "oncall-alice", "{paused}");
    assert!(
        events.iter().all(|e| e["actor"] != "api"),
        "no event is recorded as the anonymous `api` any more: {events:#?}"
    );
}
