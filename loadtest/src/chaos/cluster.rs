//! The Kafka nodes, through `deploy/kafka/kafka.sh` (start-single / start-cluster, node-stop,
//! node-start, stop). Node ids are the script's node numbers (1..3).

use anyhow::{bail, Context as _};
use std::path::PathBuf;
use std::process::Command;

pub(crate) struct Kafka {
    script: PathBuf,
    pub(crate) name: String,
    pub(crate) nodes: u32,
    /// Stop the setup on drop (the harness started it).
    owned: bool,
}

impl Kafka {
    fn run(&self, args: &[&str]) -> anyhow::Result<String> {
        run_script(&self.script, args)
    }

    /// Starts `start-single` or `start-cluster` under `name`; returns it and the bootstrap servers.
    pub(crate) fn start(
        script: PathBuf,
        cluster: bool,
        name: &str,
    ) -> anyhow::Result<(Kafka, String)> {
        let cmd = if cluster {
            "start-cluster"
        } else {
            "start-single"
        };
        eprintln!("chaos: {} {cmd} {name}", script.display());
        // One retry: a node can fail to start when a free port it picked was taken meanwhile.
        let out = match run_script(&script, &[cmd, name]) {
            Ok(out) => out,
            Err(e) => {
                eprintln!("chaos: {e:#}; retrying once");
                std::thread::sleep(std::time::Duration::from_secs(3));
                run_script(&script, &[cmd, name])?
            }
        };
        let bootstrap = out
            .lines()
            .find_map(|l| l.strip_prefix("KAFKA_BOOTSTRAP="))
            .context("kafka.sh printed no KAFKA_BOOTSTRAP")?
            .to_string();
        let k = Kafka {
            script,
            name: name.to_string(),
            nodes: if cluster { 3 } else { 1 },
            owned: true,
        };
        Ok((k, bootstrap))
    }

    /// A setup someone else started (`--kafka-setup NAME` with `--brokers`).
    pub(crate) fn existing(script: PathBuf, name: &str, nodes: u32) -> Kafka {
        Kafka {
            script,
            name: name.to_string(),
            nodes,
            owned: false,
        }
    }

    /// Leave the setup running when dropped.
    pub(crate) fn disown(&mut self) {
        self.owned = false;
    }

    /// Stops node `n` (SIGKILL when `kill`, else SIGTERM); returns when it exited.
    pub(crate) fn node_stop(&self, n: u32, kill: bool) -> anyhow::Result<()> {
        let n = n.to_string();
        let mut args = vec!["node-stop", &self.name, &n];
        if kill {
            args.push("-9");
        }
        self.run(&args).map(|_| ())
    }

    /// Starts node `n` again; returns when it logged "Kafka Server started".
    pub(crate) fn node_start(&self, n: u32) -> anyhow::Result<()> {
        self.run(&["node-start", &self.name, &n.to_string()])
            .map(|_| ())
    }

    /// Runs `f(node)` for every node at once (a KRaft node waits for its quorum, so the nodes of a
    /// cluster must stop and start together).
    pub(crate) fn all_nodes(
        &self,
        f: impl Fn(&Kafka, u32) -> anyhow::Result<()> + Sync,
    ) -> anyhow::Result<()> {
        std::thread::scope(|s| {
            let handles: Vec<_> = (1..=self.nodes)
                .map(|n| {
                    let f = &f;
                    s.spawn(move || f(self, n))
                })
                .collect();
            for h in handles {
                match h.join() {
                    Ok(r) => r?,
                    Err(_) => bail!("a node thread panicked"),
                }
            }
            Ok(())
        })
    }
}

impl Drop for Kafka {
    fn drop(&mut self) {
        if self.owned {
            eprintln!("chaos: stopping Kafka setup {}", self.name);
            if let Err(e) = self.run(&["stop", &self.name]) {
                eprintln!("chaos: stopping Kafka: {e:#}");
            }
        }
    }
}

fn run_script(script: &PathBuf, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("bash")
        .arg(script)
        .args(args)
        .output()
        .with_context(|| format!("running {}", script.display()))?;
    if !out.status.success() {
        bail!(
            "{} {} failed: {}",
            script.display(),
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
