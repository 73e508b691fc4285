//! The validation corpus: every case matches AWS or is a listed deliberate deviation that
//! behaves as listed, and the number matching AWS does not fall below `floors.json`'s
//! `validation`. Also: every definition AWS accepted in the execution cases validates OK.

use expressway_conformance::default_corpus_dir;
use expressway_conformance::validation::{
    accepted_execution_definitions, run, DELIBERATE_DEVIATIONS,
};
use serde_json::Value;

#[test]
fn validation_cases_match_aws_or_are_listed_deviations() {
    let dir = default_corpus_dir();
    let report = run(&dir).unwrap_or_else(|e| {
        panic!(
            "the conformance corpus is required at {}: {e}",
            dir.display()
        )
    });
    let floors: Value =
        serde_json::from_str(include_str!("../floors.json")).expect("floors.json is valid JSON");
    let floor = floors["validation"]
        .as_u64()
        .expect("floors.json: validation") as usize;
    for (case, why) in report.mismatches() {
        println!("MISMATCH {case}: {why}");
    }
    for d in report.deviations() {
        println!("DEVIATION {} ({}): {}", d.case, d.issue, d.reason);
    }
    println!("validation corpus: {} (floor {floor})", report.headline());
    assert_eq!(report.cases.len(), 114, "expected 114 validation cases");
    assert!(
        report.mismatches().is_empty(),
        "validation cases differ from AWS without a listed reason: {:?}",
        report.mismatches()
    );
    assert_eq!(
        report.deviations().len(),
        DELIBERATE_DEVIATIONS.len(),
        "every listed deviation is a case of the corpus"
    );
    assert!(
        report.matches() >= floor,
        "validation corpus: {} is below the floor {floor}",
        report.headline()
    );
}

#[test]
fn accepted_execution_definitions_validate_ok() {
    let (checked, rejected) = accepted_execution_definitions(&default_corpus_dir())
        .unwrap_or_else(|e| panic!("the conformance corpus is required: {e}"));
    for r in &rejected {
        println!("FALSE POSITIVE {r}");
    }
    println!(
        "execution definitions: {}/{checked} validate OK",
        checked - rejected.len()
    );
    assert_eq!(checked, 875, "expected 875 execution cases");
    assert!(
        rejected.is_empty(),
        "{} accepted definitions were rejected",
        rejected.len()
    );
}
