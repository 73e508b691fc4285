//! Loads what a Distributed Map adds to a Map: `ProcessorConfig.ExecutionType`, `ItemReader`,
//! `ItemBatcher` and `ResultWriter`.
//!
//! Every field is either loaded into the typed model or refused here with a [`LoadError`] naming
//! it, so nothing in a definition is silently ignored at run time (AWS: "ItemReader",
//! "ItemBatcher", "ResultWriter" in the Step Functions developer guide; asl-reference.md §1.2).

use super::{err, Ctx, R};
use crate::model::*;
use crate::template::Lang;
use serde_json::{Map, Value};

/// `ItemReader` resources Expressway reads items through.
pub const READER_RESOURCES: [&str; 3] = [
    "arn:aws:states:::s3:getObject",
    "arn:aws:states:::s3:listObjectsV2",
    "arn:aws:states:::kafka:getRecords",
];
/// `ResultWriter` resources Expressway writes results through.
pub const WRITER_RESOURCES: [&str; 2] = [
    "arn:aws:states:::s3:putObject",
    "arn:aws:states:::kafka:publish",
];
/// AWS's ceiling for `ItemBatcher.MaxInputBytesPerBatch` (256 KiB).
pub const MAX_INPUT_BYTES_PER_BATCH: u64 = 256 * 1024;

const DIST_ONLY: [&str; 3] = ["ItemReader", "ItemBatcher", "ResultWriter"];

/// The Distributed Map part of a Map state, or `None` for an inline Map (which must not carry
/// any of the distributed-only fields).
pub(super) fn load(
    cx: &Ctx<'_>,
    processor: &Map<String, Value>,
    ploc: &str,
    distributed: bool,
) -> R<Option<Box<DistributedConfig>>> {
    if !distributed {
        if let Some(field) = DIST_ONLY.iter().find(|f| cx.get(f).is_some()) {
            return err(
                format!("Field '{field}' is only supported with ProcessorConfig.Mode DISTRIBUTED"),
                &cx.at(field),
            );
        }
        return Ok(None);
    }
    let execution_type = match processor
        .get("ProcessorConfig")
        .and_then(|c| c.get("ExecutionType"))
    {
        None => ExecutionType::Standard,
        Some(Value::String(s)) if s == "STANDARD" => ExecutionType::Standard,
        Some(Value::String(s)) if s == "EXPRESS" => ExecutionType::Express,
        Some(other) => {
            return err(
                format!("Field 'ExecutionType' must be one of [STANDARD, EXPRESS] but was {other}"),
                &format!("{ploc}/ProcessorConfig/ExecutionType"),
            )
        }
    };
    Ok(Some(Box::new(DistributedConfig {
        execution_type,
        item_reader: match sub(cx, "ItemReader")? {
            Some(r) => Some(item_reader(&r)?),
            None => None,
        },
        item_batcher: match sub(cx, "ItemBatcher")? {
            Some(b) => Some(item_batcher(&b)?),
            None => None,
        },
        result_writer: match sub(cx, "ResultWriter")? {
            Some(w) => Some(result_writer(&w)?),
            None => None,
        },
    })))
}

/// A nested object as a context of its own (same definition, deeper location).
struct Sub<'a> {
    body: &'a Map<String, Value>,
    loc: String,
    cx: &'a Ctx<'a>,
}

impl Sub<'_> {
    fn ctx(&self) -> Ctx<'_> {
        Ctx {
            body: self.body,
            loc: &self.loc,
            index: self.cx.index,
            lang: self.cx.lang,
        }
    }
    /// Refuses every key not in `known`, naming it.
    fn only(&self, known: &[&str]) -> R<()> {
        match self.body.keys().find(|k| !known.contains(&k.as_str())) {
            Some(k) => err(
                format!(
                    "Field '{k}' is not supported here (supported: {})",
                    known.join(", ")
                ),
                &format!("{}/{k}", self.loc),
            ),
            None => Ok(()),
        }
    }
    fn nested(&self, field: &str) -> R<Option<Sub<'_>>> {
        match self.body.get(field) {
            None => Ok(None),
            Some(Value::Object(o)) => Ok(Some(Sub {
                body: o,
                loc: format!("{}/{field}", self.loc),
                cx: self.cx,
            })),
            Some(_) => err(
                format!("Field '{field}' must be an object"),
                &format!("{}/{field}", self.loc),
            ),
        }
    }
    fn enum_str<'v>(&'v self, field: &str, allowed: &[&str]) -> R<Option<&'v str>> {
        match self.body.get(field) {
            None => Ok(None),
            Some(Value::String(s)) if allowed.contains(&s.as_str()) => Ok(Some(s)),
            Some(Value::String(s)) => err(
                format!(
                    "{field} {s} is not supported (supported: {})",
                    allowed.join(", ")
                ),
                &format!("{}/{field}", self.loc),
            ),
            Some(other) => err(
                format!("Field '{field}' must be a string but was {other}"),
                &format!("{}/{field}", self.loc),
            ),
        }
    }
    /// `Parameters` in JSONPath, `Arguments` in JSONata; the other one is refused.
    fn parameters(&self) -> R<Option<crate::template::Template>> {
        let (field, wrong) = match self.cx.lang {
            Lang::JsonPath => ("Parameters", "Arguments"),
            Lang::Jsonata => ("Arguments", "Parameters"),
        };
        if self.body.contains_key(wrong) {
            return err(
                format!("Field '{wrong}' is not supported in this query language (use '{field}')"),
                &format!("{}/{wrong}", self.loc),
            );
        }
        self.ctx().template(field)
    }
    fn resource(&self, allowed: &[&str], what: &str) -> R<String> {
        match self.body.get("Resource") {
            Some(Value::String(s)) if allowed.contains(&s.as_str()) => Ok(s.clone()),
            Some(Value::String(s)) => err(
                format!(
                    "{what} Resource '{s}' is not supported (supported: {})",
                    allowed.join(", ")
                ),
                &format!("{}/Resource", self.loc),
            ),
            Some(_) => err(
                "Field 'Resource' must be a string",
                &format!("{}/Resource", self.loc),
            ),
            None => err("These fields are required: [Resource]", &self.loc),
        }
    }
}

fn sub<'a>(cx: &'a Ctx<'a>, field: &str) -> R<Option<Sub<'a>>> {
    match cx.get(field) {
        None => Ok(None),
        Some(Value::Object(o)) => Ok(Some(Sub {
            body: o,
            loc: cx.at(field),
            cx,
        })),
        Some(_) => err(format!("Field '{field}' must be an object"), &cx.at(field)),
    }
}

fn item_reader(r: &Sub<'_>) -> R<ItemReader> {
    r.only(&["Resource", "Parameters", "Arguments", "ReaderConfig"])?;
    let resource = r.resource(&READER_RESOURCES, "ItemReader")?;
    let parameters = r.parameters()?;
    let get_object = resource == READER_RESOURCES[0];
    let mut config = ReaderConfig {
        input_type: None,
        csv_headers: CsvHeaders::FirstRow,
        csv_delimiter: b',',
        items_pointer: None,
        max_items: None,
    };
    match r.nested("ReaderConfig")? {
        None if get_object => return err(
            "These fields are required: [ReaderConfig] (ReaderConfig.InputType for s3:getObject)",
            &r.loc,
        ),
        None => {}
        Some(c) => {
            let known: &[&str] = if get_object {
                &[
                    "InputType",
                    "CSVHeaderLocation",
                    "CSVHeaders",
                    "CSVDelimiter",
                    "ItemsPointer",
                    "ManifestType",
                    "MaxItems",
                    "MaxItemsPath",
                ]
            } else {
                &["MaxItems", "MaxItemsPath"]
            };
            c.only(known)?;
            config.max_items = c.ctx().dynamic_u64("MaxItems", "MaxItemsPath")?;
            if get_object {
                config.input_type =
                    match c.enum_str("InputType", &["JSON", "JSONL", "CSV", "MANIFEST"])? {
                        Some("JSON") => Some(InputType::Json),
                        Some("JSONL") => Some(InputType::Jsonl),
                        Some("CSV") => Some(InputType::Csv),
                        Some(_) => Some(InputType::Manifest),
                        None => return err("These fields are required: [InputType]", &c.loc),
                    };
                reader_file_options(&c, &mut config)?;
            }
        }
    }
    Ok(ItemReader {
        resource,
        parameters,
        config,
    })
}

/// The getObject options that depend on `InputType`: each is refused with the input types it
/// does not apply to.
fn reader_file_options(c: &Sub<'_>, config: &mut ReaderConfig) -> R<()> {
    let input = config.input_type;
    let refuse_unless = |field: &str, ok: bool, types: &str| -> R<()> {
        if c.body.contains_key(field) && !ok {
            return err(
                format!("Field '{field}' applies only to InputType {types}"),
                &format!("{}/{field}", c.loc),
            );
        }
        Ok(())
    };
    let csv = input == Some(InputType::Csv);
    refuse_unless("CSVHeaderLocation", csv, "CSV")?;
    refuse_unless("CSVHeaders", csv, "CSV")?;
    refuse_unless("CSVDelimiter", csv, "CSV")?;
    refuse_unless("ItemsPointer", input == Some(InputType::Json), "JSON")?;
    refuse_unless(
        "ManifestType",
        input == Some(InputType::Manifest),
        "MANIFEST",
    )?;
    // ATHENA_DATA manifests are not read; S3_INVENTORY is the default.
    c.enum_str("ManifestType", &["S3_INVENTORY"])?;
    if let Some(d) = c.enum_str(
        "CSVDelimiter",
        &["COMMA", "PIPE", "SEMICOLON", "SPACE", "TAB"],
    )? {
        config.csv_delimiter = match d {
            "PIPE" => b'|',
            "SEMICOLON" => b';',
            "SPACE" => b' ',
            "TAB" => b'\t',
            _ => b',',
        };
    }
    let given = c.enum_str("CSVHeaderLocation", &["FIRST_ROW", "GIVEN"])? == Some("GIVEN");
    let headers = match c.body.get("CSVHeaders") {
        None => None,
        Some(Value::Array(hs)) => Some(
            hs.iter()
                .map(|h| h.as_str().map(str::to_string))
                .collect::<Option<Vec<String>>>()
                .ok_or_else(|| super::LoadError {
                    message: "Field 'CSVHeaders' must be an array of strings".into(),
                    location: format!("{}/CSVHeaders", c.loc),
                })?,
        ),
        Some(_) => {
            return err(
                "Field 'CSVHeaders' must be an array of strings",
                &format!("{}/CSVHeaders", c.loc),
            )
        }
    };
    config.csv_headers = match (given, headers) {
        (true, Some(h)) if !h.is_empty() => CsvHeaders::Given(h),
        (true, _) => {
            return err(
                "CSVHeaderLocation GIVEN requires a non-empty CSVHeaders",
                &format!("{}/CSVHeaders", c.loc),
            )
        }
        (false, Some(_)) => {
            return err(
                "Field 'CSVHeaders' requires CSVHeaderLocation GIVEN",
                &format!("{}/CSVHeaders", c.loc),
            )
        }
        (false, None) => CsvHeaders::FirstRow,
    };
    config.items_pointer = match c.body.get("ItemsPointer") {
        None => None,
        Some(Value::String(p)) if p.is_empty() || p.starts_with('/') => Some(p.clone()),
        Some(_) => {
            return err(
                "Field 'ItemsPointer' must be a JSON pointer (\"/path/to/array\")",
                &format!("{}/ItemsPointer", c.loc),
            )
        }
    };
    Ok(())
}

fn item_batcher(b: &Sub<'_>) -> R<ItemBatcher> {
    b.only(&[
        "MaxItemsPerBatch",
        "MaxItemsPerBatchPath",
        "MaxInputBytesPerBatch",
        "MaxInputBytesPerBatchPath",
        "BatchInput",
    ])?;
    let cx = b.ctx();
    let max_items_per_batch = cx.dynamic_u64("MaxItemsPerBatch", "MaxItemsPerBatchPath")?;
    let max_input_bytes_per_batch =
        cx.dynamic_u64("MaxInputBytesPerBatch", "MaxInputBytesPerBatchPath")?;
    if let Some(Dynamic::Fixed(n)) = &max_input_bytes_per_batch {
        if *n == 0 || *n > MAX_INPUT_BYTES_PER_BATCH {
            return err(
                format!("MaxInputBytesPerBatch must be between 1 and {MAX_INPUT_BYTES_PER_BATCH}"),
                &cx.at("MaxInputBytesPerBatch"),
            );
        }
    }
    if let Some(Dynamic::Fixed(0)) = &max_items_per_batch {
        return err(
            "MaxItemsPerBatch must be at least 1",
            &cx.at("MaxItemsPerBatch"),
        );
    }
    if max_items_per_batch.is_none() && max_input_bytes_per_batch.is_none() {
        return err(
            "ItemBatcher needs one of [MaxItemsPerBatch, MaxItemsPerBatchPath, MaxInputBytesPerBatch, MaxInputBytesPerBatchPath]",
            &b.loc,
        );
    }
    Ok(ItemBatcher {
        max_items_per_batch,
        max_input_bytes_per_batch,
        batch_input: cx.template("BatchInput")?,
    })
}

fn result_writer(w: &Sub<'_>) -> R<ResultWriter> {
    w.only(&["Resource", "Parameters", "Arguments", "WriterConfig"])?;
    let resource = if w.body.contains_key("Resource") {
        Some(w.resource(&WRITER_RESOURCES, "ResultWriter")?)
    } else {
        None
    };
    let parameters = w.parameters()?;
    if resource.is_none() && parameters.is_some() {
        return err(
            "These fields are required: [Resource] (with Parameters/Arguments)",
            &w.loc,
        );
    }
    let mut output_type = OutputType::Json;
    let mut transformation = Transformation::None;
    match w.nested("WriterConfig")? {
        None if resource.is_none() => {
            return err(
                "These fields are required: [Resource | WriterConfig]",
                &w.loc,
            )
        }
        None => {}
        Some(c) => {
            c.only(&["OutputType", "Transformation"])?;
            if c.enum_str("OutputType", &["JSON", "JSONL"])? == Some("JSONL") {
                output_type = OutputType::Jsonl;
            }
            transformation = match c.enum_str("Transformation", &["NONE", "COMPACT", "FLATTEN"])? {
                Some("COMPACT") => Transformation::Compact,
                Some("FLATTEN") => Transformation::Flatten,
                _ => Transformation::None,
            };
        }
    }
    Ok(ResultWriter {
        resource,
        parameters,
        output_type,
        transformation,
    })
}
