//! The receivers' stream framing on arbitrary bytes: the syslog TCP framer (RFC 6587 octet
//! counting and newline framing), the socket device's line framer, and
//! `vigil_event::parse_syslog` on every message they produce (a datagram is one message, so
//! the raw input is parsed too). Never a panic; nothing produced or kept is longer than the
//! limit; lines hold no newline; and the result is the same however the stream is cut into
//! reads.
#![no_main]

use libfuzzer_sys::fuzz_target;
use vigil_event::{parse_syslog, LineFramer, Refused, SyslogFrame, SyslogFramer};

/// Messages and refusals of `stream` fed in chunks of `cut` bytes.
fn syslog(max_line: usize, stream: &[u8], cut: usize) -> (Vec<Vec<u8>>, Vec<Refused>) {
    let mut framer = SyslogFramer::new(max_line);
    let (mut messages, mut refused) = (Vec::new(), Vec::new());
    for chunk in stream.chunks(cut) {
        for frame in framer.feed(chunk) {
            match frame {
                SyslogFrame::Message { bytes, .. } => messages.push(bytes),
                SyslogFrame::Bad(bad) => refused.push(bad),
            }
        }
    }
    refused.extend(framer.finish());
    (messages, refused)
}

fn lines(max_line: usize, stream: &[u8], cut: usize) -> (Vec<Vec<u8>>, Vec<Refused>) {
    let mut framer = LineFramer::new(max_line);
    let (mut messages, mut refused) = (Vec::new(), Vec::new());
    for chunk in stream.chunks(cut) {
        let framed = framer.feed(chunk);
        messages.extend(framed.lines.iter().map(|line| line.to_vec()));
        refused.extend(framed.oversize);
    }
    refused.extend(framer.finish());
    (messages, refused)
}

fuzz_target!(|data: &[u8]| {
    let Some((&[limit, cut], stream)) = data.split_first_chunk::<2>() else {
        return;
    };
    let max_line = usize::from(limit) + 1;
    let cut = usize::from(cut) + 1;
    let _ = parse_syslog(stream);
    for frame in [syslog, lines] {
        let whole = frame(max_line, stream, stream.len().max(1));
        assert_eq!(frame(max_line, stream, cut), whole, "depends on the cut");
        for message in &whole.0 {
            assert!(message.len() <= max_line);
            let _ = parse_syslog(message);
        }
        for refused in &whole.1 {
            assert!(refused.bytes.len() <= max_line);
        }
    }
    for line in lines(max_line, stream, cut).0 {
        assert!(!line.contains(&b'\n'));
    }
});
