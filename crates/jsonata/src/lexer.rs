//! Tokenizer. Whether `/` starts a regex or divides depends on the previous token, as in jsonata-js.

use crate::error::{Error, Result};

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Tok {
    /// An operator or punctuation, including the word operators `and`, `or`, `in`.
    Op(&'static str),
    Name(String),
    Variable(String),
    Str(String),
    Num(f64),
    True,
    False,
    Null,
    Regex {
        pattern: String,
        flags: String,
    },
    End,
}

#[derive(Debug, Clone)]
pub(crate) struct Token {
    pub(crate) tok: Tok,
    pub(crate) pos: usize,
}

const OPERATORS: &[&str] = &[
    "..", ":=", "!=", ">=", "<=", "**", "~>", "?:", "??", ".", "[", "]", "{", "}", "(", ")", ",",
    "@", "#", ";", ":", "?", "+", "-", "*", "/", "%", "|", "=", "<", ">", "^", "&", "!", "~",
];

fn is_op_char(c: char) -> bool {
    ".[]{}(),@#;:?+-*/%|=<>^&!~".contains(c)
}

pub(crate) struct Lexer<'s> {
    src: &'s str,
    pos: usize,
    /// True when the previous token ends an operand, so `/` is division.
    after_operand: bool,
}

impl<'s> Lexer<'s> {
    pub(crate) fn new(src: &'s str) -> Lexer<'s> {
        Lexer {
            src,
            pos: 0,
            after_operand: false,
        }
    }

    fn peek_char(&self) -> Option<char> {
        self.src[self.pos..].chars().next()
    }

    fn rest(&self) -> &'s str {
        &self.src[self.pos..]
    }

    /// Reads a raw function signature `<...>` starting at the current position (after skipping
    /// whitespace); returns None when the next character is not `<`.
    pub(crate) fn raw_signature(&mut self) -> Result<Option<(String, usize)>> {
        self.skip_ws()?;
        if self.peek_char() != Some('<') {
            return Ok(None);
        }
        let start = self.pos;
        let mut depth = 0i32;
        for (i, c) in self.rest().char_indices() {
            match c {
                '<' => depth += 1,
                '>' => {
                    depth -= 1;
                    if depth == 0 {
                        let sig: String = self.src[start..start + i + 1]
                            .chars()
                            .filter(|c| !c.is_whitespace())
                            .collect();
                        self.pos = start + i + 1;
                        return Ok(Some((sig, start)));
                    }
                }
                '{' => break,
                _ => {}
            }
        }
        Err(Error::new("S0401", "Type parameter not closed").at(start))
    }

    fn skip_ws(&mut self) -> Result<()> {
        loop {
            let r = self.rest();
            let trimmed = r.trim_start_matches([' ', '\t', '\n', '\r', '\u{b}']);
            self.pos += r.len() - trimmed.len();
            if let Some(body) = trimmed.strip_prefix("/*") {
                match body.find("*/") {
                    Some(end) => self.pos += 2 + end + 2,
                    None => {
                        return Err(Error::new("S0106", "Comment has no closing tag").at(self.pos))
                    }
                }
            } else {
                return Ok(());
            }
        }
    }

    pub(crate) fn next_token(&mut self) -> Result<Token> {
        self.skip_ws()?;
        let pos = self.pos;
        let Some(c) = self.peek_char() else {
            return Ok(Token { tok: Tok::End, pos });
        };
        let tok = if c == '/' && !self.after_operand {
            self.regex()?
        } else if c == '"' || c == '\'' {
            self.pos += 1;
            Tok::Str(self.string(c)?)
        } else if c.is_ascii_digit() {
            self.number()?
        } else if c == '`' {
            self.pos += 1;
            match self.rest().find('`') {
                Some(end) => {
                    let name = self.rest()[..end].to_string();
                    self.pos += end + 1;
                    Tok::Name(name)
                }
                None => {
                    return Err(Error::new(
                        "S0105",
                        "Quoted property name must be terminated with a backquote (`)",
                    )
                    .at(pos))
                }
            }
        } else if is_op_char(c) {
            let r = self.rest();
            let op = OPERATORS
                .iter()
                .find(|op| r.starts_with(**op))
                .copied()
                .ok_or_else(|| Error::new("S0204", format!("Unknown operator: {c}")).at(pos))?;
            self.pos += op.len();
            Tok::Op(op)
        } else {
            let r = self.rest();
            let end = r
                .char_indices()
                .find(|&(_, ch)| " \t\n\r\u{b}".contains(ch) || is_op_char(ch))
                .map(|(i, _)| i)
                .unwrap_or(r.len());
            let word = &r[..end];
            self.pos += end;
            if let Some(v) = word.strip_prefix('$') {
                Tok::Variable(v.to_string())
            } else {
                match word {
                    "and" => Tok::Op("and"),
                    "or" => Tok::Op("or"),
                    "in" => Tok::Op("in"),
                    "true" => Tok::True,
                    "false" => Tok::False,
                    "null" => Tok::Null,
                    _ => Tok::Name(word.to_string()),
                }
            }
        };
        self.after_operand = match &tok {
            Tok::Op(op) => matches!(*op, ")" | "]" | "}"),
            Tok::End => false,
            _ => true,
        };
        Ok(Token { tok, pos })
    }

    /// The parser tells the lexer that a word operator (`and`, `or`, `in`) was used as a name.
    pub(crate) fn set_after_operand(&mut self, v: bool) {
        self.after_operand = v;
    }

    fn string(&mut self, quote: char) -> Result<String> {
        let start = self.pos;
        let mut out = String::new();
        let mut chars = self.rest().char_indices();
        while let Some((i, c)) = chars.next() {
            if c == quote {
                self.pos += i + 1;
                return Ok(out);
            }
            if c != '\\' {
                out.push(c);
                continue;
            }
            let Some((_, e)) = chars.next() else { break };
            match e {
                '"' | '\\' | '/' | '\'' => out.push(e),
                'b' => out.push('\u{8}'),
                'f' => out.push('\u{c}'),
                'n' => out.push('\n'),
                'r' => out.push('\r'),
                't' => out.push('\t'),
                'u' => {
                    let hex: String = chars.by_ref().take(4).map(|(_, c)| c).collect();
                    let unit = u32::from_str_radix(&hex, 16).map_err(|_| {
                        Error::new(
                            "S0104",
                            "The escape sequence \\u must be followed by 4 hex digits",
                        )
                        .at(start)
                    })?;
                    if (0xD800..0xDC00).contains(&unit) {
                        // a high surrogate: combine with a following \uDC00-\uDFFF
                        let save = chars.clone();
                        let mut low = None;
                        if let (Some((_, '\\')), Some((_, 'u'))) = (chars.next(), chars.next()) {
                            let hex2: String = chars.by_ref().take(4).map(|(_, c)| c).collect();
                            if let Ok(l) = u32::from_str_radix(&hex2, 16) {
                                if (0xDC00..0xE000).contains(&l) {
                                    low = Some(l);
                                }
                            }
                        }
                        match low {
                            Some(l) => out.push(
                                char::from_u32(0x10000 + ((unit - 0xD800) << 10) + (l - 0xDC00))
                                    .unwrap_or('\u{FFFD}'),
                            ),
                            None => {
                                chars = save;
                                out.push('\u{FFFD}');
                            }
                        }
                    } else {
                        out.push(char::from_u32(unit).unwrap_or('\u{FFFD}'));
                    }
                }
                other => {
                    return Err(Error::new(
                        "S0103",
                        format!("Unsupported escape sequence: \\{other}"),
                    )
                    .at(start)
                    .token(other.to_string()))
                }
            }
        }
        Err(Error::new(
            "S0101",
            "String literal must be terminated by a matching quote",
        )
        .at(start))
    }

    fn number(&mut self) -> Result<Tok> {
        let r = self.rest().as_bytes();
        let mut i = 0;
        if r.first() == Some(&b'0') {
            i = 1;
        } else {
            while i < r.len() && r[i].is_ascii_digit() {
                i += 1;
            }
        }
        if i + 1 < r.len() && r[i] == b'.' && r[i + 1].is_ascii_digit() {
            i += 1;
            while i < r.len() && r[i].is_ascii_digit() {
                i += 1;
            }
        }
        if i < r.len() && (r[i] == b'e' || r[i] == b'E') {
            let mut j = i + 1;
            if j < r.len() && (r[j] == b'+' || r[j] == b'-') {
                j += 1;
            }
            if j < r.len() && r[j].is_ascii_digit() {
                while j < r.len() && r[j].is_ascii_digit() {
                    j += 1;
                }
                i = j;
            }
        }
        let text = &self.rest()[..i];
        let pos = self.pos;
        self.pos += i;
        let n: f64 = text
            .parse()
            .map_err(|_| Error::new("S0102", format!("Number out of range: {text}")).at(pos))?;
        if !n.is_finite() {
            return Err(Error::new("S0102", format!("Number out of range: {text}"))
                .at(pos)
                .token(text));
        }
        Ok(Tok::Num(n))
    }

    fn regex(&mut self) -> Result<Tok> {
        let start = self.pos;
        self.pos += 1;
        let body_start = self.pos;
        let mut depth_class = false;
        let mut escaped = false;
        for (i, c) in self.rest().char_indices() {
            if escaped {
                escaped = false;
                continue;
            }
            match c {
                '\\' => escaped = true,
                '[' => depth_class = true,
                ']' => depth_class = false,
                '/' if !depth_class => {
                    let pattern = self.src[body_start..body_start + i].to_string();
                    if pattern.is_empty() {
                        return Err(Error::new(
                            "S0301",
                            "Empty regular expressions are not allowed",
                        )
                        .at(start));
                    }
                    self.pos = body_start + i + 1;
                    let flags_len = self
                        .rest()
                        .find(|c: char| !matches!(c, 'i' | 'm'))
                        .unwrap_or(self.rest().len());
                    let flags = self.rest()[..flags_len].to_string();
                    self.pos += flags_len;
                    return Ok(Tok::Regex { pattern, flags });
                }
                _ => {}
            }
        }
        Err(Error::new("S0302", "No terminating / in regular expression").at(start))
    }
}
