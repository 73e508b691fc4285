//! The evaluator: a direct port of jsonata-js's evaluation rules (sequences, tuple streams,
//! predicates, grouping, sorting, closures, tail calls), synchronous and single-threaded.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use indexmap::IndexMap;

use crate::ast::{BinOp, Group, Kind, Lambda, Node, SortTerm, Stage};
use crate::error::{Error, Result};
use crate::functions::{self, Builtin};
use crate::value::{deep_equal, depth_of, funcs_in, tuple_focus, Array, Obj, Object, Tuple, Value};
use crate::Host;

/// A scope of variable bindings.
pub(crate) struct Frame<'a> {
    vars: RefCell<Vec<(Rc<str>, Value<'a>)>>,
    parent: Option<Rc<Frame<'a>>>,
}

impl<'a> Frame<'a> {
    pub(crate) fn bind(&self, name: Rc<str>, value: Value<'a>) {
        let mut vars = self.vars.borrow_mut();
        if let Some(slot) = vars.iter_mut().find(|(k, _)| *k == name) {
            slot.1 = value;
        } else {
            vars.push((name, value));
        }
    }

    fn lookup(&self, name: &str) -> Option<Value<'a>> {
        let mut f = self;
        loop {
            if let Some((_, v)) = f.vars.borrow().iter().find(|(k, _)| &**k == name) {
                return Some(v.clone());
            }
            f = f.parent.as_deref()?;
        }
    }
}

/// A function value.
pub(crate) enum Func<'a> {
    Lambda {
        def: &'a Lambda,
        env: Rc<Frame<'a>>,
        input: Value<'a>,
    },
    Thunk {
        call: &'a Node,
        env: Rc<Frame<'a>>,
        input: Value<'a>,
    },
    Builtin(&'static Builtin),
    Partial {
        func: Value<'a>,
        args: Vec<Option<Value<'a>>>,
    },
    Regex(Arc<crate::regex::Regex>),
    Transform {
        node: &'a Node,
        env: Rc<Frame<'a>>,
    },
    Chain(Value<'a>, Value<'a>),
}

impl std::fmt::Debug for Func<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<function>")
    }
}

impl Func<'_> {
    /// How many arguments higher-order functions pass to it.
    pub(crate) fn arity(&self) -> usize {
        match self {
            Func::Lambda { def, .. } => def.params.len(),
            // jsonata-js uses the implementation's declared parameter count
            Func::Builtin(b) if b.name == "string" => 1,
            Func::Builtin(b) => b.signature.arity(),
            Func::Partial { args, .. } => args.iter().filter(|a| a.is_none()).count(),
            Func::Thunk { .. } => 0,
            Func::Regex(_) | Func::Transform { .. } | Func::Chain(..) => 1,
        }
    }
}

/// Evaluation limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Maximum nesting depth of evaluation (`U1001` beyond it).
    pub max_depth: usize,
    /// Wall-clock budget (`U1001` beyond it), checked every [`DEADLINE_CHECK`] evaluation steps.
    pub timeout: Option<std::time::Duration>,
    /// Maximum nesting of arrays and objects the evaluation builds (`U1002` beyond it). Values
    /// are converted, compared and dropped recursively; this bound keeps that off the end of
    /// the stack.
    pub max_value_depth: usize,
    /// Maximum number of JSON values the result may span (`U1003` beyond it): a value that
    /// shares one array many times over is cheap to build and exponential to convert.
    pub max_result_values: usize,
    /// Maximum members of one array the evaluation builds (`U1004` beyond it; the range
    /// operator keeps jsonata's own bound of 1e7, `D2014`).
    pub max_array_items: usize,
    /// Maximum bytes of one string the evaluation builds (`U1005` beyond it).
    pub max_string_bytes: usize,
    /// Budget of evaluation steps (one per expression node evaluated, function bodies included;
    /// `U1001` beyond it). Unlike `timeout` it is deterministic: the same expression on the same
    /// input stops at the same point whatever the load.
    pub max_steps: Option<u64>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_depth: 10_000,
            timeout: None,
            max_value_depth: 1000,
            max_result_values: usize::MAX,
            max_array_items: usize::MAX,
            max_string_bytes: usize::MAX,
            max_steps: None,
        }
    }
}

/// See [`Ctx::evaluate`].
const EVAL_STACK_CHECK: usize = 8;
/// The clock is read once every this many evaluation steps when [`Limits::timeout`] is set.
const DEADLINE_CHECK: u64 = 64;
const EVAL_RED_ZONE: usize = 1024 * 1024;

/// Per-evaluation state.
pub(crate) struct Ctx<'a> {
    pub(crate) host: &'a dyn Host,
    /// `$$`: the input document.
    root: Value<'a>,
    depth: Cell<usize>,
    max_depth: usize,
    deadline: Option<Instant>,
    /// Steps taken so far (see [`Limits::max_steps`] and [`DEADLINE_CHECK`]).
    steps: Cell<u64>,
    max_steps: u64,
    pub(crate) limits: Limits,
    frames: RefCell<Vec<Rc<Frame<'a>>>>,
    pub(crate) now: Cell<Option<f64>>,
}

impl Drop for Ctx<'_> {
    fn drop(&mut self) {
        // closures bound in the frames they capture form cycles; break them
        for f in self.frames.borrow().iter() {
            f.vars.borrow_mut().clear();
        }
    }
}

/// The item a numeric predicate selects: rounded down, negative counts from the end.
fn position(n: f64, len: usize) -> Option<usize> {
    let mut i = n.floor();
    if i < 0.0 {
        i += len as f64;
    }
    (i >= 0.0).then_some(i as usize)
}

/// Members an array constructor copies per evaluation step: building a large value costs steps
/// in proportion (`[1..1000000]` costs 62,500 of the 1,000,000 a state has).
const MEMBERS_PER_STEP: u64 = 16;

/// Members of `v` at its top level (what keeping it alive costs, in steps).
fn top_level_len(v: &Value<'_>) -> u64 {
    match v {
        Value::Array(a) => a.items.len() as u64,
        Value::Object(o) => o.len() as u64,
        Value::Tuples(t) => t.len() as u64,
        _ => 1,
    }
}

fn err(code: &'static str, msg: impl Into<String>) -> Error {
    Error::new(code, msg)
}

fn is_numeric(v: &Value<'_>) -> Result<bool> {
    match v {
        Value::Number(n) if n.is_nan() => Ok(false),
        Value::Number(n) if !n.is_finite() => {
            Err(err("D1001", "Number out of range").value(serde_json::Value::Null))
        }
        Value::Number(_) => Ok(true),
        _ => Ok(false),
    }
}

/// Effective boolean value (`$boolean`); None for undefined.
pub(crate) fn boolean(v: &Value<'_>) -> Option<bool> {
    Some(match v {
        Value::Undefined => return None,
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => *n != 0.0 && !n.is_nan(),
        Value::Str(_) | Value::JStr(_) => !v.as_str().unwrap_or_default().is_empty(),
        Value::JArr(_) | Value::Array(_) => match v.len() {
            0 => false,
            1 => boolean(&v.get(0)).unwrap_or(false),
            _ => v.members().iter().any(|m| boolean(m).unwrap_or(false)),
        },
        Value::JObj(o) => !o.is_empty(),
        Value::Object(o) => !o.is_empty(),
        Value::Host(_) => !v.keys().is_empty(),
        Value::Func(_) => false,
        Value::Tuples(t) => !t.is_empty(),
    })
}

/// `fn.append`: concatenation that disregards undefined and makes a plain array.
pub(crate) fn append<'a>(a: Value<'a>, b: Value<'a>) -> Value<'a> {
    if a.is_undefined() {
        return b;
    }
    if b.is_undefined() {
        return a;
    }
    let mut items = if a.is_array() { a.members() } else { vec![a] };
    if b.is_array() {
        items.extend(b.members());
    } else {
        items.push(b);
    }
    Value::array(items)
}

fn flatten_into<'a>(v: Value<'a>, out: &mut Vec<Value<'a>>) {
    if v.is_array() {
        for m in v.members() {
            flatten_into(m, out);
        }
    } else {
        out.push(v);
    }
}

fn tuple_get<'a>(t: &Tuple<'a>, key: &str) -> Value<'a> {
    t.iter()
        .find(|(k, _)| &**k == key)
        .map(|(_, v)| v.clone())
        .unwrap_or_default()
}

fn tuple_set<'a>(t: &mut Tuple<'a>, key: Rc<str>, v: Value<'a>) {
    if let Some(slot) = t.iter_mut().find(|(k, _)| *k == key) {
        slot.1 = v;
    } else {
        t.push((key, v));
    }
}

fn ancestor_key(label: usize) -> Rc<str> {
    format!("!{label}").into()
}

impl<'a> Ctx<'a> {
    pub(crate) fn new(host: &'a dyn Host, limits: Limits, root: Value<'a>) -> Ctx<'a> {
        Ctx {
            host,
            root,
            depth: Cell::new(0),
            max_depth: limits.max_depth,
            deadline: limits.timeout.map(|t| Instant::now() + t),
            steps: Cell::new(0),
            limits,
            max_steps: limits.max_steps.unwrap_or(u64::MAX),
            frames: RefCell::new(Vec::new()),
            now: Cell::new(None),
        }
    }

    pub(crate) fn frame(&self, parent: Option<&Rc<Frame<'a>>>) -> Rc<Frame<'a>> {
        Rc::new(Frame {
            vars: RefCell::new(Vec::new()),
            parent: parent.cloned(),
        })
    }

    /// Binds a variable. A frame that holds a function (or a structure that may hold one) can be
    /// part of a reference cycle through that function's captured frame, so it is registered
    /// for clearing when the evaluation ends.
    ///
    /// Whether the value holds a function is O(1) (containers carry it). A kept frame keeps its
    /// values alive until the end, so keeping one costs a step per top-level member: a recursion
    /// that passes a growing array on would otherwise hold every copy (quadratic memory within
    /// the step budget; the fuzzer found 23 GB).
    pub(crate) fn bind(
        &self,
        frame: &Rc<Frame<'a>>,
        name: Rc<str>,
        value: Value<'a>,
    ) -> Result<()> {
        if value.holds_function() {
            self.charge_steps(top_level_len(&value))?;
            self.frames.borrow_mut().push(frame.clone());
        }
        frame.bind(name, value);
        Ok(())
    }

    fn frame_from_tuple(&self, env: &Rc<Frame<'a>>, t: &Tuple<'a>) -> Result<Rc<Frame<'a>>> {
        let f = self.frame(Some(env));
        if funcs_in(t.iter().map(|(_, v)| v)) {
            self.charge_steps(t.iter().map(|(_, v)| top_level_len(v)).sum())?;
            self.frames.borrow_mut().push(f.clone());
        }
        f.vars.borrow_mut().extend(t.iter().cloned());
        Ok(f)
    }

    /// Counts `n` evaluation steps against [`Limits::max_steps`].
    pub(crate) fn charge_steps(&self, n: u64) -> Result<()> {
        let steps = self.steps.get().saturating_add(n);
        self.steps.set(steps);
        if steps > self.max_steps {
            return Err(err(
                "U1001",
                format!(
                    "Expression evaluation exceeded {} steps: Check for infinite loop",
                    self.max_steps
                ),
            ));
        }
        Ok(())
    }

    pub(crate) fn lookup(&self, env: &Rc<Frame<'a>>, name: &str) -> Value<'a> {
        if name == "$" {
            return self.root.clone();
        }
        if let Some(v) = env.lookup(name) {
            return v;
        }
        match self.host.variable(name) {
            Some(crate::HostValue::Json(v)) => return Value::from_json(v),
            Some(crate::HostValue::Object(o)) => return Value::Host(o),
            None => {}
        }
        match functions::lookup(name) {
            Some(b) => Value::Func(Rc::new(Func::Builtin(b))),
            None => Value::Undefined,
        }
    }

    pub(crate) fn evaluate(
        &self,
        expr: &'a Node,
        input: &Value<'a>,
        env: &Rc<Frame<'a>>,
    ) -> Result<Value<'a>> {
        let depth = self.depth.get() + 1;
        if depth > self.max_depth {
            return Err(err(
                "U1001",
                "Stack overflow error: Check for non-terminating recursive function.  Consider rewriting as tail-recursive.",
            )
            .at(expr.pos));
        }
        self.charge_steps(1).map_err(|e| e.at(expr.pos))?;
        let steps = self.steps.get();
        if let Some(d) = self.deadline {
            if steps.is_multiple_of(DEADLINE_CHECK) && Instant::now() > d {
                return Err(err(
                    "U1001",
                    "Expression evaluation timeout: Check for infinite loop",
                )
                .at(expr.pos));
            }
        }
        self.depth.set(depth);
        // Every EVAL_STACK_CHECK levels make sure EVAL_RED_ZONE bytes of stack are left (a new
        // segment otherwise): enough for that many levels even with unoptimised frames.
        let r = if depth.is_multiple_of(EVAL_STACK_CHECK) {
            stacker::maybe_grow(EVAL_RED_ZONE, 8 * 1024 * 1024, || {
                self.evaluate_inner(expr, input, env)
            })
        } else {
            self.evaluate_inner(expr, input, env)
        };
        self.depth.set(depth - 1);
        match r {
            Ok(v) => self.check_built(v).map_err(|e| e.at(expr.pos)),
            e => e,
        }
    }

    /// Refuses a value beyond the [`Limits`] on what an evaluation may build, as soon as a step
    /// returns it (so it is never nested further or converted).
    fn check_built(&self, v: Value<'a>) -> Result<Value<'a>> {
        let l = &self.limits;
        match &v {
            Value::Array(a) if a.items.len() > l.max_array_items => Err(err(
                "U1004",
                format!(
                    "An array built by the expression has more than {} members",
                    l.max_array_items
                ),
            )),
            Value::Str(t) if t.len() > l.max_string_bytes => Err(err(
                "U1005",
                format!(
                    "A string built by the expression has more than {} bytes",
                    l.max_string_bytes
                ),
            )),
            _ if v.depth() as usize > l.max_value_depth => Err(err(
                "U1002",
                format!(
                    "A value built by the expression nests more than {} arrays/objects",
                    l.max_value_depth
                ),
            )),
            _ => Ok(v),
        }
    }

    fn evaluate_inner(
        &self,
        expr: &'a Node,
        input: &Value<'a>,
        env: &Rc<Frame<'a>>,
    ) -> Result<Value<'a>> {
        let mut result = match &expr.kind {
            Kind::Path {
                steps,
                keep_singleton,
            } => self.eval_path(expr, steps, *keep_singleton, input, env)?,
            Kind::Binary { op, lhs, rhs } => {
                self.eval_binary(*op, lhs, rhs, input, env).map_err(|e| {
                    let mut e = e.at(expr.pos);
                    if e.token.is_none() {
                        e.token = Some(op.symbol().to_string());
                    }
                    e
                })?
            }
            Kind::Neg(e) => {
                let v = self.evaluate(e, input, env)?;
                match v {
                    Value::Undefined => Value::Undefined,
                    ref n if is_numeric(n)? => Value::Number(-n.as_f64().unwrap_or(0.0)),
                    other => {
                        return Err(err("D1002", "Cannot negate a non-numeric value")
                            .at(expr.pos)
                            .token("-")
                            .value(other.to_json_lossy()))
                    }
                }
            }
            Kind::Array(items) => {
                let mut out: Vec<Value<'a>> = Vec::new();
                for item in items {
                    let v = self.evaluate(item, input, env)?;
                    if v.is_undefined() {
                        continue;
                    }
                    if matches!(item.kind, Kind::Array(_)) {
                        out.push(v);
                    } else if v.is_array() {
                        out.extend(v.members());
                    } else {
                        out.push(v);
                    }
                }
                // copying members costs steps too
                self.charge_steps(out.len() as u64 / MEMBERS_PER_STEP)
                    .map_err(|e| e.at(expr.pos))?;
                Value::Array(Rc::new(Array {
                    depth: depth_of(&out),
                    funcs: funcs_in(&out),
                    items: out,
                    cons: expr.cons_array,
                    ..Default::default()
                }))
            }
            Kind::Object(pairs) => self.eval_group(pairs, expr.pos, input.clone(), env)?,
            Kind::Name(n) => lookup_field(input, n),
            Kind::Str(s) => Value::JStr(s),
            Kind::Num(n) => Value::Number(*n),
            Kind::Bool(b) => Value::Bool(*b),
            Kind::Null => Value::Null,
            Kind::Wildcard => eval_wildcard(input),
            Kind::Descendant => eval_descendants(input),
            Kind::Parent(slot) => self.lookup(
                env,
                &ancestor_key(slot.label.load(std::sync::atomic::Ordering::Relaxed)),
            ),
            Kind::Condition {
                cond,
                then,
                otherwise,
            } => {
                let c = self.evaluate(cond, input, env)?;
                if boolean(&c).unwrap_or(false) {
                    self.evaluate(then, input, env)?
                } else if let Some(o) = otherwise {
                    self.evaluate(o, input, env)?
                } else {
                    Value::Undefined
                }
            }
            Kind::Block(exprs) => {
                let frame = self.frame(Some(env));
                let mut r = Value::Undefined;
                for e in exprs {
                    r = self.evaluate(e, input, &frame)?;
                }
                r
            }
            Kind::Bind { name, rhs } => {
                let v = self.evaluate(rhs, input, env)?;
                self.bind(env, Rc::from(&**name), v.clone())
                    .map_err(|e| e.at(expr.pos))?;
                v
            }
            Kind::Regex(re) => Value::Func(Rc::new(Func::Regex(re.clone()))),
            Kind::Call { .. } => self.eval_function(expr, input, env, None)?,
            Kind::Variable(name) => {
                if name.is_empty() {
                    if input.is_outer_wrapper() {
                        input.get(0)
                    } else {
                        input.clone()
                    }
                } else {
                    self.lookup(env, name)
                }
            }
            Kind::Lambda(def) => Value::Func(Rc::new(Func::Lambda {
                def,
                env: env.clone(),
                input: input.clone(),
            })),
            Kind::Thunk(call) => Value::Func(Rc::new(Func::Thunk {
                call,
                env: env.clone(),
                input: input.clone(),
            })),
            Kind::Partial { procedure, args } => {
                self.eval_partial(expr, procedure, args, input, env)?
            }
            Kind::Apply { lhs, rhs } => self.eval_apply(expr, lhs, rhs, input, env)?,
            Kind::Transform { .. } => Value::Func(Rc::new(Func::Transform {
                node: expr,
                env: env.clone(),
            })),
            Kind::Placeholder => return Err(err("S0201", "Syntax error: ?").at(expr.pos)),
            Kind::Sort(_) => {
                let seq = if input.is_array() {
                    input.clone()
                } else {
                    Value::seq(vec![input.clone()])
                };
                self.eval_sort(expr, seq, env)?
            }
        };
        for stage in &expr.predicate {
            if let Stage::Filter(p) = stage {
                result = self.eval_filter(p, result, env)?;
            }
        }
        if !matches!(expr.kind, Kind::Path { .. }) {
            if let Some(g) = &expr.group {
                result = self.eval_group_expr(g, result, env)?;
            }
        }
        if let Value::Array(a) = &result {
            if a.seq {
                if expr.keep_array {
                    a.keep_singleton.set(true);
                }
                if a.items.is_empty() {
                    return Ok(Value::Undefined);
                }
                if a.items.len() == 1 && !a.keep_singleton.get() {
                    return Ok(a.items[0].clone());
                }
            }
        }
        Ok(result)
    }

    fn eval_path(
        &self,
        expr: &'a Node,
        steps: &'a [Node],
        keep_singleton: bool,
        input: &Value<'a>,
        env: &Rc<Frame<'a>>,
    ) -> Result<Value<'a>> {
        let first_is_var = matches!(steps.first().map(|s| &s.kind), Some(Kind::Variable(_)));
        let plain = !keep_singleton
            && expr.group.is_none()
            && steps
                .iter()
                .all(|s| !s.tuple && !s.cons_array && !matches!(s.kind, Kind::Sort(_)));
        if plain && (first_is_var || !input.is_array()) {
            // Fast path: while the context is a single value, step through it without
            // building one-member sequences (the common `$states.input.a.b` shape).
            let last = steps.len().saturating_sub(1);
            let mut cur = input.clone();
            for (ii, step) in steps.iter().enumerate() {
                let mut res = self.evaluate(step, &cur, env)?;
                for stage in &step.stages {
                    if let Stage::Filter(p) = stage {
                        res = self.eval_filter(p, res, env)?;
                    }
                }
                if res.is_undefined() {
                    return Ok(Value::Undefined);
                }
                if ii == last {
                    return Ok(if res.is_sequence() {
                        Value::seq(res.members())
                    } else if res.is_array() || !expr.keep_array {
                        res
                    } else {
                        Value::seq(vec![res])
                    });
                }
                if res.is_array() && !res.is_cons() {
                    // many values from here on: continue on the general path
                    return self.eval_path_from(
                        expr,
                        steps,
                        ii + 1,
                        Value::seq(res.members()),
                        keep_singleton,
                        env,
                    );
                }
                cur = res;
            }
            return Ok(Value::Undefined);
        }
        let input_seq = if input.is_array() && !first_is_var {
            input.clone()
        } else {
            Value::seq(vec![input.clone()])
        };
        self.eval_path_from(expr, steps, 0, input_seq, keep_singleton, env)
    }

    fn eval_path_from(
        &self,
        expr: &'a Node,
        steps: &'a [Node],
        start: usize,
        input_seq: Value<'a>,
        keep_singleton: bool,
        env: &Rc<Frame<'a>>,
    ) -> Result<Value<'a>> {
        let mut input_seq = input_seq;
        let mut result = Value::Undefined;
        let mut tuples: Option<Vec<Tuple<'a>>> = None;
        let mut is_tuple = false;
        let last = steps.len().saturating_sub(1);
        for (ii, step) in steps.iter().enumerate().skip(start) {
            if step.tuple {
                is_tuple = true;
            }
            if ii == 0 && step.cons_array {
                result = self.evaluate(step, &input_seq, env)?;
            } else if is_tuple {
                tuples = Some(self.eval_tuple_step(step, &input_seq, tuples.take(), env)?);
            } else {
                result = self.eval_step(step, &input_seq, env, ii == last)?;
            }
            if !is_tuple && (result.is_undefined() || (result.is_array() && result.is_empty())) {
                break;
            }
            if step.focus.is_none() {
                input_seq = result.clone();
            }
        }
        let mut tuple_stream = None;
        if is_tuple {
            let t = Rc::new(tuples.unwrap_or_default());
            result = if expr.tuple {
                Value::Tuples(t.clone())
            } else {
                Value::seq(t.iter().map(tuple_focus).collect())
            };
            tuple_stream = Some(t);
        }
        if keep_singleton {
            if let Value::Array(a) = &result {
                if a.cons && !a.seq {
                    result = Value::seq(vec![result.clone()]);
                }
            }
            if let Value::Array(a) = &result {
                a.keep_singleton.set(true);
            }
        }
        if let Some(g) = &expr.group {
            let grouped = match tuple_stream {
                Some(t) => Value::Tuples(t),
                None => result,
            };
            result = self.eval_group_expr(g, grouped, env)?;
        }
        Ok(result)
    }

    fn eval_step(
        &self,
        step: &'a Node,
        input: &Value<'a>,
        env: &Rc<Frame<'a>>,
        last: bool,
    ) -> Result<Value<'a>> {
        if matches!(step.kind, Kind::Sort(_)) {
            let mut r = self.eval_sort(step, input.clone(), env)?;
            for stage in &step.stages {
                if let Stage::Filter(p) = stage {
                    r = self.eval_filter(p, r, env)?;
                }
            }
            return Ok(r);
        }
        let items = input.members();
        let mut results = Vec::with_capacity(items.len());
        for item in &items {
            let mut res = self.evaluate(step, item, env)?;
            for stage in &step.stages {
                if let Stage::Filter(p) = stage {
                    res = self.eval_filter(p, res, env)?;
                }
            }
            if !res.is_undefined() {
                results.push(res);
            }
        }
        if last && results.len() == 1 && results[0].is_array() && !results[0].is_sequence() {
            return Ok(results.pop().unwrap_or_default());
        }
        let mut flat = Vec::with_capacity(results.len());
        for res in results {
            if !res.is_array() || res.is_cons() {
                flat.push(res);
            } else {
                flat.extend(res.members());
            }
        }
        Ok(Value::seq(flat))
    }

    fn eval_tuple_step(
        &self,
        step: &'a Node,
        input: &Value<'a>,
        tuples: Option<Vec<Tuple<'a>>>,
        env: &Rc<Frame<'a>>,
    ) -> Result<Vec<Tuple<'a>>> {
        if matches!(step.kind, Kind::Sort(_)) {
            let mut result = match tuples {
                Some(t) => match self.eval_sort(step, Value::Tuples(Rc::new(t)), env)? {
                    Value::Tuples(t) => Rc::try_unwrap(t).unwrap_or_else(|rc| (*rc).clone()),
                    _ => Vec::new(),
                },
                None => {
                    let sorted = self.eval_sort(step, input.clone(), env)?;
                    sorted
                        .to_members()
                        .into_iter()
                        .enumerate()
                        .map(|(i, v)| {
                            let mut t: Tuple<'a> = vec![(Rc::from("@"), v)];
                            if let Some(ix) = &step.index {
                                t.push((Rc::from(&**ix), Value::Number(i as f64)));
                            }
                            t
                        })
                        .collect()
                }
            };
            if !step.stages.is_empty() {
                result = self.eval_stages(&step.stages, result, env)?;
            }
            return Ok(result);
        }
        let bindings = match tuples {
            Some(t) => t,
            None => input
                .members()
                .into_iter()
                .map(|i| vec![(Rc::from("@"), i)])
                .collect(),
        };
        let mut result = Vec::new();
        for tb in &bindings {
            let step_env = self.frame_from_tuple(env, tb)?;
            let focus_in = tuple_focus(tb);
            let res = self.evaluate(step, &focus_in, &step_env)?;
            if res.is_undefined() {
                continue;
            }
            if let Value::Tuples(ts) = &res {
                for rt in ts.iter() {
                    let mut tuple = tb.clone();
                    for (k, v) in rt {
                        tuple_set(&mut tuple, k.clone(), v.clone());
                    }
                    result.push(tuple);
                }
                continue;
            }
            let items = if res.is_array() {
                res.members()
            } else {
                vec![res]
            };
            for (bb, r) in items.into_iter().enumerate() {
                let mut tuple = tb.clone();
                if let Some(f) = &step.focus {
                    tuple_set(&mut tuple, Rc::from(&**f), r);
                    tuple_set(&mut tuple, Rc::from("@"), focus_in.clone());
                } else {
                    tuple_set(&mut tuple, Rc::from("@"), r);
                }
                if let Some(ix) = &step.index {
                    tuple_set(&mut tuple, Rc::from(&**ix), Value::Number(bb as f64));
                }
                if let Some(anc) = &step.ancestor {
                    tuple_set(
                        &mut tuple,
                        ancestor_key(anc.label.load(std::sync::atomic::Ordering::Relaxed)),
                        focus_in.clone(),
                    );
                }
                result.push(tuple);
            }
        }
        if !step.stages.is_empty() {
            result = self.eval_stages(&step.stages, result, env)?;
        }
        Ok(result)
    }

    fn eval_stages(
        &self,
        stages: &'a [Stage],
        input: Vec<Tuple<'a>>,
        env: &Rc<Frame<'a>>,
    ) -> Result<Vec<Tuple<'a>>> {
        let mut result = input;
        for stage in stages {
            match stage {
                Stage::Filter(p) => {
                    result = match self.eval_filter(p, Value::Tuples(Rc::new(result)), env)? {
                        Value::Tuples(t) => Rc::try_unwrap(t).unwrap_or_else(|rc| (*rc).clone()),
                        _ => Vec::new(),
                    }
                }
                Stage::Index(name) => {
                    for (i, t) in result.iter_mut().enumerate() {
                        tuple_set(t, Rc::from(&**name), Value::Number(i as f64));
                    }
                }
            }
        }
        Ok(result)
    }

    fn eval_filter(
        &self,
        pred: &'a Node,
        input: Value<'a>,
        env: &Rc<Frame<'a>>,
    ) -> Result<Value<'a>> {
        if let Value::Tuples(ts) = &input {
            let len = ts.len();
            let mut out = Vec::new();
            if let Kind::Num(n) = pred.kind {
                if let Some(t) = position(n, len).and_then(|i| ts.get(i)) {
                    out.push(t.clone());
                }
            } else {
                for (index, t) in ts.iter().enumerate() {
                    let fenv = self.frame_from_tuple(env, t)?;
                    let res = self.evaluate(pred, &tuple_focus(t), &fenv)?;
                    if self.predicate_selects(&res, index, len)? {
                        out.push(t.clone());
                    }
                }
            }
            return Ok(Value::Tuples(Rc::new(out)));
        }
        let items = if input.is_array() {
            input.members()
        } else {
            vec![input]
        };
        let len = items.len();
        let mut out = Vec::new();
        if let Kind::Num(n) = pred.kind {
            if let Some(item) = position(n, len).and_then(|i| items.get(i)) {
                if item.is_array() {
                    return Ok(item.clone());
                }
                out.push(item.clone());
            }
        } else {
            for (index, item) in items.iter().enumerate() {
                let res = self.evaluate(pred, item, env)?;
                if self.predicate_selects(&res, index, len)? {
                    out.push(item.clone());
                }
            }
        }
        Ok(Value::seq(out))
    }

    fn predicate_selects(&self, res: &Value<'a>, index: usize, len: usize) -> Result<bool> {
        let nums: Option<Vec<f64>> = if is_numeric(res)? {
            res.as_f64().map(|n| vec![n])
        } else if res.is_array() && res.members().iter().all(|m| m.is_number()) {
            Some(res.members().iter().filter_map(Value::as_f64).collect())
        } else {
            None
        };
        match nums {
            Some(ns) => Ok(ns.into_iter().any(|n| position(n, len) == Some(index))),
            None => Ok(boolean(res).unwrap_or(false)),
        }
    }

    fn eval_binary(
        &self,
        op: BinOp,
        lhs: &'a Node,
        rhs: &'a Node,
        input: &Value<'a>,
        env: &Rc<Frame<'a>>,
    ) -> Result<Value<'a>> {
        let l = self.evaluate(lhs, input, env)?;
        match op {
            BinOp::And => {
                let lb = boolean(&l).unwrap_or(false);
                if !lb {
                    return Ok(Value::Bool(false));
                }
                let r = self.evaluate(rhs, input, env)?;
                return Ok(Value::Bool(boolean(&r).unwrap_or(false)));
            }
            BinOp::Or => {
                if boolean(&l).unwrap_or(false) {
                    return Ok(Value::Bool(true));
                }
                let r = self.evaluate(rhs, input, env)?;
                return Ok(Value::Bool(boolean(&r).unwrap_or(false)));
            }
            BinOp::Coalesce => {
                return if l.is_undefined() {
                    self.evaluate(rhs, input, env)
                } else {
                    Ok(l)
                };
            }
            BinOp::Elvis => {
                return if boolean(&l).unwrap_or(false) {
                    Ok(l)
                } else {
                    self.evaluate(rhs, input, env)
                };
            }
            _ => {}
        }
        let r = self.evaluate(rhs, input, env)?;
        match op {
            BinOp::Add | BinOp::Sub | BinOp::Mul | BinOp::Div | BinOp::Mod => {
                if !l.is_undefined() && !is_numeric(&l)? {
                    return Err(err(
                        "T2001",
                        format!(
                            "The left side of the {} operator must evaluate to a number",
                            op.symbol()
                        ),
                    )
                    .value(l.to_json_lossy()));
                }
                if !r.is_undefined() && !is_numeric(&r)? {
                    return Err(err(
                        "T2002",
                        format!(
                            "The right side of the {} operator must evaluate to a number",
                            op.symbol()
                        ),
                    )
                    .value(r.to_json_lossy()));
                }
                let (Some(a), Some(b)) = (l.as_f64(), r.as_f64()) else {
                    return Ok(Value::Undefined);
                };
                let n = match op {
                    BinOp::Add => a + b,
                    BinOp::Sub => a - b,
                    BinOp::Mul => a * b,
                    BinOp::Div => a / b,
                    _ => a % b,
                };
                Ok(Value::Number(n))
            }
            BinOp::Eq | BinOp::Ne => {
                if l.is_undefined() || r.is_undefined() {
                    return Ok(Value::Bool(false));
                }
                let eq = deep_equal(&l, &r);
                Ok(Value::Bool(if op == BinOp::Eq { eq } else { !eq }))
            }
            BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => {
                let lc = l.is_undefined() || l.is_string() || l.is_number();
                let rc = r.is_undefined() || r.is_string() || r.is_number();
                if !lc || !rc {
                    let bad = if !(l.is_string() || l.is_number()) {
                        &l
                    } else {
                        &r
                    };
                    return Err(err(
                        "T2010",
                        format!("The expressions either side of operator \"{}\" must evaluate to numeric or string values", op.symbol()),
                    )
                    .value(bad.to_json_lossy()));
                }
                if l.is_undefined() || r.is_undefined() {
                    return Ok(Value::Undefined);
                }
                let ord = match (&l, &r) {
                    (Value::Number(a), Value::Number(b)) => a.partial_cmp(b),
                    (a, b) if a.is_string() && b.is_string() => a.as_str().partial_cmp(&b.as_str()),
                    _ => {
                        return Err(err(
                            "T2009",
                            format!("The values {} and {} either side of operator \"{}\" must be of the same data type", functions::stringify(&l, false, &self.limits)?, functions::stringify(&r, false, &self.limits)?, op.symbol()),
                        )
                        .value(l.to_json_lossy()))
                    }
                };
                let Some(ord) = ord else {
                    return Ok(Value::Bool(false));
                };
                use std::cmp::Ordering::*;
                Ok(Value::Bool(match op {
                    BinOp::Lt => ord == Less,
                    BinOp::Le => ord != Greater,
                    BinOp::Gt => ord == Greater,
                    _ => ord != Less,
                }))
            }
            BinOp::Concat => {
                let mut out = String::new();
                for side in [&l, &r] {
                    match side {
                        Value::Undefined => {}
                        v if v.is_string() => out.push_str(v.as_str().unwrap_or_default()),
                        v => out.push_str(&functions::to_string(v, &self.limits)?),
                    }
                }
                Ok(Value::string(out))
            }
            BinOp::Range => {
                let int = |v: &Value<'_>| matches!(v, Value::Number(n) if n.fract() == 0.0 && n.is_finite());
                if !l.is_undefined() && !int(&l) {
                    return Err(err(
                        "T2003",
                        "The left side of the range operator (..) must evaluate to an integer",
                    )
                    .value(l.to_json_lossy()));
                }
                if !r.is_undefined() && !int(&r) {
                    return Err(err(
                        "T2004",
                        "The right side of the range operator (..) must evaluate to an integer",
                    )
                    .value(r.to_json_lossy()));
                }
                let (Some(a), Some(b)) = (l.as_f64(), r.as_f64()) else {
                    return Ok(Value::Undefined);
                };
                if a > b {
                    return Ok(Value::Undefined);
                }
                let size = b - a + 1.0;
                if size > 1e7 {
                    return Err(err("D2014", "The size of the sequence allocated by the range operator (..) must not exceed 1e7.  Attempted to allocate size.")
                        .value(serde_json::json!(size)));
                }
                if size > self.limits.max_array_items as f64 {
                    return Err(err(
                        "U1004",
                        format!(
                            "An array built by the expression has more than {} members",
                            self.limits.max_array_items
                        ),
                    ));
                }
                let (a, b) = (a as i64, b as i64);
                Ok(Value::seq(
                    (a..=b).map(|i| Value::Number(i as f64)).collect(),
                ))
            }
            BinOp::In => {
                if l.is_undefined() || r.is_undefined() {
                    return Ok(Value::Bool(false));
                }
                let items = if r.is_array() { r.members() } else { vec![r] };
                Ok(Value::Bool(items.iter().any(|m| strict_equal(m, &l))))
            }
            BinOp::And | BinOp::Or | BinOp::Coalesce | BinOp::Elvis => Ok(Value::Undefined),
        }
    }

    fn eval_group_expr(
        &self,
        g: &'a Group,
        input: Value<'a>,
        env: &Rc<Frame<'a>>,
    ) -> Result<Value<'a>> {
        self.eval_group(&g.pairs, g.pos, input, env)
    }

    fn eval_group(
        &self,
        pairs: &'a [(Node, Node)],
        pos: usize,
        input: Value<'a>,
        env: &Rc<Frame<'a>>,
    ) -> Result<Value<'a>> {
        if !input.is_array() && !matches!(input, Value::Tuples(_)) {
            // One context value: no grouping, each pair is evaluated once against it.
            let mut result: Object<'a> =
                IndexMap::with_capacity_and_hasher(pairs.len(), Default::default());
            let mut undefined_keys: Vec<String> = Vec::new();
            for (k, v) in pairs {
                let Some(key) = self.group_key(k, &input, env, pos)? else {
                    continue;
                };
                if result.contains_key(&key) || undefined_keys.contains(&key) {
                    return Err(
                        err("D1009", "Multiple key definitions evaluate to same key")
                            .at(pos)
                            .value(serde_json::json!(key)),
                    );
                }
                let value = self.evaluate(v, &input, env)?;
                if value.is_undefined() {
                    undefined_keys.push(key);
                } else {
                    result.insert(key, value);
                }
            }
            return Ok(Value::object(result));
        }
        let mut groups: Groups<'a> = IndexMap::default();
        if let Value::Tuples(ts) = &input {
            let ts: Vec<Tuple<'a>> = if ts.is_empty() {
                vec![Vec::new()]
            } else {
                (**ts).clone()
            };
            for t in ts {
                let tenv = self.frame_from_tuple(env, &t)?;
                let ctx = tuple_focus(&t);
                for (pi, (k, _)) in pairs.iter().enumerate() {
                    let key = self.group_key(k, &ctx, &tenv, pos)?;
                    let Some(key) = key else { continue };
                    group_insert(&mut groups, key, pi, pos, Data::Tuples(vec![t.clone()]))?;
                }
            }
        } else {
            let items = if input.is_array() {
                input.members()
            } else {
                vec![input]
            };
            let items = if items.is_empty() {
                vec![Value::Undefined]
            } else {
                items
            };
            for item in items {
                for (pi, (k, _)) in pairs.iter().enumerate() {
                    let key = self.group_key(k, &item, env, pos)?;
                    let Some(key) = key else { continue };
                    group_insert(&mut groups, key, pi, pos, Data::Values(item.clone()))?;
                }
            }
        }
        let mut result: Object<'a> =
            IndexMap::with_capacity_and_hasher(groups.len(), Default::default());
        for (key, (data, pi)) in groups {
            let v = match data {
                Data::Values(ctx) => self.evaluate(&pairs[pi].1, &ctx, env)?,
                Data::Tuples(ts) => {
                    let mut merged: Tuple<'a> = ts.first().cloned().unwrap_or_default();
                    for t in ts.iter().skip(1) {
                        for (k, v) in t {
                            let cur = tuple_get(&merged, k);
                            tuple_set(&mut merged, k.clone(), append(cur, v.clone()));
                        }
                    }
                    let ctx = tuple_get(&merged, "@");
                    merged.retain(|(k, _)| &**k != "@");
                    let tenv = self.frame_from_tuple(env, &merged)?;
                    self.evaluate(&pairs[pi].1, &ctx, &tenv)?
                }
            };
            if !v.is_undefined() {
                result.insert(key, v);
            }
        }
        Ok(Value::object(result))
    }

    fn group_key(
        &self,
        k: &'a Node,
        ctx: &Value<'a>,
        env: &Rc<Frame<'a>>,
        pos: usize,
    ) -> Result<Option<String>> {
        let key = self.evaluate(k, ctx, env)?;
        match key {
            Value::Undefined => Ok(None),
            ref s if s.is_string() => Ok(s.as_str().map(str::to_string)),
            other => Err(err(
                "T1003",
                format!(
                    "Key in object structure must evaluate to a string; got: {}",
                    functions::stringify(&other, false, &self.limits).unwrap_or_default()
                ),
            )
            .at(pos)
            .value(other.to_json_lossy())),
        }
    }

    fn eval_sort(
        &self,
        expr: &'a Node,
        input: Value<'a>,
        env: &Rc<Frame<'a>>,
    ) -> Result<Value<'a>> {
        let Kind::Sort(terms) = &expr.kind else {
            return Ok(input);
        };
        if let Value::Tuples(ts) = &input {
            if ts.len() <= 1 {
                return Ok(input.clone());
            }
            let mut keyed = Vec::with_capacity(ts.len());
            for t in ts.iter() {
                let tenv = self.frame_from_tuple(env, t)?;
                keyed.push((self.sort_keys(terms, &tuple_focus(t), &tenv)?, t.clone()));
            }
            let sorted = self.sort_keyed(terms, keyed, expr.pos)?;
            return Ok(Value::Tuples(Rc::new(sorted)));
        }
        if input.is_undefined() {
            return Ok(input);
        }
        let items = input.members();
        if items.len() <= 1 {
            return Ok(input);
        }
        let mut keyed = Vec::with_capacity(items.len());
        for item in items {
            keyed.push((self.sort_keys(terms, &item, env)?, item));
        }
        Ok(Value::array(self.sort_keyed(terms, keyed, expr.pos)?))
    }

    fn sort_keys(
        &self,
        terms: &'a [SortTerm],
        ctx: &Value<'a>,
        env: &Rc<Frame<'a>>,
    ) -> Result<Vec<Value<'a>>> {
        terms
            .iter()
            .map(|t| self.evaluate(&t.expr, ctx, env))
            .collect()
    }

    fn sort_keyed<T>(
        &self,
        terms: &[SortTerm],
        mut keyed: Vec<(Vec<Value<'a>>, T)>,
        pos: usize,
    ) -> Result<Vec<T>> {
        for (ti, _) in terms.iter().enumerate() {
            let mut has_str = false;
            let mut has_num = false;
            for (keys, _) in &keyed {
                match &keys[ti] {
                    Value::Undefined => {}
                    Value::Number(_) => has_num = true,
                    v if v.is_string() => has_str = true,
                    other => {
                        return Err(err("T2008", "The expressions within an order-by clause must evaluate to numeric or string values")
                            .at(pos)
                            .value(other.to_json_lossy()))
                    }
                }
            }
            if has_str && has_num {
                return Err(err(
                    "T2007",
                    "Type mismatch within order-by clause. All values must be of the same type",
                )
                .at(pos));
            }
        }
        keyed.sort_by(|(a, _), (b, _)| {
            use std::cmp::Ordering;
            for (ti, term) in terms.iter().enumerate() {
                let (x, y) = (&a[ti], &b[ti]);
                let ord = match (x.is_undefined(), y.is_undefined()) {
                    (true, true) => Ordering::Equal,
                    (true, false) => return Ordering::Greater,
                    (false, true) => return Ordering::Less,
                    _ => match (x, y) {
                        (Value::Number(p), Value::Number(q)) => {
                            p.partial_cmp(q).unwrap_or(Ordering::Equal)
                        }
                        _ => x.as_str().cmp(&y.as_str()),
                    },
                };
                let ord = if term.descending { ord.reverse() } else { ord };
                if ord != Ordering::Equal {
                    return ord;
                }
            }
            Ordering::Equal
        });
        Ok(keyed.into_iter().map(|(_, v)| v).collect())
    }

    fn proc_name(procedure: &Node) -> Option<String> {
        match &procedure.kind {
            Kind::Path { steps, .. } => match steps.first().map(|s| &s.kind) {
                Some(Kind::Name(n)) => Some(n.to_string()),
                _ => None,
            },
            Kind::Variable(v) => Some(v.to_string()),
            _ => None,
        }
    }

    pub(crate) fn eval_function(
        &self,
        expr: &'a Node,
        input: &Value<'a>,
        env: &Rc<Frame<'a>>,
        applyto: Option<Value<'a>>,
    ) -> Result<Value<'a>> {
        let (Kind::Call { procedure, args } | Kind::Partial { procedure, args }) = &expr.kind
        else {
            return Ok(Value::Undefined);
        };
        let proc = self.evaluate(procedure, input, env)?;
        let name = Self::proc_name(procedure);
        if proc.is_undefined() {
            if let (Kind::Path { .. }, Some(n)) = (&procedure.kind, &name) {
                if !self.lookup(env, n).is_undefined() {
                    return Err(err(
                        "T1005",
                        format!("Attempted to invoke a non-function. Did you mean ${n}?"),
                    )
                    .at(expr.pos)
                    .token(n.clone()));
                }
            }
        }
        let mut evaluated = Vec::with_capacity(args.len() + 1);
        if let Some(a) = applyto {
            evaluated.push(a);
        }
        for a in args {
            evaluated.push(self.evaluate(a, input, env)?);
        }
        self.apply(&proc, evaluated, input, env).map_err(|mut e| {
            if e.position.is_none() {
                e.position = Some(expr.pos);
            }
            if e.token.is_none() {
                e.token = name.clone();
            }
            e
        })
    }

    pub(crate) fn apply(
        &self,
        proc: &Value<'a>,
        args: Vec<Value<'a>>,
        input: &Value<'a>,
        env: &Rc<Frame<'a>>,
    ) -> Result<Value<'a>> {
        let mut result = self.apply_inner(proc, args, input, env)?;
        while let Some((call, tenv, tin)) = thunk_parts(&result) {
            let Kind::Call { procedure, args } = &call.kind else {
                break;
            };
            let next = self.evaluate(procedure, &tin, &tenv)?;
            let mut evaluated = Vec::with_capacity(args.len());
            for a in args {
                evaluated.push(self.evaluate(a, &tin, &tenv)?);
            }
            let name = Self::proc_name(procedure);
            result = self
                .apply_inner(&next, evaluated, input, env)
                .map_err(|mut e| {
                    if e.token.is_none() {
                        e.token = name;
                    }
                    e
                })?;
        }
        Ok(result)
    }

    fn apply_inner(
        &self,
        proc: &Value<'a>,
        args: Vec<Value<'a>>,
        input: &Value<'a>,
        env: &Rc<Frame<'a>>,
    ) -> Result<Value<'a>> {
        let Value::Func(f) = proc else {
            return Err(
                err("T1006", "Attempted to invoke a non-function").value(proc.to_json_lossy())
            );
        };
        match &**f {
            Func::Lambda {
                def,
                env: cenv,
                input: cin,
            } => {
                let args = match &def.signature {
                    Some(sig) => sig.validate(args, Some(input))?,
                    None => args,
                };
                let frame = self.frame(Some(cenv));
                let mut args = args.into_iter();
                for p in &def.params {
                    self.bind(&frame, Rc::from(&**p), args.next().unwrap_or_default())?;
                }
                let def: &'a Lambda = def;
                self.evaluate(&def.body, cin, &frame)
            }
            Func::Thunk { .. } => Ok(proc.clone()),
            Func::Builtin(b) => {
                let args = b
                    .signature
                    .validate(args, Some(input))
                    .map_err(|e| e.token(b.name))?;
                (b.implementation)(functions::Call {
                    ctx: self,
                    args,
                    input,
                    env,
                })
                .map_err(|mut e| {
                    if e.function_name.is_none() {
                        e.function_name = Some(b.name.to_string());
                    }
                    e
                })
            }
            Func::Partial { func, args: pargs } => {
                let mut supplied = args.into_iter();
                let full: Vec<Value<'a>> = pargs
                    .iter()
                    .map(|a| match a {
                        Some(v) => v.clone(),
                        None => supplied.next().unwrap_or_default(),
                    })
                    .collect();
                self.apply(func, full, input, env)
            }
            Func::Regex(re) => functions::regex_call(re, args.first()),
            Func::Transform { node, env: tenv } => {
                self.transform(node, args.into_iter().next().unwrap_or_default(), tenv)
            }
            Func::Chain(first, second) => {
                let mid = self.apply(first, args, input, env)?;
                self.apply(second, vec![mid], input, env)
            }
        }
    }

    fn eval_partial(
        &self,
        expr: &'a Node,
        procedure: &'a Node,
        args: &'a [Node],
        input: &Value<'a>,
        env: &Rc<Frame<'a>>,
    ) -> Result<Value<'a>> {
        let mut evaluated = Vec::with_capacity(args.len());
        for a in args {
            if matches!(a.kind, Kind::Placeholder) {
                evaluated.push(None);
            } else {
                evaluated.push(Some(self.evaluate(a, input, env)?));
            }
        }
        let proc = self.evaluate(procedure, input, env)?;
        let name = Self::proc_name(procedure);
        if !proc.is_function() {
            if proc.is_undefined() {
                if let (Kind::Path { .. }, Some(n)) = (&procedure.kind, &name) {
                    if !self.lookup(env, n).is_undefined() {
                        return Err(err(
                            "T1007",
                            format!(
                                "Attempted to partially apply a non-function. Did you mean ${n}?"
                            ),
                        )
                        .at(expr.pos)
                        .token(n.clone()));
                    }
                }
            }
            let mut e = err("T1008", "Attempted to partially apply a non-function").at(expr.pos);
            e.token = name;
            return Err(e);
        }
        Ok(Value::Func(Rc::new(Func::Partial {
            func: proc,
            args: evaluated,
        })))
    }

    fn eval_apply(
        &self,
        expr: &'a Node,
        lhs: &'a Node,
        rhs: &'a Node,
        input: &Value<'a>,
        env: &Rc<Frame<'a>>,
    ) -> Result<Value<'a>> {
        let l = self.evaluate(lhs, input, env)?;
        if matches!(rhs.kind, Kind::Call { .. }) {
            return self.eval_function(rhs, input, env, Some(l));
        }
        let func = self.evaluate(rhs, input, env)?;
        if !func.is_function() {
            return Err(err(
                "T2006",
                "The right side of the function application operator ~> must be a function",
            )
            .at(expr.pos)
            .value(func.to_json_lossy()));
        }
        if l.is_function() {
            return Ok(Value::Func(Rc::new(Func::Chain(l, func))));
        }
        self.apply(&func, vec![l], input, env)
    }

    fn transform(&self, node: &'a Node, obj: Value<'a>, env: &Rc<Frame<'a>>) -> Result<Value<'a>> {
        let Kind::Transform {
            pattern,
            update,
            delete,
        } = &node.kind
        else {
            return Ok(Value::Undefined);
        };
        if obj.is_undefined() {
            return Ok(Value::Undefined);
        }
        if !(obj.is_object() || obj.is_array()) {
            return Err(err(
                "T0410",
                "Argument 1 of function transform does not match function signature",
            )
            .value(obj.to_json_lossy()));
        }
        let copy = deep_copy(&obj);
        let matches = self.evaluate(pattern, &copy, env)?;
        let mut changes: Vec<Change<'a>> = Vec::new();
        for m in matches.to_members() {
            let Value::Object(rc) = &m else { continue };
            let upd = self.evaluate(update, &m, env)?;
            if !upd.is_undefined() && !upd.is_object() {
                return Err(err("T2011", "The insert/update clause of the transform expression must evaluate to an object")
                    .at(update.pos)
                    .value(upd.to_json_lossy()));
            }
            let mut dels = Vec::new();
            if let Some(d) = delete {
                let dv = self.evaluate(d, &m, env)?;
                if !dv.is_undefined() {
                    let items = if dv.is_array() {
                        dv.members()
                    } else {
                        vec![dv.clone()]
                    };
                    if !items.iter().all(|i| i.is_string()) {
                        return Err(err("T2012", "The delete clause of the transform expression must evaluate to a string or array of strings")
                            .at(d.pos)
                            .value(dv.to_json_lossy()));
                    }
                    dels = items
                        .iter()
                        .filter_map(|i| i.as_str().map(str::to_string))
                        .collect();
                }
            }
            changes.push((
                Rc::as_ptr(rc),
                if upd.is_undefined() { None } else { Some(upd) },
                dels,
            ));
        }
        Ok(rebuild(&copy, &changes))
    }
}

/// The parts of a tail-call thunk.
#[allow(clippy::type_complexity)]
fn thunk_parts<'a>(v: &Value<'a>) -> Option<(&'a Node, Rc<Frame<'a>>, Value<'a>)> {
    match v {
        Value::Func(f) => match &**f {
            Func::Thunk { call, env, input } => Some((*call, env.clone(), input.clone())),
            _ => None,
        },
        _ => None,
    }
}

/// The members grouped under one key of an object constructor.
enum Data<'a> {
    Values(Value<'a>),
    Tuples(Vec<Tuple<'a>>),
}

type Groups<'a> = IndexMap<String, (Data<'a>, usize), foldhash::fast::RandomState>;

fn duplicate_key(key: &str, pos: usize) -> Error {
    err("D1009", "Multiple key definitions evaluate to same key")
        .at(pos)
        .value(serde_json::json!(key))
}

/// Adds a member under `key` for pair `pi`; two different pairs producing one key is D1009.
fn group_insert<'a>(
    groups: &mut Groups<'a>,
    key: String,
    pi: usize,
    pos: usize,
    member: Data<'a>,
) -> Result<()> {
    match groups.get_mut(&key) {
        Some((data, idx)) => {
            if *idx != pi {
                return Err(duplicate_key(&key, pos));
            }
            match (data, member) {
                (Data::Tuples(v), Data::Tuples(m)) => v.extend(m),
                (Data::Values(v), Data::Values(m)) => *v = append(std::mem::take(v), m),
                _ => {}
            }
        }
        None => {
            groups.insert(key, (member, pi));
        }
    }
    Ok(())
}

type Change<'a> = (*const Obj<'a>, Option<Value<'a>>, Vec<String>);

fn rebuild<'a>(v: &Value<'a>, changes: &[Change<'a>]) -> Value<'a> {
    match v {
        Value::Object(rc) => {
            let mut o: Object<'a> = rc
                .iter()
                .map(|(k, v)| (k.clone(), rebuild(v, changes)))
                .collect();
            let ptr = Rc::as_ptr(rc);
            for (p, upd, dels) in changes {
                if *p == ptr {
                    if let Some(u) = upd {
                        for (k, v) in u.entries() {
                            o.insert(k, v);
                        }
                    }
                    for d in dels {
                        o.shift_remove(d);
                    }
                }
            }
            Value::object(o)
        }
        Value::Array(a) => {
            let items: Vec<Value<'a>> = a.items.iter().map(|m| rebuild(m, changes)).collect();
            Value::Array(Rc::new(Array {
                depth: depth_of(&items),
                funcs: funcs_in(&items),
                items,
                seq: a.seq,
                keep_singleton: Cell::new(a.keep_singleton.get()),
                cons: a.cons,
                outer_wrapper: a.outer_wrapper,
            }))
        }
        other => other.clone(),
    }
}

/// A copy in which every array and object is freshly owned (jsonata-js clones via JSON).
pub(crate) fn deep_copy<'a>(v: &Value<'a>) -> Value<'a> {
    match v {
        Value::JObj(_) | Value::Object(_) => Value::object(
            v.entries()
                .into_iter()
                .map(|(k, v)| (k, deep_copy(&v)))
                .collect(),
        ),
        Value::JArr(_) | Value::Array(_) => {
            Value::array(v.members().iter().map(deep_copy).collect())
        }
        other => other.clone(),
    }
}

fn strict_equal<'a>(a: &Value<'a>, b: &Value<'a>) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x == y,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::Null, Value::Null) => true,
        (x, y) if x.is_string() && y.is_string() => x.as_str() == y.as_str(),
        (Value::Object(x), Value::Object(y)) => Rc::ptr_eq(x, y),
        (Value::JObj(x), Value::JObj(y)) => std::ptr::eq(*x, *y),
        _ => false,
    }
}

/// `fn.lookup`: field access over sequences.
pub(crate) fn lookup_field<'a>(input: &Value<'a>, key: &str) -> Value<'a> {
    match input {
        Value::JArr(_) | Value::Array(_) => {
            let mut out = Vec::new();
            for m in input.members() {
                let r = lookup_field(&m, key);
                if r.is_undefined() {
                    continue;
                }
                if r.is_array() {
                    out.extend(r.members());
                } else {
                    out.push(r);
                }
            }
            Value::seq(out)
        }
        Value::JObj(o) => crate::value::json_get(o, key)
            .map(Value::from_json)
            .unwrap_or_default(),
        Value::Object(o) => o.get(key).cloned().unwrap_or_default(),
        Value::Host(h) => h.field(key).map(Value::from_json).unwrap_or_default(),
        _ => Value::Undefined,
    }
}

fn eval_wildcard<'a>(input: &Value<'a>) -> Value<'a> {
    let input = if input.is_outer_wrapper() && !input.is_empty() {
        input.get(0)
    } else {
        input.clone()
    };
    let mut out = Vec::new();
    let mut plain = false;
    let values: Vec<Value<'a>> = if input.is_object() {
        input.entries().into_iter().map(|(_, v)| v).collect()
    } else if input.is_array() {
        input.members()
    } else {
        Vec::new()
    };
    for v in values {
        if v.is_array() {
            flatten_into(v, &mut out);
            plain = true;
        } else {
            out.push(v);
        }
    }
    if plain {
        Value::array(out)
    } else {
        Value::seq(out)
    }
}

fn eval_descendants<'a>(input: &Value<'a>) -> Value<'a> {
    if input.is_undefined() {
        return Value::Undefined;
    }
    let mut out = Vec::new();
    fn recurse<'a>(v: &Value<'a>, out: &mut Vec<Value<'a>>) {
        if v.is_array() {
            for m in v.members() {
                recurse(&m, out);
            }
        } else {
            out.push(v.clone());
            if v.is_object() {
                for (_, c) in v.entries() {
                    recurse(&c, out);
                }
            }
        }
    }
    recurse(input, &mut out);
    if out.len() == 1 {
        out.pop().unwrap_or_default()
    } else {
        Value::seq(out)
    }
}
