//! The syntax tree the parser builds: what was written, with spans, before any checking.

use crate::duration::Duration;
use crate::span::Span;

/// A whole topology file.
#[derive(Debug, Clone, Default)]
pub struct Topology {
    /// Sources and metrics in the order written.
    pub items: Vec<Item>,
}

/// A top-level declaration.
#[derive(Debug, Clone)]
pub enum Item {
    /// `source NAME = KIND(...) { ... }`
    Source(SourceDecl),
    /// `metric NAME from SOURCE, ... { ... }`
    Metric(MetricDecl),
}

/// A name as written, with its span.
#[derive(Debug, Clone, PartialEq)]
pub struct Name {
    /// The text of the name.
    pub text: String,
    /// Where it was written.
    pub span: Span,
}

/// A dotted field path such as `payload.user.id`.
#[derive(Debug, Clone, PartialEq)]
pub struct Path {
    /// The segments between the dots.
    pub segments: Vec<String>,
    /// Where the whole path was written.
    pub span: Span,
}

impl Path {
    /// The path as written, segments joined by dots.
    pub fn dotted(&self) -> String {
        self.segments.join(".")
    }
}

/// `source NAME = KIND(ARGS) { PROPERTIES }`
#[derive(Debug, Clone)]
pub struct SourceDecl {
    /// The source's name.
    pub name: Name,
    /// `kafka`, `file` or `generator` (checked later).
    pub kind: Name,
    /// The arguments between the parentheses.
    pub args: Vec<Arg>,
    /// Where the parenthesised arguments were written.
    pub args_span: Span,
    /// `key = value` properties of the block.
    pub properties: Vec<Property>,
    /// The `fields { ... }` block, if written.
    pub fields: Option<Vec<FieldDecl>>,
    /// The whole declaration.
    pub span: Span,
}

/// One argument of a source: `"game.rewards"` or `rate = 500`.
#[derive(Debug, Clone)]
pub enum Arg {
    /// A value on its own.
    Positional(Value),
    /// `name = value`.
    Named(Name, Value),
}

/// `key = value` inside a source block.
#[derive(Debug, Clone)]
pub struct Property {
    /// The key.
    pub key: Name,
    /// The value.
    pub value: Value,
}

/// `path: type` inside a `fields { ... }` block.
#[derive(Debug, Clone)]
pub struct FieldDecl {
    /// The declared field.
    pub path: Path,
    /// The type name as written (`string`, `number`, `bool`, `time`).
    pub ty: Name,
}

/// A value on the right of `=` or in an argument list.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A string literal.
    Str(String, Span),
    /// A number literal.
    Number(f64, Span),
    /// `true` or `false`.
    Bool(bool, Span),
    /// A duration literal.
    Duration(Duration, Span),
    /// A bare word or dotted path (`json`, `earliest`, `payload.ts`).
    Path(Path),
    /// `path as word`, as in `time = ts as epoch_millis`.
    PathAs(Path, Name),
    /// `[v, v, ...]`
    List(Vec<Value>, Span),
    /// `{ "key" = v, ... }`
    Map(Vec<(Value, Value)>, Span),
}

impl Value {
    /// Where the value was written.
    pub fn span(&self) -> Span {
        match self {
            Value::Str(_, s)
            | Value::Number(_, s)
            | Value::Bool(_, s)
            | Value::Duration(_, s)
            | Value::List(_, s)
            | Value::Map(_, s) => *s,
            Value::Path(p) => p.span,
            Value::PathAs(p, n) => p.span.to(n.span),
        }
    }

    /// A short description for messages ("a string", "a list", …).
    pub fn kind_name(&self) -> &'static str {
        match self {
            Value::Str(..) => "a string",
            Value::Number(..) => "a number",
            Value::Bool(..) => "a boolean",
            Value::Duration(..) => "a duration",
            Value::Path(..) => "a name",
            Value::PathAs(..) => "`field as encoding`",
            Value::List(..) => "a list",
            Value::Map(..) => "a map",
        }
    }
}

/// `metric NAME from SOURCES { CLAUSES }`
#[derive(Debug, Clone)]
pub struct MetricDecl {
    /// The metric's name.
    pub name: Name,
    /// The sources named after `from`.
    pub sources: Vec<Name>,
    /// The clauses in the order written.
    pub clauses: Vec<Clause>,
    /// The whole declaration.
    pub span: Span,
}

/// One clause of a metric.
#[derive(Debug, Clone)]
pub enum Clause {
    /// `where EXPR`
    Where(Expr, Span),
    /// `dimensions a, b as c`
    Dimensions(Vec<DimensionDecl>, Span),
    /// `window ...`
    Window(WindowDecl, Span),
    /// `retain D`
    Retain(Duration, Span),
    /// `measures { name = f(args) ... }`
    Measures(Vec<MeasureDecl>, Span),
}

/// A dimension: a field path with an optional `as NAME`.
#[derive(Debug, Clone)]
pub struct DimensionDecl {
    /// The field read.
    pub path: Path,
    /// The name given with `as`.
    pub alias: Option<Name>,
}

/// A window clause as written.
#[derive(Debug, Clone)]
pub enum WindowDecl {
    /// `tumbling SIZE`
    Tumbling {
        /// Bucket length.
        size: (Duration, Span),
    },
    /// `hopping SIZE every ADVANCE`
    Hopping {
        /// Window length.
        size: (Duration, Span),
        /// How far each window starts after the previous one.
        every: (Duration, Span),
    },
    /// `session GAP by FIELD`
    Session {
        /// Inactivity that closes a session.
        gap: (Duration, Span),
        /// The field whose values each have their own sessions.
        by: Path,
    },
}

/// `name = function(args)` inside `measures { ... }`.
#[derive(Debug, Clone)]
pub struct MeasureDecl {
    /// The measure's name.
    pub name: Name,
    /// The function name as written.
    pub function: Name,
    /// The arguments.
    pub args: Vec<Value>,
    /// The span of `function(args)`.
    pub call_span: Span,
}

/// A comparison operator in `where`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CmpOp {
    /// `=` or `==`
    Eq,
    /// `!=`
    Ne,
    /// `<`
    Lt,
    /// `<=`
    Le,
    /// `>`
    Gt,
    /// `>=`
    Ge,
}

/// A `where` expression.
#[derive(Debug, Clone)]
pub enum Expr {
    /// `path OP value`
    Compare {
        /// The field compared.
        path: Path,
        /// The operator.
        op: CmpOp,
        /// The literal compared with.
        value: Value,
    },
    /// `path in [..]` or `path not in [..]`
    In {
        /// The field tested.
        path: Path,
        /// The listed values.
        values: Vec<Value>,
        /// True for `not in`.
        negated: bool,
        /// The span of the list.
        list_span: Span,
    },
    /// `path =~ "regex"` or `path !~ "regex"`
    Match {
        /// The field matched.
        path: Path,
        /// The regular expression.
        pattern: String,
        /// The span of the pattern string.
        pattern_span: Span,
        /// True for `!~`.
        negated: bool,
    },
    /// `path exists` or `path missing`
    Exists {
        /// The field tested.
        path: Path,
        /// True for `missing`.
        negated: bool,
    },
    /// `a and b`
    And(Box<Expr>, Box<Expr>),
    /// `a or b`
    Or(Box<Expr>, Box<Expr>),
    /// `not a`
    Not(Box<Expr>),
}
