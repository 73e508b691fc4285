//! The static validator against AWS-recorded validation cases (LocalStack conformance corpus).
//!
//! Corpus: `<conformance>/validation/<case>/{definition.json|definition.txt, expected.json}`, where
//! `<conformance>` is `$EXPRESSWAY_CONFORMANCE_DIR` or `../../../shared/conformance/localstack` from this
//! crate. A missing corpus fails the tests.
//!
//! Comparison rules:
//! * `ValidateStateMachineDefinition` cases: `result` (OK/FAIL) must be equal, and the multiset of
//!   `(code, location, message)` of the diagnostics must be equal (a missing `location` only matches a
//!   missing location). Severity is implied by the result and not compared separately; order is ignored.
//! * `CreateStateMachine` cases: the definition must FAIL. When the recorded message has AWS's shape
//!   (`Invalid State Machine Definition: '…'`) our `create_state_machine_message()` must equal it byte for
//!   byte. When it has LocalStack's Python shape (`Error=ValueError Args=['<reason>'] in definition '…'`,
//!   the Map `Label` cases), the reason is taken out of the Python list literal (one level of Python
//!   string escaping undone) and our message must contain it.
//! * The definition file is passed byte-exact as text (`validate(text, type)`).
//!
//! The run prints `passed/total` and one line per failing case, and fails below the floor recorded in
//! `validation-floor.txt`.
//!
//! Second test: every execution case of the corpus (all categories except `validation`) holds a
//! definition AWS accepted, so each must validate OK with its `meta.json` type (no false positives).

use expressway_asl::validate::{validate, MachineType, Validation};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

fn corpus_dir() -> PathBuf {
    let dir = std::env::var("EXPRESSWAY_CONFORMANCE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../../shared/conformance/localstack"
            ))
        });
    assert!(
        dir.join("validation").is_dir(),
        "conformance corpus not found at {} (set EXPRESSWAY_CONFORMANCE_DIR)",
        dir.display()
    );
    dir
}

fn read_json(path: &Path) -> Value {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn machine_type(name: Option<&str>) -> MachineType {
    match name {
        Some("EXPRESS") => MachineType::Express,
        _ => MachineType::Standard,
    }
}

fn sorted_dirs(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    out.sort();
    out
}

/// Undoes Python's `repr` of a one-string list element: `'…'` or `"…"` with backslash escapes.
fn python_string_literal(lit: &str) -> Option<String> {
    let quote = lit.chars().next()?;
    if !(quote == '\'' || quote == '"') || !lit.ends_with(quote) || lit.len() < 2 {
        return None;
    }
    let inner = &lit[1..lit.len() - 1];
    let mut out = String::new();
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next()? {
                '\\' => out.push('\\'),
                '\'' => out.push('\''),
                '"' => out.push('"'),
                other => {
                    out.push('\\');
                    out.push(other);
                }
            }
        } else {
            out.push(c);
        }
    }
    Some(out)
}

/// The reason inside `Error=ValueError Args=[<reason>] in definition '…'`.
fn localstack_reason(message: &str) -> Option<String> {
    let start = message.find("Args=[")? + "Args=[".len();
    let end = message.find("] in definition '")?;
    python_string_literal(message.get(start..end)?)
}

type Key = (String, Option<String>, String);

fn diagnostic_keys(list: &[Value]) -> BTreeMap<Key, usize> {
    let mut out = BTreeMap::new();
    for d in list {
        let key = (
            d["code"].as_str().unwrap_or_default().to_string(),
            d.get("location")
                .and_then(Value::as_str)
                .map(str::to_string),
            d["message"].as_str().unwrap_or_default().to_string(),
        );
        *out.entry(key).or_insert(0) += 1;
    }
    out
}

/// `Ok(())` when the case passes, else a one-line reason.
fn check_case(dir: &Path) -> Result<(), String> {
    let expected = read_json(&dir.join("expected.json"));
    let text = ["definition.json", "definition.txt"]
        .iter()
        .map(|f| dir.join(f))
        .find(|p| p.exists())
        .map(|p| fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))
        .ok_or("no definition file")?;
    let mt = machine_type(expected["state_machine_type"].as_str());
    let actual: Validation = validate(&text, mt);
    match expected["api"].as_str() {
        Some("ValidateStateMachineDefinition") => {
            let want_result = expected["result"].as_str().unwrap_or_default();
            let actual_json = serde_json::to_value(&actual).map_err(|e| e.to_string())?;
            let got_list = actual_json["diagnostics"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let want_list = expected["diagnostics"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            if actual.result() != want_result {
                return Err(format!(
                    "result {} != expected {want_result}; got {got_list:?}",
                    actual.result()
                ));
            }
            let (got, want) = (diagnostic_keys(&got_list), diagnostic_keys(&want_list));
            if got != want {
                return Err(format!(
                    "diagnostics differ: got {got:?}, expected {want:?}"
                ));
            }
            Ok(())
        }
        Some("CreateStateMachine") => {
            let want = expected["message"].as_str().unwrap_or_default();
            let Some(got) = actual.create_state_machine_message() else {
                return Err(format!("validated OK, expected InvalidDefinition: {want}"));
            };
            if want.starts_with("Invalid State Machine Definition: ") {
                if got != want {
                    return Err(format!("message {got:?} != expected {want:?}"));
                }
            } else {
                let reason = localstack_reason(want)
                    .ok_or_else(|| format!("unrecognised message shape: {want}"))?;
                if !got.contains(&reason) {
                    return Err(format!(
                        "message {got:?} does not contain the reason {reason:?}"
                    ));
                }
            }
            Ok(())
        }
        other => Err(format!("unknown api {other:?}")),
    }
}

#[test]
fn validation_corpus_meets_floor() {
    let dir = corpus_dir().join("validation");
    let floor: usize =
        fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/validation-floor.txt"))
            .expect("validation-floor.txt")
            .trim()
            .parse()
            .expect("floor is a number");
    let cases = sorted_dirs(&dir);
    let mut passed = 0;
    let mut failures = Vec::new();
    for case in &cases {
        let name = case
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        match check_case(case) {
            Ok(()) => passed += 1,
            Err(reason) => failures.push(format!("FAIL {name}: {reason}")),
        }
    }
    for f in &failures {
        println!("{f}");
    }
    println!(
        "validation corpus: {passed}/{} passed (floor {floor})",
        cases.len()
    );
    assert_eq!(cases.len(), 114, "expected 114 validation cases");
    assert!(
        passed >= floor,
        "validation corpus: {passed}/{} is below the floor {floor}",
        cases.len()
    );
}

#[test]
fn accepted_execution_definitions_validate_ok() {
    let root = corpus_dir();
    let mut checked = 0;
    let mut failures = Vec::new();
    for category in sorted_dirs(&root) {
        if category.file_name().is_some_and(|n| n == "validation") {
            continue;
        }
        for case in sorted_dirs(&category) {
            let def = case.join("definition.json");
            if !def.exists() {
                continue;
            }
            let text =
                fs::read_to_string(&def).unwrap_or_else(|e| panic!("{}: {e}", def.display()));
            let meta_path = case.join("meta.json");
            let meta = if meta_path.exists() {
                read_json(&meta_path)
            } else {
                Value::Null
            };
            let mt = machine_type(meta["state_machine_type"].as_str());
            let v = validate(&text, mt);
            checked += 1;
            if !v.is_ok() {
                failures.push(format!(
                    "{}: {:?}",
                    case.display(),
                    v.create_state_machine_message()
                ));
            }
        }
    }
    for f in &failures {
        println!("FALSE POSITIVE {f}");
    }
    println!(
        "execution definitions: {}/{checked} validate OK",
        checked - failures.len()
    );
    assert_eq!(checked, 875, "expected 875 execution cases");
    assert!(
        failures.is_empty(),
        "{} accepted definitions were rejected",
        failures.len()
    );
}

#[test]
fn localstack_reason_extraction() {
    let m = r#"Error=ValueError Args=["Label contains invalid character: '\\x00'"] in definition '{}'."#;
    assert_eq!(
        localstack_reason(m).as_deref(),
        Some(r"Label contains invalid character: '\x00'")
    );
    let m = "Error=ValueError Args=['Label cannot be empty'] in definition '{}'.";
    assert_eq!(
        localstack_reason(m).as_deref(),
        Some("Label cannot be empty")
    );
}
