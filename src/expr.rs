//! CEL expressions, the language Kubernetes itself uses for validation rules: a step's `when`,
//! a query step's `successCondition`/`failureCondition` and a waitFor step's `until`.
//!
//! Every expression is evaluated against plain JSON variables (each top-level key of the
//! object given is a variable), with bounds so one tenant's expression never costs the
//! operator more than a small, fixed amount: the text is at most [`MAX_EXPRESSION`] bytes,
//! the parser's nesting is capped, and a panic inside the interpreter is caught and reported
//! as an error of that expression. Pure: no I/O, no clock.

use std::sync::Arc;

use serde_json::Value;

/// Longest expression, in bytes (the CRD schema enforces the same bound).
pub const MAX_EXPRESSION: usize = 2048;

/// Deepest nesting the parser accepts (`((((...))))`, chained calls): deeper text is an error,
/// not a deep recursion.
const MAX_NESTING: u16 = 32;

/// Why an expression could not be evaluated.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ExprError {
    /// The text is longer than [`MAX_EXPRESSION`].
    #[error("the expression is {len} bytes long; at most {MAX_EXPRESSION} are allowed")]
    TooLong {
        /// Its length.
        len: usize,
    },
    /// The text is not CEL.
    #[error("{expression:?} is not a valid CEL expression: {message}")]
    Parse {
        /// The expression, cut for the message.
        expression: String,
        /// What the parser said.
        message: String,
    },
    /// Evaluating failed, e.g. a missing key or comparing a string with a number.
    #[error("evaluating {expression:?} failed: {message}")]
    Evaluate {
        /// The expression, cut for the message.
        expression: String,
        /// What the interpreter said.
        message: String,
    },
    /// The expression's value is not what the field needs (e.g. not a boolean).
    #[error("{expression:?} must evaluate to {wanted}, but its value is {value}")]
    WrongType {
        /// The expression, cut for the message.
        expression: String,
        /// What the field needs.
        wanted: &'static str,
        /// The value it had, as JSON.
        value: String,
    },
}

impl crate::errors::MetricLabel for ExprError {
    fn metric_label(&self) -> &'static str {
        match self {
            ExprError::TooLong { .. } => "expression_too_long",
            ExprError::Parse { .. } => "expression_parse",
            ExprError::Evaluate { .. } => "expression_evaluate",
            ExprError::WrongType { .. } => "expression_type",
        }
    }
}

fn shown(expression: &str) -> String {
    crate::names::truncate(expression, 256).into_owned()
}

/// A compiled expression, ready to evaluate many times (a query step's condition is evaluated
/// once per measurement).
pub struct Expression {
    text: String,
    program: cel::Program,
}

impl std::fmt::Debug for Expression {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Expression").field(&self.text).finish()
    }
}

/// Stack of the thread that parses and evaluates: the parser and the interpreter recurse once
/// per operator, and an expression within [`MAX_EXPRESSION`] may chain a thousand of them.
/// Only the pages used are committed.
const STACK: usize = 256 << 20;

/// Runs `f` on its own thread with a stack deep enough for any expression within the length
/// cap, turning a panic of the interpreter into an error message.
fn contained<T: Send>(f: impl FnOnce() -> T + Send) -> Result<T, String> {
    let describe = |panic: Box<dyn std::any::Any + Send>| {
        panic
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "the interpreter stopped unexpectedly".into())
    };
    std::thread::scope(|scope| {
        let worker = std::thread::Builder::new()
            .name("cel".into())
            .stack_size(STACK)
            .spawn_scoped(scope, f);
        match worker {
            Ok(handle) => handle.join().map_err(describe),
            Err(err) => Err(format!("no thread to evaluate on: {err}")),
        }
    })
}

impl Expression {
    /// Parses `text`: an error says what is wrong with it.
    pub fn compile(text: &str) -> Result<Self, ExprError> {
        if text.len() > MAX_EXPRESSION {
            return Err(ExprError::TooLong { len: text.len() });
        }
        // The parser recurses once per bracket before its own depth check can act.
        if nesting(text) > usize::from(MAX_NESTING) {
            return Err(ExprError::Parse {
                expression: shown(text),
                message: format!("brackets are nested deeper than {MAX_NESTING} levels"),
            });
        }
        let parse = || {
            let parser = cel::parser::Parser::new().max_recursion_depth(MAX_NESTING);
            parser.parse(text).map(|_| ())?;
            cel::Program::compile(text)
        };
        let program = match contained(parse) {
            Ok(Ok(program)) => program,
            Ok(Err(errors)) => {
                return Err(ExprError::Parse {
                    expression: shown(text),
                    message: errors.to_string(),
                });
            }
            Err(panic) => {
                return Err(ExprError::Parse {
                    expression: shown(text),
                    message: panic,
                });
            }
        };
        Ok(Expression {
            text: text.to_owned(),
            program,
        })
    }

    /// The expression as written.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The top-level variables the expression reads (e.g. `steps`, `params`, `result`).
    pub fn variables(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .program
            .references()
            .variables()
            .into_iter()
            .map(str::to_owned)
            .collect();
        names.sort();
        names
    }

    /// The value of the expression with `variables` (a JSON object: each key is a variable).
    pub fn evaluate(&self, variables: &Value) -> Result<Value, ExprError> {
        let evaluate = || -> Result<Value, String> {
            let mut context = cel::Context::default();
            if let Value::Object(map) = variables {
                for (name, value) in map {
                    context
                        .add_variable(name.as_str(), value)
                        .map_err(|e| e.to_string())?;
                }
            }
            let value = self.program.execute(&context).map_err(|e| e.to_string())?;
            to_json(&value)
        };
        match contained(evaluate) {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(message)) | Err(message) => Err(ExprError::Evaluate {
                expression: shown(&self.text),
                message,
            }),
        }
    }

    /// The boolean value of the expression; any other value is [`ExprError::WrongType`].
    pub fn evaluate_bool(&self, variables: &Value) -> Result<bool, ExprError> {
        match self.evaluate(variables)? {
            Value::Bool(b) => Ok(b),
            other => Err(ExprError::WrongType {
                expression: shown(&self.text),
                wanted: "true or false",
                value: crate::names::truncate(&other.to_string(), 256).into_owned(),
            }),
        }
    }
}

/// The deepest bracket nesting of `text`, brackets inside quotes included (over-counting only
/// refuses more).
fn nesting(text: &str) -> usize {
    let mut depth = 0usize;
    let mut deepest = 0;
    for c in text.chars() {
        match c {
            '(' | '[' | '{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

/// Compiles and evaluates `text` once as a boolean.
pub fn evaluate_bool(text: &str, variables: &Value) -> Result<bool, ExprError> {
    Expression::compile(text)?.evaluate_bool(variables)
}

/// A CEL value as JSON (durations, timestamps and bytes as text).
fn to_json(value: &cel::Value) -> Result<Value, String> {
    Ok(match value {
        cel::Value::List(items) => Value::Array(
            items
                .iter()
                .map(to_json)
                .collect::<Result<Vec<_>, String>>()?,
        ),
        cel::Value::Map(map) => {
            let mut object = serde_json::Map::new();
            for (key, item) in map.map.iter() {
                object.insert(key.to_string(), to_json(item)?);
            }
            Value::Object(object)
        }
        cel::Value::Int(i) => Value::from(*i),
        cel::Value::UInt(u) => Value::from(*u),
        cel::Value::Float(f) => serde_json::Number::from_f64(*f)
            .map(Value::Number)
            .unwrap_or_else(|| Value::String(f.to_string())),
        cel::Value::String(s) => Value::String(Arc::unwrap_or_clone(s.clone())),
        cel::Value::Bool(b) => Value::Bool(*b),
        cel::Value::Null => Value::Null,
        cel::Value::Bytes(bytes) => Value::String(String::from_utf8_lossy(bytes).into_owned()),
        other => return Err(format!("the value {other:?} has no JSON form")),
    })
}

#[cfg(test)]
mod tests;
