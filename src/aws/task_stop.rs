//! Stopping one task: ECS StopTask with a reason (DescribeTasks then shows it as the task's
//! `stoppedReason`, with `stopCode` UserInitiated), and the wait until ECS reports the task
//! STOPPED: a task that is stopping (DEACTIVATING, STOPPING, DEPROVISIONING) may still hold the
//! WhatsApp socket, so it counts as live until then.

use super::sdk_failure;
use crate::error::{Error, Result};
use std::time::{Duration, Instant};

/// The longest reason StopTask takes.
pub const MAX_REASON: usize = 255;

/// One task as DescribeTasks shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskState {
    pub arn: String,
    pub id: String,
    /// `service:NAME` for a service's task, `family:NAME` for a standalone one.
    pub group: Option<String>,
    pub last_status: String,
    pub desired_status: String,
    pub stopped_reason: Option<String>,
}

impl TaskState {
    fn from_sdk(task: &aws_sdk_ecs::types::Task) -> TaskState {
        let arn = task.task_arn().unwrap_or_default().to_owned();
        TaskState {
            id: arn.rsplit('/').next().unwrap_or_default().to_owned(),
            arn,
            group: task.group().map(str::to_owned),
            last_status: task.last_status().unwrap_or("UNKNOWN").to_owned(),
            desired_status: task.desired_status().unwrap_or("UNKNOWN").to_owned(),
            stopped_reason: task.stopped_reason().map(str::to_owned),
        }
    }

    /// The task as it is taken to be when ECS does not show it: `arn` with desired status STOPPED.
    fn assumed(arn: &str, last_status: &str, stopped_reason: Option<&str>) -> TaskState {
        TaskState {
            arn: arn.to_owned(),
            id: arn.rsplit('/').next().unwrap_or(arn).to_owned(),
            group: None,
            last_status: last_status.to_owned(),
            desired_status: "STOPPED".into(),
            stopped_reason: stopped_reason.map(str::to_owned),
        }
    }

    pub fn is_stopped(&self) -> bool {
        self.last_status == "STOPPED"
    }
}

/// The task `task` (an id or an ARN) of `cluster`; `None` when the cluster has no such task
/// (ECS lists a stopped task for about an hour). Also what the exec watchdog reads.
pub async fn describe(ecs: &aws_sdk_ecs::Client, cluster: &str, task: &str) -> Result<Option<TaskState>> {
    let out = ecs
        .describe_tasks()
        .cluster(cluster)
        .tasks(task)
        .send()
        .await
        .map_err(|e| Error::from(sdk_failure("DescribeTasks", e)))?;
    Ok(out.tasks().first().map(TaskState::from_sdk))
}

/// StopTask with `reason`; the task as ECS answered it.
pub async fn stop(ecs: &aws_sdk_ecs::Client, cluster: &str, arn: &str, reason: &str) -> Result<TaskState> {
    let out = ecs
        .stop_task()
        .cluster(cluster)
        .task(arn)
        .reason(reason)
        .send()
        .await
        .map_err(|e| Error::from(sdk_failure("StopTask", e)))?;
    Ok(out.task().map(TaskState::from_sdk).unwrap_or_else(|| TaskState::assumed(arn, "UNKNOWN", Some(reason))))
}

/// Read the task every `poll` until it is STOPPED (its final state) or `deadline` passes (`Err`
/// with the last state seen); `progress` sees every new lastStatus.
pub async fn wait_stopped(
    ecs: &aws_sdk_ecs::Client,
    cluster: &str,
    arn: &str,
    deadline: Duration,
    poll: Duration,
    progress: &(dyn Fn(&TaskState) + Sync),
) -> Result<std::result::Result<TaskState, TaskState>> {
    let started = Instant::now();
    let mut last: Option<TaskState> = None;
    loop {
        // ECS keeps a stopped task listed for about an hour: a task it no longer knows is gone.
        let Some(now) = describe(ecs, cluster, arn).await? else {
            let mut gone = last.clone().unwrap_or_else(|| TaskState::assumed(arn, "STOPPED", None));
            gone.last_status = "STOPPED".into();
            return Ok(Ok(gone));
        };
        if last.as_ref().is_none_or(|l| l.last_status != now.last_status) {
            progress(&now);
        }
        if now.is_stopped() {
            return Ok(Ok(now));
        }
        if started.elapsed() >= deadline {
            return Ok(Err(now));
        }
        last = Some(now);
        tokio::time::sleep(poll.min(deadline.saturating_sub(started.elapsed()))).await;
    }
}
