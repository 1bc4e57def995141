//! `evoctl task ENV`: the one live task id, for scripts. None is exit 3, more than one exit 4 —
//! two live tasks on one WhatsApp number is the conflict evoctl exists to prevent.

use super::Context;
use crate::aws::discovery;
use crate::cli::EnvArg;
use crate::error::Result;
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
