//! Splitting a receiver's byte stream into messages: the framing of Vault's socket device
//! (newline-delimited JSON, [`LineFramer`]) and of syslog over TCP (RFC 6587 octet counting
//! or newline framing, chosen per frame, [`SyslogFramer`]). Pure and bounded: a framer never
//! holds more than about one message's worth of bytes, and what it refuses (over-long,
//! malformed, cut short by the end of the stream) comes back as a [`Refused`] for quarantine,
//! with its head only. How a stream is cut into reads never changes the result.

/// Why a framer refused a piece of the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusedKind {
    /// Longer than the framer's maximum; only its head is kept.
    Oversize,
    /// The stream ended in the middle of it.
    Truncated,
    /// It cannot be framed (a bad octet count); the stream resumes at the next newline.
    Malformed,
}

/// A piece of the stream a framer refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refused {
    /// Why.
    pub kind: RefusedKind,
    /// Says why in words, without the content.
    pub reason: String,
    /// Offset of its first byte in the stream.
    pub offset: u64,
    /// Its whole length (more than `bytes.len()` when only the head is kept).
    pub length: u64,
    /// Its bytes, at most the framer's maximum.
    pub bytes: Vec<u8>,
}

/// An over-long line, reported once its end is known.
#[derive(Debug, Clone, PartialEq, Eq)]
struct OversizeReport {
    pub offset: u64,
    pub length: u64,
    pub head: Vec<u8>,
}

impl OversizeReport {
    fn into_refused(self) -> Refused {
        Refused {
            kind: RefusedKind::Oversize,
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
#[derive(Debug)]
pub struct Framed<'a> {
    /// Complete lines, without their newline; empty lines are skipped.
    pub lines: Vec<&'a [u8]>,
    /// Over-long lines that ended in this chunk, by their head.
    pub oversize: Vec<Refused>,
}

/// Splits one connection's byte stream into lines, bounded by `max_line` bytes: Vault's
/// socket device (newline-delimited JSON). Never holds more than about `max_line` bytes.
#[derive(Debug)]
pub struct LineFramer {
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
    /// A framer for lines of at most `max_line` bytes (at least 1).
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
                        oversize: Vec::new(),
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
            oversize: oversize
                .into_iter()
                .map(OversizeReport::into_refused)
                .collect(),
        }
    }

    /// What is left when the stream ends: a partial line (truncated) or the head of an
    /// over-long line that never got its newline.
    pub fn finish(mut self) -> Option<Refused> {
        if let Some(skipping) = self.skipping.take() {
            let mut bad = skipping.into_refused();
            bad.reason
                .push_str("; the connection closed before its newline");
            return Some(bad);
        }
        let rest = &self.pending[self.consumed..];
        if rest.is_empty() {
            return None;
        }
        Some(Refused {
            kind: RefusedKind::Truncated,
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

/// One frame of a syslog TCP stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyslogFrame {
    /// A message, framing removed.
    Message {
        /// Offset of the message's first byte in the stream.
        offset: u64,
        /// The message.
        bytes: Vec<u8>,
    },
    /// An over-long or malformed frame, for quarantine.
    Bad(Refused),
}

/// What the framer is skipping.
#[derive(Debug)]
enum Skip {
    /// The rest of an octet-counted frame that is too long.
    Bytes { remaining: u64, report: Refused },
    /// Everything up to the next newline.
    ToNewline(Refused),
}

/// Splits a syslog TCP stream into messages (RFC 6587: octet counting or newline framing,
/// per frame).
#[derive(Debug)]
pub struct SyslogFramer {
    max_line: usize,
    pending: Vec<u8>,
    /// Stream offset of `pending[0]`.
    pending_start: u64,
    skip: Option<Skip>,
}

/// Longest `LEN` accepted in an octet-counted frame, in digits.
const MAX_LEN_DIGITS: usize = 10;

impl SyslogFramer {
    /// A framer for messages of at most `max_line` bytes (at least 1).
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
                    // The head is collected here, as the frame's bytes arrive, so that what
                    // quarantine keeps does not depend on how the stream was cut into reads.
                    let room = self.max_line.saturating_sub(report.bytes.len());
                    report
                        .bytes
                        .extend_from_slice(&self.pending[..take.min(room)]);
                    self.drop_front(take);
                    let remaining = remaining - take as u64;
                    if remaining > 0 {
                        self.skip = Some(Skip::Bytes { remaining, report });
                        return frames;
                    }
                    report.kind = RefusedKind::Oversize;
                    frames.push(SyslogFrame::Bad(report));
                }
                Some(Skip::ToNewline(mut report)) => {
                    let end = self.pending.iter().position(|&byte| byte == b'\n');
                    let room = self.max_line.saturating_sub(report.bytes.len());
                    let skipped = end.unwrap_or(self.pending.len());
                    report
                        .bytes
                        .extend_from_slice(&self.pending[..skipped.min(room)]);
                    match end {
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
        let digits = window
            .iter()
            .take_while(|byte| byte.is_ascii_digit())
            .count();
        // Decided on the bytes seen so far only in ways more bytes cannot change, so that the
        // outcome does not depend on how the stream was cut into reads.
        let space = match window.get(digits) {
            None if digits <= MAX_LEN_DIGITS => return false,
            Some(b' ') if digits <= MAX_LEN_DIGITS => digits,
            _ => {
                self.malformed("octet count is not digits followed by a space");
                return true;
            }
        };
        let length = std::str::from_utf8(&window[..space])
            .ok()
            .and_then(|digits| digits.parse::<u64>().ok());
        let Some(length) = length else {
            // At most ten digits always parse; kept for safety rather than a panic.
            self.malformed("octet count is not a number");
            return true;
        };
        let offset = self.pending_start + space as u64 + 1;
        if length > self.max_line as u64 {
            self.drop_front(space + 1);
            self.skip = Some(Skip::Bytes {
                remaining: length,
                report: Refused {
                    kind: RefusedKind::Oversize,
                    reason: format!(
                        "syslog frame of {length} bytes is longer than the maximum of {} bytes",
                        self.max_line
                    ),
                    offset,
                    length,
                    // Filled while the frame is skipped.
                    bytes: Vec::new(),
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

    fn oversize_report(&self, length: usize) -> Refused {
        Refused {
            kind: RefusedKind::Oversize,
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
        self.skip = Some(Skip::ToNewline(Refused {
            kind: RefusedKind::Malformed,
            reason: reason.to_owned(),
            offset: self.pending_start,
            length: 0,
            // Filled while skipping to the newline.
            bytes: Vec::new(),
        }));
    }

    /// What is left when the stream ends.
    pub fn finish(self) -> Option<Refused> {
        match self.skip {
            Some(Skip::Bytes { mut report, .. } | Skip::ToNewline(mut report)) => {
                report
                    .reason
                    .push_str("; the connection closed before the frame ended");
                Some(report)
            }
            None if self.pending.is_empty() => None,
            None => Some(Refused {
                kind: RefusedKind::Truncated,
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

    fn feed_all(framer: &mut LineFramer, chunks: &[&[u8]]) -> (Vec<Vec<u8>>, Vec<Refused>) {
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
        assert_eq!(rest.kind, RefusedKind::Truncated);
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
        let found: Vec<(RefusedKind, u64, u64, &[u8])> = oversize
            .iter()
            .map(|r| (r.kind, r.offset, r.length, r.bytes.as_slice()))
            .collect();
        assert_eq!(
            found,
            [
                (RefusedKind::Oversize, 3, 6, &b"1234"[..]),
                (RefusedKind::Oversize, 10, 11, &b"abcd"[..]),
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
        assert_eq!(rest.kind, RefusedKind::Oversize);
        assert_eq!((rest.offset, rest.length), (2, 10));
    }

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
            (RefusedKind::Oversize, 3, 10)
        );
        assert_eq!(bad.bytes, b"0123");
    }

    #[test]
    fn bad_octet_count_resyncs_at_the_next_newline() {
        let mut framer = SyslogFramer::new(100);
        let frames = framer.feed(b"12x4 junk\n<1>ok\n");
        assert_eq!(messages(&frames), [b"<1>ok"]);
        assert!(matches!(&frames[0], SyslogFrame::Bad(bad) if bad.kind == RefusedKind::Malformed));
    }

    #[test]
    fn unfinished_frame_at_the_end_is_truncated() {
        let mut framer = SyslogFramer::new(100);
        assert!(framer.feed(b"20 <1>abc").is_empty());
        let bad = framer.finish().unwrap();
        assert_eq!(bad.kind, RefusedKind::Truncated);
        assert_eq!(bad.length, 9);
    }
}

#[cfg(test)]
mod cut_tests {
    use super::*;

    /// Messages, then refusals, of a whole stream fed in chunks of `cut` bytes.
    fn frame(syslog: bool, max_line: usize, stream: &[u8], cut: usize) -> Vec<String> {
        let mut messages = Vec::new();
        let mut refused = Vec::new();
        let show = |r: Refused| format!("{:?} {} {} {:?}", r.kind, r.offset, r.length, r.bytes);
        if syslog {
            let mut framer = SyslogFramer::new(max_line);
            for chunk in stream.chunks(cut) {
                for frame in framer.feed(chunk) {
                    match frame {
                        SyslogFrame::Message { offset, bytes } => {
                            messages.push(format!("{offset} {bytes:?}"))
                        }
                        SyslogFrame::Bad(r) => refused.push(show(r)),
                    }
                }
            }
            refused.extend(framer.finish().map(show));
        } else {
            let mut framer = LineFramer::new(max_line);
            for chunk in stream.chunks(cut) {
                let framed = framer.feed(chunk);
                messages.extend(framed.lines.iter().map(|line| format!("{line:?}")));
                refused.extend(framed.oversize.into_iter().map(show));
            }
            refused.extend(framer.finish().map(show));
        }
        messages.extend(refused);
        messages
    }

    #[test]
    fn framing_does_not_depend_on_how_the_stream_is_cut() {
        let stream: &[u8] =
            b"one\n12 <1>too-long-here\nthree\n5 <1>ab<2>x\n12x4 junk\n\xff\x00\nrest";
        // The second stream was found by the fuzz target: a digit, then bytes that are not.
        for stream in [stream, b"0\xf6\xff\xa2\0\0\0\0 "] {
            for syslog in [false, true] {
                for max_line in [1, 3, 8, 100] {
                    let whole = frame(syslog, max_line, stream, stream.len());
                    for cut in 1..8 {
                        assert_eq!(
                            frame(syslog, max_line, stream, cut),
                            whole,
                            "syslog {syslog}, max_line {max_line}, cut {cut}"
                        );
                    }
                }
            }
        }
    }
}
