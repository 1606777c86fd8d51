//! Regular expressions given by clients: `idPattern` (GS CIM 009 §5.7.2) and the `~=` operator
//! of the q language (§4.9). The spec asks for POSIX extended regular expressions; the `regex`
//! crate reads a close superset, but it also accepts a repetition operator applied to another
//! (`a**`, `a+*`), whose meaning POSIX leaves undefined and which ECMAScript and PCRE reject.
//! Such a pattern is almost always a mistake (ETSI 019_03_02 sends `…pattern**` as the
//! example of an invalid idPattern), so it is refused here before the crate compiles the rest.
//! Compilation is bounded in size, so a pattern cannot make the broker build a huge automaton.

use regex::{Regex, RegexBuilder};

/// The largest compiled program a client pattern may produce, in bytes.
const SIZE_LIMIT: usize = 1 << 20;

/// What the previous token of the pattern was, as far as repetition is concerned.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Last {
    /// Start of the pattern, of a group or of an alternative: nothing to repeat.
    Nothing,
    /// Something a repetition operator may apply to.
    Atom,
    /// A repetition operator (`*`, `+`, `?`, `{n,m}`).
    Repeat,
    /// A repetition operator made lazy by a `?` after it.
    LazyRepeat,
}

/// Compiles a client pattern; the error says what is wrong, for a BadRequestData detail.
pub fn compile(src: &str) -> Result<Regex, String> {
    check_repetitions(src)?;
    RegexBuilder::new(src).size_limit(SIZE_LIMIT).build().map_err(|e| e.to_string())
}

/// Refuses a repetition operator that follows another one (a lazy `?` excepted).
fn check_repetitions(src: &str) -> Result<(), String> {
    let b = src.as_bytes();
    let mut last = Last::Nothing;
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'\\' => {
                i = skip_escape(b, i);
                last = Last::Atom;
                continue;
            }
            b'[' => {
                i = skip_class(b, i);
                last = Last::Atom;
                continue;
            }
            b'(' => {
                i = skip_group_prefix(b, i);
                last = Last::Nothing;
                continue;
            }
            b'|' => last = Last::Nothing,
            b'?' if last == Last::Repeat => last = Last::LazyRepeat,
            b'*' | b'+' | b'?' => last = repeat_after(last, i)?,
            b'{' => {
                if let Some(end) = counted_repetition(b, i) {
                    last = repeat_after(last, i)?;
                    i = end;
                    continue;
                }
                last = Last::Atom;
            }
            _ => last = Last::Atom,
        }
        i += 1;
    }
    Ok(())
}

/// The state after a repetition operator at `pos`, or the error when it repeats a repetition.
fn repeat_after(last: Last, pos: usize) -> Result<Last, String> {
    match last {
        Last::Repeat | Last::LazyRepeat => {
            Err(format!("the repetition operator at position {pos} follows another repetition operator"))
        }
        // Nothing to repeat: the regex crate reports it with its own message.
        Last::Nothing | Last::Atom => Ok(Last::Repeat),
    }
}

/// The index after an escape starting at `i` (`\d`, `\.`, `\p{Greek}`, `\x{41}`).
fn skip_escape(b: &[u8], i: usize) -> usize {
    let mut j = i + 2;
    if matches!(b.get(i + 1), Some(b'p' | b'P' | b'x' | b'u' | b'U')) && b.get(j) == Some(&b'{') {
        while j < b.len() && b[j] != b'}' {
            j += 1;
        }
        j += 1;
    }
    j.min(b.len())
}

/// The index after a bracketed class starting at `i`, nested classes and `[:alpha:]` included.
fn skip_class(b: &[u8], i: usize) -> usize {
    let mut j = i + 1;
    if b.get(j) == Some(&b'^') {
        j += 1;
    }
    // A `]` right after the opening bracket is a literal member.
    if b.get(j) == Some(&b']') {
        j += 1;
    }
    let mut depth = 1;
    while j < b.len() {
        match b[j] {
            b'\\' => {
                j = skip_escape(b, j);
                continue;
            }
            b'[' if b.get(j + 1) == Some(&b':') => {
                let rest = &b[j + 2..];
                match rest.windows(2).position(|w| w == b":]") {
                    Some(k) => j += k + 4,
                    None => j += 1,
                }
                continue;
            }
            b'[' => depth += 1,
            b']' => {
                depth -= 1;
                if depth == 0 {
                    return j + 1;
                }
            }
            _ => {}
        }
        j += 1;
    }
    b.len()
}

/// The index after the opening of a group at `i`: `(`, `(?:`, `(?i)`, `(?i:`, `(?P<name>`.
fn skip_group_prefix(b: &[u8], i: usize) -> usize {
    let mut j = i + 1;
    if b.get(j) != Some(&b'?') {
        return j;
    }
    j += 1;
    if matches!(b.get(j), Some(b'P' | b'<')) {
        while j < b.len() && b[j] != b'>' {
            j += 1;
        }
        return (j + 1).min(b.len());
    }
    while j < b.len() && b[j] != b':' && b[j] != b')' {
        j += 1;
    }
    (j + 1).min(b.len())
}

/// When `{` at `i` opens a counted repetition (`{n}`, `{n,}`, `{n,m}`), the index after it.
fn counted_repetition(b: &[u8], i: usize) -> Option<usize> {
    let mut j = i + 1;
    let digits = |j: &mut usize| {
        let start = *j;
        while b.get(*j).is_some_and(u8::is_ascii_digit) {
            *j += 1;
        }
        *j > start
    };
    if !digits(&mut j) {
        return None;
    }
    if b.get(j) == Some(&b',') {
        j += 1;
        digits(&mut j);
    }
    (b.get(j) == Some(&b'}')).then_some(j + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(p: &str) -> bool {
        compile(p).is_ok()
    }

    #[test]
    fn ordinary_patterns_compile() {
        for p in [
            "urn:ngsi-ld:Building:.*",
            "^urn:a:[0-9]+$",
            "a*?b+?c??",
            "a{2}b{1,}c{1,3}?",
            "(ab)*",
            "(?i)abc",
            "(?:a|b)+",
            "(?P<n>a)+",
            "[*+?]+",
            "[]*]+",
            "[[:alpha:]]+",
            "\\*+",
            "\\p{Greek}+",
            "a\\{2}*",
        ] {
            assert!(ok(p), "{p} should compile");
        }
    }

    #[test]
    fn a_repetition_of_a_repetition_is_refused() {
        for p in ["invalid_entity_id_pattern**", "a+*", "a?+", "a*??", "a{2}*", "a*{2}", "(a|b*+)"] {
            let e = compile(p).expect_err(p);
            assert!(e.contains("repetition operator"), "{p}: {e}");
        }
    }

    #[test]
    fn syntax_errors_come_from_the_regex_crate() {
        assert!(!ok("("));
        assert!(!ok("*a"));
        assert!(!ok("[a"));
    }

    #[test]
    fn huge_programs_are_refused() {
        assert!(!ok("(a{1000}){1000}"));
    }
}
