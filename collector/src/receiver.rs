//! What the socket and syslog receivers share — they differ in framing only: the
//! [`Receiver`] itself (binding, the accept loop, reading connections), its configuration
//! ([`ReceiverConfig`]), counters ([`ReceiverStats`]) and errors ([`ReceiverError`]), and the
//! way bad input goes to quarantine without its content ever being logged. The framings live
//! beside their audit device: lines in `socket.rs`, syslog in `syslog.rs`.
//!
//! Anyone who can reach a receiver can try to blind it, so it defends itself the same way
//! for both kinds: peers outside [`ReceiverConfig::allow`] are refused; a connection that
//! sends nothing for [`ReceiverConfig::idle_timeout`] is closed; one peer cannot hold more
//! than [`ReceiverConfig::max_connections_per_peer`] of the
//! [`ReceiverConfig::max_connections`] (so idle sockets from one host cannot lock Vault
//! out); bad input goes to a quarantine that never blocks (see [`crate::FileQuarantine`]);
//! and warnings about refused input are rate-limited, so that a flood cannot flood the logs
//! too. Every refusal is counted in [`ReceiverStats`].

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::io::AsyncRead;
use tokio::net::{TcpListener, UdpSocket, UnixDatagram, UnixListener};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use vigil_event::{LineFramer, SyslogFramer};

use crate::address::{ReceiverKind, SourceAddress};
use crate::peer_net::PeerNet;
use crate::quarantine::QuarantineSink;
use crate::sink::{add, DatagramSocket, Sink};
use crate::spool::{Spool, SpoolError};
use crate::stats::ReceiverStats;

/// How one receiver listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiverConfig {
    /// Source name (node and audit device), written into quarantine entries and logs.
    pub source: String,
    /// Where to listen.
    pub address: SourceAddress,
    /// Longest line, syslog frame or datagram accepted, in bytes; longer input is quarantined
    /// by its head.
    pub max_line_bytes: usize,
    /// Most connections open at once (stream sockets); more are closed at once and counted.
    pub max_connections: usize,
    /// Most connections open at once from one IP address (TCP; a unix socket's peers have no
    /// address and count against [`ReceiverConfig::max_connections`] only); more are closed
    /// at once and counted.
    pub max_connections_per_peer: usize,
    /// A connection that sends nothing for this long is closed (a partial line it left is
    /// quarantined as truncated) and counted; `None` keeps connections open however quiet.
    ///
    /// Vault's socket device reconnects when a write fails, but over TCP the first write
    /// after we closed can still be accepted by its kernel and lost, so keep this above the
    /// longest quiet spell of the Vault cluster (or use a unix socket, where that write fails
    /// and is retried).
    pub idle_timeout: Option<Duration>,
    /// Peer networks allowed to connect or send datagrams; empty allows every peer. Unix
    /// socket peers have no IP address and are always allowed (use
    /// [`ReceiverConfig::unix_mode`] and [`ReceiverConfig::unix_owner`] instead).
    pub allow: Vec<PeerNet>,
    /// Mode set on a unix socket file right after binding (e.g. `0o660`); `None` keeps what
    /// the umask gives. Connecting needs write permission on the socket file.
    pub unix_mode: Option<u32>,
    /// Owner `(uid, gid)` set on a unix socket file right after binding; `None` keeps the
    /// process's.
    pub unix_owner: Option<(u32, u32)>,
    /// Bytes read from a connection per system call.
    pub read_buffer_bytes: usize,
}

/// [`ReceiverConfig::max_connections`] by default.
pub const DEFAULT_MAX_CONNECTIONS: usize = 64;
/// [`ReceiverConfig::max_connections_per_peer`] by default.
pub const DEFAULT_MAX_CONNECTIONS_PER_PEER: usize = 8;
/// [`ReceiverConfig::idle_timeout`] by default: 5 minutes.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

impl ReceiverConfig {
    /// The defaults: lines up to 1 MiB (as the file tailer), 64 connections and 8 per peer,
    /// connections closed after 5 minutes without input, every peer allowed, the unix
    /// socket's mode and owner left alone, 64 KiB reads.
    pub fn new(source: impl Into<String>, address: SourceAddress) -> Self {
        Self {
            source: source.into(),
            address,
            max_line_bytes: 1024 * 1024,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            max_connections_per_peer: DEFAULT_MAX_CONNECTIONS_PER_PEER,
            idle_timeout: Some(DEFAULT_IDLE_TIMEOUT),
            allow: Vec::new(),
            unix_mode: None,
            unix_owner: None,
            read_buffer_bytes: 64 * 1024,
        }
    }

    /// Whether a peer at `address` may connect or send (`None`: a unix socket peer).
    pub fn allows(&self, address: Option<IpAddr>) -> bool {
        match address {
            _ if self.allow.is_empty() => true,
            None => true,
            Some(address) => self.allow.iter().any(|net| net.contains(address)),
        }
    }
}

/// Why a receiver could not start or stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReceiverError {
    /// Binding the listening socket failed.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// The address.
        address: SourceAddress,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The address is not one this receiver accepts.
    #[error("the {receiver} receiver cannot listen on {address}")]
    UnsupportedAddress {
        /// Which receiver.
        receiver: ReceiverKind,
        /// The address.
        address: SourceAddress,
    },
    /// A path given for a unix socket holds something that is not a socket; it is left alone.
    #[error("{0} exists and is not a socket; refusing to replace it")]
    NotASocket(PathBuf),
    /// A unix socket left by an earlier run could not be removed to bind a new one.
    #[error("cannot remove the stale socket {path}: {source}")]
    RemoveStaleSocket {
        /// The socket file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The unix socket's mode or owner could not be set after binding.
    #[error("cannot set the mode or owner of the socket {path}: {source}")]
    SocketPermissions {
        /// The socket file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The spool's maintenance (periodic fsync, trimming) failed; see [`crate::ReceiverPipeline`].
    #[error(transparent)]
    Spool(#[from] SpoolError),
}

/// Removes a stale unix socket left by an earlier run, refusing to remove anything else.
fn remove_stale_socket(path: &Path) -> Result<(), ReceiverError> {
    use std::os::unix::fs::FileTypeExt;
    match std::fs::symlink_metadata(path) {
        Ok(metadata) if metadata.file_type().is_socket() => {
            std::fs::remove_file(path).or_else(|error| match error.kind() {
                io::ErrorKind::NotFound => Ok(()),
                _ => Err(ReceiverError::RemoveStaleSocket {
                    path: path.to_owned(),
                    source: error,
                }),
            })
        }
        Ok(_) => Err(ReceiverError::NotASocket(path.to_owned())),
        Err(_) => Ok(()),
    }
}

/// A bound socket of any kind.
enum Listener {
    /// Connections, each read as a byte stream.
    Stream(StreamListener),
    /// Datagrams, one message each (syslog only).
    Datagram(DatagramSocket),
}

enum StreamListener {
    Tcp(TcpListener),
    Unix(UnixListener, PathBuf),
}

impl Listener {
    /// Binds `address` for a receiver of `kind`; a stale unix socket file is replaced.
    async fn bind(kind: ReceiverKind, address: &SourceAddress) -> Result<Self, ReceiverError> {
        if !kind.accepts(address) {
            return Err(ReceiverError::UnsupportedAddress {
                receiver: kind,
                address: address.clone(),
            });
        }
        let bind_error = |source| ReceiverError::Bind {
            address: address.clone(),
            source,
        };
        let host_port = address.host_port().unwrap_or_default();
        Ok(match address {
            SourceAddress::Tcp { .. } => Self::Stream(StreamListener::Tcp(
                TcpListener::bind(host_port).await.map_err(bind_error)?,
            )),
            SourceAddress::Unix(path) => {
                remove_stale_socket(path)?;
                let listener = UnixListener::bind(path).map_err(bind_error)?;
                Self::Stream(StreamListener::Unix(listener, path.clone()))
            }
            SourceAddress::Udp { .. } => {
                let socket = UdpSocket::bind(host_port).await.map_err(bind_error)?;
                enlarge_receive_buffer(&socket);
                Self::Datagram(DatagramSocket::Udp(socket))
            }
            SourceAddress::UnixDatagram(path) => {
                remove_stale_socket(path)?;
                let socket = UnixDatagram::bind(path).map_err(bind_error)?;
                Self::Datagram(DatagramSocket::Unix(socket, path.clone()))
            }
        })
    }

    /// The socket file of a unix socket.
    fn unix_path(&self) -> Option<&Path> {
        match self {
            Self::Stream(StreamListener::Unix(_, path))
            | Self::Datagram(DatagramSocket::Unix(_, path)) => Some(path),
            Self::Stream(StreamListener::Tcp(_)) | Self::Datagram(DatagramSocket::Udp(_)) => None,
        }
    }

    fn local_addr(&self) -> Option<SocketAddr> {
        match self {
            Self::Stream(StreamListener::Tcp(listener)) => listener.local_addr().ok(),
            Self::Datagram(DatagramSocket::Udp(socket)) => socket.local_addr().ok(),
            Self::Stream(StreamListener::Unix(..)) | Self::Datagram(DatagramSocket::Unix(..)) => {
                None
            }
        }
    }
}

/// Asks for a large kernel receive buffer, best effort (the kernel caps it at
/// `net.core.rmem_max`): datagrams have no flow control, and a burst beyond the buffer is lost
/// before we see it.
fn enlarge_receive_buffer(socket: &impl std::os::unix::io::AsRawFd) {
    let wanted: libc::c_int = 8 * 1024 * 1024;
    // SAFETY: setsockopt reads `size_of::<c_int>()` bytes from a live local; the descriptor
    // is owned by `socket` and open for the duration of the call.
    let result = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUF,
            std::ptr::addr_of!(wanted).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if result != 0 {
        tracing::debug!(error = %io::Error::last_os_error(), "cannot enlarge the receive buffer");
    }
}

/// Receives one audit device's stream: Vault's socket device ([`ReceiverKind::Socket`]) or its
/// syslog device ([`ReceiverKind::Syslog`]), appending what it receives to a [`Spool`]. Built
/// by [`Receiver::bind`] (or [`crate::ReceiverPipeline::bind`], which also runs the spool's
/// maintenance).
///
/// Every stream connection is read on its own task with its own framer, so input is spooled
/// exactly as received: a partial line or frame left when a connection closes is quarantined
/// as truncated and never glued to another connection's data. Connections beyond
/// [`ReceiverConfig::max_connections`] are closed at once and counted.
pub struct Receiver {
    kind: ReceiverKind,
    config: ReceiverConfig,
    listener: Listener,
    sink: Sink,
}

impl Receiver {
    /// Binds the listener for `kind` on `config.address` (an address the kind does not accept
    /// is [`ReceiverError::UnsupportedAddress`]; a stale unix socket file is replaced). Must
    /// be called inside a Tokio runtime. Nothing is received until [`Receiver::run`].
    pub async fn bind(
        kind: ReceiverKind,
        config: ReceiverConfig,
        spool: Spool,
        quarantine: Arc<dyn QuarantineSink>,
    ) -> Result<Self, ReceiverError> {
        let listener = Listener::bind(kind, &config.address).await?;
        if let Some(path) = listener.unix_path() {
            if let Err(error) = set_socket_permissions(path, &config) {
                let _ = std::fs::remove_file(path);
                return Err(error);
            }
        }
        let sink = Sink::new(
            &config.source,
            &config.address,
            &config.allow,
            spool,
            quarantine,
        );
        Ok(Self {
            kind,
            config,
            listener,
            sink,
        })
    }

    /// Which audit device this receiver receives.
    pub fn kind(&self) -> ReceiverKind {
        self.kind
    }

    /// The bound TCP or UDP address (useful with port 0); `None` for a unix socket.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.listener.local_addr()
    }

    /// The receiver's counters; they stay readable while it runs.
    pub fn stats(&self) -> Arc<ReceiverStats> {
        Arc::clone(&self.sink.stats)
    }

    /// Receives until `shutdown` is cancelled, then closes the connections (a partial line or
    /// frame in flight is quarantined as truncated) and returns. A unix socket file is
    /// removed.
    pub async fn run(self, shutdown: CancellationToken) -> Result<(), ReceiverError> {
        let Self {
            kind,
            config,
            listener,
            sink,
        } = self;
        tracing::info!(source = %sink.source, %kind, address = %config.address, "receiver listening");
        let socket_path = listener.unix_path().map(Path::to_owned);
        match listener {
            Listener::Stream(listener) => {
                accept_connections(kind, &config, &listener, &sink, &shutdown).await;
            }
            Listener::Datagram(socket) => {
                crate::syslog::receive_datagrams(&sink, config.max_line_bytes, &shutdown, &socket)
                    .await;
            }
        }
        if let Some(path) = socket_path {
            let _ = std::fs::remove_file(path);
        }
        Ok(())
    }
}

/// Accepts connections until `shutdown`, each served on its own task, then waits for them.
async fn accept_connections(
    kind: ReceiverKind,
    config: &ReceiverConfig,
    listener: &StreamListener,
    sink: &Sink,
    shutdown: &CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(config.max_connections.max(1)));
    let per_peer = Arc::new(PeerSlots::new(config.max_connections_per_peer));
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            () = shutdown.cancelled() => break,
            // Reap finished connection tasks so the set does not grow without bound.
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = accept(listener) => accepted,
        };
        let (stream, peer_ip, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Usually EMFILE or a connection reset before accept; keep listening.
                add(&sink.stats.errors, 1);
                tracing::warn!(source = %sink.source, %error, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                continue;
            }
        };
        if !sink.admits(peer_ip, &peer) {
            drop(stream);
            continue;
        }
        // The peer's share first: one host holding its share must not take the last slots.
        let peer_slot = match peer_ip {
            Some(ip) => match per_peer.try_take(ip) {
                Some(slot) => Some(slot),
                None => {
                    add(&sink.stats.connections_refused_per_peer, 1);
                    if sink.may_warn() {
                        tracing::warn!(
                            source = %sink.source,
                            peer,
                            max_connections_per_peer = config.max_connections_per_peer,
                            "too many connections from this peer; closing this one"
                        );
                    }
                    drop(stream);
                    continue;
                }
            },
            None => None,
        };
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            add(&sink.stats.connections_refused, 1);
            if sink.may_warn() {
                tracing::warn!(
                    source = %sink.source,
                    peer,
                    max_connections = config.max_connections,
                    "too many connections; closing this one"
                );
            }
            drop(stream);
            continue;
        };
        add(&sink.stats.connections_accepted, 1);
        add(&sink.stats.connections_active, 1);
        tracing::debug!(source = %sink.source, peer, "connection accepted");
        let sink = sink.clone();
        let shutdown = shutdown.clone();
        let framer = ConnectionFramer::new(kind, config.max_line_bytes);
        let buffer = config.read_buffer_bytes.max(1);
        let idle_timeout = config.idle_timeout;
        connections.spawn(async move {
            serve(
                stream,
                &peer,
                &sink,
                framer,
                buffer,
                idle_timeout,
                &shutdown,
            )
            .await;
            sink.stats
                .connections_active
                .fetch_sub(1, Ordering::Relaxed);
            drop((slot, peer_slot));
        });
    }
    while connections.join_next().await.is_some() {}
}

type Connection = Box<dyn AsyncRead + Send + Unpin>;

/// Accepts one connection: the stream, the peer's IP address (`None` on a unix socket) and
/// the peer as shown in logs.
async fn accept(listener: &StreamListener) -> io::Result<(Connection, Option<IpAddr>, String)> {
    match listener {
        StreamListener::Tcp(listener) => {
            let (stream, peer) = listener.accept().await?;
            // Audit lines are small and Vault waits for each write: no Nagle delay on acks.
            let _ = stream.set_nodelay(true);
            Ok((Box::new(stream), Some(peer.ip()), peer.to_string()))
        }
        StreamListener::Unix(listener, path) => {
            let (stream, _) = listener.accept().await?;
            Ok((Box::new(stream), None, format!("unix:{}", path.display())))
        }
    }
}

/// Connections open per peer address, bounded.
struct PeerSlots {
    max: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One connection's place in [`PeerSlots`], given back when dropped.
struct PeerSlot {
    slots: Arc<PeerSlots>,
    ip: IpAddr,
}

impl PeerSlots {
    fn new(max: usize) -> Self {
        Self {
            max: max.max(1),
            open: Mutex::new(HashMap::new()),
        }
    }

    /// A place for one more connection from `ip`, if it has fewer than the maximum open.
    fn try_take(self: &Arc<Self>, ip: IpAddr) -> Option<PeerSlot> {
        // IPv4 peers on a dual-stack socket arrive IPv4-mapped: one host, one key.
        let ip = ip.to_canonical();
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(ip).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(PeerSlot {
            slots: Arc::clone(self),
            ip,
        })
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut open = self
            .slots
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                // Forget the peer: the map holds only peers with connections open.
                open.remove(&self.ip);
            }
        }
    }
}

/// Sets the configured mode and owner on a freshly bound unix socket file.
fn set_socket_permissions(path: &Path, config: &ReceiverConfig) -> Result<(), ReceiverError> {
    use std::os::unix::fs::PermissionsExt;
    let error = |source| ReceiverError::SocketPermissions {
        path: path.to_owned(),
        source,
    };
    if let Some((uid, gid)) = config.unix_owner {
        std::os::unix::fs::chown(path, Some(uid), Some(gid)).map_err(error)?;
    }
    if let Some(mode) = config.unix_mode {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).map_err(error)?;
    }
    Ok(())
}

/// How one connection's bytes become spooled lines: the receiver kind's framing.
enum ConnectionFramer {
    Lines(LineFramer),
    Syslog(SyslogFramer),
}

impl ConnectionFramer {
    fn new(kind: ReceiverKind, max_line: usize) -> Self {
        match kind {
            ReceiverKind::Socket => Self::Lines(LineFramer::new(max_line)),
            ReceiverKind::Syslog => Self::Syslog(SyslogFramer::new(max_line)),
        }
    }

    fn feed(&mut self, chunk: &[u8], sink: &Sink, peer: &str) {
        match self {
            Self::Lines(framer) => crate::socket::feed(framer, chunk, sink, peer),
            Self::Syslog(framer) => crate::syslog::feed(framer, chunk, sink, peer),
        }
    }

    /// What is left when the connection ends, quarantined.
    fn finish(self, sink: &Sink, peer: &str) {
        let rest = match self {
            Self::Lines(framer) => framer.finish(),
            Self::Syslog(framer) => framer.finish(),
        };
        if let Some(bad) = &rest {
            sink.reject(bad.into(), peer);
        }
    }
}

/// Reads one connection to its end, a read error, `idle_timeout` without input or
/// `shutdown`, framing and spooling each chunk at once, and counting bytes and read errors.
async fn serve(
    mut stream: Connection,
    peer: &str,
    sink: &Sink,
    mut framer: ConnectionFramer,
    buffer_bytes: usize,
    idle_timeout: Option<Duration>,
    shutdown: &CancellationToken,
) {
    use tokio::io::AsyncReadExt;
    let mut buffer = vec![0u8; buffer_bytes];
    loop {
        let idle = async {
            match idle_timeout {
                Some(timeout) => tokio::time::sleep(timeout).await,
                None => std::future::pending().await,
            }
        };
        let read = tokio::select! {
            () = shutdown.cancelled() => break,
            () = idle => {
                add(&sink.stats.connections_idle_closed, 1);
                if sink.may_warn() {
                    tracing::info!(source = %sink.source, peer, "idle connection closed");
                }
                break;
            }
            read = stream.read(&mut buffer) => read,
        };
        let got = match read {
            Ok(0) => break,
            Ok(got) => got,
            Err(error) => {
                add(&sink.stats.errors, 1);
                tracing::warn!(source = %sink.source, peer, %error, "connection read failed");
                break;
            }
        };
        add(&sink.stats.bytes_received, got as u64);
        framer.feed(&buffer[..got], sink, peer);
    }
    framer.finish(sink, peer);
}
