//! `evoctl status [ENV..]`: the service, scaling, deployment settings and live tasks of each
//! environment, all environments read concurrently.

use super::Context;
use crate::aws::Aws;
use crate::aws::discovery::{self, LiveTask, ScalableRange, ServiceRef, ServiceState};
use crate::aws::scaling;
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
    /// desired/running/pending counts, task definition, deployment settings, exec, rebalancing.
    #[serde(flatten)]
    pub state: ServiceState,
    /// The scalable target, or null when the service has none.
    pub scalable_target: Option<ScalableRange>,
    pub tasks: Vec<TaskStatus>,
}

/// One live task.
#[derive(Debug, Serialize)]
pub struct TaskStatus {
    #[serde(flatten)]
    pub task: LiveTask,
    /// ExecuteCommandAgent lastStatus of the configured container.
    pub exec_agent: Option<String>,
}

pub async fn run(context: &Context, args: &StatusArgs) -> Result<u8> {
    let config = context.config()?;
    let envs = config.select(&args.envs)?;
    let aws = context.aws(&config).await?;
    // Scalable targets for every environment in one call per 50; the rest per environment.
    let services: Vec<ServiceRef<'_>> =
        envs.iter().map(|env| ServiceRef { cluster: &env.cluster, service: &env.service }).collect();
    let autoscaling = aws.autoscaling();
    let (ranges, states) = tokio::try_join!(
        scaling::ranges(&autoscaling, &services),
        crate::aws::for_each_env(envs.iter().copied(), |env| env_state(&aws, env)),
    )?;
    let environments = envs
        .iter()
        .zip(states)
        .zip(&services)
        .map(|((env, (service, tasks)), target)| EnvStatus {
            env: env.name.clone(),
            cluster: env.cluster.clone(),
            service: env.service.clone(),
            state: service,
            scalable_target: ranges.get(&target.resource_id()).copied(),
            tasks: tasks
                .into_iter()
                .map(|task| TaskStatus { exec_agent: task.exec_agent(&env.container).map(str::to_owned), task })
                .collect(),
        })
        .collect();
    let report = StatusReport { schema: "evoctl.status/v1", region: aws.region().to_owned(), environments };
    context.printer.data(&report, || render(&report));
    Ok(exit::OK)
}

async fn env_state(aws: &Aws, env: &Environment) -> Result<(ServiceState, Vec<LiveTask>)> {
    let ecs = aws.ecs();
    let target = ServiceRef { cluster: &env.cluster, service: &env.service };
    tokio::try_join!(discovery::service_state(&ecs, target), discovery::live_tasks(&ecs, target))
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
                e.state.desired_count.to_string(),
                e.state.running_count.to_string(),
                e.state.pending_count.to_string(),
                e.scalable_target.map_or("none".into(), |r| format!("{}/{}", r.min_capacity, r.max_capacity)),
                format!("{}/{}", e.state.deployment.maximum_percent, e.state.deployment.minimum_healthy_percent),
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
                    t.task.id.clone(),
                    t.task.last_status.clone(),
                    t.task.started_at.clone().unwrap_or_else(|| "-".into()),
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
