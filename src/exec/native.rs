//! The native transport: ExecuteCommand, then the Session Manager data channel over a
//! websocket to the returned `streamUrl`, driven by the sans-IO [`Session`].
//!
//! One loop owns the socket: it feeds frames to the session, sends what the session queues,
//! runs its retransmission timer, pings, enforces the wall-clock timeout, and watches the task
//! (a task that stops mid-session ends it with a clear error instead of a hang). A dropped
//! socket is resumed with SSM ResumeSession where the service allows it. On clusters with an
//! exec KMS key the agent opens with a handshake: the loop answers it with a GenerateDataKey
//! bound to the session and target (and the agent's random challenge), after which the session
//! seals and opens payloads itself. The session token and data key are held only in memory:
//! never logged, printed or put in an error.

use super::ssm::crypto::{DATA_KEY_LEN, SessionCipher, Side};
use super::ssm::handshake;
use super::ssm::messages::{HandshakeRequest, OpenDataChannel, TerminalSize};
use super::ssm::{Event, NonceSource, PayloadType, Role, Session};
use super::target::ExecTarget;
use crate::aws::{Aws, discovery, sdk_failure};
use crate::error::{Error, Result};
use futures::{SinkExt, StreamExt};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// What the caller sends into a session.
#[derive(Debug)]
pub enum Input {
    Data(Vec<u8>),
    Resize(TerminalSize),
}

/// How a session behaves.
#[derive(Debug, Clone)]
pub struct SessionOptions {
    /// Wall-clock limit for the whole session.
    pub timeout: Duration,
    /// How often the task is checked while the session runs.
    pub watchdog_every: Duration,
    /// The terminal size to announce (the agent's pty gets it).
    pub size: TerminalSize,
}

impl SessionOptions {
    /// The error for a session that ran past `timeout` (either transport).
    pub fn timed_out(&self) -> Error {
        Error::Timeout {
            message: format!("the exec session did not finish within {}s", self.timeout.as_secs()),
            fix: Some("raise --timeout, or check what the command is waiting for".into()),
        }
    }
}

/// How a session ended.
#[derive(Debug, Clone, Default)]
pub struct SessionEnd {
    /// The gateway's closing text (an agent error on failure, empty normally).
    pub closing_output: String,
}

/// The session credentials ExecuteCommand returned.
pub(crate) struct Grant {
    pub session_id: String,
    pub stream_url: String,
    pub token: String,
}

impl std::fmt::Debug for Grant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Grant").field("session_id", &self.session_id).field("token", &"<redacted>").finish()
    }
}

fn epoch_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(1)
}

/// Run `command` in the target container; output bytes go to `output` as they arrive.
pub async fn run(
    aws: &Aws,
    target: &ExecTarget,
    command: &str,
    mut input: mpsc::Receiver<Input>,
    output: mpsc::Sender<Vec<u8>>,
    options: &SessionOptions,
) -> Result<SessionEnd> {
    install_crypto_provider();
    let started = Instant::now();
    let deadline = tokio::time::Instant::now() + options.timeout;
    let timed_out = || options.timed_out();
    let ecs = aws.ecs();
    let grant =
        tokio::time::timeout_at(deadline, execute_command(&ecs, target, command)).await.map_err(|_| timed_out())??;
    tracing::info!(session = %grant.session_id, task = %target.task.id, "exec session started");
    let mut socket = tokio::time::timeout_at(deadline, connect(&grant.stream_url, &grant.token))
        .await
        .map_err(|_| timed_out())??;
    let mut session = Session::with_random_ids(Role::Client);
    session.set_size(options.size, epoch_ms());
    let mut input_open = true;
    let mut watchdog = tokio::time::interval(options.watchdog_every);
    watchdog.tick().await;
    let mut ping = tokio::time::interval(Duration::from_secs(60));
    ping.tick().await;
    let mut resumes = 0u32;

    loop {
        flush(&mut session, &mut socket).await;
        while let Some(event) = session.poll_event() {
            match event {
                Event::Output(bytes) => {
                    if output.send(bytes).await.is_err() {
                        return Ok(SessionEnd::default());
                    }
                }
                Event::ChannelClosed(closed) if session.handshake_pending() => {
                    let _ = socket.close(None).await;
                    return Err(handshake_failed(&closed.output, &target.env));
                }
                Event::ChannelClosed(closed) => {
                    tracing::info!(session = %grant.session_id, elapsed_ms = started.elapsed().as_millis() as u64, resends = session.resends(), "channel closed");
                    let _ = socket.close(None).await;
                    return Ok(SessionEnd { closing_output: closed.output });
                }
                Event::Invalid(err) => tracing::debug!(%err, "dropped an invalid frame"),
                Event::HandshakeRequest(request) => {
                    let requested = handshake::read_request(&request);
                    if !requested.refused.is_empty() {
                        // Answer Unsupported so the agent ends its side too, then stop.
                        let response = handshake::response(&request, None, &client_version());
                        let body = serde_json::to_vec(&response).expect("serialises");
                        session.send_handshake(PayloadType::HandshakeResponse, body, epoch_ms());
                        flush(&mut session, &mut socket).await;
                        return Err(Error::exec(
                            format!(
                                "the agent asked for {}, which an exec session does not use",
                                requested.refused.join(" and ")
                            ),
                            format!("check that the target is an ECS Exec container (`evoctl doctor {}`)", target.env),
                        ));
                    }
                    let kms = requested.kms.as_ref();
                    let answer = tokio::time::timeout_at(
                        deadline,
                        answer_handshake(aws, &grant, target, &request, kms, &mut session),
                    )
                    .await
                    .map_err(|_| timed_out())??;
                    session.send_handshake(PayloadType::HandshakeResponse, answer, epoch_ms());
                }
                Event::HandshakeComplete(done) => {
                    tracing::info!(session = %grant.session_id, encrypted = session.is_encrypted(), customer_message = %done.customer_message, "handshake complete");
                }
                Event::Undecryptable(err) => {
                    return Err(Error::exec(
                        format!("session {}: {err}", grant.session_id),
                        "run the command again; if it repeats, something between you and ssmmessages alters traffic",
                    ));
                }
                other => tracing::trace!(?other, "ignored event"),
            }
        }
        let timer = session.next_timeout().map(|at| {
            let wait = at.saturating_sub(epoch_ms());
            tokio::time::Instant::now() + Duration::from_millis(wait)
        });
        tokio::select! {
            message = socket.next() => match message {
                Some(Ok(Message::Binary(bytes))) => session.receive(&bytes, epoch_ms()),
                Some(Ok(Message::Text(text))) => session.receive(text.as_bytes(), epoch_ms()),
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => {
                    resumes += 1;
                    if resumes > 5 {
                        return Err(Error::exec(
                            format!("the data channel of session {} kept dropping", grant.session_id),
                            "check the network path to ssmmessages and retry",
                        ));
                    }
                    tracing::info!(session = %grant.session_id, attempt = resumes, "data channel dropped; resuming");
                    socket = tokio::time::timeout_at(deadline, resume(aws, &grant, resumes)).await.map_err(|_| timed_out())??;
                }
            },
            _ = sleep_until_opt(timer) => session.handle_timeout(epoch_ms()),
            received = input.recv(), if input_open => match received {
                Some(Input::Data(bytes)) => session.send_data(&bytes, epoch_ms()),
                Some(Input::Resize(size)) => session.set_size(size, epoch_ms()),
                None => input_open = false,
            },
            _ = watchdog.tick() => check_task(&ecs, target).await?,
            _ = ping.tick() => { let _ = socket.send(Message::Ping("keepalive".as_bytes().to_vec().into())).await; }
            _ = tokio::time::sleep_until(deadline) => return Err(timed_out()),
        }
    }
}

/// The agent ended the session during the handshake; its text says why (for KMS sessions
/// usually the task role's kms:Decrypt, or an encryption context that does not match).
fn handshake_failed(agent_output: &str, env: &str) -> Error {
    let reason = agent_output.trim().trim_start_matches("----------ERROR-------").trim();
    let reason = if reason.is_empty() { "no reason given" } else { reason };
    let fix = if reason.contains("timed out") {
        "the agent waits 15 s for each handshake reply: check the network path to ssmmessages and KMS, then retry"
            .to_owned()
    } else {
        format!(
            "the task role needs kms:Decrypt on the cluster's exec KMS key (executeCommandConfiguration.kmsKeyId), and the task must reach KMS; `evoctl doctor {env}` checks the rest"
        )
    };
    Error::exec(format!("the agent ended the session during the KMS handshake: {reason}"), fix)
}

/// Put everything the session queued on the socket (a failed send shows up as a drop on the
/// receiving side).
async fn flush(session: &mut Session, socket: &mut Socket) {
    while let Some(bytes) = session.poll_transmit() {
        if let Err(err) = socket.send(Message::Binary(bytes.into())).await {
            tracing::debug!(%err, "send failed; the receive side will notice the drop");
            break;
        }
    }
}

/// How evoctl names itself to the agent.
fn client_version() -> String {
    format!("evoctl-{}", env!("CARGO_PKG_VERSION"))
}

/// The HandshakeResponse to the agent's request; for a KMS session a data key bound to the
/// session, the target and the agent's challenge is generated and installed first.
async fn answer_handshake(
    aws: &Aws,
    grant: &Grant,
    target: &ExecTarget,
    request: &HandshakeRequest,
    kms: Option<&handshake::KmsAction>,
    session: &mut Session,
) -> Result<Vec<u8>> {
    let mut reply = None;
    if let Some(kms) = kms {
        let target_id = target.ssm_target();
        let context = handshake::encryption_context(&grant.session_id, &target_id, kms.challenge.as_deref());
        tracing::info!(session = %grant.session_id, key = %kms.key_id, target = %target_id, challenge = kms.challenge.is_some(), "KMS-encrypted session: generating the data key");
        let key = crate::aws::kms::generate_data_key(aws, &kms.key_id, DATA_KEY_LEN, &context).await?;
        let cipher = SessionCipher::new(&key.plaintext, Side::Client)
            .map_err(|e| Error::exec(format!("KMS returned an unusable data key: {e}"), "retry"))?;
        session.enable_encryption(cipher, NonceSource::Random);
        reply =
            Some(handshake::KmsReply { ciphertext: key.ciphertext, challenge_acknowledged: kms.challenge.is_some() });
    }
    let response = handshake::response(request, reply.as_ref(), &client_version());
    Ok(serde_json::to_vec(&response).expect("serialises"))
}

async fn sleep_until_opt(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The websocket TLS stack uses aws-lc-rs (already linked for the AWS SDK); never OpenSSL.
fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

pub(crate) async fn execute_command(ecs: &aws_sdk_ecs::Client, target: &ExecTarget, command: &str) -> Result<Grant> {
    let out = ecs
        .execute_command()
        .cluster(&target.cluster)
        .task(&target.task.arn)
        .container(&target.container)
        .command(command)
        .interactive(true)
        .send()
        .await
        .map_err(|e| {
            let failure = sdk_failure("ExecuteCommand", e);
            match failure.code.as_str() {
                "TargetNotConnectedException" => Error::exec(
                    format!("the ExecuteCommandAgent of task {} is not connected ({})", target.task.id, failure.message),
                    format!(
                        "retry in a few seconds; if it persists run `evoctl doctor {}` (task role ssmmessages permissions, a route to ssmmessages, no AWS keys in the container env)",
                        target.env
                    ),
                ),
                "InvalidParameterException" => Error::exec(
                    format!("ExecuteCommand was refused: {}", failure.message),
                    "check that the task was started with enableExecuteCommand and its agent is RUNNING (`evoctl status`)",
                ),
                _ => failure.into_error(),
            }
        })?;
    let session = out.session().ok_or_else(|| Error::exec("ExecuteCommand returned no session", "retry"))?;
    match (session.session_id(), session.stream_url(), session.token_value()) {
        (Some(session_id), Some(stream_url), Some(token)) => {
            Ok(Grant { session_id: session_id.to_owned(), stream_url: stream_url.to_owned(), token: token.to_owned() })
        }
        _ => Err(Error::exec("ExecuteCommand returned an incomplete session", "retry")),
    }
}

/// Open the websocket and send the token frame.
async fn connect(stream_url: &str, token: &str) -> Result<Socket> {
    let (mut socket, _) = tokio_tungstenite::connect_async(stream_url).await.map_err(|e| {
        Error::exec(
            format!("could not open the data channel websocket: {e}"),
            "check the network path to ssmmessages (proxy, VPC endpoint) and retry",
        )
    })?;
    let open = OpenDataChannel {
        message_schema_version: "1.0".into(),
        request_id: uuid::Uuid::new_v4().to_string(),
        token_value: token.to_owned(),
        client_id: uuid::Uuid::new_v4().to_string(),
        client_version: Some(client_version()),
    };
    let text = serde_json::to_string(&open).expect("token frame serialises");
    socket
        .send(Message::Text(text.into()))
        .await
        .map_err(|e| Error::exec(format!("could not send the session token: {e}"), "retry"))?;
    let _ = socket.send(Message::Ping("keepalive".as_bytes().to_vec().into())).await;
    Ok(socket)
}

/// ResumeSession for a fresh token, then reopen the same stream URL; backs off between tries.
async fn resume(aws: &Aws, grant: &Grant, attempt: u32) -> Result<Socket> {
    tokio::time::sleep(Duration::from_millis(100 * u64::from(1u32 << attempt.min(5)))).await;
    let out = aws.ssm().resume_session().session_id(&grant.session_id).send().await.map_err(|e| {
        let failure = sdk_failure("ResumeSession", e);
        Error::exec(
            format!(
                "the data channel dropped and session {} could not be resumed ({}: {})",
                grant.session_id, failure.code, failure.message
            ),
            "run the command again",
        )
    })?;
    let token = out.token_value().ok_or_else(|| {
        Error::exec(
            format!("session {} timed out (ResumeSession returned no token)", grant.session_id),
            "run the command again",
        )
    })?;
    let url = out.stream_url().unwrap_or(&grant.stream_url);
    connect(url, token).await
}

/// End the session with a clear error when its task is stopping or gone.
async fn check_task(ecs: &aws_sdk_ecs::Client, target: &ExecTarget) -> Result<()> {
    match discovery::task_last_status(ecs, &target.cluster, &target.task.arn).await {
        Ok(Some((status, _))) if matches!(status.as_str(), "RUNNING" | "PENDING" | "ACTIVATING") => Ok(()),
        Ok(Some((status, reason))) => Err(Error::exec(
            format!(
                "task {} is {status}{} while the exec session was running",
                target.task.id,
                reason.map(|r| format!(" ({r})")).unwrap_or_default()
            ),
            format!("the task was replaced or stopped; check `evoctl status {}` and retry on the new task", target.env),
        )),
        Ok(None) => Err(Error::exec(format!("task {} no longer exists", target.task.id), "retry on the new task")),
        Err(err) => {
            tracing::debug!(%err, "watchdog could not read the task; will try again");
            Ok(())
        }
    }
}
