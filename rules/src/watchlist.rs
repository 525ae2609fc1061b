//! Watch lists: named sets of values (mostly audit HMACs of tokens and accessors) that rules
//! reach through `|expand` placeholders such as `%honeytokens%`.
//!
//! HMACs depend on each audit device's salt, so a list can hold entries for one device
//! only; entries without a device apply to every device. The file format is what
//! `vigil hash` prints: one value a line; blank lines and `#` comments are skipped.

use std::collections::{BTreeMap, BTreeSet};

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
