//! CSV as AWS's Distributed Map reads it (RFC 4180): fields separated by the configured
//! delimiter, `"`-quoted fields may hold delimiters, line breaks and doubled quotes; rows end with
//! LF or CRLF; blank lines are skipped. Every value is a string.

/// Splits `text` into rows of fields, or says where a quoted field was left open.
pub(super) fn parse(text: &str, delimiter: u8) -> Result<Vec<Vec<String>>, String> {
    let delimiter = delimiter as char;
    let mut rows = Vec::new();
    let mut row: Vec<String> = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    // the current field started with a quote (so an empty `""` field still counts as a field)
    let mut any = false;
    let mut line = 1usize;
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => quoted = false,
                '\n' => {
                    line += 1;
                    field.push(c);
                }
                _ => field.push(c),
            }
            continue;
        }
        match c {
            '"' if field.is_empty() => {
                quoted = true;
                any = true;
            }
            c if c == delimiter => {
                row.push(std::mem::take(&mut field));
                any = true;
            }
            '\r' if chars.peek() == Some(&'\n') => {}
            '\n' => {
                line += 1;
                if any || !field.is_empty() || !row.is_empty() {
                    row.push(std::mem::take(&mut field));
                    rows.push(std::mem::take(&mut row));
                }
                any = false;
            }
            _ => field.push(c),
        }
    }
    if quoted {
        return Err(format!("unterminated quoted field at line {line}"));
    }
    if any || !field.is_empty() || !row.is_empty() {
        row.push(field);
        rows.push(row);
    }
    Ok(rows)
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn quotes_delimiters_and_line_ends() {
        let rows = parse(
            "a,b\r\n\"x,1\",\"say \"\"hi\"\"\"\n\n\"multi\nline\",\n",
            b',',
        )
        .expect("parses");
        assert_eq!(
            rows,
            vec![
                vec!["a".to_string(), "b".into()],
                vec!["x,1".into(), "say \"hi\"".into()],
                vec!["multi\nline".into(), "".into()],
            ]
        );
        assert_eq!(
            parse("a|b\n1|2", b'|').expect("parses"),
            vec![
                vec!["a".to_string(), "b".into()],
                vec!["1".into(), "2".into()]
            ]
        );
        assert!(parse("\"open", b',').is_err());
    }
}
