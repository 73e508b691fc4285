//! Numbers Expressway cannot represent exactly.
//!
//! Values are `serde_json::Value`s without `arbitrary_precision`: an integer is an `i64` or a
//! `u64`, anything else a finite `f64`. serde_json turns a larger integer literal into the
//! nearest double (`18446744073709551617123` becomes `1.8446744073709552e22`) and refuses a
//! literal beyond the double range (`1e400`) with a generic syntax error. AWS (Jackson) keeps
//! big integers exactly (`BigIntegerNode`); rather than change a user's number silently,
//! Expressway refuses such input with [`OutOfRangeNumber`], which names the literal.

/// A number literal of a JSON text that has no exact `serde_json::Value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutOfRangeNumber {
    /// The literal (first 40 characters).
    pub literal: String,
    /// Byte offset of the literal in the text.
    pub offset: usize,
    /// Whether the literal is an integer (outside i64/u64) rather than a float beyond f64.
    pub integer: bool,
}

impl std::fmt::Display for OutOfRangeNumber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.integer {
            write!(
                f,
                "the integer {} at byte {} is outside the exact range (-9223372036854775808 to 18446744073709551615); it would be rounded to a double, so it is refused: send it as a string",
                self.literal, self.offset
            )
        } else {
            write!(
                f,
                "the number {} at byte {} is beyond the range of a double (about 1.8e308)",
                self.literal, self.offset
            )
        }
    }
}

/// Finds the first number literal of `text` (outside strings) that is an integer beyond
/// i64/u64 or a float beyond the finite f64 range. A lexical scan: it does not validate JSON
/// (the parser does that), and numbers inside strings are never looked at.
pub fn find_out_of_range_number(text: &str) -> Option<OutOfRangeNumber> {
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'"' => {
                i += 1;
                while i < bytes.len() {
                    match bytes[i] {
                        b'\\' => i += 2,
                        b'"' => break,
                        _ => i += 1,
                    }
                }
                i += 1;
            }
            b'-' | b'0'..=b'9' => {
                let start = i;
                let mut integer = true;
                i += 1;
                while i < bytes.len() {
                    match bytes[i] {
                        b'0'..=b'9' => {}
                        b'.' | b'e' | b'E' | b'+' | b'-' => integer = false,
                        _ => break,
                    }
                    i += 1;
                }
                let literal = &text[start..i];
                if let Some(bad) = check_literal(literal, integer) {
                    return Some(OutOfRangeNumber {
                        literal: bad.chars().take(40).collect(),
                        offset: start,
                        integer,
                    });
                }
            }
            _ => i += 1,
        }
    }
    None
}

fn check_literal(literal: &str, integer: bool) -> Option<&str> {
    if integer {
        // 19 digits always fit an i64 (or a u64 when positive); only longer ones are parsed.
        let digits = literal.len() - usize::from(literal.starts_with('-'));
        let fits = digits < 19 || literal.parse::<i64>().is_ok() || literal.parse::<u64>().is_ok();
        (!fits && literal != "-").then_some(literal)
    } else {
        // Only literals with an exponent or very many digits can overflow.
        let risky = literal.contains(['e', 'E']) || literal.len() > 300;
        (risky && literal.parse::<f64>().is_ok_and(f64::is_infinite)).then_some(literal)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integers_beyond_u64_and_i64_are_found() {
        let hit = find_out_of_range_number(r#"{"a":[1,18446744073709551617123]}"#).expect("found");
        assert_eq!(hit.literal, "18446744073709551617123");
        assert_eq!(hit.offset, 8);
        assert!(hit.integer);
        assert!(find_out_of_range_number("-9223372036854775809").is_some());
        assert!(find_out_of_range_number("18446744073709551616").is_some());
    }

    #[test]
    fn the_exact_range_and_strings_pass() {
        for ok in [
            "18446744073709551615",
            "-9223372036854775808",
            "0",
            "-0",
            "1.5e300",
            "1e-400",
            r#""18446744073709551617123""#,
            r#""1e400 \" 99999999999999999999999""#,
            r#"{"k\\":12345678901234567890123.5}"#,
        ] {
            assert_eq!(find_out_of_range_number(ok), None, "{ok}");
        }
    }

    #[test]
    fn floats_beyond_the_double_range_are_found() {
        let hit = find_out_of_range_number(r#"{"x":1e400}"#).expect("found");
        assert_eq!(hit.literal, "1e400");
        assert!(!hit.integer);
        assert!(find_out_of_range_number("-2.5E+309").is_some());
        assert!(hit.to_string().contains("1e400"));
    }
}
