//! Amazon States Language: the pure half of Expressway.
//!
//! This crate parses and validates state machine definitions and evaluates everything that needs no
//! I/O: JSONPath, intrinsic functions, Choice rules and the data-flow fields. It reads no clock and
//! draws no randomness of its own; callers pass those in.

pub mod choice;
pub mod depth;
pub mod intrinsic;
mod json;
pub mod jsonata;
pub mod jsonpath;
pub mod load;
pub mod model;
pub mod template;
pub mod timestamp;
pub mod validate;

pub use load::{load, load_str, LoadError};
pub use model::StateMachine;

/// Validates a definition (AWS's diagnostics) and loads it. Every problem comes back as a
/// [`validate::Validation`] that failed, so callers report one shape whatever went wrong.
pub fn load_validated(
    text: &str,
    machine_type: validate::MachineType,
) -> Result<StateMachine, validate::Validation> {
    let report = validate::validate(text, machine_type);
    if !report.is_ok() {
        return Err(report);
    }
    load_str(text).map_err(|e| validate::Validation {
        diagnostics: vec![validate::Diagnostic {
            severity: validate::Severity::Error,
            code: validate::codes::SCHEMA_VALIDATION_FAILED,
            message: e.message,
            location: Some(e.location),
        }],
    })
}
