//! The S3 resources against a real S3-compatible server (moto, signatures enforced), through
//! `deploy/s3-it.sh`, which starts it and sets `EXPRESSWAY_IT_S3_*`. Ignored in `cargo test`.

use super::support::{registry, request, run};
use expressway_engine::tasks::Registry;
use expressway_engine::{Status, TaskDispatcher};
use expressway_tasks::s3::{S3_GET_OBJECT, S3_LIST_OBJECTS_V2, S3_PUT_OBJECT};
use serde_json::{json, Value};

struct Store {
    registry: Registry,
    bucket: String,
    /// Keys of this test start with it, so tests sharing the bucket do not see each other.
    prefix: String,
}

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: run deploy/s3-it.sh"))
}

fn store(test: &str) -> Store {
    store_with_secret(test, &env("EXPRESSWAY_IT_S3_SECRET_ACCESS_KEY"))
}

fn store_with_secret(test: &str, secret: &str) -> Store {
    let config = json!({"s3": {
        "endpoint": env("EXPRESSWAY_IT_S3_ENDPOINT"),
        "region": "us-east-1",
        "path_style": true,
        "access_key_id": env("EXPRESSWAY_IT_S3_ACCESS_KEY_ID"),
        "secret_access_key": secret,
    }});
    Store {
        registry: registry(&config.to_string()),
        bucket: env("EXPRESSWAY_IT_S3_BUCKET"),
        prefix: format!("{test}/"),
    }
}

impl Store {
    async fn call(&self, resource: &str, input: Value) -> Result<Value, (String, String)> {
        self.registry
            .invoke(request(resource, input))
            .await
            .map_err(|e| (e.error, e.cause.unwrap_or_default()))
    }
    async fn put(&self, key: &str, body: &str) {
        self.call(
            S3_PUT_OBJECT,
            json!({"Bucket": self.bucket, "Key": format!("{}{key}", self.prefix), "Body": body}),
        )
        .await
        .expect("putObject");
    }
    async fn get(&self, key: &str) -> Value {
        self.call(S3_GET_OBJECT, json!({"Bucket": self.bucket, "Key": key}))
            .await
            .expect("getObject")
    }
}

fn dmap(reader: Value, extra: Value) -> Value {
    let mut map = json!({"Type": "Map", "ItemReader": reader,
        "ItemProcessor": {"ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "EXPRESS"},
            "StartAt": "P", "States": {"P": {"Type": "Pass", "End": true}}},
        "End": true});
    if let (Some(m), Value::Object(e)) = (map.as_object_mut(), extra) {
        m.extend(e);
    }
    json!({"StartAt": "M", "States": {"M": map}})
}

#[tokio::test]
#[ignore = "needs an S3-compatible server: deploy/s3-it.sh"]
async fn s3_objects_round_trip_with_keys_that_need_encoding() {
    let s = store("round-trip");
    let key = "dir with space/ünïcode+plus=eq&amp.json";
    s.put(key, r#"{"a": 1}"#).await;
    let full = format!("{}{key}", s.prefix);
    let got = s.get(&full).await;
    assert_eq!(got["Body"], json!(r#"{"a": 1}"#));
    assert_eq!(got["ContentLength"], json!(8));
    assert!(
        got["ETag"].as_str().is_some_and(|e| e.starts_with('"')),
        "{got}"
    );
    // A JSON body that is not a string is written serialised.
    s.call(
        S3_PUT_OBJECT,
        json!({"Bucket": s.bucket, "Key": format!("{}obj.json", s.prefix), "Body": {"b": [1, 2]}}),
    )
    .await
    .expect("put");
    let got = s.get(&format!("{}obj.json", s.prefix)).await;
    assert_eq!(got["Body"], json!(r#"{"b":[1,2]}"#));
    assert_eq!(got["ContentType"], json!("application/json"));
    // Binary bodies come back as base64 when asked.
    let got = s
        .call(
            S3_GET_OBJECT,
            json!({"Bucket": s.bucket, "Key": full, "ExpresswayBodyEncoding": "base64"}),
        )
        .await
        .expect("get");
    assert_eq!(got["Body"], json!("eyJhIjogMX0="));
}

#[tokio::test]
#[ignore = "needs an S3-compatible server: deploy/s3-it.sh"]
async fn s3_errors_carry_the_store_error_code() {
    let s = store("errors");
    let (error, cause) = s
        .call(
            S3_GET_OBJECT,
            json!({"Bucket": s.bucket, "Key": "errors/missing.json"}),
        )
        .await
        .expect_err("missing key");
    assert_eq!(error, "S3.NoSuchKey", "{cause}");
    let (error, _) = s
        .call(
            S3_LIST_OBJECTS_V2,
            json!({"Bucket": "no-such-bucket-expressway"}),
        )
        .await
        .expect_err("missing bucket");
    assert_eq!(error, "S3.NoSuchBucket");
    // The store checks signatures: a wrong secret is refused, so the right one is really signing.
    let wrong = store_with_secret("errors", "not-the-secret");
    let (error, _) = wrong
        .call(S3_LIST_OBJECTS_V2, json!({"Bucket": s.bucket}))
        .await
        .expect_err("bad signature");
    assert_eq!(error, "S3.SignatureDoesNotMatch");
    let (error, cause) = s
        .call(S3_GET_OBJECT, json!({"Bucket": s.bucket}))
        .await
        .expect_err("no key");
    assert_eq!(error, "States.Runtime");
    assert!(cause.contains("Key"), "{cause}");
}

#[tokio::test]
#[ignore = "needs an S3-compatible server: deploy/s3-it.sh"]
async fn s3_listings_page_with_continuation_tokens() {
    let s = store("listing");
    for i in 0..5 {
        s.put(&format!("part-{i}.json"), "[]").await;
    }
    let mut keys = Vec::new();
    let mut token: Option<Value> = None;
    let mut pages = 0;
    loop {
        let mut input = json!({"Bucket": s.bucket, "Prefix": s.prefix, "MaxKeys": 2});
        if let Some(t) = token.take() {
            input["ContinuationToken"] = t;
        }
        let page = s.call(S3_LIST_OBJECTS_V2, input).await.expect("list");
        pages += 1;
        for c in page["Contents"].as_array().expect("Contents") {
            assert!(c["Size"].is_u64() && c["LastModified"].is_i64(), "{c}");
            assert!(c["Etag"].is_string(), "{c}");
            keys.push(c["Key"].as_str().expect("Key").to_string());
        }
        if page["IsTruncated"] != json!(true) {
            break;
        }
        token = Some(page["NextContinuationToken"].clone());
    }
    assert_eq!(pages, 3);
    let want: Vec<String> = (0..5).map(|i| format!("listing/part-{i}.json")).collect();
    assert_eq!(keys, want);
}

#[tokio::test]
#[ignore = "needs an S3-compatible server: deploy/s3-it.sh"]
async fn distributed_maps_read_json_jsonl_csv_and_listings_from_the_store() {
    let s = store("readers");
    s.put("items.json", r#"{"rows": [{"n": 1}, {"n": 2}, {"n": 3}]}"#)
        .await;
    s.put("items.jsonl", "{\"n\": 1}\n{\"n\": 2}\n").await;
    s.put("items.csv", "id,name\n1,ada\n2,grace\n").await;
    let get = |key: &str, config: Value| {
        json!({"Resource": "arn:aws:states:::s3:getObject",
            "Parameters": {"Bucket": s.bucket, "Key": format!("{}{key}", s.prefix)},
            "ReaderConfig": config})
    };
    let cases = [
        (
            get(
                "items.json",
                json!({"InputType": "JSON", "ItemsPointer": "/rows"}),
            ),
            json!([{"n": 1}, {"n": 2}, {"n": 3}]),
        ),
        (
            get("items.jsonl", json!({"InputType": "JSONL"})),
            json!([{"n": 1}, {"n": 2}]),
        ),
        (
            get(
                "items.csv",
                json!({"InputType": "CSV", "CSVHeaderLocation": "FIRST_ROW"}),
            ),
            json!([{"id": "1", "name": "ada"}, {"id": "2", "name": "grace"}]),
        ),
        (
            get(
                "items.json",
                json!({"InputType": "JSON", "ItemsPointer": "/rows", "MaxItems": 2}),
            ),
            json!([{"n": 1}, {"n": 2}]),
        ),
    ];
    for (reader, want) in cases {
        let o = run(
            &dmap(reader.clone(), json!({})),
            json!({}),
            s.registry.clone(),
        )
        .await;
        assert_eq!(o.status, Status::Succeeded, "{reader}: {o:?}");
        assert_eq!(o.output, Some(want), "{reader}");
    }
    let listing = json!({"Resource": "arn:aws:states:::s3:listObjectsV2",
        "Parameters": {"Bucket": s.bucket, "Prefix": s.prefix}});
    let o = run(
        &dmap(
            listing,
            json!({"ItemSelector": {"key.$": "$$.Map.Item.Value.Key"}}),
        ),
        json!({}),
        s.registry.clone(),
    )
    .await;
    assert_eq!(o.status, Status::Succeeded, "{o:?}");
    assert_eq!(
        o.output,
        Some(
            json!([{"key": "readers/items.csv"}, {"key": "readers/items.json"}, {"key": "readers/items.jsonl"}])
        )
    );
    let missing = get("missing.json", json!({"InputType": "JSON"}));
    let o = run(&dmap(missing, json!({})), json!({}), s.registry.clone()).await;
    assert_eq!(o.error.as_deref(), Some("States.ItemReaderFailed"));
    assert!(
        o.cause.as_deref().unwrap_or("").contains("S3.NoSuchKey"),
        "{o:?}"
    );
}

#[tokio::test]
#[ignore = "needs an S3-compatible server: deploy/s3-it.sh"]
async fn a_result_writer_writes_the_manifest_and_result_files_to_the_store() {
    let s = store("writer");
    let def = dmap(
        json!({"Resource": "arn:aws:states:::s3:getObject",
            "Parameters": {"Bucket": s.bucket, "Key": "writer/items.json"},
            "ReaderConfig": {"InputType": "JSON"}}),
        json!({"ResultWriter": {"Resource": "arn:aws:states:::s3:putObject",
            "Parameters": {"Bucket": s.bucket, "Prefix": "writer/out"}}}),
    );
    s.put("items.json", "[1, 2, 3]").await;
    let o = run(&def, json!({}), s.registry.clone()).await;
    assert_eq!(o.status, Status::Succeeded, "{o:?}");
    let out = o.output.expect("output");
    let manifest_key = out["ResultWriterDetails"]["Key"].as_str().expect("Key");
    assert!(manifest_key.starts_with("writer/out/") && manifest_key.ends_with("/manifest.json"));
    let manifest: Value =
        serde_json::from_str(s.get(manifest_key).await["Body"].as_str().expect("Body"))
            .expect("manifest JSON");
    assert_eq!(manifest["MapRunArn"], out["MapRunArn"]);
    let file = manifest["ResultFiles"]["SUCCEEDED"][0]["Key"]
        .as_str()
        .expect("a SUCCEEDED file");
    let results: Value = serde_json::from_str(s.get(file).await["Body"].as_str().expect("Body"))
        .expect("results JSON");
    let outputs: Vec<&str> = results
        .as_array()
        .expect("array")
        .iter()
        .map(|r| r["Output"].as_str().expect("Output"))
        .collect();
    assert_eq!(outputs, ["1", "2", "3"]);
}
