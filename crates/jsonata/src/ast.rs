//! The processed syntax tree that the evaluator walks (jsonata-js's `processAST` output).

use std::sync::atomic::{AtomicI32, AtomicUsize};
use std::sync::Arc;

use crate::signature::Signature;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Mod,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Concat,
    And,
    Or,
    In,
    Range,
    Coalesce,
    Elvis,
}

impl BinOp {
    pub(crate) fn symbol(self) -> &'static str {
        match self {
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Mod => "%",
            BinOp::Eq => "=",
            BinOp::Ne => "!=",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
            BinOp::Concat => "&",
            BinOp::And => "and",
            BinOp::Or => "or",
            BinOp::In => "in",
            BinOp::Range => "..",
            BinOp::Coalesce => "??",
            BinOp::Elvis => "?:",
        }
    }
}

/// A parent-operator slot (`%`): the label under which the ancestor is bound in a tuple.
#[derive(Debug)]
pub(crate) struct Slot {
    pub(crate) label: AtomicUsize,
    pub(crate) level: AtomicI32,
    pub(crate) index: usize,
}

#[derive(Debug, Clone)]
pub(crate) enum Stage {
    Filter(Node),
    Index(Arc<str>),
}

#[derive(Debug, Clone)]
pub(crate) struct SortTerm {
    pub(crate) expr: Node,
    pub(crate) descending: bool,
}

#[derive(Debug, Clone)]
pub(crate) struct Lambda {
    pub(crate) params: Vec<Arc<str>>,
    pub(crate) signature: Option<Arc<Signature>>,
    pub(crate) body: Node,
}

#[derive(Debug, Clone)]
pub(crate) enum Kind {
    Path {
        steps: Vec<Node>,
        keep_singleton: bool,
    },
    Name(Arc<str>),
    Str(Arc<str>),
    Num(f64),
    Bool(bool),
    Null,
    Wildcard,
    Descendant,
    Parent(Arc<Slot>),
    Variable(Arc<str>),
    Regex(Arc<crate::regex::Regex>),
    Binary {
        op: BinOp,
        lhs: Box<Node>,
        rhs: Box<Node>,
    },
    Neg(Box<Node>),
    Array(Vec<Node>),
    Object(Vec<(Node, Node)>),
    Condition {
        cond: Box<Node>,
        then: Box<Node>,
        otherwise: Option<Box<Node>>,
    },
    Block(Vec<Node>),
    Bind {
        name: Arc<str>,
        rhs: Box<Node>,
    },
    Call {
        procedure: Box<Node>,
        args: Vec<Node>,
    },
    Partial {
        procedure: Box<Node>,
        args: Vec<Node>,
    },
    Placeholder,
    Lambda(Arc<Lambda>),
    /// A tail call wrapped for the trampoline (the body is a `Call`).
    Thunk(Box<Node>),
    Apply {
        lhs: Box<Node>,
        rhs: Box<Node>,
    },
    Transform {
        pattern: Box<Node>,
        update: Box<Node>,
        delete: Option<Box<Node>>,
    },
    Sort(Vec<SortTerm>),
}

/// One node, with the step annotations the path evaluator uses.
#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub(crate) kind: Kind,
    pub(crate) pos: usize,
    pub(crate) keep_array: bool,
    pub(crate) cons_array: bool,
    /// Predicates applied to this node's result when it is not a path step.
    pub(crate) predicate: Vec<Stage>,
    /// Filters and index bindings applied per input item when it is a path step.
    pub(crate) stages: Vec<Stage>,
    pub(crate) group: Option<Box<Group>>,
    pub(crate) focus: Option<Arc<str>>,
    pub(crate) index: Option<Arc<str>>,
    pub(crate) tuple: bool,
    pub(crate) ancestor: Option<Arc<Slot>>,
    pub(crate) seeking_parent: Vec<Arc<Slot>>,
}

#[derive(Debug, Clone)]
pub(crate) struct Group {
    pub(crate) pairs: Vec<(Node, Node)>,
    pub(crate) pos: usize,
}

impl Node {
    pub(crate) fn new(kind: Kind, pos: usize) -> Node {
        Node {
            kind,
            pos,
            keep_array: false,
            cons_array: false,
            predicate: Vec::new(),
            stages: Vec::new(),
            group: None,
            focus: None,
            index: None,
            tuple: false,
            ancestor: None,
            seeking_parent: Vec::new(),
        }
    }

    pub(crate) fn type_name(&self) -> &'static str {
        match &self.kind {
            Kind::Path { .. } => "path",
            Kind::Name(_) => "name",
            Kind::Str(_) => "string",
            Kind::Num(_) => "number",
            Kind::Bool(_) | Kind::Null => "value",
            Kind::Wildcard => "wildcard",
            Kind::Descendant => "descendant",
            Kind::Parent(_) => "parent",
            Kind::Variable(_) => "variable",
            Kind::Regex(_) => "regex",
            Kind::Binary { .. } => "binary",
            Kind::Neg(_) | Kind::Array(_) | Kind::Object(_) => "unary",
            Kind::Condition { .. } => "condition",
            Kind::Block(_) => "block",
            Kind::Bind { .. } => "bind",
            Kind::Call { .. } => "function",
            Kind::Partial { .. } => "partial",
            Kind::Placeholder => "operator",
            Kind::Lambda(_) | Kind::Thunk(_) => "lambda",
            Kind::Apply { .. } => "apply",
            Kind::Transform { .. } => "transform",
            Kind::Sort(_) => "sort",
        }
    }
}
