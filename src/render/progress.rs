//! Apply progress as plain lines on stderr: each phase and step says when it starts and ends,
//! with elapsed time. (A live display for terminals is for later; these lines suit CI logs.)

use std::time::Duration;

use super::{Shell, Style};
use crate::exec::{Event, Progress};
use crate::plan::Action;

pub struct Lines {
    pub shell: Shell,
}

fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

fn doing(a: Action) -> (&'static str, &'static str) {
    match a {
        Action::Create => ("creating", "created"),
        Action::Update => ("updating", "updated"),
        Action::Replace => ("replacing", "replaced"),
        Action::Delete => ("destroying", "destroyed"),
        Action::Run => ("running", "done"),
    }
}

impl Progress for Lines {
    fn event(&self, e: Event) {
        let sh = &self.shell;
        let line = match e {
            Event::PhaseStarted { phase, steps } => format!(
                "{} ({steps} step{})",
                sh.err_style(
                    Style::Bold,
                    &format!("phase {}: {}", phase.number(), phase.title())
                ),
                if steps == 1 { "" } else { "s" }
            ),
            Event::PhaseFinished { phase, elapsed } => format!(
                "{} in {}",
                sh.err_style(
                    Style::Bold,
                    &format!("phase {}: {} done", phase.number(), phase.title())
                ),
                secs(elapsed)
            ),
            Event::StepStarted { address, action } => format!("  {address}: {}…", doing(action).0),
            Event::StepFinished {
                address,
                action,
                id,
                elapsed,
            } => format!(
                "  {address}: {}{} [{}]",
                sh.err_style(Style::Ok, doing(action).1),
                id.map(|i| format!(" {i}")).unwrap_or_default(),
                secs(elapsed)
            ),
            Event::StepFailed { address, elapsed } => {
                format!(
                    "  {address}: {} [{}]",
                    sh.err_style(Style::Error, "failed"),
                    secs(elapsed)
                )
            }
            Event::Interrupted { running } => format!(
                "{} no new steps will start; waiting for {} to finish (Ctrl-C again stops at once; apply again to finish)",
                sh.err_style(Style::Warning, "interrupted:"),
                if running.is_empty() {
                    "nothing".to_string()
                } else {
                    running.join(", ")
                }
            ),
        };
        sh.err(&format!("{line}\n"));
    }
}
