//! A TCP proxy between `meridian serve` and PostgreSQL that counts round
//! trips: every `Sync` (end of an extended-protocol exchange) and every
//! simple `Query` the client sends is one wait for the server. Meridian
//! cannot count these itself, and PostgreSQL's own statistics count
//! transactions, not round trips.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context as _;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Clone)]
pub struct DbProxy {
    pub addr: SocketAddr,
    round_trips: Arc<AtomicU64>,
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
        let counter = Arc::clone(&round_trips);
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let counter = Arc::clone(&counter);
                tokio::spawn(async move {
                    // A server killed at the end of a run resets its
                    // connections; only a failure to reach PostgreSQL matters.
                    if let Err(e) = relay(client, upstream, counter).await
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
            task: Arc::new(task),
        })
    }

    pub fn round_trips(&self) -> u64 {
        self.round_trips.load(Ordering::Relaxed)
    }
}

async fn relay(
    client: TcpStream,
    upstream: SocketAddr,
    counter: Arc<AtomicU64>,
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
        counter.fetch_add(parser.feed(chunk), Ordering::Relaxed);
        server_write.write_all(chunk).await?;
    }
    let _ = server_write.shutdown().await;
    let _ = downstream.await;
    Ok(())
}

/// Splits the client's byte stream into protocol messages: first the
/// untyped start-up message, then `type byte + i32 length + body`.
#[derive(Default)]
struct FrontendParser {
    started: bool,
    header: Vec<u8>,
    /// Body bytes still to skip of the current message.
    remaining: usize,
}

impl FrontendParser {
    /// Feeds bytes; answers how many round-trip-ending messages they closed.
    fn feed(&mut self, mut bytes: &[u8]) -> u64 {
        let mut count = 0;
        while !bytes.is_empty() {
            if self.remaining > 0 {
                let skip = self.remaining.min(bytes.len());
                self.remaining -= skip;
                bytes = &bytes[skip..];
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
            if matches!(kind, Some(b'S') | Some(b'Q')) {
                count += 1;
            }
            self.started = true;
            self.header.clear();
        }
        count
    }
}
