//! `evoctl shell ENV`: an interactive shell in the container. The local terminal goes raw (and
//! is restored however the session ends), keystrokes including Ctrl-C pass through, window
//! size changes follow, and the remote output is written unchanged. Setting up (credentials,
//! finding the task, ExecuteCommand, opening the data channel, a KMS handshake) is bounded by the
//! set-up limit ([`SETUP_LIMIT`], or [`EnvVars::EVOCTL_SHELL_SETUP_TIMEOUT`]) until the session
//! opens; after that there is no wall-clock deadline: like the service itself, a shell ends after
//! `--idle-timeout` (20 minutes) without input or output, and SIGTERM ends the session cleanly.

use super::Context;
use crate::cli::{Backend, ShellArgs};
use crate::env_vars::EnvVars;
use crate::error::{Error, Result};
use crate::exec::flow::{OUTPUT_QUEUE_BYTES, output_queue};
use crate::exec::native::{self, Input, SessionOptions, SetupLimit, seconds};
use crate::exec::terminal::{self, RawMode};
use crate::exec::{resume, target};
use crate::exit;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

/// How long setting a shell up may take unless [`EnvVars::EVOCTL_SHELL_SETUP_TIMEOUT`] says
/// otherwise: credentials, the task lookup, ExecuteCommand, opening the data channel (20 s by
/// itself), a KMS handshake (the agent waits 15 s for each step) and the agent's first output,
/// each normally a second or two; two minutes leaves room for the SDK's retries on a bad day.
pub const SETUP_LIMIT: Duration = Duration::from_secs(120);

/// The set-up limit, from the environment or the default.
fn setup_limit() -> Result<Duration> {
    crate::duration::from_env(EnvVars::EVOCTL_SHELL_SETUP_TIMEOUT, SETUP_LIMIT)
}

pub async fn run(context: &Context, args: &ShellArgs) -> Result<u8> {
    if args.target.backend != Backend::Native {
        return Err(Error::usage(
            "`evoctl shell` runs on the native backend only",
            "drop --backend (for the plugin, run `aws ecs execute-command --interactive --command sh`)",
        ));
    }
    let limit = setup_limit()?;
    let until = tokio::time::Instant::now() + limit;
    let config = context.config()?;
    let env = config.environment(&args.target.env)?;
    let setup = SetupLimit {
        until,
        limit,
        fix: format!(
            "check the task and the network path to ssmmessages (`evoctl doctor {}`); {} raises the limit",
            env.name,
            EnvVars::EVOCTL_SHELL_SETUP_TIMEOUT
        ),
    };
    let timed_out = |waiting_for: &str| Error::Timeout {
        message: format!("the exec session did not open within {} (the set-up limit): {waiting_for}", seconds(limit)),
        fix: Some(setup.fix.clone()),
    };
    let aws = tokio::time::timeout_at(until, context.aws_for(&config, env))
        .await
        .map_err(|_| timed_out("the AWS credentials were still being resolved"))??;
    let target = tokio::time::timeout_at(until, target::resolve(&aws.ecs(), env, args.target.container.as_deref()))
        .await
        .map_err(|_| timed_out("ECS had not answered the task lookup (ListTasks/DescribeTasks)"))??;
    context.printer.note(&format!(
        "connected to {} task {} ({}); exit the shell or press Ctrl-D to leave",
        env.name, target.task.id, target.container
    ));
    let options = SessionOptions {
        deadline: None,
        limit,
        setup: Some(setup),
        idle_timeout: Some(args.idle_timeout),
        watchdog_every: Duration::from_millis(args.target.watchdog_ms.max(100)),
        size: terminal::size(),
        resume_budget: resume::SHELL_BUDGET,
        timeout_fix: None,
    };
    let (input_tx, input_rx) = mpsc::channel::<Input>(64);
    let (output, mut received) = output_queue(OUTPUT_QUEUE_BYTES);
    let raw = RawMode::enable().map_err(|source| Error::Io { path: "the terminal (raw mode)".into(), source })?;
    let keyboard = tokio::spawn(forward_keyboard(input_tx));
    let printer = context.printer.clone();
    let display = async move {
        while let Some(bytes) = received.recv().await {
            printer.stdout_bytes(&bytes);
            if printer.stdout_room().await.is_err() {
                return;
            }
            received.release(bytes.len());
        }
    };
    let (result, ()) = tokio::join!(native::run(&aws, &target, "sh", input_rx, output, &options), display);
    keyboard.abort();
    drop(raw);
    result.map(|_| exit::OK)
}

/// Stdin bytes and window-size changes into the session.
async fn forward_keyboard(input: mpsc::Sender<Input>) {
    let mut stdin = tokio::io::stdin();
    let mut buffer = [0u8; 1024];
    let mut resized = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::window_change()).ok();
    loop {
        tokio::select! {
            read = stdin.read(&mut buffer) => match read {
                Ok(0) | Err(_) => return,
                Ok(n) => {
                    if input.send(Input::Data(buffer[..n].to_vec())).await.is_err() {
                        return;
                    }
                }
            },
            _ = async { match resized.as_mut() { Some(signal) => { signal.recv().await; } None => std::future::pending().await } } => {
                let _ = input.send(Input::Resize(terminal::size())).await;
            }
        }
    }
}
