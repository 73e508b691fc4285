//! State machine references in start events.

/// A parsed `stateMachine` field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MachineRef {
    /// The state machine name.
    pub name: String,
    /// `:version` or `:alias` suffix of an ARN, if any.
    pub qualifier: Option<String>,
    /// Partition, region and account of an ARN (`None` for a plain name, which always means
    /// the local deployment's machine).
    pub scope: Option<ArnScope>,
}

/// Where an ARN points: `arn:<partition>:states:<region>:<account>:...`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArnScope {
    /// `aws`, `aws-cn`, ...
    pub partition: String,
    /// The region.
    pub region: String,
    /// The account id.
    pub account: String,
}

impl std::fmt::Display for MachineRef {
    /// The text [`parse_state_machine_ref`] reads back as this reference: the ARN when there is a
    /// scope (with its qualifier), else the name. A qualifier without a scope has no text form
    /// (a plain name cannot carry one); it is written `NAME:QUALIFIER`, which a decoder refuses,
    /// so the event is dead-lettered instead of running another version than the one meant.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(s) = &self.scope {
            write!(
                f,
                "arn:{}:states:{}:{}:stateMachine:",
                s.partition, s.region, s.account
            )?;
        }
        f.write_str(&self.name)?;
        match &self.qualifier {
            Some(q) => write!(f, ":{q}"),
            None => Ok(()),
        }
    }
}

/// Parses `NAME` or `arn:<partition>:states:<region>:<account>:stateMachine:NAME[:qualifier]`.
///
/// Returns `None` when the text is neither a plain name nor a state machine ARN.
pub fn parse_state_machine_ref(text: &str) -> Option<MachineRef> {
    if let Some(rest) = text.strip_prefix("arn:") {
        let parts: Vec<&str> = rest.split(':').collect();
        // partition, "states", region, account, "stateMachine", NAME [, qualifier]
        if !(parts.len() == 6 || parts.len() == 7)
            || parts[1] != "states"
            || parts[4] != "stateMachine"
            || !valid_name(parts[5])
        {
            return None;
        }
        let qualifier = match parts.get(6) {
            Some(&"") => return None,
            Some(q) => Some((*q).to_string()),
            None => None,
        };
        return Some(MachineRef {
            name: parts[5].to_string(),
            qualifier,
            scope: Some(ArnScope {
                partition: parts[0].to_string(),
                region: parts[2].to_string(),
                account: parts[3].to_string(),
            }),
        });
    }
    valid_name(text).then(|| MachineRef {
        name: text.to_string(),
        qualifier: None,
        scope: None,
    })
}

/// State machine and execution names: 1..=80 characters, none of AWS's forbidden ones.
pub fn valid_name(name: &str) -> bool {
    let n = name.chars().count();
    (1..=80).contains(&n)
        && !name.chars().any(|c| {
            c.is_whitespace()
                || c.is_control()
                || matches!(
                    c,
                    '<' | '>'
                        | '{'
                        | '}'
                        | '['
                        | ']'
                        | '?'
                        | '*'
                        | '"'
                        | '#'
                        | '%'
                        | '\\'
                        | '^'
                        | '|'
                        | '~'
                        | '`'
                        | '$'
                        | '&'
                        | ','
                        | ';'
                        | ':'
                        | '/'
                )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_name() {
        assert_eq!(
            parse_state_machine_ref("orders"),
            Some(MachineRef {
                name: "orders".into(),
                qualifier: None,
                scope: None,
            })
        );
    }

    #[test]
    fn arn_with_and_without_qualifier() {
        let r = parse_state_machine_ref("arn:aws:states:us-east-1:123456789012:stateMachine:hello")
            .expect("valid");
        assert_eq!(r.name, "hello");
        assert_eq!(r.qualifier, None);
        let scope = r.scope.expect("an ARN has a scope");
        assert_eq!(
            (
                scope.partition.as_str(),
                scope.region.as_str(),
                scope.account.as_str()
            ),
            ("aws", "us-east-1", "123456789012")
        );
        let r = parse_state_machine_ref(
            "arn:aws:states:us-east-1:123456789012:stateMachine:hello:prod",
        )
        .expect("valid");
        assert_eq!(r.name, "hello");
        assert_eq!(r.qualifier.as_deref(), Some("prod"));
    }

    #[test]
    fn rejects_other_arns_and_bad_names() {
        assert!(parse_state_machine_ref("arn:aws:lambda:us-east-1:1:function:f").is_none());
        assert!(parse_state_machine_ref("arn:aws:states:us-east-1:1:stateMachine:").is_none());
        assert!(parse_state_machine_ref("").is_none());
        assert!(parse_state_machine_ref("has space").is_none());
        assert!(parse_state_machine_ref(&"x".repeat(81)).is_none());
    }
}
