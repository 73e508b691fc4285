//! The ASL conformance runner: runs every case of `../shared/conformance/localstack` in-process
//! (virtual time) or through the `expressway run` binary, and grades it per the corpus README.

pub mod compare;

use compare::{grade, Grade};
use expressway_cli::local::Identity;
use expressway_engine::runtime::{SplitMix64, TokioClock};
use expressway_engine::tasks::Registry;
use expressway_engine::{LogConfig, LogLevel, Runtime};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where the corpus lives unless `EXPRESSWAY_CONFORMANCE_DIR` says otherwise.
pub fn default_corpus_dir() -> PathBuf {
    match std::env::var_os("EXPRESSWAY_CONFORMANCE_DIR") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance/localstack"),
    }
}

/// One execution case.
#[derive(Debug, Clone)]
pub struct Case {
    /// `category/case`.
    pub path: String,
    /// The category.
    pub category: String,
    /// `JSONPath`, `JSONata` or `mixed`.
    pub query_language: String,
    /// Recorded on a STANDARD machine.
    pub standard: bool,
    /// Case directory.
    pub dir: PathBuf,
}

/// Loads the execution cases from `index.json`.
pub fn load_cases(corpus: &Path) -> Result<Vec<Case>, String> {
    let text = std::fs::read_to_string(corpus.join("index.json")).map_err(|e| format!("cannot read {}/index.json: {e}", corpus.display()))?;
    let index: Value = serde_json::from_str(&text).map_err(|e| format!("index.json: {e}"))?;
    let cases = index.get("cases").and_then(Value::as_array).ok_or("index.json has no cases")?;
    Ok(cases
        .iter()
        .filter(|c| c.get("kind").and_then(Value::as_str) == Some("execution"))
        .filter_map(|c| {
            let path = c.get("path")?.as_str()?.to_string();
            Some(Case {
                category: c.get("category")?.as_str()?.to_string(),
                query_language: c.get("query_language").and_then(Value::as_str).unwrap_or("JSONPath").to_string(),
                standard: c.get("state_machine_type").and_then(Value::as_str) != Some("EXPRESS"),
                dir: corpus.join(&path),
                path,
            })
        })
        .collect())
}

/// The graded result of one case.
#[derive(Debug, Clone)]
pub struct CaseResult {
    /// The case.
    pub case: Case,
    /// How well it matched.
    pub grade: Grade,
    /// Why it did not match (empty on Strict).
    pub reason: String,
}

fn read(dir: &Path, file: &str) -> Result<String, String> {
    std::fs::read_to_string(dir.join(file)).map_err(|e| format!("{}: {e}", dir.join(file).display()))
}

fn identity() -> Identity {
    Identity { machine: "ConformanceMachine".into(), name: "ConformanceExecution".into(), uuid: [7u8; 16] }
}

/// Runs one case in-process, on tokio's paused clock (call inside a paused current-thread runtime).
pub async fn run_in_process(case: &Case) -> Result<Value, String> {
    let def = read(&case.dir, "definition.json")?;
    let input: Value = serde_json::from_str(&read(&case.dir, "input.json")?).map_err(|e| format!("input.json: {e}"))?;
    let machine = match expressway_asl::load_str(&def) {
        Ok(m) => m,
        Err(e) => return Err(format!("definition rejected: {e}")),
    };
    let clock = Arc::new(TokioClock::starting_at(1_767_225_600_000));
    let runtime = Runtime { clock: clock.clone(), entropy: Arc::new(SplitMix64::new(42)), tasks: Arc::new(Registry::new(clock)) };
    let mut req = expressway_cli::local::request(&identity(), input, LogConfig { level: LogLevel::Off, include_execution_data: false });
    // StartSyncExecution cases: the context object has no RedriveCount there.
    req.synchronous = case.path.contains("express_sync");
    let outcome = expressway_engine::execute(&machine, &req, &runtime).await;
    Ok(outcome.result_object(&req))
}

/// Runs one case through the `expressway run` binary.
pub fn run_via_cli(binary: &Path, case: &Case) -> Result<Value, String> {
    let out = std::process::Command::new(binary)
        .arg("run")
        .arg(case.dir.join("definition.json"))
        .arg("--input-file")
        .arg(case.dir.join("input.json"))
        .arg("--name")
        .arg("ConformanceExecution")
        .output()
        .map_err(|e| format!("cannot start {}: {e}", binary.display()))?;
    if !out.status.success() {
        return Err(format!("exit {:?}: {}", out.status.code(), String::from_utf8_lossy(&out.stderr).chars().take(300).collect::<String>()));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("stdout is not one JSON result: {e}"))
}

/// Grades an actual result for a case.
pub fn grade_case(case: &Case, actual: Result<Value, String>) -> CaseResult {
    let expected: Value = match read(&case.dir, "expected.json").and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string())) {
        Ok(v) => v,
        Err(e) => return CaseResult { case: case.clone(), grade: Grade::Mismatch, reason: e },
    };
    match actual {
        Ok(actual) => {
            let (grade, reason) = grade(&expected, &actual, case.standard);
            CaseResult { case: case.clone(), grade, reason }
        }
        Err(e) => CaseResult { case: case.clone(), grade: Grade::Mismatch, reason: e },
    }
}

/// Runs every case in-process in virtual time.
pub fn run_all_in_process(cases: &[Case]) -> Vec<CaseResult> {
    let rt = match tokio::runtime::Builder::new_current_thread().enable_time().start_paused(true).build() {
        Ok(rt) => rt,
        Err(e) => return cases.iter().map(|c| CaseResult { case: c.clone(), grade: Grade::Mismatch, reason: format!("runtime: {e}") }).collect(),
    };
    rt.block_on(async {
        let mut out = Vec::with_capacity(cases.len());
        for case in cases {
            let actual = run_in_process(case).await;
            out.push(grade_case(case, actual));
        }
        out
    })
}

/// Per-category tallies.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Tally {
    /// Cases.
    pub total: usize,
    /// Status, output and error match.
    pub lenient: usize,
    /// ... and the exact cause.
    pub strict: usize,
}

/// Groups results by `category/query-language-group` (JSONPath vs JSONata/mixed).
pub fn tally(results: &[CaseResult]) -> BTreeMap<String, Tally> {
    let mut map: BTreeMap<String, Tally> = BTreeMap::new();
    for r in results {
        let lang = if r.case.query_language == "JSONPath" { "jsonpath" } else { "jsonata" };
        let t = map.entry(format!("{}/{lang}", r.case.category)).or_default();
        t.total += 1;
        if r.grade >= Grade::Lenient {
            t.lenient += 1;
        }
        if r.grade == Grade::Strict {
            t.strict += 1;
        }
    }
    map
}
