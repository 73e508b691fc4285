//! Distributed Map in virtual time: readers, batching, children, tolerated failures and the
//! result writer against an in-memory S3 / Kafka registered under the contract's resources.

#![allow(clippy::unwrap_used)] // test assertions

use super::{request, T0};
use base64::Engine as _;
use expressway_engine::runtime::{SplitMix64, TokioClock};
use expressway_engine::tasks::Registry;
use expressway_engine::{
    execute, ChildExecution, ChildExecutions, LogConfig, LogLevel, Outcome, Runtime, Status,
    TaskError, TaskRequest,
};
use futures::future::BoxFuture;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Objects by (bucket, key) as bytes; every request seen.
#[derive(Default)]
struct Store {
    objects: Mutex<BTreeMap<(String, String), Vec<u8>>>,
    requests: Mutex<Vec<(String, Value)>>,
    published: Mutex<Vec<Value>>,
    records: Vec<Value>,
    fail_puts: bool,
}

impl Store {
    fn put(&self, bucket: &str, key: &str, body: impl Into<Vec<u8>>) {
        self.objects
            .lock()
            .unwrap()
            .insert((bucket.into(), key.into()), body.into());
    }
    fn text(&self, bucket: &str, key: &str) -> Option<String> {
        self.objects
            .lock()
            .unwrap()
            .get(&(bucket.to_string(), key.to_string()))
            .map(|b| String::from_utf8(b.clone()).unwrap())
    }
    fn handle(&self, r: &TaskRequest) -> Result<Value, TaskError> {
        self.requests
            .lock()
            .unwrap()
            .push((r.resource.clone(), r.input.clone()));
        let s = |k: &str| {
            r.input
                .get(k)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string()
        };
        match r.resource.rsplit(':').next().unwrap() {
            "getObject" => {
                let objects = self.objects.lock().unwrap();
                let body = objects.get(&(s("Bucket"), s("Key"))).ok_or_else(|| {
                    TaskError::new("S3.NoSuchKey", "The specified key does not exist.")
                })?;
                let body = if s("ExpresswayBodyEncoding") == "base64" {
                    base64::engine::general_purpose::STANDARD.encode(body)
                } else {
                    String::from_utf8(body.clone()).unwrap()
                };
                Ok(json!({"Body": body, "ContentLength": body.len()}))
            }
            "listObjectsV2" => {
                // pages of 2
                let objects = self.objects.lock().unwrap();
                let keys: Vec<&String> = objects
                    .keys()
                    .filter(|(b, k)| *b == s("Bucket") && k.starts_with(&s("Prefix")))
                    .map(|(_, k)| k)
                    .collect();
                let start: usize = s("ContinuationToken").parse().unwrap_or(0);
                let page: Vec<Value> = keys
                    .iter()
                    .skip(start)
                    .take(2)
                    .map(|k| json!({"Key": k, "Size": 1}))
                    .collect();
                let truncated = start + 2 < keys.len();
                let mut out = json!({"Contents": page, "IsTruncated": truncated, "KeyCount": 2});
                if truncated {
                    out["NextContinuationToken"] = json!((start + 2).to_string());
                }
                Ok(out)
            }
            "putObject" => {
                if self.fail_puts {
                    return Err(TaskError::new("S3.AccessDenied", "Access Denied"));
                }
                let body = match &r.input["Body"] {
                    Value::String(b) => b.clone(),
                    other => other.to_string(),
                };
                self.put(&s("Bucket"), &s("Key"), body);
                Ok(json!({"ETag": "e"}))
            }
            "getRecords" => {
                let max = r
                    .input
                    .get("MaxRecords")
                    .and_then(Value::as_u64)
                    .unwrap_or(u64::MAX);
                let records: Vec<Value> = self.records.iter().take(max as usize).cloned().collect();
                Ok(json!({"Records": records}))
            }
            "publish" => {
                self.published.lock().unwrap().push(r.input.clone());
                Ok(json!({"Topic": r.input["Topic"], "Partition": 0, "Offset": 0}))
            }
            other => Err(TaskError::new("States.TaskFailed", other)),
        }
    }
}

fn runtime(store: Arc<Store>, children: Option<Arc<dyn ChildExecutions>>) -> Runtime {
    let clock = Arc::new(TokioClock::starting_at(T0));
    let mut registry = Registry::new(clock.clone());
    registry.register_prefix(
        "arn:aws:states:::s3:",
        Arc::new({
            let store = store.clone();
            move |r: TaskRequest| {
                let out = store.handle(&r);
                Box::pin(async move { out }) as BoxFuture<'static, _>
            }
        }),
    );
    registry.register_prefix(
        "arn:aws:states:::kafka:",
        Arc::new(move |r: TaskRequest| {
            let out = store.handle(&r);
            Box::pin(async move { out }) as BoxFuture<'static, _>
        }),
    );
    Runtime {
        map_children: children,
        clock: clock.clone(),
        entropy: Arc::new(SplitMix64::new(1)),
        tasks: Arc::new(registry),
        callbacks: None,
    }
}

async fn run_on(rt: &Runtime, definition: Value, input: Value) -> Outcome {
    let machine = expressway_asl::load(&definition).expect("definition loads");
    let log = LogConfig {
        level: LogLevel::All,
        include_execution_data: true,
    };
    execute(&machine, &request(input, log), rt).await
}

async fn run(store: Arc<Store>, definition: Value, input: Value) -> Outcome {
    run_on(&runtime(store, None), definition, input).await
}

/// A Distributed Map over `extra` (ItemReader, ItemBatcher, ...) whose processor is a Pass.
fn dmap(extra: Value) -> Value {
    let mut m = json!({"Type": "Map", "End": true,
        "ItemProcessor": {"ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
            "StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}}});
    for (k, v) in extra.as_object().unwrap() {
        m[k] = v.clone();
    }
    json!({"StartAt": "M", "States": {"M": m}})
}

fn reader(input_type: Option<&str>, key: &str, config: Value) -> Value {
    let mut c = config;
    if let Some(t) = input_type {
        c["InputType"] = json!(t);
    }
    json!({"Resource": "arn:aws:states:::s3:getObject",
        "Parameters": {"Bucket": "b", "Key": key}, "ReaderConfig": c})
}

fn types(o: &Outcome) -> Vec<&str> {
    o.events.iter().map(|e| e.event_type).collect()
}

#[tokio::test(start_paused = true)]
async fn batches_of_two_from_the_issue_and_aws_events() {
    let def = dmap(
        json!({"ItemBatcher": {"MaxItemsPerBatch": 2, "BatchInput": {"job.$": "$.job"}},
        "ItemsPath": "$.items"}),
    );
    let o = run(Arc::default(), def, json!({"items": [1, 2, 3], "job": "j"})).await;
    assert_eq!(o.status, Status::Succeeded, "{o:?}");
    assert_eq!(
        o.output,
        Some(
            json!([{"BatchInput": {"job": "j"}, "Items": [1, 2]}, {"BatchInput": {"job": "j"}, "Items": [3]}])
        )
    );
    assert_eq!(
        types(&o),
        [
            "ExecutionStarted",
            "MapStateEntered",
            "MapStateStarted",
            "MapRunStarted",
            "MapRunSucceeded",
            "MapStateSucceeded",
            "MapStateExited",
            "ExecutionSucceeded"
        ]
    );
    let started = &o.events[3];
    let arn = started.details["mapRunArn"].as_str().unwrap();
    assert!(
        arn.starts_with("arn:aws:states:us-east-1:123456789012:mapRun:m/"),
        "{arn}"
    );
}

#[tokio::test(start_paused = true)]
async fn max_input_bytes_per_batch_splits_by_size() {
    // {"Items":[]} is 12 bytes, each "xxxxxxxx" 10 (+1 comma): two fit in 33, not three
    let def = dmap(json!({"ItemBatcher": {"MaxInputBytesPerBatch": 33}}));
    let o = run(
        Arc::default(),
        def,
        json!(["xxxxxxxx", "xxxxxxxx", "xxxxxxxx"]),
    )
    .await;
    assert_eq!(
        o.output,
        Some(json!([{"Items": ["xxxxxxxx", "xxxxxxxx"]}, {"Items": ["xxxxxxxx"]}])),
        "{o:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn json_jsonl_and_csv_readers() {
    let store = Arc::new(Store::default());
    store.put("b", "a.json", r#"{"data": {"rows": [{"n": 1}, {"n": 2}]}}"#);
    store.put("b", "a.jsonl", "{\"n\": 1}\n\n{\"n\": 2}\n{\"n\": 3}\n");
    store.put("b", "a.csv", "id,name\r\n1,\"Ada, L\"\n2,Bob\n");
    store.put("b", "b.csv", "1|x\n2|y\n");
    let cases = [
        (
            reader(
                Some("JSON"),
                "a.json",
                json!({"ItemsPointer": "/data/rows"}),
            ),
            json!([{"n": 1}, {"n": 2}]),
        ),
        (
            reader(Some("JSONL"), "a.jsonl", json!({"MaxItems": 2})),
            json!([{"n": 1}, {"n": 2}]),
        ),
        (
            reader(
                Some("CSV"),
                "a.csv",
                json!({"CSVHeaderLocation": "FIRST_ROW"}),
            ),
            json!([{"id": "1", "name": "Ada, L"}, {"id": "2", "name": "Bob"}]),
        ),
        (
            reader(
                Some("CSV"),
                "b.csv",
                json!({"CSVHeaderLocation": "GIVEN", "CSVHeaders": ["id", "v"], "CSVDelimiter": "PIPE", "MaxItemsPath": "$.max"}),
            ),
            json!([{"id": "1", "v": "x"}]),
        ),
    ];
    for (r, expected) in cases {
        let o = run(
            store.clone(),
            dmap(json!({"ItemReader": r})),
            json!({"max": 1}),
        )
        .await;
        assert_eq!(o.output, Some(expected), "{o:?}");
    }
}

fn gzip(text: &str) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(text.as_bytes()).unwrap();
    e.finish().unwrap()
}

#[tokio::test(start_paused = true)]
async fn manifest_reads_the_inventory_files() {
    let store = Arc::new(Store::default());
    store.put(
        "b",
        "inv/manifest.json",
        json!({"sourceBucket": "src", "destinationBucket": "arn:aws:s3:::inv-bucket",
            "fileFormat": "CSV", "fileSchema": "Bucket, Key, Size",
            "files": [{"key": "inv/data/1.csv.gz"}, {"key": "inv/data/2.csv.gz"}]})
        .to_string(),
    );
    store.put(
        "inv-bucket",
        "inv/data/1.csv.gz",
        gzip("\"src\",\"a.txt\",\"3\"\n"),
    );
    store.put(
        "inv-bucket",
        "inv/data/2.csv.gz",
        gzip("\"src\",\"b.txt\",\"4\"\n"),
    );
    let def = dmap(json!({"ItemReader": reader(Some("MANIFEST"), "inv/manifest.json", json!({}))}));
    let o = run(store, def, json!({})).await;
    assert_eq!(
        o.output,
        Some(
            json!([{"Bucket": "src", "Key": "a.txt", "Size": "3"}, {"Bucket": "src", "Key": "b.txt", "Size": "4"}])
        ),
        "{o:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn list_objects_pages_and_kafka_records() {
    let store = Arc::new(Store {
        records: vec![
            json!({"Topic": "t", "Partition": 0, "Offset": 0, "Value": {"a": 1}}),
            json!({"Topic": "t", "Partition": 0, "Offset": 1, "Value": {"a": 2}}),
            json!({"Topic": "t", "Partition": 1, "Offset": 0, "Value": "x"}),
        ],
        ..Store::default()
    });
    for k in ["p/1", "p/2", "p/3", "p/4", "p/5", "q/1"] {
        store.put("b", k, "x");
    }
    let def = dmap(
        json!({"ItemReader": {"Resource": "arn:aws:states:::s3:listObjectsV2",
        "Parameters": {"Bucket": "b", "Prefix": "p/"}},
        "ItemSelector": {"key.$": "$$.Map.Item.Value.Key", "i.$": "$$.Map.Item.Index"}}),
    );
    let o = run(store.clone(), def, json!({})).await;
    let keys: Vec<Value> = (1..=5)
        .map(|i| json!({"key": format!("p/{i}"), "i": i - 1}))
        .collect();
    assert_eq!(o.output, Some(Value::Array(keys)), "{o:?}");
    let pages = store
        .requests
        .lock()
        .unwrap()
        .iter()
        .filter(|(r, _)| r.ends_with("listObjectsV2"))
        .count();
    assert_eq!(pages, 3, "5 keys in pages of 2");

    let def = dmap(
        json!({"ItemReader": {"Resource": "arn:aws:states:::kafka:getRecords",
        "Parameters": {"Topic": "t"}, "ReaderConfig": {"MaxItems": 2}},
        "ItemSelector": {"v.$": "$$.Map.Item.Value.Value"}}),
    );
    let o = run(store.clone(), def, json!({})).await;
    assert_eq!(
        o.output,
        Some(json!([{"v": {"a": 1}}, {"v": {"a": 2}}])),
        "{o:?}"
    );
    let last = store.requests.lock().unwrap().last().cloned().unwrap();
    assert_eq!(last.1, json!({"Topic": "t", "MaxRecords": 2}));
}

#[tokio::test(start_paused = true)]
async fn reader_failures_are_item_reader_failed_and_catchable() {
    let store = Arc::new(Store::default());
    store.put("b", "bad.json", "{not json");
    for (key, cause_part) in [
        ("missing.json", "S3.NoSuchKey"),
        ("bad.json", "not valid JSON"),
    ] {
        let o = run(
            store.clone(),
            dmap(json!({"ItemReader": reader(Some("JSON"), key, json!({}))})),
            json!({}),
        )
        .await;
        assert_eq!(o.status, Status::Failed);
        assert_eq!(o.error.as_deref(), Some("States.ItemReaderFailed"));
        assert!(o.cause.as_deref().unwrap().contains(cause_part), "{o:?}");
        assert!(types(&o).contains(&"MapRunFailed"), "{:?}", types(&o));
    }
    let mut def = dmap(
        json!({"ItemReader": reader(Some("JSON"), "missing.json", json!({})),
        "Catch": [{"ErrorEquals": ["States.ItemReaderFailed"], "Next": "C"}]}),
    );
    def["States"]["M"].as_object_mut().unwrap().remove("End");
    def["States"]["M"]["Next"] = json!("C");
    def["States"]["C"] = json!({"Type": "Pass", "End": true});
    let o = run(store, def, json!({})).await;
    assert_eq!(o.status, Status::Succeeded, "{o:?}");
    assert_eq!(o.output.unwrap()["Error"], json!("States.ItemReaderFailed"));
}

fn failing_processor(extra: Value) -> Value {
    let mut def = dmap(extra);
    def["States"]["M"]["ItemProcessor"]["StartAt"] = json!("C");
    def["States"]["M"]["ItemProcessor"]["States"] = json!({
        "C": {"Type": "Choice", "Choices": [{"Variable": "$.ok", "BooleanEquals": false, "Next": "F"}], "Default": "P"},
        "F": {"Type": "Fail", "Error": "Bad", "Cause": "not ok"},
        "P": {"Type": "Pass", "End": true}});
    def
}

#[tokio::test(start_paused = true)]
async fn tolerated_failures_across_children() {
    let input = json!([{"ok": true}, {"ok": false}, {"ok": false}, {"ok": true}]);
    let o = run(
        Arc::default(),
        failing_processor(json!({"ToleratedFailureCount": 2})),
        input.clone(),
    )
    .await;
    assert_eq!(o.status, Status::Succeeded, "{o:?}");
    assert_eq!(
        o.output.as_ref().unwrap()[1],
        json!({"Error": "Bad", "Cause": "not ok"})
    );
    let o = run(
        Arc::default(),
        failing_processor(json!({"ToleratedFailureCount": 1, "MaxConcurrency": 1})),
        input.clone(),
    )
    .await;
    assert_eq!(
        o.error.as_deref(),
        Some("States.ExceedToleratedFailureThreshold")
    );
    let o = run(Arc::default(), failing_processor(json!({})), input).await;
    assert_eq!(
        o.error.as_deref(),
        Some("Bad"),
        "without a tolerance the child's error"
    );
}

#[tokio::test(start_paused = true)]
async fn result_writer_layout_and_shape() {
    let store = Arc::new(Store::default());
    let def = failing_processor(json!({"ToleratedFailurePercentage": 50,
        "ResultWriter": {"Resource": "arn:aws:states:::s3:putObject",
            "Parameters": {"Bucket": "out", "Prefix": "runs/"}}}));
    let o = run(store.clone(), def, json!([{"ok": true}, {"ok": false}])).await;
    assert_eq!(o.status, Status::Succeeded, "{o:?}");
    let out = o.output.unwrap();
    let run_arn = out["MapRunArn"].as_str().unwrap().to_string();
    let id = run_arn.rsplit(':').next().unwrap();
    let manifest_key = format!("runs/{id}/manifest.json");
    assert_eq!(
        out["ResultWriterDetails"],
        json!({"Bucket": "out", "Key": manifest_key})
    );
    let manifest: Value = serde_json::from_str(&store.text("out", &manifest_key).unwrap()).unwrap();
    assert_eq!(manifest["MapRunArn"], json!(run_arn));
    assert_eq!(manifest["ResultFiles"]["PENDING"], json!([]));
    let ok_key = format!("runs/{id}/SUCCEEDED_0.json");
    assert_eq!(
        manifest["ResultFiles"]["SUCCEEDED"][0]["Key"],
        json!(ok_key)
    );
    let ok: Value = serde_json::from_str(&store.text("out", &ok_key).unwrap()).unwrap();
    assert_eq!(ok[0]["Status"], json!("SUCCEEDED"));
    assert_eq!(ok[0]["Output"], json!("{\"ok\":true}"));
    let failed: Value = serde_json::from_str(
        &store
            .text("out", &format!("runs/{id}/FAILED_0.json"))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(failed[0]["Error"], json!("Bad"));

    // WriterConfig alone: the transformed results come back as the output
    let def = dmap(json!({"ItemBatcher": {"MaxItemsPerBatch": 2},
        "ItemProcessor": {"ProcessorConfig": {"Mode": "DISTRIBUTED"}, "StartAt": "P",
            "States": {"P": {"Type": "Pass", "OutputPath": "$.Items", "End": true}}},
        "ResultWriter": {"WriterConfig": {"Transformation": "FLATTEN"}}}));
    let o = run(store.clone(), def, json!([1, 2, 3])).await;
    assert_eq!(o.output, Some(json!([1, 2, 3])), "{o:?}");

    // JSONL with COMPACT to Kafka
    let def = dmap(
        json!({"ResultWriter": {"Resource": "arn:aws:states:::kafka:publish",
        "Parameters": {"Topic": "results"}, "WriterConfig": {"OutputType": "JSONL", "Transformation": "COMPACT"}}}),
    );
    let o = run(store.clone(), def, json!([7, 8])).await;
    let published = store.published.lock().unwrap().clone();
    assert_eq!(published.len(), 3, "two results and the manifest");
    assert_eq!(published[0]["Value"], json!(7));
    assert_eq!(
        published[2]["Key"],
        json!(format!(
            "{}/manifest",
            o.output.unwrap()["MapRunArn"].as_str().unwrap()
        ))
    );
}

#[tokio::test(start_paused = true)]
async fn result_writer_failure() {
    let store = Arc::new(Store {
        fail_puts: true,
        ..Store::default()
    });
    let def = dmap(
        json!({"ResultWriter": {"Resource": "arn:aws:states:::s3:putObject",
        "Parameters": {"Bucket": "out", "Prefix": "p"}}}),
    );
    let o = run(store, def, json!([1])).await;
    assert_eq!(o.error.as_deref(), Some("States.ResultWriterFailed"));
    assert!(o.cause.unwrap().contains("S3.AccessDenied"));
}

/// Records children and how many run at once; each takes a virtual second.
#[derive(Default)]
struct Counting {
    now: AtomicUsize,
    peak: AtomicUsize,
    seen: Mutex<Vec<ChildExecution>>,
}

struct Shared(Arc<Counting>);

impl ChildExecutions for Shared {
    fn run(&self, child: ChildExecution) -> BoxFuture<'static, Result<Value, TaskError>> {
        let me = self.0.clone();
        Box::pin(async move {
            let n = me.now.fetch_add(1, Ordering::SeqCst) + 1;
            me.peak.fetch_max(n, Ordering::SeqCst);
            let input = child.input.clone();
            me.seen.lock().unwrap().push(child);
            tokio::time::sleep(Duration::from_secs(1)).await;
            me.now.fetch_sub(1, Ordering::SeqCst);
            Ok(input)
        })
    }
}

#[tokio::test(start_paused = true)]
async fn max_concurrency_and_deterministic_child_arns() {
    let mut arns = Vec::new();
    for _ in 0..2 {
        let counting = Arc::new(Counting::default());
        let rt = runtime(Arc::default(), Some(Arc::new(Shared(counting.clone()))));
        let def = dmap(json!({"MaxConcurrency": 3, "Label": "L"}));
        let o = run_on(&rt, def, json!([1, 2, 3, 4, 5, 6, 7])).await;
        assert_eq!(o.output, Some(json!([1, 2, 3, 4, 5, 6, 7])), "{o:?}");
        assert_eq!(counting.peak.load(Ordering::SeqCst), 3);
        assert_eq!(
            o.stop_millis - o.start_millis,
            3_000,
            "7 children, 3 at a time"
        );
        let mut seen: Vec<(usize, String, String)> = counting
            .seen
            .lock()
            .unwrap()
            .iter()
            .map(|c| (c.index, c.execution_arn.clone(), c.map_run_arn.clone()))
            .collect();
        seen.sort();
        assert!(seen[0].2.contains(":mapRun:m/L:"), "{}", seen[0].2);
        assert!(
            seen[0]
                .1
                .starts_with("arn:aws:states:us-east-1:123456789012:execution:m/L:"),
            "{}",
            seen[0].1
        );
        arns.push(seen);
    }
    assert_eq!(arns[0], arns[1]);
    let distinct: std::collections::HashSet<&String> = arns[0].iter().map(|s| &s.1).collect();
    assert_eq!(distinct.len(), 7);
}

#[test]
fn refused_fields_name_themselves() {
    let cases = [
        (
            json!({"ItemReader": reader(Some("PARQUET"), "k", json!({}))}),
            "/States/M/ItemReader/ReaderConfig/InputType",
            "PARQUET",
        ),
        (
            json!({"ItemReader": reader(Some("MANIFEST"), "k", json!({"ManifestType": "ATHENA_DATA"}))}),
            "/States/M/ItemReader/ReaderConfig/ManifestType",
            "ATHENA_DATA",
        ),
        (
            json!({"ItemReader": {"Resource": "arn:aws:states:::dynamodb:scan", "Parameters": {}}}),
            "/States/M/ItemReader/Resource",
            "dynamodb:scan",
        ),
        (
            json!({"ItemReader": reader(Some("JSON"), "k", json!({"CSVDelimiter": "PIPE"}))}),
            "/States/M/ItemReader/ReaderConfig/CSVDelimiter",
            "CSV",
        ),
        (
            json!({"ItemReader": reader(Some("CSV"), "k", json!({"CSVDelimiter": "HASH"}))}),
            "/States/M/ItemReader/ReaderConfig/CSVDelimiter",
            "HASH",
        ),
        (
            json!({"ItemReader": reader(Some("CSV"), "k", json!({"CSVHeaderLocation": "GIVEN"}))}),
            "/States/M/ItemReader/ReaderConfig/CSVHeaders",
            "GIVEN",
        ),
        (
            json!({"ItemReader": reader(Some("JSON"), "k", json!({"Other": 1}))}),
            "/States/M/ItemReader/ReaderConfig/Other",
            "Other",
        ),
        (
            json!({"ResultWriter": {"Resource": "arn:aws:states:::s3:putObject", "WriterConfig": {"Transformation": "LOAD_AND_FLATTEN"}}}),
            "/States/M/ResultWriter/WriterConfig/Transformation",
            "LOAD_AND_FLATTEN",
        ),
        (
            json!({"ResultWriter": {"Resource": "arn:aws:states:::sqs:sendMessage"}}),
            "/States/M/ResultWriter/Resource",
            "sqs:sendMessage",
        ),
        (
            json!({"ItemBatcher": {"MaxInputBytesPerBatch": 300000}}),
            "/States/M/ItemBatcher/MaxInputBytesPerBatch",
            "262144",
        ),
        (
            json!({"ItemBatcher": {"BatchInput": {}}}),
            "/States/M/ItemBatcher",
            "MaxItemsPerBatch",
        ),
    ];
    for (extra, location, word) in cases {
        let e = expressway_asl::load(&dmap(extra.clone())).expect_err("refused");
        assert_eq!(e.location, location, "{extra}: {e}");
        assert!(e.message.contains(word), "{extra}: {e}");
    }
    let mut inline = dmap(json!({"ItemBatcher": {"MaxItemsPerBatch": 2}}));
    inline["States"]["M"]["ItemProcessor"]["ProcessorConfig"]["Mode"] = json!("INLINE");
    let e = expressway_asl::load(&inline).expect_err("refused");
    assert_eq!(e.location, "/States/M/ItemBatcher");
}
