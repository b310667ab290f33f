//! The `meridian` client commands, run as real processes against a real
//! server driving the simulated fleet: output, exit codes, the live watch
//! (piped and under a pseudo-terminal), and the one-line errors.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
};

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use uuid::Uuid;

use crate::support::{
    PATIENCE, Server, ServerBuilder, Sim, TestDb,
    api::TEST_TOKEN,
    config::{app_yaml, write_config},
    process::binary,
};

/// `shop` goes straight through; `cart` stops for approval before its
/// second stage, so a test can act on a rollout that is still going.
const PLANS: &str = r#"  - name: quick
    stages:
      - {name: canary, clusters: {names: [use1-canary]}, bake: 1s}
      - {name: rest, clusters: {names: [euw1-a]}, bake: 1s}
  - name: gated
    stages:
      - {name: canary, clusters: {names: [aps1-a]}, bake: 3s}
      - {name: rest, clusters: {names: [euc1-a]}, bake: 1s, approval: true}
"#;

struct World {
    _db: TestDb,
    _sim: Sim,
    server: Server,
    dir: tempfile::TempDir,
}

async fn world() -> World {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = TestDb::new().await;
    let sim = Sim::start(dir.path()).await;
    // A short progress deadline, so a crashlooping release fails quickly.
    let apps = format!(
        "{}{}",
        app_yaml("shop", "quick", 1, 3),
        app_yaml("cart", "gated", 1, 20)
    );
    let config = write_config(dir.path(), &sim.kubeconfig, PLANS, &apps);
    let server = ServerBuilder::new(&db.url, &config, dir.path(), "cli")
        .start()
        .await;
    World {
        _db: db,
        _sim: sim,
        server,
        dir,
    }
}

/// What a finished `meridian` process left.
#[derive(Debug)]
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self:#?}"))
    }

    /// The error is exactly one line, `error: …`, containing `needle`.
    fn assert_one_error_line(&self, code: i32, needle: &str) {
        assert_eq!(self.code, code, "{self:#?}");
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "one line on stderr: {self:#?}");
        assert!(lines[0].starts_with("error: "), "{self:#?}");
        assert!(lines[0].contains(needle), "`{needle}` in {self:#?}");
    }
}

impl World {
    /// An empty config directory, so the user's own file never leaks in.
    fn config_home(&self) -> PathBuf {
        let home = self.dir.path().join("config-home");
        std::fs::create_dir_all(&home).expect("config home");
        home
    }

    /// `meridian ARGS` pointed at this world's server with the admin token.
    fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut command = tokio::process::Command::new(binary());
        command
            .args(args)
            .env_remove("NO_COLOR")
            .env("MERIDIAN_URL", &self.server.api.base)
            .env("MERIDIAN_TOKEN", TEST_TOKEN)
            .env("XDG_CONFIG_HOME", self.config_home())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        command
    }

    async fn run(&self, args: &[&str]) -> Run {
        finish(self.command(args)).await
    }

    /// Creates a release through the CLI and answers its rollout id.
    async fn release(&self, application: &str, version: &str) -> Uuid {
        let image = format!("registry.example/{application}:{version}");
        let run = self
            .run(&[
                "release",
                "create",
                "-a",
                application,
                "--version",
                version,
                "--image",
                &image,
                "-o",
                "json",
            ])
            .await;
        assert_eq!(run.code, 0, "{run:#?}");
        run.json()["id"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .expect("rollout id")
    }
}

async fn finish(mut command: tokio::process::Command) -> Run {
    let output = tokio::time::timeout(PATIENCE, command.output())
        .await
        .expect("meridian finished in time")
        .expect("meridian ran");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}

#[tokio::test]
async fn list_get_and_cluster_commands_print_tables_for_people_and_the_apis_json_for_machines() {
    let w = world().await;
    let api = &w.server.api;

    let clusters = w.run(&["cluster", "list"]).await;
    assert_eq!(clusters.code, 0, "{clusters:#?}");
    let header = clusters.stdout.lines().next().unwrap_or_default();
    assert!(
        header.starts_with("NAME") && header.contains("REGION") && header.contains("LABELS"),
        "{clusters:#?}"
    );
    assert!(
        clusters
            .stdout
            .lines()
            .any(|l| l.starts_with("use1-canary ") && l.contains("tier=canary")),
        "{clusters:#?}"
    );
    let (_, from_api) = api.get("/api/v1/clusters").await;
    assert_eq!(
        w.run(&["cluster", "list", "-o", "json"]).await.json(),
        from_api
    );

    let created = w
        .run(&[
            "release",
            "create",
            "-a",
            "shop",
            "--version",
            "1.0.0",
            "--image",
            "registry.example/shop:1.0.0",
        ])
        .await;
    assert_eq!(created.code, 0, "{created:#?}");
    let id: Uuid = created
        .stdout
        .split_whitespace()
        .find_map(|word| word.parse().ok())
        .unwrap_or_else(|| panic!("a rollout id in {created:#?}"));
    assert!(
        created
            .stdout
            .starts_with("created release shop 1.0.0: rollout "),
        "{created:#?}"
    );
    api.wait_state(id, "succeeded").await;

    let list = w.run(&["rollout", "list"]).await;
    assert_eq!(list.code, 0, "{list:#?}");
    let lines: Vec<&str> = list.stdout.lines().collect();
    assert!(lines[0].starts_with("ID "), "{list:#?}");
    // Columns line up: STATE starts at the same place on every line.
    let state_at = lines[0].find("STATE").expect("STATE column");
    assert_eq!(
        lines[1].get(state_at..state_at + "succeeded".len()),
        Some("succeeded"),
        "{list:#?}"
    );
    assert!(lines[1].starts_with(&id.to_string()), "{list:#?}");
    assert!(lines[1].contains("ago"), "relative times: {list:#?}");
    assert!(!list.stdout.contains('\x1b'), "no colour into a pipe");

    let (_, listed) = api.get("/api/v1/rollouts?application=shop").await;
    let json = w
        .run(&["rollout", "list", "--application", "shop", "-o", "json"])
        .await;
    assert_eq!(json.json()["items"][0]["id"], listed["items"][0]["id"]);
    let none = w
        .run(&["rollout", "list", "--state", "paused", "-o", "json"])
        .await;
    assert_eq!(none.json()["items"], json!([]));

    let get = w.run(&["rollout", "get", &id.to_string()]).await;
    assert_eq!(get.code, 0, "{get:#?}");
    for needle in [
        "shop 1.0.0",
        "state    succeeded",
        "plan     quick v1",
        "use1-canary",
        "euw1-a",
        "rolled_out",
    ] {
        assert!(get.stdout.contains(needle), "`{needle}` in {get:#?}");
    }
    let get_json = w
        .run(&["rollout", "get", &id.to_string(), "-o", "json"])
        .await;
    let from_api = api.rollout(id).await;
    assert_eq!(get_json.json(), from_api, "the API's own shape");
    assert!(
        from_api["created_at"]
            .as_str()
            .is_some_and(|t| t.parse::<chrono::DateTime<chrono::Utc>>().is_ok()),
        "RFC 3339 in JSON"
    );

    let bash = w.run(&["completions", "bash"]).await;
    assert_eq!(bash.code, 0, "{bash:#?}");
    assert!(bash.stdout.contains("complete -F"), "{}", bash.stdout);
    assert!(bash.stdout.contains("rollout"), "{}", bash.stdout);
    for shell in ["zsh", "fish"] {
        let script = w.run(&["completions", shell]).await;
        assert_eq!(script.code, 0, "{script:#?}");
        assert!(script.stdout.contains("meridian"), "{script:#?}");
    }
}

#[tokio::test]
async fn wait_exits_zero_for_a_good_release_and_distinct_codes_for_rolled_back_aborted_and_timed_out()
 {
    let w = world().await;
    let api = &w.server.api;

    // Good: `release create --wait` ships and waits, one line per change.
    let good = w
        .run(&[
            "release",
            "create",
            "-a",
            "shop",
            "--version",
            "1.0.0",
            "--image",
            "registry.example/shop:1.0.0",
            "--wait",
            "--timeout",
            "2m",
        ])
        .await;
    assert_eq!(good.code, 0, "{good:#?}");
    let last = good.stdout.lines().last().unwrap_or_default();
    assert!(last.contains("  succeeded"), "{good:#?}");
    assert!(
        good.stdout.lines().any(|l| l.contains("stage 2/2 rest")),
        "the stage change has its own line: {good:#?}"
    );

    // A crashlooping release is rolled back: 10.
    let bad = w.release("shop", "1.1.0-crashloop").await;
    let waited = w.run(&["rollout", "wait", &bad.to_string()]).await;
    assert_eq!(waited.code, 10, "{waited:#?}");
    assert!(
        waited
            .stdout
            .lines()
            .last()
            .unwrap_or_default()
            .contains("rolled_back"),
        "{waited:#?}"
    );
    let json = w
        .run(&["rollout", "wait", &bad.to_string(), "-o", "json"])
        .await;
    assert_eq!(json.code, 10, "{json:#?}");
    assert_eq!(
        json.json()["state"],
        "rolled_back",
        "the final rollout as JSON"
    );

    // A rollout held for approval: a short --timeout gives 13.
    let held = w.release("cart", "1.0.0").await;
    api.wait_state(held, "awaiting_approval").await;
    let timed_out = w
        .run(&["rollout", "wait", &held.to_string(), "--timeout", "1s"])
        .await;
    timed_out.assert_one_error_line(13, "timed out after 1s");
    assert!(
        timed_out.stderr.contains("awaiting_approval"),
        "{timed_out:#?}"
    );

    // Abort refuses without --yes when nobody can be asked.
    let unconfirmed = w.run(&["rollout", "abort", &held.to_string()]).await;
    unconfirmed.assert_one_error_line(2, "pass --yes");
    assert_eq!(api.rollout(held).await["state"], "awaiting_approval");

    let aborted = w
        .run(&[
            "rollout",
            "abort",
            &held.to_string(),
            "--yes",
            "--reason",
            "wrong build",
        ])
        .await;
    assert_eq!(aborted.code, 0, "{aborted:#?}");
    assert!(aborted.stdout.contains("abort of rollout"), "{aborted:#?}");
    let waited = w.run(&["rollout", "wait", &held.to_string()]).await;
    assert_eq!(waited.code, 12, "{waited:#?}");
    let events = api.events(held).await;
    assert!(
        events.iter().any(|e| e["kind"] == "aborted"
            && e["message"]
                .as_str()
                .unwrap_or_default()
                .contains("wrong build")),
        "the reason is recorded: {events:#?}"
    );

    // Rollback of a held rollout: 10 again, through `rollback --yes`.
    let second = w.release("cart", "1.0.1").await;
    api.wait_state(second, "awaiting_approval").await;
    let rollback = w
        .run(&[
            "rollout",
            "rollback",
            &second.to_string(),
            "-y",
            "--reason",
            "canary looks off",
        ])
        .await;
    assert_eq!(rollback.code, 0, "{rollback:#?}");
    let waited = w.run(&["rollout", "wait", &second.to_string()]).await;
    assert_eq!(waited.code, 10, "{waited:#?}");

    // Pages: the table says how to get the next one.
    let first = w
        .run(&["rollout", "list", "--application", "cart", "--limit", "1"])
        .await;
    assert_eq!(first.code, 0, "{first:#?}");
    assert!(
        first.stdout.contains(&second.to_string()),
        "newest first: {first:#?}"
    );
    let cursor = first
        .stderr
        .trim()
        .strip_prefix("more: meridian rollout list --cursor ")
        .unwrap_or_else(|| panic!("a cursor hint: {first:#?}"))
        .to_owned();
    let next = w
        .run(&[
            "rollout",
            "list",
            "--application",
            "cart",
            "--limit",
            "1",
            "--cursor",
            &cursor,
        ])
        .await;
    assert!(next.stdout.contains(&held.to_string()), "{next:#?}");

    // An action the rollout's state does not allow: the server's reason, 1.
    for action in ["resume", "retry", "approve"] {
        let refused = w.run(&["rollout", action, &second.to_string()]).await;
        assert_eq!(refused.code, 1, "{refused:#?}");
        assert_eq!(refused.stderr.lines().count(), 1, "{refused:#?}");
    }
}

/// Reads lines from a running `watch` until one contains `needle`.
async fn read_until(
    lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStdout>>,
    seen: &mut Vec<String>,
    needle: &str,
) {
    let found = tokio::time::timeout(PATIENCE, async {
        while let Some(line) = lines.next_line().await.expect("read watch output") {
            seen.push(line.clone());
            if line.contains(needle) {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or(false);
    assert!(
        found,
        "`{needle}` never came; watch printed:\n{}",
        seen.join("\n")
    );
}

#[tokio::test]
async fn watch_on_a_pipe_prints_each_change_as_it_happens_and_exits_when_the_rollout_ends() {
    let w = world().await;
    let api = &w.server.api;
    let id = w.release("cart", "2.0.0").await;

    let mut child = w
        .command(&["rollout", "watch", &id.to_string()])
        .spawn()
        .expect("start watch");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let mut seen = Vec::new();

    // Each step below waits for the watch's line before causing the next
    // change: the lines come as things happen, not at the end.
    read_until(&mut lines, &mut seen, "  awaiting_approval").await;
    let pause = w
        .run(&["rollout", "pause", &id.to_string(), "--reason", "lunch"])
        .await;
    assert_eq!(pause.code, 0, "{pause:#?}");
    read_until(&mut lines, &mut seen, "  paused").await;
    let resume = w.run(&["rollout", "resume", &id.to_string()]).await;
    assert_eq!(resume.code, 0, "{resume:#?}");
    read_until(&mut lines, &mut seen, "  resumed").await;
    api.wait_state(id, "awaiting_approval").await;
    let approve = w
        .run(&[
            "rollout",
            "approve",
            &id.to_string(),
            "--reason",
            "looks good",
        ])
        .await;
    assert_eq!(approve.code, 0, "{approve:#?}");
    read_until(&mut lines, &mut seen, "  approved").await;
    read_until(&mut lines, &mut seen, &format!("rollout {id}")).await;
    assert!(
        seen.last().is_some_and(|l| l.contains("succeeded")),
        "ends with how it ended: {seen:#?}"
    );
    let status = tokio::time::timeout(PATIENCE, child.wait())
        .await
        .expect("watch exits once the rollout ended")
        .expect("watch status");
    assert_eq!(status.code(), Some(0), "{seen:#?}");

    // Every line but the last is one event, in the event log's order.
    let events = api.events(id).await;
    let kinds: Vec<&str> = events.iter().filter_map(|e| e["kind"].as_str()).collect();
    let printed: Vec<&str> = seen[..seen.len() - 1]
        .iter()
        .filter_map(|l| l.split("  ").nth(1))
        .collect();
    assert_eq!(printed, kinds, "{seen:#?}");

    // Watching an ended rollout prints its whole story and its exit code.
    let again = w.run(&["rollout", "watch", &id.to_string()]).await;
    assert_eq!(again.code, 0, "{again:#?}");
    assert_eq!(again.stdout.lines().count(), events.len() + 1, "{again:#?}");
    let ndjson = w
        .run(&["rollout", "watch", &id.to_string(), "-o", "json"])
        .await;
    let first: Value = serde_json::from_str(ndjson.stdout.lines().next().unwrap_or_default())
        .expect("one JSON event per line");
    assert_eq!(first, events[0]);
}

/// Runs `command` under a pseudo-terminal (util-linux `script`), as a
/// person at a terminal would; stdout gets everything the terminal showed.
fn under_terminal(w: &World, args: &[&str], extra_env: &[(&str, &str)]) -> tokio::process::Command {
    let quoted: Vec<String> = std::iter::once(binary().display().to_string())
        .chain(args.iter().map(|a| (*a).to_owned()))
        .map(|a| format!("'{}'", a.replace('\'', r"'\''")))
        .collect();
    let mut command = tokio::process::Command::new("script");
    command
        .args(["-qfec", &quoted.join(" "), "/dev/null"])
        .env_remove("NO_COLOR")
        .env("MERIDIAN_URL", &w.server.api.base)
        .env("MERIDIAN_TOKEN", TEST_TOKEN)
        .env("XDG_CONFIG_HOME", w.config_home())
        .env("TERM", "xterm")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    for (key, value) in extra_env {
        command.env(key, value);
    }
    command
}

#[tokio::test]
async fn on_a_terminal_watch_draws_a_live_view_with_the_bake_bar_colours_follow_no_color_and_rollback_asks_first()
 {
    let w = world().await;
    let api = &w.server.api;
    let id = w.release("cart", "3.0.0").await;

    // Started right away, so it sees the canary's 3 s bake.
    let watch = under_terminal(&w, &["rollout", "watch", &id.to_string()], &[])
        .spawn()
        .expect("start watch under script");
    api.wait_state(id, "awaiting_approval").await;
    let approve = w.run(&["rollout", "approve", &id.to_string()]).await;
    assert_eq!(approve.code, 0, "{approve:#?}");
    let output = tokio::time::timeout(PATIENCE, watch.wait_with_output())
        .await
        .expect("watch ends with the rollout")
        .expect("watch output");
    let screen = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{screen}");
    assert!(
        screen.contains("\x1b[?1049h"),
        "the live view took the screen: {screen}"
    );
    assert!(screen.contains("bake canary"), "the bake bar: {screen}");
    assert!(screen.contains('█'), "the bar fills: {screen}");
    assert!(
        screen.contains("GATE") || screen.contains("EVENT"),
        "{screen}"
    );
    assert!(
        screen.contains(&format!("rollout {id} ")) && screen.contains("succeeded"),
        "the last frame stays: {screen}"
    );

    let coloured = finish(under_terminal(
        &w,
        &["rollout", "get", &id.to_string()],
        &[],
    ))
    .await;
    assert!(
        coloured.stdout.contains("\x1b[32msucceeded"),
        "{coloured:#?}"
    );
    let plain = finish(under_terminal(
        &w,
        &["rollout", "get", &id.to_string()],
        &[("NO_COLOR", "1")],
    ))
    .await;
    assert!(plain.stdout.contains("succeeded"), "{plain:#?}");
    assert!(!plain.stdout.contains("\x1b["), "NO_COLOR: {plain:#?}");

    // At a terminal, rollback asks first; "n" leaves the rollout alone.
    let declined = answer_at_terminal(&w, &["rollout", "rollback", &id.to_string()], "n\n").await;
    assert_eq!(declined.code, 1, "{declined:#?}");
    assert!(
        declined.stdout.contains("Roll back rollout"),
        "{declined:#?}"
    );
    assert!(declined.stdout.contains("not confirmed"), "{declined:#?}");
    assert_eq!(api.rollout(id).await["state"], "succeeded");
    let confirmed = answer_at_terminal(&w, &["rollout", "rollback", &id.to_string()], "y\n").await;
    assert_eq!(confirmed.code, 0, "{confirmed:#?}");
    let waited = w.run(&["rollout", "wait", &id.to_string()]).await;
    assert_eq!(waited.code, 10, "{waited:#?}");
}

/// Runs `args` under a pseudo-terminal and types `keys` into it.
async fn answer_at_terminal(w: &World, args: &[&str], keys: &str) -> Run {
    use tokio::io::AsyncWriteExt;
    let mut command = under_terminal(w, args, &[]);
    command.stdin(Stdio::piped());
    let mut child = command.spawn().expect("start under script");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(keys.as_bytes()).await.expect("type");
    drop(stdin);
    let output = tokio::time::timeout(PATIENCE, child.wait_with_output())
        .await
        .expect("finished in time")
        .expect("ran");
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

#[tokio::test]
async fn a_bad_server_a_bad_token_and_an_unknown_rollout_each_give_their_code_and_one_line() {
    let w = world().await;
    let unknown = Uuid::new_v4().to_string();

    let dead = format!("http://127.0.0.1:{}", free_port());
    let unreachable = w.run(&["rollout", "list", "--server", &dead]).await;
    unreachable.assert_one_error_line(21, &format!("cannot reach Meridian at {dead}"));
    let mut from_env = w.command(&["rollout", "get", &unknown]);
    from_env.env("MERIDIAN_URL", &dead);
    finish(from_env)
        .await
        .assert_one_error_line(21, "from MERIDIAN_URL");

    let bad_token = w
        .run(&["rollout", "list", "--token", "mrd_not-a-real-token"])
        .await;
    bad_token.assert_one_error_line(20, "unauthorized");
    assert!(bad_token.stderr.contains("--token"), "{bad_token:#?}");
    let mut no_token = w.command(&["cluster", "list"]);
    no_token.env_remove("MERIDIAN_TOKEN");
    finish(no_token)
        .await
        .assert_one_error_line(20, "MERIDIAN_TOKEN");

    // A viewer may look but not act: 403 is an auth error too.
    let (status, viewer) = w
        .server
        .api
        .post(
            "/api/v1/tokens",
            json!({"name": "cli-viewer", "role": "viewer"}),
        )
        .await;
    assert_eq!(status, 201, "{viewer}");
    let viewer = viewer["token"].as_str().expect("secret").to_owned();
    let listed = w.run(&["rollout", "list", "--token", &viewer]).await;
    assert_eq!(listed.code, 0, "{listed:#?}");
    let forbidden = w
        .run(&["rollout", "pause", &unknown, "--token", &viewer])
        .await;
    forbidden.assert_one_error_line(20, "forbidden");

    let missing = w.run(&["rollout", "get", &unknown]).await;
    missing.assert_one_error_line(22, "not found");
    let missing_wait = w.run(&["rollout", "wait", &unknown]).await;
    missing_wait.assert_one_error_line(22, "not found");
    let missing_watch = w.run(&["rollout", "watch", &unknown]).await;
    missing_watch.assert_one_error_line(22, "not found");

    let malformed = w.run(&["rollout", "get", "not-a-uuid"]).await;
    assert_eq!(malformed.code, 2, "{malformed:#?}");
}

fn write_user_config(home: &Path, text: &str) {
    let dir = home.join("meridian");
    std::fs::create_dir_all(&dir).expect("config dir");
    std::fs::write(dir.join("config.toml"), text).expect("config file");
}

#[tokio::test]
async fn server_and_token_come_from_flags_over_the_environment_over_the_config_file() {
    let w = world().await;
    let base = &w.server.api.base;
    write_user_config(
        &w.config_home(),
        &format!("server = \"{base}\"\ntoken = \"{TEST_TOKEN}\"\n"),
    );

    let mut file_only = w.command(&["cluster", "list"]);
    file_only
        .env_remove("MERIDIAN_URL")
        .env_remove("MERIDIAN_TOKEN");
    let run = finish(file_only).await;
    assert_eq!(run.code, 0, "the config file alone is enough: {run:#?}");

    let dead = format!("http://127.0.0.1:{}", free_port());
    let mut env_wins = w.command(&["cluster", "list"]);
    env_wins
        .env("MERIDIAN_URL", &dead)
        .env_remove("MERIDIAN_TOKEN");
    finish(env_wins).await.assert_one_error_line(21, &dead);

    let mut flag_wins = w.command(&["cluster", "list", "--server", base]);
    flag_wins.env("MERIDIAN_URL", &dead);
    let run = finish(flag_wins).await;
    assert_eq!(run.code, 0, "--server beats MERIDIAN_URL: {run:#?}");

    let mut bad_env_token = w.command(&["cluster", "list"]);
    bad_env_token.env("MERIDIAN_TOKEN", "mrd_wrong");
    finish(bad_env_token)
        .await
        .assert_one_error_line(20, "MERIDIAN_TOKEN");
}

#[tokio::test]
async fn plan_validate_apply_and_list_send_the_yaml_plan_as_json() {
    let w = world().await;
    let good = w.dir.path().join("plan.yaml");
    std::fs::write(
        &good,
        "name: quick\nstages:\n  - {name: canary, clusters: {names: [use1-canary]}, bake: 2s}\n  - {name: rest, clusters: all, max_parallel: 3, bake: 2s}\n",
    )
    .expect("plan file");
    let bad = w.dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "name: quick\nstages:\n  - {name: canary, clusters: {names: [nowhere-1]}}\n",
    )
    .expect("bad plan file");
    let good = good.display().to_string();
    let bad = bad.display().to_string();

    let valid = w.run(&["plan", "validate", "-f", &good]).await;
    assert_eq!(valid.code, 0, "{valid:#?}");
    assert!(valid.stdout.contains("is valid"), "{valid:#?}");
    let invalid = w.run(&["plan", "validate", "-f", &bad]).await;
    assert_eq!(invalid.code, 1, "{invalid:#?}");
    assert!(
        invalid.stdout.contains("stages[0].clusters.names[0]")
            && invalid.stdout.contains("nowhere-1"),
        "names the field and the problem: {invalid:#?}"
    );

    let applied = w.run(&["plan", "apply", "-f", &good]).await;
    assert_eq!(applied.code, 0, "{applied:#?}");
    assert!(
        applied.stdout.contains("plan `quick` applied as version 2"),
        "{applied:#?}"
    );
    let again = w.run(&["plan", "apply", "-f", &good, "-o", "json"]).await;
    assert_eq!(again.code, 0, "{again:#?}");
    assert_eq!(again.json()["version"], 2, "{again:#?}");
    let refused = w.run(&["plan", "apply", "-f", &bad]).await;
    assert_eq!(refused.code, 1, "{refused:#?}");

    let list = w.run(&["plan", "list"]).await;
    assert_eq!(list.code, 0, "{list:#?}");
    assert!(
        list.stdout
            .lines()
            .any(|l| l.starts_with("quick ") && l.contains(" 2 ")),
        "{list:#?}"
    );
    assert!(
        list.stdout.lines().any(|l| l.starts_with("gated ")),
        "{list:#?}"
    );
    let (_, from_api) = w.server.api.get("/api/v1/plans").await;
    assert_eq!(
        w.run(&["plan", "list", "-o", "json"]).await.json(),
        from_api
    );

    let missing = w
        .run(&["plan", "validate", "-f", "/nonexistent/plan.yaml"])
        .await;
    missing.assert_one_error_line(1, "cannot read /nonexistent/plan.yaml");
}
