//! Files only Vigil's user may read: everything the collector writes (spool, quarantine,
//! checkpoints) can hold audit data or tokens, so it is created with mode 0600, and a file
//! left with a looser mode by an older version is tightened when it is opened again.

use std::fs::{File, OpenOptions, Permissions};
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// The mode of every file the collector creates.
pub const PRIVATE_FILE_MODE: u32 = 0o600;

/// Opens `path` for appending (and reading, with `read`), creating it with mode 0600.
pub(crate) fn open_append(path: &Path, read: bool) -> io::Result<File> {
    let file = OpenOptions::new()
        .read(read)
        .append(true)
        .create(true)
        .mode(PRIVATE_FILE_MODE)
        .open(path)?;
    tighten(&file, path);
    Ok(file)
}

/// Creates `path` empty with mode 0600 if it does not exist (so that a library creating it
/// later, like redb, finds it private), and tightens it if it does.
pub(crate) fn ensure_private(path: &Path) -> io::Result<()> {
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(PRIVATE_FILE_MODE)
        .open(path)?;
    tighten(&file, path);
    Ok(())
}

/// Drops group and other permissions from an existing file, best effort: a file we can
/// write but do not own cannot be changed, and refusing to start over it would be worse.
fn tighten(file: &File, path: &Path) {
    let Ok(metadata) = file.metadata() else {
        return;
    };
    let mode = metadata.permissions().mode() & 0o777;
    if mode & 0o077 == 0 {
        return;
    }
    if let Err(error) = file.set_permissions(Permissions::from_mode(mode & 0o700)) {
        tracing::warn!(
            path = %path.display(),
            mode = format!("{mode:o}"),
            %error,
            "cannot make the file private to its owner"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn new_files_are_0600_and_loose_ones_are_tightened() {
        let dir = tempfile::tempdir().unwrap();
        let created = dir.path().join("created");
        drop(open_append(&created, false).unwrap());
        assert_eq!(mode(&created), 0o600);

        let loose = dir.path().join("loose");
        std::fs::write(&loose, b"x").unwrap();
        std::fs::set_permissions(&loose, Permissions::from_mode(0o644)).unwrap();
        ensure_private(&loose).unwrap();
        assert_eq!(mode(&loose), 0o600);
        assert_eq!(std::fs::read(&loose).unwrap(), b"x", "never truncated");
    }
}
