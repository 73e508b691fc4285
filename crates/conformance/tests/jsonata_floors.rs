//! JSONata reference suite floors: fails when any group, or the total over the groups Step
//! Functions offers, falls below `jsonata_floors.json`.

use expressway_conformance::jsonata_suite::{default_suite_dir, run_suite};
use std::collections::BTreeMap;

#[test]
fn jsonata_suite_does_not_fall_below_the_recorded_floors() {
    let dir = default_suite_dir();
    let report = run_suite(&dir)
        .unwrap_or_else(|e| panic!("the JSONata suite is required at {}: {e}", dir.display()));
    let floors: BTreeMap<String, usize> =
        serde_json::from_str(include_str!("../jsonata_floors.json"))
            .expect("jsonata_floors.json parses");
    let mut below = Vec::new();
    for (group, floor) in &floors {
        if group.starts_with('_') {
            continue;
        }
        let passed = report.groups.get(group).map(|g| g.0).unwrap_or(0);
        if passed < *floor {
            below.push(format!("{group}: {passed} < {floor}"));
        }
    }
    let (pass, total) = report.totals(true);
    eprintln!("JSONata suite, groups Step Functions offers: {pass}/{total}");
    if let Some(f) = floors.get("_total_sfn") {
        if pass < *f {
            below.push(format!("total: {pass} < {f}"));
        }
    }
    assert!(
        below.is_empty(),
        "below the floors: {below:?}\nfailures:\n{}",
        report.failures.join("\n")
    );
}
