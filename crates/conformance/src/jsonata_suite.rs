//! The JSONata reference test suite (`../shared/conformance/jsonata`, 1,686 cases in 102 groups)
//! run against `expressway-jsonata`, with per-group figures.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use expressway_jsonata::{Expression, Limits, NoHost};
use serde_json::Value;

/// Groups that AWS Step Functions' JSONata does not offer (see the runner README).
pub const EXCLUDED: &[&str] = &["function-eval", "coalescing-operator", "default-operator"];

/// Where the suite lives: beside the LocalStack corpus (`../shared/conformance/jsonata`).
pub fn default_suite_dir() -> PathBuf {
    crate::default_corpus_dir().join("../jsonata")
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

/// How one case went.
pub enum Outcome {
    Pass,
    Fail(String),
    Skip,
}

/// Runs one case as the reference runner does (see the suite README).
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
            max_steps: None,
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

/// Per-group results.
#[derive(Debug, Default)]
pub struct SuiteReport {
    /// group -> (passed, cases, skipped)
    pub groups: BTreeMap<String, (usize, usize, usize)>,
    /// `group/file[index]: why` for every failing case.
    pub failures: Vec<String>,
}

impl SuiteReport {
    /// (passed, cases) over all groups, or over the groups Step Functions offers.
    pub fn totals(&self, sfn_only: bool) -> (usize, usize) {
        self.groups
            .iter()
            .filter(|(g, _)| !sfn_only || !EXCLUDED.contains(&g.as_str()))
            .fold((0, 0), |(p, t), (_, (gp, gt, _))| (p + gp, t + gt))
    }
}

/// Runs every case of the suite in `dir`.
pub fn run_suite(dir: &Path) -> Result<SuiteReport, String> {
    let index = std::fs::read_to_string(dir.join("index.json"))
        .map_err(|e| format!("reading {}: {e}", dir.join("index.json").display()))?;
    let index: Vec<Value> = serde_json::from_str(&index).map_err(|e| format!("index.json: {e}"))?;
    let mut report = SuiteReport::default();
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
            // files serde_json cannot read (lone UTF-16 surrogates) are skipped
            _ => None,
        };
        let slot = report.groups.entry(group.clone()).or_default();
        slot.1 += 1;
        let outcome = match case {
            None => Outcome::Skip,
            Some(c) => {
                let d = dir.to_path_buf();
                let g = group.clone();
                // deep recursion cases need more stack than a test thread has
                std::thread::Builder::new()
                    .stack_size(64 << 20)
                    .spawn(move || run_case(&d, &g, &c))
                    .map_err(|e| format!("spawn: {e}"))?
                    .join()
                    .unwrap_or_else(|_| Outcome::Fail("panic".into()))
            }
        };
        match outcome {
            Outcome::Pass => slot.0 += 1,
            Outcome::Skip => slot.2 += 1,
            Outcome::Fail(why) => report
                .failures
                .push(format!("{key}[{}]: {why}", entry["index"])),
        }
    }
    Ok(report)
}
