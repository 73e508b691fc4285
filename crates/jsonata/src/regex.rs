//! Regular expressions with JavaScript semantics, as JSONata's `/.../flags`.
//!
//! A JavaScript regex runs on a backtracking engine, which takes exponential time on patterns such
//! as `/([a-z]+)*SD/` (nested quantifiers) against a long non-matching text: one expression could
//! stall a pod's worker for hours. So a pattern is translated (see [`crate::regex_translate`]) to
//! the `regex` crate's syntax, whose engines take linear time and report the same leftmost-first
//! matches and groups a backtracking engine does. Only patterns that need backtracking
//! (backreferences, lookahead, lookbehind) run on `regress`, a JavaScript-compatible backtracking
//! engine; those with nested or alternated unbounded repetition are refused, since nothing bounds
//! their backtracking.

use std::ops::Range;

/// A compiled regular expression.
#[derive(Debug)]
pub struct Regex {
    engine: Engine,
    source: String,
}

#[derive(Debug)]
enum Engine {
    /// Linear time (`regex` crate) on the translated pattern; with the `m` flag and `^`/`$` in the
    /// pattern, texts holding `\r`, U+2028 or U+2029 (line terminators in JavaScript, not in the
    /// `regex` crate) go to `lines` when that is safe.
    Linear {
        re: regex::Regex,
        lines: Option<regress::Regex>,
    },
    /// Backtracking (`regress`): backreferences and lookaround, without nested repetition.
    Backtracking(regress::Regex),
}

/// One match: the byte range of the match and of each capture group.
#[derive(Debug, Clone)]
pub struct Match {
    pub range: Range<usize>,
    pub groups: Vec<Option<Range<usize>>>,
}

/// Compiled programs above this size are refused (the `regex` crate's limit, kept explicit).
const MAX_PROGRAM_BYTES: usize = 10 * 1024 * 1024;

impl Regex {
    /// Compiles `pattern` with JSONata flags (`i`, `m`).
    pub fn new(pattern: &str, flags: &str) -> Result<Regex, String> {
        // regress checks the JavaScript syntax and flags, so an invalid pattern gets the same
        // error on either engine.
        let backtracking = regress::Regex::with_flags(pattern, flags).map_err(|e| e.to_string())?;
        let case_insensitive = flags.contains('i');
        let multi_line = flags.contains('m');
        let dot_all = flags.contains('s');
        let translated = crate::regex_translate::translate(pattern, dot_all);
        // Other flags (`u`, `v`, `y`) change the syntax: they stay on regress.
        let plain_flags = flags.chars().all(|c| matches!(c, 'i' | 'm' | 's'));
        // Exact on the backtracking engine where that is safe: the linear engine differs at empty
        // iterations and in groups inside repeated groups; a pattern that also nests repetition
        // keeps those differences rather than exponential time.
        let exact_needs_backtracking = translated.inexact_linear && !translated.nested_repetition;
        let engine = if translated.needs_backtracking || !plain_flags || exact_needs_backtracking {
            if translated.nested_repetition {
                return Err(format!(
                    "Regular expression '{pattern}' combines backreferences or lookaround with nested or alternated repetition, which can backtrack for an unbounded time; rewrite it without one of them"
                ));
            }
            Engine::Backtracking(backtracking)
        } else {
            let re = regex::RegexBuilder::new(&translated.pattern)
                .case_insensitive(case_insensitive)
                .multi_line(multi_line)
                .size_limit(MAX_PROGRAM_BYTES)
                .build()
                .map_err(|e| match e {
                    regex::Error::CompiledTooBig(_) => {
                        format!("Regular expression '{pattern}' is too large")
                    }
                    other => other.to_string(),
                })?;
            let lines = (multi_line && translated.line_anchors && !translated.nested_repetition)
                .then_some(backtracking);
            Engine::Linear { re, lines }
        };
        Ok(Regex {
            engine,
            source: pattern.to_string(),
        })
    }

    /// The pattern text.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether the pattern runs on the backtracking engine (backreferences or lookaround).
    pub fn is_backtracking(&self) -> bool {
        matches!(self.engine, Engine::Backtracking(_))
    }

    /// All non-overlapping matches, in order (after an empty match the search moves on one
    /// character, as JavaScript's global matching does).
    pub fn matches(&self, text: &str) -> Vec<Match> {
        let mut out = Vec::new();
        let mut start = 0;
        while start <= text.len() {
            let Some(m) = self.find_from(text, start) else {
                break;
            };
            start = if m.range.is_empty() {
                next_char_boundary(text, m.range.end)
            } else {
                m.range.end
            };
            out.push(m);
        }
        out
    }

    /// The first match at or after byte `start`.
    pub fn find_from(&self, text: &str, start: usize) -> Option<Match> {
        match &self.engine {
            Engine::Linear {
                lines: Some(re), ..
            } if text.contains(['\r', '\u{2028}', '\u{2029}']) => {
                re.find_from(text, start).next().map(|m| Match {
                    range: m.range(),
                    groups: (1..m.captures.len() + 1).map(|i| m.group(i)).collect(),
                })
            }
            Engine::Linear { re, .. } => {
                if start > text.len() {
                    return None;
                }
                let caps = re.captures_at(text, start)?;
                let whole = caps.get(0)?;
                Some(Match {
                    range: whole.range(),
                    groups: (1..caps.len())
                        .map(|i| caps.get(i).map(|g| g.range()))
                        .collect(),
                })
            }
            Engine::Backtracking(re) => re.find_from(text, start).next().map(|m| Match {
                range: m.range(),
                groups: (1..m.captures.len() + 1).map(|i| m.group(i)).collect(),
            }),
        }
    }
}

fn next_char_boundary(text: &str, at: usize) -> usize {
    let mut i = at + 1;
    while i < text.len() && !text.is_char_boundary(i) {
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    fn found(re: &str, flags: &str, text: &str) -> Vec<(String, Vec<Option<String>>)> {
        let re = Regex::new(re, flags).expect("compiles");
        re.matches(text)
            .into_iter()
            .map(|m| {
                (
                    text[m.range.clone()].to_string(),
                    m.groups
                        .iter()
                        .map(|g| g.clone().map(|r| text[r].to_string()))
                        .collect(),
                )
            })
            .collect()
    }

    #[test]
    fn nested_quantifiers_run_in_linear_time() {
        // Exponential on a backtracking engine: 2^40 paths before it gives up.
        let re = Regex::new("([a-z]+)*SD", "").expect("compiles");
        assert!(!re.is_backtracking());
        let text = "a".repeat(40) + "!";
        let started = std::time::Instant::now();
        assert!(re.find_from(&text, 0).is_none());
        // Not a timing assertion: a backtracking engine would not return at all in test time.
        let _ = started.elapsed();
    }

    #[test]
    fn groups_and_alternation_follow_javascript_priorities() {
        assert_eq!(
            found("(a|ab)(c|bcd)(d*)", "", "abcd"),
            vec![(
                "abcd".to_string(),
                vec![Some("a".into()), Some("bcd".into()), Some("".into())]
            )]
        );
        // Groups inside a repeated group are reset at every iteration (JavaScript, not Perl).
        assert_eq!(
            found("(?:(a)|b){1,5}", "", "ab"),
            vec![("ab".to_string(), vec![None])]
        );
        // ... except under unbounded repetition of an alternation, which stays on the linear
        // engine (the documented difference): the last value the group captured.
        assert_eq!(
            found("(?:(a)|b)+", "", "ab"),
            vec![("ab".to_string(), vec![Some("a".into())])]
        );
        assert_eq!(
            found("(?:(a)|b)+", "", "ba"),
            vec![("ba".to_string(), vec![Some("a".into())])]
        );
        assert_eq!(
            found("a*?", "", "aa"),
            vec![
                ("".to_string(), vec![]),
                ("".to_string(), vec![]),
                ("".to_string(), vec![])
            ]
        );
    }

    #[test]
    fn javascript_classes_and_escapes_keep_their_meaning() {
        // \d and \w are ASCII in JavaScript; `.` stops at every line terminator.
        assert_eq!(found(r"\d+", "", "٣12"), vec![("12".to_string(), vec![])]);
        assert_eq!(found(r"\w+", "", "é_a1"), vec![("_a1".to_string(), vec![])]);
        assert_eq!(
            found(".+", "", "a\rb"),
            vec![("a".into(), vec![]), ("b".into(), vec![])]
        );
        assert_eq!(
            found(r"[^]+", "", "a\nb"),
            vec![("a\nb".to_string(), vec![])]
        );
        assert!(found(r"[]", "", "abc").is_empty());
        assert_eq!(
            found(r"\u0041\x42", "", "xAB"),
            vec![("AB".to_string(), vec![])]
        );
        assert_eq!(found(r"a{2", "", "a{2"), vec![("a{2".to_string(), vec![])]);
        assert_eq!(
            found(r"[a-c\]-]+", "", "x]b-c"),
            vec![("]b-c".to_string(), vec![])]
        );
        assert_eq!(found(r"[[]", "", "a[b"), vec![("[".to_string(), vec![])]);
        assert_eq!(
            found(r"[&&~~]+", "", "a&~"),
            vec![("&~".to_string(), vec![])]
        );
        assert_eq!(
            found(r"\bis\b", "", "this is"),
            vec![("is".to_string(), vec![])]
        );
        assert_eq!(
            found(r"(?<y>\d{4})-(\d\d)", "", "2024-05"),
            vec![(
                "2024-05".to_string(),
                vec![Some("2024".into()), Some("05".into())]
            )]
        );
        assert_eq!(found("AB", "i", "xaby"), vec![("ab".to_string(), vec![])]);
        assert_eq!(found("^b", "m", "a\nb"), vec![("b".to_string(), vec![])]);
    }

    #[test]
    fn backreferences_and_lookaround_use_the_backtracking_engine() {
        let re = Regex::new(r"(a)\1", "").expect("compiles");
        assert!(re.is_backtracking());
        assert_eq!(
            found(r"(a)\1", "", "xaa"),
            vec![("aa".to_string(), vec![Some("a".into())])]
        );
        assert_eq!(
            found(r"a(?=b)", "", "acab"),
            vec![("a".to_string(), vec![])]
        );
    }

    #[test]
    fn unbounded_backtracking_is_refused() {
        let err = Regex::new(r"(a+)+\1", "").expect_err("refused");
        assert!(err.contains("nested or alternated repetition"), "{err}");
        let err = Regex::new(r"(?=x)(a|ab)*c", "").expect_err("refused");
        assert!(err.contains("nested or alternated repetition"), "{err}");
        // Bounded or single repetition with a backreference is fine.
        Regex::new(r"(\w+)\s\1", "").expect("compiles");
    }

    #[test]
    fn invalid_patterns_and_flags_are_errors() {
        assert!(Regex::new("(", "").is_err());
        assert!(Regex::new("a{2,1}", "").is_err());
    }

    /// Random patterns from a small JavaScript grammar on short texts: the linear engine's
    /// matches and groups equal regress's (the texts are short, so backtracking ends), except for
    /// nested repetition over a group that can match empty.
    #[test]
    fn linear_engine_agrees_with_javascript_backtracking() {
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move |n: usize| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state % n as u64) as usize
        };
        const ATOMS: &[&str] = &[
            "a", "b", ".", r"\d", r"\w", r"\s", r"\W", "[ab]", "[^a]", "[a-c]", r"[\d-]", "[]",
            "[^]", r"\b", r"\B", "^", "$", r"\u0061", r"\x62", r"\.", "é", "{", "}", r"\-", "-",
            r"[\s\S]", r"[\b]", "[.]",
        ];
        const QUANTS: &[&str] = &["", "", "*", "+", "?", "*?", "+?", "{2}", "{1,2}", "{0,}?"];
        const TEXTS: &[&str] = &[
            "", "a", "ab", "ba b", "aab1", "a\nb", "a\rb", "é a", "b-1 a", "{a}", "aaab", "a.b",
        ];
        fn gen(next: &mut impl FnMut(usize) -> usize, depth: u32) -> String {
            let mut out = String::new();
            for _ in 0..1 + next(3) {
                let atom = if depth < 2 && next(4) == 0 {
                    let open = ["(", "(?:", "(?<n>"][next(3)];
                    let mut g = format!("{open}{}", gen(next, depth + 1));
                    if next(3) == 0 {
                        g.push('|');
                        g.push_str(&gen(next, depth + 1));
                    }
                    g.push(')');
                    g
                } else {
                    ATOMS[next(ATOMS.len())].to_string()
                };
                out.push_str(&atom);
                out.push_str(QUANTS[next(QUANTS.len())]);
            }
            out
        }
        let mut compared = 0;
        for _ in 0..2000 {
            let pattern = gen(&mut next, 0);
            let flags = ["", "i", "m"][next(3)];
            let Ok(js) = regress::Regex::with_flags(&pattern, flags) else {
                continue;
            };
            let ours = match Regex::new(&pattern, flags) {
                Ok(r) => r,
                Err(e) => panic!("{pattern:?} /{flags}: regress accepts it, we refuse: {e}"),
            };
            let t = crate::regex_translate::translate(&pattern, false);
            // The documented differences, all under nested repetition (kept linear): empty
            // iterations, groups inside repeated groups, and `\r` / U+2028 / U+2029 as line
            // terminators for `^`/`$` with the `m` flag.
            let lines_differ = flags == "m" && t.line_anchors;
            if t.nested_repetition && t.inexact_linear {
                continue;
            }
            for text in TEXTS {
                if t.nested_repetition && lines_differ && text.contains('\r') {
                    continue;
                }
                for start in 0..=text.len() {
                    if !text.is_char_boundary(start) {
                        continue;
                    }
                    let a = ours.find_from(text, start).map(|m| (m.range, m.groups));
                    let b = js.find_from(text, start).next().map(|m| {
                        let groups = (1..m.captures.len() + 1).map(|i| m.group(i)).collect();
                        (m.range(), groups)
                    });
                    assert_eq!(
                        a, b,
                        "pattern {pattern:?} /{flags} on {text:?} from {start}"
                    );
                    compared += 1;
                }
            }
        }
        assert!(compared > 10_000, "only {compared} comparisons");
    }
}
