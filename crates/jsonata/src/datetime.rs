//! Date/time built-ins: `$fromMillis` ([`format_datetime`]) and `$toMillis` ([`parse_datetime`]).
//!
//! Pictures are XPath/XQuery 3.1 `fn:format-dateTime` picture strings, interpreted the way the
//! reference implementation (jsonata-js `datetime.js`) does, including its extensions
//! (`[X]` ISO week-numbering year, `[x]` week-numbering month) and its observable quirks, which
//! are noted in comments. All calendar arithmetic is proleptic Gregorian on UTC milliseconds,
//! like JS `Date` with its `getUTC*` accessors.

// `crate::Error` is shared with the evaluator and deliberately carries its context inline.
#![allow(clippy::result_large_err)]

use std::collections::HashMap;

use serde_json::Value;

use crate::numfmt::{
    analyse_integer_picture, format_integer, format_integer_with, js_number_to_string,
    js_parse_int, parse_integer_with, sequence_error, word_values, IntegerFormat, LetterCase,
    Primary,
};
use crate::{Error, Result};

const MILLIS_IN_A_DAY: f64 = 86_400_000.0;
/// JS `Date` time values are limited to ±8.64e15 ms.
const MAX_TIME: f64 = 8.64e15;

const DAYS: [&str; 8] = [
    "",
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];
const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

// ---------------------------------------------------------------------------------------------
// Calendar arithmetic (JS Date semantics)
// ---------------------------------------------------------------------------------------------

/// Days since 1970-01-01 of a proleptic Gregorian date (month 1..=12).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// (year, month 1..=12, day) of a day number.
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// JS `Date.UTC(year, month0, day, hours, minutes, seconds, millis)`, including its mapping of
/// years 0..=99 to 1900..=1999. NaN when any argument is NaN or the result is out of range.
#[allow(clippy::too_many_arguments)]
fn date_utc(y: f64, m: f64, d: f64, h: f64, mi: f64, s: f64, ms: f64) -> f64 {
    let args = [y, m, d, h, mi, s, ms];
    if args.iter().any(|a| !a.is_finite()) {
        return f64::NAN;
    }
    let mut y = y.trunc();
    if (0.0..=99.0).contains(&y) {
        y += 1900.0;
    }
    make_date(y, m, d, h, mi, s, ms)
}

/// JS `MakeDate(MakeDay(y, m, d), MakeTime(h, mi, s, ms))` followed by `TimeClip`.
#[allow(clippy::too_many_arguments)]
fn make_date(y: f64, m: f64, d: f64, h: f64, mi: f64, s: f64, ms: f64) -> f64 {
    let args = [y, m, d, h, mi, s, ms];
    if args.iter().any(|a| !a.is_finite()) {
        return f64::NAN;
    }
    let y = y.trunc();
    let m = m.trunc();
    let ym = y + (m / 12.0).floor();
    if ym.abs() > 400_000.0 {
        return f64::NAN;
    }
    let mn = m.rem_euclid(12.0);
    let day = days_from_civil(ym as i64, mn as i64 + 1, 1) as f64 + d.trunc() - 1.0;
    let time = h.trunc() * 3_600_000.0 + mi.trunc() * 60_000.0 + s.trunc() * 1000.0 + ms.trunc();
    let t = day * MILLIS_IN_A_DAY + time;
    if t.abs() > MAX_TIME {
        return f64::NAN;
    }
    t.trunc() + 0.0
}

/// The UTC fields of a time value (like a JS `Date`'s `getUTC*` accessors); NaN when invalid.
#[derive(Debug, Clone, Copy)]
struct Fields {
    time: f64,
    year: f64,
    /// 0..=11
    month: f64,
    day: f64,
    /// 0 = Sunday
    weekday: f64,
    hours: f64,
    minutes: f64,
    seconds: f64,
    millis: f64,
}

impl Fields {
    fn new(time: f64) -> Fields {
        let t = time.trunc();
        if !t.is_finite() || t.abs() > MAX_TIME {
            return Fields {
                time: f64::NAN,
                year: f64::NAN,
                month: f64::NAN,
                day: f64::NAN,
                weekday: f64::NAN,
                hours: f64::NAN,
                minutes: f64::NAN,
                seconds: f64::NAN,
                millis: f64::NAN,
            };
        }
        let t = t as i64;
        let days = t.div_euclid(86_400_000);
        let in_day = t.rem_euclid(86_400_000);
        let (y, m, d) = civil_from_days(days);
        Fields {
            time: t as f64,
            year: y as f64,
            month: (m - 1) as f64,
            day: d as f64,
            weekday: (days + 4).rem_euclid(7) as f64,
            hours: (in_day / 3_600_000) as f64,
            minutes: (in_day / 60_000 % 60) as f64,
            seconds: (in_day / 1000 % 60) as f64,
            millis: (in_day % 1000) as f64,
        }
    }
}

/// Start (UTC millis) of week 1 of a year or month: the week (starting Monday) containing the
/// first Thursday.
fn start_of_first_week(year: f64, month0: f64) -> f64 {
    let first = date_utc(year, month0, 1.0, 0.0, 0.0, 0.0, 0.0);
    let mut dow = Fields::new(first).weekday;
    if dow == 0.0 {
        dow = 7.0;
    }
    if dow > 4.0 {
        first + (8.0 - dow) * MILLIS_IN_A_DAY
    } else {
        first - (dow - 1.0) * MILLIS_IN_A_DAY
    }
}

fn next_month(year: f64, month0: f64) -> (f64, f64) {
    if month0 == 11.0 {
        (year + 1.0, 0.0)
    } else {
        (year, month0 + 1.0)
    }
}

fn previous_month(year: f64, month0: f64) -> (f64, f64) {
    if month0 == 0.0 {
        (year - 1.0, 11.0)
    } else {
        (year, month0 - 1.0)
    }
}

fn delta_weeks(start: f64, end: f64) -> f64 {
    (end - start) / (MILLIS_IN_A_DAY * 7.0) + 1.0
}

/// A date/time component value.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Fragment {
    Number(f64),
    Text(&'static str),
    Undefined,
}

fn fragment(date: &Fields, component: char) -> Fragment {
    use Fragment::{Number, Text, Undefined};
    match component {
        'Y' => Number(date.year),
        'M' => Number(date.month + 1.0),
        'D' => Number(date.day),
        'd' => {
            let today = date_utc(date.year, date.month, date.day, 0.0, 0.0, 0.0, 0.0);
            let first_jan = date_utc(date.year, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0);
            Number((today - first_jan) / MILLIS_IN_A_DAY + 1.0)
        }
        'F' => Number(if date.weekday == 0.0 {
            7.0
        } else {
            date.weekday
        }),
        'W' => {
            let start = start_of_first_week(date.year, 0.0);
            let today = date_utc(date.year, date.month, date.day, 0.0, 0.0, 0.0, 0.0);
            let mut week = delta_weeks(start, today);
            if week > 52.0 {
                if today >= start_of_first_week(date.year + 1.0, 0.0) {
                    week = 1.0;
                }
            } else if week < 1.0 {
                week = delta_weeks(start_of_first_week(date.year - 1.0, 0.0), today);
            }
            Number(week.floor())
        }
        'w' => {
            let start = start_of_first_week(date.year, date.month);
            let today = date_utc(date.year, date.month, date.day, 0.0, 0.0, 0.0, 0.0);
            let mut week = delta_weeks(start, today);
            if week > 4.0 {
                let (ny, nm) = next_month(date.year, date.month);
                if today >= start_of_first_week(ny, nm) {
                    week = 1.0;
                }
            } else if week < 1.0 {
                let (py, pm) = previous_month(date.year, date.month);
                week = delta_weeks(start_of_first_week(py, pm), today);
            }
            Number(week.floor())
        }
        'X' => {
            let start = start_of_first_week(date.year, 0.0);
            let end = start_of_first_week(date.year + 1.0, 0.0);
            Number(if date.time < start {
                date.year - 1.0
            } else if date.time >= end {
                date.year + 1.0
            } else {
                date.year
            })
        }
        'x' => {
            let start = start_of_first_week(date.year, date.month);
            let (ny, nm) = next_month(date.year, date.month);
            let end = start_of_first_week(ny, nm);
            Number(if date.time < start {
                previous_month(date.year, date.month).1 + 1.0
            } else if date.time >= end {
                nm + 1.0
            } else {
                date.month + 1.0
            })
        }
        'H' => Number(date.hours),
        'h' => {
            let h = date.hours % 12.0;
            Number(if h == 0.0 { 12.0 } else { h })
        }
        'P' => Text(if date.hours >= 12.0 { "pm" } else { "am" }),
        'm' => Number(date.minutes),
        's' => Number(date.seconds),
        'f' => Number(date.millis),
        'C' | 'E' => Text("ISO"),
        _ => Undefined,
    }
}

// ---------------------------------------------------------------------------------------------
// Picture analysis
// ---------------------------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq)]
struct Width {
    /// `None` when absent or `*`; NaN when not a number (as the reference's `parseInt`).
    min: Option<f64>,
    max: Option<f64>,
}

#[derive(Debug, Clone)]
struct Marker {
    /// `None` for an empty marker `[]`.
    component: Option<char>,
    width: Option<Width>,
    presentation1: String,
    presentation2: Option<char>,
    names: Option<LetterCase>,
    integer_format: Option<IntegerFormat>,
    /// Year only: number of digits to keep (-1: all; NaN for an unreadable width, which
    /// formats as "NaN" like the reference).
    n: f64,
}

#[derive(Debug, Clone)]
enum Part {
    Literal(String),
    Marker(Marker),
}

fn default_presentation(component: char) -> Option<&'static str> {
    Some(match component {
        'Y' | 'M' | 'D' | 'd' | 'W' | 'w' | 'X' | 'x' | 'H' | 'h' | 'f' => "1",
        'F' | 'P' | 'C' | 'E' => "n",
        'm' | 's' => "01",
        'Z' | 'z' => "01:01",
        _ => return None,
    })
}

/// Largest minimum width honoured (the reference would build the padding until JS runs out of
/// string length).
const MAX_WIDTH: usize = 10_000;

fn parse_width(w: Option<&str>) -> Option<f64> {
    match w {
        None | Some("*") => None,
        Some(s) => Some(js_parse_int(s)),
    }
}

fn analyse_datetime_picture(picture: &str) -> Result<Vec<Part>> {
    let chars: Vec<char> = picture.chars().collect();
    let mut spec: Vec<Part> = Vec::new();
    let add_literal = |spec: &mut Vec<Part>, start: usize, end: usize| {
        if end > start {
            let literal: String = chars[start..end].iter().collect();
            spec.push(Part::Literal(literal.replace("]]", "]")));
        }
    };
    let mut start = 0;
    let mut pos = 0;
    while pos < chars.len() {
        if chars[pos] == '[' {
            if chars.get(pos + 1) == Some(&'[') {
                add_literal(&mut spec, start, pos);
                spec.push(Part::Literal("[".into()));
                pos += 2;
                start = pos;
                continue;
            }
            add_literal(&mut spec, start, pos);
            start = pos;
            let Some(close) = chars[start..].iter().position(|&c| c == ']') else {
                return Err(Error::new(
                    "D3135",
                    "No matching closing bracket ']' in date/time picture string",
                ));
            };
            pos = start + close;
            let marker: Vec<char> = chars[start + 1..pos]
                .iter()
                .copied()
                .filter(|c| !c.is_whitespace())
                .collect();
            let def = analyse_marker(&marker, &mut spec)?;
            spec.push(Part::Marker(def));
            start = pos + 1;
        }
        pos += 1;
    }
    add_literal(&mut spec, start, pos);
    Ok(spec)
}

fn analyse_marker(marker: &[char], spec: &mut [Part]) -> Result<Marker> {
    let component = marker.first().copied();
    let mut def = Marker {
        component,
        width: None,
        presentation1: String::new(),
        presentation2: None,
        names: None,
        integer_format: None,
        n: -1.0,
    };
    let pres_mod: String = match marker.iter().rposition(|&c| c == ',') {
        Some(comma) => {
            let width_mod: String = marker[comma + 1..].iter().collect();
            let (min, max) = match width_mod.split_once('-') {
                None => (Some(width_mod.as_str()), None),
                Some((a, b)) => (Some(a), Some(b)),
            };
            def.width = Some(Width {
                min: parse_width(min),
                max: parse_width(max),
            });
            marker[1.min(comma)..comma].iter().collect()
        }
        None => marker.iter().skip(1).collect(),
    };
    let pres_chars: Vec<char> = pres_mod.chars().collect();
    let presentation1: Option<String> = if pres_chars.len() == 1 {
        Some(pres_mod.clone())
    } else if pres_chars.len() > 1 {
        let last = pres_chars[pres_chars.len() - 1];
        if "atco".contains(last) {
            def.presentation2 = Some(last);
            Some(pres_chars[..pres_chars.len() - 1].iter().collect())
        } else {
            Some(pres_mod.clone())
        }
    } else {
        component.and_then(default_presentation).map(str::to_string)
    };
    let Some(presentation1) = presentation1 else {
        let c = component.map(String::from).unwrap_or_default();
        return Err(Error::new(
            "D3132",
            format!(
                "Unknown component specifier {} in date/time picture string",
                Value::from(c.clone())
            ),
        )
        .value(Value::from(c)));
    };
    def.presentation1 = presentation1;
    let mut p1 = def.presentation1.chars();
    let first = p1.next();
    let second = p1.next();
    let comp = component.unwrap_or('\0');
    if first == Some('n') {
        def.names = Some(LetterCase::Lower);
    } else if first == Some('N') {
        def.names = Some(if second == Some('n') {
            LetterCase::Title
        } else {
            LetterCase::Upper
        });
    } else if "YMDdFWwXxHhmsf".contains(comp) {
        let mut pattern = def.presentation1.clone();
        if let Some(p2) = def.presentation2 {
            pattern.push(';');
            pattern.push(p2);
        }
        let mut format = analyse_integer_picture(&pattern)?;
        if let (Some(min), Some(mandatory)) =
            (def.width.and_then(|w| w.min), format.mandatory_digits)
        {
            if (mandatory as f64) < min {
                format.mandatory_digits = Some(min as usize);
            }
        }
        if comp == 'Y' {
            def.n = -1.0;
            if let Some(max) = def.width.and_then(|w| w.max) {
                def.n = max;
                // a NaN or negative count pads nothing, like 0
                format.mandatory_digits = Some(if max > 0.0 { max as usize } else { 0 });
            } else if let (Some(m), Some(o)) = (format.mandatory_digits, format.optional_digits) {
                if m + o >= 2 {
                    def.n = (m + o) as f64;
                }
            }
        }
        // an integer directly after another integer: the earlier one's width must be exact
        if format.mandatory_digits.unwrap_or(0) > MAX_WIDTH {
            return Err(Error::new(
                "D1001",
                format!("Number out of range: width modifier above {MAX_WIDTH} in date/time picture string"),
            ));
        }
        if let Some(Part::Marker(previous)) = spec.last_mut() {
            if let Some(pf) = previous.integer_format.as_mut() {
                pf.parse_width = pf.mandatory_digits;
            }
        }
        def.integer_format = Some(format);
    }
    if comp == 'Z' || comp == 'z' {
        def.integer_format = Some(analyse_integer_picture(&def.presentation1)?);
    }
    Ok(def)
}

// ---------------------------------------------------------------------------------------------
// Formatting
// ---------------------------------------------------------------------------------------------

const ISO_PICTURE: &str = "[Y0001]-[M01]-[D01]T[H01]:[m01]:[s01].[f001][Z01:01t]";

fn apply_case(s: &str, case: LetterCase) -> String {
    match case {
        LetterCase::Upper => s.to_uppercase(),
        LetterCase::Lower => s.to_lowercase(),
        LetterCase::Title => s.to_string(),
    }
}

fn d3133(component: char) -> Error {
    Error::new(
        "D3133",
        format!(
            "The 'name' modifier can only be applied to months and days in the date/time picture string, not {}",
            Value::from(component.to_string())
        ),
    )
    .value(Value::from(component.to_string()))
}

fn format_component(
    date: &Fields,
    marker: &Marker,
    offset_hours: f64,
    offset_minutes: f64,
) -> Result<String> {
    let Some(component) = marker.component else {
        return Ok("undefined".into());
    };
    let value = fragment(date, component);
    if "YMDdFWwXxHhms".contains(component) {
        let Fragment::Number(mut v) = value else {
            return Ok("undefined".into());
        };
        if component == 'Y' && marker.n != -1.0 {
            v %= 10f64.powf(marker.n);
        }
        if let Some(names) = marker.names {
            let name = match component {
                'M' | 'x' => {
                    if (1.0..=12.0).contains(&v) {
                        MONTHS[v as usize - 1]
                    } else {
                        "undefined"
                    }
                }
                'F' => {
                    if (1.0..=7.0).contains(&v) {
                        DAYS[v as usize]
                    } else {
                        "undefined"
                    }
                }
                _ => return Err(d3133(component)),
            };
            let mut name = apply_case(name, names);
            if let Some(max) = marker.width.and_then(|w| w.max) {
                if (name.chars().count() as f64) > max {
                    name = name.chars().take(max.max(0.0) as usize).collect();
                }
            }
            Ok(name)
        } else {
            match &marker.integer_format {
                Some(f) => format_integer_with(v, f),
                None => Ok(js_number_to_string(v)),
            }
        }
    } else if component == 'f' {
        let Fragment::Number(v) = value else {
            return Ok("undefined".into());
        };
        match &marker.integer_format {
            Some(f) => format_integer_with(v, f),
            None => Err(d3133(component)),
        }
    } else if component == 'Z' || component == 'z' {
        let offset = offset_hours * 100.0 + offset_minutes;
        let Some(format) = &marker.integer_format else {
            return Ok("undefined".into());
        };
        let mut out = if format.regular.is_some() {
            format_integer_with(offset, format)?
        } else {
            let digits = if format.primary == Primary::Decimal {
                format.mandatory_digits.unwrap_or(0)
            } else {
                0
            };
            match digits {
                1 | 2 => {
                    let mut s = format_integer_with(offset_hours, format)?;
                    if offset_minutes != 0.0 {
                        s.push(':');
                        s.push_str(&format_integer(offset_minutes, "00")?);
                    }
                    s
                }
                3 | 4 => format_integer_with(offset, format)?,
                _ => {
                    return Err(Error::new(
                        "D3134",
                        "The timezone integer format specifier cannot have more than four digits",
                    )
                    .value(Value::from(digits)));
                }
            }
        };
        if offset >= 0.0 {
            out.insert(0, '+');
        }
        if component == 'z' {
            out.insert_str(0, "GMT");
        }
        if offset == 0.0 && marker.presentation2 == Some('t') {
            out = "Z".into();
        }
        Ok(out)
    } else if component == 'P' {
        let Fragment::Text(t) = value else {
            return Ok("undefined".into());
        };
        Ok(if marker.names == Some(LetterCase::Upper) {
            t.to_uppercase()
        } else {
            t.to_string()
        })
    } else {
        Ok(match value {
            Fragment::Number(v) => js_number_to_string(v),
            Fragment::Text(t) => t.to_string(),
            Fragment::Undefined => "undefined".into(),
        })
    }
}

/// `$fromMillis(millis, picture?, timezone?)`: formats a time given in milliseconds since the
/// epoch. Without a picture the result is ISO 8601 (`2018-03-23T10:33:36.617Z`, or with a
/// timezone `+hhmm`, `...-05:00`).
///
/// Errors: D3132 (unknown component), D3133 (names for a component that has none), D3134
/// (timezone with more than four digits), D3135 (unclosed `[`), D3130/D3131 (integer pictures).
/// An undefined `millis` gives undefined: that is the caller's check.
///
/// The timezone is read like the reference does (`parseInt`, then hours = ⌊n/100⌋ and
/// minutes = n % 100), so negative zones with minutes (`-0530`) give the reference's results.
pub fn format_datetime(
    millis: f64,
    picture: Option<&str>,
    timezone: Option<&str>,
) -> Result<String> {
    let (mut offset_hours, mut offset_minutes) = (0.0, 0.0);
    if let Some(tz) = timezone {
        let offset = js_parse_int(tz);
        offset_hours = (offset / 100.0).floor();
        offset_minutes = offset % 100.0;
    }
    let spec = analyse_datetime_picture(picture.unwrap_or(ISO_PICTURE))?;
    let offset_millis = (60.0 * offset_hours + offset_minutes) * 60.0 * 1000.0;
    let date = Fields::new(millis + offset_millis);
    let mut out = String::new();
    for part in &spec {
        match part {
            Part::Literal(s) => out.push_str(s),
            Part::Marker(m) => {
                out.push_str(&format_component(&date, m, offset_hours, offset_minutes)?)
            }
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------------------------

/// How to turn the text matched by one marker into a component value.
/// `None` is the reference's `undefined`; NaN stands for unparseable numbers.
enum Parser {
    Timezone { gmt: bool, separator: Option<char> },
    Fraction,
    Integer(IntegerFormat),
    Names(Vec<(String, f64)>),
}

impl Parser {
    fn parse(&self, text: &str) -> Option<f64> {
        match self {
            Parser::Timezone { gmt, separator } => {
                let value: String = if *gmt {
                    text.chars().skip(3).collect()
                } else {
                    text.to_string()
                };
                let (hours, minutes) = match separator.and_then(|s| value.find(s).map(|i| (s, i))) {
                    Some((s, i)) => (
                        js_parse_int(&value[..i]),
                        js_parse_int(&value[i + s.len_utf8()..]),
                    ),
                    None => {
                        let chars: Vec<char> = value.chars().collect();
                        if chars.len().saturating_sub(1) <= 2 {
                            (js_parse_int(&value), 0.0)
                        } else {
                            let h: String = chars[..3].iter().collect();
                            let m: String = chars[3..].iter().collect();
                            (js_parse_int(&h), js_parse_int(&m))
                        }
                    }
                };
                Some(hours * 60.0 + minutes)
            }
            Parser::Fraction => {
                let first3: String = text.chars().take(3).collect();
                let v: f64 = format!("0.{first3}").parse().unwrap_or(f64::NAN);
                Some(v * 1000.0)
            }
            Parser::Integer(format) => parse_integer_with(text, format).ok(),
            Parser::Names(table) => table.iter().find(|(k, _)| k == text).map(|(_, v)| *v),
        }
    }
}

fn integer_regex(format: &IntegerFormat) -> Result<String> {
    let upper = format.case == LetterCase::Upper;
    Ok(match format.primary {
        Primary::Letters => if upper { "[A-Z]+" } else { "[a-z]+" }.to_string(),
        Primary::Roman => if upper { "[MDCLXVI]+" } else { "[mdclxvi]+" }.to_string(),
        Primary::Words => {
            let mut alternatives: Vec<String> =
                word_values().iter().map(|(k, _)| k.clone()).collect();
            alternatives.push("and".into());
            alternatives.push("[\\-, ]".into());
            format!("(?:{})+", alternatives.join("|"))
        }
        Primary::Decimal => {
            let mut r = String::from("[0-9]");
            match format.parse_width {
                Some(w) if w > 0 => r.push_str(&format!("{{{w}}}")),
                _ => r.push('+'),
            }
            if format.ordinal {
                r.push_str("(?:th|st|nd|rd)");
            }
            r
        }
        Primary::Sequence => return Err(sequence_error(&format.token)),
    })
}

fn marker_matcher(marker: &Marker) -> Result<(String, Parser)> {
    let component = marker.component.unwrap_or('\0');
    if component == 'Z' || component == 'z' {
        let separator = marker
            .integer_format
            .as_ref()
            .and_then(|f| f.regular)
            .map(|s| s.character);
        let mut regex = String::new();
        if component == 'z' {
            regex.push_str("GMT");
        }
        regex.push_str("[-+][0-9]+");
        if let Some(s) = separator {
            regex.push_str(&regex::escape(&s.to_string()));
            regex.push_str("[0-9]+");
        }
        return Ok((
            regex,
            Parser::Timezone {
                gmt: component == 'z',
                separator,
            },
        ));
    }
    if component == 'f' {
        return Ok(("[0-9]+".into(), Parser::Fraction));
    }
    if let Some(format) = &marker.integer_format {
        return Ok((integer_regex(format)?, Parser::Integer(format.clone())));
    }
    // (a zero or NaN width is falsy in the reference and means "whole names")
    let max = marker
        .width
        .and_then(|w| w.max)
        .filter(|&m| m != 0.0 && !m.is_nan());
    let name = |s: &str| -> String {
        match max {
            Some(m) => s.chars().take(m.max(0.0) as usize).collect(),
            None => s.to_string(),
        }
    };
    let table: Vec<(String, f64)> = match component {
        'M' | 'x' => MONTHS
            .iter()
            .enumerate()
            .map(|(i, m)| (name(m), (i + 1) as f64))
            .collect(),
        'F' => DAYS
            .iter()
            .enumerate()
            .skip(1)
            .map(|(i, d)| (name(d), i as f64))
            .collect(),
        'P' => vec![
            ("am".into(), 0.0),
            ("AM".into(), 0.0),
            ("pm".into(), 1.0),
            ("PM".into(), 1.0),
        ],
        _ => return Err(d3133(component)),
    };
    Ok(("[a-zA-Z]+".into(), Parser::Names(table)))
}

/// Compiles (case-insensitively) the matcher of a picture, keeping recent ones.
fn picture_regex(pattern: &str) -> Result<regex::Regex> {
    type Cache = std::sync::Mutex<HashMap<String, regex::Regex>>;
    static CACHE: std::sync::OnceLock<Cache> = std::sync::OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    if let Ok(map) = cache.lock() {
        if let Some(re) = map.get(pattern) {
            return Ok(re.clone());
        }
    }
    let re = regex::RegexBuilder::new(pattern)
        .case_insensitive(true)
        .build()
        .map_err(|e| Error::new("D3136", format!("Unsupported date/time picture: {e}")))?;
    if let Ok(mut map) = cache.lock() {
        if map.len() >= 64 {
            map.clear();
        }
        map.insert(pattern.to_string(), re.clone());
    }
    Ok(re)
}

/// JS truthiness of a parsed component.
fn truthy(v: Option<&Option<f64>>) -> bool {
    matches!(v, Some(Some(x)) if *x != 0.0 && !x.is_nan())
}

fn d3136() -> Error {
    Error::new(
        "D3136",
        "The date/time picture string is missing specifiers required to parse the timestamp",
    )
}

/// `$toMillis(timestamp, picture?)` using the current time for components the picture leaves out.
/// See [`parse_datetime_at`].
pub fn parse_datetime(s: &str, picture: Option<&str>) -> Result<Option<f64>> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_millis() as f64);
    parse_datetime_at(s, picture, now)
}

/// `$toMillis(timestamp, picture?)`: milliseconds since the epoch.
///
/// Without a picture the timestamp must be ISO 8601 (else D3110); a timestamp without an offset
/// is read as UTC. With a picture, a timestamp that does not match gives `Ok(None)` (undefined).
/// Leading components missing from the picture are taken from `now_millis` (the evaluation's
/// fixed `$now()`), trailing ones default to their minimum; a gap between specified components,
/// or an ISO week date, is D3136. Where the reference would return NaN (e.g. an out-of-range
/// year), this returns `Ok(None)`.
pub fn parse_datetime_at(s: &str, picture: Option<&str>, now_millis: f64) -> Result<Option<f64>> {
    let Some(picture) = picture else {
        return parse_iso8601(s);
    };
    let spec = analyse_datetime_picture(picture)?;
    let mut regex = String::from("^");
    let mut parsers: Vec<Option<(char, Parser)>> = Vec::new();
    for part in &spec {
        match part {
            Part::Literal(l) => {
                regex.push('(');
                regex.push_str(&regex::escape(l));
                regex.push(')');
                parsers.push(None);
            }
            Part::Marker(m) => {
                let (r, p) = marker_matcher(m)?;
                regex.push('(');
                regex.push_str(&r);
                regex.push(')');
                parsers.push(Some((m.component.unwrap_or('\0'), p)));
            }
        }
    }
    regex.push('$');
    let matcher = picture_regex(&regex)?;
    let Some(captures) = matcher.captures(s) else {
        return Ok(None);
    };
    let mut components: HashMap<char, Option<f64>> = HashMap::new();
    for (i, parser) in parsers.iter().enumerate() {
        if let Some((component, parser)) = parser {
            let text = captures.get(i + 1).map_or("", |m| m.as_str());
            components.insert(*component, parser.parse(text));
        }
    }
    if components.is_empty() {
        return Ok(None);
    }

    let mask_of = |letters: &str, components: &HashMap<char, Option<f64>>| -> u32 {
        letters.chars().fold(0, |mask, c| {
            (mask << 1) | u32::from(truthy(components.get(&c)))
        })
    };
    let is_type = |ty: u32, mask: u32| (!ty & mask) == 0 && (ty & mask) != 0;
    let mask = mask_of("YXMxWwdD", &components);
    let date_a = is_type(0b1010_0001, mask);
    let date_b = !date_a && is_type(0b1000_0010, mask);
    let date_c = is_type(0b0101_0100, mask);
    let date_d = !date_c && is_type(0b0100_1000, mask);
    let mask = mask_of("PHhmsf", &components);
    let time_a = is_type(0b01_0111, mask);
    let time_b = !time_a && is_type(0b10_1111, mask);

    // (the reference lists 'YD' for the day-in-year form; the day is derived afterwards)
    let date_comps = if date_b {
        "YD"
    } else if date_c {
        "XxwF"
    } else if date_d {
        "XWF"
    } else {
        "YMD"
    };
    let time_comps = if time_b { "Phmsf" } else { "Hmsf" };
    let now = Fields::new(now_millis);
    let mut start_specified = false;
    let mut end_specified = false;
    for part in date_comps.chars().chain(time_comps.chars()) {
        let defined = matches!(components.get(&part), Some(Some(_)));
        if !defined {
            if start_specified {
                components.insert(part, Some(if "MDd".contains(part) { 1.0 } else { 0.0 }));
                end_specified = true;
            } else {
                let v = match fragment(&now, part) {
                    Fragment::Number(n) => n,
                    // 'am'/'pm' from the clock: defined, but never equal to 1
                    _ => f64::NAN,
                };
                components.insert(part, Some(v));
            }
        } else {
            start_specified = true;
            if end_specified {
                return Err(d3136());
            }
        }
    }
    let get = |c: char, components: &HashMap<char, Option<f64>>| -> f64 {
        components.get(&c).copied().flatten().unwrap_or(f64::NAN)
    };
    let m = get('M', &components);
    let mut month0 = if m > 0.0 { m - 1.0 } else { 0.0 };
    let mut day = get('D', &components);
    if date_b {
        let first_jan = date_utc(get('Y', &components), 0.0, 1.0, 0.0, 0.0, 0.0, 0.0);
        let derived = Fields::new(first_jan + (get('d', &components) - 1.0) * MILLIS_IN_A_DAY);
        month0 = derived.month;
        day = derived.day;
    }
    if date_c || date_d {
        return Err(d3136());
    }
    let mut hours = get('H', &components);
    if time_b {
        let h = get('h', &components);
        hours = if h == 12.0 { 0.0 } else { h };
        if get('P', &components) == 1.0 {
            hours += 12.0;
        }
    }
    let mut millis = date_utc(
        get('Y', &components),
        month0,
        day,
        hours,
        get('m', &components),
        get('s', &components),
        get('f', &components),
    );
    let tz = [get('Z', &components), get('z', &components)]
        .into_iter()
        .find(|v| *v != 0.0 && !v.is_nan());
    if let Some(tz) = tz {
        millis -= tz * 60.0 * 1000.0;
    }
    Ok(if millis.is_nan() { None } else { Some(millis) })
}

fn d3110(s: &str) -> Error {
    Error::new(
        "D3110",
        format!(
            "The argument of the toMillis function must be an ISO 8601 formatted timestamp. Given {}",
            Value::from(s)
        ),
    )
    .value(Value::from(s))
}

/// ISO 8601 timestamps as the reference accepts them
/// (`^\d{4}(-[01]\d)?(-[0-3]\d)?(T[0-2]\d:[0-5]\d:[0-5]\d)?(\.\d+)?([+-][0-2]\d:?[0-5]\d|Z)?$`),
/// with JS `Date.parse` semantics for the value (out-of-range days roll over, `24:00:00` is
/// the end of the day).
fn parse_iso8601(s: &str) -> Result<Option<f64>> {
    static ISO: std::sync::OnceLock<Option<regex::Regex>> = std::sync::OnceLock::new();
    let re = ISO.get_or_init(|| {
        regex::Regex::new(
            r"^([0-9]{4})(-[01][0-9])?(-[0-3][0-9])?(T([0-2][0-9]):([0-5][0-9]):([0-5][0-9]))?(\.[0-9]+)?([+-][0-2][0-9]:?[0-5][0-9]|Z)?$",
        )
        .ok()
    });
    let Some(c) = re.as_ref().and_then(|re| re.captures(s)) else {
        return Err(d3110(s));
    };
    let num = |i: usize, skip: usize| -> Option<f64> {
        c.get(i)
            .map(|m| m.as_str()[skip..].parse::<f64>().unwrap_or(f64::NAN))
    };
    let year = num(1, 0).unwrap_or(f64::NAN);
    let mut month = num(2, 1);
    let mut day = num(3, 1);
    if month.is_none() && day.is_some() {
        // "YYYY-DD" only matches through the day group; Date.parse reads it as a month
        month = day.take();
    }
    let month = month.unwrap_or(1.0);
    let day = day.unwrap_or(1.0);
    let has_time = c.get(4).is_some();
    let hours = num(5, 0).unwrap_or(0.0);
    let minutes = num(6, 0).unwrap_or(0.0);
    let seconds = num(7, 0).unwrap_or(0.0);
    let millis = c.get(8).map_or(0.0, |m| {
        let digits: String = m.as_str()[1..].chars().take(3).collect();
        let padded = format!("{digits:0<3}");
        padded.parse::<f64>().unwrap_or(0.0)
    });
    if !(1.0..=12.0).contains(&month) || !(1.0..=31.0).contains(&day) {
        return Ok(None);
    }
    if c.get(8).is_some() && !has_time {
        return Ok(None);
    }
    if hours > 24.0 || (hours == 24.0 && (minutes != 0.0 || seconds != 0.0 || millis != 0.0)) {
        return Ok(None);
    }
    // Date.UTC maps years 0..=99 to the 1900s, Date.parse does not
    let mut t = make_date(year, month - 1.0, day, hours, minutes, seconds, millis);
    if let Some(tz) = c.get(9) {
        let tz = tz.as_str();
        if tz != "Z" {
            let sign = if tz.starts_with('-') { -1.0 } else { 1.0 };
            let digits: String = tz[1..].chars().filter(char::is_ascii_digit).collect();
            let h: f64 = digits[..2].parse().unwrap_or(0.0);
            let m: f64 = digits[2..].parse().unwrap_or(0.0);
            if h > 23.0 {
                return Ok(None);
            }
            t -= sign * (h * 60.0 + m) * 60_000.0;
        }
    }
    Ok(if t.is_nan() { None } else { Some(t) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt(ms: f64, picture: &str) -> String {
        format_datetime(ms, Some(picture), None).expect("format")
    }

    #[test]
    fn civil_round_trip() {
        for days in [-800_000, -1, 0, 1, 59, 365, 10_957, 17_613, 2_932_896] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(civil_from_days(0), (1970, 1, 1));
    }

    #[test]
    fn iso_default_and_timezones() {
        assert_eq!(
            format_datetime(1_521_801_216_617.0, None, None).expect("iso"),
            "2018-03-23T10:33:36.617Z"
        );
        assert_eq!(
            format_datetime(1_540_127_100_000.0, None, Some("-0500")).expect("iso"),
            "2018-10-21T08:05:00.000-05:00"
        );
        assert_eq!(
            format_datetime(1_540_127_100_000.0, None, Some("+0530")).expect("iso"),
            "2018-10-21T18:35:00.000+05:30"
        );
        assert_eq!(
            format_datetime(1_540_127_100_000.0, None, Some("0000")).expect("iso"),
            "2018-10-21T13:05:00.000Z"
        );
    }

    #[test]
    fn ordinal_words_and_roman() {
        assert_eq!(
            fmt(1_521_801_216_617.0, "[Dwo] [MNn] [YI]"),
            "twenty-third March MMXVIII"
        );
        assert_eq!(fmt(1_521_801_216_617.0, "[D1o]"), "23rd");
        assert_eq!(
            fmt(1_521_801_216_617.0, "[Yw]"),
            "two thousand and eighteen"
        );
    }

    #[test]
    fn iso_week_dates() {
        // 2005-01-01 is in week 53 of 2004; 2008-12-29 is in week 1 of 2009
        assert_eq!(
            fmt(1_104_537_600_000.0, "[X0001]-W[W01]-[F1]"),
            "2004-W53-6"
        );
        assert_eq!(
            fmt(1_230_508_800_000.0, "[X0001]-W[W01]-[F1]"),
            "2009-W01-1"
        );
    }

    #[test]
    fn parse_round_trips() {
        let now = 0.0;
        assert_eq!(
            parse_datetime_at("23rd March 2018", Some("[D1o] [MNn] [Y]"), now).expect("parse"),
            Some(1_521_763_200_000.0)
        );
        assert_eq!(
            parse_datetime_at("2018-03-23T10:33:36.617Z", None, now).expect("iso"),
            Some(1_521_801_216_617.0)
        );
        assert_eq!(
            parse_datetime_at("2018-03-23T11:33:36+01:00", None, now).expect("iso"),
            Some(1_521_801_216_000.0)
        );
        assert_eq!(
            parse_datetime_at("nope", None, now).expect_err("bad").code,
            "D3110"
        );
        assert_eq!(
            parse_datetime_at("nope", Some("[Y]"), now).expect("no match"),
            None
        );
    }

    #[test]
    fn missing_leading_components_come_from_now() {
        let now = 1_521_801_216_617.0; // 2018-03-23T10:33:36.617Z
        assert_eq!(
            parse_datetime_at("13:45", Some("[H]:[m]"), now).expect("time"),
            Some(1_521_812_700_000.0)
        );
    }

    #[test]
    fn timezone_markers() {
        let ms = 1_531_310_400_000.0; // 2018-07-11T12:00:00Z
        let tz = |picture: &str, zone: &str| {
            format_datetime(ms, Some(picture), Some(zone)).expect("format")
        };
        assert_eq!(tz("[H01]:[m01] [Z]", "-0500"), "07:00 -05:00");
        assert_eq!(tz("[Z0]", "+0530"), "+5:30");
        assert_eq!(tz("[Z0101]", "+0530"), "+0530");
        assert_eq!(tz("[z]", "-0500"), "GMT-05:00");
        assert_eq!(tz("[Z01:01t]", "+0000"), "Z");
        assert_eq!(tz("[Z01:01]", "+0000"), "+00:00");
        // like the reference, "-0530" is read as -6 hours and -30 minutes
        assert_eq!(tz("[H01]:[m01] [Z]", "-0530"), "05:30 -06:30");
        assert_eq!(tz("[Z0]", "-0530"), "-6:-30");
        assert_eq!(
            format_datetime(ms, Some("[Z010101]"), Some("+0100"))
                .expect_err("too many digits")
                .code,
            "D3134"
        );
    }

    #[test]
    fn picture_syntax() {
        let ms = 1_521_801_216_617.0;
        assert_eq!(fmt(ms, "[[[Y]]]"), "[2018]");
        assert_eq!(fmt(ms, "[ Y 0001 ]"), "2018");
        assert_eq!(fmt(ms, "[Y,2]"), "18");
        assert_eq!(fmt(ms, "[FNn,3-3] [MN,*-3]"), "Fri MAR");
        assert_eq!(fmt(ms, "[h]:[m01] [PN]"), "10:33 AM");
        assert_eq!(fmt(ms, "[E] [C]"), "ISO ISO");
        let err = |p: &str| {
            format_datetime(ms, Some(p), None)
                .expect_err("bad picture")
                .code
        };
        assert_eq!(err("[Y"), "D3135");
        assert_eq!(err("[q]"), "D3132");
        assert_eq!(err("[YN]"), "D3133");
        assert_eq!(err("[D##0०]"), "D3131");
    }

    #[test]
    fn parse_twelve_hour_clock_and_zones() {
        let p = |s: &str, picture: &str| parse_datetime_at(s, Some(picture), 0.0).expect("parse");
        assert_eq!(
            p("4/4/2018 12:06 am", "[D1]/[M1]/[Y0001] [h]:[m] [P]"),
            Some(1_522_800_360_000.0)
        );
        assert_eq!(
            p("4/4/2018 12:06 pm", "[D1]/[M1]/[Y0001] [h]:[m] [P]"),
            Some(1_522_843_560_000.0)
        );
        assert_eq!(
            p(
                "2020-09-09 08:00:00 +02:00",
                "[Y0001]-[M01]-[D01] [H01]:[m01]:[s01] [Z]"
            ),
            Some(1_599_631_200_000.0)
        );
        // a gap between specified components cannot be defaulted
        assert_eq!(
            parse_datetime_at("2018-22", Some("[Y]-[D]"), 0.0)
                .expect_err("gap")
                .code,
            "D3136"
        );
        // ISO week dates cannot be parsed
        assert_eq!(
            parse_datetime_at("2018-32-5", Some("[X]-[W]-[F1]"), 0.0)
                .expect_err("week date")
                .code,
            "D3136"
        );
    }

    #[test]
    fn week_in_month() {
        // 2017-01-01 (Sunday) belongs to the 5th week of December 2016
        assert_eq!(fmt(1_483_272_000_000.0, "[w] [xNn]"), "5 December");
        // 2018-08-01 (Wednesday) is in the 1st week of August
        assert_eq!(fmt(1_533_038_400_000.0, "[w] [xNn]"), "1 August");
    }
}
