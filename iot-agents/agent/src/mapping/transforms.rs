//! The named JEXL transforms of iotagent-node-lib (`lib/jexlTranformsMap.js`), as
//! `value|name(args)`. Each follows the JavaScript one-liner upstream: where upstream throws
//! (a string method on a non-string, `JSON.parse` of bad text, an invalid date), this returns an
//! error message; where upstream yields `undefined` or `NaN`, this yields `null`.
//!
//! Known difference: `localestring` renders en-US in UTC only (no locale or time-zone database).

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};

use parking_lot::Mutex;
use regex::Regex;
use serde_json::Value;

use super::js::{self, Val};

type R = std::result::Result<Value, String>;

/// Applies transform `name` to `subject` with `args`. The transforms whose upstream result
/// depends on `undefined` or `NaN` are computed on [`Val`]; the rest on JSON.
pub fn apply(name: &str, subject: Val, args: Vec<Val>) -> std::result::Result<Val, String> {
    let date_ms = |v: &Val| js::to_date(&v.to_json()).map(|d| d.timestamp_millis() as f64).unwrap_or(f64::NAN);
    Ok(match name {
        "typeof" => Val::Json(Value::from(subject.type_of())),
        "isnan" => Val::Json(Value::Bool(subject.number().is_nan())),
        "parseint" => Val::Num(js::parse_int(&Value::String(subject.string()))),
        "parsefloat" => Val::Num(js::parse_float(&Value::String(subject.string()))),
        "floor" => Val::Num(subject.number().floor()),
        "ceil" => Val::Num(subject.number().ceil()),
        "round" => Val::Num((subject.number() + 0.5).floor()),
        "gettime" | "getTime" => Val::Num(date_ms(&subject)),
        "now" => Val::Num(chrono::Utc::now().timestamp_millis() as f64),
        "tostring" => {
            if subject.is_nullish() {
                return Err("tostring: cannot convert null or undefined".into());
            }
            Val::Json(Value::String(subject.string()))
        }
        // `String(val)` upstream: undefined and NaN print as such.
        "indexOf" | "length" | "trim" | "substr" | "substring" | "touppercase" | "tolowercase" | "toUpperCase"
        | "toLowerCase" | "urlencode" | "urldecode" => {
            Val::Json(apply_json(name, Value::String(subject.string()), args.iter().map(Val::to_json).collect())?)
        }
        _ => Val::Json(apply_json(name, subject.to_json(), args.iter().map(Val::to_json).collect())?),
    })
}

/// The transforms computed on JSON values.
fn apply_json(name: &str, subject: Value, args: Vec<Value>) -> R {
    let null = Value::Null;
    let arg = |i: usize| args.get(i).unwrap_or(&null);
    let has = |i: usize| args.get(i).is_some_and(|v| !v.is_null());
    let s = &subject;
    Ok(match name {
        "jsonparse" => serde_json::from_str(&js::to_js_string(s)).map_err(|e| format!("jsonparse: {e}"))?,
        "jsonstringify" => Value::String(s.to_string()),
        "indexOf" => {
            let hay: Vec<u16> = js::to_js_string(s).encode_utf16().collect();
            let needle: Vec<u16> = js::to_js_string(arg(0)).encode_utf16().collect();
            let pos = if needle.is_empty() {
                Some(0)
            } else {
                hay.windows(needle.len()).position(|w| w == needle.as_slice())
            };
            pos.map(Value::from).unwrap_or(Value::from(-1))
        }
        "length" => Value::from(js::to_js_string(s).encode_utf16().count()),
        "trim" => Value::String(js::to_js_string(s).trim().to_owned()),
        "substr" => {
            let chars: Vec<char> = js::to_js_string(s).chars().collect();
            let len = chars.len() as f64;
            let mut start = int_arg(arg(0));
            if start < 0.0 {
                start = (len + start).max(0.0);
            }
            let start = start.min(len);
            let count = if has(1) { int_arg(arg(1)).max(0.0) } else { len };
            let end = (start + count).min(len);
            Value::String(chars[start as usize..end.max(start) as usize].iter().collect())
        }
        "substring" => {
            let chars: Vec<char> = js::to_js_string(s).chars().collect();
            let len = chars.len() as f64;
            let a = int_arg(arg(0)).clamp(0.0, len);
            let b = if has(1) { int_arg(arg(1)).clamp(0.0, len) } else { len };
            let (from, to) = if a <= b { (a, b) } else { (b, a) };
            Value::String(chars[from as usize..to as usize].iter().collect())
        }
        "addreduce" => {
            let items = array(s, name)?;
            let mut it = items.iter();
            let first = it.next().ok_or("addreduce: reduce of an empty array with no initial value")?.clone();
            it.fold(Val::Json(first), |acc, v| js_add(&acc, &Val::Json(v.clone()))).to_json()
        }
        "lengtharray" => match s {
            Value::Array(a) => Value::from(a.len()),
            Value::String(t) => Value::from(t.encode_utf16().count()),
            Value::Null => return Err("lengtharray: cannot read length of null".into()),
            _ => Value::Null,
        },
        "isarray" => Value::Bool(s.is_array()),
        "toisodate" | "toisostring" => Value::String(js::iso(&date(s, name)?)),
        "timeoffset" => js::to_date(s).map(|_| Value::from(0)).unwrap_or(Value::Null),
        "urlencode" => Value::String(encode_uri(&js::to_js_string(s))),
        "urldecode" => Value::String(decode_uri(&js::to_js_string(s))?),
        "replacestr" => {
            Value::String(string(s, name)?.replacen(&js::to_js_string(arg(0)), &js::to_js_string(arg(1)), 1))
        }
        "replaceallstr" => {
            Value::String(string(s, name)?.replace(&js::to_js_string(arg(0)), &js::to_js_string(arg(1))))
        }
        "replaceregexp" => {
            let re = regex(&js::to_js_string(arg(0)))?;
            Value::String(re.replacen(string(s, name)?, 1, js::to_js_string(arg(1)).as_str()).into_owned())
        }
        "replaceallregexp" => {
            let re = regex(&js::to_js_string(arg(0)))?;
            Value::String(re.replace_all(string(s, name)?, js::to_js_string(arg(1)).as_str()).into_owned())
        }
        "split" => {
            let text = string(s, name)?;
            if !has(0) {
                Value::Array(vec![Value::String(text.to_owned())])
            } else {
                let sep = js::to_js_string(arg(0));
                if sep.is_empty() {
                    text.chars().map(|c| Value::String(c.to_string())).collect()
                } else {
                    text.split(sep.as_str()).map(|p| Value::String(p.to_owned())).collect()
                }
            }
        }
        "mapper" => {
            let values = array(arg(0), name)?;
            let choices = array(arg(1), name)?;
            values.iter().position(|v| js::strict_eq(v, s)).and_then(|i| choices.get(i).cloned()).unwrap_or(Value::Null)
        }
        "thmapper" => {
            let values = array(arg(0), name)?;
            let choices = array(arg(1), name)?;
            let x = js::to_number(s);
            values
                .iter()
                .position(|v| x <= js::to_number(v))
                .and_then(|i| choices.get(i).cloned())
                .unwrap_or(Value::Null)
        }
        "bitwisemask" => {
            let i = to_int32(js::parse_int(s));
            let mask = to_int32(js::to_number(arg(0)));
            let shift = (to_int32(js::to_number(arg(2))) & 31) as u32;
            let base = match js::to_js_string(arg(1)).as_str() {
                "&" => i & mask,
                "|" => i | mask,
                "^" => i ^ mask,
                _ => to_int32(js::to_number(s)),
            };
            Value::from(base >> shift)
        }
        "slice" => match s {
            Value::Array(a) => {
                let (from, to) = slice_bounds(a.len(), arg(0), has(1).then(|| arg(1).clone()));
                Value::Array(a[from..to].to_vec())
            }
            Value::String(t) => {
                let chars: Vec<char> = t.chars().collect();
                let (from, to) = slice_bounds(chars.len(), arg(0), has(1).then(|| arg(1).clone()));
                Value::String(chars[from..to].iter().collect())
            }
            _ => return Err("slice: not an array or string".into()),
        },
        "addset" => {
            let mut out = dedup(array(s, name)?);
            let x = arg(0).clone();
            if !out.iter().any(|v| js::strict_eq(v, &x)) {
                out.push(x);
            }
            Value::Array(out)
        }
        "removeset" => {
            let x = arg(0).clone();
            Value::Array(dedup(array(s, name)?).into_iter().filter(|v| !js::strict_eq(v, &x)).collect())
        }
        "touppercase" | "toUpperCase" => Value::String(js::to_js_string(s).to_uppercase()),
        "tolowercase" | "toLowerCase" => Value::String(js::to_js_string(s).to_lowercase()),
        "tofixed" | "toFixed" => Value::String(to_fixed(js::parse_float(s), js::to_number(arg(0)))?),
        "localestring" => Value::String(date(s, name)?.format("%-m/%-d/%Y, %-I:%M:%S %p").to_string()),
        "hextostring" => {
            let hex = js::to_js_string(s);
            let bytes: Vec<u8> = hex
                .as_bytes()
                .chunks(2)
                .map(|pair| std::str::from_utf8(pair).ok().and_then(|p| u8::from_str_radix(p, 16).ok()).unwrap_or(0))
                .collect();
            Value::String(String::from_utf8_lossy(&bytes).into_owned())
        }
        "valuePicker" => {
            let pick = arg(0).clone();
            keys_where(s, |v| js::strict_eq(v, &pick))
        }
        "valuePickerMulti" | "valuesPicker" => {
            let picks = array(arg(0), name)?.clone();
            keys_where(s, |v| picks.iter().any(|p| js::strict_eq(p, v)))
        }
        "joinarrtostr" => {
            let sep = if has(0) { js::to_js_string(arg(0)) } else { ",".to_owned() };
            let items = array(s, name)?;
            Value::String(
                items
                    .iter()
                    .map(|v| if v.is_null() { String::new() } else { js::to_js_string(v) })
                    .collect::<Vec<_>>()
                    .join(&sep),
            )
        }
        "matchregexp" => {
            let re = regex(&js::to_js_string(arg(0)))?;
            match re.captures(string(s, name)?) {
                Some(c) => c.iter().map(|m| m.map(|m| Value::from(m.as_str())).unwrap_or(Value::Null)).collect(),
                None => Value::Null,
            }
        }
        "concatarr" => {
            let mut out = array(s, name)?.clone();
            match arg(0) {
                Value::Array(more) => out.extend(more.iter().cloned()),
                other => out.push(other.clone()),
            }
            Value::Array(out)
        }
        _ => return Err(format!("transform '{name}' is not defined")),
    })
}

/// JavaScript `+` (string concatenation when either side is a string or an object).
pub fn js_add(a: &Val, b: &Val) -> Val {
    if a.is_stringy() || b.is_stringy() {
        let mut s = a.string();
        s.push_str(&b.string());
        Val::Json(Value::String(s))
    } else {
        Val::Num(a.number() + b.number())
    }
}

fn int_arg(v: &Value) -> f64 {
    let f = js::to_number(v);
    if f.is_nan() { 0.0 } else { f.trunc() }
}

fn to_int32(f: f64) -> i32 {
    if !f.is_finite() {
        return 0;
    }
    (f.trunc() as i64 & 0xffff_ffff) as u32 as i32
}

fn array<'a>(v: &'a Value, name: &str) -> std::result::Result<&'a Vec<Value>, String> {
    v.as_array().ok_or_else(|| format!("{name}: not an array"))
}

fn string<'a>(v: &'a Value, name: &str) -> std::result::Result<&'a str, String> {
    v.as_str().ok_or_else(|| format!("{name}: not a string"))
}

fn date(v: &Value, name: &str) -> std::result::Result<chrono::DateTime<chrono::Utc>, String> {
    js::to_date(v).ok_or_else(|| format!("{name}: invalid time value"))
}

fn dedup(items: &[Value]) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::with_capacity(items.len());
    for v in items {
        if !out.iter().any(|o| js::strict_eq(o, v)) {
            out.push(v.clone());
        }
    }
    out
}

fn keys_where(v: &Value, pred: impl Fn(&Value) -> bool) -> Value {
    match v {
        Value::Object(m) => m.iter().filter(|(_, x)| pred(x)).map(|(k, _)| Value::String(k.clone())).collect(),
        Value::Array(a) => {
            a.iter().enumerate().filter(|(_, x)| pred(x)).map(|(i, _)| Value::String(i.to_string())).collect()
        }
        _ => Value::Array(Vec::new()),
    }
}

fn slice_bounds(len: usize, start: &Value, end: Option<Value>) -> (usize, usize) {
    let len_f = len as f64;
    let norm = |f: f64| if f < 0.0 { (len_f + f).max(0.0) } else { f.min(len_f) };
    let from = norm(int_arg(start));
    let to = end.map(|e| norm(int_arg(&e))).unwrap_or(len_f);
    (from as usize, to.max(from) as usize)
}

/// `Number.prototype.toFixed`: ties round away from zero, as JavaScript does on the exact value.
fn to_fixed(x: f64, digits: f64) -> std::result::Result<String, String> {
    if !(0.0..=100.0).contains(&digits) {
        return Err("tofixed: digits out of range".into());
    }
    if !x.is_finite() {
        return Ok(js::number_to_string(x));
    }
    let d = digits as usize;
    let scale = 10f64.powi(d as i32);
    let scaled = x * scale;
    if (scaled.fract().abs() - 0.5).abs() < f64::EPSILON && scaled.abs() < 1e15 {
        let rounded = scaled.trunc() + scaled.signum();
        return Ok(format!("{:.d$}", rounded / scale));
    }
    Ok(format!("{x:.d$}"))
}

/// `encodeURI`: escapes everything but the unreserved and reserved URI characters.
fn encode_uri(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b";,/?:@&=+$-_.!~*'()#".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `decodeURI`: decodes escapes, except those of reserved characters; malformed → error.
fn decode_uri(s: &str) -> std::result::Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let byte =
                s.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok()).ok_or("urldecode: URI malformed")?;
            if b";/?:@&=+$,#".contains(&byte) {
                out.extend_from_slice(&b[i..i + 3]);
            } else {
                out.push(byte);
            }
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "urldecode: URI malformed".to_owned())
}

/// Compiled regular expressions, bounded like the expression cache.
static REGEXES: LazyLock<Mutex<HashMap<String, Arc<Regex>>>> = LazyLock::new(|| Mutex::new(HashMap::new()));

fn regex(pattern: &str) -> std::result::Result<Arc<Regex>, String> {
    if let Some(r) = REGEXES.lock().get(pattern) {
        return Ok(r.clone());
    }
    let re = Arc::new(Regex::new(pattern).map_err(|e| format!("invalid regular expression: {e}"))?);
    // Long patterns are compiled each time, so the cache's memory stays bounded.
    if pattern.len() > 1024 {
        return Ok(re);
    }
    let mut cache = REGEXES.lock();
    if cache.len() >= 256 {
        cache.clear();
    }
    cache.insert(pattern.to_owned(), re.clone());
    Ok(re)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn t(name: &str, subject: Value, args: Vec<Value>) -> Value {
        match apply(name, Val::Json(subject), args.into_iter().map(Val::Json).collect()) {
            Ok(v) => v.to_json(),
            Err(e) => panic!("{name}: {e}"),
        }
    }

    fn fails(name: &str, subject: Value, args: Vec<Value>) -> bool {
        apply(name, Val::Json(subject), args.into_iter().map(Val::Json).collect()).is_err()
    }

    #[test]
    fn json_transforms() {
        assert_eq!(t("jsonparse", json!("{\"a\":[1,2]}"), vec![]), json!({"a": [1, 2]}));
        assert!(fails("jsonparse", json!("{bad"), vec![]));
        assert_eq!(t("jsonstringify", json!({"a": 1}), vec![]), json!("{\"a\":1}"));
    }

    #[test]
    fn string_transforms() {
        assert_eq!(t("indexOf", json!("hello"), vec![json!("l")]), json!(2));
        assert_eq!(t("indexOf", json!("hello"), vec![json!("z")]), json!(-1));
        assert_eq!(t("length", json!(12345), vec![]), json!(5));
        assert_eq!(t("trim", json!("  a b  "), vec![]), json!("a b"));
        assert_eq!(t("substr", json!("abcdef"), vec![json!(1), json!(3)]), json!("bcd"));
        assert_eq!(t("substr", json!("abcdef"), vec![json!(-2)]), json!("ef"));
        assert_eq!(t("substring", json!("abcdef"), vec![json!(4), json!(1)]), json!("bcd"));
        assert_eq!(t("touppercase", json!("aB"), vec![]), json!("AB"));
        assert_eq!(t("toUpperCase", json!("aB"), vec![]), json!("AB"));
        assert_eq!(t("tolowercase", json!("aB"), vec![]), json!("ab"));
        assert_eq!(t("toLowerCase", json!("aB"), vec![]), json!("ab"));
        assert_eq!(t("tostring", json!(12.5), vec![]), json!("12.5"));
        assert!(fails("tostring", Value::Null, vec![]));
        assert_eq!(t("replacestr", json!("a-b-c"), vec![json!("-"), json!("+")]), json!("a+b-c"));
        assert_eq!(t("replaceallstr", json!("a-b-c"), vec![json!("-"), json!("+")]), json!("a+b+c"));
        assert_eq!(t("replaceregexp", json!("a1b22"), vec![json!("[0-9]+"), json!("#")]), json!("a#b22"));
        assert_eq!(t("replaceallregexp", json!("a1b22"), vec![json!("[0-9]+"), json!("#")]), json!("a#b#"));
        assert!(fails("replacestr", json!(5), vec![json!("5"), json!("6")]));
        assert!(fails("replaceregexp", json!("x"), vec![json!("("), json!("")]));
        assert_eq!(t("split", json!("a,b,c"), vec![json!(",")]), json!(["a", "b", "c"]));
        assert_eq!(t("split", json!("ab"), vec![json!("")]), json!(["a", "b"]));
        assert_eq!(t("urlencode", json!("a b/ñ"), vec![]), json!("a%20b/%C3%B1"));
        assert_eq!(t("urldecode", json!("a%20b%2F%C3%B1"), vec![]), json!("a b%2Fñ"));
        assert!(fails("urldecode", json!("%zz"), vec![]));
        assert_eq!(t("hextostring", json!("48656c6c6f"), vec![]), json!("Hello"));
        assert_eq!(t("matchregexp", json!("id-42-x"), vec![json!("([a-z]+)-([0-9]+)")]), json!(["id-42", "id", "42"]));
        assert_eq!(t("matchregexp", json!("abc"), vec![json!("[0-9]")]), Value::Null);
    }

    #[test]
    fn number_transforms() {
        assert_eq!(t("parseint", json!("42abc"), vec![]), json!(42));
        assert_eq!(t("parseint", json!("abc"), vec![]), Value::Null);
        assert_eq!(t("parsefloat", json!("2.75xyz"), vec![]), json!(2.75));
        assert_eq!(t("isnan", json!("abc"), vec![]), json!(true));
        assert_eq!(t("isnan", json!("12"), vec![]), json!(false));
        assert_eq!(t("floor", json!(-1.5), vec![]), json!(-2));
        assert_eq!(t("ceil", json!(1.2), vec![]), json!(2));
        assert_eq!(t("round", json!(2.5), vec![]), json!(3));
        assert_eq!(t("round", json!(-2.5), vec![]), json!(-2));
        assert_eq!(t("tofixed", json!(2.5), vec![json!(0)]), json!("3"));
        assert_eq!(t("tofixed", json!("3.14159"), vec![json!(2)]), json!("3.14"));
        assert_eq!(t("toFixed", json!(1), vec![json!(2)]), json!("1.00"));
        assert_eq!(t("bitwisemask", json!("255"), vec![json!(15), json!("&"), json!(0)]), json!(15));
        assert_eq!(t("bitwisemask", json!(240), vec![json!(15), json!("|"), json!(4)]), json!(15));
        assert_eq!(t("bitwisemask", json!(255), vec![json!(15), json!("^"), json!(4)]), json!(15));
        assert_eq!(t("bitwisemask", json!(256), vec![json!(0), json!("?"), json!(8)]), json!(1));
    }

    #[test]
    fn type_transforms() {
        assert_eq!(t("typeof", json!("s"), vec![]), json!("string"));
        assert_eq!(t("typeof", json!(1), vec![]), json!("number"));
        assert_eq!(t("typeof", json!({}), vec![]), json!("object"));
        assert_eq!(t("isarray", json!([1]), vec![]), json!(true));
        assert_eq!(t("isarray", json!("x"), vec![]), json!(false));
    }

    #[test]
    fn array_transforms() {
        assert_eq!(t("addreduce", json!([1, 2, 3]), vec![]), json!(6));
        assert_eq!(t("addreduce", json!(["a", 1]), vec![]), json!("a1"));
        assert!(fails("addreduce", json!([]), vec![]));
        assert_eq!(t("lengtharray", json!([1, 2]), vec![]), json!(2));
        assert_eq!(t("slice", json!([1, 2, 3, 4]), vec![json!(1), json!(3)]), json!([2, 3]));
        assert_eq!(t("slice", json!([1, 2, 3, 4]), vec![json!(-2)]), json!([3, 4]));
        assert_eq!(t("slice", json!("abcd"), vec![json!(1), json!(-1)]), json!("bc"));
        assert_eq!(t("addset", json!([1, 1, 2]), vec![json!(3)]), json!([1, 2, 3]));
        assert_eq!(t("addset", json!([1, 2]), vec![json!(2)]), json!([1, 2]));
        assert_eq!(t("removeset", json!([1, 2, 2, 3]), vec![json!(2)]), json!([1, 3]));
        assert_eq!(t("concatarr", json!([1]), vec![json!([2, 3])]), json!([1, 2, 3]));
        assert_eq!(t("concatarr", json!([1]), vec![json!(2)]), json!([1, 2]));
        assert_eq!(t("joinarrtostr", json!(["a", 1, null]), vec![json!("-")]), json!("a-1-"));
        assert_eq!(t("joinarrtostr", json!(["a", "b"]), vec![]), json!("a,b"));
    }

    #[test]
    fn mapping_transforms() {
        let values = json!(["a", "b", "c"]);
        let choices = json!([1, 2, 3]);
        assert_eq!(t("mapper", json!("b"), vec![values.clone(), choices.clone()]), json!(2));
        assert_eq!(t("mapper", json!("z"), vec![values, choices]), Value::Null);
        let th = vec![json!([10, 20, 30]), json!(["low", "mid", "high"])];
        assert_eq!(t("thmapper", json!(5), th.clone()), json!("low"));
        assert_eq!(t("thmapper", json!(15), th.clone()), json!("mid"));
        assert_eq!(t("thmapper", json!(30), th.clone()), json!("high"));
        assert_eq!(t("thmapper", json!(31), th), Value::Null);
        let o = json!({"a": 1, "b": 2, "c": 1});
        assert_eq!(t("valuePicker", o.clone(), vec![json!(1)]), json!(["a", "c"]));
        assert_eq!(t("valuePickerMulti", o.clone(), vec![json!([2])]), json!(["b"]));
        assert_eq!(t("valuesPicker", o, vec![json!([1, 2])]), json!(["a", "b", "c"]));
    }

    #[test]
    fn date_transforms() {
        assert_eq!(t("toisodate", json!(0), vec![]), json!("1970-01-01T00:00:00.000Z"));
        assert_eq!(t("toisostring", json!("2020-01-01T01:00:00+01:00"), vec![]), json!("2020-01-01T00:00:00.000Z"));
        assert!(fails("toisodate", json!("nope"), vec![]));
        assert_eq!(t("gettime", json!("1970-01-01T00:00:01Z"), vec![]), json!(1000));
        assert_eq!(t("getTime", json!("nope"), vec![]), Value::Null);
        assert_eq!(t("timeoffset", json!("2020-01-01T00:00:00Z"), vec![]), json!(0));
        assert_eq!(t("localestring", json!("2016-01-25T21:27:03Z"), vec![]), json!("1/25/2016, 9:27:03 PM"));
        let now = t("now", Value::Null, vec![]).as_i64().unwrap_or(0);
        assert!(now > 1_600_000_000_000);
    }

    #[test]
    fn unknown_transform_is_an_error() {
        assert!(fails("nosuch", json!(1), vec![]));
    }
}
