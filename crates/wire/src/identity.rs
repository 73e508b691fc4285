//! Deterministic execution identity.
//!
//! The execution's uuid is a name-based (SHA-1, version 5 layout) UUID of
//! `topic/partition/offset` in a fixed Expressway namespace, so a redelivered start event
//! gets the same execution ARN and duplicates are recognisable downstream.

use sha1::{Digest, Sha1};

/// Namespace of execution uuids (a fixed random UUID; never change it).
const NAMESPACE: [u8; 16] = [
    0x6f, 0x1c, 0x3a, 0x52, 0x8e, 0x0b, 0x4d, 0x7a, 0x9b, 0x21, 0x5e, 0x44, 0xc0, 0x17, 0xa8, 0x3d,
];

/// Name and ARN of one execution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExecutionIdentity {
    /// The execution name (explicit, or `<topic>-<partition>-<offset>`).
    pub name: String,
    /// `arn:aws:states:<region>:<account>:express:<machine>:<name>:<uuid>`.
    pub arn: String,
    /// The uuid inside the ARN.
    pub uuid: uuid::Uuid,
}

/// The uuid derived from a record's position.
pub fn source_uuid(topic: &str, partition: i32, offset: i64) -> uuid::Uuid {
    let mut h = Sha1::new();
    h.update(NAMESPACE);
    h.update(format!("{topic}/{partition}/{offset}").as_bytes());
    let digest = h.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_sha1_bytes(bytes).into_uuid()
}

/// The default execution name of a record: `<topic>-<partition>-<offset>`.
pub fn default_name(topic: &str, partition: i32, offset: i64) -> String {
    format!("{topic}-{partition}-{offset}")
}

/// The identity of the execution started by the record at (topic, partition, offset).
pub fn execution_identity(
    region: &str,
    account: &str,
    machine: &str,
    name: Option<&str>,
    topic: &str,
    partition: i32,
    offset: i64,
) -> ExecutionIdentity {
    let name = name.map_or_else(|| default_name(topic, partition, offset), str::to_string);
    let uuid = source_uuid(topic, partition, offset);
    let arn = format!("arn:aws:states:{region}:{account}:express:{machine}:{name}:{uuid}");
    ExecutionIdentity { name, arn, uuid }
}

/// Namespace of nested (`startExecution.sync` / `.sync:2`) child uuids, apart from
/// [`NAMESPACE`] so a child can never share a uuid with a start event's execution.
const NESTED_NAMESPACE: [u8; 16] = [
    0x2b, 0x9e, 0x61, 0x0d, 0xc4, 0x73, 0x4f, 0x18, 0xa6, 0x5c, 0x3e, 0x97, 0x0a, 0xd2, 0x41, 0x8f,
];

/// What a `.sync` child execution is derived from: the task attempt that starts it.
#[derive(Debug, Clone, Copy)]
pub struct NestedOrigin<'a> {
    /// The parent execution's ARN.
    pub parent_arn: &'a str,
    /// The Task state's name.
    pub state_name: &'a str,
    /// The task attempt (0, then 1, 2, ... for retries).
    pub attempt: u32,
    /// Where the state runs among Parallel branches and Map items (the engine's
    /// `TaskRequest::scope`, `""` at the top level): tells apart the children one state starts in
    /// different Map iterations (same state, same attempt, different items).
    pub scope: &'a str,
}

/// The identity of a child execution run in the parent's pod (`startExecution.sync`,
/// `.sync:2`): the uuid is a name-based (SHA-1, v5 layout) uuid of the origin, so a re-run of the
/// parent (a redelivered start event) gives its child the same ARN. The name is `name`, else the
/// uuid (AWS names an unnamed execution with a uuid).
pub fn nested_identity(
    region: &str,
    account: &str,
    machine: &str,
    name: Option<&str>,
    origin: NestedOrigin<'_>,
) -> ExecutionIdentity {
    let mut h = Sha1::new();
    h.update(NESTED_NAMESPACE);
    // Each part is length-prefixed, so no two origins hash the same bytes.
    for part in [
        origin.parent_arn.as_bytes(),
        origin.state_name.as_bytes(),
        &origin.attempt.to_be_bytes(),
        origin.scope.as_bytes(),
    ] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    let digest = h.finalize();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    let uuid = uuid::Builder::from_sha1_bytes(bytes).into_uuid();
    let name = name.map_or_else(|| uuid.to_string(), str::to_string);
    let arn = format!("arn:aws:states:{region}:{account}:express:{machine}:{name}:{uuid}");
    ExecutionIdentity { name, arn, uuid }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_name_and_arn_shape() {
        let id = execution_identity(
            "us-east-1",
            "123456789012",
            "hello",
            None,
            "expressway.start",
            3,
            42,
        );
        assert_eq!(id.name, "expressway.start-3-42");
        assert!(id.arn.starts_with(
            "arn:aws:states:us-east-1:123456789012:express:hello:expressway.start-3-42:"
        ));
        assert_eq!(id.uuid.get_version_num(), 5);
        assert!(id.arn.ends_with(&id.uuid.to_string()));
    }

    #[test]
    fn redelivery_yields_the_same_arn() {
        let a = execution_identity("r", "a", "m", Some("n"), "t", 0, 7);
        let b = execution_identity("r", "a", "m", Some("n"), "t", 0, 7);
        assert_eq!(a, b);
    }

    #[test]
    fn different_positions_differ() {
        let a = source_uuid("t", 0, 7);
        assert_ne!(a, source_uuid("t", 0, 8));
        assert_ne!(a, source_uuid("t", 1, 7));
        assert_ne!(a, source_uuid("u", 0, 7));
        // "t/1/10" vs "t/11/0": the separator keeps positions apart.
        assert_ne!(source_uuid("t", 1, 10), source_uuid("t", 11, 0));
    }

    #[test]
    fn explicit_name_is_kept() {
        let id = execution_identity("r", "a", "m", Some("order-1"), "t", 0, 0);
        assert_eq!(id.name, "order-1");
        assert!(id.arn.contains(":express:m:order-1:"));
    }

    fn origin<'a>(
        parent: &'a str,
        state: &'a str,
        attempt: u32,
        scope: &'a str,
    ) -> NestedOrigin<'a> {
        NestedOrigin {
            parent_arn: parent,
            state_name: state,
            attempt,
            scope,
        }
    }

    #[test]
    fn nested_children_are_deterministic_and_apart() {
        let p = "arn:aws:states:r:a:express:parent:n:u";
        let a = nested_identity("r", "a", "child", None, origin(p, "S", 0, ""));
        assert_eq!(
            a,
            nested_identity("r", "a", "child", None, origin(p, "S", 0, ""))
        );
        assert_eq!(a.name, a.uuid.to_string(), "unnamed: the uuid is the name");
        assert_eq!(a.uuid.get_version_num(), 5);
        assert_eq!(
            a.arn,
            format!("arn:aws:states:r:a:express:child:{}:{}", a.uuid, a.uuid)
        );
        for other in [
            origin(p, "S", 1, ""),
            origin(p, "T", 0, ""),
            origin("arn:aws:states:r:a:express:parent:m:u", "S", 0, ""),
            origin(p, "S", 0, "3"),
            // Length prefixes: moving a byte between parts changes the uuid.
            origin("arn:aws:states:r:a:express:parent:n:uS", "", 0, ""),
        ] {
            assert_ne!(
                a.uuid,
                nested_identity("r", "a", "child", None, other).uuid,
                "{other:?}"
            );
        }
        let named = nested_identity("r", "a", "child", Some("run-1"), origin(p, "S", 0, ""));
        assert_eq!(named.name, "run-1");
        assert!(named.arn.contains(":express:child:run-1:"));
        assert_ne!(named.uuid, source_uuid("t", 0, 0));
    }
}
