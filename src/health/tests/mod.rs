//! Tests of the health drivers: recorded API answers, the verdict maths as
//! properties, HTTP checks against a real local server, and the Prometheus
//! client against a real Prometheus scraping a simulated cluster.

mod comparison;
mod http_check;
mod live_prometheus;
mod prom_response;
mod real_prometheus;
mod status_class;

use axum::Router;
use tokio::task::JoinHandle;

/// Serves `app` on a free 127.0.0.1 port; returns `http://127.0.0.1:PORT`.
pub async fn serve(app: Router) -> (String, JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let task = tokio::spawn(async move {
        axum::serve(listener, app).await.expect("serve");
    });
    (format!("http://{addr}"), task)
}

/// A port nothing listens on: bound, then released.
pub fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").port()
}
