//! JSONata for Expressway.

mod error;

pub use error::{Error, Result};
