//! The entity type selection language (GS CIM 009 §4.17): `T1,T2` or `T1|T2` (any of),
//! `T1;T2` (all of), parentheses, and `*` for any type.

use crate::error::{NgsiError, NgsiResult};
use crate::jsonld::Context;

/// A type selection with expanded type names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TypeSel {
    Any,
    Is(String),
    All(Vec<TypeSel>),
    OneOf(Vec<TypeSel>),
}

fn err(pos: usize, msg: &str) -> NgsiError {
    NgsiError::bad_data(format!("invalid type selection at position {pos}: {msg}"))
}

struct P<'a> {
    s: &'a [u8],
    src: &'a str,
    pos: usize,
    ctx: &'a Context,
}

impl P<'_> {
    fn or(&mut self, depth: usize) -> NgsiResult<TypeSel> {
        if depth > 16 {
            return Err(err(self.pos, "parentheses nested too deeply"));
        }
        let mut items = vec![self.and(depth)?];
        while self.pos < self.s.len() && matches!(self.s[self.pos], b'|' | b',') {
            self.pos += 1;
            items.push(self.and(depth)?);
        }
        Ok(if items.len() == 1 { items.remove(0) } else { TypeSel::OneOf(items) })
    }

    fn and(&mut self, depth: usize) -> NgsiResult<TypeSel> {
        let mut items = vec![self.atom(depth)?];
        while self.pos < self.s.len() && self.s[self.pos] == b';' {
            self.pos += 1;
            items.push(self.atom(depth)?);
        }
        Ok(if items.len() == 1 { items.remove(0) } else { TypeSel::All(items) })
    }

    fn atom(&mut self, depth: usize) -> NgsiResult<TypeSel> {
        if self.pos < self.s.len() && self.s[self.pos] == b'(' {
            self.pos += 1;
            let e = self.or(depth + 1)?;
            if self.pos >= self.s.len() || self.s[self.pos] != b')' {
                return Err(err(self.pos, "expected ')'"));
            }
            self.pos += 1;
            return Ok(e);
        }
        let start = self.pos;
        while self.pos < self.s.len() && !matches!(self.s[self.pos], b'|' | b',' | b';' | b'(' | b')') {
            self.pos += 1;
        }
        let name = self.src[start..self.pos].trim();
        if name.is_empty() {
            return Err(err(start, "expected a type name"));
        }
        if name == "*" {
            return Ok(TypeSel::Any);
        }
        if name.chars().any(|c| c.is_whitespace() || matches!(c, '<' | '>' | '"' | '\'' | '=')) {
            return Err(err(start, &format!("{name:?} is not a type name")));
        }
        Ok(TypeSel::Is(self.ctx.expand(name)))
    }
}

/// Parses a type selection, expanding names with `ctx`.
pub fn parse(src: &str, ctx: &Context) -> NgsiResult<TypeSel> {
    let mut p = P { s: src.as_bytes(), src, pos: 0, ctx };
    let e = p.or(0)?;
    if p.pos != src.len() {
        return Err(err(p.pos, "unexpected character"));
    }
    Ok(e)
}

impl TypeSel {
    pub fn matches<T: AsRef<str>>(&self, types: &[T]) -> bool {
        match self {
            TypeSel::Any => true,
            TypeSel::Is(t) => types.iter().any(|x| x.as_ref() == t),
            TypeSel::All(v) => v.iter().all(|s| s.matches(types)),
            TypeSel::OneOf(v) => v.iter().any(|s| s.matches(types)),
        }
    }

    /// Types of which a matching entity has at least one (for the type index); `None` when any
    /// type can match.
    pub fn candidates(&self) -> Option<Vec<String>> {
        match self {
            TypeSel::Any => None,
            TypeSel::Is(t) => Some(vec![t.clone()]),
            // Every conjunct must hold, so the first conjunct's candidates suffice.
            TypeSel::All(v) => v.iter().find_map(|s| s.candidates()),
            TypeSel::OneOf(v) => {
                let mut out = Vec::new();
                for s in v {
                    for t in s.candidates()? {
                        if !out.contains(&t) {
                            out.push(t);
                        }
                    }
                }
                Some(out)
            }
        }
    }

    /// True when the selection is a plain list of types (no further check needed after the index).
    pub fn is_simple(&self) -> bool {
        match self {
            TypeSel::Is(_) => true,
            TypeSel::OneOf(v) => v.iter().all(|s| matches!(s, TypeSel::Is(_))),
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jsonld::CORE;

    fn types(names: &[&str]) -> Vec<String> {
        names.iter().map(|n| CORE.expand(n)).collect()
    }

    #[test]
    fn type_selection_language() {
        let sel = |s: &str| parse(s, &CORE).unwrap();
        assert!(sel("A").matches(&types(&["A"])));
        assert!(sel("A,B").matches(&types(&["B"])));
        assert!(sel("A|B").matches(&types(&["B"])));
        assert!(!sel("A;B").matches(&types(&["B"])));
        assert!(sel("A;B").matches(&types(&["A", "B"])));
        assert!(sel("(A;B)|C").matches(&types(&["C"])));
        assert!(!sel("(A;B)|C").matches(&types(&["A"])));
        assert!(sel("*").matches(&types(&["Z"])));
        assert!(sel("A;B").candidates().unwrap().len() == 1);
        assert!(sel("A|B").is_simple() && !sel("A;B").is_simple());
        assert!(sel("*").candidates().is_none());
        for bad in ["", "A|", "(A", "A)", "A;;B", "a b"] {
            assert!(parse(bad, &CORE).is_err(), "{bad}");
        }
    }
}
