//! Intrinsic functions (`States.Format(...)` and friends), parsed once and evaluated per state.

use crate::jsonata::type_name;
use crate::jsonpath::{JsonPath, PathSyntaxError};
use serde_json::{Map, Number, Value};

/// A parsed intrinsic function call.
#[derive(Debug, Clone, PartialEq)]
pub struct Intrinsic {
    func: Func,
    args: Vec<Arg>,
    text: String,
}

#[derive(Debug, Clone, PartialEq)]
enum Arg {
    Literal(Value),
    Path(JsonPath),
    Call(Box<Intrinsic>),
}

/// Every intrinsic function AWS offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Func {
    Format,
    StringToJson,
    JsonToString,
    Array,
    ArrayPartition,
    ArrayContains,
    ArrayRange,
    ArrayGetItem,
    ArrayLength,
    ArrayUnique,
    Base64Encode,
    Base64Decode,
    Hash,
    JsonMerge,
    MathRandom,
    MathAdd,
    StringSplit,
    Uuid,
}

impl Func {
    fn from_name(name: &str) -> Option<Func> {
        Some(match name {
            "States.Format" => Func::Format,
            "States.StringToJson" => Func::StringToJson,
            "States.JsonToString" => Func::JsonToString,
            "States.Array" => Func::Array,
            "States.ArrayPartition" => Func::ArrayPartition,
            "States.ArrayContains" => Func::ArrayContains,
            "States.ArrayRange" => Func::ArrayRange,
            "States.ArrayGetItem" => Func::ArrayGetItem,
            "States.ArrayLength" => Func::ArrayLength,
            "States.ArrayUnique" => Func::ArrayUnique,
            "States.Base64Encode" => Func::Base64Encode,
            "States.Base64Decode" => Func::Base64Decode,
            "States.Hash" => Func::Hash,
            "States.JsonMerge" => Func::JsonMerge,
            "States.MathRandom" => Func::MathRandom,
            "States.MathAdd" => Func::MathAdd,
            "States.StringSplit" => Func::StringSplit,
            "States.UUID" => Func::Uuid,
            _ => return None,
        })
    }

    fn arity(self) -> (usize, usize) {
        match self {
            Func::Format => (1, usize::MAX),
            Func::Array => (0, usize::MAX),
            Func::StringToJson | Func::JsonToString | Func::ArrayLength | Func::ArrayUnique => {
                (1, 1)
            }
            Func::Base64Encode | Func::Base64Decode => (1, 1),
            Func::ArrayPartition | Func::ArrayContains | Func::ArrayGetItem | Func::Hash => (2, 2),
            Func::MathAdd | Func::StringSplit => (2, 2),
            Func::ArrayRange | Func::JsonMerge => (3, 3),
            Func::MathRandom => (2, 3),
            Func::Uuid => (0, 0),
        }
    }
}

/// The type of an argument as far as the text shows it before run time: a literal's own type, or
/// what a nested call returns; `Any` for paths and calls whose result depends on the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ty {
    Any,
    Null,
    String,
    Number,
    Boolean,
    Array,
    Object,
}

impl Ty {
    fn of_literal(v: &Value) -> Ty {
        match v {
            Value::Null => Ty::Null,
            Value::Bool(_) => Ty::Boolean,
            Value::Number(_) => Ty::Number,
            Value::String(_) => Ty::String,
            Value::Array(_) => Ty::Array,
            Value::Object(_) => Ty::Object,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Ty::Any => "any value",
            Ty::Null => "null",
            Ty::String => "a string",
            Ty::Number => "a number",
            Ty::Boolean => "a boolean",
            Ty::Array => "an array",
            Ty::Object => "an object",
        }
    }
}

impl Func {
    /// What argument `i` must be (the run-time checks of [`apply`], known before run time).
    fn param(self, i: usize) -> Ty {
        match (self, i) {
            (Func::Format, 0)
            | (Func::StringToJson | Func::Base64Encode | Func::Base64Decode, _)
            | (Func::StringSplit, _)
            | (Func::Hash, 1) => Ty::String,
            (Func::ArrayPartition | Func::ArrayContains | Func::ArrayGetItem, 0)
            | (Func::ArrayLength | Func::ArrayUnique, _) => Ty::Array,
            (Func::ArrayPartition | Func::ArrayGetItem, 1)
            | (Func::ArrayRange | Func::MathRandom | Func::MathAdd, _) => Ty::Number,
            (Func::JsonMerge, 0 | 1) => Ty::Object,
            (Func::JsonMerge, _) => Ty::Boolean,
            _ => Ty::Any,
        }
    }

    /// What a call of this function returns.
    fn result(self) -> Ty {
        match self {
            Func::Format
            | Func::JsonToString
            | Func::Base64Encode
            | Func::Base64Decode
            | Func::Hash
            | Func::Uuid => Ty::String,
            Func::StringToJson | Func::ArrayGetItem => Ty::Any,
            Func::Array
            | Func::ArrayPartition
            | Func::ArrayRange
            | Func::ArrayUnique
            | Func::StringSplit => Ty::Array,
            Func::ArrayContains => Ty::Boolean,
            Func::ArrayLength | Func::MathRandom | Func::MathAdd => Ty::Number,
            Func::JsonMerge => Ty::Object,
        }
    }
}

/// AWS checks literal (and nested-call) argument types when it validates the definition:
/// `States.MathAdd(1,'-1')` is refused before it can run (asl-validator's labelled set).
fn check_static_types(name: &str, func: Func, args: &[Arg]) -> Result<(), String> {
    for (i, arg) in args.iter().enumerate() {
        let found = match arg {
            Arg::Literal(v) => Ty::of_literal(v),
            Arg::Call(c) => c.func.result(),
            Arg::Path(_) => Ty::Any,
        };
        let wanted = func.param(i);
        if wanted != Ty::Any && found != Ty::Any && found != wanted {
            return Err(format!(
                "{name}: argument {} must be {} but is {}",
                i + 1,
                wanted.name(),
                found.name()
            ));
        }
    }
    Ok(())
}

/// The expression is not a well-formed intrinsic function call.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid intrinsic function '{text}': {reason}")]
pub struct IntrinsicSyntaxError {
    /// The expression text.
    pub text: String,
    /// What is wrong.
    pub reason: String,
}

/// Evaluation failed; `message` is AWS's detail text (the caller prefixes the state context).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{message}")]
pub struct IntrinsicError {
    /// AWS's detail text.
    pub message: String,
}

fn fail<T>(message: impl Into<String>) -> Result<T, IntrinsicError> {
    Err(IntrinsicError {
        message: message.into(),
    })
}

/// What an intrinsic needs from its surroundings: path lookups and randomness.
pub trait IntrinsicEnv {
    /// Resolves a path argument; `Err(detail)` when it cannot be resolved.
    fn resolve(&self, path: &JsonPath) -> Result<Value, IntrinsicError>;
    /// A uniformly distributed integer in `[start, end]` (inclusive), optionally seeded.
    fn random_int(&self, start: i64, end: i64, seed: Option<i64>) -> i64;
    /// A random (v4) UUID string.
    fn uuid(&self) -> String;
}

/// Returns true when `text` looks like an intrinsic call (`States.X(`).
pub fn looks_like_intrinsic(text: &str) -> bool {
    text.trim_start().starts_with("States.")
}

impl Intrinsic {
    /// Parses an intrinsic function expression.
    pub fn parse(text: &str) -> Result<Intrinsic, IntrinsicSyntaxError> {
        let mut p = P {
            s: text,
            pos: 0,
            depth: 0,
        };
        let call = p.call().map_err(|reason| IntrinsicSyntaxError {
            text: text.to_string(),
            reason,
        })?;
        p.ws();
        if p.pos != text.len() {
            return Err(IntrinsicSyntaxError {
                text: text.to_string(),
                reason: "unexpected trailing characters".into(),
            });
        }
        Ok(call)
    }

    /// The function called at the top.
    pub fn func(&self) -> Func {
        self.func
    }

    /// The source text.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Every path used by this call and its nested calls.
    pub fn paths(&self) -> Vec<&JsonPath> {
        let mut out = Vec::new();
        for a in &self.args {
            match a {
                Arg::Path(p) => out.push(p),
                Arg::Call(c) => out.extend(c.paths()),
                Arg::Literal(_) => {}
            }
        }
        out
    }

    /// Evaluates the call.
    pub fn eval(&self, env: &dyn IntrinsicEnv) -> Result<Value, IntrinsicError> {
        let mut args = Vec::with_capacity(self.args.len());
        for a in &self.args {
            args.push(match a {
                Arg::Literal(v) => v.clone(),
                Arg::Path(p) => env.resolve(p)?,
                Arg::Call(c) => c.eval(env)?,
            });
        }
        apply(self.func, args, env)
    }
}

struct P<'s> {
    s: &'s str,
    pos: usize,
    depth: usize,
}

impl P<'_> {
    fn rest(&self) -> &str {
        &self.s[self.pos..]
    }
    fn ws(&mut self) {
        while self.rest().starts_with([' ', '\t', '\n', '\r']) {
            self.pos += 1;
        }
    }
    fn call(&mut self) -> Result<Intrinsic, String> {
        self.depth += 1;
        if self.depth > 11 {
            return Err("intrinsic functions can be nested at most 10 levels".into());
        }
        self.ws();
        let start = self.pos;
        let name_len = self.rest().find('(').ok_or("expected '('")?;
        let name = self.rest()[..name_len].trim().to_string();
        let func = Func::from_name(&name).ok_or_else(|| format!("unknown function '{name}'"))?;
        self.pos += name_len + 1;
        let mut args = Vec::new();
        self.ws();
        if self.rest().starts_with(')') {
            self.pos += 1;
        } else {
            loop {
                args.push(self.arg()?);
                self.ws();
                if self.rest().starts_with(',') {
                    self.pos += 1;
                } else if self.rest().starts_with(')') {
                    self.pos += 1;
                    break;
                } else {
                    return Err("expected ',' or ')'".into());
                }
            }
        }
        let (min, max) = func.arity();
        if args.len() < min || args.len() > max {
            return Err(format!(
                "{name} takes {min}..{max} arguments, got {}",
                args.len()
            ));
        }
        check_static_types(&name, func, &args)?;
        self.depth -= 1;
        Ok(Intrinsic {
            func,
            args,
            text: self.s[start..self.pos].to_string(),
        })
    }

    fn arg(&mut self) -> Result<Arg, String> {
        self.ws();
        let r = self.rest();
        if r.starts_with('\'') {
            return Ok(Arg::Literal(Value::String(self.string()?)));
        }
        if r.starts_with("States.") {
            return Ok(Arg::Call(Box::new(self.call()?)));
        }
        if r.starts_with('$') {
            let end = self.path_end();
            let text = &self.s[self.pos..end];
            let path = JsonPath::parse(text).map_err(|e: PathSyntaxError| e.reason)?;
            self.pos = end;
            return Ok(Arg::Path(path));
        }
        // number, true, false, null
        let end = r.find([',', ')']).unwrap_or(r.len());
        let lit = r[..end].trim();
        let v: Value =
            serde_json::from_str(lit).map_err(|_| format!("invalid argument '{lit}'"))?;
        if v.is_object() || v.is_array() || v.is_string() {
            return Err(format!("invalid argument '{lit}'"));
        }
        self.pos += end;
        Ok(Arg::Literal(v))
    }

    /// End of a path argument: the first `,` or `)` outside brackets/quotes.
    fn path_end(&self) -> usize {
        let mut depth = 0i32;
        let mut quote: Option<char> = None;
        for (i, c) in self.rest().char_indices() {
            match (quote, c) {
                (Some(q), c) if c == q => quote = None,
                (Some(_), _) => {}
                (None, '\'' | '"') => quote = Some(c),
                (None, '[' | '(') => depth += 1,
                (None, ']') => depth -= 1,
                (None, ')') if depth > 0 => depth -= 1,
                (None, ',' | ')') if depth == 0 => return self.pos + i,
                _ => {}
            }
        }
        self.s.len()
    }

    fn string(&mut self) -> Result<String, String> {
        self.pos += 1;
        let mut out = String::new();
        loop {
            let c = self
                .rest()
                .chars()
                .next()
                .ok_or("unterminated string literal")?;
            self.pos += c.len_utf8();
            match c {
                '\\' => {
                    let n = self
                        .rest()
                        .chars()
                        .next()
                        .ok_or("unterminated string literal")?;
                    if !matches!(n, '\'' | '{' | '}' | '\\') {
                        return Err(format!("invalid escape sequence '\\{n}'"));
                    }
                    self.pos += n.len_utf8();
                    if matches!(n, '{' | '}') {
                        // Keep the escape so that Format can tell literal braces from placeholders.
                        out.push('\\');
                    }
                    out.push(n);
                }
                '\'' => return Ok(out),
                c => out.push(c),
            }
        }
    }
}

/// Java's `Math.round`: half up, towards positive infinity.
fn java_round(f: f64) -> i64 {
    (f + 0.5).floor() as i64
}

fn as_int(v: &Value, func: &str) -> Result<i64, IntrinsicError> {
    match v {
        Value::Number(n) => match n.as_i64() {
            Some(i) => Ok(i),
            None => Ok(java_round(n.as_f64().unwrap_or(0.0))),
        },
        other => fail(format!(
            "{func}: expected a number argument but got {}",
            type_name(other)
        )),
    }
}

fn as_str<'a>(v: &'a Value, func: &str) -> Result<&'a str, IntrinsicError> {
    match v {
        Value::String(s) => Ok(s),
        other => fail(format!(
            "{func}: expected a string argument but got {}",
            type_name(other)
        )),
    }
}

/// Renders a value the way Java's `toString` does for Format (maps as `{k=v}`).
fn java_string(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => out.push_str(s),
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                java_string(x, out);
            }
            out.push(']');
        }
        Value::Object(m) => {
            out.push('{');
            for (i, (k, x)) in m.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                out.push_str(k);
                out.push('=');
                java_string(x, out);
            }
            out.push('}');
        }
    }
}

fn unescape_braces(s: &str) -> String {
    s.replace("\\{", "{").replace("\\}", "}")
}

fn apply(
    func: Func,
    mut args: Vec<Value>,
    env: &dyn IntrinsicEnv,
) -> Result<Value, IntrinsicError> {
    // Literal strings keep `\{`/`\}` escapes for Format; every other function sees them unescaped.
    if func != Func::Format {
        for a in args.iter_mut() {
            if let Value::String(s) = a {
                if s.contains('\\') {
                    *s = unescape_braces(s);
                }
            }
        }
    }
    match func {
        Func::Format => {
            let template = match args.first() {
                Some(Value::String(s)) => s.clone(),
                _ => return fail("States.Format: the first argument must be a string"),
            };
            let values = &args[1..];
            let mut out = String::with_capacity(template.len() + 16);
            let mut next = 0usize;
            let mut chars = template.chars().peekable();
            while let Some(c) = chars.next() {
                match c {
                    '\\' if matches!(chars.peek(), Some('{' | '}' | '\\' | '\'')) => {
                        out.push(chars.next().unwrap_or('\\'));
                    }
                    '{' if chars.peek() == Some(&'}') => {
                        chars.next();
                        let Some(v) = values.get(next) else {
                            return fail("States.Format: the number of arguments does not match the number of placeholders");
                        };
                        java_string(v, &mut out);
                        next += 1;
                    }
                    c => out.push(c),
                }
            }
            if next != values.len() {
                return fail("States.Format: the number of arguments does not match the number of placeholders");
            }
            Ok(Value::String(out))
        }
        Func::StringToJson => {
            let s = as_str(&args[0], "States.StringToJson")?;
            if s.trim().is_empty() {
                return Ok(Value::Null);
            }
            serde_json::from_str(s).or_else(|e| {
                fail(format!(
                    "States.StringToJson: cannot parse '{s}' as JSON: {e}"
                ))
            })
        }
        Func::JsonToString => Ok(Value::String(
            serde_json::to_string(&args[0]).unwrap_or_default(),
        )),
        Func::Array => Ok(Value::Array(args)),
        Func::ArrayPartition => {
            let size = as_int(&args[1], "States.ArrayPartition")?;
            let Value::Array(arr) = &args[0] else {
                return fail("States.ArrayPartition: the first argument must be an array");
            };
            if size <= 0 {
                return fail(format!(
                    "States.ArrayPartition: the chunk size must be a positive integer, got {size}"
                ));
            }
            Ok(Value::Array(
                arr.chunks(size as usize)
                    .map(|c| Value::Array(c.to_vec()))
                    .collect(),
            ))
        }
        Func::ArrayContains => {
            let Value::Array(arr) = &args[0] else {
                return fail("States.ArrayContains: the first argument must be an array");
            };
            Ok(Value::Bool(arr.iter().any(|x| json_eq(x, &args[1]))))
        }
        Func::ArrayRange => {
            let start = as_int(&args[0], "States.ArrayRange")?;
            let end = as_int(&args[1], "States.ArrayRange")?;
            let step = as_int(&args[2], "States.ArrayRange")?;
            if step == 0 {
                return fail("States.ArrayRange: the step must not be zero");
            }
            // In i128: `end - start` and `i * step` overflow i64 for bounds near its limits.
            let (start, end, step) = (i128::from(start), i128::from(end), i128::from(step));
            let count = if (step > 0 && end >= start) || (step < 0 && end <= start) {
                (end - start) / step + 1
            } else {
                0
            };
            if count > 1000 {
                return fail("States.ArrayRange: the result may contain at most 1000 items");
            }
            // Every item lies between start and end, so it fits in an i64.
            Ok(Value::Array(
                (0..count)
                    .map(|i| Value::from(i64::try_from(start + i * step).unwrap_or_default()))
                    .collect(),
            ))
        }
        Func::ArrayGetItem => {
            let Value::Array(arr) = &args[0] else {
                return fail("States.ArrayGetItem: the first argument must be an array");
            };
            let idx = as_int(&args[1], "States.ArrayGetItem")?;
            if idx < 0 || idx as usize >= arr.len() {
                return fail(format!(
                    "States.ArrayGetItem: index {idx} out of bounds for length {}",
                    arr.len()
                ));
            }
            Ok(arr[idx as usize].clone())
        }
        Func::ArrayLength => match &args[0] {
            Value::Array(a) => Ok(Value::from(a.len())),
            other => fail(format!(
                "States.ArrayLength: expected an array but got {}",
                type_name(other)
            )),
        },
        Func::ArrayUnique => {
            let Value::Array(arr) = &args[0] else {
                return fail("States.ArrayUnique: the first argument must be an array");
            };
            let mut out: Vec<Value> = Vec::with_capacity(arr.len());
            for v in arr {
                if !out.iter().any(|x| json_eq(x, v)) {
                    out.push(v.clone());
                }
            }
            Ok(Value::Array(out))
        }
        Func::Base64Encode => {
            use base64::Engine;
            let s = as_str(&args[0], "States.Base64Encode")?;
            if s.chars().count() > 10_000 {
                return fail("States.Base64Encode: the input may be at most 10000 characters");
            }
            Ok(Value::String(
                base64::engine::general_purpose::STANDARD.encode(s.as_bytes()),
            ))
        }
        Func::Base64Decode => {
            use base64::Engine;
            let s = as_str(&args[0], "States.Base64Decode")?;
            if s.chars().count() > 10_000 {
                return fail("States.Base64Decode: the input may be at most 10000 characters");
            }
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(s.as_bytes())
                .or_else(|_| fail(format!("States.Base64Decode: '{s}' is not valid base64")))?;
            Ok(Value::String(String::from_utf8_lossy(&bytes).into_owned()))
        }
        Func::Hash => {
            let data = match &args[0] {
                Value::String(s) => s.clone(),
                other => serde_json::to_string(other).unwrap_or_default(),
            };
            if data.chars().count() > 10_000 {
                return fail("States.Hash: the input may be at most 10000 characters");
            }
            let alg = as_str(&args[1], "States.Hash")?;
            hash_hex(alg, data.as_bytes()).map(Value::String)
        }
        Func::JsonMerge => {
            if args[2] != Value::Bool(false) {
                return fail("States.JsonMerge: deep merge is not supported; the third argument must be false");
            }
            let (Value::Object(a), Value::Object(b)) = (&args[0], &args[1]) else {
                return fail("States.JsonMerge: both arguments must be JSON objects");
            };
            let mut merged: Map<String, Value> = a.clone();
            for (k, v) in b {
                merged.insert(k.clone(), v.clone());
            }
            Ok(Value::Object(merged))
        }
        Func::MathRandom => {
            let start = as_int(&args[0], "States.MathRandom")?;
            let end = as_int(&args[1], "States.MathRandom")?;
            let seed = match args.get(2) {
                Some(v) => Some(as_int(v, "States.MathRandom")?),
                None => None,
            };
            if end < start {
                return fail(
                    "States.MathRandom: the end of the range must not be less than its start",
                );
            }
            Ok(Value::from(env.random_int(start, end, seed)))
        }
        Func::MathAdd => {
            let a = as_int(&args[0], "States.MathAdd")?;
            let b = as_int(&args[1], "States.MathAdd")?;
            Ok(Value::Number(Number::from(a.saturating_add(b))))
        }
        Func::StringSplit => {
            let s = as_str(&args[0], "States.StringSplit")?;
            let delims = as_str(&args[1], "States.StringSplit")?;
            let parts = s
                .split(|c: char| delims.contains(c))
                .filter(|p| !p.is_empty())
                .map(|p| Value::String(p.to_string()))
                .collect();
            Ok(Value::Array(parts))
        }
        Func::Uuid => Ok(Value::String(env.uuid())),
    }
}

/// JSON equality with numbers compared by value (1 == 1.0).
pub fn json_eq(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(i), Some(j)) => i == j,
            _ => x.as_f64() == y.as_f64(),
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| json_eq(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_eq(v, w)))
        }
        _ => a == b,
    }
}

/// Lowercase hex digest for the algorithms AWS supports.
pub fn hash_hex(alg: &str, data: &[u8]) -> Result<String, IntrinsicError> {
    match expressway_jsonata::digest_hex(alg, data) {
        Some(hex) => Ok(hex),
        None => {
            let other = alg;
            fail(format!(
                "States.Hash: the hash algorithm '{other}' is not supported; use one of MD5, SHA-1, SHA-256, SHA-384, SHA-512"
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    struct Env(Value);
    impl IntrinsicEnv for Env {
        fn resolve(&self, path: &JsonPath) -> Result<Value, IntrinsicError> {
            path.query(&self.0)
                .or_else(|_| fail(format!("no path {path}")))
        }
        fn random_int(&self, start: i64, _end: i64, _seed: Option<i64>) -> i64 {
            start
        }
        fn uuid(&self) -> String {
            "00000000-0000-4000-8000-000000000000".into()
        }
    }

    fn eval(expr: &str, input: Value) -> Result<Value, IntrinsicError> {
        Intrinsic::parse(expr).expect("parses").eval(&Env(input))
    }

    #[test]
    fn format_renders_java_style() {
        assert_eq!(
            eval(
                "States.Format('a {} b {}', $.x, $.y)",
                json!({"x": {"k": 1, "l": []}, "y": null})
            ),
            Ok(json!("a {k=1, l=[]} b null"))
        );
        assert_eq!(
            eval("States.Format('lit \\{\\} {}', 1)", json!({})),
            Ok(json!("lit {} 1"))
        );
        assert!(eval("States.Format('{} {}', 1)", json!({})).is_err());
    }

    #[test]
    fn math_add_rounds_like_java() {
        assert_eq!(eval("States.MathAdd(-2.5, 0)", json!({})), Ok(json!(-2)));
        assert_eq!(eval("States.MathAdd(2.5, 0)", json!({})), Ok(json!(3)));
        assert_eq!(
            eval("States.MathAdd($.a, -1)", json!({"a": 10})),
            Ok(json!(9))
        );
    }

    #[test]
    fn arrays_and_strings() {
        assert_eq!(
            eval("States.ArrayRange(0, 10, 3)", json!({})),
            Ok(json!([0, 3, 6, 9]))
        );
        assert_eq!(
            eval("States.ArrayPartition(States.Array(1,2,3), 2)", json!({})),
            Ok(json!([[1, 2], [3]]))
        );
        assert_eq!(
            eval("States.StringSplit(',a,,b,', ',')", json!({})),
            Ok(json!(["a", "b"]))
        );
        assert_eq!(
            eval(
                "States.ArrayUnique(States.Array(1, 1, 'a', 'a'))",
                json!({})
            ),
            Ok(json!([1, "a"]))
        );
        assert_eq!(
            eval("States.StringToJson('{\"a\": 1}')", json!({})),
            Ok(json!({"a": 1}))
        );
        assert!(eval("States.ArrayRange(0, 2000, 1)", json!({})).is_err());
    }

    #[test]
    fn hash_and_base64() {
        assert_eq!(
            eval("States.Hash('input data', 'MD5')", json!({})),
            Ok(json!("812f45842bc6d66ee14572ce20db8e86"))
        );
        assert_eq!(
            eval("States.Base64Encode('Data to encode')", json!({})),
            Ok(json!("RGF0YSB0byBlbmNvZGU="))
        );
        assert_eq!(
            eval("States.Base64Decode('RGF0YSB0byBlbmNvZGU=')", json!({})),
            Ok(json!("Data to encode"))
        );
    }

    #[test]
    fn literal_argument_types_are_checked_when_parsed() {
        for bad in [
            "States.MathAdd(1,'-1')",
            "States.MathAdd(null, 1)",
            "States.MathRandom('1', 10)",
            "States.ArrayRange(0, true, 1)",
            "States.ArrayGetItem('abc', 0)",
            "States.ArrayGetItem(States.Array(1), '0')",
            "States.ArrayLength('abc')",
            "States.ArrayLength(States.Format('{}', 1))",
            "States.MathAdd(States.Array(1), 1)",
            "States.MathAdd(States.UUID(), 1)",
            "States.StringSplit(1, ',')",
            "States.Base64Encode(States.ArrayLength(States.Array(1)))",
            "States.Hash('data', 256)",
            "States.JsonMerge($.a, $.b, 'false')",
            "States.JsonMerge(States.Array(), $.b, false)",
            "States.Format(1)",
            "States.StringToJson(States.Array())",
        ] {
            let e = Intrinsic::parse(bad).expect_err(bad);
            assert!(e.reason.contains("must be"), "{bad}: {}", e.reason);
        }
        assert_eq!(
            Intrinsic::parse("States.MathAdd(1,'-1')")
                .expect_err("string")
                .reason,
            "States.MathAdd: argument 2 must be a number but is a string"
        );
        // Paths and calls whose result depends on the data are checked at run time only.
        for ok in [
            "States.MathAdd($.a, -1)",
            "States.MathAdd(States.ArrayLength($.a), States.ArrayGetItem($.b, 0))",
            "States.MathAdd(States.StringToJson($.n), 1.5)",
            "States.ArrayContains(States.Array(1, 'a'), 'a')",
            "States.Hash(States.Array(1), 'SHA-256')",
            "States.JsonMerge(States.StringToJson($.a), $.b, false)",
            "States.Format('{} {}', null, States.Array())",
            "States.Array(null, true, 1, 'x', States.UUID())",
        ] {
            assert!(Intrinsic::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn syntax_errors() {
        assert!(Intrinsic::parse("States.Nope(1)").is_err());
        assert!(Intrinsic::parse("States.Format('unterminated)").is_err());
        assert!(Intrinsic::parse("States.UUID(1)").is_err());
        assert!(Intrinsic::parse("States.Format('\\x')").is_err());
    }
}
