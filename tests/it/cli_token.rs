//! `meridian token create --server URL`: an admin makes tokens through the API.

use std::process::Command;

use crate::support::{Api, api::TEST_TOKEN, config::app_yaml, process::binary, world::World};

#[tokio::test]
async fn token_create_with_a_server_goes_through_the_api_and_the_secret_works_with_its_role() {
    let plan = "  - name: one\n    stages:\n      - {name: canary, clusters: {names: [use1-canary]}, bake: 1s}\n";
    let world = World::start(plan, &app_yaml("shop", "one", 1, 20), "tokens").await;
    let server = &world.server;

    let output = Command::new(binary())
        .args([
            "token",
            "create",
            "--role",
            "viewer",
            "--name",
            "ci-reader",
            "--server",
            &server.api.base,
        ])
        .env("MERIDIAN_TOKEN", TEST_TOKEN)
        .env_remove("DATABASE_URL")
        .output()
        .expect("run meridian token create");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let secret = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    assert!(
        secret.starts_with("mrd_"),
        "only the secret on stdout: {secret:?}"
    );

    let reader = Api::new(&server.api.base).with_token(Some(&secret));
    let (status, _) = reader.get("/api/v1/rollouts").await;
    assert_eq!(status, 200);
    let (status, _) = reader
        .post(
            "/api/v1/releases",
            serde_json::json!({"application": "shop", "version": "1", "image": "x:1"}),
        )
        .await;
    assert_eq!(status, 403, "a viewer cannot deploy");

    // A viewer cannot make tokens: the auth exit code, one line.
    let denied = Command::new(binary())
        .args([
            "token",
            "create",
            "--role",
            "admin",
            "--server",
            &server.api.base,
        ])
        .env("MERIDIAN_TOKEN", &secret)
        .output()
        .expect("run meridian token create");
    assert_eq!(
        denied.status.code(),
        Some(20),
        "{}",
        String::from_utf8_lossy(&denied.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&denied.stderr)
            .trim()
            .lines()
            .count(),
        1
    );
}
