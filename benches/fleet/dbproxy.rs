//! A TCP proxy between `meridian serve` and PostgreSQL that counts round
//! trips: every `Sync` (end of an extended-protocol exchange) and every
//! simple `Query` the client sends is one wait for the server. Meridian
//! cannot count these itself, and PostgreSQL's own statistics count
//! transactions, not round trips. Each round trip is also put down to the
//! statement it ran (the start of its SQL), to show where they go.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Context as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Clone)]
pub struct DbProxy {
    pub addr: SocketAddr,
    round_trips: Arc<AtomicU64>,
    by_statement: Arc<Mutex<HashMap<String, u64>>>,
    task: Arc<tokio::task::JoinHandle<()>>,
}

impl Drop for DbProxy {
    fn drop(&mut self) {
        if Arc::strong_count(&self.task) == 1 {
            self.task.abort();
        }
    }
}

impl DbProxy {
    pub async fn start(upstream: SocketAddr) -> anyhow::Result<DbProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let round_trips = Arc::new(AtomicU64::new(0));
        let by_statement = Arc::new(Mutex::new(HashMap::new()));
        let counter = Arc::clone(&round_trips);
        let tally = Arc::clone(&by_statement);
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let counter = Arc::clone(&counter);
                let tally = Arc::clone(&tally);
                tokio::spawn(async move {
                    // A server killed at the end of a run resets its
                    // connections; only a failure to reach PostgreSQL matters.
                    if let Err(e) = relay(client, upstream, counter, tally).await
                        && e.to_string().starts_with("connect")
                    {
                        eprintln!("db proxy: {e:#}");
                    }
                });
            }
        });
        Ok(DbProxy {
            addr,
            round_trips,
            by_statement,
            task: Arc::new(task),
        })
    }

    pub fn round_trips(&self) -> u64 {
        self.round_trips.load(Ordering::Relaxed)
    }

    /// Round trips so far by statement, most first.
    pub fn by_statement(&self) -> Vec<(String, u64)> {
        let tally = self
            .by_statement
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut rows: Vec<(String, u64)> = tally.iter().map(|(k, v)| (k.clone(), *v)).collect();
        rows.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        rows
    }
}

async fn relay(
    client: TcpStream,
    upstream: SocketAddr,
    counter: Arc<AtomicU64>,
    tally: Arc<Mutex<HashMap<String, u64>>>,
) -> anyhow::Result<()> {
    client.set_nodelay(true)?;
    let server = TcpStream::connect(upstream)
        .await
        .context("connect to PostgreSQL")?;
    server.set_nodelay(true)?;
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let downstream =
        tokio::spawn(async move { tokio::io::copy(&mut server_read, &mut client_write).await });
    let mut parser = FrontendParser::default();
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let n = client_read.read(&mut buffer).await?;
        if n == 0 {
            break;
        }
        let chunk = &buffer[..n];
        let ended = parser.feed(chunk);
        if !ended.is_empty() {
            counter.fetch_add(ended.len() as u64, Ordering::Relaxed);
            let mut tally = tally
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            for statement in ended {
                *tally.entry(statement).or_default() += 1;
            }
        }
        server_write.write_all(chunk).await?;
    }
    let _ = server_write.shutdown().await;
    let _ = downstream.await;
    Ok(())
}

/// How much of a Parse, Bind or Query body is kept: enough for statement
/// names and the start of the SQL.
const KEPT: usize = 200;

/// Splits the client's byte stream into protocol messages: first the
/// untyped start-up message, then `type byte + i32 length + body`.
#[derive(Default)]
struct FrontendParser {
    started: bool,
    header: Vec<u8>,
    /// Type and length of the current message's body still to come.
    kind: Option<u8>,
    remaining: usize,
    body: Vec<u8>,
    /// Prepared statement name → the start of its SQL.
    statements: HashMap<String, String>,
    /// The statement the current exchange runs (the last Bind or Parse).
    current: String,
}

impl FrontendParser {
    /// Feeds bytes; answers the statements of the round trips they closed.
    fn feed(&mut self, mut bytes: &[u8]) -> Vec<String> {
        let mut ended = Vec::new();
        while !bytes.is_empty() {
            if self.remaining > 0 {
                let take = self.remaining.min(bytes.len());
                let keep = take.min(KEPT.saturating_sub(self.body.len()));
                self.body.extend_from_slice(&bytes[..keep]);
                self.remaining -= take;
                bytes = &bytes[take..];
                if self.remaining == 0 {
                    self.message_done(&mut ended);
                }
                continue;
            }
            let header_len = if self.started { 5 } else { 4 };
            let take = (header_len - self.header.len()).min(bytes.len());
            self.header.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.header.len() < header_len {
                continue;
            }
            let (kind, len_bytes) = if self.started {
                (Some(self.header[0]), &self.header[1..5])
            } else {
                (None, &self.header[0..4])
            };
            let length =
                u32::from_be_bytes([len_bytes[0], len_bytes[1], len_bytes[2], len_bytes[3]])
                    as usize;
            // The length counts itself but not the type byte.
            self.remaining = length.saturating_sub(4);
            self.kind = kind;
            self.body.clear();
            self.started = true;
            self.header.clear();
            if self.remaining == 0 {
                self.message_done(&mut ended);
            }
        }
        ended
    }

    fn message_done(&mut self, ended: &mut Vec<String>) {
        let mut fields = self.body.split(|b| *b == 0).map(String::from_utf8_lossy);
        match self.kind {
            // Parse: statement name, SQL.
            Some(b'P') => {
                let name = fields.next().unwrap_or_default().into_owned();
                let sql = label(&fields.next().unwrap_or_default());
                self.current.clone_from(&sql);
                self.statements.insert(name, sql);
            }
            // Bind: portal name, statement name.
            Some(b'B') => {
                let _portal = fields.next();
                let name = fields.next().unwrap_or_default();
                self.current = self
                    .statements
                    .get(name.as_ref())
                    .cloned()
                    .unwrap_or_else(|| format!("(statement {name})"));
            }
            Some(b'S') => {
                let current = std::mem::take(&mut self.current);
                ended.push(if current.is_empty() {
                    "(sync alone)".into()
                } else {
                    current
                });
            }
            Some(b'Q') => ended.push(label(&fields.next().unwrap_or_default())),
            _ => {}
        }
    }
}

/// The first words of a statement, whitespace folded.
fn label(sql: &str) -> String {
    let words: Vec<&str> = sql.split_whitespace().collect();
    let mut label = words.join(" ");
    if let Some((cut, _)) = label.char_indices().nth(70) {
        label.truncate(cut);
    }
    label
}
