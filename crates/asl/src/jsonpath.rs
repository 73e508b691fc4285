//! JSONPath as Step Functions evaluates it (Jayway semantics).
//!
//! A path is parsed once, when the definition is loaded. A *definite* path (only names and indexes)
//! yields the value itself or "no results"; an *indefinite* path (wildcards, slices, filters, deep scan,
//! unions) yields an array of every match, possibly empty.

use crate::depth::{with_stack, Depth, MAX_PATH_DEPTH, MAX_PATH_SEGMENTS};
use serde_json::Value;
use std::fmt;

/// Where a path starts.
#[derive(Debug, Clone, PartialEq)]
pub enum Root {
    /// `$`: the state's effective input.
    Input,
    /// `$$`: the context object.
    Context,
    /// `$name`: a workflow variable.
    Variable(String),
}

#[derive(Debug, Clone, PartialEq)]
enum Segment {
    Name(String),
    Index(i64),
    Names(Vec<String>),
    Indexes(Vec<i64>),
    Wildcard,
    Slice(Option<i64>, Option<i64>, Option<i64>),
    Filter(Box<Filter>),
    /// `..` followed by a selector applied at every depth.
    Deep(Box<Segment>),
    /// `length()` (Jayway function) on the current value.
    Length,
    /// Jayway's script index `[(@.length-n)]` / `[(@.size()-n)]`: element `len - n` of an array
    /// (definite; nothing when `n` is 0 or larger than the array).
    FromEnd(u64),
}

#[derive(Debug, Clone, PartialEq)]
enum Filter {
    Or(Box<Filter>, Box<Filter>),
    And(Box<Filter>, Box<Filter>),
    Not(Box<Filter>),
    Exists(Operand),
    Compare(Operand, CmpOp, Operand),
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum CmpOp {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone, PartialEq)]
enum Operand {
    Current(Vec<Segment>),
    Root(Vec<Segment>),
    Literal(Value),
}

/// A compiled JSONPath expression.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonPath {
    text: String,
    root: Root,
    segments: Vec<Segment>,
    definite: bool,
}

/// The path text could not be parsed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("invalid JSONPath '{path}': {reason}")]
pub struct PathSyntaxError {
    /// The offending path text.
    pub path: String,
    /// What is wrong with it.
    pub reason: String,
}

impl fmt::Display for JsonPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl JsonPath {
    /// Parses a path that starts with `$`, `$$` or `$name`.
    pub fn parse(text: &str) -> Result<JsonPath, PathSyntaxError> {
        let err = |reason: &str| PathSyntaxError {
            path: text.to_string(),
            reason: reason.to_string(),
        };
        let trimmed = text.trim();
        let bytes = trimmed.as_bytes();
        if bytes.first() != Some(&b'$') {
            return Err(err("a path must start with '$'"));
        }
        let (root, rest) = if let Some(rest) = trimmed.strip_prefix("$$") {
            (Root::Context, rest)
        } else {
            let after = &trimmed[1..];
            let name_len = after
                .char_indices()
                .find(|(_, c)| !(c.is_alphanumeric() || *c == '_'))
                .map(|(i, _)| i)
                .unwrap_or(after.len());
            if name_len > 0 {
                (
                    Root::Variable(after[..name_len].to_string()),
                    &after[name_len..],
                )
            } else {
                (Root::Input, after)
            }
        };
        let mut parser = Parser {
            src: rest,
            pos: 0,
            depth: Depth::new(MAX_PATH_DEPTH),
            nodes: 0,
        };
        let segments = with_stack(|| parser.segments(false)).map_err(|r| err(&r))?;
        if parser.pos != rest.len() {
            return Err(err("unexpected trailing characters"));
        }
        let definite = segments.iter().all(|s| {
            matches!(
                s,
                Segment::Name(_) | Segment::Index(_) | Segment::FromEnd(_)
            )
        });
        Ok(JsonPath {
            text: trimmed.to_string(),
            root,
            segments,
            definite,
        })
    }

    /// The original text.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The root this path reads from.
    pub fn root(&self) -> &Root {
        &self.root
    }

    /// True when the path can match at most one value (no wildcards, slices, filters, unions, deep scan).
    pub fn is_definite(&self) -> bool {
        self.definite
    }

    /// True for a bare root (`$`, `$$`, `$var`).
    pub fn is_root(&self) -> bool {
        self.segments.is_empty()
    }

    /// True when the path is a valid `ResultPath` reference path: only names and non-negative indexes.
    pub fn is_reference_path(&self) -> bool {
        self.root == Root::Input
            && self.segments.iter().all(|s| match s {
                Segment::Name(_) => true,
                Segment::Index(i) => *i >= 0,
                _ => false,
            })
    }

    /// Evaluates against `root`. `Ok(value)` for a definite match or for the array of matches of an
    /// indefinite path; `Err(QueryFailure::NoResults)` when a definite path matches nothing.
    pub fn query(&self, root: &Value) -> Result<Value, QueryFailure> {
        if self.definite {
            self.query_ref(root).cloned().ok_or(QueryFailure::NoResults)
        } else {
            select_all(&self.segments, root, root)
        }
    }

    /// The first member name, for `$.name...`-shaped paths.
    pub fn first_name(&self) -> Option<&str> {
        match self.segments.first() {
            Some(Segment::Name(n)) => Some(n),
            _ => None,
        }
    }

    /// Evaluates the path without its first segment against `v` (the value that segment selects).
    /// Lets callers supply one member of a large root (e.g. `$$.Execution`) without building the root.
    pub fn query_tail(&self, v: &Value) -> Result<Value, QueryFailure> {
        let tail = self.segments.get(1..).unwrap_or(&[]);
        if self.definite {
            Self::walk(tail, v).cloned().ok_or(QueryFailure::NoResults)
        } else {
            select_all(tail, v, v)
        }
    }

    /// Like [`JsonPath::query_tail`], by reference, for definite paths.
    pub fn query_tail_ref<'a>(&self, v: &'a Value) -> Option<&'a Value> {
        if !self.definite {
            return None;
        }
        Self::walk(self.segments.get(1..).unwrap_or(&[]), v)
    }

    /// Definite-path lookup by reference (no copy). `None` for an indefinite path or no match.
    pub fn query_ref<'a>(&self, root: &'a Value) -> Option<&'a Value> {
        if !self.definite {
            return None;
        }
        Self::walk(&self.segments, root)
    }

    fn walk<'a>(segments: &[Segment], root: &'a Value) -> Option<&'a Value> {
        let mut current = root;
        for seg in segments {
            current = match (seg, current) {
                (Segment::Name(n), Value::Object(m)) => m.get(n)?,
                (Segment::Index(i), Value::Array(a)) => a.get(resolve_index(*i, a.len())?)?,
                (Segment::FromEnd(n), Value::Array(a)) => a.get(from_end(*n, a.len())?)?,
                _ => return None,
            };
        }
        Some(current)
    }

    /// The names of the path in Jayway's bracket notation, e.g. `$['a']['b'][0]`, used in error causes.
    pub fn bracket_notation(&self) -> String {
        let mut s = String::from(match &self.root {
            Root::Input => "$",
            Root::Context => "$$",
            Root::Variable(_) => "$",
        });
        for seg in &self.segments {
            push_bracket(&mut s, seg);
        }
        s
    }

    /// Writes `value` at this reference path inside `target`, creating objects on the way
    /// (ResultPath semantics). Fails when an intermediate value is not an object / array.
    pub fn assign(&self, target: &mut Value, value: Value) -> Result<(), AssignError> {
        if self.segments.is_empty() {
            *target = value;
            return Ok(());
        }
        let mut current = target;
        let last = self.segments.len() - 1;
        for (i, seg) in self.segments.iter().enumerate() {
            match seg {
                Segment::Name(name) => {
                    if !current.is_object() {
                        if current.is_null() {
                            *current = Value::Object(Default::default());
                        } else {
                            return Err(AssignError);
                        }
                    }
                    let Value::Object(map) = current else {
                        return Err(AssignError);
                    };
                    if i == last {
                        map.insert(name.clone(), value);
                        return Ok(());
                    }
                    current = map.entry(name.clone()).or_insert(Value::Null);
                    if current.is_null() {
                        *current = Value::Object(Default::default());
                    }
                }
                Segment::Index(idx) => {
                    let Value::Array(arr) = current else {
                        return Err(AssignError);
                    };
                    let Some(at) = resolve_index(*idx, arr.len()) else {
                        return Err(AssignError);
                    };
                    if i == last {
                        arr[at] = value;
                        return Ok(());
                    }
                    current = &mut arr[at];
                }
                _ => return Err(AssignError),
            }
        }
        Ok(())
    }
}

/// Why a query gave no value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueryFailure {
    /// A definite path matched nothing.
    NoResults,
    /// An indefinite path visited more than [`MAX_QUERY_VISITS`] values (chained recursive
    /// descents such as `$..*..*..*` grow with the document's size to the power of their number).
    TooManyVisits,
}

/// Most values one indefinite query visits. A query's result must fit a state's payload (256 KiB by
/// default), so one that needs more visits could not have succeeded anyway; the bound keeps a path
/// such as `$..a..b..c..d` on a large input from occupying a pod's thread for minutes.
pub const MAX_QUERY_VISITS: usize = 1_000_000;

/// The matches of `segments` as an array, within [`MAX_QUERY_VISITS`].
fn select_all(segments: &[Segment], root: &Value, current: &Value) -> Result<Value, QueryFailure> {
    let mut out = Vec::new();
    let mut budget = MAX_QUERY_VISITS;
    select(segments, root, current, &mut out, &mut budget);
    if budget == 0 {
        return Err(QueryFailure::TooManyVisits);
    }
    Ok(Value::Array(out.into_iter().cloned().collect()))
}

/// ResultPath could not be applied to the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AssignError;

fn resolve_index(i: i64, len: usize) -> Option<usize> {
    if i >= 0 {
        let i = i as usize;
        (i < len).then_some(i)
    } else {
        let back = i.unsigned_abs() as usize;
        (back <= len).then(|| len - back)
    }
}

/// Index of Jayway's `[(@.length-n)]` in an array of `len` elements.
fn from_end(n: u64, len: usize) -> Option<usize> {
    let n = usize::try_from(n).ok()?;
    (n >= 1 && n <= len).then(|| len - n)
}

fn push_bracket(s: &mut String, seg: &Segment) {
    match seg {
        Segment::Name(n) => {
            s.push_str("['");
            s.push_str(n);
            s.push_str("']");
        }
        Segment::Index(i) => s.push_str(&format!("[{i}]")),
        Segment::Names(ns) => {
            let parts: Vec<String> = ns.iter().map(|n| format!("'{n}'")).collect();
            s.push_str(&format!("[{}]", parts.join(",")));
        }
        Segment::Indexes(is) => {
            let parts: Vec<String> = is.iter().map(|i| i.to_string()).collect();
            s.push_str(&format!("[{}]", parts.join(",")));
        }
        Segment::Wildcard => s.push_str("[*]"),
        Segment::Slice(a, b, _) => {
            s.push('[');
            if let Some(a) = a {
                s.push_str(&a.to_string());
            }
            s.push(':');
            if let Some(b) = b {
                s.push_str(&b.to_string());
            }
            s.push(']');
        }
        Segment::Filter(_) => s.push_str("[?]"),
        Segment::Deep(inner) => {
            s.push_str("..");
            push_bracket(s, inner);
        }
        Segment::Length => s.push_str(".length()"),
        // Jayway's own rendering of the script index.
        Segment::FromEnd(n) => s.push_str(&format!("[@.size()-{n}]")),
    }
}

fn select<'a>(
    segments: &[Segment],
    root: &'a Value,
    current: &'a Value,
    out: &mut Vec<&'a Value>,
    budget: &mut usize,
) {
    if *budget == 0 {
        return;
    }
    *budget -= 1;
    let Some((seg, rest)) = segments.split_first() else {
        out.push(current);
        return;
    };
    match seg {
        Segment::Name(n) => {
            if let Value::Object(m) = current {
                if let Some(v) = m.get(n) {
                    select(rest, root, v, out, budget);
                }
            }
        }
        Segment::Index(i) => {
            if let Value::Array(a) = current {
                if let Some(v) = resolve_index(*i, a.len()).and_then(|i| a.get(i)) {
                    select(rest, root, v, out, budget);
                }
            }
        }
        Segment::Names(ns) => {
            if let Value::Object(m) = current {
                for n in ns {
                    if let Some(v) = m.get(n) {
                        select(rest, root, v, out, budget);
                    }
                }
            }
        }
        Segment::FromEnd(n) => {
            if let Value::Array(a) = current {
                if let Some(v) = from_end(*n, a.len()).and_then(|i| a.get(i)) {
                    select(rest, root, v, out, budget);
                }
            }
        }
        Segment::Indexes(is) => {
            if let Value::Array(a) = current {
                for i in is {
                    if let Some(v) = resolve_index(*i, a.len()).and_then(|i| a.get(i)) {
                        select(rest, root, v, out, budget);
                    }
                }
            }
        }
        Segment::Wildcard => match current {
            Value::Array(a) => a.iter().for_each(|v| select(rest, root, v, out, budget)),
            Value::Object(m) => m.values().for_each(|v| select(rest, root, v, out, budget)),
            _ => {}
        },
        Segment::Slice(start, end, step) => {
            if let Value::Array(a) = current {
                for i in slice_indexes(a.len(), *start, *end, *step) {
                    select(rest, root, &a[i], out, budget);
                }
            }
        }
        Segment::Filter(f) => match current {
            Value::Array(a) => {
                for v in a {
                    if eval_filter(f, root, v, budget) {
                        select(rest, root, v, out, budget);
                    }
                }
            }
            Value::Object(_) if eval_filter(f, root, current, budget) => {
                select(rest, root, current, out, budget)
            }
            _ => {}
        },
        Segment::Deep(inner) => {
            let mut stack = vec![current];
            let mut visit: Vec<&'a Value> = Vec::new();
            while let Some(v) = stack.pop() {
                if *budget == 0 {
                    return;
                }
                *budget -= 1;
                visit.push(v);
                match v {
                    Value::Array(a) => stack.extend(a.iter().rev()),
                    Value::Object(m) => {
                        let children: Vec<&Value> = m.values().collect();
                        stack.extend(children.into_iter().rev());
                    }
                    _ => {}
                }
            }
            let chained: Vec<Segment> = std::iter::once((**inner).clone())
                .chain(rest.iter().cloned())
                .collect();
            for v in visit {
                if *budget == 0 {
                    return;
                }
                select(&chained, root, v, out, budget);
            }
        }
        Segment::Length => {
            // Length yields a fresh number; it cannot be returned by reference, so indefinite
            // queries with length() are handled by `query_owned`.
        }
    }
}

fn slice_indexes(
    len: usize,
    start: Option<i64>,
    end: Option<i64>,
    step: Option<i64>,
) -> Vec<usize> {
    let len_i = len as i64;
    let step = step.unwrap_or(1);
    if step <= 0 {
        return Vec::new();
    }
    let norm = |v: i64| {
        if v < 0 {
            (len_i + v).max(0)
        } else {
            v.min(len_i)
        }
    };
    let s = start.map(norm).unwrap_or(0);
    let e = end.map(norm).unwrap_or(len_i);
    let mut out = Vec::new();
    let mut i = s;
    while i < e {
        out.push(i as usize);
        i += step;
    }
    out
}

fn operand_values<'a>(
    op: &'a Operand,
    root: &'a Value,
    current: &'a Value,
    budget: &mut usize,
) -> Option<std::borrow::Cow<'a, Value>> {
    match op {
        Operand::Literal(v) => Some(std::borrow::Cow::Borrowed(v)),
        Operand::Current(segs) | Operand::Root(segs) => {
            let base = if matches!(op, Operand::Current(_)) {
                current
            } else {
                root
            };
            if let Some(Segment::Length) = segs.last() {
                let mut out = Vec::new();
                select(&segs[..segs.len() - 1], root, base, &mut out, budget);
                return out.first().and_then(|v| match v {
                    Value::Array(a) => Some(std::borrow::Cow::Owned(Value::from(a.len()))),
                    Value::String(s) => {
                        Some(std::borrow::Cow::Owned(Value::from(s.chars().count())))
                    }
                    Value::Object(m) => Some(std::borrow::Cow::Owned(Value::from(m.len()))),
                    _ => None,
                });
            }
            let mut out = Vec::new();
            select(segs, root, base, &mut out, budget);
            out.first().map(|v| std::borrow::Cow::Borrowed(*v))
        }
    }
}

fn eval_filter(mut f: &Filter, root: &Value, current: &Value, budget: &mut usize) -> bool {
    // `&&`/`||` chains are right-deep (see `Parser::filter_or`): the loop walks their spine, so
    // the recursion is as deep as the nesting of parentheses and `!`, not the chain's length.
    loop {
        match f {
            Filter::Or(a, b) => {
                if eval_filter(a, root, current, budget) {
                    return true;
                }
                f = b;
            }
            Filter::And(a, b) => {
                if !eval_filter(a, root, current, budget) {
                    return false;
                }
                f = b;
            }
            Filter::Not(a) => return !eval_filter(a, root, current, budget),
            Filter::Exists(op) => return operand_values(op, root, current, budget).is_some(),
            Filter::Compare(l, op, r) => {
                let (Some(l), Some(r)) = (
                    operand_values(l, root, current, budget),
                    operand_values(r, root, current, budget),
                ) else {
                    return matches!(op, CmpOp::Ne);
                };
                return compare_values(&l, *op, &r);
            }
        }
    }
}

fn compare_values(l: &Value, op: CmpOp, r: &Value) -> bool {
    use std::cmp::Ordering;
    let ord = match (l, r) {
        (Value::Number(a), Value::Number(b)) => a.as_f64().partial_cmp(&b.as_f64()),
        (Value::String(a), Value::String(b)) => Some(a.cmp(b)),
        (a, b) if a == b => Some(Ordering::Equal),
        _ => None,
    };
    match (op, ord) {
        (CmpOp::Eq, Some(Ordering::Equal)) => true,
        (CmpOp::Eq, _) => false,
        (CmpOp::Ne, Some(Ordering::Equal)) => false,
        (CmpOp::Ne, _) => true,
        (CmpOp::Lt, Some(o)) => o == Ordering::Less,
        (CmpOp::Le, Some(o)) => o != Ordering::Greater,
        (CmpOp::Gt, Some(o)) => o == Ordering::Greater,
        (CmpOp::Ge, Some(o)) => o != Ordering::Less,
        _ => false,
    }
}

/// Folds `first, rest...` into `op(first, op(r1, ... rn))`.
fn right_deep(
    first: Filter,
    mut rest: Vec<Filter>,
    op: fn(Box<Filter>, Box<Filter>) -> Filter,
) -> Filter {
    let Some(mut acc) = rest.pop() else {
        return first;
    };
    while let Some(t) = rest.pop() {
        acc = op(Box::new(t), Box::new(acc));
    }
    op(Box::new(first), Box::new(acc))
}

struct Parser<'s> {
    src: &'s str,
    pos: usize,
    /// Nesting of filters, parentheses and `!` (each a recursion of the parser and evaluator).
    depth: Depth,
    /// Segments and filter operators so far (the evaluator recurses once per segment, and a
    /// chain of `&&`/`||` is as deep as it is long).
    nodes: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.src.as_bytes().get(self.pos).copied()
    }
    fn rest(&self) -> &str {
        &self.src[self.pos..]
    }
    fn eat(&mut self, s: &str) -> bool {
        if self.rest().starts_with(s) {
            self.pos += s.len();
            true
        } else {
            false
        }
    }
    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t')) {
            self.pos += 1;
        }
    }

    /// Runs `f` one nesting level down, failing beyond [`MAX_PATH_DEPTH`].
    fn nested<T>(&mut self, f: impl FnOnce(&mut Self) -> Result<T, String>) -> Result<T, String> {
        self.depth.enter().map_err(|e| format!("filters {e}"))?;
        let r = f(self);
        self.depth.leave();
        r
    }

    /// Counts a segment or a filter's `&&`/`||` (each deepens what the evaluator recurses
    /// through), failing beyond [`MAX_PATH_SEGMENTS`].
    fn count_node(&mut self) -> Result<(), String> {
        self.nodes += 1;
        if self.nodes > MAX_PATH_SEGMENTS {
            return Err(format!(
                "more than {MAX_PATH_SEGMENTS} segments and filter operators"
            ));
        }
        Ok(())
    }

    /// Parses segments until the end, or (inside a filter) until an operator or `)`.
    fn segments(&mut self, in_filter: bool) -> Result<Vec<Segment>, String> {
        let mut segs = Vec::new();
        loop {
            match self.peek() {
                None => break,
                Some(b'.') => {
                    if self.eat("..") {
                        let inner = if self.peek() == Some(b'[') {
                            self.bracket()?
                        } else if self.eat("*") {
                            Segment::Wildcard
                        } else {
                            Segment::Name(self.name()?)
                        };
                        segs.push(Segment::Deep(Box::new(inner)));
                    } else {
                        self.pos += 1;
                        if self.eat("*") {
                            segs.push(Segment::Wildcard);
                        } else if self.peek() == Some(b'[') {
                            segs.push(self.bracket()?);
                        } else {
                            let name = self.name()?;
                            if name == "length" && self.eat("()") {
                                segs.push(Segment::Length);
                            } else {
                                segs.push(Segment::Name(name));
                            }
                        }
                    }
                }
                Some(b'[') => segs.push(self.bracket()?),
                Some(_) if in_filter => break,
                Some(c) => return Err(format!("unexpected character '{}'", c as char)),
            }
            // Every arm that gets here pushed one segment.
            self.count_node()?;
        }
        Ok(segs)
    }

    fn name(&mut self) -> Result<String, String> {
        let start = self.pos;
        while let Some(c) = self.rest().chars().next() {
            if matches!(
                c,
                '.' | '['
                    | ']'
                    | ' '
                    | '('
                    | ')'
                    | '='
                    | '!'
                    | '<'
                    | '>'
                    | '&'
                    | '|'
                    | ','
                    | '\''
                    | '"'
            ) {
                break;
            }
            self.pos += c.len_utf8();
        }
        if self.pos == start {
            return Err("empty property name".into());
        }
        Ok(self.src[start..self.pos].to_string())
    }

    fn quoted(&mut self) -> Result<String, String> {
        // Callers after a `,` of a union have not looked: anything but a quote is an error (a
        // multi-byte character here used to be taken for the quote and split).
        let quote = match self.peek() {
            Some(q @ (b'\'' | b'"')) => q,
            Some(_) => return Err("expected a quoted name".into()),
            None => return Err("unterminated string".into()),
        };
        self.pos += 1;
        let mut out = String::new();
        loop {
            let c = self.rest().chars().next().ok_or("unterminated string")?;
            self.pos += c.len_utf8();
            if c == '\\' && self.rest().starts_with(quote as char) {
                // Only the quote itself is escaped; any other backslash is literal (Jayway).
                self.pos += 1;
                out.push(quote as char);
            } else if c as u32 == quote as u32 {
                return Ok(out);
            } else {
                out.push(c);
            }
        }
    }

    fn int(&mut self) -> Result<Option<i64>, String> {
        self.skip_ws();
        let start = self.pos;
        if self.peek() == Some(b'-') {
            self.pos += 1;
        }
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
        if self.pos == start {
            return Ok(None);
        }
        let v = self.src[start..self.pos]
            .parse::<i64>()
            .map_err(|_| "invalid integer".to_string())?;
        self.skip_ws();
        Ok(Some(v))
    }

    fn bracket(&mut self) -> Result<Segment, String> {
        self.pos += 1; // [
        self.skip_ws();
        let seg = match self.peek() {
            Some(b'*') => {
                self.pos += 1;
                Segment::Wildcard
            }
            Some(b'\'' | b'"') => {
                let mut names = vec![self.quoted()?];
                self.skip_ws();
                while self.eat(",") {
                    self.skip_ws();
                    names.push(self.quoted()?);
                    self.skip_ws();
                }
                if names.len() == 1 {
                    Segment::Name(names.pop().unwrap_or_default())
                } else {
                    Segment::Names(names)
                }
            }
            Some(b'(') => self.script_index()?,
            Some(b'?') => {
                self.pos += 1;
                self.skip_ws();
                if !self.eat("(") {
                    return Err("expected '(' after '?'".into());
                }
                let f = self.nested(Self::filter_or)?;
                self.skip_ws();
                if !self.eat(")") {
                    return Err("expected ')' closing the filter".into());
                }
                Segment::Filter(Box::new(f))
            }
            _ => {
                let first = self.int()?;
                if self.peek() == Some(b':') {
                    self.pos += 1;
                    let end = self.int()?;
                    let step = if self.eat(":") { self.int()? } else { None };
                    Segment::Slice(first, end, step)
                } else {
                    let first = first.ok_or("expected an index, a name or '*'")?;
                    let mut idx = vec![first];
                    while self.eat(",") {
                        idx.push(self.int()?.ok_or("expected an index")?);
                    }
                    if idx.len() == 1 {
                        Segment::Index(first)
                    } else {
                        Segment::Indexes(idx)
                    }
                }
            }
        };
        self.skip_ws();
        if !self.eat("]") {
            return Err("expected ']'".into());
        }
        Ok(seg)
    }

    /// Jayway's script index, the only script it evaluates: `(@.length-n)` or `(@.size()-n)`
    /// (blanks allowed between the parts; `-` is the only operator).
    fn script_index(&mut self) -> Result<Segment, String> {
        const EXPECTED: &str = "expected '(@.length-n)' or '(@.size()-n)'";
        self.pos += 1; // (
        self.skip_ws();
        if !(self.eat("@.length") || self.eat("@.size()")) {
            return Err(EXPECTED.into());
        }
        self.skip_ws();
        if !self.eat("-") {
            return Err(EXPECTED.into());
        }
        self.skip_ws();
        let start = self.pos;
        while matches!(self.peek(), Some(b'0'..=b'9')) {
            self.pos += 1;
        }
        let n = self.src[start..self.pos]
            .parse::<u64>()
            .map_err(|_| EXPECTED.to_string())?;
        self.skip_ws();
        if !self.eat(")") {
            return Err(EXPECTED.into());
        }
        Ok(Segment::FromEnd(n))
    }

    /// `a || b || c` as `Or(a, Or(b, c))`: the same short-circuit order as left to right, and a
    /// spine the evaluator walks in a loop.
    fn filter_or(&mut self) -> Result<Filter, String> {
        let first = self.filter_and()?;
        let mut rest = Vec::new();
        loop {
            self.skip_ws();
            if self.eat("||") {
                self.count_node()?;
                rest.push(self.filter_and()?);
            } else {
                return Ok(right_deep(first, rest, Filter::Or));
            }
        }
    }

    fn filter_and(&mut self) -> Result<Filter, String> {
        let first = self.filter_unary()?;
        let mut rest = Vec::new();
        loop {
            self.skip_ws();
            if self.eat("&&") {
                self.count_node()?;
                rest.push(self.filter_unary()?);
            } else {
                return Ok(right_deep(first, rest, Filter::And));
            }
        }
    }

    fn filter_unary(&mut self) -> Result<Filter, String> {
        self.skip_ws();
        if self.eat("!") && !self.rest().starts_with('=') {
            return Ok(Filter::Not(Box::new(self.nested(Self::filter_unary)?)));
        }
        if self.eat("(") {
            let f = self.nested(Self::filter_or)?;
            self.skip_ws();
            if !self.eat(")") {
                return Err("expected ')'".into());
            }
            return Ok(f);
        }
        let left = self.operand()?;
        self.skip_ws();
        let op = if self.eat("==") {
            CmpOp::Eq
        } else if self.eat("!=") {
            CmpOp::Ne
        } else if self.eat("<=") {
            CmpOp::Le
        } else if self.eat(">=") {
            CmpOp::Ge
        } else if self.eat("<") {
            CmpOp::Lt
        } else if self.eat(">") {
            CmpOp::Gt
        } else if matches!(left, Operand::Literal(_)) {
            // Jayway: an existence test needs a path (`[?(@.a)]`), never a bare value.
            return Err("expected a comparison operator after a value in filter".into());
        } else {
            return Ok(Filter::Exists(left));
        };
        let right = self.operand()?;
        Ok(Filter::Compare(left, op, right))
    }

    fn operand(&mut self) -> Result<Operand, String> {
        self.skip_ws();
        match self.peek() {
            Some(b'@') => {
                self.pos += 1;
                Ok(Operand::Current(self.segments(true)?))
            }
            Some(b'$') => {
                self.pos += 1;
                Ok(Operand::Root(self.segments(true)?))
            }
            Some(b'\'' | b'"') => Ok(Operand::Literal(Value::String(self.quoted()?))),
            _ => {
                // A JSON literal (number, true, false, null), else an unquoted word, which
                // Jayway keeps as the string it spells (`@.lang == es` is `@.lang == 'es'`). It
                // runs to the next operator, `)`, `&&` or `||`; inner blanks belong to it.
                let start = self.pos;
                while let Some(c) = self.peek() {
                    let two = self.src.as_bytes().get(self.pos..self.pos + 2);
                    if matches!(c, b')' | b'=' | b'!' | b'<' | b'>')
                        || matches!(two, Some(b"&&" | b"||"))
                    {
                        break;
                    }
                    self.pos += 1;
                }
                let lit = self.src[start..self.pos].trim_end_matches([' ', '\t']);
                self.pos = start + lit.len();
                if lit.is_empty() {
                    return Err("expected a value in filter".into());
                }
                Ok(Operand::Literal(
                    serde_json::from_str::<Value>(lit)
                        .unwrap_or_else(|_| Value::String(lit.to_string())),
                ))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn q(path: &str, v: Value) -> Result<Value, QueryFailure> {
        JsonPath::parse(path).expect("valid path").query(&v)
    }

    #[test]
    fn definite_paths_yield_the_value() {
        assert_eq!(q("$.items[0]", json!({"items": [1, 2]})), Ok(json!(1)));
        assert_eq!(q("$.a.b", json!({"a": {"b": "x"}})), Ok(json!("x")));
        assert_eq!(q("$['a']['b']", json!({"a": {"b": "x"}})), Ok(json!("x")));
        assert_eq!(q("$.items[-1]", json!({"items": [1, 2]})), Ok(json!(2)));
        assert_eq!(q("$.missing", json!({})), Err(QueryFailure::NoResults));
        assert_eq!(q("$", json!(3)), Ok(json!(3)));
    }

    #[test]
    fn indefinite_paths_yield_arrays() {
        let v = json!({"items": [{"v": 1}, {"v": 2}, {"v": 3}]});
        assert_eq!(q("$.items[*].v", v.clone()), Ok(json!([1, 2, 3])));
        assert_eq!(q("$.items[1:].v", v.clone()), Ok(json!([2, 3])));
        assert_eq!(q("$.items[:1]", v.clone()), Ok(json!([{"v": 1}])));
        assert_eq!(q("$.items[?(@.v > 1)].v", v.clone()), Ok(json!([2, 3])));
        assert_eq!(q("$..v", v.clone()), Ok(json!([1, 2, 3])));
        assert_eq!(q("$.nothing[*]", json!({})), Ok(json!([])));
        assert_eq!(
            q(
                "$.users[?(@.status == 0)]",
                json!({"users": [{"status": 0}, {"status": 1}]})
            ),
            Ok(json!([{"status": 0}]))
        );
    }

    #[test]
    fn unquoted_filter_words_are_strings() {
        let v = json!({"t": [
            {"TargetLanguageCode": "es", "TranslatedText": "hola"},
            {"TargetLanguageCode": "fr", "TranslatedText": "salut"},
            {"TargetLanguageCode": "es-MX", "TranslatedText": "qué onda"},
            {"TargetLanguageCode": 1, "TranslatedText": "number"}
        ]});
        let words = |p: &str| q(p, v.clone());
        assert_eq!(
            words("$.t[?(@.TargetLanguageCode==es)].TranslatedText"),
            Ok(json!(["hola"]))
        );
        // Same result as the quoted form.
        assert_eq!(
            words("$.t[?(@.TargetLanguageCode==es)].TranslatedText"),
            words("$.t[?(@.TargetLanguageCode=='es')].TranslatedText")
        );
        assert_eq!(
            words("$.t[?(@.TargetLanguageCode == es-MX )].TranslatedText"),
            Ok(json!(["qué onda"]))
        );
        assert_eq!(
            words(
                "$.t[?(@.TargetLanguageCode != es && @.TargetLanguageCode != fr)].TranslatedText"
            ),
            Ok(json!(["qué onda", "number"]))
        );
        assert_eq!(
            words("$.t[?(es == @.TargetLanguageCode)].TranslatedText"),
            Ok(json!(["hola"]))
        );
        // Numbers, booleans and null keep their JSON meaning.
        assert_eq!(
            words("$.t[?(@.TargetLanguageCode == 1)].TranslatedText"),
            Ok(json!(["number"]))
        );
        // A bare value is no filter, and a comparison needs its right side.
        assert!(JsonPath::parse("$.t[?(es)]").is_err());
        assert!(JsonPath::parse("$.t[?(1)]").is_err());
        assert!(JsonPath::parse("$.t[?(@.a == )]").is_err());
        assert!(JsonPath::parse("$.t[?(@.a == é)]").is_ok());
    }

    #[test]
    fn script_index_counts_from_the_end() {
        let v = json!({"a": [{"bar": 1}, {"bar": 2}, {"bar": 3}]});
        assert_eq!(q("$.a[(@.length-1)].bar", v.clone()), Ok(json!(3)));
        assert_eq!(q("$.a[( @.length - 2 )].bar", v.clone()), Ok(json!(2)));
        assert_eq!(q("$.a[(@.size()-3)].bar", v.clone()), Ok(json!(1)));
        assert_eq!(
            q("$[(@.length-1)].bar", json!([{"bar": "x"}])),
            Ok(json!("x"))
        );
        // Jayway: index len-n must lie inside the array.
        assert_eq!(
            q("$.a[(@.length-0)]", v.clone()),
            Err(QueryFailure::NoResults)
        );
        assert_eq!(
            q("$.a[(@.length-4)]", v.clone()),
            Err(QueryFailure::NoResults)
        );
        assert_eq!(
            q("$.a[(@.length-1)]", json!({"a": {"k": 1}})),
            Err(QueryFailure::NoResults)
        );
        let p = JsonPath::parse("$.a[(@.length-1)].bar").expect("valid");
        assert!(p.is_definite());
        assert!(!p.is_reference_path());
        assert_eq!(p.bracket_notation(), "$['a'][@.size()-1]['bar']");
        // Inside filters and after a wildcard too.
        assert_eq!(
            q(
                "$.x[?(@.v[(@.length-1)] == 3)].id",
                json!({"x": [{"id": 1, "v": [1, 3]}, {"id": 2, "v": [3, 1]}]})
            ),
            Ok(json!([1]))
        );
        for bad in [
            "$.a[(@.length+1)]",
            "$.a[(@.length)]",
            "$.a[(@.foo-1)]",
            "$.a[(@.length-x)]",
            "$.a[(@.length-1]",
        ] {
            assert!(JsonPath::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn roots_and_notation() {
        let p = JsonPath::parse("$$.Execution.Input").expect("valid");
        assert_eq!(p.root(), &Root::Context);
        let p = JsonPath::parse("$myVar.a[0]").expect("valid");
        assert_eq!(p.root(), &Root::Variable("myVar".into()));
        assert_eq!(
            JsonPath::parse("$.NoSuch.x[1]")
                .expect("valid")
                .bracket_notation(),
            "$['NoSuch']['x'][1]"
        );
        assert!(JsonPath::parse("items").is_err());
        assert!(JsonPath::parse("$.a[").is_err());
    }

    #[test]
    fn assign_creates_intermediate_objects() {
        let mut v = json!({"a": 1});
        JsonPath::parse("$.b.c")
            .expect("valid")
            .assign(&mut v, json!(2))
            .expect("assign");
        assert_eq!(v, json!({"a": 1, "b": {"c": 2}}));
        let mut v = json!({"a": 1});
        assert!(JsonPath::parse("$.a.c")
            .expect("valid")
            .assign(&mut v, json!(2))
            .is_err());
    }
}
