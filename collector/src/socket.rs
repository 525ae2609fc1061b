//! [`SocketReceiver`]: the receiving end of Vault's socket audit device, on TCP or a unix
//! stream socket, newline-delimited JSON.
//!
//! Each Vault node keeps one connection and reconnects when it drops. Every connection is
//! read on its own task and framed on its own ([`LineFramer`]), so lines are spooled exactly
//! as received: a partial line left when a connection closes is quarantined as truncated and
//! never glued to another connection's data. Complete lines are appended to the [`Spool`] as
//! soon as they are read — the spool never waits for downstream, so Vault never waits for
//! us. A line longer than [`ReceiverConfig::max_line_bytes`] is quarantined by its head and
//! skipped up to its newline. Connections beyond [`ReceiverConfig::max_connections`] are
//! closed at once and counted.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use tokio::io::AsyncRead;
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::address::SourceAddress;
use crate::quarantine::{QuarantineKind, QuarantineSink};
use crate::receiver::{
    add, read_chunks, remove_stale_socket, Bad, ReceiverConfig, ReceiverError, ReceiverStats, Sink,
};
use crate::spool::Spool;

/// Listens for Vault's socket audit device; see the module documentation.
pub struct SocketReceiver {
    config: ReceiverConfig,
    listener: Listener,
    sink: Sink,
}

enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener, PathBuf),
}

impl SocketReceiver {
    /// Binds the listener (`tcp://` or `unix://`; a stale unix socket file is replaced). Must
    /// be called inside a Tokio runtime. Nothing is accepted until [`SocketReceiver::run`].
    pub async fn bind(
        config: ReceiverConfig,
        spool: Spool,
        quarantine: Arc<dyn QuarantineSink>,
    ) -> Result<Self, ReceiverError> {
        let bind_error = |source| ReceiverError::Bind {
            address: config.address.clone(),
            source,
        };
        let listener = match &config.address {
            SourceAddress::Tcp { .. } => {
                let host_port = config.address.host_port().unwrap_or_default();
                Listener::Tcp(TcpListener::bind(host_port).await.map_err(bind_error)?)
            }
            SourceAddress::Unix(path) => {
                remove_stale_socket(path)?;
                Listener::Unix(UnixListener::bind(path).map_err(bind_error)?, path.clone())
            }
            SourceAddress::Udp { .. } | SourceAddress::UnixDatagram(_) => {
                return Err(ReceiverError::UnsupportedAddress {
                    receiver: "socket",
                    address: config.address.clone(),
                })
            }
        };
        let sink = Sink::new(
            &config,
            spool,
            quarantine,
            Arc::new(ReceiverStats::default()),
        );
        Ok(Self {
            config,
            listener,
            sink,
        })
    }

    /// The bound TCP address (useful with port 0); `None` for a unix socket.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        match &self.listener {
            Listener::Tcp(listener) => listener.local_addr().ok(),
            Listener::Unix(..) => None,
        }
    }

    /// The receiver's counters; they stay readable while it runs.
    pub fn stats(&self) -> Arc<ReceiverStats> {
        Arc::clone(&self.sink.stats)
    }

    /// Accepts connections until `shutdown` is cancelled, then closes them (a partial line in
    /// flight is quarantined as truncated) and returns. A unix socket file is removed.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), ReceiverError> {
        let Self {
            config,
            listener,
            sink,
        } = self;
        tracing::info!(source = %sink.source, address = %config.address, "socket receiver listening");
        let slots = Arc::new(Semaphore::new(config.max_connections.max(1)));
        let mut connections = JoinSet::new();
        loop {
            let accepted: std::io::Result<(Box<dyn AsyncRead + Send + Unpin>, String)> = tokio::select! {
                () = shutdown.cancelled() => break,
                // Reap finished connection tasks so the set does not grow without bound.
                Some(_) = connections.join_next(), if !connections.is_empty() => continue,
                accepted = accept(&listener) => accepted,
            };
            let (stream, peer) = match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Usually EMFILE or a connection reset before accept; keep listening.
                    add(&sink.stats.errors, 1);
                    tracing::warn!(source = %sink.source, %error, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                    continue;
                }
            };
            let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
                add(&sink.stats.connections_refused, 1);
                tracing::warn!(
                    source = %sink.source,
                    peer,
                    max_connections = config.max_connections,
                    "too many connections; closing this one"
                );
                drop(stream);
                continue;
            };
            add(&sink.stats.connections_accepted, 1);
            add(&sink.stats.connections_active, 1);
            tracing::debug!(source = %sink.source, peer, "connection accepted");
            let sink = sink.clone();
            let shutdown = shutdown.clone();
            let max_line = config.max_line_bytes;
            let buffer = config.read_buffer_bytes.max(1);
            connections.spawn(async move {
                serve(stream, &peer, &sink, max_line, buffer, &shutdown).await;
                sink.stats
                    .connections_active
                    .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
                drop(slot);
            });
        }
        while connections.join_next().await.is_some() {}
        if let Listener::Unix(_, path) = &listener {
            let _ = std::fs::remove_file(path);
        }
        Ok(())
    }
}

async fn accept(
    listener: &Listener,
) -> std::io::Result<(Box<dyn AsyncRead + Send + Unpin>, String)> {
    match listener {
        Listener::Tcp(listener) => {
            let (stream, peer) = listener.accept().await?;
            // Audit lines are small and Vault waits for each write: no Nagle delay on acks.
            let _ = stream.set_nodelay(true);
            Ok((Box::new(stream), peer.to_string()))
        }
        Listener::Unix(listener, path) => {
            let (stream, _) = listener.accept().await?;
            Ok((Box::new(stream), format!("unix:{}", path.display())))
        }
    }
}

/// Reads one connection to its end (or to shutdown), spooling each complete line at once.
async fn serve(
    mut stream: Box<dyn AsyncRead + Send + Unpin>,
    peer: &str,
    sink: &Sink,
    max_line: usize,
    buffer_bytes: usize,
    shutdown: &CancellationToken,
) {
    let mut framer = LineFramer::new(max_line);
    read_chunks(&mut stream, peer, sink, buffer_bytes, shutdown, |chunk| {
        let framed = framer.feed(chunk);
        sink.spool_lines(&framed.lines);
        for oversize in framed.oversize {
            sink.reject(oversize.into_bad().bad(), peer);
        }
    })
    .await;
    if let Some(bad) = framer.finish() {
        sink.reject(bad.bad(), peer);
    }
}

/// An over-long line, reported once its end is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OversizeReport {
    pub offset: u64,
    pub length: u64,
    pub head: Vec<u8>,
}

impl OversizeReport {
    pub fn into_bad(self) -> OwnedBad {
        OwnedBad {
            kind: QuarantineKind::Oversize,
            reason: format!(
                "line of {} bytes is longer than the maximum of {} bytes",
                self.length,
                self.head.len()
            ),
            offset: self.offset,
            length: self.length,
            bytes: self.head,
        }
    }
}

/// [`Bad`] with owned bytes.
#[derive(Debug)]
pub(crate) struct OwnedBad {
    pub kind: QuarantineKind,
    pub reason: String,
    pub offset: u64,
    pub length: u64,
    pub bytes: Vec<u8>,
}

impl OwnedBad {
    pub fn bad(&self) -> Bad<'_> {
        Bad {
            kind: self.kind,
            reason: self.reason.clone(),
            offset: self.offset,
            length: self.length,
            bytes: &self.bytes,
        }
    }
}

/// What one [`LineFramer::feed`] produced: complete lines (borrowed from the framer, without
/// their newline) and over-long lines that ended in this chunk.
pub(crate) struct Framed<'a> {
    pub lines: Vec<&'a [u8]>,
    pub oversize: Vec<OversizeReport>,
}

/// Splits one connection's byte stream into lines, bounded by `max_line` bytes.
#[derive(Debug)]
pub(crate) struct LineFramer {
    max_line: usize,
    /// Bytes received and not yet framed, plus (before `consumed`) the lines last handed out.
    pending: Vec<u8>,
    consumed: usize,
    /// Stream offset of `pending[0]`.
    pending_start: u64,
    /// Set while skipping the rest of an over-long line.
    skipping: Option<OversizeReport>,
}

impl LineFramer {
    pub fn new(max_line: usize) -> Self {
        Self {
            max_line: max_line.max(1),
            pending: Vec::new(),
            consumed: 0,
            pending_start: 0,
            skipping: None,
        }
    }

    /// Frames the next chunk of the stream.
    pub fn feed(&mut self, mut chunk: &[u8]) -> Framed<'_> {
        // The lines handed out last time are done with now.
        self.pending.drain(..self.consumed);
        self.pending_start += self.consumed as u64;
        self.consumed = 0;
        let mut oversize = Vec::new();
        if let Some(skipping) = &mut self.skipping {
            match chunk.iter().position(|&byte| byte == b'\n') {
                None => {
                    skipping.length += chunk.len() as u64;
                    self.pending_start += chunk.len() as u64;
                    return Framed {
                        lines: Vec::new(),
                        oversize,
                    };
                }
                Some(newline) => {
                    skipping.length += newline as u64;
                    self.pending_start += newline as u64 + 1;
                    chunk = &chunk[newline + 1..];
                    oversize.extend(self.skipping.take());
                }
            }
        }
        let scan_from = self.pending.len();
        self.pending.extend_from_slice(chunk);
        // Find line ends first (ranges), then borrow: keeps the borrow checker simple.
        let mut ranges = Vec::new();
        let mut line_start = 0usize;
        let mut search = scan_from;
        while let Some(at) = self.pending[search..]
            .iter()
            .position(|&byte| byte == b'\n')
        {
            let newline = search + at;
            let length = newline - line_start;
            if length > self.max_line {
                oversize.push(OversizeReport {
                    offset: self.pending_start + line_start as u64,
                    length: length as u64,
                    head: self.pending[line_start..line_start + self.max_line].to_vec(),
                });
            } else if length > 0 {
                ranges.push(line_start..newline);
            }
            line_start = newline + 1;
            search = line_start;
        }
        self.consumed = line_start;
        let rest = self.pending.len() - line_start;
        if rest > self.max_line {
            // Never hold more than a line's worth: keep the head, skip to the newline.
            self.skipping = Some(OversizeReport {
                offset: self.pending_start + line_start as u64,
                length: rest as u64,
                head: self.pending[line_start..line_start + self.max_line].to_vec(),
            });
            self.pending.truncate(line_start);
            // `pending_start` moves past the skipped bytes once the lines are drained.
            self.pending_start += rest as u64;
        }
        let pending = &self.pending;
        Framed {
            lines: ranges.into_iter().map(|range| &pending[range]).collect(),
            oversize,
        }
    }

    /// What is left when the stream ends: a partial line (truncated) or the head of an
    /// over-long line that never got its newline.
    pub fn finish(mut self) -> Option<OwnedBad> {
        if let Some(skipping) = self.skipping.take() {
            let mut bad = skipping.into_bad();
            bad.reason
                .push_str("; the connection closed before its newline");
            return Some(bad);
        }
        let rest = &self.pending[self.consumed..];
        if rest.is_empty() {
            return None;
        }
        Some(OwnedBad {
            kind: QuarantineKind::Truncated,
            reason: format!(
                "connection closed after {} bytes of a line without its newline",
                rest.len()
            ),
            offset: self.pending_start + self.consumed as u64,
            length: rest.len() as u64,
            bytes: rest.to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_all(framer: &mut LineFramer, chunks: &[&[u8]]) -> (Vec<Vec<u8>>, Vec<OversizeReport>) {
        let mut lines = Vec::new();
        let mut oversize = Vec::new();
        for chunk in chunks {
            let framed = framer.feed(chunk);
            lines.extend(framed.lines.iter().map(|line| line.to_vec()));
            oversize.extend(framed.oversize);
        }
        (lines, oversize)
    }

    #[test]
    fn frames_lines_across_chunks() {
        let mut framer = LineFramer::new(100);
        let (lines, oversize) = feed_all(&mut framer, &[b"on", b"e\ntwo\n\nthr", b"ee\nfo"]);
        assert_eq!(lines, [&b"one"[..], b"two", b"three"]);
        assert!(oversize.is_empty());
        let rest = framer.finish().unwrap();
        assert_eq!(rest.kind, QuarantineKind::Truncated);
        assert_eq!((rest.offset, rest.bytes.as_slice()), (15, &b"fo"[..]));
    }

    #[test]
    fn oversize_lines_are_reported_by_their_head_and_skipped() {
        let mut framer = LineFramer::new(4);
        let (lines, oversize) = feed_all(
            &mut framer,
            &[b"ok\n123456\nab", b"cdefgh", b"ij", b"k\nend\n"],
        );
        assert_eq!(lines, [&b"ok"[..], b"end"]);
        assert_eq!(
            oversize,
            [
                OversizeReport {
                    offset: 3,
                    length: 6,
                    head: b"1234".to_vec()
                },
                OversizeReport {
                    offset: 10,
                    length: 11,
                    head: b"abcd".to_vec()
                }
            ]
        );
        assert!(framer.finish().is_none());
    }

    #[test]
    fn unterminated_oversize_line_is_reported_at_the_end() {
        let mut framer = LineFramer::new(4);
        let (lines, _) = feed_all(&mut framer, &[b"a\nbbbbbbbb", b"bb"]);
        assert_eq!(lines, [b"a"]);
        let rest = framer.finish().unwrap();
        assert_eq!(rest.kind, QuarantineKind::Oversize);
        assert_eq!((rest.offset, rest.length), (2, 10));
    }
}
