//! Function signatures (`<s-n?:s>`): parsing, argument validation and context substitution.

use crate::error::{Error, Result};
use crate::value::Value;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Quant {
    One,
    Optional,
    Plus,
}

#[derive(Debug, Clone)]
struct Param {
    /// Accepted type symbols (`m` = missing).
    set: String,
    quant: Quant,
    context: bool,
    /// Set without the quantifier, for checking the context value.
    context_set: String,
    kind: char,
    subtype: Option<String>,
}

/// A parsed signature.
#[derive(Debug, Clone)]
pub(crate) struct Signature {
    params: Vec<Param>,
}

impl Signature {
    /// Parses a signature such as `<s-nn?:s>`.
    pub(crate) fn parse(sig: &str) -> Result<Signature> {
        let chars: Vec<char> = sig.chars().collect();
        let mut params: Vec<Param> = Vec::new();
        let mut i = 1; // skip '<'
        let new = |set: &str, kind: char| Param {
            set: set.to_string(),
            quant: Quant::One,
            context: false,
            context_set: String::new(),
            kind,
            subtype: None,
        };
        while i < chars.len() {
            let c = chars[i];
            match c {
                ':' | '>' => break,
                's' | 'n' | 'b' | 'l' | 'o' => params.push(new(&format!("{c}m"), c)),
                'a' => params.push(new("asnblfom", 'a')),
                'f' => params.push(new("f", 'f')),
                'j' => params.push(new("asnblom", 'j')),
                'x' => params.push(new("asnblfom", 'x')),
                '-' => {
                    if let Some(p) = params.last_mut() {
                        p.context = true;
                        p.context_set = p.set.clone();
                        p.quant = Quant::Optional;
                    }
                }
                '?' => {
                    if let Some(p) = params.last_mut() {
                        p.quant = Quant::Optional;
                    }
                }
                '+' => {
                    if let Some(p) = params.last_mut() {
                        p.quant = Quant::Plus;
                    }
                }
                '(' => {
                    let end = chars[i..]
                        .iter()
                        .position(|&c| c == ')')
                        .map(|p| p + i)
                        .ok_or_else(|| Error::new("S0401", "Unmatched ( in signature"))?;
                    let choice: String = chars[i + 1..end].iter().collect();
                    if choice.contains('<') {
                        return Err(Error::new(
                            "S0402",
                            "Choice groups containing parameterized types are not supported",
                        ));
                    }
                    params.push(new(&format!("{choice}m"), '('));
                    i = end;
                }
                '<' => {
                    let Some(p) = params.last_mut().filter(|p| p.kind == 'a' || p.kind == 'f')
                    else {
                        return Err(Error::new(
                            "S0401",
                            "Type parameters can only be applied to functions and arrays",
                        )
                        .value(serde_json::json!(c.to_string())));
                    };
                    let mut depth = 0;
                    let mut end = i;
                    for (j, &ch) in chars.iter().enumerate().skip(i) {
                        if ch == '<' {
                            depth += 1;
                        } else if ch == '>' {
                            depth -= 1;
                            if depth == 0 {
                                end = j;
                                break;
                            }
                        }
                    }
                    p.subtype = Some(chars[i + 1..end].iter().collect());
                    i = end;
                }
                _ => {
                    return Err(Error::new(
                        "S0401",
                        format!("Type parameter {c} is not valid in a signature"),
                    )
                    .value(serde_json::json!(c.to_string())))
                }
            }
            i += 1;
        }
        Ok(Signature { params })
    }

    /// Matches the parameters `params[pi..]` against `sig[si..]`; returns each parameter's span.
    fn match_from(
        &self,
        params: &[Param],
        sig: &[u8],
        si: usize,
        full: bool,
        spans: &mut Vec<(usize, usize)>,
    ) -> bool {
        let Some(p) = params.first() else {
            return !full || si == sig.len();
        };
        let ok = |b: u8| p.set.as_bytes().contains(&b);
        let mut max = 0;
        while si + max < sig.len() && ok(sig[si + max]) && (p.quant == Quant::Plus || max < 1) {
            max += 1;
        }
        let min = if p.quant == Quant::Optional { 0 } else { 1 };
        let mut n = max as isize;
        while n >= min as isize {
            spans.push((si, si + n as usize));
            if self.match_from(&params[1..], sig, si + n as usize, full, spans) {
                return true;
            }
            spans.pop();
            n -= 1;
        }
        false
    }

    /// Validates arguments, substitutes the context for a missing `-` argument and wraps
    /// single values for array parameters.
    pub(crate) fn validate<'a>(
        &self,
        args: Vec<Value<'a>>,
        context: Option<&Value<'a>>,
    ) -> Result<Vec<Value<'a>>> {
        if self.matches_plainly(&args) {
            return Ok(args);
        }
        let sig: Vec<u8> = args.iter().map(|a| a.symbol() as u8).collect();
        let mut spans = Vec::with_capacity(self.params.len());
        if !self.match_from(&self.params, &sig, 0, true, &mut spans) {
            return Err(self.validation_error(&args, &sig));
        }
        let mut out = Vec::with_capacity(self.params.len());
        let mut args = args.into_iter().map(Some).collect::<Vec<_>>();
        let mut arg_index = 0;
        for (param, &(s, e)) in self.params.iter().zip(spans.iter()) {
            if s == e {
                if param.context {
                    let ctx = context.cloned().unwrap_or(Value::Undefined);
                    let sym = ctx.symbol() as u8;
                    if param.context_set.as_bytes().contains(&sym) {
                        out.push(ctx);
                    } else {
                        return Err(Error::new(
                            "T0411",
                            format!(
                                "Context value is not a compatible type with argument {}",
                                arg_index + 1
                            ),
                        )
                        .value(ctx.to_json_lossy()));
                    }
                } else {
                    // an absent optional argument (jsonata-js passes the argument at this index)
                    out.push(
                        args.get_mut(arg_index)
                            .and_then(Option::take)
                            .unwrap_or(Value::Undefined),
                    );
                    arg_index += 1;
                }
                continue;
            }
            for &single in &sig[s..e] {
                let arg = args
                    .get_mut(arg_index)
                    .and_then(Option::take)
                    .unwrap_or(Value::Undefined);
                if param.kind == 'a' {
                    if single == b'm' {
                        out.push(Value::Undefined);
                    } else {
                        if let Some(sub) = &param.subtype {
                            let sub0 = sub.as_bytes().first().copied().unwrap_or(b'x');
                            let ok = if single != b'a' {
                                single == sub0
                            } else {
                                let items = arg.members();
                                match items.first() {
                                    None => true,
                                    Some(first) => {
                                        let t = first.symbol() as u8;
                                        t == sub0 && items.iter().all(|v| v.symbol() as u8 == t)
                                    }
                                }
                            };
                            if !ok {
                                let ty = match sub.as_str() {
                                    "a" => "arrays",
                                    "b" => "booleans",
                                    "f" => "functions",
                                    "n" => "numbers",
                                    "o" => "objects",
                                    "s" => "strings",
                                    _ => "values",
                                };
                                return Err(Error::new(
                                    "T0412",
                                    format!("Argument {} must be an array of {ty}", arg_index + 1),
                                )
                                .value(arg.to_json_lossy()));
                            }
                        }
                        if single != b'a' {
                            out.push(Value::array(vec![arg]));
                        } else {
                            out.push(arg);
                        }
                    }
                } else {
                    out.push(arg);
                }
                arg_index += 1;
            }
        }
        Ok(out)
    }

    /// True when every argument fits its parameter one to one and nothing needs substituting
    /// or wrapping (the common case, checked without allocating).
    fn matches_plainly(&self, args: &[Value<'_>]) -> bool {
        if args.len() > self.params.len() {
            return false;
        }
        for (i, p) in self.params.iter().enumerate() {
            match args.get(i) {
                Some(a) => {
                    let sym = a.symbol() as u8;
                    if p.quant == Quant::Plus || !p.set.as_bytes().contains(&sym) {
                        return false;
                    }
                    if p.kind == 'a' {
                        if sym != b'a' {
                            return false;
                        }
                        if let Some(sub) = &p.subtype {
                            // `a<t>`: plain when every member has type t
                            let [t] = sub.as_bytes() else { return false };
                            let ok = match a {
                                Value::JArr(items) => items
                                    .iter()
                                    .all(|j| Value::from_json(j).symbol() as u8 == *t),
                                Value::Array(arr) => {
                                    arr.items.iter().all(|v| v.symbol() as u8 == *t)
                                }
                                _ => false,
                            };
                            if !ok {
                                return false;
                            }
                        }
                    }
                }
                None => {
                    if p.quant != Quant::Optional || p.context {
                        return false;
                    }
                }
            }
        }
        true
    }

    fn validation_error(&self, args: &[Value<'_>], sig: &[u8]) -> Error {
        let mut good_to = 0;
        for i in 0..self.params.len() {
            let mut spans = Vec::new();
            if self.match_from(&self.params[..=i], sig, 0, false, &mut spans) {
                good_to = spans.last().map(|s| s.1).unwrap_or(0);
            } else {
                break;
            }
        }
        let value = args.get(good_to).map(|v| v.to_json_lossy());
        let mut e = Error::new(
            "T0410",
            format!("Argument {} does not match function signature", good_to + 1),
        );
        e.value = value;
        e
    }

    /// Number of declared parameters.
    pub(crate) fn arity(&self) -> usize {
        self.params.len()
    }
}
