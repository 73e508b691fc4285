//! Definition text to JSON values, the way AWS (Jackson) reads it, with Jackson's nesting bound.
//!
//! serde_json's own recursion limit (128) is both lower than Jackson's (1000) and, past it, gives a
//! message AWS never prints. Here the text's depth is measured first without recursion; text nested
//! deeper than [`MAX_JSON_DEPTH`](crate::depth::MAX_JSON_DEPTH) gets the Jackson-shaped diagnostic,
//! anything else is parsed by serde_json with its limit lifted, on a stack large enough for it.

use crate::depth::{json_text_depth, with_stack, MAX_JSON_DEPTH};
use crate::validate::jackson::{self, JacksonError};
use serde_json::de::StrRead;
use serde_json::{Deserializer, Value};

/// Runs `read` on a deserializer of `text` with serde_json's recursion limit lifted, once the
/// nesting of what it can read is known to be within [`MAX_JSON_DEPTH`].
fn bounded<T>(
    text: &str,
    read: impl FnOnce(Deserializer<StrRead<'_>>) -> Result<T, serde_json::Error>,
) -> Result<T, Error> {
    if json_text_depth(text) > MAX_JSON_DEPTH {
        // The scanner reports the first problem in document order: a syntax error before the
        // excess, or the excess itself. When it finds neither, the deep part follows the first
        // value, where serde_json stops (trailing text) without descending into it.
        if let Some(e) = jackson::first_error(text) {
            return Err(Error::Jackson(e));
        }
    }
    with_stack(|| {
        let mut de = Deserializer::from_str(text);
        de.disable_recursion_limit();
        read(de)
    })
    .map_err(Error::Serde)
}

/// Why definition text was not read.
#[derive(Debug)]
pub(crate) enum Error {
    /// Jackson's description (syntax error or excessive nesting).
    Jackson(JacksonError),
    /// serde_json's.
    Serde(serde_json::Error),
}

/// The first JSON value of `text`, ignoring whatever follows it (Jackson's `readTree`); `None` when
/// the text holds no value. Errors are Jackson-shaped.
pub(crate) fn parse_first(text: &str) -> Result<Option<Value>, JacksonError> {
    let first = bounded(text, |de| de.into_iter::<Value>().next().transpose());
    match first {
        Ok(v) => Ok(v),
        Err(Error::Jackson(e)) => Err(e),
        Err(Error::Serde(serde_error)) => Err(jackson::first_error(text).unwrap_or_else(|| {
            // Our scanner accepted what serde_json refused (should not happen).
            JacksonError {
                message: serde_error.to_string(),
                location: "/".to_string(),
            }
        })),
    }
}

/// The whole of `text` as one JSON value (trailing text is an error); the message on failure.
pub(crate) fn parse_whole(text: &str) -> Result<Value, String> {
    bounded(text, |mut de| {
        use serde::Deserialize;
        let v = Value::deserialize(&mut de)?;
        de.end()?;
        Ok(v)
    })
    .map_err(|e| match e {
        Error::Jackson(e) => e.message,
        Error::Serde(e) => e.to_string(),
    })
}
