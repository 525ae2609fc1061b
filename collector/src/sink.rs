//! What every receiver task holds and shares, whatever its framing: the [`Sink`] where lines
//! go (spool, quarantine, counters, allow-list), a piece of bad input ([`Bad`]) and the
//! datagram sockets. The framing modules (socket, syslog) and the receiver's accept loops
//! all use it; it uses none of them.

use std::io;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use tokio::net::{UdpSocket, UnixDatagram};

use crate::address::SourceAddress;
use crate::peer_net::PeerNet;
use crate::quarantine::{QuarantineItem, QuarantineKind, QuarantineSink, TokenBucket};
use crate::spool::Spool;
use crate::stats::ReceiverStats;

pub(crate) fn add(counter: &AtomicU64, value: u64) {
    counter.fetch_add(value, Ordering::Relaxed);
}

/// One piece of bad input, described for quarantine.
pub(crate) struct Bad<'a> {
    pub kind: QuarantineKind,
    pub reason: String,
    /// Offset in the connection's stream (0 for datagrams).
    pub offset: u64,
    /// Full length of the input (may exceed `bytes.len()`).
    pub length: u64,
    pub bytes: &'a [u8],
}

impl<'a> From<&'a vigil_event::Refused> for Bad<'a> {
    fn from(refused: &'a vigil_event::Refused) -> Self {
        Bad {
            kind: match refused.kind {
                vigil_event::RefusedKind::Oversize => QuarantineKind::Oversize,
                vigil_event::RefusedKind::Truncated => QuarantineKind::Truncated,
                vigil_event::RefusedKind::Malformed => QuarantineKind::Malformed,
            },
            reason: refused.reason.clone(),
            offset: refused.offset,
            length: refused.length,
            bytes: &refused.bytes,
        }
    }
}

/// What every receiver task holds: where lines go and what to count.
#[derive(Clone)]
pub(crate) struct Sink {
    pub source: Arc<str>,
    /// The listening address as text, used as the quarantine entry's `path`.
    pub address: Arc<Path>,
    pub spool: Spool,
    pub quarantine: Arc<dyn QuarantineSink>,
    pub stats: Arc<ReceiverStats>,
    /// Warnings about refused input allowed per second: beyond it they go to debug, so a
    /// flood of bad input cannot flood the logs (the counters still count everything).
    warnings: Arc<TokenBucket>,
    allow: Arc<[PeerNet]>,
}

/// Warnings a receiver logs about refused input: 10 per second, bursts of 100.
const WARNINGS_PER_SECOND: u32 = 10;
const WARNING_BURST: u32 = 100;

impl Sink {
    pub(crate) fn new(
        source: &str,
        address: &SourceAddress,
        allow: &[PeerNet],
        spool: Spool,
        quarantine: Arc<dyn QuarantineSink>,
    ) -> Self {
        Self {
            source: Arc::from(source),
            address: Arc::from(Path::new(&address.to_string())),
            spool,
            quarantine,
            stats: Arc::new(ReceiverStats::default()),
            warnings: Arc::new(TokenBucket::new(WARNINGS_PER_SECOND, WARNING_BURST)),
            allow: Arc::from(allow),
        }
    }

    /// Whether a warning may be logged now (see `warnings`).
    pub fn may_warn(&self) -> bool {
        self.warnings.try_take()
    }

    /// Whether `peer` passes the allow-list; counts and (rate-limited) logs a refusal.
    pub fn admits(&self, peer: Option<IpAddr>, shown: &str) -> bool {
        let allowed = match peer {
            Some(address) if !self.allow.is_empty() => {
                self.allow.iter().any(|net| net.contains(address))
            }
            _ => true,
        };
        if !allowed {
            add(&self.stats.refused_not_allowed, 1);
            if self.may_warn() {
                tracing::warn!(source = %self.source, peer = shown, "peer not allowed; refused");
            }
        }
        allowed
    }

    /// Appends whole lines to the spool and counts them; never fails the sender.
    pub fn spool_lines(&self, lines: &[&[u8]]) {
        if lines.is_empty() {
            return;
        }
        match self.spool.append_lines(lines) {
            Ok(appended) => {
                add(&self.stats.lines, appended.written as u64);
                add(&self.stats.spool_dropped, appended.dropped as u64);
            }
            Err(error) => {
                // Only a newline inside a line, which the framers rule out: a bug, counted.
                add(&self.stats.errors, 1);
                tracing::error!(source = %self.source, %error, "lines not spooled");
            }
        }
    }

    /// Counts, logs (without content) and quarantines one piece of bad input.
    pub fn reject(&self, bad: Bad<'_>, peer: &str) {
        let counter = match bad.kind {
            QuarantineKind::Oversize => &self.stats.oversize,
            QuarantineKind::Truncated => &self.stats.truncated,
            QuarantineKind::Malformed | QuarantineKind::Rejected => &self.stats.malformed,
        };
        add(counter, 1);
        if self.may_warn() {
            tracing::warn!(
                source = %self.source,
                address = %self.address.display(),
                peer,
                kind = ?bad.kind,
                offset = bad.offset,
                length = bad.length,
                reason = %bad.reason,
                "input quarantined"
            );
        }
        let item = QuarantineItem {
            kind: bad.kind,
            reason: &bad.reason,
            source: &self.source,
            path: &self.address,
            offset: bad.offset,
            length: bad.length,
            bytes: bad.bytes,
        };
        // Never waits: the quarantine's writer thread syncs on its own, as soon as its queue
        // runs empty, and drops (counting) what comes faster than it may write.
        if let Err(error) = self.quarantine.quarantine(&item) {
            add(&self.stats.errors, 1);
            tracing::error!(source = %self.source, %error, "cannot write to quarantine");
        }
    }
}

/// A datagram socket of either kind.
pub(crate) enum DatagramSocket {
    Udp(UdpSocket),
    /// With its path, logged as the peer (unix datagram senders are usually unnamed).
    Unix(UnixDatagram, PathBuf),
}

impl DatagramSocket {
    /// Receives one datagram: its length, its sender's IP address (`None` on a unix socket)
    /// and the sender as shown in logs.
    pub async fn recv(&self, buffer: &mut [u8]) -> io::Result<(usize, Option<IpAddr>, String)> {
        match self {
            Self::Udp(socket) => {
                let (got, peer) = socket.recv_from(buffer).await?;
                Ok((got, Some(peer.ip()), peer.to_string()))
            }
            Self::Unix(socket, path) => Ok((
                socket.recv(buffer).await?,
                None,
                format!("unixgram:{}", path.display()),
            )),
        }
    }
}
