//! Which container an exec goes to, and whether it can take one: the environment's single live
//! task, the container by name, exec enabled on the task and its ExecuteCommandAgent RUNNING.

use crate::aws::discovery::{self, LiveTask, ServiceRef};
use crate::config::Environment;
use crate::error::{Error, ExecKind, Result};

/// A container that is ready for ExecuteCommand.
#[derive(Debug, Clone)]
pub struct ExecTarget {
    pub env: String,
    pub cluster: String,
    pub task: LiveTask,
    pub container: String,
}

impl ExecTarget {
    /// The Session Manager target id (`ecs:<cluster>_<task>_<runtime id>`), used for KMS.
    pub fn ssm_target(&self) -> String {
        let runtime = self
            .task
            .containers
            .iter()
            .find(|c| c.name == self.container)
            .and_then(|c| c.runtime_id.clone())
            .unwrap_or_default();
        let cluster = self.cluster.rsplit('/').next().unwrap_or(&self.cluster);
        format!("ecs:{cluster}_{}_{runtime}", self.task.id)
    }
}

/// Find the live task and check it can take an exec session.
pub async fn resolve(ecs: &aws_sdk_ecs::Client, env: &Environment, container: Option<&str>) -> Result<ExecTarget> {
    let task = discovery::the_live_task(ecs, env).await?;
    ready(env, task, container)
}

/// The oldest live task that can take an exec session, even when there are several: for
/// read-only looks at an environment that may be in trouble (never for changes).
pub async fn resolve_any(ecs: &aws_sdk_ecs::Client, env: &Environment) -> Result<ExecTarget> {
    let tasks = discovery::live_tasks(ecs, ServiceRef { cluster: &env.cluster, service: &env.service }).await?;
    let mut refusal = None;
    for task in tasks {
        match ready(env, task, None) {
            Ok(target) => return Ok(target),
            Err(err) => refusal = refusal.or(Some(err)),
        }
    }
    Err(refusal.unwrap_or_else(|| {
        Error::not_found(format!("no live task for {}", env.name), format!("check `evoctl status {}`", env.name))
    }))
}

/// Check that `task` can take an exec session in `container` (default: the environment's).
pub fn ready(env: &Environment, task: LiveTask, container: Option<&str>) -> Result<ExecTarget> {
    let container = container.unwrap_or(&env.container).to_owned();
    let Some(found) = task.containers.iter().find(|c| c.name == container) else {
        let names: Vec<&str> = task.containers.iter().map(|c| c.name.as_str()).collect();
        return Err(Error::usage(
            format!("task {} has no container `{container}` (it has: {})", task.id, names.join(", ")),
            "pass --container NAME, or set `container` for this environment in evoctl.toml",
        ));
    };
    if task.last_status != "RUNNING" {
        let starting = matches!(task.last_status.as_str(), "PROVISIONING" | "PENDING" | "ACTIVATING")
            && task.desired_status == "RUNNING";
        return Err(Error::exec(
            if starting { ExecKind::TaskStarting } else { ExecKind::TaskStopped },
            format!("task {} is {}, not RUNNING", task.id, task.last_status),
            format!("wait until it runs (`evoctl status {}`)", env.name),
        ));
    }
    if !task.enable_execute_command {
        return Err(Error::exec(
            ExecKind::ExecDisabled,
            format!("ECS Exec is not enabled on task {} (enableExecuteCommand is false)", task.id),
            format!(
                "enable it on the service and replace the task: `aws ecs update-service --cluster {} --service {} --enable-execute-command --force-new-deployment`",
                env.cluster, env.service
            ),
        ));
    }
    match found.exec_agent.as_deref() {
        Some("RUNNING") => {}
        status => {
            let kind = if status == Some("PENDING") { ExecKind::AgentStarting } else { ExecKind::AgentNotRunning };
            return Err(Error::exec(
                kind,
                format!(
                    "the ExecuteCommandAgent of {}/{container} is {}, not RUNNING",
                    task.id,
                    status.unwrap_or("missing")
                ),
                format!(
                    "wait a few seconds after the task starts; if it stays so, check the task role's ssmmessages permissions and `evoctl doctor {}`",
                    env.name
                ),
            ));
        }
    }
    Ok(ExecTarget { env: env.name.clone(), cluster: env.cluster.clone(), task, container })
}
