//! `evoctl redeploy ENV [--task-definition REV] [--yes]`: replace a singleton's task the safe way.
//! It reads where the (new) task definition keeps the WhatsApp session's keys and refuses
//! (exit 4) while they would not survive the replacement, unless `--yes` (then it says the
//! number will need a new link). It stops the live task before another starts: StopTask, or,
//! with a new revision, UpdateService on a service whose deployments stop before they start
//! (maximumPercent 100); waits until the old task is STOPPED and exactly one new task runs with
//! its exec agent; then asks the new task's Evolution, until the instance settles, whether it
//! came back `open` on the number it had, and says so, or that a new link is needed with the
//! `evoctl connect` command (exit 1). Ctrl-C during a wait ends it (exit 130) with where things
//! are (old task stopping or stopped, new task started or not) and the commands to run next.

use super::Context;
use super::reach::Reach;
use super::task::{Stopping, stop_and_wait};
use crate::aws::discovery::{self, ServiceRef};
use crate::aws::sdk_failure;
use crate::cli::RedeployArgs;
use crate::error::{Error, Result};
use crate::exec::target;
use crate::exit;
use crate::guard::{auth_state, facts};
use serde::Serialize;
use std::time::{Duration, Instant};

/// How often the waits read ECS and the instance.
const POLL: Duration = Duration::from_millis(500);
/// How long a `close` must last before it is the instance's answer (a fresh 2.3.7 process shows
/// `close` for a moment before its auto-connect starts).
const CLOSE_SETTLES: Duration = Duration::from_secs(5);
/// The longest the new task's Evolution is asked before its last answer stands.
const INSTANCE_WAIT: Duration = Duration::from_secs(90);

/// `--output json` document (schema `evoctl.redeploy/v1`).
#[derive(Serialize)]
struct RedeployReport<'a> {
    schema: &'static str,
    env: &'a str,
    instance: &'a str,
    old_task: &'a str,
    new_task: &'a str,
    task_definition: &'a str,
    /// Where the session's keys live, and whether that outlives a task.
    keys: String,
    persistent: bool,
    /// The instance's state in the new task (`None`: the instance does not exist).
    state: Option<&'a str>,
    number_before: Option<&'a str>,
    number_after: Option<&'a str>,
    /// `open` on the number it had.
    kept: bool,
    needs_link: bool,
    fix: Option<String>,
    seconds: f64,
}

pub async fn run(context: &Context, args: &RedeployArgs) -> Result<u8> {
    let started = Instant::now();
    let config = context.config()?;
    let env = config.environment(&args.env)?.clone();
    let aws = context.aws_for(&config, &env).await?;
    let ecs = aws.ecs();
    let service_ref = ServiceRef { cluster: &env.cluster, service: &env.service };
    let (service, old) = discovery::service_and_live_task(&ecs, &env).await?;
    let current = service.task_definition.clone().ok_or_else(|| {
        Error::not_found(
            format!("service {} of {} has no task definition", env.service, env.name),
            format!("check `evoctl status {}`", env.name),
        )
    })?;
    let definition = match &args.task_definition {
        None => current.clone(),
        Some(rev) if rev.chars().all(|c| c.is_ascii_digit()) && !rev.is_empty() => {
            let family = current.rsplit('/').next().unwrap_or(&current);
            format!("{}:{rev}", family.split(':').next().unwrap_or(family))
        }
        Some(other) => other.clone(),
    };
    let shown_definition = definition.rsplit('/').next().unwrap_or(&definition).to_owned();
    if args.task_definition.is_some() && service.deployment.maximum_percent > 100 {
        return Err(Error::refused(
            format!(
                "refused: {}'s deployments start the new task before stopping the old one (maximumPercent {}): two connections on one number; nothing was changed",
                env.name, service.deployment.maximum_percent
            ),
            format!(
                "`aws ecs update-service --cluster {} --service {} --deployment-configuration maximumPercent=100,minimumHealthyPercent=0`, then run `evoctl redeploy {} --task-definition {}` again",
                env.cluster,
                env.service,
                env.name,
                args.task_definition.as_deref().unwrap_or_default()
            ),
        ));
    }
    // Where the (new) definition keeps the keys, and the instance's number before, from the old
    // task (best effort: a broken Evolution is often why one redeploys), read together.
    let name = env.instance.clone();
    let check_keys = async {
        let auth = facts::auth_state_of(&aws, &definition, &env.container).await?;
        if let Some(problem) = auth.problem() {
            if !args.yes {
                return Err(Error::refused(
                    format!(
                        "refused: {}'s WhatsApp session would not survive the replacement ({shown_definition}): {problem}; nothing was changed",
                        env.name
                    ),
                    format!(
                        "{}; or run `evoctl redeploy {} --yes` and link the number again with `evoctl connect {}`",
                        auth_state::fix(),
                        env.name,
                        env.name
                    ),
                ));
            }
            context.printer.warn(&auth_state::replacement_warning(&env.name, &auth, "this redeploy"));
        }
        Ok(auth)
    };
    let read_before = async {
        let target = target::ready(&env, old.clone(), None).ok()?;
        let reach = Reach { env: env.clone(), aws: aws.clone(), target };
        Some(reach.driver().fetch_instances(Some(&name)).await)
    };
    let (auth, before) = tokio::join!(check_keys, read_before);
    let auth = auth?;
    let before = match before {
        Some(Ok(rows)) => Some(rows.first().and_then(|r| r.number().map(str::to_owned))),
        Some(Err(err)) => {
            context.printer.note(&format!("could not read instance {name} before the redeploy: {err}"));
            None
        }
        None => None,
    };
    let exists_before = before.as_ref().is_none_or(Option::is_some);
    let number_before = before.flatten();
    if let Some(signal) = crate::interrupt::requested() {
        return Err(Error::Interrupted {
            signal,
            message: format!("interrupted ({}): nothing was changed", signal.name()),
            fix: None,
        });
    }
    let reason = format!("evoctl redeploy {}", env.name);
    if args.task_definition.is_some() {
        ecs.update_service()
            .cluster(&env.cluster)
            .service(&env.service)
            .task_definition(&definition)
            .force_new_deployment(true)
            .send()
            .await
            .map_err(|e| Error::from(sdk_failure("UpdateService", e)))?;
        context.printer.note(&format!("{} now runs {shown_definition}; ECS stops task {} first…", env.service, old.id));
    }
    let deadline = args.timeout;
    let remaining = || deadline.saturating_sub(started.elapsed());
    // From here a Ctrl-C ends the wait with where things are and what to run next (ECS goes on).
    let sent = if args.task_definition.is_some() { "UpdateService was sent" } else { "StopTask was sent" };
    let next = format!(
        "`evoctl status {0}` shows when the new task runs; then `evoctl instance state {0}` says whether the number is still linked (if not: `evoctl connect {0}`)",
        env.name
    );
    let interrupted = |signal: crate::error::Signal, state: String| Error::Interrupted {
        signal,
        message: format!("interrupted ({}) {state}", signal.name()),
        fix: Some(next.clone()),
    };
    let stopping = Stopping {
        env: &env.name,
        cluster: &env.cluster,
        id: &old.id,
        arn: &old.arn,
        // With a new revision the deployment stops it.
        reason: args.task_definition.is_none().then_some(reason.as_str()),
        since: started,
        timeout: deadline,
    };
    stop_and_wait(context, &ecs, stopping, |signal| {
        interrupted(
            signal,
            format!(
                "while task {} stops: {sent}, so ECS goes on stopping it and then starts the new task; no new task was seen yet",
                old.id
            ),
        )
    })
    .await?;
    context.printer.note(&format!("task {} is STOPPED; waiting for the new task…", old.id));
    let target = loop {
        let live = discovery::live_tasks(&ecs, service_ref).await?;
        if live.len() > 1 {
            let ids: Vec<&str> = live.iter().map(|t| t.id.as_str()).collect();
            return Err(Error::refused(
                format!(
                    "{} has {} live tasks after the redeploy ({}): two connections on one number",
                    env.name,
                    live.len(),
                    ids.join(", ")
                ),
                discovery::stop_extra_fix(&env.name, &live, 1)
                    .unwrap_or_else(|| format!("check `evoctl status {}`", env.name)),
            ));
        }
        let ready = live.into_iter().find(|t| t.id != old.id).and_then(|t| target::ready(&env, t, None).ok());
        if let Some(target) = ready {
            break target;
        }
        if remaining().is_zero() {
            return Err(Error::Timeout {
                message: format!("no new task of {} runs with its exec agent after {} s", env.name, deadline.as_secs()),
                fix: Some(format!("`evoctl status {}` shows the service's tasks and events", env.name)),
            });
        }
        tokio::select! {
            () = tokio::time::sleep(POLL.min(remaining())) => {}
            signal = crate::interrupt::wait() => return Err(interrupted(signal, format!(
                "after task {} STOPPED: {sent}; the new task has not started yet (ECS starts it)",
                old.id
            ))),
        }
    };
    let new_task = target.task.id.clone();
    context.printer.note(&format!("task {new_task} is RUNNING; asking its Evolution for instance {name}…"));
    let reach = Reach { env: env.clone(), aws: aws.clone(), target };
    let driver = reach.driver();
    // The instance's answer (the same Ctrl-C handling: the new task runs, its instance unread).
    let check = async {
        if !exists_before {
            return Ok::<_, Error>((None, None));
        }
        let mut close_since: Option<Instant> = None;
        let asked = Instant::now();
        let left = || remaining().min(INSTANCE_WAIT.saturating_sub(asked.elapsed()));
        let state = loop {
            // A process still starting answers with an error or without the instance: ask again.
            let state = driver.connection_state(&name).await.ok();
            match state.as_deref() {
                Some("open") => break "open".to_owned(),
                Some("close") if close_since.is_some_and(|since| since.elapsed() >= CLOSE_SETTLES) => {
                    break "close".to_owned();
                }
                Some("close") => close_since = close_since.or(Some(Instant::now())),
                _ => close_since = None,
            }
            if left().is_zero() {
                break state.unwrap_or_else(|| "unknown".into());
            }
            tokio::time::sleep(Duration::from_secs(1).min(left())).await;
        };
        let rows = driver.fetch_instances(Some(&name)).await?;
        Ok((Some(state), rows.first().and_then(|r| r.number().map(str::to_owned))))
    };
    let (state, number_after) = tokio::select! {
        checked = check => checked?,
        signal = crate::interrupt::wait() => return Err(interrupted(signal, format!(
            "after task {} STOPPED and task {new_task} started: its instance {name} was not checked yet",
            old.id
        ))),
    };
    let kept = state.as_deref() == Some("open") && number_before.is_some() && number_after == number_before;
    let needs_link = state.is_some() && !kept;
    let fix = needs_link.then(|| format!("evoctl connect {}", env.name));
    let report = RedeployReport {
        schema: "evoctl.redeploy/v1",
        env: &env.name,
        instance: &name,
        old_task: &old.id,
        new_task: &new_task,
        task_definition: &shown_definition,
        keys: auth.short(),
        persistent: auth.persistent(),
        state: state.as_deref(),
        number_before: number_before.as_deref(),
        number_after: number_after.as_deref(),
        kept,
        needs_link,
        fix: fix.clone(),
        seconds: crate::output::seconds(started.elapsed()),
    };
    context.printer.data(&report, || {
        let head = format!("redeployed {}: task {} -> {new_task} ({shown_definition})", env.name, old.id);
        let tail = match (&state, kept) {
            (None, _) => format!("no instance {name} to check"),
            (_, true) => format!(
                "instance {name} is open on {}, the same number: no new link needed",
                number_before.as_deref().unwrap_or_default()
            ),
            (Some(state), false) => format!(
                "instance {name} came back {state}{}: the number needs a new link: `evoctl connect {}`",
                match &number_before {
                    Some(number) => format!(" (it was linked to {number})"),
                    None => String::new(),
                },
                env.name
            ),
        };
        format!("{head}\n{tail}\n")
    });
    Ok(if needs_link { exit::FINDINGS } else { exit::OK })
}
