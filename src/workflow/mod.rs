//! The core of the commands that change or read a cluster: the decisions around the planner
//! and the executor that are neither planning nor carrying out a step. `apply` (saved-plan
//! checks, the gates — blockers, unobserved nodes, data destroyed — the `--keep-old-volumes`
//! rewrite, the run, and the convergence re-plan), `destroy` (the run and the proof that
//! nothing is left), and `plan` (observe, plan, save). Each returns an outcome that `render/`
//! prints; the commands only parse arguments and call one of them.

pub mod apply;
pub mod destroy;
pub mod plan;

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::observe::{ObserveError, World};
use crate::spec::LoadError;

pub use apply::{ApplyOptions, ApplyOutcome, PlanSource, apply, read_saved};
pub use destroy::{DestroyOutcome, destroy};
pub use plan::{Planned, plan};

/// The executor's context: the edges the observation opened.
fn ctx(world: &World, ssh_key: Option<&std::path::Path>) -> crate::exec::Ctx {
    crate::exec::Ctx {
        aws: world.aws.clone(),
        nodes: world.nodes.as_ref().map(Arc::clone),
        ssh_key: ssh_key.map(std::path::Path::to_path_buf),
    }
}

/// The final look after a run: `look` again, with backoff, until `settled` accepts what it saw
/// or `lag` has passed, and return the last look. EC2's Describe results can lag behind the
/// changes just made (eventual consistency); a run that succeeded must not be failed by that.
async fn final_look<T, F, Fut>(
    lag: Duration,
    mut look: F,
    settled: impl Fn(&T) -> bool,
) -> Result<T, Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, Error>>,
{
    let start = Instant::now();
    let mut pause = Duration::from_millis(250);
    loop {
        let seen = look().await?;
        if settled(&seen) || start.elapsed() >= lag {
            return Ok(seen);
        }
        let pause_now = pause.min(lag.saturating_sub(start.elapsed()));
        tracing::info!("the final check is not settled yet; looking again in {pause_now:?}");
        tokio::time::sleep(pause_now).await;
        pause = (pause * 2).min(Duration::from_secs(5));
    }
}

/// What the operator is asked and shown while a run goes on (`render::console` implements it).
pub trait Ui {
    /// Show the plan about to be carried out.
    fn show_plan(&self, plan: &crate::plan::Plan);
    /// Ask for approval; refuse if it is not given.
    fn confirm(&self, question: &str) -> Result<(), Error>;
    /// The run starts now.
    fn starting(&self);
    /// Where the executor's events go.
    fn progress(&self) -> &dyn crate::progress::Progress;
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Already rendered as diagnostics; only the summary line is printed.
    #[error(transparent)]
    Spec(#[from] LoadError),
    #[error(transparent)]
    Observe(#[from] ObserveError),
    #[error(transparent)]
    Pki(#[from] crate::pki::PkiError),
    #[error(transparent)]
    Node(#[from] crate::node::NodeError),
    #[error(transparent)]
    Exec(Box<crate::exec::ExecError>),
    #[error("{0}")]
    Refused(String),
    /// The state backend (S3) failed or refused (its lock is held).
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    /// A step on one node failed (`redis-cli`): the message names the node and the step.
    #[error("{message}")]
    NodeStep {
        message: String,
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
        hint: String,
    },
    #[error("cannot {action} plan file {}", path.display())]
    PlanFile {
        action: &'static str,
        path: std::path::PathBuf,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl From<crate::exec::ExecError> for Error {
    fn from(e: crate::exec::ExecError) -> Self {
        Error::Exec(Box::new(e))
    }
}

impl Error {
    /// What to do next, printed after the error.
    pub fn hint(&self) -> Option<String> {
        match self {
            Error::Observe(e) => e.hint(),
            Error::Exec(e) => e.hint(),
            Error::Node(e) => Some(e.hint()),
            Error::NodeStep { hint, .. } => Some(hint.clone()),
            Error::State(e) => Some(e.hint.clone()),
            _ => None,
        }
    }
}

/// The closing record of a `--json` stream that ends in an error: the message with its causes,
/// and what to do next (the same words as on stderr).
pub fn error_record(e: &Error) -> serde_json::Value {
    let mut message = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        message.push_str(": ");
        message.push_str(&s.to_string());
        source = s.source();
    }
    serde_json::json!({ "message": message, "hint": e.hint() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[tokio::test]
    async fn the_final_look_waits_for_a_lagging_view_within_its_bound() {
        let looks = AtomicU32::new(0);
        let look = || async { Ok(looks.fetch_add(1, Ordering::SeqCst) + 1) };
        // Settles at the third look.
        let seen = final_look(Duration::from_secs(30), look, |n| *n >= 3)
            .await
            .unwrap();
        assert_eq!(seen, 3);
        // Never settles: the last look is returned once the bound has passed.
        looks.store(0, Ordering::SeqCst);
        let seen = final_look(Duration::from_millis(300), look, |_| false)
            .await
            .unwrap();
        assert_eq!(seen, 3, "looks at 0 ms, 250 ms and at the bound (300 ms)");
    }
}
