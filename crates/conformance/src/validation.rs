//! The static validator against the corpus's AWS-recorded validation cases
//! (`<corpus>/validation/<case>/{definition.json|definition.txt, expected.json}`), with the
//! cases where Expressway deliberately differs from AWS listed, each with its reason.
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
//! * A [`DELIBERATE_DEVIATIONS`] case must differ from AWS exactly as its entry says (else it is a
//!   mismatch), and a listed case that matches AWS again is reported too (the list is stale).

use expressway_asl::validate::{validate, MachineType, Severity, Validation};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// What Expressway answers instead of AWS's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ours {
    /// The definition is valid, with a WARNING diagnostic at `location` (AWS refuses it).
    AcceptedWithWarning {
        /// Where the warning points.
        location: &'static str,
    },
}

/// A validation case where Expressway differs from AWS on purpose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deviation {
    /// The case directory name under `validation/`.
    pub case: &'static str,
    /// Where the decision was made.
    pub issue: &'static str,
    /// Why.
    pub reason: &'static str,
    /// What Expressway answers.
    pub ours: Ours,
}

/// Every deliberate deviation from the recorded AWS validation results.
pub const DELIBERATE_DEVIATIONS: &[Deviation] = &[Deviation {
    case: "sfn_api_express__test_illegal_callbacks_SYNC",
    issue: "issue #15",
    reason: "EXPRESS with states:startExecution.sync: AWS refuses it (InvalidDefinition); Expressway runs the child execution in the pod, so it accepts it with a WARNING that the definition is not portable to AWS Express",
    ours: Ours::AcceptedWithWarning {
        location: "/States/StartExecution/Resource",
    },
}];

/// How one validation case came out.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Same result as AWS.
    Match,
    /// A listed deviation, behaving as listed.
    Deviation(Deviation),
    /// Differs from AWS (and is not a listed deviation, or not as listed): the reason.
    Mismatch(String),
}

/// One case's verdict.
#[derive(Debug, Clone)]
pub struct CaseVerdict {
    /// The case directory name.
    pub case: String,
    /// The verdict.
    pub verdict: Verdict,
}

/// The validation cases' verdicts.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// One per case, in name order.
    pub cases: Vec<CaseVerdict>,
}

impl Report {
    /// Cases that match AWS.
    pub fn matches(&self) -> usize {
        self.count(|v| matches!(v, Verdict::Match))
    }
    /// Listed deviations that behave as listed.
    pub fn deviations(&self) -> Vec<Deviation> {
        self.cases
            .iter()
            .filter_map(|c| match c.verdict {
                Verdict::Deviation(d) => Some(d),
                _ => None,
            })
            .collect()
    }
    /// `(case, reason)` of every mismatch.
    pub fn mismatches(&self) -> Vec<(&str, &str)> {
        self.cases
            .iter()
            .filter_map(|c| match &c.verdict {
                Verdict::Mismatch(r) => Some((c.case.as_str(), r.as_str())),
                _ => None,
            })
            .collect()
    }
    fn count(&self, f: impl Fn(&Verdict) -> bool) -> usize {
        self.cases.iter().filter(|c| f(&c.verdict)).count()
    }
    /// `113/114 match AWS, 1 deliberate deviation (issue #15)`.
    pub fn headline(&self) -> String {
        let deviations = self.deviations();
        let issues: Vec<&str> = deviations.iter().map(|d| d.issue).collect();
        let mut s = format!("{}/{} match AWS", self.matches(), self.cases.len());
        if !deviations.is_empty() {
            s.push_str(&format!(
                ", {} deliberate deviation{} ({})",
                deviations.len(),
                if deviations.len() == 1 { "" } else { "s" },
                issues.join(", ")
            ));
        }
        let mismatches = self.mismatches().len();
        if mismatches > 0 {
            s.push_str(&format!(", {mismatches} mismatched"));
        }
        s
    }
}

fn read_json(path: &Path) -> Result<Value, String> {
    let text = fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

fn machine_type(name: Option<&str>) -> MachineType {
    match name {
        Some("EXPRESS") => MachineType::Express,
        _ => MachineType::Standard,
    }
}

fn sorted_dirs(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let mut out: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir())
        .collect();
    out.sort();
    Ok(out)
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
pub fn localstack_reason(message: &str) -> Option<String> {
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

/// Our validation of a case's definition, and `Ok(())` when it equals AWS's recorded result
/// (else a one-line reason).
fn compare_case(dir: &Path) -> Result<(Validation, Result<(), String>), String> {
    let expected = read_json(&dir.join("expected.json"))?;
    let text = ["definition.json", "definition.txt"]
        .iter()
        .map(|f| dir.join(f))
        .find(|p| p.exists())
        .ok_or("no definition file")?;
    let text = fs::read_to_string(&text).map_err(|e| format!("{}: {e}", text.display()))?;
    let mt = machine_type(expected["state_machine_type"].as_str());
    let actual: Validation = validate(&text, mt);
    let same = match expected["api"].as_str() {
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
            let (got, want) = (diagnostic_keys(&got_list), diagnostic_keys(&want_list));
            if actual.result() != want_result {
                Err(format!(
                    "result {} != expected {want_result}; got {got_list:?}",
                    actual.result()
                ))
            } else if got != want {
                Err(format!(
                    "diagnostics differ: got {got:?}, expected {want:?}"
                ))
            } else {
                Ok(())
            }
        }
        Some("CreateStateMachine") => {
            let want = expected["message"].as_str().unwrap_or_default();
            match actual.create_state_machine_message() {
                None => Err(format!("validated OK, expected InvalidDefinition: {want}")),
                Some(got) if want.starts_with("Invalid State Machine Definition: ") => {
                    if got == want {
                        Ok(())
                    } else {
                        Err(format!("message {got:?} != expected {want:?}"))
                    }
                }
                Some(got) => {
                    let reason = localstack_reason(want)
                        .ok_or_else(|| format!("unrecognised message shape: {want}"))?;
                    if got.contains(&reason) {
                        Ok(())
                    } else {
                        Err(format!(
                            "message {got:?} does not contain the reason {reason:?}"
                        ))
                    }
                }
            }
        }
        other => return Err(format!("unknown api {other:?}")),
    };
    Ok((actual, same))
}

/// Whether our validation is what the deviation says Expressway answers.
fn behaves_as_listed(d: &Deviation, ours: &Validation) -> Result<(), String> {
    match d.ours {
        Ours::AcceptedWithWarning { location } => {
            let warned = ours.diagnostics.iter().any(|x| {
                x.severity == Severity::Warning && x.location.as_deref() == Some(location)
            });
            if ours.is_ok() && warned {
                Ok(())
            } else {
                Err(format!(
                    "listed deviation ({}): expected OK with a WARNING at {location}, got {:?}",
                    d.issue, ours.diagnostics
                ))
            }
        }
    }
}

/// The verdict of one case directory.
pub fn check_case(dir: &Path) -> Verdict {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let deviation = DELIBERATE_DEVIATIONS.iter().find(|d| d.case == name);
    match (compare_case(dir), deviation) {
        (Err(e), _) => Verdict::Mismatch(e),
        (Ok((_, Ok(()))), None) => Verdict::Match,
        (Ok((_, Err(why))), None) => Verdict::Mismatch(why),
        (Ok((_, Ok(()))), Some(d)) => Verdict::Mismatch(format!(
            "listed as a deliberate deviation ({}) but matches AWS: remove it from the list",
            d.issue
        )),
        (Ok((ours, Err(_))), Some(d)) => match behaves_as_listed(d, &ours) {
            Ok(()) => Verdict::Deviation(*d),
            Err(why) => Verdict::Mismatch(why),
        },
    }
}

/// Runs every case of `<corpus>/validation`.
pub fn run(corpus: &Path) -> Result<Report, String> {
    let mut report = Report::default();
    for dir in sorted_dirs(&corpus.join("validation"))? {
        let case = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        report.cases.push(CaseVerdict {
            case,
            verdict: check_case(&dir),
        });
    }
    Ok(report)
}

/// Every execution case's definition (all categories but `validation`) was accepted by AWS, so
/// each must validate OK with its `meta.json` type: the number checked and the rejected ones
/// (no false positives allowed).
pub fn accepted_execution_definitions(corpus: &Path) -> Result<(usize, Vec<String>), String> {
    let mut checked = 0;
    let mut rejected = Vec::new();
    for category in sorted_dirs(corpus)? {
        if category.file_name().is_some_and(|n| n == "validation") {
            continue;
        }
        for case in sorted_dirs(&category)? {
            let def = case.join("definition.json");
            if !def.exists() {
                continue;
            }
            let text = fs::read_to_string(&def).map_err(|e| format!("{}: {e}", def.display()))?;
            let meta_path = case.join("meta.json");
            let meta = if meta_path.exists() {
                read_json(&meta_path)?
            } else {
                Value::Null
            };
            let v = validate(&text, machine_type(meta["state_machine_type"].as_str()));
            checked += 1;
            if !v.is_ok() {
                rejected.push(format!(
                    "{}: {:?}",
                    case.display(),
                    v.create_state_machine_message()
                ));
            }
        }
    }
    Ok((checked, rejected))
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn headline_names_the_deviations() {
        let report = Report {
            cases: vec![
                CaseVerdict {
                    case: "a".into(),
                    verdict: Verdict::Match,
                },
                CaseVerdict {
                    case: DELIBERATE_DEVIATIONS[0].case.into(),
                    verdict: Verdict::Deviation(DELIBERATE_DEVIATIONS[0]),
                },
            ],
        };
        assert_eq!(
            report.headline(),
            "1/2 match AWS, 1 deliberate deviation (issue #15)"
        );
    }
}
