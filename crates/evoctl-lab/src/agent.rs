//! The lab's exec agent: one ExecuteCommandAgent session per data channel, driven by the lab's
//! own sans-IO [`AgentLink`] (written from the real amazon-ssm-agent's rules, not shared with
//! evoctl's client state machine) behind the lab's message gateway ([`super::gateway`]).
//!
//! Per session the agent sends `agent_session_state` Connected, checks and splits the command as
//! google/shlex does ([`super::shell_words`]; an empty command is refused), runs the KMS
//! handshake first when the cluster has an exec KMS key ([`super::agent_handshake`], Decrypt of
//! the client's data key with the task role, counter nonces from [`super::nonce`]), then runs
//! the command without a shell under a pty opened with no size (0×0 until the first Size), in
//! the task definition's container environment plus `TERM=xterm-256color` and
//! `LANG=C.UTF-8` if unset, with a work dir standing in for `/evolution` and a PATH that has
//! `node` and `sh` but no curl or wget. Input is accepted (and acked) from the moment the pty
//! exists and written to the pty alongside the output reads (the real agent writes input and
//! reads output in separate goroutines); while the pty does not take it, the channel is not
//! read. The first output is read `--agent-delay-ms` (default 1000, the real 1 s) after it
//! starts, in reads of at most 1024 bytes `--agent-read-interval-ms` apart (default 1), never
//! while paused. At EOF it waits at most 2 s for its output to be acked, sends Terminating,
//! runs the session-logging step when the cluster's exec logging is OVERRIDE (delayed by
//! `--session-log-upload-ms`, failing with "unable to generate log data" when the image has no
//! `script`) and closes; the gateway then sends the client `channel_closed`. A command that
//! cannot start writes nothing on the data channel.
//!
//! Per task at most [`SESSION_WORKERS_LIMIT`] sessions run at once and one more waits for a free
//! slot; a further one makes the agent retry 5 × 1 s and then block its control channel for
//! good: that session and every later one on the task never start (§9 row 12).
//!
//! `ssm:TerminateSession` ends a session as the service does: the agent kills the command's
//! process group and the gateway closes the channel. The hub keeps a process table (every
//! session's process group and whether anything in it still runs, plus wedged sessions) for
//! tests to read, with each session's drain as the agent saw it: the frames unacked when it
//! began and how many of them only a resend could recover, the resend ticks and resends it ran,
//! what was lost meanwhile and whether a client socket was attached at the close; from that a
//! test can tell a cut the agent's bound explains from one the client caused.

use super::agent_link::{AgentEvent, AgentLink, CLOSE_DRAIN_MS, HANDSHAKE_STEP_TIMEOUT_MS, Pacing, SessionState};
use super::gateway::{Channel, Gateway};
use super::hub::Shared;
use super::nonce::CounterNonce;
use super::services::{self, ApiError};
use super::state::now_ms;
use super::{agent_handshake, shell_words};
use axum::extract::ws::WebSocket;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use evoctl_ssm::crypto::{SessionCipher, Side};
use evoctl_ssm::frame::PayloadType;
use serde_json::json;
use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{mpsc, oneshot};

pub use super::gateway::GATEWAY_BACKLOG_FRAMES;

/// Tools the stand-in container has on its PATH (BusyBox-like; deliberately no curl or wget,
/// and no `script`, which session logging needs).
const CONTAINER_TOOLS: &[&str] = &[
    "node",
    "sh",
    "cat",
    "ls",
    "env",
    "echo",
    "printf",
    "sleep",
    "true",
    "false",
    "id",
    "uname",
    "head",
    "tr",
    "stty",
    "sha256sum",
];

/// Sessions one task's agent runs at once (`Mgs.SessionWorkersLimit`, ECS's default).
pub const SESSION_WORKERS_LIMIT: usize = 2;
/// Sessions that wait for a free worker (the agent's buffer of 1).
pub const SESSION_QUEUE: usize = 1;
/// How many read intervals the pty reads may fall behind their schedule and still catch up.
const READ_CATCH_UP: u32 = 4;
/// Tries, 1 s apart, to queue a session before the agent blocks its control channel.
const QUEUE_RETRIES: u32 = 5;
/// Input bytes the agent holds for a pty that is not reading; past this it stops reading the
/// channel, as the real agent, which writes each input message to the pty before it reads the
/// next, does.
const PTY_INPUT_BACKLOG: usize = 64 * 1024;
/// What the logging step records when the image has no `script`.
pub const SESSION_LOG_FAILED: &str = "failed: unable to generate log data";

/// One row of the lab's process table.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ProcessRow {
    pub session_id: String,
    pub task_id: String,
    /// The process group of the command (its pid: the pty's session leader); 0 for a session
    /// that never started.
    pub pgid: i32,
    /// Whether any process of the group is still running.
    pub alive: bool,
    /// Whether TerminateSession ended the session.
    pub terminated: bool,
    /// Output frames still unacknowledged when the agent closed after its 2 s drain (None: it
    /// closed with everything acknowledged, or it has not closed).
    pub unacked_at_close: Option<usize>,
    /// Agent frames the gateway lost on the way to the client before that close (the loss fault,
    /// or frames sent while no client socket was attached); None unless `unacked_at_close` is set.
    pub frames_lost: Option<u64>,
    /// The agent's 2 s drain (§9 row 10), from the moment the command had exited and its output
    /// ended to the close; None when the session never got there.
    pub drain: Option<DrainRecord>,
    /// Bytes the agent read from the pty and sent as output (what the data channel carried,
    /// the command's output plus whatever the client's own framing added).
    pub output_bytes: u64,
    /// The session-logging step (cluster exec logging OVERRIDE): "uploaded" or
    /// "failed: unable to generate log data"; None when logging is off or not run yet.
    pub session_log: Option<String>,
    /// The session came past the task's worker limit and queue: the agent blocked its control
    /// channel and the session never starts (§9 row 12).
    pub wedged: bool,
}

/// What the agent saw of one session's drain: at its start (the command had exited and the
/// pty read had ended), during it and at the close. What was lost on the way is the gateway's
/// count; everything else is the agent's own.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct DrainRecord {
    /// When the drain began (epoch ms).
    pub exited_at_ms: u64,
    /// Output frames unacknowledged when the drain began.
    pub unacked_at_exit: usize,
    /// Of those, the frames only a resend could bring to the client: never written to a client
    /// socket, or acked by the client with the ack lost on the way. The others had reached the
    /// client, whose acks were due.
    pub unacked_lost_at_exit: usize,
    /// The retransmission timeout when the drain began, and the highest it reached during it.
    pub rto_at_exit_ms: u64,
    pub max_rto_ms: u64,
    /// When the agent closed (epoch ms); None while it has not (and when TerminateSession
    /// ended the session first).
    pub closed_at_ms: Option<u64>,
    /// Output frames still unacknowledged when it closed: 0 when everything was acked in time,
    /// more when the drain ran out.
    pub unacked_at_close: usize,
    /// Resend ticks the agent ran during the drain while not paused (each a chance to resend
    /// its oldest unacked frame), and the frames it resent on them.
    pub resend_ticks: u64,
    pub resends: u64,
    /// How long publication was paused during the drain (no resends then).
    pub paused_ms: u64,
    /// Agent frames lost on the way to the client during the drain (dropped, or sent while no
    /// client socket was attached), and client frames (acks) dropped on the way to the agent.
    pub frames_lost: u64,
    pub client_frames_lost: u64,
    /// Whether a client socket was attached when the agent closed.
    pub client_attached_at_close: bool,
}

/// A drain under way: its record so far and the counters it started from.
struct Drain {
    record: DrainRecord,
    deadline: tokio::time::Instant,
    /// Since when publication has been paused (None: it is not), and the paused time before.
    paused_since: Option<tokio::time::Instant>,
    paused_before: Duration,
    resend_ticks: u64,
    resends: u64,
    frames_lost: u64,
    client_frames_lost: u64,
}

impl Drain {
    fn start(link: &AgentLink, channel: &Channel) -> Drain {
        let unacked = link.unacked_sequences();
        let rto = link.rto_ms().round() as u64;
        Drain {
            record: DrainRecord {
                exited_at_ms: now_ms(),
                unacked_at_exit: unacked.len(),
                unacked_lost_at_exit: channel.needing_resend(&unacked),
                rto_at_exit_ms: rto,
                max_rto_ms: rto,
                ..DrainRecord::default()
            },
            deadline: tokio::time::Instant::now() + Duration::from_millis(CLOSE_DRAIN_MS),
            paused_since: None,
            paused_before: Duration::ZERO,
            resend_ticks: link.resend_ticks(),
            resends: link.resends(),
            frames_lost: channel.frames_lost(),
            client_frames_lost: channel.client_frames_lost(),
        }
    }

    /// The record so far (or at the close, `closed`). Called on every turn of the agent's loop,
    /// so a pause is seen within a turn of when it began or ended.
    fn observe(&mut self, link: &AgentLink, channel: &Channel, closed: bool) -> DrainRecord {
        let now = tokio::time::Instant::now();
        match (self.paused_since, link.is_paused()) {
            (None, true) => self.paused_since = Some(now),
            (Some(since), false) => {
                self.paused_before += now - since;
                self.paused_since = None;
            }
            _ => {}
        }
        let paused = self.paused_before + self.paused_since.map(|since| now - since).unwrap_or_default();
        let record = &mut self.record;
        record.paused_ms = paused.as_millis() as u64;
        record.max_rto_ms = record.max_rto_ms.max(link.rto_ms().round() as u64);
        record.resend_ticks = link.resend_ticks() - self.resend_ticks;
        record.resends = link.resends() - self.resends;
        record.frames_lost = channel.frames_lost() - self.frames_lost;
        record.client_frames_lost = channel.client_frames_lost() - self.client_frames_lost;
        if closed {
            record.closed_at_ms = Some(now_ms());
            record.unacked_at_close = link.unacked();
            record.client_attached_at_close = channel.client_attached();
        }
        record.clone()
    }
}

/// A session the agent closed after its drain with output still unacknowledged.
#[derive(Debug, Clone, Copy)]
struct Abandoned {
    unacked: usize,
    frames_lost: u64,
}

/// Data-plane settings.
#[derive(Debug, Clone)]
pub struct AgentOptions {
    /// First output no earlier than this after the pty starts (the real agent: 1 s).
    pub agent_delay: Duration,
    /// The pause between pty reads (the real agent: 1 ms).
    pub read_interval: Duration,
    /// How long the session-logging step's upload delays the close.
    pub session_log_upload: Duration,
    /// Holds `bin/` (the container PATH) and `tasks/<id>/evolution` work dirs.
    pub root: PathBuf,
    /// Set in every session on top of the task's environment (the trust the image has in
    /// WhatsApp's CA: `NODE_EXTRA_CA_CERTS` for the lab's stand-in endpoint).
    pub container_env: Vec<(String, String)>,
    /// The agent version the task's agent reports in its handshakes (a scenario's
    /// `ssm_agent_version`); it picks the Port sessions' mode and keep-alive.
    pub agent_version: String,
}

#[derive(Debug, Clone)]
struct Row {
    session_id: String,
    task_id: String,
    pgid: i32,
    terminated: bool,
    session_log: Option<String>,
    wedged: bool,
    output_bytes: u64,
}

/// One task's session workers (the agent's control channel).
#[derive(Default)]
struct Workers {
    running: usize,
    queue: VecDeque<(String, oneshot::Sender<()>)>,
    blocked: bool,
}

enum Admission {
    Run,
    Queued(oneshot::Receiver<()>),
    Full,
    Blocked,
}

/// The sessions of one lab.
pub struct AgentHub {
    pub(crate) options: AgentOptions,
    pub(crate) gateway: Gateway,
    /// The Port sessions and the remote hosts they reach ([`super::port_registry`]).
    pub ports: Arc<super::port_registry::PortAgents>,
    processes: Mutex<Vec<Row>>,
    /// Sessions closed with output still unacknowledged once the 2 s drain ran out (the real
    /// agent's bound, ssm-data-channel.md §9 row 10), and how many frames were left.
    abandoned: Mutex<HashMap<String, Abandoned>>,
    /// Every session's drain, as far as it went.
    drains: Mutex<HashMap<String, DrainRecord>>,
    workers: Mutex<HashMap<String, Workers>>,
}

/// A node preload that shows a program the task's own mount table at `/proc/mounts` (the lab's
/// container shares the host's kernel view; a real task sees its own).
const CONTAINER_FS_SHIM: &str = "container-fs.js";
const CONTAINER_FS_SHIM_JS: &str = r#"const fs = require("fs");
const own = process.env.EVOCTL_LAB_PROC_MOUNTS;
const read = fs.readFileSync;
fs.readFileSync = function (path, ...rest) {
  return read.call(this, own && (path === "/proc/mounts" || path === "/proc/self/mounts") ? own : path, ...rest);
};
"#;

impl AgentHub {
    pub fn new(options: AgentOptions) -> std::io::Result<AgentHub> {
        let bin = options.root.join("bin");
        std::fs::create_dir_all(&bin)?;
        std::fs::write(options.root.join(CONTAINER_FS_SHIM), CONTAINER_FS_SHIM_JS)?;
        for tool in CONTAINER_TOOLS {
            if let Some(path) = which(tool) {
                let link = bin.join(tool);
                let _ = std::fs::remove_file(&link);
                std::os::unix::fs::symlink(path, link)?;
            }
        }
        Ok(AgentHub {
            options,
            gateway: Gateway::default(),
            processes: Mutex::new(Vec::new()),
            abandoned: Mutex::new(HashMap::new()),
            drains: Mutex::new(HashMap::new()),
            workers: Mutex::new(HashMap::new()),
            ports: Arc::default(),
        })
    }

    /// TerminateSession: kill the session's command (or end its port forwarding) and close its
    /// channel. False when the session is not running (already over).
    pub fn terminate(&self, session_id: &str) -> bool {
        self.ports.mark_terminated(session_id);
        {
            let mut processes = self.processes.lock().expect("lab lock");
            for row in processes.iter_mut().filter(|row| row.session_id == session_id) {
                kill_group(row.pgid);
                row.terminated = true;
            }
        }
        match self.gateway.channel(session_id) {
            Some(channel) => {
                channel.cancel();
                true
            }
            None => false,
        }
    }

    /// The process table: every command the lab's agents started and whether it still runs,
    /// and every session the agent wedged on.
    pub fn processes(&self) -> Vec<ProcessRow> {
        let abandoned = self.abandoned.lock().expect("lab lock").clone();
        let drains = self.drains.lock().expect("lab lock").clone();
        self.processes
            .lock()
            .expect("lab lock")
            .iter()
            .map(|row| ProcessRow {
                session_id: row.session_id.clone(),
                task_id: row.task_id.clone(),
                pgid: row.pgid,
                alive: row.pgid > 0 && group_alive(row.pgid),
                terminated: row.terminated,
                unacked_at_close: abandoned.get(&row.session_id).map(|a| a.unacked),
                frames_lost: abandoned.get(&row.session_id).map(|a| a.frames_lost),
                drain: drains.get(&row.session_id).cloned(),
                session_log: row.session_log.clone(),
                wedged: row.wedged,
                output_bytes: row.output_bytes,
            })
            .collect()
    }

    /// The PATH the stand-in container has.
    pub fn container_path(&self) -> String {
        self.options.root.join("bin").display().to_string()
    }

    /// Serve one websocket through the gateway; a new channel starts its agent session.
    pub async fn serve_socket(self: Arc<Self>, shared: Arc<Shared>, session_id: String, socket: WebSocket) {
        let hub = Arc::clone(&self);
        let for_agent = Arc::clone(&shared);
        self.gateway
            .serve_socket(shared, session_id, socket, move |channel| {
                tokio::spawn(async move { hub.run_agent(for_agent, channel).await });
            })
            .await;
    }

    fn try_admit(&self, task_id: &str, session_id: &str) -> Admission {
        let mut workers = self.workers.lock().expect("lab lock");
        let task = workers.entry(task_id.to_owned()).or_default();
        if task.blocked {
            Admission::Blocked
        } else if task.running < SESSION_WORKERS_LIMIT {
            task.running += 1;
            Admission::Run
        } else if task.queue.len() < SESSION_QUEUE {
            let (tx, rx) = oneshot::channel();
            task.queue.push_back((session_id.to_owned(), tx));
            Admission::Queued(rx)
        } else {
            Admission::Full
        }
    }

    /// A worker is free: the queued session (if any) takes it.
    fn release(&self, task_id: &str) {
        let mut workers = self.workers.lock().expect("lab lock");
        let task = workers.entry(task_id.to_owned()).or_default();
        task.running = task.running.saturating_sub(1);
        while let Some((_, waiting)) = task.queue.pop_front() {
            if waiting.send(()).is_ok() {
                task.running += 1;
                break;
            }
        }
    }

    fn leave_queue(&self, task_id: &str, session_id: &str) {
        if let Some(task) = self.workers.lock().expect("lab lock").get_mut(task_id) {
            task.queue.retain(|(id, _)| id != session_id);
        }
    }

    /// Wait for a session worker; false when the session must never start (TerminateSession
    /// while waiting, or the control channel is blocked; then this waits for the cancel).
    async fn admit(&self, channel: &Channel) -> bool {
        let (task_id, session_id) = (&channel.grant.task_id, &channel.grant.session_id);
        let mut tries = 0;
        loop {
            let cancelled = channel.cancelled();
            if channel.cancel_requested() {
                self.leave_queue(task_id, session_id);
                return false;
            }
            match self.try_admit(task_id, session_id) {
                Admission::Run => return true,
                Admission::Queued(mut started) => {
                    tokio::select! {
                        result = &mut started => return result.is_ok(),
                        _ = cancelled => {
                            self.leave_queue(task_id, session_id);
                            // The slot may have been handed over at the same moment.
                            if started.try_recv().is_ok() {
                                self.release(task_id);
                            }
                            return false;
                        }
                    }
                }
                Admission::Full if tries < QUEUE_RETRIES => {
                    tries += 1;
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                        _ = cancelled => return false,
                    }
                }
                Admission::Full | Admission::Blocked => {
                    if let Some(task) = self.workers.lock().expect("lab lock").get_mut(task_id) {
                        if !task.blocked {
                            tracing::debug!(task = %task_id, "blocking control channel");
                        }
                        task.blocked = true;
                    }
                    self.processes.lock().expect("lab lock").push(Row {
                        session_id: session_id.clone(),
                        task_id: task_id.clone(),
                        pgid: 0,
                        terminated: false,
                        session_log: None,
                        wedged: true,
                        output_bytes: 0,
                    });
                    cancelled.await;
                    return false;
                }
            }
        }
    }

    async fn run_agent(self: Arc<Self>, shared: Arc<Shared>, channel: Arc<Channel>) {
        let id = channel.grant.session_id.clone();
        if !self.admit(&channel).await {
            self.gateway.agent_closed(&shared, &channel, String::new());
            return;
        }
        let result = match channel.grant.port.clone() {
            Some(request) => self.port_session(&shared, &channel, &request).await,
            None => self.agent_session(&shared, &channel).await,
        };
        self.release(&channel.grant.task_id);
        if let Err(err) = &result {
            tracing::debug!(session = %id, %err, "agent session failed");
        }
        let output = result.err().map(|e| format!("\n----------ERROR-------\n{e}\n")).unwrap_or_default();
        self.gateway.agent_closed(&shared, &channel, output);
    }

    fn add_output_bytes(&self, session_id: &str, bytes: usize) {
        for row in self.processes.lock().expect("lab lock").iter_mut().filter(|r| r.session_id == session_id) {
            row.output_bytes += bytes as u64;
        }
    }

    fn set_session_log(&self, session_id: &str, outcome: &str) {
        for row in self.processes.lock().expect("lab lock").iter_mut().filter(|r| r.session_id == session_id) {
            row.session_log = Some(outcome.to_owned());
        }
    }
}

/// The cluster's exec logging (OVERRIDE turns session logging on) and whether the task's image
/// has `script` (the task definition's `image_tools`).
fn logging_of(shared: &Shared, task_id: &str) -> (bool, bool) {
    let accounts = shared.accounts.lock().expect("lab lock");
    let Some(account) = accounts.of_task(task_id) else { return (false, false) };
    let Some(task) = account.tasks.iter().find(|t| t.id == task_id) else { return (false, false) };
    let logging = account
        .clusters
        .get(&task.cluster)
        .and_then(|c| c.exec_logging.as_deref())
        .is_some_and(|l| l.eq_ignore_ascii_case("OVERRIDE"));
    let script = account
        .task_definitions
        .get(&task.task_definition)
        .is_some_and(|d| d.image_tools.iter().any(|t| t == "script"));
    (logging, script)
}

/// Hand what `link` queued to the gateway (exec and port sessions alike).
pub(crate) fn flush_link(link: &mut AgentLink, gateway: &Gateway, shared: &Shared, channel: &Channel) {
    let batch: Vec<Vec<u8>> = std::iter::from_fn(|| link.poll_transmit()).collect();
    gateway.from_agent(shared, channel, batch);
}

/// When `link` next needs `handle_timeout`, on tokio's clock.
pub(crate) fn link_deadline(link: &AgentLink) -> Option<tokio::time::Instant> {
    link.next_timeout().map(|at| tokio::time::Instant::now() + Duration::from_millis(at.saturating_sub(now_ms())))
}

/// One agent session's link and its way to the gateway.
struct Session<'a> {
    shared: &'a Shared,
    gateway: &'a Gateway,
    channel: &'a Channel,
    link: AgentLink,
}

impl Session<'_> {
    /// Hand what the link queued to the gateway.
    fn flush(&mut self) {
        flush_link(&mut self.link, self.gateway, self.shared, self.channel);
    }

    fn timer(&self) -> Option<tokio::time::Instant> {
        link_deadline(&self.link)
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
            let accounts = self.shared.accounts.lock().expect("lab lock");
            let account = accounts.of_task(&self.channel.grant.task_id).map(|a| a.account.clone()).unwrap_or_default();
            Err(ApiError::client(
                "AccessDeniedException",
                format!(
                    "User: arn:aws:sts::{account}:assumed-role/EvolutionTaskRole/{} is not authorized to perform: kms:Decrypt on resource: {key_id}",
                    self.channel.grant.task_id
                ),
            ))
        } else {
            let mut accounts = self.shared.accounts.lock().expect("lab lock");
            match accounts.of_task_mut(&self.channel.grant.task_id) {
                Some(account) => services::kms::handle(account, "Decrypt", &parameters, false),
                None => Err(ApiError::client("NotFoundException", "the task's account is gone")),
            }
        };
        self.shared.record("kms", "Decrypt", parameters, &result);
        let plaintext = result.map_err(|e| format!("{}: {}", e.code, e.message))?;
        BASE64.decode(plaintext["Plaintext"].as_str().unwrap_or_default()).map_err(|e| e.to_string())
    }

    /// The KMS handshake, as the agent runs it before starting the command: HandshakeRequest
    /// with the key and a random challenge; the client's data key decrypted with the task role
    /// under the session/target context (plus the challenge when acknowledged); the encryption
    /// challenge; HandshakeComplete. Other input is acked and dropped meanwhile, and each step
    /// gives up after 15 s.
    async fn kms_handshake(
        &mut self,
        inbound: &mut mpsc::UnboundedReceiver<Vec<u8>>,
        key_id: &str,
        agent_version: &str,
    ) -> Result<(), String> {
        let failed = |detail: String| format!("Encountered error while initiating handshake. {detail}");
        let started = tokio::time::Instant::now();
        let challenge = agent_handshake::new_challenge();
        self.link.begin_handshake();
        self.link.send_stream(
            PayloadType::HandshakeRequest,
            agent_handshake::request(agent_version, key_id, &challenge),
            now_ms(),
        );
        let step = Duration::from_millis(HANDSHAKE_STEP_TIMEOUT_MS);
        let mut step_deadline = tokio::time::Instant::now() + step;
        let mut secret: Option<Vec<u8>> = None;
        loop {
            self.flush();
            while let Some(event) = self.link.poll_event() {
                match event {
                    AgentEvent::HandshakeResponse(body) if secret.is_none() => {
                        let reply = agent_handshake::read_response(&body).map_err(failed)?;
                        let context = agent_handshake::encryption_context(
                            &self.channel.grant.session_id,
                            &self.channel.grant.target_id,
                            reply.challenge_acknowledged.then_some(challenge.as_str()),
                        );
                        let data_key = self.decrypt_with_task_role(key_id, &reply.ciphertext, &context).map_err(|e| {
                            failed(format!(
                                "Fetching data key failed: Unable to retrieve data key, Error when decrypting data key {e}"
                            ))
                        })?;
                        let cipher = SessionCipher::new(&data_key, Side::Agent).map_err(|e| failed(e.to_string()))?;
                        self.link.enable_encryption(cipher, CounterNonce::random());
                        let plain = agent_handshake::random_bytes(agent_handshake::SECRET_BYTES);
                        let sealed = self.link.seal(&plain).expect("encryption is on");
                        self.link.send_stream(
                            PayloadType::EncChallengeRequest,
                            agent_handshake::challenge_request(&sealed),
                            now_ms(),
                        );
                        secret = Some(plain);
                        step_deadline = tokio::time::Instant::now() + step;
                    }
                    AgentEvent::ChallengeResponse(body) if secret.is_some() => {
                        let cipher = self.link.cipher().expect("encryption is on");
                        agent_handshake::check_challenge_response(&body, cipher, secret.as_deref().unwrap_or_default())
                            .map_err(failed)?;
                        self.link.complete_handshake();
                        self.link.send_stream(
                            PayloadType::HandshakeComplete,
                            agent_handshake::complete(started.elapsed()),
                            now_ms(),
                        );
                        self.flush();
                        return Ok(());
                    }
                    other => tracing::debug!(?other, "dropped during the handshake"),
                }
            }
            let timer = self.timer();
            tokio::select! {
                frame = inbound.recv() => match frame {
                    Some(bytes) => self.link.receive(&bytes, now_ms()),
                    None => return Err(failed("the client went away".into())),
                },
                _ = sleep_until_opt(timer) => self.link.handle_timeout(now_ms()),
                _ = tokio::time::sleep_until(step_deadline) => {
                    return Err("Handshake timed out. Please ensure that you have the latest version of the session manager plugin.".into());
                }
            }
        }
    }
}

impl AgentHub {
    /// One session from Connected to the close (the gateway then sends channel_closed).
    async fn agent_session(&self, shared: &Shared, channel: &Channel) -> Result<(), String> {
        let grant = &channel.grant;
        let mut inbound = channel.take_agent_inbound().ok_or("session started twice")?;
        let mut session = Session { shared, gateway: &self.gateway, channel, link: AgentLink::new(now_ms()) };
        session.link.send_session_state(SessionState::Connected, &grant.session_id, now_ms());
        session.flush();
        let words = shell_words::split(&grant.command).map_err(|_| "Failed to parse commands input".to_owned())?;
        if words.is_empty() {
            return Err("Commands cannot be empty for session type InteractiveCommands".into());
        }
        if let Some(key_id) = &grant.kms_key_id {
            session.kms_handshake(&mut inbound, key_id, &self.options.agent_version).await?;
        }
        let workdir = self.options.root.join("tasks").join(&grant.task_id).join("evolution");
        std::fs::create_dir_all(&workdir).map_err(|e| e.to_string())?;
        let mut environment = grant.environment.clone();
        environment.insert("PATH".into(), self.container_path());
        environment.insert("TERM".into(), "xterm-256color".into());
        environment.entry("LANG".into()).or_insert_with(|| "C.UTF-8".into());
        for (name, value) in &self.options.container_env {
            environment.insert(name.clone(), value.clone());
        }
        environment.insert("HOME".into(), workdir.display().to_string());
        if let Some(port) = shared.evolution.port_of(&grant.task_id) {
            environment.insert("SERVER_PORT".into(), port.to_string());
        }
        // The container's own mount table: node reads `/proc/mounts` from the task's model.
        let mounts = workdir.with_file_name("proc-mounts");
        std::fs::write(&mounts, shared.evolution.proc_mounts(&grant.task_id)).map_err(|e| e.to_string())?;
        environment.insert(
            "NODE_OPTIONS".into(),
            format!("--require {}", self.options.root.join(CONTAINER_FS_SHIM).display()),
        );
        environment.insert("EVOCTL_LAB_PROC_MOUNTS".into(), mounts.display().to_string());
        let dotenv = workdir.join(".env");
        if !dotenv.exists() {
            // The image's baked `.env` (`.env.example` at 2.3.7).
            std::fs::write(&dotenv, super::evolution::env::image_dotenv_text()).map_err(|e| e.to_string())?;
        }
        // The image's package.json files (`WORKDIR /evolution`, Dockerfile:41-46 at 2.3.7): the
        // release it ships and the Baileys it pins (7.0.0-rc.9 at 2.3.7 and 2.4.0-rc2).
        let sim = shared.evolution.options();
        // Its socket code: a patched Baileys names the notification it handles.
        let socket = if sim.baileys_patched {
            "case 'companion_reg_refresh': /* rotate the ADV secret */ break;"
        } else {
            "/* notifications: acknowledged; unknown types discarded */"
        };
        let release = match sim.version {
            super::evolution::process::Version::V237 => "2.3.7",
            super::evolution::process::Version::V240Rc2 => "2.4.0",
        };
        let files = [
            ("package.json", serde_json::json!({"name": "evolution-api", "version": release}).to_string()),
            (
                "node_modules/baileys/package.json",
                serde_json::json!({"name": "baileys", "version": "7.0.0-rc.9"}).to_string(),
            ),
            ("node_modules/baileys/lib/Socket/messages-recv.js", socket.to_owned()),
            (
                "node_modules/axios/package.json",
                serde_json::json!({"name": "axios", "version": super::evolution::webhooks::AXIOS_VERSION}).to_string(),
            ),
        ];
        for (path, text) in files {
            let path = workdir.join(path);
            if !path.exists() {
                std::fs::create_dir_all(path.parent().unwrap_or(&workdir)).map_err(|e| e.to_string())?;
                std::fs::write(&path, text).map_err(|e| e.to_string())?;
            }
        }
        // Resolve the program on the container PATH, as exec would inside the container.
        let program = if words[0].contains('/') {
            PathBuf::from(&words[0])
        } else {
            self.options.root.join("bin").join(&words[0])
        };
        // A program the image lacks (fault `missing_programs`) or an exec failure: "Unable to
        // start command", and nothing on the data channel (§9 row 9).
        let missing = shared.faults.lock().expect("lab lock").missing_programs.iter().any(|p| *p == words[0]);
        let not_found =
            || format!("Unable to start command: exec: \"{}\": executable file not found in $PATH", words[0]);
        if missing {
            return Err(not_found());
        }
        // No size: the pty is 0×0 until the first Size message (§9 row 7).
        let (pty, pts) = pty_process::open().map_err(|e| format!("Unable to start command: pty: {e}"))?;
        let mut child = pty_process::Command::new(&program)
            .args(&words[1..])
            .env_clear()
            .envs(environment)
            .current_dir(&workdir)
            .kill_on_drop(true)
            .spawn(pts)
            .map_err(|e| format!("{} ({e})", not_found()))?;
        let pgid = child.id().map(|pid| pid as i32).unwrap_or(0);
        self.processes.lock().expect("lab lock").push(Row {
            session_id: grant.session_id.clone(),
            task_id: grant.task_id.clone(),
            pgid,
            terminated: false,
            session_log: None,
            wedged: false,
            output_bytes: 0,
        });
        if channel.cancel_requested() {
            kill_group(pgid);
        }
        // The shell handler is installed: input is written to the pty and acked from now on.
        session.link.set_ready();
        let pacing = Pacing {
            read_chunk_bytes: Pacing::REAL.read_chunk_bytes,
            read_interval_ms: self.options.read_interval.as_millis() as u64,
            first_output_delay_ms: self.options.agent_delay.as_millis() as u64,
        };
        let mut next_read = tokio::time::Instant::now() + Duration::from_millis(pacing.first_output_delay_ms);
        let (mut reader, mut writer) = pty.into_split();
        let mut buffer = vec![0u8; pacing.read_chunk_bytes];
        let mut output_done = false;
        let mut exited = false;
        let mut drain: Option<Drain> = None;
        // Input taken from the channel and not yet written to the pty: written alongside the
        // reads, so a command that stops reading its tty never stops its output from being read.
        let mut pty_input: VecDeque<u8> = VecDeque::new();
        loop {
            session.flush();
            while let Some(event) = session.link.poll_event() {
                match event {
                    AgentEvent::Input(bytes) => pty_input.extend(bytes),
                    AgentEvent::Resize(size) => {
                        let _ = writer.resize(pty_process::Size::new(size.rows as u16, size.cols as u16));
                    }
                    AgentEvent::ChannelClosed(_) => return end_killed(pgid, &mut child).await,
                    _ => {}
                }
            }
            if output_done && exited {
                let draining = drain.get_or_insert_with(|| Drain::start(&session.link, channel));
                let drained = session.link.unacked() == 0;
                let expired = tokio::time::Instant::now() >= draining.deadline;
                let record = draining.observe(&session.link, channel, drained || expired);
                self.drains.lock().expect("lab lock").insert(grant.session_id.clone(), record);
                if drained {
                    break;
                }
                if expired {
                    // The real agent closes anyway: whatever is unacked is lost to the client.
                    let abandoned = Abandoned { unacked: session.link.unacked(), frames_lost: channel.frames_lost() };
                    self.abandoned.lock().expect("lab lock").insert(grant.session_id.clone(), abandoned);
                    break;
                }
            }
            let drain_deadline = drain.as_ref().map(|d| d.deadline);
            let cancelled = channel.cancelled();
            if channel.cancel_requested() {
                return end_killed(pgid, &mut child).await;
            }
            let timer = session.timer();
            // While paused the pty is not read (the command blocks on a full pty).
            let may_read = !output_done && !session.link.is_paused();
            let read_due = may_read && tokio::time::Instant::now() >= next_read;
            tokio::select! {
                biased;
                _ = cancelled => return end_killed(pgid, &mut child).await,
                frame = inbound.recv(), if pty_input.len() < PTY_INPUT_BACKLOG => match frame {
                    Some(bytes) => session.link.receive(&bytes, now_ms()),
                    None => return end_killed(pgid, &mut child).await,
                },
                wrote = writer.write(pty_input.as_slices().0), if !pty_input.is_empty() => match wrote {
                    Ok(n) => drop(pty_input.drain(..n)),
                    Err(_) => pty_input.clear(),
                },
                _ = sleep_until_opt(timer) => session.link.handle_timeout(now_ms()),
                status = child.wait(), if !exited => {
                    tracing::debug!(?status, "lab exec process exited");
                    exited = true;
                }
                read = reader.read(&mut buffer), if read_due => match read {
                    Ok(0) | Err(_) => {
                        let dropped = session.link.finish_output();
                        if dropped > 0 {
                            tracing::debug!(dropped, "incomplete UTF-8 dropped at EOF");
                        }
                        output_done = true;
                    }
                    Ok(n) => {
                        session.link.send_output(&buffer[..n], now_ms());
                        self.add_output_bytes(&grant.session_id, n);
                        let delay = shared.faults.lock().expect("lab lock").pty_read_delay_ms;
                        let interval = Duration::from_millis(pacing.read_interval_ms + delay);
                        // The real agent sleeps 1 ms after each read (Go's timer: about 1.06 ms).
                        // Tokio's timer wakes on whole milliseconds, often one late, so reads are
                        // scheduled on a grid of `interval` and late wake-ups are caught up: never
                        // more than one read per interval on average, at most a few behind.
                        let now = tokio::time::Instant::now();
                        next_read = (next_read + interval).max(now.checked_sub(interval * READ_CATCH_UP).unwrap_or(now));
                    }
                },
                _ = tokio::time::sleep_until(next_read), if may_read && !read_due => {}
                // Once the process is gone, give unacked output at most 2 s (as the real agent).
                _ = sleep_until_opt(drain_deadline) => {}
            }
        }
        session.link.send_session_state(SessionState::Terminating, &grant.session_id, now_ms());
        session.flush();
        let (logging, has_script) = logging_of(shared, &grant.task_id);
        if logging {
            // The agent runs `script <log> -c "cat <ipcfile>"` and uploads the transcript.
            if has_script {
                tokio::time::sleep(self.options.session_log_upload).await;
                self.set_session_log(&grant.session_id, "uploaded");
            } else {
                tracing::debug!(session = %grant.session_id, "session logging: unable to generate log data");
                self.set_session_log(&grant.session_id, SESSION_LOG_FAILED);
            }
        }
        Ok(())
    }
}

async fn sleep_until_opt(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
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
