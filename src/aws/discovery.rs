//! Finding an environment's service, its live tasks and its scalable target.
//!
//! Live tasks are found the careful way: ListTasks for desired RUNNING *and* desired STOPPED
//! (a task being replaced has desired STOPPED but may still hold the WhatsApp socket), then
//! DescribeTasks, keeping every task whose lastStatus is not STOPPED and whose `group` is
//! `service:NAME` (ListTasks' service filter is not honoured everywhere, and a shared task
//! family can list a sibling service's tasks). Independent calls run concurrently.

use super::{AwsFailure, sdk_failure};
use crate::config::Environment;
use crate::error::{Error, Result};
use aws_sdk_applicationautoscaling::types::{ScalableDimension, ServiceNamespace};
use aws_sdk_ecs::types::DesiredStatus;
use aws_smithy_types::DateTime;
use aws_smithy_types::date_time::Format;
use serde::Serialize;

/// Where an environment's service lives.
#[derive(Debug, Clone, Copy)]
pub struct ServiceRef<'a> {
    pub cluster: &'a str,
    pub service: &'a str,
}

impl ServiceRef<'_> {
    /// The Application Auto Scaling resource id of the service.
    pub fn resource_id(&self) -> String {
        format!("service/{}/{}", self.cluster, self.service)
    }
}

/// The service's counts and the settings that decide whether two tasks can overlap.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServiceState {
    pub desired_count: i32,
    pub running_count: i32,
    pub pending_count: i32,
    pub task_definition: Option<String>,
    pub enable_execute_command: bool,
    pub deployment: DeploymentSettings,
    pub az_rebalancing: Option<String>,
    /// The account the service is in (from its ARN); reports carry it beside the region.
    #[serde(skip)]
    pub account: Option<String>,
}

/// deploymentConfiguration percentages (AWS defaults 200/100 when unset).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct DeploymentSettings {
    pub maximum_percent: i32,
    pub minimum_healthy_percent: i32,
}

/// One task that is not STOPPED.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LiveTask {
    pub id: String,
    pub arn: String,
    pub last_status: String,
    pub desired_status: String,
    pub started_at: Option<String>,
    pub platform_version: Option<String>,
    pub enable_execute_command: bool,
    pub containers: Vec<TaskContainer>,
}

#[cfg(test)]
impl LiveTask {
    /// A RUNNING task with exec on and no containers, for unit tests.
    pub fn running(id: &str) -> LiveTask {
        LiveTask {
            id: id.into(),
            arn: format!("arn:aws:ecs:us-east-1:123456789012:task/c/{id}"),
            last_status: "RUNNING".into(),
            desired_status: "RUNNING".into(),
            started_at: None,
            platform_version: None,
            enable_execute_command: true,
            containers: Vec::new(),
        }
    }
}

/// A container of a live task, with what exec needs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TaskContainer {
    pub name: String,
    pub runtime_id: Option<String>,
    pub exec_agent: Option<String>,
}

impl LiveTask {
    /// The ExecuteCommandAgent status of the named container (or the first one).
    pub fn exec_agent(&self, container: &str) -> Option<&str> {
        self.containers
            .iter()
            .find(|c| c.name == container)
            .or_else(|| self.containers.first())
            .and_then(|c| c.exec_agent.as_deref())
    }
}

/// The scalable target's range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ScalableRange {
    pub min_capacity: i32,
    pub max_capacity: i32,
}

/// The newest entry of a service's event log (DescribeServices `events`, newest first).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ServiceEvent {
    /// When ECS logged it (RFC 3339).
    pub at: Option<String>,
    pub message: String,
}

/// A task of the service that has stopped (ECS keeps listing one for about an hour).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoppedTask {
    pub id: String,
    /// When it stopped (RFC 3339).
    pub stopped_at: Option<String>,
    /// ECS's `stopCode` (`ServiceSchedulerInitiated`, `UserInitiated`, `EssentialContainerExited`, …).
    pub stop_code: Option<String>,
    /// ECS's `stoppedReason`, as ECS words it.
    pub stopped_reason: Option<String>,
    /// When it stopped, in seconds since the Unix epoch.
    #[serde(skip)]
    pub stopped_at_secs: Option<i64>,
}

/// DescribeServices for one service; a missing cluster or service is "not found".
pub async fn service_state(ecs: &aws_sdk_ecs::Client, target: ServiceRef<'_>) -> Result<ServiceState> {
    Ok(service_state_and_event(ecs, target).await?.0)
}

/// [`service_state`], with the newest event of the service's log.
pub async fn service_state_and_event(
    ecs: &aws_sdk_ecs::Client,
    target: ServiceRef<'_>,
) -> Result<(ServiceState, Option<ServiceEvent>)> {
    let out = ecs
        .describe_services()
        .cluster(target.cluster)
        .services(target.service)
        .send()
        .await
        .map_err(|e| not_found_or(sdk_failure("DescribeServices", e), target))?;
    let Some(service) = out.services().iter().find(|s| s.status() != Some("INACTIVE")) else {
        // DescribeServices reports a missing service in `failures`, not as an error.
        return Err(service_not_found(target, None));
    };
    let deployment = service.deployment_configuration();
    let event = service.events().first().map(|e| ServiceEvent {
        at: e.created_at().and_then(|t| DateTime::from_secs(t.secs()).fmt(Format::DateTime).ok()),
        message: e.message().unwrap_or_default().to_owned(),
    });
    let state = ServiceState {
        desired_count: service.desired_count(),
        running_count: service.running_count(),
        pending_count: service.pending_count(),
        task_definition: service.task_definition().map(str::to_owned),
        enable_execute_command: service.enable_execute_command(),
        deployment: DeploymentSettings {
            maximum_percent: deployment.and_then(|d| d.maximum_percent()).unwrap_or(200),
            minimum_healthy_percent: deployment.and_then(|d| d.minimum_healthy_percent()).unwrap_or(100),
        },
        az_rebalancing: service.availability_zone_rebalancing().map(|r| r.as_str().to_owned()),
        account: service.service_arn().and_then(|arn| arn.split(':').nth(4)).map(str::to_owned),
    };
    Ok((state, event))
}

/// A service, its live tasks and its scalable target, read together.
#[derive(Debug, Clone, PartialEq)]
pub struct ServiceSnapshot {
    pub service: ServiceState,
    pub tasks: Vec<LiveTask>,
    pub range: Option<ScalableRange>,
}

/// DescribeServices, the live tasks and DescribeScalableTargets, concurrently.
pub async fn snapshot(
    ecs: &aws_sdk_ecs::Client,
    autoscaling: &aws_sdk_applicationautoscaling::Client,
    target: ServiceRef<'_>,
) -> Result<ServiceSnapshot> {
    let (service, tasks, range) =
        tokio::try_join!(service_state(ecs, target), live_tasks(ecs, target), scalable_range(autoscaling, target))?;
    Ok(ServiceSnapshot { service, tasks, range })
}

/// Every task of the service whose lastStatus is not STOPPED, oldest first.
pub async fn live_tasks(ecs: &aws_sdk_ecs::Client, target: ServiceRef<'_>) -> Result<Vec<LiveTask>> {
    Ok(tasks_and_last_stopped(ecs, target).await?.0)
}

/// [`live_tasks`], and the task of the service that stopped last among those ECS still lists
/// (from the same calls).
pub async fn tasks_and_last_stopped(
    ecs: &aws_sdk_ecs::Client,
    target: ServiceRef<'_>,
) -> Result<(Vec<LiveTask>, Option<StoppedTask>)> {
    let listed = listed_tasks(ecs, target).await?;
    let last_stopped = listed
        .iter()
        .filter(|task| task.last_status() == Some("STOPPED"))
        .max_by(|a, b| {
            let stopped = |t: &aws_sdk_ecs::types::Task| t.stopped_at().map(|s| s.as_secs_f64());
            stopped(a).partial_cmp(&stopped(b)).unwrap_or(std::cmp::Ordering::Equal)
        })
        .map(|task| StoppedTask {
            id: task.task_arn().unwrap_or_default().rsplit('/').next().unwrap_or_default().to_owned(),
            stopped_at: task.stopped_at().and_then(|t| DateTime::from_secs(t.secs()).fmt(Format::DateTime).ok()),
            stop_code: task.stop_code().map(|c| c.as_str().to_owned()),
            stopped_reason: task.stopped_reason().map(str::to_owned),
            stopped_at_secs: task.stopped_at().map(|t| t.secs()),
        });
    let mut tasks: Vec<(Option<f64>, LiveTask)> = listed
        .iter()
        .filter(|task| task.last_status() != Some("STOPPED"))
        .map(|task| (task.created_at().map(|t| t.as_secs_f64()), convert_task(task)))
        .collect();
    tracing::debug!(cluster = target.cluster, service = target.service, live = tasks.len(), "live tasks");
    tasks.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal).then(a.1.id.cmp(&b.1.id)));
    Ok((tasks.into_iter().map(|(_, task)| task).collect(), last_stopped))
}

/// The tasks to stop when more are live than may be: of the tasks still wanted (desired
/// RUNNING; one already being stopped needs no stop), every one after the `keep` oldest (the
/// longest-running keeps the session; `tasks` are oldest first, as [`live_tasks`] gives them).
pub fn extra_tasks(tasks: &[LiveTask], keep: usize) -> Vec<&LiveTask> {
    tasks.iter().filter(|t| t.desired_status == "RUNNING").skip(keep).collect()
}

/// What ends the extra tasks of `env` (keeping its `keep` oldest wanted ones): the
/// `evoctl task stop` of each, or, when the extras are already being stopped, the wait for
/// ECS; `None` when nothing is extra.
pub fn stop_extra_fix(env: &str, tasks: &[LiveTask], keep: usize) -> Option<String> {
    let extras = extra_tasks(tasks, keep);
    if !extras.is_empty() {
        let stops: Vec<String> = extras.iter().map(|t| format!("`evoctl task stop {env} {}`", t.id)).collect();
        let kept: Vec<&str> =
            tasks.iter().filter(|t| t.desired_status == "RUNNING").take(keep).map(|t| t.id.as_str()).collect();
        let kept = match kept.as_slice() {
            [] => String::new(),
            [one] => format!(" (keeps {one}, the longest-running)"),
            many => format!(" (keeps {}, the longest-running)", many.join(", ")),
        };
        return Some(format!("stop the extra task: {}{kept}", stops.join(", then ")));
    }
    let stopping: Vec<String> = tasks
        .iter()
        .filter(|t| t.desired_status != "RUNNING")
        .map(|t| format!("{} ({})", t.id, t.last_status))
        .collect();
    (!stopping.is_empty()).then(|| {
        format!("ECS is already stopping {}: wait until it is STOPPED (`evoctl status {env}`)", stopping.join(", "))
    })
}

/// The runtime id of `container` in each task of the service that ECS still lists (live ones,
/// and stopped ones for about an hour after they stop), newest first, at most `limit`: the
/// names of their awslogs streams when the container logs without a stream prefix.
pub async fn container_runtime_ids(
    ecs: &aws_sdk_ecs::Client,
    target: ServiceRef<'_>,
    container: &str,
    limit: usize,
) -> Result<Vec<String>> {
    let mut tasks = listed_tasks(ecs, target).await?;
    tasks.sort_by(|a, b| {
        let created = |t: &aws_sdk_ecs::types::Task| t.created_at().map(|c| c.as_secs_f64());
        created(b).partial_cmp(&created(a)).unwrap_or(std::cmp::Ordering::Equal)
    });
    Ok(tasks
        .iter()
        .filter_map(|task| task.containers().iter().find(|c| c.name() == Some(container))?.runtime_id())
        .map(str::to_owned)
        .take(limit)
        .collect())
}

/// Every task of the service that ListTasks names (desired RUNNING, then desired STOPPED),
/// described.
async fn listed_tasks(ecs: &aws_sdk_ecs::Client, target: ServiceRef<'_>) -> Result<Vec<aws_sdk_ecs::types::Task>> {
    // One after the other, RUNNING first: a task's desired status only goes RUNNING -> STOPPED,
    // so a task the scheduler stops between the two calls is in the second list. Listed
    // concurrently, the STOPPED list could be read before the change and the RUNNING list
    // after it, and a task still draining would be missed (a wait for 0 would end early).
    let running = list_task_arns(ecs, target, DesiredStatus::Running).await?;
    let stopped = list_task_arns(ecs, target, DesiredStatus::Stopped).await?;
    tracing::debug!(
        cluster = target.cluster,
        service = target.service,
        desired_running = running.len(),
        desired_stopped = stopped.len(),
        "listed tasks"
    );
    let mut arns = running;
    for arn in stopped {
        if !arns.contains(&arn) {
            arns.push(arn);
        }
    }
    let batches = arns.chunks(100).map(|chunk| describe_tasks(ecs, target, chunk.to_vec()));
    let group = format!("service:{}", target.service);
    Ok(futures::future::try_join_all(batches)
        .await?
        .into_iter()
        .flatten()
        .filter(|task| task.group() == Some(group.as_str()))
        .collect())
}

async fn list_task_arns(
    ecs: &aws_sdk_ecs::Client,
    target: ServiceRef<'_>,
    desired: DesiredStatus,
) -> Result<Vec<String>> {
    ecs.list_tasks()
        .cluster(target.cluster)
        .service_name(target.service)
        .desired_status(desired)
        .into_paginator()
        .items()
        .send()
        .try_collect()
        .await
        .map_err(|e| not_found_or(sdk_failure("ListTasks", e), target))
}

async fn describe_tasks(
    ecs: &aws_sdk_ecs::Client,
    target: ServiceRef<'_>,
    arns: Vec<String>,
) -> Result<Vec<aws_sdk_ecs::types::Task>> {
    let out = ecs
        .describe_tasks()
        .cluster(target.cluster)
        .set_tasks(Some(arns))
        .send()
        .await
        .map_err(|e| not_found_or(sdk_failure("DescribeTasks", e), target))?;
    Ok(out.tasks().to_vec())
}

fn convert_task(task: &aws_sdk_ecs::types::Task) -> LiveTask {
    let arn = task.task_arn().unwrap_or_default().to_owned();
    LiveTask {
        id: arn.rsplit('/').next().unwrap_or_default().to_owned(),
        arn,
        last_status: task.last_status().unwrap_or("UNKNOWN").to_owned(),
        desired_status: task.desired_status().unwrap_or("UNKNOWN").to_owned(),
        started_at: task.started_at().and_then(|t| DateTime::from_secs(t.secs()).fmt(Format::DateTime).ok()),
        platform_version: task.platform_version().map(str::to_owned),
        enable_execute_command: task.enable_execute_command(),
        containers: task
            .containers()
            .iter()
            .map(|c| TaskContainer {
                name: c.name().unwrap_or_default().to_owned(),
                runtime_id: c.runtime_id().map(str::to_owned),
                exec_agent: c
                    .managed_agents()
                    .iter()
                    .find(|a| a.name().map(|n| n.as_str()) == Some("ExecuteCommandAgent"))
                    .and_then(|a| a.last_status().map(str::to_owned)),
            })
            .collect(),
    }
}

/// The service's scalable target range, or `None` when it has none.
pub async fn scalable_range(
    autoscaling: &aws_sdk_applicationautoscaling::Client,
    target: ServiceRef<'_>,
) -> Result<Option<ScalableRange>> {
    let out = autoscaling
        .describe_scalable_targets()
        .service_namespace(ServiceNamespace::Ecs)
        .resource_ids(target.resource_id())
        .scalable_dimension(ScalableDimension::EcsServiceDesiredCount)
        .send()
        .await
        .map_err(|e| Error::from(sdk_failure("DescribeScalableTargets", e)))?;
    Ok(out
        .scalable_targets()
        .first()
        .map(|t| ScalableRange { min_capacity: t.min_capacity(), max_capacity: t.max_capacity() }))
}

/// Map "cluster/service not found" codes to exit 3 with the fix; everything else stays an API error.
fn not_found_or(failure: AwsFailure, target: ServiceRef<'_>) -> Error {
    match failure.code.as_str() {
        "ClusterNotFoundException" => Error::not_found(
            format!("cluster {} not found ({}: {})", target.cluster, failure.action, failure.message),
            "check `cluster` for this environment in evoctl.toml and the region (clusters are regional)",
        ),
        "ServiceNotFoundException" | "ServiceNotActiveException" => service_not_found(target, Some(&failure.message)),
        _ => failure.into_error(),
    }
}

fn service_not_found(target: ServiceRef<'_>, detail: Option<&str>) -> Error {
    Error::not_found(
        format!(
            "service {} not found in cluster {}{}",
            target.service,
            target.cluster,
            detail.map(|d| format!(" ({d})")).unwrap_or_default()
        ),
        "check `service` (or [service] name) for this environment in evoctl.toml, and the region",
    )
}

/// The environment's one live task. None is "not found" (exit 3) with the service's counts; more
/// than one is refused (exit 4) naming every task: two connections on one number is the conflict.
pub async fn the_live_task(ecs: &aws_sdk_ecs::Client, env: &Environment) -> Result<LiveTask> {
    Ok(service_and_live_task(ecs, env).await?.1)
}

/// [`the_live_task`], with the service as the same read saw it.
pub async fn service_and_live_task(ecs: &aws_sdk_ecs::Client, env: &Environment) -> Result<(ServiceState, LiveTask)> {
    let target = ServiceRef { cluster: &env.cluster, service: &env.service };
    let (service, mut tasks) = tokio::try_join!(service_state(ecs, target), live_tasks(ecs, target))?;
    match tasks.len() {
        1 => Ok((service, tasks.remove(0))),
        0 => {
            let fix = match env.scaling {
                Some(scaling) if scaling.max == 0 => {
                    format!("{} is configured to run no task ({scaling}); nothing to connect to here", env.name)
                }
                _ if service.desired_count > 0 => format!(
                    "the service wants {} task(s): wait for ECS to start it and check `evoctl status {}`",
                    service.desired_count, env.name
                ),
                _ => format!("scale it to its configured size: `evoctl scale {} --apply`", env.name),
            };
            Err(Error::not_found(
                format!(
                    "no live task for {} (service {} in {}: desired {}, running {}, pending {})",
                    env.name,
                    env.service,
                    env.cluster,
                    service.desired_count,
                    service.running_count,
                    service.pending_count
                ),
                fix,
            ))
        }
        count => {
            let listed: Vec<String> =
                tasks.iter().map(|t| format!("{} ({}, desired {})", t.id, t.last_status, t.desired_status)).collect();
            Err(Error::refused(
                format!(
                    "{count} live tasks for {} where there must be one (two WhatsApp connections on one number loop in conflict/replaced): {}",
                    env.name,
                    listed.join(", ")
                ),
                stop_extra_fix(&env.name, &tasks, 1).unwrap_or_else(|| format!("check `evoctl status {}`", env.name)),
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn task(id: &str, last: &str, desired: &str) -> LiveTask {
        LiveTask {
            id: id.into(),
            arn: format!("arn:aws:ecs:us-east-1:1:task/c/{id}"),
            last_status: last.into(),
            desired_status: desired.into(),
            started_at: None,
            platform_version: None,
            enable_execute_command: true,
            containers: Vec::new(),
        }
    }

    #[test]
    fn the_newest_wanted_tasks_are_the_extras_and_a_stopping_one_is_waited_for() {
        let two = [task("old", "RUNNING", "RUNNING"), task("new", "RUNNING", "RUNNING")];
        assert_eq!(extra_tasks(&two, 1).iter().map(|t| t.id.as_str()).collect::<Vec<_>>(), ["new"]);
        assert_eq!(
            stop_extra_fix("production", &two, 1).as_deref(),
            Some("stop the extra task: `evoctl task stop production new` (keeps old, the longest-running)")
        );
        assert_eq!(
            stop_extra_fix("staging", &two, 0).as_deref(),
            Some("stop the extra task: `evoctl task stop staging old`, then `evoctl task stop staging new`")
        );
        let draining = [task("old", "DEACTIVATING", "STOPPED"), task("new", "RUNNING", "RUNNING")];
        assert_eq!(
            stop_extra_fix("production", &draining, 1).as_deref(),
            Some("ECS is already stopping old (DEACTIVATING): wait until it is STOPPED (`evoctl status production`)")
        );
        assert_eq!(stop_extra_fix("production", &two[..1], 1), None);
    }
}
