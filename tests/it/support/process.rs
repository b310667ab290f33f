//! `meridian serve` as a real child process.

use std::{
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::Duration,
};

use super::{Api, eventually};

pub fn binary() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_meridian"))
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local addr").port()
}

pub struct ServerBuilder {
    database_url: String,
    config: PathBuf,
    worker_id: String,
    log: PathBuf,
}

impl ServerBuilder {
    pub fn new(database_url: &str, config: &Path, dir: &Path, worker_id: &str) -> Self {
        Self {
            database_url: database_url.to_owned(),
            config: config.to_owned(),
            worker_id: worker_id.to_owned(),
            log: dir.join(format!("{worker_id}.log")),
        }
    }

    pub async fn start(&self) -> Server {
        let port = free_port();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("open server log");
        let child = Command::new(binary())
            .arg("serve")
            .arg("--config")
            .arg(&self.config)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"))
            .env("DATABASE_URL", &self.database_url)
            .env("MERIDIAN_WORKER_ID", &self.worker_id)
            .env("MERIDIAN_BOOTSTRAP_TOKEN", super::api::TEST_TOKEN)
            .env("RUST_LOG", "info,meridian=debug,sqlx=warn,kube=warn")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone log"))
            .stderr(log)
            .spawn()
            .expect("start meridian serve");
        let mut server = Server {
            child: Some(child),
            api: Api::new(&format!("http://127.0.0.1:{port}")),
            log: self.log.clone(),
        };
        server.wait_ready().await;
        server
    }
}

pub struct Server {
    child: Option<Child>,
    pub api: Api,
    pub log: PathBuf,
}

impl Server {
    async fn wait_ready(&mut self) {
        let api = self.api.clone();
        let log = self.log.clone();
        let child = self.child.as_mut().expect("running");
        eventually("meridian serve to become ready", || {
            let api = api.clone();
            let exited = child.try_wait().ok().flatten();
            let log = log.clone();
            async move {
                if let Some(status) = exited {
                    panic!(
                        "meridian serve exited early ({status}):\n{}",
                        std::fs::read_to_string(&log).unwrap_or_default()
                    );
                }
                api.ready().await.then_some(())
            }
        })
        .await;
    }

    /// `kill -9`: no chance to clean up.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid"));
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            for _ in 0..100 {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}
