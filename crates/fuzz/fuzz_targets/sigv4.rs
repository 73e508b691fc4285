//! The SigV4 verifier (the gateway's `Authorization: AWS4-HMAC-SHA256 ...` check) on arbitrary
//! requests, as text: `METHOD PATH[?QUERY]`, header lines `name: value`, a blank line, the body.
//! Beyond never panicking: the same request signed with the configured key verifies, and a
//! signed request whose body changed does not.
#![no_main]

use expressway_gateway::sigv4::{
    canonical_request, parse_amz_date, sign, string_to_sign, verify, SignedRequest,
};
use expressway_gateway::Credentials;
use libfuzzer_sys::fuzz_target;

const KEY_ID: &str = "AKIDEXAMPLE";
const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
const REGION: &str = "us-east-1";
/// 2026-01-01T00:00:00Z, "now" when the request has no usable X-Amz-Date.
const NOW: i64 = 1_767_225_600;

struct Parsed {
    method: String,
    path: String,
    query: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

fn parse(data: &[u8]) -> Option<Parsed> {
    let split = data.windows(2).position(|w| w == b"\n\n");
    let (head, body) = match split {
        Some(i) => (&data[..i], data[i + 2..].to_vec()),
        None => (data, Vec::new()),
    };
    let head = std::str::from_utf8(head).ok()?;
    let mut lines = head.split('\n');
    let request_line = lines.next()?;
    let (method, target) = request_line.split_once(' ').unwrap_or((request_line, "/"));
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_string(), v.trim_start().to_string()))
        .collect();
    Some(Parsed {
        method: method.to_string(),
        path: path.to_string(),
        query: query.to_string(),
        headers,
        body,
    })
}

/// What hyper can deliver (names are lower-case tokens, values visible ASCII, space or tab),
/// the precondition of the round-trip properties.
fn http_valid(p: &Parsed) -> bool {
    let tchar = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    !p.method.is_empty()
        && p.method.chars().all(tchar)
        && p.headers.iter().all(|(k, v)| {
            !k.is_empty()
                && k.chars().all(|c| tchar(c) && !c.is_ascii_uppercase())
                && v.chars().all(|c| c == '\t' || (' '..='~').contains(&c))
        })
}

fuzz_target!(|data: &[u8]| {
    let Some(p) = parse(data) else {
        return;
    };
    let creds = Credentials::single(KEY_ID, SECRET).with_region(REGION);
    let header = |name: &str| {
        p.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone())
    };
    let amz_date = header("x-amz-date");
    let now = amz_date.as_deref().and_then(parse_amz_date).unwrap_or(NOW);
    let req = SignedRequest {
        method: &p.method,
        path: &p.path,
        query: &p.query,
        headers: &p.headers,
        body: &p.body,
    };
    let _ = verify(&creds, &req, now);

    // Sign the same request properly and check that it verifies.
    let Some(amz_date) = amz_date else { return };
    if parse_amz_date(&amz_date).is_none() || header("host").is_none() || !http_valid(&p) {
        return;
    }
    let mut headers: Vec<(String, String)> = p
        .headers
        .iter()
        .filter(|(k, _)| k != "authorization")
        .cloned()
        .collect();
    let mut names: Vec<&str> = headers.iter().map(|(k, _)| k.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    let date = &amz_date[..8];
    let unsigned = SignedRequest {
        headers: &headers,
        ..req
    };
    let creq = canonical_request(&unsigned, &names);
    let sts = string_to_sign(&amz_date, date, REGION, "states", &creq);
    let signature = sign(SECRET, date, REGION, "states", &sts);
    let auth = format!(
        "AWS4-HMAC-SHA256 Credential={KEY_ID}/{date}/{REGION}/states/aws4_request, SignedHeaders={}, Signature={signature}",
        names.join(";")
    );
    headers.push(("authorization".to_string(), auth));
    let signed = SignedRequest {
        headers: &headers,
        ..req
    };
    if let Err(e) = verify(&creds, &signed, now) {
        panic!("a correctly signed request was refused: {e:?}");
    }
    let mut tampered = p.body.clone();
    match tampered.first_mut() {
        Some(b) => *b ^= 1,
        None => tampered.push(b'x'),
    }
    let changed = SignedRequest {
        body: &tampered,
        ..signed
    };
    assert!(
        verify(&creds, &changed, now).is_err(),
        "a signed request verified after its body changed"
    );
});
