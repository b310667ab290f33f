//! The fleet against simulated clusters (`crate::sim`), through the real
//! `kube` client over HTTP.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde_json::{Map, json};
use uuid::Uuid;

use super::*;
use crate::sim::{Faults, SimClusterSpec, SimFleet, SimOptions};

const CLUSTER: &str = "eu-1";
const NAMESPACE: &str = "default";

const TEMPLATES: [&str; 2] = [
    r#"
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ application }}-config
data:
  version: "{{ version }}"
"#,
    r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ application }}
spec:
  replicas: {{ params.replicas | default(2) }}
  selector:
    matchLabels: {app: "{{ application }}"}
  template:
    metadata:
      labels: {app: "{{ application }}"}
    spec:
      containers:
        - name: app
          image: "{{ image }}"
"#,
];

struct Env {
    sim: SimFleet,
    kubeconfig: PathBuf,
    _dir: tempfile::TempDir,
}

async fn env() -> Env {
    env_with(SimOptions {
        replica_ready_after: Duration::from_millis(40),
        observe_delay: Duration::from_millis(30),
        ..SimOptions::default()
    })
    .await
}

async fn env_with(options: SimOptions) -> Env {
    let sim = SimFleet::start(vec![SimClusterSpec::new(CLUSTER, "europe")], options)
        .await
        .expect("sim starts");
    let dir = tempfile::tempdir().expect("temp dir");
    let kubeconfig = dir.path().join("kubeconfig.yaml");
    sim.write_kubeconfig(&kubeconfig)
        .expect("kubeconfig written");
    Env {
        sim,
        kubeconfig,
        _dir: dir,
    }
}

impl Env {
    /// A fleet that watches the clusters it has clients for, and what the
    /// watches report. Dropping the fleet stops them.
    fn watched_fleet(&self) -> (Fleet, tokio::sync::mpsc::Receiver<WorkloadChanged>) {
        let (changes, seen) = tokio::sync::mpsc::channel(64);
        let watches = Watches {
            sink: changes,
            shutdown: tokio_util::sync::CancellationToken::new(),
        };
        let fleet = Fleet::watching(
            Some(self.kubeconfig.clone()),
            FleetOptions::default(),
            watches,
        );
        (fleet, seen)
    }

    /// The cluster's client, with its watches running.
    async fn watched(&self) -> (Fleet, tokio::sync::mpsc::Receiver<WorkloadChanged>) {
        let (fleet, seen) = self.watched_fleet();
        fleet.track([(CLUSTER, CLUSTER)]);
        fleet.prepare(CLUSTER).await.expect("client and watches");
        (fleet, seen)
    }

    async fn fleet(&self, opts: FleetOptions) -> Fleet {
        let fleet = Fleet::lazy(Some(self.kubeconfig.clone()), opts);
        fleet.track([(CLUSTER, CLUSTER)]);
        fleet.prepare(CLUSTER).await.expect("client built");
        fleet
    }

    fn images(&self, name: &str) -> Option<Vec<String>> {
        self.sim
            .cluster(CLUSTER)
            .expect("cluster")
            .images("Deployment", NAMESPACE, name)
    }

    fn set_faults(&self, faults: Faults) {
        self.sim
            .cluster(CLUSTER)
            .expect("cluster")
            .set_faults(faults);
    }
}

fn release(app: &str, version: &str) -> (Uuid, Vec<Manifest>) {
    release_in(app, version, NAMESPACE)
}

fn release_in(app: &str, version: &str, namespace: &str) -> (Uuid, Vec<Manifest>) {
    let id = Uuid::new_v4();
    let ctx = RenderContext {
        application: app.to_owned(),
        namespace: namespace.to_owned(),
        release_id: id,
        version: version.to_owned(),
        image: format!("registry.example/{app}:{version}"),
        cluster: CLUSTER.to_owned(),
        region: "europe".to_owned(),
        params: Map::new(),
    };
    let templates: Vec<String> = TEMPLATES.iter().map(|t| (*t).to_owned()).collect();
    (id, render(&templates, &ctx).expect("renders"))
}

/// Polls until the progress is no longer Progressing (or 30 s pass).
async fn settle<F, Fut>(mut read: F) -> RolloutProgress
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<RolloutProgress, FleetError>>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let progress = read().await.expect("progress readable");
        if !matches!(progress, RolloutProgress::Progressing { .. }) || Instant::now() > deadline {
            return progress;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn apply_then_progress_reaches_complete() {
    let env = env().await;
    let fleet = env.fleet(FleetOptions::default()).await;
    let (_, manifests) = release("web", "1.0.0");
    fleet.apply(CLUSTER, &manifests).await.expect("applies");
    assert_eq!(
        env.images("web"),
        Some(vec!["registry.example/web:1.0.0".to_owned()])
    );
    let progress = settle(|| fleet.rollout_progress(CLUSTER, &manifests)).await;
    assert_eq!(progress, RolloutProgress::Complete);
    // The apply log shows our field manager, ConfigMap before Deployment.
    let log = env.sim.cluster(CLUSTER).expect("cluster").apply_log();
    let kinds: Vec<&str> = log.iter().map(|r| r.kind.as_str()).collect();
    assert_eq!(kinds, ["ConfigMap", "Deployment"]);
    assert!(log.iter().all(|r| r.field_manager == "meridian"));
}

#[tokio::test]
async fn a_namespace_is_looked_up_once_not_before_every_apply() {
    let env = env().await;
    let fleet = env.fleet(FleetOptions::default()).await;
    for version in ["1.0.0", "1.0.1", "1.0.2"] {
        let (_, manifests) = release_in("web", version, "shop");
        fleet.apply(CLUSTER, &manifests).await.expect("applies");
    }
    let cluster = env.sim.cluster(CLUSTER).expect("cluster");
    assert_eq!(
        cluster.images("Deployment", "shop", "web"),
        Some(vec!["registry.example/web:1.0.2".to_owned()])
    );
    assert_eq!(cluster.requests("GET", "/api/v1/namespaces/shop"), 1);
}

#[tokio::test]
async fn a_namespace_deleted_since_the_last_apply_is_created_again() {
    let env = env().await;
    let fleet = env.fleet(FleetOptions::default()).await;
    let (_, first) = release_in("web", "1.0.0", "shop");
    fleet.apply(CLUSTER, &first).await.expect("applies");

    // Someone else deletes the namespace, and the workload with it.
    let kubeconfig = kube::config::Kubeconfig::read_from(&env.kubeconfig).expect("kubeconfig");
    let options = kube::config::KubeConfigOptions {
        context: Some(CLUSTER.to_owned()),
        ..Default::default()
    };
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &options)
        .await
        .expect("config");
    let client = kube::Client::try_from(config).expect("client");
    let namespaces: kube::Api<k8s_openapi::api::core::v1::Namespace> = kube::Api::all(client);
    namespaces
        .delete("shop", &kube::api::DeleteParams::default())
        .await
        .expect("namespace deleted");

    let (_, second) = release_in("web", "1.0.1", "shop");
    fleet
        .apply(CLUSTER, &second)
        .await
        .expect("applies into a new namespace");
    let cluster = env.sim.cluster(CLUSTER).expect("cluster");
    assert_eq!(
        cluster.images("Deployment", "shop", "web"),
        Some(vec!["registry.example/web:1.0.1".to_owned()])
    );
}

#[tokio::test]
async fn progress_right_after_an_update_is_not_complete() {
    let env = env().await;
    let fleet = env.fleet(FleetOptions::default()).await;
    let (_, v1) = release("web", "1.0.0");
    fleet.apply(CLUSTER, &v1).await.expect("applies v1");
    assert_eq!(
        settle(|| fleet.rollout_progress(CLUSTER, &v1)).await,
        RolloutProgress::Complete
    );
    let (_, v2) = release("web", "2.0.0");
    fleet.apply(CLUSTER, &v2).await.expect("applies v2");
    // The status still describes v1, fully rolled out; the generation check
    // must keep this from reading as done.
    let immediately = fleet
        .rollout_progress(CLUSTER, &v2)
        .await
        .expect("readable");
    assert!(
        matches!(immediately, RolloutProgress::Progressing { .. }),
        "{immediately:?}"
    );
    assert_eq!(
        settle(|| fleet.rollout_progress(CLUSTER, &v2)).await,
        RolloutProgress::Complete
    );
}

#[tokio::test]
async fn absent_workload_is_progressing() {
    let env = env().await;
    let fleet = env.fleet(FleetOptions::default()).await;
    let (_, manifests) = release("ghost", "1.0.0");
    let progress = fleet
        .rollout_progress(CLUSTER, &manifests)
        .await
        .expect("readable");
    assert_eq!(
        progress,
        RolloutProgress::Progressing {
            message: "Deployment default/ghost does not exist yet".to_owned()
        }
    );
}

#[tokio::test]
async fn snapshot_then_restore_brings_the_old_image_back() {
    let env = env().await;
    let fleet = env.fleet(FleetOptions::default()).await;
    let (v1_id, v1) = release("web", "1.0.0");
    fleet.apply(CLUSTER, &v1).await.expect("applies v1");
    assert_eq!(
        settle(|| fleet.rollout_progress(CLUSTER, &v1)).await,
        RolloutProgress::Complete
    );

    let (v2_id, v2) = release("web", "2.0.0");
    let before = fleet.snapshot(CLUSTER, &v2).await.expect("snapshot");
    assert_eq!(before.release_id(), Some(v1_id));
    assert_eq!(before.objects.len(), 2);
    let live = before
        .objects
        .iter()
        .find(|o| o.kind == "Deployment")
        .and_then(|o| o.live.clone())
        .expect("live");
    assert!(live.get("status").is_none());
    assert!(live["metadata"].get("resourceVersion").is_none());
    assert!(live["metadata"].get("managedFields").is_none());
    // The snapshot survives the trip through the database as JSON.
    let before: Snapshot =
        serde_json::from_value(serde_json::to_value(&before).expect("encodes")).expect("decodes");

    fleet.apply(CLUSTER, &v2).await.expect("applies v2");
    assert_eq!(
        settle(|| fleet.rollout_progress(CLUSTER, &v2)).await,
        RolloutProgress::Complete
    );
    assert_eq!(
        env.images("web"),
        Some(vec!["registry.example/web:2.0.0".to_owned()])
    );
    assert_eq!(
        fleet
            .snapshot(CLUSTER, &v2)
            .await
            .expect("snapshot")
            .release_id(),
        Some(v2_id)
    );

    fleet.restore(CLUSTER, &before).await.expect("restores");
    assert_eq!(
        env.images("web"),
        Some(vec!["registry.example/web:1.0.0".to_owned()])
    );
    assert_eq!(
        settle(|| fleet.snapshot_progress(CLUSTER, &before)).await,
        RolloutProgress::Complete
    );
    let after = fleet.snapshot(CLUSTER, &v1).await.expect("snapshot");
    assert_eq!(after.release_id(), Some(v1_id));
    let config = after
        .objects
        .iter()
        .find(|o| o.kind == "ConfigMap")
        .and_then(|o| o.live.clone())
        .expect("config");
    assert_eq!(config["data"]["version"], json!("1.0.0"));
}

#[tokio::test]
async fn restore_of_a_previously_absent_object_deletes_it() {
    let env = env().await;
    let fleet = env.fleet(FleetOptions::default()).await;
    let (_, manifests) = release("newcomer", "1.0.0");
    let before = fleet.snapshot(CLUSTER, &manifests).await.expect("snapshot");
    assert!(before.objects.iter().all(|o| o.live.is_none()));
    assert_eq!(before.release_id(), None);

    fleet.apply(CLUSTER, &manifests).await.expect("applies");
    assert!(env.images("newcomer").is_some());
    fleet.restore(CLUSTER, &before).await.expect("restores");
    assert_eq!(env.images("newcomer"), None);
    assert_eq!(
        settle(|| fleet.snapshot_progress(CLUSTER, &before)).await,
        RolloutProgress::Complete
    );
    let now = fleet.snapshot(CLUSTER, &manifests).await.expect("snapshot");
    assert!(now.objects.iter().all(|o| o.live.is_none()), "{now:?}");
    // Restoring again is harmless: deleting what is gone is not an error.
    fleet
        .restore(CLUSTER, &before)
        .await
        .expect("restores again");
}

#[tokio::test]
async fn conflict_with_another_field_manager_names_it() {
    let env = env().await;
    let fleet = env.fleet(FleetOptions::default()).await;
    let other = env
        .fleet(FleetOptions {
            field_manager: "hotfix-operator".to_owned(),
            ..FleetOptions::default()
        })
        .await;
    let (_, theirs) = release("web", "1.0.0-hotfix");
    other
        .apply(CLUSTER, &theirs)
        .await
        .expect("other manager applies");

    let (_, ours) = release("web", "2.0.0");
    let err = fleet.apply(CLUSTER, &ours).await.expect_err("conflicts");
    let FleetError::Conflict { cluster, message } = &err else {
        panic!("expected Conflict, got {err:?}");
    };
    assert_eq!(cluster, CLUSTER);
    assert!(message.contains("hotfix-operator"), "{message}");
    assert!(message.contains("default/web"), "{message}");
    assert!(!err.is_transient());
    // Nothing was overwritten.
    assert_eq!(
        env.images("web"),
        Some(vec!["registry.example/web:1.0.0-hotfix".to_owned()])
    );

    // A restore forces: an operator's rollback wins over the other manager.
    let snapshot = fleet.snapshot(CLUSTER, &theirs).await.expect("snapshot");
    let mut forced = snapshot.clone();
    for object in &mut forced.objects {
        if let Some(live) = object.live.as_mut().filter(|_| object.kind == "Deployment") {
            live["spec"]["template"]["spec"]["containers"][0]["image"] =
                json!("registry.example/web:0.9.0");
        }
    }
    fleet
        .restore(CLUSTER, &forced)
        .await
        .expect("forced restore");
    assert_eq!(
        env.images("web"),
        Some(vec!["registry.example/web:0.9.0".to_owned()])
    );
}

#[tokio::test]
async fn refused_connections_give_unreachable_within_the_budget() {
    let env = env().await;
    let fleet = env
        .fleet(FleetOptions {
            call_timeout: Duration::from_secs(2),
            ..FleetOptions::default()
        })
        .await;
    env.set_faults(Faults {
        refuse_connections: true,
        ..Faults::default()
    });
    let (_, manifests) = release("web", "1.0.0");
    for err in [
        fleet.apply(CLUSTER, &manifests).await.expect_err("refused"),
        fleet
            .snapshot(CLUSTER, &manifests)
            .await
            .expect_err("refused"),
        fleet
            .rollout_progress(CLUSTER, &manifests)
            .await
            .expect_err("refused"),
    ] {
        let FleetError::Unreachable { cluster, message } = &err else {
            panic!("expected Unreachable, got {err:?}");
        };
        assert_eq!(cluster, CLUSTER);
        assert!(message.contains("gave up after 3 attempt(s)"), "{message}");
        assert!(err.is_transient());
    }
    // The cluster comes back and the same fleet works again.
    env.set_faults(Faults::default());
    fleet
        .apply(CLUSTER, &manifests)
        .await
        .expect("applies after recovery");
}

#[tokio::test]
async fn a_slow_api_server_is_cut_by_the_call_timeout() {
    let env = env().await;
    let fleet = env
        .fleet(FleetOptions {
            call_timeout: Duration::from_millis(200),
            attempts: 2,
            ..FleetOptions::default()
        })
        .await;
    env.set_faults(Faults {
        latency_ms: 10_000,
        ..Faults::default()
    });
    let (_, manifests) = release("web", "1.0.0");
    let err = fleet
        .snapshot(CLUSTER, &manifests)
        .await
        .expect_err("too slow");
    assert!(err.is_transient(), "{err:?}");
    assert!(
        err.to_string().contains("gave up after 2 attempt(s)"),
        "{err}"
    );
}

#[tokio::test]
async fn server_errors_are_retried_until_they_succeed() {
    let env = env().await;
    // Attempts are raised so that a 30% error rate cannot plausibly exhaust
    // them: at 8 attempts (0.3^8, about 1 in 15,000 per request, some 25
    // requests a run) CI once saw a call give up. At 20 it is 0.3^20, about
    // 1 in 3·10^10. The default budget is exercised below.
    let fleet = env
        .fleet(FleetOptions {
            attempts: 20,
            ..FleetOptions::default()
        })
        .await;
    env.set_faults(Faults {
        error_rate: 0.3,
        ..Faults::default()
    });
    let (_, manifests) = release("web", "1.0.0");
    for _ in 0..5 {
        fleet
            .apply(CLUSTER, &manifests)
            .await
            .expect("applies despite 500s");
        fleet
            .snapshot(CLUSTER, &manifests)
            .await
            .expect("snapshots despite 500s");
    }
    assert_eq!(
        env.images("web"),
        Some(vec!["registry.example/web:1.0.0".to_owned()])
    );

    // Every answer a 500: the default budget gives up with the server's words.
    let fleet = env.fleet(FleetOptions::default()).await;
    env.set_faults(Faults {
        error_rate: 1.0,
        ..Faults::default()
    });
    let err = fleet
        .apply(CLUSTER, &manifests)
        .await
        .expect_err("always 500");
    assert!(err.is_transient());
    assert!(err.to_string().contains("HTTP 500"), "{err}");
}

#[tokio::test]
async fn unknown_cluster_and_missing_context_are_errors() {
    let env = env().await;
    let fleet = env.fleet(FleetOptions::default()).await;
    let err = fleet.apply("nowhere", &[]).await.expect_err("unknown");
    assert_eq!(err, FleetError::UnknownCluster("nowhere".to_owned()));

    fleet.track([("us-1", "us-1-context")]);
    let err = fleet.prepare("us-1").await.expect_err("no context");
    assert!(
        matches!(&err, FleetError::Config { cluster, .. } if cluster == "us-1"),
        "{err:?}"
    );
    assert!(err.to_string().contains("us-1-context"), "{err}");
}

#[tokio::test]
async fn a_cluster_tracked_after_start_gets_a_client_and_a_changed_context_a_new_one() {
    let env = env().await;
    let fleet = Fleet::lazy(Some(env.kubeconfig.clone()), FleetOptions::default());
    let (_, manifests) = release("late", "1.0.0");
    let err = fleet
        .apply("late-1", &manifests)
        .await
        .expect_err("untracked");
    assert_eq!(err, FleetError::UnknownCluster("late-1".to_owned()));

    fleet.track([("late-1", "late-context")]);
    let err = fleet
        .apply("late-1", &manifests)
        .await
        .expect_err("no such context");
    assert!(
        matches!(&err, FleetError::Config { cluster, .. } if cluster == "late-1"),
        "{err:?}"
    );
    assert!(err.to_string().contains("\"late-context\""), "{err}");
    assert!(!err.is_transient(), "a person must fix the context");

    // Fixing the context (as a PUT of the cluster would) is enough.
    fleet.track([("late-1", CLUSTER)]);
    fleet.apply("late-1", &manifests).await.expect("applies");
    assert_eq!(
        env.images("late"),
        Some(vec!["registry.example/late:1.0.0".to_owned()])
    );
}

#[tokio::test]
async fn without_a_kubeconfig_using_a_cluster_says_how_to_name_one() {
    let fleet = Fleet::lazy(None, FleetOptions::default());
    fleet.track([("late-1", "late-1")]);
    let err = fleet.apply("late-1", &[]).await.expect_err("no kubeconfig");
    assert!(err.to_string().contains("no kubeconfig is known"), "{err}");
}

#[tokio::test]
async fn unsupported_manifests_are_rejected_before_any_request() {
    let env = env().await;
    let fleet = env.fleet(FleetOptions::default()).await;
    let (_, mut manifests) = release("web", "1.0.0");
    manifests.push(Manifest(
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}}),
    ));
    let err = fleet
        .apply(CLUSTER, &manifests)
        .await
        .expect_err("rejected");
    assert!(matches!(err, FleetError::Rejected { .. }), "{err:?}");
    assert_eq!(env.sim.cluster(CLUSTER).expect("cluster").apply_calls(), 0);
}

#[tokio::test]
async fn watches_report_a_workload_once_it_finished_not_at_every_step() {
    let env = env().await;
    let (fleet, mut seen) = env.watched().await;
    for version in ["1.0.0", "2.0.0"] {
        let (_, manifests) = release("web", version);
        fleet.apply(CLUSTER, &manifests).await.expect("applies");
        // Two replicas: the spec is seen, then one pod, then the other is
        // ready; only the end is worth waking a rollout for.
        let change = tokio::time::timeout(Duration::from_secs(10), seen.recv())
            .await
            .expect("a change within 10 s")
            .expect("the watch is running");
        assert_eq!(
            change,
            WorkloadChanged {
                cluster: CLUSTER.to_owned(),
                namespace: NAMESPACE.to_owned(),
            }
        );
        let progress = fleet
            .rollout_progress(CLUSTER, &manifests)
            .await
            .expect("readable");
        assert_eq!(progress, RolloutProgress::Complete, "release {version}");
        while seen.try_recv().is_ok() {}
    }
}

#[tokio::test]
async fn watches_report_a_rolled_out_workload_that_lost_its_pods_before_it_recovers() {
    // Replacement pods take 2 s, so what a wake-up finds tells which
    // change woke it.
    let env = env_with(SimOptions {
        replica_ready_after: Duration::from_secs(2),
        observe_delay: Duration::from_millis(30),
        ..SimOptions::default()
    })
    .await;
    let (fleet, mut seen) = env.watched().await;
    let (_, manifests) = release("web", "1.0.0");
    fleet.apply(CLUSTER, &manifests).await.expect("applies");
    let mut next_progress = async || {
        tokio::time::timeout(Duration::from_secs(10), seen.recv())
            .await
            .expect("a change within 10 s")
            .expect("the watch is running");
        fleet
            .rollout_progress(CLUSTER, &manifests)
            .await
            .expect("readable")
    };
    assert_eq!(next_progress().await, RolloutProgress::Complete);

    let cluster = env.sim.cluster(CLUSTER).expect("cluster");
    assert!(cluster.lose_pods("Deployment", NAMESPACE, "web"));
    assert!(
        matches!(next_progress().await, RolloutProgress::Progressing { .. }),
        "woken while the replacements are not ready yet"
    );
    assert_eq!(
        next_progress().await,
        RolloutProgress::Complete,
        "and again once they are"
    );
}

#[tokio::test]
async fn a_cluster_first_used_after_start_is_watched_under_its_own_name() {
    let env = env().await;
    let (fleet, mut seen) = env.watched_fleet();
    // As the engine does for a cluster registered through the API: its
    // context is told, and the client is built on first use.
    fleet.track([("late-1", CLUSTER)]);
    let (_, manifests) = release("web", "1.0.0");
    fleet.apply("late-1", &manifests).await.expect("applies");
    let change = tokio::time::timeout(Duration::from_secs(10), seen.recv())
        .await
        .expect("the late cluster's watch reports within 10 s")
        .expect("the watch is running");
    assert_eq!(
        change,
        WorkloadChanged {
            cluster: "late-1".to_owned(),
            namespace: NAMESPACE.to_owned(),
        }
    );
}

#[tokio::test]
async fn a_fleet_that_is_dropped_stops_its_watches() {
    let env = env().await;
    let (fleet, mut seen) = env.watched().await;
    drop(fleet);
    // Every watch task held a sender: the channel closes once they ended.
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        while seen.recv().await.is_some() {}
    })
    .await;
    assert!(ended.is_ok(), "the watches still run after the fleet went");
}
