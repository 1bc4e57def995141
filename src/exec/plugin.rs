//! The `--backend aws-cli` transport: ExecuteCommand through the SDK, then the official
//! `session-manager-plugin` exactly as the AWS CLI runs it, with the session JSON handed over in
//! the `AWS_SSM_START_SESSION_RESPONSE` environment variable (never on argv, where the token
//! would show in the process list).
//!
//! The plugin's stdin is a pipe evoctl keeps open, so it does not stop at EOF and cut the
//! output short; its stdout goes through the same envelope parser as the native transport, and
//! the noise reader tells how it ended (an EOF cut, an agent error) when no status arrived.

use super::flow::OutputQueue;
use super::native::{Input, SessionEnd, SessionOptions, sleep_until_opt, start_session};
use super::noise::{self, Ending};
use super::target::ExecTarget;
use crate::aws::Aws;
use crate::env_vars::EnvVars;
use crate::error::{Error, ExecKind, Result};
use std::process::Stdio;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

/// How much of the plugin's output is kept to read its closing lines.
const TAIL: usize = 64 * 1024;

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
    let mut stdin = child.stdin.take().expect("piped");
    let mut stdout = child.stdout.take().expect("piped");
    let mut tail: Vec<u8> = Vec::new();
    let mut buffer = vec![0u8; 16 * 1024];
    let mut input_open = true;
    loop {
        let output_full = output.is_full();
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
            received = input.recv(), if input_open => match received {
                Some(Input::Data(bytes)) => { let _ = stdin.write_all(&bytes).await; }
                Some(Input::Resize(_)) => {}
                None => input_open = false,
            },
            _ = sleep_until_opt(options.deadline) => {
                let _ = child.kill().await;
                return Err(options.timed_out("the command was still running (session-manager-plugin)"));
            }
            signal = crate::interrupt::wait() => {
                let _ = child.kill().await;
                return Err(Error::Interrupted {
                    signal,
                    message: format!("interrupted ({}): exec session {} was ended, and the command with it", signal.name(), grant.session_id),
                    fix: None,
                });
            }
        }
    }
    let _ = child.wait().await;
    let closing_output = match noise::ending(&tail) {
        Ending::Exited => String::new(),
        Ending::ChannelError(message) => message,
        Ending::CannotStart(message) => format!("session-manager-plugin: Cannot perform start session: {message}"),
        Ending::TimedOut => "session-manager-plugin: the session timed out".into(),
        Ending::Missing => "session-manager-plugin ended without closing the session".into(),
    };
    Ok(SessionEnd { closing_output })
}
