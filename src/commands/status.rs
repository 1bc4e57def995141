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
    /// The first environment's region (each environment carries its own).
    pub region: String,
    pub environments: Vec<EnvStatus>,
}

/// One environment's state.
#[derive(Debug, Serialize)]
pub struct EnvStatus {
    pub env: String,
    /// The account id and region it was read in.
    pub account: String,
    pub region: String,
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
    let fleet = crate::aws::Fleet::load(&context.aws_flags(), &config.aws, &envs).await?;
    // Scalable targets in one call per 50 services of each account; the rest per environment,
    // each with its own account's credentials.
    let services: Vec<ServiceRef<'_>> =
        envs.iter().map(|env| ServiceRef { cluster: &env.cluster, service: &env.service }).collect();
    let groups = fleet.partition(envs.iter().map(|env| env.name.as_str()));
    let ranges = futures::future::try_join_all(groups.iter().map(|(aws, members)| {
        let mine: Vec<ServiceRef<'_>> = members.iter().map(|i| services[*i]).collect();
        async move { scaling::ranges(&aws.autoscaling(), &mine).await }
    }));
    let (ranges, states) =
        tokio::try_join!(ranges, crate::aws::for_each_env(envs.iter().copied(), |env| env_state(fleet.of(env), env)),)?;
    let ranges: std::collections::HashMap<String, _> = ranges.into_iter().flatten().collect();
    let environments = envs
        .iter()
        .zip(states)
        .zip(&services)
        .map(|((env, (service, tasks)), target)| EnvStatus {
            env: env.name.clone(),
            account: service
                .account
                .clone()
                .or_else(|| fleet.of(env).account_hint().map(str::to_owned))
                .unwrap_or_default(),
            region: fleet.of(env).region().to_owned(),
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
    let report =
        StatusReport { schema: "evoctl.status/v1", region: fleet.of(envs[0]).region().to_owned(), environments };
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
    let first = report.environments.first().map(|e| (&e.account, &e.region));
    let mut out = if report.environments.iter().all(|e| Some((&e.account, &e.region)) == first) {
        table(
            &["ENV", "CLUSTER", "SERVICE", "DESIRED", "RUNNING", "PENDING", "MIN/MAX", "DEPLOY MAX/MIN%", "LIVE"],
            &services,
        )
    } else {
        // Across accounts or regions, each row says where it is.
        let rows: Vec<Vec<String>> = report
            .environments
            .iter()
            .zip(services)
            .map(|(e, mut row)| {
                row.insert(1, e.account.clone());
                row.insert(2, e.region.clone());
                row
            })
            .collect();
        table(
            &[
                "ENV",
                "ACCOUNT",
                "REGION",
                "CLUSTER",
                "SERVICE",
                "DESIRED",
                "RUNNING",
                "PENDING",
                "MIN/MAX",
                "DEPLOY MAX/MIN%",
                "LIVE",
            ],
            &rows,
        )
    };
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
