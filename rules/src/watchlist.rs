//! Watch lists: named sets of values (mostly audit HMACs of tokens and accessors) that rules
//! reach through `|expand` placeholders such as `%honeytokens%`.
//!
//! HMACs depend on each audit device's salt, so a list can hold entries for one device
//! only; entries without a device apply to every device. The file format is what
//! `vigil hash` prints: one value a line; blank lines and `#` comments are skipped.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::str::FromStr;

use crate::error::LoadError;

/// One named list.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WatchList {
    any_device: BTreeSet<String>,
    per_device: BTreeMap<String, BTreeSet<String>>,
}

impl WatchList {
    /// Whether `value` is on the list for `device` (case-insensitive: HMACs are hex).
    pub fn contains(&self, device: &str, value: &str) -> bool {
        let value = value.to_ascii_lowercase();
        self.any_device.contains(&value)
            || self
                .per_device
                .get(device)
                .is_some_and(|set| set.contains(&value))
    }

    /// Every entry that applies to `device`.
    pub fn entries<'a>(&'a self, device: &str) -> impl Iterator<Item = &'a str> + 'a {
        let own = self.per_device.get(device).into_iter().flatten();
        self.any_device.iter().chain(own).map(String::as_str)
    }

    /// Number of entries over all devices.
    pub fn len(&self) -> usize {
        self.any_device.len() + self.per_device.values().map(BTreeSet::len).sum::<usize>()
    }

    /// Whether the list has no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A watch list named on the command line: `NAME=FILE` (for every device) or
/// `NAME@DEVICE=FILE` (entries for one audit device, whose salt the HMACs were made with).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchListSpec {
    /// The list's name, as rules refer to it (`%NAME%`).
    pub name: String,
    /// The device the entries apply to; `None` for every device.
    pub device: Option<String>,
    /// The list file.
    pub file: PathBuf,
}

/// A watch list spec that is not `NAME=FILE` or `NAME@DEVICE=FILE`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("watch list {spec:?}: expected NAME=FILE or NAME@DEVICE=FILE")]
pub struct BadWatchListSpec {
    /// The spec as given.
    pub spec: String,
}

impl FromStr for WatchListSpec {
    type Err = BadWatchListSpec;

    fn from_str(spec: &str) -> Result<WatchListSpec, BadWatchListSpec> {
        let bad = || BadWatchListSpec {
            spec: spec.to_owned(),
        };
        let (name, file) = spec.split_once('=').ok_or_else(bad)?;
        let (name, device) = match name.split_once('@') {
            Some((name, device)) => (name, Some(device)),
            None => (name, None),
        };
        if name.is_empty() || file.is_empty() || device.is_some_and(str::is_empty) {
            return Err(bad());
        }
        Ok(WatchListSpec {
            name: name.to_owned(),
            device: device.map(str::to_owned),
            file: PathBuf::from(file),
        })
    }
}

/// Every watch list, by name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WatchLists {
    lists: BTreeMap<String, WatchList>,
}

impl WatchLists {
    /// No lists.
    pub fn new() -> WatchLists {
        WatchLists::default()
    }

    /// Adds one value to list `name`, for `device` only or (with `None`) for every device.
    pub fn insert(&mut self, name: &str, device: Option<&str>, value: &str) {
        let list = self.lists.entry(name.to_owned()).or_default();
        let value = value.trim().to_ascii_lowercase();
        match device {
            Some(d) => list
                .per_device
                .entry(d.to_owned())
                .or_default()
                .insert(value),
            None => list.any_device.insert(value),
        };
    }

    /// Adds the lines of a list file (`file` names it in errors). A line with white space
    /// inside is refused: it is not one value, and silently taking half of it would
    /// leave a honeytoken unwatched.
    pub fn add_text(
        &mut self,
        name: &str,
        device: Option<&str>,
        file: &str,
        text: &str,
    ) -> Result<usize, LoadError> {
        let mut added = 0;
        self.lists.entry(name.to_owned()).or_default();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            if line.split_whitespace().nth(1).is_some() {
                return Err(LoadError::WatchList {
                    file: file.to_owned(),
                    line: i + 1,
                    problem: "expected one value a line".into(),
                });
            }
            self.insert(name, device, line);
            added += 1;
        }
        Ok(added)
    }

    /// Reads a list file from disk.
    pub fn add_file(
        &mut self,
        name: &str,
        device: Option<&str>,
        path: &std::path::Path,
    ) -> Result<usize, LoadError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| LoadError::Io {
            file: file.clone(),
            source,
        })?;
        self.add_text(name, device, &file, &text)
    }

    /// Reads the list file `spec` names into its list; see [`add_file`](Self::add_file).
    pub fn add_spec(&mut self, spec: &WatchListSpec) -> Result<usize, LoadError> {
        self.add_file(&spec.name, spec.device.as_deref(), &spec.file)
    }

    /// The list called `name`.
    pub fn get(&self, name: &str) -> Option<&WatchList> {
        self.lists.get(name)
    }

    /// The names of every list.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.lists.keys().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_device_and_global_entries() {
        let mut lists = WatchLists::new();
        let n = lists
            .add_text(
                "honeytokens",
                Some("main"),
                "h.txt",
                "# canaries\nhmac-sha256:AB\n\n  hmac-sha256:cd  \n",
            )
            .expect("valid list");
        assert_eq!(n, 2);
        lists.insert("honeytokens", None, "everywhere");
        let list = lists.get("honeytokens").expect("list exists");
        assert!(list.contains("main", "hmac-sha256:ab"));
        assert!(list.contains("main", "HMAC-SHA256:CD"));
        assert!(!list.contains("other", "hmac-sha256:ab"));
        assert!(list.contains("other", "everywhere"));
        assert_eq!(list.entries("main").count(), 3);
    }

    #[test]
    fn specs_name_a_list_an_optional_device_and_a_file() {
        let spec: WatchListSpec = "honeytokens@main=/etc/vigil/h.txt".parse().expect("valid");
        assert_eq!(spec.name, "honeytokens");
        assert_eq!(spec.device.as_deref(), Some("main"));
        assert_eq!(spec.file, PathBuf::from("/etc/vigil/h.txt"));
        let spec: WatchListSpec = "admins=a=b.txt".parse().expect("valid");
        assert_eq!((spec.name.as_str(), spec.device), ("admins", None));
        assert_eq!(spec.file, PathBuf::from("a=b.txt"));
        for bad in ["", "honeytokens", "=f.txt", "h=", "h@=f.txt", "@main=f.txt"] {
            let err = bad.parse::<WatchListSpec>().expect_err(bad);
            assert_eq!(err.spec, bad);
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn add_spec_reads_the_file_into_the_named_list() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("h.txt");
        std::fs::write(&file, "hmac-sha256:ab\n").expect("write");
        let spec: WatchListSpec = format!("honeytokens@main={}", file.display())
            .parse()
            .expect("valid");
        let mut lists = WatchLists::new();
        assert_eq!(lists.add_spec(&spec).expect("readable"), 1);
        let list = lists.get("honeytokens").expect("list exists");
        assert!(list.contains("main", "hmac-sha256:ab"));
        assert!(!list.contains("other", "hmac-sha256:ab"));
        let missing: WatchListSpec = "x=/nonexistent/vigil/list".parse().expect("valid");
        assert!(matches!(
            lists.add_spec(&missing),
            Err(LoadError::Io { .. })
        ));
    }

    #[test]
    fn a_line_with_two_values_is_an_error() {
        let err = WatchLists::new()
            .add_text("x", None, "bad.txt", "a\nb c\n")
            .expect_err("two values");
        assert_eq!(
            err.to_string(),
            "bad.txt: line 2: expected one value a line"
        );
    }
}
