//! Sigma rule documents: the metadata every rule, correlation and detector shares, and the
//! `detection` block of a single-event rule compiled into matchers.

use serde::{Deserialize, Serialize};
use serde_yaml_ng::{Mapping, Value as Yaml};

use crate::condition::Condition;
use crate::error::Problem;
use crate::fields::EventView;
use crate::modifiers::{FieldMatcher, Keyword, MatchCtx};

/// Sigma's `level`, the severity of the alerts a rule raises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    /// Informational.
    Informational,
    /// Low.
    Low,
    /// Medium.
    Medium,
    /// High.
    High,
    /// Critical.
    Critical,
}

impl Level {
    /// The lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Informational => "informational",
            Level::Low => "low",
            Level::Medium => "medium",
            Level::High => "high",
            Level::Critical => "critical",
        }
    }

    fn parse(s: &str) -> Option<Level> {
        Some(match s {
            "informational" => Level::Informational,
            "low" => Level::Low,
            "medium" => Level::Medium,
            "high" => Level::High,
            "critical" => Level::Critical,
            _ => return None,
        })
    }
}

/// What every rule document carries besides its logic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuleMeta {
    /// `id` (a UUID in Sigma), or `name` when there is no id: the rule id of its alerts.
    pub id: String,
    /// `name`, the handle correlations refer to.
    pub name: Option<String>,
    /// `title`.
    pub title: String,
    /// `description`.
    pub description: String,
    /// `status` (stable, test, experimental, …).
    pub status: Option<String>,
    /// `level`; `medium` when absent.
    pub level: Level,
    /// `tags`, e.g. `attack.credential_access`, `attack.t1110`.
    pub tags: Vec<String>,
    /// `falsepositives`.
    pub falsepositives: Vec<String>,
    /// The file it came from.
    pub file: String,
}

impl RuleMeta {
    /// Reads the metadata of one document; `index` names it in errors when it has no title.
    pub(crate) fn parse(
        doc: &Mapping,
        file: &str,
        index: usize,
    ) -> Result<RuleMeta, (String, Problem)> {
        let title = opt_str(doc, "title").map_err(|p| (format!("#{index}"), p))?;
        let id = opt_str(doc, "id").map_err(|p| (format!("#{index}"), p))?;
        let name = opt_str(doc, "name").map_err(|p| (format!("#{index}"), p))?;
        let label = id
            .clone()
            .or_else(|| name.clone())
            .or_else(|| title.clone())
            .unwrap_or_else(|| format!("#{index}"));
        let wrap = |p: Problem| (label.clone(), p);
        let title = title.ok_or_else(|| wrap(Problem::new("missing `title`")))?;
        let id = id
            .or_else(|| name.clone())
            .ok_or_else(|| wrap(Problem::new("needs an `id` or a `name`")))?;
        let level = match opt_str(doc, "level").map_err(wrap)? {
            None => Level::Medium,
            Some(l) => Level::parse(&l).ok_or_else(|| {
                wrap(Problem::new(format!(
                    "`level` {l:?} is not one of informational, low, medium, high, critical"
                )))
            })?,
        };
        Ok(RuleMeta {
            id,
            name,
            title,
            description: opt_str(doc, "description")
                .map_err(wrap)?
                .unwrap_or_default(),
            status: opt_str(doc, "status").map_err(wrap)?,
            level,
            tags: str_list(doc, "tags").map_err(wrap)?,
            falsepositives: str_list(doc, "falsepositives").map_err(wrap)?,
            file: file.to_owned(),
        })
    }

    /// Whether `reference` (from a correlation's `rules:`) names this rule.
    pub fn answers_to(&self, reference: &str) -> bool {
        self.id == reference || self.name.as_deref() == Some(reference)
    }
}

/// Checks `logsource`: only Vault/OpenBao audit rules belong here.
pub(crate) fn check_logsource(doc: &Mapping) -> Result<(), Problem> {
    let Some(ls) = doc.get("logsource") else {
        return Err(Problem::new("missing `logsource`"));
    };
    let Yaml::Mapping(ls) = ls else {
        return Err(Problem::new("`logsource` must be a map"));
    };
    if let Some(p) = opt_str(ls, "product")? {
        if !matches!(p.as_str(), "vault" | "openbao") {
            return Err(Problem::new(format!(
                "logsource product {p:?} is not vault or openbao"
            )));
        }
    }
    if let Some(s) = opt_str(ls, "service")? {
        if s != "audit" {
            return Err(Problem::new(format!(
                "logsource service {s:?} is not audit"
            )));
        }
    }
    Ok(())
}

/// A string field, absent allowed.
pub(crate) fn opt_str(doc: &Mapping, key: &str) -> Result<Option<String>, Problem> {
    match doc.get(key) {
        None | Some(Yaml::Null) => Ok(None),
        Some(Yaml::String(s)) => Ok(Some(s.clone())),
        Some(Yaml::Number(n)) => Ok(Some(n.to_string())),
        Some(_) => Err(Problem::new(format!("`{key}` must be a string"))),
    }
}

/// A string or a list of strings, absent allowed.
pub(crate) fn str_list(doc: &Mapping, key: &str) -> Result<Vec<String>, Problem> {
    match doc.get(key) {
        None | Some(Yaml::Null) => Ok(Vec::new()),
        Some(Yaml::String(s)) => Ok(vec![s.clone()]),
        Some(Yaml::Sequence(items)) => items
            .iter()
            .map(|v| match v {
                Yaml::String(s) => Ok(s.clone()),
                _ => Err(Problem::new(format!("`{key}` must be a list of strings"))),
            })
            .collect(),
        Some(_) => Err(Problem::new(format!("`{key}` must be a list of strings"))),
    }
}

/// One named selection.
#[derive(Debug, Clone)]
enum Selection {
    /// A map: every field matches.
    AllOf(Vec<FieldMatcher>),
    /// A list of maps: any map matches.
    AnyOf(Vec<Vec<FieldMatcher>>),
    /// A list of plain values: any is found in the raw line.
    Keywords(Vec<Keyword>),
}

impl Selection {
    fn compile(name: &str, value: &Yaml) -> Result<Selection, Problem> {
        let map = |m: &Mapping| -> Result<Vec<FieldMatcher>, Problem> {
            m.iter()
                .map(|(k, v)| match k {
                    Yaml::String(k) => FieldMatcher::compile(k, v),
                    _ => Err(Problem::new(format!(
                        "selection {name:?}: field names must be strings"
                    ))),
                })
                .collect()
        };
        match value {
            Yaml::Mapping(m) if m.is_empty() => {
                Err(Problem::new(format!("selection {name:?} is empty")))
            }
            Yaml::Mapping(m) => Ok(Selection::AllOf(map(m)?)),
            Yaml::Sequence(items) if items.is_empty() => {
                Err(Problem::new(format!("selection {name:?} is empty")))
            }
            Yaml::Sequence(items) if items.iter().all(|i| matches!(i, Yaml::Mapping(_))) => {
                let mut alts = Vec::new();
                for i in items {
                    if let Yaml::Mapping(m) = i {
                        alts.push(map(m)?);
                    }
                }
                Ok(Selection::AnyOf(alts))
            }
            Yaml::Sequence(items) => Ok(Selection::Keywords(
                items
                    .iter()
                    .map(Keyword::compile)
                    .collect::<Result<_, _>>()?,
            )),
            Yaml::String(_) | Yaml::Number(_) => {
                Ok(Selection::Keywords(vec![Keyword::compile(value)?]))
            }
            _ => Err(Problem::new(format!(
                "selection {name:?} must be a map, a list of maps or a list of values"
            ))),
        }
    }

    fn matches(&self, view: &EventView<'_>, ctx: &MatchCtx<'_>) -> bool {
        match self {
            Selection::AllOf(ms) => ms.iter().all(|m| m.matches(view, ctx)),
            Selection::AnyOf(alts) => alts
                .iter()
                .any(|ms| ms.iter().all(|m| m.matches(view, ctx))),
            Selection::Keywords(ks) => ks.iter().any(|k| k.matches(view, ctx)),
        }
    }
}

/// A compiled `detection` block: named selections and the condition over them.
#[derive(Debug, Clone)]
pub struct Detection {
    names: Vec<String>,
    selections: Vec<Selection>,
    condition: Condition,
}

impl Detection {
    /// Compiles a `detection` map.
    pub(crate) fn compile(value: &Yaml) -> Result<Detection, Problem> {
        let Yaml::Mapping(m) = value else {
            return Err(Problem::new("`detection` must be a map"));
        };
        let mut names = Vec::new();
        let mut selections = Vec::new();
        let mut condition = None;
        for (k, v) in m {
            let Yaml::String(k) = k else {
                return Err(Problem::new("`detection` keys must be strings"));
            };
            if k == "condition" {
                condition = Some(v);
                continue;
            }
            if k == "timeframe" {
                return Err(Problem::new(
                    "`timeframe` is not supported; use a correlation rule with `timespan`",
                ));
            }
            selections.push(Selection::compile(k, v)?);
            names.push(k.clone());
        }
        let condition = match condition {
            None => return Err(Problem::new("`detection` has no `condition`")),
            Some(Yaml::String(c)) => Condition::parse(c, &names)?,
            // A list of conditions is the old spelling of their `or`.
            Some(Yaml::Sequence(cs)) if !cs.is_empty() => {
                let mut items = Vec::new();
                for c in cs {
                    let Yaml::String(c) = c else {
                        return Err(Problem::new("`condition` must be a string"));
                    };
                    items.push(Condition::parse(c, &names)?);
                }
                Condition::Or(items)
            }
            Some(_) => return Err(Problem::new("`condition` must be a string")),
        };
        Ok(Detection {
            names,
            selections,
            condition,
        })
    }

    /// Whether the event matches.
    pub fn matches(&self, view: &EventView<'_>, ctx: &MatchCtx<'_>) -> bool {
        self.condition
            .eval(&mut |i| self.selections[i].matches(view, ctx))
    }

    /// The selection names, in file order.
    pub fn selection_names(&self) -> &[String] {
        &self.names
    }
}

/// A single-event Sigma rule.
#[derive(Debug, Clone)]
pub struct SigmaRule {
    /// Title, level, tags, ….
    pub meta: RuleMeta,
    /// What it matches.
    pub detection: Detection,
    /// Vigil's extension `group-by`: the fields whose values make the alert's group key, so
    /// that suppression is per group (e.g. per remote address) instead of per rule.
    pub group_by: Vec<String>,
}

impl SigmaRule {
    /// Compiles a rule document whose metadata is already read.
    pub(crate) fn compile(meta: RuleMeta, doc: &Mapping) -> Result<SigmaRule, Problem> {
        check_logsource(doc)?;
        let detection = match doc.get("detection") {
            Some(d) => Detection::compile(d)?,
            None => return Err(Problem::new("missing `detection`")),
        };
        Ok(SigmaRule {
            meta,
            detection,
            group_by: str_list(doc, "group-by")?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::watchlist::WatchLists;
    use vigil_event::{AuditEvent, Origin, SourceKind};

    fn rule(yaml: &str) -> Result<SigmaRule, String> {
        let doc: Yaml = serde_yaml_ng::from_str(yaml).map_err(|e| e.to_string())?;
        let Yaml::Mapping(m) = doc else {
            return Err("not a map".into());
        };
        let meta = RuleMeta::parse(&m, "t.yml", 0).map_err(|(_, p)| p.0)?;
        SigmaRule::compile(meta, &m).map_err(|p| p.0)
    }

    fn hits(r: &SigmaRule, line: &str) -> bool {
        let e = AuditEvent::parse(line.as_bytes()).expect("valid line");
        let o = Origin::new("n", "main", SourceKind::File);
        let lists = WatchLists::new();
        r.detection
            .matches(&EventView::new(&e, &o), &MatchCtx { lists: &lists })
    }

    const HEAD: &str = "title: t\nid: r1\nlogsource: {product: openbao, service: audit}\n";

    #[test]
    fn maps_are_and_lists_of_maps_are_or() {
        let r = rule(&format!(
            "{HEAD}detection:\n  sel:\n    - request.path|startswith: sys/raw\n    - request.path: sys/seal\n  op:\n    request.operation: update\n    type: request\n  condition: sel and op\n"
        ))
        .expect("valid rule");
        let line = |p: &str, op: &str| {
            format!(
                r#"{{"time":"2026-01-01T00:00:00Z","type":"request","request":{{"path":"{p}","operation":"{op}"}}}}"#
            )
        };
        assert!(hits(&r, &line("sys/raw/core", "update")));
        assert!(hits(&r, &line("sys/seal", "update")));
        assert!(!hits(&r, &line("sys/seal", "read")));
        assert!(!hits(&r, &line("sys/unseal", "update")));
    }

    #[test]
    fn keywords_search_the_raw_line() {
        let r = rule(&format!(
            "{HEAD}detection:\n  kw: [breakglass]\n  condition: kw\n"
        ))
        .expect("valid rule");
        assert!(hits(
            &r,
            r#"{"time":"2026-01-01T00:00:00Z","type":"request","auth":{"display_name":"token-ops-BreakGlass"}}"#
        ));
        assert!(!hits(
            &r,
            r#"{"time":"2026-01-01T00:00:00Z","type":"request"}"#
        ));
    }

    #[test]
    fn bad_rules_say_what_is_wrong() {
        let cases = [
            ("id: x\nlogsource: {product: vault}\ndetection: {s: {a: b}, condition: s}\n", "title"),
            (
                "title: t\nid: x\nlogsource: {product: windows}\ndetection: {s: {a: b}, condition: s}\n",
                "windows",
            ),
            ("title: t\nid: x\nlogsource: {product: vault}\n", "detection"),
            ("title: t\nid: x\nlogsource: {product: vault}\ndetection: {s: {a: b}}\n", "condition"),
            (
                "title: t\nid: x\nlogsource: {product: vault}\ndetection: {s: {a: b}, condition: t}\n",
                "not a selection",
            ),
            (
                "title: t\nid: x\nlevel: severe\nlogsource: {product: vault}\ndetection: {s: {a: b}, condition: s}\n",
                "level",
            ),
            ("title: t\nlogsource: {product: vault}\ndetection: {s: {a: b}, condition: s}\n", "id"),
        ];
        for (yaml, needle) in cases {
            let err = rule(yaml).expect_err(yaml);
            assert!(err.contains(needle), "{yaml}: {err}");
        }
    }
}
