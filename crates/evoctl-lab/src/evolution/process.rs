//! One Evolution 2.3.7 process: its settings, the database it shares, and what it holds in
//! memory (`waInstances`): the rows of its `DATABASE_CONNECTION_CLIENT_NAME` loaded at its start
//! and those it created, each with its Baileys socket. Rows of the same database that it does not
//! hold answer as 2.3.7 answers for them (no `state`, `[object Object]`, `null`, …).
//!
//! The socket of a held instance is one of:
//! - off (`close`);
//! - pairing (`connecting`): the first QR 3 s (scaled) after the socket starts, then one every
//!   `--qr-rotate-ms`, each counted; at `QRCODE_LIMIT` the instance is refused and closed;
//! - up (`open`), once the phone scanned a QR (or the row was already paired);
//! - down (`connecting`): a paired socket that lost its connection (a drop, a restart, or the
//!   other process of a conflict loop replacing it); `logout` then throws `Connection Closed`;
//! - looping (no route to WhatsApp, `--whatsapp unreachable`): each socket start adds a
//!   reconnect loop that is `close` most of the time and `connecting` for a fifth of every
//!   5 s (scaled, never under 500 ms); loops started by earlier connects keep running, as the
//!   real server's earlier sockets keep reconnecting.
//! - never started (`--whatsapp black-hole`): 2.3.7's `createClient` first awaits WhatsApp Web's
//!   version with no timeout, so with every SYN dropped the socket never starts and the state
//!   stays `close`; the calls that start it do not answer (see [`super::api`]).
//!
//! The stored QR (`count`, `code`, `base64`, `pairingCode`) persists across flows: only the QR
//! limit resets it, so a connect from `close` can answer the previous flow's code.

use super::db::{Database, Row, Setting, WebhookRow, iso, js_truthy};
use super::env::EvoConfig;
use super::js::Js;
use super::log::{Level, Logger};
use super::webhooks::{self, JwtError};
use crate::state::now_ms;
use indexmap::IndexMap;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Whether the simulated WhatsApp servers are reachable from the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WhatsApp {
    Reachable,
    Unreachable,
    /// Black-holed as a private subnet without NAT really is (SYNs dropped): the calls that wait
    /// on WhatsApp do not answer (see [`super::api`]'s `black_hole`).
    #[serde(rename = "black-hole")]
    BlackHole,
}

impl std::str::FromStr for WhatsApp {
    type Err = String;
    fn from_str(text: &str) -> Result<WhatsApp, String> {
        match text {
            "reachable" => Ok(WhatsApp::Reachable),
            "unreachable" => Ok(WhatsApp::Unreachable),
            "black-hole" => Ok(WhatsApp::BlackHole),
            other => Err(format!("`{other}` is none of `reachable`, `unreachable`, `black-hole`")),
        }
    }
}

/// The Evolution release the stand-in plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Version {
    /// 2.3.7 (`GET /` says `2.3.7`), the default.
    #[serde(rename = "2.3.7")]
    V237,
    /// 2.4.0-rc2: `GET /` says `2.4.0`, and every business route is refused with 503
    /// `LICENSE_REQUIRED` until the server is activated (see [`super::api`]'s `licence_gate`).
    #[serde(rename = "2.4.0-rc2")]
    V240Rc2,
}

impl std::str::FromStr for Version {
    type Err = String;
    fn from_str(text: &str) -> Result<Version, String> {
        match text {
            "2.3.7" => Ok(Version::V237),
            "2.4.0-rc2" => Ok(Version::V240Rc2),
            other => Err(format!("`{other}` is neither `2.3.7` nor `2.4.0-rc2`")),
        }
    }
}

/// How the lab runs a process.
#[derive(Debug, Clone)]
pub struct ProcessOptions {
    /// The task id (or `standalone`): names log streams and the process in snapshots.
    pub label: String,
    /// The pid its log lines show.
    pub pid: u32,
    /// Multiplies the stand-in's own waits (create's 5 s, connect's 2 s, the first QR's 3 s,
    /// the reconnect loop, restarts, webhook retry delays and timeouts, `DEL_INSTANCE`).
    pub time_scale: f64,
    pub whatsapp: WhatsApp,
    pub version: Version,
    /// 2.4: the database holds a licence already (its `RuntimeConfig` rows), so the gate is open.
    pub activated: bool,
    pub qr_rotate: Duration,
    pub auto_scan_after: Option<Duration>,
    /// WhatsApp answers a scan with `companion_reg_refresh` (see [`Process::scan_refused`]).
    pub pairing_refresh: bool,
    /// The image's Baileys handles `companion_reg_refresh` (re-renders the QR with a new secret).
    pub baileys_patched: bool,
    pub tick: Duration,
    /// Where this process keeps its instances' Signal keys.
    pub keys: super::keys::KeyStore,
}

/// Per-process test switches (`POST /_lab/evolution/faults`).
#[derive(Debug, Default)]
pub struct Switches {
    pub reject_key: bool,
    pub fail_next: Option<String>,
    pub respond_next: Option<(u16, Value)>,
}

/// The stored QR object (`instance.qrcode`).
#[derive(Debug, Clone, Default)]
pub struct QrStore {
    pub count: i64,
    /// `None`: undefined (before the first QR); `Some(None)`: null (a QR without a number).
    pub pairing_code: Option<Option<String>>,
    pub code: Option<String>,
    pub base64: Option<String>,
}

impl QrStore {
    /// The `qrCode` getter's object (undefined keys left out).
    pub fn json(&self) -> Value {
        let mut out = serde_json::Map::new();
        if let Some(pairing) = &self.pairing_code {
            out.insert("pairingCode".into(), json!(pairing));
        }
        if let Some(code) = &self.code {
            out.insert("code".into(), json!(code));
        }
        if let Some(base64) = &self.base64 {
            out.insert("base64".into(), json!(base64));
        }
        out.insert("count".into(), json!(self.count));
        Value::Object(out)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DownCause {
    /// The network dropped (`POST /_lab/phone/drop`): down until reconnected or restarted.
    Dropped,
    /// The other process of a conflict loop holds the session right now.
    Conflict,
    /// A restart: back up shortly.
    Restarting,
}

/// One reconnect loop of an unreachable WhatsApp.
#[derive(Debug, Clone)]
pub struct Loop {
    pub start_ms: u64,
    pub next_emit_ms: u64,
}

#[derive(Debug, Clone)]
pub enum Socket {
    Off,
    Pairing {
        next_qr_ms: u64,
    },
    Up,
    Down {
        cause: DownCause,
        reopen_ms: Option<u64>,
    },
    Looping {
        loops: Vec<Loop>,
    },
    /// WHATSAPP-BUSINESS and EVOLUTION channels: no WhatsApp socket.
    Channel,
}

/// One instance this process holds in memory.
#[derive(Debug, Clone)]
pub struct Live {
    pub name: String,
    pub id: String,
    pub token: Option<String>,
    pub integration: String,
    pub qr: QrStore,
    /// The number the socket was started with (pairing codes on every QR).
    pub phone_number: Option<String>,
    pub wuid: Option<String>,
    pub socket: Socket,
    pub flow_started_ms: u64,
    /// A QR was issued since the flow began.
    pub flow_has_code: bool,
    /// When an answer first showed a code of this flow (the auto-scanning phone counts from it).
    pub shown_ms: Option<u64>,
    /// WhatsApp retired this flow's first pairing secret (`companion_reg_refresh` was sent).
    pub secret_refreshed: bool,
    /// The code on show carries the refreshed secret (only a patched Baileys re-renders it).
    pub code_refreshed: bool,
    /// The phone's scans that failed ("Couldn't link device"), and the last code that did.
    pub failed_scans: u32,
    pub failed_code: Option<String>,
}

/// What the simulated phone's scan came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanOutcome {
    /// The instance showing the code linked.
    Linked(String),
    /// The phone says "Couldn't link device": the code carried a secret WhatsApp retired.
    Failed(String),
}

/// What an emission needs to know about its instance.
#[derive(Debug, Clone)]
pub struct Who {
    pub name: String,
    pub id: String,
    pub token: Option<String>,
    pub wuid: Option<String>,
}

impl Live {
    fn who(&self) -> Who {
        Who { name: self.name.clone(), id: self.id.clone(), token: self.token.clone(), wuid: self.wuid.clone() }
    }
}

/// A webhook POST waiting to be sent (with the retries).
pub struct Pending {
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

/// What a logout did.
#[derive(Debug, PartialEq, Eq)]
pub enum Logout {
    /// Not held here: `logoutInstance` of undefined, SUCCESS doing nothing.
    NotHeld,
    NotConnected,
    Done,
    /// The paired socket is down: Baileys' logout throws.
    ConnectionClosed,
}

/// Why a webhook write failed.
#[derive(Debug)]
pub enum SetError {
    /// A TypeError (500 with its text).
    Type(String),
    /// Prisma refused the row.
    Prisma(String),
}

/// The no-route reconnect loop's period, connecting window and its offset in the period.
struct LoopShape {
    period: u64,
    window: u64,
    offset: u64,
}

/// One running Evolution process.
pub struct Process {
    pub config: EvoConfig,
    pub options: ProcessOptions,
    pub db: Arc<Mutex<Database>>,
    pub logger: Logger,
    pub switches: Mutex<Switches>,
    memory: Mutex<IndexMap<String, Live>>,
    del_timers: Mutex<HashMap<String, u64>>,
    random: Mutex<u64>,
    shutdown: tokio::sync::watch::Sender<bool>,
    timers: Mutex<u64>,
}

pub const CREATE_WAIT_MS: f64 = 5000.0;
pub const CONNECT_WAIT_MS: f64 = 2000.0;
const FIRST_QR_MS: f64 = 3000.0;
const LOOP_PERIOD_MS: f64 = 5000.0;
const LOOP_PERIOD_FLOOR_MS: u64 = 500;
const RESTART_REOPEN_MS: f64 = 1000.0;
/// What Baileys' socket is started with on this image.
const BAILEYS_VERSION: &str = "2.3000.1027934701";
const OS_RELEASE: &str = "5.10.240-238.959.amzn2.x86_64";

impl Process {
    pub fn new(config: EvoConfig, options: ProcessOptions, db: Arc<Mutex<Database>>) -> Arc<Process> {
        let seed = <sha2::Sha256 as sha2::Digest>::digest(options.label.as_bytes());
        let seed = u64::from_be_bytes(seed[..8].try_into().unwrap_or([7; 8])) | 1;
        let logger = Logger::new(&config, options.pid);
        let (shutdown, _) = tokio::sync::watch::channel(false);
        Arc::new(Process {
            config,
            options,
            db,
            logger,
            switches: Mutex::new(Switches::default()),
            memory: Mutex::new(IndexMap::new()),
            del_timers: Mutex::new(HashMap::new()),
            random: Mutex::new(seed),
            shutdown,
            timers: Mutex::new(0),
        })
    }

    /// `duration × --evolution-time-scale`, in ms.
    pub fn scaled(&self, ms: f64) -> u64 {
        (ms * self.options.time_scale).round().max(0.0) as u64
    }

    /// The QR object of `name` as this process holds it `wait_ms` (scaled) after a socket
    /// started at `started_ms`, which is what a call that started it answers after that wait
    /// (create's 5 s, connect's 2 s); `held` is the object from just before the start. On its own
    /// clock, not the machine's: at a scale of 0.01 a busy machine can stretch a 20 ms wait past
    /// the 30 ms first QR, or hold the ticker back past a 50 ms one.
    pub fn qr_after_start(
        self: &Arc<Self>,
        name: &str,
        held: Option<Value>,
        started_ms: u64,
        wait_ms: f64,
    ) -> Option<Value> {
        if self.scaled(FIRST_QR_MS) > self.scaled(wait_ms) {
            return held;
        }
        self.advance(started_ms + self.scaled(wait_ms));
        self.shown_qr(name)
    }

    pub fn scaled_duration(&self, ms: f64) -> Duration {
        Duration::from_millis(self.scaled(ms))
    }

    fn loop_shape(&self) -> LoopShape {
        let period = self.scaled(LOOP_PERIOD_MS).max(LOOP_PERIOD_FLOOR_MS);
        LoopShape { period, window: period / 5, offset: period * 3 / 5 }
    }

    /// `Math.random()` (seeded per process, so runs repeat).
    pub fn random(&self) -> f64 {
        let mut state = self.random.lock().expect("lab lock");
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        (*state >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Stop everything this process runs (its pending retries and timers die with it).
    pub fn stop(&self) {
        let _ = self.shutdown.send(true);
    }

    /// Run `future` unless the process stops first.
    pub fn spawn<F>(self: &Arc<Self>, future: F)
    where
        F: std::future::Future<Output = ()> + Send + 'static,
    {
        let mut shutdown = self.shutdown.subscribe();
        tokio::spawn(async move {
            tokio::select! {
                _ = future => {}
                _ = shutdown.wait_for(|stopped| *stopped) => {}
            }
        });
    }

    /// Advance every socket every tick, until the process stops.
    pub fn start_ticker(self: &Arc<Self>) {
        let process = Arc::clone(self);
        let tick = self.options.tick;
        self.spawn(async move {
            let mut interval = tokio::time::interval(tick);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                interval.tick().await;
                process.advance(now_ms());
            }
        });
    }

    /// The process start: `HTTP - ON`, then the rows of this client name are loaded (only with
    /// `DATABASE_SAVE_DATA_INSTANCE=true`) and those `open`/`connecting` auto-connect.
    pub fn boot(self: &Arc<Self>) {
        self.logger.write(Level::Log, "SERVER", None, &Js::str(format!("HTTP - ON: {}", self.config.server_port)));
        if !self.config.save_data_instance {
            return;
        }
        let rows: Vec<Row> = {
            let db = self.db.lock().expect("lab lock");
            db.rows
                .values()
                .filter(|r| r.client_name.as_deref() == Some(self.config.client_name.as_str()))
                .cloned()
                .collect()
        };
        let now = now_ms();
        let mut memory = self.memory.lock().expect("lab lock");
        for row in rows {
            let integration = row.integration.clone().unwrap_or_else(|| "WHATSAPP-BAILEYS".into());
            let mut live = new_live(&row.name, &row.id, row.token.clone(), &integration);
            if integration != "WHATSAPP-BAILEYS" {
                live.socket = Socket::Channel;
                memory.insert(row.name.clone(), live);
                continue;
            }
            if row.connection_status == "open" || row.connection_status == "connecting" {
                self.logger.write(
                    Level::Info,
                    "WAMonitoringService",
                    None,
                    &Js::str(format!("Auto-connecting instance \"{}\" (status: {})", row.name, row.connection_status)),
                );
                if row.session_me.is_some() && !self.options.keys.has(&row.id) {
                    // The creds came back from the database without their Signal keys (they
                    // were on a replaced task's disk): the session cannot resume; `close`.
                    memory.insert(row.name.clone(), live);
                    continue;
                }
                self.start_socket(&mut live, None, now);
            } else {
                self.logger.write(
                    Level::Info,
                    "WAMonitoringService",
                    None,
                    &Js::str(format!(
                        "Skipping auto-connect for instance \"{}\" (status: {})",
                        row.name, row.connection_status
                    )),
                );
            }
            memory.insert(row.name.clone(), live);
        }
    }

    // -----------------------------------------------------------------------------------------
    // Reading the memory

    pub fn holds(&self, name: &str) -> bool {
        self.memory.lock().expect("lab lock").contains_key(name)
    }

    /// `waInstances[name]?.connectionStatus?.state`.
    pub fn state_of(&self, name: &str) -> Option<&'static str> {
        let now = now_ms();
        self.memory.lock().expect("lab lock").get(name).map(|live| self.state(live, now))
    }

    pub fn qr_json(&self, name: &str) -> Option<Value> {
        self.memory.lock().expect("lab lock").get(name).map(|live| live.qr.json())
    }

    /// The QR object an answer shows; the first one that carries a code of the current flow
    /// starts the auto-scanning phone's clock.
    pub fn shown_qr(&self, name: &str) -> Option<Value> {
        let mut memory = self.memory.lock().expect("lab lock");
        let live = memory.get_mut(name)?;
        if live.flow_has_code && live.shown_ms.is_none() && matches!(live.socket, Socket::Pairing { .. }) {
            live.shown_ms = Some(now_ms());
        }
        Some(live.qr.json())
    }

    pub fn held_names(&self) -> Vec<String> {
        self.memory.lock().expect("lab lock").keys().cloned().collect()
    }

    /// `waInstances[name].integration` of a held name.
    pub fn integration_of(&self, name: &str) -> Option<String> {
        self.memory.lock().expect("lab lock").get(name).map(|l| l.integration.clone())
    }

    /// The instance id of a held name.
    pub fn id_of(&self, name: &str) -> Option<String> {
        self.memory.lock().expect("lab lock").get(name).map(|l| l.id.clone())
    }

    fn state(&self, live: &Live, now: u64) -> &'static str {
        match &live.socket {
            Socket::Off => "close",
            Socket::Pairing { .. } | Socket::Down { .. } => "connecting",
            Socket::Up | Socket::Channel => "open",
            Socket::Looping { loops } => {
                let shape = self.loop_shape();
                if loops.iter().any(|l| in_window(&shape, l.start_ms, now)) { "connecting" } else { "close" }
            }
        }
    }

    /// When a looping instance's state next changes (lab snapshot: lets a test act well inside
    /// one state of the loop).
    fn state_ends_in(&self, live: &Live, now: u64) -> Option<u64> {
        let Socket::Looping { loops } = &live.socket else { return None };
        let shape = self.loop_shape();
        let current = self.state(live, now);
        let mut candidates: Vec<u64> = Vec::new();
        for l in loops {
            let base = l.start_ms + shape.offset;
            let k = if now > base { (now - base) / shape.period } else { 0 };
            for j in 0..3 {
                let start = base + (k + j) * shape.period;
                candidates.extend([start, start + shape.window]);
            }
        }
        candidates.retain(|t| *t > now);
        candidates.sort_unstable();
        candidates
            .into_iter()
            .find(|t| {
                let after =
                    if loops.iter().any(|l| in_window(&shape, l.start_ms, *t)) { "connecting" } else { "close" };
                after != current
            })
            .map(|t| t - now)
    }

    /// The lab's view of one held instance.
    pub fn view(&self, name: &str) -> Option<Value> {
        let now = now_ms();
        let memory = self.memory.lock().expect("lab lock");
        let live = memory.get(name)?;
        let socket = match &live.socket {
            Socket::Off => "off",
            Socket::Pairing { .. } => "pairing",
            Socket::Up => "up",
            Socket::Down { cause: DownCause::Dropped, .. } => "dropped",
            Socket::Down { cause: DownCause::Conflict, .. } => "replaced",
            Socket::Down { cause: DownCause::Restarting, .. } => "restarting",
            Socket::Looping { .. } => "reconnecting",
            Socket::Channel => "channel",
        };
        let loops = match &live.socket {
            Socket::Looping { loops } => loops.len(),
            _ => 0,
        };
        Some(json!({
            "process": self.options.label,
            "state": self.state(live, now),
            "qr": live.qr.json(),
            "socket": socket,
            "reconnect_loops": loops,
            "state_ends_in_ms": self.state_ends_in(live, now),
            "phone_number": live.phone_number,
            "failed_scans": live.failed_scans,
            "keys": {"place": self.options.keys.place, "persistent": self.options.keys.persistent,
                     "held": self.options.keys.has(&live.id)},
        }))
    }

    // -----------------------------------------------------------------------------------------
    // Time

    /// Apply everything due by `now`: QRs, the QR limit, the auto-scan, reconnect loops,
    /// reopening sockets.
    pub fn advance(self: &Arc<Self>, now: u64) {
        let shape = self.loop_shape();
        let mut memory = self.memory.lock().expect("lab lock");
        for live in memory.values_mut() {
            match &mut live.socket {
                Socket::Pairing { next_qr_ms } => {
                    let mut due = *next_qr_ms;
                    let mut rounds = 0;
                    while now >= due && rounds < 64 {
                        rounds += 1;
                        if live.qr.count as f64 == self.config.qrcode_limit {
                            self.refuse(live);
                            break;
                        }
                        self.issue_qr(live, due);
                        due += self.options.qr_rotate.as_millis().max(1) as u64;
                    }
                    if let Socket::Pairing { next_qr_ms } = &mut live.socket {
                        *next_qr_ms = due;
                    }
                    // The phone scans a code once: after "Couldn't link device" it waits for
                    // another code to be shown.
                    if let (Some(after), Socket::Pairing { .. }, Some(shown)) =
                        (self.options.auto_scan_after, &live.socket, live.shown_ms)
                        && now >= shown + after.as_millis() as u64
                        && live.failed_code != live.qr.code
                        && !self.scan_refused(live)
                    {
                        let code = live.qr.code.clone();
                        self.open(live, "5511987654321", code);
                    }
                }
                Socket::Looping { loops } => {
                    let mut emit = 0;
                    for l in loops.iter_mut() {
                        if now >= l.next_emit_ms {
                            emit += 1;
                            let base = l.start_ms + shape.offset;
                            l.next_emit_ms = base + ((now - base) / shape.period + 1) * shape.period;
                        }
                    }
                    let who = live.who();
                    for _ in 0..emit {
                        let data = json!({"instance": who.name, "state": "connecting", "statusReason": 200});
                        self.emit_spawn(&who, "connection.update", data);
                    }
                }
                Socket::Down { reopen_ms: Some(at), .. } if now >= *at => {
                    live.socket = Socket::Up;
                    self.announce_open(live);
                }
                _ => {}
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // Sockets

    /// `createClient(number)`: start a socket for `live` (the caller holds the memory lock).
    fn start_socket(self: &Arc<Self>, live: &mut Live, number: Option<String>, now: u64) {
        let instance = Some(live.name.as_str());
        match &number {
            Some(n) => self.logger.write(
                Level::Info,
                "ChannelStartupService",
                instance,
                &Js::str(format!("Phone number: {n}")),
            ),
            None => self.logger.write(
                Level::Info,
                "ChannelStartupService",
                instance,
                &Js::str(format!("Browser: {},{},{OS_RELEASE}", self.config.phone_client, self.config.phone_name)),
            ),
        }
        self.logger.write(
            Level::Info,
            "ChannelStartupService",
            instance,
            &Js::str(format!("Baileys version: {BAILEYS_VERSION}")),
        );
        let groups_ignore = {
            let db = self.db.lock().expect("lab lock");
            db.by_id(&live.id)
                .and_then(|r| r.setting.as_ref())
                .map(|s| js_truthy(&s.values["groupsIgnore"]))
                .unwrap_or(false)
        };
        self.logger.write(
            Level::Info,
            "ChannelStartupService",
            instance,
            &Js::str(format!("Group Ignore: {groups_ignore}")),
        );
        live.phone_number = number;
        live.flow_started_ms = now;
        live.flow_has_code = false;
        live.shown_ms = None;
        live.secret_refreshed = false;
        live.code_refreshed = false;
        live.failed_code = None;
        if self.options.whatsapp == WhatsApp::Unreachable {
            let shape = self.loop_shape();
            let new = Loop { start_ms: now, next_emit_ms: now + shape.offset };
            match &mut live.socket {
                Socket::Looping { loops } => loops.push(new),
                other => *other = Socket::Looping { loops: vec![new] },
            }
            return;
        }
        // Creds without their Signal keys cannot resume a session: a new link (a new scan).
        let paired = self.db.lock().expect("lab lock").by_id(&live.id).and_then(|r| r.session_me.clone());
        let paired = paired.filter(|_| self.options.keys.has(&live.id));
        match paired {
            Some(jid) => {
                live.wuid = Some(jid);
                live.socket = Socket::Up;
                self.announce_open(live);
            }
            None => {
                live.socket = Socket::Pairing { next_qr_ms: now + self.scaled(FIRST_QR_MS) };
                let data = json!({"instance": live.name, "state": "connecting", "statusReason": 200});
                self.emit_spawn(&live.who(), "connection.update", data);
            }
        }
    }

    fn issue_qr(self: &Arc<Self>, live: &mut Live, at: u64) {
        live.qr.count += 1;
        let code = new_qr_code(&format!("{}/{}/{}/{at}", self.options.label, live.id, live.qr.count));
        let pairing = live.phone_number.as_ref().map(|_| pairing_code(&code));
        live.qr.pairing_code = Some(pairing.clone());
        live.qr.code = Some(code.clone());
        let base64 = format!("data:image/png;base64,{}", png_stand_in(&code));
        live.qr.base64 = Some(base64.clone());
        live.flow_has_code = true;
        // After WhatsApp's refresh only a patched Baileys advertises the new secret.
        live.code_refreshed = self.options.baileys_patched && live.secret_refreshed;
        {
            let mut db = self.db.lock().expect("lab lock");
            if let Some(row) = db.by_id_mut(&live.id) {
                row.issued_codes.push(code.clone());
                row.connection_status = "connecting".into();
                row.updated_ms = now_ms();
            }
        }
        self.logger.write(
            Level::Log,
            "ChannelStartupService",
            Some(&live.name),
            &Js::str(format!(
                "\n{{ instance: {} pairingCode: {}, qrcodeCount: {} }}\n",
                live.name,
                pairing.as_deref().unwrap_or("null"),
                live.qr.count
            )),
        );
        let data = json!({"qrcode": {"instance": live.name, "pairingCode": pairing, "code": code, "base64": base64}});
        self.emit_spawn(&live.who(), "qrcode.updated", data);
    }

    /// The QR limit: refused, then `no.connection` (logout, the stored QR reset to `{count: 0}`).
    fn refuse(self: &Arc<Self>, live: &mut Live) {
        let who = live.who();
        let limit = json!({"message": "QR code limit reached, please login again", "statusCode": 500});
        self.emit_spawn(&who, "qrcode.updated", limit);
        self.emit_spawn(
            &who,
            "connection.update",
            json!({"instance": who.name, "state": "refused", "statusReason": 428}),
        );
        live.qr = QrStore::default();
        live.socket = Socket::Off;
        self.logger.write(
            Level::Warn,
            "WAMonitoringService",
            None,
            &Js::str(format!("Instance \"{}\" - NOT CONNECTION", live.name)),
        );
    }

    /// The phone linked: `open`.
    fn open(self: &Arc<Self>, live: &mut Live, number: &str, scanned: Option<String>) {
        let jid = format!("{number}@s.whatsapp.net");
        {
            let mut db = self.db.lock().expect("lab lock");
            if let Some(row) = db.by_id_mut(&live.id) {
                row.scanned_code = scanned;
                row.session_me = Some(jid.clone());
            }
        }
        self.options.keys.put(&live.id);
        live.wuid = Some(jid);
        live.socket = Socket::Up;
        self.announce_open(live);
    }

    /// `connection === 'open'`: the box in the log, the row updated, `connection.update`.
    fn announce_open(self: &Arc<Self>, live: &mut Live) {
        let Some(jid) = live
            .wuid
            .clone()
            .or_else(|| self.db.lock().expect("lab lock").by_id(&live.id).and_then(|r| r.session_me.clone()))
        else {
            return;
        };
        live.wuid = Some(jid.clone());
        {
            let mut db = self.db.lock().expect("lab lock");
            if let Some(row) = db.by_id_mut(&live.id) {
                row.owner_jid = Some(jid.clone());
                row.profile_name = Some("Lab Phone".into());
                row.profile_pic_url = None;
                row.connection_status = "open".into();
                row.updated_ms = now_ms();
            }
        }
        let instance = Some(live.name.as_str());
        self.logger.write(
            Level::Info,
            "ChannelStartupService",
            instance,
            &Js::str("\n  ┌──────────────────────────────┐\n  │    CONNECTED TO WHATSAPP     │\n  └──────────────────────────────┘"),
        );
        let digits = jid.split('@').next().unwrap_or_default();
        self.logger.write(
            Level::Info,
            "ChannelStartupService",
            instance,
            &Js::str(format!("\n  wuid: {digits:<30}\n  name: {}\n", live.name)),
        );
        let data = json!({"instance": live.name, "wuid": jid, "profileName": "Lab Phone", "profilePictureUrl": null,
                          "state": "open", "statusReason": 200});
        self.emit_spawn(&live.who(), "connection.update", data);
    }

    /// A closed socket's 401 handling (a logout of a live socket): STATUS_INSTANCE, the row
    /// closed with the disconnection, `logout.instance` (its webhook awaited before the
    /// cleanup), `connection.update` close.
    fn logged_out(self: &Arc<Self>, live: &mut Live) {
        self.closed_for_good(live, "null", "Intentional Logout");
    }

    /// 2.3.7's no-reconnect branch for a 401 (`whatsapp.baileys.service.ts:433-463`): the only
    /// place it writes the row's `disconnection*` columns (`disconnectionObject` is
    /// `JSON.stringify(lastDisconnect)`, the Boom with `data` and its message), then
    /// `logout.instance`'s cleanup. `data` is the Boom's `data` as JSON text.
    fn closed_for_good(self: &Arc<Self>, live: &mut Live, data: &str, message: &str) {
        let now = now_ms();
        let who = live.who();
        live.socket = Socket::Off;
        self.options.keys.remove(&who.id);
        let object = format!(
            "{{\"error\":{{\"data\":{data},\"isBoom\":true,\"isServer\":false,\"output\":{{\"statusCode\":401,\"payload\":{{\"statusCode\":401,\"error\":\"Unauthorized\",\"message\":\"{message}\"}},\"headers\":{{}}}}}},\"date\":\"{}\"}}",
            iso(now)
        );
        self.emit_spawn(
            &who,
            "status.instance",
            json!({"instance": who.name, "status": "closed", "disconnectionAt": iso(now),
                   "disconnectionReasonCode": 401, "disconnectionObject": object}),
        );
        {
            let mut db = self.db.lock().expect("lab lock");
            if let Some(row) = db.by_id_mut(&who.id) {
                row.connection_status = "close".into();
                row.disconnection_at_ms = Some(now);
                row.disconnection_reason_code = Some(401);
                row.disconnection_object = Some(object);
                row.session_me = None;
                row.updated_ms = now;
            }
        }
        let process = Arc::clone(self);
        let name = who.name.clone();
        let emission = self.emit(&who, "logout.instance", Value::Null);
        self.spawn(async move {
            if let Ok(pending) = emission {
                if let Some(pending) = pending {
                    process.deliver(pending, true).await;
                }
                process.clear_del_timer(&name);
                let mut db = process.db.lock().expect("lab lock");
                if let Some(row) = db.rows.get_mut(&name) {
                    row.connection_status = "close".into();
                    row.session_me = None;
                }
            }
            process.logger.write(
                Level::Warn,
                "WAMonitoringService",
                None,
                &Js::str(format!("Instance \"{name}\" - LOGOUT")),
            );
        });
        self.emit_spawn(
            &who,
            "connection.update",
            json!({"instance": who.name, "state": "close", "statusReason": 401}),
        );
    }

    // -----------------------------------------------------------------------------------------
    // Operations the API calls

    /// `saveInstance` and `setInstance`: the row and the in-memory instance.
    pub fn add_instance(self: &Arc<Self>, row: Row) {
        let integration = row.integration.clone().unwrap_or_else(|| "WHATSAPP-BAILEYS".into());
        let mut live = new_live(&row.name, &row.id, row.token.clone(), &integration);
        if integration != "WHATSAPP-BAILEYS" {
            live.socket = Socket::Channel;
        }
        let name = row.name.clone();
        self.db.lock().expect("lab lock").rows.entry(name.clone()).or_insert(row);
        self.memory.lock().expect("lab lock").insert(name, live);
    }

    /// `delInstanceTime`: with `DEL_INSTANCE` a number of minutes, the instance is removed that
    /// long (scaled) after its create unless it is `open` by then.
    pub fn arm_del_timer(self: &Arc<Self>, name: &str) {
        let Some(minutes) = self.config.del_instance_minutes.filter(|m| *m > 0.0) else { return };
        let generation = {
            let mut counter = self.timers.lock().expect("lab lock");
            *counter += 1;
            *counter
        };
        self.del_timers.lock().expect("lab lock").insert(name.to_owned(), generation);
        let process = Arc::clone(self);
        let name = name.to_owned();
        let wait = self.scaled_duration(minutes * 60_000.0);
        self.spawn(async move {
            tokio::time::sleep(wait).await;
            if process.del_timers.lock().expect("lab lock").get(&name) != Some(&generation) {
                return;
            }
            process.del_timers.lock().expect("lab lock").remove(&name);
            let state = process.state_of(&name);
            if state == Some("open") {
                return;
            }
            if state == Some("connecting") {
                let mut memory = process.memory.lock().expect("lab lock");
                if let Some(live) = memory.get_mut(&name)
                    && matches!(live.socket, Socket::Pairing { .. } | Socket::Up)
                {
                    process.logged_out(live);
                }
            }
            process.spawn_removal(&name);
        });
    }

    fn clear_del_timer(&self, name: &str) {
        self.del_timers.lock().expect("lab lock").remove(name);
    }

    /// The `connect` controller's `close` branch: `connectToWhatsapp(number)`. `Err` when the
    /// instance is not held or `createClient` throws (no auth-state store without
    /// `DATABASE_SAVE_DATA_INSTANCE`).
    pub fn connect_socket(self: &Arc<Self>, name: &str, number: Option<String>) -> Result<(), String> {
        if !self.config.save_data_instance {
            return Err("TypeError: Cannot read properties of undefined (reading 'state')".into());
        }
        let now = now_ms();
        let mut memory = self.memory.lock().expect("lab lock");
        let live = memory.get_mut(name).ok_or("not held")?;
        self.start_socket(live, number, now);
        Ok(())
    }

    pub fn logout(self: &Arc<Self>, name: &str) -> Logout {
        let now = now_ms();
        let mut memory = self.memory.lock().expect("lab lock");
        let Some(live) = memory.get_mut(name) else { return Logout::NotHeld };
        let state = self.state(live, now);
        if state == "close" {
            return Logout::NotConnected;
        }
        let paired = self.db.lock().expect("lab lock").by_id(&live.id).is_some_and(|r| r.session_me.is_some());
        match &mut live.socket {
            Socket::Pairing { .. } | Socket::Up => {
                self.logged_out(live);
                Logout::Done
            }
            Socket::Down { .. } => Logout::ConnectionClosed,
            Socket::Looping { .. } if paired => Logout::ConnectionClosed,
            Socket::Looping { loops } => {
                // The socket in its connecting moment is logged out; it was already failing, so
                // Baileys' `end` has nothing to close and nothing else is emitted.
                let shape = self.loop_shape();
                if let Some(index) = loops.iter().rposition(|l| in_window(&shape, l.start_ms, now)) {
                    loops.remove(index);
                }
                if loops.is_empty() {
                    live.socket = Socket::Off;
                }
                Logout::Done
            }
            Socket::Off | Socket::Channel => Logout::Done,
        }
    }

    /// `restartInstance` for Baileys: close the socket and answer what `connectToWhatsapp`
    /// answers at that moment; `None` for a `close` or unknown instance (a `close` one is
    /// refused as "not connected", which 2.3.7 logs and answers as `[object Object]`).
    pub fn restart(self: &Arc<Self>, name: &str) -> Option<Value> {
        let now = now_ms();
        let mut memory = self.memory.lock().expect("lab lock");
        let live = memory.get_mut(name)?;
        let state = self.state(live, now);
        if state == "close" {
            // 2.3.7 throws its BadRequestException object, logs it whole and answers its
            // `toString()`, which is `[object Object]`.
            let thrown = Js::obj(vec![
                ("status", Js::Num(400.0)),
                ("error", Js::str("Bad Request")),
                ("message", Js::Arr(vec![Js::str(format!("The \"{name}\" instance is not connected"))])),
            ]);
            self.logger.write(Level::Error, "InstanceController", None, &thrown);
            return None;
        }
        self.logger.write(Level::Info, "InstanceController", None, &Js::str(format!("Restarting instance: {name}")));
        if state != "open" && live.flow_has_code && live.shown_ms.is_none() {
            live.shown_ms = Some(now);
        }
        let answer =
            if state == "open" { json!({"instance": {"instanceName": name, "state": "open"}}) } else { live.qr.json() };
        let reopen = now + self.scaled(RESTART_REOPEN_MS);
        match &mut live.socket {
            Socket::Pairing { .. } => {
                let number = live.phone_number.clone();
                self.start_socket(live, number, now);
            }
            Socket::Up => {
                live.socket = Socket::Down { cause: DownCause::Restarting, reopen_ms: Some(reopen) };
                let data = json!({"instance": name, "state": "connecting", "statusReason": 200});
                self.emit_spawn(&live.who(), "connection.update", data);
            }
            Socket::Down { reopen_ms, .. } => *reopen_ms = Some(reopen),
            Socket::Looping { loops } => {
                let shape = self.loop_shape();
                if let Some(l) = loops.iter_mut().rev().find(|l| in_window(&shape, l.start_ms, now)) {
                    l.start_ms = now;
                    l.next_emit_ms = now + shape.offset;
                }
            }
            Socket::Off | Socket::Channel => {}
        }
        Some(answer)
    }

    /// `remove.instance`: await the REMOVE_INSTANCE webhook (with its retries) when the instance
    /// is held, then clean the rows up by name and forget it. A webhook that throws (an empty
    /// `jwt_key`) stops it all: nothing is removed.
    pub fn spawn_removal(self: &Arc<Self>, name: &str) {
        let process = Arc::clone(self);
        let name = name.to_owned();
        let who = self.memory.lock().expect("lab lock").get(&name).map(Live::who);
        let emission = match &who {
            Some(who) => self.emit(who, "remove.instance", Value::Null),
            None => Ok(None),
        };
        self.spawn(async move {
            match emission {
                Err(_) => {
                    process.logger.write(
                        Level::Warn,
                        "WAMonitoringService",
                        None,
                        &Js::str(format!("Instance \"{name}\" - REMOVED")),
                    );
                    return;
                }
                Ok(Some(pending)) => process.deliver(pending, true).await,
                Ok(None) => {}
            }
            process.clear_del_timer(&name);
            {
                let mut db = process.db.lock().expect("lab lock");
                db.rows.shift_remove(&name);
            }
            process.logger.write(
                Level::Warn,
                "WAMonitoringService",
                None,
                &Js::str(format!("Instance \"{name}\" - REMOVED")),
            );
            process.memory.lock().expect("lab lock").shift_remove(&name);
        });
    }

    /// `eventManager.webhook.set`: upsert the instance's webhook row as Prisma does (on an
    /// existing row a field left out keeps its value).
    pub fn set_webhook(&self, name: &str, webhook: &serde_json::Map<String, Value>) -> Result<Value, SetError> {
        let enabled = webhook.get("enabled");
        let mut fields = webhook.clone();
        if !enabled.is_some_and(js_truthy) {
            fields.insert("events".into(), json!([]));
        } else {
            match webhook.get("events") {
                None => return Err(SetError::Type("Cannot read properties of undefined (reading 'length')".into())),
                Some(Value::Null) => {
                    return Err(SetError::Type("Cannot read properties of null (reading 'length')".into()));
                }
                Some(Value::Array(items)) if items.is_empty() => {
                    fields.insert("events".into(), json!(super::schema::WEBHOOK_EVENTS));
                }
                Some(Value::String(s)) if s.is_empty() => {
                    fields.insert("events".into(), json!(super::schema::WEBHOOK_EVENTS));
                }
                Some(_) => {}
            }
        }
        let Some(id) = self.id_of(name) else {
            return Err(SetError::Type("Cannot read properties of undefined (reading 'instanceId')".into()));
        };
        for (key, expected) in
            [("url", "String"), ("enabled", "Boolean"), ("byEvents", "Boolean"), ("base64", "Boolean")]
        {
            let ok = matches!(
                (fields.get(key), expected),
                (None, _) | (Some(Value::String(_)), "String") | (Some(Value::Bool(_) | Value::Null), "Boolean")
            );
            if !ok {
                let column = match key {
                    "byEvents" => "webhookByEvents",
                    "base64" => "webhookBase64",
                    other => other,
                };
                return Err(SetError::Prisma(format!(
                    "Invalid value provided for argument `{column}`: expected {expected}."
                )));
            }
        }
        let now = now_ms();
        let mut db = self.db.lock().expect("lab lock");
        let cuid = db.cuid(now);
        let Some(row) = db.by_id_mut(&id) else {
            return Err(SetError::Prisma(
                "Foreign key constraint violated on the constraint: `Webhook_instanceId_fkey`".into(),
            ));
        };
        match &mut row.webhook {
            Some(existing) => {
                if let Some(Value::String(url)) = fields.get("url") {
                    existing.url = url.clone();
                }
                for (key, slot) in [
                    ("enabled", &mut existing.enabled),
                    ("events", &mut existing.events),
                    ("headers", &mut existing.headers),
                    ("base64", &mut existing.base64),
                    ("byEvents", &mut existing.by_events),
                ] {
                    if let Some(value) = fields.get(key) {
                        *slot = value.clone();
                    }
                }
                existing.updated_ms = now;
            }
            None => {
                let Some(Value::String(url)) = fields.get("url") else {
                    return Err(SetError::Prisma("Argument `url` is missing.".into()));
                };
                row.webhook = Some(WebhookRow {
                    id: cuid,
                    url: url.clone(),
                    headers: fields.get("headers").cloned().unwrap_or(Value::Null),
                    enabled: fields.get("enabled").cloned().unwrap_or(Value::Bool(true)),
                    events: fields.get("events").cloned().unwrap_or(Value::Null),
                    by_events: fields.get("byEvents").cloned().unwrap_or(Value::Bool(false)),
                    base64: fields.get("base64").cloned().unwrap_or(Value::Bool(false)),
                    created_ms: now,
                    updated_ms: now,
                });
            }
        }
        let id = row.id.clone();
        Ok(row.webhook.as_ref().map(|w| w.row_json(&id)).unwrap_or(Value::Null))
    }

    /// `eventManager.webhook.get`: the row of a held instance, or null.
    pub fn find_webhook(&self, name: &str) -> Value {
        let Some(id) = self.id_of(name) else { return Value::Null };
        let db = self.db.lock().expect("lab lock");
        db.by_id(&id).and_then(|r| r.webhook.as_ref()).map(|w| w.row_json(&id)).unwrap_or(Value::Null)
    }

    /// `settingsService.create`.
    pub fn create_setting(&self, name: &str, values: Value) {
        let now = now_ms();
        let mut db = self.db.lock().expect("lab lock");
        let id = db.cuid(now);
        if let Some(row) = db.rows.get_mut(name) {
            row.setting = Some(Setting { id, values, created_ms: now, updated_ms: now });
        }
    }

    // -----------------------------------------------------------------------------------------
    // The simulated phone and network

    /// The phone scans `code` (a QR code, or the pairing code shown with it): the instance
    /// showing it links, or (see [`Process::scan_refused`]) the phone says it could not.
    pub fn scan(self: &Arc<Self>, code: &str, number: &str) -> Option<ScanOutcome> {
        let mut memory = self.memory.lock().expect("lab lock");
        let live = memory.values_mut().find(|l| {
            matches!(l.socket, Socket::Pairing { .. })
                && (l.qr.code.as_deref() == Some(code)
                    || l.qr.pairing_code.as_ref().is_some_and(|p| p.as_deref() == Some(code)))
        })?;
        if self.scan_refused(live) {
            return Some(ScanOutcome::Failed(live.name.clone()));
        }
        let scanned = live.qr.code.clone();
        self.open(live, number, scanned);
        Some(ScanOutcome::Linked(live.name.clone()))
    }

    /// Since 2026-07-28 WhatsApp answers a QR scan with `<notification
    /// type="companion_reg_refresh">`, retiring the pairing (ADV) secret the code carries
    /// (WhiskeySockets/Baileys#2737). Baileys 7.0.0-rc.9 acks it and drops it
    /// (`messages-recv.ts:1134-1168`: `processNotification` has no case for it; the ack is logged
    /// at debug, `sent ack` :363, the frame at trace, `recv xml` `socket.ts:582`) and keeps
    /// advertising the retired secret, so no `pair-success` comes and the phone says "Couldn't
    /// link device" for this scan and every later one. A patched Baileys (PR #2765) re-renders
    /// the QR with a new secret, and a scan of that code links. With `pairing_refresh` off, or a
    /// code that carries the new secret, the scan goes through.
    fn scan_refused(self: &Arc<Self>, live: &mut Live) -> bool {
        if !self.options.pairing_refresh || live.code_refreshed {
            return false;
        }
        live.failed_scans += 1;
        live.failed_code = live.qr.code.clone();
        live.secret_refreshed = true;
        let now = now_ms();
        let id = format!("{}", 1_000_000_000 + (now % 1_000_000_000));
        let t = now / 1000;
        self.baileys_log(
            10,
            &format!(
                "\"xml\":\"<notification from='s.whatsapp.net' type='companion_reg_refresh' id='{id}' t='{t}'><companion_reg_refresh/></notification>\",\"msg\":\"recv xml\""
            ),
        );
        self.baileys_log(
            20,
            &format!(
                "\"recv\":{{\"tag\":\"notification\",\"attrs\":{{\"from\":\"s.whatsapp.net\",\"type\":\"companion_reg_refresh\",\"id\":\"{id}\",\"t\":\"{t}\"}}}},\"sent\":{{\"id\":\"{id}\",\"to\":\"s.whatsapp.net\",\"class\":\"notification\",\"type\":\"companion_reg_refresh\"}},\"msg\":\"sent ack\""
            ),
        );
        if self.options.baileys_patched {
            // The same ref, a new secret: a new code on show (Evolution counts it as a QR).
            live.shown_ms = None;
            self.issue_qr(live, now);
        }
        true
    }

    /// One line of the Baileys logger (pino JSON, `P({ level: LOG_BAILEYS })`,
    /// `whatsapp.baileys.service.ts:641`), written when `LOG_BAILEYS` lets `level` through;
    /// `fields` are the line's own, between the bindings and the end.
    fn baileys_log(&self, level: u8, fields: &str) {
        if level < self.config.log_baileys_level {
            return;
        }
        self.logger.raw(&format!(
            "{{\"level\":{level},\"time\":{},\"pid\":{},\"hostname\":\"ip-10-0-1-23\",{fields}}}",
            now_ms(),
            self.options.pid
        ));
    }

    /// A WhatsApp message arrives for an open instance.
    pub fn message(self: &Arc<Self>, name: &str, text: &str, from: &str) -> bool {
        let memory = self.memory.lock().expect("lab lock");
        let Some(live) = memory.get(name).filter(|l| matches!(l.socket, Socket::Up)) else { return false };
        let data = json!({
            "key": {"remoteJid": format!("{from}@s.whatsapp.net"), "fromMe": false, "id": format!("3EB0{}", now_ms())},
            "pushName": "Lab Contact",
            "message": {"conversation": text},
            "messageType": "conversation",
            "messageTimestamp": now_ms() / 1000,
            "instanceId": live.id,
            "source": "ios",
        });
        self.emit_spawn(&live.who(), "messages.upsert", data);
        true
    }

    /// The network under a paired socket drops: `connecting` (reconnecting), owner kept.
    pub fn drop_socket(self: &Arc<Self>, name: &str) -> bool {
        let mut memory = self.memory.lock().expect("lab lock");
        let Some(live) = memory.get_mut(name) else { return false };
        if !matches!(live.socket, Socket::Up | Socket::Down { .. }) {
            return false;
        }
        live.socket = Socket::Down { cause: DownCause::Dropped, reopen_ms: None };
        let data = json!({"instance": name, "state": "connecting", "statusReason": 200});
        self.emit_spawn(&live.who(), "connection.update", data);
        true
    }

    /// The phone removes this linked device: WhatsApp ends the stream with
    /// `<stream:error code="401"><conflict type="device_removed"/></stream:error>`; Baileys logs
    /// `stream errored out` (level 50) and closes with 401 `Stream Errored (conflict)`, which
    /// 2.3.7 does not reconnect: the row gets the disconnection and the session is cleaned up.
    pub fn remove_device(self: &Arc<Self>, name: &str) -> bool {
        let mut memory = self.memory.lock().expect("lab lock");
        let Some(live) = memory.get_mut(name) else { return false };
        if !matches!(live.socket, Socket::Up | Socket::Down { .. }) {
            return false;
        }
        let reason = r#"{"tag":"conflict","attrs":{"type":"device_removed"}}"#;
        self.baileys_log(
            50,
            &format!(
                "\"reasonNode\":{reason},\"fullErrorNode\":{{\"tag\":\"stream:error\",\"attrs\":{{\"code\":\"401\"}},\"content\":[{reason}]}},\"msg\":\"stream errored out\""
            ),
        );
        self.closed_for_good(live, reason, "Stream Errored (conflict)");
        true
    }

    /// The socket closes (428) and 2.3.7's immediate reconnect does not come up (it threw): the
    /// memory says `close`; the row, which a reconnectable close never writes, still says `open`.
    pub fn kill_socket(self: &Arc<Self>, name: &str) -> bool {
        let mut memory = self.memory.lock().expect("lab lock");
        let Some(live) = memory.get_mut(name) else { return false };
        if !matches!(live.socket, Socket::Up | Socket::Down { .. }) {
            return false;
        }
        live.socket = Socket::Off;
        let data = json!({"instance": name, "state": "close", "statusReason": 428});
        self.emit_spawn(&live.who(), "connection.update", data);
        true
    }

    /// The network is back: a dropped (or replaced) socket is `open` again.
    pub fn reconnect_socket(self: &Arc<Self>, name: &str) -> bool {
        let mut memory = self.memory.lock().expect("lab lock");
        let Some(live) = memory.get_mut(name) else { return false };
        if !matches!(live.socket, Socket::Down { .. }) {
            return false;
        }
        live.socket = Socket::Up;
        self.announce_open(live);
        true
    }

    /// The conflict loop: this process's socket is replaced (`kicked`) or holds the session.
    /// Whether the state changed.
    pub fn set_replaced(self: &Arc<Self>, name: &str, kicked: bool) -> bool {
        let mut memory = self.memory.lock().expect("lab lock");
        let Some(live) = memory.get_mut(name) else { return false };
        match (&live.socket, kicked) {
            (Socket::Up, true) => {
                live.socket = Socket::Down { cause: DownCause::Conflict, reopen_ms: None };
                let data = json!({"instance": name, "state": "connecting", "statusReason": 200});
                self.emit_spawn(&live.who(), "connection.update", data);
                true
            }
            (Socket::Down { cause: DownCause::Conflict, .. }, false) => {
                live.socket = Socket::Up;
                self.announce_open(live);
                true
            }
            _ => false,
        }
    }

    /// Whether this process holds `name` with a paired socket that takes part in a conflict.
    pub fn holds_session(&self, name: &str) -> bool {
        self.memory
            .lock()
            .expect("lab lock")
            .get(name)
            .is_some_and(|l| matches!(l.socket, Socket::Up | Socket::Down { cause: DownCause::Conflict, .. }))
    }

    // -----------------------------------------------------------------------------------------
    // Webhooks

    /// `sendDataWebhook(event, data)` for a held instance: `Err` when the JWT cannot be made
    /// (then nothing is sent, and the failure is logged), `Ok(Some)` when the row wants it.
    pub fn emit(&self, who: &Who, event: &str, data: Value) -> Result<Option<Pending>, JwtError> {
        let row = {
            let db = self.db.lock().expect("lab lock");
            db.by_id(&who.id).and_then(|r| r.webhook.clone())
        };
        let Some(row) = row else { return Ok(None) };
        let now = now_ms();
        let mut headers = match webhooks::outgoing_headers(&row.headers, now / 1000) {
            Ok(headers) => headers,
            Err(error) => {
                webhooks::log_jwt_failure(&self.logger, &error);
                return Err(error);
            }
        };
        if self.options.version == Version::V240Rc2 {
            // 2.4's tracking headers over the stored ones (webhook.controller.ts:128-136 at
            // 2.4.0-rc2; its User-Agent says 2.3.7).
            let added = [
                ("Content-Type", "application/json".to_owned()),
                ("X-Instance-ID", who.id.clone()),
                ("X-Instance-Name", who.name.clone()),
                ("X-Event-Type", event.to_owned()),
                ("X-Timestamp", now.to_string()),
                ("User-Agent", "EvolutionAPI-Webhook/2.3.7".to_owned()),
            ];
            for (name, value) in added {
                headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
                headers.push((name.to_owned(), value));
            }
        }
        let we = event.replace(['.', '-'], "_").to_uppercase();
        let suffix = we.to_lowercase().replace('_', "-");
        let destination = if row.url.is_empty() { format!("/{suffix}") } else { row.url.clone() };
        let local = (now as i64 + self.config.tz_offset_minutes * 60_000).max(0) as u64;
        let apikey = self
            .config
            .expose_in_fetch_instances
            .then(|| who.token.clone().unwrap_or_else(|| "Apikey not found".into()));
        let payload = webhooks::Envelope {
            event,
            instance: &who.name,
            destination: &destination,
            date_time: &iso(local),
            sender: who.wuid.as_deref(),
            server_url: self.config.server_url.as_deref(),
            apikey: apikey.as_deref(),
        }
        .payload(data);
        if !(row.is_enabled() && row.event_list().contains(&we)) {
            return Ok(None);
        }
        let url = if row.by_events() { format!("{}/{suffix}", row.url) } else { row.url.clone() };
        webhooks::log_send(&self.logger, &url, &payload);
        if !(row.url.starts_with("http://") || row.url.starts_with("https://")) {
            return Ok(None);
        }
        Ok(Some(Pending { url, headers, body: payload.to_string() }))
    }

    /// Emit and send in the background (the callers that do not await the emission).
    pub fn emit_spawn(self: &Arc<Self>, who: &Who, event: &str, data: Value) {
        if let Ok(Some(pending)) = self.emit(who, event, data) {
            let process = Arc::clone(self);
            self.spawn(async move { process.deliver(pending, false).await });
        }
    }

    /// Emit for a held instance by name, in the background.
    pub fn emit_named(self: &Arc<Self>, name: &str, event: &str, data: Value) {
        let who = self.memory.lock().expect("lab lock").get(name).map(Live::who);
        if let Some(who) = who {
            self.emit_spawn(&who, event, data);
        }
    }

    /// Send with the retry policy; a final failure is logged (`Todas as tentativas falharam`).
    pub async fn deliver(self: &Arc<Self>, pending: Pending, awaited: bool) {
        let process = Arc::clone(self);
        let random = move || process.random();
        let ctx = webhooks::Context {
            config: &self.config,
            logger: &self.logger,
            time_scale: self.options.time_scale,
            random: &random,
            awaited,
        };
        if let Err(failure) = webhooks::retry(&ctx, &pending.url, &pending.headers, &pending.body).await {
            webhooks::log_gave_up(&ctx, &pending.url, &failure);
        }
    }
}

fn new_live(name: &str, id: &str, token: Option<String>, integration: &str) -> Live {
    Live {
        name: name.to_owned(),
        id: id.to_owned(),
        token,
        integration: integration.to_owned(),
        qr: QrStore::default(),
        phone_number: None,
        wuid: None,
        socket: Socket::Off,
        flow_started_ms: 0,
        flow_has_code: false,
        shown_ms: None,
        secret_refreshed: false,
        code_refreshed: false,
        failed_scans: 0,
        failed_code: None,
    }
}

fn in_window(shape: &LoopShape, start: u64, now: u64) -> bool {
    let base = start + shape.offset;
    now >= base && (now - base) % shape.period < shape.window
}

/// A fresh WhatsApp-style QR payload (`2@…,…,…,…`, about 240 characters).
pub fn new_qr_code(seed: &str) -> String {
    use base64::Engine;
    let part = |n: u8, len: usize| {
        let mut bytes = Vec::new();
        while bytes.len() < len {
            bytes.extend_from_slice(&<sha2::Sha256 as sha2::Digest>::digest(
                format!("{seed}/{n}/{}", bytes.len()).as_bytes(),
            ));
        }
        base64::engine::general_purpose::STANDARD.encode(&bytes[..len])
    };
    format!("2@{},{},{},{}", part(0, 66), part(1, 32), part(2, 32), part(3, 32))
}

/// An 8-character pairing code, as WhatsApp's alphabet has them.
fn pairing_code(code: &str) -> String {
    let digest = <sha2::Sha256 as sha2::Digest>::digest(format!("pairing/{code}").as_bytes());
    digest.iter().take(8).map(|b| char::from(b"ABCDEFGHJKLMNPQRSTVWXYZ23456789"[(*b as usize) % 31])).collect()
}

/// A stand-in for the QR's PNG: a base64 payload that starts like a PNG.
fn png_stand_in(code: &str) -> String {
    use base64::Engine;
    let mut bytes = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR".to_vec();
    bytes.extend_from_slice(&<sha2::Sha256 as sha2::Digest>::digest(code.as_bytes()));
    base64::engine::general_purpose::STANDARD.encode(bytes)
}
