//! The JEXL dialect iotagent-node-lib evaluates (TomFrost's Jexl plus the agent's transforms):
//! attribute expressions, `entityNameExp`, `explicitAttrs`, command payloads. A small lexer and
//! Pratt parser build a tree once; a bounded cache keeps the trees of the expressions in use, so
//! evaluating an expression per measure does not re-parse it.
//!
//! Values follow JavaScript: an unknown identifier, or a member of `null`, is `null` (JavaScript's
//! `undefined`), `NaN` is `null`, `+` concatenates as soon as one side is a string.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use parking_lot::Mutex;
use serde_json::{Map, Value};

use super::js::{self, Val};
use super::transforms;
use crate::error::{AgentError, Result};

/// A parsed expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    Literal(Value),
    Ident(String),
    /// `.name` inside a filter: a member of the element being filtered.
    Relative(String),
    Array(Vec<Node>),
    Object(Vec<(String, Node)>),
    Member(Box<Node>, String),
    Index(Box<Node>, Box<Node>),
    /// `subject[.x == 1]`: the elements for which the expression holds.
    Filter(Box<Node>, Box<Node>),
    Unary(UnOp, Box<Node>),
    Binary(BinOp, Box<Node>, Box<Node>),
    And(Box<Node>, Box<Node>),
    Or(Box<Node>, Box<Node>),
    Ternary(Box<Node>, Box<Node>, Box<Node>),
    /// `subject|name(args)`.
    Transform(Box<Node>, String, Vec<Node>),
    /// `name(args)`: a transform called as a function (its first argument is the subject).
    Call(String, Vec<Node>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnOp {
    Not,
    Neg,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    FloorDiv,
    Mod,
    Pow,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    In,
}

/// Where identifiers are looked up. Layered scopes avoid copying the measures for every
/// attribute.
pub trait Scope {
    fn get(&self, name: &str) -> Option<&Value>;
}

impl Scope for Value {
    fn get(&self, name: &str) -> Option<&Value> {
        self.as_object().and_then(|m| m.get(name))
    }
}

impl Scope for Map<String, Value> {
    fn get(&self, name: &str) -> Option<&Value> {
        Map::get(self, name)
    }
}

/// A scope that looks in `top` first, then in `rest`.
pub struct Layered<'a> {
    pub top: &'a dyn Scope,
    pub rest: &'a dyn Scope,
}

impl Scope for Layered<'_> {
    fn get(&self, name: &str) -> Option<&Value> {
        self.top.get(name).or_else(|| self.rest.get(name))
    }
}

// ----------------------------------------------------------------------------------------------
// Lexer

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Num(f64),
    Str(String),
    Ident(String),
    Punct(&'static str),
}

const PUNCTS: [&str; 25] = [
    "==", "!=", "<=", ">=", "&&", "||", "//", "+", "-", "*", "/", "%", "^", "<", ">", "!", "?", ":", ".", ",", "(",
    ")", "[", "]", "|",
];

fn lex(src: &str) -> std::result::Result<Vec<(Tok, usize)>, String> {
    let b = src.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let start = i;
        if c.is_ascii_digit() || (c == b'.' && b.get(i + 1).is_some_and(u8::is_ascii_digit) && !prev_is_operand(&out)) {
            while i < b.len() && (b[i].is_ascii_digit() || b[i] == b'.') {
                i += 1;
            }
            let text = &src[start..i];
            let n = text.parse::<f64>().map_err(|_| format!("invalid number '{text}' at {start}"))?;
            out.push((Tok::Num(n), start));
            continue;
        }
        if c == b'\'' || c == b'"' {
            let mut s = String::new();
            i += 1;
            let mut closed = false;
            while i < b.len() {
                let ch = src[i..].chars().next().unwrap_or('\0');
                if ch as u32 == u32::from(c) {
                    i += 1;
                    closed = true;
                    break;
                }
                if ch == '\\' {
                    // Jexl unescapes only the quote and the backslash; `\n` stays two characters.
                    i += 1;
                    let esc = src[i..].chars().next().ok_or_else(|| format!("unterminated string at {start}"))?;
                    if esc as u32 != u32::from(c) && esc != '\\' {
                        s.push('\\');
                    }
                    s.push(esc);
                    i += esc.len_utf8();
                    continue;
                }
                s.push(ch);
                i += ch.len_utf8();
            }
            if !closed {
                return Err(format!("unterminated string at {start}"));
            }
            out.push((Tok::Str(s), start));
            continue;
        }
        if c.is_ascii_alphabetic() || c == b'_' || c == b'$' || c >= 0x80 {
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b'$' || b[i] >= 0x80) {
                i += 1;
            }
            out.push((Tok::Ident(src[start..i].to_owned()), start));
            continue;
        }
        match PUNCTS.iter().find(|p| src[i..].starts_with(**p)) {
            Some(p) => {
                out.push((Tok::Punct(p), start));
                i += p.len();
            }
            None => {
                let ch = src[i..].chars().next().unwrap_or('?');
                return Err(format!("unexpected character '{ch}' at {start}"));
            }
        }
    }
    Ok(out)
}

/// Whether the last token ends an operand, so a following `.` is member access, not a number.
fn prev_is_operand(toks: &[(Tok, usize)]) -> bool {
    matches!(toks.last(), Some((Tok::Ident(_) | Tok::Num(_) | Tok::Str(_) | Tok::Punct(")" | "]" | "}"), _)))
}

// ----------------------------------------------------------------------------------------------
// Parser

/// Trees deeper than this are refused: parsing and evaluation recurse over the tree, and a
/// hostile expression must not exhaust a thread's stack (real expressions are a few levels deep).
const MAX_DEPTH: usize = 64;

/// Longer expressions are refused, bounding the work of one parse.
const MAX_TOKENS: usize = 4096;

struct Parser {
    toks: Vec<(Tok, usize)>,
    pos: usize,
    end: usize,
    depth: usize,
}

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos).map(|(t, _)| t)
    }

    fn at(&self) -> usize {
        self.toks.get(self.pos).map(|(_, p)| *p).unwrap_or(self.end)
    }

    fn next(&mut self) -> Option<Tok> {
        let t = self.toks.get(self.pos).map(|(t, _)| t.clone());
        self.pos += 1;
        t
    }

    fn is(&self, p: &str) -> bool {
        matches!(self.peek(), Some(Tok::Punct(q)) if *q == p)
    }

    fn expect(&mut self, p: &str) -> std::result::Result<(), String> {
        if self.is(p) {
            self.pos += 1;
            Ok(())
        } else {
            Err(format!("expected '{p}' at {}", self.at()))
        }
    }

    fn ident(&mut self) -> std::result::Result<String, String> {
        let at = self.at();
        match self.next() {
            Some(Tok::Ident(s)) => Ok(s),
            _ => Err(format!("expected a name at {at}")),
        }
    }

    fn expr(&mut self, min_bp: u8) -> std::result::Result<Node, String> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err("expression nested too deeply".into());
        }
        let mut lhs = self.prefix()?;
        loop {
            let Some(Tok::Punct(p)) = self.peek().cloned() else {
                if let Some(Tok::Ident(w)) = self.peek()
                    && w == "in"
                    && 20 > min_bp
                {
                    self.pos += 1;
                    let rhs = self.expr(20)?;
                    lhs = Node::Binary(BinOp::In, Box::new(lhs), Box::new(rhs));
                    continue;
                }
                break;
            };
            match p {
                "." => {
                    self.pos += 1;
                    let name = self.ident()?;
                    lhs = Node::Member(Box::new(lhs), name);
                }
                "[" => {
                    self.pos += 1;
                    if self.is(".") {
                        let cond = self.expr(0)?;
                        self.expect("]")?;
                        lhs = Node::Filter(Box::new(lhs), Box::new(cond));
                    } else {
                        let idx = self.expr(0)?;
                        self.expect("]")?;
                        lhs = Node::Index(Box::new(lhs), Box::new(idx));
                    }
                }
                "|" if min_bp < 90 => {
                    self.pos += 1;
                    let name = self.ident()?;
                    let args = if self.is("(") { self.args()? } else { Vec::new() };
                    lhs = Node::Transform(Box::new(lhs), name, args);
                }
                "?" if min_bp < 5 => {
                    self.pos += 1;
                    let then = self.expr(0)?;
                    self.expect(":")?;
                    let otherwise = self.expr(4)?;
                    lhs = Node::Ternary(Box::new(lhs), Box::new(then), Box::new(otherwise));
                }
                _ => {
                    let Some((op, bp, right)) = binary(p) else { break };
                    if bp <= min_bp {
                        break;
                    }
                    self.pos += 1;
                    let rhs = self.expr(if right { bp - 1 } else { bp })?;
                    lhs = match op {
                        Bin::And => Node::And(Box::new(lhs), Box::new(rhs)),
                        Bin::Or => Node::Or(Box::new(lhs), Box::new(rhs)),
                        Bin::Op(o) => Node::Binary(o, Box::new(lhs), Box::new(rhs)),
                    };
                }
            }
        }
        self.depth -= 1;
        Ok(lhs)
    }

    fn args(&mut self) -> std::result::Result<Vec<Node>, String> {
        self.expect("(")?;
        let mut args = Vec::new();
        while !self.is(")") {
            args.push(self.expr(0)?);
            if !self.is(")") {
                self.expect(",")?;
            }
        }
        self.expect(")")?;
        Ok(args)
    }

    fn prefix(&mut self) -> std::result::Result<Node, String> {
        let at = self.at();
        match self.next() {
            Some(Tok::Num(n)) => Ok(Node::Literal(js::num(n))),
            Some(Tok::Str(s)) => Ok(Node::Literal(Value::String(s))),
            Some(Tok::Ident(w)) => match w.as_str() {
                "true" => Ok(Node::Literal(Value::Bool(true))),
                "false" => Ok(Node::Literal(Value::Bool(false))),
                "null" => Ok(Node::Literal(Value::Null)),
                _ if self.is("(") => Ok(Node::Call(w, self.args()?)),
                _ => Ok(Node::Ident(w)),
            },
            Some(Tok::Punct("(")) => {
                let e = self.expr(0)?;
                self.expect(")")?;
                Ok(e)
            }
            Some(Tok::Punct("[")) => {
                let mut items = Vec::new();
                while !self.is("]") {
                    items.push(self.expr(0)?);
                    if !self.is("]") {
                        self.expect(",")?;
                    }
                }
                self.expect("]")?;
                Ok(Node::Array(items))
            }
            Some(Tok::Punct("{")) => {
                let mut entries = Vec::new();
                while !self.is("}") {
                    let key_at = self.at();
                    let key = match self.next() {
                        Some(Tok::Ident(k) | Tok::Str(k)) => k,
                        _ => return Err(format!("expected an object key at {key_at}")),
                    };
                    self.expect(":")?;
                    entries.push((key, self.expr(0)?));
                    if !self.is("}") {
                        self.expect(",")?;
                    }
                }
                self.expect("}")?;
                Ok(Node::Object(entries))
            }
            Some(Tok::Punct("!")) => Ok(Node::Unary(UnOp::Not, Box::new(self.expr(85)?))),
            Some(Tok::Punct("-")) => Ok(Node::Unary(UnOp::Neg, Box::new(self.expr(85)?))),
            Some(Tok::Punct(".")) => Ok(Node::Relative(self.ident()?)),
            Some(t) => Err(format!("unexpected {} at {at}", describe(&t))),
            None => Err(format!("unexpected end of expression at {at}")),
        }
    }
}

enum Bin {
    And,
    Or,
    Op(BinOp),
}

/// Binary operators as Jexl's grammar ranks them: (operator, binding power, right-associative).
/// Unlike JavaScript, `&&` and `||` share one level, `%` and `^` bind tighter than `*`, and every
/// operator is left-associative (`2 ^ 3 ^ 2` is 64).
fn binary(p: &str) -> Option<(Bin, u8, bool)> {
    Some(match p {
        "||" => (Bin::Or, 10, false),
        "&&" => (Bin::And, 10, false),
        "==" => (Bin::Op(BinOp::Eq), 20, false),
        "!=" => (Bin::Op(BinOp::Ne), 20, false),
        "<" => (Bin::Op(BinOp::Lt), 20, false),
        "<=" => (Bin::Op(BinOp::Le), 20, false),
        ">" => (Bin::Op(BinOp::Gt), 20, false),
        ">=" => (Bin::Op(BinOp::Ge), 20, false),
        "+" => (Bin::Op(BinOp::Add), 30, false),
        "-" => (Bin::Op(BinOp::Sub), 30, false),
        "*" => (Bin::Op(BinOp::Mul), 40, false),
        "/" => (Bin::Op(BinOp::Div), 40, false),
        "//" => (Bin::Op(BinOp::FloorDiv), 40, false),
        "%" => (Bin::Op(BinOp::Mod), 50, false),
        "^" => (Bin::Op(BinOp::Pow), 50, false),
        _ => return None,
    })
}

fn describe(t: &Tok) -> String {
    match t {
        Tok::Num(n) => format!("number {n}"),
        Tok::Str(s) => format!("string '{s}'"),
        Tok::Ident(s) => format!("'{s}'"),
        Tok::Punct(p) => format!("'{p}'"),
    }
}

/// Parses an expression, without the cache.
pub fn parse(src: &str) -> Result<Node> {
    let inner = || -> std::result::Result<Node, String> {
        // Object literals need `{`/`}`, which are not in the punctuation table so that they
        // cannot be confused with anything else; add them here.
        let toks = lex_with_braces(src)?;
        if toks.is_empty() {
            return Err("empty expression".into());
        }
        if toks.len() > MAX_TOKENS {
            return Err(format!("longer than {MAX_TOKENS} tokens"));
        }
        let mut p = Parser { toks, pos: 0, end: src.len(), depth: 0 };
        let node = p.expr(0)?;
        if p.pos < p.toks.len() {
            return Err(format!("unexpected {} at {}", describe(&p.toks[p.pos].0), p.at()));
        }
        if tree_depth(&node) > MAX_DEPTH {
            return Err(format!("nested deeper than {MAX_DEPTH} levels"));
        }
        Ok(node)
    };
    inner().map_err(|e| AgentError::invalid_expression(format!("invalid expression '{src}': {e}")))
}

/// The depth of a tree, without recursion (the tree may be too deep to recurse over).
fn tree_depth(root: &Node) -> usize {
    let mut max = 0;
    let mut stack: Vec<(&Node, usize)> = vec![(root, 1)];
    while let Some((node, d)) = stack.pop() {
        max = max.max(d);
        let children: Vec<&Node> = match node {
            Node::Literal(_) | Node::Ident(_) | Node::Relative(_) => Vec::new(),
            Node::Array(items) | Node::Call(_, items) => items.iter().collect(),
            Node::Object(entries) => entries.iter().map(|(_, n)| n).collect(),
            Node::Member(n, _) | Node::Unary(_, n) => vec![n.as_ref()],
            Node::Index(a, b) | Node::Filter(a, b) | Node::Binary(_, a, b) | Node::And(a, b) | Node::Or(a, b) => {
                vec![a.as_ref(), b.as_ref()]
            }
            Node::Ternary(a, b, c) => vec![a.as_ref(), b.as_ref(), c.as_ref()],
            Node::Transform(n, _, args) => std::iter::once(n.as_ref()).chain(args.iter()).collect(),
        };
        stack.extend(children.into_iter().map(|c| (c, d + 1)));
    }
    max
}

fn lex_with_braces(src: &str) -> std::result::Result<Vec<(Tok, usize)>, String> {
    // Split on braces outside string literals, lex the pieces, and put the braces back.
    let mut out = Vec::new();
    let mut piece_start = 0;
    let mut quote: Option<char> = None;
    let mut escaped = false;
    for (i, ch) in src.char_indices() {
        if let Some(q) = quote {
            if escaped {
                escaped = false;
            } else if ch == '\\' {
                escaped = true;
            } else if ch == q {
                quote = None;
            }
            continue;
        }
        match ch {
            '\'' | '"' => quote = Some(ch),
            '{' | '}' => {
                for (t, p) in lex(&src[piece_start..i])? {
                    out.push((t, p + piece_start));
                }
                out.push((Tok::Punct(if ch == '{' { "{" } else { "}" }), i));
                piece_start = i + 1;
            }
            _ => {}
        }
    }
    for (t, p) in lex(&src[piece_start..])? {
        out.push((t, p + piece_start));
    }
    Ok(out)
}

// ----------------------------------------------------------------------------------------------
// Cache

/// Parsed expressions kept at most; the cache is emptied when full (expressions come from
/// provisioning, so the working set is small and refills at once).
const CACHE_CAPACITY: usize = 4096;

static CACHE: LazyLock<Mutex<HashMap<String, Arc<Node>>>> = LazyLock::new(|| Mutex::new(HashMap::new()));

/// Expressions longer than this are parsed on every use instead of cached, so the cache's memory
/// stays bounded (4096 entries of at most 4 KiB of text and their trees).
const CACHE_MAX_EXPRESSION: usize = 4096;

/// Parses an expression once; later calls with the same text reuse the tree.
pub fn compile(src: &str) -> Result<Arc<Node>> {
    if src.len() > CACHE_MAX_EXPRESSION {
        return parse(src).map(Arc::new);
    }
    if let Some(n) = CACHE.lock().get(src) {
        return Ok(n.clone());
    }
    let node = Arc::new(parse(src)?);
    let mut cache = CACHE.lock();
    if cache.len() >= CACHE_CAPACITY {
        cache.clear();
    }
    cache.insert(src.to_owned(), node.clone());
    Ok(node)
}

// ----------------------------------------------------------------------------------------------
// Evaluation

/// Evaluates a parsed expression; `undefined` and `NaN` come back as `null`. `Err` carries a
/// message for a failing transform.
pub fn eval(node: &Node, scope: &dyn Scope) -> std::result::Result<Value, String> {
    Ok(eval_val(node, scope)?.into_json().unwrap_or(Value::Null))
}

/// Evaluates a parsed expression, keeping JavaScript's `undefined` and `NaN` apart from `null`.
pub fn eval_val(node: &Node, scope: &dyn Scope) -> std::result::Result<Val, String> {
    eval_in(node, scope, None)
}

fn eval_in(node: &Node, scope: &dyn Scope, rel: Option<&Value>) -> std::result::Result<Val, String> {
    let ev = |n: &Node| eval_in(n, scope, rel);
    Ok(match node {
        Node::Literal(v) => Val::Json(v.clone()),
        Node::Ident(name) => scope.get(name).map(|v| Val::Json(v.clone())).unwrap_or(Val::Undefined),
        Node::Relative(name) => rel.map(|r| member(&Val::Json(r.clone()), name)).unwrap_or(Val::Undefined),
        Node::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for n in items {
                out.push(ev(n)?.to_json());
            }
            Val::Json(Value::Array(out))
        }
        Node::Object(entries) => {
            let mut m = Map::new();
            for (k, n) in entries {
                // Like JSON.stringify, an undefined member is left out.
                if let Some(v) = ev(n)?.into_json() {
                    m.insert(k.clone(), v);
                }
            }
            Val::Json(Value::Object(m))
        }
        Node::Member(subject, name) => member(&ev(subject)?, name),
        Node::Index(subject, idx) => {
            let s = ev(subject)?;
            match ev(idx)? {
                Val::Json(Value::String(k)) => member(&s, &k),
                i => index(&s, &i),
            }
        }
        Node::Filter(subject, cond) => match ev(subject)? {
            Val::Json(Value::Array(items)) => {
                let mut kept = Vec::new();
                for item in items {
                    if eval_in(cond, scope, Some(&item))?.truthy() {
                        kept.push(item);
                    }
                }
                Val::Json(Value::Array(kept))
            }
            Val::Json(other) if !other.is_null() => {
                if eval_in(cond, scope, Some(&other))?.truthy() {
                    Val::Json(other)
                } else {
                    Val::Undefined
                }
            }
            _ => Val::Undefined,
        },
        Node::Unary(UnOp::Not, e) => Val::Json(Value::Bool(!ev(e)?.truthy())),
        Node::Unary(UnOp::Neg, e) => Val::Num(-ev(e)?.number()),
        Node::And(a, b) => {
            let l = ev(a)?;
            if l.truthy() { ev(b)? } else { l }
        }
        Node::Or(a, b) => {
            let l = ev(a)?;
            if l.truthy() { l } else { ev(b)? }
        }
        Node::Ternary(c, t, f) => {
            if ev(c)?.truthy() {
                ev(t)?
            } else {
                ev(f)?
            }
        }
        Node::Binary(op, a, b) => binop(*op, &ev(a)?, &ev(b)?),
        Node::Transform(subject, name, args) => {
            let s = ev(subject)?;
            let a = args.iter().map(ev).collect::<std::result::Result<Vec<_>, _>>()?;
            transforms::apply(name, s, a)?
        }
        Node::Call(name, args) => {
            let mut a = args.iter().map(ev).collect::<std::result::Result<Vec<_>, _>>()?;
            let subject = if a.is_empty() { Val::Undefined } else { a.remove(0) };
            transforms::apply(name, subject, a)?
        }
    })
}

/// `v.name` as Jexl resolves it: `undefined` on `null` or `undefined`; on an array, the member
/// of its first element (so a filter's result can be dereferenced directly); `length` of a
/// string as in JavaScript.
fn member(v: &Val, name: &str) -> Val {
    match v {
        Val::Json(Value::Object(m)) => m.get(name).map(|x| Val::Json(x.clone())).unwrap_or(Val::Undefined),
        Val::Json(Value::Array(a)) => match a.first() {
            Some(first) => member(&Val::Json(first.clone()), name),
            None => Val::Undefined,
        },
        Val::Json(Value::String(s)) if name == "length" => Val::Num(s.encode_utf16().count() as f64),
        _ => Val::Undefined,
    }
}

fn index(v: &Val, i: &Val) -> Val {
    let f = i.number();
    if f.is_nan() || f < 0.0 || f.fract() != 0.0 {
        return match v {
            Val::Json(Value::Object(_)) => member(v, &i.string()),
            _ => Val::Undefined,
        };
    }
    let i = f as usize;
    let found = match v {
        Val::Json(Value::Array(a)) => a.get(i).cloned(),
        Val::Json(Value::String(s)) => s.chars().nth(i).map(|c| Value::String(c.to_string())),
        Val::Json(Value::Object(m)) => m.get(&i.to_string()).cloned(),
        _ => None,
    };
    found.map(Val::Json).unwrap_or(Val::Undefined)
}

fn binop(op: BinOp, a: &Val, b: &Val) -> Val {
    let n = |f: fn(f64, f64) -> f64| Val::Num(f(a.number(), b.number()));
    match op {
        BinOp::Add => transforms::js_add(a, b),
        BinOp::Sub => n(|x, y| x - y),
        BinOp::Mul => n(|x, y| x * y),
        BinOp::Div => n(|x, y| x / y),
        BinOp::FloorDiv => n(|x, y| (x / y).floor()),
        BinOp::Mod => n(|x, y| x % y),
        BinOp::Pow => n(f64::powf),
        BinOp::Eq => Val::Json(Value::Bool(a.loose_eq(b))),
        BinOp::Ne => Val::Json(Value::Bool(!a.loose_eq(b))),
        BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => Val::Json(Value::Bool(compare(op, a, b))),
        BinOp::In => Val::Json(Value::Bool(match b {
            Val::Json(Value::String(s)) => s.contains(a.string().as_str()),
            Val::Json(Value::Array(items)) => items.iter().any(|x| Val::Json(x.clone()).loose_eq(a)),
            _ => false,
        })),
    }
}

fn compare(op: BinOp, a: &Val, b: &Val) -> bool {
    let ord = match (a, b) {
        (Val::Json(Value::String(x)), Val::Json(Value::String(y))) => Some(x.cmp(y)),
        _ => a.number().partial_cmp(&b.number()),
    };
    let Some(o) = ord else { return false };
    match op {
        BinOp::Lt => o.is_lt(),
        BinOp::Le => o.is_le(),
        BinOp::Gt => o.is_gt(),
        _ => o.is_ge(),
    }
}

/// Evaluates an expression against a JSON context. `INVALID_EXPRESSION` when it does not parse
/// or a transform fails; an unknown identifier is `null`.
pub fn evaluate(expr: &str, ctx: &Value) -> Result<Value> {
    let node = compile(expr)?;
    eval(&node, ctx).map_err(|e| AgentError::invalid_expression(format!("expression '{expr}' failed: {e}")))
}

/// iotagent-node-lib's `applyExpression`, used for attribute, metadata, entity name, header and
/// endpoint expressions: the result, or the expression's own text when the result is
/// `undefined` (so a plain word is a literal); `NaN` is `null`, and a failing transform gives
/// `null`. `INVALID_EXPRESSION` when the expression does not parse.
pub fn apply(expr: &str, scope: &dyn Scope) -> Result<Value> {
    let node = compile(expr)?;
    Ok(match eval_val(&node, scope) {
        Ok(Val::Undefined) => Value::String(expr.to_owned()),
        Ok(v) => v.into_json().unwrap_or(Value::Null),
        Err(e) => {
            tracing::debug!(expression = %expr, error = %e, "expression failed");
            Value::Null
        }
    })
}

/// Checks that an expression parses (for the provisioning API).
pub fn validate(expr: &str) -> Result<()> {
    compile(expr).map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ev(expr: &str, ctx: Value) -> Value {
        match evaluate(expr, &ctx) {
            Ok(v) => v,
            Err(e) => panic!("{expr}: {e}"),
        }
    }

    #[test]
    fn arithmetic_and_precedence() {
        let c = json!({"a": 7, "b": 2, "s": "3"});
        assert_eq!(ev("a + b * 3", c.clone()), json!(13));
        assert_eq!(ev("(a + b) * 3", c.clone()), json!(27));
        assert_eq!(ev("a % b", c.clone()), json!(1));
        assert_eq!(ev("a / b", c.clone()), json!(3.5));
        assert_eq!(ev("a // b", c.clone()), json!(3));
        assert_eq!(ev("2 ^ 3 ^ 2", c.clone()), json!(64));
        assert_eq!(ev("2 * 7 % 4", c.clone()), json!(6));
        assert_eq!(ev("true || false && false", c.clone()), json!(false));
        assert_eq!(ev("-a + 1", c.clone()), json!(-6));
        assert_eq!(ev("a - -b", c.clone()), json!(9));
        assert_eq!(ev("s * 2", c.clone()), json!(6));
        assert_eq!(ev("1 / 0", c.clone()), Value::Null);
        assert_eq!(ev("0.1 + 0.2", c.clone()), json!(0.30000000000000004));
        assert_eq!(ev(".5 + 1", c), json!(1.5));
    }

    #[test]
    fn string_concatenation_with_numbers() {
        let c = json!({"id": "dev1", "n": 5, "f": 2.5});
        assert_eq!(ev("id + '_' + n", c.clone()), json!("dev1_5"));
        assert_eq!(ev("n + 1 + 'x'", c.clone()), json!("6x"));
        assert_eq!(ev("'x' + n + 1", c.clone()), json!("x51"));
        assert_eq!(ev("\"v=\" + f", c.clone()), json!("v=2.5"));
        assert_eq!(ev("'it\\'s'", c.clone()), json!("it's"));
        assert_eq!(ev(r#""a\"b\\c\nd""#, c), json!("a\"b\\c\\nd"));
    }

    #[test]
    fn comparisons_logic_and_ternary() {
        let c = json!({"t": 25, "s": "on", "z": 0});
        assert_eq!(ev("t > 20 && s == 'on'", c.clone()), json!(true));
        assert_eq!(ev("t < 20 || s != 'on'", c.clone()), json!(false));
        assert_eq!(ev("!(t >= 25)", c.clone()), json!(false));
        assert_eq!(ev("t <= 25", c.clone()), json!(true));
        assert_eq!(ev("t == '25'", c.clone()), json!(true));
        assert_eq!(ev("t > 20 ? 'hot' : 'cold'", c.clone()), json!("hot"));
        assert_eq!(ev("t > 30 ? 'hot' : t > 20 ? 'warm' : 'cold'", c.clone()), json!("warm"));
        assert_eq!(ev("z || 'default'", c.clone()), json!("default"));
        assert_eq!(ev("s && t", c.clone()), json!(25));
        assert_eq!(ev("'b' > 'a'", c), json!(true));
    }

    #[test]
    fn undefined_is_not_null() {
        let c = json!({"n": null});
        assert_eq!(ev("missing * 10", c.clone()), Value::Null);
        assert_eq!(ev("(missing * 10) + 1", c.clone()), Value::Null);
        assert_eq!(ev("n * 10", c.clone()), json!(0));
        assert_eq!(ev("'x' + missing", c.clone()), json!("xundefined"));
        assert_eq!(ev("'x' + n", c.clone()), json!("xnull"));
        assert_eq!(ev("missing == null", c.clone()), json!(true));
        assert_eq!(ev("missing == 0", c.clone()), json!(false));
        assert_eq!(ev("missing|typeof", c.clone()), json!("undefined"));
        assert_eq!(ev("n.x", c.clone()), Value::Null);
        assert_eq!(ev("'abc'|parseint + 1", c.clone()), Value::Null);
        assert_eq!(ev("'abc'|parseint|isnan", c), json!(true));
    }

    #[test]
    fn in_operator() {
        let c = json!({"s": "hello", "l": [1, 2, 3], "o": {"k": 1}});
        assert_eq!(ev("'ell' in s", c.clone()), json!(true));
        assert_eq!(ev("2 in l", c.clone()), json!(true));
        assert_eq!(ev("5 in l", c.clone()), json!(false));
        assert_eq!(ev("'k' in o", c.clone()), json!(false));
        assert_eq!(ev("'2' in l", c.clone()), json!(true));
        assert_eq!(ev("'a' in ['a','b'] && 1 + 1 == 2", c), json!(true));
    }

    #[test]
    fn member_access_and_literals() {
        let c = json!({"a": {"b": {"c": 4}, "list": [10, 20]}, "k": "b"});
        assert_eq!(ev("a.b.c", c.clone()), json!(4));
        assert_eq!(ev("a['b'].c", c.clone()), json!(4));
        assert_eq!(ev("a[k]['c']", c.clone()), json!(4));
        assert_eq!(ev("a.list[1]", c.clone()), json!(20));
        assert_eq!(ev("a.list|lengtharray", c.clone()), json!(2));
        assert_eq!(ev("k.length", c.clone()), json!(1));
        assert_eq!(ev("a.list[5]", c.clone()), Value::Null);
        assert_eq!(ev("missing.deep.path", c.clone()), Value::Null);
        assert_eq!(ev("unknown", c.clone()), Value::Null);
        assert_eq!(eval_val(&parse("unknown").unwrap_or(Node::Literal(Value::Null)), &c), Ok(Val::Undefined));
        assert_eq!(ev("{a: unknown, b: 1}", c.clone()), json!({"b": 1}));
        assert_eq!(ev("[unknown]", c.clone()), json!([null]));
        assert_eq!(ev("[1, 'two', true, null, [3]]", c.clone()), json!([1, "two", true, null, [3]]));
        assert_eq!(
            ev("{type: 'Point', 'coordinates': [a.list[0], a.b.c], nested: {x: 1}}", c.clone()),
            json!({"type": "Point", "coordinates": [10, 4], "nested": {"x": 1}})
        );
        assert_eq!(ev("{}", c.clone()), json!({}));
        assert_eq!(ev("'{not an object}'", c), json!("{not an object}"));
    }

    #[test]
    fn filters_select_elements() {
        let c = json!({"items": [{"n": "a", "v": 1}, {"n": "b", "v": 2}]});
        assert_eq!(ev("items[.n == 'b'].v", c.clone()), json!(2));
        assert_eq!(ev("items[.n == 'b'][0].v", c.clone()), json!(2));
        assert_eq!(ev("items[.v > 0]|lengtharray", c), json!(2));
    }

    #[test]
    fn transforms_chain_and_bind_tighter_than_operators() {
        let c = json!({"s": "  Hello World ", "n": 3.7});
        assert_eq!(ev("s|trim|touppercase", c.clone()), json!("HELLO WORLD"));
        assert_eq!(ev("s|trim|substr(0, 5)", c.clone()), json!("Hello"));
        assert_eq!(ev("1 + n|floor", c.clone()), json!(4));
        assert_eq!(ev("(1 + n)|floor", c.clone()), json!(4));
        assert_eq!(ev("floor(n)", c), json!(3));
    }

    #[test]
    fn parse_errors_are_invalid_expression() {
        for bad in ["a +", "(a", "a ? b", "'open", "a b", "{a 1}", "a..b", "#", "", "a|", "[1,"] {
            let e = validate(bad).err().unwrap_or_else(|| panic!("{bad} should not parse"));
            assert_eq!(e.name, "INVALID_EXPRESSION", "{bad}");
        }
        let deep = "(".repeat(200) + "1" + &")".repeat(200);
        assert!(validate(&deep).is_err());
        let long = vec!["a"; 5000].join("+");
        assert!(validate(&long).is_err());
        let chain = vec!["a"; 100].join("+");
        assert!(validate(&chain).is_err());
        let fine = vec!["a"; 60].join("+");
        assert_eq!(evaluate(&fine, &serde_json::json!({"a": 1})).ok(), Some(serde_json::json!(60)));
        let nested = "(".repeat(60) + "1" + &")".repeat(60);
        assert!(validate(&nested).is_ok());
    }

    #[test]
    fn unknown_transform_fails_at_evaluation() {
        assert!(validate("a|nosuch").is_ok());
        let e = evaluate("a|nosuch", &json!({"a": 1})).err().map(|e| e.name);
        assert_eq!(e, Some("INVALID_EXPRESSION"));
    }

    #[test]
    fn apply_follows_upstream_apply_expression() {
        let c = json!({"a": 2});
        assert_eq!(apply("a * 2", &c).ok(), Some(json!(4)));
        assert_eq!(apply("plainWord", &c).ok(), Some(json!("plainWord")));
        assert_eq!(apply("missing * 2", &c).ok(), Some(Value::Null));
        assert_eq!(apply("a|nosuch", &c).ok(), Some(Value::Null));
        assert_eq!(apply("a +", &c).err().map(|e| e.name), Some("INVALID_EXPRESSION"));
    }

    #[test]
    fn long_expressions_are_not_cached() {
        let long = format!("'{}'", "x".repeat(5000));
        let a = compile(&long).ok();
        let b = compile(&long).ok();
        assert!(matches!((a, b), (Some(a), Some(b)) if !Arc::ptr_eq(&a, &b)));
    }

    #[test]
    fn compile_reuses_the_parsed_tree() {
        let a = compile("x * 2 + 1").ok();
        let b = compile("x * 2 + 1").ok();
        assert!(matches!((a, b), (Some(a), Some(b)) if Arc::ptr_eq(&a, &b)));
    }

    #[test]
    fn layered_scope_looks_top_first() {
        let top = json!({"a": 1});
        let rest = json!({"a": 2, "b": 3});
        let s = Layered { top: &top, rest: &rest };
        let node = parse("a * 10 + b").ok();
        assert_eq!(node.map(|n| eval(&n, &s)), Some(Ok(json!(13))));
    }
}
