//! Placeholder until the date/time module lands.
use crate::error::{Error, Result};
/// `$fromMillis`.
pub fn format_datetime(
    _millis: f64,
    _picture: Option<&str>,
    _timezone: Option<&str>,
) -> Result<String> {
    Err(Error::new("D3999", "not implemented"))
}
/// `$toMillis`.
pub fn parse_datetime(_s: &str, _picture: Option<&str>) -> Result<Option<f64>> {
    Err(Error::new("D3999", "not implemented"))
}
