//! The built-in function library (JSONata 2.0) and Step Functions' additions
//! (`$partition`, `$range`, `$hash`, `$random([seed])`, `$uuid`, `$parse`; no `$eval`).

use std::collections::HashMap;
use std::rc::Rc;
use std::sync::LazyLock;

use crate::error::{Error, Result};
use crate::eval::{append, boolean, deep_copy, lookup_field, Ctx, Frame, Func};
use crate::regex::Regex;
use crate::signature::Signature;
use crate::value::{deep_equal, js_number_string, Object, Value};

/// The arguments of a built-in function call.
pub(crate) struct Call<'c, 'a> {
    pub(crate) ctx: &'c Ctx<'a>,
    pub(crate) args: Vec<Value<'a>>,
    pub(crate) input: &'c Value<'a>,
    pub(crate) env: &'c Rc<Frame<'a>>,
}

type Impl = for<'c, 'a> fn(Call<'c, 'a>) -> Result<Value<'a>>;

/// A built-in function.
pub(crate) struct Builtin {
    pub(crate) name: &'static str,
    pub(crate) signature: Signature,
    pub(crate) implementation: Impl,
}

static BUILTINS: LazyLock<HashMap<&'static str, Builtin, foldhash::fast::FixedState>> =
    LazyLock::new(|| {
        let table: &[(&'static str, &'static str, Impl)] = &[
            ("sum", "<a<n>:n>", sum),
            ("count", "<a:n>", count),
            ("max", "<a<n>:n>", max),
            ("min", "<a<n>:n>", min),
            ("average", "<a<n>:n>", average),
            ("string", "<x-b?:s>", string),
            ("substring", "<s-nn?:s>", substring),
            ("substringBefore", "<s-s:s>", substring_before),
            ("substringAfter", "<s-s:s>", substring_after),
            ("lowercase", "<s-:s>", lowercase),
            ("uppercase", "<s-:s>", uppercase),
            ("length", "<s-:n>", length),
            ("trim", "<s-:s>", trim),
            ("pad", "<s-ns?:s>", pad),
            ("match", "<s-f<s:o>n?:a<o>>", match_),
            ("contains", "<s-(sf):b>", contains),
            ("replace", "<s-(sf)(sf)n?:s>", replace),
            ("split", "<s-(sf)n?:a<s>>", split),
            ("join", "<a<s>s?:s>", join),
            ("formatNumber", "<n-so?:s>", format_number),
            ("formatBase", "<n-n?:s>", format_base),
            ("formatInteger", "<n-s:s>", format_integer),
            ("parseInteger", "<s-s:n>", parse_integer),
            ("number", "<(nsb)-:n>", number),
            ("floor", "<n-:n>", floor),
            ("ceil", "<n-:n>", ceil),
            ("round", "<n-n?:n>", round),
            ("abs", "<n-:n>", abs),
            ("sqrt", "<n-:n>", sqrt),
            ("power", "<n-n:n>", power),
            ("random", "<n?:n>", random),
            ("boolean", "<x-:b>", boolean_fn),
            ("not", "<x-:b>", not),
            ("map", "<af>", map),
            ("zip", "<a+>", zip),
            ("filter", "<af>", filter),
            ("single", "<af?>", single),
            ("reduce", "<afj?:j>", reduce),
            ("sift", "<o-f?:o>", sift),
            ("keys", "<x-:a<s>>", keys),
            ("lookup", "<x-s:x>", lookup_fn),
            ("append", "<xx:a>", append_fn),
            ("exists", "<x:b>", exists),
            ("spread", "<x-:a<o>>", spread),
            ("merge", "<a<o>:o>", merge),
            ("reverse", "<a:a>", reverse),
            ("each", "<o-f:a>", each),
            ("error", "<s?:x>", error),
            ("assert", "<bs?:x>", assert),
            ("type", "<x:s>", type_fn),
            ("sort", "<af?:a>", sort),
            ("shuffle", "<a:a>", shuffle),
            ("distinct", "<x:x>", distinct),
            ("base64encode", "<s-:s>", base64encode),
            ("base64decode", "<s-:s>", base64decode),
            ("encodeUrlComponent", "<s-:s>", encode_url_component),
            ("encodeUrl", "<s-:s>", encode_url),
            ("decodeUrlComponent", "<s-:s>", decode_url_component),
            ("decodeUrl", "<s-:s>", decode_url),
            ("toMillis", "<s-s?:n>", to_millis),
            ("fromMillis", "<n-s?s?:s>", from_millis),
            ("clone", "<(oa)-:o>", clone),
            ("now", "<s?s?:s>", now),
            ("millis", "<:n>", millis),
            // Step Functions additions
            ("partition", "<an:a>", partition),
            ("range", "<nnn?:a>", range),
            ("hash", "<s-s?:s>", hash),
            ("uuid", "<:s>", uuid),
            ("parse", "<s-:x>", parse),
        ];
        table
            .iter()
            .map(|&(name, sig, implementation)| {
                let signature = Signature::parse(sig)
                    .unwrap_or_else(|e| panic!("built-in signature {sig} of {name}: {e}"));
                (
                    name,
                    Builtin {
                        name,
                        signature,
                        implementation,
                    },
                )
            })
            .collect()
    });

/// The built-in function named `name`.
pub(crate) fn lookup(name: &str) -> Option<&'static Builtin> {
    BUILTINS.get(name)
}

fn e(code: &'static str, msg: impl Into<String>) -> Error {
    Error::new(code, msg)
}

fn num(v: &Value<'_>) -> f64 {
    v.as_f64().unwrap_or(f64::NAN)
}

fn text<'v>(v: &'v Value<'_>) -> &'v str {
    v.as_str().unwrap_or_default()
}

fn arg<'a>(args: &[Value<'a>], i: usize) -> Value<'a> {
    args.get(i).cloned().unwrap_or_default()
}

fn js_round_to_15(n: f64) -> f64 {
    format!("{n:.14e}").parse().unwrap_or(n)
}

/// JSON text of a value as `JSON.stringify` with jsonata's number replacer.
pub(crate) fn stringify(v: &Value<'_>, pretty: bool, limits: &crate::Limits) -> Result<String> {
    if v.spans_more_than(limits.max_result_values) {
        return Err(e(
            "U1003",
            format!(
                "The value to serialize spans more than {} JSON values",
                limits.max_result_values
            ),
        ));
    }
    let mut out = String::new();
    write_json(v, pretty, 0, &mut out)?;
    Ok(out)
}

fn write_json(v: &Value<'_>, pretty: bool, indent: usize, out: &mut String) -> Result<()> {
    let nl = |out: &mut String, level: usize| {
        if pretty {
            out.push('\n');
            out.push_str(&"  ".repeat(level));
        }
    };
    match v {
        Value::Undefined | Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            if !n.is_finite() {
                return Err(e("D1001", "Number out of range").value(serde_json::Value::Null));
            }
            let n = if n.fract() == 0.0 {
                *n
            } else {
                js_round_to_15(*n)
            };
            out.push_str(&js_number_string(n));
        }
        Value::Str(_) | Value::JStr(_) => {
            out.push_str(&serde_json::to_string(text(v)).unwrap_or_default());
        }
        Value::Func(_) => out.push_str("\"\""),
        Value::JArr(_) | Value::Array(_) | Value::Tuples(_) => {
            let items = v.members();
            out.push('[');
            for (i, m) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                nl(out, indent + 1);
                write_json(m, pretty, indent + 1, out)?;
            }
            if !items.is_empty() {
                nl(out, indent);
            }
            out.push(']');
        }
        Value::JObj(_) | Value::Object(_) | Value::Host(_) => {
            let entries: Vec<_> = v
                .entries()
                .into_iter()
                .filter(|(_, v)| !v.is_undefined())
                .collect();
            out.push('{');
            for (i, (k, m)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                nl(out, indent + 1);
                out.push_str(&serde_json::to_string(k).unwrap_or_default());
                out.push(':');
                if pretty {
                    out.push(' ');
                }
                write_json(m, pretty, indent + 1, out)?;
            }
            if !entries.is_empty() {
                nl(out, indent);
            }
            out.push('}');
        }
    }
    Ok(())
}

/// `$string` of a defined value.
pub(crate) fn to_string(v: &Value<'_>, limits: &crate::Limits) -> Result<String> {
    to_string_pretty(v, false, limits)
}

fn to_string_pretty(v: &Value<'_>, pretty: bool, limits: &crate::Limits) -> Result<String> {
    match v {
        Value::Str(_) | Value::JStr(_) => Ok(text(v).to_string()),
        Value::Func(_) => Ok(String::new()),
        Value::Number(n) if !n.is_finite() => Err(e(
            "D3001",
            "Attempting to invoke string function on Infinity or NaN",
        )
        .value(serde_json::Value::Null)),
        _ => {
            let v = if v.is_outer_wrapper() {
                v.get(0)
            } else {
                v.clone()
            };
            stringify(&v, pretty, limits)
        }
    }
}

fn string<'a>(call: Call<'_, 'a>) -> Result<Value<'a>> {
    let Call { args, ctx, .. } = call;
    let v = arg(&args, 0);
    if v.is_undefined() {
        return Ok(Value::Undefined);
    }
    let pretty = matches!(arg(&args, 1), Value::Bool(true));
    Ok(Value::string(to_string_pretty(&v, pretty, &ctx.limits)?))
}

fn numbers<'a>(v: &Value<'a>) -> Vec<f64> {
    v.to_members().iter().map(num).collect()
}

fn sum<'a>(call: Call<'_, 'a>) -> Result<Value<'a>> {
    let Call { args, .. } = call;
    let v = arg(&args, 0);
    if v.is_undefined() {
        return Ok(Value::Undefined);
    }
    Ok(Value::Number(numbers(&v).iter().sum()))
}

fn count<'a>(call: Call<'_, 'a>) -> Result<Value<'a>> {
    let Call { args, .. } = call;
    let v = arg(&args, 0);
    let n = match &v {
        Value::Undefined => 0,
        a if a.is_array() => a.len(),
        _ => 1,
    };
    Ok(Value::Number(n as f64))
}

fn max<'a>(call: Call<'_, 'a>) -> Result<Value<'a>> {
    let Call { args, .. } = call;
    let ns = numbers(&arg(&args, 0));
    Ok(ns
        .into_iter()
        .reduce(f64::max)
        .map(Value::Number)
        .unwrap_or_default())
}

fn min<'a>(call: Call<'_, 'a>) -> Result<Value<'a>> {
    let Call { args, .. } = call;
    let ns = numbers(&arg(&args, 0));
    Ok(ns
        .into_iter()
        .reduce(f64::min)
        .map(Value::Number)
        .unwrap_or_default())
}

fn average<'a>(call: Call<'_, 'a>) -> Result<Value<'a>> {
    let Call { args, .. } = call;
    let ns = numbers(&arg(&args, 0));
    if ns.is_empty() {
        return Ok(Value::Undefined);
    }
    Ok(Value::Number(ns.iter().sum::<f64>() / ns.len() as f64))
}

fn chars_of(s: &str) -> Vec<char> {
    s.chars().collect()
}

fn js_slice(len: usize, start: f64, end: Option<f64>) -> (usize, usize) {
    let norm = |x: f64| -> usize {
        let x = x.trunc();
        if x < 0.0 {
            (len as f64 + x).max(0.0) as usize
        } else {
            (x as usize).min(len)
        }
    };
    let s = norm(start);
    let e = end.map(norm).unwrap_or(len);
    (s, e.max(s))
}

fn substring<'a>(call: Call<'_, 'a>) -> Result<Value<'a>> {
    let Call { args, .. } = call;
    let s = arg(&args, 0);
    if s.is_undefined() {
        return Ok(Value::Undefined);
    }
    let chars = chars_of(text(&s));
    let len = chars.len() as f64;
    let mut start = num(&arg(&args, 1));
    if len + start < 0.0 {
        start = 0.0;
    }
    let length = arg(&args, 2);
    let (a, b) = if length.is_undefined() {
        js_slice(chars.len(), start, None)
    } else {
        let l = num(&length);
        if l <= 0.0 {
            return Ok(Value::string(""));
        }
        let end = if start >= 0.0 {
            start + l
        } else {
            len + start + l
        };
        js_slice(chars.len(), start, Some(end))
    };
    Ok(Value::string(chars[a..b].iter().collect::<String>()))
}

fn substring_before<'a>(call: Call<'_, 'a>) -> Result<Value<'a>> {
    let Call { args, .. } = call;
    let s = arg(&args, 0);
    if s.is_undefined() {
        return Ok(Value::Undefined);
    }
    let (st, ch) = (text(&s), text(&args[1]));
    Ok(match st.find(ch) {
        Some(i) => Value::string(&st[..i]),
        None => s.clone(),
    })
}

fn substring_after<'a>(call: Call<'_, 'a>) -> Result<Value<'a>> {
    let Call { args, .. } = call;
    let s = arg(&args, 0);
    if s.is_undefined() {
        return Ok(Value::Undefined);
    }
    let (st, ch) = (text(&s), text(&args[1]));
    Ok(match st.find(ch) {
        Some(i) => Value::string(&st[i + ch.len()..]),
        None => s.clone(),
    })
}

fn map_str<'a>(args: &[Value<'a>], f: impl Fn(&str) -> String) -> Result<Value<'a>> {
    let s = arg(args, 0);
    if s.is_undefined() {
        return Ok(Value::Undefined);
    }
    Ok(Value::string(f(text(&s))))
}

fn lowercase<'a>(call: Call<'_, 'a>) -> Result<Value<'a>> {
    let Call { args, .. } = call;
    map_str(&args, str::to_lowercase)
}

fn uppercase<'a>(call: Call<'_, 'a>) -> Result<Value<'a>> {
    let Call { args, .. } = call;
    map_str(&args, str::to_uppercase)
}

fn length<'a>(call: Call<'_, 'a>) -> Result<Value<'a>> {
    let Call { args, .. } = call;
    let s = arg(&args, 0);
    if s.is_undefined() {
        return Ok(Value::Undefined);
    }
    Ok(Value::Number(text(&s).chars().count() as f64))
}

fn trim<'a>(call: Call<'_, 'a>) -> Result<Value<'a>> {
    let Call { args, .. } = call;
    map_str(&args, |s| {
        let mut out = String::with_capacity(s.len());
        let mut in_ws = false;
        for c in s.chars() {
            if matches!(c, ' ' | '\t' | '\n' | '\r') {
                if !in_ws {
                    out.push(' ');
                }
                in_ws = true;
            } else {
                out.push(c);
                in_ws = false;
            }
        }
        let out = out.strip_prefix(' ').unwrap_or(&out);
        out.strip_suffix(' ').unwrap_or(out).to_string()
    })
}

fn pad<'a>(call: Call<'_, 'a>) -> Result<Value<'a>> {
    let Call { args, ctx, .. } = call;
    let s = arg(&args, 0);
    if s.is_undefined() {
        return Ok(Value::Undefined);
    }
    let st = text(&s);
    let width = num(&arg(&args, 1)).trunc();
    let padc = arg(&args, 2);
    let padc = match padc.as_str() {
        Some(p) if !p.is_empty() => p.to_string(),
        _ => " ".to_string(),
    };
    let pad_len = width.abs() as i64 - st.chars().count() as i64;
    if pad_len <= 0 {
        return Ok(s.clone());
    }
    // Refused before allocating: `$pad("", 1e12)` would take the memory first.
    if pad_len as usize > ctx.limits.max_string_bytes {
        return Err(e(
            "U1005",
            format!(
                "A string built by the expression has more than {} bytes",
                ctx.limits.max_string_bytes
            ),
        ));
    }
    let padding: String = padc.chars().cycle().take(pad_len as usize).collect();
    Ok(Value::string(if width > 0.0 {
        format!("{st}{padding}")
    } else {
        format!("{padding}{st}")
    }))
}

/// Matches of a regex following jsonata-js's matcher protocol (D1004 on a repeated empty match).
fn regex_matches(re: &Regex, s: &str, limit: Option<usize>) -> Result<Vec<crate::regex::Match>> {
    let mut out: Vec<crate::regex::Match> = Vec::new();
    let Some(first) = re.find_from(s, 0) else {
        return Ok(out);
    };
    let mut last = first.range.end;
    out.push(first);
    loop {
        if limit.is_some_and(|l| out.len() >= l) || last >= s.len() {
            break;
        }
        let Some(m) = re.find_from(s, last) else {
            break;
        };
        if m.range.is_empty() {
            return Err(e("D1004", "Regular expression matches zero length string")
                .value(serde_json::json!(re.source())));
        }
        last = m.range.end;
        out.push(m);
    }
    Ok(out)
}

fn utf16_index(s: &str, byte: usize) -> usize {
    s[..byte].encode_utf16().count()
}

fn match_object<'a>(s: &str, m: &crate::regex::Match) -> Value<'a> {
    let mut o = Object::default();
    o.insert("match".into(), Value::string(&s[m.range.clone()]));
    o.insert(
        "index".into(),
        Value::Number(utf16_index(s, m.range.start) as f64),
    );
    o.insert(
        "groups".into(),
        Value::array(
            m.groups
                .iter()
                .map(|g| {
                    g.clone()
                        .map(|r| Value::string(&s[r]))
                        .unwrap_or_else(|| Value::string(""))
                })
                .collect(),
        ),
    );
    Value::object(o)
}

/// Calling a regex as a function: the first match object, as jsonata-js's matcher closure.
pub(crate) fn regex_call<'a>(re: &Regex, s: Option<&Value<'a>>) -> Result<Value<'a>> {
    let Some(st) = s.and_then(Value::as_str) else {
        return Ok(Value::Undefined);
    };
    Ok(match re.find_from(st, 0) {
        Some(m) => {
            let mut o = Object::default();
            o.insert("match".into(), Value::string(&st[m.range.clone()]));
            o.insert(
                "start".into(),
                Value::Number(utf16_index(st, m.range.start) as f64),
            );
            o.insert(
                "end".into(),
                Value::Number(utf16_index(st, m.range.end) as f64),
            );
            o.insert(
                "groups".into(),
                Value::array(
                    m.groups
                        .iter()
                        .map(|g| g.clone().map(|r| Value::string(&st[r])).unwrap_or_default())
                        .collect(),
                ),
            );
            Value::object(o)
        }
        None => Value::Undefined,
    })
}

fn regex_of<'v>(v: &'v Value<'_>) -> Option<&'v Regex> {
    match v {
        Value::Func(f) => match &**f {
            Func::Regex(re) => Some(re),
            _ => None,
        },
        _ => None,
    }
}

fn limit_arg(v: &Value<'_>, code: &'static str, what: &str) -> Result<Option<usize>> {
    match v {
        Value::Undefined => Ok(None),
        Value::Number(n) if *n < 0.0 => Err(e(
            code,
            format!("Third argument of {what} function must evaluate to a positive number"),
        )
        .value(serde_json::json!(n))),
        Value::Number(n) => Ok(Some(n.floor() as usize)),
        _ => Ok(None),
    }
}

fn match_<'a>(call: Call<'_, 'a>) -> Result<Value<'a>> {
    let Call { args, .. } = call;
    let s = arg(&args, 0);
    if s.is_undefined() {
        return Ok(Value::Undefined);
    }
    let limit = limit_arg(&arg(&args, 2), "D3040", "match")?;
    let Some(re) = regex_of(&args[1]) else {
        return Err(e(
            "T0410",
            "Argument 2 of function match does not match function signature",
        ));
    };
    let st = text(&s);
    if limit == Some(0) {
        return Ok(Value::seq(Vec::new()));
    }
    let ms = regex_matches(re, st, limit)?;
    Ok(Value::seq(ms.iter().map(|m| match_object(st, m)).collect()))
}

fn contains<'a>(call: Call<'_, 'a>) -> Result<Value<'a>> {
    let Call { args, .. } = call;
    let s = arg(&args, 0);
    if s.is_undefined() {
        return Ok(Value::Undefined);
    }
    let st = text(&s);
    let pat = arg(&args, 1);
    Ok(Value::Bool(match regex_of(&pat) {
        Some(re) => re.find_from(st, 0).is_some(),
        None => st.contains(text(&pat)),
    }))
}

fn substitute(replacement: &str, m: &str, groups: &[Option<String>]) -> String {
    let mut out = String::new();
    let rb = replacement.as_bytes();
    let mut pos = 0;
    while let Some(off) = replacement[pos..].find('$') {
        let idx = pos + off;
        out.push_str(&replacement[pos..idx]);
        pos = idx + 1;
        match rb.get(pos) {
            Some(b'$') => {
                out.push('$');
                pos += 1;
            }
            Some(b'0') => {
                out.push_str(m);
                pos += 1;
            }
            _ => {
                let max_digits = if groups.is_empty() {
                    1
                } else {
                    (groups.len() as f64).log10().floor() as usize + 1
                };
                let digits: String = replacement[pos..]
                    .chars()
                    .take(max_digits)
                    .take_while(|c| c.is_ascii_digit())
                    .collect();
                let mut index: Option<usize> = digits.parse().ok();
                if max_digits > 1 && index.is_some_and(|i| i > groups.len()) {
                    index = digits[..digits.len().saturating_sub(1)].parse().ok();
                }
                match index {
                    Some(i) => {
                        if i >= 1 {
                            if let Some(Some(g)) = groups.get(i - 1) {
                                out.push_str(g);
                            }
                        }
                        pos += i.to_string().len();
                    }
                    None => out.push('$'),
                }
            }
        }
    }
    out.push_str(&replacement[pos..]);
    out
}

fn replace<'a>(call: Call<'_, 'a>) -> Result<Value<'a>> {
    let Call {
        ctx,
        args,
        input,
        env,
        ..
    } = call;
    let s = arg(&args, 0);
    if s.is_undefined() {
        return Ok(Value::Undefined);
    }
    let st = text(&s);
    let pattern = arg(&args, 1);
    let replacement = arg(&args, 2);
    if pattern.as_str() == Some("") {
        return Err(e(
            "D3010",
            "Second argument of replace function cannot be an empty string",
        ));
    }
    if pattern.is_undefined() {
        // jsonata-js applies a pattern that is not a string as a matcher function: undefined
        // is not one. (Read as "", it matched at every position without advancing: the loop
        // below never ended and grew its output until memory ran out.)
        return Err(e("T1006", "Attempted to invoke a non-function"));
    }
    let limit = limit_arg(&arg(&args, 3), "D3011", "replace")?;
    if limit == Some(0) {
        return Ok(s.clone());
    }
    let mut out = String::new();
    let mut pos = 0;
    match regex_of(&pattern) {
        None => {
            let p = text(&pattern);
            if p.is_empty() {
                // A function as the pattern (custom matchers are not supported) reads as "",
                // which would match at every position without advancing.
                return Err(e(
                    "D3010",
                    "Second argument of replace function cannot be an empty string (custom matcher functions are not supported)",
                ));
            }
            let mut count = 0;
            while let Some(off) = st[pos..].find(p) {
                if limit.is_some_and(|l| count >= l) {
                    break;
                }
                let idx = pos + off;
                out.push_str(&st[pos..idx]);
                match &replacement {
                    r if r.is_function() => {
                        let mut mo = Object::default();
                        mo.insert("match".into(), Value::string(p));
                        mo.insert("index".into(), Value::Number(utf16_index(st, idx) as f64));
                        mo.insert("groups".into(), Value::array(Vec::new()));
                        let r = ctx.apply(r, vec![Value::object(mo)], input, env)?;
                        match r.as_str() {
                            Some(x) => out.push_str(x),
                            None => {
                                return Err(e(
                                    "D3012",
                                    "Attempted to replace a matched string with a non-string value",
                                )
                                .value(r.to_json_lossy()))
                            }
                        }
                    }
                    r => out.push_str(&substitute(text(r), p, &[])),
                }
                pos = idx + p.len();
                count += 1;
            }
            out.push_str(&st[pos..]);
        }
        Some(re) => {
            let ms = regex_matches(re, st, limit)?;
            for m in &ms {
                out.push_str(&st[pos..m.range.start]);
                let whole = &st[m.range.clone()];
                let groups: Vec<Option<String>> = m
                    .groups
                    .iter()
                    .map(|g| g.clone().map(|r| st[r].to_string()))
                    .collect();
                if replacement.is_function() {
                    let r = ctx.apply(&replacement, vec![match_object(st, m)], input, env)?;
                    match r.as_str() {
                        Some(x) => out.push_str(x),
                        None => {
                            return Err(e(
                                "D3012",
                                "Attempted to replace a matched string with a non-string value",
                            )
                            .value(r.to_json_lossy()))
                        }
                    }
                } else {
                    out.push_str(&substitute(text(&replacement), whole, &groups));
                }
                pos = m.range.end;
            }
            out.push_str(&st[pos..]);
        }
    }
    Ok(Value::string(out))
}

fn split<'a>(call: Call<'_, 'a>) -> Result<Value<'a>> {
    let Call { args, .. } = call;
    let s = arg(&args, 0);
    if s.is_undefined() {
        return Ok(Value::Undefined);
    }
    let limit = limit_arg(&arg(&args, 2), "D3020", "split")?;
    let st = text(&s);
    let sep = arg(&args, 1);
    let mut parts: Vec<String> = match regex_of(&sep) {
        Some(re) => {
            let ms = regex_matches(re, st, None)?;
            let mut parts = Vec::new();
            let mut pos = 0;
            for m in ms {
                parts.push(st[pos..m.range.start].to_string());
                pos = m.range.end;
            }
            parts.push(st[pos..].to_string());
            parts
        }
        None => {
            let p = text(&sep);
            if p.is_empty() {
                st.chars().map(String::from).collect()
            } else {
                st.split(p).map(str::to_string).collect()
            }
        }
    };
    if let Some(l) = limit {
        parts.truncate(l);
    }
    Ok(Value::array(parts.into_iter().map(Value::string).collect()))
}

fn join<'a>(call: Call<'_, 'a>) -> Result<Value<'a>> {
    let Call { args, .. } = call;
    let a = arg(&args, 0);
    if a.is_undefined() {
        return Ok(Value::Undefined);
    }
    let sep = arg(&args, 1);
    let parts: Vec<String> = a.members().iter().map(|m| text(m).to_string()).collect();
    Ok(Value::string(parts.join(sep.as_str().unwrap_or(""))))
}

fn format_number<'a>(call: Call<'_, 'a>) -> Result<Value<'a>> {
    let Call { args, .. } = call;
    let n = arg(&args, 0);
    if n.is_undefined() {
        return Ok(Value::Undefined);
    }
    let opts = arg(&args, 2).to_json();
    let opts = opts.as_ref().and_then(|o| o.as_object());
    Ok(Value::string(crate::numfmt::format_number(
        num(&n),
        text(&args[1]),
        opts,
    )?))
}

fn format_base<'a>(call: Call<'_, 'a>) -> Result<Value<'a>> {
    let Call { args, .. } = call;
    let n = arg(&args, 0);
    if n.is_undefined() {
        return Ok(Value::Undefined);
    }
    Ok(Value::string(crate::numfmt::format_base(
        num(&n),
        arg(&args, 1).as_f64(),
    )?))
}

fn format_integer<'a>(call: Call<'_, 'a>) -> Result<Value<'a>> {
    let Call { args, .. } = call;
    let n = arg(&args, 0);
    if n.is_undefined() {
        return Ok(Value::Undefined);
    }
    Ok(Value::string(crate::numfmt::format_integer(
        num(&n),
        text(&args[1]),
    )?))
}

fn parse_integer<'a>(call: Call<'_, 'a>) -> Result<Value<'a>> {
    let Call { args, .. } = call;
    let s = arg(&args, 0);
    if s.is_undefined() {
        return Ok(Value::Undefined);
    }
    Ok(crate::numfmt::parse_integer(text(&s), text(&args[1]))?
        .map(Value::Number)
        .unwrap_or_default())
}

fn to_millis<'a>(call: Call<'_, 'a>) -> Result<Value<'a>> {
    let Call { ctx, args, .. } = call;
    let s = arg(&args, 0);
    if s.is_undefined() {
        return Ok(Value::Undefined);
    }
    let pic = arg(&args, 1);
    Ok(
        crate::datetime::parse_datetime_at(text(&s), pic.as_str(), now_ms(ctx))?
            .map(Value::Number)
            .unwrap_or_default(),
    )
}

fn from_millis<'a>(call: Call<'_, 'a>) -> Result<Value<'a>> {
    let Call { args, .. } = call;
    let n = arg(&args, 0);
    if n.is_undefined() {
        return Ok(Value::Undefined);
    }
    let (pic, tz) = (arg(&args, 1), arg(&args, 2));
    Ok(Value::string(crate::datetime::format_datetime(
        num(&n),
        pic.as_str(),
        tz.as_str(),
    )?))
}

fn now_ms(ctx: &Ctx<'_>) -> f64 {
    match ctx.now.get() {
        Some(n) => n,
        None => {
            let n = ctx.host.now_millis();
            ctx.now.set(Some(n));
            n
        }
    }
}

fn now<'a>(call: Call<'_, 'a>) -> Result<Value<'a>> {
    let Call { ctx, args, .. } = call;
    let (pic, tz) = (arg(&args, 0), arg(&args, 1));
    Ok(Value::string(crate::datetime::format_datetime(
        now_ms(ctx),
        pic.as_str(),
        tz.as_str(),
    )?))
}

fn millis<'a>(call: Call<'_, 'a>) -> Result<Value<'a>> {
    let Call { ctx, .. } = call;
    Ok(Value::Number(now_ms(ctx)))
}

fn number<'a>(call: Call<'_, 'a>) -> Result<Value<'a>> {
    let Call { args, .. } = call;
    let v = arg(&args, 0);
    Ok(match &v {
        Value::Undefined => Value::Undefined,
        Value::Number(_) => v.clone(),
        Value::Bool(b) => Value::Number(if *b { 1.0 } else { 0.0 }),
        s if s.is_string() => {
            let t = text(s);
            match parse_js_number(t) {
                Some(n) => Value::Number(n),
                None => {
                    return Err(e(
                        "D3030",
                        format!(
                            "Unable to cast value to a number: {}",
                            serde_json::to_string(t).unwrap_or_default()
                        ),
                    )
                    .value(v.to_json_lossy()))
                }
            }
        }
        other => {
            return Err(e("D3030", "Unable to cast value to a number").value(other.to_json_lossy()))
        }
    })
}

fn parse_js_number(t: &str) -> Option<f64> {
    let b = t.as_bytes();
    let mut i = 0;
    if b.first() == Some(&b'-') {
        i = 1;
    }
    let digits_start = i;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    if i == digits_start {
        // hex / octal / binary literals
        let radix = match t.get(..2) {
            Some("0x") | Some("0X") => 16,
            Some("0o") | Some("0O") => 8,
            Some("0b") | Some("0B") => 2,
            _ => return None,
        };
        return u64::from_str_radix(&t[2..], radix).ok().map(|n| n as f64);
    }
    if let Some(rest) = t.get(..2) {
        if matches!(rest, "0x" | "0X" | "0o" | "0O" | "0b" | "0B") {
            let radix = match &rest[1..] {
                "x" | "X" => 16,
                "o" | "O" => 8,
                _ => 2,
            };
            return u64::from_str_radix(&t[2..], radix).ok().map(|n| n as f64);
        }
    }
    if i < b.len() && b[i] == b'.' {
        i += 1;
        let f = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == f {
            return None;
        }
    }
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        i += 1;
        if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
            i += 1;
        }
        let f = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        if i == f {
            return None;
        }
    }
    if i != b.len() {
        return None;
    }
    t.parse::<f64>().ok().filter(|n| n.is_finite())
}

fn unary_num<'a>(args: &[Value<'a>], f: impl Fn(f64) -> f64) -> Result<Value<'a>> {
    let v = arg(args, 0);
    if v.is_undefined() {
        return Ok(Value::Undefined);
    }
    Ok(Value::Number(f(num(&v))))
}

fn floor<'a>(call: Call<'_, 'a>) -> Result<Value<'a>> {
    let Call { args, .. } = call;
    unary_num(&args, f64::floor)
}

fn ceil<'a>(call: Call<'_, 'a>) -> Result<Value<'a>> {
    let Call { args, .. } = call;
    unary_num(&args, f64::ceil)
}

fn abs<'a>(call: Call<'_, 'a>) -> Result<Value<'a>> {
    let Call { args, .. } = call;
    unary_num(&args, f64::abs)
}

fn shift(n: f64, by: f64) -> f64 {
    let s = js_number_string(n);
    let (m, ex) = match s.split_once('e') {
        Some((m, ex)) => (m.to_string(), ex.parse::<f64>().unwrap_or(0.0)),
        None => (s, 0.0),
    };
    format!("{m}e{}", ex + by).parse().unwrap_or(n)
}

fn round<'a>(call: Call<'_, 'a>) -> Result<Value<'a>> {
    let Call { args, .. } = call;
    let v = arg(&args, 0);
    if v.is_undefined() {
        return Ok(Value::Undefined);
    }
    let mut x = num(&v);
    let precision = arg(&args, 1).as_f64().unwrap_or(0.0);
    if precision != 0.0 {
        x = shift(x, precision);
    }
    let mut r = (x + 0.5).floor();
    let diff = r - x;
    if diff.abs() == 0.5 && (r % 2.0).abs() == 1.0 {
        r -= 1.0;
    }
    if precision != 0.0 {
        r = shift(r, -precision);
    }
    if r == 0.0 {
        r = 0.0;
    }
    Ok(Value::Number(r))
}

fn sqrt<'a>(call: Call<'_, 'a>) -> Result<Value<'a>> {
    let Call { args, .. } = call;
    let v = arg(&args, 0);
    if v.is_undefined() {
        return Ok(Value::Undefined);
    }
    let n = num(&v);
    if n < 0.0 {
        return Err(e(
            "D3060",
            "The sqrt function cannot be applied to a negative number",
        )
        .value(v.to_json_lossy()));
    }
    Ok(Value::Number(n.sqrt()))
}

fn power<'a>(call: Call<'_, 'a>) -> Result<Value<'a>> {
    let Call { args, .. } = call;
    let v = arg(&args, 0);
    if v.is_undefined() {
        return Ok(Value::Undefined);
    }
    let r = num(&v).powf(num(&arg(&args, 1)));
    if !r.is_finite() {
        return Err(e("D3061", "The power function has resulted in a value that cannot be represented as a JSON number").value(v.to_json_lossy()));
    }
    Ok(Value::Number(r))
}

fn random<'a>(call: Call<'_, 'a>) -> Result<Value<'a>> {
    let Call { ctx, args, .. } = call;
    Ok(Value::Number(ctx.host.random(arg(&args, 0).as_f64())))
}

fn boolean_fn<'a>(call: Call<'_, 'a>) -> Result<Value<'a>> {
    let Call { args, .. } = call;
    Ok(boolean(&arg(&args, 0)).map(Value::Bool).unwrap_or_default())
}

fn not<'a>(call: Call<'_, 'a>) -> Result<Value<'a>> {
    let Call { args, .. } = call;
    Ok(boolean(&arg(&args, 0))
        .map(|b| Value::Bool(!b))
        .unwrap_or_default())
}

fn arity(f: &Value<'_>) -> usize {
    match f {
        Value::Func(f) => f.arity(),
        _ => 0,
    }
}

fn hof_args<'a>(f: &Value<'a>, v: Value<'a>, i: usize, all: &Value<'a>) -> Vec<Value<'a>> {
    let n = arity(f);
    let mut args = vec![v];
    if n >= 2 {
        args.push(Value::Number(i as f64));
    }
    if n >= 3 {
        args.push(all.clone());
    }
    args
}

fn map<'a>(call: Call<'_, 'a>) -> Result<Value<'a>> {
    let Call {
        ctx,
        args,
        input,
        env,
        ..
    } = call;
    let a = arg(&args, 0);
    if a.is_undefined() {
        return Ok(Value::Undefined);
    }
    let f = arg(&args, 1);
    let mut out = Vec::new();
    for (i, m) in a.members().into_iter().enumerate() {
        let r = ctx.apply(&f, hof_args(&f, m, i, &a), input, env)?;
        if !r.is_undefined() {
            out.push(r);
        }
    }
    Ok(Value::seq(out))
}

fn filter<'a>(call: Call<'_, 'a>) -> Result<Value<'a>> {
    let Call {
        ctx,
        args,
        input,
        env,
        ..
    } = call;
    let a = arg(&args, 0);
    if a.is_undefined() {
        return Ok(Value::Undefined);
    }
    let f = arg(&args, 1);
    let mut out = Vec::new();
    for (i, m) in a.members().into_iter().enumerate() {
        let r = ctx.apply(&f, hof_args(&f, m.clone(), i, &a), input, env)?;
        if boolean(&r).unwrap_or(false) {
            out.push(m);
        }
    }
    Ok(Value::seq(out))
}

fn single<'a>(call: Call<'_, 'a>) -> Result<Value<'a>> {
    let Call {
        ctx,
        args,
        input,
        env,
        ..
    } = call;
    let a = arg(&args, 0);
    if a.is_undefined() {
        return Ok(Value::Undefined);
    }
    let f = arg(&args, 1);
    let mut found: Option<Value<'a>> = None;
    for (i, m) in a.members().into_iter().enumerate() {
        let ok = if f.is_undefined() {
            true
        } else {
            boolean(&ctx.apply(&f, hof_args(&f, m.clone(), i, &a), input, env)?).unwrap_or(false)
        };
        if ok {
            if found.is_some() {
                return Err(e("D3138", "The $single() function expected exactly 1 matching result.  Instead it matched more."));
            }
            found = Some(m);
        }
    }
    found.ok_or_else(|| {
        e(
            "D3139",
            "The $single() function expected exactly 1 matching result.  Instead it matched 0.",
        )
    })
}

fn reduce<'a>(call: Call<'_, 'a>) -> Result<Value<'a>> {
    let Call {
        ctx,
        args,
        input,
        env,
        ..
    } = call;
    let a = arg(&args, 0);
    if a.is_undefined() {
        return Ok(Value::Undefined);
    }
    let f = arg(&args, 1);
    let n = arity(&f);
    if n < 2 {
        return Err(e(
            "D3050",
            "The second argument of reduce function must be a function with at least two arguments",
        ));
    }
    let items = a.members();
    let init = arg(&args, 2);
    let (mut acc, start) = if init.is_undefined() && !items.is_empty() {
        (items[0].clone(), 1)
    } else {
        (init, 0)
    };
    for (i, m) in items.iter().enumerate().skip(start) {
        let mut call = vec![acc, m.clone()];
        if n >= 3 {
            call.push(Value::Number(i as f64));
        }
        if n >= 4 {
            call.push(a.clone());
        }
        acc = ctx.apply(&f, call, input, env)?;
    }
    Ok(acc)
}

fn obj_hof_args<'a>(f: &Value<'a>, v: Value<'a>, k: &str, o: &Value<'a>) -> Vec<Value<'a>> {
    let n = arity(f);
    let mut args = vec![v];
    if n >= 2 {
        args.push(Value::string(k));
    }
    if n >= 3 {
        args.push(o.clone());
    }
    args
}

fn sift<'a>(call: Call<'_, 'a>) -> Result<Value<'a>> {
    let Call {
        ctx,
        args,
        input,
        env,
        ..
    } = call;
    let o = arg(&args, 0);
    if o.is_undefined() {
        return Ok(Value::Undefined);
    }
    let f = arg(&args, 1);
    let mut out = Object::default();
    for (k, v) in o.entries() {
        let r = ctx.apply(&f, obj_hof_args(&f, v.clone(), &k, &o), input, env)?;
        if boolean(&r).unwrap_or(false) {
            out.insert(k, v);
        }
    }
    if out.is_empty() {
        return Ok(Value::Undefined);
    }
    Ok(Value::object(out))
}

fn each<'a>(call: Call<'_, 'a>) -> Result<Value<'a>> {
    let Call {
        ctx,
        args,
        input,
        env,
        ..
    } = call;
    let o = arg(&args, 0);
    if o.is_undefined() {
        return Ok(Value::Undefined);
    }
    let f = arg(&args, 1);
    let mut out = Vec::new();
    for (k, v) in o.entries() {
        let r = ctx.apply(&f, obj_hof_args(&f, v, &k, &o), input, env)?;
        if !r.is_undefined() {
            out.push(r);
        }
    }
    Ok(Value::seq(out))
}

fn keys<'a>(call: Call<'_, 'a>) -> Result<Value<'a>> {
    let Call { args, .. } = call;
    let v = arg(&args, 0);
    let mut ks: Vec<String> = Vec::new();
    if v.is_array() {
        for m in v.members() {
            for k in m.keys() {
                if !ks.contains(&k) {
                    ks.push(k);
                }
            }
        }
    } else {
        ks = v.keys();
    }
    if ks.is_empty() {
        return Ok(Value::Undefined);
    }
    Ok(Value::seq(ks.into_iter().map(Value::string).collect()))
}

fn lookup_fn<'a>(call: Call<'_, 'a>) -> Result<Value<'a>> {
    let Call { args, .. } = call;
    let v = lookup_field(&arg(&args, 0), text(&arg(&args, 1)));
    Ok(match &v {
        Value::Array(a) if a.seq && a.items.is_empty() => Value::Undefined,
        Value::Array(a) if a.seq && a.items.len() == 1 => a.items[0].clone(),
        _ => v,
    })
}

fn append_fn<'a>(call: Call<'_, 'a>) -> Result<Value<'a>> {
    let Call { args, .. } = call;
    Ok(append(arg(&args, 0), arg(&args, 1)))
}

fn exists<'a>(call: Call<'_, 'a>) -> Result<Value<'a>> {
    let Call { args, .. } = call;
    Ok(Value::Bool(!arg(&args, 0).is_undefined()))
}

fn spread<'a>(call: Call<'_, 'a>) -> Result<Value<'a>> {
    let Call { args, .. } = call;
    let v = arg(&args, 0);
    if v.is_undefined() {
        return Ok(Value::Undefined);
    }
    let mut out = Vec::new();
    let push_obj = |o: &Value<'a>, out: &mut Vec<Value<'a>>| {
        for (k, v) in o.entries() {
            let mut single = Object::default();
            single.insert(k, v);
            out.push(Value::object(single));
        }
    };
    if v.is_array() {
        for m in v.members() {
            if m.is_object() {
                push_obj(&m, &mut out);
            } else {
                out.push(m);
            }
        }
    } else if v.is_object() {
        push_obj(&v, &mut out);
    } else {
        return Ok(v);
    }
    Ok(Value::seq(out))
}

fn merge<'a>(call: Call<'_, 'a>) -> Result<Value<'a>> {
    let Call { args, .. } = call;
    let v = arg(&args, 0);
    if v.is_undefined() {
        return Ok(Value::Undefined);
    }
    let members = v.members();
    let mut out = Object::with_capacity_and_hasher(
        members.iter().map(|m| m.len_keys()).sum(),
        Default::default(),
    );
    for m in members {
        match &m {
            Value::JObj(o) => {
                for (k, val) in o.iter() {
                    out.insert(k.clone(), Value::from_json(val));
                }
            }
            Value::Object(o) => {
                for (k, val) in o.iter() {
                    out.insert(k.clone(), val.clone());
                }
            }
            other => {
                for (k, val) in other.entries() {
                    out.insert(k, val);
                }
            }
        }
    }
    Ok(Value::object(out))
}

fn reverse<'a>(call: Call<'_, 'a>) -> Result<Value<'a>> {
    let Call { args, .. } = call;
    let v = arg(&args, 0);
    if v.is_undefined() {
        return Ok(Value::Undefined);
    }
    let mut items = v.members();
    items.reverse();
    Ok(Value::array(items))
}

fn error<'a>(call: Call<'_, 'a>) -> Result<Value<'a>> {
    let Call { args, .. } = call;
    let msg = arg(&args, 0);
    Err(e(
        "D3137",
        msg.as_str().unwrap_or("$error() function evaluated"),
    ))
}

fn assert<'a>(call: Call<'_, 'a>) -> Result<Value<'a>> {
    let Call { args, .. } = call;
    if matches!(arg(&args, 0), Value::Bool(true)) {
        return Ok(Value::Undefined);
    }
    let msg = arg(&args, 1);
    Err(e(
        "D3141",
        msg.as_str().unwrap_or("$assert() statement failed"),
    ))
}

fn type_fn<'a>(call: Call<'_, 'a>) -> Result<Value<'a>> {
    let Call { args, .. } = call;
    let v = arg(&args, 0);
    Ok(match v {
        Value::Undefined => Value::Undefined,
        Value::Null => Value::string("null"),
        Value::Bool(_) => Value::string("boolean"),
        Value::Number(_) => Value::string("number"),
        Value::Func(_) => Value::string("function"),
        ref s if s.is_string() => Value::string("string"),
        ref a if a.is_array() => Value::string("array"),
        _ => Value::string("object"),
    })
}

fn sort<'a>(call: Call<'_, 'a>) -> Result<Value<'a>> {
    let Call {
        ctx,
        args,
        input,
        env,
        ..
    } = call;
    let v = arg(&args, 0);
    if v.is_undefined() {
        return Ok(Value::Undefined);
    }
    let items = v.members();
    if items.len() <= 1 {
        return Ok(v);
    }
    let f = arg(&args, 1);
    if f.is_undefined() {
        let all_num = items.iter().all(Value::is_number);
        let all_str = items.iter().all(Value::is_string);
        if !all_num && !all_str {
            return Err(e("D3070", "The single argument form of the sort function can only be applied to an array of strings or an array of numbers.  Use the second argument to specify a comparison function"));
        }
        let mut items = items;
        items.sort_by(|a, b| match (a, b) {
            (Value::Number(x), Value::Number(y)) => {
                x.partial_cmp(y).unwrap_or(std::cmp::Ordering::Equal)
            }
            _ => a.as_str().cmp(&b.as_str()),
        });
        return Ok(Value::array(items));
    }
    // merge sort with "swap" comparator, as jsonata-js
    fn msort<'a>(
        ctx: &Ctx<'a>,
        f: &Value<'a>,
        items: Vec<Value<'a>>,
        input: &Value<'a>,
        env: &Rc<Frame<'a>>,
    ) -> Result<Vec<Value<'a>>> {
        if items.len() <= 1 {
            return Ok(items);
        }
        let mut left = items;
        let right = left.split_off(left.len() / 2);
        let left = msort(ctx, f, left, input, env)?;
        let right = msort(ctx, f, right, input, env)?;
        let mut out = Vec::with_capacity(left.len() + right.len());
        let (mut i, mut j) = (0, 0);
        while i < left.len() && j < right.len() {
            let swap = ctx.apply(f, vec![left[i].clone(), right[j].clone()], input, env)?;
            if boolean(&swap).unwrap_or(false) {
                out.push(right[j].clone());
                j += 1;
            } else {
                out.push(left[i].clone());
                i += 1;
            }
        }
        out.extend_from_slice(&left[i..]);
        out.extend_from_slice(&right[j..]);
        Ok(out)
    }
    Ok(Value::array(msort(ctx, &f, items, input, env)?))
}

fn shuffle<'a>(call: Call<'_, 'a>) -> Result<Value<'a>> {
    let Call { ctx, args, .. } = call;
    let v = arg(&args, 0);
    if v.is_undefined() {
        return Ok(Value::Undefined);
    }
    let mut items = v.members();
    for i in (1..items.len()).rev() {
        let j = (ctx.host.random(None) * (i + 1) as f64).floor() as usize;
        items.swap(i, j.min(i));
    }
    Ok(Value::array(items))
}

fn distinct<'a>(call: Call<'_, 'a>) -> Result<Value<'a>> {
    let Call { args, .. } = call;
    let v = arg(&args, 0);
    if !v.is_array() {
        return Ok(v);
    }
    let mut out: Vec<Value<'a>> = Vec::new();
    for m in v.members() {
        if !out.iter().any(|o| deep_equal(o, &m)) {
            out.push(m);
        }
    }
    Ok(if v.is_sequence() {
        Value::seq(out)
    } else {
        Value::array(out)
    })
}

fn zip<'a>(call: Call<'_, 'a>) -> Result<Value<'a>> {
    let Call { args, .. } = call;
    let arrays: Vec<Vec<Value<'a>>> = args.iter().map(Value::to_members).collect();
    let len = arrays.iter().map(Vec::len).min().unwrap_or(0);
    Ok(Value::array(
        (0..len)
            .map(|i| Value::array(arrays.iter().map(|a| a[i].clone()).collect()))
            .collect(),
    ))
}

fn clone<'a>(call: Call<'_, 'a>) -> Result<Value<'a>> {
    let Call { args, .. } = call;
    Ok(deep_copy(&arg(&args, 0)))
}

fn base64encode<'a>(call: Call<'_, 'a>) -> Result<Value<'a>> {
    let Call { args, .. } = call;
    use base64::Engine;
    map_str(&args, |s| {
        base64::engine::general_purpose::STANDARD.encode(s.as_bytes())
    })
}

fn base64decode<'a>(call: Call<'_, 'a>) -> Result<Value<'a>> {
    let Call { args, .. } = call;
    use base64::Engine;
    map_str(&args, |s| {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(
                s.trim_end_matches('=').to_string()
                    + &"=".repeat((4 - s.trim_end_matches('=').len() % 4) % 4),
            )
            .unwrap_or_default();
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

fn percent_encode(s: &str, keep: &str) -> String {
    let mut out = String::new();
    for c in s.chars() {
        if c.is_ascii_alphanumeric() || keep.contains(c) {
            out.push(c);
        } else {
            let mut buf = [0u8; 4];
            for b in c.encode_utf8(&mut buf).bytes() {
                out.push_str(&format!("%{b:02X}"));
            }
        }
    }
    out
}

fn percent_decode(s: &str, reserved: &str, fname: &str) -> Result<String> {
    let b = s.as_bytes();
    let mut out: Vec<u8> = Vec::new();
    let mut i = 0;
    let malformed = || {
        e(
            "D3140",
            format!(
                "Malformed URL passed to ${fname}(): {}",
                serde_json::to_string(s).unwrap_or_default()
            ),
        )
        .value(serde_json::json!(s))
    };
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s.get(i + 1..i + 3).ok_or_else(malformed)?;
            let byte = u8::from_str_radix(hex, 16).map_err(|_| malformed())?;
            if byte < 0x80 && reserved.contains(byte as char) {
                out.extend_from_slice(&b[i..i + 3]);
            } else {
                out.push(byte);
            }
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| malformed())
}

fn encode_url_component<'a>(call: Call<'_, 'a>) -> Result<Value<'a>> {
    let Call { args, .. } = call;
    map_str(&args, |s| percent_encode(s, "-_.!~*'()"))
}

fn encode_url<'a>(call: Call<'_, 'a>) -> Result<Value<'a>> {
    let Call { args, .. } = call;
    map_str(&args, |s| percent_encode(s, "-_.!~*'();,/?:@&=+$#"))
}

fn decode_url_component<'a>(call: Call<'_, 'a>) -> Result<Value<'a>> {
    let Call { args, .. } = call;
    let s = arg(&args, 0);
    if s.is_undefined() {
        return Ok(Value::Undefined);
    }
    Ok(Value::string(percent_decode(
        text(&s),
        "",
        "decodeUrlComponent",
    )?))
}

fn decode_url<'a>(call: Call<'_, 'a>) -> Result<Value<'a>> {
    let Call { args, .. } = call;
    let s = arg(&args, 0);
    if s.is_undefined() {
        return Ok(Value::Undefined);
    }
    Ok(Value::string(percent_decode(
        text(&s),
        ";,/?:@&=+$#",
        "decodeUrl",
    )?))
}

// ---- Step Functions additions ----

fn partition<'a>(call: Call<'_, 'a>) -> Result<Value<'a>> {
    let Call { args, .. } = call;
    let a = arg(&args, 0);
    if a.is_undefined() {
        return Ok(Value::Undefined);
    }
    let size = num(&arg(&args, 1));
    if size.is_nan() || size < 1.0 || size.fract() != 0.0 {
        return Err(e(
            "D3150",
            "The chunk size argument of $partition must be a positive integer",
        )
        .value(serde_json::json!(size)));
    }
    let items = a.members();
    Ok(Value::array(
        items
            .chunks(size as usize)
            .map(|c| Value::array(c.to_vec()))
            .collect(),
    ))
}

fn range<'a>(call: Call<'_, 'a>) -> Result<Value<'a>> {
    let Call { args, .. } = call;
    let (start, end) = (num(&arg(&args, 0)), num(&arg(&args, 1)));
    let step = arg(&args, 2).as_f64().unwrap_or(1.0);
    if step == 0.0 || !step.is_finite() || !start.is_finite() || !end.is_finite() {
        return Err(e(
            "D3151",
            "The step argument of $range must be a non-zero number",
        ));
    }
    let mut out = Vec::new();
    let mut x = start;
    while (step > 0.0 && x <= end) || (step < 0.0 && x >= end) {
        out.push(Value::Number(x));
        if out.len() > 1000 {
            return Err(e(
                "D3152",
                "The $range function can produce at most 1000 items",
            ));
        }
        x += step;
    }
    Ok(Value::seq(out))
}

fn hash<'a>(call: Call<'_, 'a>) -> Result<Value<'a>> {
    let Call { args, .. } = call;
    let s = arg(&args, 0);
    if s.is_undefined() {
        return Ok(Value::Undefined);
    }
    let alg = arg(&args, 1);
    let alg = alg.as_str().unwrap_or("SHA-256");
    match digest_hex(alg, text(&s).as_bytes()) {
        Some(hex) => Ok(Value::string(hex)),
        None => Err(e(
            "D3153",
            format!("The hash algorithm '{alg}' is not supported; use MD5, SHA-1, SHA-256, SHA-384 or SHA-512"),
        )),
    }
}

/// Lowercase hex digest with one of the algorithms Step Functions offers (`MD5`, `SHA-1`,
/// `SHA-256`, `SHA-384`, `SHA-512`); `None` for any other name.
pub fn digest_hex(alg: &str, data: &[u8]) -> Option<String> {
    use sha2::Digest;
    let bytes: Vec<u8> = match alg {
        "MD5" => md5::Md5::digest(data).to_vec(),
        "SHA-1" => sha1::Sha1::digest(data).to_vec(),
        "SHA-256" => sha2::Sha256::digest(data).to_vec(),
        "SHA-384" => sha2::Sha384::digest(data).to_vec(),
        "SHA-512" => sha2::Sha512::digest(data).to_vec(),
        _ => return None,
    };
    let mut hex = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        hex.push_str(&format!("{b:02x}"));
    }
    Some(hex)
}

fn uuid<'a>(call: Call<'_, 'a>) -> Result<Value<'a>> {
    let Call { ctx, .. } = call;
    Ok(Value::string(ctx.host.uuid()))
}

fn parse<'a>(call: Call<'_, 'a>) -> Result<Value<'a>> {
    let Call { args, .. } = call;
    let s = arg(&args, 0);
    if s.is_undefined() {
        return Ok(Value::Undefined);
    }
    let j: serde_json::Value = serde_json::from_str(text(&s)).map_err(|err| {
        e(
            "D3154",
            format!("The argument of $parse is not valid JSON: {err}"),
        )
        .value(serde_json::json!(text(&s)))
    })?;
    Ok(Value::from_owned_json(j))
}
