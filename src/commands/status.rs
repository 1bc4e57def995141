//! `evoctl status [ENV..]`: the service, scaling, deployment settings and live tasks of each
//! environment, all environments read concurrently.

use super::Context;
use crate::aws::Aws;
use crate::aws::discovery::{self, DeploymentSettings, LiveTask, ScalableRange, ServiceRef};
use crate::cli::StatusArgs;
use crate::config::Environment;
use crate::error::Result;
use crate::exit;
use crate::output::table;
use serde::Serialize;

/// `--output json` document (schema `evoctl.status/v1`).
#[derive(Debug, Serialize)]
pub struct StatusReport {
    pub schema: &'static str,
    pub region: String,
    pub environments: Vec<EnvStatus>,
}

/// One environment's state.
#[derive(Debug, Serialize)]
pub struct EnvStatus {
    pub env: String,
    pub cluster: String,
    pub service: String,
    pub desired_count: i32,
    pub running_count: i32,
    pub pending_count: i32,
    /// The scalable target, or null when the service has none.
    pub scalable_target: Option<ScalableRange>,
    pub deployment: DeploymentSettings,
    pub enable_execute_command: bool,
    pub tasks: Vec<TaskStatus>,
}

/// One live task.
#[derive(Debug, Serialize)]
pub struct TaskStatus {
    pub id: String,
    pub arn: String,
    pub last_status: String,
    pub desired_status: String,
    pub started_at: Option<String>,
    pub platform_version: Option<String>,
    /// ExecuteCommandAgent lastStatus of the configured container.
    pub exec_agent: Option<String>,
}

pub async fn run(context: &Context, args: &StatusArgs) -> Result<u8> {
    let config = context.config()?;
    let envs = config.select(&args.envs)?;
    let aws = context.aws(&config).await?;
    let environments = futures::future::try_join_all(envs.iter().map(|env| env_status(&aws, env))).await?;
    let report = StatusReport { schema: "evoctl.status/v1", region: aws.region().to_owned(), environments };
    context.printer.data(&report, || render(&report));
    Ok(exit::OK)
}

async fn env_status(aws: &Aws, env: &Environment) -> Result<EnvStatus> {
    let (ecs, autoscaling) = (aws.ecs(), aws.autoscaling());
    let target = ServiceRef { cluster: &env.cluster, service: &env.service };
    let (service, tasks, range) = tokio::try_join!(
        discovery::service_state(&ecs, target),
        discovery::live_tasks(&ecs, target),
        discovery::scalable_range(&autoscaling, target),
    )?;
    Ok(EnvStatus {
        env: env.name.clone(),
        cluster: env.cluster.clone(),
        service: env.service.clone(),
        desired_count: service.desired_count,
        running_count: service.running_count,
        pending_count: service.pending_count,
        scalable_target: range,
        deployment: service.deployment,
        enable_execute_command: service.enable_execute_command,
        tasks: tasks.iter().map(|task| task_status(task, &env.container)).collect(),
    })
}

fn task_status(task: &LiveTask, container: &str) -> TaskStatus {
    TaskStatus {
        id: task.id.clone(),
        arn: task.arn.clone(),
        last_status: task.last_status.clone(),
        desired_status: task.desired_status.clone(),
        started_at: task.started_at.clone(),
        platform_version: task.platform_version.clone(),
        exec_agent: task.exec_agent(container).map(str::to_owned),
    }
}

fn render(report: &StatusReport) -> String {
    let services: Vec<Vec<String>> = report
        .environments
        .iter()
        .map(|e| {
            vec![
                e.env.clone(),
                e.cluster.clone(),
                e.service.clone(),
                e.desired_count.to_string(),
                e.running_count.to_string(),
                e.pending_count.to_string(),
                e.scalable_target.map_or("none".into(), |r| format!("{}/{}", r.min_capacity, r.max_capacity)),
                format!("{}/{}", e.deployment.maximum_percent, e.deployment.minimum_healthy_percent),
                e.tasks.len().to_string(),
            ]
        })
        .collect();
    let mut out = table(
        &["ENV", "CLUSTER", "SERVICE", "DESIRED", "RUNNING", "PENDING", "MIN/MAX", "DEPLOY MAX/MIN%", "LIVE"],
        &services,
    );
    let tasks: Vec<Vec<String>> = report
        .environments
        .iter()
        .flat_map(|e| {
            e.tasks.iter().map(|t| {
                vec![
                    e.env.clone(),
                    t.id.clone(),
                    t.last_status.clone(),
                    t.started_at.clone().unwrap_or_else(|| "-".into()),
                    t.exec_agent.clone().unwrap_or_else(|| "-".into()),
                ]
            })
        })
        .collect();
    out.push('\n');
    if tasks.is_empty() {
        out.push_str("no live tasks\n");
    } else {
        out.push_str(&table(&["ENV", "TASK", "STATUS", "STARTED", "EXEC AGENT"], &tasks));
    }
    out
}
