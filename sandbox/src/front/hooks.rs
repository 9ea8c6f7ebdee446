//! Hooks at work in the front (docs/sandbox.md, "Hooks"): once a request has taken effect and
//! before it is answered, a hook it meets kills a client's process (the connection is then
//! closed without the answer) or holds the answer until a test releases it. What each firing
//! did is kept in the hook, for `hooks list`.

use crate::faults::{Hook, Hooks, Then};
use crate::logging::log;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// What becomes of the answer after the hooks.
#[derive(Debug, PartialEq, Eq)]
pub enum After {
    Answer,
    /// Its client was killed: close the connection without the answer.
    Drop,
}

#[derive(Default)]
pub struct HookPoint {
    hooks: Mutex<Hooks>,
    /// The requests a hold hook holds, by hook id: a send (or a drop) releases each.
    held: Mutex<HashMap<u64, Vec<oneshot::Sender<()>>>>,
}

impl HookPoint {
    pub fn add(&self, hook: Hook) -> Result<u64, String> {
        let shown = format!("{hook:?}");
        let id = self.hooks.lock().unwrap().add(hook)?;
        log(&format!("hook {id} added: {shown}"));
        Ok(id)
    }

    pub fn list(&self) -> Vec<Hook> {
        self.hooks.lock().unwrap().list.clone()
    }

    /// Releases what hook `id` holds; how many requests.
    pub fn release(&self, id: u64) -> usize {
        let held = self.held.lock().unwrap().remove(&id).unwrap_or_default();
        let n = held.len();
        for tx in held {
            tx.send(()).ok();
        }
        n
    }

    /// Removes every hook; the held requests are answered.
    pub fn clear(&self) {
        self.hooks.lock().unwrap().list.clear();
        self.held.lock().unwrap().clear();
    }

    /// The hooks a request that took effect meets, carried out.
    pub async fn after_effect(&self, action: &str, params: &[(String, String)]) -> After {
        let at_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or_default();
        let Some((id, then, index)) = self.hooks.lock().unwrap().fire(action, params, at_ms) else {
            return After::Answer;
        };
        let note = |outcome: String| {
            log(&format!("hook {id}: {action}: {outcome}"));
            self.hooks.lock().unwrap().outcome(id, index, outcome);
        };
        match then {
            Then::Kill { pid } => {
                // SAFETY: kill(2) with a pid the hook's owner named (never 0, 1 or the front).
                if unsafe { libc::kill(pid as libc::pid_t, libc::SIGKILL) } == 0 {
                    note(format!("killed pid {pid}"));
                    After::Drop
                } else {
                    let e = std::io::Error::last_os_error();
                    note(format!("pid {pid}: {e} (answered)"));
                    After::Answer
                }
            }
            Then::Hold { max_secs } => {
                let (tx, rx) = oneshot::channel();
                self.held.lock().unwrap().entry(id).or_default().push(tx);
                note("holding".into());
                let t = Instant::now();
                let released = tokio::time::timeout(Duration::from_secs(max_secs), rx)
                    .await
                    .is_ok();
                note(if released {
                    format!("released after {} ms", t.elapsed().as_millis())
                } else {
                    format!("not released within {max_secs} s")
                });
                After::Answer
            }
        }
    }
}
