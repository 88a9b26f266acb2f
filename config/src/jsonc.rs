//! JSON with comments: blanks out `//` and `/* */` comments so serde_json can read the rest.
//!
//! Owns: recognising comments outside JSON strings. Every character of a comment becomes
//! spaces (as many as its UTF-8 length) and newlines stay where they were, so line and column
//! numbers of later parse errors still point into the user's file.
//!
//! Must not: relax JSON in any other way (no trailing commas, no single quotes, no unquoted
//! keys); the result is strict JSON or serde_json reports where it is not.

/// An unterminated block comment, with the 1-based position of its `/*`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommentError {
    pub line: usize,
    pub column: usize,
    pub message: String,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum State {
    Code,
    String,
    StringEscape,
    LineComment,
    BlockComment,
}

/// Returns `text` with every comment replaced by whitespace of the same length.
pub fn strip_comments(text: &str) -> Result<String, CommentError> {
    let mut out = String::with_capacity(text.len());
    let mut state = State::Code;
    let mut chars = text.chars().peekable();
    let mut line = 1;
    let mut column = 1;
    let mut block_start = (0, 0);

    while let Some(c) = chars.next() {
        let (this_line, this_column) = (line, column);
        if c == '\n' {
            line += 1;
            column = 1;
        } else {
            column += c.len_utf8();
        }

        match state {
            State::Code => match (c, chars.peek()) {
                ('"', _) => {
                    state = State::String;
                    out.push(c);
                }
                ('/', Some('/')) => {
                    state = State::LineComment;
                    out.push(' ');
                }
                ('/', Some('*')) => {
                    // Consume the `*` now so `/*/` is not read as open-and-close.
                    chars.next();
                    column += 1;
                    state = State::BlockComment;
                    block_start = (this_line, this_column);
                    out.push_str("  ");
                }
                _ => out.push(c),
            },
            State::String => {
                match c {
                    '\\' => state = State::StringEscape,
                    '"' => state = State::Code,
                    _ => {}
                }
                out.push(c);
            }
            State::StringEscape => {
                state = State::String;
                out.push(c);
            }
            State::LineComment => {
                if c == '\n' {
                    state = State::Code;
                    out.push('\n');
                } else if c == '\r' {
                    out.push('\r');
                } else {
                    push_blank(&mut out, c);
                }
            }
            State::BlockComment => {
                if c == '*' && chars.peek() == Some(&'/') {
                    chars.next();
                    column += 1;
                    state = State::Code;
                    out.push_str("  ");
                } else if c == '\n' || c == '\r' {
                    out.push(c);
                } else {
                    push_blank(&mut out, c);
                }
            }
        }
    }

    if state == State::BlockComment {
        return Err(CommentError {
            line: block_start.0,
            column: block_start.1,
            message: "unterminated block comment (`/*` without `*/`)".to_string(),
        });
    }
    Ok(out)
}

fn push_blank(out: &mut String, c: char) {
    for _ in 0..c.len_utf8() {
        out.push(' ');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn removes_line_and_block_comments() {
        let text = "{ // hello\n  \"a\": /* one */ 1\n}";
        let stripped = strip_comments(text).unwrap();
        assert_eq!(stripped.len(), text.len());
        let value: serde_json::Value = serde_json::from_str(&stripped).unwrap();
        assert_eq!(value["a"], 1);
    }

    #[test]
    fn keeps_comment_markers_inside_strings() {
        let text = r#"{"url": "http://x/*y*/", "q": "say \"//\" // not a comment"} // real"#;
        let stripped = strip_comments(text).unwrap();
        let value: serde_json::Value = serde_json::from_str(&stripped).unwrap();
        assert_eq!(value["url"], "http://x/*y*/");
        assert_eq!(value["q"], "say \"//\" // not a comment");
    }

    #[test]
    fn keeps_line_numbers_for_parse_errors() {
        let text = "{\n/* a\n   multi-line\n   comment */\n  \"a\": 1,\n  \"b\": oops\n}";
        let stripped = strip_comments(text).unwrap();
        assert_eq!(stripped.lines().count(), text.lines().count());
        let err = serde_json::from_str::<serde_json::Value>(&stripped).unwrap_err();
        assert_eq!(err.line(), 6);
        assert_eq!(err.column(), 8);
    }

    #[test]
    fn blanks_multibyte_characters_byte_for_byte() {
        let text = "{ /* é ✓ */ \"a\": 1 }";
        let stripped = strip_comments(text).unwrap();
        assert_eq!(stripped.len(), text.len());
        assert!(stripped.is_ascii());
    }

    #[test]
    fn keeps_crlf_line_endings() {
        let text = "{\r\n  // c\r\n  \"a\": 1\r\n}\r\n";
        let stripped = strip_comments(text).unwrap();
        assert_eq!(stripped.matches("\r\n").count(), 4);
    }

    #[test]
    fn escaped_backslash_before_quote_ends_the_string() {
        let text = r#"{"a": "c:\\"} // comment"#;
        let stripped = strip_comments(text).unwrap();
        let value: serde_json::Value = serde_json::from_str(&stripped).unwrap();
        assert_eq!(value["a"], "c:\\");
    }

    #[test]
    fn unterminated_block_comment_is_an_error() {
        let err = strip_comments("{\n  /* never closed\n}").unwrap_err();
        assert_eq!((err.line, err.column), (2, 3));
    }

    #[test]
    fn trailing_commas_stay_an_error() {
        let stripped = strip_comments("{\"a\": 1, // c\n}").unwrap();
        assert!(serde_json::from_str::<serde_json::Value>(&stripped).is_err());
    }
}
