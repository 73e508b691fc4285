//! The JSONata reference test suite (`../shared/conformance/jsonata`), per group, with floors.
//!
//! Run `cargo test -p expressway-jsonata --test suite -- --nocapture` for the table;
//! `JSONATA_FAILURES=1` also lists every failing case.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use expressway_jsonata::{Expression, Limits, NoHost};
use serde_json::Value;

/// Groups that AWS Step Functions' JSONata does not offer (see the runner README).
const EXCLUDED: &[&str] = &["function-eval", "coalescing-operator", "default-operator"];

fn suite_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance/jsonata")
}

/// Numbers compare by value; objects ignore key order.
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| same(v, w)))
        }
        _ => a == b,
    }
}

pub enum Outcome {
    Pass,
    Fail(String),
    Skip,
}

pub fn run_case(dir: &Path, group: &str, case: &Value) -> Outcome {
    let expr = match (case.get("expr"), case.get("expr-file")) {
        (Some(Value::String(e)), _) => e.clone(),
        (_, Some(Value::String(f))) => {
            match std::fs::read_to_string(dir.join("groups").join(group).join(f)) {
                Ok(t) => t,
                Err(e) => return Outcome::Fail(format!("reading {f}: {e}")),
            }
        }
        _ => return Outcome::Fail("no expression".into()),
    };
    let dataset;
    let input: Option<&Value> = match (case.get("data"), case.get("dataset")) {
        (Some(d), _) => Some(d),
        (None, Some(Value::String(name))) => {
            let p = dir.join("datasets").join(format!("{name}.json"));
            dataset = match std::fs::read_to_string(&p)
                .ok()
                .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            {
                Some(v) => v,
                None => return Outcome::Fail(format!("dataset {name}")),
            };
            Some(&dataset)
        }
        _ => None,
    };
    let bindings: Vec<(String, Value)> = case
        .get("bindings")
        .and_then(Value::as_object)
        .map(|o| o.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    let bref: Vec<(&str, &Value)> = bindings.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let limits = match (case.get("timelimit"), case.get("depth")) {
        (Some(t), Some(d)) => Limits {
            max_depth: d.as_u64().unwrap_or(1000) as usize,
            timeout: Some(Duration::from_millis(t.as_u64().unwrap_or(1000))),
        },
        _ => Limits {
            timeout: Some(Duration::from_secs(10)),
            ..Limits::default()
        },
    };
    let result =
        Expression::parse(&expr).and_then(|e| e.evaluate_with(input, &bref, &NoHost, limits));
    let expected_code = case.get("code").and_then(Value::as_str).or_else(|| {
        case.get("error")
            .and_then(|e| e.get("code"))
            .and_then(Value::as_str)
    });
    match (result, expected_code) {
        (Err(e), Some(code)) => {
            if e.code != code {
                return Outcome::Fail(format!(
                    "expected error {code}, got {}: {}",
                    e.code, e.message
                ));
            }
            if let Some(t) = case.get("token").and_then(Value::as_str) {
                if e.token.as_deref() != Some(t) {
                    return Outcome::Fail(format!("token {:?} != {t}", e.token));
                }
            }
            if let Some(m) = case
                .get("error")
                .and_then(|e| e.get("message"))
                .and_then(Value::as_str)
            {
                if e.message != m {
                    return Outcome::Fail(format!("message {:?} != {m:?}", e.message));
                }
            }
            Outcome::Pass
        }
        (Err(e), None) => Outcome::Fail(format!(
            "error {}: {} (pos {:?})",
            e.code, e.message, e.position
        )),
        (Ok(r), Some(code)) => Outcome::Fail(format!(
            "expected error {code}, got {}",
            r.map(|v| v.to_string()).unwrap_or("undefined".into())
        )),
        (Ok(r), None) => {
            if case.get("undefinedResult").is_some() {
                return match r {
                    None => Outcome::Pass,
                    Some(v) => Outcome::Fail(format!("expected undefined, got {v}")),
                };
            }
            match (r, case.get("result")) {
                (Some(got), Some(want)) if same(&got, want) => Outcome::Pass,
                (got, want) => Outcome::Fail(format!(
                    "got {}, want {}",
                    got.map(|v| v.to_string()).unwrap_or("undefined".into()),
                    want.map(|v| v.to_string()).unwrap_or("?".into())
                )),
            }
        }
    }
}

#[test]
fn reference_suite_floors() {
    let dir = suite_dir();
    let Ok(index) = std::fs::read_to_string(dir.join("index.json")) else {
        eprintln!("JSONata suite not found at {}; skipping", dir.display());
        return;
    };
    let index: Vec<Value> = serde_json::from_str(&index).expect("index.json parses");
    let show = std::env::var_os("JSONATA_FAILURES").is_some();
    let mut per_group: BTreeMap<String, (usize, usize, usize)> = BTreeMap::new();
    let mut files: BTreeMap<String, Option<Value>> = BTreeMap::new();
    for entry in &index {
        let group = entry["group"].as_str().unwrap_or_default().to_string();
        let file = entry["file"].as_str().unwrap_or_default().to_string();
        let key = format!("{group}/{file}");
        let doc = files
            .entry(key.clone())
            .or_insert_with(|| {
                std::fs::read_to_string(dir.join("groups").join(&group).join(&file))
                    .ok()
                    .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            })
            .clone();
        let case = match (doc, entry["index"].as_u64()) {
            (Some(Value::Array(a)), Some(i)) => a.get(i as usize).cloned(),
            (Some(d), None) => Some(d),
            _ => None,
        };
        let slot = per_group.entry(group.clone()).or_default();
        slot.1 += 1;
        let outcome = match case {
            None => Outcome::Skip,
            Some(c) => {
                let d = dir.clone();
                let g = group.clone();
                std::thread::Builder::new()
                    .stack_size(64 << 20)
                    .spawn(move || run_case(&d, &g, &c))
                    .expect("spawn")
                    .join()
                    .unwrap_or_else(|_| Outcome::Fail("panic".into()))
            }
        };
        match outcome {
            Outcome::Pass => slot.0 += 1,
            Outcome::Skip => slot.2 += 1,
            Outcome::Fail(why) => {
                if show {
                    eprintln!("FAIL {key}[{}]: {why}", entry["index"]);
                }
            }
        }
    }
    let floors: BTreeMap<String, usize> =
        serde_json::from_str(include_str!("suite_floors.json")).expect("suite_floors.json parses");
    let (mut pass, mut total, mut pass_sfn, mut total_sfn) = (0, 0, 0, 0);
    let mut below = Vec::new();
    eprintln!("{:<32} {:>6} {:>6}", "group", "pass", "cases");
    for (g, (p, t, s)) in &per_group {
        eprintln!(
            "{g:<32} {p:>6} {t:>6}{}",
            if *s > 0 {
                format!("  ({s} skipped)")
            } else {
                String::new()
            }
        );
        pass += p;
        total += t;
        if !EXCLUDED.contains(&g.as_str()) {
            pass_sfn += p;
            total_sfn += t;
        }
        if let Some(f) = floors.get(g) {
            if p < f {
                below.push(format!("{g}: {p} < floor {f}"));
            }
        }
    }
    eprintln!(
        "all groups: {pass}/{total} ({:.1} %)",
        100.0 * pass as f64 / total as f64
    );
    eprintln!(
        "groups Step Functions offers: {pass_sfn}/{total_sfn} ({:.1} %)",
        100.0 * pass_sfn as f64 / total_sfn as f64
    );
    assert!(below.is_empty(), "groups below their floors: {below:?}");
    if let Some(f) = floors.get("_total_sfn") {
        assert!(pass_sfn >= *f, "total {pass_sfn} below floor {f}");
    }
}
