//! The lab's shared state, one value every part holds: the accounts, the request journal, the
//! injected faults, the credentials the lab accepts, the simulated Evolution servers and the
//! lab's reproducible dice. The HTTP listener (`server`), the exec agent (`agent`) and the
//! gateway (`gateway`) all work on it, and it depends on none of them, so none of them depends
//! on another through it.

use crate::evolution::EvolutionHub;
use crate::services::ApiError;
use crate::services::sts::Principal;
use crate::state::{Accounts, now_f64};
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::sync::Mutex;

/// The lab's shared state: what every AWS handler, the agent and the gateway read and write.
pub struct Shared {
    /// Every account-region; a call lands in its signer's account, in the region it was
    /// signed for.
    pub accounts: Mutex<Accounts>,
    pub journal: Mutex<Vec<JournalEntry>>,
    pub faults: Mutex<Faults>,
    pub access_key_id: String,
    pub secret_access_key: String,
    /// Every credential the lab accepts, by access key id: its user's, and those STS AssumeRole
    /// issued.
    pub principals: Mutex<IndexMap<String, Principal>>,
    /// Console sessions (`aws login`, `POST /_lab/login`): each live refresh token and the
    /// identity it refreshes; a refresh replaces its token.
    pub login_sessions: Mutex<IndexMap<String, Principal>>,
    pub evolution: EvolutionHub,
    /// The identity policy every caller's AWS calls are held to (`/_lab/identity-policy`): the
    /// document as posted and its parsed form; none, every call is allowed.
    pub identity_policy: Mutex<Option<(Value, crate::iam::Policy)>>,
    random: Mutex<u64>,
}

impl Shared {
    /// Record a call made inside the lab (the agent's KMS Decrypt with the task role), as
    /// CloudTrail would.
    pub fn record(&self, service: &str, action: &str, parameters: Value, result: &Result<Value, ApiError>) {
        let now = now_f64();
        self.journal_push(Caller::default(), service.into(), action.into(), parameters, now, result.as_ref().err());
    }

    /// Append one call to the journal; it ends now.
    pub(crate) fn journal_push(
        &self,
        caller: Caller,
        service: String,
        action: String,
        parameters: Value,
        start_ms: f64,
        error: Option<&ApiError>,
    ) {
        let (status, error) = error.map_or((200, None), |e| (e.status, Some(e.code.clone())));
        let mut journal = self.journal.lock().expect("lab lock");
        let seq = journal.len() as u64 + 1;
        journal.push(JournalEntry {
            seq,
            caller: caller.arn,
            user_agent: caller.user_agent,
            service,
            action,
            parameters,
            start_ms,
            end_ms: now_f64(),
            status,
            error,
        });
    }

    pub fn new(accounts: Accounts, access_key_id: String, secret_access_key: String, evolution: EvolutionHub) -> Self {
        let home = accounts.primary().account.clone();
        let user = Principal {
            secret: secret_access_key.clone(),
            arn: format!("arn:aws:iam::{home}:user/evoctl-lab"),
            account: home,
            user_id: "AIDALABEVOCTLUSER0001".into(),
            session_token: None,
        };
        Shared {
            accounts: Mutex::new(accounts),
            journal: Mutex::new(Vec::new()),
            faults: Mutex::new(Faults::default()),
            principals: Mutex::new(IndexMap::from([(access_key_id.clone(), user)])),
            login_sessions: Mutex::new(IndexMap::new()),
            access_key_id,
            secret_access_key,
            evolution,
            identity_policy: Mutex::new(None),
            random: Mutex::new(0x9E37_79B9_7F4A_7C15),
        }
    }

    /// A reproducible number in [0, 1) (xorshift64).
    pub fn roll(&self) -> f64 {
        let mut state = self.random.lock().expect("lab lock");
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        (*state >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// One AWS request as CloudTrail would see it, with timing to show concurrency.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JournalEntry {
    /// Who signed the call: the caller's ARN (the lab's user, or an assumed role's session);
    /// None for calls made inside the lab.
    pub caller: Option<String>,
    /// The client's User-Agent header, as CloudTrail's `userAgent` records it.
    pub user_agent: Option<String>,
    pub seq: u64,
    pub service: String,
    pub action: String,
    pub parameters: Value,
    pub start_ms: f64,
    pub end_ms: f64,
    pub status: u16,
    pub error: Option<String>,
}

/// Who made a journalled call (nothing for calls made inside the lab).
#[derive(Debug, Default)]
pub(crate) struct Caller {
    pub arn: Option<String>,
    pub user_agent: Option<String>,
}

/// Injected faults (`POST /_lab/faults`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Faults {
    /// Added before every matching AWS call.
    #[serde(default)]
    pub latency_ms: u64,
    /// Share of matching calls answered with ThrottlingException: the n-th matching call of
    /// each action (counted from when these faults were set) is throttled when
    /// [`fault_roll`]`(seed, "throttle", action, n)` is below it, so which answers are throttled
    /// is reproducible whatever the concurrency.
    #[serde(default)]
    pub throttle_rate: f64,
    /// Share of matching calls answered with a 500 (same scheme, its own stream).
    #[serde(default)]
    pub server_error_rate: f64,
    /// Seeds the throttling and server-error decisions (default 0).
    #[serde(default)]
    pub seed: u64,
    /// Matching calls so far, by action (the `n` of the decisions; new faults start at 0).
    #[serde(skip)]
    pub calls: BTreeMap<String, u64>,
    /// Only these actions (empty: every action).
    #[serde(default)]
    pub actions: Vec<String>,
    /// Data channel: share of frames lost in either direction (the sender resends).
    #[serde(default)]
    pub drop_rate: f64,
    /// Data channel: share of agent frames delivered twice.
    #[serde(default)]
    pub duplicate_rate: f64,
    /// Data channel: agent frames are shuffled within windows of this many.
    #[serde(default)]
    pub reorder_window: usize,
    /// Data channel: acknowledgements from the client reach the agent this much later.
    #[serde(default)]
    pub ack_delay_ms: u64,
    /// Data channel: after this many agent frames the gateway pauses publication ...
    #[serde(default)]
    pub pause_after_frames: Option<u64>,
    /// ... for this long, then starts it again.
    #[serde(default)]
    pub pause_ms: u64,
    /// Data channel: the gateway drops the socket once after this many agent frames.
    #[serde(default)]
    pub disconnect_after_frames: Option<u64>,
    /// Data channel: the gateway cuts every client socket attached while this is set this many
    /// ms after it attached, without a close frame, as a flaky network does (the session
    /// survives and can be resumed with a new socket, which is cut in turn).
    #[serde(default)]
    pub disconnect_every_ms: Option<u64>,
    /// Data channel: the gateway stops reading client sockets while this is set: their frames
    /// are not relayed and their pings go unanswered, as with a peer that went away without
    /// closing (what the client writes piles up in TCP buffers).
    #[serde(default)]
    pub socket_unresponsive: bool,
    /// Data channel: the gateway answers the websocket upgrade this many ms late (a stalled
    /// data-channel open).
    #[serde(default)]
    pub data_channel_open_delay_ms: u64,
    /// Data channel: the agent pauses this long after each pty read (a starved agent), so a fast
    /// writer gets up to the pty's buffer ahead of it.
    #[serde(default)]
    pub pty_read_delay_ms: u64,
    /// ExecuteCommand answers TargetNotConnectedException.
    #[serde(default)]
    pub agent_not_connected: bool,
    /// ExecuteCommand answers InvalidParameterException (exec not enabled).
    #[serde(default)]
    pub exec_disabled: bool,
    /// KMS refuses the caller's GenerateDataKey (AccessDeniedException).
    #[serde(default)]
    pub kms_denied: bool,
    /// KMS refuses the task role's Decrypt, so the agent fails the handshake.
    #[serde(default)]
    pub kms_decrypt_denied: bool,
    /// The next this many matching AWS calls are throttled (a burst), then calls succeed.
    #[serde(default)]
    pub throttle_burst: u32,
    /// SSM answers TerminateSession with AccessDeniedException (a caller without the permission).
    #[serde(default)]
    pub terminate_denied: bool,
    /// SSM answers StartSession with AccessDeniedException: the caller may not start sessions on
    /// the task (hardened accounts deny `ssm:StartSession` on tasks, since port sessions bypass
    /// ECS Exec's logging).
    #[serde(default)]
    pub start_session_denied: bool,
    /// Data channel: after the first output frame the gateway sends one binary message this
    /// large (a broken or hostile peer).
    #[serde(default)]
    pub oversized_frame_bytes: Option<usize>,
    /// Data channel: these programs are not in the container image (e.g. `["node"]`), so the
    /// agent cannot start a command that runs them: like the real agent it then writes nothing.
    #[serde(default)]
    pub missing_programs: Vec<String>,
}

/// A number in [0, 1) that depends only on its arguments: the fault decision for the `n`-th
/// (from 0) matching call of `action`, `kind` being "throttle" or "server-error".
pub fn fault_roll(seed: u64, kind: &str, action: &str, n: u64) -> f64 {
    let digest = Sha256::digest(format!("{seed}/{kind}/{action}/{n}"));
    let bits = u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"));
    (bits >> 11) as f64 / (1u64 << 53) as f64
}
