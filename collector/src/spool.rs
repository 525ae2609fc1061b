//! [`Spool`]: the local, append-only file between a receiver and the file collector.
//!
//! Vault refuses client requests when no audit device can write, so a receiver must never
//! push back on it. Receivers therefore append every line they get to a spool file and return
//! at once; a [`crate::FileCollector`] tails that file like any other, so checkpoints, end-to-end
//! acknowledgement and quarantine work exactly as for the file device.
//!
//! # Design: one file, trimmed behind the checkpoint by punching holes
//!
//! The spool is a single file that only ever grows in *apparent* size: offsets are stable
//! forever, so the tailer's offsets, the checkpoint and the file identity (device, inode and
//! head fingerprint) never change. Disk use is bounded by freeing the blocks behind the
//! acknowledged checkpoint with `fallocate(FALLOC_FL_PUNCH_HOLE)` (ext4, xfs, btrfs, tmpfs),
//! which makes them read as zeros and occupy no space. The first [`HEAD_KEEP_BYTES`] are
//! never punched because the file's identity is a fingerprint of its head. This was chosen
//! over rolled segment files because the existing tailer can then read the spool unchanged,
//! and a kill -9 at any moment leaves nothing to repair beyond a torn last line: there is no
//! rename to lose track of.
//!
//! # Bound and drop policy
//!
//! [`SpoolConfig::max_bytes`] bounds the bytes written and not yet acknowledged (what the
//! punched file occupies, give or take a block). When an append would exceed it the spool is
//! full and **the incoming line is dropped (the oldest data is kept)**: what is on disk is
//! already ordered ahead of it and the tailer cannot skip a range it has not read. Drops are
//! counted in [`SpoolStats`] and logged at most once per [`SpoolConfig::full_log_interval`],
//! with counts only: lines may hold secrets.
//!
//! # Crash safety
//!
//! Each line is written with one `write` on an `O_APPEND` descriptor, so a kill -9 leaves
//! whole lines in the page cache; only a power loss can tear the last one, and how much is
//! lost then is the [`FsyncPolicy`]'s choice. On open, a last line without its newline gets
//! one, so that a torn line stays a line of its own (the processor rejects it into
//! quarantine) instead of being glued to the next one.

use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use crate::checkpoint::{Checkpoint, CheckpointError};
use crate::tailer::{StartAt, TailerConfig};

/// Bytes at the head of the spool file that are never punched: the tailer fingerprints the
/// file's first line (up to its `fingerprint_bytes`), and a punched head would give the file a
/// new identity and lose its checkpoint.
pub const HEAD_KEEP_BYTES: u64 = 64 * 1024;

/// Holes are punched in whole blocks of this size; partial blocks are left alone.
const PUNCH_ALIGN: u64 = 4096;

/// When appends are made durable with `fdatasync`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// After every append, before the receiver takes the next line: nothing acknowledged to
    /// the sender is lost on power failure, at a large cost in throughput.
    Always,
    /// At most this long after an append, by [`Spool::run_maintenance`].
    Every(Duration),
    /// Never explicitly; the kernel writes back when it likes. Safe against a crash of the
    /// process (kill -9), not against a power loss.
    Never,
}

/// Why an fsync policy could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{0}`: expected an fsync policy `always`, `never` or a number of milliseconds like `200ms`"
)]
pub struct FsyncPolicyError(pub String);

impl FromStr for FsyncPolicy {
    type Err = FsyncPolicyError;

    /// `always`, `never`, or `<N>ms` for [`FsyncPolicy::Every`].
    fn from_str(input: &str) -> Result<Self, Self::Err> {
        match input {
            "always" => Ok(Self::Always),
            "never" => Ok(Self::Never),
            other => other
                .strip_suffix("ms")
                .and_then(|ms| ms.parse::<u64>().ok())
                .filter(|&ms| ms > 0)
                .map(|ms| Self::Every(Duration::from_millis(ms)))
                .ok_or_else(|| FsyncPolicyError(input.to_owned())),
        }
    }
}

/// How a spool is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpoolConfig {
    /// The spool file (one per receiver).
    pub path: PathBuf,
    /// Most bytes written and not yet acknowledged; appends beyond it are dropped.
    pub max_bytes: u64,
    /// When appends are synced.
    pub fsync: FsyncPolicy,
    /// Least time between two "spool full" log lines.
    pub full_log_interval: Duration,
    /// How often [`Spool::run_maintenance`] reads the checkpoint and trims behind it.
    pub trim_interval: Duration,
}

impl SpoolConfig {
    /// The defaults for `path`: 1 GiB, fsync every 200 ms, a "full" log line at most every
    /// 10 s, trimming every second.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            max_bytes: 1024 * 1024 * 1024,
            fsync: FsyncPolicy::Every(Duration::from_millis(200)),
            full_log_interval: Duration::from_secs(10),
            trim_interval: Duration::from_secs(1),
        }
    }
}

/// What can go wrong with a spool.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SpoolError {
    /// Opening, reading, writing or syncing the spool file failed.
    #[error("spool {path}: {source}")]
    Io {
        /// The spool file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// Reading the checkpoint to trim behind it failed.
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    /// A line handed to [`Spool::append`] contains a newline; it would become two lines.
    #[error("a spooled line must not contain a newline")]
    NewlineInLine,
}

/// Live counters of one spool.
#[derive(Debug, Default)]
pub struct SpoolStats {
    /// Bytes written and not yet acknowledged (what the spool holds on disk, roughly).
    pub spool_bytes: AtomicU64,
    /// Bytes of lines dropped because the spool was full or a write failed (newlines included).
    pub dropped_bytes: AtomicU64,
    /// Lines dropped because the spool was full or a write failed.
    pub dropped_lines: AtomicU64,
    /// Lines appended.
    pub appended_lines: AtomicU64,
    /// Bytes appended, newlines included.
    pub appended_bytes: AtomicU64,
    /// Offset up to which the collector acknowledged the spool.
    pub acked_offset: AtomicU64,
    /// Bytes freed by punching holes behind the acknowledged offset.
    pub trimmed_bytes: AtomicU64,
}

/// A copy of [`SpoolStats`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SpoolStatsSnapshot {
    /// See [`SpoolStats::spool_bytes`].
    pub spool_bytes: u64,
    /// See [`SpoolStats::dropped_bytes`].
    pub dropped_bytes: u64,
    /// See [`SpoolStats::dropped_lines`].
    pub dropped_lines: u64,
    /// See [`SpoolStats::appended_lines`].
    pub appended_lines: u64,
    /// See [`SpoolStats::appended_bytes`].
    pub appended_bytes: u64,
    /// See [`SpoolStats::acked_offset`].
    pub acked_offset: u64,
    /// See [`SpoolStats::trimmed_bytes`].
    pub trimmed_bytes: u64,
}

impl SpoolStats {
    /// Reads every counter.
    pub fn snapshot(&self) -> SpoolStatsSnapshot {
        let get = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        SpoolStatsSnapshot {
            spool_bytes: get(&self.spool_bytes),
            dropped_bytes: get(&self.dropped_bytes),
            dropped_lines: get(&self.dropped_lines),
            appended_lines: get(&self.appended_lines),
            appended_bytes: get(&self.appended_bytes),
            acked_offset: get(&self.acked_offset),
            trimmed_bytes: get(&self.trimmed_bytes),
        }
    }
}

/// What an append did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// Lines written.
    pub written: usize,
    /// Lines dropped (spool full, or the write failed).
    pub dropped: usize,
}

/// An append-only spool file; cheap to clone, every clone appends to the same file. See the
/// module documentation.
#[derive(Debug, Clone)]
pub struct Spool {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: SpoolConfig,
    state: Mutex<State>,
    /// A second descriptor for fsync, so that syncing never holds the append lock.
    sync_handle: File,
    /// Set by appends, cleared by the periodic sync.
    dirty: AtomicBool,
    stats: Arc<SpoolStats>,
}

#[derive(Debug)]
struct State {
    file: File,
    /// Length of the file: where the next line goes.
    write_pos: u64,
    /// Offset up to which the collector acknowledged.
    acked: u64,
    /// Offset up to which holes were punched.
    punched_to: u64,
    /// False once the filesystem refused to punch holes (logged once).
    punch_supported: bool,
    /// Drops since the last "full" log line, and when it was written.
    unlogged_drops: u64,
    unlogged_drop_bytes: u64,
    last_full_log: Option<Instant>,
}

impl Spool {
    /// Opens (or creates, with mode 0600) the spool file and its directory.
    ///
    /// With a `checkpoint`, the acknowledged offset stored there for this very file is where
    /// the bound starts counting; without one (or with no entry), everything in the file
    /// counts as unacknowledged until the first [`Spool::acknowledge`].
    pub fn open(config: SpoolConfig, checkpoint: Option<&Checkpoint>) -> Result<Self, SpoolError> {
        let io_error = |source| SpoolError::Io {
            path: config.path.clone(),
            source,
        };
        if let Some(parent) = config
            .path
            .parent()
            .filter(|parent| !parent.as_os_str().is_empty())
        {
            std::fs::create_dir_all(parent).map_err(io_error)?;
        }
        let mut file = crate::private_file::open_append(&config.path, true).map_err(io_error)?;
        let metadata = file.metadata().map_err(io_error)?;
        let mut write_pos = metadata.len();
        if write_pos > 0 {
            let mut last = [0u8; 1];
            file.read_exact_at(&mut last, write_pos - 1)
                .map_err(io_error)?;
            if last[0] != b'\n' {
                // A torn last line (power loss): end it here, so that it stays a line of its
                // own rather than the head of the next one.
                tracing::warn!(
                    path = %config.path.display(),
                    offset = write_pos,
                    "spool ends with a partial line; terminating it (it will be quarantined)"
                );
                file.write_all(b"\n").map_err(io_error)?;
                write_pos += 1;
            }
        }
        let acked = match checkpoint {
            Some(checkpoint) => acked_in(checkpoint, &config.path, &metadata)?
                .unwrap_or(0)
                .min(write_pos),
            None => 0,
        };
        let sync_handle = file.try_clone().map_err(io_error)?;
        let stats = Arc::new(SpoolStats::default());
        stats
            .spool_bytes
            .store(write_pos - acked, Ordering::Relaxed);
        stats.acked_offset.store(acked, Ordering::Relaxed);
        let spool = Self {
            inner: Arc::new(Inner {
                config,
                state: Mutex::new(State {
                    file,
                    write_pos,
                    acked,
                    punched_to: HEAD_KEEP_BYTES,
                    punch_supported: true,
                    unlogged_drops: 0,
                    unlogged_drop_bytes: 0,
                    last_full_log: None,
                }),
                sync_handle,
                dirty: AtomicBool::new(false),
                stats,
            }),
        };
        // Free what a previous run acknowledged but had not trimmed yet.
        spool.acknowledge(acked)?;
        Ok(spool)
    }

    /// The spool file.
    pub fn path(&self) -> &Path {
        &self.inner.config.path
    }

    /// The configuration the spool was opened with.
    pub fn config(&self) -> &SpoolConfig {
        &self.inner.config
    }

    /// The spool's counters; they stay readable while it is used.
    pub fn stats(&self) -> Arc<SpoolStats> {
        Arc::clone(&self.inner.stats)
    }

    /// How a [`crate::FileCollector`] should tail this spool: from its beginning (a spool's
    /// every line is new), polling every 20 ms because a spool is written continuously.
    pub fn tailer_config(&self) -> TailerConfig {
        let mut config = TailerConfig::new(self.path());
        config.start_at = StartAt::Beginning;
        config.poll_interval = Duration::from_millis(20);
        config
    }

    /// Appends one line (without its newline; the spool adds it). See [`Spool::append_lines`].
    pub fn append(&self, line: &[u8]) -> Result<Appended, SpoolError> {
        self.append_lines(&[line])
    }

    /// Appends whole lines (each without its newline) with one write; never waits for the
    /// collector. Lines that do not fit under the bound are dropped and counted (see the
    /// module documentation); empty lines are skipped.
    ///
    /// Errors only for a line holding a newline (nothing is written then). A failed write is
    /// not an error: the sender must not be refused, so its lines are counted as dropped and
    /// logged instead.
    pub fn append_lines(&self, lines: &[&[u8]]) -> Result<Appended, SpoolError> {
        if lines.iter().any(|line| line.contains(&b'\n')) {
            return Err(SpoolError::NewlineInLine);
        }
        let inner = &*self.inner;
        let mut state = inner.lock();
        let mut buffer = Vec::with_capacity(lines.iter().map(|line| line.len() + 1).sum());
        let mut written = 0usize;
        let mut dropped = 0usize;
        let mut dropped_bytes = 0u64;
        let mut pending = state.write_pos - state.acked;
        for line in lines.iter().filter(|line| !line.is_empty()) {
            let size = line.len() as u64 + 1;
            if pending + buffer.len() as u64 + size > inner.config.max_bytes {
                dropped += 1;
                dropped_bytes += size;
                continue;
            }
            buffer.extend_from_slice(line);
            buffer.push(b'\n');
            written += 1;
        }
        if !buffer.is_empty() {
            if let Err(error) = state.file.write_all(&buffer) {
                // Cut back to the last whole line so that a partial write does not glue a
                // fragment to the next line.
                let _ = state.file.set_len(state.write_pos);
                tracing::error!(
                    path = %inner.config.path.display(),
                    lines = written,
                    bytes = buffer.len(),
                    %error,
                    "cannot write to the spool; lines dropped"
                );
                dropped += written;
                dropped_bytes += buffer.len() as u64;
                written = 0;
                buffer.clear();
            }
        }
        let bytes = buffer.len() as u64;
        state.write_pos += bytes;
        pending += bytes;
        let stats = &inner.stats;
        stats.spool_bytes.store(pending, Ordering::Relaxed);
        stats
            .appended_lines
            .fetch_add(written as u64, Ordering::Relaxed);
        stats.appended_bytes.fetch_add(bytes, Ordering::Relaxed);
        if dropped > 0 {
            stats
                .dropped_lines
                .fetch_add(dropped as u64, Ordering::Relaxed);
            stats
                .dropped_bytes
                .fetch_add(dropped_bytes, Ordering::Relaxed);
            state.unlogged_drops += dropped as u64;
            state.unlogged_drop_bytes += dropped_bytes;
            let now = Instant::now();
            if state
                .last_full_log
                .is_none_or(|last| now.duration_since(last) >= inner.config.full_log_interval)
            {
                tracing::warn!(
                    path = %inner.config.path.display(),
                    max_bytes = inner.config.max_bytes,
                    dropped_lines = state.unlogged_drops,
                    dropped_bytes = state.unlogged_drop_bytes,
                    "spool full: dropping incoming lines until the collector catches up"
                );
                state.last_full_log = Some(now);
                state.unlogged_drops = 0;
                state.unlogged_drop_bytes = 0;
            }
        }
        if bytes > 0 {
            match inner.config.fsync {
                FsyncPolicy::Always => {
                    let result = state.file.sync_data();
                    drop(state);
                    if let Err(error) = result {
                        tracing::error!(path = %inner.config.path.display(), %error, "spool fsync failed");
                    }
                }
                FsyncPolicy::Every(_) => inner.dirty.store(true, Ordering::Relaxed),
                FsyncPolicy::Never => {}
            }
        }
        Ok(Appended { written, dropped })
    }

    /// Makes every append so far durable.
    pub fn sync(&self) -> Result<(), SpoolError> {
        self.inner.dirty.store(false, Ordering::Relaxed);
        self.inner
            .sync_handle
            .sync_data()
            .map_err(|source| self.io_error(source))
    }

    /// Records that the collector acknowledged everything before `offset` and frees the disk
    /// blocks behind it. Offsets below an earlier acknowledgement are ignored.
    pub fn acknowledge(&self, offset: u64) -> Result<(), SpoolError> {
        let inner = &*self.inner;
        let mut state = inner.lock();
        let offset = offset.min(state.write_pos);
        if offset > state.acked {
            state.acked = offset;
        }
        let acked = state.acked;
        inner.stats.acked_offset.store(acked, Ordering::Relaxed);
        inner
            .stats
            .spool_bytes
            .store(state.write_pos - acked, Ordering::Relaxed);
        let punch_end = acked / PUNCH_ALIGN * PUNCH_ALIGN;
        if !state.punch_supported || punch_end <= state.punched_to {
            return Ok(());
        }
        let start = state.punched_to;
        match punch_hole(&state.file, start, punch_end - start) {
            Ok(()) => {
                state.punched_to = punch_end;
                inner
                    .stats
                    .trimmed_bytes
                    .fetch_add(punch_end - start, Ordering::Relaxed);
                Ok(())
            }
            Err(error) if error.raw_os_error() == Some(libc::EOPNOTSUPP) => {
                state.punch_supported = false;
                tracing::warn!(
                    path = %inner.config.path.display(),
                    "the filesystem cannot punch holes: the spool file will not shrink \
                     (the bound on unacknowledged bytes still holds)"
                );
                Ok(())
            }
            Err(error) => Err(self.io_error(error)),
        }
    }

    /// Reads the acknowledged offset of this spool file from `checkpoint` and trims behind
    /// it; returns that offset.
    pub fn acknowledge_from(&self, checkpoint: &Checkpoint) -> Result<u64, SpoolError> {
        let metadata = self
            .inner
            .sync_handle
            .metadata()
            .map_err(|source| self.io_error(source))?;
        if let Some(offset) = acked_in(checkpoint, self.path(), &metadata)? {
            self.acknowledge(offset)?;
        }
        Ok(self.inner.lock().acked)
    }

    /// Bytes on disk, as the filesystem counts allocated blocks (for tests and diagnostics).
    pub fn allocated_bytes(&self) -> Result<u64, SpoolError> {
        let metadata = self
            .inner
            .sync_handle
            .metadata()
            .map_err(|source| self.io_error(source))?;
        Ok(metadata.blocks() * 512)
    }

    /// Runs the background work until `shutdown`: the periodic fsync of
    /// [`FsyncPolicy::Every`], and trimming behind the offset `checkpoint` holds for this
    /// file every [`SpoolConfig::trim_interval`]. Syncs once more before returning.
    pub async fn run_maintenance(
        self,
        checkpoint: Option<Arc<Checkpoint>>,
        shutdown: CancellationToken,
    ) -> Result<(), SpoolError> {
        let sync_every = match self.inner.config.fsync {
            FsyncPolicy::Every(every) => Some(every),
            FsyncPolicy::Always | FsyncPolicy::Never => None,
        };
        let tick = sync_every
            .map_or(self.inner.config.trim_interval, |every| {
                every.min(self.inner.config.trim_interval)
            })
            .max(Duration::from_millis(1));
        let mut last_trim = Instant::now();
        loop {
            let stop = tokio::select! {
                () = shutdown.cancelled() => true,
                () = tokio::time::sleep(tick) => false,
            };
            let spool = self.clone();
            let trim = checkpoint
                .as_ref()
                .filter(|_| stop || last_trim.elapsed() >= self.inner.config.trim_interval)
                .cloned();
            if trim.is_some() {
                last_trim = Instant::now();
            }
            let result = tokio::task::spawn_blocking(move || {
                if spool.inner.dirty.load(Ordering::Relaxed) && sync_every.is_some() || stop {
                    spool.sync()?;
                }
                if let Some(checkpoint) = trim {
                    spool.acknowledge_from(&checkpoint)?;
                }
                Ok::<(), SpoolError>(())
            })
            .await;
            match result {
                Ok(Ok(())) => {}
                Ok(Err(error)) => {
                    // Trimming and syncing are retried on the next tick; receivers go on.
                    tracing::error!(path = %self.path().display(), %error, "spool maintenance failed");
                }
                Err(error) => {
                    tracing::error!(path = %self.path().display(), %error, "spool maintenance task failed");
                }
            }
            if stop {
                return Ok(());
            }
        }
    }

    fn io_error(&self, source: io::Error) -> SpoolError {
        SpoolError::Io {
            path: self.inner.config.path.clone(),
            source,
        }
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Every state change is a few assignments after the write; a panic cannot leave it
        // half done in a way that matters.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The acknowledged offset `checkpoint` holds for the file at `path`, if the checkpoint's
/// file there is this very file (same device and inode).
fn acked_in(
    checkpoint: &Checkpoint,
    path: &Path,
    metadata: &std::fs::Metadata,
) -> Result<Option<u64>, SpoolError> {
    let Some(identity) = checkpoint.identity_at(path)? else {
        return Ok(None);
    };
    if (identity.device, identity.inode) != (metadata.dev(), metadata.ino()) {
        return Ok(None);
    }
    Ok(checkpoint.offset(&identity)?)
}

/// Frees `len` bytes at `offset` without changing the file's size.
fn punch_hole(file: &File, offset: u64, len: u64) -> io::Result<()> {
    let (Ok(offset), Ok(len)) = (libc::off_t::try_from(offset), libc::off_t::try_from(len)) else {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    };
    // SAFETY: fallocate only reads its integer arguments; the descriptor is owned by `file`
    // and stays open for the duration of the call.
    let result = unsafe {
        libc::fallocate(
            file.as_raw_fd(),
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            offset,
            len,
        )
    };
    if result == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path) -> SpoolConfig {
        let mut config = SpoolConfig::new(dir.join("spool").join("socket.spool"));
        config.fsync = FsyncPolicy::Never;
        config
    }

    #[test]
    fn appends_whole_lines_and_skips_empty_ones() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(config(dir.path()), None).unwrap();
        let appended = spool.append_lines(&[b"one", b"", b"two"]).unwrap();
        assert_eq!(
            appended,
            Appended {
                written: 2,
                dropped: 0
            }
        );
        spool.append(b"three").unwrap();
        assert!(matches!(
            spool.append(b"a\nb"),
            Err(SpoolError::NewlineInLine)
        ));
        assert_eq!(
            std::fs::read(spool.path()).unwrap(),
            b"one\ntwo\nthree\n".to_vec()
        );
        let stats = spool.stats().snapshot();
        assert_eq!(stats.appended_lines, 3);
        assert_eq!(stats.spool_bytes, 14);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(spool.path())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "the spool holds audit lines: private");
    }

    #[test]
    fn full_spool_drops_the_newest_and_counts() {
        let dir = tempfile::tempdir().unwrap();
        let mut config = config(dir.path());
        config.max_bytes = 10;
        let spool = Spool::open(config, None).unwrap();
        assert_eq!(spool.append(b"12345678").unwrap().written, 1); // 9 bytes
        assert_eq!(spool.append(b"xy").unwrap().dropped, 1);
        assert_eq!(spool.append(b"").unwrap().dropped, 0);
        let stats = spool.stats().snapshot();
        assert_eq!(
            (stats.dropped_lines, stats.dropped_bytes, stats.spool_bytes),
            (1, 3, 9)
        );
        // Acknowledging makes room again.
        spool.acknowledge(9).unwrap();
        assert_eq!(spool.append(b"xy").unwrap().written, 1);
        assert_eq!(std::fs::read(spool.path()).unwrap(), b"12345678\nxy\n");
    }

    #[test]
    fn torn_last_line_is_terminated_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path());
        std::fs::create_dir_all(config.path.parent().unwrap()).unwrap();
        std::fs::write(&config.path, b"whole\ntor").unwrap();
        let spool = Spool::open(config, None).unwrap();
        spool.append(b"next").unwrap();
        assert_eq!(
            std::fs::read(spool.path()).unwrap(),
            b"whole\ntor\nnext\n".to_vec()
        );
    }

    #[test]
    fn acknowledged_blocks_are_freed_but_offsets_stay() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(config(dir.path()), None).unwrap();
        let line = vec![b'a'; 1023];
        for _ in 0..1024 {
            spool.append(&line).unwrap();
        }
        let len = 1024 * 1024;
        assert_eq!(spool.stats().snapshot().spool_bytes, len);
        spool.acknowledge(len - 1024).unwrap();
        let stats = spool.stats().snapshot();
        assert_eq!(stats.spool_bytes, 1024);
        assert_eq!(std::fs::metadata(spool.path()).unwrap().len(), len);
        if stats.trimmed_bytes > 0 {
            // Filesystems that punch holes: the head and the tail stay, the rest is gone.
            assert_eq!(
                stats.trimmed_bytes,
                (len - 1024) / PUNCH_ALIGN * PUNCH_ALIGN - HEAD_KEEP_BYTES
            );
            assert!(spool.allocated_bytes().unwrap() < len / 2);
            let bytes = std::fs::read(spool.path()).unwrap();
            assert_eq!(&bytes[..1023], &line[..]);
            assert_eq!(bytes[HEAD_KEEP_BYTES as usize], 0);
            assert_eq!(
                bytes[(stats.trimmed_bytes + HEAD_KEEP_BYTES - 1) as usize],
                0
            );
            assert_eq!(bytes[(len - 1024) as usize], b'a');
        }
    }

    #[test]
    fn fsync_policy_parses() {
        assert_eq!("always".parse(), Ok(FsyncPolicy::Always));
        assert_eq!("never".parse(), Ok(FsyncPolicy::Never));
        assert_eq!(
            "250ms".parse(),
            Ok(FsyncPolicy::Every(Duration::from_millis(250)))
        );
        assert!("0ms".parse::<FsyncPolicy>().is_err());
        assert!("sometimes".parse::<FsyncPolicy>().is_err());
    }
}
