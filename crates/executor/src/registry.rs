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
//!
//! Two layers, one rule (ARCHITECTURE.md, "One registry"): machines of the definitions
//! directory ([`Source::Files`], read-only through the API) shadow every definitions-topic
//! record of the same name (the machine, its versions and aliases) for as long as the file
//! exists; a name without a file is the topic's. A reference that is an ARN must name this
//! registry's partition, region and account, or it names no machine here.

use dashmap::DashMap;
use expressway_asl::StateMachine;
use expressway_engine::{LogConfig, LogLevel};
use expressway_wire::{ArnScope, MachineRef};
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
    /// `{"loggingConfiguration"}` (or `{}`) for directory definitions.
    pub record: Value,
    /// Where the definition comes from.
    pub source: Source,
}

/// Where a machine is defined.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A `NAME.asl.json` file of the definitions directory (`--definitions DIR`, the Helm
    /// chart's `definitions:`/`definitionFiles:` values): read-only through the API, no
    /// versions or aliases.
    Files {
        /// The file name (`NAME.asl.json`).
        file: String,
    },
    /// A record of the definitions topic (created through the gateway or produced directly).
    Topic,
}

/// Why a reference resolves to no machine.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LookupError {
    /// The ARN names another partition, region or account than this registry's.
    #[error("state machine ARN '{arn}' names {what}, but this deployment runs the machines of {expected}")]
    Foreign {
        /// The reference as given.
        arn: String,
        /// What differs (`region eu-west-1`, `account 999999999999`, ...).
        what: String,
        /// `partition aws, region us-east-1, account 123456789012`.
        expected: String,
    },
    /// A `:version` or `:alias` of a machine defined by a file (files have neither).
    #[error("state machine '{name}' is defined by the definitions file {file}, which has no versions or aliases (qualifier '{qualifier}')")]
    FileQualifier {
        /// The machine name.
        name: String,
        /// The qualifier given.
        qualifier: String,
        /// The file.
        file: String,
    },
    /// No machine (or version, or alias) of that name.
    #[error("unknown state machine '{0}'")]
    NotFound(String),
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
    /// Machines of the definitions directory; they shadow the topic's of the same name.
    files: DashMap<String, Arc<MachineEntry>>,
    /// Machines of the definitions topic.
    machines: DashMap<String, Arc<MachineEntry>>,
    versions: DashMap<(String, u64), Arc<MachineEntry>>,
    aliases: DashMap<(String, String), Arc<AliasEntry>>,
    /// Weyl sequence for weighted alias routing (exact proportions over every 100 picks).
    route_counter: std::sync::atomic::AtomicU64,
    loaded: AtomicBool,
    /// Per definitions-topic partition, the next offset the follower reads (past transaction
    /// markers too): a writer that must see every earlier write waits for it (see
    /// [`Registry::followed`]).
    followed: DashMap<i32, i64>,
}

/// What a definitions-topic record did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// The machine was created or replaced.
    Upserted(String),
    /// A tombstone removed the machine.
    Removed(String),
    /// The record was stored, but a definitions-directory machine of the same name shadows it
    /// (the file's definition keeps running).
    Shadowed(String),
}

/// The partition of a region's ARNs (`aws-cn` for `cn-*`, `aws-us-gov` for `us-gov-*`).
pub fn partition_of(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else if region.starts_with("us-gov-") {
        "aws-us-gov"
    } else {
        "aws"
    }
}

impl Registry {
    /// An empty registry for machines in `region`/`account`.
    pub fn new(region: &str, account: &str) -> Registry {
        Registry {
            region: region.to_string(),
            account: account.to_string(),
            files: DashMap::new(),
            machines: DashMap::new(),
            versions: DashMap::new(),
            aliases: DashMap::new(),
            route_counter: std::sync::atomic::AtomicU64::new(0),
            loaded: AtomicBool::new(false),
            followed: DashMap::new(),
        }
    }

    /// Records that the definitions follower will next read `offset` of `partition` (every
    /// record below it is applied).
    pub fn note_followed(&self, partition: i32, offset: i64) {
        let mut e = self.followed.entry(partition).or_insert(offset);
        if *e < offset {
            *e = offset;
        }
    }

    /// The next offset the definitions follower reads on `partition`, if it follows it.
    pub fn followed(&self, partition: i32) -> Option<i64> {
        self.followed.get(&partition).map(|e| *e)
    }

    /// Whether the initial load (directory and definitions topic catch-up) finished.
    pub fn is_loaded(&self) -> bool {
        self.loaded.load(Ordering::Acquire)
    }

    /// Marks the initial load finished.
    pub fn set_loaded(&self) {
        self.loaded.store(true, Ordering::Release);
    }

    /// Number of registered machines (a file machine and a topic record of the same name
    /// count once).
    pub fn len(&self) -> usize {
        self.names().len()
    }

    /// Whether no machine is registered.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty() && self.machines.is_empty()
    }

    /// Names of all registered machines (sorted, each once).
    pub fn names(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .files
            .iter()
            .map(|e| e.key().clone())
            .chain(self.machines.iter().map(|e| e.key().clone()))
            .collect();
        v.sort();
        v.dedup();
        v
    }

    /// The file that defines machine `name`, if a definitions-directory file does.
    pub fn file_of(&self, name: &str) -> Option<String> {
        self.files.get(name).and_then(|e| match &e.source {
            Source::Files { file } => Some(file.clone()),
            Source::Topic => None,
        })
    }

    /// Whether a definitions-topic machine record of `name` is hidden by a file machine.
    pub fn is_shadowed(&self, name: &str) -> bool {
        self.files.contains_key(name) && self.machines.contains_key(name)
    }

    /// How many definitions-topic machine records are hidden by file machines.
    pub fn shadowed_count(&self) -> usize {
        self.files
            .iter()
            .filter(|e| self.machines.contains_key(e.key()))
            .count()
    }

    /// Loads every `NAME.asl.json` (with optional `NAME.config.json`) of `dir` as file machines
    /// (see the module documentation for how they relate to the topic's).
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
            self.insert_file(name, file, &definition, logging.as_ref())?;
            names.push(name.to_string());
        }
        Ok(names)
    }

    /// Registers (or replaces) machine `name` as a definitions-directory machine
    /// (file `NAME.asl.json`).
    pub fn insert(
        &self,
        name: &str,
        definition: &str,
        logging: Option<&Value>,
    ) -> Result<(), RegistryError> {
        self.insert_file(name, &format!("{name}.asl.json"), definition, logging)
    }

    fn insert_file(
        &self,
        name: &str,
        file: &str,
        definition: &str,
        logging: Option<&Value>,
    ) -> Result<(), RegistryError> {
        let record = match logging {
            Some(l) => serde_json::json!({ "loggingConfiguration": l }),
            None => serde_json::json!({}),
        };
        let source = Source::Files {
            file: file.to_string(),
        };
        let entry = self.build(name, None, definition, record, source)?;
        if self.machines.contains_key(name) {
            tracing::warn!(machine = %name, file = %file, "the definitions file shadows a definitions-topic machine of the same name");
        }
        self.files.insert(name.to_string(), Arc::new(entry));
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

    /// The partition in ARNs (derived from the region).
    pub fn partition(&self) -> &'static str {
        partition_of(&self.region)
    }

    /// `Err(LookupError::Foreign)` when `scope` (of `arn`) is not this registry's partition,
    /// region and account.
    pub fn check_scope(&self, arn: &str, scope: &ArnScope) -> Result<(), LookupError> {
        let mut what = Vec::new();
        if scope.partition != self.partition() {
            what.push(format!("partition '{}'", scope.partition));
        }
        if scope.region != self.region {
            what.push(format!("region '{}'", scope.region));
        }
        if scope.account != self.account {
            what.push(format!("account '{}'", scope.account));
        }
        if what.is_empty() {
            return Ok(());
        }
        Err(LookupError::Foreign {
            arn: arn.to_string(),
            what: what.join(" and "),
            expected: format!(
                "partition '{}', region '{}', account '{}'",
                self.partition(),
                self.region,
                self.account
            ),
        })
    }

    fn build(
        &self,
        name: &str,
        version: Option<u64>,
        definition: &str,
        record: Value,
        source: Source,
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
            source,
        })
    }

    /// Removes the definitions-topic machine `name` (not its versions or aliases, nor a file
    /// machine of that name); returns whether it existed.
    pub fn remove(&self, name: &str) -> bool {
        self.machines.remove(name).is_some()
    }

    /// Version `version` of machine `name` (none for a file machine).
    pub fn version(&self, name: &str, version: u64) -> Option<Arc<MachineEntry>> {
        if self.files.contains_key(name) {
            return None;
        }
        self.versions
            .get(&(name.to_string(), version))
            .map(|e| e.value().clone())
    }

    /// The published versions of machine `name`, newest first (none for a file machine).
    pub fn versions_of(&self, name: &str) -> Vec<Arc<MachineEntry>> {
        if self.files.contains_key(name) {
            return Vec::new();
        }
        let mut v: Vec<Arc<MachineEntry>> = self
            .versions
            .iter()
            .filter(|e| e.key().0 == name)
            .map(|e| e.value().clone())
            .collect();
        v.sort_by_key(|e| std::cmp::Reverse(e.version));
        v
    }

    /// Alias `alias` of machine `name` (none for a file machine).
    pub fn alias(&self, name: &str, alias: &str) -> Option<Arc<AliasEntry>> {
        if self.files.contains_key(name) {
            return None;
        }
        self.aliases
            .get(&(name.to_string(), alias.to_string()))
            .map(|e| e.value().clone())
    }

    /// The aliases of machine `name`, sorted by name (none for a file machine).
    pub fn aliases_of(&self, name: &str) -> Vec<Arc<AliasEntry>> {
        if self.files.contains_key(name) {
            return Vec::new();
        }
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
        let entry = self.build(&name, None, &definition, v, Source::Topic)?;
        self.machines.insert(name.clone(), Arc::new(entry));
        if self.files.contains_key(&name) {
            return Ok(Applied::Shadowed(name));
        }
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
                let entry = self.build(name, Some(n), &definition, v, Source::Topic)?;
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
        if self.files.contains_key(name) {
            return Ok(Applied::Shadowed(key.to_string()));
        }
        Ok(Applied::Upserted(key.to_string()))
    }

    /// Looks up a machine by reference: an ARN must name this registry's partition, region
    /// and account; no qualifier = the latest revision, `:N` = version N, `:ALIAS` = a version
    /// picked by the alias's routing weights. A file machine has no versions or aliases, so a
    /// qualifier of one is an error. A topic machine that has neither versions nor aliases
    /// accepts any qualifier as its latest revision, as before versions existed.
    pub fn lookup(&self, r: &MachineRef) -> Result<Arc<MachineEntry>, LookupError> {
        let text = || match &r.qualifier {
            Some(q) => format!("{}:{q}", r.name),
            None => r.name.clone(),
        };
        if let Some(scope) = &r.scope {
            let arn = match &r.qualifier {
                Some(q) => format!(
                    "arn:{}:states:{}:{}:stateMachine:{}:{q}",
                    scope.partition, scope.region, scope.account, r.name
                ),
                None => format!(
                    "arn:{}:states:{}:{}:stateMachine:{}",
                    scope.partition, scope.region, scope.account, r.name
                ),
            };
            self.check_scope(&arn, scope)?;
        }
        if let Some(file) = self.files.get(&r.name) {
            return match &r.qualifier {
                None => Ok(file.value().clone()),
                Some(q) => Err(LookupError::FileQualifier {
                    name: r.name.clone(),
                    qualifier: q.clone(),
                    file: self.file_of(&r.name).unwrap_or_default(),
                }),
            };
        }
        let found = match r.qualifier.as_deref() {
            None => self.get(&r.name),
            Some(_) if !self.has_versions_or_aliases(&r.name) => self.get(&r.name),
            Some(q) => match parse_version(q) {
                Some(n) => self.version(&r.name, n),
                None => self
                    .alias(&r.name, q)
                    .and_then(|alias| self.pick_route(&alias))
                    .and_then(|n| self.version(&r.name, n)),
            },
        };
        found.ok_or_else(|| LookupError::NotFound(text()))
    }

    /// [`Registry::lookup`], without the reason.
    pub fn resolve(&self, r: &MachineRef) -> Option<Arc<MachineEntry>> {
        self.lookup(r).ok()
    }

    /// Looks up a machine by name: the file machine of that name, else the topic's.
    pub fn get(&self, name: &str) -> Option<Arc<MachineEntry>> {
        self.files
            .get(name)
            .or_else(|| self.machines.get(name))
            .map(|e| e.value().clone())
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

    fn by(text: &str) -> MachineRef {
        expressway_wire::parse_state_machine_ref(text).expect("a reference")
    }

    fn topic_record(def: &str) -> String {
        serde_json::json!({ "definition": def }).to_string()
    }

    #[test]
    fn resolve_by_name_and_arn() {
        let r = reg();
        r.insert("hello", PASS, None).expect("valid");
        assert_eq!(r.resolve(&by("hello")).expect("found").name, "hello");
        assert_eq!(
            r.resolve(&by(
                "arn:aws:states:us-east-1:123456789012:stateMachine:hello"
            ))
            .expect("found")
            .arn,
            "arn:aws:states:us-east-1:123456789012:stateMachine:hello"
        );
        assert_eq!(
            r.lookup(&by("nope")).expect_err("missing"),
            LookupError::NotFound("nope".into())
        );
    }

    #[test]
    fn an_arn_of_another_region_account_or_partition_names_no_machine() {
        let r = reg();
        r.insert("hello", PASS, None).expect("valid");
        r.apply_record(b"api", Some(topic_record(PASS).as_bytes()))
            .expect("topic machine");
        for (arn, what) in [
            (
                "arn:aws:states:eu-west-1:123456789012:stateMachine:hello",
                "region 'eu-west-1'",
            ),
            (
                "arn:aws:states:us-east-1:999999999999:stateMachine:api",
                "account '999999999999'",
            ),
            (
                "arn:aws-cn:states:us-east-1:123456789012:stateMachine:hello",
                "partition 'aws-cn'",
            ),
            (
                "arn:aws:states:eu-west-1:999999999999:stateMachine:api:1",
                "region 'eu-west-1' and account '999999999999'",
            ),
        ] {
            match r.lookup(&by(arn)) {
                Err(LookupError::Foreign {
                    arn: got,
                    what: w,
                    expected,
                }) => {
                    assert_eq!(got, arn);
                    assert_eq!(w, what, "{arn}");
                    assert_eq!(
                        expected,
                        "partition 'aws', region 'us-east-1', account '123456789012'"
                    );
                }
                other => panic!("{arn}: {other:?}"),
            }
        }
        // The configured scope is what counts, not the default one.
        let eu = Registry::new("eu-west-1", "999999999999");
        eu.insert("hello", PASS, None).expect("valid");
        assert!(eu
            .resolve(&by(
                "arn:aws:states:eu-west-1:999999999999:stateMachine:hello"
            ))
            .is_some());
        assert!(eu
            .resolve(&by(
                "arn:aws:states:us-east-1:123456789012:stateMachine:hello"
            ))
            .is_none());
        assert_eq!(partition_of("cn-north-1"), "aws-cn");
        assert_eq!(partition_of("us-gov-west-1"), "aws-us-gov");
    }

    #[test]
    fn a_file_machine_shadows_the_topic_machine_of_the_same_name() {
        let other = r#"{"StartAt":"Q","States":{"Q":{"Type":"Pass","End":true}}}"#;
        for file_first in [true, false] {
            let r = reg();
            let apply = || {
                r.apply_record(b"hello", Some(topic_record(other).as_bytes()))
                    .expect("record")
            };
            let applied = if file_first {
                r.insert("hello", PASS, None).expect("file");
                apply()
            } else {
                let a = apply();
                r.insert("hello", PASS, None).expect("file");
                a
            };
            assert_eq!(
                applied,
                if file_first {
                    Applied::Shadowed("hello".into())
                } else {
                    Applied::Upserted("hello".into())
                }
            );
            let e = r.get("hello").expect("present");
            assert_eq!(
                e.definition, PASS,
                "the file wins (file first: {file_first})"
            );
            assert_eq!(
                e.source,
                Source::Files {
                    file: "hello.asl.json".into()
                }
            );
            assert!(r.is_shadowed("hello"));
            assert_eq!(r.names(), vec!["hello".to_string()]);
            assert_eq!(r.len(), 1);
            // The topic's versions and aliases of the name are shadowed too.
            r.apply_record(b"hello:1", Some(topic_record(other).as_bytes()))
                .expect("version");
            assert!(r.versions_of("hello").is_empty());
            assert!(r.version("hello", 1).is_none());
            // A tombstone removes the topic's record, never the file machine.
            assert_eq!(
                r.apply_record(b"hello", None).expect("tombstone"),
                Applied::Removed("hello".into())
            );
            assert_eq!(r.get("hello").expect("still there").definition, PASS);
            assert!(!r.is_shadowed("hello"));
        }
    }

    #[test]
    fn qualifiers_of_file_machines_are_refused_topic_machines_keep_the_old_rule() {
        let r = reg();
        r.insert("hello", PASS, None).expect("file");
        r.apply_record(b"api", Some(topic_record(PASS).as_bytes()))
            .expect("topic");
        match r.lookup(&by(
            "arn:aws:states:us-east-1:123456789012:stateMachine:hello:live",
        )) {
            Err(e @ LookupError::FileQualifier { .. }) => assert_eq!(
                e.to_string(),
                "state machine 'hello' is defined by the definitions file hello.asl.json, which has no versions or aliases (qualifier 'live')"
            ),
            other => panic!("{other:?}"),
        }
        // A topic machine without versions or aliases runs its latest revision for any
        // qualifier (start events from before versions existed).
        assert_eq!(
            r.resolve(&by(
                "arn:aws:states:us-east-1:123456789012:stateMachine:api:live"
            ))
            .expect("latest")
            .source,
            Source::Topic
        );
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
        let live = by("arn:aws:states:us-east-1:123456789012:stateMachine:m:live");
        let mut counts = [0u32; 3];
        for _ in 0..200 {
            let e = r.resolve(&live).expect("routes");
            counts[e.version.expect("a version") as usize] += 1;
        }
        assert_eq!(counts, [0, 60, 140]);
        let v2 = by("arn:aws:states:us-east-1:123456789012:stateMachine:m:2");
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
