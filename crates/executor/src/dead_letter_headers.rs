//! The headers of a dead letter: the original record's headers, then the stable error code, the
//! cause and the record's `topic/partition/offset` (`expressway_wire::dlq_headers`).

use expressway_wire::dlq_headers;
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};

/// The original record's headers (copied) plus `expressway-error`, `expressway-cause` and
/// `expressway-source`.
pub(crate) fn dead_letter_headers<M: Message>(
    msg: &M,
    code: &str,
    cause: &str,
    source: &str,
) -> OwnedHeaders {
    copy_headers(msg)
        .insert(Header {
            key: dlq_headers::ERROR,
            value: Some(code),
        })
        .insert(Header {
            key: dlq_headers::CAUSE,
            value: Some(cause),
        })
        .insert(Header {
            key: dlq_headers::SOURCE,
            value: Some(source),
        })
}

/// The record's headers, copied.
pub(crate) fn copy_headers<M: Message>(msg: &M) -> OwnedHeaders {
    let mut headers = OwnedHeaders::new();
    if let Some(h) = msg.headers() {
        for h in h.iter() {
            headers = headers.insert(Header {
                key: h.key,
                value: h.value,
            });
        }
    }
    headers
}
