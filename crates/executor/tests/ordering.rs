//! `--ordering key|partition|none` on librdkafka's mock cluster: executions of one key (or of one
//! partition) never overlap and run in offset order; keyless records and other keys still run
//! concurrently; a rebalance in the middle keeps the order.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use expressway_executor::OrderingMode;
use serde_json::json;
use std::collections::HashSet;

/// One execution as its result record reports it: (start, stop) as AWS's ISO-8601 timestamps
/// with milliseconds, which compare correctly as strings.
#[derive(Debug, Clone)]
struct Run {
    name: String,
    start: String,
    stop: String,
}

fn runs(records: &[Rec]) -> Vec<Run> {
    records
        .iter()
        .map(|r| {
            let v = r.json();
            assert_eq!(v["status"], "SUCCEEDED", "{v}");
            Run {
                name: v["name"].as_str().unwrap().to_string(),
                start: v["startDate"].as_str().unwrap().to_string(),
                stop: v["stopDate"].as_str().unwrap().to_string(),
            }
        })
        .collect()
}

/// For each group (executions named `<group>-<seq>`), the runs sorted by start: no two overlap
/// and the first run of each sequence number comes in sequence order.
fn assert_serial(all: &[Run], group: &str, expected: usize) {
    let prefix = format!("{group}-");
    let mut mine: Vec<(usize, &Run)> = all
        .iter()
        .filter_map(|r| {
            r.name
                .strip_prefix(&prefix)
                .map(|seq| (seq.parse::<usize>().unwrap(), r))
        })
        .collect();
    mine.sort_by(|a, b| a.1.start.cmp(&b.1.start).then(a.0.cmp(&b.0)));
    for w in mine.windows(2) {
        assert!(
            w[0].1.stop <= w[1].1.start,
            "{group}: {} ({}..{}) overlaps {} ({}..{})",
            w[0].1.name,
            w[0].1.start,
            w[0].1.stop,
            w[1].1.name,
            w[1].1.start,
            w[1].1.stop
        );
    }
    let mut seen = Vec::new();
    for (seq, _) in &mine {
        if !seen.contains(seq) {
            seen.push(*seq);
        }
    }
    assert_eq!(
        seen,
        (0..expected).collect::<Vec<_>>(),
        "{group}: first runs out of offset order"
    );
}

/// Whether some two of the runs overlap in time.
fn some_overlap(runs: &[&Run]) -> bool {
    runs.iter().enumerate().any(|(i, a)| {
        runs[i + 1..]
            .iter()
            .any(|b| a.start < b.stop && b.start < a.stop)
    })
}

fn sleepy(env: &Env, key: Option<&str>, name: &str, sleep: f64) {
    let v = json!({"stateMachine": "sleepy", "name": name, "input": {"sleep": sleep}}).to_string();
    env.produce("expressway.start", key, Some(v.as_bytes()), &[]);
}

#[test]
fn same_key_runs_in_offset_order_while_other_keys_and_keyless_records_run_concurrently() {
    let env = Env::new(2);
    let mut cfg = env.config();
    cfg.group = "g-order-key".into();
    assert_eq!(cfg.ordering, OrderingMode::Key, "key is the default");
    let exec = env.start(cfg, env.registry(&[("sleepy", SLEEPY)]));
    // Interleaved keys, executions of different lengths: a later record of a key is often
    // shorter than the one before it, so without ordering it would finish (and start) first.
    let sleeps = [0.4, 0.05, 0.25, 0.0, 0.15];
    let keys = ["red", "green", "blue", "amber"];
    let mut n = 0;
    for (seq, s) in sleeps.iter().enumerate() {
        for (i, k) in keys.iter().enumerate() {
            sleepy(
                &env,
                Some(k),
                &format!("{k}-{seq}"),
                s * (1.0 + i as f64 / 4.0),
            );
            n += 1;
        }
        // A keyless record between them: never held back.
        sleepy(&env, None, &format!("nokey{seq}"), 0.8);
        n += 1;
    }
    let mut results = env.reader("expressway.results");
    results.at_least(n);
    let all = runs(&results.records);
    for k in keys {
        assert_serial(&all, k, sleeps.len());
    }
    let keyless: Vec<&Run> = all.iter().filter(|r| r.name.starts_with("nokey")).collect();
    assert!(
        some_overlap(&keyless),
        "keyless records ran one at a time: {keyless:?}"
    );
    let firsts: Vec<&Run> = keys
        .iter()
        .map(|k| all.iter().find(|r| r.name == format!("{k}-0")).unwrap())
        .collect();
    assert!(
        some_overlap(&firsts),
        "different keys ran one at a time: {firsts:?}"
    );
    exec.shutdown_blocking();
}

#[test]
fn partition_ordering_runs_one_execution_at_a_time_and_none_runs_them_together() {
    let env = Env::new(1);
    let registry = env.registry(&[("sleepy", SLEEPY)]);
    for (i, k) in ["a", "b", "c", "d", "e"].iter().enumerate() {
        sleepy(&env, Some(k), &format!("p-{i}"), 0.2);
    }
    let mut cfg = env.config();
    cfg.group = "g-order-partition".into();
    cfg.ordering = OrderingMode::Partition;
    let exec = env.start(cfg, registry.clone());
    let mut results = env.reader("expressway.results");
    results.at_least(5);
    exec.shutdown_blocking();
    assert_serial(&runs(&results.records), "p", 5);

    // The same records under `none` (another group reads them from the start): concurrent.
    let mut cfg = env.config();
    cfg.group = "g-order-none".into();
    cfg.ordering = OrderingMode::None;
    let exec = env.start(cfg, registry);
    results.at_least(10);
    let all = runs(&results.records[5..]);
    let refs: Vec<&Run> = all.iter().collect();
    assert!(some_overlap(&refs), "none ran one at a time: {all:?}");
    exec.shutdown_blocking();
}

#[test]
fn a_rebalance_in_the_middle_keeps_each_keys_order() {
    let env = Env::new(4);
    let group = "g-order-rebalance";
    let registry = env.registry(&[("sleepy", SLEEPY)]);
    let mut cfg = env.config();
    cfg.group = group.into();
    let a = env.start(cfg.clone(), registry.clone());
    wait_until("A assigned", || a.health().is_assigned());
    let keys: Vec<String> = (0..8).map(|k| format!("key{k}")).collect();
    let per_key = 12;
    let mut results = env.reader("expressway.results");
    let mut b = None;
    for seq in 0..per_key {
        for k in &keys {
            sleepy(&env, Some(k), &format!("{k}-{seq}"), 0.05);
        }
        if seq == per_key / 3 {
            // B joins while every key has records running and waiting on A.
            b = Some(env.start(cfg.clone(), registry.clone()));
        }
    }
    let b = b.unwrap();
    wait_until("B assigned", || b.health().is_assigned());
    let want = keys.len() * per_key;
    results.until("every execution", |r| {
        r.iter()
            .filter_map(|x| x.key.as_deref())
            .collect::<HashSet<_>>()
            .len()
            >= want
    });
    let all = runs(&results.records);
    for k in &keys {
        assert_serial(&all, k, per_key);
    }
    eprintln!(
        "rebalance with key ordering: {} executions for {} start events",
        all.len(),
        keys.len() * per_key
    );
    a.shutdown_blocking();
    b.shutdown_blocking();
}

/// A graceful stop while records wait behind a busy key (found by the chaos harness: 33 re-runs in
/// a rolling restart with a slow task): the waiting records below already-started ones still run
/// before the partition is released, so the committed offset covers every finished execution and
/// the next owner re-runs nothing.
#[test]
fn a_graceful_stop_runs_what_waits_behind_a_busy_key_and_the_next_owner_reruns_nothing() {
    let env = Env::new(1);
    let group = "g-order-drain";
    let registry = env.registry(&[("sleepy", SLEEPY)]);
    let mut cfg = env.config();
    cfg.group = group.into();
    let a = env.start(cfg.clone(), registry.clone());
    wait_until("A assigned", || a.health().is_assigned());
    let mut results = env.reader("expressway.results");
    // Offset 0: a slow execution of key "slow"; offsets 1-3: more of "slow", waiting behind it;
    // offsets 4-43: other keys, finished quickly while "slow" still runs.
    sleepy(&env, Some("slow"), "slow-0", 15.0);
    for seq in 1..4 {
        sleepy(&env, Some("slow"), &format!("slow-{seq}"), 0.0);
    }
    for i in 0..40 {
        sleepy(&env, Some(&format!("fast{i}")), &format!("fast-{i}"), 0.0);
    }
    results.until("the fast executions", |r| {
        r.iter()
            .filter(|x| {
                x.json()["name"]
                    .as_str()
                    .is_some_and(|n| n.starts_with("fast-"))
            })
            .count()
            >= 40
    });
    // A stops while slow-0 runs and slow-1..3 wait behind it.
    assert!(
        !results.records.iter().any(|x| x.json()["name"] == "slow-0"),
        "slow-0 must still be running when A stops"
    );
    a.shutdown_blocking();
    env.wait_committed(group, &[44]);
    let b = env.start(cfg, registry);
    wait_until("B assigned", || b.health().is_assigned());
    // One more event: once its result is in, B has read everything after the committed offset.
    sleepy(&env, Some("probe"), "probe", 0.0);
    results.until("the probe", |r| {
        r.iter().any(|x| x.json()["name"] == "probe")
    });
    let names: Vec<String> = runs(&results.records).into_iter().map(|r| r.name).collect();
    let distinct: HashSet<&String> = names.iter().collect();
    assert_eq!(names.len(), 45, "re-runs after a graceful stop: {names:?}");
    assert_eq!(distinct.len(), 45);
    assert_serial(&runs(&results.records), "slow", 4);
    b.shutdown_blocking();
}
