//! The one way health drivers build an HTTP client.

use std::time::Duration;

use super::HealthError;
use super::error::chain;

/// An HTTP client for gates: `timeout` bounds every request end to end, and
/// redirects are **not** followed, so a check sees the status the endpoint
/// really answered (an expected `3xx` is observable, and a health URL that
/// bounces to a login page is not mistaken for healthy).
pub fn build_client(timeout: Duration) -> Result<reqwest::Client, HealthError> {
    install_crypto_provider();
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| HealthError::Client(chain(&e)))
}

/// reqwest is built with `rustls-no-provider` and panics when building a
/// client without a process-wide crypto provider; install ring unless
/// someone (main, the fleet driver) already did. Failing to install means
/// another thread won the race, which is just as good.
fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        let _already_installed = rustls::crypto::ring::default_provider().install_default();
    }
}
