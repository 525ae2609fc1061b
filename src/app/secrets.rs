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

/// Reads the secret in `path`, or generates 32 random bytes, writes them as hex with mode
/// 0600 and returns them. Refuses a file that others can read.
pub fn load_or_create(path: &Path) -> anyhow::Result<StoredSecret> {
    match std::fs::read_to_string(path) {
        Ok(text) => {
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
            Ok(StoredSecret {
                value,
                created: false,
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut bytes = [0u8; 32];
            rand::rng().fill_bytes(&mut bytes);
            let value = hex::encode(bytes);
            let opened = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path);
            let mut file = match opened {
                // Another Vigil process sharing the data dir (`vigil collect` beside
                // `vigil index`) made it first: use theirs, once they have written it.
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    std::thread::sleep(std::time::Duration::from_millis(200));
                    return load_or_create(path);
                }
                other => other.with_context(|| format!("creating {}", path.display()))?,
            };
            writeln!(file, "{value}")?;
            file.sync_all()?;
            Ok(StoredSecret {
                value,
                created: true,
            })
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
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
    }
}
