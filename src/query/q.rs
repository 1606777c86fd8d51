//! The NGSI-LD query language `q` (GS CIM 009 §4.9): a parser with positions in its errors,
//! resolution of attribute names with the request's context, and evaluation against an entity.
//!
//! Grammar (precedence: `|` lowest, then `;`, then parentheses):
//! ```text
//! or    := and ("|" and)*
//! and   := unary (";" unary)*
//! unary := "(" or ")" | term
//! term  := ["!"] path [op value]
//! path  := name ("." name)* ("[" key ("." key)* "]")*
//! op    := "==" | "!=" | ">" | ">=" | "<" | "<=" | "~=" | "!~="
//! value := item ("," item)* | item ".." item ; item: "string", number, true/false, DateTime, URI
//! ```

use regex::Regex;
use serde_json::Value;

use crate::error::{NgsiError, NgsiResult};
use crate::jsonld::Context;
use crate::model::{AttrKind, Attribute, Entity, format_millis, parse_datetime};

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Eq,
    Ne,
    Gt,
    Ge,
    Lt,
    Le,
    Match,
    NotMatch,
}

/// A literal on the right-hand side.
#[derive(Debug, Clone)]
pub enum Literal {
    Num(f64),
    Str(String),
    Bool(bool),
    /// A DateTime (or Date/Time) with its instant in milliseconds.
    Time(i64, String),
    /// An unquoted token that is none of the above (a URI or a bare word).
    Token(String),
}

/// The right-hand side of a term.
#[derive(Debug, Clone)]
pub enum Rhs {
    One(Literal),
    List(Vec<Literal>),
    Range(Literal, Literal),
    Regex(Regex),
}

/// An attribute path as written: `attr`, `attr.sub.sub`, `attr[json.path]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Path {
    pub attr: String,
    pub sub: Vec<String>,
    pub json: Vec<String>,
}

/// A parsed `q` expression (names as written).
#[derive(Debug, Clone)]
pub enum Expr {
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Term { path: Path, negated: bool, cmp: Option<(Op, Rhs)> },
}

/// Members of an attribute that a path may name besides sub-attributes.
const META: &[&str] = &["observedAt", "createdAt", "modifiedAt", "unitCode", "datasetId", "deletedAt"];

struct Parser<'a> {
    src: &'a str,
    pos: usize,
}

fn err(pos: usize, msg: impl AsRef<str>) -> NgsiError {
    NgsiError::invalid(format!("invalid q at position {pos}: {}", msg.as_ref()))
}

impl<'a> Parser<'a> {
    fn peek(&self) -> Option<char> {
        self.src[self.pos..].chars().next()
    }

    fn eat(&mut self, s: &str) -> bool {
        if self.src[self.pos..].starts_with(s) {
            self.pos += s.len();
            true
        } else {
            false
        }
    }

    fn or(&mut self, depth: usize) -> NgsiResult<Expr> {
        if depth > 32 {
            return Err(err(self.pos, "parentheses nested too deeply"));
        }
        let mut items = vec![self.and(depth)?];
        while self.eat("|") {
            items.push(self.and(depth)?);
        }
        Ok(if items.len() == 1 { items.pop().unwrap_or(Expr::And(vec![])) } else { Expr::Or(items) })
    }

    fn and(&mut self, depth: usize) -> NgsiResult<Expr> {
        let mut items = vec![self.unary(depth)?];
        while self.eat(";") {
            items.push(self.unary(depth)?);
        }
        Ok(if items.len() == 1 { items.pop().unwrap_or(Expr::And(vec![])) } else { Expr::And(items) })
    }

    fn unary(&mut self, depth: usize) -> NgsiResult<Expr> {
        if self.eat("(") {
            let e = self.or(depth + 1)?;
            if !self.eat(")") {
                return Err(err(self.pos, "expected ')'"));
            }
            return Ok(e);
        }
        self.term()
    }

    fn name(&mut self, what: &str) -> NgsiResult<String> {
        let start = self.pos;
        while let Some(c) = self.peek() {
            if c.is_alphanumeric() || matches!(c, '_' | ':' | '/' | '#' | '@' | '-') {
                self.pos += c.len_utf8();
            } else {
                break;
            }
        }
        if self.pos == start {
            return Err(err(start, format!("expected {what}")));
        }
        Ok(self.src[start..self.pos].to_owned())
    }

    fn term(&mut self) -> NgsiResult<Expr> {
        let negated = self.src[self.pos..].starts_with('!') && !self.src[self.pos..].starts_with("!=");
        if negated {
            self.pos += 1;
        }
        let attr = self.name("an attribute name")?;
        let mut sub = Vec::new();
        while self.eat(".") {
            sub.push(self.name("a sub-attribute name")?);
        }
        let mut json = Vec::new();
        while self.eat("[") {
            loop {
                json.push(self.name("a key inside [...]")?);
                if !self.eat(".") {
                    break;
                }
            }
            if !self.eat("]") {
                return Err(err(self.pos, "expected ']'"));
            }
        }
        let path = Path { attr, sub, json };
        let op_pos = self.pos;
        let op = if self.eat("==") {
            Some(Op::Eq)
        } else if self.eat("!~=") {
            Some(Op::NotMatch)
        } else if self.eat("!=") {
            Some(Op::Ne)
        } else if self.eat("~=") {
            Some(Op::Match)
        } else if self.eat(">=") {
            Some(Op::Ge)
        } else if self.eat("<=") {
            Some(Op::Le)
        } else if self.eat(">") {
            Some(Op::Gt)
        } else if self.eat("<") {
            Some(Op::Lt)
        } else {
            None
        };
        let Some(op) = op else {
            return match self.peek() {
                None | Some(';') | Some('|') | Some(')') => Ok(Expr::Term { path, negated, cmp: None }),
                Some(c) => Err(err(op_pos, format!("unexpected character {c:?} after an attribute path"))),
            };
        };
        if negated {
            return Err(err(op_pos, "'!' only negates a bare attribute"));
        }
        let value_start = self.pos;
        let raw = self.value_text(matches!(op, Op::Match | Op::NotMatch))?;
        if raw.is_empty() {
            return Err(err(value_start, "expected a value"));
        }
        let rhs = parse_rhs(raw, op, value_start)?;
        Ok(Expr::Term { path, negated: false, cmp: Some((op, rhs)) })
    }

    /// Reads a value up to the next top-level `;`, `|` or unbalanced `)`, honouring quotes.
    fn value_text(&mut self, regex: bool) -> NgsiResult<&'a str> {
        let start = self.pos;
        let (mut in_quote, mut depth) = (false, 0usize);
        let bytes = self.src.as_bytes();
        while self.pos < bytes.len() {
            let c = bytes[self.pos];
            match c {
                b'"' => in_quote = !in_quote,
                b'\\' if in_quote => self.pos += 1,
                b'(' if !in_quote && regex => depth += 1,
                b')' if !in_quote && depth > 0 => depth -= 1,
                b')' if !in_quote => break,
                b';' if !in_quote && depth == 0 => break,
                b'|' if !in_quote && depth == 0 => break,
                _ => {}
            }
            self.pos += 1;
        }
        if in_quote {
            return Err(err(start, "unterminated string"));
        }
        Ok(&self.src[start..self.pos.min(bytes.len())])
    }
}

fn parse_rhs(raw: &str, op: Op, pos: usize) -> NgsiResult<Rhs> {
    if matches!(op, Op::Match | Op::NotMatch) {
        let pattern = raw.strip_prefix('"').and_then(|r| r.strip_suffix('"')).unwrap_or(raw);
        let re = super::pattern::compile(pattern).map_err(|e| err(pos, format!("invalid regular expression: {e}")))?;
        return Ok(Rhs::Regex(re));
    }
    let items = split_top(raw, ',');
    if items.len() > 1 {
        if !matches!(op, Op::Eq | Op::Ne) {
            return Err(err(pos, "a list of values needs == or !="));
        }
        return Ok(Rhs::List(items.iter().map(|i| literal(i, pos)).collect::<NgsiResult<_>>()?));
    }
    if let Some((lo, hi)) = split_range(raw) {
        if !matches!(op, Op::Eq | Op::Ne) {
            return Err(err(pos, "a range needs == or !="));
        }
        return Ok(Rhs::Range(literal(lo, pos)?, literal(hi, pos)?));
    }
    Ok(Rhs::One(literal(raw, pos)?))
}

fn split_top(raw: &str, sep: char) -> Vec<&str> {
    let (mut out, mut start, mut in_quote) = (Vec::new(), 0, false);
    for (i, c) in raw.char_indices() {
        if c == '"' {
            in_quote = !in_quote;
        } else if c == sep && !in_quote {
            out.push(&raw[start..i]);
            start = i + 1;
        }
    }
    out.push(&raw[start..]);
    out
}

fn split_range(raw: &str) -> Option<(&str, &str)> {
    let mut in_quote = false;
    let b = raw.as_bytes();
    for i in 0..b.len().saturating_sub(1) {
        if b[i] == b'"' {
            in_quote = !in_quote;
        } else if !in_quote && b[i] == b'.' && b[i + 1] == b'.' {
            return Some((&raw[..i], &raw[i + 2..]));
        }
    }
    None
}

fn literal(raw: &str, pos: usize) -> NgsiResult<Literal> {
    let t = raw.trim();
    if t.is_empty() {
        return Err(err(pos, "empty value"));
    }
    if let Some(inner) = t.strip_prefix('"') {
        let inner = inner.strip_suffix('"').ok_or_else(|| err(pos, "unterminated string"))?;
        let s = inner.replace("\\\"", "\"");
        if let Some(ms) = datetime(&s) {
            return Ok(Literal::Time(ms, s));
        }
        return Ok(Literal::Str(s));
    }
    if t == "true" || t == "false" {
        return Ok(Literal::Bool(t == "true"));
    }
    if let Ok(n) = t.parse::<f64>()
        && n.is_finite()
    {
        return Ok(Literal::Num(n));
    }
    if let Some(ms) = datetime(t) {
        return Ok(Literal::Time(ms, t.to_owned()));
    }
    if t.chars().any(|c| c.is_whitespace() || matches!(c, '"' | '<' | '>' | '!' | '=' | '(' | '[' | ']')) {
        return Err(err(pos, format!("{t:?} is not a value (strings must be quoted)")));
    }
    Ok(Literal::Token(t.to_owned()))
}

/// DateTime, Date (midnight UTC) or Time (on 1970-01-01) to milliseconds.
fn datetime(s: &str) -> Option<i64> {
    let looks = s.len() >= 8 && s.as_bytes()[0].is_ascii_digit();
    if !looks {
        return None;
    }
    if s.contains('T') {
        return parse_datetime(s);
    }
    if let Ok(d) = chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return d.and_hms_opt(0, 0, 0).map(|t| t.and_utc().timestamp_millis());
    }
    let time = s.trim_end_matches('Z');
    for f in ["%H:%M:%S%.f", "%H:%M:%S"] {
        if let Ok(t) = chrono::NaiveTime::parse_from_str(time, f) {
            let d = chrono::NaiveDate::from_ymd_opt(1970, 1, 1)?;
            return Some(d.and_time(t).and_utc().timestamp_millis());
        }
    }
    None
}

/// Parses a `q` expression.
pub fn parse(src: &str) -> NgsiResult<Expr> {
    if src.trim().is_empty() {
        return Err(err(0, "empty query"));
    }
    if src.len() > 8192 {
        return Err(NgsiError::new(crate::error::ErrorKind::TooComplexQuery, "q is longer than 8192 characters"));
    }
    let mut p = Parser { src, pos: 0 };
    let e = p.or(0)?;
    if p.pos != src.len() {
        let c = p.peek().unwrap_or(' ');
        return Err(err(p.pos, format!("unexpected character {c:?}")));
    }
    Ok(e)
}

/// A term with names expanded, ready to evaluate.
#[derive(Debug, Clone)]
pub struct ResolvedPath {
    /// Expanded attribute name, or an entity-level system member (`id`, `type`, `createdAt`, …).
    pub attr: String,
    pub system: bool,
    /// Sub-attribute names expanded; metadata members kept as written.
    pub sub: Vec<String>,
    pub json: Vec<String>,
}

/// A `q` expression with names expanded.
#[derive(Debug, Clone)]
pub enum Query {
    And(Vec<Query>),
    Or(Vec<Query>),
    Term { path: ResolvedPath, negated: bool, cmp: Option<(Op, Rhs)>, vocab_rhs: Option<Rhs> },
}

impl Expr {
    /// Expands attribute names (and the vocabulary form of bare tokens) with `ctx`.
    pub fn resolve(&self, ctx: &Context) -> Query {
        match self {
            Expr::And(v) => Query::And(v.iter().map(|e| e.resolve(ctx)).collect()),
            Expr::Or(v) => Query::Or(v.iter().map(|e| e.resolve(ctx)).collect()),
            Expr::Term { path, negated, cmp } => {
                let system =
                    matches!(path.attr.as_str(), "id" | "type" | "createdAt" | "modifiedAt" | "observedAt" | "scope")
                        && path.sub.is_empty();
                let attr = if system { path.attr.clone() } else { ctx.expand(&path.attr) };
                let sub = path
                    .sub
                    .iter()
                    .map(|s| if META.contains(&s.as_str()) { s.clone() } else { ctx.expand(s) })
                    .collect();
                let vocab_rhs = cmp.as_ref().map(|(_, rhs)| expand_rhs(rhs, ctx));
                Query::Term {
                    path: ResolvedPath { attr, system, sub, json: path.json.clone() },
                    negated: *negated,
                    cmp: cmp.clone(),
                    vocab_rhs,
                }
            }
        }
    }
}

fn expand_lit(l: &Literal, ctx: &Context) -> Literal {
    match l {
        Literal::Token(t) | Literal::Str(t) => Literal::Str(ctx.expand(t)),
        other => other.clone(),
    }
}

fn expand_rhs(r: &Rhs, ctx: &Context) -> Rhs {
    match r {
        Rhs::One(l) => Rhs::One(expand_lit(l, ctx)),
        Rhs::List(v) => Rhs::List(v.iter().map(|l| expand_lit(l, ctx)).collect()),
        Rhs::Range(a, b) => Rhs::Range(expand_lit(a, ctx), expand_lit(b, ctx)),
        Rhs::Regex(re) => Rhs::Regex(re.clone()),
    }
}

/// Parses and resolves in one go.
pub fn compile(src: &str, ctx: &Context) -> NgsiResult<Query> {
    Ok(parse(src)?.resolve(ctx))
}

impl Query {
    /// Whether the entity satisfies the query.
    pub fn matches(&self, e: &Entity) -> bool {
        match self {
            Query::And(v) => v.iter().all(|q| q.matches(e)),
            Query::Or(v) => v.iter().any(|q| q.matches(e)),
            Query::Term { path, negated, cmp, vocab_rhs } => {
                if let Some((op, rhs)) = cmp
                    && let Some(hit) = numeric_fast_path(e, path, *op, rhs)
                {
                    return hit;
                }
                let values = collect(e, path);
                match cmp {
                    None => values.is_empty() == *negated,
                    Some((op, rhs)) => values.iter().any(|(v, vocab)| {
                        let rhs = if *vocab { vocab_rhs.as_ref().unwrap_or(rhs) } else { rhs };
                        compare(v, *op, rhs)
                    }),
                }
            }
        }
    }

    /// The expanded attribute names the query refers to (for index planning and projections).
    pub fn attributes(&self, out: &mut Vec<String>) {
        match self {
            Query::And(v) | Query::Or(v) => v.iter().for_each(|q| q.attributes(out)),
            Query::Term { path, .. } => {
                if !path.system && !out.contains(&path.attr) {
                    out.push(path.attr.clone());
                }
            }
        }
    }
}

/// Compares a top-level attribute with a number without building JSON values: the common
/// `speed>95` case. `None` when the path or the stored values need the general evaluation.
fn numeric_fast_path(e: &Entity, p: &ResolvedPath, op: Op, rhs: &Rhs) -> Option<bool> {
    if p.system || !p.sub.is_empty() || !p.json.is_empty() {
        return None;
    }
    let test = |x: f64| -> Option<bool> {
        Some(match rhs {
            Rhs::One(Literal::Num(n)) => match op {
                Op::Eq => x == *n,
                Op::Ne => x != *n,
                Op::Gt => x > *n,
                Op::Ge => x >= *n,
                Op::Lt => x < *n,
                Op::Le => x <= *n,
                Op::Match | Op::NotMatch => return None,
            },
            Rhs::Range(Literal::Num(a), Literal::Num(b)) => {
                let inside = x >= *a && x <= *b;
                match op {
                    Op::Eq => inside,
                    Op::Ne => !inside,
                    _ => return None,
                }
            }
            _ => return None,
        })
    };
    let Some(instances) = e.attrs.get(p.attr.as_str()) else { return Some(false) };
    let mut hit = false;
    for a in instances {
        if !matches!(a.kind, AttrKind::Property | AttrKind::GeoProperty | AttrKind::JsonProperty) {
            return None;
        }
        // Only plain numbers take the fast path; strings, arrays and objects go the general way.
        let x: f64 = a.value_text().parse().ok()?;
        hit |= test(x)?;
    }
    Some(hit)
}

/// The values a path designates in an entity, each flagged when it is a vocabulary value.
pub(crate) fn collect(e: &Entity, p: &ResolvedPath) -> Vec<(Value, bool)> {
    if p.system {
        return match p.attr.as_str() {
            "id" => vec![(Value::String(e.id.to_string()), false)],
            "type" => e.types.iter().map(|t| (Value::String(t.to_string()), true)).collect(),
            "createdAt" => vec![(Value::String(format_millis(e.created_at)), false)],
            "modifiedAt" => vec![(Value::String(format_millis(e.modified_at)), false)],
            "scope" => e.scopes().into_iter().flatten().map(|s| (Value::String(s.clone()), false)).collect(),
            // Entity-level observedAt: any attribute's.
            _ => e
                .attrs
                .values()
                .flatten()
                .filter_map(|a| a.observed_at().map(|s| s.to_string()))
                .map(|t| (Value::String(t), false))
                .collect(),
        };
    }
    let mut out = Vec::new();
    let Some(instances) = e.attrs.get(p.attr.as_str()) else { return out };
    for a in instances {
        attr_values(a, &p.sub, &p.json, &mut out);
    }
    out
}

fn attr_values(a: &Attribute, sub: &[String], json: &[String], out: &mut Vec<(Value, bool)>) {
    if let Some((first, rest)) = sub.split_first() {
        let meta = match first.as_str() {
            "observedAt" => a.observed_at().map(|s| Value::String(s.to_string())),
            "unitCode" => a.unit_code().map(|s| Value::String(s.to_owned())),
            "datasetId" => a.dataset_id().map(|s| Value::String(s.to_owned())),
            "createdAt" => Some(Value::String(format_millis(a.created_at))),
            "modifiedAt" => Some(Value::String(format_millis(a.modified_at))),
            _ => None,
        };
        if let Some(m) = meta {
            if rest.is_empty() {
                out.push((m, false));
            }
            return;
        }
        if let Some(s) = a.sub().get(first.as_str()) {
            attr_values(s, rest, json, out);
        }
        return;
    }
    let vocab = a.kind == AttrKind::VocabProperty;
    let value = a.value();
    let base: Vec<Value> = match a.kind {
        AttrKind::LanguageProperty => value.as_object().map(|m| m.values().cloned().collect()).unwrap_or_default(),
        AttrKind::ListRelationship => value
            .as_array()
            .map(|items| items.iter().map(|i| i.get("object").cloned().unwrap_or_else(|| i.clone())).collect())
            .unwrap_or_default(),
        _ => vec![value],
    };
    for v in base {
        let mut cur = Some(&v);
        for k in json {
            cur = cur.and_then(|c| c.get(k.as_str()));
        }
        match cur {
            Some(Value::Array(items)) if json.is_empty() || !items.is_empty() => {
                for i in items {
                    out.push((i.clone(), vocab));
                }
            }
            Some(x) => out.push((x.clone(), vocab)),
            None => {}
        }
    }
}

fn compare(v: &Value, op: Op, rhs: &Rhs) -> bool {
    match rhs {
        Rhs::Regex(re) => {
            let hit = v.as_str().is_some_and(|s| re.is_match(s));
            if op == Op::Match { hit } else { !hit }
        }
        Rhs::List(items) => {
            let hit = items.iter().any(|l| cmp_lit(v, l) == Some(std::cmp::Ordering::Equal));
            if op == Op::Ne { !hit } else { hit }
        }
        Rhs::Range(lo, hi) => {
            let inside = matches!(cmp_lit(v, lo), Some(std::cmp::Ordering::Greater | std::cmp::Ordering::Equal))
                && matches!(cmp_lit(v, hi), Some(std::cmp::Ordering::Less | std::cmp::Ordering::Equal));
            if op == Op::Ne { !inside } else { inside }
        }
        Rhs::One(l) => {
            use std::cmp::Ordering::*;
            let o = cmp_lit(v, l);
            match op {
                Op::Eq => o == Some(Equal),
                Op::Ne => o != Some(Equal),
                Op::Gt => o == Some(Greater),
                Op::Ge => matches!(o, Some(Greater | Equal)),
                Op::Lt => o == Some(Less),
                Op::Le => matches!(o, Some(Less | Equal)),
                Op::Match | Op::NotMatch => false,
            }
        }
    }
}

/// Orders a stored value against a literal; `None` when they are not comparable.
fn cmp_lit(v: &Value, l: &Literal) -> Option<std::cmp::Ordering> {
    match (v, l) {
        (Value::Number(n), Literal::Num(x)) => n.as_f64()?.partial_cmp(x),
        (Value::Bool(b), Literal::Bool(x)) => Some(b.cmp(x)),
        (Value::String(s), Literal::Time(ms, raw)) => match datetime(s) {
            Some(t) => Some(t.cmp(ms)),
            None => Some(s.as_str().cmp(raw.as_str())),
        },
        (Value::String(s), Literal::Str(x) | Literal::Token(x)) => Some(s.as_str().cmp(x.as_str())),
        // A typed value `{"@type": "DateTime", "@value": "..."}`.
        (Value::Object(o), _) if o.contains_key("@value") => cmp_lit(&o["@value"], l),
        (Value::String(s), Literal::Num(x)) => s.parse::<f64>().ok()?.partial_cmp(x),
        _ => None,
    }
}

impl Query {
    /// A numeric range that every entity matching this query must have a value of a top-level
    /// attribute in (for a value index), if the query implies one.
    pub fn numeric_range(&self) -> Option<crate::store::NumRange> {
        use std::ops::Bound::*;
        match self {
            Query::And(items) => items.iter().find_map(Query::numeric_range),
            Query::Or(_) => None,
            Query::Term { path, negated: false, cmp: Some((op, rhs)), .. }
                if !path.system && path.sub.is_empty() && path.json.is_empty() =>
            {
                let (lo, hi) = match (op, rhs) {
                    (Op::Gt, Rhs::One(Literal::Num(x))) => (Excluded(*x), Unbounded),
                    (Op::Ge, Rhs::One(Literal::Num(x))) => (Included(*x), Unbounded),
                    (Op::Lt, Rhs::One(Literal::Num(x))) => (Unbounded, Excluded(*x)),
                    (Op::Le, Rhs::One(Literal::Num(x))) => (Unbounded, Included(*x)),
                    (Op::Eq, Rhs::One(Literal::Num(x))) => (Included(*x), Included(*x)),
                    (Op::Eq, Rhs::Range(Literal::Num(a), Literal::Num(b))) => (Included(*a), Included(*b)),
                    _ => return None,
                };
                Some(crate::store::NumRange { attr: path.attr.clone(), lo, hi })
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jsonld::CORE;
    use crate::model::parse::{Purpose, parse_entity};
    use serde_json::json;

    fn entity(v: Value) -> Entity {
        let input = parse_entity(&v, &CORE, Purpose::Create, 0).unwrap();
        let id = input.id.clone().unwrap();
        input.into_entity(id, 1_700_000_000_000)
    }

    fn q(src: &str, e: &Entity) -> bool {
        compile(src, &CORE).unwrap_or_else(|e| panic!("{src}: {e}")).matches(e)
    }

    fn car() -> Entity {
        entity(json!({
            "id": "urn:car:1", "type": "Car",
            "speed": {"type": "Property", "value": 80, "observedAt": "2024-05-01T10:00:00Z", "accuracy": {"value": 0.9}},
            "brand": "Volvo",
            "tags": ["a", "b"],
            "on": true,
            "info": {"value": {"engine": {"cc": 2000}, "seats": 5}},
            "owner": {"type": "Relationship", "object": "urn:person:7"},
            "name": {"languageMap": {"en": "car", "fr": "voiture"}},
            "colour": {"vocab": "red"},
            "since": {"value": {"@type": "DateTime", "@value": "2020-01-01T00:00:00Z"}}
        }))
    }

    #[test]
    fn comparisons_and_logic() {
        let e = car();
        assert!(q("speed>50", &e));
        assert!(!q("speed>80", &e));
        assert!(q("speed>=80;speed<=80", &e));
        assert!(q("speed==80", &e));
        assert!(q("speed!=81", &e));
        assert!(q("speed==70..90", &e));
        assert!(!q("speed==81..90", &e));
        assert!(q("speed!=81..90", &e));
        assert!(q("speed==1,80,3", &e));
        assert!(q("brand==\"Volvo\"", &e));
        assert!(q("brand==Volvo", &e));
        assert!(q("brand~=^Vol", &e));
        assert!(q("brand!~=^Sa", &e));
        assert!(q("tags==\"b\"", &e));
        assert!(q("on==true", &e));
        assert!(q("speed", &e));
        assert!(q("!missing", &e));
        assert!(!q("missing", &e));
        assert!(!q("missing!=1", &e), "!= needs the attribute");
        assert!(q("speed<10|brand==\"Volvo\"", &e));
        assert!(q("(speed<10|brand==\"Volvo\");on==true", &e));
        assert!(!q("(speed<10|brand==\"Saab\");on==true", &e));
        assert!(q("speed<10|brand==\"Saab\"|on==true", &e));
    }

    #[test]
    fn paths_relationships_languages_vocab_dates() {
        let e = car();
        assert!(q("speed.accuracy>0.5", &e));
        assert!(q("speed.observedAt>2024-01-01T00:00:00Z", &e));
        assert!(q("info[engine.cc]==2000", &e));
        assert!(q("info[seats]<6", &e));
        assert!(q("owner==\"urn:person:7\"", &e));
        assert!(q("owner==urn:person:7", &e));
        assert!(q("name==\"voiture\"", &e));
        assert!(q("colour==red", &e), "vocab values compare expanded");
        assert!(q("since>2019-06-01T00:00:00Z", &e));
        assert!(q("createdAt>2023-01-01T00:00:00Z", &e));
        assert!(q("modifiedAt<2030-01-01", &e));
        assert!(q("id==urn:car:1", &e));
    }

    #[test]
    fn errors_say_where() {
        for (src, pos) in [
            ("speed>", 6),
            ("speed>>3", 6),
            ("(speed>3", 8),
            ("speed>3)", 7),
            ("speed==\"x", 7),
            (";speed", 0),
            ("speed>1,2", 6),
            ("sp eed", 2),
            ("speed~=(", 7),
            ("!speed>3", 6),
            ("a[b", 3),
        ] {
            let e = parse(src).expect_err(src);
            assert!(e.detail.contains(&format!("position {pos}")), "{src}: {}", e.detail);
        }
    }
}
