//! Distributed Map child executions: what a Map with `ProcessorConfig.Mode: DISTRIBUTED` needs
//! from the outside world.
//!
//! A Distributed Map runs its item processor as *child executions*, one per item or per batch
//! (`ItemBatcher`). The engine decides what the children are (their inputs, deterministic names
//! and ARNs, at most `MaxConcurrency` at a time), and hands each to [`ChildExecutions::run`]. Where
//! the child runs is the runtime's business: `expressway run` and tests run it in the same process
//! ([`Runtime::map_children`](crate::Runtime::map_children) `None`); `serve` publishes it as a start
//! event so it runs on any pod of the cluster and routes its result back to the parent's pod.
//!
//! Children are named from the parent's identity (execution ARN, Map state, scope, attempt), so a
//! parent that runs again after a redelivery names the same children and a runtime can recognise
//! children that already finished.

use crate::runtime::TaskError;
use expressway_asl::model::{Kind, State, StateMachine};
use futures::future::BoxFuture;
use serde_json::Value;

/// `ProcessorConfig.ExecutionType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChildExecutionType {
    /// `STANDARD` (AWS's default for Distributed Map).
    Standard,
    /// `EXPRESS`.
    Express,
}

/// One child execution of a Map Run.
#[derive(Debug, Clone)]
pub struct ChildExecution {
    /// The Map Run ARN (`arn:aws:states:<region>:<account>:mapRun:<machine>/<label>:<id>`).
    pub map_run_arn: String,
    /// The parent execution's ARN.
    pub parent_execution_arn: String,
    /// The parent's state machine ARN (as the parent was started: with its version or alias).
    pub state_machine_arn: String,
    /// The Distributed Map state's name (state names are unique within a definition, so this
    /// names the item processor: see [`processor_machine`]).
    pub state_name: String,
    /// Where the Map state runs in the parent ([`CallbackKey::scope`](crate::CallbackKey::scope)).
    pub scope: String,
    /// The Map state's attempt (0, then 1, 2, ... when its Retry runs it again).
    pub attempt: u32,
    /// The child's position in the Map Run (item index, or batch index with `ItemBatcher`).
    pub index: usize,
    /// The child's execution name (deterministic).
    pub execution_name: String,
    /// The child's execution ARN (deterministic).
    pub execution_arn: String,
    /// The child's input: the item after `ItemSelector`, or `{"BatchInput": .., "Items": [..]}`.
    pub input: Value,
    /// `ProcessorConfig.ExecutionType`.
    pub execution_type: ChildExecutionType,
}

/// Runs the children of Distributed Maps.
pub trait ChildExecutions: Send + Sync {
    /// Runs one child to its end: its output, or the error and cause it failed with
    /// (`States.Timeout` when it timed out). The engine calls this at most `MaxConcurrency` times
    /// concurrently per Map Run and drops the future when the parent stops waiting.
    fn run(&self, child: ChildExecution) -> BoxFuture<'static, Result<Value, TaskError>>;
}

/// The item processor of the Distributed Map state `state_name` as a state machine of its own
/// (what a child execution runs), searching nested Parallel branches and Map processors.
pub fn processor_machine(machine: &StateMachine, state_name: &str) -> Option<StateMachine> {
    fn find<'a>(states: &'a [State], name: &str) -> Option<&'a State> {
        for s in states {
            if s.name == name {
                return Some(s);
            }
            let nested = match &s.kind {
                Kind::Parallel(p) => p.branches.iter().find_map(|b| find(&b.states, name)),
                Kind::Map(m) => find(&m.processor.states, name),
                _ => None,
            };
            if nested.is_some() {
                return nested;
            }
        }
        None
    }
    processor_of(find(&machine.graph.states, state_name)?)
}

/// The item processor of a Distributed Map state as a state machine of its own; `None` when the
/// state is not a Distributed Map.
pub fn processor_of(state: &State) -> Option<StateMachine> {
    let Kind::Map(map) = &state.kind else {
        return None;
    };
    if !map.distributed {
        return None;
    }
    Some(StateMachine {
        comment: None,
        timeout_seconds: None,
        query_language: state.query_language,
        graph: map.processor.clone(),
        total_states: map.processor.states.len(),
    })
}

/// The identity of one Map Run: its ARN and the parts child ARNs are built from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MapRunId {
    /// `arn:aws:states:<region>:<account>:mapRun:<machine>/<label>:<id>`.
    pub arn: String,
    /// The Map's `Label`, or the 8-character label generated from the run's identity.
    pub label: String,
    /// The run's id (a UUID-shaped hash of the parent, state, scope and attempt).
    pub id: String,
    region: String,
    account: String,
    machine: String,
}

/// The identity hash as a UUID-shaped string.
fn uuid_shape(h: u128) -> String {
    crate::runtime::format_uuid(&h.to_be_bytes())
}

impl MapRunId {
    /// The Map Run of the Distributed Map `state_name` at `scope`, attempt `attempt`, of the
    /// execution `parent_execution_arn` of `state_machine_arn` (AWS's Map Run ARN format; the
    /// region and account are the state machine's).
    pub fn new(
        state_machine_arn: &str,
        machine_name: &str,
        parent_execution_arn: &str,
        state_name: &str,
        label: Option<&str>,
        scope: &str,
        attempt: u32,
    ) -> MapRunId {
        let parts: Vec<&str> = state_machine_arn.split(':').collect();
        let region = parts
            .get(3)
            .filter(|s| !s.is_empty())
            .copied()
            .unwrap_or(crate::DEFAULT_REGION);
        let account = parts
            .get(4)
            .filter(|s| !s.is_empty())
            .copied()
            .unwrap_or(crate::DEFAULT_ACCOUNT);
        let h = crate::exec::identity_hash(parent_execution_arn, state_name, scope, attempt);
        let id = uuid_shape(h);
        let label = label
            .map(str::to_string)
            .unwrap_or_else(|| id[..8].to_string());
        MapRunId {
            arn: format!("arn:aws:states:{region}:{account}:mapRun:{machine_name}/{label}:{id}"),
            label,
            id,
            region: region.to_string(),
            account: account.to_string(),
            machine: machine_name.to_string(),
        }
    }

    /// The name and ARN of the run's child `index`: AWS's
    /// `arn:aws:states:<region>:<account>:execution:<machine>/<label>:<name>` (STANDARD) or
    /// `...:express:<machine>/<label>:<name>:<id>` (EXPRESS), the name a UUID-shaped hash of
    /// the Map Run ARN and the index.
    pub fn child(&self, index: usize, execution_type: ChildExecutionType) -> (String, String) {
        let name = uuid_shape(crate::exec::identity_hash(
            &self.arn,
            &index.to_string(),
            "",
            0,
        ));
        let (region, account, machine, label) =
            (&self.region, &self.account, &self.machine, &self.label);
        let arn = match execution_type {
            ChildExecutionType::Standard => {
                format!("arn:aws:states:{region}:{account}:execution:{machine}/{label}:{name}")
            }
            ChildExecutionType::Express => {
                let run = uuid_shape(crate::exec::identity_hash(&self.arn, &name, "", 1));
                format!("arn:aws:states:{region}:{account}:express:{machine}/{label}:{name}:{run}")
            }
        };
        (name, arn)
    }
}

/// How many children a Distributed Map runs at once when `MaxConcurrency` is 0 or absent (AWS's
/// default; the engine's memory budget may cap it lower, as for the inline Map).
pub const DEFAULT_DISTRIBUTED_CONCURRENCY: usize = 10_000;
