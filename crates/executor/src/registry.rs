//! The state machine registry: definitions from a directory and from the compacted
//! definitions topic, resolved by name or ARN (with a `:version` or `:alias` qualifier).
//!
//! Definitions-topic records (compacted; a tombstone deletes):
//! * key `NAME`: the machine (`$LATEST`): `{"definition", "loggingConfiguration"?, ...}`; the
//!   gateway adds `type`, `roleArn`, `creationDate`, `revisionId`, `description`, `tags`,
//!   `nextVersion` (readers ignore fields they do not know);
//! * key `NAME:N` (N a positive integer): published version N, same value shape;
//! * key `NAME:ALIAS`: an alias, `{"routingConfiguration":[{"stateMachineVersionArn","weight"}],
//!   "description"?, "creationDate"?, "updateDate"?}`.
//!
//! Readers older than versions/aliases reject the `NAME:QUALIFIER` keys as invalid names and
//! ignore them, so the format is backward compatible.

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

/// One runnable state machine (the latest revision, or a published version).
#[derive(Debug)]
pub struct MachineEntry {
    /// The machine name.
    pub name: String,
    /// `arn:aws:states:<region>:<account>:stateMachine:<name>` (unqualified, also for versions:
    /// executions report the machine's ARN).
    pub arn: String,
    /// The loaded definition.
    pub machine: StateMachine,
    /// Its logging configuration.
    pub log: LogConfig,
    /// The definition text as registered.
    pub definition: String,
    /// The published version number (`None`: the latest revision).
    pub version: Option<u64>,
    /// The whole record value (metadata such as `type`, `roleArn`, `creationDate`, `tags`);
    /// `{}` for directory definitions.
    pub record: Value,
}

/// An alias: weighted routing to one or two published versions.
#[derive(Debug, Clone, PartialEq)]
pub struct AliasEntry {
    /// The machine name.
    pub machine: String,
    /// The alias name.
    pub name: String,
    /// `(version, weight)` pairs; weights sum to 100.
    pub routes: Vec<(u64, u32)>,
    /// The whole record value.
    pub record: Value,
}

/// Name -> machine; cheap to share (`Arc<Registry>`), lock-free reads.
#[derive(Debug)]
pub struct Registry {
    region: String,
    account: String,
    machines: DashMap<String, Arc<MachineEntry>>,
    versions: DashMap<(String, u64), Arc<MachineEntry>>,
    aliases: DashMap<(String, String), Arc<AliasEntry>>,
    /// Weyl sequence for weighted alias routing (exact proportions over every 100 picks).
    route_counter: std::sync::atomic::AtomicU64,
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
            versions: DashMap::new(),
            aliases: DashMap::new(),
            route_counter: std::sync::atomic::AtomicU64::new(0),
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
        let record = match logging {
            Some(l) => serde_json::json!({ "loggingConfiguration": l }),
            None => serde_json::json!({}),
        };
        let entry = self.build(name, None, definition, record)?;
        self.machines.insert(name.to_string(), Arc::new(entry));
        Ok(())
    }

    /// `arn:aws:states:<region>:<account>:stateMachine:<name>`.
    pub fn machine_arn(&self, name: &str) -> String {
        format!(
            "arn:aws:states:{}:{}:stateMachine:{name}",
            self.region, self.account
        )
    }

    /// The region in ARNs.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// The account in ARNs.
    pub fn account(&self) -> &str {
        &self.account
    }

    fn build(
        &self,
        name: &str,
        version: Option<u64>,
        definition: &str,
        record: Value,
    ) -> Result<MachineEntry, RegistryError> {
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
        let log = parse_logging(name, record.get("loggingConfiguration"))?;
        Ok(MachineEntry {
            name: name.to_string(),
            arn: self.machine_arn(name),
            machine,
            log,
            definition: definition.to_string(),
            version,
            record,
        })
    }

    /// Removes machine `name` (not its versions or aliases); returns whether it existed.
    pub fn remove(&self, name: &str) -> bool {
        self.machines.remove(name).is_some()
    }

    /// Version `version` of machine `name`.
    pub fn version(&self, name: &str, version: u64) -> Option<Arc<MachineEntry>> {
        self.versions
            .get(&(name.to_string(), version))
            .map(|e| e.value().clone())
    }

    /// The published versions of machine `name`, newest first.
    pub fn versions_of(&self, name: &str) -> Vec<Arc<MachineEntry>> {
        let mut v: Vec<Arc<MachineEntry>> = self
            .versions
            .iter()
            .filter(|e| e.key().0 == name)
            .map(|e| e.value().clone())
            .collect();
        v.sort_by_key(|e| std::cmp::Reverse(e.version));
        v
    }

    /// Alias `alias` of machine `name`.
    pub fn alias(&self, name: &str, alias: &str) -> Option<Arc<AliasEntry>> {
        self.aliases
            .get(&(name.to_string(), alias.to_string()))
            .map(|e| e.value().clone())
    }

    /// The aliases of machine `name`, sorted by name.
    pub fn aliases_of(&self, name: &str) -> Vec<Arc<AliasEntry>> {
        let mut v: Vec<Arc<AliasEntry>> = self
            .aliases
            .iter()
            .filter(|e| e.key().0 == name)
            .map(|e| e.value().clone())
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    fn has_versions_or_aliases(&self, name: &str) -> bool {
        self.versions.iter().any(|e| e.key().0 == name)
            || self.aliases.iter().any(|e| e.key().0 == name)
    }

    /// Picks a version of an alias by its routing weights (exact proportions over every 100
    /// picks).
    pub fn pick_route(&self, alias: &AliasEntry) -> Option<u64> {
        let n = self.route_counter.fetch_add(1, Ordering::Relaxed);
        // 61 is coprime with 100: every 100 consecutive picks cover 0..100 once.
        let mut point = ((n.wrapping_mul(61)) % 100) as u32;
        for (version, weight) in &alias.routes {
            if point < *weight {
                return Some(*version);
            }
            point -= weight;
        }
        alias.routes.last().map(|(v, _)| *v)
    }

    /// Applies one record of the definitions topic: key = machine name, value =
    /// `{"definition": "<ASL JSON text>", "loggingConfiguration": {...}}` (the definition may
    /// also be a JSON object), `None` value = tombstone; keys `NAME:N` are versions and
    /// `NAME:ALIAS` aliases (see the module documentation).
    pub fn apply_record(&self, key: &[u8], value: Option<&[u8]>) -> Result<Applied, RegistryError> {
        let key = std::str::from_utf8(key)
            .map_err(|_| RegistryError::InvalidRecord {
                name: String::from_utf8_lossy(key).into_owned(),
                message: "the key is not UTF-8".into(),
            })?
            .to_string();
        if let Some((name, qualifier)) = key.split_once(':') {
            return self.apply_qualified(&key, name, qualifier, value);
        }
        let name = key;
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
        let entry = self.build(&name, None, &definition, v)?;
        self.machines.insert(name.clone(), Arc::new(entry));
        Ok(Applied::Upserted(name))
    }

    fn apply_qualified(
        &self,
        key: &str,
        name: &str,
        qualifier: &str,
        value: Option<&[u8]>,
    ) -> Result<Applied, RegistryError> {
        let bad = |message: String| RegistryError::InvalidRecord {
            name: key.to_string(),
            message,
        };
        if !expressway_wire::arn::valid_name(name) || !expressway_wire::arn::valid_name(qualifier) {
            return Err(bad("invalid NAME:QUALIFIER key".into()));
        }
        let version = parse_version(qualifier);
        let Some(value) = value.filter(|v| !v.is_empty()) else {
            match version {
                Some(n) => {
                    self.versions.remove(&(name.to_string(), n));
                }
                None => {
                    self.aliases
                        .remove(&(name.to_string(), qualifier.to_string()));
                }
            }
            return Ok(Applied::Removed(key.to_string()));
        };
        let v: Value =
            serde_json::from_slice(value).map_err(|e| bad(format!("value is not JSON: {e}")))?;
        match version {
            Some(n) => {
                let definition = match v.get("definition") {
                    Some(Value::String(s)) => s.clone(),
                    Some(obj @ Value::Object(_)) => obj.to_string(),
                    _ => return Err(bad("'definition' (string) is required".into())),
                };
                let entry = self.build(name, Some(n), &definition, v)?;
                self.versions.insert((name.to_string(), n), Arc::new(entry));
            }
            None => {
                let routes = parse_routes(&v).map_err(bad)?;
                self.aliases.insert(
                    (name.to_string(), qualifier.to_string()),
                    Arc::new(AliasEntry {
                        machine: name.to_string(),
                        name: qualifier.to_string(),
                        routes,
                        record: v,
                    }),
                );
            }
        }
        Ok(Applied::Upserted(key.to_string()))
    }

    /// Looks up a machine by reference: no qualifier = the latest revision, `:N` = version N,
    /// `:ALIAS` = a version picked by the alias's routing weights. A machine that has neither
    /// versions nor aliases (e.g. one from a definitions directory) accepts any qualifier as
    /// its latest revision, as before versions existed.
    pub fn resolve(&self, r: &MachineRef) -> Option<Arc<MachineEntry>> {
        match r.qualifier.as_deref() {
            None => self.get(&r.name),
            Some(_) if !self.has_versions_or_aliases(&r.name) => self.get(&r.name),
            Some(q) => match parse_version(q) {
                Some(n) => self.version(&r.name, n),
                None => {
                    let alias = self.alias(&r.name, q)?;
                    let n = self.pick_route(&alias)?;
                    self.version(&r.name, n)
                }
            },
        }
    }

    /// Looks up a machine by name.
    pub fn get(&self, name: &str) -> Option<Arc<MachineEntry>> {
        self.machines.get(name).map(|e| e.value().clone())
    }
}

/// A version qualifier: a positive integer without sign or leading zeros.
pub fn parse_version(qualifier: &str) -> Option<u64> {
    if qualifier.is_empty()
        || qualifier.starts_with('0')
        || !qualifier.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    qualifier.parse().ok()
}

/// The version number at the end of a version ARN (`...:stateMachine:NAME:N`).
fn version_of_arn(arn: &str) -> Option<u64> {
    parse_version(arn.rsplit(':').next()?)
}

fn parse_routes(v: &Value) -> Result<Vec<(u64, u32)>, String> {
    let list = v
        .get("routingConfiguration")
        .and_then(Value::as_array)
        .ok_or("'routingConfiguration' (array) is required")?;
    let mut routes = Vec::with_capacity(list.len());
    for item in list {
        let version = item
            .get("stateMachineVersionArn")
            .and_then(Value::as_str)
            .and_then(version_of_arn)
            .ok_or("routingConfiguration[].stateMachineVersionArn must be a version ARN")?;
        let weight = item
            .get("weight")
            .and_then(Value::as_u64)
            .filter(|w| *w <= 100)
            .ok_or("routingConfiguration[].weight must be 0..=100")?;
        routes.push((version, weight as u32));
    }
    if routes.is_empty() || routes.iter().map(|(_, w)| w).sum::<u32>() != 100 {
        return Err("routing weights must sum to 100".into());
    }
    Ok(routes)
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
    fn versions_and_weighted_aliases() {
        let r = reg();
        let v = |def: &str| serde_json::json!({ "definition": def }).to_string();
        let other = r#"{"StartAt":"Q","States":{"Q":{"Type":"Pass","End":true}}}"#;
        r.apply_record(b"m", Some(v(PASS).as_bytes()))
            .expect("machine");
        r.apply_record(b"m:1", Some(v(PASS).as_bytes()))
            .expect("v1");
        r.apply_record(b"m:2", Some(v(other).as_bytes()))
            .expect("v2");
        let alias = serde_json::json!({"routingConfiguration": [
            {"stateMachineVersionArn": "arn:aws:states:us-east-1:123456789012:stateMachine:m:1", "weight": 30},
            {"stateMachineVersionArn": "arn:aws:states:us-east-1:123456789012:stateMachine:m:2", "weight": 70},
        ]})
        .to_string();
        r.apply_record(b"m:live", Some(alias.as_bytes()))
            .expect("alias");
        assert_eq!(r.versions_of("m").len(), 2);
        let live = expressway_wire::parse_state_machine_ref(
            "arn:aws:states:us-east-1:123456789012:stateMachine:m:live",
        )
        .expect("ref");
        let mut counts = [0u32; 3];
        for _ in 0..200 {
            let e = r.resolve(&live).expect("routes");
            counts[e.version.expect("a version") as usize] += 1;
        }
        assert_eq!(counts, [0, 60, 140]);
        let v2 =
            expressway_wire::parse_state_machine_ref("arn:aws:states:us-east-1:1:stateMachine:m:2")
                .expect("ref");
        assert_eq!(r.resolve(&v2).expect("v2").definition, other);
        r.apply_record(b"m:2", None).expect("tombstone");
        assert!(r.resolve(&v2).is_none());
        r.apply_record(b"m:live", None).expect("tombstone");
        assert!(r.resolve(&live).is_none());
        assert!(r.apply_record(b"m:bad", Some(b"{}")).is_err());
        assert_eq!(parse_version("01"), None);
        assert_eq!(parse_version("12"), Some(12));
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
