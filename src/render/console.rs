//! The operator's side of `apply` and `destroy` (`workflow::Ui`): the plan shown before the run
//! (text on stdout, or the first record of the `--json` stream), the `yes` prompt, the progress
//! display, and the closing summary or error record.

use serde_json::json;

use super::progress::{Mode, ProgressDisplay};
use super::{Shell, Style};
use crate::exec::Report;
use crate::plan::Plan;
use crate::workflow::{ApplyOutcome, DestroyOutcome, Error, Ui, error_record};

/// Which run the console shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Run {
    Apply,
    Destroy,
}

pub struct Console<'a> {
    shell: &'a Shell,
    progress: ProgressDisplay,
    run: Run,
    yes: bool,
}

impl<'a> Console<'a> {
    /// `yes`: approve without asking (`--yes`).
    pub fn new(shell: &'a Shell, run: Run, json: bool, yes: bool) -> Self {
        Console {
            shell,
            progress: ProgressDisplay::new(shell, Mode::choose(json)),
            run,
            yes,
        }
    }

    fn json(&self) -> bool {
        self.progress.mode() == Mode::Json
    }

    /// The end of an apply: its summary (or, for `--json`, the closing record); the live region
    /// is cleared first.
    pub fn apply_done(mut self, result: &Result<ApplyOutcome, Error>) {
        let json = self.json();
        match result {
            Err(e) => self.progress.record("error", error_record(e)),
            Ok(ApplyOutcome::NoChanges(summary)) => self.progress.record(
                "apply_complete",
                json!({"changes": false, "summary": summary, "elapsed_s": 0.0, "phases": []}),
            ),
            Ok(ApplyOutcome::Applied { plan, report }) if json => self.progress.record(
                "apply_complete",
                json!({
                    "changes": true,
                    "summary": plan.summary(),
                    "elapsed_s": report.elapsed.as_secs_f64(),
                    "phases": phase_records(plan, report),
                }),
            ),
            Ok(ApplyOutcome::Applied { plan, report }) => {
                self.progress.finish();
                let s = plan.summary();
                let shell = self.shell;
                shell.out(&format!(
                    "\n{} {} added, {} changed, {} destroyed in {:.1}s.\n",
                    shell.out_style(Style::Ok, "Apply complete!"),
                    s.add,
                    s.change,
                    s.destroy,
                    report.elapsed.as_secs_f64()
                ));
                for (phase, took) in &report.phases {
                    let steps = plan.steps.iter().filter(|s| s.phase == *phase).count();
                    shell.out(&format!(
                        "  phase {} {:<15} {steps:>3} step{} {:>7.1}s\n",
                        phase.number(),
                        phase.title(),
                        if steps == 1 { " " } else { "s" },
                        took.as_secs_f64()
                    ));
                }
            }
        }
        self.progress.finish();
    }

    /// The end of a destroy, as [`Console::apply_done`].
    pub fn destroy_done(mut self, result: &Result<DestroyOutcome, Error>) {
        let json = self.json();
        match result {
            Err(e) => self.progress.record("error", error_record(e)),
            Ok(DestroyOutcome::Nothing { .. }) if json => self.progress.record(
                "destroy_complete",
                json!({"changes": false, "destroyed": 0, "elapsed_s": 0.0, "phases": []}),
            ),
            Ok(DestroyOutcome::Nothing { region, cluster }) => self.shell.out(&format!(
                "Nothing to destroy: nothing in {region} is tagged redisctl:cluster={cluster}.\n"
            )),
            Ok(DestroyOutcome::Destroyed { plan, report, .. }) if json => self.progress.record(
                "destroy_complete",
                json!({
                    "changes": true,
                    "destroyed": plan.steps.len(),
                    "elapsed_s": report.elapsed.as_secs_f64(),
                    "phases": phase_records(plan, report),
                }),
            ),
            Ok(DestroyOutcome::Destroyed {
                plan,
                report,
                cluster,
                kept,
            }) => {
                self.progress.finish();
                self.shell.out(&format!(
                    "\n{} {} resources destroyed in {:.1}s; nothing tagged redisctl:cluster={cluster} is left.\n{kept}\n",
                    self.shell.out_style(Style::Ok, "Destroy complete!"),
                    plan.steps.len(),
                    report.elapsed.as_secs_f64(),
                ));
            }
        }
        self.progress.finish();
    }
}

impl Ui for Console<'_> {
    fn show_plan(&self, plan: &Plan) {
        if self.json() {
            self.progress
                .record("plan", json!({ "plan": super::plan::json_value(plan) }));
        } else if !(self.run == Run::Destroy && plan.is_empty()) {
            self.shell
                .out(&super::plan::human(plan, self.shell.color_out()));
        }
    }

    fn confirm(&self, question: &str) -> Result<(), Error> {
        confirm(self.shell, self.yes, question)
    }

    fn starting(&self) {
        if !self.json() {
            self.shell.err("\n");
        }
    }

    fn progress(&self) -> &dyn crate::progress::Progress {
        &self.progress
    }
}

/// Ask for `yes` on a terminal; refuse without one unless `--yes` was given.
pub(crate) fn confirm(shell: &Shell, yes: bool, question: &str) -> Result<(), Error> {
    use std::io::IsTerminal;
    if yes {
        return Ok(());
    }
    if !std::io::stdin().is_terminal() {
        return Err(Error::Refused(
            "no terminal to confirm on: pass --yes, or apply a saved plan file".into(),
        ));
    }
    shell.err(&format!(
        "\n{question}\n  Only 'yes' will be accepted to approve.\n\n  Enter a value: "
    ));
    let mut answer = String::new();
    std::io::stdin()
        .read_line(&mut answer)
        .map_err(|e| Error::Refused(format!("cannot read the answer: {e}")))?;
    if answer.trim() == "yes" {
        Ok(())
    } else {
        Err(Error::Refused("cancelled: nothing was changed".into()))
    }
}

/// Each phase's step count and duration, for the closing JSON record.
fn phase_records(plan: &Plan, report: &Report) -> Vec<serde_json::Value> {
    report
        .phases
        .iter()
        .map(|(phase, took)| {
            json!({
                "phase": phase.number(),
                "title": phase.title(),
                "steps": plan.steps.iter().filter(|s| s.phase == *phase).count(),
                "elapsed_s": took.as_secs_f64(),
            })
        })
        .collect()
}
