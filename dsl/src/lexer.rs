//! Turns topology text into tokens; lexical mistakes become diagnostics, never panics.

use crate::diagnostic::{Diagnostic, Problem};
use crate::duration::{fraction_problem, parse_duration, Duration};
use crate::span::Span;

/// One token of the topology language.
#[derive(Debug, Clone, PartialEq)]
pub enum Tok {
    /// A name or keyword (`metric`, `reward_type`, or a backquoted `` `user-id` ``).
    Ident(String),
    /// A double-quoted string, escapes resolved.
    Str(String),
    /// A number such as `42`, `0.99` or `1e6`.
    Number(f64),
    /// A duration such as `5m` or `1h30m`.
    Duration(Duration),
    /// `{`
    LBrace,
    /// `}`
    RBrace,
    /// `(`
    LParen,
    /// `)`
    RParen,
    /// `[`
    LBracket,
    /// `]`
    RBracket,
    /// `,`
    Comma,
    /// `:`
    Colon,
    /// `.`
    Dot,
    /// `=`
    Assign,
    /// `==`
    EqEq,
    /// `!=`
    NotEq,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
    /// `=~`
    Match,
    /// `!~`
    NotMatch,
    /// `-`
    Minus,
    /// `;` (an optional separator)
    Semi,
    /// End of the text.
    Eof,
}

impl Tok {
    /// How the token is shown in a message ("`{`", "a string", …).
    pub fn describe(&self) -> String {
        match self {
            Tok::Ident(name) => format!("`{name}`"),
            Tok::Str(s) => format!("the string \"{}\"", s.escape_default()),
            Tok::Number(n) => format!("the number `{n}`"),
            Tok::Duration(d) => format!("the duration `{d}`"),
            Tok::Eof => "the end of the file".to_string(),
            other => format!("`{}`", other.symbol()),
        }
    }

    fn symbol(&self) -> &'static str {
        match self {
            Tok::LBrace => "{",
            Tok::RBrace => "}",
            Tok::LParen => "(",
            Tok::RParen => ")",
            Tok::LBracket => "[",
            Tok::RBracket => "]",
            Tok::Comma => ",",
            Tok::Colon => ":",
            Tok::Dot => ".",
            Tok::Assign => "=",
            Tok::EqEq => "==",
            Tok::NotEq => "!=",
            Tok::Lt => "<",
            Tok::Le => "<=",
            Tok::Gt => ">",
            Tok::Ge => ">=",
            Tok::Match => "=~",
            Tok::NotMatch => "!~",
            Tok::Minus => "-",
            Tok::Semi => ";",
            _ => "?",
        }
    }
}

/// A token with where it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    /// The token.
    pub tok: Tok,
    /// Where it is in the text.
    pub span: Span,
}

/// Splits `text` into tokens, ending with `Tok::Eof`. Lexical mistakes are
/// pushed to `diags` and skipped, so parsing can go on and report more.
pub fn lex(text: &str, diags: &mut Vec<Diagnostic>) -> Vec<Token> {
    let mut lexer = Lexer {
        text,
        pos: 0,
        tokens: Vec::new(),
        diags,
    };
    lexer.run();
    lexer.tokens
}

struct Lexer<'a, 'd> {
    text: &'a str,
    pos: usize,
    tokens: Vec<Token>,
    diags: &'d mut Vec<Diagnostic>,
}

impl Lexer<'_, '_> {
    fn peek(&self) -> Option<char> {
        self.text[self.pos..].chars().next()
    }

    fn peek2(&self) -> Option<char> {
        let mut chars = self.text[self.pos..].chars();
        chars.next();
        chars.next()
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    /// Moves past characters up to (not including) the first for which `stop` holds.
    fn bump_until(&mut self, stop: impl Fn(char) -> bool) {
        while let Some(c) = self.peek() {
            if stop(c) {
                break;
            }
            self.bump();
        }
    }

    fn push(&mut self, tok: Tok, start: usize) {
        self.tokens.push(Token {
            tok,
            span: Span::new(start, self.pos),
        });
    }

    fn run(&mut self) {
        while let Some(c) = self.peek() {
            let start = self.pos;
            match c {
                c if c.is_whitespace() => {
                    self.bump();
                }
                '#' => {
                    self.bump_until(|c| c == '\n');
                }
                '/' if self.peek2() == Some('/') => {
                    self.bump_until(|c| c == '\n');
                }
                '"' => self.string(),
                '\'' => self.single_quoted(),
                '`' => self.quoted_ident(),
                // `&&` and `||` from other languages: report them, then read
                // them as `and` and `or` so that the rest of the test parses.
                '&' | '|' => {
                    self.bump();
                    if self.peek() == Some(c) {
                        self.bump();
                    }
                    self.diags.push(Diagnostic::new(
                        Problem::UnexpectedChar { found: c },
                        Span::new(start, self.pos),
                    ));
                    let word = if c == '&' { "and" } else { "or" };
                    self.push(Tok::Ident(word.into()), start);
                }
                c if c.is_ascii_digit() => self.number_or_duration(),
                c if c.is_alphabetic() || c == '_' => {
                    while let Some(c) = self.peek() {
                        if c.is_alphanumeric() || c == '_' {
                            self.bump();
                        } else {
                            break;
                        }
                    }
                    let word = self.text[start..self.pos].to_string();
                    self.push(Tok::Ident(word), start);
                }
                _ => {
                    self.bump();
                    let tok = match c {
                        '{' => Tok::LBrace,
                        '}' => Tok::RBrace,
                        '(' => Tok::LParen,
                        ')' => Tok::RParen,
                        '[' => Tok::LBracket,
                        ']' => Tok::RBracket,
                        ',' => Tok::Comma,
                        ':' => Tok::Colon,
                        '.' => Tok::Dot,
                        ';' => Tok::Semi,
                        '-' => Tok::Minus,
                        '=' => match self.peek() {
                            Some('=') => {
                                self.bump();
                                Tok::EqEq
                            }
                            Some('~') => {
                                self.bump();
                                Tok::Match
                            }
                            _ => Tok::Assign,
                        },
                        '!' => match self.peek() {
                            Some('=') => {
                                self.bump();
                                Tok::NotEq
                            }
                            Some('~') => {
                                self.bump();
                                Tok::NotMatch
                            }
                            _ => {
                                self.diags.push(Diagnostic::new(
                                    Problem::UnexpectedChar { found: '!' },
                                    Span::new(start, self.pos),
                                ));
                                continue;
                            }
                        },
                        '<' => {
                            if self.peek() == Some('=') {
                                self.bump();
                                Tok::Le
                            } else {
                                Tok::Lt
                            }
                        }
                        '>' => {
                            if self.peek() == Some('=') {
                                self.bump();
                                Tok::Ge
                            } else {
                                Tok::Gt
                            }
                        }
                        other => {
                            self.diags.push(Diagnostic::new(
                                Problem::UnexpectedChar { found: other },
                                Span::new(start, self.pos),
                            ));
                            continue;
                        }
                    };
                    self.push(tok, start);
                }
            }
        }
        let end = self.text.len();
        self.tokens.push(Token {
            tok: Tok::Eof,
            span: Span::new(end, end),
        });
    }

    fn string(&mut self) {
        let start = self.pos;
        self.bump(); // opening quote
        let mut value = String::new();
        // An unclosed string still becomes a token, so that the parser does
        // not report a second mistake at the same place.
        loop {
            let Some(c) = self.peek() else {
                self.diags.push(Diagnostic::new(
                    Problem::UnterminatedString,
                    Span::new(start, self.pos),
                ));
                break;
            };
            if c == '\n' {
                // A string may not span lines: report it here rather than
                // swallowing the rest of the file.
                self.diags.push(Diagnostic::new(
                    Problem::UnterminatedString,
                    Span::new(start, self.pos),
                ));
                break;
            }
            self.bump();
            match c {
                '"' => break,
                '\\' => {
                    let esc_start = self.pos - 1;
                    if matches!(self.peek(), None | Some('\n')) {
                        // A backslash at the end of the line does not join lines.
                        self.diags.push(Diagnostic::new(
                            Problem::UnterminatedString,
                            Span::new(start, self.pos),
                        ));
                        break;
                    }
                    match self.bump() {
                        Some('n') => value.push('\n'),
                        Some('t') => value.push('\t'),
                        Some('r') => value.push('\r'),
                        Some('"') => value.push('"'),
                        Some('\\') => value.push('\\'),
                        Some('u') => match self.unicode_escape() {
                            Some(ch) => value.push(ch),
                            None => self.diags.push(Diagnostic::new(
                                Problem::BadEscape {
                                    found: self.text[esc_start..self.pos].to_string(),
                                },
                                Span::new(esc_start, self.pos),
                            )),
                        },
                        Some(other) => {
                            self.diags.push(Diagnostic::new(
                                Problem::BadEscape {
                                    found: format!("\\{other}"),
                                },
                                Span::new(esc_start, self.pos),
                            ));
                        }
                        None => break, // not reached: checked above
                    }
                }
                other => value.push(other),
            }
        }
        self.push(Tok::Str(value), start);
    }

    /// Reads the `{XXXX}` of a `\u{XXXX}` escape.
    fn unicode_escape(&mut self) -> Option<char> {
        if self.peek() != Some('{') {
            return None;
        }
        self.bump();
        let digits_start = self.pos;
        while let Some(c) = self.peek() {
            if c.is_ascii_hexdigit() {
                self.bump();
            } else {
                break;
            }
        }
        let digits = &self.text[digits_start..self.pos];
        if self.peek() != Some('}') || digits.is_empty() || digits.len() > 6 {
            return None;
        }
        self.bump();
        u32::from_str_radix(digits, 16)
            .ok()
            .and_then(char::from_u32)
    }

    /// `'reward'`: reported, then read as the string it was meant to be.
    fn single_quoted(&mut self) {
        let start = self.pos;
        self.bump();
        let body_start = self.pos;
        self.bump_until(|c| c == '\'' || c == '\n');
        if self.peek() != Some('\'') {
            // A lone quote (an apostrophe in a stray word): report only the quote.
            self.pos = body_start;
            self.diags.push(Diagnostic::new(
                Problem::UnexpectedChar { found: '\'' },
                Span::new(start, self.pos),
            ));
            return;
        }
        let body = self.text[body_start..self.pos].to_string();
        self.bump();
        self.diags.push(Diagnostic::new(
            Problem::UnexpectedChar { found: '\'' },
            Span::new(start, self.pos),
        ));
        self.push(Tok::Str(body), start);
    }

    fn quoted_ident(&mut self) {
        let start = self.pos;
        self.bump();
        let name_start = self.pos;
        self.bump_until(|c| c == '`' || c == '\n');
        if self.peek() == Some('`') && self.pos > name_start {
            let name = self.text[name_start..self.pos].to_string();
            self.bump();
            self.push(Tok::Ident(name), start);
        } else {
            self.diags.push(Diagnostic::new(
                Problem::UnterminatedString,
                Span::new(start, self.pos),
            ));
            if self.peek() == Some('`') {
                self.bump();
            } else if self.pos > name_start {
                // Unclosed but not empty: keep the name so parsing goes on.
                let name = self.text[name_start..self.pos].to_string();
                self.push(Tok::Ident(name), start);
            }
        }
    }

    fn number_or_duration(&mut self) {
        let start = self.pos;
        self.eat_digits();
        let mut is_float = false;
        if self.peek() == Some('.') && self.peek2().is_some_and(|c| c.is_ascii_digit()) {
            is_float = true;
            self.bump();
            self.eat_digits();
        }
        if matches!(self.peek(), Some('e' | 'E'))
            && (self
                .peek2()
                .is_some_and(|c| c.is_ascii_digit() || c == '-' || c == '+'))
        {
            // An exponent, unless it is really a duration unit (there is none starting with `e`).
            is_float = true;
            self.bump();
            if matches!(self.peek(), Some('-' | '+')) {
                self.bump();
            }
            self.eat_digits();
        }
        if is_float && self.peek().is_some_and(|c| c.is_alphabetic()) {
            // `1.5m`: meant as a duration, but durations are whole numbers.
            while let Some(c) = self.peek() {
                if c.is_alphanumeric() || c == '_' {
                    self.bump();
                } else {
                    break;
                }
            }
            let text = &self.text[start..self.pos];
            self.diags.push(Diagnostic::new(
                Problem::BadDuration {
                    found: text.to_string(),
                    why: fraction_problem(text),
                },
                Span::new(start, self.pos),
            ));
            self.push(Tok::Duration(Duration::from_millis(1)), start);
            return;
        }
        if !is_float && self.peek().is_some_and(|c| c.is_alphabetic()) {
            // A duration: digits and units, possibly several (`1h30m`).
            while let Some(c) = self.peek() {
                if c.is_alphanumeric() || c == '_' {
                    self.bump();
                } else {
                    break;
                }
            }
            let text = &self.text[start..self.pos];
            let span = Span::new(start, self.pos);
            match parse_duration(text) {
                Ok(d) => self.push(Tok::Duration(d), start),
                Err(why) => {
                    self.diags.push(Diagnostic::new(
                        Problem::BadDuration {
                            found: text.to_string(),
                            why,
                        },
                        span,
                    ));
                    // Keep a placeholder so the parser does not report a second error here.
                    self.push(Tok::Duration(Duration::from_millis(1)), start);
                }
            }
            return;
        }
        let text: String = self.text[start..self.pos]
            .chars()
            .filter(|c| *c != '_')
            .collect();
        match text.parse::<f64>() {
            Ok(n) if n.is_finite() => self.push(Tok::Number(n), start),
            _ => {
                self.diags.push(Diagnostic::new(
                    Problem::BadNumber {
                        found: self.text[start..self.pos].to_string(),
                    },
                    Span::new(start, self.pos),
                ));
                self.push(Tok::Number(0.0), start);
            }
        }
    }

    fn eat_digits(&mut self) {
        while let Some(c) = self.peek() {
            if c.is_ascii_digit() || c == '_' {
                self.bump();
            } else {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(text: &str) -> (Vec<Tok>, Vec<Diagnostic>) {
        let mut diags = Vec::new();
        let toks = lex(text, &mut diags).into_iter().map(|t| t.tok).collect();
        (toks, diags)
    }

    #[test]
    fn lexes_the_pieces_of_a_metric() {
        let (toks, diags) = toks("window hopping 10m every 1m # note\n p = quantile(x, 0.99)");
        assert!(diags.is_empty(), "{diags:?}");
        assert_eq!(toks[0], Tok::Ident("window".into()));
        assert_eq!(toks[2], Tok::Duration(Duration::from_millis(600_000)));
        assert_eq!(toks[4], Tok::Duration(Duration::from_millis(60_000)));
        assert_eq!(toks[11], Tok::Number(0.99));
        assert_eq!(*toks.last().unwrap(), Tok::Eof);
    }

    #[test]
    fn strings_resolve_escapes() {
        let (toks, diags) = toks(r#""a\"b\\c\u{e9}\n""#);
        assert!(diags.is_empty());
        assert_eq!(toks[0], Tok::Str("a\"b\\cé\n".into()));
    }

    #[test]
    fn reports_bad_escape_and_unterminated_string_and_goes_on() {
        let (toks, diags) = toks("\"a\\q\" \"open\nnext");
        let codes: Vec<_> = diags.iter().map(|d| d.code()).collect();
        assert_eq!(codes, ["E0003", "E0002"]);
        assert!(toks.contains(&Tok::Ident("next".into())));
    }

    #[test]
    fn unclosed_strings_still_become_tokens() {
        let (toks, diags) = toks("\"open\nnext `name\n\"tail\\\nlast");
        let codes: Vec<_> = diags.iter().map(|d| d.code()).collect();
        assert_eq!(codes, ["E0002", "E0002", "E0002"]);
        assert_eq!(toks[0], Tok::Str("open".into()));
        assert_eq!(toks[2], Tok::Ident("name".into()));
        assert_eq!(toks[3], Tok::Str("tail".into()));
        assert_eq!(toks[4], Tok::Ident("last".into()));
    }

    #[test]
    fn single_quotes_and_c_operators_are_reported_and_read_as_meant() {
        let (read, diags) = toks("kind = 'bet' && a || b & c");
        let codes: Vec<_> = diags.iter().map(|d| d.code()).collect();
        assert_eq!(codes, ["E0001", "E0001", "E0001", "E0001"]);
        assert_eq!(read[2], Tok::Str("bet".into()));
        assert_eq!(read[3], Tok::Ident("and".into()));
        assert_eq!(read[5], Tok::Ident("or".into()));
        assert_eq!(read[7], Tok::Ident("and".into()));
        // An apostrophe with no partner is one stray character.
        let (apostrophe, diags) = toks("don't");
        assert_eq!(diags.len(), 1);
        assert_eq!(apostrophe[0], Tok::Ident("don".into()));
        assert_eq!(apostrophe[1], Tok::Ident("t".into()));
    }

    #[test]
    fn a_fraction_before_a_unit_is_one_bad_duration() {
        let (toks, diags) = toks("1.5m 0.25s x");
        let codes: Vec<_> = diags.iter().map(|d| d.code()).collect();
        assert_eq!(codes, ["E0006", "E0006"]);
        assert!(matches!(toks[0], Tok::Duration(_)));
        assert!(matches!(toks[1], Tok::Duration(_)));
        assert_eq!(toks[2], Tok::Ident("x".into()));
        let Problem::BadDuration { found, .. } = &diags[1].problem else {
            panic!("{diags:?}");
        };
        assert_eq!(found, "0.25s");
    }

    #[test]
    fn operators() {
        let (toks, _) = toks("= == != < <= > >= =~ !~");
        assert_eq!(
            &toks[..9],
            &[
                Tok::Assign,
                Tok::EqEq,
                Tok::NotEq,
                Tok::Lt,
                Tok::Le,
                Tok::Gt,
                Tok::Ge,
                Tok::Match,
                Tok::NotMatch
            ]
        );
    }
}
