//! The evaluation environment of a state: [`Env`] (input, variables, context object, `$states`)
//! and the variable [`Scope`]s of nested graphs.

use super::Exec;
use crate::runtime::{uuid_v4, SplitMix64};
use expressway_asl::template::EvalEnv;
use expressway_asl::timestamp::format_millis;
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::OnceLock;

/// Variables visible to a graph: its own, then its parents'.
pub(super) struct Scope<'a> {
    pub(super) vars: Option<&'a HashMap<String, Value>>,
    pub(super) parent: Option<&'a Scope<'a>>,
    /// The graph's place in its parent state: the Parallel branch or Map item index (`None` for
    /// the top-level graph and the root).
    pub(super) position: Option<usize>,
}

impl Scope<'_> {
    /// The positions from the top-level graph down, `/`-separated (`""` at the top level): names
    /// one run of a state among the Parallel branches and Map items it runs in.
    pub(super) fn path(&self) -> String {
        let mut positions = Vec::new();
        let mut scope = Some(self);
        while let Some(s) = scope {
            positions.extend(s.position);
            scope = s.parent;
        }
        let mut path = String::new();
        for (i, p) in positions.iter().rev().enumerate() {
            if i > 0 {
                path.push('/');
            }
            path.push_str(&p.to_string());
        }
        path
    }

    pub(super) fn get(&self, name: &str) -> Option<&Value> {
        self.vars
            .and_then(|v| v.get(name))
            .or_else(|| self.parent.and_then(|p| p.get(name)))
    }
}

pub(super) struct MapItem<'a> {
    pub(super) index: usize,
    pub(super) value: &'a Value,
}

/// The evaluation environment of one state.
pub(super) struct Env<'a> {
    pub(super) exec: &'a Exec<'a>,
    pub(super) input: &'a Value,
    pub(super) scope: &'a Scope<'a>,
    pub(super) state_name: &'a str,
    pub(super) entered_millis: i64,
    pub(super) map_item: Option<MapItem<'a>>,
    pub(super) ctx: OnceLock<Value>,
    pub(super) states: OnceLock<Value>,
    pub(super) result: Option<&'a Value>,
    pub(super) error_output: Option<&'a Value>,
    /// `$$.Task.Token` of a `.waitForTaskToken` Task.
    pub(super) task_token: Option<&'a str>,
}

impl<'a> Env<'a> {
    pub(super) fn new(
        exec: &'a Exec<'a>,
        input: &'a Value,
        scope: &'a Scope<'a>,
        state_name: &'a str,
        entered_millis: i64,
    ) -> Env<'a> {
        Env {
            exec,
            input,
            scope,
            state_name,
            entered_millis,
            map_item: None,
            ctx: OnceLock::new(),
            states: OnceLock::new(),
            result: None,
            error_output: None,
            task_token: None,
        }
    }
    pub(super) fn with_input(&self, input: &'a Value) -> Env<'a> {
        Env::new(
            self.exec,
            input,
            self.scope,
            self.state_name,
            self.entered_millis,
        )
    }
}

/// `$$.Task`: `{"Token": ...}`, only in a `.waitForTaskToken` Task.
fn task_context(token: &str) -> Value {
    let mut m = Map::with_capacity(1);
    m.insert("Token".into(), Value::String(token.to_string()));
    Value::Object(m)
}

impl Env<'_> {
    fn state_context(&self) -> Value {
        let mut state = Map::with_capacity(2);
        state.insert("Name".into(), Value::String(self.state_name.to_string()));
        state.insert(
            "EnteredTime".into(),
            Value::String(format_millis(self.entered_millis)),
        );
        Value::Object(state)
    }
}

fn map_context(item: &MapItem<'_>) -> Value {
    let mut it = Map::with_capacity(2);
    it.insert("Index".into(), Value::from(item.index));
    it.insert("Value".into(), item.value.clone());
    let mut m = Map::with_capacity(1);
    m.insert("Item".into(), Value::Object(it));
    Value::Object(m)
}

impl EvalEnv for Env<'_> {
    fn input(&self) -> &Value {
        self.input
    }
    fn context(&self) -> &Value {
        self.ctx.get_or_init(|| {
            let (execution, machine) = self.exec.context_parts();
            let mut ctx = Map::with_capacity(4);
            ctx.insert("Execution".into(), execution.clone());
            ctx.insert("StateMachine".into(), machine.clone());
            ctx.insert("State".into(), self.state_context());
            if let Some(item) = &self.map_item {
                ctx.insert("Map".into(), map_context(item));
            }
            if let Some(token) = self.task_token {
                ctx.insert("Task".into(), task_context(token));
            }
            Value::Object(ctx)
        })
    }
    fn context_part(&self, name: &str) -> Option<Cow<'_, Value>> {
        if let Some(ctx) = self.ctx.get() {
            return ctx.get(name).map(Cow::Borrowed);
        }
        match name {
            "Execution" => Some(Cow::Borrowed(&self.exec.context_parts().0)),
            "StateMachine" => Some(Cow::Borrowed(&self.exec.context_parts().1)),
            "State" => Some(Cow::Owned(self.state_context())),
            "Map" => self
                .map_item
                .as_ref()
                .map(|item| Cow::Owned(map_context(item))),
            "Task" => self.task_token.map(|t| Cow::Owned(task_context(t))),
            _ => None,
        }
    }
    fn variable(&self, name: &str) -> Option<&Value> {
        if name == "states" {
            return self.jsonata_states();
        }
        self.scope.get(name)
    }
    fn random_int(&self, start: i64, end: i64, seed: Option<i64>) -> i64 {
        let r = match seed {
            Some(s) => SplitMix64::mix(s as u64),
            None => self.exec.rt.entropy.next_u64(),
        };
        let span = (end as i128 - start as i128 + 1).max(1) as u128;
        (start as i128 + (r as u128 % span) as i128) as i64
    }
    fn uuid(&self) -> String {
        uuid_v4(self.exec.rt.entropy.as_ref())
    }
    fn states_member(&self, name: &str) -> Option<&Value> {
        match name {
            "input" => Some(self.input),
            "context" => Some(self.context()),
            "result" => self.result,
            "errorOutput" => self.error_output,
            _ => None,
        }
    }
    fn jsonata_states(&self) -> Option<&Value> {
        Some(self.states.get_or_init(|| {
            let mut m = Map::with_capacity(4);
            m.insert("input".into(), self.input.clone());
            m.insert("context".into(), self.context().clone());
            if let Some(r) = self.result {
                m.insert("result".into(), r.clone());
            }
            if let Some(e) = self.error_output {
                m.insert("errorOutput".into(), e.clone());
            }
            Value::Object(m)
        }))
    }
}

impl Exec<'_> {
    /// The context object's `Execution` and `StateMachine` members, built once per execution.
    fn context_parts(&self) -> &(Value, Value) {
        self.execution_ctx.get_or_init(|| {
            let mut e = Map::with_capacity(6);
            e.insert("Id".into(), Value::String(self.req.execution_arn.clone()));
            e.insert("Input".into(), self.req.input.clone());
            e.insert(
                "Name".into(),
                Value::String(self.req.execution_name.clone()),
            );
            e.insert("RoleArn".into(), Value::String(self.req.role_arn.clone()));
            e.insert(
                "StartTime".into(),
                Value::String(format_millis(self.start_millis)),
            );
            if !self.req.synchronous {
                e.insert("RedriveCount".into(), Value::from(0));
            }
            let mut m = Map::with_capacity(2);
            m.insert(
                "Id".into(),
                Value::String(self.req.state_machine_arn.clone()),
            );
            m.insert(
                "Name".into(),
                Value::String(self.req.state_machine_name.clone()),
            );
            (Value::Object(e), Value::Object(m))
        })
    }
}
