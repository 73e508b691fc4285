//! JSONata errors: the reference implementation's codes (`S0xxx` syntax, `T` type, `D` dynamic, `U` host limits).

use serde_json::Value;

/// An error raised while parsing or evaluating an expression (boxed: results stay small).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{}: {}", .0.code, .0.message)]
pub struct Error(Box<ErrorDetail>);

/// The fields of an [`Error`] (reachable through `Deref`).
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorDetail {
    /// The reference implementation's code, e.g. `"T2002"`.
    pub code: &'static str,
    /// Human-readable message (the reference implementation's wording where tests check it).
    pub message: String,
    /// Character offset in the expression, when known.
    pub position: Option<usize>,
    /// The offending token, when relevant.
    pub token: Option<String>,
    /// The offending value, when relevant.
    pub value: Option<Value>,
    /// The function that raised it, when relevant.
    pub function_name: Option<String>,
}

impl Error {
    /// An error with a code and message only.
    pub fn new(code: &'static str, message: impl Into<String>) -> Error {
        Error(Box::new(ErrorDetail {
            code,
            message: message.into(),
            position: None,
            token: None,
            value: None,
            function_name: None,
        }))
    }

    /// Sets the position.
    pub fn at(mut self, position: usize) -> Error {
        if self.position.is_none() {
            self.position = Some(position);
        }
        self
    }

    /// Sets the token.
    pub fn token(mut self, token: impl Into<String>) -> Error {
        self.token = Some(token.into());
        self
    }

    /// Sets the value.
    pub fn value(mut self, value: Value) -> Error {
        self.value = Some(value);
        self
    }
}

impl std::ops::Deref for Error {
    type Target = ErrorDetail;
    fn deref(&self) -> &ErrorDetail {
        &self.0
    }
}

impl std::ops::DerefMut for Error {
    fn deref_mut(&mut self) -> &mut ErrorDetail {
        &mut self.0
    }
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
