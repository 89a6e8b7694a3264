//! Recursive-descent parser from tokens to the syntax tree. It reports a
//! mistake, skips to the next place it can trust, and goes on, so a file's
//! mistakes are all reported in one run.

use crate::ast::*;
use crate::diagnostic::{Diagnostic, Problem};
use crate::lexer::{Tok, Token};
use crate::span::Span;
use crate::suggest::did_you_mean;

/// The clause keywords of a metric block.
pub const METRIC_CLAUSES: [&str; 5] = ["where", "dimensions", "window", "retain", "measures"];
/// The top-level keywords.
pub const ITEMS: [&str; 2] = ["source", "metric"];
/// The window kinds.
pub const WINDOW_KINDS: [&str; 3] = ["tumbling", "hopping", "session"];
/// How deep parentheses, `not`s, lists and blocks may nest. The parser and
/// checker recurse once per level, so an unbounded depth would let a
/// hostile file overflow the stack; and a plan deeper than this would not
/// round-trip through serde_json, which stops at 128 levels.
pub const MAX_NESTING: usize = 32;

/// Parses `tokens` into a topology, pushing every mistake to `diags`.
pub fn parse(tokens: Vec<Token>, diags: &mut Vec<Diagnostic>) -> Topology {
    let mut parser = Parser {
        tokens,
        pos: 0,
        depth: 0,
        diags,
    };
    parser.topology()
}

/// Marks that a diagnostic was already pushed and the caller should recover.
struct Reported;

type PResult<T> = Result<T, Reported>;

struct Parser<'d> {
    tokens: Vec<Token>,
    pos: usize,
    /// How many nested levels the parser is inside, bounded by `MAX_NESTING`.
    depth: usize,
    diags: &'d mut Vec<Diagnostic>,
}

impl Parser<'_> {
    fn peek(&self) -> &Token {
        // The lexer always ends with Eof, and `bump` never moves past it.
        &self.tokens[self.pos.min(self.tokens.len() - 1)]
    }

    fn peek_at(&self, ahead: usize) -> &Token {
        &self.tokens[(self.pos + ahead).min(self.tokens.len() - 1)]
    }

    fn bump(&mut self) -> Token {
        let token = self.peek().clone();
        if token.tok != Tok::Eof {
            self.pos += 1;
        }
        token
    }

    fn at(&self, tok: &Tok) -> bool {
        &self.peek().tok == tok
    }

    fn at_word(&self, word: &str) -> bool {
        matches!(&self.peek().tok, Tok::Ident(w) if w == word)
    }

    fn eat(&mut self, tok: &Tok) -> bool {
        if self.at(tok) {
            self.bump();
            true
        } else {
            false
        }
    }

    fn eat_word(&mut self, word: &str) -> bool {
        if self.at_word(word) {
            self.bump();
            true
        } else {
            false
        }
    }

    /// Runs `inner` one nesting level deeper, or reports that it is too deep.
    fn nested<T>(&mut self, inner: impl FnOnce(&mut Self) -> PResult<T>) -> PResult<T> {
        if self.depth >= MAX_NESTING {
            let span = self.peek().span;
            return Err(self.error(Problem::TooDeep { limit: MAX_NESTING }, span));
        }
        self.depth += 1;
        let result = inner(self);
        self.depth -= 1;
        result
    }

    fn error(&mut self, problem: Problem, span: Span) -> Reported {
        self.diags.push(Diagnostic::new(problem, span));
        Reported
    }

    fn expected(&mut self, what: &str) -> Reported {
        let token = self.peek().clone();
        self.error(
            Problem::Expected {
                expected: what.to_string(),
                found: token.tok.describe(),
            },
            token.span,
        )
    }

    fn expect(&mut self, tok: Tok, what: &str) -> PResult<Span> {
        if self.at(&tok) {
            Ok(self.bump().span)
        } else {
            Err(self.expected(what))
        }
    }

    fn name(&mut self, what: &str) -> PResult<Name> {
        match &self.peek().tok {
            Tok::Ident(text) => {
                let text = text.clone();
                let span = self.bump().span;
                Ok(Name { text, span })
            }
            _ => Err(self.expected(what)),
        }
    }

    fn path(&mut self, what: &str) -> PResult<Path> {
        let first = self.name(what)?;
        let mut segments = vec![first.text];
        let mut span = first.span;
        while self.at(&Tok::Dot) {
            self.bump();
            let next = self.name("a field name after `.`")?;
            span = span.to(next.span);
            segments.push(next.text);
        }
        Ok(Path { segments, span })
    }

    /// Skips tokens until `stop` says to, never past an unbalanced `}` or the end.
    fn recover(&mut self, stop: impl Fn(&Parser) -> bool) {
        let mut depth = 0usize;
        loop {
            match &self.peek().tok {
                Tok::Eof => return,
                Tok::RBrace if depth == 0 => return,
                _ if depth == 0 && stop(self) => return,
                Tok::LBrace | Tok::LParen | Tok::LBracket => depth += 1,
                Tok::RBrace | Tok::RParen | Tok::RBracket => depth = depth.saturating_sub(1),
                _ => {}
            }
            self.bump();
        }
    }

    fn topology(&mut self) -> Topology {
        let mut topology = Topology::default();
        loop {
            let token = self.peek().clone();
            match &token.tok {
                Tok::Eof => break,
                Tok::Semi => {
                    self.bump();
                }
                Tok::Ident(word) if word == "source" => match self.source() {
                    Ok(source) => topology.items.push(Item::Source(source)),
                    Err(Reported) => self.recover_top(),
                },
                Tok::Ident(word) if word == "metric" => match self.metric() {
                    Ok(metric) => topology.items.push(Item::Metric(metric)),
                    Err(Reported) => self.recover_top(),
                },
                Tok::Ident(word) => {
                    let suggestion = did_you_mean(word, ITEMS);
                    self.error(
                        Problem::UnknownItem {
                            found: word.clone(),
                            suggestion,
                        },
                        token.span,
                    );
                    self.bump();
                    self.recover_top();
                }
                _ => {
                    self.expected("`source` or `metric`");
                    self.bump();
                    self.recover_top();
                }
            }
        }
        topology
    }

    /// After a broken item: skip to the next `source` or `metric` at the top level.
    fn recover_top(&mut self) {
        loop {
            self.recover(|p| p.at_word("source") || p.at_word("metric"));
            if self.at(&Tok::RBrace) {
                self.bump();
                continue;
            }
            return;
        }
    }

    /// Parses `{ ... }` whose entries `entry` parses; recovers inside the block.
    fn block(
        &mut self,
        what: &str,
        mut entry: impl FnMut(&mut Self) -> PResult<()>,
        starts_entry: impl Fn(&Parser) -> bool,
    ) -> PResult<Span> {
        let open = self.expect(Tok::LBrace, &format!("`{{` to open {what}"))?;
        loop {
            while self.eat(&Tok::Semi) || self.eat(&Tok::Comma) {}
            if self.at(&Tok::RBrace) {
                let close = self.bump().span;
                return Ok(open.to(close));
            }
            if self.at(&Tok::Eof) {
                let at = self.peek().span;
                self.error(
                    Problem::Unclosed {
                        what: what.to_string(),
                        open,
                    },
                    at,
                );
                return Err(Reported);
            }
            let before = self.pos;
            if entry(self).is_err() {
                if self.pos == before {
                    self.bump();
                }
                self.recover(&starts_entry);
                if self.at(&Tok::Eof) {
                    // The entry's mistake is already reported, and often is
                    // this same missing `}`: one message at the end is enough.
                    return Err(Reported);
                }
            }
        }
    }

    fn source(&mut self) -> PResult<SourceDecl> {
        let start = self.bump().span; // `source`
        let name =
            self.name("a name for the source, as in `source rewards = kafka(\"game.rewards\")`")?;
        self.expect(Tok::Assign, "`=` after the source name")?;
        let kind = self.name("a source kind: `kafka`, `file`, `generator` or `telemetry`")?;
        let (args, args_span) = if self.at(&Tok::LParen) {
            self.args()?
        } else {
            (Vec::new(), kind.span)
        };
        let mut properties = Vec::new();
        let mut fields: Option<Vec<FieldDecl>> = None;
        let mut end = args_span;
        if self.at(&Tok::LBrace) {
            let starts = |p: &Parser| {
                matches!(p.peek().tok, Tok::Ident(_))
                    && matches!(p.peek_at(1).tok, Tok::Assign | Tok::LBrace)
            };
            end = self.block(
                "the source block",
                |p| {
                    if p.at_word("fields") && p.peek_at(1).tok == Tok::LBrace {
                        p.bump();
                        let decls = p.fields_block()?;
                        fields.get_or_insert_with(Vec::new).extend(decls);
                        return Ok(());
                    }
                    let key = p.name("a property such as `time = ts as epoch_millis`")?;
                    // `settings { ... }` may drop the `=` before a block.
                    if !p.at(&Tok::LBrace) {
                        p.expect(Tok::Assign, &format!("`=` after `{}`", key.text))?;
                    }
                    let value = p.value()?;
                    properties.push(Property { key, value });
                    Ok(())
                },
                starts,
            )?;
        }
        Ok(SourceDecl {
            name,
            kind,
            args,
            args_span,
            properties,
            fields,
            span: start.to(end),
        })
    }

    fn fields_block(&mut self) -> PResult<Vec<FieldDecl>> {
        let mut decls = Vec::new();
        self.block(
            "the fields block",
            |p| {
                let path = p.path("a field name, as in `amount: number`")?;
                p.expect(Tok::Colon, "`:` between the field and its type")?;
                let ty = p.name("a type: `string`, `number`, `bool` or `time`")?;
                decls.push(FieldDecl { path, ty });
                Ok(())
            },
            |p| matches!(p.peek().tok, Tok::Ident(_)) && p.peek_at(1).tok == Tok::Colon,
        )?;
        Ok(decls)
    }

    fn args(&mut self) -> PResult<(Vec<Arg>, Span)> {
        let open = self.bump().span; // `(`
        let mut args = Vec::new();
        loop {
            if self.at(&Tok::RParen) {
                let close = self.bump().span;
                return Ok((args, open.to(close)));
            }
            if matches!(self.peek().tok, Tok::Ident(_)) && self.peek_at(1).tok == Tok::Assign {
                let name = self.name("an argument name")?;
                self.bump(); // `=`
                args.push(Arg::Named(name, self.value()?));
            } else {
                args.push(Arg::Positional(self.value()?));
            }
            if !self.eat(&Tok::Comma) && !self.at(&Tok::RParen) {
                return Err(self.expected("`,` or `)`"));
            }
        }
    }

    fn value(&mut self) -> PResult<Value> {
        let token = self.peek().clone();
        match token.tok {
            Tok::Str(s) => {
                self.bump();
                Ok(Value::Str(s, token.span))
            }
            Tok::Number(n) => {
                self.bump();
                Ok(Value::Number(n, token.span))
            }
            Tok::Minus => {
                self.bump();
                let next = self.peek().clone();
                match next.tok {
                    Tok::Number(n) => {
                        self.bump();
                        Ok(Value::Number(-n, token.span.to(next.span)))
                    }
                    _ => Err(self.expected("a number after `-`")),
                }
            }
            Tok::Duration(d) => {
                self.bump();
                Ok(Value::Duration(d, token.span))
            }
            Tok::Ident(ref w) if w == "true" || w == "false" => {
                self.bump();
                Ok(Value::Bool(w == "true", token.span))
            }
            Tok::Ident(_) => {
                let path = self.path("a value")?;
                if self.eat_word("as") {
                    let enc =
                        self.name("an encoding: `epoch_millis`, `epoch_seconds` or `rfc3339`")?;
                    Ok(Value::PathAs(path, enc))
                } else {
                    Ok(Value::Path(path))
                }
            }
            Tok::LBracket => {
                let (values, span) = self.nested(Self::list)?;
                Ok(Value::List(values, span))
            }
            Tok::LBrace => self.nested(Self::map),
            _ => Err(self.expected("a value (a string, number, duration, name or list)")),
        }
    }

    fn map(&mut self) -> PResult<Value> {
        {
            {
                let mut entries = Vec::new();
                let span = self.block(
                    "the map",
                    |p| {
                        let key = p.value()?;
                        p.expect(Tok::Assign, "`=` between a key and its value")?;
                        let value = p.value()?;
                        entries.push((key, value));
                        Ok(())
                    },
                    |p| matches!(p.peek().tok, Tok::Str(_) | Tok::Ident(_)),
                )?;
                Ok(Value::Map(entries, span))
            }
        }
    }

    fn list(&mut self) -> PResult<(Vec<Value>, Span)> {
        let open = self.expect(Tok::LBracket, "`[`")?;
        let mut values = Vec::new();
        loop {
            if self.at(&Tok::RBracket) {
                let close = self.bump().span;
                return Ok((values, open.to(close)));
            }
            values.push(self.value()?);
            if !self.eat(&Tok::Comma) && !self.at(&Tok::RBracket) {
                return Err(self.expected("`,` or `]`"));
            }
        }
    }

    fn metric(&mut self) -> PResult<MetricDecl> {
        let start = self.bump().span; // `metric`
        let name = self.name("a name for the metric, as in `metric reward_stats from rewards`")?;
        if !self.eat_word("from") {
            return Err(self.expected("`from` and the sources the metric reads"));
        }
        let mut sources = vec![self.name("a source name after `from`")?];
        while self.eat(&Tok::Comma) {
            sources.push(self.name("a source name after `,`")?);
        }
        let mut clauses = Vec::new();
        let body = self.block(
            "the metric block",
            |p| {
                let clause = p.clause()?;
                clauses.push(clause);
                Ok(())
            },
            |p| matches!(&p.peek().tok, Tok::Ident(w) if METRIC_CLAUSES.contains(&w.as_str())),
        )?;
        Ok(MetricDecl {
            name,
            sources,
            clauses,
            span: start.to(body),
        })
    }

    fn clause(&mut self) -> PResult<Clause> {
        let keyword =
            self.name("a clause: `where`, `dimensions`, `window`, `retain` or `measures`")?;
        let start = keyword.span;
        match keyword.text.as_str() {
            "where" => {
                let expr = self.expr()?;
                Ok(Clause::Where(expr, start.to(self.prev_span())))
            }
            "dimensions" => {
                let mut dims = Vec::new();
                loop {
                    let path =
                        self.path("a field to group by, as in `dimensions game_id, reward_type`")?;
                    let alias = if self.eat_word("as") {
                        Some(self.name("a name after `as`")?)
                    } else {
                        None
                    };
                    dims.push(DimensionDecl { path, alias });
                    if !self.eat(&Tok::Comma) {
                        break;
                    }
                }
                Ok(Clause::Dimensions(dims, start.to(self.prev_span())))
            }
            "window" => {
                let window = self.window()?;
                Ok(Clause::Window(window, start.to(self.prev_span())))
            }
            "retain" => {
                let (d, span) = self.duration("a duration after `retain`, as in `retain 30d`")?;
                Ok(Clause::Retain(d, start.to(span)))
            }
            "measures" => {
                let mut measures = Vec::new();
                let span = self.block(
                    "the measures block",
                    |p| {
                        let name = p.name("a measure, as in `rewards = count()`")?;
                        p.expect(Tok::Assign, &format!("`=` after `{}`", name.text))?;
                        let function = p.name("a function: `count`, `sum`, `min`, `max`, `avg`, `distinct` or `quantile`")?;
                        let open = p.expect(Tok::LParen, &format!("`(` after `{}`", function.text))?;
                        let mut args = Vec::new();
                        let close = loop {
                            if p.at(&Tok::RParen) {
                                break p.bump().span;
                            }
                            args.push(p.value()?);
                            if !p.eat(&Tok::Comma) && !p.at(&Tok::RParen) {
                                return Err(p.expected("`,` or `)`"));
                            }
                        };
                        let call_span = function.span.to(open).to(close);
                        measures.push(MeasureDecl { name, function, args, call_span });
                        Ok(())
                    },
                    |p| matches!(p.peek().tok, Tok::Ident(_)) && p.peek_at(1).tok == Tok::Assign,
                )?;
                Ok(Clause::Measures(measures, start.to(span)))
            }
            other => {
                let suggestion = did_you_mean(other, METRIC_CLAUSES);
                Err(self.error(
                    Problem::UnknownClause {
                        found: other.to_string(),
                        suggestion,
                    },
                    start,
                ))
            }
        }
    }

    fn prev_span(&self) -> Span {
        self.tokens[self.pos.saturating_sub(1)].span
    }

    fn duration(&mut self, what: &str) -> PResult<(crate::duration::Duration, Span)> {
        let token = self.peek().clone();
        match token.tok {
            Tok::Duration(d) => {
                self.bump();
                Ok((d, token.span))
            }
            Tok::Number(n) => {
                self.bump();
                Err(self.error(
                    Problem::BadDuration {
                        found: format!("{n}"),
                        why: crate::duration::DurationProblem::MissingUnit,
                    },
                    token.span,
                ))
            }
            _ => Err(self.expected(what)),
        }
    }

    fn window(&mut self) -> PResult<WindowDecl> {
        let kind = self.name("a window kind: `tumbling`, `hopping` or `session`")?;
        match kind.text.as_str() {
            "tumbling" => {
                let size = self.duration("the bucket length, as in `window tumbling 1m`")?;
                Ok(WindowDecl::Tumbling { size })
            }
            "hopping" => {
                let size =
                    self.duration("the window length, as in `window hopping 10m every 1m`")?;
                if !self.eat_word("every") {
                    return Err(self.expected(
                        "`every` and how often a window starts, as in `hopping 10m every 1m`",
                    ));
                }
                let every = self.duration("how often a window starts, as in `every 1m`")?;
                Ok(WindowDecl::Hopping { size, every })
            }
            "session" => {
                let gap =
                    self.duration("the inactivity gap, as in `window session 30m by user_id`")?;
                if !self.eat_word("by") {
                    return Err(self.expected(
                        "`by` and the field that keys sessions, as in `session 30m by user_id`",
                    ));
                }
                let by = self.path("the field that keys sessions")?;
                Ok(WindowDecl::Session { gap, by })
            }
            other => {
                let suggestion = did_you_mean(other, WINDOW_KINDS);
                Err(self.error(
                    Problem::UnknownWindowKind {
                        found: other.to_string(),
                        suggestion,
                    },
                    kind.span,
                ))
            }
        }
    }

    fn expr(&mut self) -> PResult<Expr> {
        let first = self.and_expr()?;
        let mut rest = Vec::new();
        while self.eat_word("or") {
            rest.push(self.and_expr()?);
        }
        Ok(balanced(first, rest, Expr::Or))
    }

    fn and_expr(&mut self) -> PResult<Expr> {
        let first = self.not_expr()?;
        let mut rest = Vec::new();
        while self.eat_word("and") {
            rest.push(self.not_expr()?);
        }
        Ok(balanced(first, rest, Expr::And))
    }

    fn not_expr(&mut self) -> PResult<Expr> {
        if self.at_word("not") {
            return self.nested(|p| {
                p.bump();
                Ok(Expr::Not(Box::new(p.not_expr()?)))
            });
        }
        if self.at(&Tok::LParen) {
            return self.nested(|p| {
                p.bump();
                let inner = p.expr()?;
                p.expect(Tok::RParen, "`)` to close the parenthesis")?;
                Ok(inner)
            });
        }
        self.predicate()
    }

    fn predicate(&mut self) -> PResult<Expr> {
        let path = self.path("a field to test, as in `where amount > 0`")?;
        let token = self.peek().clone();
        let op = match token.tok {
            Tok::Assign | Tok::EqEq => CmpOp::Eq,
            Tok::NotEq => CmpOp::Ne,
            Tok::Lt => CmpOp::Lt,
            Tok::Le => CmpOp::Le,
            Tok::Gt => CmpOp::Gt,
            Tok::Ge => CmpOp::Ge,
            Tok::Match | Tok::NotMatch => {
                self.bump();
                let pattern = self.peek().clone();
                let Tok::Str(text) = pattern.tok else {
                    return Err(self.expected("a regular expression in quotes, as in `seed_id =~ \"fuc|tax-up\"`"));
                };
                self.bump();
                return Ok(Expr::Match {
                    path,
                    pattern: text,
                    pattern_span: pattern.span,
                    negated: token.tok == Tok::NotMatch,
                });
            }
            Tok::Ident(ref w) if w == "in" => {
                self.bump();
                let (values, list_span) = self.list()?;
                return Ok(Expr::In { path, values, negated: false, list_span });
            }
            Tok::Ident(ref w) if w == "not" && self.peek_at(1).tok == Tok::Ident("in".into()) => {
                self.bump();
                self.bump();
                let (values, list_span) = self.list()?;
                return Ok(Expr::In { path, values, negated: true, list_span });
            }
            Tok::Ident(ref w) if w == "exists" || w == "missing" => {
                self.bump();
                return Ok(Expr::Exists { path, negated: w == "missing" });
            }
            _ => {
                return Err(self.expected(
                    "a test: `=`, `!=`, `<`, `<=`, `>`, `>=`, `in [..]`, `=~ \"regex\"`, `exists` or `missing`",
                ))
            }
        };
        self.bump();
        let value = self.value()?;
        Ok(Expr::Compare { path, op, value })
    }
}

/// Joins `first` and `rest`, in order, with `join` into a balanced tree, so
/// that a long chain of `and`s is log(n) deep rather than n deep: the checker
/// and `Drop` recurse over the tree. The checker flattens it again, so the
/// plan is the same as from a left-leaning tree.
fn balanced(first: Expr, mut rest: Vec<Expr>, join: fn(Box<Expr>, Box<Expr>) -> Expr) -> Expr {
    if rest.is_empty() {
        return first;
    }
    // `rest` keeps the left half's tail; `right` is never empty.
    let mut right = rest.split_off(rest.len() / 2);
    let right_first = right.remove(0);
    join(
        Box::new(balanced(first, rest, join)),
        Box::new(balanced(right_first, right, join)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lexer::lex;

    fn parse_text(text: &str) -> (Topology, Vec<Diagnostic>) {
        let mut diags = Vec::new();
        let tokens = lex(text, &mut diags);
        let topology = parse(tokens, &mut diags);
        (topology, diags)
    }

    fn where_of(expr: &str) -> (Option<Expr>, Vec<Diagnostic>) {
        let text = format!("metric m from s {{ where {expr} }}");
        let (topology, diags) = parse_text(&text);
        let expr = topology.items.into_iter().find_map(|item| match item {
            Item::Metric(m) => m.clauses.into_iter().find_map(|c| match c {
                Clause::Where(e, _) => Some(e),
                _ => None,
            }),
            Item::Source(_) => None,
        });
        (expr, diags)
    }

    fn depth(expr: &Expr) -> usize {
        match expr {
            Expr::And(a, b) | Expr::Or(a, b) => 1 + depth(a).max(depth(b)),
            Expr::Not(inner) => 1 + depth(inner),
            _ => 1,
        }
    }

    fn leaves(expr: &Expr, out: &mut Vec<String>) {
        match expr {
            Expr::And(a, b) | Expr::Or(a, b) => {
                leaves(a, out);
                leaves(b, out);
            }
            Expr::Not(inner) => leaves(inner, out),
            Expr::Compare { path, .. } | Expr::Exists { path, .. } => out.push(path.dotted()),
            Expr::In { path, .. } | Expr::Match { path, .. } => out.push(path.dotted()),
        }
    }

    #[test]
    fn nesting_up_to_the_limit_parses() {
        let open = "(".repeat(MAX_NESTING);
        let close = ")".repeat(MAX_NESTING);
        let (expr, diags) = where_of(&format!("{open}a = 1{close}"));
        assert!(diags.is_empty(), "{diags:?}");
        assert!(expr.is_some());
    }

    #[test]
    fn nesting_past_the_limit_is_one_error() {
        let open = "(".repeat(MAX_NESTING + 1);
        let close = ")".repeat(MAX_NESTING + 1);
        let (_, diags) = where_of(&format!("{open}a = 1{close}"));
        let codes: Vec<_> = diags.iter().map(|d| d.code()).collect();
        assert_eq!(codes, ["E0009"]);
    }

    #[test]
    fn long_chains_are_balanced_and_keep_their_order() {
        let names: Vec<String> = (0..1000).map(|i| format!("f{i}")).collect();
        let chain: Vec<String> = names.iter().map(|n| format!("{n} exists")).collect();
        let (expr, diags) = where_of(&chain.join(" and "));
        assert!(diags.is_empty(), "{diags:?}");
        let expr = expr.expect("a where clause");
        assert!(depth(&expr) <= 11, "depth {}", depth(&expr));
        let mut found = Vec::new();
        leaves(&expr, &mut found);
        assert_eq!(found, names);
    }

    #[test]
    fn and_binds_tighter_than_or() {
        let (expr, _) = where_of("a exists or b exists and c exists");
        match expr.expect("a where clause") {
            Expr::Or(left, right) => {
                assert!(matches!(*left, Expr::Exists { .. }));
                assert!(matches!(*right, Expr::And(..)));
            }
            other => panic!("expected `or` at the top, got {other:?}"),
        }
    }

    #[test]
    fn recovers_inside_a_block_and_reads_the_next_item() {
        let (topology, diags) = parse_text(
            "source s = generator() { late = }\nmetric m from s { window tumbling 1m measures { n = count() } }",
        );
        assert_eq!(diags.len(), 1, "{diags:?}");
        assert_eq!(topology.items.len(), 2);
    }

    #[test]
    fn an_unclosed_block_inside_another_is_reported_once() {
        let (_, diags) = parse_text("metric m from s { measures { n = count()");
        let codes: Vec<_> = diags.iter().map(|d| d.code()).collect();
        assert_eq!(codes, ["E0008"]);
    }
}
