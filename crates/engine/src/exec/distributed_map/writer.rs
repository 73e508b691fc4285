//! `ResultWriter`: the child results as AWS writes them (Step Functions developer guide,
//! "ResultWriter (Map)"): with `s3:putObject`, `<Prefix>/<MapRunId>/SUCCEEDED_0.json`,
//! `FAILED_0.json`, `PENDING_0.json` (only the non-empty ones) and `manifest.json`, and the state
//! result `{"MapRunArn", "ResultWriterDetails": {"Bucket", "Key"}}`; with `kafka:publish`, one
//! record per child (key = its execution ARN) and a manifest record (key `<MapRunArn>/manifest`);
//! with `WriterConfig` alone, the transformed results as the state output. Failures of the
//! resource are `States.ResultWriterFailed`.

use super::reader::{task_failure_cause, ReadCtx};
use crate::exec::failure::Failure;
use crate::exec::Exec;
use crate::map_runs::MapRunId;
use expressway_asl::load::WRITER_RESOURCES;
use expressway_asl::model::*;
use expressway_asl::template::to_json;
use expressway_asl::timestamp::format_millis;
use serde_json::{Map, Value};

pub(super) const RESULT_WRITER_FAILED: &str = "States.ResultWriterFailed";

fn writer_failure(cause: impl Into<String>) -> Failure {
    Failure::new(RESULT_WRITER_FAILED, Some(cause.into()))
}

/// How a child ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum ChildStatus {
    Succeeded,
    Failed,
    /// Not run (the Map Run stopped first).
    Pending,
}

impl ChildStatus {
    fn as_str(self) -> &'static str {
        match self {
            ChildStatus::Succeeded => "SUCCEEDED",
            ChildStatus::Failed => "FAILED",
            ChildStatus::Pending => "PENDING",
        }
    }
}

/// One child's record for the writer.
#[derive(Clone, Copy)]
pub(super) struct ChildRecord<'a> {
    pub(super) name: &'a str,
    pub(super) arn: &'a str,
    pub(super) input: &'a Value,
    /// The output, or `{"Error", "Cause"}` for a failed child.
    pub(super) result: Option<&'a Value>,
    pub(super) status: ChildStatus,
    pub(super) times: (i64, i64),
}

/// AWS's full result entry (`Transformation: NONE`).
fn full_entry(r: &ChildRecord<'_>, state_machine_arn: &str) -> Value {
    let mut m = Map::new();
    m.insert("ExecutionArn".into(), Value::from(r.arn));
    m.insert("Input".into(), Value::from(to_json(r.input)));
    m.insert("InputDetails".into(), serde_json::json!({"Included": true}));
    m.insert("Name".into(), Value::from(r.name));
    match (r.status, r.result) {
        (ChildStatus::Succeeded, Some(out)) => {
            m.insert("Output".into(), Value::from(to_json(out)));
            m.insert(
                "OutputDetails".into(),
                serde_json::json!({"Included": true}),
            );
        }
        (ChildStatus::Failed, Some(err)) => {
            for k in ["Error", "Cause"] {
                if let Some(v) = err.get(k) {
                    m.insert(k.into(), v.clone());
                }
            }
        }
        _ => {}
    }
    m.insert("RedriveCount".into(), Value::from(0));
    m.insert("RedriveStatus".into(), Value::from("NOT_REDRIVABLE"));
    if r.status != ChildStatus::Pending {
        m.insert("StartDate".into(), Value::from(format_millis(r.times.0)));
        m.insert("StopDate".into(), Value::from(format_millis(r.times.1)));
    }
    m.insert("StateMachineArn".into(), Value::from(state_machine_arn));
    m.insert("Status".into(), Value::from(r.status.as_str()));
    Value::Object(m)
}

/// The entries of one status under a transformation.
fn entries(records: &[ChildRecord<'_>], t: Transformation, state_machine_arn: &str) -> Vec<Value> {
    match t {
        Transformation::None => records
            .iter()
            .map(|r| full_entry(r, state_machine_arn))
            .collect(),
        Transformation::Compact => records
            .iter()
            .map(|r| r.result.cloned().unwrap_or(Value::Null))
            .collect(),
        Transformation::Flatten => {
            let mut out = Vec::new();
            for r in records {
                match r.result {
                    Some(Value::Array(a)) => out.extend(a.iter().cloned()),
                    Some(v) => out.push(v.clone()),
                    None => out.push(Value::Null),
                }
            }
            out
        }
    }
}

fn file_body(entries: &[Value], output_type: OutputType) -> String {
    match output_type {
        OutputType::Json => to_json(&Value::Array(entries.to_vec())),
        OutputType::Jsonl => {
            let mut s = String::new();
            for e in entries {
                s.push_str(&to_json(e));
                s.push('\n');
            }
            s
        }
    }
}

fn join_key(prefix: &str, id: &str, file: &str) -> String {
    let prefix = prefix.trim_end_matches('/');
    if prefix.is_empty() {
        format!("{id}/{file}")
    } else {
        format!("{prefix}/{id}/{file}")
    }
}

impl Exec<'_> {
    async fn writer_call(
        &self,
        cx: &ReadCtx<'_>,
        resource: &str,
        part: &str,
        input: Value,
    ) -> Result<Value, Failure> {
        self.map_run_call(cx, resource, &format!("ResultWriter/{part}"), input)
            .await
            .map_err(|e| writer_failure(task_failure_cause(resource, e)))
    }

    /// Writes the results and returns the Map's result (see the module doc).
    pub(super) async fn write_results(
        &self,
        cx: &ReadCtx<'_>,
        writer: &ResultWriter,
        parameters: Option<Value>,
        run: &MapRunId,
        records: &[ChildRecord<'_>],
    ) -> Result<Value, Failure> {
        let sm_arn = self.req.state_machine_arn.as_str();
        let Some(resource) = &writer.resource else {
            return Ok(Value::Array(entries(
                records,
                writer.transformation,
                sm_arn,
            )));
        };
        let params = match parameters {
            Some(Value::Object(m)) => m,
            None => Map::new(),
            Some(_) => {
                return Err(writer_failure(
                    "The ResultWriter Parameters must be a JSON object",
                ))
            }
        };
        let by_status = |s: ChildStatus| -> Vec<&ChildRecord<'_>> {
            records.iter().filter(|r| r.status == s).collect()
        };
        let statuses = [
            ChildStatus::Succeeded,
            ChildStatus::Failed,
            ChildStatus::Pending,
        ];
        if resource == WRITER_RESOURCES[1] {
            let topic = params
                .get("Topic")
                .and_then(Value::as_str)
                .ok_or_else(|| writer_failure("The kafka:publish ResultWriter needs a Topic"))?;
            let mut counts = Map::new();
            for s in statuses {
                let rs = by_status(s);
                counts.insert(s.as_str().into(), Value::from(rs.len()));
                for r in rs {
                    let entry = entries(std::slice::from_ref(r), writer.transformation, sm_arn)
                        .into_iter()
                        .next()
                        .unwrap_or(Value::Null);
                    let record = serde_json::json!({"Topic": topic, "Key": r.arn, "Value": entry});
                    self.writer_call(cx, resource, r.name, record).await?;
                }
            }
            let manifest_key = format!("{}/manifest", run.arn);
            let manifest = serde_json::json!({
                "DestinationTopic": topic,
                "MapRunArn": run.arn,
                "ResultCounts": counts,
            });
            let record =
                serde_json::json!({"Topic": topic, "Key": manifest_key, "Value": manifest});
            self.writer_call(cx, resource, "manifest", record).await?;
            return Ok(serde_json::json!({
                "MapRunArn": run.arn,
                "ResultWriterDetails": {"Topic": topic, "ManifestKey": manifest_key},
            }));
        }
        let bucket = params
            .get("Bucket")
            .and_then(Value::as_str)
            .ok_or_else(|| writer_failure("The s3:putObject ResultWriter needs a Bucket"))?
            .to_string();
        let prefix = params
            .get("Prefix")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let ext = match writer.output_type {
            OutputType::Json => "json",
            OutputType::Jsonl => "jsonl",
        };
        let mut files = Map::new();
        for s in statuses {
            let rs: Vec<ChildRecord<'_>> = by_status(s).into_iter().copied().collect();
            let mut listed = Vec::new();
            if !rs.is_empty() {
                let body = file_body(
                    &entries(&rs, writer.transformation, sm_arn),
                    writer.output_type,
                );
                let key = join_key(&prefix, &run.id, &format!("{}_0.{ext}", s.as_str()));
                listed.push(serde_json::json!({"Key": key, "Size": body.len()}));
                let put = serde_json::json!({"Bucket": bucket, "Key": key, "Body": body});
                self.writer_call(cx, resource, s.as_str(), put).await?;
            }
            files.insert(s.as_str().into(), Value::Array(listed));
        }
        let manifest_key = join_key(&prefix, &run.id, "manifest.json");
        let manifest = serde_json::json!({
            "DestinationBucket": bucket,
            "MapRunArn": run.arn,
            "ResultFiles": files,
        });
        let put =
            serde_json::json!({"Bucket": bucket, "Key": manifest_key, "Body": to_json(&manifest)});
        self.writer_call(cx, resource, "manifest", put).await?;
        Ok(serde_json::json!({
            "MapRunArn": run.arn,
            "ResultWriterDetails": {"Bucket": bucket, "Key": manifest_key},
        }))
    }
}
