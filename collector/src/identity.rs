//! [`FileIdentity`]: how the collector knows a file independently of its path.
//!
//! A path can point to a new file after rotation, and an old file can move to a new path; the
//! checkpoint therefore belongs to the file, not to the path. A file is known by its device
//! and inode plus a fingerprint of its first bytes, because inodes are reused once a file is
//! deleted and copytruncate keeps the inode while replacing the content.

use std::fmt;
use std::fs::{File, Metadata};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;

use sha2::{Digest, Sha256};

/// The identity of one tailed file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct FileIdentity {
    /// Device the file lives on.
    pub device: u64,
    /// Inode of the file on that device.
    pub inode: u64,
    /// First 128 bits of the SHA-256 of the file's fingerprinted head (see [`fingerprint`]).
    pub fingerprint: u128,
}

impl FileIdentity {
    /// Builds the identity of an open file, or `None` while the file is too short to be
    /// fingerprinted.
    pub fn of(
        file: &mut File,
        metadata: &Metadata,
        fingerprint_bytes: usize,
    ) -> io::Result<Option<Self>> {
        Ok(
            fingerprint(file, fingerprint_bytes)?.map(|fingerprint| Self {
                device: metadata.dev(),
                inode: metadata.ino(),
                fingerprint,
            }),
        )
    }

    /// A stable text form, used as the checkpoint key: `device:inode:fingerprint` in hex.
    pub fn key(&self) -> String {
        format!(
            "{:x}:{:x}:{:032x}",
            self.device, self.inode, self.fingerprint
        )
    }

    /// Parses the text form written by [`FileIdentity::key`].
    pub fn from_key(key: &str) -> Option<Self> {
        let mut parts = key.split(':');
        let device = u64::from_str_radix(parts.next()?, 16).ok()?;
        let inode = u64::from_str_radix(parts.next()?, 16).ok()?;
        let fingerprint = u128::from_str_radix(parts.next()?, 16).ok()?;
        if parts.next().is_some() {
            return None;
        }
        Some(Self {
            device,
            inode,
            fingerprint,
        })
    }
}

impl fmt::Display for FileIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.key())
    }
}

/// Fingerprints the head of `file`: the bytes up to and including the first newline, or the
/// first `max_bytes` bytes if no newline comes before them.
///
/// Returns `None` while the file holds neither a complete first line nor `max_bytes` bytes:
/// the head could still change, so the file has to wait. Stopping at the first newline lets a
/// file with short lines be tailed as soon as its first line is complete, and the head of an
/// append-only file never changes once it is complete.
pub fn fingerprint(file: &mut File, max_bytes: usize) -> io::Result<Option<u128>> {
    let mut head = Vec::with_capacity(max_bytes);
    file.seek(SeekFrom::Start(0))?;
    file.by_ref()
        .take(u64::try_from(max_bytes).unwrap_or(u64::MAX))
        .read_to_end(&mut head)?;
    let head = match head.iter().position(|&byte| byte == b'\n') {
        Some(newline) => &head[..=newline],
        None if head.len() >= max_bytes && max_bytes > 0 => &head[..],
        None => return Ok(None),
    };
    let digest = Sha256::digest(head);
    let mut first = [0u8; 16];
    first.copy_from_slice(&digest[..16]);
    Ok(Some(u128::from_be_bytes(first)))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn file_with(bytes: &[u8]) -> (tempfile::NamedTempFile, File) {
        let mut tmp = tempfile::NamedTempFile::new().unwrap();
        tmp.write_all(bytes).unwrap();
        let file = tmp.reopen().unwrap();
        (tmp, file)
    }

    #[test]
    fn short_head_without_newline_waits() {
        let (_tmp, mut file) = file_with(b"partial");
        assert_eq!(fingerprint(&mut file, 256).unwrap(), None);
    }

    #[test]
    fn first_line_is_enough_and_stable_under_appends() {
        let (mut tmp, mut file) = file_with(b"first\n");
        let before = fingerprint(&mut file, 256).unwrap();
        assert!(before.is_some());
        tmp.write_all(b"second\n").unwrap();
        assert_eq!(fingerprint(&mut file, 256).unwrap(), before);
    }

    #[test]
    fn long_head_without_newline_uses_max_bytes() {
        let (_tmp, mut file) = file_with(&[b'x'; 300]);
        let (_tmp2, mut other) = file_with(&[b'x'; 256]);
        assert!(fingerprint(&mut file, 256).unwrap().is_some());
        assert_eq!(
            fingerprint(&mut file, 256).unwrap(),
            fingerprint(&mut other, 256).unwrap()
        );
    }

    #[test]
    fn key_round_trips() {
        let identity = FileIdentity {
            device: 0x803,
            inode: 42,
            fingerprint: u128::MAX - 7,
        };
        assert_eq!(FileIdentity::from_key(&identity.key()), Some(identity));
        assert_eq!(FileIdentity::from_key("1:2"), None);
        assert_eq!(FileIdentity::from_key("1:2:3:4"), None);
    }
}
