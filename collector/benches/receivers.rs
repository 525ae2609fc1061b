//! Events/s per source kind through a receiver into the spool: socket device over TCP and a
//! unix stream socket, syslog device over TCP (octet counting), UDP and a unix datagram
//! socket. Lines are audit-sized (about 600 bytes); the spool does not fsync, so the figures
//! are the receivers' own cost plus page-cache writes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpStream, UdpSocket, UnixDatagram, UnixStream};
use vigil_collector::{
    CancellationToken, FileQuarantine, FsyncPolicy, Receiver, ReceiverConfig, ReceiverKind,
    ReceiverStats, SourceAddress, Spool, SpoolConfig,
};

const BATCH: usize = 2_000;

fn line(i: usize) -> String {
    let padding = "x".repeat(520);
    format!(
        r#"{{"time":"2026-11-22T16:33:32Z","type":"request","request":{{"id":"req-{i}","path":"secret/data/{padding}"}}}}"#
    )
}

struct Target {
    _dir: tempfile::TempDir,
    address: String,
    tcp: Option<std::net::SocketAddr>,
    stats: Arc<ReceiverStats>,
    shutdown: CancellationToken,
}

async fn start(kind: &str) -> Target {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = SpoolConfig::new(dir.path().join("bench.spool"));
    config.fsync = FsyncPolicy::Never;
    config.max_bytes = u64::MAX;
    let spool = Spool::open(config, None).expect("spool");
    let quarantine = Arc::new(FileQuarantine::open(dir.path().join("q.jsonl")).expect("q"));
    let address = match kind {
        "socket-unix" => format!("unix://{}", dir.path().join("s.sock").display()),
        "syslog-unixgram" => format!("unixgram://{}", dir.path().join("log").display()),
        "syslog-udp" => "udp://127.0.0.1:0".to_owned(),
        _ => "tcp://127.0.0.1:0".to_owned(),
    };
    let config = ReceiverConfig::new("bench", SourceAddress::parse(&address).expect("address"));
    let shutdown = CancellationToken::new();
    let receiver_kind = if kind.starts_with("socket") {
        ReceiverKind::Socket
    } else {
        ReceiverKind::Syslog
    };
    let receiver = Receiver::bind(receiver_kind, config, spool, quarantine)
        .await
        .expect("bind");
    let (stats, tcp) = (receiver.stats(), receiver.local_addr());
    tokio::spawn(receiver.run(shutdown.clone()));
    Target {
        _dir: dir,
        address,
        tcp,
        stats,
        shutdown,
    }
}

/// Sends `count` lines and waits until the receiver spooled them all.
async fn send(target: &Target, kind: &str, count: usize) -> Duration {
    let before = target.stats.snapshot().lines;
    let started = Instant::now();
    match kind {
        "socket-tcp" | "socket-unix" => {
            let text: String = (0..count).map(|i| line(i) + "\n").collect();
            if let Some(addr) = target.tcp {
                let mut stream = TcpStream::connect(addr).await.expect("connect");
                stream.write_all(text.as_bytes()).await.expect("write");
            } else {
                let path = target.address.trim_start_matches("unix://");
                let mut stream = UnixStream::connect(path).await.expect("connect");
                stream.write_all(text.as_bytes()).await.expect("write");
            }
        }
        "syslog-tcp" => {
            let text: String = (0..count)
                .map(|i| {
                    let message = format!("<38>Nov 22 16:33:32 vault[1]: {}", line(i));
                    format!("{} {message}", message.len())
                })
                .collect();
            let addr = target.tcp.expect("tcp");
            let mut stream = TcpStream::connect(addr).await.expect("connect");
            stream.write_all(text.as_bytes()).await.expect("write");
        }
        "syslog-udp" => {
            let socket = UdpSocket::bind("127.0.0.1:0").await.expect("udp");
            let addr = target.tcp.expect("udp address");
            // UDP has no flow control: send in windows small enough for the socket buffer and
            // wait for each to be spooled, so that the figure is not a loss rate.
            const WINDOW: usize = 32;
            for start in (0..count).step_by(WINDOW) {
                let end = (start + WINDOW).min(count);
                for i in start..end {
                    let message = format!("<38>Nov 22 16:33:32 vault[1]: {}", line(i));
                    socket
                        .send_to(message.as_bytes(), addr)
                        .await
                        .expect("send");
                }
                let deadline = Instant::now() + Duration::from_secs(5);
                while target.stats.snapshot().lines < before + end as u64 {
                    assert!(
                        Instant::now() < deadline,
                        "UDP datagrams lost in the benchmark"
                    );
                    tokio::task::yield_now().await;
                }
            }
        }
        _ => {
            let socket = UnixDatagram::unbound().expect("unixgram");
            let path = target.address.trim_start_matches("unixgram://");
            for i in 0..count {
                let message = format!("<38>Nov 22 16:33:32 vault[1]: {}", line(i));
                // Unix datagram sockets block the sender when full: no loss, like /dev/log.
                socket
                    .send_to(message.as_bytes(), path)
                    .await
                    .expect("send");
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while target.stats.snapshot().lines < before + count as u64 {
        assert!(
            Instant::now() < deadline,
            "{kind}: lines lost in the benchmark"
        );
        tokio::time::sleep(Duration::from_micros(200)).await;
    }
    started.elapsed()
}

fn receivers(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut group = c.benchmark_group("receiver_to_spool");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.sample_size(10);
    for kind in [
        "socket-tcp",
        "socket-unix",
        "syslog-tcp",
        "syslog-unixgram",
        "syslog-udp",
    ] {
        let target = runtime.block_on(start(kind));
        group.bench_function(kind, |b| {
            b.iter_custom(|iters| {
                runtime.block_on(async {
                    let mut total = Duration::ZERO;
                    for _ in 0..iters {
                        total += send(&target, kind, BATCH).await;
                    }
                    total
                })
            });
        });
        target.shutdown.cancel();
    }
    group.finish();
}

criterion_group!(benches, receivers);
criterion_main!(benches);
