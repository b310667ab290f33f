//! The usual test world: a database, the simulated fleet and one server
//! running a config made of the given plans and applications.

use super::{Server, ServerBuilder, Sim, TestDb, config::write_config};

pub struct World {
    pub sim: Sim,
    pub server: Server,
    pub dir: tempfile::TempDir,
    pub db: TestDb,
}

impl World {
    pub async fn start(plans: &str, applications: &str, worker: &str) -> World {
        let dir = tempfile::tempdir().expect("tempdir");
        let db = TestDb::new().await;
        let sim = Sim::start(dir.path()).await;
        let config = write_config(dir.path(), &sim.kubeconfig, plans, applications);
        let server = ServerBuilder::new(&db.url, &config, dir.path(), worker)
            .start()
            .await;
        World {
            sim,
            server,
            dir,
            db,
        }
    }
}
