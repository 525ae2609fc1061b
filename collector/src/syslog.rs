//! The framing of Vault's syslog audit device ([`crate::ReceiverKind::Syslog`]): the
//! [`crate::Receiver`] binds and reads, this module frames datagrams and TCP streams.
//!
//! Vault's syslog device writes through the local syslog socket (`/dev/log`, a unix datagram
//! socket), so Vigil can own that socket (`unixgram:///PATH`); remote syslog arrives over UDP
//! (`udp://HOST:PORT`, one message per datagram) or TCP (`tcp://HOST:PORT`) with either RFC
//! 6587 framing, chosen per message as the RFC says: octet counting (`LEN SP MSG`) when the
//! frame starts with a digit, a newline-terminated message otherwise ([`SyslogFramer`]).
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
use crate::receiver::{add, Bad, DatagramSocket, OwnedBad, Sink};

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
        SyslogFrame::Bad(bad) => sink.reject(bad.bad(), peer),
    }
}

/// One frame of a syslog TCP stream.
#[derive(Debug)]
pub(crate) enum SyslogFrame {
    /// A message, framing removed.
    Message {
        /// Offset of the message's first byte in the stream.
        offset: u64,
        /// The message.
        bytes: Vec<u8>,
    },
    /// An over-long or malformed frame, for quarantine.
    Bad(OwnedBad),
}

/// What the framer is skipping.
#[derive(Debug)]
enum Skip {
    /// The rest of an octet-counted frame that is too long.
    Bytes { remaining: u64, report: OwnedBad },
    /// Everything up to the next newline.
    ToNewline(OwnedBad),
}

/// Splits a syslog TCP stream into messages (RFC 6587: octet counting or newline framing,
/// per frame).
#[derive(Debug)]
pub(crate) struct SyslogFramer {
    max_line: usize,
    pending: Vec<u8>,
    /// Stream offset of `pending[0]`.
    pending_start: u64,
    skip: Option<Skip>,
}

/// Longest `LEN` accepted in an octet-counted frame, in digits.
const MAX_LEN_DIGITS: usize = 10;

impl SyslogFramer {
    pub fn new(max_line: usize) -> Self {
        Self {
            max_line: max_line.max(1),
            pending: Vec::new(),
            pending_start: 0,
            skip: None,
        }
    }

    fn drop_front(&mut self, count: usize) {
        self.pending.drain(..count);
        self.pending_start += count as u64;
    }

    /// Frames the next chunk of the stream: spools its messages and quarantines bad frames.
    pub fn feed_into(&mut self, chunk: &[u8], sink: &Sink, peer: &str) {
        for frame in self.feed(chunk) {
            handle_frame(sink, frame, peer);
        }
    }

    /// Frames the next chunk of the stream.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<SyslogFrame> {
        self.pending.extend_from_slice(chunk);
        let mut frames = Vec::new();
        loop {
            match self.skip.take() {
                Some(Skip::Bytes {
                    remaining,
                    mut report,
                }) => {
                    let take = usize::try_from(remaining)
                        .unwrap_or(usize::MAX)
                        .min(self.pending.len());
                    self.drop_front(take);
                    let remaining = remaining - take as u64;
                    if remaining > 0 {
                        self.skip = Some(Skip::Bytes { remaining, report });
                        return frames;
                    }
                    report.kind = QuarantineKind::Oversize;
                    frames.push(SyslogFrame::Bad(report));
                }
                Some(Skip::ToNewline(mut report)) => {
                    match self.pending.iter().position(|&byte| byte == b'\n') {
                        None => {
                            report.length += self.pending.len() as u64;
                            let all = self.pending.len();
                            self.drop_front(all);
                            self.skip = Some(Skip::ToNewline(report));
                            return frames;
                        }
                        Some(newline) => {
                            report.length += newline as u64;
                            self.drop_front(newline + 1);
                            frames.push(SyslogFrame::Bad(report));
                        }
                    }
                }
                None => {}
            }
            let Some(&first) = self.pending.first() else {
                return frames;
            };
            if first.is_ascii_digit() {
                if !self.octet_counted(&mut frames) {
                    return frames;
                }
            } else if !self.newline_framed(&mut frames) {
                return frames;
            }
        }
    }

    /// Takes one `LEN SP MSG` frame; false when more bytes are needed.
    fn octet_counted(&mut self, frames: &mut Vec<SyslogFrame>) -> bool {
        let window = &self.pending[..self.pending.len().min(MAX_LEN_DIGITS + 1)];
        let Some(space) = window.iter().position(|&byte| byte == b' ') else {
            if window.len() <= MAX_LEN_DIGITS && window.iter().all(u8::is_ascii_digit) {
                return false;
            }
            self.malformed("octet count is not digits followed by a space");
            return true;
        };
        let length = std::str::from_utf8(&window[..space])
            .ok()
            .filter(|digits| digits.bytes().all(|byte| byte.is_ascii_digit()))
            .and_then(|digits| digits.parse::<u64>().ok());
        let Some(length) = length else {
            self.malformed("octet count is not a number");
            return true;
        };
        let offset = self.pending_start + space as u64 + 1;
        if length > self.max_line as u64 {
            let body = &self.pending[space + 1..];
            let head = body[..body.len().min(self.max_line)].to_vec();
            self.drop_front(space + 1);
            self.skip = Some(Skip::Bytes {
                remaining: length,
                report: OwnedBad {
                    kind: QuarantineKind::Oversize,
                    reason: format!(
                        "syslog frame of {length} bytes is longer than the maximum of {} bytes",
                        self.max_line
                    ),
                    offset,
                    length,
                    bytes: head,
                },
            });
            return true;
        }
        let length = length as usize;
        if self.pending.len() < space + 1 + length {
            return false;
        }
        let bytes = self.pending[space + 1..space + 1 + length].to_vec();
        self.drop_front(space + 1 + length);
        frames.push(SyslogFrame::Message { offset, bytes });
        true
    }

    /// Takes one newline-terminated message; false when more bytes are needed.
    fn newline_framed(&mut self, frames: &mut Vec<SyslogFrame>) -> bool {
        match self.pending.iter().position(|&byte| byte == b'\n') {
            Some(newline) if newline > self.max_line => {
                let report = self.oversize_report(newline);
                self.drop_front(newline + 1);
                frames.push(SyslogFrame::Bad(report));
                true
            }
            Some(newline) => {
                // An empty line is no message: often the newline some senders put after an
                // octet-counted frame.
                if newline > 0 {
                    let offset = self.pending_start;
                    let bytes = self.pending[..newline].to_vec();
                    frames.push(SyslogFrame::Message { offset, bytes });
                }
                self.drop_front(newline + 1);
                true
            }
            None if self.pending.len() > self.max_line => {
                let all = self.pending.len();
                let report = self.oversize_report(all);
                self.drop_front(all);
                self.skip = Some(Skip::ToNewline(report));
                false
            }
            None => false,
        }
    }

    fn oversize_report(&self, length: usize) -> OwnedBad {
        OwnedBad {
            kind: QuarantineKind::Oversize,
            reason: format!(
                "syslog message longer than the maximum of {} bytes",
                self.max_line
            ),
            offset: self.pending_start,
            length: length as u64,
            bytes: self.pending[..self.max_line.min(length)].to_vec(),
        }
    }

    /// The stream lost its framing: quarantine up to the next newline and go on from there.
    fn malformed(&mut self, reason: &str) {
        let head = self.pending[..self.pending.len().min(self.max_line)].to_vec();
        self.skip = Some(Skip::ToNewline(OwnedBad {
            kind: QuarantineKind::Malformed,
            reason: reason.to_owned(),
            offset: self.pending_start,
            length: 0,
            bytes: head,
        }));
    }

    /// What is left when the stream ends.
    pub fn finish(self) -> Option<OwnedBad> {
        match self.skip {
            Some(Skip::Bytes { mut report, .. } | Skip::ToNewline(mut report)) => {
                report
                    .reason
                    .push_str("; the connection closed before the frame ended");
                Some(report)
            }
            None if self.pending.is_empty() => None,
            None => Some(OwnedBad {
                kind: QuarantineKind::Truncated,
                reason: format!(
                    "connection closed after {} bytes of an unfinished syslog frame",
                    self.pending.len()
                ),
                offset: self.pending_start,
                length: self.pending.len() as u64,
                bytes: self.pending[..self.pending.len().min(self.max_line)].to_vec(),
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(frames: &[SyslogFrame]) -> Vec<&[u8]> {
        frames
            .iter()
            .filter_map(|frame| match frame {
                SyslogFrame::Message { bytes, .. } => Some(bytes.as_slice()),
                SyslogFrame::Bad(_) => None,
            })
            .collect()
    }

    #[test]
    fn both_framings_in_one_stream_across_chunks() {
        let mut framer = SyslogFramer::new(100);
        let stream = b"11 <13>1 - x -\n<13>plain one\n5 <1>ab<2>newline\n";
        let mut frames = Vec::new();
        for chunk in stream.chunks(3) {
            frames.extend(framer.feed(chunk));
        }
        assert_eq!(
            messages(&frames),
            [
                &b"<13>1 - x -"[..],
                b"<13>plain one",
                b"<1>ab",
                b"<2>newline"
            ]
        );
        assert!(framer.finish().is_none());
    }

    #[test]
    fn oversize_octet_counted_frame_is_skipped_exactly() {
        let mut framer = SyslogFramer::new(4);
        let mut frames = framer.feed(b"10 0123");
        frames.extend(framer.feed(b"456789<1>x\n"));
        assert_eq!(messages(&frames), [b"<1>x"]);
        let SyslogFrame::Bad(bad) = &frames[0] else {
            panic!("expected the oversize frame first: {frames:?}")
        };
        assert_eq!(
            (bad.kind, bad.offset, bad.length),
            (QuarantineKind::Oversize, 3, 10)
        );
        assert_eq!(bad.bytes, b"0123");
    }

    #[test]
    fn bad_octet_count_resyncs_at_the_next_newline() {
        let mut framer = SyslogFramer::new(100);
        let frames = framer.feed(b"12x4 junk\n<1>ok\n");
        assert_eq!(messages(&frames), [b"<1>ok"]);
        assert!(
            matches!(&frames[0], SyslogFrame::Bad(bad) if bad.kind == QuarantineKind::Malformed)
        );
    }

    #[test]
    fn unfinished_frame_at_the_end_is_truncated() {
        let mut framer = SyslogFramer::new(100);
        assert!(framer.feed(b"20 <1>abc").is_empty());
        let bad = framer.finish().unwrap();
        assert_eq!(bad.kind, QuarantineKind::Truncated);
        assert_eq!(bad.length, 9);
    }
}
