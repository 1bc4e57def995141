//! The lab's data plane: the message gateway's websocket endpoint and an ExecuteCommandAgent
//! per session, speaking the real protocol with the shared [`Session`] state machine.
//!
//! The agent checks the token, splits the command shell-word style and runs it without a shell
//! under a real pty, with the task definition's container environment, a work dir standing in
//! for `/evolution` and a PATH that has `node` and `sh` but no curl or wget. It waits
//! `--agent-delay-ms` before reading (the real agent waits 1 s), sends at most 1024-byte output
//! frames cut at UTF-8 boundaries, acks and resends, and closes with `channel_closed`. Faults
//! from `/_lab/faults` act on the wire: loss, duplication, reordering, delayed acks, paused
//! publication and a dropped socket (the session survives it and can be resumed). On a cluster
//! with an exec KMS key it first runs the agent's KMS handshake (Decrypt of the client's data
//! key with the task role, the encryption challenge) and then seals its output.
//!
//! `ssm:TerminateSession` ends a session as the service does: the agent kills the command's
//! process group and the gateway closes the channel. The hub keeps a process table (every
//! session's process group and whether anything in it still runs) for tests to read. The gateway
//! also does what MGS must do for a client that stops reading (a paused pager): while more than
//! [`GATEWAY_BACKLOG_FRAMES`] frames wait to be written to the client, the agent is paused (it
//! stops reading the pty, as the real agent does while paused), so the command blocks instead of
//! the gateway buffering without bound. (MGS's exact rule is not public; this one is inferred.)

use super::server::{Faults, Shared};
use super::services::{self, ApiError};
use super::state::now_ms;
use axum::extract::ws::{Message, WebSocket};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use evoctl_ssm::crypto::{CounterNonce, SessionCipher, Side};
use evoctl_ssm::frame::{Frame, message_type};
use evoctl_ssm::handshake;
use evoctl_ssm::messages::{ChannelClosed, HandshakeComplete, OpenDataChannel};
use evoctl_ssm::{Event, NonceSource, PayloadType, ResendPolicy, Role, Session};
use futures::{SinkExt, StreamExt};
use indexmap::IndexMap;
use serde_json::json;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

/// Tools the stand-in container has on its PATH (BusyBox-like; deliberately no curl or wget).
const CONTAINER_TOOLS: &[&str] =
    &["node", "sh", "cat", "ls", "env", "echo", "printf", "sleep", "true", "false", "id", "uname", "head", "tr"];

/// Frames waiting to be written to a client above which the gateway pauses the agent.
pub const GATEWAY_BACKLOG_FRAMES: usize = 256;

/// One row of the lab's process table.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ProcessRow {
    pub session_id: String,
    pub task_id: String,
    /// The process group of the command (its pid: the pty's session leader).
    pub pgid: i32,
    /// Whether any process of the group is still running.
    pub alive: bool,
    /// Whether TerminateSession ended the session.
    pub terminated: bool,
    /// Output frames still unacknowledged when the agent closed after its 2 s drain (None: it
    /// closed with everything acknowledged, or it has not closed).
    pub unacked_at_close: Option<usize>,
}

/// What ExecuteCommand granted: everything the agent needs to run the session.
#[derive(Debug, Clone)]
pub struct ExecGrant {
    pub session_id: String,
    pub token: String,
    pub task_id: String,
    pub command: String,
    pub environment: IndexMap<String, String>,
    /// The agent's own target id (`ecs:<cluster>_<task>_<runtime id>`).
    pub target_id: String,
    /// The cluster's exec KMS key: the session opens with the KMS handshake.
    pub kms_key_id: Option<String>,
}

/// Data-plane settings.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    pub agent_delay: Duration,
    /// Holds `bin/` (the container PATH) and `tasks/<id>/evolution` work dirs.
    pub root: PathBuf,
}

/// The sessions of one lab.
pub struct AgentHub {
    options: AgentOptions,
    sessions: Mutex<HashMap<String, Arc<AgentSession>>>,
    /// Every command started: (session, task, process group, terminated).
    processes: Mutex<Vec<(String, String, i32, bool)>>,
    /// Sessions closed with output still unacknowledged once the 2 s drain ran out (the real
    /// agent's bound, ssm-data-channel.md §9 row 10), and how many frames were left.
    abandoned: Mutex<HashMap<String, usize>>,
}

struct AgentSession {
    grant: ExecGrant,
    /// Frames for the client, through whichever socket is attached now.
    socket: Mutex<Option<mpsc::UnboundedSender<WireOut>>>,
    /// Frames from the client.
    inbound: mpsc::UnboundedSender<Vec<u8>>,
    inbound_rx: Mutex<Option<mpsc::UnboundedReceiver<Vec<u8>>>>,
    frames_sent: Mutex<u64>,
    disconnected_once: Mutex<bool>,
    /// Frames handed to the client's socket and not written yet (the gateway's backlog).
    backlog: std::sync::atomic::AtomicUsize,
    drained: tokio::sync::Notify,
    /// TerminateSession: the agent kills the command and the channel closes.
    cancelled: tokio::sync::Notify,
    cancel_requested: std::sync::atomic::AtomicBool,
    oversized_sent: std::sync::atomic::AtomicBool,
}

impl AgentSession {
    fn backlogged(&self) -> bool {
        self.backlog.load(std::sync::atomic::Ordering::Acquire) > GATEWAY_BACKLOG_FRAMES
    }

    fn cancel_requested(&self) -> bool {
        self.cancel_requested.load(std::sync::atomic::Ordering::Acquire)
    }
}

enum WireOut {
    Frame(Vec<u8>),
    Close,
}

impl AgentHub {
    pub fn new(options: AgentOptions) -> std::io::Result<AgentHub> {
        let bin = options.root.join("bin");
        std::fs::create_dir_all(&bin)?;
        for tool in CONTAINER_TOOLS {
            if let Some(path) = which(tool) {
                let link = bin.join(tool);
                let _ = std::fs::remove_file(&link);
                std::os::unix::fs::symlink(path, link)?;
            }
        }
        Ok(AgentHub {
            options,
            sessions: Mutex::new(HashMap::new()),
            processes: Mutex::new(Vec::new()),
            abandoned: Mutex::new(HashMap::new()),
        })
    }

    /// TerminateSession: kill the session's command and close its channel. False when the
    /// session is not running (already over).
    pub fn terminate(&self, session_id: &str) -> bool {
        let session = self.sessions.lock().expect("lab lock").get(session_id).cloned();
        {
            let mut processes = self.processes.lock().expect("lab lock");
            for row in processes.iter_mut().filter(|row| row.0 == session_id) {
                kill_group(row.2);
                row.3 = true;
            }
        }
        match session {
            Some(session) => {
                session.cancel_requested.store(true, std::sync::atomic::Ordering::Release);
                session.cancelled.notify_waiters();
                true
            }
            None => false,
        }
    }

    /// The process table: every command the lab's agents started and whether it still runs.
    pub fn processes(&self) -> Vec<ProcessRow> {
        let abandoned = self.abandoned.lock().expect("lab lock").clone();
        self.processes
            .lock()
            .expect("lab lock")
            .iter()
            .map(|(session_id, task_id, pgid, terminated)| ProcessRow {
                session_id: session_id.clone(),
                task_id: task_id.clone(),
                pgid: *pgid,
                alive: group_alive(*pgid),
                terminated: *terminated,
                unacked_at_close: abandoned.get(session_id).copied(),
            })
            .collect()
    }

    /// The PATH the stand-in container has.
    pub fn container_path(&self) -> String {
        self.options.root.join("bin").display().to_string()
    }

    /// Serve one websocket: check the token, attach it to its session (new or resumed).
    pub async fn serve_socket(self: Arc<Self>, shared: Arc<Shared>, session_id: String, socket: WebSocket) {
        let (mut sink, mut stream) = socket.split();
        let first = tokio::time::timeout(Duration::from_secs(30), stream.next()).await;
        let token = match first {
            Ok(Some(Ok(Message::Text(text)))) => {
                serde_json::from_str::<OpenDataChannel>(&text).ok().map(|o| o.token_value)
            }
            _ => None,
        };
        let grant = shared.account.lock().expect("lab lock").exec_sessions.get(&session_id).cloned();
        let Some(grant) = grant.filter(|g| Some(&g.token) == token.as_ref()) else {
            tracing::debug!(session = %session_id, "bad or missing token; closing");
            let _ = sink.send(Message::Close(None)).await;
            return;
        };
        let session = {
            let mut sessions = self.sessions.lock().expect("lab lock");
            match sessions.get(&session_id) {
                Some(existing) => Arc::clone(existing),
                None => {
                    let (inbound, inbound_rx) = mpsc::unbounded_channel();
                    let created = Arc::new(AgentSession {
                        grant,
                        socket: Mutex::new(None),
                        inbound,
                        inbound_rx: Mutex::new(Some(inbound_rx)),
                        frames_sent: Mutex::new(0),
                        disconnected_once: Mutex::new(false),
                        backlog: std::sync::atomic::AtomicUsize::new(0),
                        drained: tokio::sync::Notify::new(),
                        cancelled: tokio::sync::Notify::new(),
                        cancel_requested: std::sync::atomic::AtomicBool::new(false),
                        oversized_sent: std::sync::atomic::AtomicBool::new(false),
                    });
                    sessions.insert(session_id.clone(), Arc::clone(&created));
                    let hub = Arc::clone(&self);
                    let runner = Arc::clone(&created);
                    let shared_for_agent = Arc::clone(&shared);
                    tokio::spawn(async move { hub.run_agent(shared_for_agent, runner).await });
                    created
                }
            }
        };
        let (out_tx, mut out_rx) = mpsc::unbounded_channel::<WireOut>();
        *session.socket.lock().expect("lab lock") = Some(out_tx);
        let writing = Arc::clone(&session);
        let writer = tokio::spawn(async move {
            while let Some(item) = out_rx.recv().await {
                match item {
                    WireOut::Frame(bytes) => {
                        let sent = sink.send(Message::Binary(bytes.into())).await;
                        let before = writing
                            .backlog
                            .fetch_update(
                                std::sync::atomic::Ordering::AcqRel,
                                std::sync::atomic::Ordering::Acquire,
                                |n| Some(n.saturating_sub(1)),
                            )
                            .unwrap_or(0);
                        if before <= GATEWAY_BACKLOG_FRAMES / 2 + 1 {
                            writing.drained.notify_waiters();
                        }
                        if sent.is_err() {
                            break;
                        }
                    }
                    WireOut::Close => {
                        let _ = sink.send(Message::Close(None)).await;
                        break;
                    }
                }
            }
        });
        while let Some(Ok(message)) = stream.next().await {
            let bytes = match message {
                Message::Binary(bytes) => bytes.to_vec(),
                Message::Text(text) => text.as_bytes().to_vec(),
                Message::Close(_) => break,
                _ => continue,
            };
            let faults = shared.faults.lock().expect("lab lock").clone();
            if faults.drop_rate > 0.0 && shared.roll() < faults.drop_rate {
                continue;
            }
            let is_ack = Frame::decode(&bytes).map(|f| f.message_type == message_type::ACKNOWLEDGE).unwrap_or(false);
            if is_ack && faults.ack_delay_ms > 0 {
                let inbound = session.inbound.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(faults.ack_delay_ms)).await;
                    let _ = inbound.send(bytes);
                });
            } else {
                let _ = session.inbound.send(bytes);
            }
        }
        writer.abort();
    }

    async fn run_agent(self: Arc<Self>, shared: Arc<Shared>, agent: Arc<AgentSession>) {
        let id = agent.grant.session_id.clone();
        let result = self.agent_loop(&shared, &agent).await;
        if let Err(err) = &result {
            tracing::debug!(session = %id, %err, "agent session failed");
        }
        let output = result.err().map(|e| format!("\n----------ERROR-------\n{e}\n")).unwrap_or_default();
        let closed = ChannelClosed {
            message_id: uuid::Uuid::new_v4().to_string(),
            created_date: now_ms().to_string(),
            destination_id: id.clone(),
            session_id: id.clone(),
            message_type: message_type::CHANNEL_CLOSED.into(),
            schema_version: 1,
            output,
        };
        let frame = Frame::new(
            message_type::CHANNEL_CLOSED,
            0,
            0,
            *uuid::Uuid::new_v4().as_bytes(),
            now_ms(),
            0,
            serde_json::to_vec(&closed).expect("serialises"),
        );
        if let Some(socket) = agent.socket.lock().expect("lab lock").as_ref() {
            let _ = socket.send(WireOut::Frame(frame.encode().expect("fresh id")));
            let _ = socket.send(WireOut::Close);
        }
        self.sessions.lock().expect("lab lock").remove(&id);
        shared.account.lock().expect("lab lock").exec_sessions.shift_remove(&id);
    }

    async fn agent_loop(&self, shared: &Arc<Shared>, agent: &Arc<AgentSession>) -> Result<(), String> {
        let mut inbound = agent.inbound_rx.lock().expect("lab lock").take().ok_or("session started twice")?;
        let words = shlex::split(&agent.grant.command).ok_or("Failed to parse commands input")?;
        let words = if words.is_empty() { vec!["sh".to_owned()] } else { words };
        let mut session = Session::with_random_ids(Role::Agent, Box::new(super::state::now_ms));
        // The lab resends every overdue frame at once (the real agent: the oldest only), which
        // keeps the fault matrix fast; see docs/lab.md.
        session.set_resend_policy(ResendPolicy::EveryOverdue);
        let mut wire = Wire;
        let mut pause_until: Option<tokio::time::Instant> = None;
        if let Some(key_id) = &agent.grant.kms_key_id {
            let mut link =
                Link { shared, agent, session: &mut session, wire: &mut wire, pause_until: &mut pause_until };
            self.kms_handshake(&mut link, &mut inbound, key_id).await?;
        }
        let workdir = self.options.root.join("tasks").join(&agent.grant.task_id).join("evolution");
        std::fs::create_dir_all(&workdir).map_err(|e| e.to_string())?;
        let (pty, pts) = pty_process::open().map_err(|e| format!("pty: {e}"))?;
        pty.resize(pty_process::Size::new(24, 80)).map_err(|e| format!("pty: {e}"))?;
        let mut environment = agent.grant.environment.clone();
        environment.insert("PATH".into(), self.container_path());
        environment.insert("TERM".into(), "xterm-256color".into());
        environment.entry("LANG".into()).or_insert_with(|| "C.UTF-8".into());
        environment.insert("HOME".into(), workdir.display().to_string());
        if let Some(port) = shared.evolution.port_of(&agent.grant.task_id) {
            environment.insert("SERVER_PORT".into(), port.to_string());
        }
        let dotenv = workdir.join(".env");
        if !dotenv.exists() {
            // The image's baked `.env` (`.env.example` at 2.3.7).
            std::fs::write(&dotenv, super::evolution::env::image_dotenv_text()).map_err(|e| e.to_string())?;
        }
        // Resolve the program on the container PATH, as exec would inside the container.
        let program = if words[0].contains('/') {
            PathBuf::from(&words[0])
        } else {
            self.options.root.join("bin").join(&words[0])
        };
        // A program the image lacks (fault `missing_programs`): "Unable to start command", and
        // nothing on the data channel (ssm-data-channel.md §9 row 9).
        let missing = shared.faults.lock().expect("lab lock").missing_programs.iter().any(|p| *p == words[0]);
        if missing {
            return Err(format!("Unable to start command: exec: \"{}\": executable file not found in $PATH", words[0]));
        }
        let mut child = pty_process::Command::new(&program)
            .args(&words[1..])
            .env_clear()
            .envs(environment)
            .current_dir(&workdir)
            .kill_on_drop(true)
            .spawn(pts)
            .map_err(|e| format!("exec: \"{}\": executable file not found in $PATH ({e})", words[0]))?;
        let pgid = child.id().map(|pid| pid as i32).unwrap_or(0);
        self.processes.lock().expect("lab lock").push((
            agent.grant.session_id.clone(),
            agent.grant.task_id.clone(),
            pgid,
            false,
        ));
        if agent.cancel_requested() {
            kill_group(pgid);
        }
        tokio::time::sleep(self.options.agent_delay).await;
        let (mut reader, mut writer) = pty.into_split();
        let mut buffer = [0u8; 1024];
        let mut carry: Vec<u8> = Vec::new();
        let mut output_done = false;
        let mut exited = false;
        let mut drain_deadline: Option<tokio::time::Instant> = None;
        let mut gateway_paused = false;
        loop {
            Link { shared, agent, session: &mut session, wire: &mut wire, pause_until: &mut pause_until }.flush();
            while let Some(event) = session.poll_event() {
                match event {
                    Event::Input(bytes) => {
                        let _ = writer.write_all(&bytes).await;
                    }
                    Event::Resize(size) => {
                        let _ = writer.resize(pty_process::Size::new(size.rows as u16, size.cols as u16));
                    }
                    _ => {}
                }
            }
            if output_done && exited {
                if session.unacked() == 0 {
                    return Ok(());
                }
                let deadline =
                    *drain_deadline.get_or_insert_with(|| tokio::time::Instant::now() + Duration::from_secs(2));
                if tokio::time::Instant::now() >= deadline {
                    // The real agent closes anyway: whatever is unacked is lost to the client.
                    self.abandoned.lock().expect("lab lock").insert(agent.grant.session_id.clone(), session.unacked());
                    return Ok(());
                }
            }
            let drained = agent.drained.notified();
            let cancelled = agent.cancelled.notified();
            if agent.cancel_requested() {
                return end_killed(pgid, &mut child).await;
            }
            // The gateway pauses publication while the client does not read: the agent then
            // sends and resends nothing and leaves the pty unread, as the real agent does paused.
            let backlogged = agent.backlogged();
            if backlogged != gateway_paused {
                gateway_paused = backlogged;
                let kind = if backlogged { message_type::PAUSE_PUBLICATION } else { message_type::START_PUBLICATION };
                session.receive(&publication(kind), now_ms());
                if !backlogged {
                    continue;
                }
            }
            let timer = session
                .next_timeout()
                .map(|at| tokio::time::Instant::now() + Duration::from_millis(at.saturating_sub(now_ms())));
            let resume_at = pause_until;
            tokio::select! {
                _ = cancelled => return end_killed(pgid, &mut child).await,
                _ = drained, if backlogged => {}
                read = reader.read(&mut buffer), if !output_done && !backlogged => match read {
                    Ok(0) | Err(_) => {
                        if !carry.is_empty() {
                            session.send_data(&std::mem::take(&mut carry), now_ms());
                        }
                        output_done = true;
                    }
                    Ok(n) => {
                        carry.extend_from_slice(&buffer[..n]);
                        let cut = utf8_boundary(&carry);
                        let ready: Vec<u8> = carry.drain(..cut).collect();
                        if !ready.is_empty() {
                            session.send_data(&ready, now_ms());
                        }
                        let delay = shared.faults.lock().expect("lab lock").pty_read_delay_ms;
                        if delay > 0 {
                            tokio::time::sleep(Duration::from_millis(delay)).await;
                        }
                    }
                },
                status = child.wait(), if !exited => {
                    tracing::debug!(?status, "lab exec process exited");
                    exited = true;
                }
                frame = inbound.recv() => match frame {
                    Some(bytes) => session.receive(&bytes, now_ms()),
                    None => return Ok(()),
                },
                _ = sleep_until_opt(timer) => session.handle_timeout(now_ms()),
                _ = sleep_until_opt(resume_at) => {
                    Link { shared, agent, session: &mut session, wire: &mut wire, pause_until: &mut pause_until }.resume_publication();
                }
                // Once the process is gone, give unacked output at most 2 s (as the real agent).
                _ = sleep_until_opt(drain_deadline) => {}
            }
        }
    }

    /// The KMS handshake, as the agent runs it before starting the command: HandshakeRequest
    /// with the key and a random challenge; the client's data key decrypted with the task role
    /// (in-process KMS Decrypt, journaled) under the session/target context, plus the challenge
    /// when acknowledged; the encryption challenge; HandshakeComplete. Input before the end is
    /// dropped, and each step gives up after 15 s, as in the agent.
    async fn kms_handshake(
        &self,
        link: &mut Link<'_>,
        inbound: &mut mpsc::UnboundedReceiver<Vec<u8>>,
        key_id: &str,
    ) -> Result<(), String> {
        let failed = |detail: String| format!("Encountered error while initiating handshake. {detail}");
        let random = |n: usize| {
            let mut bytes = vec![0u8; n];
            aws_lc_rs::rand::fill(&mut bytes).expect("system randomness");
            bytes
        };
        let challenge = BASE64.encode(random(16));
        let kms = handshake::KmsAction { key_id: key_id.to_owned(), challenge: Some(challenge.clone()) };
        let started = tokio::time::Instant::now();
        let request = serde_json::to_vec(&handshake::request(LAB_AGENT_VERSION, Some(&kms))).expect("serialises");
        link.session.send_handshake(PayloadType::HandshakeRequest, request, now_ms());
        let mut step_deadline = tokio::time::Instant::now() + HANDSHAKE_STEP_TIMEOUT;
        let mut expected_answer: Option<Vec<u8>> = None;
        loop {
            link.flush();
            while let Some(event) = link.session.poll_event() {
                match event {
                    Event::HandshakeResponse(response) if expected_answer.is_none() => {
                        let reply = handshake::read_response(&response).map_err(failed)?;
                        let reply = reply.ok_or_else(|| failed("KMSEncryption was not processed".into()))?;
                        let context = handshake::encryption_context(
                            &link.agent.grant.session_id,
                            &link.agent.grant.target_id,
                            reply.challenge_acknowledged.then_some(challenge.as_str()),
                        );
                        let data_key = link.decrypt_with_task_role(key_id, &reply.ciphertext, &context).map_err(|e| {
                            failed(format!("Fetching data key failed: Unable to retrieve data key, Error when decrypting data key {e}"))
                        })?;
                        let cipher = SessionCipher::new(&data_key, Side::Agent).map_err(|e| failed(e.to_string()))?;
                        let start: [u8; 12] = random(12).try_into().expect("12 bytes");
                        let words = [0, 4, 8].map(|i| u32::from_le_bytes(start[i..i + 4].try_into().expect("4 bytes")));
                        link.session.enable_encryption(cipher, NonceSource::Counter(CounterNonce::starting_at(words)));
                        let secret = random(64);
                        link.session.send_challenge(&secret, now_ms()).map_err(|e| failed(e.to_string()))?;
                        expected_answer = Some(secret);
                        step_deadline = tokio::time::Instant::now() + HANDSHAKE_STEP_TIMEOUT;
                    }
                    Event::ChallengeAnswer(answer) if expected_answer.is_some() => {
                        if Some(&answer) != expected_answer.as_ref() {
                            return Err(failed("Encryption challenge does not match.".into()));
                        }
                        let complete = HandshakeComplete {
                            handshake_time_to_complete: started.elapsed().as_nanos() as i64,
                            customer_message: "This session is encrypted using AWS KMS.".into(),
                        };
                        let body = serde_json::to_vec(&complete).expect("serialises");
                        link.session.send_handshake(PayloadType::HandshakeComplete, body, now_ms());
                        return Ok(());
                    }
                    Event::Undecryptable(err) => return Err(failed(err.to_string())),
                    // The agent acks and drops anything else until the handshake is complete.
                    other => tracing::debug!(?other, "dropped during the handshake"),
                }
            }
            let timer = link
                .session
                .next_timeout()
                .map(|at| tokio::time::Instant::now() + Duration::from_millis(at.saturating_sub(now_ms())));
            let resume_at = *link.pause_until;
            tokio::select! {
                frame = inbound.recv() => match frame {
                    Some(bytes) => link.session.receive(&bytes, now_ms()),
                    None => return Err(failed("the client went away".into())),
                },
                _ = sleep_until_opt(timer) => link.session.handle_timeout(now_ms()),
                _ = sleep_until_opt(resume_at) => link.resume_publication(),
                _ = tokio::time::sleep_until(step_deadline) => {
                    return Err("Handshake timed out. Please ensure that you have the latest version of the session manager plugin.".into());
                }
            }
        }
    }
}

/// How long the agent waits for each handshake reply.
const HANDSHAKE_STEP_TIMEOUT: Duration = Duration::from_secs(15);
/// The agent version the lab reports in its HandshakeRequest.
const LAB_AGENT_VERSION: &str = "3.3.1802.0";

/// One agent session's way to the client: its state machine, the faulty wire and the gateway's
/// publication pause.
struct Link<'a> {
    shared: &'a Arc<Shared>,
    agent: &'a AgentSession,
    session: &'a mut Session,
    wire: &'a mut Wire,
    pause_until: &'a mut Option<tokio::time::Instant>,
}

impl Link<'_> {
    /// Flush what the session queued, through the faulty wire.
    fn flush(&mut self) {
        let faults = self.shared.faults.lock().expect("lab lock").clone();
        let mut batch = Vec::new();
        while let Some(bytes) = self.session.poll_transmit() {
            batch.push(bytes);
        }
        for bytes in self.wire.shape(batch, &faults, self.shared) {
            self.send_frame(&faults, bytes);
        }
    }

    /// The gateway's pause is over: start publication again.
    fn resume_publication(&mut self) {
        *self.pause_until = None;
        let start = publication(message_type::START_PUBLICATION);
        self.session.receive(&start, now_ms());
        if let Some(socket) = self.agent.socket.lock().expect("lab lock").as_ref() {
            let _ = socket.send(WireOut::Frame(start));
        }
    }

    /// KMS Decrypt of the client's data key as the task role, journaled like any AWS call.
    fn decrypt_with_task_role(
        &self,
        key_id: &str,
        ciphertext: &[u8],
        context: &std::collections::BTreeMap<String, String>,
    ) -> Result<Vec<u8>, String> {
        let parameters =
            json!({"CiphertextBlob": BASE64.encode(ciphertext), "EncryptionContext": context, "KeyId": key_id});
        let denied = self.shared.faults.lock().expect("lab lock").kms_decrypt_denied;
        let result = if denied {
            let account = self.shared.account.lock().expect("lab lock").account.clone();
            Err(ApiError::client(
                "AccessDeniedException",
                format!(
                    "User: arn:aws:sts::{account}:assumed-role/EvolutionTaskRole/{} is not authorized to perform: kms:Decrypt on resource: {key_id}",
                    self.agent.grant.task_id
                ),
            ))
        } else {
            let mut account = self.shared.account.lock().expect("lab lock");
            services::kms::handle(&mut account, "Decrypt", &parameters, false)
        };
        self.shared.record("kms", "Decrypt", parameters, &result);
        let plaintext = result.map_err(|e| format!("{}: {}", e.code, e.message))?;
        BASE64.decode(plaintext["Plaintext"].as_str().unwrap_or_default()).map_err(|e| e.to_string())
    }

    /// Put one agent frame on the wire, applying the gateway's pause and disconnect faults.
    fn send_frame(&mut self, faults: &Faults, bytes: Vec<u8>) {
        let (agent, session, pause_until) = (self.agent, &mut *self.session, &mut *self.pause_until);
        let socket = agent.socket.lock().expect("lab lock").clone();
        let Some(socket) = socket else { return };
        let is_output =
            Frame::decode(&bytes).map(|f| f.message_type == message_type::OUTPUT_STREAM_DATA).unwrap_or(false);
        let sent = {
            let mut count = agent.frames_sent.lock().expect("lab lock");
            if is_output {
                *count += 1;
            }
            *count
        };
        agent.backlog.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        let _ = socket.send(WireOut::Frame(bytes));
        if !is_output {
            return;
        }
        if let Some(size) = faults.oversized_frame_bytes
            && !agent.oversized_sent.swap(true, std::sync::atomic::Ordering::AcqRel)
        {
            // A broken or hostile peer: one binary message far larger than any frame.
            agent.backlog.fetch_add(1, std::sync::atomic::Ordering::AcqRel);
            let _ = socket.send(WireOut::Frame(vec![0u8; size]));
        }
        if faults.pause_after_frames == Some(sent) && faults.pause_ms > 0 {
            let pause = publication(message_type::PAUSE_PUBLICATION);
            session.receive(&pause, now_ms());
            let _ = socket.send(WireOut::Frame(pause));
            *pause_until = Some(tokio::time::Instant::now() + Duration::from_millis(faults.pause_ms));
        }
        if faults.disconnect_after_frames == Some(sent) {
            let mut once = agent.disconnected_once.lock().expect("lab lock");
            if !*once {
                *once = true;
                let _ = socket.send(WireOut::Close);
                *agent.socket.lock().expect("lab lock") = None;
            }
        }
    }
}

fn publication(kind: &str) -> Vec<u8> {
    Frame::new(kind, 0, 0, *uuid::Uuid::new_v4().as_bytes(), now_ms(), 0, Vec::new()).encode().expect("fresh id")
}

async fn sleep_until_opt(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// Loss, duplication and reordering of agent frames.
struct Wire;

impl Wire {
    fn shape(&mut self, batch: Vec<Vec<u8>>, faults: &Faults, shared: &Shared) -> Vec<Vec<u8>> {
        let mut out = Vec::with_capacity(batch.len());
        for bytes in batch {
            if faults.drop_rate > 0.0 && shared.roll() < faults.drop_rate {
                continue;
            }
            if faults.duplicate_rate > 0.0 && shared.roll() < faults.duplicate_rate {
                out.push(bytes.clone());
            }
            out.push(bytes);
        }
        if faults.reorder_window > 1 {
            for window in out.chunks_mut(faults.reorder_window) {
                for i in (1..window.len()).rev() {
                    let j = (shared.roll() * (i + 1) as f64) as usize;
                    window.swap(i, j.min(i));
                }
            }
        }
        out
    }
}

/// How many leading bytes end on a UTF-8 character boundary (an incomplete trailing sequence of
/// up to 3 bytes is held back, as the real agent does).
fn utf8_boundary(bytes: &[u8]) -> usize {
    let len = bytes.len();
    for back in 1..=3.min(len) {
        let byte = bytes[len - back];
        if byte & 0b1100_0000 == 0b1000_0000 {
            continue;
        }
        let needed = match byte {
            b if b & 0b1000_0000 == 0 => 1,
            b if b & 0b1110_0000 == 0b1100_0000 => 2,
            b if b & 0b1111_0000 == 0b1110_0000 => 3,
            b if b & 0b1111_1000 == 0b1111_0000 => 4,
            _ => return len,
        };
        return if back < needed { len - back } else { len };
    }
    len
}

/// TerminateSession reached the agent: kill the command's group and reap its leader (a zombie
/// would still count as a live process in the process table).
async fn end_killed(pgid: i32, child: &mut tokio::process::Child) -> Result<(), String> {
    kill_group(pgid);
    let _ = tokio::time::timeout(Duration::from_secs(2), child.wait()).await;
    Ok(())
}

/// SIGKILL every process of the group (the command and what it spawned).
fn kill_group(pgid: i32) {
    if let Some(pid) = rustix::process::Pid::from_raw(pgid) {
        let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
    }
}

/// Whether any process of the group still runs (signal 0 probes without killing).
fn group_alive(pgid: i32) -> bool {
    rustix::process::Pid::from_raw(pgid).is_some_and(|pid| rustix::process::test_kill_process_group(pid).is_ok())
}

fn which(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?.to_str()?.split(':').map(|dir| PathBuf::from(dir).join(tool)).find(|p| p.is_file())
}

#[cfg(test)]
mod tests {
    use super::utf8_boundary;

    #[test]
    fn incomplete_utf8_is_held_back() {
        assert_eq!(utf8_boundary(b"abc"), 3);
        assert_eq!(utf8_boundary("é".as_bytes()), 2);
        assert_eq!(utf8_boundary(&"é".as_bytes()[..1]), 0);
        assert_eq!(utf8_boundary(&"a€".as_bytes()[..3]), 1);
        assert_eq!(utf8_boundary(&"a😀".as_bytes()[..4]), 1);
        assert_eq!(utf8_boundary("a😀".as_bytes()), 5);
    }
}
