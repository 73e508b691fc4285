//! The `expressway serve` processes: spawned with their own metrics port and log file, signalled
//! (SIGKILL, SIGSTOP/SIGCONT, SIGTERM through `kill(1)`: the workspace forbids unsafe code), probed
//! on `/readyz` and scraped on `/metrics`.

use anyhow::Context as _;
use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub(crate) struct Pod {
    pub(crate) index: usize,
    child: Option<Child>,
    pub(crate) port: u16,
    pub(crate) incarnation: u32,
    pub(crate) log: PathBuf,
    /// `expressway_offset_commits_total` `(ok, error)` of earlier incarnations.
    commits_before: (f64, f64),
    /// The last values scraped from this incarnation.
    pub(crate) commits_now: (f64, f64),
    pub(crate) stopped: bool,
}

pub(crate) struct Pods {
    bin: PathBuf,
    args: Vec<String>,
    work: PathBuf,
    pub(crate) pods: Vec<Pod>,
}

fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// `GET path` on loopback; the status code and body.
pub(crate) fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(1)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(3))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n"
    )
    .ok()?;
    let mut text = String::new();
    s.read_to_string(&mut text).ok()?;
    let status = text.split(' ').nth(1)?.parse().ok()?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    Some((status, body))
}

/// The sum of a Prometheus metric's samples whose label set contains `label` (or all samples).
pub(crate) fn metric_sum(text: &str, name: &str, label: Option<&str>) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .filter(|l| label.is_none_or(|lb| l.contains(lb)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

fn signal(pid: u32, sig: &str) -> anyhow::Result<()> {
    let st = Command::new("kill")
        .arg(format!("-{sig}"))
        .arg(pid.to_string())
        .status()
        .context("running kill")?;
    anyhow::ensure!(st.success(), "kill -{sig} {pid} failed");
    Ok(())
}

impl Pods {
    pub(crate) fn new(bin: PathBuf, args: Vec<String>, work: &Path) -> Pods {
        Pods {
            bin,
            args,
            work: work.to_path_buf(),
            pods: Vec::new(),
        }
    }

    /// Starts pod `index` (a new one, or a new incarnation of a stopped one).
    pub(crate) fn spawn(&mut self, index: usize) -> anyhow::Result<()> {
        let port = free_port()?;
        let incarnation = self.pods.get(index).map_or(0, |p| p.incarnation + 1);
        let log = self.work.join(format!("pod-{index}.{incarnation}.log"));
        let out = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let child = Command::new(&self.bin)
            .arg("serve")
            .args(&self.args)
            .arg("--metrics-listen")
            .arg(format!("127.0.0.1:{port}"))
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("starting {}", self.bin.display()))?;
        let pod = Pod {
            index,
            child: Some(child),
            port,
            incarnation,
            log,
            commits_before: (0.0, 0.0),
            commits_now: (0.0, 0.0),
            stopped: false,
        };
        if let Some(old) = self.pods.get_mut(index) {
            let before = (
                old.commits_before.0 + old.commits_now.0,
                old.commits_before.1 + old.commits_now.1,
            );
            *old = Pod {
                commits_before: before,
                ..pod
            };
        } else {
            self.pods.push(pod);
        }
        Ok(())
    }

    pub(crate) fn pid(&self, index: usize) -> Option<u32> {
        self.pods[index].child.as_ref().map(Child::id)
    }

    pub(crate) fn is_running(&mut self, index: usize) -> bool {
        match self.pods[index].child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// SIGKILL, reaped.
    pub(crate) fn kill(&mut self, index: usize) {
        if let Some(mut c) = self.pods[index].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub(crate) fn stop_signal(&mut self, index: usize, stop: bool) -> anyhow::Result<()> {
        let pid = self.pid(index).context("the pod is not running")?;
        self.pods[index].stopped = stop;
        signal(pid, if stop { "STOP" } else { "CONT" })
    }

    /// Takes pod `index`'s process out (to signal and wait for it without holding the lock), and
    /// whether it was SIGSTOPped.
    pub(crate) fn take(&mut self, index: usize) -> Option<(Child, bool)> {
        let stopped = std::mem::replace(&mut self.pods[index].stopped, false);
        self.pods[index].child.take().map(|c| (c, stopped))
    }

    /// SIGTERM pod `index` and wait for it (see [`terminate`]).
    pub(crate) fn terminate(&mut self, index: usize, budget: Duration) -> (String, f64) {
        match self.take(index) {
            Some((c, stopped)) => terminate(c, stopped, budget),
            None => ("not running".into(), 0.0),
        }
    }

    /// Waits until pod `index` answers `/readyz` with 200 (it owns partitions and loaded its
    /// machines), or `/healthz` when `assigned` is false (a pod may join without partitions).
    pub(crate) fn wait_ready(&mut self, index: usize, timeout: Duration, assigned: bool) -> bool {
        let port = self.pods[index].port;
        let path = if assigned { "/readyz" } else { "/healthz" };
        let until = Instant::now() + timeout;
        while Instant::now() < until {
            if !self.is_running(index) {
                return false;
            }
            if http_get(port, path).is_some_and(|(s, _)| s == 200) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }

    /// Offset commits `(ok, error)` of every incarnation so far (as of the last scrape).
    pub(crate) fn commits(&self) -> (f64, f64) {
        self.pods.iter().fold((0.0, 0.0), |(ok, err), p| {
            (
                ok + p.commits_before.0 + p.commits_now.0,
                err + p.commits_before.1 + p.commits_now.1,
            )
        })
    }

    /// The running pods' metric ports (index, port).
    pub(crate) fn ports(&self) -> Vec<(usize, u16)> {
        self.pods
            .iter()
            .filter(|p| p.child.is_some() && !p.stopped)
            .map(|p| (p.index, p.port))
            .collect()
    }

    /// Records a scrape of pod `index`'s commit counters `(ok, error)`.
    pub(crate) fn record_commits(&mut self, index: usize, port: u16, value: (f64, f64)) {
        let p = &mut self.pods[index];
        // The pod may have been restarted since the port was read.
        if p.port == port {
            p.commits_now.0 = p.commits_now.0.max(value.0);
            p.commits_now.1 = p.commits_now.1.max(value.1);
        }
    }

    /// Scrapes every running pod's commit counters.
    pub(crate) fn scrape_commits(ports: &[(usize, u16)]) -> Vec<(usize, u16, (f64, f64))> {
        ports
            .iter()
            .filter_map(|&(i, port)| {
                let (status, body) = http_get(port, "/metrics")?;
                (status == 200).then(|| {
                    let m = "expressway_offset_commits_total";
                    let ok = metric_sum(&body, m, Some("result=\"ok\""));
                    let err = metric_sum(&body, m, Some("result=\"error\""));
                    (i, port, (ok, err))
                })
            })
            .collect()
    }
}

/// SIGTERM (after SIGCONT if it was stopped), then wait up to `budget` for the exit (SIGKILL after
/// it). Returns the exit status text and how long the pod took.
pub(crate) fn terminate(mut c: Child, stopped: bool, budget: Duration) -> (String, f64) {
    let started = Instant::now();
    if stopped {
        let _ = signal(c.id(), "CONT");
    }
    let _ = signal(c.id(), "TERM");
    while started.elapsed() < budget {
        if let Ok(Some(st)) = c.try_wait() {
            return (st.to_string(), started.elapsed().as_secs_f64());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = c.kill();
    let _ = c.wait();
    (
        "did not exit in time: SIGKILL".into(),
        started.elapsed().as_secs_f64(),
    )
}

impl Drop for Pods {
    fn drop(&mut self) {
        for i in 0..self.pods.len() {
            if self.pods[i].child.is_some() {
                let _ = self.terminate(i, Duration::from_secs(40));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_sum_matches_the_name_and_label() {
        let text = "# TYPE expressway_offset_commits_total counter\n\
            expressway_offset_commits_total{result=\"ok\"} 12\n\
            expressway_offset_commits_total{result=\"error\"} 3\n\
            expressway_offset_commits_total_other 99\n\
            expressway_executions_in_flight 7\n";
        assert_eq!(
            metric_sum(
                text,
                "expressway_offset_commits_total",
                Some("result=\"ok\"")
            ),
            12.0
        );
        assert_eq!(
            metric_sum(text, "expressway_offset_commits_total", None),
            15.0
        );
        assert_eq!(
            metric_sum(text, "expressway_executions_in_flight", None),
            7.0
        );
        assert_eq!(metric_sum(text, "missing", None), 0.0);
    }
}
