//! The corpus comparator: brings an actual result into the recorded (normalised) form and compares
//! it with `expected.json`, following the corpus README's "Comparator rules".

use regex::Regex;
use serde_json::{Map, Value};
use std::collections::HashMap;
use std::sync::OnceLock;

/// How well one case matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Grade {
    /// The status differs.
    Mismatch,
    /// Status matches, but output or error differ.
    StatusOnly,
    /// Status, output and error match (the cause may differ).
    Lenient,
    /// Everything matches, including the exact cause.
    Strict,
}

fn iso_regex() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(r"[1-9]\d{3}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])T([01]\d|2[0-3]):[0-5]\d:[0-5]\d(\.\d{1,9})?(Z|[+-]\d{2}(:?\d{2})?)")
            .expect("valid regex")
    })
}

fn express_arn_regex() -> &'static Regex {
    static RE: OnceLock<Regex> = OnceLock::new();
    RE.get_or_init(|| {
        Regex::new(r"arn:aws:states:([^:]+):([^:]+):express:([^:]+):([^:]+):[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}").expect("valid regex")
    })
}

/// Normalisation context for one case.
pub struct Normalizer<'a> {
    /// The case was recorded on a STANDARD machine (ARNs say `execution`, not `express`).
    pub standard: bool,
    /// `normalized` entries of expected.json.
    pub tokens: &'a [Value],
}

impl Normalizer<'_> {
    fn string(&self, s: &str) -> String {
        let mut out = s.to_string();
        if self.standard {
            out = express_arn_regex()
                .replace_all(&out, "arn:aws:states:$1:$2:execution:$3:$4")
                .into_owned();
        }
        out = out.replace(expressway_engine::DEFAULT_ACCOUNT, "111111111111");
        out = out.replace(expressway_engine::DEFAULT_REGION, "<region>");
        out = out.replace("arn:aws:", "arn:<partition>:");
        for t in self.tokens {
            if t.get("kind").and_then(Value::as_str) == Some("regex") {
                if let (Some(pattern), Some(token)) = (
                    t.get("pattern").and_then(Value::as_str),
                    t.get("token").and_then(Value::as_str),
                ) {
                    out = out.replace(pattern, token);
                }
            }
        }
        iso_regex().replace_all(&out, "date").into_owned()
    }

    /// Applies the global snapshot transforms to an actual value.
    pub fn value(&self, v: &Value) -> Value {
        self.value_at(v, None)
    }

    fn value_at(&self, v: &Value, key: Option<&str>) -> Value {
        match v {
            Value::String(s) => {
                if let Some(k) = key {
                    if k.to_ascii_lowercase().contains("timestamp") && !iso_regex().is_match(s) {
                        return Value::String("timestamp".into());
                    }
                }
                Value::String(self.string(s))
            }
            Value::Number(_) | Value::Bool(_) | Value::Null => {
                if key.is_some_and(|k| k.to_ascii_lowercase().contains("timestamp")) {
                    return Value::String("timestamp".into());
                }
                v.clone()
            }
            Value::Array(a) => Value::Array(a.iter().map(|x| self.value_at(x, None)).collect()),
            Value::Object(m) => {
                let mut out = Map::with_capacity(m.len());
                for (k, x) in m {
                    out.insert(self.string(k), self.value_at(x, Some(k)));
                }
                Value::Object(out)
            }
        }
    }

    /// Overwrites values at the `kind: jsonpath` snapshot paths with their tokens.
    pub fn apply_jsonpath_tokens(&self, v: &mut Value) {
        for t in self.tokens {
            if t.get("kind").and_then(Value::as_str) != Some("jsonpath") {
                continue;
            }
            let (Some(path), Some(token)) = (
                t.get("snapshot_jsonpath").and_then(Value::as_str),
                t.get("token").and_then(Value::as_str),
            ) else {
                continue;
            };
            // Snapshot paths address history events (`$..events..output.FunctionResult`); the
            // last member name is what the token replaced inside the output.
            if let Some(key) = path.rsplit(['.', '$']).find(|k| !k.is_empty()) {
                replace_deep(v, key, token);
            }
        }
    }

    /// Every wildcard token of the case.
    pub fn wildcards(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .tokens
            .iter()
            .filter(|t| {
                !matches!(
                    t.get("kind").and_then(Value::as_str),
                    Some("jsonpath") | Some("iso8601") | Some("timestamp_key")
                )
            })
            .filter_map(|t| t.get("token").and_then(Value::as_str).map(str::to_string))
            .filter(|t| t != "date" && t != "timestamp")
            .collect();
        out.sort_by_key(|t| std::cmp::Reverse(t.len()));
        out.dedup();
        out
    }
}

fn replace_deep(v: &mut Value, key: &str, token: &str) {
    match v {
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                if k == key {
                    *x = Value::String(token.to_string());
                } else {
                    replace_deep(x, key, token);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(|x| replace_deep(x, key, token)),
        _ => {}
    }
}

/// Structural comparison with wildcard tokens (equal tokens bind equal values).
pub struct Matcher {
    tokens: Vec<String>,
    binds: HashMap<String, String>,
}

impl Matcher {
    /// A matcher for the given wildcard tokens.
    pub fn new(tokens: Vec<String>) -> Matcher {
        Matcher {
            tokens,
            binds: HashMap::new(),
        }
    }

    /// True when `actual` matches `expected`.
    pub fn matches(&mut self, expected: &Value, actual: &Value) -> bool {
        match (expected, actual) {
            (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
            (Value::String(e), Value::String(a)) => self.string(e, a),
            (Value::Array(e), Value::Array(a)) => {
                e.len() == a.len() && e.iter().zip(a).all(|(x, y)| self.matches(x, y))
            }
            (Value::Object(e), Value::Object(a)) => {
                e.len() == a.len()
                    && e.iter().all(|(k, x)| match a.get(k) {
                        Some(y) => self.matches(x, y),
                        None => {
                            // Keys may hold tokens too.
                            a.iter()
                                .any(|(ak, y)| self.string(k, ak) && self.matches(x, y))
                        }
                    })
            }
            _ => expected == actual,
        }
    }

    /// String equality where token occurrences in `expected` match any text.
    pub fn string(&mut self, expected: &str, actual: &str) -> bool {
        if expected == actual {
            return true;
        }
        let used: Vec<&String> = self
            .tokens
            .iter()
            .filter(|t| expected.contains(t.as_str()))
            .collect();
        if used.is_empty() {
            return false;
        }
        // Build a regex: literal pieces escaped, tokens as named groups (bound ones as literals).
        let mut pattern = String::from("^");
        let mut groups: Vec<String> = Vec::new();
        let mut rest = expected;
        'outer: while !rest.is_empty() {
            for t in &used {
                if let Some(stripped) = rest.strip_prefix(t.as_str()) {
                    if let Some(bound) = self.binds.get(t.as_str()) {
                        pattern.push_str(&regex::escape(bound));
                    } else if groups.contains(t) {
                        pattern.push_str(&format!("(?:{})", "[^\"]+?"));
                    } else {
                        groups.push((*t).clone());
                        pattern.push_str("(.+?)");
                    }
                    rest = stripped;
                    continue 'outer;
                }
            }
            let ch = rest.chars().next().unwrap_or(' ');
            pattern.push_str(&regex::escape(&ch.to_string()));
            rest = &rest[ch.len_utf8()..];
        }
        pattern.push('$');
        let Ok(re) = Regex::new(&pattern) else {
            return false;
        };
        let Some(caps) = re.captures(actual) else {
            return false;
        };
        for (i, t) in groups.iter().enumerate() {
            if let Some(m) = caps.get(i + 1) {
                self.binds.insert(t.clone(), m.as_str().to_string());
            }
        }
        true
    }
}

/// Grades an actual result object against expected.json.
pub fn grade(expected: &Value, actual: &Value, standard: bool) -> (Grade, String) {
    let empty = Vec::new();
    let tokens = expected
        .get("normalized")
        .and_then(Value::as_array)
        .unwrap_or(&empty);
    let norm = Normalizer { standard, tokens };
    let mut m = Matcher::new(norm.wildcards());
    let exp_status = expected.get("status").and_then(Value::as_str).unwrap_or("");
    let act_status = actual.get("status").and_then(Value::as_str).unwrap_or("");
    if exp_status != act_status {
        let why = format!(
            "status {act_status} (expected {exp_status}); error={} cause={}",
            actual.get("error").unwrap_or(&Value::Null),
            actual
                .get("cause")
                .map(|c| c.to_string())
                .unwrap_or_default()
                .chars()
                .take(300)
                .collect::<String>()
        );
        return (Grade::Mismatch, why);
    }
    if let Some(exp_out) = expected.get("output") {
        let mut out = norm.value(actual.get("output").unwrap_or(&Value::Null));
        norm.apply_jsonpath_tokens(&mut out);
        if !m.matches(exp_out, &out) {
            return (
                Grade::StatusOnly,
                format!("output {} (expected {})", trunc(&out), trunc(exp_out)),
            );
        }
    }
    let act_error = actual.get("error").map(|e| norm.value(e));
    match (expected.get("error"), &act_error) {
        (Some(e), Some(a)) if m.matches(e, a) => {}
        (None, None) => {}
        (e, a) => return (Grade::StatusOnly, format!("error {a:?} (expected {e:?})")),
    }
    let act_cause = actual.get("cause").map(|c| {
        if expected.get("cause_is_json") == Some(&Value::Bool(true)) {
            c.as_str()
                .and_then(|s| serde_json::from_str::<Value>(s).ok())
                .map(|v| norm.value(&v))
                .unwrap_or_else(|| norm.value(c))
        } else {
            norm.value(c)
        }
    });
    let cause_ok = match (expected.get("cause"), &act_cause) {
        (Some(e), Some(a)) => json_input_match(&mut m, e, a),
        (None, None) => true,
        _ => false,
    };
    if cause_ok {
        (Grade::Strict, String::new())
    } else {
        (
            Grade::Lenient,
            format!(
                "cause {:?} (expected {:?})",
                act_cause.map(|c| trunc(&c)),
                expected.get("cause").map(trunc)
            ),
        )
    }
}

/// Causes may quote a JSON document as `<json-input:N>`: any text matches there.
fn json_input_match(m: &mut Matcher, expected: &Value, actual: &Value) -> bool {
    if let (Value::String(e), Value::String(a)) = (expected, actual) {
        if e.contains("<json-input:") {
            let re = Regex::new(r"<json-input:\d+>").expect("valid regex");
            let pattern = format!(
                "^{}$",
                re.split(e)
                    .map(regex::escape)
                    .collect::<Vec<_>>()
                    .join("(.*)")
            );
            return Regex::new(&pattern).map(|r| r.is_match(a)).unwrap_or(false);
        }
    }
    m.matches(expected, actual)
}

fn trunc(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 300 {
        format!(
            "{}…",
            &s[..s.char_indices().nth(300).map(|(i, _)| i).unwrap_or(s.len())]
        )
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn tokens_bind_consistently() {
        let mut m = Matcher::new(vec!["<A>".into()]);
        assert!(m.string("x:<A>:y", "x:foo:y"));
        assert!(m.string("<A>", "foo"));
        assert!(!m.string("<A>", "bar"));
    }

    #[test]
    fn grading_levels() {
        let expected = json!({"status": "FAILED", "error": "E", "cause": "C", "normalized": []});
        assert_eq!(
            grade(
                &expected,
                &json!({"status": "FAILED", "error": "E", "cause": "C"}),
                true
            )
            .0,
            Grade::Strict
        );
        assert_eq!(
            grade(
                &expected,
                &json!({"status": "FAILED", "error": "E", "cause": "X"}),
                true
            )
            .0,
            Grade::Lenient
        );
        assert_eq!(
            grade(&expected, &json!({"status": "FAILED", "error": "F"}), true).0,
            Grade::StatusOnly
        );
        assert_eq!(
            grade(&expected, &json!({"status": "SUCCEEDED"}), true).0,
            Grade::Mismatch
        );
    }

    #[test]
    fn arns_and_dates_are_normalised() {
        let expected = json!({"status": "SUCCEEDED", "output": {"id": "arn:<partition>:states:<region>:111111111111:execution:<ArnPart_0idx>:<ExecArnPart_0idx>", "t": "date"},
            "normalized": [{"token": "<ArnPart_0idx>", "kind": "state_machine_name"}, {"token": "<ExecArnPart_0idx>", "kind": "execution_name"}]});
        let actual = json!({"status": "SUCCEEDED", "output": {"id": "arn:aws:states:us-east-1:123456789012:express:m:n:0f0e0d0c-0b0a-4908-8706-050403020100", "t": "2024-01-01T00:00:00.000Z"}});
        assert_eq!(grade(&expected, &actual, true).0, Grade::Strict);
    }
}
