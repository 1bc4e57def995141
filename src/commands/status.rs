//! `evoctl status [ENV..] [--check]`: the service, scaling, deployment settings and live tasks
//! of each environment, all environments read concurrently, each marked when it has drifted
//! from evoctl.toml or is unsafe (two live connections on one number: see
//! [`crate::guard::drift`]); for an environment whose task stopped within the last hour, that
//! task's stop reason and the service's newest event. `--check` exits 1 on a mark. Only with
//! `--instances` is anything read inside a task: each environment's instance (its two states and
//! last disconnect, [`crate::evolution::reasons`]) in one exec session per environment with one
//! ready task; without it `status` stays on the AWS APIs.

use super::Context;
use crate::aws::Aws;
use crate::aws::discovery::{self, LiveTask, ScalableRange, ServiceEvent, ServiceRef, ServiceState, StoppedTask};
use crate::aws::scaling;
use crate::cli::StatusArgs;
use crate::config::Environment;
use crate::error::Result;
use crate::evolution::reasons::Connection;
use crate::exec::run::RunOptions;
use crate::exit;
use crate::guard::drift::{self, Observed};
use crate::output::table;
use serde::Serialize;
use std::time::Duration;

/// How recent a stopped task must be for `status` to show why it stopped (ECS lists stopped
/// tasks for about this long).
pub const RECENT_STOP: Duration = Duration::from_secs(3600);

/// `--output json` document (schema `evoctl.status/v1`).
#[derive(Debug, Serialize)]
pub struct StatusReport {
    pub schema: &'static str,
    /// The first environment's region (each environment carries its own).
    pub region: String,
    /// No environment shown has drifted or is unsafe.
    pub ok: bool,
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
    /// How its scaling or live tasks differ from evoctl.toml (empty: as configured).
    pub drift: Vec<String>,
    /// Why it holds, or shares, more than one live connection on its number (empty: it does
    /// not).
    #[serde(rename = "unsafe")]
    pub unsafe_live: Vec<String>,
    /// The service's task that stopped last, when it stopped within the last hour.
    pub last_stopped: Option<StoppedTask>,
    /// The service's newest event, shown with a task stopped within the last hour.
    pub latest_event: Option<ServiceEvent>,
    /// With `--instances`: the instance's two states and last disconnect (see `instance
    /// state`), or why it was not read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance: Option<InstanceStatus>,
}

/// The environment's instance, read from inside its task (`--instances`).
#[derive(Debug, Serialize)]
pub struct InstanceStatus {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connection: Option<Connection>,
    /// Why it was not read (no single ready task, or the call failed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unread: Option<String>,
}

/// What was read of one environment.
struct EnvRead {
    service: ServiceState,
    event: Option<ServiceEvent>,
    tasks: Vec<LiveTask>,
    last_stopped: Option<StoppedTask>,
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
    let shown = config.select(&args.envs)?;
    // Whether a shown environment is unsafe depends on the others of its number: they are
    // read too, and not shown.
    let envs: Vec<&Environment> = config
        .environments
        .iter()
        .filter(|env| shown.iter().any(|s| s.name == env.name || s.number == env.number))
        .collect();
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
    let observed: Vec<Observed<'_>> = envs
        .iter()
        .zip(&states)
        .zip(&services)
        .map(|((env, read), target)| Observed {
            env,
            target: ranges.get(&target.resource_id()).copied(),
            desired_count: read.service.desired_count,
            live: &read.tasks,
        })
        .collect();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    // Where each shown environment is among those read.
    let indices: Vec<usize> = shown
        .iter()
        .map(|env| envs.iter().position(|e| e.name == env.name).expect("a shown environment is read"))
        .collect();
    let mut environments: Vec<EnvStatus> = Vec::new();
    for (env, &index) in shown.iter().zip(&indices) {
        let (read, mine) = (&states[index], &observed[index]);
        let recent = read
            .last_stopped
            .clone()
            .filter(|stopped| stopped.stopped_at_secs.is_some_and(|at| now - at <= RECENT_STOP.as_secs() as i64));
        environments.push(EnvStatus {
            env: env.name.clone(),
            account: read
                .service
                .account
                .clone()
                .or_else(|| fleet.of(env).account_hint().map(str::to_owned))
                .unwrap_or_default(),
            region: fleet.of(env).region().to_owned(),
            cluster: env.cluster.clone(),
            service: env.service.clone(),
            state: read.service.clone(),
            scalable_target: mine.target,
            tasks: read
                .tasks
                .iter()
                .map(|task| TaskStatus {
                    exec_agent: task.exec_agent(&env.container).map(str::to_owned),
                    task: task.clone(),
                })
                .collect(),
            drift: drift::drift(mine),
            unsafe_live: drift::unsafe_live(mine, &observed),
            latest_event: recent.as_ref().and(read.event.clone()),
            last_stopped: recent,
            instance: None,
        });
    }
    if args.instances {
        let read = futures::future::join_all(
            shown.iter().zip(&indices).map(|(env, &index)| instance_status(fleet.of(env), env, &states[index].tasks)),
        )
        .await;
        for (status, instance) in environments.iter_mut().zip(read) {
            status.instance = Some(instance);
        }
    }
    let ok = environments.iter().all(|e| e.drift.is_empty() && e.unsafe_live.is_empty());
    let report =
        StatusReport { schema: "evoctl.status/v1", region: fleet.of(shown[0]).region().to_owned(), ok, environments };
    context.printer.data(&report, || render(&report));
    Ok(if args.check && !ok { exit::FINDINGS } else { exit::OK })
}

/// The instance of `env` read in its one ready task: one exec session (connectionState and
/// fetchInstances together) and, meanwhile, the task's log for the last stream error.
async fn instance_status(aws: &Aws, env: &Environment, tasks: &[LiveTask]) -> InstanceStatus {
    let name = env.instance.clone();
    let unread = |why: String| InstanceStatus { name: env.instance.clone(), connection: None, unread: Some(why) };
    let [task] = tasks else {
        return match tasks.len() {
            0 => unread(NO_TASK.into()),
            n => unread(format!("{n} live tasks (reading it needs exactly one)")),
        };
    };
    let target = match crate::exec::target::ready(env, task.clone(), None) {
        Ok(target) => target,
        Err(err) => return unread(err.to_string()),
    };
    let driver = crate::evolution::Driver { aws, target: &target, options: RunOptions::new(INSTANCE_READ) };
    match super::instance::read_connection(&driver, aws, env, &name, &env.name).await {
        Ok(connection) => InstanceStatus { name, connection: Some(connection), unread: None },
        Err(err) => unread(err.to_string()),
    }
}

/// Why an environment without a live task has no instance read.
const NO_TASK: &str = "no live task";

/// The bound on one environment's instance read.
const INSTANCE_READ: Duration = Duration::from_secs(30);

async fn env_state(aws: &Aws, env: &Environment) -> Result<EnvRead> {
    let ecs = aws.ecs();
    let target = ServiceRef { cluster: &env.cluster, service: &env.service };
    let ((service, event), (tasks, last_stopped)) = tokio::try_join!(
        discovery::service_state_and_event(&ecs, target),
        discovery::tasks_and_last_stopped(&ecs, target)
    )?;
    Ok(EnvRead { service, event, tasks, last_stopped })
}

/// The INSTANCE column: `NAME open`, `NAME close (db open), 440 …`, `NAME (no live task)` or
/// `NAME (not read)` (the notes say why).
fn instance_cell(instance: Option<&InstanceStatus>) -> String {
    match instance {
        Some(InstanceStatus { name, connection: Some(connection), .. }) => format!("{name} {}", connection.cell()),
        Some(InstanceStatus { name, unread: Some(why), .. }) if why == NO_TASK => format!("{name} ({NO_TASK})"),
        Some(InstanceStatus { name, .. }) => format!("{name} (not read)"),
        None => "-".into(),
    }
}

/// The CHECK column: `ok`, or the marks (`unsafe`, `drift`).
fn check_mark(env: &EnvStatus) -> String {
    let marks: Vec<&str> = [(!env.unsafe_live.is_empty(), "UNSAFE"), (!env.drift.is_empty(), "drift")]
        .into_iter()
        .filter_map(|(on, mark)| on.then_some(mark))
        .collect();
    if marks.is_empty() { "ok".into() } else { marks.join(",") }
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
                check_mark(e),
            ]
        })
        .collect();
    // With `--instances`, the instance of each environment in a last column.
    let with_instances = report.environments.iter().any(|e| e.instance.is_some());
    let services: Vec<Vec<String>> = services
        .into_iter()
        .zip(&report.environments)
        .map(|(mut row, e)| {
            if with_instances {
                row.push(instance_cell(e.instance.as_ref()));
            }
            row
        })
        .collect();
    let mut headers = vec![
        "ENV",
        "CLUSTER",
        "SERVICE",
        "DESIRED",
        "RUNNING",
        "PENDING",
        "MIN/MAX",
        "DEPLOY MAX/MIN%",
        "LIVE",
        "CHECK",
    ];
    if with_instances {
        headers.push("INSTANCE");
    }
    let first = report.environments.first().map(|e| (&e.account, &e.region));
    let mut out = if report.environments.iter().all(|e| Some((&e.account, &e.region)) == first) {
        table(&headers, &services)
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
        headers.splice(1..1, ["ACCOUNT", "REGION"]);
        table(&headers, &rows)
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
    let mut notes: Vec<Vec<String>> = Vec::new();
    for e in &report.environments {
        let mut note = |what: &str, detail: String| notes.push(vec![e.env.clone(), what.to_owned(), detail]);
        for issue in &e.unsafe_live {
            note("UNSAFE", issue.clone());
        }
        for issue in &e.drift {
            note("drift", issue.clone());
        }
        if let Some(stopped) = &e.last_stopped {
            note(
                "stopped",
                format!(
                    "task {} at {}: {}{}",
                    stopped.id,
                    stopped.stopped_at.as_deref().unwrap_or("?"),
                    stopped.stopped_reason.as_deref().unwrap_or("no reason given"),
                    stopped.stop_code.as_deref().map(|code| format!(" ({code})")).unwrap_or_default()
                ),
            );
        }
        if let Some(event) = &e.latest_event {
            note("event", format!("{} {}", event.at.as_deref().unwrap_or("?"), event.message));
        }
        if let Some(InstanceStatus { unread: Some(why), .. }) = &e.instance
            && why != NO_TASK
        {
            note("instance", format!("not read: {why}"));
        }
        if let Some(InstanceStatus { connection: Some(connection), .. }) = &e.instance {
            if let Some(disagreement) = &connection.disagreement {
                note("instance", disagreement.clone());
            }
            if let Some(fix) = &connection.fix {
                note("fix", fix.clone());
            }
        }
    }
    if !notes.is_empty() {
        out.push('\n');
        out.push_str(&table(&["ENV", "WHAT", "DETAIL"], &notes));
    }
    out
}
