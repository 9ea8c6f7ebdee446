//! Plans for people (Terraform's conventions) and for machines (versioned JSON).

use serde::Serialize;

use super::{Shell, Style};
use crate::plan::{Action, Change, Note, NoteLevel, Plan, Step, Summary, Value};

/// Version of the `--json` plan format. Bump the major on incompatible changes.
pub const JSON_FORMAT_VERSION: &str = "1.1";

fn action_style(a: Action) -> Style {
    match a {
        Action::Create => Style::Add,
        Action::Update | Action::Run => Style::Change,
        Action::Replace | Action::Delete => Style::Delete,
    }
}

fn heading(step: &Step) -> String {
    let what = match step.action {
        Action::Create => "will be created",
        Action::Update => "will be updated in place",
        Action::Replace => "must be replaced",
        Action::Delete => "will be destroyed",
        Action::Run => "will be run",
    };
    let mut h = format!("# {} {what}", step.address);
    if step.destroys_data {
        h.push_str(" (destroys the node's data; needs --allow-replace)");
    }
    h
}

fn quote(v: &Value) -> String {
    match v {
        Value::Known(s) => format!("\"{s}\""),
        Value::KnownAfterApply => "(known after apply)".into(),
    }
}

fn change_line(color: bool, c: &Change, width: usize) -> String {
    let (sym, style, body) = match (&c.before, &c.after) {
        (None, Some(a)) => ("+", Style::Add, quote(a)),
        (Some(b), None) => ("-", Style::Delete, format!("{} -> null", quote(b))),
        (Some(b), Some(a)) => ("~", Style::Change, format!("{} -> {}", quote(b), quote(a))),
        (None, None) => (" ", Style::Dim, String::new()),
    };
    let mut line = format!(
        "      {} {:<width$} = {body}",
        Shell::paint(color, style, sym),
        c.attribute
    );
    if c.forces_replacement {
        line.push_str(&Shell::paint(color, Style::Delete, " # forces replacement"));
    }
    if let Some(why) = &c.ignored_because {
        line.push_str(&Shell::paint(
            color,
            Style::Dim,
            &format!(" # ignored: {why}"),
        ));
    }
    line
}

fn step_block(color: bool, step: &Step) -> String {
    let style = action_style(step.action);
    let mut out = format!("  {}\n", Shell::paint(color, Style::Bold, &heading(step)));
    if !step.reason.is_empty() {
        out.push_str(&format!(
            "  {}\n",
            Shell::paint(color, Style::Dim, &format!("# ({})", step.reason))
        ));
    }
    let sym = format!("{:>3}", step.action.symbol());
    out.push_str(&format!(
        "{} {} {{\n",
        Shell::paint(color, style, &sym),
        step.address
    ));
    let width = step
        .changes
        .iter()
        .map(|c| c.attribute.len())
        .max()
        .unwrap_or(0);
    for c in &step.changes {
        out.push_str(&change_line(color, c, width));
        out.push('\n');
    }
    if step.unchanged > 0 {
        let s = if step.unchanged == 1 { "" } else { "s" };
        out.push_str(&format!(
            "        {}\n",
            Shell::paint(
                color,
                Style::Dim,
                &format!("# ({} unchanged attribute{s} hidden)", step.unchanged)
            )
        ));
    }
    out.push_str("    }\n");
    out
}

fn note_line(color: bool, n: &Note) -> String {
    let (label, style) = match n.level {
        NoteLevel::Info => ("note:", Style::Dim),
        NoteLevel::Warning => ("warning:", Style::Warning),
        NoteLevel::Blocker => ("blocker:", Style::Error),
    };
    format!(
        "  {} {}: {}\n",
        Shell::paint(color, style, label),
        n.subject,
        n.message
    )
}

pub fn summary_line(s: Summary) -> String {
    let mut line = format!(
        "Plan: {} to add, {} to change, {} to destroy.",
        s.add, s.change, s.destroy
    );
    if s.run > 0 {
        line.push_str(&format!(" {} to run.", s.run));
    }
    line
}

/// The plan as text. `color` only on a terminal.
pub fn human(plan: &Plan, color: bool) -> String {
    let mut out = String::new();
    if plan.is_empty() && !plan.unobserved.is_empty() {
        out.push_str(&format!(
            "{} for cluster {} ({}), but {} could not be observed: the plan is incomplete.\n",
            Shell::paint(color, Style::Warning, "No changes found"),
            plan.cluster,
            plan.region,
            plan.unobserved.join(", ")
        ));
    } else if plan.is_empty() && plan.blockers().next().is_some() {
        out.push_str(&format!(
            "{} for cluster {} ({}), but blockers (below) stand in the way: it does not match the spec until they are resolved.\n",
            Shell::paint(color, Style::Warning, "No changes planned"),
            plan.cluster,
            plan.region
        ));
    } else if plan.is_empty() {
        out.push_str(&format!(
            "{} cluster {} ({}) matches the spec.\n",
            Shell::paint(color, Style::Ok, "No changes."),
            plan.cluster,
            plan.region
        ));
    } else {
        out.push_str(&format!(
            "redisctl will perform the following actions on cluster {} ({}):\n",
            plan.cluster, plan.region
        ));
        let mut phase = None;
        for step in &plan.steps {
            if phase != Some(step.phase) {
                phase = Some(step.phase);
                out.push_str(&format!(
                    "\n{}\n\n",
                    Shell::paint(
                        color,
                        Style::Bold,
                        &format!(
                            "── phase {}: {} ──",
                            step.phase.number(),
                            step.phase.title()
                        )
                    )
                ));
            } else {
                out.push('\n');
            }
            out.push_str(&step_block(color, step));
        }
    }
    if !plan.notes.is_empty() {
        out.push_str("\nNotes:\n");
        for n in &plan.notes {
            out.push_str(&note_line(color, n));
        }
    }
    if !plan.is_empty() {
        out.push('\n');
        out.push_str(&Shell::paint(
            color,
            Style::Bold,
            &summary_line(plan.summary()),
        ));
        out.push('\n');
        let replacing: Vec<&str> = plan.destroys_data().map(|s| s.address.as_str()).collect();
        if !replacing.is_empty() {
            out.push_str(&format!(
                "{} this plan destroys data on {}: apply needs --allow-replace.\n",
                Shell::paint(color, Style::Warning, "warning:"),
                replacing.join(", ")
            ));
        }
    }
    if plan.blockers().next().is_some() {
        out.push_str(&format!(
            "{} this plan has blockers (above) and cannot be applied until they are resolved.\n",
            Shell::paint(color, Style::Error, "error:")
        ));
    }
    out
}

#[derive(Serialize)]
struct JsonPlan<'a> {
    format_version: &'static str,
    cluster: &'a str,
    region: &'a str,
    changes: bool,
    applicable: bool,
    summary: Summary,
    steps: Vec<JsonStep<'a>>,
    notes: &'a [Note],
    /// Nodes that could not be observed (the plan is incomplete for them).
    unobserved: &'a [String],
}

#[derive(Serialize)]
struct JsonStep<'a> {
    address: &'a str,
    action: &'static [&'static str],
    symbol: &'static str,
    phase: crate::plan::Phase,
    reason: &'a str,
    destroys_data: bool,
    depends_on: &'a [String],
    changes: &'a [Change],
    unchanged: usize,
}

/// The plan as versioned JSON (no operations, no secrets: ids, addresses and attribute values).
pub fn json(plan: &Plan) -> String {
    serde_json::to_string_pretty(&json_value(plan)).expect("plan serializes") + "\n"
}

/// [`json`] as a value (the `plan` record of apply's `--json` stream).
pub fn json_value(plan: &Plan) -> serde_json::Value {
    let doc = JsonPlan {
        format_version: JSON_FORMAT_VERSION,
        cluster: &plan.cluster,
        region: &plan.region,
        changes: !plan.is_empty(),
        applicable: plan.blockers().next().is_none(),
        summary: plan.summary(),
        steps: plan
            .steps
            .iter()
            .map(|s| JsonStep {
                address: &s.address,
                action: s.action.json_actions(),
                symbol: s.action.symbol(),
                phase: s.phase,
                reason: &s.reason,
                destroys_data: s.destroys_data,
                depends_on: &s.depends_on,
                changes: &s.changes,
                unchanged: s.unchanged,
            })
            .collect(),
        notes: &plan.notes,
        unobserved: &plan.unobserved,
    };
    serde_json::to_value(&doc).expect("plan serializes")
}

/// `plan`'s output: the plan as text or JSON.
pub fn show(shell: &super::Shell, plan: &Plan, json: bool) {
    if json {
        shell.out(&self::json(plan));
    } else {
        shell.out(&human(plan, shell.color_out()));
    }
}

/// Where `plan --out` saved the plan (text only: the JSON document stays alone on stdout).
pub fn saved(shell: &super::Shell, out: &std::path::Path, json: bool) {
    if !json {
        shell.out(&format!(
            "\nSaved the plan to {}. Apply it with: redisctl apply {}\n",
            out.display(),
            out.display()
        ));
    }
}
