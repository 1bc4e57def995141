//! At most two exec sessions on one task. The ECS Exec agent runs `SessionWorkersLimit` = 2
//! sessions per container, keeps one more waiting and, past that, blocks its control channel for
//! good: a fourth concurrent session (a third waiting) can wedge ECS Exec on the task until it
//! restarts (ssm-data-channel.md §9 row 12). So before every ExecuteCommand evoctl takes one of
//! its own two slots for the task (this process never holds more; a third waits for one to end)
//! and asks Session Manager which sessions are already active on the target
//! (`ssm:DescribeSessions`, State Active, filter Target). With two open, by anyone, it refuses
//! (exit 4) and names them. A caller without `ssm:DescribeSessions` is not stopped: evoctl then
//! only knows its own sessions, and says so at `-v`.

use super::registry::{self, SESSIONS_PER_TASK, Slot};
use super::target::ExecTarget;
use crate::aws::{Aws, sdk_failure};
use crate::error::{Error, Result};
use std::sync::Arc;

/// Take a slot on `target`'s task: one of this process's two, then a check that the task does
/// not already run two sessions started elsewhere.
pub async fn take(aws: &Aws, target: &ExecTarget) -> Result<Slot> {
    let slots = registry::task_slots(&target.task.arn);
    let permit = match Arc::clone(&slots).try_acquire_owned() {
        Ok(permit) => permit,
        Err(_) => {
            tracing::warn!(
                task = %target.task.id,
                "this run already holds {SESSIONS_PER_TASK} exec sessions on the task; waiting for one to end"
            );
            Arc::clone(&slots).acquire_owned().await.expect("the slot table is never closed")
        }
    };
    let active = match active_sessions(aws, &target.ssm_target()).await {
        Ok(active) => active,
        Err(reason) => {
            tracing::info!(task = %target.task.id, "cannot list the task's open sessions ({reason}); counting only this run's");
            return Ok(Slot::new(permit));
        }
    };
    let others: Vec<&Active> = active.iter().filter(|s| !registry::is_ours_or_ended(&s.id)).collect();
    let ours = SESSIONS_PER_TASK - slots.available_permits() - 1;
    if others.len() + ours >= SESSIONS_PER_TASK {
        let listed: Vec<String> = others
            .iter()
            .map(|s| if s.owner.is_empty() { s.id.clone() } else { format!("{} (by {})", s.id, s.owner) })
            .collect();
        return Err(Error::refused(
            format!(
                "task {} already has {} ECS Exec session{} open ({}): the agent runs at most {SESSIONS_PER_TASK} per container, and one more can wedge ECS Exec on the task until it restarts",
                target.task.id,
                others.len() + ours,
                if others.len() + ours == 1 { "" } else { "s" },
                listed.join(", "),
            ),
            match others.first() {
                Some(first) => {
                    format!("wait for one to end, or end it: `aws ssm terminate-session --session-id {}`", first.id)
                }
                None => "wait for one of this run's sessions to end".to_owned(),
            },
        ));
    }
    Ok(Slot::new(permit))
}

/// An active Session Manager session on the target.
#[derive(Debug)]
struct Active {
    id: String,
    owner: String,
}

async fn active_sessions(aws: &Aws, ssm_target: &str) -> std::result::Result<Vec<Active>, String> {
    let filter = aws_sdk_ssm::types::SessionFilter::builder()
        .key(aws_sdk_ssm::types::SessionFilterKey::TargetId)
        .value(ssm_target)
        .build()
        .map_err(|e| e.to_string())?;
    let mut found = Vec::new();
    let mut pages = aws
        .ssm()
        .describe_sessions()
        .state(aws_sdk_ssm::types::SessionState::Active)
        .filters(filter)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| {
            let failure = sdk_failure("DescribeSessions", e);
            format!("{}: {}", failure.code, failure.message)
        })?;
        for session in page.sessions() {
            if let Some(id) = session.session_id() {
                found.push(Active { id: id.to_owned(), owner: session.owner().unwrap_or_default().to_owned() });
            }
        }
    }
    Ok(found)
}
