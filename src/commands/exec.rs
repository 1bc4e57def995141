//! `evoctl exec ENV -- CMD..` and `evoctl node ENV -e JS | FILE`: run in the container, stream
//! its stdout and stderr separately, and exit with the remote command's own status (125 when
//! evoctl itself failed, the `docker run` convention).

use super::Context;
use crate::cli::{Backend, ExecArgs, ExecTarget as TargetArgs, NodeArgs};
use crate::error::{Error, Result};
use crate::exec::envelope::{MAX_COMMAND_BYTES, RunSpec};
use crate::exec::run::{OutputSink, RunOptions, Transport};
use crate::exec::target;
use crate::exit;
use crate::output::Printer;
use std::time::Duration;

/// Streams remote output straight to the local stdout / stderr.
struct Passthrough<'a>(&'a Printer);

impl OutputSink for Passthrough<'_> {
    fn stdout(&mut self, bytes: &[u8]) {
        self.0.stdout_bytes(bytes);
    }
    fn stderr(&mut self, bytes: &[u8]) {
        self.0.stderr_bytes(bytes);
    }
}

pub async fn exec(context: &Context, args: &ExecArgs) -> u8 {
    let spec = RunSpec { argv: args.command.clone(), stdin: None };
    finish(context, run(context, &args.target, spec).await)
}

pub async fn node(context: &Context, args: &NodeArgs) -> u8 {
    let script = match (&args.eval, &args.file) {
        (Some(script), _) => Ok(script.clone()),
        (None, Some(path)) => std::fs::read_to_string(path).map_err(|source| Error::Io { path: path.clone(), source }),
        (None, None) => Err(Error::usage("give a script with -e JS or a FILE", "evoctl node ENV -e 'console.log(1)'")),
    };
    let spec = match script {
        // Small scripts ride in the command string; larger ones go over stdin (node reads `-`).
        Ok(script) if script.len() <= MAX_COMMAND_BYTES / 2 => {
            RunSpec { argv: vec!["node".into(), "-e".into(), script], stdin: None }
        }
        Ok(script) => RunSpec { argv: vec!["node".into(), "-".into()], stdin: Some(script.into_bytes()) },
        Err(err) => return finish(context, Err(err)),
    };
    finish(context, run(context, &args.target, spec).await)
}

async fn run(context: &Context, target_args: &TargetArgs, spec: RunSpec) -> Result<i32> {
    let config = context.config()?;
    let env = config.environment(&target_args.env)?;
    let aws = context.aws(&config).await?;
    let target = target::resolve(&aws.ecs(), env, target_args.container.as_deref()).await?;
    let options = RunOptions {
        timeout: Duration::from_secs(target_args.timeout),
        watchdog_every: Duration::from_millis(target_args.watchdog_ms.max(100)),
        transport: match target_args.backend {
            Backend::Native => Transport::Native,
            Backend::AwsCli => Transport::Plugin,
        },
    };
    crate::exec::run::run(&aws, &target, &spec, &options, &mut Passthrough(&context.printer)).await
}

/// The remote status as an exit code; evoctl's own failures are printed and become 125.
fn finish(context: &Context, result: Result<i32>) -> u8 {
    match result {
        Ok(status) => u8::try_from(status).unwrap_or(255),
        Err(err) => {
            context.printer.error(&err);
            exit::EVOCTL_FAILED
        }
    }
}
