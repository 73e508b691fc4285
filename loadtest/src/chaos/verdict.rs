//! The verdict's arithmetic, kept pure so it is unit-tested: which start events are lost, how many
//! results are duplicates and whether they share the execution ARN, which fault a re-run belongs to,
//! and how long after each fault the lag was back under its threshold.

use std::collections::{BTreeMap, HashMap};

/// One result record of an execution name.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Copy {
    pub(crate) arn: String,
    pub(crate) status: String,
    /// Seconds since the first start event (from the record's timestamp).
    pub(crate) t: f64,
}

/// Duplicate statistics over every execution name's result records.
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Duplicates {
    /// Result records beyond the first of a name.
    pub(crate) extra_records: u64,
    /// Names with more than one result record.
    pub(crate) names: u64,
    /// Names whose result records carry more than one execution ARN (must be 0).
    pub(crate) names_with_different_arns: u64,
    /// The most result records of one name.
    pub(crate) max_copies: u64,
    /// Times of the re-runs (every copy after the earliest), for attribution.
    pub(crate) rerun_times: Vec<f64>,
    /// Names with copies of different statuses (a re-run that ended differently).
    pub(crate) names_with_different_status: u64,
}

pub(crate) fn duplicates<'a>(results: impl IntoIterator<Item = &'a Vec<Copy>>) -> Duplicates {
    let mut d = Duplicates::default();
    for copies in results {
        d.max_copies = d.max_copies.max(copies.len() as u64);
        if copies.len() < 2 {
            continue;
        }
        d.names += 1;
        d.extra_records += copies.len() as u64 - 1;
        if copies.iter().any(|c| c.arn != copies[0].arn) {
            d.names_with_different_arns += 1;
        }
        if copies.iter().any(|c| c.status != copies[0].status) {
            d.names_with_different_status += 1;
        }
        let mut times: Vec<f64> = copies.iter().map(|c| c.t).collect();
        times.sort_by(f64::total_cmp);
        d.rerun_times.extend_from_slice(&times[1..]);
    }
    d
}

/// Names that were accepted but have neither a result nor a dead letter.
pub(crate) fn lost<'a>(
    accepted: impl IntoIterator<Item = &'a String>,
    results: &HashMap<String, Vec<Copy>>,
    dead_lettered: &HashMap<String, u64>,
) -> Vec<&'a String> {
    accepted
        .into_iter()
        .filter(|n| !results.contains_key(*n) && !dead_lettered.contains_key(*n))
        .collect()
}

/// Attributes each re-run to the latest fault that started at or before it. `fault_starts` must be
/// sorted. Returns the count per fault and the re-runs before any fault.
pub(crate) fn attribute(rerun_times: &[f64], fault_starts: &[f64]) -> (Vec<u64>, u64) {
    let mut per = vec![0u64; fault_starts.len()];
    let mut before = 0;
    for &t in rerun_times {
        match fault_starts.partition_point(|&s| s <= t) {
            0 => before += 1,
            i => per[i - 1] += 1,
        }
    }
    (per, before)
}

/// Recovery of one fault from a lag time series `(t, lag)` (samples in time order, `None` when the
/// lag could not be read, e.g. while the brokers are down), over the fault's window `[start, end)`
/// (until the next fault): the time from `start` until the lag is back under `threshold` for good,
/// i.e. the first readable sample after the last one above it (or unreadable); `Some(0.0)` when it
/// never went above; `None` when it is still above at the end of the window. Also the highest lag
/// seen in the window.
pub(crate) fn recovery(
    samples: &[(f64, Option<i64>)],
    start: f64,
    end: f64,
    threshold: i64,
) -> (Option<f64>, Option<i64>) {
    let window: Vec<(f64, Option<i64>)> = samples
        .iter()
        .copied()
        .filter(|(t, _)| *t >= start && *t < end)
        .collect();
    let peak = window.iter().filter_map(|(_, l)| *l).max();
    let bad = |l: Option<i64>| l.is_none_or(|l| l > threshold);
    match window.iter().rposition(|(_, l)| bad(*l)) {
        None => (Some(0.0), peak),
        Some(i) => (
            window[i + 1..]
                .iter()
                .find(|(_, l)| !bad(*l))
                .map(|(t, _)| t - start),
            peak,
        ),
    }
}

/// Counts by key, as a JSON-friendly ordered map.
pub(crate) fn tally<'a>(items: impl IntoIterator<Item = &'a str>) -> BTreeMap<String, u64> {
    let mut m = BTreeMap::new();
    for i in items {
        *m.entry(i.to_string()).or_default() += 1;
    }
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    fn copy(arn: &str, status: &str, t: f64) -> Copy {
        Copy {
            arn: arn.into(),
            status: status.into(),
            t,
        }
    }

    #[test]
    fn duplicates_count_extra_copies_and_arn_mismatches() {
        let results = [
            vec![copy("a", "SUCCEEDED", 1.0)],
            vec![copy("b", "SUCCEEDED", 5.0), copy("b", "SUCCEEDED", 2.0)],
            vec![
                copy("c", "SUCCEEDED", 3.0),
                copy("c2", "FAILED", 4.0),
                copy("c", "SUCCEEDED", 9.0),
            ],
        ];
        let d = duplicates(results.iter());
        assert_eq!(d.extra_records, 3);
        assert_eq!(d.names, 2);
        assert_eq!(d.names_with_different_arns, 1);
        assert_eq!(d.names_with_different_status, 1);
        assert_eq!(d.max_copies, 3);
        // The earliest copy is the original; later ones are re-runs.
        let mut t = d.rerun_times.clone();
        t.sort_by(f64::total_cmp);
        assert_eq!(t, vec![4.0, 5.0, 9.0]);
    }

    #[test]
    fn lost_excludes_results_and_dead_letters() {
        let accepted: Vec<String> = ["x", "y", "z"].iter().map(|s| s.to_string()).collect();
        let mut results = HashMap::new();
        results.insert("x".to_string(), vec![copy("a", "SUCCEEDED", 1.0)]);
        let mut dlq = HashMap::new();
        dlq.insert("z".to_string(), 1);
        assert_eq!(lost(&accepted, &results, &dlq), vec![&"y".to_string()]);
    }

    #[test]
    fn reruns_go_to_the_latest_earlier_fault() {
        let (per, before) = attribute(&[0.5, 10.0, 10.5, 31.0, 99.0], &[10.0, 30.0]);
        assert_eq!(per, vec![2, 2]);
        assert_eq!(before, 1);
        let (per, before) = attribute(&[1.0], &[]);
        assert!(per.is_empty());
        assert_eq!(before, 1);
    }

    #[test]
    fn recovery_is_the_first_sample_under_the_threshold_for_good() {
        let s = [
            (9.0, Some(5)),
            (10.0, Some(5)),
            (11.0, Some(400)),
            (12.0, None),
            (13.0, Some(900)),
            (14.0, Some(50)),
            (15.0, Some(10)),
            (16.0, Some(300)),
            (17.0, Some(10)),
        ];
        // Under 100 for good from 17 (16 went above again).
        assert_eq!(recovery(&s, 10.0, 20.0, 100), (Some(7.0), Some(900)));
        // Under 500 from 14 (13 was above, 12 unreadable).
        assert_eq!(recovery(&s, 10.0, 20.0, 500), (Some(4.0), Some(900)));
        // Never above 1000, but unreadable at 12 (an unknown lag is not a recovered one): 13.
        assert_eq!(recovery(&s, 10.0, 20.0, 1000), (Some(3.0), Some(900)));
        // Never above and always readable: recovered at once.
        assert_eq!(recovery(&s[5..], 14.0, 20.0, 1000), (Some(0.0), Some(300)));
        // The window ends while the lag is above: not recovered.
        assert_eq!(recovery(&s, 10.0, 14.0, 100), (None, Some(900)));
        // Samples before the fault do not count.
        assert_eq!(recovery(&s, 14.0, 16.0, 100), (Some(0.0), Some(50)));
    }
}
