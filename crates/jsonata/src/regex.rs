//! Regular expressions with JavaScript semantics (the `regress` engine), as JSONata's `/.../flags`.

use std::ops::Range;

/// A compiled regular expression.
#[derive(Debug)]
pub struct Regex {
    re: regress::Regex,
    source: String,
}

/// One match: the byte range of the match and of each capture group.
#[derive(Debug, Clone)]
pub struct Match {
    pub range: Range<usize>,
    pub groups: Vec<Option<Range<usize>>>,
}

impl Regex {
    /// Compiles `pattern` with JSONata flags (`i`, `m`).
    pub fn new(pattern: &str, flags: &str) -> Result<Regex, String> {
        let re = regress::Regex::with_flags(pattern, flags).map_err(|e| e.to_string())?;
        Ok(Regex {
            re,
            source: pattern.to_string(),
        })
    }

    /// The pattern text.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// All non-overlapping matches, in order.
    pub fn matches(&self, text: &str) -> Vec<Match> {
        self.re
            .find_iter(text)
            .map(|m| Match {
                range: m.range(),
                groups: (1..m.captures.len() + 1).map(|i| m.group(i)).collect(),
            })
            .collect()
    }

    /// The first match at or after byte `start`.
    pub fn find_from(&self, text: &str, start: usize) -> Option<Match> {
        self.re.find_from(text, start).next().map(|m| Match {
            range: m.range(),
            groups: (1..m.captures.len() + 1).map(|i| m.group(i)).collect(),
        })
    }
}
