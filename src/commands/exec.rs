//! `evoctl exec ENV -- CMD..` and `evoctl node ENV -e JS | FILE | -`: run in the container, feed
//! it evoctl's stdin when that is a pipe or a file (a terminal only with `-i`, nothing with
//! `-T`), stream its stdout and stderr separately, and exit with the remote command's own status
//! (125 when evoctl itself failed, the `docker run` convention). `--timeout` bounds the whole
//! run from the first AWS call on; however it ends, the exec session is ended too. A closed
//! stdout (`| head`) ends the run quietly with 0, as ripgrep does.

use super::Context;
use crate::cli::{Backend, ExecArgs, ExecTargetArgs, NodeArgs, StdinArgs};
use crate::error::{Error, Result};
use crate::exec::envelope::{Program, RunSpec, Stdin};
use crate::exec::input::{self, LocalStdin};
use crate::exec::run::{OutputSink, RunOptions, Transport};
use crate::exec::target;
use crate::exit;
use crate::output::Printer;
use futures::future::BoxFuture;
use std::path::Path;
use std::time::Duration;

/// Script files up to this size are sent whole with the runner; larger ones are streamed after it.
const MAX_PROGRAM_FILE: u64 = 1024 * 1024;

/// Streams remote output straight to the local stdout / stderr; holds the session back while
/// stdout is slow.
struct Passthrough<'a>(&'a Printer);

impl OutputSink for Passthrough<'_> {
    fn stdout(&mut self, bytes: &[u8]) {
        self.0.stdout_bytes(bytes);
    }
    fn stderr(&mut self, bytes: &[u8]) {
        self.0.stderr_bytes(bytes);
    }
    fn room(&self) -> BoxFuture<'_, Result<()>> {
        Box::pin(self.0.stdout_room())
    }
}

pub async fn exec(context: &Context, args: &ExecArgs) -> u8 {
    let spec = RunSpec { program: Program::Argv(args.command.clone()), stdin: forwarded(&args.stdin) };
    finish(context, passthrough(context, &args.target, args.timeout, spec).await)
}

pub async fn node(context: &Context, args: &NodeArgs) -> u8 {
    match node_spec(args) {
        Ok(spec) => finish(context, passthrough(context, &args.target, args.timeout, spec).await),
        Err(err) => finish(context, Err(err)),
    }
}

/// [`run`] with the output passed through; the remote status only once everything it printed
/// has reached stdout, so a write that fails late (a full disk) is evoctl's failure however
/// soon the remote status came.
async fn passthrough(context: &Context, target_args: &ExecTargetArgs, timeout: Duration, spec: RunSpec) -> Result<i32> {
    let status = run(context, target_args, timeout, spec, &mut Passthrough(&context.printer)).await?;
    context.printer.stdout_written().await?;
    Ok(status)
}

/// evoctl's stdin as the command's input, when it is forwarded (see [`input::forwards`]).
fn forwarded(args: &StdinArgs) -> Option<Stdin> {
    input::forwards(LocalStdin::detect(), args.interactive, args.no_stdin).then_some(Stdin::Local)
}

/// The program of `node ENV`: `-e JS`, a file (sent whole up to [`MAX_PROGRAM_FILE`], streamed
/// beyond), or `-` for the program on stdin, wherever stdin is (streamed; the program's own
/// input is then empty); otherwise the program's input is stdin as [`forwarded`] says.
fn node_spec(args: &NodeArgs) -> Result<RunSpec> {
    let from_stdin = args.file.as_deref().is_some_and(|path| path == Path::new("-"));
    let program = match (&args.eval, &args.file) {
        (Some(script), _) => Program::Node(script.clone()),
        (None, Some(_)) if from_stdin => Program::NodeFrom(Stdin::Local),
        (None, Some(path)) => match std::fs::metadata(path) {
            Ok(meta) if meta.len() <= MAX_PROGRAM_FILE => {
                Program::Node(std::fs::read_to_string(path).map_err(|source| Error::Io { path: path.clone(), source })?)
            }
            Ok(_) => Program::NodeFrom(Stdin::File(path.clone())),
            Err(source) => return Err(Error::Io { path: path.clone(), source }),
        },
        (None, None) => {
            return Err(Error::usage(
                "give a script with -e JS, a FILE, or - to read it from stdin",
                format!("evoctl node {} -e 'console.log(1)'", args.target.env),
            ));
        }
    };
    let stdin = if from_stdin { None } else { forwarded(&args.stdin) };
    Ok(RunSpec { program, stdin })
}

/// Run `spec` in the environment's container within `timeout` (from now: the AWS
/// configuration and the task lookup count too), its output to `sink`; the remote exit status.
pub(super) async fn run(
    context: &Context,
    target_args: &ExecTargetArgs,
    timeout: Duration,
    spec: RunSpec,
    sink: &mut dyn OutputSink,
) -> Result<i32> {
    // The clock starts now: loading the AWS configuration and finding the task count too.
    let deadline = tokio::time::Instant::now() + timeout;
    let options = RunOptions {
        timeout,
        deadline: Some(deadline),
        watchdog_every: Duration::from_millis(target_args.watchdog_ms.max(100)),
        transport: match target_args.backend {
            Backend::Native => Transport::Native,
            Backend::AwsCli => Transport::Plugin,
        },
        timeout_fix: None,
    };
    let session = options.session(crate::exec::ssm::messages::TerminalSize { cols: 200, rows: 50 });
    let config = context.config()?;
    let env = config.environment(&target_args.env)?;
    let (aws, target) = crate::interrupt::before_starting(async {
        let aws = session
            .within("the AWS configuration (credentials, region) was still loading", context.aws_for(&config, env))
            .await??;
        let target = session
            .within(
                "ECS had not answered the task lookup (ListTasks/DescribeTasks)",
                target::resolve(&aws.ecs(), env, target_args.container.as_deref()),
            )
            .await??;
        Ok((aws, target))
    })
    .await?;
    crate::exec::run::run(&aws, &target, &spec, &options, sink).await
}

/// The remote status as an exit code; evoctl's own failures are printed and become 125 (an
/// interruption keeps 130/143; a closed stdout is no failure).
fn finish(context: &Context, result: Result<i32>) -> u8 {
    match result {
        Ok(status) => u8::try_from(status).unwrap_or(255),
        Err(err) if err.is_broken_pipe() => exit::OK,
        Err(err @ Error::Interrupted { .. }) => {
            context.printer.error(&err);
            err.exit_code()
        }
        Err(err) => {
            context.printer.error(&err);
            exit::EVOCTL_FAILED
        }
    }
}
