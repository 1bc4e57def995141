//! `evoctl task ENV`: the one live task id, for scripts. None is exit 3, more than one exit 4 —
//! two live tasks on one WhatsApp number is the conflict evoctl exists to prevent.
//!
//! `evoctl task stop ENV TASK_ID`: end one task of the environment, the way out of that
//! conflict. ECS StopTask with a reason (shown as the task's `stoppedReason`), then a wait until
//! ECS reports it STOPPED (a stopping task may still hold the socket). Refused (exit 4) for a
//! task that is not one of the environment's service's, and for a protected environment's only
//! live task unless `--yes`.

use super::Context;
use crate::aws::discovery::{self, ServiceRef};
use crate::aws::task_stop::{self, MAX_REASON, TaskState};
use crate::cli::{TaskArgs, TaskCommand, TaskStopArgs};
use crate::error::{Error, Result, Signal};
use crate::exit;
use serde::Serialize;
use std::time::{Duration, Instant};

#[derive(Serialize)]
struct TaskReport<'a> {
    schema: &'static str,
    env: &'a str,
    cluster: &'a str,
    task_id: &'a str,
    task_arn: &'a str,
    last_status: &'a str,
}

pub async fn run(context: &Context, args: &TaskArgs) -> Result<u8> {
    match (&args.command, &args.env) {
        (Some(TaskCommand::Stop(stop_args)), _) => stop(context, stop_args).await,
        (None, Some(env)) => show(context, env).await,
        (None, None) => Err(Error::usage("`evoctl task` needs an environment", "e.g. `evoctl task production`")),
    }
}

async fn show(context: &Context, env_name: &str) -> Result<u8> {
    let config = context.config()?;
    let env = config.environment(env_name)?;
    let aws = context.aws_for(&config, env).await?;
    let task = discovery::the_live_task(&aws.ecs(), env).await?;
    let report = TaskReport {
        schema: "evoctl.task/v1",
        env: &env.name,
        cluster: &env.cluster,
        task_id: &task.id,
        task_arn: &task.arn,
        last_status: &task.last_status,
    };
    context.printer.data(&report, || task.id.clone());
    Ok(exit::OK)
}

/// How often the wait reads the task.
const POLL: Duration = Duration::from_millis(500);

/// `--output json` document of `task stop` (schema `evoctl.task-stop/v1`).
#[derive(Serialize)]
struct StopReport<'a> {
    schema: &'static str,
    env: &'a str,
    cluster: &'a str,
    task_id: &'a str,
    task_arn: &'a str,
    /// Whether this run sent StopTask (false: the task was already stopping or stopped).
    stop_sent: bool,
    last_status: &'a str,
    stopped_reason: Option<&'a str>,
    seconds: f64,
}

async fn stop(context: &Context, args: &TaskStopArgs) -> Result<u8> {
    let started = Instant::now();
    let config = context.config()?;
    let env = config.environment(&args.env)?;
    let reason = args.reason.clone().unwrap_or_else(|| format!("evoctl task stop {}", env.name));
    if reason.chars().count() > MAX_REASON || reason.trim().is_empty() {
        return Err(Error::usage(
            format!("--reason must be 1 to {MAX_REASON} characters (ECS's limit); it has {}", reason.chars().count()),
            "give a shorter reason, e.g. --reason \"extra task in a conflict loop\"",
        ));
    }
    let id = args.task_id.rsplit('/').next().unwrap_or(&args.task_id).to_owned();
    if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
        return Err(Error::usage(
            format!("`{}` is not an ECS task id or ARN", args.task_id),
            format!("take the id from `evoctl status {}` (32 hex characters)", env.name),
        ));
    }
    let aws = context.aws_for(&config, env).await?;
    let ecs = aws.ecs();
    let service = ServiceRef { cluster: &env.cluster, service: &env.service };
    let (task, live) =
        tokio::try_join!(task_stop::describe(&ecs, &env.cluster, &id), discovery::live_tasks(&ecs, service))?;
    let live_ids = || {
        let ids: Vec<&str> = live.iter().map(|t| t.id.as_str()).collect();
        if ids.is_empty() { "none".to_owned() } else { ids.join(", ") }
    };
    let group = format!("service:{}", env.service);
    let task = match task {
        Some(task) if task.group.as_deref() == Some(group.as_str()) => task,
        Some(task) => {
            return Err(Error::refused(
                format!(
                    "refused: task {id} is not one of {}'s: it runs in {} as {}, not in service {}; nothing was stopped",
                    env.name,
                    env.cluster,
                    task.group.as_deref().unwrap_or("no group"),
                    env.service
                ),
                format!("{}'s live tasks: {}", env.name, live_ids()),
            ));
        }
        None => {
            return Err(Error::refused(
                format!(
                    "refused: task {id} is not one of {}'s: cluster {} has no such task; nothing was stopped",
                    env.name, env.cluster
                ),
                format!("{}'s live tasks: {}", env.name, live_ids()),
            ));
        }
    };
    let stop_sent = if task.is_stopped() || task.desired_status == "STOPPED" {
        let status = if task.is_stopped() { "STOPPED".to_owned() } else { format!("stopping ({})", task.last_status) };
        context.printer.note(&format!(
            "task {id} is already {status}{}",
            task.stopped_reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default()
        ));
        false
    } else {
        let others = live.iter().filter(|t| t.id != id && t.desired_status == "RUNNING").count();
        if env.protected && others == 0 && !args.yes {
            return Err(Error::refused(
                format!(
                    "refused: {id} is the only live task of {}, which is protected: stopping it leaves {} with no WhatsApp connection until ECS starts another task; nothing was stopped",
                    env.name, env.name
                ),
                format!("run `evoctl task stop {} {id} --yes` if you mean it", env.name),
            ));
        }
        if let Some(signal) = crate::interrupt::requested() {
            return Err(Error::Interrupted {
                signal,
                message: format!("interrupted ({}): nothing was stopped", signal.name()),
                fix: None,
            });
        }
        true
    };
    let interrupted = |signal: Signal| Error::Interrupted {
        signal,
        message: format!(
            "interrupted ({}): {}; ECS goes on stopping it",
            signal.name(),
            if stop_sent { format!("StopTask was sent for {id}") } else { format!("{id} was already stopping") }
        ),
        fix: Some(format!("`evoctl status {}` shows when it is STOPPED", env.name)),
    };
    let stopping = Stopping {
        env: &env.name,
        cluster: &env.cluster,
        id: &id,
        arn: &task.arn,
        reason: stop_sent.then_some(reason.as_str()),
        since: Instant::now(),
        timeout: args.timeout,
    };
    let state = stop_and_wait(context, &ecs, stopping, interrupted).await?;
    let report = StopReport {
        schema: "evoctl.task-stop/v1",
        env: &env.name,
        cluster: &env.cluster,
        task_id: &id,
        task_arn: &task.arn,
        stop_sent,
        last_status: &state.last_status,
        stopped_reason: state.stopped_reason.as_deref(),
        seconds: crate::output::seconds(started.elapsed()),
    };
    context.printer.data(&report, || {
        format!(
            "task {id} of {} is STOPPED{}\n",
            env.name,
            state.stopped_reason.as_deref().map(|r| format!(" ({r})")).unwrap_or_default()
        )
    });
    Ok(exit::OK)
}

/// One task to bring to STOPPED.
pub(super) struct Stopping<'a> {
    pub env: &'a str,
    pub cluster: &'a str,
    pub id: &'a str,
    pub arn: &'a str,
    /// StopTask's reason; `None` when the task is already being stopped (a deployment, an
    /// earlier StopTask): then only the wait.
    pub reason: Option<&'a str>,
    /// The wait ends `timeout` after `since`.
    pub since: Instant,
    pub timeout: Duration,
}

/// StopTask with the reason (saying so), then the wait until ECS reports the task STOPPED,
/// saying each status it passes. Ctrl-C ends the wait with `interrupted(signal)` (ECS goes on);
/// the timeout with exit 7 and the last status seen.
pub(super) async fn stop_and_wait(
    context: &Context,
    ecs: &aws_sdk_ecs::Client,
    task: Stopping<'_>,
    interrupted: impl FnOnce(Signal) -> Error,
) -> Result<TaskState> {
    if let Some(reason) = task.reason {
        task_stop::stop(ecs, task.cluster, task.arn, reason).await?;
        context.printer.note(&format!("StopTask sent for {} ({reason}); waiting until it is STOPPED…", task.id));
    }
    let progress = |state: &TaskState| {
        if !state.is_stopped() {
            context.printer.note(&format!("task {}: {}", state.id, state.last_status));
        }
    };
    let wait = task.timeout.saturating_sub(task.since.elapsed());
    let waited = tokio::select! {
        waited = task_stop::wait_stopped(ecs, task.cluster, task.arn, wait, POLL, &progress) => waited?,
        signal = crate::interrupt::wait() => return Err(interrupted(signal)),
    };
    waited.map_err(|state| Error::Timeout {
        message: format!(
            "task {} is still {} after {} s{}",
            task.id,
            state.last_status,
            task.timeout.as_secs(),
            if task.reason.is_some() { " (StopTask was sent)" } else { "" }
        ),
        fix: Some(format!("ECS goes on stopping it: `evoctl status {}` shows when it is STOPPED", task.env)),
    })
}
