//! Children run in this process (`Runtime::map_children` `None`): each child is an execution of
//! its own, `execute(processor, ..)`, whose events are not in the parent's log.

use crate::events::LogConfig;
use crate::exec::{execute, ExecutionRequest, Limits, Status};
use crate::map_runs::{ChildExecution, ChildExecutions};
use crate::runtime::{Runtime, TaskError};
use expressway_asl::model::StateMachine;
use futures::future::BoxFuture;
use serde_json::Value;
use std::sync::Arc;

pub(super) struct InProcess {
    pub(super) processor: Arc<StateMachine>,
    pub(super) runtime: Runtime,
    pub(super) limits: Limits,
    pub(super) state_machine_name: String,
    pub(super) role_arn: String,
}

impl ChildExecutions for InProcess {
    fn run(&self, child: ChildExecution) -> BoxFuture<'static, Result<Value, TaskError>> {
        let processor = self.processor.clone();
        let runtime = self.runtime.clone();
        let request = ExecutionRequest {
            execution_arn: child.execution_arn,
            execution_name: child.execution_name,
            state_machine_arn: child.state_machine_arn,
            state_machine_name: self.state_machine_name.clone(),
            role_arn: self.role_arn.clone(),
            input: child.input,
            log: LogConfig::default(),
            limits: self.limits,
            synchronous: false,
        };
        Box::pin(async move {
            let outcome = execute(&processor, &request, &runtime).await;
            match outcome.status {
                Status::Succeeded => Ok(outcome.output.unwrap_or(Value::Null)),
                Status::Failed => Err(TaskError {
                    error: outcome.error.unwrap_or_default(),
                    cause: outcome.cause,
                }),
                Status::TimedOut => Err(TaskError::new(
                    "States.Timeout",
                    "The child execution timed out",
                )),
            }
        })
    }
}
