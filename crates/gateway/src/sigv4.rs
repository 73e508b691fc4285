//! AWS Signature Version 4 verification (header form, `Authorization: AWS4-HMAC-SHA256 ...`).
//!
//! The canonical request follows AWS's specification for non-S3 services: the path is
//! normalised and each segment URI-encoded again, the query is decoded, re-encoded and sorted,
//! header values are trimmed with inner runs of spaces collapsed, and the payload hash is the
//! SHA-256 of the body as received.

use crate::error::ApiError;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::Path;

type HmacSha256 = Hmac<Sha256>;

/// Access key id -> secret access key, and the region signatures must be scoped to.
#[derive(Clone)]
pub struct Credentials {
    keys: HashMap<String, String>,
    region: String,
}

impl Default for Credentials {
    /// No keys; signatures scoped to the default region (`us-east-1`).
    fn default() -> Credentials {
        Credentials {
            keys: HashMap::new(),
            region: expressway_engine::DEFAULT_REGION.to_string(),
        }
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print secrets.
        f.debug_struct("Credentials")
            .field("access_key_ids", &self.keys.keys().collect::<Vec<_>>())
            .field("region", &self.region)
            .finish()
    }
}

/// Why credentials could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// The file could not be read.
    #[error("cannot read {0}: {1}")]
    Io(String, std::io::Error),
    /// A line is not `ACCESS_KEY_ID:SECRET_ACCESS_KEY`.
    #[error("{0}: line {1} is not ACCESS_KEY_ID:SECRET_ACCESS_KEY")]
    Syntax(String, usize),
}

impl Credentials {
    /// One key pair.
    pub fn single(access_key_id: &str, secret: &str) -> Credentials {
        let mut c = Credentials::default();
        c.add(access_key_id, secret);
        c
    }

    /// Adds a key pair.
    pub fn add(&mut self, access_key_id: &str, secret: &str) {
        self.keys
            .insert(access_key_id.to_string(), secret.to_string());
    }

    /// Accept only signatures scoped to `region` (the gateway's region; AWS answers a request
    /// signed for another region with `InvalidSignatureException`).
    pub fn with_region(mut self, region: &str) -> Credentials {
        self.region = region.to_string();
        self
    }

    /// The region signatures must be scoped to.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// Whether no key is configured.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Whether `secret` is the secret of `access_key_id` (constant-time in the secret; the
    /// console's HTTP basic check).
    pub fn check_secret(&self, access_key_id: &str, secret: &str) -> bool {
        self.keys
            .get(access_key_id)
            .is_some_and(|s| constant_time_eq(s.as_bytes(), secret.as_bytes()))
    }

    /// Reads a file of `ACCESS_KEY_ID:SECRET_ACCESS_KEY` lines (`#` comments and blank lines
    /// ignored), e.g. a mounted Kubernetes secret.
    pub fn from_file(path: &Path) -> Result<Credentials, CredentialsError> {
        let name = path.display().to_string();
        let text =
            std::fs::read_to_string(path).map_err(|e| CredentialsError::Io(name.clone(), e))?;
        let mut c = Credentials::default();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            match line.split_once(':') {
                Some((k, s)) if !k.trim().is_empty() && !s.trim().is_empty() => {
                    c.add(k.trim(), s.trim())
                }
                _ => return Err(CredentialsError::Syntax(name, i + 1)),
            }
        }
        Ok(c)
    }

    fn secret(&self, access_key_id: &str) -> Option<&str> {
        self.keys.get(access_key_id).map(String::as_str)
    }
}

/// What the verifier needs from an HTTP request.
#[derive(Debug, Clone, Copy)]
pub struct SignedRequest<'a> {
    /// `POST`.
    pub method: &'a str,
    /// The raw path (`/`).
    pub path: &'a str,
    /// The raw query string (without `?`).
    pub query: &'a str,
    /// Header names (any case) and values, repeated names allowed.
    pub headers: &'a [(String, String)],
    /// The body.
    pub body: &'a [u8],
}

/// Largest clock difference accepted between the signature date and now.
const MAX_SKEW_SECS: i64 = 15 * 60;

fn err_missing() -> ApiError {
    ApiError::new(
        "MissingAuthenticationTokenException",
        "Missing Authentication Token",
    )
}

fn err_incomplete(message: String) -> ApiError {
    ApiError::new("IncompleteSignatureException", message)
}

fn err_signature() -> ApiError {
    ApiError::new(
        "InvalidSignatureException",
        "The request signature we calculated does not match the signature you provided. Check your AWS Secret Access Key and signing method. Consult the service documentation for details.",
    )
}

/// Verifies a request signed for service `states`. `now` is seconds since the epoch.
pub fn verify(creds: &Credentials, req: &SignedRequest<'_>, now: i64) -> Result<(), ApiError> {
    let header = |name: &str| {
        req.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    let Some(auth) = header("authorization") else {
        return Err(err_missing());
    };
    let Some(params) = auth.trim().strip_prefix("AWS4-HMAC-SHA256") else {
        return Err(err_incomplete(format!(
            "Unsupported authorization scheme in '{}'",
            auth.split_whitespace().next().unwrap_or_default()
        )));
    };
    let mut credential = None;
    let mut signed_headers = None;
    let mut signature = None;
    for part in params.split(',') {
        let part = part.trim();
        if let Some(v) = part.strip_prefix("Credential=") {
            credential = Some(v);
        } else if let Some(v) = part.strip_prefix("SignedHeaders=") {
            signed_headers = Some(v);
        } else if let Some(v) = part.strip_prefix("Signature=") {
            signature = Some(v);
        }
    }
    let (Some(credential), Some(signed_headers), Some(signature)) =
        (credential, signed_headers, signature)
    else {
        return Err(err_incomplete(format!(
            "Authorization header requires 'Credential', 'Signature' and 'SignedHeaders' parameters. Authorization={auth}"
        )));
    };
    let scope: Vec<&str> = credential.split('/').collect();
    if scope.len() != 5 || scope[4] != "aws4_request" {
        return Err(err_incomplete(format!(
            "Credential should be scoped to a valid region and service, not '{credential}'"
        )));
    }
    let (access_key, date, region, service) = (scope[0], scope[1], scope[2], scope[3]);
    let Some(secret) = creds.secret(access_key) else {
        return Err(ApiError::new(
            "UnrecognizedClientException",
            "The security token included in the request is invalid.",
        ));
    };
    if region != creds.region {
        // AWS's wording (trailing space included).
        return Err(ApiError::new(
            "InvalidSignatureException",
            format!("Credential should be scoped to a valid region, not '{region}'. "),
        ));
    }
    if service != "states" {
        return Err(ApiError::new(
            "InvalidSignatureException",
            format!("Credential should be scoped to correct service: 'states'. (not '{service}')"),
        ));
    }
    let Some(amz_date) = header("x-amz-date") else {
        return Err(err_incomplete(
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header."
                .into(),
        ));
    };
    let Some(signed_at) = parse_amz_date(amz_date) else {
        return Err(err_incomplete(format!("Invalid X-Amz-Date '{amz_date}'")));
    };
    if !amz_date.starts_with(date) {
        return Err(err_signature());
    }
    if (now - signed_at).abs() > MAX_SKEW_SECS {
        return Err(ApiError::new(
            "InvalidSignatureException",
            format!("Signature expired: {amz_date} is now earlier or later than the server time by more than 15 minutes."),
        ));
    }
    let names: Vec<&str> = signed_headers.split(';').collect();
    if !names.contains(&"host") {
        return Err(err_signature());
    }
    let creq = canonical_request(req, &names);
    let sts = string_to_sign(amz_date, date, region, service, &creq);
    let expected = sign(secret, date, region, service, &sts);
    if constant_time_eq(expected.as_bytes(), signature.as_bytes()) {
        Ok(())
    } else {
        Err(err_signature())
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `YYYYMMDDTHHMMSSZ` -> seconds since the epoch.
pub fn parse_amz_date(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 16 || b[8] != b'T' || b[15] != b'Z' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> { s.get(r)?.parse().ok() };
    let (y, mo, d) = (num(0..4)?, num(4..6)?, num(6..8)?);
    let (h, mi, se) = (num(9..11)?, num(11..13)?, num(13..15)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || se > 60 {
        return None;
    }
    Some(days_from_civil(y, mo, d) * 86400 + h * 3600 + mi * 60 + se)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// The canonical request over the headers named in `signed` (lower case).
pub fn canonical_request(req: &SignedRequest<'_>, signed: &[&str]) -> String {
    let mut out = String::with_capacity(256);
    out.push_str(req.method);
    out.push('\n');
    out.push_str(&canonical_path(req.path));
    out.push('\n');
    out.push_str(&canonical_query(req.query));
    out.push('\n');
    for name in signed {
        let values: Vec<String> = req
            .headers
            .iter()
            .filter(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.split_whitespace().collect::<Vec<_>>().join(" "))
            .collect();
        out.push_str(name);
        out.push(':');
        out.push_str(&values.join(","));
        out.push('\n');
    }
    out.push('\n');
    out.push_str(&signed.join(";"));
    out.push('\n');
    out.push_str(&hex::encode(Sha256::digest(req.body)));
    out
}

/// `AWS4-HMAC-SHA256\n<date>\n<scope>\n<hash of canonical request>`.
pub fn string_to_sign(
    amz_date: &str,
    date: &str,
    region: &str,
    service: &str,
    canonical_request: &str,
) -> String {
    format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{date}/{region}/{service}/aws4_request\n{}",
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    )
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail.
    let mut mac = match HmacSha256::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => return Vec::new(),
    };
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

/// The hex signature of `string_to_sign` with the derived signing key.
pub fn sign(secret: &str, date: &str, region: &str, service: &str, string_to_sign: &str) -> String {
    let k_date = hmac(format!("AWS4{secret}").as_bytes(), date.as_bytes());
    let k_region = hmac(&k_date, region.as_bytes());
    let k_service = hmac(&k_region, service.as_bytes());
    let k_signing = hmac(&k_service, b"aws4_request");
    hex::encode(hmac(&k_signing, string_to_sign.as_bytes()))
}

fn uri_encode(s: &[u8], out: &mut String) {
    for &b in s {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

fn uri_decode(s: &str) -> Vec<u8> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        // Exactly two hex digits: `u8::from_str_radix` alone would also take a sign (`%+1`).
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(hi), Some(lo)) = (hex_digit(b[i + 1]), hex_digit(b[i + 2])) {
                out.push(hi << 4 | lo);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    out
}

fn hex_digit(c: u8) -> Option<u8> {
    (c as char).to_digit(16).map(|d| d as u8)
}

fn canonical_path(path: &str) -> String {
    // Normalise `.`/`..`/empty segments, then encode each segment of the raw path again.
    let mut segments: Vec<&str> = Vec::new();
    for seg in path.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            s => segments.push(s),
        }
    }
    let mut out = String::from("/");
    for (i, seg) in segments.iter().enumerate() {
        if i > 0 {
            out.push('/');
        }
        uri_encode(seg.as_bytes(), &mut out);
    }
    if path.ends_with('/') && !segments.is_empty() {
        out.push('/');
    }
    out
}

fn canonical_query(query: &str) -> String {
    if query.is_empty() {
        return String::new();
    }
    let mut pairs: Vec<(String, String)> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            let (mut ek, mut ev) = (String::new(), String::new());
            uri_encode(&uri_decode(k), &mut ek);
            uri_encode(&uri_decode(v), &mut ev);
            (ek, ev)
        })
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

#[cfg(test)]
mod tests {
    use super::*;

    // AWS's Signature Version 4 test suite (aws-sig-v4-test-suite): credentials AKIDEXAMPLE /
    // wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY, region us-east-1, service `service`.
    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";

    #[test]
    fn uri_decode_takes_exactly_two_hex_digits() {
        // A sign is not a hex digit: `%+1` and `%-1` stay literal (the fuzzer found `%+1` decoded to 0x01).
        assert_eq!(uri_decode("%+1"), b"%+1");
        assert_eq!(uri_decode("a%-1b"), b"a%-1b");
        assert_eq!(uri_decode("%4"), b"%4");
        assert_eq!(uri_decode("%zz%41%2f%2F"), b"%zzA//");
        assert_eq!(uri_decode("%e2%82%AC"), "\u{20ac}".as_bytes());
    }

    fn headers(list: &[(&str, &str)]) -> Vec<(String, String)> {
        list.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn suite_signature(method: &str, query: &str, hs: &[(&str, &str)], body: &[u8]) -> String {
        let h = headers(hs);
        let req = SignedRequest {
            method,
            path: "/",
            query,
            headers: &h,
            body,
        };
        let mut names: Vec<String> = h.iter().map(|(k, _)| k.to_ascii_lowercase()).collect();
        names.sort();
        names.dedup();
        let names: Vec<&str> = names.iter().map(String::as_str).collect();
        let creq = canonical_request(&req, &names);
        let sts = string_to_sign(
            "20150830T123600Z",
            "20150830",
            "us-east-1",
            "service",
            &creq,
        );
        sign(SECRET, "20150830", "us-east-1", "service", &sts)
    }

    #[test]
    fn aws_suite_get_vanilla() {
        let hs = [
            ("Host", "example.amazonaws.com"),
            ("X-Amz-Date", "20150830T123600Z"),
        ];
        assert_eq!(
            suite_signature("GET", "", &hs, b""),
            "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
        );
    }

    #[test]
    fn aws_suite_post_vanilla() {
        let hs = [
            ("Host", "example.amazonaws.com"),
            ("X-Amz-Date", "20150830T123600Z"),
        ];
        assert_eq!(
            suite_signature("POST", "", &hs, b""),
            "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"
        );
    }

    #[test]
    fn aws_suite_get_vanilla_query_order() {
        let hs = [
            ("Host", "example.amazonaws.com"),
            ("X-Amz-Date", "20150830T123600Z"),
        ];
        assert_eq!(
            suite_signature("GET", "Param2=value2&Param1=value1", &hs, b""),
            "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"
        );
    }

    #[test]
    fn aws_suite_derived_key_and_string_to_sign() {
        // The string to sign of get-vanilla, from the suite's .sts file.
        let sts = "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\nbb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63";
        assert_eq!(
            sign(SECRET, "20150830", "us-east-1", "service", sts),
            "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"
        );
    }

    /// A StartExecution request signed by botocore 1.44 (see tests/clients/sign_vector.py).
    #[test]
    fn botocore_signed_start_execution() {
        let body = br#"{"stateMachineArn": "arn:aws:states:us-east-1:123456789012:stateMachine:hello", "input": "{\"name\": \"Ada\"}"}"#;
        let h = headers(&[
            ("Host", "localhost:8083"),
            ("X-Amz-Target", "AWSStepFunctions.StartExecution"),
            ("Content-Type", "application/x-amz-json-1.0"),
            ("X-Amz-Date", "20261121T200753Z"),
            ("Authorization", BOTOCORE_AUTH),
        ]);
        let req = SignedRequest {
            method: "POST",
            path: "/",
            query: "",
            headers: &h,
            body,
        };
        let creds = Credentials::single("AKIDEXAMPLE", SECRET);
        let now = parse_amz_date("20261121T200753Z").expect("date");
        assert_eq!(verify(&creds, &req, now), Ok(()));
        // Wrong secret, unknown key, changed body, expired, unsigned.
        let wrong = Credentials::single("AKIDEXAMPLE", "other");
        assert_eq!(
            verify(&wrong, &req, now).map_err(|e| e.kind),
            Err("InvalidSignatureException")
        );
        let unknown = Credentials::single("AKIDOTHER", SECRET);
        assert_eq!(
            verify(&unknown, &req, now).map_err(|e| e.kind),
            Err("UnrecognizedClientException")
        );
        let tampered = SignedRequest { body: b"{}", ..req };
        assert_eq!(
            verify(&creds, &tampered, now).map_err(|e| e.kind),
            Err("InvalidSignatureException")
        );
        assert_eq!(
            verify(&creds, &req, now + 3600).map_err(|e| e.kind),
            Err("InvalidSignatureException")
        );
        // Signed for us-east-1 (the botocore request), verified by a gateway of eu-west-1.
        let eu = Credentials::single("AKIDEXAMPLE", SECRET).with_region("eu-west-1");
        let e = verify(&eu, &req, now).expect_err("another region");
        assert_eq!(e.kind, "InvalidSignatureException");
        assert_eq!(
            e.message,
            "Credential should be scoped to a valid region, not 'us-east-1'. "
        );
        let unsigned_headers: Vec<(String, String)> = h
            .iter()
            .filter(|(k, _)| k != "Authorization")
            .cloned()
            .collect();
        let unsigned = SignedRequest {
            headers: &unsigned_headers,
            ..req
        };
        assert_eq!(
            verify(&creds, &unsigned, now).map_err(|e| e.kind),
            Err("MissingAuthenticationTokenException")
        );
    }

    const BOTOCORE_AUTH: &str = "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261121/us-east-1/states/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=e126f7e530515f893c326507422b35384c23d5b51e6f163d08abb74d80eccc08";

    #[test]
    fn dates() {
        assert_eq!(parse_amz_date("19700101T000000Z"), Some(0));
        assert_eq!(parse_amz_date("20150830T123600Z"), Some(1_440_938_160));
        assert_eq!(parse_amz_date("2015-08-30"), None);
    }

    #[test]
    fn credentials_file() {
        let path = std::env::temp_dir().join(format!("expressway-creds-{}", std::process::id()));
        std::fs::write(&path, "# keys\nAKID1:secret1\n\nAKID2 : secret2\n").expect("write");
        let c = Credentials::from_file(&path).expect("reads");
        assert_eq!(c.secret("AKID1"), Some("secret1"));
        assert_eq!(c.secret("AKID2"), Some("secret2"));
        assert!(!format!("{c:?}").contains("secret"));
        std::fs::write(&path, "nocolon\n").expect("write");
        assert!(Credentials::from_file(&path).is_err());
        let _ = std::fs::remove_file(&path);
    }
}
