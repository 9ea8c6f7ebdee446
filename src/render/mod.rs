//! What the user reads: one output layer ([`Shell`]) with colour decided once, and renderers
//! for spec diagnostics, plans, progress, the apply/destroy console, verify's report and
//! client-cert's. `tracing` is for `-v` diagnostics only.

pub mod adopt;
pub mod client_cert;
pub mod console;
pub mod diagnostics;
pub mod plan;
pub mod progress;
pub mod verify;

use std::io::{self, IsTerminal, Write};

/// The user-facing output streams. Colour only on a terminal, never with `--no-color` or a
/// non-empty `NO_COLOR`.
#[derive(Debug, Clone, Copy)]
pub struct Shell {
    color_out: bool,
    color_err: bool,
}

/// ANSI styles used by the renderers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Error,
    Warning,
    Ok,
    Bold,
    Dim,
    Add,
    Change,
    Delete,
}

impl Style {
    fn code(self) -> &'static str {
        match self {
            Style::Error => "1;31",
            Style::Warning => "1;33",
            Style::Ok => "1;32",
            Style::Bold => "1",
            Style::Dim => "2",
            Style::Add => "32",
            Style::Change => "33",
            Style::Delete => "31",
        }
    }
}

impl Shell {
    pub fn new(no_color_flag: bool) -> Self {
        let env_off = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
        let allowed = !no_color_flag && !env_off;
        Shell {
            color_out: allowed && io::stdout().is_terminal(),
            color_err: allowed && io::stderr().is_terminal(),
        }
    }

    /// A shell that never colours (tests, files).
    pub fn plain() -> Self {
        Shell {
            color_out: false,
            color_err: false,
        }
    }

    pub fn paint(color: bool, style: Style, text: &str) -> String {
        if color {
            format!("\x1b[{}m{text}\x1b[0m", style.code())
        } else {
            text.to_string()
        }
    }

    /// Whether stdout gets colour.
    pub fn color_out(&self) -> bool {
        self.color_out
    }

    /// Whether stderr gets colour.
    pub fn color_err(&self) -> bool {
        self.color_err
    }

    /// Styled text for stderr.
    pub fn err_style(&self, style: Style, text: &str) -> String {
        Self::paint(self.color_err, style, text)
    }

    /// Styled text for stdout.
    pub fn out_style(&self, style: Style, text: &str) -> String {
        Self::paint(self.color_out, style, text)
    }

    /// Results go to stdout.
    pub fn out(&self, text: &str) {
        let mut o = io::stdout().lock();
        let _ = o.write_all(text.as_bytes());
        let _ = o.flush();
    }

    /// Diagnostics, progress and prompts go to stderr.
    pub fn err(&self, text: &str) {
        let mut e = io::stderr().lock();
        let _ = e.write_all(text.as_bytes());
        let _ = e.flush();
    }

    /// `error: <message>` with its cause chain, printed once.
    pub fn error(&self, err: &(dyn std::error::Error + 'static)) {
        let mut text = format!("{} {err}\n", self.err_style(Style::Error, "error:"));
        let mut source = err.source();
        while let Some(s) = source {
            text.push_str(&format!("  caused by: {s}\n"));
            source = s.source();
        }
        self.err(&text);
    }

    pub fn warning(&self, message: &str) {
        self.err(&format!(
            "{} {message}\n",
            self.err_style(Style::Warning, "warning:")
        ));
    }
}
