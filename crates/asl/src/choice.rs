//! Choice rules (JSONPath mode comparison operators and JSONata `Condition`s).

use crate::jsonpath::{JsonPath, Root};
use crate::template::{resolve_path_ref, EvalEnv, EvalError, ValueExpr};
use crate::timestamp::parse_timestamp;
use serde_json::Value;

/// A compiled boolean rule.
#[derive(Debug, Clone)]
pub enum Rule {
    /// All must hold.
    And(Vec<Rule>),
    /// One must hold.
    Or(Vec<Rule>),
    /// Negation.
    Not(Box<Rule>),
    /// `Variable` + comparison operator.
    Compare {
        /// The path compared.
        variable: JsonPath,
        /// The operator.
        op: Op,
        /// The right-hand side.
        operand: Operand,
    },
    /// JSONata `Condition`.
    Condition(ValueExpr),
}

/// Right-hand side of a comparison.
#[derive(Debug, Clone)]
pub enum Operand {
    /// A literal from the definition.
    Literal(Value),
    /// A `...Path` operator's path.
    Path(JsonPath),
}

/// Comparison operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Op {
    StringEquals,
    StringLessThan,
    StringGreaterThan,
    StringLessThanEquals,
    StringGreaterThanEquals,
    StringMatches,
    NumericEquals,
    NumericLessThan,
    NumericGreaterThan,
    NumericLessThanEquals,
    NumericGreaterThanEquals,
    BooleanEquals,
    TimestampEquals,
    TimestampLessThan,
    TimestampGreaterThan,
    TimestampLessThanEquals,
    TimestampGreaterThanEquals,
    IsNull,
    IsPresent,
    IsNumeric,
    IsString,
    IsBoolean,
    IsTimestamp,
}

impl Op {
    /// Looks up an operator by its ASL name; the bool is true for the `...Path` form.
    pub fn from_name(name: &str) -> Option<(Op, bool)> {
        let (base, is_path) = match name.strip_suffix("Path") {
            Some(b) => (b, true),
            None => (name, false),
        };
        let op = match base {
            "StringEquals" => Op::StringEquals,
            "StringLessThan" => Op::StringLessThan,
            "StringGreaterThan" => Op::StringGreaterThan,
            "StringLessThanEquals" => Op::StringLessThanEquals,
            "StringGreaterThanEquals" => Op::StringGreaterThanEquals,
            "StringMatches" if !is_path => Op::StringMatches,
            "NumericEquals" => Op::NumericEquals,
            "NumericLessThan" => Op::NumericLessThan,
            "NumericGreaterThan" => Op::NumericGreaterThan,
            "NumericLessThanEquals" => Op::NumericLessThanEquals,
            "NumericGreaterThanEquals" => Op::NumericGreaterThanEquals,
            "BooleanEquals" => Op::BooleanEquals,
            "TimestampEquals" => Op::TimestampEquals,
            "TimestampLessThan" => Op::TimestampLessThan,
            "TimestampGreaterThan" => Op::TimestampGreaterThan,
            "TimestampLessThanEquals" => Op::TimestampLessThanEquals,
            "TimestampGreaterThanEquals" => Op::TimestampGreaterThanEquals,
            "IsNull" if !is_path => Op::IsNull,
            "IsPresent" if !is_path => Op::IsPresent,
            "IsNumeric" if !is_path => Op::IsNumeric,
            "IsString" if !is_path => Op::IsString,
            "IsBoolean" if !is_path => Op::IsBoolean,
            "IsTimestamp" if !is_path => Op::IsTimestamp,
            _ => return None,
        };
        Some((op, is_path))
    }

    /// All operator names (with and without `Path`), for schema checks.
    pub fn is_operator_name(name: &str) -> bool {
        Op::from_name(name).is_some()
    }
}

/// Compiles a rule object (`And`/`Or`/`Not` or `Variable` + operator). `top` rules also carry `Next`.
pub fn compile_rule(obj: &serde_json::Map<String, Value>) -> Result<Rule, String> {
    if let Some(v) = obj.get("And").or_else(|| obj.get("Or")) {
        let Value::Array(items) = v else {
            return Err("And/Or must be an array of rules".into());
        };
        let rules = items
            .iter()
            .map(|i| {
                i.as_object()
                    .ok_or_else(|| "a rule must be an object".to_string())
                    .and_then(compile_rule)
            })
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(if obj.contains_key("And") {
            Rule::And(rules)
        } else {
            Rule::Or(rules)
        });
    }
    if let Some(v) = obj.get("Not") {
        let inner = v.as_object().ok_or("Not must hold a rule object")?;
        return Ok(Rule::Not(Box::new(compile_rule(inner)?)));
    }
    let variable = match obj.get("Variable") {
        Some(Value::String(s)) => JsonPath::parse(s).map_err(|e| e.to_string())?,
        _ => return Err("a comparison rule needs a 'Variable' path".into()),
    };
    for (k, v) in obj {
        if let Some((op, is_path)) = Op::from_name(k) {
            let operand = if is_path {
                let Value::String(p) = v else {
                    return Err(format!("{k} must be a path string"));
                };
                Operand::Path(JsonPath::parse(p).map_err(|e| e.to_string())?)
            } else {
                Operand::Literal(v.clone())
            };
            return Ok(Rule::Compare {
                variable,
                op,
                operand,
            });
        }
    }
    Err("a comparison rule needs an operator".into())
}

/// StringMatches: `*` matches any run of characters; `\*` and `\\` are literal.
pub fn wildcard_match(pattern: &str, s: &str) -> bool {
    #[derive(Clone, Copy, PartialEq)]
    enum Tok {
        Star,
        Ch(char),
    }
    let mut toks = Vec::new();
    let mut it = pattern.chars();
    while let Some(c) = it.next() {
        match c {
            '\\' => toks.push(Tok::Ch(it.next().unwrap_or('\\'))),
            '*' => toks.push(Tok::Star),
            c => toks.push(Tok::Ch(c)),
        }
    }
    let chars: Vec<char> = s.chars().collect();
    // Classic greedy wildcard matching with backtracking to the last star.
    let (mut p, mut i) = (0usize, 0usize);
    let (mut star, mut mark) = (None::<usize>, 0usize);
    while i < chars.len() {
        if p < toks.len() && toks[p] == Tok::Ch(chars[i]) {
            p += 1;
            i += 1;
        } else if p < toks.len() && toks[p] == Tok::Star {
            star = Some(p);
            mark = i;
            p += 1;
        } else if let Some(sp) = star {
            p = sp + 1;
            mark += 1;
            i = mark;
        } else {
            return false;
        }
    }
    while p < toks.len() && toks[p] == Tok::Star {
        p += 1;
    }
    p == toks.len()
}

fn num(v: &Value) -> Option<f64> {
    v.as_f64()
}

fn cmp_ord(op: Op, ord: std::cmp::Ordering) -> bool {
    use std::cmp::Ordering::*;
    match op {
        Op::StringEquals | Op::NumericEquals | Op::TimestampEquals => ord == Equal,
        Op::StringLessThan | Op::NumericLessThan | Op::TimestampLessThan => ord == Less,
        Op::StringGreaterThan | Op::NumericGreaterThan | Op::TimestampGreaterThan => ord == Greater,
        Op::StringLessThanEquals | Op::NumericLessThanEquals | Op::TimestampLessThanEquals => {
            ord != Greater
        }
        Op::StringGreaterThanEquals
        | Op::NumericGreaterThanEquals
        | Op::TimestampGreaterThanEquals => ord != Less,
        _ => false,
    }
}

fn invalid_path(path: &JsonPath) -> EvalError {
    EvalError::runtime(format!(
        "Invalid path '{path}' : No results for path: {}",
        path.bracket_notation()
    ))
}

impl Rule {
    /// Evaluates the rule against the state's input.
    pub fn eval(&self, env: &dyn EvalEnv) -> Result<bool, EvalError> {
        match self {
            Rule::And(rules) => {
                for r in rules {
                    if !r.eval(env)? {
                        return Ok(false);
                    }
                }
                Ok(true)
            }
            Rule::Or(rules) => {
                for r in rules {
                    if r.eval(env)? {
                        return Ok(true);
                    }
                }
                Ok(false)
            }
            Rule::Not(r) => Ok(!r.eval(env)?),
            Rule::Condition(expr) => match expr.eval("Condition", env)? {
                Value::Bool(b) => Ok(b),
                other => Err(EvalError::query(format!(
                    "The JSONata expression '{}' specified for the field 'Condition' returned an unexpected result type. Expected 'boolean', but was '{}' for value: {}",
                    expr.text(),
                    crate::jsonata::type_name(&other),
                    crate::template::to_json(&other)
                ))),
            },
            Rule::Compare { variable, op, operand } => {
                let value = resolve_path_ref(variable, env);
                if *op == Op::IsPresent {
                    let present = value.is_ok();
                    return Ok(present == (operand_literal(operand) == Some(&Value::Bool(true))));
                }
                let value = match value {
                    Ok(v) => v,
                    Err(_) => return Err(invalid_path(variable)),
                };
                let rhs: std::borrow::Cow<'_, Value> = match operand {
                    Operand::Literal(v) => std::borrow::Cow::Borrowed(v),
                    Operand::Path(p) => match resolve_path_ref(p, env) {
                        Ok(v) => v,
                        Err(_) => return Err(invalid_path(p)),
                    },
                };
                Ok(compare(&value, *op, &rhs))
            }
        }
    }
}

fn operand_literal(o: &Operand) -> Option<&Value> {
    match o {
        Operand::Literal(v) => Some(v),
        Operand::Path(_) => None,
    }
}

/// Applies one comparison operator.
pub fn compare(value: &Value, op: Op, rhs: &Value) -> bool {
    let want = rhs.as_bool();
    match op {
        Op::IsNull => value.is_null() == (want == Some(true)),
        Op::IsNumeric => value.is_number() == (want == Some(true)),
        Op::IsString => value.is_string() == (want == Some(true)),
        Op::IsBoolean => value.is_boolean() == (want == Some(true)),
        Op::IsTimestamp => {
            value.as_str().and_then(parse_timestamp).is_some() == (want == Some(true))
        }
        Op::IsPresent => true,
        Op::StringMatches => match (value, rhs) {
            (Value::String(s), Value::String(p)) => wildcard_match(p, s),
            _ => false,
        },
        Op::BooleanEquals => matches!((value, rhs), (Value::Bool(a), Value::Bool(b)) if a == b),
        Op::StringEquals
        | Op::StringLessThan
        | Op::StringGreaterThan
        | Op::StringLessThanEquals
        | Op::StringGreaterThanEquals => match (value, rhs) {
            (Value::String(a), Value::String(b)) => cmp_ord(op, a.as_str().cmp(b.as_str())),
            _ => false,
        },
        Op::NumericEquals
        | Op::NumericLessThan
        | Op::NumericGreaterThan
        | Op::NumericLessThanEquals
        | Op::NumericGreaterThanEquals => match (value, rhs) {
            (Value::Number(a), Value::Number(b)) => {
                let ord = match (a.as_i64(), b.as_i64()) {
                    (Some(x), Some(y)) => Some(x.cmp(&y)),
                    _ => num(value)
                        .zip(num(rhs))
                        .and_then(|(x, y)| x.partial_cmp(&y)),
                };
                ord.is_some_and(|o| cmp_ord(op, o))
            }
            _ => false,
        },
        Op::TimestampEquals
        | Op::TimestampLessThan
        | Op::TimestampGreaterThan
        | Op::TimestampLessThanEquals
        | Op::TimestampGreaterThanEquals => {
            let a = value.as_str().and_then(parse_timestamp);
            let b = rhs.as_str().and_then(parse_timestamp);
            match (a, b) {
                (Some(a), Some(b)) => cmp_ord(op, a.cmp(&b)),
                _ => false,
            }
        }
    }
}

/// True when the path reads the context object (used by static checks).
pub fn reads_context(path: &JsonPath) -> bool {
    *path.root() == Root::Context
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn wildcards() {
        assert!(wildcard_match("*.log", "a.log"));
        assert!(wildcard_match("log-*-x", "log-abc-x"));
        assert!(!wildcard_match("*.log", "a.txt"));
        assert!(wildcard_match("a\\*b", "a*b"));
        assert!(!wildcard_match("a\\*b", "axb"));
        assert!(wildcard_match("*", ""));
    }

    #[test]
    fn typed_comparisons_are_false_on_type_mismatch() {
        assert!(!compare(&json!("1"), Op::NumericEquals, &json!(1)));
        assert!(compare(&json!(1.0), Op::NumericEquals, &json!(1)));
        assert!(compare(&json!("b"), Op::StringGreaterThan, &json!("a")));
        assert!(compare(
            &json!("2016-08-18T17:33:00Z"),
            Op::TimestampLessThan,
            &json!("2016-08-19T00:00:00Z")
        ));
        assert!(!compare(&json!(null), Op::BooleanEquals, &json!(true)));
        assert!(compare(&json!(null), Op::IsNull, &json!(true)));
    }
}
