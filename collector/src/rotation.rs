//! Which files are rotated copies of a live file, and which files a file source names.
//!
//! One rule, used both by the [`crate::FileTailer`] (to find the copy logrotate left when it
//! needs to finish reading it) and by [`expand_file_pattern`] (to leave rotated copies out
//! when a pattern is expanded, since the tailer of the live file reads them itself): a
//! rotated copy sits in the same directory and its name is the live file's name followed by
//! something (`audit.log.1`, `audit.log-20261122`, `audit.log.2.gz`).

use std::path::{Path, PathBuf};

/// Whether `path` is a rotated copy of `live`: same directory, and its name continues `live`'s
/// name. Compressed copies count too; the tailer, which cannot read them, skips them itself.
pub fn is_rotated_copy(path: &Path, live: &Path) -> bool {
    let (Some(name), Some(live_name)) = (path.file_name(), live.file_name()) else {
        return false;
    };
    let (name, live_name) = (name.as_encoded_bytes(), live_name.as_encoded_bytes());
    path.parent() == live.parent() && name.len() > live_name.len() && name.starts_with(live_name)
}

/// Why a file source pattern names no file to tail.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PatternError {
    /// The pattern is not valid glob syntax.
    #[error("file source pattern {pattern:?} is not a valid pattern: {source}")]
    Invalid {
        /// The pattern as given.
        pattern: PathBuf,
        /// What is wrong with it.
        #[source]
        source: glob::PatternError,
    },
    /// The pattern is not valid UTF-8, which glob matching needs.
    #[error("file source pattern {pattern:?} is not valid UTF-8")]
    NotUnicode {
        /// The pattern as given.
        pattern: PathBuf,
    },
    /// No live file matches: refused so that a typo does not silently watch nothing.
    #[error("file source pattern {pattern:?} matches no file")]
    NoMatch {
        /// The pattern as given.
        pattern: PathBuf,
    },
}

/// The files a file source names, once, at start-up: a path without `*`, `?` or `[` as it is
/// (even if it does not exist yet: the tailer waits for it); a pattern expanded to the regular
/// files it matches, sorted, with the rotated copies of other matches left out (one collector
/// per live file; each reads its own rotated copies when it needs to).
pub fn expand_file_pattern(pattern: &Path) -> Result<Vec<PathBuf>, PatternError> {
    let is_pattern = pattern
        .as_os_str()
        .as_encoded_bytes()
        .iter()
        .any(|byte| matches!(byte, b'*' | b'?' | b'['));
    if !is_pattern {
        return Ok(vec![pattern.to_owned()]);
    }
    let text = pattern.to_str().ok_or_else(|| PatternError::NotUnicode {
        pattern: pattern.to_owned(),
    })?;
    let paths = glob::glob(text).map_err(|source| PatternError::Invalid {
        pattern: pattern.to_owned(),
        source,
    })?;
    // Entries that cannot be read (a directory without permission) are not files to tail.
    let mut matched: Vec<PathBuf> = paths
        .filter_map(Result::ok)
        .filter(|path| path.is_file())
        .collect();
    matched.sort();
    let live: Vec<PathBuf> = matched
        .iter()
        .filter(|path| {
            !matched
                .iter()
                .any(|other| other != *path && is_rotated_copy(path, other))
        })
        .cloned()
        .collect();
    if live.is_empty() {
        return Err(PatternError::NoMatch {
            pattern: pattern.to_owned(),
        });
    }
    Ok(live)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(paths: &[PathBuf]) -> Vec<String> {
        paths
            .iter()
            .map(|path| path.file_name().unwrap().to_string_lossy().into_owned())
            .collect()
    }

    #[test]
    fn globs_expand_to_live_files_only() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["a.log", "a.log.1", "a.log-2026.gz", "b.log", "notes.txt"] {
            std::fs::write(dir.path().join(name), "x\n").unwrap();
        }
        let got = expand_file_pattern(&dir.path().join("*.log*")).unwrap();
        assert_eq!(names(&got), ["a.log", "b.log"]);
        let plain = dir.path().join("missing.log");
        assert_eq!(expand_file_pattern(&plain).unwrap(), vec![plain]);
        let error = expand_file_pattern(&dir.path().join("*.json")).unwrap_err();
        assert!(matches!(error, PatternError::NoMatch { .. }), "{error:?}");
        assert!(error.to_string().contains("matches no file"), "{error}");
    }

    #[test]
    fn directories_and_bad_patterns_are_not_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub.log")).unwrap();
        std::fs::write(dir.path().join("z.log"), "x\n").unwrap();
        let got = expand_file_pattern(&dir.path().join("*.log")).unwrap();
        assert_eq!(names(&got), ["z.log"]);
        let error = expand_file_pattern(&dir.path().join("[z.log")).unwrap_err();
        assert!(matches!(error, PatternError::Invalid { .. }), "{error:?}");
    }

    #[test]
    fn rotated_copies_share_the_directory_and_extend_the_name() {
        let live = Path::new("/var/log/vault/audit.log");
        for rotated in ["audit.log.1", "audit.log-20261122", "audit.log.2.gz"] {
            assert!(
                is_rotated_copy(&live.with_file_name(rotated), live),
                "{rotated}"
            );
        }
        assert!(!is_rotated_copy(live, live));
        assert!(!is_rotated_copy(Path::new("/var/log/vault/audit.lo"), live));
        assert!(!is_rotated_copy(
            Path::new("/var/log/vault/other.log.1"),
            live
        ));
        assert!(!is_rotated_copy(Path::new("/var/log/audit.log.1"), live));
    }
}
