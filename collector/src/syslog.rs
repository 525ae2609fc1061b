//! The framing of Vault's syslog audit device ([`crate::ReceiverKind::Syslog`]): the
//! [`crate::Receiver`] binds and reads, this module frames datagrams and TCP streams.
//!
//! Vault's syslog device writes through the local syslog socket (`/dev/log`, a unix datagram
//! socket), so Vigil can own that socket (`unixgram:///PATH`); remote syslog arrives over UDP
//! (`udp://HOST:PORT`, one message per datagram) or TCP (`tcp://HOST:PORT`) with either RFC
//! 6587 framing, chosen per message as the RFC says: octet counting (`LEN SP MSG`) when the
//! frame starts with a digit, a newline-terminated message otherwise ([`vigil_event::SyslogFramer`]).
//!
//! Each message is appended to the [`crate::Spool`] *with its syslog header as received*; the
//! [`crate::AuditLineProcessor`] strips RFC 3164 and RFC 5424 headers later and keeps
//! facility, severity, host, tag and pid in the event's origin. Here a message is only
//! checked to be one syslog message: it must have a valid header (`<PRI>`…, see
//! [`vigil_event::parse_syslog`]) and no newline inside (it would become two spool lines).
//! Messages longer than [`crate::ReceiverConfig::max_line_bytes`] and malformed ones are counted,
//! logged without their content and quarantined.

use tokio_util::sync::CancellationToken;

use crate::quarantine::QuarantineKind;
use vigil_event::{SyslogFrame, SyslogFramer};

use crate::sink::{add, Bad, DatagramSocket, Sink};

/// Receives datagrams with `recv` into a buffer one byte longer than the limit, so that an
/// over-long datagram (which the kernel truncates silently) is recognised as such.
pub(crate) async fn receive_datagrams(
    sink: &Sink,
    max_line: usize,
    shutdown: &CancellationToken,
    socket: &DatagramSocket,
) {
    let max_line = max_line.clamp(1, 65_536);
    let mut buffer = vec![0u8; max_line + 1];
    loop {
        let received = tokio::select! {
            () = shutdown.cancelled() => return,
            received = socket.recv(&mut buffer) => received,
        };
        let (got, peer_ip, peer) = match received {
            Ok(received) => received,
            Err(error) => {
                add(&sink.stats.errors, 1);
                tracing::warn!(source = %sink.source, %error, "syslog receive failed");
                continue;
            }
        };
        add(&sink.stats.bytes_received, got as u64);
        if !sink.admits(peer_ip, &peer) {
            continue;
        }
        if got > max_line {
            sink.reject(
                Bad {
                    kind: QuarantineKind::Oversize,
                    reason: format!("datagram longer than the maximum of {max_line} bytes"),
                    offset: 0,
                    length: got as u64,
                    bytes: &buffer[..max_line],
                },
                &peer,
            );
            continue;
        }
        spool_message(sink, &buffer[..got], 0, &peer);
    }
}

/// Checks one syslog message and spools it, or quarantines it as malformed.
fn spool_message(sink: &Sink, message: &[u8], offset: u64, peer: &str) {
    // Senders often end a message with a newline (Go's log/syslog does) or a NUL.
    let end = message
        .iter()
        .rposition(|&byte| !matches!(byte, b'\n' | b'\r' | b'\0'))
        .map_or(0, |last| last + 1);
    let message = &message[..end];
    if message.is_empty() {
        return;
    }
    let problem = if message.contains(&b'\n') {
        Some("syslog message holds a newline".to_owned())
    } else {
        vigil_event::parse_syslog(message)
            .err()
            .map(|error| error.to_string())
    };
    match problem {
        None => sink.spool_lines(&[message]),
        Some(reason) => sink.reject(
            Bad {
                kind: QuarantineKind::Malformed,
                reason,
                offset,
                length: message.len() as u64,
                bytes: message,
            },
            peer,
        ),
    }
}

fn handle_frame(sink: &Sink, frame: SyslogFrame, peer: &str) {
    match frame {
        SyslogFrame::Message { offset, bytes } => spool_message(sink, &bytes, offset, peer),
        SyslogFrame::Bad(bad) => sink.reject((&bad).into(), peer),
    }
}

/// Frames the next chunk of a TCP stream: spools its messages and quarantines bad frames.
pub(crate) fn feed(framer: &mut SyslogFramer, chunk: &[u8], sink: &Sink, peer: &str) {
    for frame in framer.feed(chunk) {
        handle_frame(sink, frame, peer);
    }
}
