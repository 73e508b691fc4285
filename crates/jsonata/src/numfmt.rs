//! Placeholder until the number formatting module lands.
use crate::error::{Error, Result};
/// `$formatInteger`.
pub fn format_integer(_n: f64, _picture: &str) -> Result<String> {
    Err(Error::new("D3999", "not implemented"))
}
/// `$parseInteger`.
pub fn parse_integer(_s: &str, _picture: &str) -> Result<Option<f64>> {
    Err(Error::new("D3999", "not implemented"))
}
/// `$formatNumber`.
pub fn format_number(
    _n: f64,
    _picture: &str,
    _options: Option<&serde_json::Map<String, serde_json::Value>>,
) -> Result<String> {
    Err(Error::new("D3999", "not implemented"))
}
/// `$formatBase`.
pub fn format_base(_n: f64, _radix: Option<f64>) -> Result<String> {
    Err(Error::new("D3999", "not implemented"))
}
