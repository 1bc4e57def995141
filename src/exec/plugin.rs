//! The `--backend aws-cli` transport: ExecuteCommand through the SDK, then the official
//! `session-manager-plugin` exactly as the AWS CLI runs it, with the session JSON handed over in
//! the `AWS_SSM_START_SESSION_RESPONSE` environment variable (never on argv, where the token
//! would show in the process list).
//!
//! The plugin's stdin is a pipe evoctl keeps open, so it does not stop at EOF and cut the
//! output short; its stdout goes through the same envelope parser as the native transport, and
//! the noise reader tells how it ended (an EOF cut, an agent error) when no status arrived.

use super::native::{Input, SessionEnd, SessionOptions, execute_command};
use super::noise::{self, Ending};
use super::target::ExecTarget;
use crate::aws::Aws;
use crate::error::{Error, Result};
use std::process::Stdio;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

/// The plugin executable (overridable for tests and unusual installs).
pub const PLUGIN_ENV_VAR: &str = "EVOCTL_SESSION_MANAGER_PLUGIN";
/// How much of the plugin's output is kept to read its closing lines.
const TAIL: usize = 64 * 1024;

pub async fn run(
    aws: &Aws,
    target: &ExecTarget,
    command: &str,
    mut input: mpsc::Receiver<Input>,
    output: mpsc::Sender<Vec<u8>>,
    options: &SessionOptions,
) -> Result<SessionEnd> {
    let deadline = tokio::time::Instant::now() + options.timeout;
    let grant = tokio::time::timeout_at(deadline, execute_command(&aws.ecs(), target, command))
        .await
        .map_err(|_| options.timed_out())??;
    let session_json = serde_json::json!({
        "sessionId": grant.session_id,
        "streamUrl": grant.stream_url,
        "tokenValue": grant.token,
    })
    .to_string();
    let plugin = std::env::var(PLUGIN_ENV_VAR).unwrap_or_else(|_| "session-manager-plugin".into());
    let endpoint = aws.ecs_endpoint();
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
        tokio::select! {
            read = stdout.read(&mut buffer) => match read {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    tail.extend_from_slice(&buffer[..n]);
                    if tail.len() > 2 * TAIL {
                        tail.drain(..tail.len() - TAIL);
                    }
                    if output.send(buffer[..n].to_vec()).await.is_err() {
                        break;
                    }
                }
            },
            received = input.recv(), if input_open => match received {
                Some(Input::Data(bytes)) => { let _ = stdin.write_all(&bytes).await; }
                Some(Input::Resize(_)) => {}
                None => input_open = false,
            },
            _ = tokio::time::sleep_until(deadline) => {
                let _ = child.kill().await;
                return Err(options.timed_out());
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
