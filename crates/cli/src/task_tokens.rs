//! The task token key of `serve`, `dev` and `gateway`: `--task-token-key-file PATH`
//! (`EXPRESSWAY_TASK_TOKEN_KEY_FILE`) or the key itself in `EXPRESSWAY_TASK_TOKEN_KEY`, at
//! least 32 bytes (trailing line breaks are ignored: `openssl rand -hex 32 > key`). Pods and
//! gateways must share it.

use anyhow::Context as _;
use expressway_wire::TaskTokenKey;
use std::path::PathBuf;

/// The environment variable holding the key itself.
pub const KEY_ENV: &str = "EXPRESSWAY_TASK_TOKEN_KEY";

/// Flags of the task token key.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct TaskTokenArgs {
    /// File holding the key that authenticates task tokens (at least 32 bytes; e.g. a mounted
    /// Secret). The key itself may instead be in EXPRESSWAY_TASK_TOKEN_KEY. Executor pods and
    /// gateways must share it; without one, `.waitForTaskToken` tasks and SendTask* calls are
    /// refused.
    #[arg(long, env = "EXPRESSWAY_TASK_TOKEN_KEY_FILE")]
    pub task_token_key_file: Option<PathBuf>,
}

impl TaskTokenArgs {
    /// The configured key, if any; an unreadable file, a short key or both sources set are
    /// errors.
    pub fn load(&self) -> anyhow::Result<Option<TaskTokenKey>> {
        let env = std::env::var_os(KEY_ENV).filter(|v| !v.is_empty());
        match (&self.task_token_key_file, env) {
            (Some(_), Some(_)) => {
                anyhow::bail!("both --task-token-key-file and {KEY_ENV} are set: use one")
            }
            (Some(path), None) => {
                let text = std::fs::read(path).with_context(|| {
                    format!("reading the task token key file {}", path.display())
                })?;
                TaskTokenKey::from_text(&text)
                    .map(Some)
                    .with_context(|| format!("the task token key file {}", path.display()))
            }
            (None, Some(v)) => {
                let bytes = v.into_encoded_bytes();
                TaskTokenKey::from_text(&bytes)
                    .map(Some)
                    .with_context(|| format!("the task token key in {KEY_ENV}"))
            }
            (None, None) => Ok(None),
        }
    }
}

/// A random key for this process (`expressway dev` without a configured key).
pub fn random_key() -> TaskTokenKey {
    let bytes: [u8; 32] = rand::random();
    match TaskTokenKey::new(bytes) {
        Ok(k) => k,
        Err(_) => unreachable!("32 bytes is the minimum"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_files() {
        let dir = std::env::temp_dir().join(format!("expressway-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let good = dir.join("good");
        std::fs::write(&good, "0123456789abcdef0123456789abcdef\n").expect("write");
        let short = dir.join("short");
        std::fs::write(&short, "too short\n").expect("write");
        if std::env::var_os(KEY_ENV).is_none() {
            let args = |p: &std::path::Path| TaskTokenArgs {
                task_token_key_file: Some(p.to_path_buf()),
            };
            assert!(args(&good).load().expect("loads").is_some());
            let e = args(&short).load().expect_err("short");
            assert!(format!("{e:#}").contains("at least 32"), "{e:#}");
            assert!(args(&dir.join("missing")).load().is_err());
            assert!(TaskTokenArgs::default().load().expect("none").is_none());
        }
        let _ = std::fs::remove_dir_all(&dir);
        assert_ne!(
            format!("{:?}", random_key().mint(&fields()).ok()),
            format!("{:?}", random_key().mint(&fields()).ok())
        );
    }

    fn fields() -> expressway_wire::TokenFields {
        expressway_wire::TokenFields {
            partition: 0,
            execution_arn: "a".into(),
            state_name: "s".into(),
            scope: String::new(),
            attempt: 0,
        }
    }
}
