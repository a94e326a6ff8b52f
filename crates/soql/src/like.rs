//! LIKE pattern matching.
//!
//! The parser stores the right-hand side of `LIKE` as a [`crate::Literal::String`] holding
//! a *pattern*: ordinary string escapes (`\'`, `\n`, ...) are decoded, but `\\`, `\%` and
//! `\_` stay escaped, so:
//! - `%` matches any run of characters (including none), `_` exactly one character;
//! - `\` followed by any character matches that character literally (`\%` is a percent
//!   sign, `\\` a backslash); a trailing lone `\` matches a backslash.
//!
//! Matching ignores case, as Salesforce does.

/// One element of a compiled pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Piece {
    /// A literal character.
    Char(char),
    /// `_`.
    One,
    /// `%`.
    Any,
}

fn compile(pattern: &str) -> Vec<Piece> {
    let mut pieces = Vec::with_capacity(pattern.len());
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        let piece = match c {
            '%' => Piece::Any,
            '_' => Piece::One,
            '\\' => Piece::Char(chars.next().unwrap_or('\\')),
            other => Piece::Char(other),
        };
        pieces.push(piece);
    }
    pieces
}

fn same_ignoring_case(a: char, b: char) -> bool {
    a == b || a.to_lowercase().eq(b.to_lowercase())
}

/// Whether `value` matches the LIKE `pattern` (the form held in the AST), ignoring case.
///
/// ```
/// use ferry_soql::like_matches;
/// assert!(like_matches("acme%", "ACME Corp"));
/// assert!(like_matches("a_c", "abc"));
/// assert!(!like_matches("50\\%", "500"));
/// assert!(like_matches("50\\%", "50%"));
/// ```
pub fn like_matches(pattern: &str, value: &str) -> bool {
    let pieces = compile(pattern);
    let text: Vec<char> = value.chars().collect();
    // Greedy matching with backtracking to the last `%` (linear in practice, O(n·m) worst).
    let (mut p, mut t) = (0, 0);
    let mut backtrack: Option<(usize, usize)> = None;
    while t < text.len() {
        match pieces.get(p) {
            Some(Piece::Any) => {
                backtrack = Some((p, t));
                p += 1;
            }
            Some(Piece::One) => {
                p += 1;
                t += 1;
            }
            Some(Piece::Char(c)) if same_ignoring_case(*c, text[t]) => {
                p += 1;
                t += 1;
            }
            _ => match backtrack {
                Some((star, star_text)) => {
                    p = star + 1;
                    t = star_text + 1;
                    backtrack = Some((star, star_text + 1));
                }
                None => return false,
            },
        }
    }
    pieces[p..].iter().all(|piece| *piece == Piece::Any)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(like_matches("%", ""));
        assert!(like_matches("%", "anything"));
        assert!(like_matches("a%", "a"));
        assert!(like_matches("%b%", "abc"));
        assert!(!like_matches("%b%", "ac"));
        assert!(like_matches("a_c", "aXc"));
        assert!(!like_matches("a_c", "ac"));
        assert!(like_matches("%a%b%c", "xxaxxbxxc"));
        assert!(!like_matches("%a%b%c", "xxaxxbxxcx"));
        assert!(like_matches("", ""));
        assert!(!like_matches("", "a"));
        assert!(like_matches("_é_", "aÉb"));
    }

    #[test]
    fn case_insensitive() {
        assert!(like_matches("ACME%", "acme corp"));
        assert!(like_matches("Éclair", "éCLAIR"));
    }

    #[test]
    fn escapes_match_literally() {
        assert!(like_matches("100\\%", "100%"));
        assert!(!like_matches("100\\%", "1000"));
        assert!(like_matches("a\\_b", "a_b"));
        assert!(!like_matches("a\\_b", "axb"));
        assert!(like_matches("a\\\\b", "a\\b"));
        assert!(like_matches("a\\", "a\\"));
        assert!(like_matches("\\q", "q"));
    }

    #[test]
    fn escaped_user_input_matches_only_itself_as_prefix() {
        let input = "50%_off\\";
        let pattern = crate::escape::decode_like(&format!("{}%", crate::escape_like(input)))
            .expect("decodes");
        assert!(like_matches(&pattern, "50%_off\\ today"));
        assert!(!like_matches(&pattern, "50x-off\\ today"));
    }
}
