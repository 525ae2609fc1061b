//! The framing of Vault's socket audit device ([`crate::ReceiverKind::Socket`]):
//! newline-delimited JSON on TCP or a unix stream socket.
//!
//! Each Vault node keeps one connection and reconnects when it drops. The
//! [`crate::Receiver`] reads every connection on its own task; this module frames it
//! ([`vigil_event::LineFramer`]). Complete lines are appended to the [`crate::Spool`] as soon as they are
//! read — the spool never waits for downstream, so Vault never waits for us. A line longer
//! than [`crate::ReceiverConfig::max_line_bytes`] is quarantined by its head and skipped up to
//! its newline; a partial line left when a connection closes is quarantined as truncated.

use vigil_event::LineFramer;

use crate::sink::Sink;

/// Frames the next chunk of a connection: spools its complete lines and quarantines the
/// over-long lines that ended in it.
pub(crate) fn feed(framer: &mut LineFramer, chunk: &[u8], sink: &Sink, peer: &str) {
    let framed = framer.feed(chunk);
    sink.spool_lines(&framed.lines);
    for oversize in &framed.oversize {
        sink.reject(oversize.into(), peer);
    }
}
