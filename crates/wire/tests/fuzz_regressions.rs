//! Inputs the `start_event` fuzz target (`crates/fuzz`) found, replayed under stable `cargo test`.
//!
//! Each file of `fuzz_regressions/start_event/` is one input of the target: the first byte picks
//! the `content-type` header, the rest is the record value. The checks are the target's: decoding
//! never panics, and a decoded event survives its JSON and protobuf forms unchanged.

use expressway_wire::start::decode_raw_input;
use expressway_wire::StartEvent;
use std::path::PathBuf;

fn content_type(selector: u8) -> Option<&'static [u8]> {
    match selector % 4 {
        0 => None,
        1 => Some(b"application/json"),
        2 => Some(b"application/x-protobuf"),
        _ => Some(b"Application/X-Protobuf; proto=expressway.v1.StartExecution"),
    }
}

#[test]
fn start_events_round_trip() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fuzz_regressions/start_event");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("directory entry").path())
        .collect();
    files.sort();
    assert!(
        !files.is_empty(),
        "no regression inputs in {}",
        dir.display()
    );
    for path in files {
        let data = std::fs::read(&path).expect("readable regression input");
        let name = path.display();
        let Some((&selector, value)) = data.split_first() else {
            continue;
        };
        let _ = decode_raw_input(Some(value));
        let Ok(event) = StartEvent::decode(Some(value), content_type(selector)) else {
            continue;
        };
        let json = event.to_json().to_string();
        let again = StartEvent::from_json(json.as_bytes())
            .unwrap_or_else(|e| panic!("{name}: the JSON form does not decode: {e} ({json})"));
        assert_eq!(again, event, "{name}: JSON round trip ({json})");
        let again = StartEvent::from_protobuf(&event.to_protobuf())
            .unwrap_or_else(|e| panic!("{name}: the protobuf form does not decode: {e}"));
        assert_eq!(again, event, "{name}: protobuf round trip");
    }
}
