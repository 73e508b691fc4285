//! Values during evaluation. Input JSON is borrowed (`J*` variants), never copied; values built by
//! the expression are reference-counted. Arrays carry jsonata-js's sequence flags.

use std::cell::Cell;
use std::rc::Rc;

use indexmap::IndexMap;
use serde_json::Value as J;

use crate::eval::Func;

/// Values an error's `value` may span (see [`Value::to_json_lossy`]).
const ERROR_VALUE_LIMIT: usize = 10_000;

/// An ordered JSON-like object built during evaluation.
pub(crate) type Object<'a> = IndexMap<String, Value<'a>, foldhash::fast::RandomState>;

/// A tuple of a tuple stream (focus `@`, index `#` and parent `%` bindings plus `@`).
pub(crate) type Tuple<'a> = Vec<(Rc<str>, Value<'a>)>;

/// An object built during evaluation, with its nesting depth (see [`Value::depth`]).
#[derive(Debug, Default)]
pub(crate) struct Obj<'a> {
    pub(crate) map: Object<'a>,
    /// 1 + the deepest member's depth, computed once when the object is wrapped.
    pub(crate) depth: u32,
    /// Whether a function is among its members, at any depth (see [`Value::holds_function`]).
    pub(crate) funcs: bool,
}

impl<'a> std::ops::Deref for Obj<'a> {
    type Target = Object<'a>;
    fn deref(&self) -> &Object<'a> {
        &self.map
    }
}

/// The depth of a container holding `members`: one more than the deepest member.
pub(crate) fn depth_of<'v, 'a: 'v>(members: impl IntoIterator<Item = &'v Value<'a>>) -> u32 {
    1 + members.into_iter().map(Value::depth).max().unwrap_or(0)
}

/// Whether a container holding `members` holds a function, at any depth. O(members): each
/// member carries its own answer.
pub(crate) fn funcs_in<'v, 'a: 'v>(members: impl IntoIterator<Item = &'v Value<'a>>) -> bool {
    members.into_iter().any(Value::holds_function)
}

/// An array with jsonata-js's flags.
#[derive(Debug, Default)]
pub(crate) struct Array<'a> {
    pub(crate) items: Vec<Value<'a>>,
    /// 1 + the deepest member's depth (set by every constructor, see [`Value::depth`]).
    pub(crate) depth: u32,
    /// Whether a function is among its members, at any depth (set by every constructor, see
    /// [`Value::holds_function`]).
    pub(crate) funcs: bool,
    /// A sequence (result of a path), which collapses to its single member.
    pub(crate) seq: bool,
    pub(crate) keep_singleton: Cell<bool>,
    /// Built by an array constructor: not flattened by path steps.
    pub(crate) cons: bool,
    pub(crate) outer_wrapper: bool,
}

/// A value.
#[derive(Debug, Clone, Default)]
pub(crate) enum Value<'a> {
    /// No value (JavaScript `undefined`).
    #[default]
    Undefined,
    Null,
    Bool(bool),
    Number(f64),
    Str(Rc<str>),
    JStr(&'a str),
    JArr(&'a [J]),
    JObj(&'a serde_json::Map<String, J>),
    Array(Rc<Array<'a>>),
    Object(Rc<Obj<'a>>),
    Func(Rc<Func<'a>>),
    /// An object the host resolves member by member (e.g. Step Functions' `$states`).
    Host(&'a dyn crate::HostObject),
    /// A tuple stream (internal to path evaluation).
    Tuples(Rc<Vec<Tuple<'a>>>),
}

impl<'a> Value<'a> {
    pub(crate) fn from_json(j: &'a J) -> Value<'a> {
        match j {
            J::Null => Value::Null,
            J::Bool(b) => Value::Bool(*b),
            J::Number(n) => Value::Number(n.as_f64().unwrap_or(f64::NAN)),
            J::String(s) => Value::JStr(s),
            J::Array(a) => Value::JArr(a),
            J::Object(o) => Value::JObj(o),
        }
    }

    /// Converts owned JSON into a value that owns its data.
    pub(crate) fn from_owned_json(j: J) -> Value<'a> {
        match j {
            J::Null => Value::Null,
            J::Bool(b) => Value::Bool(b),
            J::Number(n) => Value::Number(n.as_f64().unwrap_or(f64::NAN)),
            J::String(s) => Value::Str(s.into()),
            J::Array(a) => Value::array(a.into_iter().map(Value::from_owned_json).collect()),
            J::Object(o) => Value::object(
                o.into_iter()
                    .map(|(k, v)| (k, Value::from_owned_json(v)))
                    .collect(),
            ),
        }
    }

    pub(crate) fn string(s: impl Into<Rc<str>>) -> Value<'a> {
        Value::Str(s.into())
    }

    /// A plain array value.
    pub(crate) fn array(items: Vec<Value<'a>>) -> Value<'a> {
        Value::Array(Rc::new(Array {
            depth: depth_of(&items),
            funcs: funcs_in(&items),
            items,
            ..Default::default()
        }))
    }

    /// A sequence.
    pub(crate) fn seq(items: Vec<Value<'a>>) -> Value<'a> {
        Value::Array(Rc::new(Array {
            depth: depth_of(&items),
            funcs: funcs_in(&items),
            items,
            seq: true,
            ..Default::default()
        }))
    }

    pub(crate) fn object(o: Object<'a>) -> Value<'a> {
        let depth = depth_of(o.values());
        let funcs = funcs_in(o.values());
        Value::Object(Rc::new(Obj {
            map: o,
            depth,
            funcs,
        }))
    }

    /// Nesting depth of arrays and objects *built by the evaluation* (`Limits::max_value_depth`
    /// bounds it): a scalar is 0, a built array or object one more than its deepest member, and
    /// borrowed input JSON counts 1 (its own depth is the host's to bound). O(1): containers
    /// carry their depth, so a `$reduce` wrapping its accumulator is stopped before recursive
    /// code (conversion, drop) ever sees a chain deep enough to overflow the stack.
    pub(crate) fn depth(&self) -> u32 {
        match self {
            Value::Array(a) => a.depth,
            Value::Object(o) => o.depth,
            Value::JArr(_) | Value::JObj(_) | Value::Host(_) | Value::Tuples(_) => 1,
            _ => 0,
        }
    }

    /// Whether this value is or holds a function, at any depth. O(1) for built containers (they
    /// carry the answer; values are never changed after they are built, and sharing one array
    /// many times over would make a walk exponential), O(members) for a tuple stream.
    pub(crate) fn holds_function(&self) -> bool {
        match self {
            Value::Func(_) => true,
            Value::Array(a) => a.funcs,
            Value::Object(o) => o.funcs,
            Value::Tuples(t) => t.iter().any(|tuple| funcs_in(tuple.iter().map(|(_, v)| v))),
            _ => false,
        }
    }

    /// Whether this value spans more than `limit` JSON values (members of arrays and objects
    /// counted one by one, borrowed input JSON as one). Iterative and stops at the limit, so
    /// a value sharing one array many times over (`[$a, $a]` doubled 40 times: 2^40 values, 40
    /// allocations) is measured in O(limit) instead of being converted forever.
    pub(crate) fn spans_more_than(&self, limit: usize) -> bool {
        if !matches!(self, Value::Array(_) | Value::Object(_) | Value::Tuples(_)) {
            return limit == 0;
        }
        let mut count = 0usize;
        let mut stack: Vec<&Value<'a>> = vec![self];
        while let Some(v) = stack.pop() {
            count += 1;
            if count > limit {
                return true;
            }
            match v {
                Value::Array(a) => stack.extend(a.items.iter()),
                Value::Object(o) => stack.extend(o.values()),
                Value::Tuples(t) => stack.extend(t.iter().flat_map(|t| t.iter().map(|(_, v)| v))),
                _ => {}
            }
        }
        false
    }

    pub(crate) fn is_undefined(&self) -> bool {
        matches!(self, Value::Undefined)
    }

    pub(crate) fn is_array(&self) -> bool {
        matches!(self, Value::JArr(_) | Value::Array(_))
    }

    pub(crate) fn is_object(&self) -> bool {
        matches!(self, Value::JObj(_) | Value::Object(_) | Value::Host(_))
    }

    pub(crate) fn is_function(&self) -> bool {
        matches!(self, Value::Func(_))
    }

    pub(crate) fn is_string(&self) -> bool {
        matches!(self, Value::Str(_) | Value::JStr(_))
    }

    pub(crate) fn is_number(&self) -> bool {
        matches!(self, Value::Number(_))
    }

    pub(crate) fn is_sequence(&self) -> bool {
        matches!(self, Value::Array(a) if a.seq)
    }

    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            Value::JStr(s) => Some(s),
            _ => None,
        }
    }

    pub(crate) fn as_f64(&self) -> Option<f64> {
        match self {
            Value::Number(n) => Some(*n),
            _ => None,
        }
    }

    /// The signature symbol of this value's type.
    pub(crate) fn symbol(&self) -> char {
        match self {
            Value::Undefined => 'm',
            Value::Null => 'l',
            Value::Bool(_) => 'b',
            Value::Number(_) => 'n',
            Value::Str(_) | Value::JStr(_) => 's',
            Value::JArr(_) | Value::Array(_) | Value::Tuples(_) => 'a',
            Value::JObj(_) | Value::Object(_) | Value::Host(_) => 'o',
            Value::Func(_) => 'f',
        }
    }

    /// Number of members when an array.
    pub(crate) fn len(&self) -> usize {
        match self {
            Value::JArr(a) => a.len(),
            Value::Array(a) => a.items.len(),
            Value::Tuples(t) => t.len(),
            _ => 0,
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Member `i` of an array.
    pub(crate) fn get(&self, i: usize) -> Value<'a> {
        match self {
            Value::JArr(a) => a.get(i).map(Value::from_json).unwrap_or_default(),
            Value::Array(a) => a.items.get(i).cloned().unwrap_or_default(),
            _ => Value::Undefined,
        }
    }

    /// The members of an array (empty for anything else).
    pub(crate) fn members(&self) -> Vec<Value<'a>> {
        match self {
            Value::JArr(a) => a.iter().map(Value::from_json).collect(),
            Value::Array(a) => a.items.clone(),
            _ => Vec::new(),
        }
    }

    /// Arrays as their members, anything else (not undefined) as a one-member list.
    pub(crate) fn to_members(&self) -> Vec<Value<'a>> {
        match self {
            Value::Undefined => Vec::new(),
            v if v.is_array() => v.members(),
            v => vec![v.clone()],
        }
    }

    /// Field lookup on an object.
    pub(crate) fn field(&self, key: &str) -> Value<'a> {
        match self {
            Value::JObj(o) => json_get(o, key).map(Value::from_json).unwrap_or_default(),
            Value::Object(o) => o.get(key).cloned().unwrap_or_default(),
            Value::Host(h) => h.field(key).map(Value::from_json).unwrap_or_default(),
            _ => Value::Undefined,
        }
    }

    /// The entries of an object in order.
    pub(crate) fn entries(&self) -> Vec<(String, Value<'a>)> {
        match self {
            Value::JObj(o) => o
                .iter()
                .map(|(k, v)| (k.clone(), Value::from_json(v)))
                .collect(),
            Value::Object(o) => o.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            Value::Host(h) => h
                .keys()
                .into_iter()
                .filter_map(|k| h.field(k).map(|v| (k.to_string(), Value::from_json(v))))
                .collect(),
            _ => Vec::new(),
        }
    }

    /// Number of members of an object (0 for anything else).
    pub(crate) fn len_keys(&self) -> usize {
        match self {
            Value::JObj(o) => o.len(),
            Value::Object(o) => o.len(),
            _ => 0,
        }
    }

    /// The keys of an object in order.
    pub(crate) fn keys(&self) -> Vec<String> {
        match self {
            Value::JObj(o) => o.keys().cloned().collect(),
            Value::Object(o) => o.keys().cloned().collect(),
            Value::Host(h) => h
                .keys()
                .into_iter()
                .filter(|k| h.field(k).is_some())
                .map(str::to_string)
                .collect(),
            _ => Vec::new(),
        }
    }

    pub(crate) fn is_cons(&self) -> bool {
        matches!(self, Value::Array(a) if a.cons)
    }

    pub(crate) fn is_outer_wrapper(&self) -> bool {
        matches!(self, Value::Array(a) if a.outer_wrapper)
    }

    /// Converts to JSON; `None` for undefined. Functions become `""` as in jsonata-js's `$string`.
    pub(crate) fn to_json(&self) -> Option<J> {
        Some(match self {
            Value::Undefined => return None,
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Number(n) => number_to_json(*n),
            Value::Str(s) => J::String(s.to_string()),
            Value::JStr(s) => J::String(s.to_string()),
            Value::JArr(a) => J::Array(a.to_vec()),
            Value::JObj(o) => J::Object((*o).clone()),
            Value::Array(a) => J::Array(a.items.iter().filter_map(Value::to_json).collect()),
            Value::Object(o) => J::Object(
                o.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.to_json()?)))
                    .collect(),
            ),
            Value::Func(_) => J::String(String::new()),
            Value::Host(_) => J::Object(
                self.entries()
                    .into_iter()
                    .filter_map(|(k, v)| Some((k, v.to_json()?)))
                    .collect(),
            ),
            Value::Tuples(t) => {
                J::Array(t.iter().filter_map(|t| tuple_focus(t).to_json()).collect())
            }
        })
    }

    /// Like [`Value::to_json`], but moves what this value owns alone instead of copying it.
    pub(crate) fn into_json(self) -> Option<J> {
        match self {
            Value::Object(o) => match Rc::try_unwrap(o) {
                Ok(Obj { map, .. }) => {
                    let mut out = serde_json::Map::with_capacity(map.len());
                    for (k, v) in map {
                        if let Some(j) = v.into_json() {
                            out.insert(k, j);
                        }
                    }
                    Some(J::Object(out))
                }
                Err(shared) => Value::Object(shared).to_json(),
            },
            Value::Array(a) => match Rc::try_unwrap(a) {
                Ok(arr) => Some(J::Array(
                    arr.items.into_iter().filter_map(Value::into_json).collect(),
                )),
                Err(shared) => Value::Array(shared).to_json(),
            },
            Value::Str(s) => Some(J::String(s.to_string())),
            other => other.to_json(),
        }
    }

    /// JSON for error values; undefined becomes null, and a value spanning more than
    /// [`ERROR_VALUE_LIMIT`] values a short note instead (an error must not cost more than the
    /// evaluation that failed).
    pub(crate) fn to_json_lossy(&self) -> J {
        if self.spans_more_than(ERROR_VALUE_LIMIT) {
            return J::String(format!("(a value of more than {ERROR_VALUE_LIMIT} values)"));
        }
        self.to_json().unwrap_or(J::Null)
    }
}

/// Member lookup that scans small objects instead of hashing the key (most JSON objects are
/// small, and serde_json's map hashes with SipHash).
pub(crate) fn json_get<'j>(o: &'j serde_json::Map<String, J>, key: &str) -> Option<&'j J> {
    if o.len() <= 12 {
        o.iter().find(|(k, _)| k.as_str() == key).map(|(_, v)| v)
    } else {
        o.get(key)
    }
}

pub(crate) fn tuple_focus<'a>(t: &Tuple<'a>) -> Value<'a> {
    t.iter()
        .find(|(k, _)| &**k == "@")
        .map(|(_, v)| v.clone())
        .unwrap_or_default()
}

/// A JSON number: integers (within 2^53) as integers, so `1` prints as `1`.
pub fn number_to_json(n: f64) -> J {
    if n.fract() == 0.0 && n.abs() < 9_007_199_254_740_992.0 {
        if n == 0.0 {
            return J::from(0);
        }
        J::from(n as i64)
    } else {
        serde_json::Number::from_f64(n)
            .map(J::Number)
            .unwrap_or(J::Null)
    }
}

/// Deep equality as jsonata-js's `isDeepEqual`.
pub(crate) fn deep_equal<'a>(a: &Value<'a>, b: &Value<'a>) -> bool {
    match (a, b) {
        (Value::Undefined, Value::Undefined) | (Value::Null, Value::Null) => true,
        (Value::Bool(x), Value::Bool(y)) => x == y,
        (Value::Number(x), Value::Number(y)) => x == y,
        (x, y) if x.is_string() && y.is_string() => x.as_str() == y.as_str(),
        (x, y) if x.is_array() && y.is_array() => {
            x.len() == y.len() && (0..x.len()).all(|i| deep_equal(&x.get(i), &y.get(i)))
        }
        (x, y) if x.is_object() && y.is_object() => {
            let xe = x.entries();
            xe.len() == y.keys().len() && xe.iter().all(|(k, v)| deep_equal(v, &y.field(k)))
        }
        (Value::Func(x), Value::Func(y)) => Rc::ptr_eq(x, y),
        _ => false,
    }
}

/// JavaScript's `Number.prototype.toString()`.
pub fn js_number_string(n: f64) -> String {
    crate::numfmt::js_number_to_string(n)
}
