//! The `condition` of a Sigma detection: parsing it against the rule's selection names and
//! evaluating it over which selections matched.
//!
//! Grammar (lowest precedence first): `or`, `and`, `not`, then parentheses, a selection
//! name, or a quantifier `1 of pattern`, `any of pattern`, `all of pattern` where
//! `pattern` is a name with `*` wildcards or `them` (every selection whose name does not
//! start with `_`).

use crate::error::Problem;

/// A parsed condition. Selection references are indexes into the rule's selection list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    /// One selection.
    Sel(usize),
    /// Negation.
    Not(Box<Condition>),
    /// Every operand.
    And(Vec<Condition>),
    /// Any operand.
    Or(Vec<Condition>),
}

impl Condition {
    /// Parses `text` against the selection `names`.
    pub fn parse(text: &str, names: &[String]) -> Result<Condition, Problem> {
        let tokens = tokenize(text)?;
        let mut p = Parser {
            tokens,
            pos: 0,
            names,
        };
        let c = p.or()?;
        if p.pos != p.tokens.len() {
            return Err(Problem::new(format!(
                "condition {text:?}: unexpected {:?}",
                p.tokens[p.pos]
            )));
        }
        Ok(c)
    }

    /// Evaluates the condition; `sel(i)` says whether selection `i` matched. Selections are
    /// evaluated lazily, so that `and` stops at the first false one.
    pub fn eval(&self, sel: &mut impl FnMut(usize) -> bool) -> bool {
        match self {
            Condition::Sel(i) => sel(*i),
            Condition::Not(c) => !c.eval(sel),
            Condition::And(cs) => cs.iter().all(|c| c.eval(sel)),
            Condition::Or(cs) => cs.iter().any(|c| c.eval(sel)),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Word(String),
    Open,
    Close,
}

fn tokenize(text: &str) -> Result<Vec<Token>, Problem> {
    let mut tokens = Vec::new();
    let mut word = String::new();
    let flush = |word: &mut String, tokens: &mut Vec<Token>| {
        if !word.is_empty() {
            tokens.push(Token::Word(std::mem::take(word)));
        }
    };
    for c in text.chars() {
        match c {
            '(' => {
                flush(&mut word, &mut tokens);
                tokens.push(Token::Open);
            }
            ')' => {
                flush(&mut word, &mut tokens);
                tokens.push(Token::Close);
            }
            c if c.is_whitespace() => flush(&mut word, &mut tokens),
            c if c.is_alphanumeric() || matches!(c, '_' | '*' | '-' | '.') => word.push(c),
            '|' => {
                return Err(Problem::new(
                    "condition: aggregations with `|` are not supported; use a correlation rule",
                ))
            }
            c => {
                return Err(Problem::new(format!(
                    "condition: unexpected character {c:?}"
                )))
            }
        }
    }
    flush(&mut word, &mut tokens);
    if tokens.is_empty() {
        return Err(Problem::new("condition is empty"));
    }
    Ok(tokens)
}

struct Parser<'a> {
    tokens: Vec<Token>,
    pos: usize,
    names: &'a [String],
}

impl Parser<'_> {
    fn peek_word(&self, w: &str) -> bool {
        matches!(self.tokens.get(self.pos), Some(Token::Word(x)) if x.eq_ignore_ascii_case(w))
    }

    fn or(&mut self) -> Result<Condition, Problem> {
        let mut items = vec![self.and()?];
        while self.peek_word("or") {
            self.pos += 1;
            items.push(self.and()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Condition::Or(items)
        })
    }

    fn and(&mut self) -> Result<Condition, Problem> {
        let mut items = vec![self.not()?];
        while self.peek_word("and") {
            self.pos += 1;
            items.push(self.not()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Condition::And(items)
        })
    }

    fn not(&mut self) -> Result<Condition, Problem> {
        if self.peek_word("not") {
            self.pos += 1;
            return Ok(Condition::Not(Box::new(self.not()?)));
        }
        self.atom()
    }

    fn atom(&mut self) -> Result<Condition, Problem> {
        let Some(tok) = self.tokens.get(self.pos).cloned() else {
            return Err(Problem::new("condition ends too early"));
        };
        self.pos += 1;
        match tok {
            Token::Open => {
                let c = self.or()?;
                match self.tokens.get(self.pos) {
                    Some(Token::Close) => {
                        self.pos += 1;
                        Ok(c)
                    }
                    _ => Err(Problem::new("condition: missing `)`")),
                }
            }
            Token::Close => Err(Problem::new("condition: unexpected `)`")),
            Token::Word(w) => {
                let quant = w.to_ascii_lowercase();
                if matches!(quant.as_str(), "1" | "any" | "all") && self.peek_word("of") {
                    self.pos += 1;
                    let Some(Token::Word(pattern)) = self.tokens.get(self.pos).cloned() else {
                        return Err(Problem::new(format!("condition: `{w} of` needs a name")));
                    };
                    self.pos += 1;
                    let sels = self.resolve(&pattern)?;
                    let items = sels.into_iter().map(Condition::Sel).collect();
                    return Ok(if quant == "all" {
                        Condition::And(items)
                    } else {
                        Condition::Or(items)
                    });
                }
                if matches!(quant.as_str(), "and" | "or" | "of") {
                    return Err(Problem::new(format!("condition: unexpected `{w}`")));
                }
                match self.names.iter().position(|n| *n == w) {
                    Some(i) => Ok(Condition::Sel(i)),
                    None => Err(Problem::new(format!(
                        "condition names {w:?}, which is not a selection of this rule"
                    ))),
                }
            }
        }
    }

    fn resolve(&self, pattern: &str) -> Result<Vec<usize>, Problem> {
        let found: Vec<usize> = self
            .names
            .iter()
            .enumerate()
            .filter(|(_, n)| {
                if pattern == "them" {
                    !n.starts_with('_')
                } else {
                    glob_match(pattern, n)
                }
            })
            .map(|(i, _)| i)
            .collect();
        if found.is_empty() {
            return Err(Problem::new(format!(
                "condition: {pattern:?} matches no selection"
            )));
        }
        Ok(found)
    }
}

/// `*` matches any run of characters; everything else is literal.
fn glob_match(pattern: &str, name: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == name;
    }
    let mut rest = name;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            match rest.strip_prefix(part) {
                Some(r) => rest = r,
                None => return false,
            }
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            match rest.find(part) {
                Some(at) => rest = &rest[at + part.len()..],
                None => return false,
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Vec<String> {
        ["sel_a", "sel_b", "filter", "_hidden"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    }

    fn eval(cond: &str, matched: &[bool]) -> bool {
        let c = Condition::parse(cond, &names()).expect("parses");
        c.eval(&mut |i| matched[i])
    }

    #[test]
    fn precedence_and_parentheses() {
        // and binds tighter than or; not tighter than and.
        assert!(eval(
            "sel_a or sel_b and filter",
            &[true, false, false, false]
        ));
        assert!(!eval(
            "(sel_a or sel_b) and filter",
            &[true, false, false, false]
        ));
        assert!(eval("sel_a and not filter", &[true, false, false, false]));
        assert!(!eval("sel_a and not filter", &[true, false, true, false]));
        assert!(eval("not (sel_a and filter)", &[true, false, false, false]));
        assert!(eval("NOT sel_b AND sel_a", &[true, false, false, false]));
    }

    #[test]
    fn quantifiers() {
        assert!(eval("1 of sel*", &[false, true, false, false]));
        assert!(!eval("all of sel*", &[false, true, false, false]));
        assert!(eval("all of sel_*", &[true, true, false, false]));
        assert!(eval("any of sel*", &[true, false, false, false]));
        // `them` leaves out underscore names.
        assert!(eval("all of them", &[true, true, true, false]));
        assert!(!eval("all of them", &[true, true, false, true]));
        assert!(eval(
            "1 of them and not filter",
            &[false, true, false, false]
        ));
    }

    #[test]
    fn errors() {
        for bad in [
            "",
            "sel_c",
            "sel_a and",
            "(sel_a",
            "sel_a)",
            "1 of nothing*",
            "sel_a | count() > 5",
            "sel_a or or sel_b",
            "sel_a $ sel_b",
        ] {
            assert!(Condition::parse(bad, &names()).is_err(), "{bad:?} parsed");
        }
    }
}
