//! Checks on the query text that must pass before anything parses it: the parser recurses
//! once per level of `{ }` and `[ ]`, in selection sets and in values alike, so both its
//! time and its stack are bounded here first.
//!
//! The text is read by apollo-parser's lexer, which follows the GraphQL spec's lexical
//! grammar (comments end at LF or CR, block strings, escapes), so what it counts is what a
//! parser sees; only the counting is Fanout's.

use apollo_parser::{Lexer, TokenKind};

/// Why a query text was refused.
#[derive(Debug, PartialEq, Eq)]
pub enum TextRefusal {
    /// More than this many tokens.
    Tokens(usize),
    /// Nested deeper than this many levels of `{ }` / `[ ]`.
    Nesting(usize),
}

/// Counts the significant tokens of `query` (white space, commas and comments count
/// nothing; a character that is no token counts one) and the deepest nesting of braces and
/// brackets. Stops at the first bound passed, so a huge text costs no more than the bound.
pub fn check(query: &str, max_tokens: usize, max_nesting: usize) -> Result<(), TextRefusal> {
    let (mut tokens, mut depth) = (0usize, 0usize);
    for token in Lexer::new(query) {
        let kind = match token {
            Ok(t) => t.kind(),
            // A lexical error: the parser will report it; it still costs a token.
            Err(_) => TokenKind::Name,
        };
        match kind {
            TokenKind::Whitespace | TokenKind::Comment | TokenKind::Comma => continue,
            TokenKind::Eof => break,
            TokenKind::LCurly | TokenKind::LBracket => {
                depth += 1;
                if depth > max_nesting {
                    return Err(TextRefusal::Nesting(max_nesting));
                }
            }
            TokenKind::RCurly | TokenKind::RBracket => depth = depth.saturating_sub(1),
            _ => {}
        }
        tokens += 1;
        if tokens > max_tokens {
            return Err(TextRefusal::Tokens(max_tokens));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{TextRefusal, check};

    #[test]
    fn tokens_are_counted_like_graphql_does() {
        // `{` `user` `(` `id` `:` `"a, b"` `)` `{` `...` `F` `}` `}`: 12; the comment none.
        let q = "{ user(id: \"a, b\") { ...F } } # a comment, with words";
        assert_eq!(check(q, 12, 32), Ok(()));
        assert_eq!(check(q, 11, 32), Err(TextRefusal::Tokens(11)));
        let block = "\"\"\"block \"quoted\" text\"\"\" x";
        assert_eq!(check(block, 1, 32), Err(TextRefusal::Tokens(1)));
        assert_eq!(check(block, 2, 32), Ok(()));
    }

    #[test]
    fn a_comment_ends_at_a_lone_carriage_return() {
        let q = format!("#\r{{ a(x: 1) {{ {} }} }}", "x ".repeat(100));
        assert_eq!(check(&q, 100, 32), Err(TextRefusal::Tokens(100)));
        assert_eq!(check("# all comment\n", 0, 32), Ok(()));
    }

    #[test]
    fn nesting_counts_braces_and_brackets_in_values_and_selections() {
        let deep_list = format!("{{ a(x: {}1{}) }}", "[".repeat(40), "]".repeat(40));
        assert_eq!(check(&deep_list, 1000, 32), Err(TextRefusal::Nesting(32)));
        let deep_object = format!("{{ a(x: {}) }}", "{y: ".repeat(40) + &"}".repeat(40));
        assert_eq!(check(&deep_object, 1000, 32), Err(TextRefusal::Nesting(32)));
        let deep_set = format!("{}{}", "{ a ".repeat(40), "}".repeat(40));
        assert_eq!(check(&deep_set, 1000, 32), Err(TextRefusal::Nesting(32)));
        // Siblings do not add up; brackets in strings and comments do not count.
        let wide = format!("{{ {} }}", "a(x: [[1]]) ".repeat(20));
        assert_eq!(check(&wide, 1000, 3), Ok(()));
        let quoted = format!("{{ a(x: \"{}\") }} # {}", "[".repeat(100), "{".repeat(100));
        assert_eq!(check(&quoted, 1000, 2), Ok(()));
    }
}
