//! JSONata for Expressway.

pub mod datetime;
mod error;
pub mod numfmt;

pub use error::{Error, Result};
