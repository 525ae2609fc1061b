//! [`ReceiverPipeline`]: a [`Receiver`] and the [`Spool`] it writes to, run as one unit, so
//! that whoever wires a socket or syslog source does the same thing for both kinds.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::address::ReceiverKind;
use crate::checkpoint::Checkpoint;
use crate::quarantine::QuarantineSink;
use crate::receiver::{Receiver, ReceiverConfig, ReceiverError};
use crate::spool::{Spool, SpoolStats};
use crate::stats::ReceiverStats;
use crate::tailer::TailerConfig;

/// A receiver and its spool: what a `socket` or `syslog` source runs besides the
/// [`crate::FileCollector`] that tails the spool ([`ReceiverPipeline::tailer_config`]).
pub struct ReceiverPipeline {
    receiver: Receiver,
    spool: Spool,
}

impl ReceiverPipeline {
    /// Binds the receiver for `kind` on `config.address`, writing to `spool` (see
    /// [`Receiver::bind`]).
    pub async fn bind(
        kind: ReceiverKind,
        config: ReceiverConfig,
        spool: Spool,
        quarantine: Arc<dyn QuarantineSink>,
    ) -> Result<Self, ReceiverError> {
        let receiver = Receiver::bind(kind, config, spool.clone(), quarantine).await?;
        Ok(Self { receiver, spool })
    }

    /// Which audit device the receiver receives.
    pub fn kind(&self) -> ReceiverKind {
        self.receiver.kind()
    }

    /// The bound TCP or UDP address (useful with port 0); `None` for a unix socket.
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.receiver.local_addr()
    }

    /// The receiver's counters; they stay readable while it runs.
    pub fn receiver_stats(&self) -> Arc<ReceiverStats> {
        self.receiver.stats()
    }

    /// The spool's counters; they stay readable while it runs.
    pub fn spool_stats(&self) -> Arc<SpoolStats> {
        self.spool.stats()
    }

    /// What a [`crate::FileCollector`] tails: the spool ([`Spool::tailer_config`]).
    pub fn tailer_config(&self) -> TailerConfig {
        self.spool.tailer_config()
    }

    /// Runs the receiver and the spool's maintenance (periodic fsync, trimming behind what
    /// `checkpoint` acknowledged) until `shutdown`; the first to fail ends both. Maintenance
    /// stops only after the receiver, so that its last sync covers the last lines received.
    pub async fn run(
        self,
        checkpoint: Arc<Checkpoint>,
        shutdown: CancellationToken,
    ) -> Result<(), ReceiverError> {
        let Self { receiver, spool } = self;
        let stop_receiver = shutdown.child_token();
        let stop_maintenance = CancellationToken::new();
        let receiving = async {
            let result = receiver.run(stop_receiver.clone()).await;
            stop_maintenance.cancel();
            result
        };
        let maintaining = async {
            let result = spool
                .run_maintenance(Some(checkpoint), stop_maintenance.clone())
                .await;
            if result.is_err() {
                stop_receiver.cancel();
            }
            result.map_err(ReceiverError::from)
        };
        let (received, maintained) = tokio::join!(receiving, maintaining);
        received.and(maintained)
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpStream;

    use super::*;
    use crate::address::SourceAddress;
    use crate::quarantine::FileQuarantine;
    use crate::spool::{FsyncPolicy, SpoolConfig};

    const SYSLOG_LINE: &str = r#"<38>Nov 22 16:33:32 vault[9226]: {"request":{"id":"r-1"}}"#;

    fn spooled(path: &std::path::Path) -> Vec<String> {
        let bytes = std::fs::read(path).unwrap_or_default();
        String::from_utf8_lossy(&bytes)
            .lines()
            .map(str::to_owned)
            .collect()
    }

    /// Binds a pipeline of `kind` on TCP (both kinds accept it), sends `lines` and returns
    /// what reached the spool once `run` returned after shutdown.
    async fn through_one_pipeline(kind: ReceiverKind, lines: &[&str]) -> Vec<String> {
        let dir = tempfile::tempdir().unwrap();
        let checkpoint = Arc::new(Checkpoint::open(&dir.path().join("data")).unwrap());
        let mut spool_config = SpoolConfig::new(dir.path().join(format!("{kind}.spool")));
        spool_config.fsync = FsyncPolicy::Every(Duration::from_millis(5));
        let spool = Spool::open(spool_config, Some(&checkpoint)).unwrap();
        let quarantine = Arc::new(FileQuarantine::open(dir.path().join("q.jsonl")).unwrap());
        let address = SourceAddress::parse_for(kind, "tcp://127.0.0.1:0").unwrap();
        let config = ReceiverConfig::new(format!("node-1/{kind}"), address);
        let pipeline = ReceiverPipeline::bind(kind, config, spool.clone(), quarantine)
            .await
            .unwrap();
        assert_eq!(pipeline.kind(), kind);
        assert_eq!(pipeline.tailer_config().path, spool.path());
        let receiver_stats = pipeline.receiver_stats();
        let spool_stats = pipeline.spool_stats();
        let address = pipeline.local_addr().expect("a TCP address");
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(pipeline.run(checkpoint, shutdown.clone()));

        let mut stream = TcpStream::connect(address).await.unwrap();
        let text: String = lines.iter().map(|line| format!("{line}\n")).collect();
        stream.write_all(text.as_bytes()).await.unwrap();
        stream.shutdown().await.unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while receiver_stats.snapshot().lines < lines.len() as u64 {
            assert!(Instant::now() < deadline, "lines not spooled in time");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        shutdown.cancel();
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("stops in time")
            .expect("no panic")
            .expect("no error");
        assert_eq!(spool_stats.snapshot().dropped_lines, 0);
        spooled(spool.path())
    }

    #[tokio::test]
    async fn socket_and_syslog_lines_reach_the_spool_through_one_pipeline() {
        let socket = [
            r#"{"type":"request","n":1}"#,
            r#"{"type":"response","n":2}"#,
        ];
        assert_eq!(
            through_one_pipeline(ReceiverKind::Socket, &socket).await,
            socket
        );
        let syslog = [SYSLOG_LINE, SYSLOG_LINE];
        assert_eq!(
            through_one_pipeline(ReceiverKind::Syslog, &syslog).await,
            syslog
        );
    }

    #[tokio::test]
    async fn an_address_the_kind_does_not_accept_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(SpoolConfig::new(dir.path().join("s.spool")), None).unwrap();
        let quarantine = Arc::new(FileQuarantine::open(dir.path().join("q.jsonl")).unwrap());
        let address = SourceAddress::parse("udp://127.0.0.1:0").unwrap();
        let config = ReceiverConfig::new("node-1/socket", address);
        let result = ReceiverPipeline::bind(ReceiverKind::Socket, config, spool, quarantine).await;
        assert!(
            matches!(
                result,
                Err(ReceiverError::UnsupportedAddress {
                    receiver: ReceiverKind::Socket,
                    ..
                })
            ),
            "{:?}",
            result.err()
        );
    }
}
