//! Fault specifications (`--fault KIND[:key=value,...]`) and the schedule they expand to.
//!
//! ```text
//! kill-pod:at=20s,every=25s,count=10,down=3s   SIGKILL a random pod (seeded), restart it `down` later
//! zombie-pod:at=30s,down=60s                   SIGSTOP a random pod for `down`, then SIGCONT
//! rolling-restart:at=30s                       SIGTERM each pod in turn, restart it, wait until ready
//! kill-broker:at=30s,down=30s                  SIGKILL the Kafka node leading most start partitions
//! stop-cluster:at=30s,down=30s                 SIGTERM every Kafka node at once, start them `down` later
//! ```
//!
//! `at` is measured from the first start event; `every`/`count` repeat a fault.

use std::fmt;
use std::time::Duration;

/// What a fault does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    KillPod,
    ZombiePod,
    RollingRestart,
    KillBroker,
    StopCluster,
}

impl Kind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::KillPod => "kill-pod",
            Kind::ZombiePod => "zombie-pod",
            Kind::RollingRestart => "rolling-restart",
            Kind::KillBroker => "kill-broker",
            Kind::StopCluster => "stop-cluster",
        }
    }

    fn parse(s: &str) -> Option<Kind> {
        [
            Kind::KillPod,
            Kind::ZombiePod,
            Kind::RollingRestart,
            Kind::KillBroker,
            Kind::StopCluster,
        ]
        .into_iter()
        .find(|k| k.name() == s)
    }

    /// Faults that need the Kafka nodes of a `kafka.sh` setup.
    pub(crate) fn needs_setup(self) -> bool {
        matches!(self, Kind::KillBroker | Kind::StopCluster)
    }

    fn default_down(self) -> Duration {
        match self {
            Kind::KillPod => Duration::from_secs(3),
            Kind::ZombiePod => Duration::from_secs(60),
            Kind::RollingRestart => Duration::ZERO,
            Kind::KillBroker | Kind::StopCluster => Duration::from_secs(30),
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One `--fault` argument.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FaultSpec {
    pub(crate) kind: Kind,
    pub(crate) at: Duration,
    pub(crate) every: Duration,
    pub(crate) count: u32,
    pub(crate) down: Duration,
}

/// One fault of the expanded schedule.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Planned {
    pub(crate) kind: Kind,
    pub(crate) at: Duration,
    pub(crate) down: Duration,
}

/// A duration: `500ms`, `3s`, `2m` or a bare number of seconds.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, scale) = if let Some(n) = s.strip_suffix("ms") {
        (n, 0.001)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else {
        (s, 1.0)
    };
    let v: f64 = num
        .parse()
        .map_err(|_| format!("'{s}' is not a duration (500ms, 3s, 2m)"))?;
    if !v.is_finite() || v < 0.0 {
        return Err(format!("'{s}' is not a duration (500ms, 3s, 2m)"));
    }
    Ok(Duration::from_secs_f64(v * scale))
}

impl std::str::FromStr for FaultSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<FaultSpec, String> {
        let (kind, opts) = s.split_once(':').unwrap_or((s, ""));
        let kind = Kind::parse(kind).ok_or_else(|| {
            format!("unknown fault '{kind}' (kill-pod, zombie-pod, rolling-restart, kill-broker, stop-cluster)")
        })?;
        let mut spec = FaultSpec {
            kind,
            at: Duration::from_secs(20),
            every: Duration::from_secs(25),
            count: 1,
            down: kind.default_down(),
        };
        for kv in opts.split(',').filter(|kv| !kv.is_empty()) {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| format!("fault option '{kv}' is not KEY=VALUE"))?;
            match k {
                "at" => spec.at = parse_duration(v)?,
                "every" => spec.every = parse_duration(v)?,
                "down" | "for" => spec.down = parse_duration(v)?,
                "count" => {
                    spec.count = v
                        .parse()
                        .map_err(|_| format!("count '{v}' is not a number"))?
                }
                _ => {
                    return Err(format!(
                        "unknown fault option '{k}' (at, every, count, down)"
                    ))
                }
            }
        }
        Ok(spec)
    }
}

/// Every planned fault, ordered by time.
pub(crate) fn schedule(specs: &[FaultSpec]) -> Vec<Planned> {
    let mut plan: Vec<Planned> = specs
        .iter()
        .flat_map(|s| {
            (0..s.count).map(move |i| Planned {
                kind: s.kind,
                at: s.at + s.every * i,
                down: s.down,
            })
        })
        .collect();
    plan.sort_by_key(|p| p.at);
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn specs_parse_with_defaults_and_options() {
        let s: FaultSpec = "kill-pod:at=10s,every=500ms,count=3,down=2s"
            .parse()
            .expect("valid");
        assert_eq!(s.kind, Kind::KillPod);
        assert_eq!(s.at, Duration::from_secs(10));
        assert_eq!(s.every, Duration::from_millis(500));
        assert_eq!(s.count, 3);
        assert_eq!(s.down, Duration::from_secs(2));
        let z: FaultSpec = "zombie-pod".parse().expect("valid");
        assert_eq!(z.down, Duration::from_secs(60));
        assert_eq!(z.count, 1);
        assert!("kill-everything".parse::<FaultSpec>().is_err());
        assert!("kill-pod:count=x".parse::<FaultSpec>().is_err());
        assert!("kill-pod:at".parse::<FaultSpec>().is_err());
        assert!("kill-pod:speed=3".parse::<FaultSpec>().is_err());
        assert!(parse_duration("-1s").is_err());
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
    }

    #[test]
    fn schedule_repeats_and_orders_faults() {
        let plan = schedule(&[
            "kill-pod:at=10s,every=20s,count=3".parse().expect("valid"),
            "zombie-pod:at=25s".parse().expect("valid"),
        ]);
        let at: Vec<(Kind, u64)> = plan.iter().map(|p| (p.kind, p.at.as_secs())).collect();
        assert_eq!(
            at,
            vec![
                (Kind::KillPod, 10),
                (Kind::ZombiePod, 25),
                (Kind::KillPod, 30),
                (Kind::KillPod, 50)
            ]
        );
    }
}
