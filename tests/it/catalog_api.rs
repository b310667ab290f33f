//! The catalog through the API: clusters and applications registered and
//! changed by admins, checked like the config file, reached by the fleet
//! without a restart, and never a credential in an answer.

use serde_json::{Value, json};

use crate::support::{
    Api, Server, ServerBuilder, Sim, TestDb,
    api::target_states,
    config::{app_yaml, write_config_without},
};

/// A sim cluster the config file leaves out: the sim's kubeconfig has its
/// context, the catalog does not know it at start.
const SPARE: &str = "aps1-b";
/// The name it gets in the catalog, unlike its context's.
const LATE: &str = "apse1-late";

const QUICK: &str = r#"  - name: quick
    stages:
      - {name: canary, clusters: {names: [use1-canary]}, bake: 1s}
"#;

struct World {
    db: TestDb,
    sim: Sim,
    server: Server,
    _dir: tempfile::TempDir,
}

async fn world(worker: &str) -> World {
    world_with(worker, "").await
}

/// Only the fleet's watches can tell the engine that a target finished:
/// it would not look on its own for an hour.
const WATCHES_ONLY: &str = "polling: {rolling_out: 1h, rolled_out: 1h}\n";

async fn world_with(worker: &str, extra_config: &str) -> World {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = TestDb::new().await;
    let sim = Sim::start(dir.path()).await;
    let config = write_config_without(
        dir.path(),
        &sim.kubeconfig,
        QUICK,
        &app_yaml("shop", "quick", 1, 20),
        extra_config,
        &[SPARE],
    );
    let server = ServerBuilder::new(&db.url, &config, dir.path(), worker)
        .start()
        .await;
    World {
        db,
        sim,
        server,
        _dir: dir,
    }
}

/// An application body: one Deployment of `name`, one replica.
fn app_body(name: &str, plan: &str) -> Value {
    json!({
        "name": name,
        "namespace": name,
        "plan": plan,
        "parameters": {"defaults": {"replicas": 1}},
        "templates": [format!(
            "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}}}\nspec:\n  replicas: {{{{ params.replicas }}}}\n  progressDeadlineSeconds: 20\n  selector: {{matchLabels: {{app: {name}}}}}\n  template:\n    metadata: {{labels: {{app: {name}}}}}\n    spec:\n      containers:\n        - {{name: app, image: \"{{{{ image }}}}\"}}\n"
        )],
    })
}

/// A one-stage plan over `clusters`, with a short bake.
fn plan_body(name: &str, clusters: &[&str]) -> Value {
    json!({
        "name": name,
        "stages": [{"name": "only", "clusters": {"names": clusters}, "bake": "1s"}],
    })
}

/// What must never appear in an answer: the kubeconfig's secret and the
/// API servers' addresses.
fn credentials(sim: &Sim) -> Vec<String> {
    let text = std::fs::read_to_string(&sim.kubeconfig).expect("kubeconfig");
    let doc: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text).expect("kubeconfig yaml");
    let mut found = Vec::new();
    for user in doc["users"].as_sequence().into_iter().flatten() {
        if let Some(token) = user["user"]["token"].as_str() {
            found.push(token.to_owned());
        }
    }
    for cluster in doc["clusters"].as_sequence().into_iter().flatten() {
        if let Some(server) = cluster["cluster"]["server"].as_str() {
            found.push(server.trim_end_matches('/').to_owned());
        }
    }
    assert!(
        !found.is_empty(),
        "the sim kubeconfig has credentials: {text}"
    );
    found
}

/// Whether `key` is a key of any object inside `value`.
fn has_key(value: &Value, key: &str) -> bool {
    match value {
        Value::Object(map) => map.iter().any(|(k, v)| k == key || has_key(v, key)),
        Value::Array(items) => items.iter().any(|v| has_key(v, key)),
        _ => false,
    }
}

async fn catalog_events(db: &TestDb) -> Vec<(String, Option<String>, String, String)> {
    let mut conn = db.connect().await;
    sqlx::query_as(
        "SELECT kind, cluster, actor, message FROM events WHERE rollout_id IS NULL ORDER BY id",
    )
    .fetch_all(&mut conn)
    .await
    .expect("read catalog events")
}

#[tokio::test]
async fn a_cluster_registered_through_the_api_gets_a_rollout_and_follows_its_changed_context() {
    // Watched like the config file's clusters, through the context it
    // names now: with polling this slow, a target on it would otherwise
    // never be seen to finish.
    let w = world_with("catalog-late", WATCHES_ONLY).await;
    let api = &w.server.api;
    let secrets = credentials(&w.sim);
    let mut answers: Vec<Value> = Vec::new();

    let (status, created) = api
        .post(
            "/api/v1/clusters",
            json!({"name": LATE, "region": "ap-southeast", "timezone": "Asia/Singapore",
                   "labels": {"tier": "late"}, "context": SPARE}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["name"], LATE);
    assert_eq!(created["timezone"], "Asia/Singapore");
    answers.push(created);

    let (status, plan) = api
        .post("/api/v1/plans", plan_body("late-plan", &[LATE]))
        .await;
    assert_eq!(status, 201, "a plan may name the new cluster: {plan}");
    let (status, app) = api
        .post("/api/v1/applications", app_body("late-app", "late-plan"))
        .await;
    assert_eq!(status, 201, "{app}");
    assert_eq!(app["plan"], "late-plan");
    answers.push(app);

    let id = api
        .release("late-app", "1.0.0", "registry.example/late-app:1.0.0")
        .await;
    let done = api.wait_state(id, "succeeded").await;
    assert_eq!(
        target_states(&done),
        [(LATE.to_owned(), "rolled_out".to_owned())]
    );
    assert_eq!(
        w.sim.control.deployment_images(SPARE, "late-app").await,
        Some(vec!["registry.example/late-app:1.0.0".to_owned()]),
        "the deployment went to the context the cluster names"
    );
    answers.push(done);

    // PUT replaces region, labels and context; the next rollout goes
    // through the new context without a restart.
    let (status, updated) = api
        .put(
            &format!("/api/v1/clusters/{LATE}"),
            json!({"region": "ap-south", "timezone": "Asia/Kolkata",
                   "labels": {"tier": "late", "size": "small"}, "context": "euw1-b"}),
        )
        .await;
    assert_eq!(status, 200, "{updated}");
    assert_eq!(
        updated["changed"],
        json!(["region", "timezone", "labels", "context"])
    );
    let (status, shown) = api.get(&format!("/api/v1/clusters/{LATE}")).await;
    assert_eq!(status, 200, "{shown}");
    assert_eq!(shown["region"], "ap-south");
    assert_eq!(shown["labels"], json!({"tier": "late", "size": "small"}));
    answers.push(updated);
    answers.push(shown);

    let id = api
        .release("late-app", "2.0.0", "registry.example/late-app:2.0.0")
        .await;
    answers.push(api.wait_state(id, "succeeded").await);
    assert_eq!(
        w.sim.control.deployment_images("euw1-b", "late-app").await,
        Some(vec!["registry.example/late-app:2.0.0".to_owned()]),
        "the changed context is followed"
    );
    assert_eq!(
        w.sim.control.deployment_images(SPARE, "late-app").await,
        Some(vec!["registry.example/late-app:1.0.0".to_owned()]),
        "the old context is left alone"
    );

    // Every event of the rollout leads to its dashboard page.
    let page = format!("/rollouts/{id}");
    let events = api.events(id).await;
    assert!(
        !events.is_empty()
            && events.iter().all(|e| e["links"]["dashboard"]
                .as_str()
                .is_some_and(|d| d.ends_with(&page))),
        "{events:#?}"
    );

    // Who did it: an event per change, and the log.
    let events = catalog_events(&w.db).await;
    let kinds: Vec<(&str, &str)> = events
        .iter()
        .map(|(kind, _, actor, _)| (kind.as_str(), actor.as_str()))
        .collect();
    assert_eq!(
        kinds,
        [
            ("cluster_registered", "bootstrap"),
            ("application_registered", "bootstrap"),
            ("cluster_updated", "bootstrap"),
        ],
        "{events:#?}"
    );
    assert_eq!(events[0].1.as_deref(), Some(LATE));
    let log = std::fs::read_to_string(&w.server.log).expect("server log");
    assert!(
        log.contains("cluster registered"),
        "the log says who did it"
    );

    for path in [
        "/api/v1/clusters",
        "/api/v1/applications",
        "/api/v1/rollouts",
    ] {
        answers.push(api.get(path).await.1);
    }
    for answer in &answers {
        let text = answer.to_string();
        for secret in &secrets {
            assert!(!text.contains(secret.as_str()), "{secret} in {text}");
        }
        assert!(
            !has_key(answer, "context"),
            "contexts stay on the server: {text}"
        );
        assert!(!text.contains(SPARE), "contexts stay on the server: {text}");
    }
}

#[tokio::test]
async fn bad_catalog_writes_are_refused_with_the_field_and_change_nothing() {
    let w = world("catalog-bad").await;
    let api = &w.server.api;
    let before = (
        api.get("/api/v1/clusters").await.1,
        api.get("/api/v1/applications").await.1,
    );

    let refused = [
        // (what, method, path, body, status, field)
        (
            "empty region",
            "POST",
            "/api/v1/clusters",
            json!({"name": "x-1", "region": ""}),
            422,
            Some("region"),
        ),
        (
            "missing region",
            "POST",
            "/api/v1/clusters",
            json!({"name": "x-1"}),
            422,
            Some("region"),
        ),
        (
            "bad name",
            "POST",
            "/api/v1/clusters",
            json!({"name": "Bad_Name", "region": "eu"}),
            422,
            Some("name"),
        ),
        (
            "unknown time zone",
            "POST",
            "/api/v1/clusters",
            json!({"name": "x-1", "region": "eu", "timezone": "Mars/Olympus"}),
            422,
            Some("timezone"),
        ),
        (
            "a label that is not text",
            "POST",
            "/api/v1/clusters",
            json!({"name": "x-1", "region": "eu", "labels": {"size": 3}}),
            422,
            Some("labels.size"),
        ),
        (
            "text PostgreSQL cannot store",
            "POST",
            "/api/v1/clusters",
            json!({"name": "x-1", "region": "eu", "labels": {"tier": "a\u{0}b"}}),
            422,
            Some("labels.tier"),
        ),
        (
            "credentials are not taken",
            "POST",
            "/api/v1/clusters",
            json!({"name": "x-1", "region": "eu", "token": "s3cret"}),
            422,
            Some("token"),
        ),
        (
            "an existing cluster",
            "POST",
            "/api/v1/clusters",
            json!({"name": "use1-canary", "region": "us-east"}),
            409,
            None,
        ),
        (
            "an unknown cluster",
            "PUT",
            "/api/v1/clusters/nowhere-1",
            json!({"region": "eu"}),
            404,
            None,
        ),
        (
            "a renaming PUT",
            "PUT",
            "/api/v1/clusters/use1-canary",
            json!({"name": "use1-other", "region": "us-east"}),
            422,
            Some("name"),
        ),
        (
            "a PUT with an empty context",
            "PUT",
            "/api/v1/clusters/use1-canary",
            json!({"region": "us-east", "context": ""}),
            422,
            Some("context"),
        ),
        (
            "not JSON",
            "POST",
            "/api/v1/clusters",
            json!("just a string"),
            400,
            None,
        ),
        (
            "an unknown plan",
            "POST",
            "/api/v1/applications",
            app_body("new-app", "no-such-plan"),
            422,
            Some("plan"),
        ),
        (
            "a bad namespace",
            "POST",
            "/api/v1/applications",
            json!({"name": "new-app", "namespace": "Not OK", "plan": "quick", "templates": ["a: b"]}),
            422,
            Some("namespace"),
        ),
        (
            "a template with an unknown variable",
            "POST",
            "/api/v1/applications",
            json!({"name": "new-app", "namespace": "new-app", "plan": "quick",
                   "templates": ["apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {v: \"{{ nope }}\"}\n"]}),
            422,
            Some("templates[0]"),
        ),
        (
            "parameters for an unknown cluster",
            "POST",
            "/api/v1/applications",
            {
                let mut body = app_body("new-app", "quick");
                body["parameters"]["clusters"] = json!({"nowhere-1": {"replicas": 2}});
                body
            },
            422,
            Some("parameters.clusters.nowhere-1"),
        ),
        (
            "an existing application",
            "POST",
            "/api/v1/applications",
            app_body("shop", "quick"),
            409,
            None,
        ),
        (
            "an unknown application",
            "PUT",
            "/api/v1/applications/no-such-app",
            app_body("no-such-app", "quick"),
            404,
            None,
        ),
        (
            "an application PUT with an unknown plan",
            "PUT",
            "/api/v1/applications/shop",
            app_body("shop", "no-such-plan"),
            422,
            Some("plan"),
        ),
    ];
    let mut failures = Vec::new();
    for (what, method, path, body, status, field) in refused {
        let (got, answer) = match method {
            "POST" => api.post(path, body).await,
            _ => api.put(path, body).await,
        };
        let field_ok = answer["field"].as_str() == field;
        let problem_ok = answer["status"] == json!(status) && answer["detail"].is_string();
        if got != status || !field_ok || !problem_ok {
            failures.push(format!(
                "{what}: expected {status} field {field:?}, got {got} {answer}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    let after = (
        api.get("/api/v1/clusters").await.1,
        api.get("/api/v1/applications").await.1,
    );
    assert_eq!(before, after, "nothing was written");
    assert!(
        catalog_events(&w.db).await.is_empty(),
        "no event for a refused change"
    );

    // A PUT that matches what is stored changes nothing either.
    let (status, same) = api
        .put(
            "/api/v1/clusters/use1-canary",
            json!({"region": "us-east", "timezone": "America/New_York",
                   "labels": {"tier": "canary", "size": "small"}}),
        )
        .await;
    assert_eq!(status, 200, "{same}");
    assert_eq!(same["changed"], json!([]));
    assert!(catalog_events(&w.db).await.is_empty());

    // A deployer may read the catalog but not change it.
    let (status, token) = api
        .post("/api/v1/tokens", json!({"name": "ci", "role": "deployer"}))
        .await;
    assert_eq!(status, 201, "{token}");
    let deployer = api.with_token(token["token"].as_str());
    let (status, answer) = deployer
        .post("/api/v1/clusters", json!({"name": "x-1", "region": "eu"}))
        .await;
    assert_eq!(status, 403, "{answer}");
}

#[tokio::test]
async fn a_cluster_whose_context_is_not_in_the_kubeconfig_fails_its_target_with_the_reason() {
    let w = world("catalog-ghost").await;
    let api: &Api = &w.server.api;
    let (status, body) = api
        .post(
            "/api/v1/clusters",
            json!({"name": "ghost-1", "region": "nowhere", "context": "ghost-context"}),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(
        api.post("/api/v1/plans", plan_body("ghost-plan", &["ghost-1"]))
            .await
            .0,
        201
    );
    assert_eq!(
        api.post("/api/v1/applications", app_body("ghost-app", "ghost-plan"))
            .await
            .0,
        201
    );
    let id = api
        .release("ghost-app", "1.0.0", "registry.example/ghost-app:1.0.0")
        .await;
    let ended = api
        .wait_until(id, "the rollout to end", |r| r["finished_at"].is_string())
        .await;
    assert!(
        ["failed", "rolled_back"].contains(&ended["state"].as_str().unwrap_or_default()),
        "{ended:#}"
    );
    let reason = ended["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("ghost-1") && reason.contains("no context \"ghost-context\""),
        "the rollout says which context is missing: {ended:#}"
    );
    let events = api.events(id).await;
    assert!(
        events.iter().any(|e| e["kind"] == "target_failed"
            && e["cluster"] == "ghost-1"
            && e["message"]
                .as_str()
                .is_some_and(|m| m.contains("ghost-context"))),
        "{events:#?}"
    );
    // The service carries on: other rollouts are unaffected.
    let id = api
        .release("shop", "1.0.0", "registry.example/shop:1.0.0")
        .await;
    api.wait_state(id, "succeeded").await;
}
