//! Pratt parser (jsonata-js's grammar and binding powers) followed by the AST processing pass
//! that builds paths, stages, tuple bindings, parent slots and tail calls.

use std::sync::atomic::{AtomicI32, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

use crate::ast::{BinOp, Group, Kind, Lambda, Node, Slot, SortTerm, Stage};
use crate::error::{Error, Result};
use crate::lexer::{Lexer, Tok, Token};
use crate::signature::Signature;

#[derive(Debug)]
enum Raw {
    Name(String),
    Var(String),
    Str(String),
    Num(f64),
    Bool(bool),
    Null,
    Regex(Arc<crate::regex::Regex>),
    Wildcard,
    Descendant,
    Parent,
    Binary(&'static str, Box<RawNode>, Box<RawNode>),
    Filter(Box<RawNode>, Box<RawNode>),
    GroupBy(Box<RawNode>, Vec<(RawNode, RawNode)>),
    OrderBy(Box<RawNode>, Vec<(RawNode, bool)>),
    Focus(Box<RawNode>, String),
    IndexBind(Box<RawNode>, String),
    Bind(Box<RawNode>, Box<RawNode>),
    Neg(Box<RawNode>),
    ArrayCons(Vec<RawNode>),
    ObjectCons(Vec<(RawNode, RawNode)>),
    Block(Vec<RawNode>),
    Condition(Box<RawNode>, Box<RawNode>, Option<Box<RawNode>>),
    Call(Box<RawNode>, Vec<RawNode>, bool),
    Placeholder,
    Lambda(Vec<String>, Option<Arc<Signature>>, Box<RawNode>),
    Transform(Box<RawNode>, Box<RawNode>, Option<Box<RawNode>>),
}

#[derive(Debug)]
struct RawNode {
    raw: Raw,
    pos: usize,
    keep_array: bool,
}

fn raw(raw: Raw, pos: usize) -> RawNode {
    RawNode {
        raw,
        pos,
        keep_array: false,
    }
}

fn lbp(tok: &Tok) -> u8 {
    match tok {
        Tok::Op(op) => match *op {
            "." => 75,
            "[" | "(" | "@" | "#" => 80,
            "{" => 70,
            "?" => 20,
            "+" | "-" | "&" => 50,
            "*" | "/" | "%" => 60,
            "=" | "<" | ">" | "!=" | "<=" | ">=" | "^" | "~>" | "?:" | "??" | "in" => 40,
            ":=" => 10,
            "and" => 30,
            "or" => 25,
            _ => 0,
        },
        _ => 0,
    }
}

fn tok_text(t: &Tok) -> String {
    match t {
        Tok::Op(o) => o.to_string(),
        Tok::Name(n) | Tok::Variable(n) | Tok::Str(n) => n.clone(),
        Tok::Num(n) => n.to_string(),
        Tok::True => "true".into(),
        Tok::False => "false".into(),
        Tok::Null => "null".into(),
        Tok::Regex { pattern, .. } => pattern.clone(),
        Tok::End => "(end)".into(),
    }
}

/// How deep an expression may nest: parentheses, operands of operators, arguments, and the
/// length of operator chains (`a.b.c`, `1 + 2 + 3`: each link deepens the tree; it counts two
/// levels, the link and its right operand). Deeper expressions are a `U1001` syntax error
/// instead of recursing without bound in the parser, the processing pass, the evaluator and
/// `Drop`.
pub const MAX_PARSE_DEPTH: usize = 1000;

struct Parser<'s> {
    lexer: Lexer<'s>,
    node: Token,
    /// Levels of the tree under construction (see [`MAX_PARSE_DEPTH`]).
    depth: usize,
}

impl<'s> Parser<'s> {
    fn advance(&mut self) -> Result<Token> {
        let next = self.lexer.next_token()?;
        if let Tok::Op(op @ ("!" | "~")) = next.tok {
            return Err(Error::new("S0204", format!("Unknown operator: \"{op}\""))
                .at(next.pos)
                .token(op));
        }
        Ok(std::mem::replace(&mut self.node, next))
    }

    fn is_op(&self, op: &str) -> bool {
        matches!(self.node.tok, Tok::Op(o) if o == op)
    }

    fn expect(&mut self, op: &'static str) -> Result<Token> {
        if !self.is_op(op) {
            let code = if self.node.tok == Tok::End {
                "S0203"
            } else {
                "S0202"
            };
            let msg = if self.node.tok == Tok::End {
                format!("Expected \"{op}\" before end of expression")
            } else {
                format!("Expected \"{op}\", got \"{}\"", tok_text(&self.node.tok))
            };
            return Err(Error::new(code, msg)
                .at(self.node.pos)
                .token(tok_text(&self.node.tok))
                .value(serde_json::Value::String(op.into())));
        }
        self.advance()
    }

    /// One more level of the tree; `U1001` beyond [`MAX_PARSE_DEPTH`].
    fn descend(&mut self) -> Result<()> {
        if self.depth >= MAX_PARSE_DEPTH {
            return Err(Error::new(
                "U1001",
                format!(
                    "Stack overflow error: the expression is nested deeper than {MAX_PARSE_DEPTH} levels"
                ),
            )
            .at(self.node.pos));
        }
        self.depth += 1;
        Ok(())
    }

    fn expression(&mut self, rbp: u8) -> Result<RawNode> {
        // Every call and every link of the operator chain below deepens the tree by one; the
        // levels are given back when the call returns. So the tree (and the recursion of the
        // processing pass, the evaluator and `Drop` over it) is at most MAX_PARSE_DEPTH deep.
        let entry = self.depth;
        let r = with_stack(|| self.expression_chain(rbp));
        self.depth = entry;
        r
    }

    fn expression_chain(&mut self, rbp: u8) -> Result<RawNode> {
        self.descend()?;
        let t = self.advance()?;
        let mut left = self.nud(t)?;
        while rbp < lbp(&self.node.tok) {
            self.descend()?;
            let t = self.advance()?;
            left = self.led(t, left)?;
        }
        Ok(left)
    }

    fn nud(&mut self, t: Token) -> Result<RawNode> {
        let pos = t.pos;
        let r = match t.tok {
            Tok::Name(n) => Raw::Name(n),
            Tok::Variable(v) => Raw::Var(v),
            Tok::Str(s) => Raw::Str(s),
            Tok::Num(n) => Raw::Num(n),
            Tok::True => Raw::Bool(true),
            Tok::False => Raw::Bool(false),
            Tok::Null => Raw::Null,
            Tok::Regex { pattern, flags } => {
                let re = crate::regex::Regex::new(&pattern, &flags)
                    .map_err(|e| Error::new("S0302", e).at(pos).token(pattern.clone()))?;
                Raw::Regex(Arc::new(re))
            }
            Tok::End => return Err(Error::new("S0207", "Unexpected end of expression").at(pos)),
            Tok::Op(op) => match op {
                "and" | "or" | "in" => {
                    self.lexer.set_after_operand(true);
                    Raw::Name(op.to_string())
                }
                "-" => Raw::Neg(Box::new(self.expression(70)?)),
                "*" => Raw::Wildcard,
                "**" => Raw::Descendant,
                "%" => Raw::Parent,
                "[" => {
                    let mut items = Vec::new();
                    if !self.is_op("]") {
                        loop {
                            let mut item = self.expression(0)?;
                            if self.is_op("..") {
                                let rpos = self.node.pos;
                                self.advance()?;
                                let rhs = self.expression(0)?;
                                item = raw(Raw::Binary("..", Box::new(item), Box::new(rhs)), rpos);
                            }
                            items.push(item);
                            if !self.is_op(",") {
                                break;
                            }
                            self.advance()?;
                        }
                    }
                    self.expect("]")?;
                    Raw::ArrayCons(items)
                }
                "{" => Raw::ObjectCons(self.object_pairs()?),
                "(" => {
                    let mut exprs = Vec::new();
                    while !self.is_op(")") {
                        exprs.push(self.expression(0)?);
                        if !self.is_op(";") {
                            break;
                        }
                        self.advance()?;
                    }
                    self.expect(")")?;
                    Raw::Block(exprs)
                }
                "|" => {
                    let pattern = self.expression(0)?;
                    self.expect("|")?;
                    let update = self.expression(0)?;
                    let delete = if self.is_op(",") {
                        self.advance()?;
                        Some(Box::new(self.expression(0)?))
                    } else {
                        None
                    };
                    self.expect("|")?;
                    Raw::Transform(Box::new(pattern), Box::new(update), delete)
                }
                "?" => Raw::Placeholder,
                _ => {
                    return Err(Error::new(
                        "S0211",
                        format!("The symbol {op} cannot be used as a unary operator"),
                    )
                    .at(pos)
                    .token(op))
                }
            },
        };
        Ok(raw(r, pos))
    }

    fn object_pairs(&mut self) -> Result<Vec<(RawNode, RawNode)>> {
        let mut pairs = Vec::new();
        if !self.is_op("}") {
            loop {
                let k = self.expression(0)?;
                self.expect(":")?;
                let v = self.expression(0)?;
                pairs.push((k, v));
                if !self.is_op(",") {
                    break;
                }
                self.advance()?;
            }
        }
        self.expect("}")?;
        Ok(pairs)
    }

    fn led(&mut self, t: Token, left: RawNode) -> Result<RawNode> {
        let pos = t.pos;
        let Tok::Op(op) = t.tok else {
            return Err(Error::new("S0201", "Syntax error")
                .at(pos)
                .token(tok_text(&t.tok)));
        };
        let r = match op {
            "." | "+" | "-" | "*" | "/" | "%" | "=" | "<" | ">" | "!=" | "<=" | ">=" | "&"
            | "and" | "or" | "in" | "~>" | "??" | "?:" => {
                let rhs = self.expression(lbp(&Tok::Op(op)))?;
                Raw::Binary(op, Box::new(left), Box::new(rhs))
            }
            "[" => {
                if self.is_op("]") {
                    // `[]`: keep singleton arrays; flag the step under any predicates
                    let mut left = left;
                    {
                        let mut step = &mut left;
                        while let Raw::Filter(lhs, _) = &mut step.raw {
                            step = lhs;
                        }
                        step.keep_array = true;
                    }
                    self.advance()?;
                    self.lexer.set_after_operand(true);
                    return Ok(left);
                }
                let rhs = self.expression(0)?;
                self.expect("]")?;
                Raw::Filter(Box::new(left), Box::new(rhs))
            }
            "{" => Raw::GroupBy(Box::new(left), self.object_pairs()?),
            "^" => {
                self.expect("(")?;
                let mut terms = Vec::new();
                loop {
                    let mut descending = false;
                    if self.is_op("<") {
                        self.advance()?;
                    } else if self.is_op(">") {
                        descending = true;
                        self.advance()?;
                    }
                    terms.push((self.expression(0)?, descending));
                    if !self.is_op(",") {
                        break;
                    }
                    self.advance()?;
                }
                self.expect(")")?;
                Raw::OrderBy(Box::new(left), terms)
            }
            "?" => {
                let then = self.expression(0)?;
                let otherwise = if self.is_op(":") {
                    self.advance()?;
                    Some(Box::new(self.expression(0)?))
                } else {
                    None
                };
                Raw::Condition(Box::new(left), Box::new(then), otherwise)
            }
            ":=" => {
                if !matches!(left.raw, Raw::Var(_)) {
                    return Err(Error::new(
                        "S0212",
                        "The left side of := must be a variable name (start with $)",
                    )
                    .at(left.pos));
                }
                let rhs = self.expression(lbp(&Tok::Op(":=")) - 1)?;
                Raw::Bind(Box::new(left), Box::new(rhs))
            }
            "@" | "#" => {
                let rhs = self.expression(80)?;
                let Raw::Var(v) = rhs.raw else {
                    return Err(Error::new(
                        "S0214",
                        format!("The right side of {op} must be a variable name (start with $)"),
                    )
                    .at(rhs.pos)
                    .token(op));
                };
                if op == "@" {
                    Raw::Focus(Box::new(left), v)
                } else {
                    Raw::IndexBind(Box::new(left), v)
                }
            }
            "(" => {
                let mut args = Vec::new();
                let mut partial = false;
                if !self.is_op(")") {
                    loop {
                        if self.is_op("?") {
                            partial = true;
                            let p = self.advance()?;
                            args.push(raw(Raw::Placeholder, p.pos));
                        } else {
                            args.push(self.expression(0)?);
                        }
                        if !self.is_op(",") {
                            break;
                        }
                        self.advance()?;
                    }
                }
                // the lexer already read the token after `)`; a signature must be re-read raw
                let is_lambda = matches!(&left.raw, Raw::Name(n) if n == "function" || n == "λ");
                if is_lambda {
                    if !self.is_op(")") {
                        return self.expect(")").map(|_| left);
                    }
                    let mut params = Vec::new();
                    for (i, a) in args.into_iter().enumerate() {
                        match a.raw {
                            Raw::Var(v) => params.push(v),
                            _ => {
                                return Err(Error::new(
                                    "S0208",
                                    format!("Parameter {} of function definition must be a variable name (start with $)", i + 1),
                                )
                                .at(a.pos))
                            }
                        }
                    }
                    // `node` is `)`; the raw text after it may hold a signature `<...>`
                    let signature = match self.lexer.raw_signature()? {
                        Some((sig, spos)) => {
                            Some(Arc::new(Signature::parse(&sig).map_err(|e| e.at(spos))?))
                        }
                        None => None,
                    };
                    self.advance()?;
                    self.expect("{")?;
                    let body = self.expression(0)?;
                    self.expect("}")?;
                    Raw::Lambda(params, signature, Box::new(body))
                } else {
                    self.expect(")")?;
                    Raw::Call(Box::new(left), args, partial)
                }
            }
            _ => {
                return Err(Error::new("S0201", format!("Syntax error: \"{op}\""))
                    .at(pos)
                    .token(op))
            }
        };
        Ok(raw(r, pos))
    }
}

/// Stack one level of the parser or the processing pass may need (unoptimised builds have large
/// frames); each level makes sure that much is left, on a new segment if need be.
const LEVEL_RED_ZONE: usize = 256 * 1024;
const STACK_SEGMENT: usize = 4 * 1024 * 1024;

fn with_stack<R>(f: impl FnOnce() -> R) -> R {
    stacker::maybe_grow(LEVEL_RED_ZONE, STACK_SEGMENT, f)
}

/// Parses and processes an expression.
pub(crate) fn parse(src: &str) -> Result<Node> {
    let mut lexer = Lexer::new(src);
    let first = lexer.next_token()?;
    let mut p = Parser {
        lexer,
        node: first,
        depth: 0,
    };
    let expr = p.expression_top()?;
    if p.node.tok != Tok::End {
        return Err(Error::new(
            "S0201",
            format!("Syntax error: \"{}\"", tok_text(&p.node.tok)),
        )
        .at(p.node.pos)
        .token(tok_text(&p.node.tok)));
    }
    let mut cx = Process::default();
    let ast = cx.process(expr)?;
    if matches!(ast.kind, Kind::Parent(_)) || !ast.seeking_parent.is_empty() {
        return Err(Error::new(
            "S0217",
            "The object representing the 'parent' cannot be derived from this expression",
        )
        .at(ast.pos)
        .token(ast.type_name()));
    }
    Ok(ast)
}

impl<'s> Parser<'s> {
    fn expression_top(&mut self) -> Result<RawNode> {
        self.expression(0)
    }
}

#[derive(Default)]
struct Process {
    next_label: usize,
    ancestry: Vec<Arc<Slot>>,
}

fn err_at(code: &'static str, msg: &str, pos: usize) -> Error {
    Error::new(code, msg).at(pos)
}

fn binop(op: &str) -> BinOp {
    match op {
        "+" => BinOp::Add,
        "-" => BinOp::Sub,
        "*" => BinOp::Mul,
        "/" => BinOp::Div,
        "%" => BinOp::Mod,
        "=" => BinOp::Eq,
        "!=" => BinOp::Ne,
        "<" => BinOp::Lt,
        "<=" => BinOp::Le,
        ">" => BinOp::Gt,
        ">=" => BinOp::Ge,
        "&" => BinOp::Concat,
        "and" => BinOp::And,
        "or" => BinOp::Or,
        "in" => BinOp::In,
        ".." => BinOp::Range,
        "??" => BinOp::Coalesce,
        _ => BinOp::Elvis,
    }
}

fn push_ancestry(result: &mut Node, value: &Node) {
    result
        .seeking_parent
        .extend(value.seeking_parent.iter().cloned());
    if let Kind::Parent(slot) = &value.kind {
        result.seeking_parent.push(slot.clone());
    }
}

impl Process {
    fn seek_parent(&mut self, node: &mut Node, slot: Arc<Slot>) -> Result<Arc<Slot>> {
        match &mut node.kind {
            Kind::Name(_) | Kind::Wildcard => {
                slot.level.store(slot.level.load(Relaxed) - 1, Relaxed);
                if slot.level.load(Relaxed) == 0 {
                    if let Some(existing) = &node.ancestor {
                        if let Some(p) = self.ancestry.get(slot.index) {
                            p.label.store(existing.label.load(Relaxed), Relaxed);
                        }
                        slot.label.store(existing.label.load(Relaxed), Relaxed);
                    }
                    node.ancestor = Some(slot.clone());
                    node.tuple = true;
                }
                Ok(slot)
            }
            Kind::Parent(_) => {
                slot.level.store(slot.level.load(Relaxed) + 1, Relaxed);
                Ok(slot)
            }
            Kind::Block(exprs) => {
                if let Some(last) = exprs.last_mut() {
                    let s = self.seek_parent(last, slot)?;
                    node.tuple = true;
                    return Ok(s);
                }
                Ok(slot)
            }
            Kind::Path { steps, .. } => {
                let mut slot = slot;
                let mut index = steps.len() as isize - 1;
                let mut steps_taken = std::mem::take(steps);
                slot = self.seek_parent(&mut steps_taken[index as usize], slot)?;
                index -= 1;
                while slot.level.load(Relaxed) > 0 && index >= 0 {
                    slot = self.seek_parent(&mut steps_taken[index as usize], slot)?;
                    index -= 1;
                }
                if let Kind::Path { steps, .. } = &mut node.kind {
                    *steps = steps_taken;
                }
                node.tuple = true;
                Ok(slot)
            }
            _ => Err(Error::new(
                "S0217",
                "The object representing the 'parent' cannot be derived from this expression",
            )
            .at(node.pos)
            .token(node.type_name())),
        }
    }

    fn resolve_ancestry(&mut self, path: &mut Node) -> Result<()> {
        let Kind::Path { steps, .. } = &mut path.kind else {
            return Ok(());
        };
        let mut steps_taken = std::mem::take(steps);
        let Some(last) = steps_taken.len().checked_sub(1) else {
            return Ok(());
        };
        let mut slots: Vec<Arc<Slot>> = steps_taken[last].seeking_parent.clone();
        if let Kind::Parent(s) = &steps_taken[last].kind {
            slots.push(s.clone());
        }
        let mut seeking = Vec::new();
        for slot in slots {
            let mut slot = slot;
            let mut index = last as isize - 1;
            while slot.level.load(Relaxed) > 0 {
                if index < 0 {
                    seeking.push(slot.clone());
                    break;
                }
                let mut i = index as usize;
                index -= 1;
                while index >= 0
                    && steps_taken[i].focus.is_some()
                    && steps_taken[index as usize].focus.is_some()
                {
                    i = index as usize;
                    index -= 1;
                }
                slot = self.seek_parent(&mut steps_taken[i], slot)?;
            }
        }
        if let Kind::Path { steps, .. } = &mut path.kind {
            *steps = steps_taken;
        }
        path.seeking_parent.extend(seeking);
        Ok(())
    }

    fn process(&mut self, r: RawNode) -> Result<Node> {
        with_stack(|| self.process_here(r))
    }

    fn process_here(&mut self, r: RawNode) -> Result<Node> {
        let pos = r.pos;
        let keep = r.keep_array;
        let mut result = match r.raw {
            Raw::Binary(".", lhs, rhs) => {
                let lstep = self.process(*lhs)?;
                let mut result = if matches!(lstep.kind, Kind::Path { .. }) {
                    lstep
                } else {
                    let mut p = Node::new(
                        Kind::Path {
                            steps: Vec::new(),
                            keep_singleton: false,
                        },
                        lstep.pos,
                    );
                    if let Kind::Parent(slot) = &lstep.kind {
                        p.seeking_parent = vec![slot.clone()];
                    }
                    if let Kind::Path { steps, .. } = &mut p.kind {
                        steps.push(lstep);
                    }
                    p
                };
                let mut rest = self.process(*rhs)?;
                if let Kind::Path { steps, .. } = &mut result.kind {
                    match rest.kind {
                        Kind::Path { steps: rsteps, .. } => steps.extend(rsteps),
                        _ => {
                            if !rest.predicate.is_empty() {
                                rest.stages = std::mem::take(&mut rest.predicate);
                            }
                            steps.push(rest);
                        }
                    }
                    for step in steps.iter_mut() {
                        match &step.kind {
                            Kind::Num(_) | Kind::Bool(_) | Kind::Null => {
                                return Err(Error::new(
                                    "S0213",
                                    "The literal value cannot be used as a step within a path expression",
                                )
                                .at(step.pos))
                            }
                            Kind::Str(s) => step.kind = Kind::Name(s.clone()),
                            _ => {}
                        }
                    }
                    let keep_any = steps.iter().any(|s| s.keep_array);
                    if let Some(first) = steps.first_mut() {
                        if matches!(first.kind, Kind::Array(_)) {
                            first.cons_array = true;
                        }
                    }
                    if let Some(last) = steps.last_mut() {
                        if matches!(last.kind, Kind::Array(_)) {
                            last.cons_array = true;
                        }
                    }
                    if keep_any {
                        if let Kind::Path { keep_singleton, .. } = &mut result.kind {
                            *keep_singleton = true;
                        }
                    }
                }
                self.resolve_ancestry(&mut result)?;
                result
            }
            Raw::Filter(lhs, rhs) => {
                let mut result = self.process(*lhs)?;
                let is_path_node = matches!(result.kind, Kind::Path { .. });
                let predicate = self.process(*rhs)?;
                let mut seeking = predicate.seeking_parent.clone();
                {
                    let step = last_step(&mut result);
                    if step.group.is_some() {
                        return Err(err_at(
                            "S0209",
                            "A predicate cannot follow a grouping expression in a step",
                            pos,
                        ));
                    }
                    if !seeking.is_empty() {
                        for slot in seeking.drain(..) {
                            if slot.level.load(Relaxed) == 1 {
                                self.seek_parent(step, slot)?;
                            } else {
                                slot.level.store(slot.level.load(Relaxed) - 1, Relaxed);
                            }
                        }
                        push_ancestry(step, &predicate);
                    }
                    let stage = Stage::Filter(predicate);
                    if is_path_node {
                        step.stages.push(stage);
                    } else {
                        step.predicate.push(stage);
                    }
                }
                result
            }
            Raw::GroupBy(lhs, pairs) => {
                let mut result = self.process(*lhs)?;
                if result.group.is_some() {
                    return Err(err_at(
                        "S0210",
                        "Each step can only have one grouping expression",
                        pos,
                    ));
                }
                let mut processed = Vec::new();
                for (k, v) in pairs {
                    processed.push((self.process(k)?, self.process(v)?));
                }
                result.group = Some(Box::new(Group {
                    pairs: processed,
                    pos,
                }));
                result
            }
            Raw::OrderBy(lhs, terms) => {
                let mut result = self.process(*lhs)?;
                if !matches!(result.kind, Kind::Path { .. }) {
                    let p = Node::new(
                        Kind::Path {
                            steps: vec![result],
                            keep_singleton: false,
                        },
                        pos,
                    );
                    result = p;
                }
                let mut sort = Node::new(Kind::Sort(Vec::new()), pos);
                let mut ts = Vec::new();
                for (e, descending) in terms {
                    let expr = self.process(e)?;
                    push_ancestry(&mut sort, &expr);
                    ts.push(SortTerm { expr, descending });
                }
                sort.kind = Kind::Sort(ts);
                if let Kind::Path { steps, .. } = &mut result.kind {
                    steps.push(sort);
                }
                self.resolve_ancestry(&mut result)?;
                result
            }
            Raw::Bind(lhs, rhs) => {
                let Raw::Var(name) = lhs.raw else {
                    return Err(err_at(
                        "S0212",
                        "The left side of := must be a variable name (start with $)",
                        pos,
                    ));
                };
                let rhs = self.process(*rhs)?;
                let mut n = Node::new(
                    Kind::Bind {
                        name: name.into(),
                        rhs: Box::new(Node::new(Kind::Null, 0)),
                    },
                    pos,
                );
                push_ancestry(&mut n, &rhs);
                if let Kind::Bind { rhs: r, .. } = &mut n.kind {
                    **r = rhs;
                }
                n
            }
            Raw::Focus(lhs, var) => {
                let mut result = self.process(*lhs)?;
                {
                    let step = last_step(&mut result);
                    if !step.stages.is_empty() || !step.predicate.is_empty() {
                        return Err(err_at(
                            "S0215",
                            "A context variable binding must precede any predicates on a step",
                            pos,
                        ));
                    }
                    if matches!(step.kind, Kind::Sort(_)) {
                        return Err(err_at("S0216", "A context variable binding must precede the 'order-by' clause on a step", pos));
                    }
                    if keep {
                        step.keep_array = true;
                    }
                    step.focus = Some(var.into());
                    step.tuple = true;
                }
                result
            }
            Raw::IndexBind(lhs, var) => {
                let mut result = self.process(*lhs)?;
                if !matches!(result.kind, Kind::Path { .. }) {
                    let mut inner = result;
                    if !inner.predicate.is_empty() {
                        inner.stages = std::mem::take(&mut inner.predicate);
                    }
                    result = Node::new(
                        Kind::Path {
                            steps: vec![inner],
                            keep_singleton: false,
                        },
                        pos,
                    );
                }
                if let Kind::Path { steps, .. } = &mut result.kind {
                    if let Some(step) = steps.last_mut() {
                        if step.stages.is_empty() {
                            step.index = Some(var.into());
                        } else {
                            step.stages.push(Stage::Index(var.into()));
                        }
                        step.tuple = true;
                    }
                }
                result
            }
            Raw::Binary("~>", lhs, rhs) => {
                let lhs = self.process(*lhs)?;
                let rhs = self.process(*rhs)?;
                let keep = lhs.keep_array || rhs.keep_array;
                let mut n = Node::new(
                    Kind::Apply {
                        lhs: Box::new(lhs),
                        rhs: Box::new(rhs),
                    },
                    pos,
                );
                n.keep_array = keep;
                n
            }
            Raw::Binary(op, lhs, rhs) => {
                let lhs = self.process(*lhs)?;
                let rhs = self.process(*rhs)?;
                let mut n = Node::new(Kind::Null, pos);
                push_ancestry(&mut n, &lhs);
                push_ancestry(&mut n, &rhs);
                n.kind = Kind::Binary {
                    op: binop(op),
                    lhs: Box::new(lhs),
                    rhs: Box::new(rhs),
                };
                n
            }
            Raw::Neg(e) => {
                let e = self.process(*e)?;
                if let Kind::Num(v) = e.kind {
                    Node::new(Kind::Num(-v), pos)
                } else {
                    let mut n = Node::new(Kind::Null, pos);
                    push_ancestry(&mut n, &e);
                    n.kind = Kind::Neg(Box::new(e));
                    n
                }
            }
            Raw::ArrayCons(items) => {
                let mut n = Node::new(Kind::Null, pos);
                let mut out = Vec::new();
                for i in items {
                    let v = self.process(i)?;
                    push_ancestry(&mut n, &v);
                    out.push(v);
                }
                n.kind = Kind::Array(out);
                n
            }
            Raw::ObjectCons(pairs) => {
                let mut n = Node::new(Kind::Null, pos);
                let mut out = Vec::new();
                for (k, v) in pairs {
                    let k = self.process(k)?;
                    push_ancestry(&mut n, &k);
                    let v = self.process(v)?;
                    push_ancestry(&mut n, &v);
                    out.push((k, v));
                }
                n.kind = Kind::Object(out);
                n
            }
            Raw::Block(exprs) => {
                let mut n = Node::new(Kind::Null, pos);
                let mut out = Vec::new();
                for e in exprs {
                    let part = self.process(e)?;
                    push_ancestry(&mut n, &part);
                    let cons = part.cons_array
                        || matches!(&part.kind, Kind::Path { steps, .. } if steps.first().is_some_and(|s| s.cons_array));
                    if cons {
                        n.cons_array = true;
                    }
                    out.push(part);
                }
                n.kind = Kind::Block(out);
                n
            }
            Raw::Condition(c, t, e) => {
                let mut n = Node::new(Kind::Null, pos);
                let c = self.process(*c)?;
                push_ancestry(&mut n, &c);
                let t = self.process(*t)?;
                push_ancestry(&mut n, &t);
                let e = match e {
                    Some(e) => {
                        let e = self.process(*e)?;
                        push_ancestry(&mut n, &e);
                        Some(Box::new(e))
                    }
                    None => None,
                };
                n.kind = Kind::Condition {
                    cond: Box::new(c),
                    then: Box::new(t),
                    otherwise: e,
                };
                n
            }
            Raw::Call(procedure, args, partial) => {
                let mut n = Node::new(Kind::Null, pos);
                let mut out = Vec::new();
                for a in args {
                    let a = self.process(a)?;
                    push_ancestry(&mut n, &a);
                    out.push(a);
                }
                let procedure = Box::new(self.process(*procedure)?);
                n.kind = if partial {
                    Kind::Partial {
                        procedure,
                        args: out,
                    }
                } else {
                    Kind::Call {
                        procedure,
                        args: out,
                    }
                };
                n
            }
            Raw::Placeholder => Node::new(Kind::Placeholder, pos),
            Raw::Lambda(params, signature, body) => {
                let body = tail_call_optimize(self.process(*body)?);
                Node::new(
                    Kind::Lambda(Arc::new(Lambda {
                        params: params.into_iter().map(Arc::from).collect(),
                        signature,
                        body,
                    })),
                    pos,
                )
            }
            Raw::Transform(p, u, d) => {
                let pattern = Box::new(self.process(*p)?);
                let update = Box::new(self.process(*u)?);
                let delete = match d {
                    Some(d) => Some(Box::new(self.process(*d)?)),
                    None => None,
                };
                Node::new(
                    Kind::Transform {
                        pattern,
                        update,
                        delete,
                    },
                    pos,
                )
            }
            Raw::Name(n) => {
                let mut step = Node::new(Kind::Name(n.into()), pos);
                step.keep_array = keep;
                let mut p = Node::new(
                    Kind::Path {
                        steps: vec![step],
                        keep_singleton: keep,
                    },
                    pos,
                );
                p.keep_array = false;
                p
            }
            Raw::Parent => {
                let slot = Arc::new(Slot {
                    label: AtomicUsize::new(self.next_label),
                    level: AtomicI32::new(1),
                    index: self.ancestry.len(),
                });
                self.next_label += 1;
                self.ancestry.push(slot.clone());
                Node::new(Kind::Parent(slot), pos)
            }
            Raw::Var(v) => Node::new(Kind::Variable(v.into()), pos),
            Raw::Str(s) => Node::new(Kind::Str(s.into()), pos),
            Raw::Num(n) => Node::new(Kind::Num(n), pos),
            Raw::Bool(b) => Node::new(Kind::Bool(b), pos),
            Raw::Null => Node::new(Kind::Null, pos),
            Raw::Regex(re) => Node::new(Kind::Regex(re), pos),
            Raw::Wildcard => Node::new(Kind::Wildcard, pos),
            Raw::Descendant => Node::new(Kind::Descendant, pos),
        };
        if keep {
            result.keep_array = true;
        }
        Ok(result)
    }
}

/// The last step of a path, or the node itself.
fn last_step(node: &mut Node) -> &mut Node {
    let is_path = matches!(&node.kind, Kind::Path { steps, .. } if !steps.is_empty());
    if !is_path {
        return node;
    }
    match &mut node.kind {
        Kind::Path { steps, .. } => steps.last_mut().expect("checked non-empty above"),
        _ => unreachable!("checked to be a path above"),
    }
}

fn tail_call_optimize(mut expr: Node) -> Node {
    match &mut expr.kind {
        Kind::Call { .. } if expr.predicate.is_empty() => {
            let pos = expr.pos;
            Node::new(Kind::Thunk(Box::new(expr)), pos)
        }
        Kind::Condition {
            then, otherwise, ..
        } => {
            let t = std::mem::replace(&mut **then, Node::new(Kind::Null, 0));
            **then = tail_call_optimize(t);
            if let Some(e) = otherwise {
                let x = std::mem::replace(&mut **e, Node::new(Kind::Null, 0));
                **e = tail_call_optimize(x);
            }
            expr
        }
        Kind::Block(exprs) => {
            if let Some(last) = exprs.pop() {
                exprs.push(tail_call_optimize(last));
            }
            expr
        }
        _ => expr,
    }
}
