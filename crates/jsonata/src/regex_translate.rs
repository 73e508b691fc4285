//! Translation of a JavaScript regular expression (ECMAScript, without the `u` flag, with the
//! web-compatibility grammar of Annex B) into the `regex` crate's syntax.
//!
//! The pattern has already been accepted by `regress` (a JavaScript regex engine), so this only
//! maps meanings that differ: `\d`, `\w`, `\b` are ASCII in JavaScript; `\s` is JavaScript's
//! whitespace list; `.` stops at `\r`, U+2028 and U+2029 too; `[]` matches nothing and `[^]`
//! everything; `\uXXXX`, `\cX`, identity escapes (`\a` is `a`) and a `{` that starts no quantifier
//! are literals; `[` inside a class is a literal. Every literal character outside `[A-Za-z0-9]` is
//! written as `\x{..}`, so nothing in the output has a meaning the input did not.
//!
//! What the linear engine cannot do (backreferences, lookaround, legacy octal escapes, lone
//! surrogates) sets [`Translated::needs_backtracking`]; the caller then runs the original pattern
//! on the backtracking engine.

/// The result of [`translate`].
#[derive(Debug)]
pub(crate) struct Translated {
    /// The pattern in `regex` crate syntax (meaningless when `needs_backtracking`).
    pub pattern: String,
    /// The pattern uses something only a backtracking engine does.
    pub needs_backtracking: bool,
    /// The linear engine would match differently: a repeated group can match the empty string
    /// (`(a?)*`: JavaScript rejects empty iterations, the linear engine takes them), or holds
    /// capture groups (`(?:(a)|b)+`: JavaScript resets them at every iteration, the linear engine
    /// keeps the last value each one captured).
    pub inexact_linear: bool,
    /// `^` or `$` outside a class.
    pub line_anchors: bool,
    /// A repeated group itself contains unbounded repetition or alternation (`(a+)*`, `(a|ab)*`):
    /// exponential time on a backtracking engine.
    pub nested_repetition: bool,
}

const JS_SPACE: &str = r"\t\n\x{B}\x{C}\r\x{20}\x{A0}\x{1680}\x{2000}-\x{200A}\x{2028}\x{2029}\x{202F}\x{205F}\x{3000}\x{FEFF}";
const ANY: &str = r"\x{0}-\x{10FFFF}";

/// Translates `pattern` (`dot_all`: the `s` flag).
pub(crate) fn translate(pattern: &str, dot_all: bool) -> Translated {
    let mut t = Translator {
        chars: pattern.chars().collect(),
        pos: 0,
        out: String::with_capacity(pattern.len() * 2),
        needs_backtracking: false,
        inexact_linear: false,
        line_anchors: false,
        nested_repetition: false,
        groups: vec![GroupInfo::default()],
        dot_all,
    };
    t.run();
    Translated {
        pattern: t.out,
        needs_backtracking: t.needs_backtracking,
        inexact_linear: t.inexact_linear,
        line_anchors: t.line_anchors,
        nested_repetition: t.nested_repetition,
    }
}

/// What an open group has seen so far.
#[derive(Debug, Clone, Copy)]
struct GroupInfo {
    /// An unbounded quantifier (or one above 1 on a group that has one) applies inside.
    repeats: bool,
    /// A `|` inside.
    alternates: bool,
    /// A capture group inside.
    captures: bool,
    /// The group itself captures.
    capturing: bool,
    /// The current alternative can match the empty string so far.
    alt_nullable: bool,
    /// A finished alternative can match the empty string.
    nullable: bool,
    /// Whether the last atom can match empty (not yet folded into `alt_nullable`: a quantifier
    /// may follow it).
    last_nullable: Option<bool>,
}

impl Default for GroupInfo {
    fn default() -> GroupInfo {
        GroupInfo {
            repeats: false,
            alternates: false,
            captures: false,
            capturing: false,
            alt_nullable: true,
            nullable: false,
            last_nullable: None,
        }
    }
}

impl GroupInfo {
    fn fold(&mut self) {
        if let Some(n) = self.last_nullable.take() {
            self.alt_nullable &= n;
        }
    }

    fn push_atom(&mut self, nullable: bool) {
        self.fold();
        self.last_nullable = Some(nullable);
    }

    /// Can the whole group match the empty string?
    fn is_nullable(mut self) -> bool {
        self.fold();
        self.nullable || self.alt_nullable
    }
}

/// What the last atom was, for the quantifier that may follow it.
#[derive(Debug, Clone, Copy)]
enum Atom {
    /// Nothing to repeat (start, `|`, `(`, an assertion).
    None,
    /// A character or class.
    Simple,
    /// A group that closed with this content.
    Group(GroupInfo),
}

struct Translator {
    chars: Vec<char>,
    pos: usize,
    out: String,
    needs_backtracking: bool,
    inexact_linear: bool,
    line_anchors: bool,
    nested_repetition: bool,
    groups: Vec<GroupInfo>,
    dot_all: bool,
}

impl Translator {
    fn peek(&self, ahead: usize) -> Option<char> {
        self.chars.get(self.pos + ahead).copied()
    }

    fn eat(&mut self, s: &str) -> bool {
        let n = s.chars().count();
        if self.chars[self.pos..].iter().take(n).copied().eq(s.chars()) {
            self.pos += n;
            true
        } else {
            false
        }
    }

    fn top(&mut self) -> &mut GroupInfo {
        // the outermost entry is never popped
        let last = self.groups.len() - 1;
        &mut self.groups[last]
    }

    fn run(&mut self) {
        let mut atom = Atom::None;
        while let Some(c) = self.peek(0) {
            match c {
                '(' => {
                    self.pos += 1;
                    let mut capturing = false;
                    if self.eat("?:") {
                        self.out.push_str("(?:");
                    } else if self.eat("?=") || self.eat("?!") || self.eat("?<=") || self.eat("?<!")
                    {
                        // lookaround: regress runs it; keep scanning for nested repetition
                        self.needs_backtracking = true;
                        self.out.push_str("(?:");
                    } else if self.eat("?<") {
                        let name: String = self.chars[self.pos..]
                            .iter()
                            .take_while(|c| **c != '>')
                            .collect();
                        let ok = name
                            .chars()
                            .next()
                            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
                            && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
                        self.pos += name.chars().count() + 1;
                        if !ok {
                            self.needs_backtracking = true;
                        }
                        capturing = true;
                        self.out.push_str("(?P<");
                        self.out.push_str(&name);
                        self.out.push('>');
                    } else {
                        capturing = true;
                        self.out.push('(');
                    }
                    self.top().fold();
                    self.groups.push(GroupInfo {
                        capturing,
                        ..GroupInfo::default()
                    });
                    atom = Atom::None;
                }
                ')' => {
                    self.pos += 1;
                    self.out.push(')');
                    let inner = if self.groups.len() > 1 {
                        self.groups.pop().unwrap_or_default()
                    } else {
                        GroupInfo::default()
                    };
                    // what the group holds, the enclosing group holds too
                    let top = self.top();
                    top.repeats |= inner.repeats;
                    top.alternates |= inner.alternates;
                    top.captures |= inner.captures || inner.capturing;
                    top.push_atom(inner.is_nullable());
                    atom = Atom::Group(inner);
                }
                '|' => {
                    self.pos += 1;
                    self.out.push('|');
                    let top = self.top();
                    top.fold();
                    top.alternates = true;
                    top.nullable |= top.alt_nullable;
                    top.alt_nullable = true;
                    atom = Atom::None;
                }
                '^' | '$' => {
                    self.pos += 1;
                    self.out.push(c);
                    self.line_anchors = true;
                    self.top().push_atom(true);
                    atom = Atom::None;
                }
                '*' | '+' | '?' => {
                    self.pos += 1;
                    self.out.push(c);
                    let max = if c == '?' { Some(1) } else { None };
                    self.quantified(atom, c != '+', max);
                    atom = Atom::None;
                }
                '{' => {
                    if let Some((text, min_zero, max)) = self.braced_quantifier() {
                        self.out.push_str(&text);
                        self.quantified(atom, min_zero, max);
                        atom = Atom::None;
                    } else {
                        self.pos += 1;
                        self.literal(c);
                        self.top().push_atom(false);
                        atom = Atom::Simple;
                    }
                }
                '.' => {
                    self.pos += 1;
                    if self.dot_all {
                        self.out.push_str(&format!("[{ANY}]"));
                    } else {
                        self.out.push_str(r"[^\n\r\x{2028}\x{2029}]");
                    }
                    self.top().push_atom(false);
                    atom = Atom::Simple;
                }
                '[' => {
                    self.pos += 1;
                    self.class();
                    self.top().push_atom(false);
                    atom = Atom::Simple;
                }
                '\\' => {
                    self.pos += 1;
                    atom = self.escape();
                    self.top().push_atom(matches!(atom, Atom::None));
                }
                _ => {
                    self.pos += 1;
                    self.literal(c);
                    self.top().push_atom(false);
                    atom = Atom::Simple;
                }
            }
        }
    }

    /// A quantifier (at least none when `min_zero`, at most `max` repetitions; None = unbounded)
    /// applies to `atom`.
    fn quantified(&mut self, atom: Atom, min_zero: bool, max: Option<u64>) {
        if self.eat("?") {
            self.out.push('?');
        }
        if min_zero {
            self.top().last_nullable = Some(true);
        }
        let repeats_many = max.is_none_or(|m| m > 1);
        if let Atom::Group(inner) = atom {
            if repeats_many && (inner.repeats || (inner.alternates && max.is_none())) {
                self.nested_repetition = true;
            }
            if ((repeats_many || min_zero) && inner.is_nullable())
                || (repeats_many && inner.captures)
            {
                // JavaScript rejects an iteration that matches empty (its groups stay unset);
                // the linear engine would capture the empty string. Without nested repetition
                // the backtracking engine is safe, and exact.
                self.inexact_linear = true;
            }
        }
        if max.is_none() || (repeats_many && matches!(atom, Atom::Group(g) if g.repeats)) {
            self.top().repeats = true;
        }
    }

    /// `{n}`, `{n,}`, `{n,m}` at the current position: its text and maximum; None when the `{` is
    /// a literal.
    fn braced_quantifier(&mut self) -> Option<(String, bool, Option<u64>)> {
        let rest: String = self.chars[self.pos..].iter().take(64).collect();
        let body = rest.strip_prefix('{')?;
        let end = body.find('}')?;
        let inner = &body[..end];
        let (lo, hi) = match inner.split_once(',') {
            Some((lo, hi)) => (lo, Some(hi)),
            None => (inner, None),
        };
        if lo.is_empty() || !lo.chars().all(|c| c.is_ascii_digit()) {
            return None;
        }
        if hi.is_some_and(|h| !h.chars().all(|c| c.is_ascii_digit())) {
            return None;
        }
        let max = match hi {
            None => lo.parse().ok().or(Some(u64::MAX)),
            Some("") => None,
            Some(h) => h.parse().ok().or(Some(u64::MAX)),
        };
        self.pos += inner.chars().count() + 2;
        let min_zero = lo.chars().all(|c| c == '0');
        Some((format!("{{{inner}}}"), min_zero, max))
    }

    fn literal(&mut self, c: char) {
        if c.is_ascii_alphanumeric() {
            self.out.push(c);
        } else {
            self.out.push_str(&format!("\\x{{{:X}}}", c as u32));
        }
    }

    /// After a `\` outside a class.
    fn escape(&mut self) -> Atom {
        let Some(c) = self.peek(0) else {
            self.needs_backtracking = true;
            return Atom::None;
        };
        match c {
            'b' | 'B' => {
                self.pos += 1;
                self.out
                    .push_str(if c == 'b' { r"(?-u:\b)" } else { r"(?-u:\B)" });
                Atom::None
            }
            _ => {
                match self.escape_item() {
                    Some(Item::Char(ch)) => self.literal(ch),
                    Some(Item::Set(set)) => self.out.push_str(&set),
                    None => self.needs_backtracking = true,
                }
                Atom::Simple
            }
        }
    }

    /// An escape that denotes a character or a set (after the `\`), as in or outside a class.
    fn escape_item(&mut self) -> Option<Item> {
        let c = self.peek(0)?;
        self.pos += 1;
        Some(match c {
            'd' => Item::Set("[0-9]".into()),
            'D' => Item::Set("[^0-9]".into()),
            'w' => Item::Set("[A-Za-z0-9_]".into()),
            'W' => Item::Set("[^A-Za-z0-9_]".into()),
            's' => Item::Set(format!("[{JS_SPACE}]")),
            'S' => Item::Set(format!("[^{JS_SPACE}]")),
            't' => Item::Char('\t'),
            'n' => Item::Char('\n'),
            'v' => Item::Char('\u{B}'),
            'f' => Item::Char('\u{C}'),
            'r' => Item::Char('\r'),
            '0' if !self.peek(0).is_some_and(|d| d.is_ascii_digit()) => Item::Char('\0'),
            // backreferences, legacy octal, \k<name>, \p in non-unicode mode: leave to regress
            '0'..='9' | 'k' | 'p' | 'P' => return None,
            'c' => {
                let l = self.peek(0).filter(char::is_ascii_alphabetic)?;
                self.pos += 1;
                Item::Char(char::from_u32(l as u32 % 32)?)
            }
            'x' => match self.hex(2) {
                Some(v) => Item::Char(char::from_u32(v)?),
                None => Item::Char('x'),
            },
            'u' => match self.hex(4) {
                Some(v) if (0xD800..0xDC00).contains(&v) => {
                    // a surrogate pair written as two escapes
                    if self.peek(0) == Some('\\') && self.peek(1) == Some('u') {
                        self.pos += 2;
                        let lo = self.hex(4).filter(|lo| (0xDC00..0xE000).contains(lo))?;
                        Item::Char(char::from_u32(
                            0x10000 + ((v - 0xD800) << 10) + (lo - 0xDC00),
                        )?)
                    } else {
                        return None;
                    }
                }
                Some(v) => Item::Char(char::from_u32(v)?),
                None => Item::Char('u'),
            },
            other => Item::Char(other),
        })
    }

    fn hex(&mut self, n: usize) -> Option<u32> {
        let digits: String = self.chars[self.pos..].iter().take(n).collect();
        if digits.chars().count() == n && digits.chars().all(|c| c.is_ascii_hexdigit()) {
            self.pos += n;
            u32::from_str_radix(&digits, 16).ok()
        } else {
            None
        }
    }

    /// After a `[`: the class up to its `]`.
    fn class(&mut self) {
        let negated = self.eat("^");
        if self.eat("]") {
            // `[]` matches nothing, `[^]` everything.
            if negated {
                self.out.push_str(&format!("[{ANY}]"));
            } else {
                self.out.push_str(&format!("[^{ANY}]"));
            }
            return;
        }
        let mut body = String::new();
        loop {
            let Some(c) = self.peek(0) else {
                self.needs_backtracking = true;
                return;
            };
            if c == ']' {
                self.pos += 1;
                break;
            }
            let Some(first) = self.class_atom() else {
                self.needs_backtracking = true;
                return;
            };
            let is_range = self.peek(0) == Some('-') && self.peek(1).is_some_and(|n| n != ']');
            match first {
                Item::Char(lo) if is_range => {
                    let save = self.pos;
                    self.pos += 1;
                    match self.class_atom() {
                        Some(Item::Char(hi)) => {
                            body.push_str(&format!(
                                "\\x{{{:X}}}-\\x{{{:X}}}",
                                lo as u32, hi as u32
                            ));
                        }
                        Some(Item::Set(set)) => {
                            // `[a-\d]`: Annex B reads the `-` as a literal
                            body.push_str(&format!("\\x{{{:X}}}\\x{{2D}}{set}", lo as u32));
                        }
                        None => {
                            self.pos = save;
                            self.needs_backtracking = true;
                            return;
                        }
                    }
                }
                Item::Char(ch) => body.push_str(&format!("\\x{{{:X}}}", ch as u32)),
                Item::Set(set) => body.push_str(&set),
            }
        }
        self.out.push('[');
        if negated {
            self.out.push('^');
        }
        self.out.push_str(&body);
        self.out.push(']');
    }

    fn class_atom(&mut self) -> Option<Item> {
        let c = self.peek(0)?;
        self.pos += 1;
        if c != '\\' {
            return Some(Item::Char(c));
        }
        match self.peek(0)? {
            'b' => {
                self.pos += 1;
                Some(Item::Char('\u{8}'))
            }
            '-' => {
                self.pos += 1;
                Some(Item::Char('-'))
            }
            // \cX inside a class also takes digits and `_` (Annex B): leave to regress
            'c' if !self.peek(1).is_some_and(|l| l.is_ascii_alphabetic()) => None,
            _ => self.escape_item(),
        }
    }
}

/// A class member or escape.
enum Item {
    Char(char),
    /// A class in `regex` syntax (`[0-9]`), usable inside another class.
    Set(String),
}

#[cfg(test)]
mod tests {
    use super::translate;

    #[test]
    fn marks_what_needs_backtracking() {
        for p in [r"(a)\1", r"a(?=b)", r"(?<!x)y", r"\k<n>", r"\01"] {
            assert!(translate(p, false).needs_backtracking, "{p}");
        }
        for p in [r"a+b", r"[\d-x]", r"\0", r"(?<n>a)", r"a{2,}?"] {
            assert!(!translate(p, false).needs_backtracking, "{p}");
        }
    }

    #[test]
    fn finds_nested_repetition() {
        for p in [
            r"(a+)*",
            r"(a|ab)*c",
            r"((a)*b)+",
            r"(?:x*y){2,}",
            r"(a+){1,50}",
        ] {
            assert!(translate(p, false).nested_repetition, "{p}");
        }
        for p in [r"(ab)*", r"(a+)?", r"(a|b)c", r"(a|b){3}", r"a*b*c*"] {
            assert!(!translate(p, false).nested_repetition, "{p}");
        }
    }
}
