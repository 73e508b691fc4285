//! JSONata fields: a string that begins with `{%` or ends with `%}` must be a whole `{% ... %}`
//! expression. AWS refuses `"{% 10 %"` and `"10 %}"` rather than taking them as literal strings
//! (asl-validator's labelled set; AWS's guidance: "The string must start with `{%` (no leading
//! spaces) and end with `%}` (no trailing spaces)"; a string with neither is a literal).

use super::{element, member};
use crate::jsonata::JsonataExpr;
use serde_json::Value;

/// Fields of a JSONata state (and of its catchers and choice rules) whose strings may hold
/// expressions at any depth. Scalar fields (`Condition`, `Seconds`, `Timestamp`, `TimeoutSeconds`,
/// ...) have their own type checks, which already refuse an incomplete expression.
pub(super) const EXPRESSION_FIELDS: &[&str] = &[
    "Output",
    "Arguments",
    "Assign",
    "Items",
    "ItemSelector",
    "Error",
    "Cause",
    "Credentials",
    "ItemReader",
    "ItemBatcher",
    "ResultWriter",
];

/// Appends the location of every incomplete expression inside `value` (located at `at`).
pub(super) fn incomplete_expressions(value: &Value, at: &str, out: &mut Vec<String>) {
    match value {
        Value::String(s) if JsonataExpr::is_incomplete_expression(s) => out.push(at.to_string()),
        Value::Object(map) => {
            for (key, v) in map {
                incomplete_expressions(v, &member(at, key), out);
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                incomplete_expressions(v, &element(at, i), out);
            }
        }
        _ => {}
    }
}
