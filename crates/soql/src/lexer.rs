//! Lexer: SOQL text → [`Token`]s, each with its source text and 1-based position.
//!
//! The lexer never fails except on an unterminated string. Characters that cannot start a
//! token become [`TokenKind::Unknown`], so the parser reports them as
//! `unexpected token: 'X'` at the right position, like Salesforce does.
//!
//! String tokens keep their raw content (between the quotes, escapes undecoded): whether
//! `\%` and `\_` are LIKE escapes depends on where the string appears, which only the
//! parser knows (see [`crate::escape::decode_string`] and [`crate::escape::decode_like`]).

use crate::ast::Position;
use crate::error::SoqlError;

/// What a token is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenKind {
    /// A name or keyword: `[A-Za-z_][A-Za-z0-9_]*`. A currency-coded number such as
    /// `USD12.50` is lexed as one identifier including its fraction.
    Ident,
    /// A single-quoted string; the token's `text` includes the quotes and
    /// [`Token::string_content`] gives the raw content.
    String,
    /// `[+-]?digits[.digits]`.
    Number,
    /// `YYYY-MM-DD` (shape only; validated by the parser).
    Date,
    /// `YYYY-MM-DDT...` up to the end of the time and zone (validated by the parser).
    DateTime,
    /// `(`.
    LParen,
    /// `)`.
    RParen,
    /// `,`.
    Comma,
    /// `.`.
    Dot,
    /// `:`.
    Colon,
    /// `=`.
    Eq,
    /// `!=` or `<>`.
    Ne,
    /// `<`.
    Lt,
    /// `<=`.
    Le,
    /// `>`.
    Gt,
    /// `>=`.
    Ge,
    /// Any other character.
    Unknown,
    /// End of input; its position is one past the last character.
    Eof,
}

/// One token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Token {
    /// The kind.
    pub kind: TokenKind,
    /// The exact source text (empty for [`TokenKind::Eof`]).
    pub text: String,
    /// Where it starts.
    pub position: Position,
}

impl Token {
    /// Whether this is an identifier equal to `keyword`, ignoring ASCII case.
    pub fn is_keyword(&self, keyword: &str) -> bool {
        self.kind == TokenKind::Ident && self.text.eq_ignore_ascii_case(keyword)
    }

    /// For a string token, the raw content between the quotes (escapes undecoded).
    pub fn string_content(&self) -> &str {
        if self.kind == TokenKind::String && self.text.len() >= 2 {
            &self.text[1..self.text.len() - 1]
        } else {
            ""
        }
    }
}

/// Splits `source` into tokens, ending with one [`TokenKind::Eof`].
///
/// # Errors
/// `MALFORMED_QUERY` for an unterminated string literal.
pub fn tokenize(source: &str) -> Result<Vec<Token>, SoqlError> {
    let mut lexer = Lexer {
        source,
        chars: source.char_indices().collect(),
        index: 0,
        row: 1,
        column: 1,
    };
    let mut tokens = Vec::new();
    loop {
        let token = lexer.next_token()?;
        let done = token.kind == TokenKind::Eof;
        tokens.push(token);
        if done {
            return Ok(tokens);
        }
    }
}

struct Lexer<'a> {
    source: &'a str,
    chars: Vec<(usize, char)>,
    index: usize,
    row: u32,
    column: u32,
}

impl Lexer<'_> {
    fn peek_at(&self, offset: usize) -> Option<char> {
        self.chars.get(self.index + offset).map(|(_, c)| *c)
    }

    fn peek(&self) -> Option<char> {
        self.peek_at(0)
    }

    fn byte_offset(&self, index: usize) -> usize {
        self.chars
            .get(index)
            .map_or(self.source.len(), |(offset, _)| *offset)
    }

    fn bump(&mut self) {
        if let Some(c) = self.peek() {
            self.index += 1;
            if c == '\n' {
                self.row = self.row.saturating_add(1);
                self.column = 1;
            } else {
                self.column = self.column.saturating_add(1);
            }
        }
    }

    fn bump_n(&mut self, count: usize) {
        for _ in 0..count {
            self.bump();
        }
    }

    fn count_digits_at(&self, offset: usize) -> usize {
        let mut count = 0;
        while self
            .peek_at(offset + count)
            .is_some_and(|c| c.is_ascii_digit())
        {
            count += 1;
        }
        count
    }

    fn next_token(&mut self) -> Result<Token, SoqlError> {
        while self.peek().is_some_and(char::is_whitespace) {
            self.bump();
        }
        let position = Position {
            row: self.row,
            column: self.column,
        };
        let start = self.index;
        let Some(first) = self.peek() else {
            return Ok(Token {
                kind: TokenKind::Eof,
                text: String::new(),
                position,
            });
        };
        let kind = match first {
            '\'' => self.lex_string(position)?,
            c if c.is_ascii_alphabetic() || c == '_' => self.lex_ident(),
            c if c.is_ascii_digit() => self.lex_number_or_date(),
            '+' | '-' if self.peek_at(1).is_some_and(|c| c.is_ascii_digit()) => {
                self.bump();
                self.lex_number()
            }
            '(' => self.single(TokenKind::LParen),
            ')' => self.single(TokenKind::RParen),
            ',' => self.single(TokenKind::Comma),
            '.' => self.single(TokenKind::Dot),
            ':' => self.single(TokenKind::Colon),
            '=' => self.single(TokenKind::Eq),
            '!' if self.peek_at(1) == Some('=') => {
                self.bump_n(2);
                TokenKind::Ne
            }
            '<' => match self.peek_at(1) {
                Some('=') => {
                    self.bump_n(2);
                    TokenKind::Le
                }
                Some('>') => {
                    self.bump_n(2);
                    TokenKind::Ne
                }
                _ => self.single(TokenKind::Lt),
            },
            '>' => match self.peek_at(1) {
                Some('=') => {
                    self.bump_n(2);
                    TokenKind::Ge
                }
                _ => self.single(TokenKind::Gt),
            },
            _ => self.single(TokenKind::Unknown),
        };
        let text = self.source[self.byte_offset(start)..self.byte_offset(self.index)].to_owned();
        Ok(Token {
            kind,
            text,
            position,
        })
    }

    fn single(&mut self, kind: TokenKind) -> TokenKind {
        self.bump();
        kind
    }

    fn lex_string(&mut self, position: Position) -> Result<TokenKind, SoqlError> {
        self.bump(); // opening quote
        loop {
            match self.peek() {
                None => {
                    return Err(SoqlError::malformed(
                        self.source,
                        Some(position),
                        "unterminated string literal",
                    ));
                }
                Some('\\') => {
                    self.bump();
                    self.bump();
                }
                Some('\'') => {
                    self.bump();
                    return Ok(TokenKind::String);
                }
                Some(_) => self.bump(),
            }
        }
    }

    fn lex_ident(&mut self) -> TokenKind {
        let start = self.index;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            self.bump();
        }
        // Currency-coded number with a fraction: `USD12.50` (three letters, digits, '.',
        // digits). A relationship path never continues with a digit after the dot.
        let word: Vec<char> = self.chars[start..self.index]
            .iter()
            .map(|(_, c)| *c)
            .collect();
        let is_coded_integer = word.len() > 3
            && word[..3].iter().all(char::is_ascii_alphabetic)
            && word[3..].iter().all(char::is_ascii_digit);
        if is_coded_integer
            && self.peek() == Some('.')
            && self.peek_at(1).is_some_and(|c| c.is_ascii_digit())
        {
            self.bump();
            while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                self.bump();
            }
        }
        TokenKind::Ident
    }

    fn lex_number_or_date(&mut self) -> TokenKind {
        let digits = self.count_digits_at(0);
        if digits == 4 && self.peek_at(4) == Some('-') {
            let month = self.count_digits_at(5);
            if month > 0 && self.peek_at(5 + month) == Some('-') {
                let day = self.count_digits_at(6 + month);
                if day > 0 {
                    self.bump_n(6 + month + day);
                    if matches!(self.peek(), Some('T' | 't')) {
                        while self.peek().is_some_and(|c| {
                            c.is_ascii_alphanumeric() || matches!(c, ':' | '.' | '+' | '-')
                        }) {
                            self.bump();
                        }
                        return TokenKind::DateTime;
                    }
                    return TokenKind::Date;
                }
            }
        }
        self.lex_number()
    }

    fn lex_number(&mut self) -> TokenKind {
        while self.peek().is_some_and(|c| c.is_ascii_digit()) {
            self.bump();
        }
        if self.peek() == Some('.') && self.peek_at(1).is_some_and(|c| c.is_ascii_digit()) {
            self.bump();
            while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                self.bump();
            }
        }
        TokenKind::Number
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(source: &str) -> Vec<(TokenKind, String)> {
        tokenize(source)
            .expect("lexes")
            .into_iter()
            .map(|token| (token.kind, token.text))
            .collect()
    }

    #[test]
    fn lexes_operators_and_punctuation() {
        let tokens = kinds("= != <> < <= > >= ( ) , . : ; !");
        let expected = [
            TokenKind::Eq,
            TokenKind::Ne,
            TokenKind::Ne,
            TokenKind::Lt,
            TokenKind::Le,
            TokenKind::Gt,
            TokenKind::Ge,
            TokenKind::LParen,
            TokenKind::RParen,
            TokenKind::Comma,
            TokenKind::Dot,
            TokenKind::Colon,
            TokenKind::Unknown,
            TokenKind::Unknown,
            TokenKind::Eof,
        ];
        let actual: Vec<TokenKind> = tokens.into_iter().map(|(kind, _)| kind).collect();
        assert_eq!(actual, expected);
    }

    #[test]
    fn lexes_literals() {
        assert_eq!(
            kinds(
                "'it\\'s' -12 3.50 +7 2024-01-31 2024-01-31T10:00:00.123+02:00 USD12.50 EUR5 a.b"
            ),
            vec![
                (TokenKind::String, "'it\\'s'".to_owned()),
                (TokenKind::Number, "-12".to_owned()),
                (TokenKind::Number, "3.50".to_owned()),
                (TokenKind::Number, "+7".to_owned()),
                (TokenKind::Date, "2024-01-31".to_owned()),
                (
                    TokenKind::DateTime,
                    "2024-01-31T10:00:00.123+02:00".to_owned()
                ),
                (TokenKind::Ident, "USD12.50".to_owned()),
                (TokenKind::Ident, "EUR5".to_owned()),
                (TokenKind::Ident, "a".to_owned()),
                (TokenKind::Dot, ".".to_owned()),
                (TokenKind::Ident, "b".to_owned()),
                (TokenKind::Eof, String::new()),
            ]
        );
    }

    #[test]
    fn tracks_rows_and_columns_in_characters() {
        let tokens = tokenize("SELECT é\n  FROM").expect("lexes");
        assert_eq!(tokens[0].position, Position { row: 1, column: 1 });
        assert_eq!(tokens[1].position, Position { row: 1, column: 8 });
        assert_eq!(tokens[1].kind, TokenKind::Unknown);
        assert_eq!(tokens[2].position, Position { row: 2, column: 3 });
        assert_eq!(tokens[3].position, Position { row: 2, column: 7 });
    }

    #[test]
    fn unterminated_string_is_malformed() {
        let error = tokenize("SELECT Id FROM A WHERE Name = 'abc").expect_err("unterminated");
        assert_eq!(error.error_code(), "MALFORMED_QUERY");
        assert_eq!(error.column, Some(31));
        let error = tokenize("WHERE Name = 'abc\\'").expect_err("escaped quote does not close");
        assert_eq!(error.column, Some(14));
    }

    #[test]
    fn string_content_strips_quotes() {
        let tokens = tokenize("'a\\nb'").expect("lexes");
        assert_eq!(tokens[0].string_content(), "a\\nb");
    }
}
