//! The checks that run on the query text before the parser sees it: size, tokens and
//! bracket nesting. They bound the parser's own work (time and recursion) by the size
//! of the request, whatever the text holds.

/// Deepest bracket nesting (`{`, `(`, `[`) accepted before parsing. The standard
/// introspection query nests about 30 levels (its `ofType` chain), so this leaves
/// room; the parser and the document walk then recurse at most this deep.
pub const MAX_NESTING: usize = 64;

/// What the lexer saw, up to where it stopped.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TextMeasure {
    /// Tokens counted (names, numbers, strings, punctuators), at most the `stop` given.
    pub tokens: usize,
    /// Deepest bracket nesting seen.
    pub nesting: usize,
}

/// Counts GraphQL tokens and bracket nesting, stopping once `stop` tokens are counted,
/// so a huge query costs no more than the limit to refuse.
pub fn scan(query: &str, stop: usize) -> TextMeasure {
    let bytes = query.as_bytes();
    let (mut i, mut tokens, mut open, mut nesting) = (0, 0, 0usize, 0);
    while i < bytes.len() && tokens < stop {
        match bytes[i] {
            b' ' | b'\t' | b'\n' | b'\r' | b',' => i += 1,
            0xEF if bytes[i..].starts_with(&[0xEF, 0xBB, 0xBF]) => i += 3,
            b'#' => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
            }
            b'"' if bytes[i..].starts_with(b"\"\"\"") => {
                tokens += 1;
                i += 3;
                while i < bytes.len() && !bytes[i..].starts_with(b"\"\"\"") {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                i += 3;
            }
            b'"' => {
                tokens += 1;
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' && bytes[i] != b'\n' {
                    i += if bytes[i] == b'\\' { 2 } else { 1 };
                }
                i += 1;
            }
            b'.' if bytes[i..].starts_with(b"...") => {
                tokens += 1;
                i += 3;
            }
            c if c.is_ascii_alphanumeric() || c == b'_' || c == b'-' => {
                tokens += 1;
                while i < bytes.len()
                    && (bytes[i].is_ascii_alphanumeric() || matches!(bytes[i], b'_' | b'.' | b'-' | b'+'))
                {
                    i += 1;
                }
            }
            c => {
                match c {
                    b'{' | b'(' | b'[' => {
                        open += 1;
                        nesting = nesting.max(open);
                    }
                    b'}' | b')' | b']' => open = open.saturating_sub(1),
                    _ => {}
                }
                tokens += 1;
                i += 1;
            }
        }
    }
    TextMeasure { tokens, nesting }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_counted_roughly_like_the_lexer() {
        assert_eq!(scan("{ me { id } }", 100).tokens, 6);
        assert_eq!(scan("query Q($a: Int = 1) { x(a: $a, s: \"a b\") } # comment", 100).tokens, 22);
        assert_eq!(scan(&"{".repeat(100_000), 2001).tokens, 2001, "stops early");
    }

    #[test]
    fn nesting_counts_open_brackets_outside_strings_and_comments() {
        assert_eq!(scan("{ me { id } }", 100).nesting, 2);
        assert_eq!(scan("{ a(x: [[1]]) { b } }", 100).nesting, 4);
        assert_eq!(scan("{ a(s: \"{{{{\") } # {{{{", 100).nesting, 2);
        assert_eq!(scan("{ a } { b } { c }", 100).nesting, 1);
    }
}
