//! `expressway start` (produce a start event) and `expressway tail` (follow results or logs).

use anyhow::{bail, Context as _};
use expressway_executor::config::parse_key_value;
use expressway_wire::{topics, StartEvent};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use serde_json::{json, Value};
use std::time::Duration;

/// Flags of `expressway start`.
#[derive(clap::Args, Debug, Clone)]
pub struct StartArgs {
    /// Kafka bootstrap servers.
    #[arg(long, env = "EXPRESSWAY_BROKERS")]
    pub brokers: String,
    /// State machine name or ARN.
    pub machine: String,
    /// Execution input (JSON text).
    #[arg(long, default_value = "{}")]
    pub input: String,
    /// Execution name (default: `<topic>-<partition>-<offset>`).
    #[arg(long)]
    pub name: Option<String>,
    /// Kafka key (chooses the partition; same key = same order).
    #[arg(long)]
    pub key: Option<String>,
    /// Start-event topic.
    #[arg(long, env = "EXPRESSWAY_START_TOPIC", default_value = topics::START)]
    pub topic: String,
    /// Send the protobuf form (`content-type: application/x-protobuf`).
    #[arg(long)]
    pub protobuf: bool,
    /// Print one JSON line instead of text.
    #[arg(long)]
    pub json: bool,
    /// Extra librdkafka setting `KEY=VALUE` (repeatable).
    #[arg(long = "kafka", value_parser = parse_key_value)]
    pub kafka: Vec<(String, String)>,
}

/// Flags of `expressway tail`.
#[derive(clap::Args, Debug, Clone)]
pub struct TailArgs {
    /// Kafka bootstrap servers.
    #[arg(long, env = "EXPRESSWAY_BROKERS")]
    pub brokers: String,
    /// Follow the log records instead of the results.
    #[arg(long)]
    pub logs: bool,
    /// Print each record value as one JSON line.
    #[arg(long)]
    pub json: bool,
    /// Start at the oldest record instead of new ones.
    #[arg(long)]
    pub from_beginning: bool,
    /// Topic to follow (default: the results or logs topic).
    #[arg(long)]
    pub topic: Option<String>,
    /// Read committed transactions only (`isolation.level=read_committed`): with pods running
    /// `--guarantee exactly-once`, records of aborted transactions are not shown.
    #[arg(long)]
    pub read_committed: bool,
    /// Extra librdkafka setting `KEY=VALUE` (repeatable).
    #[arg(long = "kafka", value_parser = parse_key_value)]
    pub kafka: Vec<(String, String)>,
}

/// `isolation.level` of a reader (`--read-committed`).
pub fn isolation_level(read_committed: bool) -> &'static str {
    if read_committed {
        "read_committed"
    } else {
        "read_uncommitted"
    }
}

fn base_config(brokers: &str, kafka: &[(String, String)]) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", brokers);
    for (k, v) in kafka {
        c.set(k, v);
    }
    c
}

/// `expressway start`.
pub fn start(args: StartArgs) -> anyhow::Result<()> {
    let input: Value = serde_json::from_str(&args.input).context("--input is not valid JSON")?;
    let Some(machine) = expressway_wire::parse_state_machine_ref(&args.machine) else {
        bail!("'{}' is not a state machine name or ARN", args.machine);
    };
    let event = StartEvent {
        state_machine: machine,
        name: args.name.clone(),
        input,
        trace_header: None,
    };
    let (payload, headers) = if args.protobuf {
        (
            event.to_protobuf(),
            OwnedHeaders::new().insert(Header {
                key: "content-type",
                value: Some(expressway_wire::PROTOBUF_CONTENT_TYPE),
            }),
        )
    } else {
        (
            event.to_json().to_string().into_bytes(),
            OwnedHeaders::new().insert(Header {
                key: "content-type",
                value: Some("application/json"),
            }),
        )
    };
    let producer: BaseProducer<_> = base_config(&args.brokers, &args.kafka)
        .set("enable.idempotence", "true")
        .create_with_context(Reporter::default())
        .context("creating the producer")?;
    let mut record = BaseRecord::<str, [u8]>::to(&args.topic)
        .payload(&payload)
        .headers(headers);
    if let Some(k) = &args.key {
        record = record.key(k.as_str());
    }
    producer
        .send(record)
        .map_err(|(e, _)| e)
        .context("queueing the start event")?;
    producer
        .flush(Duration::from_secs(30))
        .context("delivering the start event")?;
    let (partition, offset) = producer.context().outcome()?;
    let name = args
        .name
        .unwrap_or_else(|| expressway_wire::identity::default_name(&args.topic, partition, offset));
    if args.json {
        println!(
            "{}",
            json!({"topic": args.topic, "partition": partition, "offset": offset, "name": name})
        );
    } else {
        println!(
            "started {} as '{name}' ({}/{partition}@{offset})",
            args.machine, args.topic
        );
    }
    Ok(())
}

/// Keeps the delivery report of the one record a command sends.
#[derive(Default)]
pub(crate) struct Reporter {
    delivered: std::sync::Mutex<Option<Result<(i32, i64), String>>>,
}

impl Reporter {
    /// Where the record landed, once flushed; an error when it was not acknowledged.
    pub(crate) fn outcome(&self) -> anyhow::Result<(i32, i64)> {
        let delivered = self
            .delivered
            .lock()
            .map_err(|_| anyhow::anyhow!("delivery report lock"))?
            .clone();
        delivered
            .context("the broker did not acknowledge the record")?
            .map_err(|e| anyhow::anyhow!("delivery failed: {e}"))
    }
}

impl rdkafka::ClientContext for Reporter {}

impl rdkafka::producer::ProducerContext for Reporter {
    type DeliveryOpaque = ();
    fn delivery(&self, result: &rdkafka::message::DeliveryResult<'_>, _: ()) {
        let r = match result {
            Ok(m) => Ok((m.partition(), m.offset())),
            Err((e, _)) => Err(e.to_string()),
        };
        if let Ok(mut d) = self.delivered.lock() {
            *d = Some(r);
        }
    }
}

/// `expressway tail`.
pub fn tail(args: TailArgs) -> anyhow::Result<()> {
    let topic = args.topic.clone().unwrap_or_else(|| {
        if args.logs {
            topics::LOGS.into()
        } else {
            topics::RESULTS.into()
        }
    });
    let consumer: BaseConsumer = base_config(&args.brokers, &args.kafka)
        // `assign` needs a group id; nothing is ever committed.
        .set("group.id", "expressway-tail")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .set("isolation.level", isolation_level(args.read_committed))
        .create()
        .context("creating the consumer")?;
    let start = if args.from_beginning {
        Offset::Beginning
    } else {
        Offset::End
    };
    loop {
        let md = consumer
            .fetch_metadata(Some(&topic), Duration::from_secs(10))
            .context("fetching metadata")?;
        let parts: Vec<i32> = md
            .topics()
            .iter()
            .filter(|t| t.name() == topic && t.error().is_none())
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        if parts.is_empty() {
            eprintln!("waiting for topic {topic} ...");
            std::thread::sleep(Duration::from_secs(1));
            continue;
        }
        let mut tpl = TopicPartitionList::new();
        for p in parts {
            tpl.add_partition_offset(&topic, p, start)?;
        }
        consumer.assign(&tpl)?;
        break;
    }
    loop {
        match consumer.poll(Duration::from_millis(500)) {
            None => {}
            Some(Err(e)) => eprintln!("expressway tail: {e}"),
            Some(Ok(m)) => {
                let value = m.payload().unwrap_or_default();
                if args.json {
                    println!("{}", String::from_utf8_lossy(value));
                    continue;
                }
                match serde_json::from_slice::<Value>(value) {
                    Ok(v) if args.logs => print_log(&v),
                    Ok(v) => println!("{}", format_result(&v)),
                    Err(_) => println!("{}", String::from_utf8_lossy(value)),
                }
            }
        }
    }
}

/// One human-readable line for a result record.
pub fn format_result(v: &Value) -> String {
    let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("");
    let mut line = format!("{:<9} {}  {}", s("status"), s("name"), s("stopDate"));
    if let Some(o) = v.get("output") {
        line.push_str(&format!("  output={o}"));
    }
    if v.get("error").is_some() || v.get("cause").is_some() {
        line.push_str(&format!("  error={} cause={}", s("error"), s("cause")));
    }
    line
}

fn print_log(v: &Value) {
    let arn = v.get("executionArn").and_then(Value::as_str).unwrap_or("");
    // `...:express:<machine>:<name>:<uuid>` -> `<machine>:<name>`
    let short = arn
        .split(":express:")
        .nth(1)
        .and_then(|r| r.rsplit_once(':').map(|x| x.0))
        .unwrap_or(arn);
    let events = v.get("events").and_then(Value::as_array);
    match events {
        Some(evs) if !evs.is_empty() => {
            for e in evs {
                let s = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or("");
                let details = e.get("details").map(Value::to_string).unwrap_or_default();
                println!(
                    "{short} #{:<3} {:<28} {}",
                    s("id"),
                    s("type"),
                    truncate(&details, 160)
                );
            }
        }
        _ => println!("{short} (no events at this log level)"),
    }
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let t: String = s.chars().take(n).collect();
        format!("{t}…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_lines() {
        let ok = json!({"name":"e1","status":"SUCCEEDED","stopDate":"t","output":{"a":1}});
        assert_eq!(format_result(&ok), r#"SUCCEEDED e1  t  output={"a":1}"#);
        let bad = json!({"name":"e2","status":"FAILED","stopDate":"t","error":"Boom","cause":"c"});
        assert_eq!(format_result(&bad), "FAILED    e2  t  error=Boom cause=c");
    }
}
