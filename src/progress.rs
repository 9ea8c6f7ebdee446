//! Progress, the bottom of the house: what a running apply or destroy reports (`Event`), where
//! it goes (`Progress`, which `render/` implements), and `status`, by which any edge (an EC2
//! wait, an SSH step, a swap stage) says what the current step waits for without knowing who
//! listens. It imports nothing of redisctl but the plan model's `Action` and `Phase`.

use std::time::Duration;

use tokio::sync::mpsc;

use crate::plan::{Action, Phase};

/// What the executor reports while it works.
#[derive(Debug, Clone)]
pub enum Event {
    PhaseStarted {
        phase: Phase,
        steps: usize,
    },
    PhaseFinished {
        phase: Phase,
        elapsed: Duration,
    },
    StepStarted {
        address: String,
        action: Action,
    },
    /// What a running step does or waits for now (see [`status`]).
    StepStatus {
        address: String,
        status: String,
    },
    StepFinished {
        address: String,
        action: Action,
        id: Option<String>,
        elapsed: Duration,
    },
    StepFailed {
        address: String,
        elapsed: Duration,
    },
    Interrupted {
        running: Vec<String>,
    },
}

tokio::task_local! {
    /// The step a task is carrying out, and where its status goes.
    static STEP: (String, mpsc::UnboundedSender<Event>);
}

/// Says what the current step is doing or waiting for ("waiting for instance i-… to be
/// running"); shown by the progress display until the step's next status. Does nothing outside
/// a step (plan, verify, tests).
pub fn status(what: impl Into<String>) {
    let _ = STEP.try_with(|(address, tx)| {
        let _ = tx.send(Event::StepStatus {
            address: address.clone(),
            status: what.into(),
        });
    });
}

/// Receives events (the renderer prints them).
pub trait Progress: Send + Sync {
    fn event(&self, e: Event);
}

/// Runs `step` as the step `address`: [`status`] calls inside it are sent on `tx`.
pub fn in_step<F: std::future::Future>(
    (address, tx): (String, mpsc::UnboundedSender<Event>),
    step: F,
) -> impl std::future::Future<Output = F::Output> {
    STEP.scope((address, tx), step)
}
