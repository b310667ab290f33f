//! Builds one `kube::Client` per cluster from its kubeconfig context.

use std::path::Path;
use std::time::Duration;

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};

use super::error::{FleetError, chain};

/// Reads the kubeconfig; a failure is reported against `cluster`, the one
/// whose client needed it.
pub(crate) fn read_kubeconfig(path: &Path, cluster: &str) -> Result<Kubeconfig, FleetError> {
    Kubeconfig::read_from(path).map_err(|e| FleetError::Config {
        cluster: cluster.to_owned(),
        message: format!("cannot read {}: {}", path.display(), chain(&e)),
    })
}

/// A client for `context`, with kube's own retry layer off and transport
/// timeouts set, so the fleet's call budget is the only thing deciding how
/// long a call may take (see `budget`).
pub(crate) async fn client_for(
    kubeconfig: &Kubeconfig,
    path: &Path,
    cluster: &str,
    context: &str,
    timeout: Duration,
) -> Result<Client, FleetError> {
    let config_error = |message: String| FleetError::Config {
        cluster: cluster.to_owned(),
        message,
    };
    // Checked here because kube's own error for a missing context does not say
    // which file it looked in.
    if !kubeconfig.contexts.iter().any(|c| c.name == context) {
        return Err(config_error(format!(
            "{} has no context {context:?}",
            path.display()
        )));
    }
    let options = KubeConfigOptions {
        context: Some(context.to_owned()),
        ..KubeConfigOptions::default()
    };
    let mut config = Config::from_custom_kubeconfig(kubeconfig.clone(), &options)
        .await
        .map_err(|e| {
            config_error(format!(
                "context {context:?} in {}: {}",
                path.display(),
                chain(&e)
            ))
        })?;
    harden(&mut config, timeout);
    install_crypto_provider();
    Client::try_from(config)
        .map_err(|e| config_error(format!("context {context:?}: {}", chain(&e))))
}

/// How long a watch may stay silent before its connection counts as dead;
/// longer than one watch request (`watch::WATCH_SECONDS`).
const WATCH_READ_TIMEOUT: Duration = Duration::from_secs(300);

/// A client for long-lived watches: like [`client_for`], but a quiet
/// stream is not a failed call.
pub(crate) async fn watch_client_for(
    kubeconfig: &Kubeconfig,
    path: &Path,
    cluster: &str,
    context: &str,
) -> Result<Client, FleetError> {
    client_for(kubeconfig, path, cluster, context, WATCH_READ_TIMEOUT).await
}

/// Turns off kube's retry layer and bounds every transport phase.
fn harden(config: &mut Config, timeout: Duration) {
    // kube 5 defaults to a RetryLayer with 15 retries and up to 1000 s of
    // backoff (honouring Retry-After); our budget retries instead.
    config.default_retry = false;
    config.connect_timeout = Some(timeout);
    // kube leaves the read timeout unset (for watches and exec sessions, which
    // Meridian does not use); without it a server that accepts and never
    // answers would hold the connection until our outer timeout.
    config.read_timeout = Some(timeout);
    config.write_timeout = Some(timeout);
    // Count the read timeout from when the request was written, not from when
    // a pooled connection went idle.
    config.reset_reader_on_write = true;
}

/// rustls needs a process-wide crypto provider for HTTPS clusters; kube only
/// installs one for aws-lc-rs, and this build uses ring. Installing fails
/// harmlessly when someone else already did.
fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        let _already_installed = rustls::crypto::ring::default_provider().install_default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KUBECONFIG: &str = r#"
apiVersion: v1
kind: Config
clusters:
  - name: eu
    cluster: {server: "https://127.0.0.1:6443"}
contexts:
  - name: eu-ctx
    context: {cluster: eu, user: u, namespace: apps}
users:
  - name: u
    user: {token: t}
"#;

    #[tokio::test]
    async fn builds_a_client_for_a_known_context() {
        let kc = Kubeconfig::from_yaml(KUBECONFIG).expect("valid");
        let client = client_for(
            &kc,
            Path::new("kc.yaml"),
            "eu-1",
            "eu-ctx",
            Duration::from_secs(1),
        )
        .await
        .expect("client");
        assert_eq!(client.default_namespace(), "apps");
    }

    #[tokio::test]
    async fn a_missing_context_is_named() {
        let kc = Kubeconfig::from_yaml(KUBECONFIG).expect("valid");
        let Err(err) = client_for(
            &kc,
            Path::new("kc.yaml"),
            "us-1",
            "us-ctx",
            Duration::from_secs(1),
        )
        .await
        else {
            panic!("a client for a context that does not exist");
        };
        assert_eq!(
            err,
            FleetError::Config {
                cluster: "us-1".to_owned(),
                message: "kc.yaml has no context \"us-ctx\"".to_owned()
            }
        );
    }

    #[test]
    fn hardening_disables_kube_retries_and_sets_timeouts() {
        let mut config = Config::new("http://127.0.0.1:1".parse().expect("valid uri"));
        assert!(
            config.default_retry,
            "kube's default this module exists to undo"
        );
        harden(&mut config, Duration::from_secs(5));
        assert!(!config.default_retry);
        assert_eq!(config.read_timeout, Some(Duration::from_secs(5)));
        assert_eq!(config.connect_timeout, Some(Duration::from_secs(5)));
    }
}
