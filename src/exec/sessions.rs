//! Sessions end when evoctl ends. Every exec session evoctl starts is registered (in
//! [`super::registry`]) the moment ExecuteCommand grants it, and ended with
//! `ssm:TerminateSession` on whatever path leaves it: success, timeout, the watchdog, an error,
//! Ctrl-C, SIGTERM, a socket that could not be resumed.
//! A session whose future was dropped mid-way (the command was cancelled) stays registered and
//! `main` ends it on the way out with [`end_leftovers`]. On AWS an abandoned session would run
//! its command until the 20-minute idle timeout and hold one of the agent's two session slots.
//!
//! Ending is best effort and bounded ([`TERMINATE_BOUND`], [`TERMINATE_AFTER_DEADLINE`]); when
//! it fails (typically a caller without `ssm:TerminateSession`), one note says so and that the
//! remote command may still run. The notes are printed by `main` through the printer; nothing
//! here prints.

use super::registry::{self, Open, Slot};
use crate::aws::{Aws, sdk_failure};
use std::time::Duration;

/// How long ending a session may take after a deadline (`--timeout` promises to end within a
/// second of it).
pub const TERMINATE_AFTER_DEADLINE: Duration = Duration::from_secs(1);
/// How long ending a session may take otherwise (success, error, Ctrl-C: nobody is past a
/// promised deadline, and a second Ctrl-C stops at once).
pub const TERMINATE_BOUND: Duration = Duration::from_secs(3);

/// A started session; [`SessionGuard::end`] terminates it. It holds the session's slot on the
/// task, freed once the session is ended.
#[derive(Debug)]
pub struct SessionGuard {
    id: String,
    _slot: Slot,
}

impl SessionGuard {
    /// Register the session ExecuteCommand just granted in `slot`.
    pub fn open(aws: &Aws, id: &str, slot: Slot) -> SessionGuard {
        registry::register(Open { id: id.to_owned(), ssm: aws.ssm() });
        SessionGuard { id: id.to_owned(), _slot: slot }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// End the session (TerminateSession, within `bound`) and forget it.
    pub async fn end(self, bound: Duration) {
        if let Some(entry) = registry::open_session(&self.id) {
            terminate(&entry, bound).await;
            // Forgotten only once ended: if this future is dropped mid-call (the command was
            // cancelled), `end_leftovers` still finds the session.
            registry::mark_ended(&self.id);
        }
    }
}

/// How long ending may take after a run ended with `result`: a run past its deadline has only
/// the second `--timeout` allows.
pub fn end_bound<T>(result: &crate::error::Result<T>) -> Duration {
    match result {
        Err(crate::error::Error::Timeout { .. }) => TERMINATE_AFTER_DEADLINE,
        _ => TERMINATE_BOUND,
    }
}

/// End every session still registered (their futures were dropped), concurrently and bounded.
pub async fn end_leftovers() {
    let left = registry::take_open();
    futures::future::join_all(left.iter().map(|open| terminate(open, TERMINATE_BOUND))).await;
}

/// What could not be cleaned up, for the printer.
pub fn take_notes() -> Vec<String> {
    registry::take_notes()
}

async fn terminate(session: &Open, bound: Duration) {
    let call = session.ssm.terminate_session().session_id(&session.id).send();
    let problem = match tokio::time::timeout(bound, call).await {
        Ok(Ok(_)) => {
            tracing::info!(session = %session.id, "session terminated");
            return;
        }
        Ok(Err(err)) => {
            let failure = sdk_failure("TerminateSession", err);
            match failure.code.as_str() {
                "AccessDeniedException" | "AccessDenied" => {
                    "this caller may not call ssm:TerminateSession (grant it on the session ARNs)".to_owned()
                }
                code => format!("TerminateSession failed: {code}: {}", failure.message),
            }
        }
        Err(_) => format!("TerminateSession did not answer within {} s", bound.as_secs()),
    };
    registry::note(format!(
        "could not end exec session {}: {problem}; the remote command may still be running until the session's 20-minute idle timeout",
        session.id
    ));
}
