//! Task tokens of `.waitForTaskToken` Tasks (`$$.Task.Token`).
//!
//! A token names one waiting task attempt (the engine's `CallbackKey`: execution ARN, state
//! name, scope, attempt) and the start partition whose pod runs the execution, so a callback
//! can be routed to that pod's callback partition. It is authenticated with HMAC-SHA256 under a
//! key the pods and gateways share ([`TaskTokenKey`]), so nobody without the key can forge one.
//!
//! Format: `"v1." + base64url(payload) + "." + base64url(mac)`, no padding, where `payload` is
//! the compact JSON array `[partition, executionArn, stateName, scope, attempt]` and `mac` is
//! HMAC-SHA256 over the text before the second dot (`"v1." + base64url(payload)`). At most
//! [`MAX_TOKEN_CHARS`] characters (AWS's limit for `taskToken`). Minting is deterministic: the
//! same key and fields give the same token, so a redelivered start event re-issues the token a
//! callback may already carry.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The longest token (AWS: `taskToken` is 1-1024 characters).
pub const MAX_TOKEN_CHARS: usize = 1024;

/// The shortest key, in bytes.
pub const MIN_KEY_BYTES: usize = 32;

/// The version prefix of tokens this code mints.
const VERSION: &str = "v1";

type HmacSha256 = Hmac<Sha256>;

/// The key that authenticates task tokens. Its `Debug` form never shows the key.
#[derive(Clone)]
pub struct TaskTokenKey {
    key: Vec<u8>,
}

impl std::fmt::Debug for TaskTokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskTokenKey")
            .field("bytes", &self.key.len())
            .finish_non_exhaustive()
    }
}

/// Why a key cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Fewer than [`MIN_KEY_BYTES`] bytes.
    #[error("the task token key has {len} bytes; at least {min} are required (e.g. `openssl rand -hex 32`)", min = MIN_KEY_BYTES)]
    TooShort {
        /// Bytes given (after removing a trailing newline).
        len: usize,
    },
}

impl TaskTokenKey {
    /// A key from its bytes: at least [`MIN_KEY_BYTES`].
    pub fn new(key: impl Into<Vec<u8>>) -> Result<TaskTokenKey, KeyError> {
        let key = key.into();
        if key.len() < MIN_KEY_BYTES {
            return Err(KeyError::TooShort { len: key.len() });
        }
        Ok(TaskTokenKey { key })
    }

    /// A key from the text of a file or environment variable: its bytes without trailing
    /// line breaks and spaces (so `openssl rand -hex 32 > key` works as it is).
    pub fn from_text(text: &[u8]) -> Result<TaskTokenKey, KeyError> {
        let end = text
            .iter()
            .rposition(|b| !b" \t\r\n".contains(b))
            .map_or(0, |i| i + 1);
        TaskTokenKey::new(&text[..end])
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
        match HmacSha256::new_from_slice(&self.key) {
            Ok(m) => m,
            Err(_) => unreachable!("HMAC accepts keys of every length"),
        }
    }

    /// Mints the token of `fields`; refuses one longer than [`MAX_TOKEN_CHARS`].
    pub fn mint(&self, fields: &TokenFields) -> Result<String, MintError> {
        let payload = serde_json::to_string(&(
            fields.partition,
            &fields.execution_arn,
            &fields.state_name,
            &fields.scope,
            fields.attempt,
        ))
        .map_err(|e| MintError::Encode(e.to_string()))?;
        let mut token = String::with_capacity(MAX_TOKEN_CHARS);
        token.push_str(VERSION);
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(payload.as_bytes(), &mut token);
        let mut mac = self.mac();
        mac.update(token.as_bytes());
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(mac.finalize().into_bytes(), &mut token);
        if token.len() > MAX_TOKEN_CHARS {
            return Err(MintError::TooLong { len: token.len() });
        }
        Ok(token)
    }

    /// Checks a token's MAC (in constant time) and returns its fields.
    pub fn verify(&self, token: &str) -> Result<TokenFields, TokenError> {
        let parts = split(token)?;
        let mac_bytes = URL_SAFE_NO_PAD
            .decode(parts.mac)
            .map_err(|_| TokenError::Malformed("the signature is not base64url"))?;
        let mut mac = self.mac();
        mac.update(parts.signed.as_bytes());
        mac.verify_slice(&mac_bytes)
            .map_err(|_| TokenError::BadMac)?;
        decode_payload(parts.payload)
    }
}

/// What a token names.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TokenFields {
    /// The start partition of the execution (its callbacks go to the callback partition of
    /// the same number, see [`callback_partition`]).
    pub partition: i32,
    /// The execution ARN.
    pub execution_arn: String,
    /// The Task state's name.
    pub state_name: String,
    /// Parallel branch / Map item indices from the top-level graph, `/`-separated.
    pub scope: String,
    /// 0 for the first attempt, then 1, 2, ...
    pub attempt: u32,
}

/// Why a token could not be minted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MintError {
    /// The fields make a token over [`MAX_TOKEN_CHARS`] characters (long names or ARNs).
    #[error("the task token would be {len} characters, over the limit of {max}", max = MAX_TOKEN_CHARS)]
    TooLong {
        /// Its length.
        len: usize,
    },
    /// The payload could not be encoded.
    #[error("the task token payload cannot be encoded: {0}")]
    Encode(String),
}

/// Why a token does not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not of the form `VERSION.PAYLOAD.MAC`, not base64url, or a payload that is not the
    /// expected array.
    #[error("malformed task token: {0}")]
    Malformed(&'static str),
    /// A version this code does not know.
    #[error("unknown task token version '{0}'")]
    BadVersion(String),
    /// The MAC does not match: forged, altered, or minted under another key.
    #[error(
        "the task token's signature does not match (forged, altered, or minted under another key)"
    )]
    BadMac,
}

impl TokenError {
    /// A stable code for metrics and dead letters.
    pub fn code(&self) -> &'static str {
        match self {
            TokenError::Malformed(_) => "malformed",
            TokenError::BadVersion(_) => "bad_version",
            TokenError::BadMac => "bad_mac",
        }
    }
}

struct Parts<'a> {
    /// `VERSION.PAYLOAD`, what the MAC covers.
    signed: &'a str,
    payload: &'a str,
    mac: &'a str,
}

fn split(token: &str) -> Result<Parts<'_>, TokenError> {
    if token.is_empty() || token.len() > MAX_TOKEN_CHARS {
        return Err(TokenError::Malformed(
            "a task token has 1 to 1024 characters",
        ));
    }
    let (signed, mac) = token
        .rsplit_once('.')
        .ok_or(TokenError::Malformed("expected VERSION.PAYLOAD.SIGNATURE"))?;
    let (version, payload) = signed
        .split_once('.')
        .ok_or(TokenError::Malformed("expected VERSION.PAYLOAD.SIGNATURE"))?;
    if version != VERSION {
        if version.len() <= 8 && version.starts_with('v') {
            return Err(TokenError::BadVersion(version.to_string()));
        }
        return Err(TokenError::Malformed("expected VERSION.PAYLOAD.SIGNATURE"));
    }
    if payload.is_empty() || mac.is_empty() || payload.contains('.') {
        return Err(TokenError::Malformed("expected VERSION.PAYLOAD.SIGNATURE"));
    }
    Ok(Parts {
        signed,
        payload,
        mac,
    })
}

fn decode_payload(payload: &str) -> Result<TokenFields, TokenError> {
    let bytes = URL_SAFE_NO_PAD
        .decode(payload)
        .map_err(|_| TokenError::Malformed("the payload is not base64url"))?;
    let (partition, execution_arn, state_name, scope, attempt): (i32, String, String, String, u32) =
        serde_json::from_slice(&bytes)
            .map_err(|_| TokenError::Malformed("the payload is not a task token payload"))?;
    if partition < 0 {
        return Err(TokenError::Malformed("the partition is negative"));
    }
    Ok(TokenFields {
        partition,
        execution_arn,
        state_name,
        scope,
        attempt,
    })
}

/// A token's fields read **without** checking its MAC: for producers without the key (the
/// CLI) that only need the partition to produce to. Never trust the result; pods and
/// gateways [`TaskTokenKey::verify`].
pub fn peek_unverified(token: &str) -> Result<TokenFields, TokenError> {
    let parts = split(token)?;
    decode_payload(parts.payload)
}

/// The callback-topic partition for a token's start partition, when the callback topic has
/// `callback_partitions` partitions: the same number when the topic is partitioned like the
/// start topic (as it should be), else that number modulo the partition count, so a topic
/// with fewer partitions still routes every token somewhere every pod agrees on.
pub fn callback_partition(start_partition: i32, callback_partitions: i32) -> i32 {
    if callback_partitions <= 0 {
        return 0;
    }
    start_partition.rem_euclid(callback_partitions)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn key() -> TaskTokenKey {
        TaskTokenKey::new(*b"0123456789abcdef0123456789abcdef").unwrap()
    }

    fn fields() -> TokenFields {
        TokenFields {
            partition: 3,
            execution_arn: "arn:aws:states:us-east-1:123456789012:express:order:expressway.start-3-42:6f1c3a52-8e0b-5d7a-9b21-5e44c017a83d".into(),
            state_name: "Charge".into(),
            scope: "0".into(),
            attempt: 1,
        }
    }

    /// Replaces the character at `i` with another base64url character.
    fn flip(token: &str, i: usize) -> String {
        let mut b = token.as_bytes().to_vec();
        b[i] = if b[i] == b'A' { b'B' } else { b'A' };
        String::from_utf8(b).unwrap()
    }

    #[test]
    fn round_trip_and_determinism() {
        let t = key().mint(&fields()).unwrap();
        assert!(t.starts_with("v1."), "{t}");
        assert!(t.len() <= MAX_TOKEN_CHARS);
        assert_eq!(key().verify(&t), Ok(fields()));
        assert_eq!(
            key().mint(&fields()).unwrap(),
            t,
            "same key and fields, same token"
        );
        let mut other = fields();
        other.attempt = 2;
        assert_ne!(key().mint(&other).unwrap(), t);
        assert_eq!(peek_unverified(&t).unwrap().partition, 3);
        // Unicode names survive.
        let mut uni = fields();
        uni.state_name = "Zahlung – prüfen ✓".into();
        uni.scope = "1/17".into();
        let t = key().mint(&uni).unwrap();
        assert_eq!(key().verify(&t), Ok(uni));
    }

    #[test]
    fn tampered_payload_is_refused() {
        let t = key().mint(&fields()).unwrap();
        let payload_at = 3 + 5;
        assert_eq!(key().verify(&flip(&t, payload_at)), Err(TokenError::BadMac));
        // A payload re-encoded with another partition but the old MAC.
        let (_, rest) = t.split_once('.').unwrap();
        let (_, mac) = rest.split_once('.').unwrap();
        let mut moved = fields();
        moved.partition = 4;
        let forged_payload = URL_SAFE_NO_PAD.encode(
            serde_json::to_string(&(
                moved.partition,
                &moved.execution_arn,
                &moved.state_name,
                &moved.scope,
                moved.attempt,
            ))
            .unwrap(),
        );
        let forged = format!("v1.{forged_payload}.{mac}");
        assert_eq!(key().verify(&forged), Err(TokenError::BadMac));
        // The unverified reader believes it: that is why pods verify.
        assert_eq!(peek_unverified(&forged).unwrap().partition, 4);
    }

    #[test]
    fn tampered_mac_is_refused() {
        let t = key().mint(&fields()).unwrap();
        let last = t.len() - 2;
        assert_eq!(key().verify(&flip(&t, last)), Err(TokenError::BadMac));
        // 43 characters of MAC cut to 40 (still canonical base64url): a shorter MAC.
        let short = &t[..t.len() - 3];
        assert_eq!(key().verify(short), Err(TokenError::BadMac));
        // Cut to 39: not canonical base64url any more.
        let shorter = &t[..t.len() - 4];
        assert!(matches!(
            key().verify(shorter),
            Err(TokenError::Malformed(_))
        ));
    }

    #[test]
    fn another_key_does_not_verify() {
        let t = key().mint(&fields()).unwrap();
        let other = TaskTokenKey::new(*b"fedcba9876543210fedcba9876543210").unwrap();
        assert_eq!(other.verify(&t), Err(TokenError::BadMac));
        assert_ne!(other.mint(&fields()).unwrap(), t);
    }

    #[test]
    fn truncated_and_malformed_tokens() {
        let t = key().mint(&fields()).unwrap();
        let (signed, _) = t.rsplit_once('.').unwrap();
        for bad in [
            "",
            "v1",
            "v1.",
            "v1..",
            signed,
            &t[..3],
            &t[..10],
            "hello world",
            "v1.abc",
            "v1.abc.",
            "v1..abc",
            "v1.a.b.c",
        ] {
            let e = key().verify(bad).unwrap_err();
            assert!(
                matches!(e, TokenError::Malformed(_) | TokenError::BadMac),
                "{bad:?}: {e:?}"
            );
        }
        assert_eq!(
            key().verify(&t.replacen("v1.", "v2.", 1)),
            Err(TokenError::BadVersion("v2".into()))
        );
        assert_eq!(
            key().verify(&"x".repeat(1025)).unwrap_err().code(),
            "malformed"
        );
    }

    #[test]
    fn non_base64_is_malformed() {
        let t = key().mint(&fields()).unwrap();
        let (signed, _) = t.rsplit_once('.').unwrap();
        assert_eq!(
            key().verify(&format!("{signed}.!!!!")),
            Err(TokenError::Malformed("the signature is not base64url"))
        );
        // A valid MAC over a payload that is not base64url: the MAC passes, the payload not.
        let signed = "v1.not*base64";
        let mut mac = key().mac();
        mac.update(signed.as_bytes());
        let token = format!(
            "{signed}.{}",
            URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        );
        assert_eq!(
            key().verify(&token),
            Err(TokenError::Malformed("the payload is not base64url"))
        );
        // A valid MAC over base64url that is not the payload array.
        let signed = format!("v1.{}", URL_SAFE_NO_PAD.encode(br#"{"a":1}"#));
        let mut mac = key().mac();
        mac.update(signed.as_bytes());
        let token = format!(
            "{signed}.{}",
            URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        );
        assert_eq!(
            key().verify(&token),
            Err(TokenError::Malformed(
                "the payload is not a task token payload"
            ))
        );
    }

    #[test]
    fn over_long_fields_are_refused_when_minting() {
        let mut f = fields();
        f.state_name = "S".repeat(700);
        assert!(matches!(key().mint(&f), Err(MintError::TooLong { len }) if len > 1024));
        // Multi-byte names count in bytes of the token (base64 of UTF-8).
        let mut f = fields();
        f.state_name = "é".repeat(80);
        f.scope = "1/2/3/4/5/6/7/8/9/10".into();
        let t = key().mint(&f).unwrap();
        assert!(t.len() <= 1024, "{}", t.len());
        // A realistic worst case: 80-character machine and execution names, 80-character state.
        let mut f = fields();
        f.execution_arn = format!(
            "arn:aws:states:ap-southeast-2:123456789012:express:{}:{}:6f1c3a52-8e0b-5d7a-9b21-5e44c017a83d",
            "m".repeat(80),
            "n".repeat(80)
        );
        f.state_name = "s".repeat(80);
        f.scope = "12/345/6789".into();
        f.attempt = u32::MAX;
        f.partition = i32::MAX;
        let t = key().mint(&f).unwrap();
        assert_eq!(key().verify(&t), Ok(f));
    }

    #[test]
    fn keys() {
        assert_eq!(
            TaskTokenKey::new(vec![0u8; 31]).unwrap_err(),
            KeyError::TooShort { len: 31 }
        );
        let k = TaskTokenKey::from_text(b"0123456789abcdef0123456789abcdef\r\n").unwrap();
        assert_eq!(k.key.len(), 32);
        assert!(TaskTokenKey::from_text(b"0123456789abcdef0123456789abcde\n").is_err());
        let shown = format!("{k:?}");
        assert!(!shown.contains("0123"), "{shown}");
    }

    #[test]
    fn callback_partitions() {
        assert_eq!(callback_partition(3, 8), 3);
        assert_eq!(callback_partition(9, 8), 1);
        assert_eq!(callback_partition(5, 0), 0);
    }
}
