//! Secrets Vigil generates for itself on first start and keeps in the data dir, readable by
//! its owner only: the API token, the envelope signing key, the redaction key.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use anyhow::{bail, Context};
use rand::RngCore;

/// A secret read from or written to a file.
#[derive(Debug)]
pub struct StoredSecret {
    /// The secret, as stored (hex text).
    pub value: String,
    /// Whether it was generated just now.
    pub created: bool,
}

/// Reads the secret in `path`: trimmed, not empty, and readable by its owner only.
pub fn read(path: &Path) -> anyhow::Result<String> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let mode = std::fs::metadata(path)?.permissions().mode();
    if mode & 0o077 != 0 {
        bail!(
            "{} is readable by others (mode {:o}); run chmod 600 on it",
            path.display(),
            mode & 0o777
        );
    }
    let value = text.trim().to_owned();
    if value.is_empty() {
        bail!("{} is empty", path.display());
    }
    Ok(value)
}

/// Reads the secret in `path`, or generates 32 random bytes and stores them as hex with mode
/// 0600, atomically: the file appears whole or not at all, and when two processes sharing
/// the data dir race (`vigil collect` beside `vigil index`), both end up with the winner's.
pub fn load_or_create(path: &Path) -> anyhow::Result<StoredSecret> {
    if path.exists() {
        return Ok(StoredSecret {
            value: read(path)?,
            created: false,
        });
    }
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let value = hex::encode(bytes);
    let dir = path.parent().unwrap_or(Path::new("."));
    // A name of its own per attempt, so racing writers never share a temporary file.
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        path.file_name()
            .map_or_else(|| "secret".into(), |n| n.to_string_lossy()),
        hex::encode(rand::random::<[u8; 8]>())
    ));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    writeln!(file, "{value}")?;
    file.sync_all()?;
    drop(file);
    // A hard link fails if the name exists: the first writer wins, nobody overwrites.
    let linked = std::fs::hard_link(&tmp, path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(StoredSecret {
            value,
            created: true,
        }),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(StoredSecret {
            value: read(path)?,
            created: false,
        }),
        Err(e) => Err(e).with_context(|| format!("creating {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_once_then_read_back_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("api-token");
        let first = load_or_create(&path).unwrap();
        assert!(first.created);
        assert_eq!(first.value.len(), 64);
        assert_eq!(
            std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let again = load_or_create(&path).unwrap();
        assert!(!again.created);
        assert_eq!(again.value, first.value);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(load_or_create(&path)
            .unwrap_err()
            .to_string()
            .contains("chmod 600"));
        assert!(read(&path).unwrap_err().to_string().contains("chmod 600"));
    }

    #[test]
    fn racing_creators_agree_on_one_secret_and_leave_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("signing.key");
        let values: Vec<String> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..8)
                .map(|_| s.spawn(|| load_or_create(&path).unwrap()))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap().value)
                .collect()
        });
        assert!(values.iter().all(|v| *v == values[0]), "{values:?}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
