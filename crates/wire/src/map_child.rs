//! The `expressway-map-child` header: marks a start event as one child execution of a
//! Distributed Map Run, so the pod that reads it runs the Map's item processor (not the whole
//! machine) under the child's ARN and reports the outcome back to the parent.
//!
//! The record's value is an ordinary JSON start event (`stateMachine`: the parent's machine,
//! with its version or alias; `name`: the child's execution name; `input`: the item or batch).
//! The header's value is a JSON object:
//!
//! ```json
//! {"taskToken": "...", "executionArn": "...", "mapRunArn": "...",
//!  "parentExecutionArn": "...", "stateName": "ProcessItems"}
//! ```
//!
//! `taskToken` is a task token of the parent's start partition: the child's pod sends a
//! heartbeat with it when the child starts and a success or failure callback when it ends,
//! and the callback topic's routing brings both to the parent's pod.

use serde::{Deserialize, Serialize};

/// The header's name.
pub const MAP_CHILD_HEADER: &str = "expressway-map-child";

/// Dead-letter code of a start event whose `expressway-map-child` header cannot be read.
pub const INVALID_MAP_CHILD_CODE: &str = "InvalidMapChild";

/// What the header says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MapChild {
    /// Where the child's heartbeat and outcome go (a task token of the parent's partition).
    pub task_token: String,
    /// The child's execution ARN (derived from the Map Run and the child's index).
    pub execution_arn: String,
    /// The Map Run's ARN.
    pub map_run_arn: String,
    /// The parent execution's ARN.
    pub parent_execution_arn: String,
    /// The Distributed Map state whose item processor the child runs.
    pub state_name: String,
}

/// Why a header cannot be read.
#[derive(Debug, thiserror::Error)]
#[error("the {MAP_CHILD_HEADER} header is not a map child description: {0}")]
pub struct MapChildError(String);

impl MapChild {
    /// The header value.
    pub fn to_json(&self) -> Vec<u8> {
        // A struct of strings always serialises.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Reads a header value.
    pub fn decode(value: &[u8]) -> Result<MapChild, MapChildError> {
        let child: MapChild =
            serde_json::from_slice(value).map_err(|e| MapChildError(e.to_string()))?;
        for (field, v) in [
            ("taskToken", &child.task_token),
            ("executionArn", &child.execution_arn),
            ("stateName", &child.state_name),
        ] {
            if v.is_empty() {
                return Err(MapChildError(format!("{field} is empty")));
            }
        }
        Ok(child)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn child() -> MapChild {
        MapChild {
            task_token: "tok".into(),
            execution_arn: "arn:aws:states:us-east-1:123456789012:express:m/l:n:r".into(),
            map_run_arn: "arn:aws:states:us-east-1:123456789012:mapRun:m/l:id".into(),
            parent_execution_arn: "arn:aws:states:us-east-1:123456789012:express:m:p:u".into(),
            state_name: "Items".into(),
        }
    }

    #[test]
    fn the_header_round_trips() {
        let c = child();
        let text = String::from_utf8(c.to_json()).unwrap();
        assert!(text.contains("\"taskToken\":\"tok\""), "{text}");
        assert_eq!(MapChild::decode(text.as_bytes()).unwrap(), c);
    }

    #[test]
    fn garbage_unknown_fields_and_empty_fields_are_refused() {
        assert!(MapChild::decode(b"not json").is_err());
        let mut v: serde_json::Value = serde_json::from_slice(&child().to_json()).unwrap();
        v["extra"] = 1.into();
        assert!(MapChild::decode(v.to_string().as_bytes()).is_err());
        let mut c = child();
        c.state_name.clear();
        let e = MapChild::decode(&c.to_json()).unwrap_err();
        assert!(e.to_string().contains("stateName is empty"), "{e}");
    }
}
