//! `scopeQ` (GS CIM 009 §4.19): hierarchical scope patterns with `+` (one level) and `#` (any
//! levels below), combined with `;` (and), `|` or `,` (or) and parentheses.

use crate::error::{NgsiError, NgsiResult};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScopeQ {
    Pattern(Vec<String>),
    And(Vec<ScopeQ>),
    Or(Vec<ScopeQ>),
}

fn err(pos: usize, msg: &str) -> NgsiError {
    NgsiError::bad_data(format!("invalid scopeQ at position {pos}: {msg}"))
}

struct P<'a> {
    s: &'a str,
    pos: usize,
}

impl P<'_> {
    fn peek(&self) -> Option<u8> {
        self.s.as_bytes().get(self.pos).copied()
    }

    fn or(&mut self, depth: usize) -> NgsiResult<ScopeQ> {
        if depth > 16 {
            return Err(err(self.pos, "parentheses nested too deeply"));
        }
        let mut items = vec![self.and(depth)?];
        while matches!(self.peek(), Some(b'|' | b',')) {
            self.pos += 1;
            items.push(self.and(depth)?);
        }
        Ok(if items.len() == 1 { items.remove(0) } else { ScopeQ::Or(items) })
    }

    fn and(&mut self, depth: usize) -> NgsiResult<ScopeQ> {
        let mut items = vec![self.atom(depth)?];
        while self.peek() == Some(b';') {
            self.pos += 1;
            items.push(self.atom(depth)?);
        }
        Ok(if items.len() == 1 { items.remove(0) } else { ScopeQ::And(items) })
    }

    fn atom(&mut self, depth: usize) -> NgsiResult<ScopeQ> {
        if self.peek() == Some(b'(') {
            self.pos += 1;
            let e = self.or(depth + 1)?;
            if self.peek() != Some(b')') {
                return Err(err(self.pos, "expected ')'"));
            }
            self.pos += 1;
            return Ok(e);
        }
        let start = self.pos;
        if self.peek() != Some(b'/') {
            return Err(err(start, "a scope starts with '/'"));
        }
        while let Some(c) = self.peek() {
            if matches!(c, b'|' | b',' | b';' | b'(' | b')') {
                break;
            }
            self.pos += 1;
        }
        let text = &self.s[start..self.pos];
        if text == "/#" {
            return Ok(ScopeQ::Pattern(vec!["#".into()]));
        }
        let segs: Vec<String> = text[1..].split('/').map(str::to_owned).collect();
        for (i, seg) in segs.iter().enumerate() {
            let ok = seg == "+"
                || (seg == "#" && i == segs.len() - 1)
                || (!seg.is_empty() && seg.chars().all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.')));
            if !ok {
                return Err(err(start, &format!("{text:?} is not a scope pattern")));
            }
        }
        Ok(ScopeQ::Pattern(segs))
    }
}

/// Parses a scopeQ expression.
pub fn parse(src: &str) -> NgsiResult<ScopeQ> {
    let mut p = P { s: src, pos: 0 };
    let e = p.or(0)?;
    if p.pos != src.len() {
        return Err(err(p.pos, "unexpected character"));
    }
    Ok(e)
}

fn pattern_matches(pattern: &[String], scope: &str) -> bool {
    let segs: Vec<&str> = scope.trim_start_matches('/').split('/').collect();
    let mut i = 0;
    for p in pattern {
        if p == "#" {
            return true;
        }
        let Some(s) = segs.get(i) else { return false };
        if p != "+" && p != s {
            return false;
        }
        i += 1;
    }
    i == segs.len()
}

impl ScopeQ {
    /// Whether an entity with these scopes matches.
    pub fn matches(&self, scopes: Option<&[String]>) -> bool {
        match self {
            ScopeQ::Pattern(p) => scopes.is_some_and(|s| s.iter().any(|x| pattern_matches(p, x))),
            ScopeQ::And(v) => v.iter().all(|q| q.matches(scopes)),
            ScopeQ::Or(v) => v.iter().any(|q| q.matches(scopes)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(q: &str, scopes: &[&str]) -> bool {
        let s: Vec<String> = scopes.iter().map(|x| x.to_string()).collect();
        parse(q).unwrap().matches(Some(&s))
    }

    #[test]
    fn scope_patterns() {
        assert!(m("/Madrid", &["/Madrid"]));
        assert!(!m("/Madrid", &["/Madrid/Gardens"]));
        assert!(m("/Madrid/#", &["/Madrid/Gardens/Retiro"]));
        assert!(m("/Madrid/#", &["/Madrid"]));
        assert!(m("/Madrid/+", &["/Madrid/Gardens"]));
        assert!(!m("/Madrid/+", &["/Madrid/Gardens/Retiro"]));
        assert!(m("/+/Gardens", &["/Madrid/Gardens"]));
        assert!(m("/#", &["/Anything"]));
        assert!(m("/A;/B", &["/A", "/B"]));
        assert!(!m("/A;/B", &["/A"]));
        assert!(m("/A|/B", &["/B"]));
        assert!(m("/A,/B", &["/B"]));
        assert!(m("(/A|/B);/C", &["/B", "/C"]));
        assert!(!parse("/#").unwrap().matches(None));
        for bad in ["Madrid", "/", "/a//b", "/a/#/b", "(/a", "/a b"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
