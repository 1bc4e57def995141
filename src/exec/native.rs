//! The native transport: ExecuteCommand, then the Session Manager data channel over a
//! websocket to the returned `streamUrl`, driven by the sans-IO [`Session`].
//!
//! One loop drives the session and never awaits anything that could hold it: each turn it races
//! the socket's next frame (or the dial in progress), the session's retransmission timer, input,
//! the task watchdog, pings, the deadline (`--timeout`, or a shell's set-up limit until the
//! session opens), a shell's idle limit and Ctrl-C/SIGTERM ([`crate::interrupt`]). Every write to
//! the socket, the token frame and pings included, goes through the session's one writer task
//! ([`super::writer`]) and its bounded queue: the loop only hands frames over while there is
//! room, and a write that stalls or fails comes back as a fault that counts as a dropped socket.
//! The watchdog's DescribeTasks runs in a task of its own (a task that stops mid-session ends it
//! with a clear error instead of a hang), output goes to a byte-bounded queue (a full queue stops
//! reading the socket: TCP flow control, not growth) and input waits while 256 KiB are unacked.
//!
//! A dropped socket is resumed (ResumeSession, a new token, the same stream URL: [`super::link`])
//! as [`super::resume`] allows: failures in a row and a lifetime budget, each dial raced against
//! the deadline and Ctrl-C like everything else. Whatever the ending, the session is ended with
//! TerminateSession ([`super::sessions`]); closing the socket takes at most [`CLOSE_BOUND`]. On
//! clusters with an exec KMS key the agent opens with a handshake: the loop answers it with a
//! GenerateDataKey bound to the session and target (and the agent's random challenge), after
//! which the session seals and opens payloads itself. The session token and data key are held
//! only in memory: never logged, printed or put in an error.

use super::flow::OutputQueue;
use super::link::{Dialer, Link, LinkEvent, SocketSink, client_version, keepalive, redial, token_frame};
use super::resume::Resumes;
use super::sessions::SessionGuard;
use super::ssm::crypto::{DATA_KEY_LEN, SessionCipher, Side};
use super::ssm::handshake;
use super::ssm::messages::{HandshakeRequest, TerminalSize};
use super::ssm::{Event, PayloadType, Session};
use super::target::ExecTarget;
use super::websocket;
use super::writer::{FaultKind, Writer};
use crate::aws::{Aws, sdk_failure, task_stop};
use crate::error::{Error, ExecKind, Result};
use futures::StreamExt;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::{self, Message};

/// Input bytes sent and not yet acknowledged at most; more input waits.
pub const MAX_UNACKED_INPUT_BYTES: usize = 256 * 1024;
/// How long one write to the socket may take before the socket counts as dropped (and is
/// resumed): far longer than any pause a working path makes, with the deadline and Ctrl-C live
/// meanwhile.
pub const WRITE_STALL: Duration = Duration::from_secs(30);
/// Frames that may wait for the writer; while it is full the loop stops taking frames from the
/// session and stops reading the socket (no acks pile up for a socket that cannot take them).
const WRITE_QUEUE: usize = 64;
/// How long closing the socket may take once the session has ended (the Close frame and what
/// was queued before it).
pub const CLOSE_BOUND: Duration = Duration::from_secs(1);
/// How often the client pings (the plugin: every 5 minutes; more often keeps NATs open).
const PING_EVERY: Duration = Duration::from_secs(60);

/// What the caller sends into a session.
#[derive(Debug)]
pub enum Input {
    Data(Vec<u8>),
    Resize(TerminalSize),
}

/// How a session behaves.
#[derive(Debug, Clone)]
pub struct SessionOptions {
    /// The wall-clock bound for the whole run (`exec`/`node`/driver calls); `None` for a shell.
    pub deadline: Option<tokio::time::Instant>,
    /// The `--timeout` behind the deadline, for messages.
    pub limit: Duration,
    /// A bound that holds only until the session opens (a shell's set-up limit).
    pub setup: Option<SetupLimit>,
    /// End after this long without input or output once the session is open (a shell; the
    /// service's own idle timeout is 20 minutes).
    pub idle_timeout: Option<Duration>,
    /// How often the task is checked while the session runs.
    pub watchdog_every: Duration,
    /// The terminal size to announce (the agent's pty gets it).
    pub size: TerminalSize,
    /// Resumes allowed in the life of the session ([`super::resume::RUN_BUDGET`],
    /// [`super::resume::SHELL_BUDGET`]).
    pub resume_budget: u32,
    /// What to do about a run that reached its deadline (`None`: raise `--timeout`).
    pub timeout_fix: Option<String>,
}

/// A bound on setting a session up: ExecuteCommand, opening the data channel, the handshake,
/// until the agent's first output (or the end of the handshake).
#[derive(Debug, Clone)]
pub struct SetupLimit {
    pub until: tokio::time::Instant,
    pub limit: Duration,
    /// How to raise the limit, for the error.
    pub fix: String,
}

/// Which bound a deadline is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bound {
    Run,
    Setup,
}

impl SessionOptions {
    /// The error for a run that reached its deadline, naming what it was waiting for.
    pub fn timed_out(&self, waiting_for: &str) -> Error {
        Error::Timeout {
            message: format!("the exec session did not finish within {}: {waiting_for}", seconds(self.limit)),
            fix: Some(
                self.timeout_fix
                    .clone()
                    .unwrap_or_else(|| "raise --timeout, or check what the command is waiting for".into()),
            ),
        }
    }

    /// The error for `bound`, reached while `waiting_for`.
    fn timed_out_at(&self, bound: Bound, waiting_for: &str) -> Error {
        match (bound, &self.setup) {
            (Bound::Setup, Some(setup)) => Error::Timeout {
                message: format!(
                    "the exec session did not open within {} (the set-up limit): {waiting_for}",
                    seconds(setup.limit)
                ),
                fix: Some(setup.fix.clone()),
            },
            _ => self.timed_out(waiting_for),
        }
    }

    /// The deadline that holds now: the run's, and until the session opens the set-up limit
    /// too (the earlier of the two).
    fn deadline_now(&self, opened: bool) -> Option<(tokio::time::Instant, Bound)> {
        let run = self.deadline.map(|at| (at, Bound::Run));
        let setup = self.setup.as_ref().filter(|_| !opened).map(|setup| (setup.until, Bound::Setup));
        match (run, setup) {
            (Some(run), Some(setup)) => Some(if setup.0 < run.0 { setup } else { run }),
            (run, setup) => run.or(setup),
        }
    }

    /// `future`, bounded by the deadline that holds before the session opens (if any);
    /// `waiting_for` names it in the timeout error.
    pub async fn within<T>(&self, waiting_for: &str, future: impl std::future::Future<Output = T>) -> Result<T> {
        match self.deadline_now(false) {
            Some((at, bound)) => {
                tokio::time::timeout_at(at, future).await.map_err(|_| self.timed_out_at(bound, waiting_for))
            }
            None => Ok(future.await),
        }
    }
}

/// `3s`, `1.5s`: a duration as the flags take it.
pub fn seconds(duration: Duration) -> String {
    let millis = duration.as_millis();
    if millis.is_multiple_of(1000) { format!("{}s", millis / 1000) } else { format!("{}s", duration.as_secs_f64()) }
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

/// The wall clock (Unix ms), for the frames' CreatedDate only.
pub(crate) fn epoch_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(1)
}

/// The session's timer clock: monotonic milliseconds since the first call, so a wall-clock
/// step cannot stall or storm retransmission.
pub(crate) fn mono_ms() -> u64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64 + 1
}

/// Run `command` in the target container; output bytes go to `output` as they arrive. However
/// the run ends, a started session is ended with TerminateSession.
pub async fn run(
    aws: &Aws,
    target: &ExecTarget,
    command: &str,
    mut input: mpsc::Receiver<Input>,
    output: OutputQueue,
    options: &SessionOptions,
) -> Result<SessionEnd> {
    install_crypto_provider();
    let (grant, guard) = start_session(aws, target, command, options).await?;
    let result = drive(aws, target, &grant, &mut input, &output, options).await;
    guard.end(super::sessions::end_bound(&result)).await;
    result
}

/// How long closing may take: [`CLOSE_BOUND`], and never past the deadline.
fn close_bound(deadline: Option<(tokio::time::Instant, Bound)>) -> Duration {
    match deadline {
        Some((at, _)) => CLOSE_BOUND.min(at.saturating_duration_since(tokio::time::Instant::now())),
        None => CLOSE_BOUND,
    }
}

fn interrupted(signal: crate::error::Signal, session_id: &str) -> Error {
    Error::Interrupted {
        signal,
        message: format!(
            "interrupted ({}): exec session {session_id} was ended, and the command with it",
            signal.name()
        ),
        fix: None,
    }
}

/// The session loop: it owns the session and the socket's reading half, hands writes to the
/// writer task, and races everything else against the deadline and Ctrl-C.
async fn drive(
    aws: &Aws,
    target: &ExecTarget,
    grant: &Grant,
    input: &mut mpsc::Receiver<Input>,
    output: &OutputQueue,
    options: &SessionOptions,
) -> Result<SessionEnd> {
    let started = Instant::now();
    let dialer = Dialer {
        ssm: aws.ssm(),
        session_id: grant.session_id.clone(),
        stream_url: grant.stream_url.clone(),
        tls: aws.websocket_tls()?,
        limit: websocket::connect_timeout()?,
    };
    let mut link = Link::Dialling { dial: dialer.first(grant.token.clone()), first: true };
    let mut writer = Writer::<SocketSink>::spawn(WRITE_QUEUE, WRITE_STALL);
    let mut resumes = Resumes::new(options.resume_budget);
    let mut session = Session::with_random_ids(Box::new(epoch_ms));
    session.set_size(options.size, mono_ms());
    let mut input_open = true;
    let (alarm_tx, mut alarm) = mpsc::channel::<Error>(1);
    let _watchdog = AbortOnDrop(tokio::spawn(watch_task(aws.ecs(), target.clone(), options.watchdog_every, alarm_tx)));
    let mut ping = tokio::time::interval(PING_EVERY);
    ping.tick().await;
    // The agent has spoken (its first output, or the end of a handshake): set-up is over.
    let mut opened = false;
    let mut seen_output = false;
    let mut last_activity = tokio::time::Instant::now();
    // Made once, not per turn of the loop (one turn per frame).
    let interrupt = crate::interrupt::wait();
    tokio::pin!(interrupt);

    loop {
        if link.is_up() {
            while writer.has_room() {
                let Some(bytes) = session.poll_transmit() else { break };
                writer.try_write(Message::Binary(bytes.into()));
            }
        }
        let deadline = options.deadline_now(opened);
        while let Some(event) = session.poll_event() {
            match event {
                Event::Output(bytes) => {
                    opened = true;
                    seen_output = true;
                    last_activity = tokio::time::Instant::now();
                    if output.push(bytes).is_err() {
                        // The consumer has gone (its error, e.g. a closed stdout, is the answer).
                        return Ok(SessionEnd::default());
                    }
                }
                Event::ChannelClosed(closed) if session.handshake_pending() => {
                    writer.close(close_bound(deadline)).await;
                    return Err(handshake_failed(&closed.output, &target.env));
                }
                Event::ChannelClosed(closed) => {
                    tracing::info!(session = %grant.session_id, elapsed_ms = started.elapsed().as_millis() as u64, resends = session.resends(), resumes = resumes.total(), "channel closed");
                    writer.close(close_bound(deadline)).await;
                    return Ok(SessionEnd { closing_output: closed.output });
                }
                Event::Invalid(err) => tracing::debug!(%err, "dropped an invalid frame"),
                Event::HandshakeRequest(request) => {
                    let requested = handshake::read_request(&request);
                    if !requested.refused.is_empty() {
                        // Answer Unsupported so the agent ends its side too, then stop.
                        let response = handshake::response(&request, None, &client_version());
                        let body = serde_json::to_vec(&response).expect("serialises");
                        session.send_handshake(PayloadType::HandshakeResponse, body, mono_ms());
                        while writer.has_room() {
                            let Some(bytes) = session.poll_transmit() else { break };
                            writer.try_write(Message::Binary(bytes.into()));
                        }
                        writer.close(close_bound(deadline)).await;
                        return Err(Error::exec(
                            ExecKind::Protocol,
                            format!(
                                "the agent asked for {}, which an exec session does not use",
                                requested.refused.join(" and ")
                            ),
                            format!("check that the target is an ECS Exec container (`evoctl doctor {}`)", target.env),
                        ));
                    }
                    let kms = requested.kms.as_ref();
                    let answer = tokio::select! {
                        answer = answer_handshake(aws, grant, target, &request, kms, &mut session) => answer?,
                        _ = sleep_until_opt(deadline.map(|(at, _)| at)) => {
                            let bound = deadline.map_or(Bound::Run, |(_, bound)| bound);
                            return Err(options.timed_out_at(bound, "KMS GenerateDataKey had not answered"));
                        }
                        signal = &mut interrupt => return Err(interrupted(signal, &grant.session_id)),
                    };
                    session.send_handshake(PayloadType::HandshakeResponse, answer, mono_ms());
                }
                Event::HandshakeComplete(done) => {
                    opened = true;
                    tracing::info!(session = %grant.session_id, encrypted = session.is_encrypted(), customer_message = %done.customer_message, "handshake complete");
                }
                Event::Undecryptable(err) => {
                    return Err(Error::exec(
                        ExecKind::Protocol,
                        format!("session {}: {err}", grant.session_id),
                        "run the command again; if it repeats, something between you and ssmmessages alters traffic",
                    ));
                }
                other => tracing::trace!(?other, "ignored event"),
            }
        }
        let deadline = options.deadline_now(opened);
        let up = link.is_up();
        let timer = session.next_timeout().filter(|_| up).map(|at| {
            let wait = at.saturating_sub(mono_ms());
            tokio::time::Instant::now() + Duration::from_millis(wait)
        });
        let idle_at = options.idle_timeout.filter(|_| opened).map(|idle| last_activity + idle);
        let output_full = output.is_full();
        let writer_room = writer.has_room();
        let input_room = session.unacked_bytes() < MAX_UNACKED_INPUT_BYTES;
        tokio::select! {
            event = link.next(!output_full && writer_room) => match event {
                LinkEvent::Dialled(Ok(dialled)) => {
                    let (sink, reader) = (*dialled.socket).split();
                    writer.attach(sink, vec![token_frame(&dialled.token), keepalive()]);
                    link = Link::Up { reader, delivered: false };
                }
                LinkEvent::Dialled(Err(failure)) if !failure.retry => return Err(failure.error),
                LinkEvent::Dialled(Err(failure)) => {
                    link = redial(&dialer, &mut resumes, &mut writer, &failure.error.to_string())?;
                }
                LinkEvent::Received(Some(Ok(message))) => {
                    link.take(message, mono_ms(), &mut session, &dialer, &mut resumes, &mut writer)?;
                }
                LinkEvent::Received(Some(Err(tungstenite::Error::Capacity(err)))) => {
                    return Err(Error::exec(
                        ExecKind::Protocol,
                        format!(
                            "the data channel of session {} sent more than a frame can hold ({err}; the limit is {} bytes): the session was ended",
                            grant.session_id,
                            websocket::MAX_MESSAGE_BYTES
                        ),
                        "something between you and ssmmessages is not speaking the Session Manager protocol: check proxies and the stream URL",
                    ));
                }
                LinkEvent::Received(Some(Err(err))) => {
                    link = redial(&dialer, &mut resumes, &mut writer, &format!("the socket failed ({err})"))?;
                }
                LinkEvent::Received(None) => {
                    link = redial(&dialer, &mut resumes, &mut writer, "the socket ended")?;
                }
            },
            fault = writer.fault(), if up => {
                let why = match fault.kind {
                    FaultKind::Stalled(_) => format!("{} (the path stopped taking data)", fault.kind),
                    FaultKind::Failed(_) => fault.kind.to_string(),
                };
                link = redial(&dialer, &mut resumes, &mut writer, &why)?;
            }
            _ = writer.room(), if up && !writer_room => {}
            _ = output.drained(), if output_full => {}
            _ = sleep_until_opt(timer) => session.handle_timeout(mono_ms()),
            received = input.recv(), if input_open && input_room => match received {
                Some(Input::Data(bytes)) => {
                    last_activity = tokio::time::Instant::now();
                    session.send_data(&bytes, mono_ms());
                }
                Some(Input::Resize(size)) => session.set_size(size, mono_ms()),
                None => input_open = false,
            },
            Some(err) = alarm.recv() => return Err(err),
            _ = ping.tick() => {
                if up {
                    writer.try_write(keepalive());
                }
            }
            _ = sleep_until_opt(deadline.map(|(at, _)| at)) => {
                let bound = deadline.map_or(Bound::Run, |(_, bound)| bound);
                return Err(options.timed_out_at(bound, link.waiting_for(seen_output)));
            }
            _ = sleep_until_opt(idle_at) => {
                let idle = options.idle_timeout.unwrap_or_default();
                return Err(Error::Timeout {
                    message: format!("the shell was idle for {} (no input or output): session {} was ended", seconds(idle), grant.session_id),
                    fix: Some("start it again; --idle-timeout (or EVOCTL_SHELL_IDLE_TIMEOUT) sets the limit".into()),
                });
            }
            signal = &mut interrupt => return Err(interrupted(signal, &grant.session_id)),
        }
    }
}

/// Aborts a spawned task when dropped (the watchdog dies with its session).
pub(crate) struct AbortOnDrop(pub(crate) tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Check the task every `every`, in a task of its own: a slow DescribeTasks never holds the
/// session loop or its deadline back. A stopped task raises the alarm.
pub(crate) async fn watch_task(
    ecs: aws_sdk_ecs::Client,
    target: ExecTarget,
    every: Duration,
    alarm: mpsc::Sender<Error>,
) {
    loop {
        tokio::time::sleep(every).await;
        if let Err(err) = check_task(&ecs, &target).await {
            let _ = alarm.send(err).await;
            return;
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
    Error::exec(ExecKind::Handshake, format!("the agent ended the session during the KMS handshake: {reason}"), fix)
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
            .map_err(|e| Error::exec(ExecKind::Protocol, format!("KMS returned an unusable data key: {e}"), "retry"))?;
        session.enable_encryption(cipher);
        reply =
            Some(handshake::KmsReply { ciphertext: key.ciphertext, challenge_acknowledged: kms.challenge.is_some() });
    }
    let response = handshake::response(request, reply.as_ref(), &client_version());
    Ok(serde_json::to_vec(&response).expect("serialises"))
}

pub(crate) async fn sleep_until_opt(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The websocket TLS stack uses aws-lc-rs (already linked for the AWS SDK); never OpenSSL.
pub(crate) fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// Start a session for either transport: one of the task's two slots, then ExecuteCommand; the
/// session is registered at once (its guard holds the slot until TerminateSession). A signal
/// that came during the lookup stops here, before any session exists.
pub(crate) async fn start_session(
    aws: &Aws,
    target: &ExecTarget,
    command: &str,
    options: &SessionOptions,
) -> Result<(Grant, SessionGuard)> {
    crate::interrupt::before_starting(async {
        let slot =
            options.within("a session slot on the task was still taken", super::slots::take(aws, target)).await??;
        let grant =
            options.within("ExecuteCommand had not answered", execute_command(&aws.ecs(), target, command)).await??;
        tracing::info!(session = %grant.session_id, task = %target.task.id, "exec session started");
        let guard = SessionGuard::open(aws, &grant.session_id, slot);
        Ok((grant, guard))
    })
    .await
}

async fn execute_command(ecs: &aws_sdk_ecs::Client, target: &ExecTarget, command: &str) -> Result<Grant> {
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
                    ExecKind::TargetNotConnected,
                    format!("the ExecuteCommandAgent of task {} is not connected ({})", target.task.id, failure.message),
                    format!(
                        "retry in a few seconds; if it persists run `evoctl doctor {}` (task role ssmmessages permissions, a route to ssmmessages, no AWS keys in the container env)",
                        target.env
                    ),
                ),
                "InvalidParameterException" => {
                    let kind = if failure.message.contains("not enabled") {
                        ExecKind::ExecDisabled
                    } else if ["PROVISIONING", "PENDING", "ACTIVATING"].iter().any(|s| failure.message.contains(s)) {
                        ExecKind::TaskStarting
                    } else {
                        ExecKind::TaskStopped
                    };
                    Error::exec(
                        kind,
                        format!("ExecuteCommand was refused: {}", failure.message),
                        format!(
                            "check that the task was started with enableExecuteCommand and its agent is RUNNING (`evoctl status {}`)",
                            target.env
                        ),
                    )
                }
                _ => failure.into_error(),
            }
        })?;
    let incomplete = |what: &str| Error::exec(ExecKind::Protocol, format!("ExecuteCommand returned {what}"), "retry");
    let session = out.session().ok_or_else(|| incomplete("no session"))?;
    match (session.session_id(), session.stream_url(), session.token_value()) {
        (Some(session_id), Some(stream_url), Some(token)) => {
            crate::output::sanitize::hold(token);
            Ok(Grant { session_id: session_id.to_owned(), stream_url: stream_url.to_owned(), token: token.to_owned() })
        }
        _ => Err(incomplete("an incomplete session")),
    }
}

/// End the session with a clear error when its task is stopping or gone.
async fn check_task(ecs: &aws_sdk_ecs::Client, target: &ExecTarget) -> Result<()> {
    match task_stop::describe(ecs, &target.cluster, &target.task.arn).await {
        Ok(Some(task)) if matches!(task.last_status.as_str(), "RUNNING" | "PENDING" | "ACTIVATING") => Ok(()),
        Ok(Some(task)) => Err(Error::exec(
            ExecKind::TaskStopped,
            format!(
                "task {} is {}{} while the exec session was running",
                target.task.id,
                task.last_status,
                task.stopped_reason.map(|r| format!(" ({r})")).unwrap_or_default()
            ),
            format!("the task was replaced or stopped; check `evoctl status {}` and retry on the new task", target.env),
        )),
        Ok(None) => Err(Error::exec(
            ExecKind::TaskStopped,
            format!("task {} no longer exists", target.task.id),
            "retry on the new task",
        )),
        Err(err) => {
            tracing::debug!(%err, "watchdog could not read the task; will try again");
            Ok(())
        }
    }
}
