//! The `--backend aws-cli` transport: ExecuteCommand through the SDK, then the official
//! `session-manager-plugin` exactly as the AWS CLI runs it, with the session JSON handed over in
//! the `AWS_SSM_START_SESSION_RESPONSE` environment variable (never on argv, where the token
//! would show in the process list).
//!
//! The plugin's stdin is a pipe evoctl keeps open, so it does not stop at EOF and cut the
//! output short; it is written only by the session's writer task ([`super::writer`]), so the
//! loop never waits on a plugin that stops reading: it keeps racing the deadline and Ctrl-C, and
//! a write that stalls for [`WRITE_STALL`] ends the run. The plugin's stdout goes through the
//! same envelope parser as the native transport, and the noise reader tells how it ended (an EOF
//! cut, an agent error) when no status arrived. However the run ends, the plugin is killed or
//! reaped within [`CLOSE_BOUND`].

use super::flow::OutputQueue;
use super::native::{
    CLOSE_BOUND, Input, SessionEnd, SessionOptions, WRITE_STALL, seconds, sleep_until_opt, start_session,
};
use super::noise::{self, Ending};
use super::target::ExecTarget;
use super::writer::{FaultKind, Writer};
use crate::aws::Aws;
use crate::env_vars::EnvVars;
use crate::error::{Error, ExecKind, Result};
use std::process::Stdio;
use tokio::io::AsyncReadExt;
use tokio::process::ChildStdin;
use tokio::sync::mpsc;

/// How much of the plugin's output is kept to read its closing lines.
const TAIL: usize = 64 * 1024;
/// Input chunks that may wait for the writer; while it is full, input waits.
const STDIN_QUEUE: usize = 16;

pub async fn run(
    aws: &Aws,
    target: &ExecTarget,
    command: &str,
    input: mpsc::Receiver<Input>,
    output: OutputQueue,
    options: &SessionOptions,
) -> Result<SessionEnd> {
    let (grant, guard) = start_session(aws, target, command, options).await?;
    let result = drive(aws, target, &grant, input, output, options).await;
    guard.end(super::sessions::end_bound(&result)).await;
    result
}

async fn drive(
    aws: &Aws,
    target: &ExecTarget,
    grant: &super::native::Grant,
    mut input: mpsc::Receiver<Input>,
    output: OutputQueue,
    options: &SessionOptions,
) -> Result<SessionEnd> {
    let session_json = serde_json::json!({
        "sessionId": grant.session_id,
        "streamUrl": grant.stream_url,
        "tokenValue": grant.token,
    })
    .to_string();
    let plugin =
        std::env::var(EnvVars::EVOCTL_SESSION_MANAGER_PLUGIN).unwrap_or_else(|_| "session-manager-plugin".into());
    let endpoint = aws.ecs_endpoint()?;
    let mut child = tokio::process::Command::new(&plugin)
        .arg("AWS_SSM_START_SESSION_RESPONSE")
        .arg(aws.region())
        .arg("StartSession")
        .arg(aws.profile().unwrap_or(""))
        .arg(serde_json::json!({"Target": target.ssm_target()}).to_string())
        .arg(endpoint)
        .env("AWS_SSM_START_SESSION_RESPONSE", session_json)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            Error::exec(
                ExecKind::Transport,
                format!("cannot run {plugin}: {e}"),
                "install the Session Manager plugin, or drop --backend aws-cli (the native backend needs no plugin)",
            )
        })?;
    let mut writer = Writer::<ChildStdin>::spawn(STDIN_QUEUE, WRITE_STALL);
    writer.attach(child.stdin.take().expect("piped"), Vec::new());
    let mut stdout = child.stdout.take().expect("piped");
    let mut tail: Vec<u8> = Vec::new();
    let mut buffer = vec![0u8; 16 * 1024];
    let mut input_open = true;
    let interrupt = crate::interrupt::wait();
    tokio::pin!(interrupt);
    loop {
        let output_full = output.is_full();
        let stdin_room = writer.has_room();
        tokio::select! {
            read = stdout.read(&mut buffer), if !output_full => match read {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    tail.extend_from_slice(&buffer[..n]);
                    if tail.len() > 2 * TAIL {
                        tail.drain(..tail.len() - TAIL);
                    }
                    if output.push(buffer[..n].to_vec()).is_err() {
                        break;
                    }
                }
            },
            _ = output.drained(), if output_full => {}
            received = input.recv(), if input_open && stdin_room => match received {
                Some(Input::Data(bytes)) => {
                    writer.try_write(bytes);
                }
                Some(Input::Resize(_)) => {}
                None => input_open = false,
            },
            _ = writer.room(), if input_open && !stdin_room => {}
            fault = writer.fault() => match fault.kind {
                // The plugin closed its input (it is ending): its output says how.
                FaultKind::Failed(reason) => tracing::debug!(%reason, "session-manager-plugin's stdin is closed"),
                FaultKind::Stalled(bound) => {
                    let _ = child.start_kill();
                    return Err(Error::exec(
                        ExecKind::Transport,
                        format!(
                            "session-manager-plugin took no input for {} (session {}): it was stopped and the session ended",
                            seconds(bound),
                            grant.session_id
                        ),
                        "run the command again; if it repeats, use the native backend (drop --backend aws-cli)",
                    ));
                }
            },
            _ = sleep_until_opt(options.deadline) => {
                let _ = child.start_kill();
                return Err(options.timed_out("the command was still running (session-manager-plugin)"));
            }
            signal = &mut interrupt => {
                let _ = child.start_kill();
                return Err(Error::Interrupted {
                    signal,
                    message: format!("interrupted ({}): exec session {} was ended, and the command with it", signal.name(), grant.session_id),
                    fix: None,
                });
            }
        }
    }
    drop(writer);
    // The plugin closed its output; it has ended, or is stopped now.
    if tokio::time::timeout(CLOSE_BOUND, child.wait()).await.is_err() {
        tracing::debug!("session-manager-plugin did not exit after closing its output; stopping it");
        let _ = child.start_kill();
    }
    let closing_output = match noise::ending(&tail) {
        Ending::Exited => String::new(),
        Ending::ChannelError(message) => message,
        Ending::CannotStart(message) => format!("session-manager-plugin: Cannot perform start session: {message}"),
        Ending::TimedOut => "session-manager-plugin: the session timed out".into(),
        Ending::Missing => "session-manager-plugin ended without closing the session".into(),
    };
    Ok(SessionEnd { closing_output })
}
