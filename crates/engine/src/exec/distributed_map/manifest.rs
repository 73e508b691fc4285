//! `InputType: MANIFEST`: an S3 Inventory `manifest.json` (fields `destinationBucket`,
//! `fileFormat`, `fileSchema`, `files[].key`); its items are the rows of the gzip CSV data files
//! it lists, keyed by the `fileSchema` column names (AWS: "ItemReader", S3 inventory manifest).

use super::reader::{csv_items, reader_failure, ReadCtx};
use crate::exec::failure::Failure;
use crate::exec::Exec;
use base64::Engine as _;
use expressway_asl::model::*;
use serde_json::{Map, Value};
use std::io::Read;

pub(super) async fn read(
    exec: &Exec<'_>,
    cx: &ReadCtx<'_>,
    params: &Map<String, Value>,
    limit: usize,
) -> Result<Vec<Value>, Failure> {
    let text = exec.get_object(cx, params, false).await?;
    let manifest: Value = serde_json::from_str(&text)
        .map_err(|e| reader_failure(format!("The manifest is not valid JSON: {e}")))?;
    let format = manifest.get("fileFormat").and_then(Value::as_str);
    if format != Some("CSV") {
        return Err(reader_failure(format!(
            "The manifest's fileFormat {} is not supported (supported: CSV)",
            format.unwrap_or("(missing)")
        )));
    }
    let schema = manifest
        .get("fileSchema")
        .and_then(Value::as_str)
        .ok_or_else(|| reader_failure("The manifest has no fileSchema"))?;
    let headers = CsvHeaders::Given(schema.split(',').map(|h| h.trim().to_string()).collect());
    // destinationBucket is an ARN (arn:aws:s3:::name); a bare name is taken as it is
    let bucket = manifest
        .get("destinationBucket")
        .and_then(Value::as_str)
        .map(|b| b.rsplit(':').next().unwrap_or(b).to_string())
        .or_else(|| {
            params
                .get("Bucket")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .ok_or_else(|| reader_failure("The manifest has no destinationBucket"))?;
    let files = manifest
        .get("files")
        .and_then(Value::as_array)
        .ok_or_else(|| reader_failure("The manifest has no files array"))?;
    let mut items = Vec::new();
    for file in files {
        if items.len() >= limit {
            break;
        }
        let key = file
            .get("key")
            .and_then(Value::as_str)
            .ok_or_else(|| reader_failure("A manifest file entry has no key"))?;
        let mut get = Map::new();
        get.insert("Bucket".into(), Value::from(bucket.as_str()));
        get.insert("Key".into(), Value::from(key));
        let body = exec.get_object(cx, &get, true).await?;
        let csv = gunzip_base64(&body)
            .map_err(|e| reader_failure(format!("The inventory file '{key}' {e}")))?;
        items.extend(csv_items(&csv, b',', &headers, limit - items.len())?);
    }
    Ok(items)
}

/// base64 text of gzip bytes to the UTF-8 text they hold.
pub(super) fn gunzip_base64(body: &str) -> Result<String, String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(body.trim())
        .map_err(|e| format!("is not valid base64: {e}"))?;
    let mut text = String::new();
    flate2::read::MultiGzDecoder::new(bytes.as_slice())
        .read_to_string(&mut text)
        .map_err(|e| format!("is not gzip-compressed UTF-8 text: {e}"))?;
    Ok(text)
}
