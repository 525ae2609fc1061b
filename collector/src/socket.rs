//! The framing of Vault's socket audit device ([`crate::ReceiverKind::Socket`]):
//! newline-delimited JSON on TCP or a unix stream socket.
//!
//! Each Vault node keeps one connection and reconnects when it drops. The
//! [`crate::Receiver`] reads every connection on its own task; this module frames it
//! ([`LineFramer`]). Complete lines are appended to the [`crate::Spool`] as soon as they are
//! read — the spool never waits for downstream, so Vault never waits for us. A line longer
//! than [`crate::ReceiverConfig::max_line_bytes`] is quarantined by its head and skipped up to
//! its newline; a partial line left when a connection closes is quarantined as truncated.

use crate::quarantine::QuarantineKind;
use crate::receiver::{OwnedBad, Sink};

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

    /// Frames the next chunk of the stream: spools its complete lines and quarantines the
    /// over-long lines that ended in it.
    pub fn feed_into(&mut self, chunk: &[u8], sink: &Sink, peer: &str) {
        let framed = self.feed(chunk);
        sink.spool_lines(&framed.lines);
        for oversize in framed.oversize {
            sink.reject(oversize.into_bad().bad(), peer);
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
