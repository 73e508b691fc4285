//! The start-event decoder (JSON and protobuf records of the start topic). The first byte picks the
//! `content-type` header, the rest is the record value. A decoded event must survive its own
//! JSON and protobuf encodings unchanged (`expressway start` produces those).
#![no_main]

use expressway_wire::start::decode_raw_input;
use expressway_wire::StartEvent;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, value)) = data.split_first() else {
        return;
    };
    let content_type: Option<&[u8]> = match selector % 4 {
        0 => None,
        1 => Some(b"application/json"),
        2 => Some(b"application/x-protobuf"),
        _ => Some(b"Application/X-Protobuf; proto=expressway.v1.StartExecution"),
    };
    let _ = decode_raw_input(Some(value));
    let Ok(event) = StartEvent::decode(Some(value), content_type) else {
        return;
    };
    let json = event.to_json().to_string();
    match StartEvent::from_json(json.as_bytes()) {
        Ok(again) => assert_eq!(again, event, "JSON round trip changed the event ({json})"),
        Err(e) => panic!("the JSON form of a decoded event does not decode: {e} ({json})"),
    }
    match StartEvent::from_protobuf(&event.to_protobuf()) {
        Ok(again) => assert_eq!(again, event, "protobuf round trip changed the event"),
        Err(e) => panic!("the protobuf form of a decoded event does not decode: {e}"),
    }
});
