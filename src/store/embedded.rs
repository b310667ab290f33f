//! A private PostgreSQL server for `meridian serve` when no `DATABASE_URL` is set.
//!
//! Layout of the data directory (`data_dir`, mode 0700, owned by the account
//! that runs the server):
//!
//! ```text
//! data_dir/
//!   pgdata/          the cluster (PGDATA); created by initdb on first start
//!   socket/          unix socket directory (`-k`), so no socket lands in /tmp
//!   server.log       postgres stdout/stderr, appended across starts
//!   server.log.old   previous log once server.log grew past 10 MiB
//!   meridian.lock    flock held while a meridian process owns the server
//! ```
//!
//! The cluster lives in a subdirectory rather than in `data_dir` itself
//! because initdb insists on an empty target and because it lets initdb run
//! in `pgdata.init/` and be renamed into place: a `pgdata/` that exists is
//! therefore always a complete cluster, even after a crash during initdb.
//!
//! PostgreSQL refuses to run as root, so when meridian runs as root the
//! server (and initdb) run as the `postgres` account instead; see
//! [`default_data_dir`] for how the data directory is kept reachable for it.

use std::ffi::OsString;
use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::{Gid, Pid, Uid, User, chown, geteuid};
use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgConnection, PgSslMode};

/// Superuser created by initdb and used in [`EmbeddedPostgres::url`].
const SUPERUSER: &str = "postgres";
/// Database meridian uses; created on first start.
const DATABASE: &str = "meridian";
/// Account the server runs as when meridian runs as root.
const SERVER_ACCOUNT: &str = "postgres";
/// Data directory used by root when the home-based default is unreachable
/// for the `postgres` account.
pub const SYSTEM_DATA_DIR: &str = "/var/lib/meridian/postgres";
/// Where Debian/Ubuntu install versioned server binaries (`<ver>/bin`).
const DEBIAN_PG_LIB: &str = "/usr/lib/postgresql";
/// Environment variable naming a directory holding `initdb` and `postgres`.
pub const PG_BIN_ENV: &str = "MERIDIAN_PG_BIN";
/// Environment variable overriding [`default_data_dir`].
pub const DATA_DIR_ENV: &str = "MERIDIAN_DATA_DIR";

/// initdb normally takes seconds; the bound only guards against a hang.
const INITDB_TIMEOUT: Duration = Duration::from_secs(180);
/// Covers all start attempts, including crash recovery after a kill -9.
const START_TIMEOUT: Duration = Duration::from_secs(90);
/// A fresh free port per attempt makes more than a few port races implausible.
const MAX_START_ATTEMPTS: u32 = 5;
/// Fast shutdown aborts sessions and checkpoints; a big checkpoint may be slow.
const FAST_STOP_GRACE: Duration = Duration::from_secs(30);
/// Immediate shutdown (SIGQUIT) needs no checkpoint, so it is quick or stuck.
const IMMEDIATE_STOP_GRACE: Duration = Duration::from_secs(5);
/// Keeps the log from growing without bound over many restarts.
const LOG_ROTATE_BYTES: u64 = 10 * 1024 * 1024;
/// Enough of the log to show the FATAL line and its context.
const LOG_TAIL_LINES: usize = 30;
/// `sun_path` is 108 bytes on Linux, including the terminating NUL.
const MAX_SOCKET_PATH: usize = 107;
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Errors from starting or stopping the embedded server.
#[derive(Debug, thiserror::Error)]
pub enum EmbeddedError {
    #[error(
        "no PostgreSQL server binaries found (looked in {looked}); install them with \
         `apt-get install postgresql` or set DATABASE_URL to an existing server"
    )]
    BinariesNotFound { looked: String },
    #[error(
        "{PG_BIN_ENV}={} does not contain executable `initdb` and `postgres`; point it at a \
         PostgreSQL server bin directory (e.g. /usr/lib/postgresql/15/bin) or unset it",
        dir.display()
    )]
    BadBinOverride { dir: PathBuf },
    #[error(
        "running as root but there is no `{SERVER_ACCOUNT}` account to run the embedded \
         PostgreSQL server as (PostgreSQL refuses to run as root); install the server with \
         `apt-get install postgresql`, run meridian as an unprivileged user, or set DATABASE_URL"
    )]
    NoServerAccount,
    #[error(
        "the `{SERVER_ACCOUNT}` account cannot reach data directory {}: {} is not traversable \
         by it; set {DATA_DIR_ENV} to a directory it can reach (e.g. {SYSTEM_DATA_DIR})",
        data_dir.display(), blocker.display()
    )]
    Unreachable { data_dir: PathBuf, blocker: PathBuf },
    #[error(
        "{} exists but is not a PostgreSQL data directory (no PG_VERSION); move it away",
        .0.display()
    )]
    NotACluster(PathBuf),
    #[error("data directory {} is in use by another meridian process", .0.display())]
    InUse(PathBuf),
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("initdb failed for {} ({status}):\n{output}", dir.display())]
    InitDb {
        dir: PathBuf,
        status: String,
        output: String,
    },
    #[error(
        "embedded PostgreSQL did not start: {reason}; last lines of {}:\n{tail}",
        log.display()
    )]
    StartFailed {
        reason: String,
        log: PathBuf,
        tail: String,
    },
    #[error("could not create database `{DATABASE}` in the embedded PostgreSQL")]
    CreateDatabase(#[source] sqlx::Error),
    #[error("embedded PostgreSQL did not shut down cleanly: {0}")]
    StopFailed(String),
}

/// Attaches a description to an io error without losing the source.
fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> EmbeddedError {
    let what = what.into();
    move |source| EmbeddedError::Io { what, source }
}

/// A running private PostgreSQL server.
///
/// Dropping it without calling [`EmbeddedPostgres::stop`] still shuts the
/// server down (best effort, blocking for at most ~35 s) so no orphan
/// server is left behind. A meridian process killed without unwinding does
/// leave one; the next [`EmbeddedPostgres::start`] on the same directory
/// finds it and shuts it down before starting a fresh server.
#[derive(Debug)]
pub struct EmbeddedPostgres {
    // Field order matters: `server` is dropped (and the server stopped)
    // before `_lock` releases the data directory to other processes.
    server: Server,
    port: u16,
    data_dir: PathBuf,
    log: PathBuf,
    _lock: File,
}

impl EmbeddedPostgres {
    /// Initialises (first time) and starts a private PostgreSQL server whose
    /// data lives in `data_dir`, listening only on a unix socket directory
    /// inside `data_dir` and on 127.0.0.1 at a free port. Returns once the
    /// server accepts connections and database `meridian` exists.
    ///
    /// Binaries come from `$MERIDIAN_PG_BIN`, else `/usr/lib/postgresql/*/bin`
    /// (the version matching an existing cluster, else the highest), else
    /// `PATH`. When running as root, the server runs as the `postgres`
    /// account and `data_dir` is chowned to it.
    pub async fn start(data_dir: &Path) -> Result<EmbeddedPostgres, EmbeddedError> {
        let run_as = server_account()?;
        let data_dir = std::path::absolute(data_dir)
            .map_err(io_err(format!("resolving {}", data_dir.display())))?;
        let pgdata = data_dir.join("pgdata");
        let bin = find_bin_dir(
            std::env::var_os(PG_BIN_ENV),
            Path::new(DEBIAN_PG_LIB),
            std::env::var_os("PATH"),
            read_pg_version(&pgdata).as_deref(),
        )?;

        prepare_data_dir(&data_dir, run_as.as_ref())?;
        // Canonical from here on: /proc/<pid>/cwd of server processes shows
        // the resolved path, and leftover detection compares against it.
        let data_dir = fs::canonicalize(&data_dir)
            .map_err(io_err(format!("resolving {}", data_dir.display())))?;
        let pgdata = data_dir.join("pgdata");
        let lock = lock_data_dir(&data_dir)?;

        if !pgdata.exists() {
            init_cluster(&bin, &data_dir, &pgdata, run_as.as_ref()).await?;
        } else if read_pg_version(&pgdata).is_none() {
            return Err(EmbeddedError::NotACluster(pgdata));
        }

        stop_leftovers(&pgdata).await?;
        let socket_dir = prepare_socket_dir(&data_dir, run_as.as_ref())?;
        let log = data_dir.join("server.log");
        rotate_log(&log);

        let (server, port) = launch(
            &bin,
            &data_dir,
            &pgdata,
            socket_dir.as_deref(),
            &log,
            run_as.as_ref(),
        )
        .await?;
        let pg = EmbeddedPostgres {
            server,
            port,
            data_dir,
            log,
            _lock: lock,
        };
        // On error `pg` is dropped here, which stops the server again.
        pg.ensure_database().await?;
        tracing::info!(
            data_dir = %pg.data_dir.display(),
            port = pg.port,
            bin = %bin.display(),
            "embedded PostgreSQL ready"
        );
        Ok(pg)
    }

    /// `postgres://postgres@127.0.0.1:PORT/meridian`; trust auth, no password.
    pub fn url(&self) -> String {
        format!("postgres://{SUPERUSER}@127.0.0.1:{}/{DATABASE}", self.port)
    }

    /// TCP port on 127.0.0.1 the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The (canonical) data directory the server runs from.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Fast shutdown: SIGINT to the postmaster (sessions are aborted, a
    /// checkpoint is written) and wait for it to exit; escalates to
    /// immediate shutdown and then SIGKILL if it hangs, and reports that as
    /// an error.
    pub async fn stop(mut self) -> Result<(), EmbeddedError> {
        let Some(child) = self.server.child.take() else {
            return Ok(());
        };
        // Waiting is a blocking poll of waitpid; keep it off the runtime.
        let outcome = tokio::task::spawn_blocking(move || terminate(child))
            .await
            .map_err(|e| EmbeddedError::StopFailed(format!("stop task failed: {e}")))?;
        match outcome {
            Ok(Stopped::Clean) => {
                tracing::info!(data_dir = %self.data_dir.display(), "embedded PostgreSQL stopped");
                Ok(())
            }
            Ok(Stopped::AlreadyExited(status)) => Err(EmbeddedError::StopFailed(format!(
                "server exited with {status} instead of a clean fast shutdown; see {}",
                self.log.display()
            ))),
            Ok(Stopped::Forced(how)) => Err(EmbeddedError::StopFailed(format!(
                "fast shutdown timed out, had to use {how}; see {}",
                self.log.display()
            ))),
            Err(e) => Err(EmbeddedError::StopFailed(e.to_string())),
        }
    }

    /// Creates database `meridian` unless it exists. Done on every start,
    /// not only after initdb, so a first start that died between initdb and
    /// this point heals itself.
    async fn ensure_database(&self) -> Result<(), EmbeddedError> {
        let mut conn = PgConnection::connect_with(&admin_options(self.port))
            .await
            .map_err(EmbeddedError::CreateDatabase)?;
        let exists: bool =
            sqlx::query_scalar("select exists(select 1 from pg_database where datname = $1)")
                .bind(DATABASE)
                .fetch_one(&mut conn)
                .await
                .map_err(EmbeddedError::CreateDatabase)?;
        if !exists {
            sqlx::query("create database meridian")
                .execute(&mut conn)
                .await
                .map_err(EmbeddedError::CreateDatabase)?;
            tracing::info!("created database `{DATABASE}` in embedded PostgreSQL");
        }
        // A failed close only loses a polite goodbye; the server cleans up.
        let _ = conn.close().await;
        Ok(())
    }

    /// The postmaster pid, for tests that kill it.
    #[cfg(test)]
    fn pid(&self) -> Option<u32> {
        self.server.child.as_ref().map(Child::id)
    }
}

/// Owns the postmaster child process; stops it on drop.
#[derive(Debug)]
struct Server {
    child: Option<Child>,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(child) = self.child.take() {
            // Blocking in drop is deliberate: returning before the server
            // is down would let the process exit with a live orphan.
            match terminate(child) {
                Ok(Stopped::Clean | Stopped::AlreadyExited(_)) => {}
                Ok(Stopped::Forced(how)) => {
                    tracing::warn!("embedded PostgreSQL needed {how} to stop");
                }
                Err(e) => tracing::warn!("could not stop embedded PostgreSQL: {e}"),
            }
        }
    }
}

#[derive(Debug)]
enum Stopped {
    Clean,
    AlreadyExited(ExitStatus),
    Forced(&'static str),
}

/// Shuts the postmaster down: SIGINT (fast), then SIGQUIT (immediate), then
/// SIGKILL; reaps it in every case.
fn terminate(mut child: Child) -> std::io::Result<Stopped> {
    if let Some(status) = child.try_wait()? {
        return Ok(Stopped::AlreadyExited(status));
    }
    let pid = Pid::from_raw(i32::try_from(child.id()).map_err(std::io::Error::other)?);
    for (signal, grace) in [
        (Signal::SIGINT, FAST_STOP_GRACE),
        (Signal::SIGQUIT, IMMEDIATE_STOP_GRACE),
    ] {
        // ESRCH cannot happen for an unreaped child; other errors are moot
        // because the wait below decides.
        let _ = kill(pid, signal);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Some(status) = child.try_wait()? {
                return Ok(if signal == Signal::SIGINT && status.success() {
                    Stopped::Clean
                } else if signal == Signal::SIGINT {
                    Stopped::AlreadyExited(status)
                } else {
                    Stopped::Forced("immediate shutdown (SIGQUIT)")
                });
            }
            std::thread::sleep(POLL_INTERVAL);
        }
    }
    child.kill()?;
    child.wait()?;
    Ok(Stopped::Forced("SIGKILL"))
}

/// The account to run initdb/postgres as: `None` means "as ourselves".
#[derive(Debug, Clone)]
struct RunAs {
    uid: Uid,
    gid: Gid,
}

fn server_account() -> Result<Option<RunAs>, EmbeddedError> {
    if !geteuid().is_root() {
        return Ok(None);
    }
    match User::from_name(SERVER_ACCOUNT) {
        Ok(Some(user)) if !user.uid.is_root() => Ok(Some(RunAs {
            uid: user.uid,
            gid: user.gid,
        })),
        _ => Err(EmbeddedError::NoServerAccount),
    }
}

/// Returns the data directory meridian uses when none is configured:
///
/// 1. `$MERIDIAN_DATA_DIR` if set (taken as is, never second-guessed),
/// 2. else `$XDG_DATA_HOME/meridian/postgres` (only if absolute, as the XDG
///    spec requires),
/// 3. else `$HOME/.local/share/meridian/postgres` (home from the passwd
///    entry if `$HOME` is unset).
///
/// When running as root the server runs as the `postgres` account, which
/// must be able to traverse every parent of the data directory. Root's home
/// is usually 0700, so if the path from 2./3. is not reachable for
/// `postgres`, [`SYSTEM_DATA_DIR`] (`/var/lib/meridian/postgres`) is used
/// instead — the conventional place for system service state, and created
/// with 0755 parents by [`EmbeddedPostgres::start`].
pub fn default_data_dir() -> PathBuf {
    let server = if geteuid().is_root() {
        server_account().ok().flatten()
    } else {
        None
    };
    let home = || {
        User::from_uid(nix::unistd::getuid())
            .ok()
            .flatten()
            .map(|u| u.dir)
    };
    choose_data_dir(|k| std::env::var_os(k), home, server.as_ref())
}

/// [`default_data_dir`] with its inputs injected, so tests need not mutate
/// the process environment.
fn choose_data_dir(
    env: impl Fn(&str) -> Option<OsString>,
    passwd_home: impl FnOnce() -> Option<PathBuf>,
    server: Option<&RunAs>,
) -> PathBuf {
    let non_empty = |k: &str| env(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    if let Some(dir) = non_empty(DATA_DIR_ENV) {
        return dir;
    }
    let candidate = non_empty("XDG_DATA_HOME")
        .filter(|p| p.is_absolute())
        .map(|p| p.join("meridian/postgres"))
        .or_else(|| {
            non_empty("HOME")
                .or_else(passwd_home)
                .map(|h| h.join(".local/share/meridian/postgres"))
        });
    match (candidate, server) {
        (Some(dir), Some(run_as)) if first_blocker(&dir, run_as).is_some() => {
            PathBuf::from(SYSTEM_DATA_DIR)
        }
        (Some(dir), _) => dir,
        (None, _) => PathBuf::from(SYSTEM_DATA_DIR),
    }
}

/// The first existing ancestor of `dir` (excluding `dir` itself, which
/// start() chowns) that `run_as` cannot search, judged by mode bits.
/// Missing ancestors are ignored because start() creates them 0755.
/// Supplementary groups are deliberately ignored: std's `Command::uid`
/// drops them, so the server process only has uid and primary gid.
fn first_blocker(dir: &Path, run_as: &RunAs) -> Option<PathBuf> {
    let parent = dir.parent()?;
    let existing = parent.ancestors().find(|p| p.exists())?;
    let existing = fs::canonicalize(existing).ok()?;
    // Outermost first, so the reported blocker is the one to fix first.
    let mut chain: Vec<&Path> = existing.ancestors().collect();
    chain.reverse();
    chain.into_iter().find_map(|p| {
        let meta = fs::metadata(p).ok()?;
        let mode = meta.mode();
        let bit = if meta.uid() == run_as.uid.as_raw() {
            0o100
        } else if meta.gid() == run_as.gid.as_raw() {
            0o010
        } else {
            0o001
        };
        (mode & bit == 0).then(|| p.to_path_buf())
    })
}

/// Locates a directory with `initdb` and `postgres`.
fn find_bin_dir(
    override_dir: Option<OsString>,
    debian_lib: &Path,
    path_var: Option<OsString>,
    prefer_major: Option<&str>,
) -> Result<PathBuf, EmbeddedError> {
    if let Some(dir) = override_dir.filter(|d| !d.is_empty()) {
        let dir = PathBuf::from(dir);
        return if has_server_bins(&dir) {
            Ok(dir)
        } else {
            Err(EmbeddedError::BadBinOverride { dir })
        };
    }

    let mut versioned: Vec<(Vec<u32>, String, PathBuf)> = fs::read_dir(debian_lib)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            let version = name
                .split('.')
                .map(|part| part.parse::<u32>().ok())
                .collect::<Option<Vec<_>>>()?;
            let bin = entry.path().join("bin");
            has_server_bins(&bin).then_some((version, name, bin))
        })
        .collect();
    // Highest version first.
    versioned.sort_by(|a, b| b.0.cmp(&a.0));
    // An existing cluster only runs under its own major version, so that
    // one wins over a newer install.
    let matching =
        prefer_major.and_then(|major| versioned.iter().position(|(_, name, _)| name == major));
    if let Some(i) = matching {
        return Ok(versioned.swap_remove(i).2);
    }
    if let Some((_, _, bin)) = versioned.into_iter().next() {
        return Ok(bin);
    }

    if let Some(path) = path_var.as_ref()
        && let Some(dir) = std::env::split_paths(path).find(|d| has_server_bins(d))
    {
        return Ok(dir);
    }

    Err(EmbeddedError::BinariesNotFound {
        looked: format!("{}/*/bin and PATH", debian_lib.display()),
    })
}

fn has_server_bins(dir: &Path) -> bool {
    ["initdb", "postgres"].iter().all(|name| {
        fs::metadata(dir.join(name))
            .map(|m| m.is_file() && m.mode() & 0o111 != 0)
            .unwrap_or(false)
    })
}

fn read_pg_version(pgdata: &Path) -> Option<String> {
    let text = fs::read_to_string(pgdata.join("PG_VERSION")).ok()?;
    let version = text.trim();
    (!version.is_empty()).then(|| version.to_owned())
}

/// Creates `data_dir` (parents 0755, itself 0700), owned by the server account.
fn prepare_data_dir(data_dir: &Path, run_as: Option<&RunAs>) -> Result<(), EmbeddedError> {
    // Checked before creating anything, so a refused directory leaves no
    // trace; missing parents are fine because they are created 0755 below.
    if let Some(run_as) = run_as
        && let Some(blocker) = first_blocker(data_dir, run_as)
    {
        return Err(EmbeddedError::Unreachable {
            data_dir: data_dir.to_path_buf(),
            blocker,
        });
    }
    let parent = data_dir.parent().unwrap_or(Path::new("/"));
    // Create missing parents one by one so each can be given 0755 despite
    // a restrictive umask (0077 would make them untraversable for postgres).
    let mut missing: Vec<&Path> = parent.ancestors().take_while(|p| !p.exists()).collect();
    missing.reverse();
    for dir in missing {
        match DirBuilder::new().mode(0o755).create(dir) {
            Ok(()) => fs::set_permissions(dir, fs::Permissions::from_mode(0o755))
                .map_err(io_err(format!("setting permissions of {}", dir.display())))?,
            // Another process may create it concurrently; that is fine.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(io_err(format!("creating {}", dir.display()))(e)),
        }
    }
    match DirBuilder::new().mode(0o700).create(data_dir) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io_err(format!("creating {}", data_dir.display()))(e)),
    }
    fs::set_permissions(data_dir, fs::Permissions::from_mode(0o700)).map_err(io_err(format!(
        "setting permissions of {}",
        data_dir.display()
    )))?;
    if let Some(run_as) = run_as {
        chown(data_dir, Some(run_as.uid), Some(run_as.gid)).map_err(|e| {
            io_err(format!(
                "chowning {} to {SERVER_ACCOUNT}",
                data_dir.display()
            ))(e.into())
        })?;
    }
    Ok(())
}

/// Takes an exclusive flock so two meridian processes never share a
/// server, and so that any server found running in `pgdata` while we hold
/// the lock is known to be an orphan of a dead meridian process.
fn lock_data_dir(data_dir: &Path) -> Result<File, EmbeddedError> {
    let path = data_dir.join("meridian.lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io_err(format!("opening {}", path.display())))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(fs::TryLockError::WouldBlock) => Err(EmbeddedError::InUse(data_dir.to_path_buf())),
        Err(fs::TryLockError::Error(e)) => Err(io_err(format!("locking {}", path.display()))(e)),
    }
}

/// Runs initdb into `pgdata.init` and renames it to `pgdata` on success.
async fn init_cluster(
    bin: &Path,
    data_dir: &Path,
    pgdata: &Path,
    run_as: Option<&RunAs>,
) -> Result<(), EmbeddedError> {
    let staging = data_dir.join("pgdata.init");
    if staging.exists() {
        // Left by an initdb that was killed; it never became the cluster.
        fs::remove_dir_all(&staging)
            .map_err(io_err(format!("removing stale {}", staging.display())))?;
    }
    tracing::info!(dir = %pgdata.display(), "initialising embedded PostgreSQL cluster");
    let mut cmd = tokio::process::Command::new(bin.join("initdb"));
    cmd.arg("-D")
        .arg(&staging)
        .args([
            "--auth=trust",
            "--username",
            SUPERUSER,
            "--encoding=UTF8",
            // C locale: always available (a LANG naming an uninstalled
            // locale would fail initdb) and immune to glibc collation changes.
            "--locale=C",
            "--no-instructions",
        ])
        // initdb resolves its own path via getcwd, which fails for the
        // postgres account if we sit in an unreadable directory like /root.
        .current_dir(data_dir)
        .stdin(Stdio::null())
        .kill_on_drop(true);
    if let Some(run_as) = run_as {
        cmd.uid(run_as.uid.as_raw()).gid(run_as.gid.as_raw());
    }
    let output = tokio::time::timeout(INITDB_TIMEOUT, cmd.output())
        .await
        .map_err(|_| EmbeddedError::InitDb {
            dir: pgdata.to_path_buf(),
            status: format!("timed out after {INITDB_TIMEOUT:?}"),
            output: String::new(),
        })?
        .map_err(io_err(format!("running {}", bin.join("initdb").display())))?;
    if !output.status.success() {
        let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&output.stderr));
        return Err(EmbeddedError::InitDb {
            dir: pgdata.to_path_buf(),
            status: output.status.to_string(),
            output: text,
        });
    }
    fs::rename(&staging, pgdata).map_err(io_err(format!(
        "renaming {} to {}",
        staging.display(),
        pgdata.display()
    )))
}

/// Live postgres processes (postmaster or backends) running in `pgdata`.
/// Every postgres server process chdirs into its data directory, so its
/// `/proc/<pid>/cwd` identifies the cluster regardless of pid reuse; the exe
/// name check keeps an admin's shell sitting in that directory out of it.
fn server_processes(pgdata: &Path) -> Vec<Pid> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid: i32 = entry.file_name().to_str()?.parse().ok()?;
            let cwd = fs::read_link(entry.path().join("cwd")).ok()?;
            let exe = fs::read_link(entry.path().join("exe")).ok()?;
            (cwd == pgdata && exe.file_name().is_some_and(|n| n == "postgres"))
                .then_some(Pid::from_raw(pid))
        })
        .collect()
}

/// Shuts down a server left running in `pgdata` by a meridian process that
/// died without stopping it, then removes a stale `postmaster.pid`.
///
/// Only called while holding the data directory lock, so no live meridian
/// owns such a server. Removing `postmaster.pid` ourselves (once no server
/// process is left) matters because postgres treats a *zombie* or a reused
/// pid as a running postmaster and refuses to start.
async fn stop_leftovers(pgdata: &Path) -> Result<(), EmbeddedError> {
    if !Path::new("/proc/self/cwd").exists() {
        // Without /proc we cannot tell; postgres' own pid-file check applies.
        return Ok(());
    }
    let pid_file = pgdata.join("postmaster.pid");
    let postmaster = fs::read_to_string(&pid_file)
        .ok()
        .and_then(|s| s.lines().next()?.trim().parse::<i32>().ok())
        .map(Pid::from_raw);

    let leftovers = server_processes(pgdata);
    if !leftovers.is_empty() {
        tracing::warn!(
            pids = ?leftovers,
            "found an orphaned embedded PostgreSQL from a previous run; shutting it down"
        );
        let start = Instant::now();
        let mut sent: Option<Signal> = None;
        loop {
            let live = server_processes(pgdata);
            if live.is_empty() {
                break;
            }
            let elapsed = start.elapsed();
            let wanted = if elapsed < FAST_STOP_GRACE {
                Signal::SIGINT
            } else if elapsed < FAST_STOP_GRACE + IMMEDIATE_STOP_GRACE {
                Signal::SIGQUIT
            } else {
                Signal::SIGKILL
            };
            if sent != Some(wanted) {
                match postmaster.filter(|p| live.contains(p)) {
                    // Backends follow the postmaster; signal only it, except
                    // for SIGKILL, which nothing survives to relay.
                    Some(pm) if wanted != Signal::SIGKILL => {
                        let _ = kill(pm, wanted);
                    }
                    // Postmaster gone: its backends exit on their own once
                    // they notice, so only SIGKILL hurries them.
                    _ if wanted == Signal::SIGKILL => {
                        for pid in &live {
                            let _ = kill(*pid, Signal::SIGKILL);
                        }
                    }
                    _ => {}
                }
                sent = Some(wanted);
            }
            if elapsed > FAST_STOP_GRACE + IMMEDIATE_STOP_GRACE + Duration::from_secs(5) {
                return Err(EmbeddedError::StopFailed(format!(
                    "orphaned server processes {live:?} in {} do not exit",
                    pgdata.display()
                )));
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    if pid_file.exists() && server_processes(pgdata).is_empty() {
        fs::remove_file(&pid_file)
            .map_err(io_err(format!("removing stale {}", pid_file.display())))?;
    }
    Ok(())
}

/// Creates an empty `data_dir/socket` owned by the server account, or
/// returns `None` when the socket path would be too long for a unix socket
/// (the server then listens on TCP only, which is all meridian uses).
fn prepare_socket_dir(
    data_dir: &Path,
    run_as: Option<&RunAs>,
) -> Result<Option<PathBuf>, EmbeddedError> {
    let dir = data_dir.join("socket");
    // ".s.PGSQL.65535.lock" is the longest name postgres creates there.
    if dir.as_os_str().len() + "/.s.PGSQL.65535.lock".len() > MAX_SOCKET_PATH {
        tracing::warn!(
            dir = %dir.display(),
            "path too long for a unix socket; embedded PostgreSQL listens on TCP only"
        );
        return Ok(None);
    }
    // Stale sockets and lock files from a killed server are removed: no
    // server runs here any more (stop_leftovers) and we hold the lock.
    if dir.exists() {
        fs::remove_dir_all(&dir).map_err(io_err(format!("cleaning {}", dir.display())))?;
    }
    DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .map_err(io_err(format!("creating {}", dir.display())))?;
    if let Some(run_as) = run_as {
        chown(&dir, Some(run_as.uid), Some(run_as.gid))
            .map_err(|e| io_err(format!("chowning {}", dir.display()))(e.into()))?;
    }
    Ok(Some(dir))
}

fn rotate_log(log: &Path) {
    if fs::metadata(log).is_ok_and(|m| m.len() > LOG_ROTATE_BYTES) {
        // Losing the old log is acceptable; failing to start over it is not.
        let _ = fs::rename(log, log.with_extension("log.old"));
    }
}

/// Why a launch attempt failed.
enum AttemptError {
    /// Worth another attempt (port taken, old shared memory still attached).
    Retry(String),
    Fatal(String),
}

/// Starts postgres, retrying with a fresh port when binding fails, until
/// it accepts connections.
async fn launch(
    bin: &Path,
    data_dir: &Path,
    pgdata: &Path,
    socket_dir: Option<&Path>,
    log: &Path,
    run_as: Option<&RunAs>,
) -> Result<(Server, u16), EmbeddedError> {
    let deadline = Instant::now() + START_TIMEOUT;
    let mut last_reason = String::new();
    let mut log_offset = 0;
    for attempt in 1..=MAX_START_ATTEMPTS {
        let port = free_port().map_err(io_err("finding a free port on 127.0.0.1"))?;
        let log_file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(io_err(format!("opening {}", log.display())))?;
        log_offset = log_file.metadata().map(|m| m.len()).unwrap_or(0);
        let stderr = log_file
            .try_clone()
            .map_err(io_err(format!("opening {}", log.display())))?;

        let mut cmd = std::process::Command::new(bin.join("postgres"));
        cmd.arg("-D")
            .arg(pgdata)
            .arg("-p")
            .arg(port.to_string())
            .args(["-c", "listen_addresses=127.0.0.1"])
            .arg("-c")
            .arg(format!(
                "unix_socket_directories={}",
                socket_dir
                    .map(|d| d.display().to_string())
                    .unwrap_or_default()
            ))
            .args(["-c", "unix_socket_permissions=0700"])
            // Output goes to our server.log via stdout/stderr instead.
            .args(["-c", "logging_collector=off"])
            .current_dir(data_dir)
            .stdin(Stdio::null())
            .stdout(log_file)
            .stderr(stderr)
            // Own process group: a terminal Ctrl-C reaches only meridian,
            // which then stops the server after draining, in that order.
            .process_group(0);
        if let Some(run_as) = run_as {
            cmd.uid(run_as.uid.as_raw()).gid(run_as.gid.as_raw());
        }
        let child = cmd.spawn().map_err(io_err(format!(
            "running {}",
            bin.join("postgres").display()
        )))?;
        // From here the guard stops the server on any early return.
        let mut server = Server { child: Some(child) };

        match wait_ready(&mut server, port, deadline, log, log_offset).await {
            Ok(()) => return Ok((server, port)),
            Err(AttemptError::Retry(reason)) if Instant::now() < deadline => {
                tracing::warn!(
                    attempt,
                    port,
                    "embedded PostgreSQL failed to start, retrying: {reason}"
                );
                last_reason = reason;
                drop(server);
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            Err(AttemptError::Retry(reason) | AttemptError::Fatal(reason)) => {
                return Err(EmbeddedError::StartFailed {
                    reason,
                    log: log.to_path_buf(),
                    tail: log_tail(log, log_offset),
                });
            }
        }
    }
    Err(EmbeddedError::StartFailed {
        reason: format!("gave up after {MAX_START_ATTEMPTS} attempts; last: {last_reason}"),
        log: log.to_path_buf(),
        tail: log_tail(log, log_offset),
    })
}

/// Polls with real connections until the server accepts one, the process
/// exits, or the deadline passes.
async fn wait_ready(
    server: &mut Server,
    port: u16,
    deadline: Instant,
    log: &Path,
    log_offset: u64,
) -> Result<(), AttemptError> {
    let options = admin_options(port);
    loop {
        let exited = match server.child.as_mut().map(Child::try_wait) {
            Some(Ok(Some(status))) => Some(status.to_string()),
            Some(Ok(None)) => None,
            Some(Err(e)) => return Err(AttemptError::Fatal(format!("waiting for postgres: {e}"))),
            None => Some("gone".to_owned()),
        };
        if let Some(status) = exited {
            let tail = log_tail(log, log_offset);
            let reason = format!("postgres exited ({status})");
            // Port lost to a race, or a killed server's processes still
            // hold the old shared memory / lock files for a moment.
            let transient = [
                "could not create any TCP/IP sockets",
                "Address already in use",
                "pre-existing shared memory block",
                "already exists",
            ];
            return Err(if transient.iter().any(|t| tail.contains(t)) {
                AttemptError::Retry(reason)
            } else {
                AttemptError::Fatal(reason)
            });
        }
        if Instant::now() >= deadline {
            return Err(AttemptError::Fatal(format!(
                "not accepting connections after {START_TIMEOUT:?}"
            )));
        }
        let attempt =
            tokio::time::timeout(Duration::from_secs(2), PgConnection::connect_with(&options));
        if let Ok(Ok(conn)) = attempt.await {
            let _ = conn.close().await;
            return Ok(());
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Connection options for the superuser on the maintenance database,
/// immune to PG* variables in our environment (e.g. PGSSLMODE=require).
fn admin_options(port: u16) -> PgConnectOptions {
    PgConnectOptions::new_without_pgpass()
        .host("127.0.0.1")
        .port(port)
        .username(SUPERUSER)
        .database("postgres")
        .ssl_mode(PgSslMode::Disable)
}

/// Asks the kernel for a free port. Another process can grab it before
/// postgres binds it; launch() retries with a new port in that case.
fn free_port() -> std::io::Result<u16> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    Ok(listener.local_addr()?.port())
}

/// The last lines postgres wrote since `offset` (this attempt only).
fn log_tail(log: &Path, offset: u64) -> String {
    let mut text = Vec::new();
    let read = File::open(log).and_then(|mut f| {
        f.seek(SeekFrom::Start(offset))?;
        f.read_to_end(&mut text)
    });
    if let Err(e) = read {
        return format!("(could not read {}: {e})", log.display());
    }
    let text = String::from_utf8_lossy(&text);
    let lines: Vec<&str> = text.lines().collect();
    let tail = lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n");
    if tail.is_empty() {
        "(log is empty)".to_owned()
    } else {
        tail
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tempdir the `postgres` account can traverse when tests run as root
    /// (made explicit so the test does not depend on tempfile's mode).
    fn traversable_tempdir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).expect("chmod");
        dir
    }

    /// A tempdir only its owner can traverse, like /root. Set explicitly:
    /// tempfile's own mode depends on its version and the umask.
    fn closed_tempdir() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700)).expect("chmod");
        dir
    }

    async fn connect(pg: &EmbeddedPostgres) -> PgConnection {
        PgConnection::connect(&pg.url()).await.expect("connect")
    }

    #[tokio::test]
    async fn starts_answers_and_stops() {
        let dir = traversable_tempdir();
        let data = dir.path().join("pg");
        let pg = EmbeddedPostgres::start(&data).await.expect("start");
        assert!(pg.url().starts_with("postgres://postgres@127.0.0.1:"));
        assert!(pg.url().ends_with("/meridian"));

        let mut conn = connect(&pg).await;
        let one: i32 = sqlx::query_scalar("select 1")
            .fetch_one(&mut conn)
            .await
            .expect("select");
        assert_eq!(one, 1);
        let db: String = sqlx::query_scalar("select current_database()")
            .fetch_one(&mut conn)
            .await
            .expect("db");
        assert_eq!(db, "meridian");
        conn.close().await.expect("close");

        let mode = fs::metadata(&data).expect("meta").mode() & 0o777;
        assert_eq!(mode, 0o700);
        assert!(
            data.join("socket")
                .read_dir()
                .expect("socket dir")
                .next()
                .is_some()
        );
        pg.stop().await.expect("stop");
    }

    #[tokio::test]
    async fn restart_reuses_data() {
        let dir = traversable_tempdir();
        let data = dir.path().join("pg");

        let pg = EmbeddedPostgres::start(&data).await.expect("first start");
        let mut conn = connect(&pg).await;
        sqlx::raw_sql("create table kept (v int); insert into kept values (42)")
            .execute(&mut conn)
            .await
            .expect("create");
        conn.close().await.expect("close");
        pg.stop().await.expect("stop");
        let control = fs::metadata(data.join("pgdata/global/pg_control"))
            .expect("pg_control")
            .ino();

        let pg = EmbeddedPostgres::start(&data).await.expect("second start");
        // Same inode: the cluster was reused, not re-initialised.
        let again = fs::metadata(data.join("pgdata/global/pg_control")).expect("pg_control");
        assert_eq!(again.ino(), control);
        let mut conn = connect(&pg).await;
        let v: i32 = sqlx::query_scalar("select v from kept")
            .fetch_one(&mut conn)
            .await
            .expect("select");
        assert_eq!(v, 42);
        conn.close().await.expect("close");
        pg.stop().await.expect("stop");
    }

    #[tokio::test]
    async fn restarts_after_sigkill() {
        let dir = traversable_tempdir();
        let data = dir.path().join("pg");

        let pg = EmbeddedPostgres::start(&data).await.expect("first start");
        let mut conn = connect(&pg).await;
        sqlx::raw_sql("create table survived (v int); insert into survived values (7)")
            .execute(&mut conn)
            .await
            .expect("create");
        let pid = pg.pid().expect("pid");
        kill(
            Pid::from_raw(i32::try_from(pid).expect("pid")),
            Signal::SIGKILL,
        )
        .expect("kill");
        drop(conn);
        // Drop reaps the killed postmaster and releases the lock.
        drop(pg);
        assert!(
            data.join("pgdata/postmaster.pid").exists(),
            "kill -9 leaves the pid file"
        );

        let pg = EmbeddedPostgres::start(&data)
            .await
            .expect("start after kill -9");
        let mut conn = connect(&pg).await;
        let v: i32 = sqlx::query_scalar("select v from survived")
            .fetch_one(&mut conn)
            .await
            .expect("select");
        assert_eq!(v, 7);
        conn.close().await.expect("close");
        pg.stop().await.expect("stop");
    }

    #[tokio::test]
    async fn orphan_of_a_dead_meridian_is_replaced() {
        let dir = traversable_tempdir();
        let data = dir.path().join("pg");

        let mut pg = EmbeddedPostgres::start(&data).await.expect("first start");
        // Simulate meridian dying without unwinding: the lock goes away
        // with the process, the server keeps running.
        let orphan = pg.server.child.take().expect("child");
        let orphan_pid = Pid::from_raw(i32::try_from(orphan.id()).expect("pid"));
        drop(pg);
        assert!(kill(orphan_pid, None).is_ok(), "orphan still running");

        let pg = EmbeddedPostgres::start(&data)
            .await
            .expect("start over an orphan");
        let mut conn = connect(&pg).await;
        let one: i32 = sqlx::query_scalar("select 1")
            .fetch_one(&mut conn)
            .await
            .expect("select");
        assert_eq!(one, 1);
        conn.close().await.expect("close");
        // The orphan shut down; reap it (it is still our child here).
        let mut orphan = orphan;
        let status = orphan.wait().expect("wait orphan");
        assert!(status.success(), "orphan got a fast shutdown: {status}");
        pg.stop().await.expect("stop");
    }

    #[tokio::test]
    async fn second_owner_is_refused() {
        let dir = traversable_tempdir();
        let data = dir.path().join("pg");
        let pg = EmbeddedPostgres::start(&data).await.expect("start");
        let err = EmbeddedPostgres::start(&data)
            .await
            .expect_err("must refuse");
        assert!(matches!(err, EmbeddedError::InUse(_)), "{err}");
        pg.stop().await.expect("stop");
    }

    #[test]
    fn missing_binaries_error_names_the_fix() {
        let empty = tempfile::tempdir().expect("tempdir");
        let err = find_bin_dir(None, empty.path(), Some(OsString::new()), None)
            .expect_err("nothing there");
        let msg = err.to_string();
        assert!(msg.contains("no PostgreSQL server binaries found"), "{msg}");
        assert!(msg.contains("apt-get install postgresql"), "{msg}");
        assert!(msg.contains("DATABASE_URL"), "{msg}");

        let err = find_bin_dir(Some(empty.path().into()), empty.path(), None, None)
            .expect_err("bad override");
        assert!(err.to_string().contains(PG_BIN_ENV), "{err}");
    }

    #[test]
    fn bin_dir_prefers_cluster_version_then_highest() {
        let root = tempfile::tempdir().expect("tempdir");
        for v in ["9.6", "13", "15"] {
            let bin = root.path().join(v).join("bin");
            fs::create_dir_all(&bin).expect("mkdir");
            for exe in ["initdb", "postgres"] {
                fs::write(bin.join(exe), "").expect("write");
                fs::set_permissions(bin.join(exe), fs::Permissions::from_mode(0o755))
                    .expect("chmod");
            }
        }
        let pick = |prefer| find_bin_dir(None, root.path(), None, prefer).expect("found");
        assert_eq!(pick(None), root.path().join("15/bin"));
        assert_eq!(pick(Some("13")), root.path().join("13/bin"));
        assert_eq!(pick(Some("12")), root.path().join("15/bin"));
    }

    #[test]
    fn data_dir_choice() {
        let env = |pairs: &'static [(&'static str, &'static str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(name, _)| *name == k)
                    .map(|(_, v)| OsString::from(v))
            }
        };
        let no_home = || None;
        assert_eq!(
            choose_data_dir(
                env(&[(DATA_DIR_ENV, "/x/y"), ("HOME", "/h")]),
                no_home,
                None
            ),
            PathBuf::from("/x/y")
        );
        assert_eq!(
            choose_data_dir(
                env(&[("XDG_DATA_HOME", "/d"), ("HOME", "/h")]),
                no_home,
                None
            ),
            PathBuf::from("/d/meridian/postgres")
        );
        assert_eq!(
            choose_data_dir(
                env(&[("XDG_DATA_HOME", "rel"), ("HOME", "/h")]),
                no_home,
                None
            ),
            PathBuf::from("/h/.local/share/meridian/postgres")
        );
        assert_eq!(
            choose_data_dir(env(&[]), || Some(PathBuf::from("/pw")), None),
            PathBuf::from("/pw/.local/share/meridian/postgres")
        );

        // As root with the server running as an unprivileged account.
        let nobody = RunAs {
            uid: Uid::from_raw(65534),
            gid: Gid::from_raw(65534),
        };
        let closed = closed_tempdir();
        let open = traversable_tempdir();
        let closed_home = closed.path().to_str().expect("utf8").to_owned();
        let open_home = open.path().to_str().expect("utf8").to_owned();
        let get = |home: String| move |k: &str| (k == "HOME").then(|| OsString::from(home.clone()));
        assert_eq!(
            choose_data_dir(get(closed_home), no_home, Some(&nobody)),
            PathBuf::from(SYSTEM_DATA_DIR)
        );
        assert_eq!(
            choose_data_dir(get(open_home), no_home, Some(&nobody)),
            open.path().join(".local/share/meridian/postgres")
        );
    }

    #[tokio::test]
    async fn unreachable_data_dir_is_a_clear_error_as_root() {
        if !geteuid().is_root() {
            return; // Only root hands the server to another account.
        }
        let closed = closed_tempdir();
        let err = EmbeddedPostgres::start(&closed.path().join("pg"))
            .await
            .expect_err("postgres cannot traverse a 0700 root dir");
        assert!(matches!(err, EmbeddedError::Unreachable { .. }), "{err}");
    }
}
