//! Jackson-shaped parse errors for `INVALID_JSON_DESCRIPTION`.
//!
//! AWS parses definitions with Jackson and echoes its exception text. This is a small JSON scanner that
//! stops at the first syntax error and describes it the way Jackson 2.x does:
//! `<what>\n at [Source: (String)"<text>"; line: L, column: C]`, where the column is one past the last
//! character Jackson consumed. Nesting deeper than Jackson's default maximum (1000) is an error with
//! Jackson's `StreamConstraintsException` text; the scanner itself never recurses.

use crate::depth::MAX_JSON_DEPTH;

/// A Jackson-style parse failure: the message (with the `at [Source…]` suffix) and the location.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct JacksonError {
    pub(crate) message: String,
    pub(crate) location: String,
}

/// Describes the first syntax error in `text`, or `None` when the scanner finds none.
pub(crate) fn first_error(text: &str) -> Option<JacksonError> {
    let chars: Vec<char> = text.chars().collect();
    let mut s = Scanner {
        chars: &chars,
        pos: 0,
        text,
    };
    s.document().err()
}

struct Scanner<'a> {
    chars: &'a [char],
    pos: usize,
    text: &'a str,
}

type R = Result<(), JacksonError>;

fn describe(c: char) -> String {
    let code = c as u32;
    if c.is_control() {
        format!("(CTRL-CHAR, code {code})")
    } else {
        format!("('{c}' (code {code}))")
    }
}

impl Scanner<'_> {
    /// `[Source: (String)"…"; line: L, column: C]` for a character index.
    fn source_at(&self, index: usize) -> String {
        let (mut line, mut col) = (1usize, 1usize);
        for &c in &self.chars[..index.min(self.chars.len())] {
            if c == '\n' {
                line += 1;
                col = 1;
            } else {
                col += 1;
            }
        }
        const MAX: usize = 500;
        let total = self.text.chars().count();
        let shown: String = self.text.chars().take(MAX).collect();
        let truncated = if total > MAX {
            format!("[truncated {} chars]", total - MAX)
        } else {
            String::new()
        };
        format!("[Source: (String)\"{shown}\"{truncated}; line: {line}, column: {col}]")
    }

    fn fail_at(&self, index: usize, what: String) -> R {
        let location = self.source_at(index);
        Err(JacksonError {
            message: format!("{what}\n at {location}"),
            location,
        })
    }

    fn fail(&self, what: String) -> R {
        self.fail_at(self.pos, what)
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(' ' | '\t' | '\n' | '\r')) {
            self.pos += 1;
        }
    }

    fn document(&mut self) -> R {
        self.ws();
        if self.peek().is_none() {
            return self.fail("No content to map due to end-of-input".into());
        }
        // Iterative (an explicit stack of open containers): the text is untrusted and may nest
        // far deeper than any call stack.
        let mut open: Vec<Context> = Vec::new();
        let mut ctx = Context::Root;
        loop {
            // A value is expected in `ctx`.
            match self.value(ctx)? {
                Token::Scalar => {}
                Token::Open(container) => {
                    if open.len() >= MAX_JSON_DEPTH {
                        return self.fail(format!(
                            "Document nesting depth ({}) exceeds the maximum allowed ({MAX_JSON_DEPTH}, from `StreamReadConstraints.getMaxNestingDepth()`)",
                            open.len() + 1
                        ));
                    }
                    self.ws();
                    let empty = match container {
                        Context::Array(_) => self.peek() == Some(']'),
                        _ => self.peek() == Some('}'),
                    };
                    if empty {
                        self.pos += 1;
                    } else {
                        if let Context::Object(start) = container {
                            self.field_name(start)?;
                        }
                        open.push(container);
                        ctx = container;
                        continue;
                    }
                }
            }
            // A value is complete: close what ends here, up to the next value expected.
            loop {
                let Some(&top) = open.last() else {
                    return Ok(());
                };
                self.ws();
                let (close, kind) = match top {
                    Context::Object(_) => ('}', "Object"),
                    _ => (']', "Array"),
                };
                match self.peek() {
                    None => return self.eof(top),
                    Some(',') => {
                        self.pos += 1;
                        if let Context::Object(start) = top {
                            self.field_name(start)?;
                        }
                        ctx = top;
                        break;
                    }
                    Some(c) if c == close => {
                        self.pos += 1;
                        open.pop();
                    }
                    Some(c) => {
                        self.pos += 1;
                        return self.fail(format!(
                            "Unexpected character {}: was expecting comma to separate {kind} entries",
                            describe(c)
                        ));
                    }
                }
            }
        }
    }

    /// Starts a value in `ctx`: a scalar is read whole, a container only opened.
    fn value(&mut self, ctx: Context) -> Result<Token, JacksonError> {
        self.ws();
        let Some(c) = self.peek() else {
            return self.eof(ctx).map(|()| Token::Scalar);
        };
        let scalar = match c {
            '{' | '[' => {
                let start = self.pos;
                self.pos += 1;
                return Ok(Token::Open(if c == '{' {
                    Context::Object(start)
                } else {
                    Context::Array(start)
                }));
            }
            '"' => self.string(),
            '-' | '0'..='9' => self.number(),
            't' => self.keyword("true"),
            'f' => self.keyword("false"),
            'n' => self.keyword("null"),
            c if c.is_alphabetic() => self.invalid_token(),
            c => {
                self.pos += 1;
                let expected = match (c, ctx) {
                    (']', Context::Array(_)) | ('}', Context::Object(_)) => "expected a value",
                    _ => "expected a valid value (JSON String, Number, Array, Object or token 'null', 'true' or 'false')",
                };
                self.fail(format!("Unexpected character {}: {expected}", describe(c)))
            }
        };
        scalar.map(|()| Token::Scalar)
    }

    /// An object member's name and colon (the value follows).
    fn field_name(&mut self, start: usize) -> R {
        self.ws();
        match self.peek() {
            None => return self.eof(Context::Object(start)),
            Some('"') => self.string()?,
            Some(c) => {
                self.pos += 1;
                return self.fail(format!(
                    "Unexpected character {}: was expecting double-quote to start field name",
                    describe(c)
                ));
            }
        }
        self.ws();
        match self.peek() {
            None => self.eof(Context::Object(start)),
            Some(':') => {
                self.pos += 1;
                Ok(())
            }
            Some(c) => {
                self.pos += 1;
                self.fail(format!(
                    "Unexpected character {}: was expecting a colon to separate field name and value",
                    describe(c)
                ))
            }
        }
    }

    fn eof(&self, ctx: Context) -> R {
        match ctx {
            Context::Root => self.fail("No content to map due to end-of-input".into()),
            Context::Array(start) => self.fail(format!(
                "Unexpected end-of-input: expected close marker for Array (start marker at {})",
                self.source_at(start)
            )),
            Context::Object(start) => self.fail(format!(
                "Unexpected end-of-input: expected close marker for Object (start marker at {})",
                self.source_at(start)
            )),
        }
    }

    fn invalid_token(&mut self) -> R {
        let start = self.pos;
        while let Some(c) = self.peek() {
            if c.is_alphanumeric() || c == '_' || c == '$' {
                self.pos += 1;
            } else {
                break;
            }
        }
        let token: String = self.chars[start..self.pos].iter().collect();
        self.fail(format!(
            "Unrecognized token '{token}': was expecting (JSON String, Number, Array, Object or token 'null', 'true' or 'false')"
        ))
    }

    fn keyword(&mut self, word: &str) -> R {
        let start = self.pos;
        for expected in word.chars() {
            if self.peek() != Some(expected) {
                self.pos = start;
                return self.invalid_token();
            }
            self.pos += 1;
        }
        if matches!(self.peek(), Some(c) if c.is_alphanumeric() || c == '_') {
            self.pos = start;
            return self.invalid_token();
        }
        Ok(())
    }

    fn number(&mut self) -> R {
        if self.peek() == Some('-') {
            self.pos += 1;
        }
        let digits = |s: &mut Self| {
            let start = s.pos;
            while matches!(s.peek(), Some('0'..='9')) {
                s.pos += 1;
            }
            s.pos - start
        };
        if digits(self) == 0 {
            let c = self.peek();
            self.pos += 1;
            return match c {
                Some(c) => self.fail(format!(
                    "Unexpected character {}: Expected space separating root-level values",
                    describe(c)
                )),
                None => self.fail("Unexpected end-of-input in numeric value".into()),
            };
        }
        if self.peek() == Some('.') {
            self.pos += 1;
            if digits(self) == 0 {
                return self
                    .fail("Unexpected end-of-input: Decimal point not followed by a digit".into());
            }
        }
        if matches!(self.peek(), Some('e' | 'E')) {
            self.pos += 1;
            if matches!(self.peek(), Some('+' | '-')) {
                self.pos += 1;
            }
            if digits(self) == 0 {
                return self.fail(
                    "Unexpected end-of-input: Exponent indicator not followed by a digit".into(),
                );
            }
        }
        Ok(())
    }

    fn string(&mut self) -> R {
        self.pos += 1;
        loop {
            let Some(c) = self.peek() else {
                return self.fail(
                    "Unexpected end-of-input: was expecting closing quote for a string value"
                        .into(),
                );
            };
            self.pos += 1;
            match c {
                '"' => return Ok(()),
                '\\' => {
                    let Some(n) = self.peek() else {
                        return self
                            .fail("Unexpected end-of-input in character escape sequence".into());
                    };
                    self.pos += 1;
                    match n {
                        '"' | '\\' | '/' | 'b' | 'f' | 'n' | 'r' | 't' => {}
                        'u' => {
                            for _ in 0..4 {
                                match self.peek() {
                                    Some(h) if h.is_ascii_hexdigit() => self.pos += 1,
                                    Some(h) => {
                                        self.pos += 1;
                                        return self.fail(format!(
                                            "Unexpected character {}: expected a hex-digit for character escape sequence",
                                            describe(h)
                                        ));
                                    }
                                    None => {
                                        return self.fail(
                                            "Unexpected end-of-input in character escape sequence"
                                                .into(),
                                        )
                                    }
                                }
                            }
                        }
                        other => {
                            return self.fail(format!(
                                "Unrecognized character escape {}",
                                describe(other)
                            ));
                        }
                    }
                }
                c if (c as u32) < 0x20 => {
                    return self.fail(format!(
                        "Illegal unquoted character ({}): has to be escaped using backslash to be included in string value",
                        describe(c).trim_start_matches('(').trim_end_matches(')')
                    ));
                }
                _ => {}
            }
        }
    }
}

/// What [`Scanner::value`] found: a complete scalar or an opened container.
enum Token {
    Scalar,
    Open(Context),
}

#[derive(Clone, Copy)]
enum Context {
    Root,
    Array(usize),
    Object(usize),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unrecognized_token_matches_jackson() {
        let e = first_error("not a definition").expect("error");
        assert_eq!(
            e.location,
            "[Source: (String)\"not a definition\"; line: 1, column: 4]"
        );
        assert_eq!(
            e.message,
            "Unrecognized token 'not': was expecting (JSON String, Number, Array, Object or token 'null', 'true' or 'false')\n at [Source: (String)\"not a definition\"; line: 1, column: 4]"
        );
    }

    #[test]
    fn field_name_and_end_of_input() {
        let e = first_error("{\n  x: 1}").expect("error");
        assert_eq!(
            e.message,
            "Unexpected character ('x' (code 120)): was expecting double-quote to start field name\n at [Source: (String)\"{\n  x: 1}\"; line: 2, column: 4]"
        );
        let e = first_error("{\"a\": 1").expect("error");
        assert!(e.message.starts_with("Unexpected end-of-input: expected close marker for Object (start marker at [Source: (String)\"{\\\"a\\\": 1\"".replace("\\\"", "\"").as_str()));
        assert_eq!(first_error("{\"a\": [1, true, null, \"x\\n\"]}"), None);
    }
}
