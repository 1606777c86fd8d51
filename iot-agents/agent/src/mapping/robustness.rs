//! No input panics: generated expressions, UltraLight payloads, timestamps and typed values run
//! through the parsers and the evaluator, which must answer `Ok` or `Err`, never panic.

use serde_json::{Value, json};

use super::{evaluate, parse_json_measures, parse_ul, strict_iso, types, validate};

/// A small deterministic generator (xorshift), so a failure reproduces.
struct Gen(u64);

impl Gen {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn string(&mut self, alphabet: &[&str], max: usize) -> String {
        let len = (self.next() % max as u64) as usize;
        (0..len).map(|_| alphabet[(self.next() % alphabet.len() as u64) as usize]).collect()
    }
}

#[test]
fn generated_expressions_never_panic() {
    let alphabet = [
        "a",
        "b",
        "x",
        "1",
        "2.5",
        "0",
        " ",
        "+",
        "-",
        "*",
        "/",
        "//",
        "%",
        "^",
        "==",
        "!=",
        "<",
        ">=",
        "&&",
        "||",
        "!",
        "?",
        ":",
        ".",
        ",",
        "(",
        ")",
        "[",
        "]",
        "{",
        "}",
        "|",
        "'s'",
        "\"",
        "'",
        "\\",
        "in",
        "true",
        "null",
        "trim",
        "substr(1,2)",
        "split(',')",
        "jsonparse",
        "toisodate",
        "addreduce",
        "é",
        "0x",
        "e9",
    ];
    let ctx = json!({"a": 3, "b": "text", "x": [1, "2", {"k": null}], "s": {"k": [1, 2]}});
    let mut g = Gen(0x9e37_79b9_7f4a_7c15);
    for _ in 0..20_000 {
        let expr = g.string(&alphabet, 14);
        let parsed = validate(&expr);
        let evaluated = evaluate(&expr, &ctx);
        // An expression that does not parse cannot evaluate.
        if parsed.is_err() {
            assert!(evaluated.is_err(), "{expr}");
        }
    }
}

#[test]
fn generated_ultralight_never_panics() {
    let alphabet = ["t", "1", "|", "#", "@", "=", "", " ", "\n", "2024-01-01T00:00:00Z", "{\"a\":1}", "é", "dev"];
    let mut g = Gen(0x2545_f491_4f6c_dd1d);
    for _ in 0..20_000 {
        let payload = g.string(&alphabet, 12);
        let _ = parse_ul(&payload);
        let _ = super::parse_ul_command_result(&payload);
        let _ = super::parse_configuration_request(payload.as_bytes(), true);
    }
}

#[test]
fn generated_timestamps_and_values_never_panic() {
    let alphabet = ["2024", "-", "01", "T", ":", "Z", "+", ".", ",", "5", " ", "é", "99"];
    let mut g = Gen(0xdead_beef_cafe_f00d);
    let kinds = [
        "Number",
        "Integer",
        "Boolean",
        "DateTime",
        "Date",
        "Time",
        "geo:point",
        "geo:polygon",
        "Object",
        "Relationship",
        "LanguageProperty",
        "ListProperty",
        "Text",
    ];
    for _ in 0..20_000 {
        let s = g.string(&alphabet, 10);
        let _ = strict_iso(&Value::from(s.as_str()));
        for kind in kinds {
            let _ = types::to_ngsi_ld(Some(kind), Value::from(s.as_str()));
        }
        let _ = parse_json_measures(s.as_bytes(), Some("ngsild"));
    }
}
