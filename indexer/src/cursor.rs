//! Pagination cursors: an opaque string naming the last hit of a page.
//!
//! A cursor encodes the [`SortKey`] (time, event id) of the last hit handed out; the next page
//! holds the hits strictly after it in the sort order. Since the key is unique per event and
//! does not depend on segment layout, pages stay consistent while new events are indexed and
//! segments merge: an event is never shown twice, and one indexed later appears on a later
//! page only if it sorts after the cursor.

use crate::collect::SortKey;
use crate::error::{IndexError, Result};

const LEN: usize = 48;

/// Encodes `key` as 48 lowercase hex digits: the time with its sign bit flipped (so that the
/// text orders like the number, which nothing relies on but helps when reading logs), then
/// the id.
pub(crate) fn encode(key: SortKey) -> String {
    format!("{:016x}{:032x}", (key.time as u64) ^ (1 << 63), key.id)
}

/// Decodes a cursor made by [`encode`].
pub(crate) fn decode(text: &str) -> Result<SortKey> {
    if text.len() != LEN || !text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(IndexError::InvalidCursor);
    }
    let time = u64::from_str_radix(&text[..16], 16).map_err(|_| IndexError::InvalidCursor)?;
    let id = u128::from_str_radix(&text[16..], 16).map_err(|_| IndexError::InvalidCursor)?;
    Ok(SortKey {
        time: (time ^ (1 << 63)) as i64,
        id,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        for key in [
            SortKey { time: 0, id: 0 },
            SortKey {
                time: -5,
                id: u128::MAX,
            },
            SortKey {
                time: 1_795_000_000_123_456_789,
                id: 42,
            },
        ] {
            let text = encode(key);
            assert_eq!(text.len(), LEN);
            assert_eq!(decode(&text).ok(), Some(key));
        }
    }

    #[test]
    fn rejects_foreign_text() {
        for bad in ["", "abc", &"g".repeat(LEN), &"A".repeat(LEN)] {
            assert!(matches!(decode(bad), Err(IndexError::InvalidCursor)));
        }
    }
}
