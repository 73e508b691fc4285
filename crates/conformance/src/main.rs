//! `conformance [--dir D] [--cli PATH] [--category C] [--failures] [--no-jsonata]`: prints pass/total
//! per category of the LocalStack corpus, the validation cases (with the listed deliberate
//! deviations), then per group of the JSONata reference suite.

use expressway_conformance::{
    default_corpus_dir, grade_case, load_cases, run_all_in_process, run_via_cli, tally, CaseResult,
};
use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut dir = default_corpus_dir();
    let mut cli: Option<PathBuf> = None;
    let mut category: Option<String> = None;
    let mut failures = false;
    let mut jsonata = true;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--dir" => dir = args.next().map(PathBuf::from).unwrap_or(dir),
            "--cli" => cli = args.next().map(PathBuf::from),
            "--category" => category = args.next(),
            "--failures" => failures = true,
            "--no-jsonata" => jsonata = false,
            other => {
                eprintln!("conformance: unknown argument '{other}' (use --dir D, --cli PATH, --category C, --failures, --no-jsonata)");
                return ExitCode::from(64);
            }
        }
    }
    let mut cases = match load_cases(&dir) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("conformance: {e}");
            return ExitCode::from(66);
        }
    };
    if let Some(c) = &category {
        cases.retain(|x| &x.category == c || x.path.starts_with(c.as_str()));
    }
    let results: Vec<CaseResult> = match &cli {
        Some(bin) => {
            // Cases wait up to 5 s of real time; run them 8 at a time.
            let mut out = Vec::with_capacity(cases.len());
            for chunk in cases.chunks(8) {
                let handles: Vec<_> = chunk
                    .iter()
                    .map(|case| {
                        let bin = bin.clone();
                        let case = case.clone();
                        std::thread::spawn(move || grade_case(&case, run_via_cli(&bin, &case)))
                    })
                    .collect();
                for h in handles {
                    match h.join() {
                        Ok(r) => out.push(r),
                        Err(_) => eprintln!("conformance: a worker thread panicked"),
                    }
                }
            }
            out
        }
        None => run_all_in_process(&cases),
    };
    if failures {
        for r in &results {
            if r.grade != expressway_conformance::compare::Grade::Strict {
                println!("{:?}\t{}\t{}", r.grade, r.case.path, r.reason);
            }
        }
    }
    let t = tally(&results);
    println!(
        "{:<40} {:>6} {:>9} {:>8}",
        "category", "total", "lenient", "strict"
    );
    let (mut total, mut lenient, mut strict) = (0, 0, 0);
    for (k, v) in &t {
        println!("{k:<40} {:>6} {:>9} {:>8}", v.total, v.lenient, v.strict);
        total += v.total;
        lenient += v.lenient;
        strict += v.strict;
    }
    println!("{:<40} {total:>6} {lenient:>9} {strict:>8}", "ALL");
    let logs = expressway_conformance::check_execution_logs(&cases);
    for l in logs.iter().filter(|l| !l.ok) {
        println!("log mismatch\t{}\t{}", l.file, l.reason);
    }
    println!(
        "{:<40} {:>6} {:>9}",
        "execution_logs (files)",
        logs.len(),
        logs.iter().filter(|l| l.ok).count()
    );
    let histories = expressway_conformance::check_histories(&cases);
    if failures {
        for h in histories.iter().filter(|h| !h.ok) {
            println!("history mismatch\t{}\t{}", h.path, h.reason);
        }
    }
    println!(
        "{:<40} {:>6} {:>9}",
        "history event types (cases)",
        histories.len(),
        histories.iter().filter(|h| h.ok).count()
    );
    match expressway_conformance::validation::run(&dir) {
        Ok(report) => {
            if failures {
                for (case, why) in report.mismatches() {
                    println!("validation mismatch\t{case}\t{why}");
                }
            }
            for d in report.deviations() {
                println!(
                    "validation deliberate deviation\t{}\t{}: {}",
                    d.case, d.issue, d.reason
                );
            }
            println!(
                "{:<40} {:>6} {:>9}  ({})",
                "validation (cases)",
                report.cases.len(),
                report.matches(),
                report.headline()
            );
        }
        Err(e) => {
            eprintln!("conformance: {e}");
            return ExitCode::from(66);
        }
    }
    if jsonata {
        let dir = expressway_conformance::jsonata_suite::default_suite_dir();
        match expressway_conformance::jsonata_suite::run_suite(&dir) {
            Ok(report) => {
                if failures {
                    for f in &report.failures {
                        println!("jsonata failure\t{f}");
                    }
                }
                println!(
                    "{:<40} {:>6} {:>9}",
                    "JSONata suite group", "cases", "passed"
                );
                for (g, (p, t, s)) in &report.groups {
                    let note = if *s > 0 {
                        format!("  ({s} skipped)")
                    } else {
                        String::new()
                    };
                    println!("{g:<40} {t:>6} {p:>9}{note}");
                }
                let (p, t) = report.totals(false);
                println!("{:<40} {t:>6} {p:>9}", "JSONata suite, all groups");
                let (p, t) = report.totals(true);
                println!("{:<40} {t:>6} {p:>9}", "JSONata suite, groups SFN offers");
            }
            Err(e) => {
                eprintln!("conformance: {e}");
                return ExitCode::from(66);
            }
        }
    }
    ExitCode::SUCCESS
}
