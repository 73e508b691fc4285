//! The ASL conformance runner: runs every case of `../shared/conformance/localstack` in-process
//! (virtual time) or through the `expressway run` binary, and grades it per the corpus README.

pub mod compare;
pub mod jsonata_suite;
pub mod validation;

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
        None => {
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance/localstack")
        }
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
    let text = std::fs::read_to_string(corpus.join("index.json"))
        .map_err(|e| format!("cannot read {}/index.json: {e}", corpus.display()))?;
    let index: Value = serde_json::from_str(&text).map_err(|e| format!("index.json: {e}"))?;
    let cases = index
        .get("cases")
        .and_then(Value::as_array)
        .ok_or("index.json has no cases")?;
    Ok(cases
        .iter()
        .filter(|c| c.get("kind").and_then(Value::as_str) == Some("execution"))
        .filter_map(|c| {
            let path = c.get("path")?.as_str()?.to_string();
            Some(Case {
                category: c.get("category")?.as_str()?.to_string(),
                query_language: c
                    .get("query_language")
                    .and_then(Value::as_str)
                    .unwrap_or("JSONPath")
                    .to_string(),
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
    std::fs::read_to_string(dir.join(file))
        .map_err(|e| format!("{}: {e}", dir.join(file).display()))
}

fn identity() -> Identity {
    Identity {
        machine: "ConformanceMachine".into(),
        name: "ConformanceExecution".into(),
        uuid: [7u8; 16],
    }
}

/// Runs one case in-process, on tokio's paused clock (call inside a paused current-thread runtime).
pub async fn run_in_process(case: &Case) -> Result<Value, String> {
    let (req, outcome) = execute_case(
        case,
        LogConfig {
            level: LogLevel::Off,
            include_execution_data: false,
        },
    )
    .await?;
    Ok(outcome.result_object(&req))
}

/// Loads a case and runs it once on a fixed clock and seeded entropy (call inside a paused
/// current-thread runtime, see [`virtual_time`]).
pub async fn execute_case(
    case: &Case,
    log: LogConfig,
) -> Result<
    (
        expressway_engine::ExecutionRequest,
        expressway_engine::Outcome,
    ),
    String,
> {
    let def = read(&case.dir, "definition.json")?;
    let input: Value = serde_json::from_str(&read(&case.dir, "input.json")?)
        .map_err(|e| format!("input.json: {e}"))?;
    let machine =
        expressway_asl::load_str(&def).map_err(|e| format!("definition rejected: {e}"))?;
    let clock = Arc::new(TokioClock::starting_at(1_767_225_600_000));
    let runtime = Runtime {
        map_children: None,
        clock: clock.clone(),
        entropy: Arc::new(SplitMix64::new(42)),
        tasks: Arc::new(Registry::new(clock)),
        callbacks: None,
    };
    let mut req = expressway_cli::local::request(&identity(), input, log);
    // StartSyncExecution cases: the context object has no RedriveCount there.
    req.synchronous = case.path.contains("express_sync");
    let outcome = expressway_engine::execute(&machine, &req, &runtime).await;
    Ok((req, outcome))
}

/// A current-thread runtime on tokio's paused clock: Waits and timeouts complete instantly.
pub fn virtual_time() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .start_paused(true)
        .build()
        .map_err(|e| e.to_string())
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
        return Err(format!(
            "exit {:?}: {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
                .chars()
                .take(300)
                .collect::<String>()
        ));
    }
    serde_json::from_slice(&out.stdout).map_err(|e| format!("stdout is not one JSON result: {e}"))
}

/// Grades an actual result for a case.
pub fn grade_case(case: &Case, actual: Result<Value, String>) -> CaseResult {
    let expected: Value = match read(&case.dir, "expected.json")
        .and_then(|t| serde_json::from_str(&t).map_err(|e| e.to_string()))
    {
        Ok(v) => v,
        Err(e) => {
            return CaseResult {
                case: case.clone(),
                grade: Grade::Mismatch,
                reason: e,
            }
        }
    };
    match actual {
        Ok(actual) => {
            let (grade, reason) = grade(&expected, &actual, case.standard);
            CaseResult {
                case: case.clone(),
                grade,
                reason,
            }
        }
        Err(e) => CaseResult {
            case: case.clone(),
            grade: Grade::Mismatch,
            reason: e,
        },
    }
}

/// Runs every case in-process in virtual time.
pub fn run_all_in_process(cases: &[Case]) -> Vec<CaseResult> {
    let rt = match virtual_time() {
        Ok(rt) => rt,
        Err(e) => {
            return cases
                .iter()
                .map(|c| CaseResult {
                    case: c.clone(),
                    grade: Grade::Mismatch,
                    reason: format!("runtime: {e}"),
                })
                .collect()
        }
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
        let lang = if r.case.query_language == "JSONPath" {
            "jsonpath"
        } else {
            "jsonata"
        };
        let t = map
            .entry(format!("{}/{lang}", r.case.category))
            .or_default();
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

/// One `execution_logs/*.json` file checked against the engine's log record.
#[derive(Debug, Clone)]
pub struct LogCheck {
    /// `category/case/execution_logs/file`.
    pub file: String,
    /// The events matched.
    pub ok: bool,
    /// Why not.
    pub reason: String,
}

fn parse_data_fields(v: &mut Value) {
    if let Some(details) = v.get_mut("details").and_then(Value::as_object_mut) {
        for key in ["input", "output"] {
            if let Some(Value::String(s)) = details.get(key) {
                if let Ok(parsed) = serde_json::from_str::<Value>(s) {
                    details.insert(key.to_string(), parsed);
                }
            }
        }
    }
}

/// Runs every case that has recorded execution logs, once per recorded configuration, and compares
/// the events (all of them, or the end event for `end_event.json`).
pub fn check_execution_logs(cases: &[Case]) -> Vec<LogCheck> {
    let rt = match virtual_time() {
        Ok(rt) => rt,
        Err(e) => {
            return vec![LogCheck {
                file: "-".into(),
                ok: false,
                reason: e.to_string(),
            }]
        }
    };
    let mut out = Vec::new();
    for case in cases {
        let Ok(entries) = std::fs::read_dir(case.dir.join("execution_logs")) else {
            continue;
        };
        let mut files: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        files.sort();
        for file in files {
            let name = format!(
                "{}/execution_logs/{}",
                case.path,
                file.file_name().and_then(|f| f.to_str()).unwrap_or("")
            );
            let result = rt.block_on(check_log_file(case, &file));
            out.push(match result {
                Ok(()) => LogCheck {
                    file: name,
                    ok: true,
                    reason: String::new(),
                },
                Err(reason) => LogCheck {
                    file: name,
                    ok: false,
                    reason,
                },
            });
        }
    }
    out
}

async fn check_log_file(case: &Case, file: &Path) -> Result<(), String> {
    let recorded: Value =
        serde_json::from_str(&std::fs::read_to_string(file).map_err(|e| e.to_string())?)
            .map_err(|e| e.to_string())?;
    let cfg = recorded
        .get("loggingConfiguration")
        .ok_or("no loggingConfiguration")?;
    let level = cfg
        .get("level")
        .and_then(Value::as_str)
        .and_then(LogLevel::parse)
        .ok_or("bad level")?;
    let include = cfg
        .get("includeExecutionData")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let expected_events = recorded
        .get("events")
        .and_then(Value::as_array)
        .ok_or("no events")?;
    let (req, outcome) = execute_case(
        case,
        LogConfig {
            level,
            include_execution_data: include,
        },
    )
    .await?;
    let record = outcome.log_record(&req);
    let mut actual: Vec<Value> = record
        .get("events")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if file.file_name().and_then(|f| f.to_str()) == Some("end_event.json") {
        actual = actual.last().cloned().into_iter().collect();
    }
    let case_tokens: Vec<Value> = read(&case.dir, "expected.json")
        .ok()
        .and_then(|t| serde_json::from_str::<Value>(&t).ok())
        .and_then(|e| e.get("normalized").and_then(Value::as_array).cloned())
        .unwrap_or_default();
    let tokens: Vec<Value> = case_tokens
        .into_iter()
        .chain(
            [
                "<ArnPart_0idx>",
                "<ExecArnPart_0idx>",
                "<ExpressExecArn_Part1_0idx>",
                "<ExpressExecArn_Part2_0idx>",
                "snf_role_arn",
                "sfn_role_arn",
            ]
            .iter()
            .map(|t| serde_json::json!({"token": t, "kind": "wildcard"})),
        )
        .collect();
    let norm = compare::Normalizer {
        standard: case.standard,
        tokens: &tokens,
    };
    let mut matcher = compare::Matcher::new(norm.wildcards());
    if actual.len() != expected_events.len() {
        return Err(format!(
            "{} events (expected {})",
            actual.len(),
            expected_events.len()
        ));
    }
    for (a, e) in actual.iter_mut().zip(expected_events) {
        parse_data_fields(a);
        let mut a = norm.value(a);
        if let Some(output) = a.get_mut("details").and_then(|d| d.get_mut("output")) {
            norm.apply_jsonpath_tokens(output);
        }
        if !matcher.matches(e, &a) {
            return Err(format!("event {a} (expected {e})"));
        }
    }
    Ok(())
}

/// One case's event-type sequence compared with its recorded history (`history.json`).
#[derive(Debug, Clone)]
pub struct HistoryCheck {
    /// `category/case`.
    pub path: String,
    /// The sequences are equal.
    pub ok: bool,
    /// First difference.
    pub reason: String,
}

/// Runs every case that has `history.json` at log level ALL and compares the sequence of event types
/// (AWS's history and Express log events share types and numbering). Cases whose recorded history was
/// re-sorted by the test (noted in `meta.json`) are skipped.
pub fn check_histories(cases: &[Case]) -> Vec<HistoryCheck> {
    let rt = match virtual_time() {
        Ok(rt) => rt,
        Err(e) => {
            return vec![HistoryCheck {
                path: "-".into(),
                ok: false,
                reason: e.to_string(),
            }]
        }
    };
    let mut out = Vec::new();
    for case in cases {
        let Ok(text) = std::fs::read_to_string(case.dir.join("history.json")) else {
            continue;
        };
        // Some Parallel recordings were re-sorted by the test (ids replaced by `[0]`): not AWS's order.
        let resorted = read(&case.dir, "history_events.json")
            .ok()
            .and_then(|t| serde_json::from_str::<Vec<Value>>(&t).ok())
            .is_some_and(|events| {
                events
                    .iter()
                    .any(|e| e.get("id").is_some_and(Value::is_array))
            });
        if resorted {
            continue;
        }
        let Ok(expected) = serde_json::from_str::<Vec<String>>(&text) else {
            continue;
        };
        let actual = rt.block_on(async {
            let (_, outcome) = execute_case(
                case,
                LogConfig {
                    level: LogLevel::All,
                    include_execution_data: false,
                },
            )
            .await?;
            Ok::<Vec<String>, String>(
                outcome
                    .events
                    .iter()
                    .map(|e| e.event_type.to_string())
                    .collect(),
            )
        });
        let (ok, reason) = match actual {
            Ok(a) if a == expected => (true, String::new()),
            Ok(a) => {
                let i = a.iter().zip(&expected).take_while(|(x, y)| x == y).count();
                (
                    false,
                    format!(
                        "differs at event {}: {:?} (expected {:?}); {} vs {} events",
                        i + 1,
                        a.get(i),
                        expected.get(i),
                        a.len(),
                        expected.len()
                    ),
                )
            }
            Err(e) => (false, e),
        };
        out.push(HistoryCheck {
            path: case.path.clone(),
            ok,
            reason,
        });
    }
    out
}
