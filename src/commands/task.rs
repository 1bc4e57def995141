//! `evoctl task ENV`: the one live task id, for scripts. None is exit 3, more than one exit 4 —
//! two live tasks on one WhatsApp number is the conflict evoctl exists to prevent.

use super::Context;
use crate::aws::discovery::{self, ServiceRef};
use crate::cli::EnvArg;
use crate::error::{Error, Result};
use crate::exit;
use serde::Serialize;

#[derive(Serialize)]
struct TaskReport<'a> {
    schema: &'static str,
    env: &'a str,
    cluster: &'a str,
    task_id: &'a str,
    task_arn: &'a str,
    last_status: &'a str,
}

pub async fn run(context: &Context, args: &EnvArg) -> Result<u8> {
    let config = context.config()?;
    let env = config.environment(&args.env)?;
    let aws = context.aws(&config).await?;
    let ecs = aws.ecs();
    let target = ServiceRef { cluster: &env.cluster, service: &env.service };
    let (service, tasks) =
        tokio::try_join!(discovery::service_state(&ecs, target), discovery::live_tasks(&ecs, target))?;
    match tasks.as_slice() {
        [] => {
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
        [task] => {
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
        many => {
            let listed: Vec<String> =
                many.iter().map(|t| format!("{} ({}, desired {})", t.id, t.last_status, t.desired_status)).collect();
            Err(Error::refused(
                format!(
                    "{} live tasks for {} where there must be one (two WhatsApp connections on one number loop in conflict/replaced): {}",
                    many.len(),
                    env.name,
                    listed.join(", ")
                ),
                format!(
                    "stop the extra task (`aws ecs stop-task --cluster {} --task ID`) and check `evoctl audit {}`",
                    env.cluster, env.name
                ),
            ))
        }
    }
}
