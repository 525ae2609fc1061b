//! [`Checkpoint`]: where each tailed file resumes after a restart, kept in redb.
//!
//! Two tables live in `<data dir>/checkpoints.redb`:
//!
//! - `offsets`: file identity (see [`FileIdentity::key`]) → offset of the next unread byte;
//! - `paths`: tailed path → identity of the file last read there, so that a different file
//!   found at the same path is recognised as a rotated or replaced one.
//!
//! The collector writes an offset only after every record before it was acknowledged
//! downstream, and each write is a durable redb transaction: after a crash, the collector
//! resumes exactly where the acknowledged data ends.

use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use redb::{Database, ReadableDatabase, TableDefinition};

use crate::identity::FileIdentity;

const OFFSETS: TableDefinition<&str, u64> = TableDefinition::new("offsets");
const PATHS: TableDefinition<&[u8], &str> = TableDefinition::new("paths");

/// What can go wrong with the checkpoint store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CheckpointError {
    /// The data directory could not be created.
    #[error("cannot create the data directory {path}: {source}")]
    CreateDir {
        /// The data directory.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The database file could not be created (mode 0600) or made private.
    #[error("cannot create the checkpoint file {path}: {source}")]
    CreateFile {
        /// The database file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// redb failed (opening, reading or committing).
    #[error("checkpoint store: {0}")]
    Store(#[from] redb::Error),
    /// A stored identity could not be parsed: the store was written by something else.
    #[error("checkpoint store holds a malformed file identity `{0}`")]
    MalformedIdentity(String),
}

/// The durable map from file identity to resume offset; see the module documentation.
#[derive(Debug)]
pub struct Checkpoint {
    db: Database,
}

impl Checkpoint {
    /// Name of the database file inside the data directory.
    pub const FILE_NAME: &'static str = "checkpoints.redb";

    /// Opens (or creates) the store in `data_dir`, creating the directory if needed. The file
    /// is created with mode 0600 (and tightened to it if it was looser).
    ///
    /// redb locks the file: one process, and one `Checkpoint`, per data directory.
    pub fn open(data_dir: &Path) -> Result<Self, CheckpointError> {
        std::fs::create_dir_all(data_dir).map_err(|source| CheckpointError::CreateDir {
            path: data_dir.to_owned(),
            source,
        })?;
        let path = data_dir.join(Self::FILE_NAME);
        // Created private before redb opens it: redb would create it with the umask's mode.
        crate::private_file::ensure_private(&path).map_err(|source| {
            CheckpointError::CreateFile {
                path: path.clone(),
                source,
            }
        })?;
        let db = Database::create(&path).map_err(redb::Error::from)?;
        // Create the tables up front so that readers never meet a missing table.
        let txn = db.begin_write().map_err(redb::Error::from)?;
        txn.open_table(OFFSETS).map_err(redb::Error::from)?;
        txn.open_table(PATHS).map_err(redb::Error::from)?;
        txn.commit().map_err(redb::Error::from)?;
        Ok(Self { db })
    }

    /// The stored resume offset of `identity`, if any.
    pub fn offset(&self, identity: &FileIdentity) -> Result<Option<u64>, CheckpointError> {
        let txn = self.db.begin_read().map_err(redb::Error::from)?;
        let table = txn.open_table(OFFSETS).map_err(redb::Error::from)?;
        let offset = table
            .get(identity.key().as_str())
            .map_err(redb::Error::from)?
            .map(|guard| guard.value());
        Ok(offset)
    }

    /// The identity of the file last checkpointed at `path`, if any.
    pub fn identity_at(&self, path: &Path) -> Result<Option<FileIdentity>, CheckpointError> {
        let txn = self.db.begin_read().map_err(redb::Error::from)?;
        let table = txn.open_table(PATHS).map_err(redb::Error::from)?;
        let Some(guard) = table
            .get(path.as_os_str().as_bytes())
            .map_err(redb::Error::from)?
        else {
            return Ok(None);
        };
        let key = guard.value();
        FileIdentity::from_key(key)
            .map(Some)
            .ok_or_else(|| CheckpointError::MalformedIdentity(key.to_owned()))
    }

    /// Durably records that the file `identity`, read at `path`, resumes at `offset`.
    pub fn commit(
        &self,
        path: &Path,
        identity: &FileIdentity,
        offset: u64,
    ) -> Result<(), CheckpointError> {
        let key = identity.key();
        let txn = self.db.begin_write().map_err(redb::Error::from)?;
        {
            let mut offsets = txn.open_table(OFFSETS).map_err(redb::Error::from)?;
            offsets
                .insert(key.as_str(), offset)
                .map_err(redb::Error::from)?;
            let mut paths = txn.open_table(PATHS).map_err(redb::Error::from)?;
            paths
                .insert(path.as_os_str().as_bytes(), key.as_str())
                .map_err(redb::Error::from)?;
        }
        txn.commit().map_err(redb::Error::from)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(fingerprint: u128) -> FileIdentity {
        FileIdentity {
            device: 1,
            inode: 2,
            fingerprint,
        }
    }

    #[test]
    fn offsets_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = Path::new("/var/log/vault/audit.log");
        {
            let store = Checkpoint::open(&dir.path().join("data")).unwrap();
            assert_eq!(store.offset(&identity(7)).unwrap(), None);
            assert_eq!(store.identity_at(path).unwrap(), None);
            store.commit(path, &identity(7), 10).unwrap();
            store.commit(path, &identity(7), 42).unwrap();
        }
        let store = Checkpoint::open(&dir.path().join("data")).unwrap();
        assert_eq!(store.offset(&identity(7)).unwrap(), Some(42));
        assert_eq!(store.offset(&identity(8)).unwrap(), None);
        assert_eq!(store.identity_at(path).unwrap(), Some(identity(7)));
    }

    #[test]
    fn the_database_file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(Checkpoint::FILE_NAME);
        let store = Checkpoint::open(dir.path()).unwrap();
        store.commit(Path::new("a"), &identity(1), 1).unwrap();
        let mode = |file: &Path| std::fs::metadata(file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&file), 0o600);
        drop(store);
        // A file left readable by an older version is tightened, and its content kept.
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
        let store = Checkpoint::open(dir.path()).unwrap();
        assert_eq!(mode(&file), 0o600);
        assert_eq!(store.offset(&identity(1)).unwrap(), Some(1));
    }

    #[test]
    fn path_follows_the_latest_file() {
        let dir = tempfile::tempdir().unwrap();
        let store = Checkpoint::open(dir.path()).unwrap();
        let path = Path::new("audit.log");
        store.commit(path, &identity(1), 100).unwrap();
        store.commit(path, &identity(2), 5).unwrap();
        assert_eq!(store.identity_at(path).unwrap(), Some(identity(2)));
        assert_eq!(store.offset(&identity(1)).unwrap(), Some(100));
    }
}
