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
}
