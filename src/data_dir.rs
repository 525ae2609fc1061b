//! The layout of the data dir, in one place: every command finds the index, the checkpoints,
//! the alert store, the quarantine, the spools and the secrets through [`DataDir`].

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context;

/// A data dir: what one Vigil process (or several roles on one host) keeps on disk.
///
/// ```text
/// <dir>/index/             the Tantivy index (vigil run, vigil index)
/// <dir>/checkpoints.redb   where each tailed file resumes (collector)
/// <dir>/alerts.redb        alerts, delivery outbox and rules engine state
/// <dir>/quarantine.jsonl   lines the collector refused, with the reason
/// <dir>/spool/             one spool file per socket or syslog receiver
/// <dir>/signing.key        envelope signing key (unless signing_key_file is set)
/// <dir>/redaction.key      key of the HMAC that replaces leaked plaintext
/// <dir>/api-token          the API's bearer token (unless one is configured)
/// ```
#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
}

impl DataDir {
    /// Uses `root`, creating it readable by its owner only (0700) when it does not exist.
    pub fn create(root: &Path) -> anyhow::Result<DataDir> {
        if !root.exists() {
            std::fs::create_dir_all(root)
                .with_context(|| format!("creating data dir {}", root.display()))?;
            std::fs::set_permissions(root, std::fs::Permissions::from_mode(0o700))
                .with_context(|| format!("setting the mode of {}", root.display()))?;
        }
        Ok(DataDir {
            root: root.to_owned(),
        })
    }

    /// The directory itself (the collector's checkpoint store lives at its top).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The search index.
    pub fn index(&self) -> PathBuf {
        self.root.join("index")
    }

    /// Alerts, outbox and engine state.
    pub fn alerts_store(&self) -> PathBuf {
        self.root.join("alerts.redb")
    }

    /// Lines the collector refused.
    pub fn quarantine(&self) -> PathBuf {
        self.root.join("quarantine.jsonl")
    }

    /// The spool of the receiver `kind` (`socket`, `syslog`) for `device`, its directory
    /// created when missing.
    pub fn spool(&self, kind: &str, device: &str) -> anyhow::Result<PathBuf> {
        let dir = self.root.join("spool");
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(dir.join(format!("{kind}-{device}.spool")))
    }

    /// The envelope signing key generated on first start.
    pub fn signing_key(&self) -> PathBuf {
        self.root.join("signing.key")
    }

    /// The key of the HMAC that replaces leaked plaintext before an event leaves the node.
    pub fn redaction_key(&self) -> PathBuf {
        self.root.join("redaction.key")
    }

    /// The API token generated on first start.
    pub fn api_token(&self) -> PathBuf {
        self.root.join("api-token")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_data_dir_is_private() {
        let dir = tempfile::tempdir().unwrap();
        let data = DataDir::create(&dir.path().join("a/b")).unwrap();
        let mode = std::fs::metadata(data.root()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        let spool = data.spool("socket", "main").unwrap();
        assert!(spool.parent().unwrap().is_dir());
        assert_eq!(spool.file_name().unwrap(), "socket-main.spool");
    }
}
