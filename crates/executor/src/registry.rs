//! The state machine registry: definitions from a directory and from the compacted
//! definitions topic, resolved by name or ARN.

use dashmap::DashMap;
use expressway_asl::StateMachine;
use expressway_engine::{LogConfig, LogLevel};
use expressway_wire::MachineRef;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Why a definition could not be registered.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// A file or directory could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The definition does not load.
    #[error("invalid definition of '{name}': {message}")]
    InvalidDefinition {
        /// The machine name.
        name: String,
        /// Diagnostics.
        message: String,
    },
    /// A config file or definitions-topic record is malformed.
    #[error("invalid record for '{name}': {message}")]
    InvalidRecord {
        /// The machine name (or key).
        name: String,
        /// What is wrong.
        message: String,
    },
}

/// One runnable state machine.
#[derive(Debug)]
pub struct MachineEntry {
    /// The machine name.
    pub name: String,
    /// `arn:aws:states:<region>:<account>:stateMachine:<name>`.
    pub arn: String,
    /// The loaded definition.
    pub machine: StateMachine,
    /// Its logging configuration.
    pub log: LogConfig,
}

/// Name -> machine; cheap to share (`Arc<Registry>`), lock-free reads.
#[derive(Debug)]
pub struct Registry {
    region: String,
    account: String,
    machines: DashMap<String, Arc<MachineEntry>>,
    loaded: AtomicBool,
}

/// What a definitions-topic record did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// The machine was created or replaced.
    Upserted(String),
    /// A tombstone removed the machine.
    Removed(String),
}

impl Registry {
    /// An empty registry for machines in `region`/`account`.
    pub fn new(region: &str, account: &str) -> Registry {
        Registry {
            region: region.to_string(),
            account: account.to_string(),
            machines: DashMap::new(),
            loaded: AtomicBool::new(false),
        }
    }

    /// Whether the initial load (directory and definitions topic catch-up) finished.
    pub fn is_loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    /// Marks the initial load finished.
    pub fn set_loaded(&self) {
        self.loaded.store(true, Ordering::Release);
    }

    /// Number of registered machines.
    pub fn len(&self) -> usize {
        self.machines.len()
    }

    /// Whether no machine is registered.
    pub fn is_empty(&self) -> bool {
        self.machines.is_empty()
    }

    /// Names of all registered machines (sorted).
    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self.machines.iter().map(|e| e.key().clone()).collect();
        v.sort();
        v
    }

    /// Loads every `NAME.asl.json` (with optional `NAME.config.json`) of `dir`.
    /// Returns the loaded names; fails on the first invalid definition.
    pub fn load_dir(&self, dir: &Path) -> Result<Vec<String>, RegistryError> {
        let io = |path: &Path| {
            let path = path.to_path_buf();
            move |source| RegistryError::Io { path, source }
        };
        let mut names = Vec::new();
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(io(dir))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        for path in entries {
            let Some(file) = path.file_name().and_then(|f| f.to_str()) else {
                continue;
            };
            let Some(name) = file.strip_suffix(".asl.json") else {
                continue;
            };
            let definition = std::fs::read_to_string(&path).map_err(io(&path))?;
            let config_path = dir.join(format!("{name}.config.json"));
            let logging = match std::fs::read_to_string(&config_path) {
                Ok(text) => {
                    let v: Value =
                        serde_json::from_str(&text).map_err(|e| RegistryError::InvalidRecord {
                            name: name.to_string(),
                            message: format!("{}: {e}", config_path.display()),
                        })?;
                    v.get("loggingConfiguration").cloned()
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => return Err(io(&config_path)(e)),
            };
            self.insert(name, &definition, logging.as_ref())?;
            names.push(name.to_string());
        }
        Ok(names)
    }

    /// Registers (or replaces) machine `name`.
    pub fn insert(
        &self,
        name: &str,
        definition: &str,
        logging: Option<&Value>,
    ) -> Result<(), RegistryError> {
        if !expressway_wire::arn::valid_name(name) {
            return Err(RegistryError::InvalidRecord {
                name: name.to_string(),
                message: "invalid state machine name".into(),
            });
        }
        let machine =
            expressway_asl::load_str(definition).map_err(|e| RegistryError::InvalidDefinition {
                name: name.to_string(),
                message: e.to_string(),
            })?;
        let log = parse_logging(name, logging)?;
        let arn = format!(
            "arn:aws:states:{}:{}:stateMachine:{name}",
            self.region, self.account
        );
        self.machines.insert(
            name.to_string(),
            Arc::new(MachineEntry {
                name: name.to_string(),
                arn,
                machine,
                log,
            }),
        );
        Ok(())
    }

    /// Removes machine `name`; returns whether it existed.
    pub fn remove(&self, name: &str) -> bool {
        self.machines.remove(name).is_some()
    }

    /// Applies one record of the definitions topic: key = machine name, value =
    /// `{"definition": "<ASL JSON text>", "loggingConfiguration": {...}}` (the definition may
    /// also be a JSON object), `None` value = tombstone.
    pub fn apply_record(&self, key: &[u8], value: Option<&[u8]>) -> Result<Applied, RegistryError> {
        let name = std::str::from_utf8(key)
            .map_err(|_| RegistryError::InvalidRecord {
                name: String::from_utf8_lossy(key).into_owned(),
                message: "the key is not UTF-8".into(),
            })?
            .to_string();
        let Some(value) = value.filter(|v| !v.is_empty()) else {
            self.remove(&name);
            return Ok(Applied::Removed(name));
        };
        let bad = |message: String| RegistryError::InvalidRecord {
            name: name.clone(),
            message,
        };
        let v: Value =
            serde_json::from_slice(value).map_err(|e| bad(format!("value is not JSON: {e}")))?;
        let definition = match v.get("definition") {
            Some(Value::String(s)) => s.clone(),
            Some(obj @ Value::Object(_)) => obj.to_string(),
            _ => return Err(bad("'definition' (string) is required".into())),
        };
        self.insert(&name, &definition, v.get("loggingConfiguration"))?;
        Ok(Applied::Upserted(name))
    }

    /// Looks up a machine by reference (qualifiers are accepted and ignored: every machine has
    /// one version, `$LATEST`).
    pub fn resolve(&self, r: &MachineRef) -> Option<Arc<MachineEntry>> {
        self.get(&r.name)
    }

    /// Looks up a machine by name.
    pub fn get(&self, name: &str) -> Option<Arc<MachineEntry>> {
        self.machines.get(name).map(|e| e.value().clone())
    }
}

fn parse_logging(name: &str, logging: Option<&Value>) -> Result<LogConfig, RegistryError> {
    let Some(l) = logging else {
        return Ok(LogConfig {
            level: LogLevel::Off,
            include_execution_data: false,
        });
    };
    let bad = |message: &str| RegistryError::InvalidRecord {
        name: name.to_string(),
        message: message.to_string(),
    };
    let level = match l.get("level") {
        None => LogLevel::Off,
        Some(Value::String(s)) => LogLevel::parse(s)
            .ok_or_else(|| bad("loggingConfiguration.level: ALL|ERROR|FATAL|OFF"))?,
        Some(_) => return Err(bad("loggingConfiguration.level must be a string")),
    };
    let include_execution_data = match l.get("includeExecutionData") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => {
            return Err(bad(
                "loggingConfiguration.includeExecutionData must be a boolean",
            ))
        }
    };
    Ok(LogConfig {
        level,
        include_execution_data,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASS: &str = r#"{"StartAt":"P","States":{"P":{"Type":"Pass","End":true}}}"#;

    fn reg() -> Registry {
        Registry::new("us-east-1", "123456789012")
    }

    #[test]
    fn resolve_by_name_and_arn() {
        let r = reg();
        r.insert("hello", PASS, None).expect("valid");
        let by_name = expressway_wire::parse_state_machine_ref("hello").expect("ref");
        let by_arn = expressway_wire::parse_state_machine_ref(
            "arn:aws:states:us-east-1:123456789012:stateMachine:hello:live",
        )
        .expect("ref");
        assert_eq!(r.resolve(&by_name).expect("found").name, "hello");
        assert_eq!(
            r.resolve(&by_arn).expect("found").arn,
            "arn:aws:states:us-east-1:123456789012:stateMachine:hello"
        );
        let missing = expressway_wire::parse_state_machine_ref("nope").expect("ref");
        assert!(r.resolve(&missing).is_none());
    }

    #[test]
    fn topic_records_upsert_and_tombstone() {
        let r = reg();
        let value = serde_json::json!({
            "definition": PASS,
            "loggingConfiguration": {"level": "ALL", "includeExecutionData": true}
        })
        .to_string();
        assert_eq!(
            r.apply_record(b"m1", Some(value.as_bytes())).expect("ok"),
            Applied::Upserted("m1".into())
        );
        let e = r.get("m1").expect("present");
        assert_eq!(e.log.level, LogLevel::All);
        assert!(e.log.include_execution_data);
        assert_eq!(
            r.apply_record(b"m1", None).expect("ok"),
            Applied::Removed("m1".into())
        );
        assert!(r.get("m1").is_none());
        assert!(r.apply_record(b"m2", Some(b"{}")).is_err());
        assert!(r
            .apply_record(b"m2", Some(br#"{"definition":"{"}"#))
            .is_err());
    }

    #[test]
    fn loads_a_directory_with_config() {
        let dir = std::env::temp_dir().join(format!("expressway-reg-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("mkdir");
        std::fs::write(dir.join("a.asl.json"), PASS).expect("write");
        std::fs::write(
            dir.join("a.config.json"),
            r#"{"loggingConfiguration":{"level":"ERROR"}}"#,
        )
        .expect("write");
        std::fs::write(dir.join("b.asl.json"), PASS).expect("write");
        std::fs::write(dir.join("README.md"), "x").expect("write");
        let r = reg();
        let names = r.load_dir(&dir).expect("loads");
        assert_eq!(names, vec!["a".to_string(), "b".to_string()]);
        assert_eq!(r.get("a").expect("a").log.level, LogLevel::Error);
        assert_eq!(r.get("b").expect("b").log.level, LogLevel::Off);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
