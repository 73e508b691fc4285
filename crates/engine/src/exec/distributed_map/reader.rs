//! `ItemReader`: the items of a Distributed Map read through the task dispatcher
//! (`s3:getObject` with `ReaderConfig.InputType` JSON / JSONL / CSV / MANIFEST,
//! `s3:listObjectsV2`, `kafka:getRecords`; shapes in the Distributed Map contract). Any failure of
//! the resource or of the data is `States.ItemReaderFailed` with a cause naming it.

use super::csv;
use super::manifest;
use crate::exec::failure::Failure;
use crate::exec::{idempotency_key_at, Exec};
use crate::runtime::{TaskError, TaskRequest};
use expressway_asl::load::READER_RESOURCES;
use expressway_asl::model::*;
use serde_json::{Map, Value};

pub(super) const ITEM_READER_FAILED: &str = "States.ItemReaderFailed";

/// Where a reader request comes from (for the TaskRequest).
pub(super) struct ReadCtx<'a> {
    pub(super) state_name: &'a str,
    pub(super) scope: &'a str,
    pub(super) attempt: u32,
}

pub(super) fn reader_failure(cause: impl Into<String>) -> Failure {
    Failure::new(ITEM_READER_FAILED, Some(cause.into()))
}

pub(super) fn task_failure_cause(resource: &str, e: TaskError) -> String {
    match e.cause {
        Some(c) => format!("{resource} failed with {}: {c}", e.error),
        None => format!("{resource} failed with {}", e.error),
    }
}

fn task_failure(resource: &str, e: TaskError) -> Failure {
    reader_failure(task_failure_cause(resource, e))
}

impl Exec<'_> {
    async fn reader_call(
        &self,
        cx: &ReadCtx<'_>,
        resource: &str,
        input: Value,
    ) -> Result<Value, Failure> {
        self.map_run_call(cx, resource, "ItemReader", input)
            .await
            .map_err(|e| task_failure(resource, e))
    }

    /// Invokes `resource` for the ItemReader / ResultWriter of a Map Run (`part` tells the
    /// calls apart in their idempotency keys).
    pub(super) async fn map_run_call(
        &self,
        cx: &ReadCtx<'_>,
        resource: &str,
        part: &str,
        input: Value,
    ) -> Result<Value, TaskError> {
        let key_scope = if cx.scope.is_empty() {
            part.to_string()
        } else {
            format!("{}/{part}", cx.scope)
        };
        let request = TaskRequest {
            resource: resource.to_string(),
            input,
            state_name: cx.state_name.to_string(),
            execution_arn: self.req.execution_arn.clone(),
            attempt: cx.attempt,
            scope: cx.scope.to_string(),
            timeout: None,
            idempotency_key: idempotency_key_at(
                &self.req.execution_arn,
                cx.state_name,
                &key_scope,
                cx.attempt,
            ),
        };
        self.rt.tasks.invoke(request).await
    }

    /// Reads the items (at most `max_items`) with the evaluated `parameters`.
    pub(super) async fn read_items(
        &self,
        cx: &ReadCtx<'_>,
        reader: &ItemReader,
        parameters: Value,
        max_items: Option<u64>,
    ) -> Result<Vec<Value>, Failure> {
        let Value::Object(params) = parameters else {
            return Err(reader_failure(
                "The ItemReader Parameters must be a JSON object",
            ));
        };
        let limit = max_items.map(|m| m as usize).unwrap_or(usize::MAX);
        let mut items = match reader.resource.as_str() {
            r if r == READER_RESOURCES[0] => {
                let input_type = reader.config.input_type.unwrap_or(InputType::Json);
                if input_type == InputType::Manifest {
                    manifest::read(self, cx, &params, limit).await?
                } else {
                    let body = self.get_object(cx, &params, false).await?;
                    parse_body(&body, input_type, &reader.config, limit)?
                }
            }
            r if r == READER_RESOURCES[1] => self.list_objects(cx, params, limit).await?,
            _ => {
                let mut input = params;
                if let Some(m) = max_items {
                    input.insert("MaxRecords".into(), Value::from(m));
                }
                let out = self
                    .reader_call(cx, &reader.resource, Value::Object(input))
                    .await?;
                match out.get("Records") {
                    Some(Value::Array(records)) => records.clone(),
                    _ => return Err(reader_failure("kafka:getRecords returned no Records array")),
                }
            }
        };
        items.truncate(limit);
        Ok(items)
    }

    /// `s3:getObject`'s `Body` (base64-decoded bytes' text when `raw`).
    pub(super) async fn get_object(
        &self,
        cx: &ReadCtx<'_>,
        params: &Map<String, Value>,
        raw: bool,
    ) -> Result<String, Failure> {
        let mut input = params.clone();
        if raw {
            input.insert("ExpresswayBodyEncoding".into(), Value::from("base64"));
        }
        let out = self
            .reader_call(cx, READER_RESOURCES[0], Value::Object(input))
            .await?;
        match out.get("Body") {
            Some(Value::String(s)) => Ok(s.clone()),
            _ => Err(reader_failure("s3:getObject returned no Body string")),
        }
    }

    async fn list_objects(
        &self,
        cx: &ReadCtx<'_>,
        params: Map<String, Value>,
        limit: usize,
    ) -> Result<Vec<Value>, Failure> {
        let mut items = Vec::new();
        let mut token: Option<Value> = None;
        loop {
            let mut input = params.clone();
            if let Some(t) = token.take() {
                input.insert("ContinuationToken".into(), t);
            }
            let out = self
                .reader_call(cx, READER_RESOURCES[1], Value::Object(input))
                .await?;
            match out.get("Contents") {
                Some(Value::Array(contents)) => items.extend(contents.iter().cloned()),
                None | Some(Value::Null) => {}
                Some(_) => {
                    return Err(reader_failure(
                        "s3:listObjectsV2 returned a Contents that is not an array",
                    ))
                }
            }
            let truncated = out.get("IsTruncated").and_then(Value::as_bool) == Some(true);
            if !truncated || items.len() >= limit {
                return Ok(items);
            }
            match out.get("NextContinuationToken") {
                Some(t @ Value::String(_)) => token = Some(t.clone()),
                _ => {
                    return Err(reader_failure(
                        "s3:listObjectsV2 returned IsTruncated without a NextContinuationToken",
                    ))
                }
            }
        }
    }
}

/// The items of an object's text by `InputType`.
pub(super) fn parse_body(
    body: &str,
    input_type: InputType,
    config: &ReaderConfig,
    limit: usize,
) -> Result<Vec<Value>, Failure> {
    match input_type {
        InputType::Json => {
            let v: Value = serde_json::from_str(body)
                .map_err(|e| reader_failure(format!("The object is not valid JSON: {e}")))?;
            let v = match &config.items_pointer {
                None => v,
                Some(p) => v.pointer(p).cloned().ok_or_else(|| {
                    reader_failure(format!("ItemsPointer '{p}' selects nothing in the object"))
                })?,
            };
            match v {
                Value::Array(items) => Ok(items),
                _ => Err(reader_failure(
                    "Attempting to map over non-iterable node: the JSON object does not hold an array",
                )),
            }
        }
        InputType::Jsonl => {
            let mut items = Vec::new();
            for (n, line) in body.lines().enumerate() {
                if items.len() >= limit {
                    break;
                }
                if line.trim().is_empty() {
                    continue;
                }
                items.push(serde_json::from_str(line).map_err(|e| {
                    reader_failure(format!("Line {} is not valid JSON: {e}", n + 1))
                })?);
            }
            Ok(items)
        }
        InputType::Csv | InputType::Manifest => {
            csv_items(body, config.csv_delimiter, &config.csv_headers, limit)
        }
    }
}

/// CSV rows as objects of strings, keyed by the headers (the first row, or the given ones).
pub(super) fn csv_items(
    body: &str,
    delimiter: u8,
    headers: &CsvHeaders,
    limit: usize,
) -> Result<Vec<Value>, Failure> {
    let rows = csv::parse(body, delimiter)
        .map_err(|e| reader_failure(format!("The CSV object is malformed: {e}")))?;
    let mut rows = rows.into_iter();
    let headers: Vec<String> = match headers {
        CsvHeaders::Given(h) => h.clone(),
        CsvHeaders::FirstRow => rows
            .next()
            .ok_or_else(|| reader_failure("The CSV object has no header row"))?,
    };
    let mut items = Vec::new();
    for (n, row) in rows.enumerate() {
        if items.len() >= limit {
            break;
        }
        if row.len() > headers.len() {
            return Err(reader_failure(format!(
                "CSV row {} has {} fields but there are {} headers",
                n + 1,
                row.len(),
                headers.len()
            )));
        }
        let mut item = Map::new();
        let mut fields = row.into_iter();
        for h in &headers {
            item.insert(h.clone(), Value::String(fields.next().unwrap_or_default()));
        }
        items.push(Value::Object(item));
    }
    Ok(items)
}
