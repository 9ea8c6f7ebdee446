//! Apply progress, in one of three forms:
//!
//! - **live** (stderr is a terminal): finished steps scroll up as lines; below them a region
//!   redrawn ten times a second shows every running step with a spinner, its elapsed time and
//!   what it waits for right now, and for how long;
//! - **lines** (CI logs, pipes): one line when a phase or step starts or ends, one when a step
//!   starts waiting for something, and a "still …" line every 30 s of a long wait;
//! - **json** (`--json`): one JSON object per line on stdout, for machines (see
//!   [`JSON_EVENTS_VERSION`] and docs/ci.md).

use std::io::Write;
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

use super::{Shell, Style};
use crate::plan::Action;
use crate::progress::{Event, Progress};

/// Version of the `--json` event stream (each line carries it as `"v"`).
pub const JSON_EVENTS_VERSION: u32 = 1;

/// A long wait prints a "still …" line this often in the lines form.
const STILL_EVERY: Duration = Duration::from_secs(30);
/// How often the live region is redrawn.
const FRAME: Duration = Duration::from_millis(100);
/// Running steps shown at most in the live region (the rest are counted).
const LIVE_ROWS: usize = 12;
const SPINNER: &[char] = &['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Live,
    Lines,
    Json,
}

impl Mode {
    /// JSON when asked; live when stderr is an interactive terminal; lines otherwise.
    pub fn choose(json: bool) -> Mode {
        use std::io::IsTerminal;
        if json {
            Mode::Json
        } else if std::io::stderr().is_terminal()
            && std::env::var("TERM").map_or(true, |t| t != "dumb")
        {
            Mode::Live
        } else {
            Mode::Lines
        }
    }
}

struct Running {
    action: Action,
    started: Instant,
    /// The current status and since when.
    status: Option<(String, Instant)>,
    /// When the lines form last printed something about this step.
    said: Instant,
}

struct State {
    mode: Mode,
    color: bool,
    width: usize,
    out: Box<dyn Write + Send>,
    start: Instant,
    /// Running steps in start order.
    running: Vec<(String, Running)>,
    /// Rows of the live region on screen now.
    drawn: usize,
    frame: usize,
}

/// The progress display; reports every executor [`Event`]. Dropping it stops the redraws and
/// clears the live region (so an error prints on a clean screen).
pub struct ProgressDisplay {
    state: Arc<Mutex<State>>,
    /// Dropped (or sent to) when the display finishes: the ticker wakes at once, rather than
    /// at its next tick (a second in the plain forms), so no run ends up to a second late.
    stop: Option<mpsc::Sender<()>>,
    ticker: Option<std::thread::JoinHandle<()>>,
}

fn secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 60.0 {
        format!("{s:.1}s")
    } else {
        format!("{}m{:02}s", d.as_secs() / 60, d.as_secs() % 60)
    }
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

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| (d.as_millis() as f64) / 1000.0)
        .unwrap_or(0.0)
}

/// The terminal's width in columns (stderr), or 100 when it cannot be told.
fn terminal_width() -> usize {
    // SAFETY: TIOCGWINSZ fills a winsize struct owned by this frame.
    let mut ws: libc::winsize = unsafe { std::mem::zeroed() };
    let ok = unsafe { libc::ioctl(libc::STDERR_FILENO, libc::TIOCGWINSZ, &mut ws) } == 0;
    if ok && ws.ws_col > 0 {
        ws.ws_col as usize
    } else {
        std::env::var("COLUMNS")
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(100)
    }
}

/// `text` cut to `width` characters (escape sequences are never inside `text`).
fn fit(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        text.to_string()
    } else {
        let mut s: String = text.chars().take(width.saturating_sub(1)).collect();
        s.push('…');
        s
    }
}

impl ProgressDisplay {
    /// The display for `mode` on the real streams (json: stdout; the others: stderr).
    pub fn new(shell: &Shell, mode: Mode) -> ProgressDisplay {
        let (out, color): (Box<dyn Write + Send>, bool) = match mode {
            Mode::Json => (Box::new(std::io::stdout()), false),
            _ => (Box::new(std::io::stderr()), shell.color_err()),
        };
        let width = if mode == Mode::Live {
            terminal_width()
        } else {
            usize::MAX
        };
        ProgressDisplay::to_writer(mode, color, width, out)
    }

    /// The display writing to `out` (tests).
    pub fn to_writer(
        mode: Mode,
        color: bool,
        width: usize,
        out: Box<dyn Write + Send>,
    ) -> ProgressDisplay {
        let period = match mode {
            Mode::Live => FRAME,
            _ => Duration::from_secs(1),
        };
        ProgressDisplay::ticking(mode, color, width, out, period)
    }

    /// [`ProgressDisplay::to_writer`] redrawing (live) or saying what still runs (lines) every
    /// `period`.
    fn ticking(
        mode: Mode,
        color: bool,
        width: usize,
        out: Box<dyn Write + Send>,
        period: Duration,
    ) -> ProgressDisplay {
        let state = Arc::new(Mutex::new(State {
            mode,
            color,
            width,
            out,
            start: Instant::now(),
            running: Vec::new(),
            drawn: 0,
            frame: 0,
        }));
        let (stop, stopped) = mpsc::channel::<()>();
        let ticker = (mode != Mode::Json).then(|| {
            let state = state.clone();
            std::thread::spawn(move || {
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(period) {
                    if let Ok(mut s) = state.lock() {
                        s.tick();
                    }
                }
            })
        });
        ProgressDisplay {
            state,
            stop: Some(stop),
            ticker,
        }
    }

    pub fn mode(&self) -> Mode {
        self.state.lock().map(|s| s.mode).unwrap_or(Mode::Lines)
    }

    /// A record of the JSON stream other than an executor event (the plan, the outcome); in
    /// the other forms, nothing.
    pub fn record(&self, kind: &str, fields: Value) {
        if let Ok(mut s) = self.state.lock()
            && s.mode == Mode::Json
        {
            s.json(kind, fields);
        }
    }

    /// Stops the redraws and clears the live region.
    pub fn finish(&mut self) {
        self.stop.take();
        if let Some(t) = self.ticker.take() {
            let _ = t.join();
        }
        if let Ok(mut s) = self.state.lock() {
            s.redraw(&[], false);
        }
    }
}

impl Drop for ProgressDisplay {
    fn drop(&mut self) {
        self.finish();
    }
}

impl Progress for ProgressDisplay {
    fn event(&self, e: Event) {
        if let Ok(mut s) = self.state.lock() {
            s.event(e);
        }
    }
}

impl State {
    fn paint(&self, style: Style, text: &str) -> String {
        Shell::paint(self.color, style, text)
    }

    fn event(&mut self, e: Event) {
        let now = Instant::now();
        match self.mode {
            Mode::Json => {
                let (kind, fields) = json_event(&e);
                self.json(kind, fields);
            }
            Mode::Lines | Mode::Live => {
                let mut lines = Vec::new();
                match &e {
                    Event::StepStarted { address, action } => {
                        self.running.push((
                            address.clone(),
                            Running {
                                action: *action,
                                started: now,
                                status: None,
                                said: now,
                            },
                        ));
                        if self.mode == Mode::Lines {
                            lines.push(format!("  {address}: {}…", doing(*action).0));
                        }
                    }
                    Event::StepStatus { address, status } => {
                        let Some(run) = self.find(address) else {
                            return;
                        };
                        if run.status.as_ref().is_some_and(|(s, _)| s == status) {
                            return;
                        }
                        run.status = Some((status.clone(), now));
                        run.said = now;
                        if self.mode == Mode::Lines {
                            lines.push(format!("  {address}: {status}"));
                        }
                    }
                    Event::StepFinished { address, .. } | Event::StepFailed { address, .. } => {
                        self.running.retain(|(a, _)| a != address);
                        lines.push(self.line(&e));
                    }
                    _ => lines.push(self.line(&e)),
                }
                let live = self.mode == Mode::Live;
                self.redraw(&lines, live);
            }
        }
    }

    fn find(&mut self, address: &str) -> Option<&mut Running> {
        self.running
            .iter_mut()
            .find(|(a, _)| a == address)
            .map(|(_, r)| r)
    }

    /// The permanent line for a phase or step event.
    fn line(&self, e: &Event) -> String {
        match e {
            Event::PhaseStarted { phase, steps } => format!(
                "{} ({steps} step{})",
                self.paint(
                    Style::Bold,
                    &format!("phase {}: {}", phase.number(), phase.title())
                ),
                if *steps == 1 { "" } else { "s" }
            ),
            Event::PhaseFinished { phase, elapsed } => format!(
                "{} in {}",
                self.paint(
                    Style::Bold,
                    &format!("phase {}: {} done", phase.number(), phase.title())
                ),
                secs(*elapsed)
            ),
            Event::StepStarted { address, action } => {
                format!("  {address}: {}…", doing(*action).0)
            }
            Event::StepStatus { address, status } => format!("  {address}: {status}"),
            Event::StepFinished {
                address,
                action,
                id,
                elapsed,
            } => format!(
                "  {address}: {}{} [{}]",
                self.paint(Style::Ok, doing(*action).1),
                id.as_ref().map(|i| format!(" {i}")).unwrap_or_default(),
                secs(*elapsed)
            ),
            Event::StepFailed { address, elapsed } => format!(
                "  {address}: {} [{}]",
                self.paint(Style::Error, "failed"),
                secs(*elapsed)
            ),
            Event::Interrupted { running } => format!(
                "{} no new steps will start; waiting for {} to finish (Ctrl-C again stops at once; run the same command again to finish)",
                self.paint(Style::Warning, "interrupted:"),
                if running.is_empty() {
                    "nothing".to_string()
                } else {
                    running.join(", ")
                }
            ),
        }
    }

    /// Called every frame (live) or every second (lines).
    fn tick(&mut self) {
        match self.mode {
            Mode::Live => {
                self.frame = self.frame.wrapping_add(1);
                self.redraw(&[], true);
            }
            Mode::Lines => {
                let now = Instant::now();
                let mut lines = Vec::new();
                for (address, run) in &mut self.running {
                    if now.duration_since(run.said) < STILL_EVERY {
                        continue;
                    }
                    run.said = now;
                    lines.push(match &run.status {
                        Some((status, since)) => format!(
                            "  {address}: still {status} ({} so far)",
                            secs(now.duration_since(*since))
                        ),
                        None => format!(
                            "  {address}: still {} ({} so far)",
                            doing(run.action).0,
                            secs(now.duration_since(run.started))
                        ),
                    });
                }
                self.redraw(&lines, false);
            }
            Mode::Json => {}
        }
    }

    /// Clears the live region, prints `lines` for good, and draws the live region again when
    /// `live`.
    fn redraw(&mut self, lines: &[String], live: bool) {
        let mut buf = String::new();
        if self.drawn > 0 {
            // To the start of the region's first row, then clear to the end of the screen.
            buf.push_str(&format!("\x1b[{}F\x1b[J", self.drawn));
            self.drawn = 0;
        }
        for l in lines {
            buf.push_str(l);
            buf.push('\n');
        }
        if live && !self.running.is_empty() {
            let now = Instant::now();
            let spin = SPINNER[self.frame % SPINNER.len()];
            let width = self.width.saturating_sub(1).max(20);
            for (address, run) in self.running.iter().take(LIVE_ROWS) {
                let mut row = format!(
                    "  {spin} {address}: {}… {}",
                    doing(run.action).0,
                    secs(now.duration_since(run.started))
                );
                if let Some((status, since)) = &run.status {
                    row.push_str(&format!(
                        " · {status} ({})",
                        secs(now.duration_since(*since))
                    ));
                }
                buf.push_str(&self.paint(Style::Dim, &fit(&row, width)));
                buf.push('\n');
                self.drawn += 1;
            }
            if self.running.len() > LIVE_ROWS {
                buf.push_str(&format!(
                    "  … and {} more running\n",
                    self.running.len() - LIVE_ROWS
                ));
                self.drawn += 1;
            }
        }
        if !buf.is_empty() {
            let _ = self.out.write_all(buf.as_bytes());
            let _ = self.out.flush();
        }
    }

    fn json(&mut self, kind: &str, fields: Value) {
        let mut obj = serde_json::Map::new();
        obj.insert("v".into(), json!(JSON_EVENTS_VERSION));
        obj.insert("type".into(), json!(kind));
        obj.insert("ts".into(), json!(unix_now()));
        obj.insert(
            "at_s".into(),
            json!((self.start.elapsed().as_millis() as f64) / 1000.0),
        );
        if let Value::Object(map) = fields {
            obj.extend(map);
        }
        let mut line = Value::Object(obj).to_string();
        line.push('\n');
        let _ = self.out.write_all(line.as_bytes());
        let _ = self.out.flush();
    }
}

fn seconds(d: &Duration) -> f64 {
    (d.as_millis() as f64) / 1000.0
}

/// An executor event as a JSON stream record: its type and fields.
fn json_event(e: &Event) -> (&'static str, Value) {
    match e {
        Event::PhaseStarted { phase, steps } => (
            "phase_started",
            json!({"phase": phase.number(), "title": phase.title(), "steps": steps}),
        ),
        Event::PhaseFinished { phase, elapsed } => (
            "phase_finished",
            json!({"phase": phase.number(), "title": phase.title(), "elapsed_s": seconds(elapsed)}),
        ),
        Event::StepStarted { address, action } => (
            "step_started",
            json!({"address": address, "action": action.json_actions()}),
        ),
        Event::StepStatus { address, status } => {
            ("step_status", json!({"address": address, "status": status}))
        }
        Event::StepFinished {
            address,
            action,
            id,
            elapsed,
        } => (
            "step_finished",
            json!({"address": address, "action": action.json_actions(), "id": id, "elapsed_s": seconds(elapsed)}),
        ),
        Event::StepFailed { address, elapsed } => (
            "step_failed",
            json!({"address": address, "elapsed_s": seconds(elapsed)}),
        ),
        Event::Interrupted { running } => ("interrupted", json!({"running": running})),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::Phase;

    /// A writer the test can read back.
    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);
    impl Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    impl Buf {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    fn run_events(d: &ProgressDisplay) {
        d.event(Event::PhaseStarted {
            phase: Phase::Instances,
            steps: 1,
        });
        d.event(Event::StepStarted {
            address: "node.a".into(),
            action: Action::Create,
        });
        d.event(Event::StepStatus {
            address: "node.a".into(),
            status: "waiting for instance i-1 to be running".into(),
        });
        // A repeated status is said once; a status of a step not running is dropped.
        d.event(Event::StepStatus {
            address: "node.a".into(),
            status: "waiting for instance i-1 to be running".into(),
        });
        d.event(Event::StepStatus {
            address: "node.gone".into(),
            status: "x".into(),
        });
        d.event(Event::StepFinished {
            address: "node.a".into(),
            action: Action::Create,
            id: Some("i-1".into()),
            elapsed: Duration::from_millis(1500),
        });
        d.event(Event::PhaseFinished {
            phase: Phase::Instances,
            elapsed: Duration::from_secs(2),
        });
    }

    #[test]
    fn finishing_does_not_wait_for_the_next_tick() {
        // A tick a minute away: finish must wake the ticker, not wait for it (every plain
        // apply and destroy used to end up to a second late, the plain tick).
        let (done, finished) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut d = ProgressDisplay::ticking(
                Mode::Lines,
                false,
                usize::MAX,
                Box::new(std::io::sink()),
                Duration::from_secs(60),
            );
            let t = Instant::now();
            d.finish();
            let _ = done.send(t.elapsed());
        });
        let took = finished
            .recv_timeout(Duration::from_secs(20))
            .expect("finish waited for the ticker's next tick");
        eprintln!("figure: finish took {took:?}");
    }

    #[test]
    fn lines_say_each_start_status_and_end_once() {
        let buf = Buf::default();
        let mut d =
            ProgressDisplay::to_writer(Mode::Lines, false, usize::MAX, Box::new(buf.clone()));
        run_events(&d);
        d.finish();
        let text = buf.text();
        let phase = format!(
            "phase {}: {}",
            Phase::Instances.number(),
            Phase::Instances.title()
        );
        assert_eq!(
            text,
            format!(
                "{phase} (1 step)\n  node.a: creating…\n  node.a: waiting for instance i-1 to be running\n  node.a: created i-1 [1.5s]\n{phase} done in 2.0s\n"
            )
        );
    }

    #[test]
    fn live_region_is_cleared_before_lines_and_at_the_end() {
        let buf = Buf::default();
        let mut d = ProgressDisplay::to_writer(Mode::Live, false, 60, Box::new(buf.clone()));
        d.event(Event::StepStarted {
            address: "node.a".into(),
            action: Action::Create,
        });
        d.event(Event::StepStatus {
            address: "node.a".into(),
            status:
                "waiting for a very long thing that does not fit on a sixty column terminal at all"
                    .into(),
        });
        let drawn = buf.text();
        // The running step is drawn, cut to the width, and redrawn in place.
        let rows: Vec<&str> = drawn.lines().collect();
        assert!(
            rows.iter().any(|r| r.contains("node.a: creating…")),
            "{drawn:?}"
        );
        assert!(
            rows.iter()
                .all(|r| r.trim_start_matches("\x1b[1F\x1b[J").chars().count() <= 59),
            "{drawn:?}"
        );
        assert!(drawn.contains("\x1b[1F\x1b[J"), "{drawn:?}");
        d.event(Event::StepFinished {
            address: "node.a".into(),
            action: Action::Create,
            id: None,
            elapsed: Duration::from_secs(1),
        });
        d.finish();
        let text = buf.text();
        assert!(
            text.ends_with("\x1b[1F\x1b[J  node.a: created [1.0s]\n"),
            "{text:?}"
        );
    }

    #[test]
    fn json_records_are_one_object_per_line_with_version_and_type() {
        let buf = Buf::default();
        let mut d =
            ProgressDisplay::to_writer(Mode::Json, false, usize::MAX, Box::new(buf.clone()));
        run_events(&d);
        d.record("apply_complete", json!({"added": 1}));
        d.finish();
        let records: Vec<Value> = buf
            .text()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let types: Vec<&str> = records
            .iter()
            .map(|r| r["type"].as_str().unwrap())
            .collect();
        assert_eq!(
            types,
            [
                "phase_started",
                "step_started",
                "step_status",
                "step_status",
                "step_status",
                "step_finished",
                "phase_finished",
                "apply_complete"
            ]
        );
        assert!(records.iter().all(|r| r["v"] == JSON_EVENTS_VERSION));
        assert_eq!(records[5]["id"], "i-1");
        assert_eq!(records[5]["elapsed_s"], 1.5);
        assert_eq!(records[5]["action"], json!(["create"]));
        assert_eq!(records[7]["added"], 1);
    }
}
