//! Number formatting built-ins: `$formatInteger`, `$parseInteger`, `$formatNumber`, `$formatBase`.
//!
//! The behaviour follows the reference implementation (jsonata-js), which in turn follows the
//! XPath/XQuery 3.1 `fn:format-integer` and `fn:format-number` functions, including a few of the
//! reference implementation's quirks where they are observable (they are noted in comments).
//! Numbers are JS doubles: where the reference relies on JS number-to-string conversion, the
//! helpers [`js_number_to_string`] and [`js_to_fixed`] reproduce it.

// `crate::Error` is shared with the evaluator and deliberately carries its context inline.
#![allow(clippy::result_large_err)]

use serde_json::{Map, Value};

use crate::{Error, Result};

// ---------------------------------------------------------------------------------------------
// JS number helpers
// ---------------------------------------------------------------------------------------------

/// Digits (as ASCII) and decimal exponent of a scientific rendering `d.ddd…e±x`.
fn split_scientific(sci: &str) -> (Vec<u8>, i32) {
    let (mantissa, exponent) = sci.split_once('e').unwrap_or((sci, "0"));
    let digits: Vec<u8> = mantissa.bytes().filter(u8::is_ascii_digit).collect();
    (digits, exponent.parse().unwrap_or(0))
}

fn digits_to_f64(digits: &[u8], exponent: i32) -> f64 {
    let s = String::from_utf8_lossy(digits);
    format!("0.{s}e{exponent}").parse().unwrap_or(f64::NAN)
}

/// Shortest round-trip digits and decimal exponent of a finite, non-zero, positive double:
/// `value = 0.d1d2d3... × 10^n`. When two shortest candidates are equally close to the value,
/// the one with an even last digit is chosen (as ECMAScript's Number::toString requires).
fn shortest_digits(value: f64) -> (Vec<u8>, i32) {
    let (mut digits, exponent) = split_scientific(&format!("{value:e}"));
    let n = exponent + 1;
    let k = digits.len();
    if k < 16 {
        // with fewer digits the candidates are further apart than the double's precision,
        // so both cannot round-trip
        return (digits, n);
    }
    // exact expansion: is the value exactly halfway between two k-digit candidates?
    let (exact, exact_exponent) = split_scientific(&format!("{value:.1100e}"));
    if exact_exponent == exponent
        && exact.len() > k
        && exact[k] == b'5'
        && exact[k + 1..].iter().all(|&d| d == b'0')
    {
        let lower = exact[..k].to_vec();
        let mut upper = lower.clone();
        let mut i = k;
        let mut carried = true;
        while carried && i > 0 {
            i -= 1;
            if upper[i] == b'9' {
                upper[i] = b'0';
            } else {
                upper[i] += 1;
                carried = false;
            }
        }
        if !carried {
            let even = |d: &[u8]| d.last().is_some_and(|&c| (c - b'0').is_multiple_of(2));
            let preferred = if even(&lower) { lower } else { upper };
            if digits_to_f64(&preferred, n) == value {
                digits = preferred;
                while digits.len() > 1 && digits.last() == Some(&b'0') {
                    digits.pop();
                }
            }
        }
    }
    (digits, n)
}

/// JS `Number.prototype.toString()` (radix 10).
pub fn js_number_to_string(value: f64) -> String {
    if value.is_nan() {
        return "NaN".into();
    }
    if value == 0.0 {
        return "0".into();
    }
    if value.is_infinite() {
        return if value > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    let sign = if value < 0.0 { "-" } else { "" };
    let (digits, n) = shortest_digits(value.abs());
    let k = digits.len() as i32;
    let ds: String = digits.iter().map(|&d| d as char).collect();
    let body = if k <= n && n <= 21 {
        format!("{ds}{}", "0".repeat((n - k) as usize))
    } else if 0 < n && n <= 21 {
        format!("{}.{}", &ds[..n as usize], &ds[n as usize..])
    } else if -6 < n && n <= 0 {
        format!("0.{}{ds}", "0".repeat((-n) as usize))
    } else {
        let e = n - 1;
        let esign = if e < 0 { '-' } else { '+' };
        if k == 1 {
            format!("{ds}e{esign}{}", e.abs())
        } else {
            format!("{}.{}e{esign}{}", &ds[..1], &ds[1..], e.abs())
        }
    };
    format!("{sign}{body}")
}

/// JS `Number.prototype.toFixed(dp)`: exact decimal value, ties rounded away from zero;
/// magnitudes of 1e21 and above fall back to `toString()`.
pub fn js_to_fixed(value: f64, dp: usize) -> String {
    if !value.is_finite() || value.abs() >= 1e21 {
        return js_number_to_string(value);
    }
    // The exact decimal expansion of a double has at most 1074 fractional digits.
    let exact = format!("{:.1100}", value.abs());
    let (int_part, frac_part) = exact.split_once('.').unwrap_or((exact.as_str(), ""));
    let mut digits: Vec<u8> = int_part.bytes().map(|b| b - b'0').collect();
    let int_len = digits.len();
    let frac: Vec<u8> = frac_part.bytes().map(|b| b - b'0').collect();
    digits.extend(frac.iter().take(dp));
    while digits.len() < int_len + dp {
        digits.push(0);
    }
    if frac.get(dp).is_some_and(|&d| d >= 5) {
        // round half up on the exact value (JS picks the larger n on ties)
        let mut i = digits.len();
        loop {
            if i == 0 {
                digits.insert(0, 1);
                break;
            }
            i -= 1;
            if digits[i] == 9 {
                digits[i] = 0;
            } else {
                digits[i] += 1;
                break;
            }
        }
    }
    let split = digits.len() - dp;
    let mut out = String::new();
    let negative = value < 0.0;
    if negative {
        out.push('-');
    }
    out.extend(digits[..split].iter().map(|&d| (b'0' + d) as char));
    if dp > 0 {
        out.push('.');
        out.extend(digits[split..].iter().map(|&d| (b'0' + d) as char));
    }
    out
}

/// JS `Math.round`: nearest integer, ties towards +∞.
fn js_math_round(x: f64) -> f64 {
    if !x.is_finite() {
        return x;
    }
    let floor = x.floor();
    let r = if x - floor >= 0.5 { floor + 1.0 } else { floor };
    if r == 0.0 && x < 0.0 {
        -0.0
    } else {
        r
    }
}

/// Shifts the decimal point of `value` by `places` through its JS string form (as the reference does,
/// to avoid binary multiplication errors).
fn shift_decimal(value: f64, places: i32) -> f64 {
    let s = js_number_to_string(value);
    let (mantissa, exp) = match s.split_once('e') {
        Some((m, e)) => (m.to_string(), e.parse::<i32>().unwrap_or(0)),
        None => (s.clone(), 0),
    };
    format!("{mantissa}e{}", exp + places)
        .parse::<f64>()
        .unwrap_or(f64::NAN)
}

/// JSONata `$round(value, precision)`: round half to even at `precision` decimal places.
pub fn js_round(value: f64, precision: i32) -> f64 {
    let mut arg = value;
    if precision != 0 {
        arg = shift_decimal(arg, precision);
    }
    let mut result = js_math_round(arg);
    let diff = result - arg;
    if diff.abs() == 0.5 && (result % 2.0).abs() == 1.0 {
        result -= 1.0;
    }
    if precision != 0 {
        result = shift_decimal(result, -precision);
    }
    if result == 0.0 {
        result = 0.0;
    }
    result
}

/// JS `parseInt(s)` without a radix: optional whitespace and sign, then the longest run of
/// ASCII digits (hexadecimal after `0x`).
pub(crate) fn js_parse_int(s: &str) -> f64 {
    let t = s.trim_start();
    let (negative, rest) = match t.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    // like parseInt, a "0x" prefix means hexadecimal
    let (radix, rest) = match rest.get(..2) {
        Some("0x" | "0X") => (16, &rest[2..]),
        _ => (10, rest),
    };
    let digits: String = rest.chars().take_while(|c| c.is_digit(radix)).collect();
    if digits.is_empty() {
        return f64::NAN;
    }
    let v = if radix == 10 {
        digits.parse::<f64>().unwrap_or(f64::NAN)
    } else {
        digits
            .chars()
            .filter_map(|c| c.to_digit(radix))
            .fold(0.0, |acc, d| acc * f64::from(radix) + f64::from(d))
    };
    if negative {
        -v
    } else {
        v
    }
}

/// JS `String.prototype.substr(start, length?)` on a char vector.
fn js_substr(s: &[char], start: isize, len: Option<isize>) -> Vec<char> {
    let size = s.len() as isize;
    let start = if start < 0 {
        (size + start).max(0)
    } else {
        start.min(size)
    };
    let len = len.unwrap_or(size).max(0);
    let end = (start + len).min(size);
    if end <= start {
        return Vec::new();
    }
    s[start as usize..end as usize].to_vec()
}

/// JS `String.prototype.slice(start, end?)` on a char vector.
fn js_slice(s: &[char], start: isize, end: Option<isize>) -> Vec<char> {
    let size = s.len() as isize;
    let norm = |i: isize| {
        if i < 0 {
            (size + i).max(0)
        } else {
            i.min(size)
        }
    };
    let from = norm(start);
    let to = norm(end.unwrap_or(size));
    if to <= from {
        return Vec::new();
    }
    s[from as usize..to as usize].to_vec()
}

// ---------------------------------------------------------------------------------------------
// Integer pictures (fn:format-integer), shared with the date/time module
// ---------------------------------------------------------------------------------------------

/// First code points of the Unicode decimal digit groups the reference recognises.
const DECIMAL_GROUPS: [u32; 37] = [
    0x30, 0x0660, 0x06F0, 0x07C0, 0x0966, 0x09E6, 0x0A66, 0x0AE6, 0x0B66, 0x0BE6, 0x0C66, 0x0CE6,
    0x0D66, 0x0DE6, 0x0E50, 0x0ED0, 0x0F20, 0x1040, 0x1090, 0x17E0, 0x1810, 0x1946, 0x19D0, 0x1A80,
    0x1A90, 0x1B50, 0x1BB0, 0x1C40, 0x1C50, 0xA620, 0xA8D0, 0xA900, 0xA9D0, 0xA9F0, 0xAA50, 0xABF0,
    0xFF10,
];

fn decimal_group(c: char) -> Option<u32> {
    let cp = c as u32;
    DECIMAL_GROUPS
        .iter()
        .copied()
        .find(|&g| cp >= g && cp <= g + 9)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Primary {
    Decimal,
    Letters,
    Roman,
    Words,
    Sequence,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LetterCase {
    Upper,
    Lower,
    Title,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GroupSeparator {
    /// Number of digit positions to the right of the separator.
    pub(crate) position: usize,
    pub(crate) character: char,
}

/// An analysed integer picture (`fn:format-integer`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct IntegerFormat {
    pub(crate) primary: Primary,
    pub(crate) case: LetterCase,
    pub(crate) ordinal: bool,
    /// Decimal pictures only: the code point of the digit zero of the digit family.
    pub(crate) zero_code: u32,
    /// Decimal pictures only (`None` otherwise, like the reference's `undefined`).
    pub(crate) mandatory_digits: Option<usize>,
    pub(crate) optional_digits: Option<usize>,
    /// Regular grouping: every `position` digits, `character`.
    pub(crate) regular: Option<GroupSeparator>,
    /// Irregular grouping separators, leftmost (largest position) first.
    pub(crate) separators: Vec<GroupSeparator>,
    /// The primary token when it is an unsupported numbering sequence.
    pub(crate) token: String,
    /// For date/time parsing: the exact number of digits to read, when fixed.
    pub(crate) parse_width: Option<usize>,
}

fn gcd(a: usize, b: usize) -> usize {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// The interval of regularly spaced grouping positions, or 0 when they are not regular.
fn regular_interval(positions: &[usize]) -> usize {
    if positions.is_empty() {
        return 0;
    }
    let factor = positions.iter().copied().reduce(gcd).unwrap_or(0);
    if factor == 0 {
        return 0;
    }
    for index in 1..=positions.len() {
        if !positions.contains(&(index * factor)) {
            return 0;
        }
    }
    factor
}

pub(crate) fn analyse_integer_picture(picture: &str) -> Result<IntegerFormat> {
    let mut format = IntegerFormat {
        primary: Primary::Decimal,
        case: LetterCase::Lower,
        ordinal: false,
        zero_code: 0x30,
        mandatory_digits: None,
        optional_digits: None,
        regular: None,
        separators: Vec::new(),
        token: String::new(),
        parse_width: None,
    };
    let primary = match picture.rfind(';') {
        None => picture,
        Some(i) => {
            if picture[i + 1..].starts_with('o') {
                format.ordinal = true;
            }
            &picture[..i]
        }
    };
    match primary {
        "A" => {
            format.case = LetterCase::Upper;
            format.primary = Primary::Letters;
        }
        "a" => format.primary = Primary::Letters,
        "I" => {
            format.case = LetterCase::Upper;
            format.primary = Primary::Roman;
        }
        "i" => format.primary = Primary::Roman,
        "W" => {
            format.case = LetterCase::Upper;
            format.primary = Primary::Words;
        }
        "Ww" => {
            format.case = LetterCase::Title;
            format.primary = Primary::Words;
        }
        "w" => format.primary = Primary::Words,
        _ => {
            let mut zero_code: Option<u32> = None;
            let mut mandatory = 0usize;
            let mut optional = 0usize;
            let mut separators = Vec::new();
            let mut position = 0usize;
            for c in primary.chars().rev() {
                if let Some(group) = decimal_group(c) {
                    mandatory += 1;
                    position += 1;
                    match zero_code {
                        None => zero_code = Some(group),
                        Some(z) if z != group => {
                            return Err(Error::new(
                                "D3131",
                                "In a decimal digit pattern, all digits must be from the same decimal group",
                            ));
                        }
                        Some(_) => {}
                    }
                } else if c == '#' {
                    position += 1;
                    optional += 1;
                } else {
                    separators.push(GroupSeparator {
                        position,
                        character: c,
                    });
                }
            }
            if mandatory > 0 {
                format.primary = Primary::Decimal;
                format.zero_code = zero_code.unwrap_or(0x30);
                format.mandatory_digits = Some(mandatory);
                format.optional_digits = Some(optional);
                let same_char = separators
                    .iter()
                    .all(|s| Some(s.character) == separators.first().map(|f| f.character));
                let positions: Vec<usize> = separators.iter().map(|s| s.position).collect();
                let interval = if same_char {
                    regular_interval(&positions)
                } else {
                    0
                };
                if interval > 0 {
                    format.regular = Some(GroupSeparator {
                        position: interval,
                        character: separators[0].character,
                    });
                } else {
                    separators.reverse();
                    format.separators = separators;
                }
            } else {
                format.primary = Primary::Sequence;
                format.token = primary.to_string();
            }
        }
    }
    Ok(format)
}

const FEW: [&str; 20] = [
    "Zero",
    "One",
    "Two",
    "Three",
    "Four",
    "Five",
    "Six",
    "Seven",
    "Eight",
    "Nine",
    "Ten",
    "Eleven",
    "Twelve",
    "Thirteen",
    "Fourteen",
    "Fifteen",
    "Sixteen",
    "Seventeen",
    "Eighteen",
    "Nineteen",
];
const ORDINALS: [&str; 20] = [
    "Zeroth",
    "First",
    "Second",
    "Third",
    "Fourth",
    "Fifth",
    "Sixth",
    "Seventh",
    "Eighth",
    "Ninth",
    "Tenth",
    "Eleventh",
    "Twelfth",
    "Thirteenth",
    "Fourteenth",
    "Fifteenth",
    "Sixteenth",
    "Seventeenth",
    "Eighteenth",
    "Nineteenth",
];
const DECADES: [&str; 9] = [
    "Twenty", "Thirty", "Forty", "Fifty", "Sixty", "Seventy", "Eighty", "Ninety", "Hundred",
];
const MAGNITUDES: [&str; 4] = ["Thousand", "Million", "Billion", "Trillion"];

fn words_lookup(num: f64, prev: bool, ordinal: bool) -> String {
    let mut words;
    if num <= 19.0 {
        let i = num.max(0.0) as usize;
        words = String::from(if prev { " and " } else { "" });
        words.push_str(if ordinal { ORDINALS[i] } else { FEW[i] });
    } else if num < 100.0 {
        let tens = (num / 10.0).floor() as usize;
        let remainder = num % 10.0;
        words = String::from(if prev { " and " } else { "" });
        words.push_str(DECADES[tens - 2]);
        if remainder > 0.0 {
            words.push('-');
            words.push_str(&words_lookup(remainder, false, ordinal));
        } else if ordinal {
            words.pop();
            words.push_str("ieth");
        }
    } else if num < 1000.0 {
        let hundreds = (num / 100.0).floor() as usize;
        let remainder = num % 100.0;
        words = String::from(if prev { ", " } else { "" });
        words.push_str(FEW[hundreds]);
        words.push_str(" Hundred");
        if remainder > 0.0 {
            words.push_str(&words_lookup(remainder, true, ordinal));
        } else if ordinal {
            words.push_str("th");
        }
    } else {
        let mut mag = ((num.log10() / 3.0).floor() as usize).max(1);
        if mag > MAGNITUDES.len() {
            mag = MAGNITUDES.len();
        }
        let factor = 10f64.powi(mag as i32 * 3);
        let mant = (num / factor).floor();
        let remainder = num - mant * factor;
        words = String::from(if prev { ", " } else { "" });
        words.push_str(&words_lookup(mant, false, false));
        words.push(' ');
        words.push_str(MAGNITUDES[mag - 1]);
        if remainder > 0.0 {
            words.push_str(&words_lookup(remainder, true, ordinal));
        } else if ordinal {
            words.push_str("th");
        }
    }
    words
}

/// An English number in words, title case ("Two Thousand and Eighteen").
pub(crate) fn number_to_words(value: f64, ordinal: bool) -> String {
    words_lookup(value, false, ordinal)
}

/// The word table used for parsing numbers in words, in the reference's insertion order
/// (the order matters for the parsing regex's alternation).
pub(crate) fn word_values() -> &'static [(String, f64)] {
    static TABLE: std::sync::OnceLock<Vec<(String, f64)>> = std::sync::OnceLock::new();
    TABLE.get_or_init(build_word_values)
}

fn build_word_values() -> Vec<(String, f64)> {
    let mut out: Vec<(String, f64)> = Vec::new();
    let mut set = |k: String, v: f64| {
        if let Some(e) = out.iter_mut().find(|(key, _)| *key == k) {
            e.1 = v;
        } else {
            out.push((k, v));
        }
    };
    for (i, w) in FEW.iter().enumerate() {
        set(w.to_lowercase(), i as f64);
    }
    for (i, w) in ORDINALS.iter().enumerate() {
        set(w.to_lowercase(), i as f64);
    }
    for (i, w) in DECADES.iter().enumerate() {
        let lw = w.to_lowercase();
        let v = ((i + 2) * 10) as f64;
        // the reference derives "twentieth" etc. by dropping the last letter ("hundreieth" too)
        let ieth = format!("{}ieth", &lw[..lw.len() - 1]);
        set(lw, v);
        set(ieth, v);
    }
    set("hundredth".into(), 100.0);
    for (i, w) in MAGNITUDES.iter().enumerate() {
        let lw = w.to_lowercase();
        let v = 10f64.powi((i as i32 + 1) * 3);
        set(format!("{lw}th"), v);
        set(lw, v);
    }
    out
}

/// Parses a (lower-case) English number in words; NaN when a word is unknown.
pub(crate) fn words_to_number(text: &str) -> f64 {
    let table = word_values();
    let parts = split_words(text);
    let mut segs: Vec<f64> = vec![0.0];
    for part in parts {
        let value = table
            .iter()
            .find(|(k, _)| *k == part)
            .map_or(f64::NAN, |(_, v)| *v);
        if value < 100.0 {
            let mut top = segs.pop().unwrap_or(f64::NAN);
            if top >= 1000.0 {
                segs.push(top);
                top = 0.0;
            }
            segs.push(top + value);
        } else {
            let top = segs.pop().unwrap_or(f64::NAN);
            segs.push(top * value);
        }
    }
    segs.iter().fold(0.0, |a, b| a + b)
}

/// Splits like the reference's `/,\s|\sand\s|[\s\\-]/`.
fn split_words(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut parts = Vec::new();
    let mut current = String::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c == ',' && chars.get(i + 1).is_some_and(|n| n.is_whitespace()) {
            parts.push(std::mem::take(&mut current));
            i += 2;
        } else if c.is_whitespace()
            && chars.get(i + 1) == Some(&'a')
            && chars.get(i + 2) == Some(&'n')
            && chars.get(i + 3) == Some(&'d')
            && chars.get(i + 4).is_some_and(|n| n.is_whitespace())
        {
            parts.push(std::mem::take(&mut current));
            i += 5;
        } else if c.is_whitespace() || c == '\\' || c == '-' {
            parts.push(std::mem::take(&mut current));
            i += 1;
        } else {
            current.push(c);
            i += 1;
        }
    }
    parts.push(current);
    parts
}

const ROMAN_NUMERALS: [(f64, &str); 13] = [
    (1000.0, "m"),
    (900.0, "cm"),
    (500.0, "d"),
    (400.0, "cd"),
    (100.0, "c"),
    (90.0, "xc"),
    (50.0, "l"),
    (40.0, "xl"),
    (10.0, "x"),
    (9.0, "ix"),
    (5.0, "v"),
    (4.0, "iv"),
    (1.0, "i"),
];

/// Largest value rendered in roman numerals (the reference recurses once per numeral and
/// overflows its stack long before this).
const ROMAN_LIMIT: f64 = 1e7;

pub(crate) fn decimal_to_roman(value: f64) -> Result<String> {
    if value > ROMAN_LIMIT {
        return Err(Error::new(
            "D3130",
            "Formatting a number this large in roman numerals is not supported",
        )
        .value(Value::from(value)));
    }
    let mut out = String::new();
    let mut v = value;
    'outer: loop {
        for (n, s) in ROMAN_NUMERALS {
            if v >= n {
                out.push_str(s);
                v -= n;
                continue 'outer;
            }
        }
        break;
    }
    Ok(out)
}

/// Roman numerals (upper case) to a number; NaN for an unknown letter.
pub(crate) fn roman_to_decimal(roman: &str) -> f64 {
    let mut decimal = 0.0;
    let mut max = 1.0;
    for c in roman.chars().rev() {
        let value = match c {
            'M' => 1000.0,
            'D' => 500.0,
            'C' => 100.0,
            'L' => 50.0,
            'X' => 10.0,
            'V' => 5.0,
            'I' => 1.0,
            _ => f64::NAN,
        };
        if value < max {
            decimal -= value;
        } else {
            max = value;
            decimal += value;
        }
    }
    decimal
}

pub(crate) fn decimal_to_letters(value: f64, upper: bool) -> String {
    let a = if upper { 'A' } else { 'a' } as u32;
    let mut letters = Vec::new();
    let mut v = value;
    while v > 0.0 {
        let code = ((v - 1.0) % 26.0) as u32 + a;
        letters.push(char::from_u32(code).unwrap_or('?'));
        v = ((v - 1.0) / 26.0).floor();
    }
    letters.iter().rev().collect()
}

pub(crate) fn letters_to_decimal(letters: &str, upper: bool) -> f64 {
    let a = if upper { 'A' } else { 'a' } as u32 as f64;
    letters
        .chars()
        .rev()
        .enumerate()
        .map(|(i, c)| (c as u32 as f64 - a + 1.0) * 26f64.powi(i as i32))
        .sum()
}

/// D3130: a numbering sequence other than decimal digits, letters, roman numerals or words.
pub(crate) fn sequence_error(token: &str) -> Error {
    Error::new(
        "D3130",
        format!(
            "Formatting or parsing an integer as a sequence starting with {} is not supported by this implementation",
            Value::from(token)
        ),
    )
    .value(Value::from(token))
}

/// Formats an (already integral) value with an analysed integer picture.
pub(crate) fn format_integer_with(value: f64, format: &IntegerFormat) -> Result<String> {
    let negative = value < 0.0;
    let value = value.abs();
    let mut out = match format.primary {
        Primary::Letters => {
            if value.is_infinite() {
                return Err(Error::new(
                    "D1001",
                    "Number out of range: cannot format an infinite number as letters",
                ));
            }
            decimal_to_letters(value, format.case == LetterCase::Upper)
        }
        Primary::Roman => {
            let r = decimal_to_roman(value)?;
            if format.case == LetterCase::Upper {
                r.to_uppercase()
            } else {
                r
            }
        }
        Primary::Words => {
            if !value.is_finite() {
                return Err(Error::new(
                    "D3130",
                    "Formatting a non-finite number in words is not supported",
                ));
            }
            let w = number_to_words(value.floor(), format.ordinal);
            match format.case {
                LetterCase::Upper => w.to_uppercase(),
                LetterCase::Lower => w.to_lowercase(),
                LetterCase::Title => w,
            }
        }
        Primary::Decimal => format_decimal(value, format),
        Primary::Sequence => {
            return Err(sequence_error(&format.token));
        }
    };
    if negative {
        out.insert(0, '-');
    }
    Ok(out)
}

fn format_decimal(value: f64, format: &IntegerFormat) -> String {
    let mut digits: Vec<char> = js_number_to_string(value).chars().collect();
    let mandatory = format.mandatory_digits.unwrap_or(0);
    if mandatory > digits.len() {
        let mut padded = vec!['0'; mandatory - digits.len()];
        padded.extend(digits);
        digits = padded;
    }
    if format.zero_code != 0x30 {
        digits = digits
            .iter()
            .map(|&c| char::from_u32(c as u32 + format.zero_code - 0x30).unwrap_or(c))
            .collect();
    }
    if let Some(sep) = format.regular {
        let n = (digits.len().saturating_sub(1)) / sep.position;
        for ii in (1..=n).rev() {
            let pos = digits.len() - ii * sep.position;
            digits.insert(pos, sep.character);
        }
    } else {
        for sep in &format.separators {
            let pos = digits.len() as isize - sep.position as isize;
            let mut next = js_substr(&digits, 0, Some(pos));
            next.push(sep.character);
            next.extend(js_substr(&digits, pos, None));
            digits = next;
        }
    }
    if format.ordinal {
        let last = digits.last().copied();
        let mut suffix = match last {
            Some('1') => "st",
            Some('2') => "nd",
            Some('3') => "rd",
            _ => "th",
        };
        if digits.len() > 1 && digits[digits.len() - 2] == '1' {
            suffix = "th";
        }
        digits.extend(suffix.chars());
    }
    digits.into_iter().collect()
}

/// `$formatInteger(number, picture)` (XPath `fn:format-integer`): the number is floored, then
/// written with a decimal digit pattern (`0`, `#,##0`, any Unicode digit family, `;o` for
/// ordinals), `a`/`A` letters, `i`/`I` roman numerals or `w`/`W`/`Ww` English words.
/// (An undefined number gives undefined: that is the caller's check.)
pub fn format_integer(n: f64, picture: &str) -> Result<String> {
    let format = analyse_integer_picture(picture)?;
    format_integer_with(n.floor(), &format)
}

/// Parses `value` with an analysed integer picture, as the reference does (without validating
/// the input against the picture). NaN when the text is not a number in that format.
pub(crate) fn parse_integer_with(value: &str, format: &IntegerFormat) -> Result<f64> {
    let upper = format.case == LetterCase::Upper;
    Ok(match format.primary {
        Primary::Letters => letters_to_decimal(value, upper),
        Primary::Roman => {
            if upper {
                roman_to_decimal(value)
            } else {
                roman_to_decimal(&value.to_uppercase())
            }
        }
        Primary::Words => words_to_number(&value.to_lowercase()),
        Primary::Decimal => {
            let mut digits: Vec<char> = value.chars().collect();
            if format.ordinal {
                digits.truncate(digits.len().saturating_sub(2));
            }
            if format.regular.is_some() {
                // the reference strips ',' here, whatever the separator
                digits.retain(|&c| c != ',');
            } else {
                digits.retain(|c| !format.separators.iter().any(|s| s.character == *c));
            }
            if format.zero_code != 0x30 {
                // shift the digit family down to ASCII; a character below the family's zero
                // cannot be shifted (the reference throws a RangeError there): not a number
                let mut shifted = Vec::with_capacity(digits.len());
                for c in digits {
                    match (c as u32 + 0x30)
                        .checked_sub(format.zero_code)
                        .and_then(char::from_u32)
                    {
                        Some(d) => shifted.push(d),
                        None => return Ok(f64::NAN),
                    }
                }
                digits = shifted;
            }
            js_parse_int(&digits.into_iter().collect::<String>())
        }
        Primary::Sequence => {
            return Err(sequence_error(&format.token));
        }
    })
}

/// `$parseInteger(string, picture)`, the inverse of [`format_integer`]. Like the reference, the
/// text is not validated against the picture; `Ok(None)` when it does not read as a number (the
/// reference returns NaN there).
pub fn parse_integer(s: &str, picture: &str) -> Result<Option<f64>> {
    let format = analyse_integer_picture(picture)?;
    let v = parse_integer_with(s, &format)?;
    Ok(if v.is_nan() { None } else { Some(v) })
}

// ---------------------------------------------------------------------------------------------
// $formatBase
// ---------------------------------------------------------------------------------------------

/// `$formatBase(number, radix?)`: rounds both (half to even), radix 2..=36 (else D3100).
pub fn format_base(n: f64, radix: Option<f64>) -> Result<String> {
    let value = js_round(n, 0);
    let radix = radix.map_or(10.0, |r| js_round(r, 0));
    if !(2.0..=36.0).contains(&radix) {
        return Err(Error::new(
            "D3100",
            format!(
                "The radix of the formatBase function must be between 2 and 36.  It was given {}",
                js_number_to_string(radix)
            ),
        )
        .value(Value::from(radix)));
    }
    if radix == 10.0 || !value.is_finite() {
        return Ok(js_number_to_string(value));
    }
    // V8's DoubleToRadixCString for integral values: digits beyond a double's precision are zeros
    let radix = radix as u32;
    let r = f64::from(radix);
    let negative = value < 0.0;
    let mut integer = value.abs().floor();
    let mut digits = Vec::new();
    while integer / r >= 2f64.powi(53) {
        integer /= r;
        digits.push('0');
    }
    loop {
        let remainder = integer % r;
        digits.push(char::from_digit(remainder as u32, radix).unwrap_or('0'));
        integer = (integer - remainder) / r;
        if integer <= 0.0 {
            break;
        }
    }
    if negative {
        digits.push('-');
    }
    Ok(digits.iter().rev().collect())
}

// ---------------------------------------------------------------------------------------------
// $formatNumber (fn:format-number)
// ---------------------------------------------------------------------------------------------

fn find_from(hay: &[char], needle: &[char], from: usize) -> Option<usize> {
    if needle.is_empty() {
        return Some(from.min(hay.len()));
    }
    if needle.len() > hay.len() {
        return None;
    }
    (from..=hay.len() - needle.len()).find(|&i| hay[i..i + needle.len()] == *needle)
}

fn find(hay: &[char], needle: &[char]) -> Option<usize> {
    find_from(hay, needle, 0)
}

fn rfind(hay: &[char], needle: &[char]) -> Option<usize> {
    if needle.is_empty() {
        return Some(hay.len());
    }
    if needle.len() > hay.len() {
        return None;
    }
    (0..=hay.len() - needle.len())
        .rev()
        .find(|&i| hay[i..i + needle.len()] == *needle)
}

fn contains(hay: &[char], needle: &[char]) -> bool {
    find(hay, needle).is_some()
}

/// JS `str.split(sep)` on chars.
fn split_on(hay: &[char], sep: &[char]) -> Vec<Vec<char>> {
    if sep.is_empty() {
        return hay.iter().map(|&c| vec![c]).collect();
    }
    let mut parts = Vec::new();
    let mut start = 0;
    while let Some(i) = find_from(hay, sep, start) {
        parts.push(hay[start..i].to_vec());
        start = i + sep.len();
    }
    parts.push(hay[start..].to_vec());
    parts
}

struct Symbols {
    decimal_separator: Vec<char>,
    grouping_separator: Vec<char>,
    exponent_separator: Vec<char>,
    infinity: String,
    minus_sign: Vec<char>,
    nan: String,
    percent: Vec<char>,
    per_mille: Vec<char>,
    zero_digit: Vec<char>,
    digit: Vec<char>,
    pattern_separator: Vec<char>,
    family: Vec<char>,
}

impl Symbols {
    fn new(options: Option<&Map<String, Value>>) -> Result<Symbols> {
        let get = |key: &str, default: &str| -> Result<String> {
            match options.and_then(|o| o.get(key)) {
                None => Ok(default.to_string()),
                Some(Value::String(s)) => Ok(s.clone()),
                Some(other) => Err(Error::new(
                    "T0410",
                    format!("The option {key} of function formatNumber must be a string"),
                )
                .value(other.clone())),
            }
        };
        let chars = |s: String| s.chars().collect::<Vec<char>>();
        let zero_digit = chars(get("zero-digit", "0")?);
        let zero = zero_digit.first().map_or(0x30, |&c| c as u32);
        let family = (zero..zero + 10)
            .map(|c| char::from_u32(c).unwrap_or('\u{fffd}'))
            .collect();
        Ok(Symbols {
            decimal_separator: chars(get("decimal-separator", ".")?),
            grouping_separator: chars(get("grouping-separator", ",")?),
            exponent_separator: chars(get("exponent-separator", "e")?),
            infinity: get("infinity", "Infinity")?,
            minus_sign: chars(get("minus-sign", "-")?),
            nan: get("NaN", "NaN")?,
            percent: chars(get("percent", "%")?),
            per_mille: chars(get("per-mille", "\u{2030}")?),
            zero_digit,
            digit: chars(get("digit", "#")?),
            pattern_separator: chars(get("pattern-separator", ";")?),
            family,
        })
    }

    fn is_digit_family(&self, c: char) -> bool {
        self.family.contains(&c)
    }

    fn is(&self, c: char, sym: &[char]) -> bool {
        sym.len() == 1 && sym[0] == c
    }

    fn is_active(&self, c: char) -> bool {
        self.is_digit_family(c)
            || self.is(c, &self.decimal_separator)
            || self.is(c, &self.exponent_separator)
            || self.is(c, &self.grouping_separator)
            || self.is(c, &self.digit)
            || self.is(c, &self.pattern_separator)
    }
}

struct SubPicture {
    prefix: Vec<char>,
    suffix: Vec<char>,
    active: Vec<char>,
    mantissa: Vec<char>,
    exponent: Option<Vec<char>>,
    integer: Vec<char>,
    fractional: Vec<char>,
    picture: Vec<char>,
}

fn split_sub_picture(sym: &Symbols, sub: &[char]) -> SubPicture {
    let active_not_exp = |c: char| sym.is_active(c) && !sym.is(c, &sym.exponent_separator);
    let prefix: Vec<char> = match sub.iter().position(|&c| active_not_exp(c)) {
        Some(i) => sub[..i].to_vec(),
        None => Vec::new(),
    };
    let suffix: Vec<char> = match sub.iter().rposition(|&c| active_not_exp(c)) {
        Some(i) => sub[i + 1..].to_vec(),
        None => Vec::new(),
    };
    let active_end = sub.len().saturating_sub(suffix.len()).max(prefix.len());
    let active: Vec<char> = sub[prefix.len()..active_end].to_vec();
    let exp_pos = find_from(sub, &sym.exponent_separator, prefix.len());
    let (mantissa, exponent) = match exp_pos {
        Some(p) if p <= sub.len() - suffix.len() => {
            // the reference indexes the active part with a position in the whole sub-picture
            let m = active[..p.min(active.len())].to_vec();
            let e = active[(p + 1).min(active.len())..].to_vec();
            (m, Some(e))
        }
        _ => (active.clone(), None),
    };
    let (integer, fractional) = match find(&mantissa, &sym.decimal_separator) {
        None => (mantissa.clone(), suffix.clone()),
        Some(d) => (
            mantissa[..d].to_vec(),
            mantissa[(d + 1).min(mantissa.len())..].to_vec(),
        ),
    };
    SubPicture {
        prefix,
        suffix,
        active,
        mantissa,
        exponent,
        integer,
        fractional,
        picture: sub.to_vec(),
    }
}

fn number_error(code: &'static str) -> Error {
    let message = match code {
        "D3080" => "The picture string must only contain a maximum of two sub-pictures",
        "D3081" => "The sub-picture must not contain more than one instance of the 'decimal-separator' character",
        "D3082" => "The sub-picture must not contain more than one instance of the 'percent' character",
        "D3083" => "The sub-picture must not contain more than one instance of the 'per-mille' character",
        "D3084" => "The sub-picture must not contain both a 'percent' and a 'per-mille' character",
        "D3085" => "The mantissa part of a sub-picture must contain at least one character that is either an 'optional digit character' or a member of the 'decimal digit family'",
        "D3086" => "The sub-picture must not contain a passive character that is preceded by an active character and that is followed by another active character",
        "D3087" => "The sub-picture must not contain a 'grouping-separator' character that appears adjacent to a 'decimal-separator' character",
        "D3088" => "The sub-picture must not contain a 'grouping-separator' at the end of the integer part",
        "D3089" => "The sub-picture must not contain two adjacent instances of the 'grouping-separator' character",
        "D3090" => "The integer part of the sub-picture must not contain a member of the 'decimal digit family' that is followed by an instance of the 'optional digit character'",
        "D3091" => "The fractional part of the sub-picture must not contain an instance of the 'optional digit character' that is followed by a member of the 'decimal digit family'",
        "D3092" => "A sub-picture that contains a 'percent' or 'per-mille' character must not contain a character treated as an 'exponent-separator'",
        _ => "The exponent part of the sub-picture must comprise only of one or more characters that are members of the 'decimal digit family'",
    };
    Error::new(code, message)
}

/// F&O 4.7.3 validation; like the reference, the last failing rule wins.
fn validate_sub_picture(sym: &Symbols, p: &SubPicture) -> Result<()> {
    let mut error: Option<&'static str> = None;
    let sub = &p.picture;
    let decimal_pos = find(sub, &sym.decimal_separator);
    if decimal_pos != rfind(sub, &sym.decimal_separator) {
        error = Some("D3081");
    }
    if find(sub, &sym.percent) != rfind(sub, &sym.percent) {
        error = Some("D3082");
    }
    if find(sub, &sym.per_mille) != rfind(sub, &sym.per_mille) {
        error = Some("D3083");
    }
    if contains(sub, &sym.percent) && contains(sub, &sym.per_mille) {
        error = Some("D3084");
    }
    if !p
        .mantissa
        .iter()
        .any(|&c| sym.is_digit_family(c) || sym.is(c, &sym.digit))
    {
        error = Some("D3085");
    }
    if p.active.iter().any(|&c| !sym.is_active(c)) {
        error = Some("D3086");
    }
    match decimal_pos {
        Some(d) => {
            let before = if d > 0 { sub.get(d - 1) } else { None };
            if before.is_some_and(|&c| sym.is(c, &sym.grouping_separator))
                || sub
                    .get(d + 1)
                    .is_some_and(|&c| sym.is(c, &sym.grouping_separator))
            {
                error = Some("D3087");
            }
        }
        None => {
            if p.integer
                .last()
                .is_some_and(|&c| sym.is(c, &sym.grouping_separator))
            {
                error = Some("D3088");
            }
        }
    }
    let mut double_group = sym.grouping_separator.clone();
    double_group.extend(sym.grouping_separator.iter());
    if contains(sub, &double_group) {
        error = Some("D3089");
    }
    if let Some(opt) = find(&p.integer, &sym.digit) {
        if p.integer[..opt].iter().any(|&c| sym.is_digit_family(c)) {
            error = Some("D3090");
        }
    }
    if let Some(opt) = rfind(&p.fractional, &sym.digit) {
        if p.fractional[opt..].iter().any(|&c| sym.is_digit_family(c)) {
            error = Some("D3091");
        }
    }
    if let Some(exp) = &p.exponent {
        if !exp.is_empty() && (contains(sub, &sym.percent) || contains(sub, &sym.per_mille)) {
            error = Some("D3092");
        }
        if exp.is_empty() || exp.iter().any(|&c| !sym.is_digit_family(c)) {
            error = Some("D3093");
        }
    }
    match error {
        Some(code) => Err(number_error(code)),
        None => Ok(()),
    }
}

#[derive(Clone)]
struct Analysis {
    integer_grouping: Vec<usize>,
    regular_grouping: usize,
    min_integer: usize,
    scaling_factor: usize,
    prefix: Vec<char>,
    fractional_grouping: Vec<usize>,
    min_fraction: usize,
    max_fraction: usize,
    min_exponent: usize,
    has_exponent: bool,
    suffix: Vec<char>,
    picture: Vec<char>,
}

fn analyse_sub_picture(sym: &Symbols, p: &SubPicture) -> Analysis {
    let is_digit = |c: char| sym.is_digit_family(c) || sym.is(c, &sym.digit);
    let grouping_positions = |part: &[char], to_left: bool| -> Vec<usize> {
        let mut positions = Vec::new();
        if sym.grouping_separator.is_empty() {
            return positions;
        }
        let mut pos = find(part, &sym.grouping_separator);
        while let Some(g) = pos {
            let side = if to_left {
                &part[..g.min(part.len())]
            } else {
                &part[g.min(part.len())..]
            };
            positions.push(side.iter().filter(|&&c| is_digit(c)).count());
            // the reference continues the search in the integer part, whichever part this is
            pos = find_from(&p.integer, &sym.grouping_separator, g + 1);
        }
        positions
    };
    let integer_grouping = grouping_positions(&p.integer, false);
    let regular_grouping = regular_interval(&integer_grouping);
    let fractional_grouping = grouping_positions(&p.fractional, true);
    let mut min_integer = p
        .integer
        .iter()
        .filter(|&&c| sym.is_digit_family(c))
        .count();
    let scaling_factor = min_integer;
    let mut min_fraction = p
        .fractional
        .iter()
        .filter(|&&c| sym.is_digit_family(c))
        .count();
    let mut max_fraction = p.fractional.iter().filter(|&&c| is_digit(c)).count();
    let has_exponent = p.exponent.is_some();
    if min_integer == 0 && max_fraction == 0 {
        if has_exponent {
            min_fraction = 1;
            max_fraction = 1;
        } else {
            min_integer = 1;
        }
    }
    if has_exponent && min_integer == 0 && contains(&p.integer, &sym.digit) {
        min_integer = 1;
    }
    if min_integer == 0 && min_fraction == 0 {
        min_fraction = 1;
    }
    let min_exponent = p
        .exponent
        .as_ref()
        .map_or(0, |e| e.iter().filter(|&&c| sym.is_digit_family(c)).count());
    Analysis {
        integer_grouping,
        regular_grouping,
        min_integer,
        scaling_factor,
        prefix: p.prefix.clone(),
        fractional_grouping,
        min_fraction,
        max_fraction,
        min_exponent,
        has_exponent,
        suffix: p.suffix.clone(),
        picture: p.picture.clone(),
    }
}

fn insert_at(s: &[char], at: isize, what: &[char]) -> Vec<char> {
    let mut out = js_slice(s, 0, Some(at));
    out.extend_from_slice(what);
    out.extend(js_slice(s, at, None));
    out
}

/// `$formatNumber(number, picture, options?)` (XPath `fn:format-number`): `#,##0.00`-style
/// pictures with an optional negative sub-picture after `;`, `%`, `‰`, exponents (`0.0e0`),
/// and the options `decimal-separator`, `grouping-separator`, `exponent-separator`,
/// `minus-sign`, `infinity`, `NaN`, `percent`, `per-mille`, `zero-digit`, `digit`,
/// `pattern-separator` (string values). Picture errors are D3080–D3093.
pub fn format_number(
    n: f64,
    picture: &str,
    options: Option<&Map<String, Value>>,
) -> Result<String> {
    let sym = Symbols::new(options)?;
    let picture: Vec<char> = picture.chars().collect();
    let subs = split_on(&picture, &sym.pattern_separator);
    if subs.len() > 2 {
        return Err(number_error("D3080"));
    }
    let parts: Vec<SubPicture> = subs.iter().map(|s| split_sub_picture(&sym, s)).collect();
    for p in &parts {
        validate_sub_picture(&sym, p)?;
    }
    let mut variables: Vec<Analysis> = parts.iter().map(|p| analyse_sub_picture(&sym, p)).collect();
    if variables.len() == 1 {
        let mut negative = variables[0].clone();
        let mut prefix = sym.minus_sign.clone();
        prefix.extend(negative.prefix.iter());
        negative.prefix = prefix;
        variables.push(negative);
    }

    if n.is_nan() {
        return Ok(sym.nan.clone());
    }
    let pic = if n >= 0.0 {
        &variables[0]
    } else {
        &variables[1]
    };
    if n.is_infinite() {
        let mut out: String = pic.prefix.iter().collect();
        out.push_str(&sym.infinity);
        out.extend(pic.suffix.iter());
        return Ok(out);
    }
    let adjusted = if contains(&pic.picture, &sym.percent) {
        n * 100.0
    } else if contains(&pic.picture, &sym.per_mille) {
        n * 1000.0
    } else {
        n
    };
    let mut mantissa = adjusted;
    let mut exponent: Option<i32> = None;
    if pic.min_exponent != 0 && adjusted.is_finite() {
        let max_mantissa = 10f64.powi(pic.scaling_factor as i32);
        let min_mantissa = 10f64.powi(pic.scaling_factor as i32 - 1);
        let mut e = 0;
        if mantissa != 0.0 {
            while mantissa.abs() < min_mantissa {
                mantissa *= 10.0;
                e -= 1;
            }
            while mantissa.abs() > max_mantissa {
                mantissa /= 10.0;
                e += 1;
            }
        }
        exponent = Some(e);
    }
    let rounded = js_round(mantissa, pic.max_fraction as i32);
    let zero = sym.zero_digit.first().copied().unwrap_or('0');
    let make_string = |value: f64, dp: usize| -> Vec<char> {
        let s = js_to_fixed(value.abs(), dp);
        s.chars()
            .map(|c| {
                if c.is_ascii_digit() && zero != '0' {
                    sym.family[(c as u8 - b'0') as usize]
                } else {
                    c
                }
            })
            .collect()
    };
    let mut s = make_string(rounded, pic.max_fraction);
    match s.iter().position(|&c| c == '.') {
        None => s.extend(sym.decimal_separator.iter()),
        Some(i) => {
            let mut t = s[..i].to_vec();
            t.extend(sym.decimal_separator.iter());
            t.extend_from_slice(&s[i + 1..]);
            s = t;
        }
    }
    if sym.zero_digit.len() == 1 {
        let lead = s.iter().take_while(|&&c| c == zero).count();
        s.drain(..lead);
        let trail = s.iter().rev().take_while(|&&c| c == zero).count();
        s.truncate(s.len() - trail);
    }
    let zero_str = &sym.zero_digit;
    let mut decimal_pos = find(&s, &sym.decimal_separator).map_or(-1, |p| p as isize);
    let pad_left = pic.min_integer as isize - decimal_pos;
    let pad_right = pic.min_fraction as isize - (s.len() as isize - decimal_pos - 1);
    if pad_left > 0 {
        let mut t: Vec<char> = Vec::new();
        for _ in 0..pad_left {
            t.extend(zero_str.iter());
        }
        t.extend(s);
        s = t;
    }
    if pad_right > 0 {
        for _ in 0..pad_right {
            s.extend(zero_str.iter());
        }
    }
    decimal_pos = find(&s, &sym.decimal_separator).map_or(-1, |p| p as isize);
    if pic.regular_grouping > 0 {
        let g = pic.regular_grouping as isize;
        let count = (decimal_pos - 1).div_euclid(g);
        for group in 1..=count {
            s = insert_at(&s, decimal_pos - group * g, &sym.grouping_separator);
        }
    } else {
        for &pos in &pic.integer_grouping {
            s = insert_at(&s, decimal_pos - pos as isize, &sym.grouping_separator);
            decimal_pos += 1;
        }
    }
    decimal_pos = find(&s, &sym.decimal_separator).map_or(-1, |p| p as isize);
    for &pos in &pic.fractional_grouping {
        s = insert_at(&s, pos as isize + decimal_pos + 1, &sym.grouping_separator);
    }
    decimal_pos = find(&s, &sym.decimal_separator).map_or(-1, |p| p as isize);
    if !contains(&pic.picture, &sym.decimal_separator) || decimal_pos == s.len() as isize - 1 {
        s.pop();
    }
    if let (Some(e), true) = (exponent, pic.has_exponent) {
        let mut digits = make_string(e as f64, 0);
        let pad = pic.min_exponent as isize - digits.len() as isize;
        if pad > 0 {
            let mut t: Vec<char> = Vec::new();
            for _ in 0..pad {
                t.extend(zero_str.iter());
            }
            t.extend(digits);
            digits = t;
        }
        s.extend(sym.exponent_separator.iter());
        if e < 0 {
            s.extend(sym.minus_sign.iter());
        }
        s.extend(digits);
    }
    let mut out: String = pic.prefix.iter().collect();
    out.extend(s);
    out.extend(pic.suffix.iter());
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::excessive_precision)] // exact binary values on purpose
    fn js_to_string_forms() {
        assert_eq!(js_number_to_string(1e21), "1e+21");
        assert_eq!(js_number_to_string(1e-7), "1e-7");
        assert_eq!(js_number_to_string(123.456), "123.456");
        assert_eq!(js_number_to_string(0.000001), "0.000001");
        assert_eq!(js_number_to_string(1.5e300), "1.5e+300");
        assert_eq!(js_number_to_string(-42.0), "-42");
        assert_eq!(js_number_to_string(1e20), "100000000000000000000");
        // halfway between two shortest candidates: the even one
        assert_eq!(
            js_number_to_string(1739887805852403.25),
            "1739887805852403.2"
        );
        assert_eq!(
            js_number_to_string(10841607917017.8125),
            "10841607917017.812"
        );
        assert_eq!(js_to_fixed(-0.0000001, 2), "-0.00");
    }

    #[test]
    fn to_fixed_rounds_half_up_on_exact_value() {
        assert_eq!(js_to_fixed(2.5, 0), "3");
        assert_eq!(js_to_fixed(1.005, 2), "1.00"); // 1.005 is really 1.00499999...
        assert_eq!(js_to_fixed(0.125, 2), "0.13");
        assert_eq!(js_to_fixed(9.99, 1), "10.0");
        assert_eq!(js_to_fixed(0.0, 2), "0.00");
    }

    #[test]
    fn round_half_even() {
        assert_eq!(js_round(2.5, 0), 2.0);
        assert_eq!(js_round(3.5, 0), 4.0);
        assert_eq!(js_round(-2.5, 0), -2.0);
        assert_eq!(js_round(1.235, 2), 1.24);
        assert_eq!(js_round(1.225, 2), 1.22);
    }

    #[test]
    fn roman_numerals() {
        assert_eq!(format_integer(1984.0, "I").expect("roman"), "MCMLXXXIV");
        assert_eq!(format_integer(4.0, "i").expect("roman"), "iv");
        assert_eq!(parse_integer("MMXVIII", "I").expect("roman"), Some(2018.0));
        assert_eq!(parse_integer("xliv", "i").expect("roman"), Some(44.0));
    }

    #[test]
    fn words_and_ordinals() {
        assert_eq!(format_integer(21.0, "w;o").expect("words"), "twenty-first");
        assert_eq!(
            format_integer(112.0, "Ww;o").expect("words"),
            "One Hundred and Twelfth"
        );
        assert_eq!(format_integer(40.0, "w;o").expect("words"), "fortieth");
        assert_eq!(format_integer(3.0, "0;o").expect("ord"), "3rd");
        assert_eq!(format_integer(13.0, "0;o").expect("ord"), "13th");
        assert_eq!(format_integer(22.0, "0;o").expect("ord"), "22nd");
        assert_eq!(
            parse_integer("forty-second", "w;o").expect("words"),
            Some(42.0)
        );
    }

    #[test]
    fn letters() {
        assert_eq!(format_integer(702.0, "A").expect("letters"), "ZZ");
        assert_eq!(format_integer(703.0, "a").expect("letters"), "aaa");
        assert_eq!(parse_integer("ZZ", "A").expect("letters"), Some(702.0));
    }

    #[test]
    fn format_base_cases() {
        assert_eq!(format_base(255.0, Some(16.0)).expect("hex"), "ff");
        assert_eq!(format_base(0.0, Some(2.0)).expect("zero"), "0");
        assert_eq!(
            format_base(5890840712243076.0, None).expect("big"),
            "5890840712243076"
        );
        // beyond 2^53 the digits a double cannot hold are zeros, as in V8
        assert_eq!(
            format_base(1e21, Some(36.0)).expect("big"),
            "5v1j4f4ds7c000"
        );
        assert_eq!(
            format_base(1.0, Some(37.0)).expect_err("radix").code,
            "D3100"
        );
    }

    #[test]
    fn format_number_cases() {
        assert_eq!(
            format_number(1234.5, "#,##0.00", None).expect("fmt"),
            "1,234.50"
        );
        assert_eq!(format_number(-0.5, "0.0", None).expect("fmt"), "-0.5");
        assert_eq!(format_number(0.25, "0%", None).expect("fmt"), "25%");
        let mut opts = Map::new();
        opts.insert("decimal-separator".into(), Value::from(","));
        opts.insert("grouping-separator".into(), Value::from("."));
        assert_eq!(
            format_number(1234567.891, "#.##0,00", Some(&opts)).expect("fmt"),
            "1.234.567,89"
        );
    }

    #[test]
    fn format_number_exponents_and_errors() {
        assert_eq!(
            format_number(1234.5678, "00.000e0", None).expect("fmt"),
            "12.346e2"
        );
        assert_eq!(format_number(0.234, "0.0e0", None).expect("fmt"), "2.3e-1");
        assert_eq!(format_number(-42.0, "0e0", None).expect("fmt"), "-4e1");
        assert_eq!(format_number(0.0, "0.00e0", None).expect("fmt"), "0.00e0");
        let code = |p: &str| format_number(1.0, p, None).expect_err("bad picture").code;
        assert_eq!(code("#;#;#"), "D3080");
        assert_eq!(code("#.0.0"), "D3081");
        assert_eq!(code("0,,0"), "D3089");
        assert_eq!(code("%%"), "D3086");
    }

    #[test]
    fn format_integer_grouping_and_digit_families() {
        assert_eq!(
            format_integer(1_234_567_890.0, "#,##0").expect("fmt"),
            "1,234,567,890"
        );
        assert_eq!(
            format_integer(1_234_567_890.0, "#:###,##0").expect("fmt"),
            "1234:567,890"
        );
        assert_eq!(format_integer(12340.0, "###١").expect("fmt"), "١٢٣٤٠");
        assert_eq!(format_integer(-3.0, "0000").expect("fmt"), "-0003");
        assert_eq!(
            format_integer(1.0, "##0०").expect_err("mixed").code,
            "D3131"
        );
        assert_eq!(
            format_integer(1.0, "α").expect_err("sequence").code,
            "D3130"
        );
        assert_eq!(
            parse_integer("١٢٣٤٠", "###١").expect("parse"),
            Some(12340.0)
        );
        assert_eq!(
            parse_integer("12345,67,890", "##,##,##0").expect("parse"),
            Some(1_234_567_890.0)
        );
    }
}
