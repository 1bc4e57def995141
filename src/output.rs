//! The one printer: data on stdout, everything else on stderr.
//!
//! Commands hand their results to [`Printer`] either as a table (for people) or as a typed,
//! serialisable value (for `--output json`). Notes, warnings and errors always go to stderr so
//! that stdout can be piped into `jq` or a script. `-q` silences notes; errors are never
//! silenced. This module is the only place in the crate allowed to write to stdout/stderr.
#![allow(clippy::print_stdout, clippy::print_stderr)]

use crate::error::Error;
use serde::Serialize;
use std::io::{IsTerminal, Write};

/// How results are rendered on stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Default)]
pub enum OutputFormat {
    /// Aligned columns for people.
    #[default]
    Table,
    /// One JSON document, stable and versioned by a `schema` field.
    Json,
}

/// Writes data to stdout and diagnostics to stderr.
#[derive(Debug, Clone)]
pub struct Printer {
    format: OutputFormat,
    quiet: bool,
}

impl Printer {
    /// A printer for the given format; `quiet` hides notes (not errors or data).
    pub fn new(format: OutputFormat, quiet: bool) -> Self {
        Printer { format, quiet }
    }

    /// The chosen output format.
    pub fn format(&self) -> OutputFormat {
        self.format
    }

    /// Whether stderr is an interactive terminal (progress bars and redraws only then).
    pub fn stderr_is_tty(&self) -> bool {
        !self.quiet && std::io::stderr().is_terminal()
    }

    /// Print data: the JSON form when `--output json`, otherwise the table text.
    pub fn data<T: Serialize>(&self, value: &T, table: impl FnOnce() -> String) {
        match self.format {
            OutputFormat::Json => self.json(value),
            OutputFormat::Table => self.text(&table()),
        }
    }

    /// Print a JSON document on stdout.
    pub fn json<T: Serialize>(&self, value: &T) {
        let text = serde_json::to_string_pretty(value).expect("output types serialise");
        self.text(&text);
    }

    /// Print raw text on stdout (a newline is added when missing).
    pub fn text(&self, text: &str) {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(text.as_bytes());
        if !text.ends_with('\n') {
            let _ = out.write_all(b"\n");
        }
        let _ = out.flush();
    }

    /// Raw bytes on stdout, unchanged (remote command output).
    pub fn stdout_bytes(&self, bytes: &[u8]) {
        let mut out = std::io::stdout().lock();
        let _ = out.write_all(bytes);
        let _ = out.flush();
    }

    /// Raw bytes on stderr, unchanged (remote command diagnostics).
    pub fn stderr_bytes(&self, bytes: &[u8]) {
        let mut err = std::io::stderr().lock();
        let _ = err.write_all(bytes);
        let _ = err.flush();
    }

    /// A progress or context note on stderr (hidden by `-q`).
    pub fn note(&self, message: &str) {
        if !self.quiet {
            eprintln!("{message}");
        }
    }

    /// A warning on stderr (hidden by `-q`).
    pub fn warn(&self, message: &str) {
        if !self.quiet {
            eprintln!("warning: {message}");
        }
    }

    /// An error with its fix, on stderr; with `--output json` also as JSON on stdout so that
    /// scripts always get one parseable document.
    pub fn error(&self, error: &Error) {
        eprintln!("error: {error}");
        if let Some(fix) = error.fix() {
            eprintln!("  fix: {fix}");
        }
        if self.format == OutputFormat::Json {
            self.error_json(error);
        }
    }

    /// The error as an `evoctl.error/v1` JSON document on stdout (also for commands whose own
    /// format flag asked for JSON).
    pub fn error_json(&self, error: &Error) {
        self.json(&ErrorDocument {
            schema: "evoctl.error/v1",
            error: ErrorBody {
                kind: error.kind(),
                message: error.to_string(),
                fix: error.fix(),
                exit_code: error.exit_code(),
            },
        });
    }
}

#[derive(Serialize)]
struct ErrorDocument<'a> {
    schema: &'static str,
    error: ErrorBody<'a>,
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    kind: &'static str,
    message: String,
    fix: Option<&'a str>,
    exit_code: u8,
}

/// Render rows as left-aligned columns separated by two spaces, header first.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
    }
    let mut out = String::new();
    let mut push_row = |cells: Vec<&str>| {
        let last = cells.len().saturating_sub(1);
        let mut line = String::new();
        for (i, cell) in cells.iter().enumerate() {
            line.push_str(cell);
            if i < last {
                let pad = widths[i] - cell.chars().count() + 2;
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    };
    push_row(header.to_vec());
    for row in rows {
        push_row(row.iter().map(String::as_str).collect());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_aligns_columns_and_trims_trailing_space() {
        let text = table(&["A", "LONGER"], &[vec!["xyz".into(), "1".into()], vec!["".into(), "".into()]]);
        assert_eq!(text, "A    LONGER\nxyz  1\n\n");
    }
}
