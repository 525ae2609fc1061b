//! [`FileTailer`]: reads complete lines from one growing file.
//!
//! The tailer is synchronous and never waits by itself: [`FileTailer::read`] returns what is
//! available now, and the caller decides how long to sleep before asking again (polling is
//! simple and works on every filesystem, including the overlay and network ones found under
//! Kubernetes). Callers in async code run it on a blocking thread.
//!
//! What the tailer guarantees:
//!
//! - it hands out whole lines only: a last line without its newline waits for it;
//! - a line longer than [`TailerConfig::max_line_bytes`] is not silently dropped: it comes out
//!   as a [`TailItem::Oversize`] with its offset and its head, and reading goes on after its
//!   newline;
//! - every item carries the byte offsets it spans, so that the caller can checkpoint exactly
//!   "the next unread byte";
//! - a file that shrinks below what was read was truncated: the tailer reports it and starts
//!   again at offset 0. A copytruncate whose file regrew past the read position between two
//!   looks is recognised by its head no longer matching the file's fingerprint, and handled
//!   the same way.
//!
//! - rename-and-create rotation: the old file stays open and is read until the path names
//!   another file *that has content* and, looked at after that, the old file has nothing more.
//!   Vault writes to one file at a time (it reopens on SIGHUP under its write lock), so once
//!   something was written to the new file nothing more comes to the old one: lines written to
//!   the old descriptor between logrotate's rename and Vault's reopen are not lost. The tailer
//!   then reports [`TailItem::Rotated`] and moves to the new file, read from its start;
//! - copytruncate: when the file is truncated before its end was read, the unread rest is
//!   still in logrotate's copy. The tailer looks for a rotated sibling of the path (same
//!   directory, name starting with the file's name, not compressed) with the same fingerprint
//!   and finishes reading it from where it stood, then comes back to the path at offset 0.
//!   Lines written between logrotate's copy and its truncate are in neither file: that race
//!   belongs to copytruncate itself and no reader can close it;
//! - a restart after a crash in the middle of a rotation: [`FileTailer::recover_rotated`] finds
//!   the checkpointed file among the rotated siblings (by device, inode and fingerprint, or by
//!   fingerprint alone for a copytruncate copy) and finishes it before the live file;
//! - a deleted file stays open and is read to its end; the tailer then waits for a file to
//!   appear at the path again. A file that comes back with the same identity (moved away and
//!   back) is simply continued; a different one is a rotation.
//!
//! Compressed rotated files (`.gz`, `.bz2`, `.xz`, `.zst`, `.zip`, `.lz4`) are never opened: if
//! logrotate compresses a file before its end was read (`compress` without `delaycompress`),
//! its unread tail is lost and a warning says so.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::identity::FileIdentity;
use crate::rotation::is_rotated_copy;

/// Where to start a file the collector has never seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StartAt {
    /// Read the whole file.
    #[default]
    Beginning,
    /// Skip what is already there; start after the last complete line.
    End,
}

/// How one file is tailed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TailerConfig {
    /// The file to tail.
    pub path: PathBuf,
    /// Where to start a file that has no checkpoint.
    pub start_at: StartAt,
    /// How long to wait between two looks at a file that had nothing new.
    pub poll_interval: Duration,
    /// Longest line handed out, newline excluded; longer ones become [`TailItem::Oversize`].
    pub max_line_bytes: usize,
    /// Most bytes of the file's head used for its fingerprint (see [`crate::identity::fingerprint`]).
    pub fingerprint_bytes: usize,
    /// Bytes read from the file per system call.
    pub read_chunk_bytes: usize,
}

impl TailerConfig {
    /// The defaults for `path`: start at the beginning, poll every 100 ms, lines up to 1 MiB,
    /// fingerprint of up to 256 bytes, 64 KiB reads.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            start_at: StartAt::Beginning,
            poll_interval: Duration::from_millis(100),
            max_line_bytes: 1024 * 1024,
            fingerprint_bytes: 256,
            read_chunk_bytes: 64 * 1024,
        }
    }
}

/// A complete line of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// Offset of the line's first byte.
    pub offset: u64,
    /// Offset just past the line's newline: where the next line starts.
    pub end: u64,
    /// The line's bytes, newline excluded.
    pub bytes: Vec<u8>,
}

/// A line longer than the configured maximum, reported instead of being read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OversizeLine {
    /// Offset of the line's first byte.
    pub offset: u64,
    /// Offset just past the line's newline.
    pub end: u64,
    /// The first [`TailerConfig::max_line_bytes`] bytes of the line, for quarantine.
    pub head: Vec<u8>,
}

impl OversizeLine {
    /// Length of the whole line, newline excluded.
    pub fn len(&self) -> u64 {
        self.end - self.offset - 1
    }

    /// Always false: an oversize line is never empty. Here for API symmetry with `len`.
    pub fn is_empty(&self) -> bool {
        false
    }
}

/// One thing the tailer found in the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TailItem {
    /// A complete line.
    Line(Line),
    /// A line that was too long, skipped up to its newline.
    Oversize(OversizeLine),
    /// The file became shorter than what had been read: it was truncated, and reading starts
    /// again at offset 0. Always the last item of a [`FileTailer::read`].
    Truncated {
        /// Offset the tailer had read up to.
        read_up_to: u64,
        /// Length of the file when the truncation was seen.
        file_len: u64,
    },
    /// The open file was read to its end and the path now names another file: the tailer
    /// moves to the next file, read from its start (or its checkpoint): a file rotated after
    /// the old one if there were several rotations, else the file at the path. Always the
    /// only item of a [`FileTailer::read`].
    Rotated {
        /// Bytes at the end of the old file that never got their newline; they are dropped.
        unterminated_bytes: u64,
    },
}

/// What can go wrong while tailing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TailError {
    /// Reading the file or its metadata failed.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The tailed path.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// [`FileTailer::read`] or [`FileTailer::resume`] was called before the file was identified.
    #[error("{0} has not been identified yet")]
    NotIdentified(PathBuf),
}

/// Tails one file; see the module documentation.
#[derive(Debug)]
pub struct FileTailer {
    config: TailerConfig,
    file: Option<OpenFile>,
    /// Set after a rotation: the next file is new, so it starts at its beginning whatever
    /// [`TailerConfig::start_at`] says.
    rotated: bool,
    /// Set once a start position was chosen for any file or [`FileTailer::recover_rotated`] was
    /// tried: recovery only makes sense once, before the first start.
    recovery_done: bool,
    /// Set while the open file is a copytruncate copy: no rotation chain follows a copy.
    on_copy: bool,
    /// Device and inode of the rotated files finished since the tailer last opened the path,
    /// so that walking the chain of rotated files never comes back to one.
    chain: Vec<(u64, u64)>,
}

#[derive(Debug)]
struct OpenFile {
    handle: File,
    /// `None` until the file is long enough to fingerprint (again, after a truncation).
    identity: Option<FileIdentity>,
    /// Whether a start position was chosen; reading waits for it.
    started: bool,
    /// Bytes read but not yet handed out; `pending[0]` is at file offset `pending_start`.
    pending: Vec<u8>,
    pending_start: u64,
    /// Bytes of `pending` already searched for a newline, so that a long partial line is not
    /// searched again on every read.
    scanned: usize,
    /// Set while skipping the rest of an oversize line.
    oversize: Option<OversizeStart>,
    /// File length at the last look.
    len: u64,
}

#[derive(Debug)]
struct OversizeStart {
    offset: u64,
    head: Vec<u8>,
}

impl OpenFile {
    /// Offset just past the last byte read from the file.
    fn read_pos(&self) -> u64 {
        self.pending_start + self.pending.len() as u64
    }

    /// Offset of the first byte not yet handed out in an item.
    fn position(&self) -> u64 {
        match &self.oversize {
            Some(oversize) => oversize.offset,
            None => self.pending_start,
        }
    }

    fn new(handle: File) -> Self {
        Self {
            handle,
            identity: None,
            started: false,
            pending: Vec::new(),
            pending_start: 0,
            scanned: 0,
            oversize: None,
            len: 0,
        }
    }

    fn reset_to(&mut self, offset: u64) {
        self.pending.clear();
        self.pending_start = offset;
        self.scanned = 0;
        self.oversize = None;
    }
}

impl FileTailer {
    /// Creates a tailer; the file is opened on the first [`FileTailer::identify`].
    pub fn new(config: TailerConfig) -> Self {
        Self {
            config,
            file: None,
            rotated: false,
            recovery_done: false,
            on_copy: false,
            chain: Vec::new(),
        }
    }

    /// The configuration this tailer was made with.
    pub fn config(&self) -> &TailerConfig {
        &self.config
    }

    /// The tailed path.
    pub fn path(&self) -> &Path {
        &self.config.path
    }

    /// Opens the file if needed and returns its identity, or `None` while the file is missing
    /// or too short to fingerprint.
    pub fn identify(&mut self) -> Result<Option<FileIdentity>, TailError> {
        if self.file.is_none() {
            let handle = match File::open(&self.config.path) {
                Ok(handle) => handle,
                Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
                Err(error) => return Err(self.io_error(error)),
            };
            self.file = Some(OpenFile::new(handle));
            self.chain.clear();
        }
        let fingerprint_bytes = self.config.fingerprint_bytes;
        let Some(open) = self.file.as_mut() else {
            return Ok(None);
        };
        if open.identity.is_none() {
            let identity = open.handle.metadata().and_then(|metadata| {
                open.len = metadata.len();
                FileIdentity::of(&mut open.handle, &metadata, fingerprint_bytes)
            });
            match identity {
                Ok(identity) => open.identity = identity,
                Err(error) => return Err(self.io_error(error)),
            }
        }
        Ok(self.identity())
    }

    /// Identity of the open file, once known.
    pub fn identity(&self) -> Option<FileIdentity> {
        self.file.as_ref().and_then(|open| open.identity)
    }

    /// Whether a start position was chosen with [`FileTailer::resume`].
    pub fn is_started(&self) -> bool {
        self.file.as_ref().is_some_and(|open| open.started)
    }

    /// Chooses where reading starts and returns that offset.
    ///
    /// `Some(offset)` resumes at a checkpoint: the offset of the next unread byte. An offset
    /// beyond the end of the file means the file was truncated since: reading starts at 0.
    /// `None` applies [`TailerConfig::start_at`].
    pub fn resume(&mut self, checkpoint: Option<u64>) -> Result<u64, TailError> {
        let start_at = self.config.start_at;
        let path = self.config.path.clone();
        let Some(open) = self.file.as_mut().filter(|open| open.identity.is_some()) else {
            return Err(TailError::NotIdentified(path));
        };
        let len = match open.handle.metadata() {
            Ok(metadata) => metadata.len(),
            Err(error) => {
                return Err(TailError::Io {
                    path,
                    source: error,
                })
            }
        };
        open.len = len;
        let start = match (checkpoint, start_at) {
            (Some(offset), _) if offset > len => {
                tracing::warn!(
                    path = %path.display(),
                    checkpoint = offset,
                    file_len = len,
                    "file is shorter than its checkpoint: it was truncated, reading from the start"
                );
                0
            }
            (Some(offset), _) => offset,
            (None, _) if self.rotated => 0,
            (None, StartAt::Beginning) => 0,
            (None, StartAt::End) => end_of_last_line(&mut open.handle, len)
                .map_err(|source| TailError::Io { path, source })?,
        };
        open.reset_to(start);
        open.started = true;
        self.recovery_done = true;
        Ok(start)
    }

    /// Finishes a file left behind by a rotation while the collector was down.
    ///
    /// `previous` is the file last checkpointed at the path and `offset` its checkpoint. Call
    /// it before the first [`FileTailer::identify`]. If `previous` is no longer the file at the
    /// path but is found among the path's rotated siblings (see the module documentation) with
    /// bytes at or past `offset`, it is opened and started at `offset`, and its path returned:
    /// it is read to its end before the tailer moves on to the file at the path, which then
    /// starts at 0. A sibling found by fingerprint alone (a copytruncate copy) is only used if
    /// it holds unread bytes. Returns `None`, doing nothing, when `previous` is still at the
    /// path, is not found, or a file was already started.
    pub fn recover_rotated(
        &mut self,
        previous: &FileIdentity,
        offset: u64,
    ) -> Result<Option<PathBuf>, TailError> {
        if self.recovery_done || self.file.is_some() {
            return Ok(None);
        }
        self.recovery_done = true;
        let fingerprint_bytes = self.config.fingerprint_bytes;
        match File::open(&self.config.path) {
            Ok(mut handle) => {
                let at_path = handle
                    .metadata()
                    .and_then(|metadata| {
                        FileIdentity::of(&mut handle, &metadata, fingerprint_bytes)
                    })
                    .map_err(|error| self.io_error(error))?;
                if at_path.as_ref() == Some(previous) {
                    return Ok(None);
                }
            }
            Err(error) if error.kind() == io::ErrorKind::NotFound => {}
            Err(error) => return Err(self.io_error(error)),
        }
        let Some(found) = find_rotated(&self.config.path, previous, offset, fingerprint_bytes)
            .map_err(|error| self.io_error(error))?
        else {
            tracing::info!(
                path = %self.config.path.display(),
                file = %previous,
                offset,
                "the file checkpointed at this path is not among its rotated siblings (deleted or compressed): if it had unread lines, they are lost"
            );
            return Ok(None);
        };
        self.on_copy = found.identity != *previous;
        let mut open = OpenFile::new(found.handle);
        open.identity = Some(found.identity);
        open.len = found.len;
        open.reset_to(offset);
        open.started = true;
        self.file = Some(open);
        self.recovery_done = true;
        // Whatever comes at the path after this file is newer than it.
        self.rotated = true;
        tracing::info!(
            path = %self.config.path.display(),
            rotated = %found.path.display(),
            offset,
            "finishing the rotated file checkpointed at this path first"
        );
        Ok(Some(found.path))
    }

    /// Offset of the next byte not yet handed out: what a checkpoint stores once every item
    /// read so far is durable.
    pub fn position(&self) -> Option<u64> {
        self.file.as_ref().map(OpenFile::position)
    }

    /// Length of the file at the last look.
    pub fn file_len(&self) -> Option<u64> {
        self.file.as_ref().map(|open| open.len)
    }

    /// Returns up to `max_items` items available now, in file order; empty when there is
    /// nothing new (or the file is not identified and started yet).
    pub fn read(&mut self, max_items: usize) -> Result<Vec<TailItem>, TailError> {
        let mut items = Vec::new();
        if !self.is_started() {
            return Ok(items);
        }
        // After a truncation the identity is computed again once the new head is complete.
        if self.identity().is_none() && self.identify()?.is_none() {
            return Ok(items);
        }
        let max_line = self.config.max_line_bytes;
        let chunk = self.config.read_chunk_bytes.max(1);
        let fingerprint_bytes = self.config.fingerprint_bytes;
        let before = (self.identity(), self.position());
        let result = match self.file.as_mut() {
            Some(open) => read_items(
                open,
                &mut items,
                max_items.max(1),
                max_line,
                chunk,
                fingerprint_bytes,
            ),
            None => Ok(()),
        };
        result.map_err(|error| self.io_error(error))?;
        if let (Some(TailItem::Truncated { .. }), (Some(identity), Some(position))) =
            (items.last(), before)
        {
            // Where the truncated content stood: past the last item handed out in this read.
            let position = items
                .iter()
                .rev()
                .find_map(|item| match item {
                    TailItem::Line(line) => Some(line.end),
                    TailItem::Oversize(oversize) => Some(oversize.end),
                    _ => None,
                })
                .unwrap_or(position);
            self.follow_copy(&identity, position)?;
        }
        if items.is_empty() && self.replaced_at_path()? {
            let unterminated_bytes = self
                .file
                .as_ref()
                .map_or(0, |open| open.read_pos().saturating_sub(open.position()));
            tracing::info!(
                path = %self.config.path.display(),
                unterminated_bytes,
                "file was rotated, moving to the new file at the path"
            );
            let finished = self.file.take();
            if let Some(finished) = finished.filter(|_| !self.on_copy) {
                self.file = self
                    .next_in_chain(&finished)
                    .map_err(|error| self.io_error(error))?
                    .map(OpenFile::new);
            }
            self.on_copy = false;
            self.rotated = true;
            items.push(TailItem::Rotated { unterminated_bytes });
        }
        Ok(items)
    }

    /// After a truncation of the open file at `position`: if logrotate's copy of the old
    /// content holds bytes past `position`, reads them first (see the module documentation).
    fn follow_copy(&mut self, old: &FileIdentity, position: u64) -> Result<(), TailError> {
        let fingerprint_bytes = self.config.fingerprint_bytes;
        let found = find_rotated(&self.config.path, old, position, fingerprint_bytes)
            .map_err(|error| self.io_error(error))?;
        let Some(found) = found.filter(|found| found.len > position) else {
            return Ok(());
        };
        tracing::info!(
            path = %self.config.path.display(),
            copy = %found.path.display(),
            offset = position,
            "file was truncated before its end was read: finishing logrotate's copy first"
        );
        let mut open = OpenFile::new(found.handle);
        open.identity = Some(found.identity);
        open.len = found.len;
        open.reset_to(position);
        open.started = true;
        self.file = Some(open);
        self.rotated = true;
        self.on_copy = true;
        Ok(())
    }

    /// The rotated file that came after `finished`, when more than one rotation happened
    /// while it was being read (the collector was behind, or down): the oldest rotated
    /// sibling last written no earlier than `finished`, other than the file at the path and
    /// the files already finished. Writes go to one file at a time, so a file rotated after
    /// `finished` was last written after it. `None` means the file at the path comes next.
    ///
    /// File times have the kernel's coarse granularity: a file rotated before `finished`
    /// whose last write falls in the same tick as `finished`'s is taken as newer. It is read
    /// from its checkpoint, so that costs nothing unless it was never read at all.
    fn next_in_chain(&mut self, finished: &OpenFile) -> io::Result<Option<File>> {
        let finished_meta = finished.handle.metadata()?;
        self.chain.push((finished_meta.dev(), finished_meta.ino()));
        let since = (finished_meta.mtime(), finished_meta.mtime_nsec());
        let at_path = match std::fs::metadata(&self.config.path) {
            Ok(metadata) => Some((metadata.dev(), metadata.ino())),
            Err(error) if error.kind() == io::ErrorKind::NotFound => None,
            Err(error) => return Err(error),
        };
        let mut next: Option<((i64, i64, u64), PathBuf)> = None;
        for sibling in rotated_siblings(&self.config.path)? {
            let Ok(metadata) = std::fs::metadata(&sibling) else {
                continue;
            };
            let id = (metadata.dev(), metadata.ino());
            let written = (metadata.mtime(), metadata.mtime_nsec());
            if Some(id) == at_path || self.chain.contains(&id) || written < since {
                continue;
            }
            let order = (written.0, written.1, metadata.ino());
            if next.as_ref().is_none_or(|(best, _)| order < *best) {
                next = Some((order, sibling));
            }
        }
        let Some((_, path)) = next else {
            return Ok(None);
        };
        tracing::info!(
            path = %self.config.path.display(),
            rotated = %path.display(),
            "more than one rotation since this file was opened: reading the next rotated file"
        );
        match File::open(&path) {
            Ok(handle) => Ok(Some(handle)),
            // Gone meanwhile (deleted by logrotate): nothing to be done about it.
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// Whether the open file was read to its end and the path now names another file that
    /// has content.
    ///
    /// The order of the looks matters: the new file is seen non-empty *before* the old one is
    /// seen at its end. The writer wrote to the new file before that second look, and it
    /// writes to one file at a time, so nothing more can come to the old file.
    fn replaced_at_path(&self) -> Result<bool, TailError> {
        let Some(open) = &self.file else {
            return Ok(false);
        };
        if open.read_pos() < open.len {
            return Ok(false);
        }
        let at_path = match std::fs::metadata(&self.config.path) {
            Ok(metadata) => metadata,
            // Deleted (or between rename and create): keep the open file until a new one comes.
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(error) => return Err(self.io_error(error)),
        };
        let open_meta = open
            .handle
            .metadata()
            .map_err(|error| self.io_error(error))?;
        if (at_path.dev(), at_path.ino()) == (open_meta.dev(), open_meta.ino()) {
            return Ok(false);
        }
        // An empty new file: the writer may not have reopened yet and may still write to the
        // old one, and there is nothing to read in the new one anyway.
        if at_path.len() == 0 {
            return Ok(false);
        }
        // Looked at after the new file: anything written to the old file since is read first.
        Ok(open_meta.len() <= open.read_pos())
    }

    fn io_error(&self, source: io::Error) -> TailError {
        TailError::Io {
            path: self.config.path.clone(),
            source,
        }
    }
}

fn read_items(
    open: &mut OpenFile,
    items: &mut Vec<TailItem>,
    max_items: usize,
    max_line: usize,
    chunk: usize,
    fingerprint_bytes: usize,
) -> io::Result<()> {
    // Lines already read are handed out first, even if the file was truncated since.
    take_lines(open, items, max_items, max_line);
    if items.len() >= max_items {
        return Ok(());
    }
    let len = open.handle.metadata()?.len();
    open.len = len;
    if len < open.read_pos() || (len > open.read_pos() && head_changed(open, fingerprint_bytes)?) {
        items.push(TailItem::Truncated {
            read_up_to: open.read_pos(),
            file_len: len,
        });
        open.reset_to(0);
        open.identity = None;
        return Ok(());
    }
    loop {
        take_lines(open, items, max_items, max_line);
        if items.len() >= max_items || open.read_pos() >= len {
            return Ok(());
        }
        let want = usize::try_from(len - open.read_pos())
            .unwrap_or(usize::MAX)
            .min(chunk);
        let at = open.read_pos();
        open.handle.seek(SeekFrom::Start(at))?;
        let before = open.pending.len();
        open.pending.resize(before + want, 0);
        let got = match open.handle.read(&mut open.pending[before..]) {
            Ok(got) => got,
            Err(error) => {
                open.pending.truncate(before);
                return Err(error);
            }
        };
        open.pending.truncate(before + got);
        if got == 0 {
            // The file shrank between the metadata and the read; the next read sees it.
            return Ok(());
        }
    }
}

/// Whether the file's head no longer matches its identity: it was truncated (copytruncate)
/// and has grown past our position again between two looks, so its length alone does not
/// show it. Checked only when there is new data, so an idle file costs nothing.
fn head_changed(open: &mut OpenFile, fingerprint_bytes: usize) -> io::Result<bool> {
    let Some(identity) = open.identity else {
        return Ok(false);
    };
    let now = crate::identity::fingerprint(&mut open.handle, fingerprint_bytes)?;
    Ok(now != Some(identity.fingerprint))
}

/// Extensions of rotated files that are compressed and cannot be tailed.
const COMPRESSED: &[&str] = &["gz", "bz2", "xz", "zst", "zip", "lz4", "z"];

/// A rotated sibling of the tailed path that holds a wanted file.
struct Found {
    path: PathBuf,
    handle: File,
    identity: FileIdentity,
    len: u64,
}

/// The rotated siblings of `path` ([`is_rotated_copy`]: `audit.log.1`, `audit.log-20261122`)
/// that are regular files, compressed ones excluded.
fn rotated_siblings(path: &Path) -> io::Result<Vec<PathBuf>> {
    let Some(name) = path.file_name() else {
        return Ok(Vec::new());
    };
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    // Compared as `dir` spells it, so that a bare file name and `./name` agree.
    let live = dir.join(name);
    let mut siblings = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if !is_rotated_copy(&entry.path(), &live) {
            continue;
        }
        let file_name = entry.file_name();
        let compressed = Path::new(&file_name)
            .extension()
            .and_then(|ext| ext.to_str())
            .is_some_and(|ext| COMPRESSED.contains(&ext.to_ascii_lowercase().as_str()));
        if compressed {
            continue;
        }
        // A sibling that vanished or cannot be read is simply not a candidate.
        if std::fs::metadata(entry.path()).is_ok_and(|metadata| metadata.is_file()) {
            siblings.push(entry.path());
        }
    }
    Ok(siblings)
}

/// Looks among the rotated siblings of `path` for the file `wanted`: the same device, inode and
/// fingerprint (a renamed file) first; otherwise, the longest file with the same fingerprint
/// holding bytes past `offset` (a copytruncate copy).
fn find_rotated(
    path: &Path,
    wanted: &FileIdentity,
    offset: u64,
    fingerprint_bytes: usize,
) -> io::Result<Option<Found>> {
    let mut copy: Option<Found> = None;
    for sibling in rotated_siblings(path)? {
        let Ok(mut handle) = File::open(&sibling) else {
            continue;
        };
        let metadata = handle.metadata()?;
        let Some(identity) = FileIdentity::of(&mut handle, &metadata, fingerprint_bytes)? else {
            continue;
        };
        if identity.fingerprint != wanted.fingerprint || metadata.len() < offset {
            continue;
        }
        let found = Found {
            path: sibling,
            handle,
            identity,
            len: metadata.len(),
        };
        if identity == *wanted {
            return Ok(Some(found));
        }
        if found.len > offset && copy.as_ref().is_none_or(|copy| copy.len < found.len) {
            copy = Some(found);
        }
    }
    Ok(copy)
}

/// Moves complete lines from `open.pending` into `items`.
fn take_lines(open: &mut OpenFile, items: &mut Vec<TailItem>, max_items: usize, max_line: usize) {
    let mut consumed = 0;
    while items.len() < max_items {
        let search_from = open.scanned.max(consumed);
        let Some(newline) = open.pending[search_from..]
            .iter()
            .position(|&byte| byte == b'\n')
            .map(|at| search_from + at)
        else {
            open.scanned = open.pending.len();
            break;
        };
        let start = open.pending_start + consumed as u64;
        let end = open.pending_start + newline as u64 + 1;
        let line = &open.pending[consumed..newline];
        if let Some(oversize) = open.oversize.take() {
            items.push(TailItem::Oversize(OversizeLine {
                offset: oversize.offset,
                end,
                head: oversize.head,
            }));
        } else if line.len() > max_line {
            items.push(TailItem::Oversize(OversizeLine {
                offset: start,
                end,
                head: line[..max_line].to_vec(),
            }));
        } else if !line.is_empty() {
            // Empty lines carry nothing; they are skipped but still covered by positions.
            items.push(TailItem::Line(Line {
                offset: start,
                end,
                bytes: line.to_vec(),
            }));
        }
        consumed = newline + 1;
        open.scanned = consumed;
    }
    // A partial line longer than the limit will never be handed out: keep its head for the
    // report and stop holding the rest in memory.
    if open.oversize.is_none() && open.pending.len() - consumed > max_line {
        open.oversize = Some(OversizeStart {
            offset: open.pending_start + consumed as u64,
            head: open.pending[consumed..consumed + max_line].to_vec(),
        });
        consumed = open.pending.len();
    } else if open.oversize.is_some() && items.len() < max_items {
        // Still inside the oversize line: everything pending belongs to it.
        consumed = open.pending.len();
    }
    open.pending.drain(..consumed);
    open.pending_start += consumed as u64;
    open.scanned = open.scanned.saturating_sub(consumed);
}

/// Offset just past the last newline before `len`, or 0 if there is none: where reading starts
/// for [`StartAt::End`], so that a line being written is not cut in half.
fn end_of_last_line(file: &mut File, len: u64) -> io::Result<u64> {
    const BLOCK: u64 = 8 * 1024;
    let mut end = len;
    let mut block = Vec::new();
    while end > 0 {
        let start = end.saturating_sub(BLOCK);
        block.resize(usize::try_from(end - start).unwrap_or(0), 0);
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(&mut block)?;
        if let Some(newline) = block.iter().rposition(|&byte| byte == b'\n') {
            return Ok(start + newline as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

#[cfg(test)]
mod tests {
    use std::fs::OpenOptions;
    use std::io::Write;

    use super::*;

    struct Fixture {
        _dir: tempfile::TempDir,
        path: PathBuf,
    }

    impl Fixture {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("audit.log");
            Self { _dir: dir, path }
        }

        fn append(&self, bytes: &[u8]) {
            let mut file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .unwrap();
            file.write_all(bytes).unwrap();
        }

        fn tailer(&self, configure: impl FnOnce(&mut TailerConfig)) -> FileTailer {
            let mut config = TailerConfig::new(&self.path);
            configure(&mut config);
            FileTailer::new(config)
        }
    }

    fn started(tailer: &mut FileTailer, checkpoint: Option<u64>) -> u64 {
        assert!(tailer.identify().unwrap().is_some());
        tailer.resume(checkpoint).unwrap()
    }

    fn lines(items: &[TailItem]) -> Vec<&[u8]> {
        items
            .iter()
            .filter_map(|item| match item {
                TailItem::Line(line) => Some(line.bytes.as_slice()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn missing_file_is_not_an_error() {
        let fixture = Fixture::new();
        let mut tailer = fixture.tailer(|_| {});
        assert_eq!(tailer.identify().unwrap(), None);
        assert!(tailer.read(10).unwrap().is_empty());
    }

    #[test]
    fn reads_lines_with_offsets_and_follows_appends() {
        let fixture = Fixture::new();
        fixture.append(b"one\ntwo\n");
        let mut tailer = fixture.tailer(|_| {});
        started(&mut tailer, None);
        let items = tailer.read(10).unwrap();
        assert_eq!(
            items[1],
            TailItem::Line(Line {
                offset: 4,
                end: 8,
                bytes: b"two".to_vec()
            })
        );
        assert!(tailer.read(10).unwrap().is_empty());
        fixture.append(b"three\n");
        assert_eq!(lines(&tailer.read(10).unwrap()), [b"three"]);
        assert_eq!(tailer.position(), Some(14));
    }

    #[test]
    fn partial_last_line_waits_for_its_newline() {
        let fixture = Fixture::new();
        fixture.append(b"whole\nhal");
        let mut tailer = fixture.tailer(|_| {});
        started(&mut tailer, None);
        assert_eq!(lines(&tailer.read(10).unwrap()), [b"whole"]);
        assert!(
            tailer.read(10).unwrap().is_empty(),
            "half a line is never handed out"
        );
        assert_eq!(tailer.position(), Some(6));
        fixture.append(b"f");
        assert!(tailer.read(10).unwrap().is_empty());
        fixture.append(b"\n");
        let items = tailer.read(10).unwrap();
        assert_eq!(lines(&items), [b"half"]);
        assert_eq!(tailer.position(), Some(11));
    }

    #[test]
    fn max_items_leaves_the_rest_for_the_next_read() {
        let fixture = Fixture::new();
        fixture.append(b"a\nb\nc\n");
        let mut tailer = fixture.tailer(|_| {});
        started(&mut tailer, None);
        assert_eq!(lines(&tailer.read(2).unwrap()), [b"a", b"b"]);
        assert_eq!(tailer.position(), Some(4));
        assert_eq!(lines(&tailer.read(2).unwrap()), [b"c"]);
    }

    #[test]
    fn small_read_chunks_give_the_same_lines() {
        let fixture = Fixture::new();
        fixture.append(b"alpha\nbeta\n\ngamma\n");
        let mut tailer = fixture.tailer(|config| config.read_chunk_bytes = 3);
        started(&mut tailer, None);
        assert_eq!(
            lines(&tailer.read(10).unwrap()),
            [&b"alpha"[..], b"beta", b"gamma"]
        );
    }

    #[test]
    fn oversize_line_is_reported_and_skipped() {
        let fixture = Fixture::new();
        let long = vec![b'x'; 40];
        fixture.append(b"ok\n");
        fixture.append(&long);
        fixture.append(b"\nafter\n");
        let mut tailer = fixture.tailer(|config| {
            config.max_line_bytes = 10;
            config.read_chunk_bytes = 7;
        });
        started(&mut tailer, None);
        let items = tailer.read(10).unwrap();
        assert_eq!(items.len(), 3, "{items:?}");
        assert_eq!(
            items[1],
            TailItem::Oversize(OversizeLine {
                offset: 3,
                end: 44,
                head: vec![b'x'; 10]
            })
        );
        if let TailItem::Oversize(oversize) = &items[1] {
            assert_eq!(oversize.len(), 40);
        }
        assert_eq!(lines(&items), [&b"ok"[..], b"after"]);
    }

    #[test]
    fn unterminated_oversize_line_is_reported_once_its_newline_comes() {
        let fixture = Fixture::new();
        fixture.append(&[b'y'; 25]);
        let mut tailer = fixture.tailer(|config| {
            config.max_line_bytes = 10;
            config.fingerprint_bytes = 8;
        });
        started(&mut tailer, None);
        assert!(tailer.read(10).unwrap().is_empty());
        assert_eq!(
            tailer.position(),
            Some(0),
            "nothing is checkpointed past it yet"
        );
        fixture.append(&[b'y'; 25]);
        assert!(tailer.read(10).unwrap().is_empty());
        fixture.append(b"\nnext\n");
        let items = tailer.read(10).unwrap();
        assert!(matches!(
            &items[0],
            TailItem::Oversize(OversizeLine { offset: 0, end: 51, head }) if head.len() == 10
        ));
        assert_eq!(lines(&items), [b"next"]);
    }

    #[test]
    fn truncation_restarts_at_zero() {
        let fixture = Fixture::new();
        fixture.append(b"first line\nsecond line\n");
        let mut tailer = fixture.tailer(|_| {});
        started(&mut tailer, None);
        assert_eq!(tailer.read(10).unwrap().len(), 2);
        let before = tailer.identity();

        OpenOptions::new()
            .write(true)
            .open(&fixture.path)
            .unwrap()
            .set_len(0)
            .unwrap();
        assert_eq!(
            tailer.read(10).unwrap(),
            [TailItem::Truncated {
                read_up_to: 23,
                file_len: 0
            }]
        );
        assert!(tailer.read(10).unwrap().is_empty(), "too short to identify");
        fixture.append(b"new\n");
        assert_eq!(lines(&tailer.read(10).unwrap()), [b"new"]);
        assert_ne!(tailer.identity(), before, "a new head is a new identity");
    }

    #[test]
    fn copytruncate_that_regrew_past_the_position_restarts_at_zero() {
        let fixture = Fixture::new();
        fixture.append(b"old 1\nold 2\n");
        let mut tailer = fixture.tailer(|_| {});
        started(&mut tailer, None);
        assert_eq!(lines(&tailer.read(10).unwrap()), [b"old 1", b"old 2"]);
        // Copied away and truncated, then more written than was read before the next look.
        OpenOptions::new()
            .write(true)
            .open(&fixture.path)
            .unwrap()
            .set_len(0)
            .unwrap();
        fixture.append(b"new 1\nnew 2\nnew 3\n");
        assert_eq!(
            tailer.read(10).unwrap(),
            [TailItem::Truncated {
                read_up_to: 12,
                file_len: 18
            }]
        );
        assert_eq!(
            lines(&tailer.read(10).unwrap()),
            [&b"new 1"[..], b"new 2", b"new 3"]
        );
        // Plain appends do not look like a truncation.
        fixture.append(b"new 4\n");
        assert_eq!(lines(&tailer.read(10).unwrap()), [b"new 4"]);
    }

    #[test]
    fn checkpoint_beyond_the_end_starts_at_zero() {
        let fixture = Fixture::new();
        fixture.append(b"short\n");
        let mut tailer = fixture.tailer(|_| {});
        assert_eq!(started(&mut tailer, Some(1000)), 0);
        assert_eq!(lines(&tailer.read(10).unwrap()), [b"short"]);
    }

    #[test]
    fn resumes_exactly_at_a_checkpoint() {
        let fixture = Fixture::new();
        fixture.append(b"one\ntwo\nthree\n");
        let mut tailer = fixture.tailer(|_| {});
        assert_eq!(started(&mut tailer, Some(4)), 4);
        assert_eq!(lines(&tailer.read(10).unwrap()), [&b"two"[..], b"three"]);
    }

    #[test]
    fn start_at_end_skips_complete_lines_only() {
        let fixture = Fixture::new();
        fixture.append(b"old\nolder\nbeing writ");
        let mut tailer = fixture.tailer(|config| config.start_at = StartAt::End);
        assert_eq!(started(&mut tailer, None), 10);
        fixture.append(b"ten\n");
        assert_eq!(lines(&tailer.read(10).unwrap()), [b"being written"]);
    }

    #[test]
    fn rename_rotation_moves_to_the_new_file_from_its_start() {
        let fixture = Fixture::new();
        fixture.append(b"old 1\n");
        let mut tailer = fixture.tailer(|config| config.start_at = StartAt::End);
        started(&mut tailer, None);
        fixture.append(b"old 2\n");
        std::fs::rename(&fixture.path, fixture.path.with_extension("1")).unwrap();
        fixture.append(b"new 1\n");
        assert_eq!(
            lines(&tailer.read(10).unwrap()),
            [b"old 2"],
            "old file drained first"
        );
        assert_eq!(
            tailer.read(10).unwrap(),
            [TailItem::Rotated {
                unterminated_bytes: 0
            }]
        );
        assert!(!tailer.is_started());
        assert!(tailer.identify().unwrap().is_some());
        assert_eq!(
            tailer.resume(None).unwrap(),
            0,
            "a rotated-in file starts at 0"
        );
        assert_eq!(lines(&tailer.read(10).unwrap()), [b"new 1"]);
    }

    #[test]
    fn deleted_file_is_kept_until_a_new_one_appears() {
        let fixture = Fixture::new();
        fixture.append(b"only\n");
        let mut tailer = fixture.tailer(|_| {});
        started(&mut tailer, None);
        assert_eq!(tailer.read(10).unwrap().len(), 1);
        std::fs::remove_file(&fixture.path).unwrap();
        assert!(tailer.read(10).unwrap().is_empty());
        assert!(tailer.is_started());
    }

    fn rotated(fixture: &Fixture, suffix: &str) -> PathBuf {
        let mut name = fixture.path.as_os_str().to_owned();
        name.push(suffix);
        PathBuf::from(name)
    }

    #[test]
    fn old_file_is_read_until_the_new_one_has_content() {
        let fixture = Fixture::new();
        fixture.append(b"old 1\n");
        let mut tailer = fixture.tailer(|_| {});
        started(&mut tailer, None);
        assert_eq!(lines(&tailer.read(10).unwrap()), [b"old 1"]);
        // logrotate renames and creates; the writer still holds the old descriptor.
        let mut writer = OpenOptions::new().append(true).open(&fixture.path).unwrap();
        std::fs::rename(&fixture.path, rotated(&fixture, ".1")).unwrap();
        fixture.append(b"");
        assert!(tailer.read(10).unwrap().is_empty(), "empty new file: stay");
        writer.write_all(b"old 2\n").unwrap();
        assert_eq!(lines(&tailer.read(10).unwrap()), [b"old 2"]);
        // SIGHUP: the writer reopens and writes to the new file.
        writer.write_all(b"old 3\n").unwrap();
        drop(writer);
        fixture.append(b"new 1\n");
        assert_eq!(lines(&tailer.read(10).unwrap()), [b"old 3"]);
        assert!(matches!(
            tailer.read(10).unwrap()[..],
            [TailItem::Rotated { .. }]
        ));
        started(&mut tailer, None);
        assert_eq!(lines(&tailer.read(10).unwrap()), [b"new 1"]);
    }

    #[test]
    fn copytruncate_finishes_the_copy_before_the_new_content() {
        let fixture = Fixture::new();
        fixture.append(b"old 1\n");
        let mut tailer = fixture.tailer(|_| {});
        started(&mut tailer, None);
        assert_eq!(lines(&tailer.read(10).unwrap()), [b"old 1"]);
        fixture.append(b"old 2\nold 3\n");
        std::fs::copy(&fixture.path, rotated(&fixture, ".1")).unwrap();
        OpenOptions::new()
            .write(true)
            .open(&fixture.path)
            .unwrap()
            .set_len(0)
            .unwrap();
        fixture.append(b"new 10\n");
        assert!(matches!(
            tailer.read(10).unwrap()[..],
            [TailItem::Truncated { .. }]
        ));
        assert_eq!(lines(&tailer.read(10).unwrap()), [&b"old 2"[..], b"old 3"]);
        assert!(matches!(
            tailer.read(10).unwrap()[..],
            [TailItem::Rotated { .. }]
        ));
        assert_eq!(started(&mut tailer, None), 0);
        assert_eq!(lines(&tailer.read(10).unwrap()), [b"new 10"]);
    }

    #[test]
    fn recover_rotated_finds_a_renamed_file_and_ignores_compressed_ones() {
        let fixture = Fixture::new();
        fixture.append(b"old 1\nold 2\n");
        let mut first = fixture.tailer(|_| {});
        let previous = first.identify().unwrap().unwrap();
        drop(first);
        std::fs::rename(&fixture.path, rotated(&fixture, ".1")).unwrap();
        std::fs::write(rotated(&fixture, ".2.gz"), b"old 1\n").unwrap();
        fixture.append(b"new 1\n");

        let mut tailer = fixture.tailer(|_| {});
        assert_eq!(
            tailer.recover_rotated(&previous, 6).unwrap(),
            Some(rotated(&fixture, ".1"))
        );
        assert_eq!(tailer.recover_rotated(&previous, 6).unwrap(), None, "once");
        assert_eq!(lines(&tailer.read(10).unwrap()), [b"old 2"]);
        assert!(matches!(
            tailer.read(10).unwrap()[..],
            [TailItem::Rotated { .. }]
        ));
        assert_eq!(started(&mut tailer, None), 0);
        assert_eq!(lines(&tailer.read(10).unwrap()), [b"new 1"]);
    }

    #[test]
    fn recover_rotated_does_nothing_when_the_file_is_still_at_the_path() {
        let fixture = Fixture::new();
        fixture.append(b"one\n");
        let mut first = fixture.tailer(|_| {});
        let previous = first.identify().unwrap().unwrap();
        let mut tailer = fixture.tailer(|_| {});
        assert_eq!(tailer.recover_rotated(&previous, 4).unwrap(), None);
        assert_eq!(started(&mut tailer, Some(4)), 4);
    }

    #[test]
    fn file_moved_away_and_back_is_continued() {
        let fixture = Fixture::new();
        fixture.append(b"one\n");
        let mut tailer = fixture.tailer(|_| {});
        started(&mut tailer, None);
        assert_eq!(lines(&tailer.read(10).unwrap()), [b"one"]);
        let away = fixture.path.with_file_name("elsewhere");
        std::fs::rename(&fixture.path, &away).unwrap();
        assert!(tailer.read(10).unwrap().is_empty());
        std::fs::rename(&away, &fixture.path).unwrap();
        fixture.append(b"two\n");
        assert_eq!(lines(&tailer.read(10).unwrap()), [b"two"]);
    }

    #[test]
    fn deleted_file_is_finished_then_a_new_one_is_read_from_its_start() {
        let fixture = Fixture::new();
        fixture.append(b"one\n");
        let mut tailer = fixture.tailer(|config| config.start_at = StartAt::End);
        started(&mut tailer, None);
        let mut writer = OpenOptions::new().append(true).open(&fixture.path).unwrap();
        std::fs::remove_file(&fixture.path).unwrap();
        writer.write_all(b"two\n").unwrap();
        drop(writer);
        assert_eq!(lines(&tailer.read(10).unwrap()), [b"two"]);
        assert!(tailer.read(10).unwrap().is_empty());
        fixture.append(b"three\n");
        assert!(matches!(
            tailer.read(10).unwrap()[..],
            [TailItem::Rotated { .. }]
        ));
        assert_eq!(
            started(&mut tailer, None),
            0,
            "start_at = end is for the first file only"
        );
        assert_eq!(lines(&tailer.read(10).unwrap()), [b"three"]);
    }

    #[test]
    fn several_rotations_while_behind_read_every_rotated_file_in_order() {
        let fixture = Fixture::new();
        fixture.append(b"a 1\n");
        let mut tailer = fixture.tailer(|_| {});
        started(&mut tailer, None);
        fixture.append(b"a 2\n");
        // Two rotations before the tailer looks again; logrotate shifts .1 to .2.
        std::fs::rename(&fixture.path, rotated(&fixture, ".1")).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        fixture.append(b"b 1\n");
        std::fs::rename(rotated(&fixture, ".1"), rotated(&fixture, ".2")).unwrap();
        std::fs::rename(&fixture.path, rotated(&fixture, ".1")).unwrap();
        std::thread::sleep(Duration::from_millis(20));
        fixture.append(b"c 1\n");
        let mut seen = Vec::new();
        for _ in 0..10 {
            if !tailer.is_started() {
                started(&mut tailer, None);
            }
            for line in lines(&tailer.read(10).unwrap()) {
                seen.push(String::from_utf8(line.to_vec()).unwrap());
            }
        }
        assert_eq!(seen, ["a 1", "a 2", "b 1", "c 1"]);
    }

    #[test]
    fn read_before_resume_returns_nothing() {
        let fixture = Fixture::new();
        fixture.append(b"line\n");
        let mut tailer = fixture.tailer(|_| {});
        assert!(tailer.identify().unwrap().is_some());
        assert!(tailer.read(10).unwrap().is_empty());
    }
}
