//! A problem found in `schema.graphql`, with its position and a hint to fix it.

use std::fmt;

use codespan_reporting::{
    diagnostic::{Diagnostic as CsDiagnostic, Label, Severity as CsSeverity},
    files::SimpleFile,
    term,
};
use serde::Serialize;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Diagnostic {
    pub severity: Severity,
    /// One-based line and column in the schema file.
    pub line: usize,
    pub column: usize,
    pub message: String,
    pub hint: Option<String>,
}

impl Diagnostic {
    pub fn error(line: usize, column: usize, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            line,
            column,
            message: message.into(),
            hint: None,
        }
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    pub fn warning(mut self) -> Self {
        self.severity = Severity::Warning;
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }

    /// The diagnostic as a compiler shows it: message, `file:line:column`, the source line
    /// with the problem underlined, and the hint.
    pub fn render(&self, file: &str, source: &str) -> String {
        let files = SimpleFile::new(file, source);
        let start = byte_offset(source, self.line, self.column);
        let end = start + token_len(&source[start..]);
        let severity = match self.severity {
            Severity::Error => CsSeverity::Error,
            Severity::Warning => CsSeverity::Warning,
        };
        let mut diag = CsDiagnostic::new(severity)
            .with_message(&self.message)
            .with_labels(vec![Label::primary((), start..end)]);
        if let Some(hint) = &self.hint {
            diag = diag.with_notes(vec![format!("help: {hint}")]);
        }
        term::emit_into_string(&term::Config::default(), &files, &diag)
            .unwrap_or_else(|_| format!("{file}:{self}\n"))
    }

    /// The diagnostic for editors and CI (`fanout check --format json`).
    pub fn to_json(&self, file: &str) -> serde_json::Value {
        let mut v = serde_json::to_value(self).expect("diagnostics serialize");
        v["file"] = serde_json::Value::from(file);
        v
    }
}

/// The byte offset of a one-based line and column (columns count characters).
fn byte_offset(source: &str, line: usize, column: usize) -> usize {
    let line_start: usize = source
        .split_inclusive('\n')
        .take(line.saturating_sub(1))
        .map(str::len)
        .sum();
    let line_start = line_start.min(source.len());
    let rest = &source[line_start..];
    let within = rest
        .char_indices()
        .nth(column.saturating_sub(1))
        .map(|(i, _)| i)
        .unwrap_or(rest.len());
    line_start + within
}

/// How much to underline: a name, a quoted string, or one character.
fn token_len(rest: &str) -> usize {
    let mut chars = rest.char_indices();
    match chars.next() {
        None => 0,
        Some((_, '"')) => rest[1..].find(['"', '\n']).map(|i| i + 2).unwrap_or(1),
        Some((_, '{')) => match rest.find(['}', '\n', ' ', ',']) {
            // A template expression: underline it to its `}`.
            Some(i) if rest[i..].starts_with('}') && i > 1 => i + 1,
            _ => 1,
        },
        Some((_, c)) if c == '@' || c == '_' || c.is_alphanumeric() => rest
            .char_indices()
            .skip(1)
            .find(|(_, c)| !(*c == '_' || c.is_alphanumeric()))
            .map(|(i, _)| i)
            .unwrap_or(rest.len()),
        Some((_, c)) => c.len_utf8(),
    }
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        write!(f, "{}:{}: {sev}: {}", self.line, self.column, self.message)
    }
}
