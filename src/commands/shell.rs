//! `evoctl shell ENV`: an interactive shell in the container. The local terminal goes raw (and
//! is restored however the session ends), keystrokes including Ctrl-C pass through, window
//! size changes follow, and the remote output is written unchanged. There is no wall-clock
//! deadline: like the service itself, a shell ends after `--idle-timeout` (20 minutes) without
//! input or output, and SIGTERM ends the session cleanly.

use super::Context;
use crate::cli::{Backend, ShellArgs};
use crate::error::{Error, Result};
use crate::exec::flow::{OUTPUT_QUEUE_BYTES, output_queue};
use crate::exec::native::{self, Input, SessionOptions};
use crate::exec::target;
use crate::exec::terminal::{self, RawMode};
use crate::exit;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

/// Bounds finding the task and opening the session (the shell itself has none).
const SETUP_LIMIT: Duration = Duration::from_secs(120);

pub async fn run(context: &Context, args: &ShellArgs) -> Result<u8> {
    if args.target.backend != Backend::Native {
        return Err(Error::usage(
            "`evoctl shell` runs on the native backend only",
            "drop --backend (for the plugin, run `aws ecs execute-command --interactive --command sh`)",
        ));
    }
    let config = context.config()?;
    let env = config.environment(&args.target.env)?;
    let aws = context.aws_for(&config, env).await?;
    let target = target::resolve(&aws.ecs(), env, args.target.container.as_deref()).await?;
    context.printer.note(&format!(
        "connected to {} task {} ({}); exit the shell or press Ctrl-D to leave",
        env.name, target.task.id, target.container
    ));
    let options = SessionOptions {
        deadline: None,
        limit: SETUP_LIMIT,
        idle_timeout: Some(args.idle_timeout),
        watchdog_every: Duration::from_millis(args.target.watchdog_ms.max(100)),
        size: terminal::size(),
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
