//! The Evolution API side of the lab: one 2.3.7 stand-in process per RUNNING task, on a
//! loopback port that the task's exec sessions see as `SERVER_PORT`, with the task definition's
//! environment read as the real server reads it ([`env`]); or, for a service configured with an
//! external Evolution, a per-task loopback port forwarded to that server ([`forward`]).
//! Processes share a database per `DATABASE_CONNECTION_URI` ([`db`]) but each holds in memory
//! only the rows of its client name loaded at its start and those it created ([`process`]).
//! The WhatsApp side: QRs rotate, the QR limit refuses, a simulated phone scans, the network
//! under a paired socket can drop, and two processes holding one session replace each other
//! (the conflict loop). The same hub serves the standalone stand-in ([`standalone`]).

pub mod api;
pub mod control;
pub mod db;
pub mod env;
pub mod forward;
pub mod js;
pub mod keys;
pub mod log;
pub mod process;
pub mod schema;
pub mod standalone;
pub mod webhooks;

use super::state::{Account, Accounts, LogEvent, now_ms};
use db::Database;
use indexmap::IndexMap;
use process::{Process, ProcessOptions, Version, WhatsApp};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The image's baked `.env` key (the public default).
pub const IMAGE_DEFAULT_API_KEY: &str = "429683C4C977415CAAFCCE10F7D57E11";

/// Simulator settings.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// How long one QR lives (Evolution 2.3.7: 45 s).
    pub qr_rotate: Duration,
    /// A simulated phone scans any QR shown this long (demo).
    pub auto_scan_after: Option<Duration>,
    /// Multiplies the stand-in's own waits (`--evolution-time-scale`).
    pub time_scale: f64,
    /// Whether WhatsApp is reachable (`--whatsapp`, or the scenario's `whatsapp`).
    pub whatsapp: WhatsApp,
    /// The release the stand-ins play (`--evolution-version`, or the scenario's).
    pub version: Version,
    /// 2.4: activated from the start (`--evolution-licence activated`, or the scenario's).
    pub activated: bool,
    /// The image's Baileys handles `companion_reg_refresh` (`--baileys-patched`; no released
    /// Baileys does: its `lib/Socket` then names the notification).
    pub baileys_patched: bool,
    /// WhatsApp answers a QR scan with `companion_reg_refresh` (`--pairing-refresh`, or the
    /// scenario's `pairing_refresh`): see `Process::scan_refused`.
    pub pairing_refresh: bool,
    /// How often each process advances its sockets.
    pub tick: Duration,
    /// `CLUSTER/SERVICE` → `HOST:PORT` of an Evolution server already running.
    pub externals: IndexMap<String, String>,
}

/// `unlicensed` or `activated` (`--evolution-licence`, the scenario's `evolution_licence`).
pub fn licence_activated(text: &str) -> Result<bool, String> {
    match text {
        "unlicensed" => Ok(false),
        "activated" => Ok(true),
        other => Err(format!("`{other}` is neither `unlicensed` nor `activated`")),
    }
}

impl Default for SimOptions {
    fn default() -> SimOptions {
        SimOptions {
            qr_rotate: Duration::from_millis(45_000),
            auto_scan_after: None,
            time_scale: 1.0,
            whatsapp: WhatsApp::Reachable,
            version: Version::V237,
            activated: false,
            baileys_patched: false,
            pairing_refresh: false,
            tick: Duration::from_millis(10),
            externals: IndexMap::new(),
        }
    }
}

enum Running {
    Stand {
        port: u16,
        process: Arc<Process>,
        server: tokio::task::JoinHandle<()>,
        log_group: Option<String>,
        stream: String,
    },
    Forward {
        port: u16,
        task: tokio::task::JoinHandle<()>,
    },
}

impl Running {
    fn port(&self) -> u16 {
        match self {
            Running::Stand { port, .. } | Running::Forward { port, .. } => *port,
        }
    }

    fn stop(&self) {
        match self {
            Running::Stand { process, server, .. } => {
                process.stop();
                server.abort();
            }
            Running::Forward { task, .. } => task.abort(),
        }
    }
}

/// Every Evolution process and database of the lab, and the lab's webhook receiver.
pub struct EvolutionHub {
    options: SimOptions,
    databases: Mutex<HashMap<String, Arc<Mutex<Database>>>>,
    /// Key stores outside any task (Redis, EFS, a provider), by place.
    key_stores: Mutex<HashMap<String, keys::KeyStore>>,
    /// Keys of seeded linked instances whose store is a task's own, by database URI: the first
    /// task on that database has them.
    seeded_keys: Mutex<HashMap<String, Vec<String>>>,
    /// Each started task's mounts (container path, EFS file system): what its `/proc/mounts`
    /// shows inside the container.
    mounts: Mutex<HashMap<String, Vec<keys::MountSpec>>>,
    running: Mutex<IndexMap<String, Running>>,
    pub receiver: control::Receiver,
    pids: Mutex<u32>,
}

impl EvolutionHub {
    pub fn new(options: SimOptions) -> EvolutionHub {
        EvolutionHub {
            options,
            databases: Mutex::new(HashMap::new()),
            key_stores: Mutex::new(HashMap::new()),
            seeded_keys: Mutex::new(HashMap::new()),
            mounts: Mutex::new(HashMap::new()),
            running: Mutex::new(IndexMap::new()),
            receiver: control::Receiver::default(),
            pids: Mutex::new(18),
        }
    }

    pub fn options(&self) -> &SimOptions {
        &self.options
    }

    /// The key store a task with these settings and mounts writes to: a shared one outside the
    /// task, or one of its own (holding the seeded keys of its database, the first time).
    pub fn key_store(
        &self,
        env: &IndexMap<String, String>,
        mounts: &[(String, Option<String>)],
        uri: &str,
    ) -> keys::KeyStore {
        match keys::place(env, mounts) {
            Ok(place) => self
                .key_stores
                .lock()
                .expect("lab lock")
                .entry(place.clone())
                .or_insert_with(|| keys::KeyStore { place, persistent: true, ids: Arc::default() })
                .clone(),
            Err(place) => {
                let store = keys::KeyStore::task(&place);
                for id in self.seeded_keys.lock().expect("lab lock").remove(uri).unwrap_or_default() {
                    store.put(&id);
                }
                store
            }
        }
    }

    fn database(&self, uri: &str) -> Arc<Mutex<Database>> {
        Arc::clone(self.databases.lock().expect("lab lock").entry(uri.to_owned()).or_default())
    }

    /// Put the scenario's already-linked instances into their databases.
    pub fn seed(&self, account: &Account, linked: &[crate::scenario::LinkedInstanceSpec]) -> Result<(), String> {
        for spec in linked {
            let definition = account
                .latest_task_definition(&spec.task_definition)
                .ok_or_else(|| format!("linked instance {}: no task definition {}", spec.name, spec.task_definition))?;
            let environment = account.container_environment(definition);
            let config = env::EvoConfig::from_env(&environment);
            let db = self.database(&config.database_uri);
            let id = format!("{:x}", <sha2::Sha256 as sha2::Digest>::digest(spec.name.as_bytes()));
            let id = format!("{}-{}-4{}-a{}-{}", &id[0..8], &id[8..12], &id[13..16], &id[17..20], &id[20..32]);
            match keys::place(&environment, &definition.mounts()) {
                Ok(_) => self.key_store(&environment, &definition.mounts(), &config.database_uri).put(&id),
                Err(_) => self
                    .seeded_keys
                    .lock()
                    .expect("lab lock")
                    .entry(config.database_uri.clone())
                    .or_default()
                    .push(id.clone()),
            }
            let mut row = db::Row::linked(id, &spec.name, &config.client_name, &spec.number, now_ms());
            let mut db = db.lock().expect("lab lock");
            let setting_id = db.cuid(row.created_ms);
            row.setting = Some(db::Setting {
                id: setting_id,
                values: json!({"rejectCall": false, "msgCall": "", "groupsIgnore": true, "alwaysOnline": false,
                               "readMessages": false, "readStatus": false, "syncFullHistory": false, "wavoipToken": ""}),
                created_ms: row.created_ms,
                updated_ms: row.created_ms,
            });
            db.rows.insert(spec.name.clone(), row);
        }
        Ok(())
    }

    /// The mount table a task's container sees (`/proc/mounts`): the root overlay, `/proc`, and
    /// each volume of its task definition (an EFS volume as the efs-utils TLS mount shows it,
    /// NFSv4 from `127.0.0.1:/`; a bind mount on the task's storage device).
    pub fn proc_mounts(&self, task_id: &str) -> String {
        let mut table = String::from(
            "overlay / overlay rw,relatime,lowerdir=/var/lib/containerd/snapshots/1/fs 0 0\n\
             proc /proc proc rw,nosuid,nodev,noexec,relatime 0 0\n",
        );
        for (path, efs) in self.mounts.lock().expect("lab lock").get(task_id).cloned().unwrap_or_default() {
            table.push_str(&match efs {
                Some(_) => format!("127.0.0.1:/ {path} nfs4 rw,relatime,vers=4.1,rsize=1048576,wsize=1048576,hard,proto=tcp,port=20049 0 0\n"),
                None => format!("/dev/nvme1n1 {path} ext4 rw,relatime 0 0\n"),
            });
        }
        table
    }

    /// The loopback port of a task's Evolution (its process, or the forward to an external one).
    pub fn port_of(&self, task_id: &str) -> Option<u16> {
        self.running.lock().expect("lab lock").get(task_id).map(Running::port)
    }

    /// The process of a task (for control switches).
    pub fn process_of(&self, task_id: &str) -> Option<Arc<Process>> {
        match self.running.lock().expect("lab lock").get(task_id) {
            Some(Running::Stand { process, .. }) => Some(Arc::clone(process)),
            _ => None,
        }
    }

    fn processes(&self) -> Vec<Arc<Process>> {
        self.running
            .lock()
            .expect("lab lock")
            .values()
            .filter_map(|r| match r {
                Running::Stand { process, .. } => Some(Arc::clone(process)),
                Running::Forward { .. } => None,
            })
            .collect()
    }

    fn next_pid(&self) -> u32 {
        let mut pids = self.pids.lock().expect("lab lock");
        *pids += 1;
        *pids
    }

    /// Start a process on `127.0.0.1:port` (0: any) with `config`, booted and ticking.
    pub fn start_process(
        &self,
        label: &str,
        config: env::EvoConfig,
        port: u16,
        pid: Option<u32>,
        keys: keys::KeyStore,
    ) -> std::io::Result<(u16, Arc<Process>, tokio::task::JoinHandle<()>)> {
        let db = self.database(&config.database_uri);
        let options = ProcessOptions {
            label: label.to_owned(),
            pid: pid.unwrap_or_else(|| self.next_pid()),
            time_scale: self.options.time_scale,
            whatsapp: self.options.whatsapp,
            version: self.options.version,
            activated: self.options.activated,
            qr_rotate: self.options.qr_rotate,
            auto_scan_after: self.options.auto_scan_after,
            pairing_refresh: self.options.pairing_refresh,
            baileys_patched: self.options.baileys_patched,
            tick: self.options.tick,
            keys,
        };
        let process = Process::new(config, options, db);
        let (port, server) = serve(Arc::clone(&process), port)?;
        process.boot();
        process.start_ticker();
        Ok((port, process, server))
    }

    /// Register a process that runs outside any task (the standalone stand-in).
    pub fn adopt(&self, label: &str, port: u16, process: Arc<Process>, server: tokio::task::JoinHandle<()>) {
        self.running.lock().expect("lab lock").insert(
            label.to_owned(),
            Running::Stand { port, process, server, log_group: None, stream: label.to_owned() },
        );
    }

    /// Start processes (or forwards) for RUNNING tasks, stop those whose task is gone, run the
    /// conflict loop, and move log lines into the tasks' log groups. Called on the lab's tick.
    pub fn tick(&self, accounts: &mut Accounts) {
        let live: Vec<(String, String, String)> = accounts
            .list
            .iter()
            .flat_map(|account| account.tasks.iter())
            .filter(|t| t.last_status == "RUNNING")
            .map(|t| {
                (
                    t.id.clone(),
                    t.task_definition.clone(),
                    format!("{}/{}", t.cluster, t.service.as_deref().unwrap_or("")),
                )
            })
            .collect();
        let mut starting = Vec::new();
        {
            let mut running = self.running.lock().expect("lab lock");
            running.retain(|task_id, entry| {
                let keep = task_id == "standalone" || live.iter().any(|(id, _, _)| id == task_id);
                if !keep {
                    entry.stop();
                }
                keep
            });
            for (task_id, definition, service) in live {
                if !running.contains_key(&task_id) {
                    starting.push((task_id, definition, service));
                }
            }
        }
        for (task_id, definition, service) in starting {
            if let Some(address) = self.options.externals.get(&service) {
                match forward::start(address.clone()) {
                    Ok((port, task)) => {
                        self.running.lock().expect("lab lock").insert(task_id, Running::Forward { port, task });
                    }
                    Err(err) => tracing::warn!(%err, "could not forward to the external Evolution"),
                }
                continue;
            }
            let Some(account) = accounts.of_task(&task_id) else { continue };
            let Some(definition) = account.task_definitions.get(&definition) else { continue };
            let environment = account.container_environment(definition);
            let config = env::EvoConfig::from_env(&environment);
            let keys = self.key_store(&environment, &definition.mounts(), &config.database_uri);
            self.mounts.lock().expect("lab lock").insert(task_id.clone(), definition.mounts());
            let runtime_id = account
                .tasks
                .iter()
                .find(|t| t.id == task_id)
                .and_then(|t| t.containers.iter().find(|c| c.name == definition.container))
                .map(|c| c.runtime_id.clone())
                .unwrap_or_default();
            let stream = definition.log_stream(&task_id, &runtime_id);
            // Only the awslogs driver puts the container's lines in CloudWatch Logs.
            let log_group = definition.log_group.clone().filter(|_| definition.log_driver == "awslogs");
            match self.start_process(&task_id, config, 0, None, keys) {
                Ok((port, process, server)) => {
                    self.running
                        .lock()
                        .expect("lab lock")
                        .insert(task_id, Running::Stand { port, process, server, log_group, stream });
                }
                Err(err) => tracing::warn!(%err, "could not start the Evolution stand-in"),
            }
        }
        self.conflicts(now_ms());
        let running = self.running.lock().expect("lab lock");
        for (task_id, entry) in running.iter() {
            if let Running::Stand { process, log_group: Some(group), stream, .. } = entry {
                let lines = process.logger.drain();
                let Some(account) = accounts.of_task_mut(task_id) else { continue };
                if lines.is_empty() {
                    continue;
                }
                let events = account.log_groups.entry(group.clone()).or_default();
                events.extend(lines.into_iter().map(|l| LogEvent {
                    stream: stream.clone(),
                    timestamp_ms: l.ms,
                    message: l.message,
                }));
            }
        }
    }

    /// Take every process's pending log lines (the standalone prints them).
    pub fn drain_logs(&self) -> Vec<log::LogLine> {
        self.processes().iter().flat_map(|p| p.logger.drain()).collect()
    }

    /// Two processes on one database with one client name both hold a paired session: WhatsApp
    /// replaces one socket with the other (440) about every second, the replaced one reconnects
    /// at once, and Baileys' `stream errored out` conflict line lands in the replaced process's
    /// log, in the shape Baileys 7.0.0-rc.9 (2.3.7's pin) logs it: `reasonNode` and
    /// `fullErrorNode` (`src/Socket/socket.ts:955`), no `code` attribute (`conflict` maps to 440). With two tasks each is replaced, and logs the line, about every 2 s.
    fn conflicts(&self, now: u64) {
        let processes = self.processes();
        let mut groups: Vec<Vec<Arc<Process>>> = Vec::new();
        for process in &processes {
            match groups
                .iter_mut()
                .find(|g| Arc::ptr_eq(&g[0].db, &process.db) && g[0].config.client_name == process.config.client_name)
            {
                Some(group) => group.push(Arc::clone(process)),
                None => groups.push(vec![Arc::clone(process)]),
            }
        }
        for group in groups {
            let names: Vec<String> = {
                let db = group[0].db.lock().expect("lab lock");
                db.rows.values().filter(|r| r.session_me.is_some()).map(|r| r.name.clone()).collect()
            };
            for name in names {
                let holders: Vec<&Arc<Process>> = group.iter().filter(|p| p.holds_session(&name)).collect();
                if holders.len() < 2 {
                    for holder in holders {
                        holder.set_replaced(&name, false);
                    }
                    continue;
                }
                let turn = {
                    let mut db = group[0].db.lock().expect("lab lock");
                    let Some(row) = db.rows.get_mut(&name) else { continue };
                    if now < row.last_conflict_ms + 1000 {
                        continue;
                    }
                    row.last_conflict_ms = now;
                    row.conflict_count += 1;
                    (row.conflict_count - 1) as usize % holders.len()
                };
                for (index, holder) in holders.iter().enumerate() {
                    holder.set_replaced(&name, index == turn);
                }
                let line = format!(
                    "{{\"level\":50,\"time\":{now},\"pid\":{},\"hostname\":\"ip-10-0-1-23\",\"reasonNode\":{{\"tag\":\"conflict\",\"attrs\":{{\"type\":\"replaced\"}}}},\"fullErrorNode\":{{\"tag\":\"stream:error\",\"attrs\":{{}},\"content\":[{{\"tag\":\"conflict\",\"attrs\":{{\"type\":\"replaced\"}}}}]}},\"msg\":\"stream errored out\"}}",
                    holders[turn].options.pid
                );
                holders[turn].logger.raw(&line);
            }
        }
    }

    /// The simulated phone scans `code` (a QR or a pairing code): the instance showing it links.
    pub fn scan(&self, code: &str, number: &str) -> Option<process::ScanOutcome> {
        self.processes().iter().find_map(|p| p.scan(code, number))
    }

    /// A WhatsApp message arrives for an open instance (`messages.upsert`).
    pub fn message(&self, name: &str, text: &str, from: &str) -> bool {
        self.processes().iter().any(|p| p.message(name, text, from))
    }

    /// The network under a paired instance's socket drops in every process that holds it open.
    pub fn drop_socket(&self, name: &str) -> Vec<String> {
        self.processes().iter().filter(|p| p.drop_socket(name)).map(|p| p.options.label.clone()).collect()
    }

    /// The phone removes the linked device (401 `device_removed`), in every process holding it.
    pub fn remove_device(&self, name: &str) -> Vec<String> {
        self.processes().iter().filter(|p| p.remove_device(name)).map(|p| p.options.label.clone()).collect()
    }

    /// The socket closes and its reconnect fails (memory `close`, the row still `open`).
    pub fn kill_socket(&self, name: &str) -> Vec<String> {
        self.processes().iter().filter(|p| p.kill_socket(name)).map(|p| p.options.label.clone()).collect()
    }

    /// The network is back for that instance: its sockets are `open` again.
    pub fn reconnect_socket(&self, name: &str) -> Vec<String> {
        self.processes().iter().filter(|p| p.reconnect_socket(name)).map(|p| p.options.label.clone()).collect()
    }

    /// Each webhook row's `jwt_key`, named by its instance (what the standalone receiver checks
    /// JWTs against).
    pub fn jwt_keys(&self) -> Vec<(String, String)> {
        let databases: Vec<Arc<Mutex<Database>>> = self.databases.lock().expect("lab lock").values().cloned().collect();
        let mut keys = Vec::new();
        for db in databases {
            let db = db.lock().expect("lab lock");
            for row in db.rows.values() {
                if let Some(key) = row.webhook.as_ref().and_then(|w| w.headers.get("jwt_key")).and_then(Value::as_str) {
                    keys.push((row.name.clone(), key.to_owned()));
                }
            }
        }
        keys
    }

    /// Every database's rows, each with the live view of the processes that hold it.
    pub fn snapshot(&self) -> Value {
        let processes = self.processes();
        let databases: Vec<(String, Arc<Mutex<Database>>)> =
            self.databases.lock().expect("lab lock").iter().map(|(u, d)| (u.clone(), Arc::clone(d))).collect();
        let mut out = serde_json::Map::new();
        for (uri, db) in databases {
            let rows: Vec<RowParts> = {
                let db = db.lock().expect("lab lock");
                db.rows
                    .values()
                    .map(|r| {
                        let webhook = r.webhook.as_ref().map(|w| w.row_json(&r.id)).unwrap_or(Value::Null);
                        let mut row = r.row_json();
                        // Lab only: the `Session` row's creds (`me`), kept apart from the keys.
                        row["creds"] = json!(r.session_me);
                        (r.name.clone(), row, webhook, r.issued_codes.clone(), r.scanned_code.clone())
                    })
                    .collect()
            };
            let mut list = Vec::new();
            for (name, mut row, webhook, issued, scanned) in rows {
                let views: Vec<Value> =
                    processes.iter().filter(|p| Arc::ptr_eq(&p.db, &db)).filter_map(|p| p.view(&name)).collect();
                let main = views.iter().find(|v| v["socket"] == "pairing").or_else(|| views.first()).cloned();
                let first = views.first().cloned().unwrap_or(Value::Null);
                row["state"] = first["state"].clone();
                row["qr"] = main.as_ref().map(|v| v["qr"].clone()).unwrap_or(Value::Null);
                row["socket"] = first["socket"].clone();
                row["state_ends_in_ms"] = first["state_ends_in_ms"].clone();
                row["held_by"] = json!(views.iter().map(|v| v["process"].clone()).collect::<Vec<_>>());
                row["processes"] = Value::Array(views);
                row["webhook"] = webhook;
                row["issued_codes"] = json!(issued);
                row["scanned_code"] = json!(scanned);
                list.push(row);
            }
            out.insert(uri, Value::Array(list));
        }
        Value::Object(out)
    }

    /// Every process: its task, port and the settings it read.
    pub fn processes_snapshot(&self) -> Value {
        let running = self.running.lock().expect("lab lock");
        Value::Array(
            running
                .iter()
                .map(|(label, entry)| match entry {
                    Running::Stand { port, process, .. } => json!({
                        "task": label,
                        "port": port,
                        "external": false,
                        "whatsapp": process.options.whatsapp,
                        "time_scale": process.options.time_scale,
                        "config": process.config,
                        "held": process.held_names(),
                    }),
                    Running::Forward { port, .. } => json!({"task": label, "port": port, "external": true}),
                })
                .collect(),
        )
    }
}

/// A row's name, its JSON, its webhook's JSON, the codes shown and the code scanned.
type RowParts = (String, Value, Value, Vec<String>, Option<String>);

/// Bind `127.0.0.1:port` and serve the process on it.
fn serve(process: Arc<Process>, port: u16) -> std::io::Result<(u16, tokio::task::JoinHandle<()>)> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", port))?;
    listener.set_nonblocking(true)?;
    let port = listener.local_addr()?.port();
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let app = axum::Router::new().fallback(move |method, uri, headers, body| {
        let process = Arc::clone(&process);
        async move { api::handle(process, method, uri, headers, body).await }
    });
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    Ok((port, server))
}
