//! Amazon States Language: the pure half of Expressway.
//!
//! This crate parses and validates state machine definitions and evaluates everything that needs no
//! I/O: JSONPath, intrinsic functions, Choice rules and the data-flow fields. It reads no clock and
//! draws no randomness of its own; callers pass those in.

pub mod choice;
pub mod intrinsic;
pub mod jsonata;
pub mod jsonpath;
pub mod load;
pub mod model;
pub mod template;
pub mod timestamp;
pub mod validate;

pub use load::{load, load_str, LoadError};
pub use model::StateMachine;
