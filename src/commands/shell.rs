//! `evoctl shell ENV`: an interactive shell in the container. The local terminal goes raw (and
//! is restored however the session ends), keystrokes including Ctrl-C pass through, window
//! size changes follow, and the remote output is written unchanged.

use super::Context;
use crate::cli::{Backend, ShellArgs};
use crate::error::{Error, Result};
use crate::exec::native::{self, Input, SessionOptions};
use crate::exec::target;
use crate::exec::terminal::{self, RawMode};
use crate::exit;
use std::time::Duration;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;

pub async fn run(context: &Context, args: &ShellArgs) -> Result<u8> {
    if args.target.backend != Backend::Native {
        return Err(Error::usage(
            "`evoctl shell` runs on the native backend only",
            "drop --backend (for the plugin, run `aws ecs execute-command --interactive --command sh`)",
        ));
    }
    let config = context.config()?;
    let env = config.environment(&args.target.env)?;
    let aws = context.aws(&config).await?;
    let target = target::resolve(&aws.ecs(), env, args.target.container.as_deref()).await?;
    context.printer.note(&format!(
        "connected to {} task {} ({}); exit the shell or press Ctrl-D to leave",
        env.name, target.task.id, target.container
    ));
    let options = SessionOptions {
        timeout: Duration::from_secs(args.target.timeout),
        watchdog_every: Duration::from_millis(args.target.watchdog_ms.max(100)),
        size: terminal::size(),
    };
    let (input_tx, input_rx) = mpsc::channel::<Input>(64);
    let (output_tx, mut output_rx) = mpsc::channel::<Vec<u8>>(256);
    let raw = RawMode::enable()
        .map_err(|e| Error::exec(format!("cannot switch the terminal to raw mode: {e}"), "run from a terminal"))?;
    let keyboard = tokio::spawn(forward_keyboard(input_tx));
    let printer = context.printer.clone();
    let display = async move {
        while let Some(bytes) = output_rx.recv().await {
            printer.stdout_bytes(&bytes);
        }
    };
    let (result, ()) = tokio::join!(native::run(&aws, &target, "sh", input_rx, output_tx, &options), display);
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
