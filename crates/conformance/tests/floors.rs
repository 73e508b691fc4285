//! The conformance floor: fails when any category falls below the figures recorded in
//! `floors.json` (raise them as the engine improves; never lower them to make a change pass).

use expressway_conformance::{
    check_execution_logs, default_corpus_dir, load_cases, run_all_in_process, tally,
};
use serde_json::Value;

#[test]
fn corpus_pass_rates_do_not_fall_below_the_recorded_floors() {
    let dir = default_corpus_dir();
    let cases = load_cases(&dir).unwrap_or_else(|e| {
        panic!(
            "the conformance corpus is required at {}: {e}",
            dir.display()
        )
    });
    assert!(
        cases.len() >= 875,
        "expected the full corpus, found {} cases",
        cases.len()
    );
    let floors: Value =
        serde_json::from_str(include_str!("../floors.json")).expect("floors.json is valid JSON");
    let results = run_all_in_process(&cases);
    let tallies = tally(&results);
    let mut problems = Vec::new();
    for (category, floor) in floors
        .get("categories")
        .and_then(Value::as_object)
        .expect("categories")
    {
        let t = tallies.get(category).copied().unwrap_or_default();
        let want_lenient = floor.get("lenient").and_then(Value::as_u64).unwrap_or(0) as usize;
        let want_strict = floor.get("strict").and_then(Value::as_u64).unwrap_or(0) as usize;
        println!("{category:<36} total {:>4}  lenient {:>4} (floor {want_lenient:>4})  strict {:>4} (floor {want_strict:>4})", t.total, t.lenient, t.strict);
        if t.lenient < want_lenient || t.strict < want_strict {
            problems.push(format!(
                "{category}: lenient {} < {want_lenient} or strict {} < {want_strict}",
                t.lenient, t.strict
            ));
        }
    }
    for r in &results {
        if r.grade != expressway_conformance::compare::Grade::Strict {
            println!(
                "  not strict: {} ({:?}): {}",
                r.case.path,
                r.grade,
                r.reason.chars().take(200).collect::<String>()
            );
        }
    }
    let logs = check_execution_logs(&cases);
    let logs_ok = logs.iter().filter(|l| l.ok).count();
    let want_logs = floors
        .get("execution_logs")
        .and_then(Value::as_u64)
        .unwrap_or(0) as usize;
    println!(
        "execution_logs files: {logs_ok}/{} (floor {want_logs})",
        logs.len()
    );
    if logs_ok < want_logs {
        problems.push(format!("execution_logs: {logs_ok} < {want_logs}"));
    }
    assert!(
        problems.is_empty(),
        "conformance fell below its floors:\n{}",
        problems.join("\n")
    );
}
