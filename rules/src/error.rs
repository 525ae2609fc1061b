//! The errors of loading rules, detectors and watch lists. Every load error names the file
//! and, where one was identified, the rule, so that an operator can find the problem.

/// Why a rule, a detector or a watch list could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// A file is not valid YAML.
    #[error("{file}: invalid YAML: {source}")]
    Yaml {
        /// The file.
        file: String,
        /// What the YAML parser reported.
        source: serde_yaml_ng::Error,
    },
    /// A rule, correlation or detector is malformed.
    #[error("{file}: rule {rule:?}: {problem}")]
    Rule {
        /// The file.
        file: String,
        /// The rule's id, or its title, or its position in the file.
        rule: String,
        /// What is wrong.
        problem: String,
    },
    /// Two rules share an id or a name.
    #[error("{file}: rule {rule:?}: id or name already used by a rule in {other}")]
    Duplicate {
        /// The file of the second rule.
        file: String,
        /// The id or name used twice.
        rule: String,
        /// The file of the first.
        other: String,
    },
    /// A correlation refers to a rule that does not exist.
    #[error("{file}: rule {rule:?}: correlation refers to unknown rule {missing:?}")]
    UnknownReference {
        /// The file of the correlation.
        file: String,
        /// The correlation.
        rule: String,
        /// The name or id that matched no rule.
        missing: String,
    },
    /// A file or directory could not be read.
    #[error("{file}: {source}")]
    Io {
        /// The file or directory.
        file: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A watch list line is not an HMAC or a plain value.
    #[error("{file}: line {line}: {problem}")]
    WatchList {
        /// The list file.
        file: String,
        /// 1-based line number.
        line: usize,
        /// What is wrong.
        problem: String,
    },
}

/// A problem inside one rule, before the file and rule name are attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem(pub String);

impl Problem {
    pub(crate) fn new(msg: impl Into<String>) -> Problem {
        Problem(msg.into())
    }

    pub(crate) fn at(self, file: &str, rule: &str) -> LoadError {
        LoadError::Rule {
            file: file.to_owned(),
            rule: rule.to_owned(),
            problem: self.0,
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}
