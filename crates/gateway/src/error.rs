//! AWS's JSON error shape: `{"__type": "...", "message": "..."}` with an HTTP status.

use serde_json::json;

/// An API error as the client sees it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct ApiError {
    /// The `__type` (AWS's exception name, without namespace).
    pub kind: &'static str,
    /// The `message`.
    pub message: String,
    /// HTTP status code.
    pub status: u16,
    /// `reason` of a `ValidationException` (`API_DOES_NOT_SUPPORT_LABELED_ARNS`,
    /// `INVALID_ROUTING_CONFIGURATION`, ...).
    pub reason: Option<&'static str>,
}

impl ApiError {
    /// A client error (HTTP 400).
    pub fn new(kind: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            kind,
            message: message.into(),
            status: 400,
            reason: None,
        }
    }

    /// With an HTTP status other than 400.
    pub fn with_status(mut self, status: u16) -> ApiError {
        self.status = status;
        self
    }

    /// With a `reason` member (AWS's `ValidationExceptionReason`).
    pub fn with_reason(mut self, reason: &'static str) -> ApiError {
        self.reason = Some(reason);
        self
    }

    /// `ValidationException` (400).
    pub fn validation(message: impl Into<String>) -> ApiError {
        ApiError::new("ValidationException", message)
    }

    /// AWS's message for a missing required member.
    pub fn missing(field: &str) -> ApiError {
        ApiError::validation(format!(
            "1 validation error detected: Value null at '{field}' failed to satisfy constraint: Member must not be null"
        ))
    }

    /// `SerializationException` (400): the body is not what the operation's shape expects.
    pub fn serialization(message: impl Into<String>) -> ApiError {
        ApiError::new("SerializationException", message)
    }

    /// `InvalidArn` (400).
    pub fn invalid_arn(arn: &str) -> ApiError {
        ApiError::new("InvalidArn", format!("Invalid Arn: '{arn}'"))
    }

    /// `StateMachineDoesNotExist` (400).
    pub fn no_machine(arn: &str) -> ApiError {
        ApiError::new(
            "StateMachineDoesNotExist",
            format!("State Machine Does Not Exist: '{arn}'"),
        )
    }

    /// `ResourceNotFound` (400).
    pub fn not_found(arn: &str) -> ApiError {
        ApiError::new("ResourceNotFound", format!("Resource not found: '{arn}'"))
    }

    /// `UnknownOperationException` (400).
    pub fn unknown_operation(message: impl Into<String>) -> ApiError {
        ApiError::new("UnknownOperationException", message)
    }

    /// The service could not reach Kafka (503, retryable by the SDKs).
    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new("ServiceUnavailable", message).with_status(503)
    }

    /// The response body.
    pub fn body(&self) -> String {
        let mut body = json!({"__type": self.kind, "message": self.message});
        if let Some(r) = self.reason {
            body["reason"] = json!(r);
        }
        body.to_string()
    }
}
