//! The condition language of analysis templates (`successCondition`,
//! `failureCondition`): the subset of Argo Rollouts' expressions (the `expr`
//! language) that its documented examples use.
//!
//! - values: `result`, numbers, `"strings"` and `'strings'`, `true`,
//!   `false`, `nil`, lists `[1, 2]`;
//! - indexing `result[0]` (a negative index counts from the end), fields
//!   `result.summary.failed` and `result["key"]`;
//! - `+ - * / %`, `== != < <= > >=`, `&& || !` and `and or not`, `??`
//!   (the left side unless it is nil), parentheses;
//! - functions: `len`, `all(list, {# > 0.9})`, `any(list, {...})` (`#` is
//!   the element), `isNaN`, `isInf`, `isNil`, `default(value, fallback)`,
//!   `asInt`, `asFloat`.
//!
//! Numbers are 64-bit floats, as Prometheus' samples are: `200 == 200.0`.
//! A condition is parsed once, when the config is validated
//! ([`Condition::parse`]); evaluation ([`Condition::eval`]) is pure. A
//! runtime error (an index out of range, a field of a number, comparing a
//! string with a number) makes the measurement an error, as in Argo.
//!
//! Evaluation borrows: `result`, its fields and elements, and `#` are read
//! in place, never copied for each reference, so a condition that goes over
//! the result once takes time in proportion to it. Every evaluation counts
//! its steps and stops with an error past `MAX_STEPS` (2^26), so a
//! condition that goes over the whole result for each of its elements
//! cannot hold a runtime thread for hours.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

/// A value a condition works on: the provider's result and what is computed
/// from it.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// No value (JSON `null`, a missing field).
    Nil,
    /// `true` or `false`.
    Bool(bool),
    /// A number; NaN and infinities included (Prometheus' `NaN`, `+Inf`).
    Number(f64),
    /// A string.
    Text(String),
    /// A list (a Prometheus vector).
    List(Vec<Value>),
    /// An object (JSON).
    Map(BTreeMap<String, Value>),
}

/// A parsed condition, ready to evaluate; shows as written.
#[derive(Clone)]
pub struct Condition {
    text: Arc<str>,
    root: Arc<Expr>,
}

/// A condition that does not parse: what and at which column (1-based, in
/// characters).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("at column {column}: {message}")]
pub struct ParseError {
    /// 1-based column in the condition's text.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

/// A condition that cannot be evaluated on a result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct EvalError(pub String);

#[derive(Debug, Clone, PartialEq)]
enum Expr {
    Literal(Value),
    Result,
    /// `#` inside a predicate.
    Element,
    List(Vec<Expr>),
    Unary(UnaryOp, Box<Expr>),
    Binary(BinaryOp, Box<Expr>, Box<Expr>),
    Index(Box<Expr>, Box<Expr>),
    Field(Box<Expr>, String),
    Call(Function, Vec<Expr>),
    /// `{ ... }`: a predicate, only as the second argument of `all`/`any`.
    Predicate(Box<Expr>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum UnaryOp {
    Not,
    Negate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BinaryOp {
    Or,
    And,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Add,
    Sub,
    Mul,
    Div,
    Rem,
    Coalesce,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Function {
    Len,
    All,
    Any,
    IsNaN,
    IsInf,
    IsNil,
    Default,
    AsInt,
    AsFloat,
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Number(f64),
    Text(String),
    Ident(String),
    Op(&'static str),
    Hash,
    End,
}

/// Turns a condition's text into tokens with their columns.
struct Lexer;

struct Parser {
    tokens: Vec<(Token, usize)>,
    at: usize,
    /// Inside `{ ... }`: `#` is allowed.
    in_predicate: bool,
    /// How many expressions the one being read is inside.
    nesting: usize,
}

/// The most tokens a condition may have: conditions are a line or two,
/// and a bound on the tokens bounds the tree's depth.
const MAX_TOKENS: usize = 2048;

/// The deepest a condition may nest (parentheses, signs, calls, lists,
/// indexes): reading it recurses this deep, and a condition nested
/// thousands deep would overflow the stack and end the process.
const MAX_NESTING: usize = 64;

/// The deepest a condition's tree may be once read. A chain such as
/// `a || b || c ...` is read in a loop but is as deep as it is long, and
/// evaluating and dropping the tree recurse that deep: 256 allows a chain
/// of some 250 terms.
const MAX_DEPTH: usize = 256;

/// Operators, longest first so that `<=` is not read as `<`.
const OPERATORS: [&str; 20] = [
    "&&", "||", "==", "!=", "<=", ">=", "??", "<", ">", "+", "-", "*", "/", "%", "!", "(", ")",
    "[", "]", ",",
];

// === impl Condition ===

impl Condition {
    /// Parses `text`.
    ///
    /// # Errors
    /// [`ParseError`] with the column and what was expected there.
    pub fn parse(text: &str) -> Result<Condition, ParseError> {
        let tokens = Lexer::tokens(text)?;
        // The last token is the end of the text.
        if let Some((token, column)) = tokens.get(MAX_TOKENS)
            && *token != Token::End
        {
            return Err(ParseError {
                column: *column,
                message: format!("the condition is too long: more than {MAX_TOKENS} tokens"),
            });
        }
        let mut parser = Parser {
            tokens,
            at: 0,
            in_predicate: false,
            nesting: 0,
        };
        let root = parser.expression(0)?;
        // A chain such as `a + b + c + ...` is read in a loop, not by
        // recursion, but is as deep as it is long once read.
        if root.depth() > MAX_DEPTH {
            return Err(ParseError {
                column: 1,
                message: format!(
                    "the condition as a whole chains or nests more than {MAX_DEPTH} operations deep; split it into several metrics"
                ),
            });
        }
        let (token, column) = parser.peek();
        if *token != Token::End {
            return Err(ParseError {
                column,
                message: format!(
                    "unexpected {}; expected an operator or the end",
                    describe(token)
                ),
            });
        }
        Ok(Condition {
            text: Arc::from(text.trim()),
            root: Arc::new(root),
        })
    }

    /// The condition as written.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// Evaluates the condition with `result`.
    ///
    /// # Errors
    /// [`EvalError`] when the condition cannot be applied to `result`, or
    /// when it is not `true` or `false`.
    pub fn eval(&self, result: &Value) -> Result<bool, EvalError> {
        self.eval_within(result, MAX_STEPS).0
    }

    /// [`Condition::eval`] within `budget` steps, and the steps taken.
    fn eval_within(&self, result: &Value, budget: u64) -> (Result<bool, EvalError>, u64) {
        let mut work = Work { steps: 0, budget };
        let outcome = eval(&self.root, result, None, &mut work).and_then(|value| match *value {
            Value::Bool(b) => Ok(b),
            ref other => Err(EvalError(format!(
                "the condition gives {}, not true or false",
                other.describe()
            ))),
        });
        (outcome, work.steps)
    }
}

impl fmt::Debug for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Condition({:?})", self.text)
    }
}

impl fmt::Display for Condition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl PartialEq for Condition {
    fn eq(&self, other: &Self) -> bool {
        self.text == other.text
    }
}

// === impl Value ===

impl Value {
    /// The value of a JSON document (a web provider's answer).
    pub fn from_json(json: &serde_json::Value) -> Value {
        match json {
            serde_json::Value::Null => Value::Nil,
            serde_json::Value::Bool(b) => Value::Bool(*b),
            serde_json::Value::Number(n) => Value::Number(n.as_f64().unwrap_or(f64::NAN)),
            serde_json::Value::String(s) => Value::Text(s.clone()),
            serde_json::Value::Array(items) => {
                Value::List(items.iter().map(Value::from_json).collect())
            }
            serde_json::Value::Object(map) => Value::Map(
                map.iter()
                    .map(|(k, v)| (k.clone(), Value::from_json(v)))
                    .collect(),
            ),
        }
    }

    /// A JSON rendering for the admin API: NaN and infinities as Prometheus
    /// writes them (`"NaN"`, `"+Inf"`, `"-Inf"`).
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Value::Nil => serde_json::Value::Null,
            Value::Bool(b) => serde_json::Value::Bool(*b),
            // Whole numbers as integers, as the JSON they came from wrote them.
            #[allow(clippy::cast_possible_truncation)]
            Value::Number(n) if n.fract() == 0.0 && n.abs() < 9.0e15 => {
                serde_json::Value::Number(serde_json::Number::from(*n as i64))
            }
            Value::Number(n) => serde_json::Number::from_f64(*n).map_or_else(
                || serde_json::Value::String(number_text(*n)),
                serde_json::Value::Number,
            ),
            Value::Text(s) => serde_json::Value::String(s.clone()),
            Value::List(items) => {
                serde_json::Value::Array(items.iter().map(Value::to_json).collect())
            }
            Value::Map(map) => serde_json::Value::Object(
                map.iter().map(|(k, v)| (k.clone(), v.to_json())).collect(),
            ),
        }
    }

    fn describe(&self) -> String {
        match self {
            Value::Nil => "nil".to_owned(),
            Value::Bool(b) => format!("the boolean {b}"),
            Value::Number(n) => format!("the number {}", number_text(*n)),
            Value::Text(s) => format!("the string {}", quote(s)),
            Value::List(items) => format!("a list of {}", items.len()),
            Value::Map(_) => "an object".to_owned(),
        }
    }

    fn truth(&self, what: &str) -> Result<bool, EvalError> {
        match self {
            Value::Bool(b) => Ok(*b),
            other => Err(EvalError(format!(
                "{what} needs true or false, got {}",
                other.describe()
            ))),
        }
    }

    fn number(&self, what: &str) -> Result<f64, EvalError> {
        match self {
            Value::Number(n) => Ok(*n),
            other => Err(EvalError(format!(
                "{what} needs a number, got {}",
                other.describe()
            ))),
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Number(n) => f.write_str(&number_text(*n)),
            Value::Text(s) => f.write_str(s),
            other => write!(f, "{}", other.to_json()),
        }
    }
}

/// A number as Prometheus writes it.
fn number_text(n: f64) -> String {
    if n.is_nan() {
        "NaN".to_owned()
    } else if n.is_infinite() {
        if n > 0.0 { "+Inf" } else { "-Inf" }.to_owned()
    } else {
        format!("{n}")
    }
}

// === impl Lexer ===

impl Lexer {
    fn tokens(text: &str) -> Result<Vec<(Token, usize)>, ParseError> {
        let chars: Vec<char> = text.chars().collect();
        let mut tokens = Vec::new();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            let column = i + 1;
            if c.is_whitespace() {
                i += 1;
                continue;
            }
            if c.is_ascii_digit()
                || (c == '.' && chars.get(i + 1).is_some_and(char::is_ascii_digit))
            {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_ascii_alphanumeric() || chars[i] == '.' || chars[i] == '_')
                {
                    // An exponent's sign belongs to the number.
                    if matches!(chars[i], 'e' | 'E') && matches!(chars.get(i + 1), Some('+' | '-'))
                    {
                        i += 1;
                    }
                    i += 1;
                }
                let written: String = chars[start..i].iter().filter(|c| **c != '_').collect();
                let value = written.parse::<f64>().map_err(|_| ParseError {
                    column,
                    message: format!("`{written}` is not a number"),
                })?;
                tokens.push((Token::Number(value), column));
                continue;
            }
            if c == '"' || c == '\'' {
                let mut value = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => {
                            return Err(ParseError {
                                column,
                                message: "this string has no closing quote".to_owned(),
                            });
                        }
                        Some(q) if *q == c => break,
                        Some('\\') => {
                            let escaped = chars.get(i + 1).copied().unwrap_or('\\');
                            value.push(match escaped {
                                'n' => '\n',
                                't' => '\t',
                                other => other,
                            });
                            i += 2;
                            continue;
                        }
                        Some(other) => value.push(*other),
                    }
                    i += 1;
                }
                i += 1;
                tokens.push((Token::Text(value), column));
                continue;
            }
            if c.is_alphabetic() || c == '_' || c == '$' {
                let start = i;
                while i < chars.len()
                    && (chars[i].is_alphanumeric() || chars[i] == '_' || chars[i] == '$')
                {
                    i += 1;
                }
                let word: String = chars[start..i].iter().collect();
                let token = match word.as_str() {
                    "and" => Token::Op("&&"),
                    "or" => Token::Op("||"),
                    "not" => Token::Op("!"),
                    _ => Token::Ident(word),
                };
                tokens.push((token, column));
                continue;
            }
            if c == '#' {
                tokens.push((Token::Hash, column));
                i += 1;
                continue;
            }
            if matches!(c, '{' | '}' | '.') {
                tokens.push((
                    Token::Op(match c {
                        '{' => "{",
                        '}' => "}",
                        _ => ".",
                    }),
                    column,
                ));
                i += 1;
                continue;
            }
            let rest: String = chars[i..chars.len().min(i + 2)].iter().collect();
            let Some(op) = OPERATORS.iter().find(|op| rest.starts_with(**op)) else {
                return Err(ParseError {
                    column,
                    message: format!("unexpected character `{c}`"),
                });
            };
            tokens.push((Token::Op(op), column));
            i += op.chars().count();
        }
        tokens.push((Token::End, chars.len() + 1));
        Ok(tokens)
    }
}

fn describe(token: &Token) -> String {
    match token {
        Token::Number(n) => format!("number `{n}`"),
        Token::Text(s) => format!("string {s:?}"),
        Token::Ident(name) => format!("`{name}`"),
        Token::Op(op) => format!("`{op}`"),
        Token::Hash => "`#`".to_owned(),
        Token::End => "the end of the condition".to_owned(),
    }
}

/// expr's precedences: `||` 10, `&&` 15, comparisons 20, `+ -` 30,
/// `* / %` 60, `??` 500 (200 here); unary `!` 50, unary `-` 90.
fn binary(op: &str) -> Option<(BinaryOp, u8)> {
    Some(match op {
        "||" => (BinaryOp::Or, 10),
        "&&" => (BinaryOp::And, 15),
        "==" => (BinaryOp::Eq, 20),
        "!=" => (BinaryOp::Ne, 20),
        "<" => (BinaryOp::Lt, 20),
        "<=" => (BinaryOp::Le, 20),
        ">" => (BinaryOp::Gt, 20),
        ">=" => (BinaryOp::Ge, 20),
        "+" => (BinaryOp::Add, 30),
        "-" => (BinaryOp::Sub, 30),
        "*" => (BinaryOp::Mul, 60),
        "/" => (BinaryOp::Div, 60),
        "%" => (BinaryOp::Rem, 60),
        "??" => (BinaryOp::Coalesce, 200),
        _ => return None,
    })
}

// === impl Parser ===

impl Parser {
    fn peek(&self) -> (&Token, usize) {
        let (token, column) = &self.tokens[self.at.min(self.tokens.len() - 1)];
        (token, *column)
    }

    fn next(&mut self) -> (Token, usize) {
        let (token, column) = self.peek();
        let out = (token.clone(), column);
        if self.at < self.tokens.len() - 1 {
            self.at += 1;
        }
        out
    }

    fn expect(&mut self, op: &'static str, context: &str) -> Result<(), ParseError> {
        let (token, column) = self.next();
        if token == Token::Op(op) {
            Ok(())
        } else {
            Err(ParseError {
                column,
                message: format!("expected `{op}` {context}, found {}", describe(&token)),
            })
        }
    }

    /// Precedence climbing: operators that bind tighter than `min`. Every
    /// nested expression is read through here, so the nesting is counted
    /// here.
    fn expression(&mut self, min: u8) -> Result<Expr, ParseError> {
        if self.nesting >= MAX_NESTING {
            let (_, column) = self.peek();
            return Err(ParseError {
                column,
                message: format!(
                    "the condition nests more than {MAX_NESTING} deep here (parentheses, signs, calls, lists, indexes)"
                ),
            });
        }
        self.nesting += 1;
        let read = self.operators(min);
        self.nesting -= 1;
        read
    }

    /// [`Parser::expression`] itself.
    fn operators(&mut self, min: u8) -> Result<Expr, ParseError> {
        let mut left = self.unary()?;
        loop {
            let (token, _) = self.peek();
            let Token::Op(op) = token else { break };
            let Some((op, precedence)) = binary(op) else {
                break;
            };
            if precedence <= min {
                break;
            }
            self.next();
            let right = self.expression(precedence)?;
            left = Expr::Binary(op, Box::new(left), Box::new(right));
        }
        Ok(left)
    }

    fn unary(&mut self) -> Result<Expr, ParseError> {
        let (token, _) = self.peek();
        match token {
            Token::Op("!") => {
                self.next();
                let operand = self.expression(50)?;
                Ok(Expr::Unary(UnaryOp::Not, Box::new(operand)))
            }
            Token::Op("-") => {
                self.next();
                let operand = self.expression(90)?;
                Ok(Expr::Unary(UnaryOp::Negate, Box::new(operand)))
            }
            Token::Op("+") => {
                self.next();
                self.expression(90)
            }
            _ => self.postfix(),
        }
    }

    fn postfix(&mut self) -> Result<Expr, ParseError> {
        let mut value = self.primary()?;
        loop {
            match self.peek().0 {
                Token::Op("[") => {
                    self.next();
                    let index = self.expression(0)?;
                    self.expect("]", "to close the index")?;
                    value = Expr::Index(Box::new(value), Box::new(index));
                }
                Token::Op(".") => {
                    self.next();
                    match self.next() {
                        (Token::Ident(name), _) => value = Expr::Field(Box::new(value), name),
                        (Token::Number(n), _) if n.fract() == 0.0 && n >= 0.0 => {
                            value = Expr::Index(
                                Box::new(value),
                                Box::new(Expr::Literal(Value::Number(n))),
                            );
                        }
                        (other, column) => {
                            return Err(ParseError {
                                column,
                                message: format!(
                                    "expected a field name after `.`, found {}",
                                    describe(&other)
                                ),
                            });
                        }
                    }
                }
                _ => return Ok(value),
            }
        }
    }

    fn primary(&mut self) -> Result<Expr, ParseError> {
        let (token, column) = self.next();
        match token {
            Token::Number(n) => Ok(Expr::Literal(Value::Number(n))),
            Token::Text(s) => Ok(Expr::Literal(Value::Text(s))),
            Token::Hash if self.in_predicate => Ok(Expr::Element),
            Token::Hash => Err(ParseError {
                column,
                message: "`#` stands for the element only inside a predicate such as `all(result, {# > 0.9})`".to_owned(),
            }),
            Token::Op("(") => {
                let inner = self.expression(0)?;
                self.expect(")", "to close the parenthesis")?;
                Ok(inner)
            }
            Token::Op("[") => {
                let mut items = Vec::new();
                if self.peek().0 != &Token::Op("]") {
                    loop {
                        items.push(self.expression(0)?);
                        if self.peek().0 == &Token::Op(",") {
                            self.next();
                            continue;
                        }
                        break;
                    }
                }
                self.expect("]", "to close the list")?;
                Ok(Expr::List(items))
            }
            Token::Op("{") => {
                let outer = self.in_predicate;
                self.in_predicate = true;
                let inner = self.expression(0);
                self.in_predicate = outer;
                let inner = inner?;
                self.expect("}", "to close the predicate")?;
                Ok(Expr::Predicate(Box::new(inner)))
            }
            Token::Ident(name) => self.identifier(name, column),
            other => Err(ParseError {
                column,
                message: format!("expected a value, found {}", describe(&other)),
            }),
        }
    }

    fn identifier(&mut self, name: String, column: usize) -> Result<Expr, ParseError> {
        match name.as_str() {
            "true" => return Ok(Expr::Literal(Value::Bool(true))),
            "false" => return Ok(Expr::Literal(Value::Bool(false))),
            "nil" => return Ok(Expr::Literal(Value::Nil)),
            "result" => return Ok(Expr::Result),
            "NaN" => return Ok(Expr::Literal(Value::Number(f64::NAN))),
            _ => {}
        }
        let function = match name.as_str() {
            "len" => Function::Len,
            "all" => Function::All,
            "any" => Function::Any,
            "isNaN" => Function::IsNaN,
            "isInf" => Function::IsInf,
            "isNil" => Function::IsNil,
            "default" => Function::Default,
            "asInt" | "int" => Function::AsInt,
            "asFloat" | "float" => Function::AsFloat,
            other => {
                return Err(ParseError {
                    column,
                    message: format!(
                        "unknown name `{other}`; a condition knows `result` and the functions len, all, any, isNaN, isInf, isNil, default, asInt and asFloat"
                    ),
                });
            }
        };
        if self.peek().0 != &Token::Op("(") {
            return Err(ParseError {
                column,
                message: format!("`{name}` is a function: write `{name}(...)`"),
            });
        }
        self.next();
        let mut args = Vec::new();
        if self.peek().0 != &Token::Op(")") {
            loop {
                args.push(self.expression(0)?);
                if self.peek().0 == &Token::Op(",") {
                    self.next();
                    continue;
                }
                break;
            }
        }
        self.expect(")", &format!("to close the arguments of `{name}`"))?;
        let wanted = match function {
            Function::All | Function::Any | Function::Default => 2,
            _ => 1,
        };
        if args.len() != wanted {
            return Err(ParseError {
                column,
                message: format!(
                    "`{name}` takes {wanted} argument{}, not {}",
                    if wanted == 1 { "" } else { "s" },
                    args.len()
                ),
            });
        }
        let predicate_at = matches!(function, Function::All | Function::Any);
        for (k, arg) in args.iter().enumerate() {
            let is_predicate = matches!(arg, Expr::Predicate(_));
            if predicate_at && k == 1 && !is_predicate {
                return Err(ParseError {
                    column,
                    message: format!(
                        "the second argument of `{name}` is a predicate in braces, e.g. `{name}(result, {{# > 0.9}})`"
                    ),
                });
            }
            if is_predicate && !(predicate_at && k == 1) {
                return Err(ParseError {
                    column,
                    message: "a predicate in braces is only the second argument of `all` or `any`"
                        .to_owned(),
                });
            }
        }
        Ok(Expr::Call(function, args))
    }
}

// === evaluation ===

// === impl Expr ===

impl Expr {
    /// How deep the tree goes below this node, this node counting one.
    /// Its recursion is bounded by the condition's tokens ([`MAX_TOKENS`]).
    fn depth(&self) -> usize {
        let below = match self {
            Expr::Literal(_) | Expr::Result | Expr::Element => 0,
            Expr::List(items) | Expr::Call(_, items) => {
                items.iter().map(Expr::depth).max().unwrap_or(0)
            }
            Expr::Unary(_, inner) | Expr::Field(inner, _) | Expr::Predicate(inner) => inner.depth(),
            Expr::Binary(_, left, right) | Expr::Index(left, right) => {
                left.depth().max(right.depth())
            }
        };
        below + 1
    }
}

/// The most steps one evaluation takes before it gives up with an error. A
/// step is an expression evaluated, an element compared or copied, or 64
/// bytes of text compared, joined, parsed or copied. A condition that goes
/// over the result once (or a few times) takes a few steps per value of the
/// result: some ten million for the largest answer a provider may give.
/// One that goes over the whole result for each of its elements (`result`
/// or `any(result, ...)` inside `all(result, {...})`) takes the square of
/// that, hours for a large result; the bound makes it an error of the
/// measurement after a second or so instead.
const MAX_STEPS: u64 = 1 << 26;

/// Bytes of text that count as one step.
const BYTES_PER_STEP: usize = 64;

/// The most characters of a string that an error message quotes.
const QUOTED_CHARS: usize = 64;

/// The work of one evaluation so far, and the most it may take.
struct Work {
    steps: u64,
    budget: u64,
}

// === impl Work ===

impl Work {
    /// Counts `n` steps; an error once past the budget (and at every step
    /// after, so that `default` cannot swallow it).
    fn step(&mut self, n: u64) -> Result<(), EvalError> {
        self.steps = self.steps.saturating_add(n);
        if self.steps > self.budget {
            return Err(EvalError(format!(
                "the condition takes more than {} steps on this result: it goes over the result (or part of it) again for each element; simplify it",
                self.budget
            )));
        }
        Ok(())
    }

    /// Counts the work on `n` bytes of text.
    fn bytes(&mut self, n: usize) -> Result<(), EvalError> {
        self.step(u64::try_from(n / BYTES_PER_STEP).unwrap_or(u64::MAX))
    }

    /// `value` as an owned value; a borrowed one is copied, its size counted
    /// first.
    fn owned(&mut self, value: Cow<'_, Value>) -> Result<Value, EvalError> {
        match value {
            Cow::Owned(value) => Ok(value),
            Cow::Borrowed(value) => {
                self.count(value)?;
                Ok(value.clone())
            }
        }
    }

    /// Counts a step per value in `value` and the bytes of its texts.
    /// Recurses as deep as the value nests: a JSON answer at most 128 deep
    /// (serde_json's bound), within list literals at most [`MAX_NESTING`].
    fn count(&mut self, value: &Value) -> Result<(), EvalError> {
        self.step(1)?;
        match value {
            Value::Text(s) => self.bytes(s.len()),
            Value::List(items) => items.iter().try_for_each(|item| self.count(item)),
            Value::Map(map) => map.iter().try_for_each(|(key, item)| {
                self.bytes(key.len())?;
                self.count(item)
            }),
            Value::Nil | Value::Bool(_) | Value::Number(_) => Ok(()),
        }
    }
}

/// `expr`'s value with `result` and the predicate's `element`. A value
/// that is part of `result`, the element or the condition is borrowed, not
/// copied: `result` inside `all(result, {...})` costs a step per element,
/// not a copy of the result.
fn eval<'v>(
    expr: &'v Expr,
    result: &'v Value,
    element: Option<&'v Value>,
    work: &mut Work,
) -> Result<Cow<'v, Value>, EvalError> {
    work.step(1)?;
    Ok(match expr {
        Expr::Literal(v) => Cow::Borrowed(v),
        Expr::Result => Cow::Borrowed(result),
        Expr::Element => element.map_or(Cow::Owned(Value::Nil), Cow::Borrowed),
        Expr::List(items) => {
            let mut list = Vec::with_capacity(items.len());
            for item in items {
                let value = eval(item, result, element, work)?;
                list.push(work.owned(value)?);
            }
            Cow::Owned(Value::List(list))
        }
        Expr::Predicate(inner) => eval(inner, result, element, work)?,
        Expr::Unary(UnaryOp::Not, operand) => Cow::Owned(Value::Bool(
            !eval(operand, result, element, work)?.truth("`!`")?,
        )),
        Expr::Unary(UnaryOp::Negate, operand) => Cow::Owned(Value::Number(
            -eval(operand, result, element, work)?.number("`-`")?,
        )),
        Expr::Binary(BinaryOp::Or, a, b) => Cow::Owned(Value::Bool(
            eval(a, result, element, work)?.truth("`||`")?
                || eval(b, result, element, work)?.truth("`||`")?,
        )),
        Expr::Binary(BinaryOp::And, a, b) => Cow::Owned(Value::Bool(
            eval(a, result, element, work)?.truth("`&&`")?
                && eval(b, result, element, work)?.truth("`&&`")?,
        )),
        Expr::Binary(BinaryOp::Coalesce, a, b) => {
            let a = eval(a, result, element, work)?;
            if matches!(*a, Value::Nil) {
                eval(b, result, element, work)?
            } else {
                a
            }
        }
        Expr::Binary(op, a, b) => {
            let a = eval(a, result, element, work)?;
            let b = eval(b, result, element, work)?;
            Cow::Owned(binary_op(*op, &a, &b, work)?)
        }
        Expr::Index(base, index) => {
            let base = eval(base, result, element, work)?;
            let index = eval(index, result, element, work)?;
            index_of(base, &index)?
        }
        Expr::Field(base, name) => {
            let base = eval(base, result, element, work)?;
            match &*base {
                Value::Map(_) => member(base, &Member::Key(name)),
                Value::Nil => Cow::Owned(Value::Nil),
                other => {
                    return Err(EvalError(format!(
                        "cannot read field `{name}` of {}",
                        other.describe()
                    )));
                }
            }
        }
        Expr::Call(function, args) => call(*function, args, result, element, work)?,
    })
}

fn binary_op(op: BinaryOp, a: &Value, b: &Value, work: &mut Work) -> Result<Value, EvalError> {
    let symbol = match op {
        BinaryOp::Eq => return Ok(Value::Bool(equal(a, b, work)?)),
        BinaryOp::Ne => return Ok(Value::Bool(!equal(a, b, work)?)),
        BinaryOp::Lt => "<",
        BinaryOp::Le => "<=",
        BinaryOp::Gt => ">",
        BinaryOp::Ge => ">=",
        BinaryOp::Add => "+",
        BinaryOp::Sub => "-",
        BinaryOp::Mul => "*",
        BinaryOp::Div => "/",
        BinaryOp::Rem => "%",
        BinaryOp::Or | BinaryOp::And | BinaryOp::Coalesce => "?",
    };
    if let (Value::Text(x), Value::Text(y)) = (a, b) {
        return match op {
            BinaryOp::Add => {
                work.bytes(x.len() + y.len())?;
                Ok(Value::Text(format!("{x}{y}")))
            }
            BinaryOp::Lt | BinaryOp::Le | BinaryOp::Gt | BinaryOp::Ge => {
                work.bytes(x.len().min(y.len()))?;
                Ok(Value::Bool(match op {
                    BinaryOp::Lt => x < y,
                    BinaryOp::Le => x <= y,
                    BinaryOp::Gt => x > y,
                    _ => x >= y,
                }))
            }
            _ => Err(EvalError(format!("`{symbol}` does not apply to strings"))),
        };
    }
    let (Value::Number(x), Value::Number(y)) = (a, b) else {
        return Err(EvalError(format!(
            "`{symbol}` needs two numbers, got {} and {}",
            a.describe(),
            b.describe()
        )));
    };
    let (x, y) = (*x, *y);
    Ok(match op {
        BinaryOp::Lt => Value::Bool(x < y),
        BinaryOp::Le => Value::Bool(x <= y),
        BinaryOp::Gt => Value::Bool(x > y),
        BinaryOp::Ge => Value::Bool(x >= y),
        BinaryOp::Add => Value::Number(x + y),
        BinaryOp::Sub => Value::Number(x - y),
        BinaryOp::Mul => Value::Number(x * y),
        BinaryOp::Div => Value::Number(x / y),
        _ => Value::Number(x % y),
    })
}

/// `==`: lists and objects element by element, each element a step (two
/// lists of a million elements are not compared for free).
fn equal(a: &Value, b: &Value, work: &mut Work) -> Result<bool, EvalError> {
    work.step(1)?;
    Ok(match (a, b) {
        (Value::List(x), Value::List(y)) => {
            if x.len() != y.len() {
                return Ok(false);
            }
            for (a, b) in x.iter().zip(y) {
                if !equal(a, b, work)? {
                    return Ok(false);
                }
            }
            true
        }
        (Value::Map(x), Value::Map(y)) => {
            if x.len() != y.len() {
                return Ok(false);
            }
            for ((ka, a), (kb, b)) in x.iter().zip(y) {
                work.bytes(ka.len().min(kb.len()))?;
                if ka != kb || !equal(a, b, work)? {
                    return Ok(false);
                }
            }
            true
        }
        (Value::Text(x), Value::Text(y)) => {
            if x.len() == y.len() {
                work.bytes(x.len())?;
            }
            x == y
        }
        _ => a == b,
    })
}

/// Where [`member`] looks in a list or an object.
enum Member<'k> {
    /// An element of a list, by its position.
    At(usize),
    /// A field of an object.
    Key(&'k str),
}

/// The member of `base` (nil when there is none): borrowed from a borrowed
/// `base`, taken out of an owned one.
fn member<'v>(base: Cow<'v, Value>, at: &Member<'_>) -> Cow<'v, Value> {
    let found = match (base, at) {
        (Cow::Borrowed(Value::List(items)), Member::At(k)) => items.get(*k).map(Cow::Borrowed),
        (Cow::Borrowed(Value::Map(map)), Member::Key(key)) => map.get(*key).map(Cow::Borrowed),
        (Cow::Owned(Value::List(mut items)), Member::At(k)) => {
            (*k < items.len()).then(|| Cow::Owned(items.swap_remove(*k)))
        }
        (Cow::Owned(Value::Map(mut map)), Member::Key(key)) => map.remove(*key).map(Cow::Owned),
        _ => None,
    };
    found.unwrap_or(Cow::Owned(Value::Nil))
}

fn index_of<'v>(base: Cow<'v, Value>, index: &Value) -> Result<Cow<'v, Value>, EvalError> {
    match (&*base, index) {
        (Value::List(items), Value::Number(n)) => {
            if n.fract() != 0.0 {
                return Err(EvalError(format!("index {n} is not a whole number")));
            }
            #[allow(clippy::cast_possible_truncation)]
            let k = *n as i64;
            let len = i64::try_from(items.len()).unwrap_or(i64::MAX);
            let at = if k < 0 { len + k } else { k };
            match usize::try_from(at).ok().filter(|at| *at < items.len()) {
                Some(at) => Ok(member(base, &Member::At(at))),
                None => Err(EvalError(format!(
                    "index {k} out of range: the list has {} element{}",
                    items.len(),
                    if items.len() == 1 { "" } else { "s" }
                ))),
            }
        }
        (Value::Map(_), Value::Text(key)) => Ok(member(base, &Member::Key(key))),
        (Value::Nil, _) => Ok(Cow::Owned(Value::Nil)),
        (base, index) => Err(EvalError(format!(
            "cannot index {} with {}",
            base.describe(),
            index.describe()
        ))),
    }
}

/// True when `predicate` gives `want` for every one of `items` (`all`
/// with `want` true, `any` negated with `want` false).
fn each(
    items: &[Value],
    predicate: &Expr,
    result: &Value,
    want: bool,
    what: &str,
    work: &mut Work,
) -> Result<bool, EvalError> {
    for item in items {
        if eval(predicate, result, Some(item), work)?.truth(what)? != want {
            return Ok(false);
        }
    }
    Ok(true)
}

fn call<'v>(
    function: Function,
    args: &'v [Expr],
    result: &'v Value,
    element: Option<&'v Value>,
    work: &mut Work,
) -> Result<Cow<'v, Value>, EvalError> {
    let first = |work: &mut Work| eval(&args[0], result, element, work);
    let number = |n: f64| Cow::Owned(Value::Number(n));
    Ok(match function {
        Function::Len => match &*first(work)? {
            Value::List(items) => number(items.len() as f64),
            Value::Map(map) => number(map.len() as f64),
            Value::Text(s) => {
                work.bytes(s.len())?;
                number(s.chars().count() as f64)
            }
            other => {
                return Err(EvalError(format!(
                    "len needs a list, got {}",
                    other.describe()
                )));
            }
        },
        Function::All | Function::Any => {
            let name = if function == Function::All {
                "all"
            } else {
                "any"
            };
            let list = first(work)?;
            let Value::List(items) = &*list else {
                return Err(EvalError(format!(
                    "{name} needs a list as its first argument"
                )));
            };
            let want = function == Function::All;
            let what = format!("the predicate of {name}");
            let held = each(items, &args[1], result, want, &what, work)?;
            Cow::Owned(Value::Bool(held == want))
        }
        Function::IsNaN => Cow::Owned(Value::Bool(first(work)?.number("isNaN")?.is_nan())),
        Function::IsInf => Cow::Owned(Value::Bool(first(work)?.number("isInf")?.is_infinite())),
        Function::IsNil => Cow::Owned(Value::Bool(matches!(*first(work)?, Value::Nil))),
        Function::Default => match first(work) {
            Ok(value) if !matches!(*value, Value::Nil) => value,
            // An index out of range or a missing field gives the fallback,
            // as "no value". Past the budget, the fallback's first step
            // fails too.
            Ok(_) | Err(_) => eval(&args[1], result, element, work)?,
        },
        Function::AsInt => number(match &*first(work)? {
            Value::Number(n) => n.trunc(),
            Value::Text(s) => {
                work.bytes(s.len())?;
                s.trim()
                    .parse::<i64>()
                    .map_err(|_| EvalError(format!("asInt: {} is not a whole number", quote(s))))?
                    as f64
            }
            other => {
                return Err(EvalError(format!(
                    "asInt needs a number or a string, got {}",
                    other.describe()
                )));
            }
        }),
        Function::AsFloat => number(match &*first(work)? {
            Value::Number(n) => *n,
            Value::Text(s) => {
                work.bytes(s.len())?;
                parse_float(s)
                    .ok_or_else(|| EvalError(format!("asFloat: {} is not a number", quote(s))))?
            }
            other => {
                return Err(EvalError(format!(
                    "asFloat needs a number or a string, got {}",
                    other.describe()
                )));
            }
        }),
    })
}

/// `text` quoted for a message, cut after [`QUOTED_CHARS`] characters: an
/// error is built for each element a predicate fails on, and may be
/// dropped by `default`, so it must not cost as much as a long string.
fn quote(text: &str) -> String {
    match text.char_indices().nth(QUOTED_CHARS) {
        None => format!("{text:?}"),
        Some((cut, _)) => format!("{:?}... ({} bytes)", &text[..cut], text.len()),
    }
}

/// A number as Prometheus or Go writes it, `NaN` and `+Inf` included.
pub fn parse_float(text: &str) -> Option<f64> {
    match text.trim() {
        "NaN" => Some(f64::NAN),
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        other => other.parse().ok(),
    }
}

#[cfg(test)]
mod tests;
