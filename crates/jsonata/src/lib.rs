//! JSONata for Expressway: a parser and evaluator for JSONata 2.0 (the version AWS Step
//! Functions implements), with Step Functions' additions (`$partition`, `$range`, `$hash`,
//! `$random([seed])`, `$uuid`, `$parse`) and without `$eval`.
//!
//! Expressions are parsed once ([`Expression::parse`]) into an immutable, thread-safe tree and
//! evaluated many times against borrowed `serde_json` input, which is never copied.
//!
//! ```
//! use expressway_jsonata::{Expression, NoHost};
//! let e = Expression::parse("$sum(items.price)").unwrap();
//! let input = serde_json::json!({"items": [{"price": 2}, {"price": 3}]});
//! assert_eq!(e.evaluate(Some(&input), &NoHost).unwrap(), Some(serde_json::json!(5)));
//! ```

mod ast;
pub mod datetime;
mod error;
mod eval;
mod functions;
mod lexer;
pub mod numfmt;
mod parser;
pub mod regex;
mod regex_translate;
mod signature;
mod value;

use std::rc::Rc;

pub use error::{Error, ErrorDetail, Result};
pub use eval::Limits;
pub use functions::digest_hex;
pub use parser::MAX_PARSE_DEPTH;
pub use value::{js_number_string, number_to_json};

/// The error code [`Expression::evaluate`] returns when the result is a function.
pub const FUNCTION_RESULT: &str = "X0001";

/// An object whose members the host resolves on demand, so that a large variable such as
/// Step Functions' `$states` is never assembled when an expression reads one member of it.
pub trait HostObject {
    /// Member `name`, if present.
    fn field(&self, name: &str) -> Option<&serde_json::Value>;
    /// The member names that may be present, in order.
    fn keys(&self) -> Vec<&str>;
}

impl std::fmt::Debug for dyn HostObject + '_ {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.keys()).finish()
    }
}

/// The value of a host variable.
#[derive(Clone, Copy)]
pub enum HostValue<'h> {
    Json(&'h serde_json::Value),
    Object(&'h dyn HostObject),
}

/// What an evaluation can read from its host: variables and sources of time and randomness.
pub trait Host {
    /// `$name` for names the expression does not bind itself.
    fn variable(&self, _name: &str) -> Option<HostValue<'_>> {
        None
    }
    /// Milliseconds since the epoch, for `$now()` and `$millis()` (read once per evaluation).
    fn now_millis(&self) -> f64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as f64)
            .unwrap_or(0.0)
    }
    /// A number in `[0, 1)`; deterministic for a given seed.
    fn random(&self, seed: Option<f64>) -> f64 {
        let s = match seed {
            Some(s) => s.to_bits(),
            None => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0),
        };
        // splitmix64
        let mut z = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        (z >> 11) as f64 / (1u64 << 53) as f64
    }
    /// A random v4 UUID for `$uuid()`.
    fn uuid(&self) -> String {
        let a = self.random(None).to_bits();
        let b = self.random(Some(a as f64)).to_bits();
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            (a >> 32) as u32,
            (a >> 16) as u16,
            a as u16 & 0x0fff,
            (b as u16 & 0x3fff) | 0x8000,
            b >> 16 & 0xffff_ffff_ffff
        )
    }
}

/// A host with no variables.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoHost;

impl Host for NoHost {}

/// A parsed expression; immutable and shareable between threads.
#[derive(Debug)]
pub struct Expression {
    ast: ast::Node,
    source: String,
    /// `$var.a.b` (or `$$.a.b`): a variable followed by plain field names, which the
    /// evaluation walks directly while every step lands on an object.
    simple: Option<(std::sync::Arc<str>, Vec<std::sync::Arc<str>>)>,
}

/// Recognises `$var.name.name...` with no predicates, bindings or flags.
fn simple_path(node: &ast::Node) -> Option<(std::sync::Arc<str>, Vec<std::sync::Arc<str>>)> {
    let plain = |n: &ast::Node| {
        n.predicate.is_empty()
            && n.stages.is_empty()
            && n.group.is_none()
            && n.focus.is_none()
            && n.index.is_none()
            && !n.tuple
            && !n.keep_array
            && n.ancestor.is_none()
    };
    let ast::Kind::Path {
        steps,
        keep_singleton: false,
    } = &node.kind
    else {
        return None;
    };
    if !plain(node) {
        return None;
    }
    let (first, rest) = steps.split_first()?;
    let ast::Kind::Variable(var) = &first.kind else {
        return None;
    };
    if var.is_empty() || !plain(first) {
        return None;
    }
    let mut names = Vec::with_capacity(rest.len());
    for s in rest {
        match &s.kind {
            ast::Kind::Name(n) if plain(s) => names.push(n.clone()),
            _ => return None,
        }
    }
    Some((var.clone(), names))
}

impl Expression {
    /// Parses `source`, reporting syntax errors with the reference implementation's codes.
    pub fn parse(source: &str) -> Result<Expression> {
        let ast = parser::parse(source)?;
        let simple = simple_path(&ast);
        Ok(Expression {
            ast,
            source: source.to_string(),
            simple,
        })
    }

    /// The source text.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Evaluates against `input` (`None`: no input at all); `Ok(None)` is an undefined result.
    pub fn evaluate(
        &self,
        input: Option<&serde_json::Value>,
        host: &dyn Host,
    ) -> Result<Option<serde_json::Value>> {
        self.evaluate_with(input, &[], host, Limits::default())
    }

    /// The fast path for [`Expression::simple`]: `Some(None)` is an undefined result, `None`
    /// means the general evaluator must decide (an array on the way, or no such variable).
    fn walk_simple<'v>(
        &self,
        input: Option<&'v serde_json::Value>,
        bindings: &[(&str, &'v serde_json::Value)],
        host: &'v dyn Host,
    ) -> Option<Option<&'v serde_json::Value>> {
        let (var, names) = self.simple.as_ref()?;
        let mut names = names.iter();
        let mut cur: &serde_json::Value = if &**var == "$" {
            input?
        } else if let Some((_, v)) = bindings.iter().find(|(k, _)| *k == &**var) {
            v
        } else {
            match host.variable(var)? {
                HostValue::Json(j) => j,
                HostValue::Object(o) => match names.next() {
                    Some(n) => match o.field(n) {
                        Some(j) => j,
                        None => return Some(None),
                    },
                    None => return None,
                },
            }
        };
        for n in names {
            match cur {
                serde_json::Value::Object(m) => match value::json_get(m, n) {
                    Some(next) => cur = next,
                    None => return Some(None),
                },
                serde_json::Value::Array(_) => return None,
                _ => return Some(None),
            }
        }
        Some(Some(cur))
    }

    /// Evaluates with extra variable bindings and limits.
    pub fn evaluate_with(
        &self,
        input: Option<&serde_json::Value>,
        bindings: &[(&str, &serde_json::Value)],
        host: &dyn Host,
        limits: Limits,
    ) -> Result<Option<serde_json::Value>> {
        if let Some(found) = self.walk_simple(input, bindings, host) {
            return Ok(found.cloned());
        }
        let input_value = match input {
            Some(j) => value::Value::from_json(j),
            None => value::Value::Undefined,
        };
        let ctx = eval::Ctx::new(host, limits, input_value.clone());
        let root = ctx.frame(None);
        for (k, v) in bindings {
            ctx.bind(&root, Rc::from(*k), value::Value::from_json(v))?;
        }
        let input_value = if input_value.is_array() {
            value::Value::Array(Rc::new(value::Array {
                depth: 2,
                items: vec![input_value],
                seq: true,
                outer_wrapper: true,
                ..Default::default()
            }))
        } else {
            input_value
        };
        let r = ctx.evaluate(&self.ast, &input_value, &root)?;
        if r.is_function() {
            return Err(Error::new(
                FUNCTION_RESULT,
                "The expression evaluated to a function, which has no JSON form",
            ));
        }
        if r.spans_more_than(limits.max_result_values) {
            return Err(Error::new(
                "U1003",
                format!(
                    "The result spans more than {} JSON values",
                    limits.max_result_values
                ),
            ));
        }
        drop(ctx);
        Ok(r.into_json())
    }
}
