//! Rule sets: the built-in pack compiled into the binary, a directory of YAML files, or
//! both (a directory file replaces the built-in file of the same name), loaded and checked
//! as a whole (ids unique, correlation references resolved).

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use serde_yaml_ng::Value as Yaml;

use crate::correlation::Correlation;
use crate::detector::Detector;
use crate::error::LoadError;
use crate::rule::{RuleMeta, SigmaRule};

/// The built-in pack: `(file name, YAML)`, embedded at build time.
pub const PACK: &[(&str, &str)] = &[
    (
        "audit_device_change.yml",
        include_str!("../pack/audit_device_change.yml"),
    ),
    (
        "auth_or_engine_change.yml",
        include_str!("../pack/auth_or_engine_change.yml"),
    ),
    (
        "brute_force_login.yml",
        include_str!("../pack/brute_force_login.yml"),
    ),
    (
        "honeytoken_use.yml",
        include_str!("../pack/honeytoken_use.yml"),
    ),
    (
        "mass_secret_read.yml",
        include_str!("../pack/mass_secret_read.yml"),
    ),
    (
        "new_address_for_identity.yml",
        include_str!("../pack/new_address_for_identity.yml"),
    ),
    (
        "new_mount_for_identity.yml",
        include_str!("../pack/new_mount_for_identity.yml"),
    ),
    (
        "permission_denied_storm.yml",
        include_str!("../pack/permission_denied_storm.yml"),
    ),
    (
        "plaintext_in_audit_log.yml",
        include_str!("../pack/plaintext_in_audit_log.yml"),
    ),
    (
        "policy_change.yml",
        include_str!("../pack/policy_change.yml"),
    ),
    (
        "privileged_token_creation.yml",
        include_str!("../pack/privileged_token_creation.yml"),
    ),
    (
        "request_spike.yml",
        include_str!("../pack/request_spike.yml"),
    ),
    (
        "root_token_use.yml",
        include_str!("../pack/root_token_use.yml"),
    ),
    (
        "root_generation_rekey_seal.yml",
        include_str!("../pack/root_generation_rekey_seal.yml"),
    ),
    (
        "secret_enumeration.yml",
        include_str!("../pack/secret_enumeration.yml"),
    ),
    (
        "sys_raw_access.yml",
        include_str!("../pack/sys_raw_access.yml"),
    ),
];

/// A loaded, checked set of rules, correlations and detectors.
#[derive(Debug, Clone)]
pub struct Ruleset {
    pub(crate) rules: Vec<SigmaRule>,
    pub(crate) correlations: Vec<Correlation>,
    /// For each correlation, the indexes into `rules` of its references, in order.
    pub(crate) correlation_rules: Vec<Vec<usize>>,
    pub(crate) detectors: Vec<Detector>,
    /// For each rule, whether it alerts on its own.
    pub(crate) generates: Vec<bool>,
}

impl Ruleset {
    /// The built-in pack.
    pub fn builtin() -> Result<Ruleset, LoadError> {
        Ruleset::from_sources(PACK.iter().copied())
    }

    /// The rule set Vigil runs: the built-in pack, with `dir` (when given) laid over it as
    /// [`builtin_with_dir`](Self::builtin_with_dir) does.
    pub fn load(dir: Option<&Path>) -> Result<Ruleset, LoadError> {
        match dir {
            Some(dir) => Ruleset::builtin_with_dir(dir),
            None => Ruleset::builtin(),
        }
    }

    /// The built-in pack with a directory laid over it: a `.yml`/`.yaml` file there
    /// replaces the built-in file of the same name (an empty one switches it off), any
    /// other is added.
    pub fn builtin_with_dir(dir: &Path) -> Result<Ruleset, LoadError> {
        let mut files: BTreeMap<String, String> = PACK
            .iter()
            .map(|(n, t)| (n.to_string(), t.to_string()))
            .collect();
        for (name, text) in read_dir(dir)? {
            files.insert(name, text);
        }
        Ruleset::from_sources(files.iter().map(|(n, t)| (n.as_str(), t.as_str())))
    }

    /// Only the rules of a directory.
    pub fn from_dir(dir: &Path) -> Result<Ruleset, LoadError> {
        let files = read_dir(dir)?;
        Ruleset::from_sources(files.iter().map(|(n, t)| (n.as_str(), t.as_str())))
    }

    /// Loads `(file name, YAML text)` pairs; each file may hold several documents.
    pub fn from_sources<'a>(
        sources: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> Result<Ruleset, LoadError> {
        let mut rules = Vec::new();
        let mut correlations = Vec::new();
        let mut detectors = Vec::new();
        let mut seen: BTreeMap<String, String> = BTreeMap::new();
        for (file, text) in sources {
            for (index, doc) in serde_yaml_ng::Deserializer::from_str(text).enumerate() {
                let value = Yaml::deserialize(doc).map_err(|source| LoadError::Yaml {
                    file: file.to_owned(),
                    source,
                })?;
                let map = match value {
                    Yaml::Null => continue,
                    Yaml::Mapping(m) => m,
                    _ => {
                        return Err(LoadError::Rule {
                            file: file.to_owned(),
                            rule: format!("#{index}"),
                            problem: "a rule document must be a map".into(),
                        })
                    }
                };
                let meta = RuleMeta::parse(&map, file, index).map_err(|(r, p)| p.at(file, &r))?;
                for key in std::iter::once(&meta.id).chain(meta.name.iter()) {
                    if let Some(other) = seen.insert(key.clone(), file.to_owned()) {
                        if !(key == &meta.id && meta.name.as_ref() == Some(key)) {
                            return Err(LoadError::Duplicate {
                                file: file.to_owned(),
                                rule: key.clone(),
                                other,
                            });
                        }
                    }
                }
                let id = meta.id.clone();
                if map.contains_key("correlation") {
                    correlations
                        .push(Correlation::compile(meta, &map).map_err(|p| p.at(file, &id))?);
                } else if map.contains_key("detector") {
                    detectors.push(Detector::compile(meta, &map).map_err(|p| p.at(file, &id))?);
                } else {
                    rules.push(SigmaRule::compile(meta, &map).map_err(|p| p.at(file, &id))?);
                }
            }
        }
        let mut generates = vec![true; rules.len()];
        let mut correlation_rules = Vec::new();
        for c in &correlations {
            if c.rules.len() > 64 {
                return Err(LoadError::Rule {
                    file: c.meta.file.clone(),
                    rule: c.meta.id.clone(),
                    problem: "a correlation can refer to at most 64 rules".into(),
                });
            }
            let mut idx = Vec::new();
            for r in &c.rules {
                let Some(i) = rules.iter().position(|x: &SigmaRule| x.meta.answers_to(r)) else {
                    return Err(LoadError::UnknownReference {
                        file: c.meta.file.clone(),
                        rule: c.meta.id.clone(),
                        missing: r.clone(),
                    });
                };
                idx.push(i);
            }
            correlation_rules.push(idx);
        }
        // Sigma: rules a correlation refers to do not alert on their own unless one of the
        // correlations referring to them says `generate: true`.
        for &i in correlation_rules.iter().flatten() {
            generates[i] = false;
        }
        for (c, idx) in correlations.iter().zip(&correlation_rules) {
            if c.generate {
                for &i in idx {
                    generates[i] = true;
                }
            }
        }
        Ok(Ruleset {
            rules,
            correlations,
            correlation_rules,
            detectors,
            generates,
        })
    }

    /// The single-event rules.
    pub fn rules(&self) -> &[SigmaRule] {
        &self.rules
    }

    /// The correlation rules.
    pub fn correlations(&self) -> &[Correlation] {
        &self.correlations
    }

    /// The detectors.
    pub fn detectors(&self) -> &[Detector] {
        &self.detectors
    }

    /// The metadata of everything that can raise an alert.
    pub fn alerting(&self) -> impl Iterator<Item = &RuleMeta> {
        let rules = self
            .rules
            .iter()
            .zip(&self.generates)
            .filter(|(_, g)| **g)
            .map(|(r, _)| &r.meta);
        rules
            .chain(self.correlations.iter().map(|c| &c.meta))
            .chain(self.detectors.iter().map(|d| &d.meta))
    }
}

fn read_dir(dir: &Path) -> Result<Vec<(String, String)>, LoadError> {
    let io = |source| LoadError::Io {
        file: dir.display().to_string(),
        source,
    };
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        let is_yaml = path.extension().is_some_and(|e| e == "yml" || e == "yaml");
        if !is_yaml || !path.is_file() {
            continue;
        }
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let text = std::fs::read_to_string(&path).map_err(|source| LoadError::Io {
            file: path.display().to_string(),
            source,
        })?;
        out.push((name, text));
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_lays_the_directory_over_the_builtin_pack() {
        let builtin = Ruleset::load(None).expect("built-in pack loads");
        assert_eq!(
            builtin.alerting().count(),
            Ruleset::builtin()
                .expect("built-in pack loads")
                .alerting()
                .count()
        );
        let dir = tempfile::tempdir().expect("tempdir");
        // An empty file switches off the built-in file of the same name.
        std::fs::write(dir.path().join("root_token_use.yml"), "").expect("write");
        let overlaid = Ruleset::load(Some(dir.path())).expect("overlay loads");
        assert!(overlaid.alerting().count() < builtin.alerting().count());
        assert!(builtin
            .rules()
            .iter()
            .any(|r| r.meta.file == "root_token_use.yml"));
        assert!(!overlaid
            .rules()
            .iter()
            .any(|r| r.meta.file == "root_token_use.yml"));
    }

    #[test]
    fn load_names_a_missing_directory() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("nope");
        let err = Ruleset::load(Some(&missing)).expect_err("no such directory");
        assert!(
            matches!(err, LoadError::Io { ref file, .. } if file.contains("nope")),
            "{err}"
        );
    }
}
