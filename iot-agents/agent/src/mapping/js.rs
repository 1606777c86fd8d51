//! JavaScript value semantics on JSON values: the coercions, truthiness, loose equality and
//! number formatting that iotagent-node-lib's expressions inherit from JavaScript, so an
//! expression gives the same result here as upstream.

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use serde_json::{Number, Value};

/// A number as JSON: integral values become integers (JavaScript prints `2`, not `2.0`), and
/// `NaN` or an infinity becomes `null`, which the mapping drops as JavaScript's `NaN` is dropped.
pub fn num(f: f64) -> Value {
    if !f.is_finite() {
        return Value::Null;
    }
    if f.fract() == 0.0 && f.abs() < 9_007_199_254_740_992.0 {
        // Negative zero prints as `0` in JavaScript.
        return Value::Number(Number::from(f as i64));
    }
    Number::from_f64(f).map(Value::Number).unwrap_or(Value::Null)
}

/// `Number(v)`.
pub fn to_number(v: &Value) -> f64 {
    match v {
        Value::Null => 0.0,
        Value::Bool(b) => f64::from(u8::from(*b)),
        Value::Number(n) => n.as_f64().unwrap_or(f64::NAN),
        Value::String(s) => str_to_number(s),
        Value::Array(a) => match a.as_slice() {
            [] => 0.0,
            [one] => str_to_number(&to_js_string(one)),
            _ => f64::NAN,
        },
        Value::Object(_) => f64::NAN,
    }
}

/// `Number(s)` for a string: the whole trimmed string must be a number; empty is zero.
pub fn str_to_number(s: &str) -> f64 {
    let t = s.trim();
    if t.is_empty() {
        return 0.0;
    }
    let (neg, body) = match t.as_bytes()[0] {
        b'-' => (true, &t[1..]),
        b'+' => (false, &t[1..]),
        _ => (false, t),
    };
    let radix = match body.get(..2) {
        Some("0x") | Some("0X") => Some(16),
        Some("0o") | Some("0O") => Some(8),
        Some("0b") | Some("0B") => Some(2),
        _ => None,
    };
    if let Some(r) = radix {
        // JavaScript rejects a sign before a radix prefix.
        if t.len() != body.len() {
            return f64::NAN;
        }
        return u64::from_str_radix(&body[2..], r).map(|n| n as f64).unwrap_or(f64::NAN);
    }
    let magnitude = if body == "Infinity" {
        f64::INFINITY
    } else if body.bytes().all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'))
        && body.bytes().next().is_some_and(|b| b.is_ascii_digit() || b == b'.')
    {
        body.parse::<f64>().unwrap_or(f64::NAN)
    } else {
        f64::NAN
    };
    if neg { -magnitude } else { magnitude }
}

/// `parseFloat(String(v))`: the longest numeric prefix, `NaN` when there is none.
pub fn parse_float(v: &Value) -> f64 {
    let s = to_js_string(v);
    let t = s.trim_start();
    let b = t.as_bytes();
    let mut i = 0;
    if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
        i += 1;
    }
    if t[i..].starts_with("Infinity") {
        return if b.first() == Some(&b'-') { f64::NEG_INFINITY } else { f64::INFINITY };
    }
    let digits_start = i;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    if i < b.len() && b[i] == b'.' {
        i += 1;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
    }
    if i == digits_start || &t[digits_start..i] == "." {
        return f64::NAN;
    }
    let mantissa_end = i;
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        let mut j = i + 1;
        if j < b.len() && (b[j] == b'+' || b[j] == b'-') {
            j += 1;
        }
        let exp_digits = j;
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
        if j > exp_digits {
            i = j;
        }
    }
    t[..i].parse::<f64>().or_else(|_| t[..mantissa_end].parse::<f64>()).unwrap_or(f64::NAN)
}

/// `parseInt(String(v))` (radix 10, or 16 with a `0x` prefix): the longest integer prefix.
pub fn parse_int(v: &Value) -> f64 {
    let s = to_js_string(v);
    let t = s.trim_start();
    let (neg, rest) = match t.as_bytes().first() {
        Some(b'-') => (true, &t[1..]),
        Some(b'+') => (false, &t[1..]),
        _ => (false, t),
    };
    let (radix, digits) = match rest.get(..2) {
        Some("0x") | Some("0X") => (16, &rest[2..]),
        _ => (10, rest),
    };
    let end = digits.find(|c: char| !c.is_digit(radix)).unwrap_or(digits.len());
    if end == 0 {
        return f64::NAN;
    }
    let mut n = 0.0f64;
    for c in digits[..end].chars() {
        n = n * f64::from(radix) + f64::from(c.to_digit(radix).unwrap_or(0));
    }
    if neg { -n } else { n }
}

/// `String(n)` for a number, as JavaScript prints it.
pub fn number_to_string(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity".into() } else { "-Infinity".into() };
    }
    if f.fract() == 0.0 && f.abs() < 1e21 {
        return format!("{}", f as i128);
    }
    format!("{f}")
}

/// `String(v)`.
pub fn to_js_string(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => i.to_string(),
            (_, Some(u)) => u.to_string(),
            _ => number_to_string(n.as_f64().unwrap_or(f64::NAN)),
        },
        Value::String(s) => s.clone(),
        Value::Array(a) => {
            a.iter().map(|e| if e.is_null() { String::new() } else { to_js_string(e) }).collect::<Vec<_>>().join(",")
        }
        Value::Object(_) => "[object Object]".into(),
    }
}

/// JavaScript truthiness.
pub fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0 && !f.is_nan()),
        Value::String(s) => !s.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}

/// `typeof v` (`null` is an object, as in JavaScript).
pub fn type_of(v: &Value) -> &'static str {
    match v {
        Value::Null | Value::Array(_) | Value::Object(_) => "object",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
    }
}

/// `a == b` (loose equality). Two arrays or objects are never equal (distinct references in
/// JavaScript); against a primitive they compare through their text.
pub fn loose_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Null, Value::Null) => true,
        (Value::Null, _) | (_, Value::Null) => false,
        (Value::String(x), Value::String(y)) => x == y,
        (Value::Number(_), Value::Number(_)) => to_number(a) == to_number(b),
        (Value::Array(_) | Value::Object(_), Value::Array(_) | Value::Object(_)) => false,
        (Value::Array(_) | Value::Object(_), _) => loose_eq(&Value::String(to_js_string(a)), b),
        (_, Value::Array(_) | Value::Object(_)) => loose_eq(a, &Value::String(to_js_string(b))),
        _ => to_number(a) == to_number(b),
    }
}

/// `a === b`, used where upstream compares with `===` or `Set` membership. Arrays and objects
/// are never identical: each comes from its own parse, so in JavaScript they are distinct
/// references.
pub fn strict_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(_), Value::Number(_)) => to_number(a) == to_number(b),
        (Value::Array(_) | Value::Object(_), _) | (_, Value::Array(_) | Value::Object(_)) => false,
        _ => a == b,
    }
}

/// A value while an expression is evaluated: JSON, a JavaScript number (`NaN` and the
/// infinities included, so they propagate as in JavaScript), or `undefined` (an unknown name, a
/// missing member), which differs from `null` in arithmetic (`NaN`, not 0) and in text
/// (`"undefined"`).
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    Undefined,
    Num(f64),
    Json(Value),
}

impl Val {
    /// The JSON result: `None` for `undefined`; `NaN` and infinities are `null`.
    pub fn into_json(self) -> Option<Value> {
        match self {
            Val::Undefined => None,
            Val::Num(f) => Some(num(f)),
            Val::Json(v) => Some(v),
        }
    }

    /// As JSON for places that cannot hold `undefined` (array elements, transform arguments).
    pub fn to_json(&self) -> Value {
        match self {
            Val::Undefined => Value::Null,
            Val::Num(f) => num(*f),
            Val::Json(v) => v.clone(),
        }
    }

    pub fn is_nullish(&self) -> bool {
        matches!(self, Val::Undefined | Val::Json(Value::Null))
    }

    /// `Number(v)`.
    pub fn number(&self) -> f64 {
        match self {
            Val::Undefined => f64::NAN,
            Val::Num(f) => *f,
            Val::Json(v) => to_number(v),
        }
    }

    /// `String(v)`.
    pub fn string(&self) -> String {
        match self {
            Val::Undefined => "undefined".into(),
            Val::Num(f) => number_to_string(*f),
            Val::Json(v) => to_js_string(v),
        }
    }

    pub fn truthy(&self) -> bool {
        match self {
            Val::Undefined => false,
            Val::Num(f) => *f != 0.0 && !f.is_nan(),
            Val::Json(v) => truthy(v),
        }
    }

    /// `typeof v`.
    pub fn type_of(&self) -> &'static str {
        match self {
            Val::Undefined => "undefined",
            Val::Num(_) => "number",
            Val::Json(v) => type_of(v),
        }
    }

    /// Whether `+` concatenates with this operand (strings, and objects through their text).
    pub fn is_stringy(&self) -> bool {
        matches!(self, Val::Json(Value::String(_) | Value::Array(_) | Value::Object(_)))
    }

    /// `a == b`.
    pub fn loose_eq(&self, other: &Val) -> bool {
        match (self, other) {
            (a, b) if a.is_nullish() || b.is_nullish() => a.is_nullish() && b.is_nullish(),
            (Val::Json(a), Val::Json(b)) => loose_eq(a, b),
            (a, b) => a.number() == b.number(),
        }
    }
}

/// `new Date(v)`: a number is milliseconds since the epoch; a string is ISO 8601 (an offset,
/// `Z`, or none meaning UTC), a date alone, or RFC 2822. `None` is JavaScript's invalid date.
pub fn to_date(v: &Value) -> Option<DateTime<Utc>> {
    match v {
        Value::Number(n) => {
            let ms = n.as_f64()?;
            if !ms.is_finite() {
                return None;
            }
            DateTime::from_timestamp_millis(ms as i64)
        }
        Value::String(s) => parse_date_str(s.trim()),
        _ => None,
    }
}

fn parse_date_str(s: &str) -> Option<DateTime<Utc>> {
    if let Ok(d) = DateTime::parse_from_rfc3339(s) {
        return Some(d.with_timezone(&Utc));
    }
    for f in ["%Y-%m-%dT%H:%M:%S%.f%z", "%Y-%m-%dT%H:%M%z", "%Y-%m-%dT%H:%M:%S%.f%:z", "%Y-%m-%dT%H:%M%:z"] {
        if let Ok(d) = DateTime::parse_from_str(s, f) {
            return Some(d.with_timezone(&Utc));
        }
    }
    for f in ["%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%d %H:%M"] {
        if let Ok(d) = NaiveDateTime::parse_from_str(s, f) {
            return Some(d.and_utc());
        }
    }
    if let Ok(d) = NaiveDate::parse_from_str(s, "%Y-%m-%d") {
        return d.and_hms_opt(0, 0, 0).map(|d| d.and_utc());
    }
    DateTime::parse_from_rfc2822(s).ok().map(|d| d.with_timezone(&Utc))
}

/// `Date.prototype.toISOString()`: UTC with milliseconds.
pub fn iso(d: &DateTime<Utc>) -> String {
    d.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn numbers_print_and_coerce_as_in_javascript() {
        assert_eq!(num(2.0), json!(2));
        assert_eq!(num(2.5), json!(2.5));
        assert_eq!(num(f64::NAN), Value::Null);
        assert_eq!(to_js_string(&json!(1.0)), "1");
        assert_eq!(to_js_string(&json!([1, null, "a"])), "1,,a");
        assert_eq!(to_js_string(&json!({"a": 1})), "[object Object]");
        assert_eq!(to_number(&json!(" 12 ")), 12.0);
        assert_eq!(to_number(&json!("")), 0.0);
        assert!(to_number(&json!("12abc")).is_nan());
        assert_eq!(to_number(&json!("0x1f")), 31.0);
        assert_eq!(to_number(&json!(true)), 1.0);
        assert_eq!(parse_float(&json!("12.5abc")), 12.5);
        assert_eq!(parse_float(&json!("1e3x")), 1000.0);
        assert!(parse_float(&json!("abc")).is_nan());
        assert_eq!(parse_int(&json!("42.9")), 42.0);
        assert_eq!(parse_int(&json!("-0x10")), -16.0);
        assert!(parse_int(&json!("x1")).is_nan());
        assert_eq!(number_to_string(0.1 + 0.2), "0.30000000000000004");
    }

    #[test]
    fn truthiness_and_equality_follow_javascript() {
        assert!(!truthy(&json!(0)));
        assert!(!truthy(&json!("")));
        assert!(truthy(&json!([])));
        assert!(loose_eq(&json!(1), &json!("1")));
        assert!(loose_eq(&json!(true), &json!(1)));
        assert!(!loose_eq(&json!(null), &json!(0)));
        assert!(!strict_eq(&json!(1), &json!("1")));
        assert!(strict_eq(&json!(1), &json!(1.0)));
        assert!(!strict_eq(&json!([1]), &json!([1])));
        assert!(!loose_eq(&json!([1]), &json!([1])));
        assert!(loose_eq(&json!([1]), &json!(1)));
        assert!(loose_eq(&json!([1, 2]), &json!("1,2")));
        assert_eq!(type_of(&json!(null)), "object");
    }

    #[test]
    fn undefined_and_nan_behave_as_in_javascript() {
        assert!(Val::Undefined.number().is_nan());
        assert_eq!(Val::Undefined.string(), "undefined");
        assert_eq!(Val::Num(f64::NAN).string(), "NaN");
        assert_eq!(Val::Undefined.type_of(), "undefined");
        assert!(Val::Undefined.loose_eq(&Val::Json(Value::Null)));
        assert!(!Val::Undefined.loose_eq(&Val::Num(0.0)));
        assert!(!Val::Num(f64::NAN).loose_eq(&Val::Num(f64::NAN)));
        assert!(Val::Num(1.0).loose_eq(&Val::Json(json!("1"))));
        assert_eq!(Val::Undefined.into_json(), None);
        assert_eq!(Val::Num(f64::NAN).into_json(), Some(Value::Null));
        assert_eq!(Val::Num(2.0).to_json(), json!(2));
    }

    #[test]
    fn dates_parse_like_javascript_dates() {
        let iso_of = |v: Value| to_date(&v).map(|d| iso(&d));
        assert_eq!(iso_of(json!("2016-06-13T00:35:30+02:00")), Some("2016-06-12T22:35:30.000Z".into()));
        assert_eq!(iso_of(json!("2016-06-13T00:35:30.5Z")), Some("2016-06-13T00:35:30.500Z".into()));
        assert_eq!(iso_of(json!("2016-06-13")), Some("2016-06-13T00:00:00.000Z".into()));
        assert_eq!(iso_of(json!(0)), Some("1970-01-01T00:00:00.000Z".into()));
        assert_eq!(iso_of(json!("yesterday")), None);
        assert_eq!(iso_of(json!(null)), None);
    }
}
