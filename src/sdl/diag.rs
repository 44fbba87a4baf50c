//! A problem found in `schema.graphql`, with its position and a hint to fix it.

use std::fmt;

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

    /// `file:line:col: error: message` followed by the source line, a marker and the hint.
    pub fn render(&self, file: &str, source: &str) -> String {
        let mut out = format!("{file}:{self}\n");
        if let Some(text) = source.lines().nth(self.line.saturating_sub(1)) {
            let gutter = self.line.to_string().len();
            out.push_str(&format!("{:gutter$} |\n{} | {text}\n", "", self.line));
            out.push_str(&format!(
                "{:gutter$} | {:>col$}\n",
                "",
                "^",
                col = self.column.max(1)
            ));
        }
        if let Some(hint) = &self.hint {
            out.push_str(&format!("  = help: {hint}\n"));
        }
        out
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
