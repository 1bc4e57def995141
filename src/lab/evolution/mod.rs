//! The Evolution API side of the lab: one 2.3.7 stand-in process per RUNNING task, on a
//! loopback port that the task's exec sessions see as `SERVER_PORT`, with the task definition's
//! environment (image defaults where unset, including the public API key). Instances live in a
//! database per `DATABASE_CONNECTION_URI`. The WhatsApp side: QRs rotate, the QR limit refuses,
//! and a simulated phone scans (`POST /_lab/phone/scan`, or `--auto-scan-after-ms`).

pub mod api;
pub mod db;
pub mod webhooks;

use super::state::{Account, LogEvent, now_ms};
use api::{Process, ProcessEnv};
use db::Database;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The image's baked `.env` values that matter when the task does not set them.
pub const IMAGE_DEFAULT_API_KEY: &str = "429683C4C977415CAAFCCE10F7D57E11";
const IMAGE_DEFAULT_CLIENT_NAME: &str = "evolution_exchange";

/// Simulator settings.
#[derive(Debug, Clone)]
pub struct SimOptions {
    /// How long one QR lives (Evolution 2.3.7: 45 s).
    pub qr_rotate: Duration,
    /// A simulated phone scans any QR shown this long (demo).
    pub auto_scan_after: Option<Duration>,
}

struct Running {
    port: u16,
    process: Arc<Process>,
    server: tokio::task::JoinHandle<()>,
}

/// Every Evolution process and database of the lab.
pub struct EvolutionHub {
    options: SimOptions,
    databases: Mutex<HashMap<String, Arc<Mutex<Database>>>>,
    running: Mutex<HashMap<String, Running>>,
}

impl EvolutionHub {
    pub fn new(options: SimOptions) -> EvolutionHub {
        EvolutionHub { options, databases: Mutex::new(HashMap::new()), running: Mutex::new(HashMap::new()) }
    }

    /// Put the scenario's already-linked instances into their databases.
    pub fn seed(&self, account: &Account, linked: &[crate::lab::scenario::LinkedInstanceSpec]) -> Result<(), String> {
        for spec in linked {
            let definition = account
                .latest_task_definition(&spec.task_definition)
                .ok_or_else(|| format!("linked instance {}: no task definition {}", spec.name, spec.task_definition))?;
            let env = |key: &str| definition.environment.get(key).cloned();
            let db_uri = env("DATABASE_CONNECTION_URI").unwrap_or_default();
            let client_name =
                env("DATABASE_CONNECTION_CLIENT_NAME").unwrap_or_else(|| IMAGE_DEFAULT_CLIENT_NAME.into());
            let db = Arc::clone(self.databases.lock().expect("lab lock").entry(db_uri).or_default());
            let id = format!("{:x}", <sha2::Sha256 as sha2::Digest>::digest(spec.name.as_bytes()));
            let id = format!("{}-{}-{}-{}-{}", &id[0..8], &id[8..12], &id[12..16], &id[16..20], &id[20..32]);
            let instance = db::Instance::linked(id, &spec.name, &client_name, &spec.number, now_ms());
            db.lock().expect("lab lock").instances.insert(spec.name.clone(), instance);
        }
        Ok(())
    }

    /// The port of a task's Evolution process, if it runs.
    pub fn port_of(&self, task_id: &str) -> Option<u16> {
        self.running.lock().expect("lab lock").get(task_id).map(|r| r.port)
    }

    /// The process of a task (for control switches).
    pub fn process_of(&self, task_id: &str) -> Option<Arc<Process>> {
        self.running.lock().expect("lab lock").get(task_id).map(|r| Arc::clone(&r.process))
    }

    /// Start processes for RUNNING tasks, stop those whose task is gone; then advance the
    /// WhatsApp side (QR rotation and limit, auto-scan). Called on the scheduler tick.
    pub fn tick(&self, account: &mut Account) {
        let now = now_ms();
        let mut running = self.running.lock().expect("lab lock");
        let live: Vec<(String, String)> = account
            .tasks
            .iter()
            .filter(|t| t.last_status == "RUNNING")
            .map(|t| (t.id.clone(), t.task_definition.clone()))
            .collect();
        running.retain(|task_id, process| {
            let keep = live.iter().any(|(id, _)| id == task_id);
            if !keep {
                process.server.abort();
            }
            keep
        });
        for (task_id, definition) in live {
            if running.contains_key(&task_id) {
                continue;
            }
            let Some(definition) = account.task_definitions.get(&definition) else { continue };
            let env = |key: &str| definition.environment.get(key).cloned();
            let db_uri = env("DATABASE_CONNECTION_URI").unwrap_or_default();
            let db = Arc::clone(self.databases.lock().expect("lab lock").entry(db_uri).or_default());
            let process = Arc::new(Process {
                env: ProcessEnv {
                    task_id: task_id.clone(),
                    api_key: env("AUTHENTICATION_API_KEY").unwrap_or_else(|| IMAGE_DEFAULT_API_KEY.into()),
                    client_name: env("DATABASE_CONNECTION_CLIENT_NAME")
                        .unwrap_or_else(|| IMAGE_DEFAULT_CLIENT_NAME.into()),
                    qr_limit: env("QRCODE_LIMIT").and_then(|v| v.parse().ok()).unwrap_or(30),
                    server_url: env("SERVER_URL").unwrap_or_else(|| "http://localhost:8080".into()),
                    phone_client: env("CONFIG_SESSION_PHONE_CLIENT").unwrap_or_else(|| "Evolution API".into()),
                    log_group: definition.log_group.clone(),
                },
                db,
                ids: Mutex::new(0),
                reject_key: Mutex::new(false),
                fail_next: Mutex::new(None),
                respond_next: Mutex::new(None),
                outbox: Arc::new(Mutex::new(Vec::new())),
            });
            match serve(Arc::clone(&process)) {
                Ok((port, server)) => {
                    log(account, &process.env, &format!("[Evolution API] v2.3.7 - INFO [ServerUP] HTTP - ON: {port}"));
                    running.insert(task_id, Running { port, process, server });
                }
                Err(err) => tracing::warn!(%err, "could not start the Evolution stand-in"),
            }
        }
        let processes: Vec<Arc<Process>> = running.values().map(|r| Arc::clone(&r.process)).collect();
        drop(running);
        self.conflicts(account, &processes, now);
        for process in processes {
            let lines: Vec<String> = std::mem::take(&mut *process.outbox.lock().expect("lab lock"));
            for line in lines {
                log(account, &process.env, &line);
            }
            let mut db = process.db.lock().expect("lab lock");
            for instance in db.instances.values_mut().filter(|i| i.state == "connecting") {
                let Some(qr) = instance.qr.clone() else { continue };
                // The phone scans whatever QR is on screen `after` the flow began (possibly a rotated one).
                let scan_due = self
                    .options
                    .auto_scan_after
                    .is_some_and(|after| now >= instance.qr_flow_started_ms + after.as_millis() as u64);
                if scan_due {
                    open_instance(&process, instance, "5511987654321");
                    let line = format!(
                        "[Evolution API] v2.3.7 - INFO [ChannelStartupService] CONNECTED TO WHATSAPP: {}",
                        instance.name
                    );
                    log(account, &process.env, &line);
                    continue;
                }
                if now >= qr.generated_ms + self.options.qr_rotate.as_millis() as u64 {
                    if instance.qr_count >= process.env.qr_limit {
                        let limit = serde_json::json!({"message": "QR code limit reached, please login again", "statusCode": 500});
                        process.emit(instance, "qrcode.updated", limit);
                        let refused =
                            serde_json::json!({"instance": instance.name, "state": "refused", "statusReason": 428});
                        process.emit(instance, "connection.update", refused);
                        instance.state = "close".into();
                        instance.qr = None;
                        instance.qr_count = 0;
                        log(
                            account,
                            &process.env,
                            &format!(
                                "[Evolution API] v2.3.7 - WARN [WAMonitoringService] Instance \"{}\" - NOT CONNECTION",
                                instance.name
                            ),
                        );
                    } else {
                        api::rotate_qr(&process, instance, now);
                    }
                }
            }
        }
    }

    /// Two processes on one database both hold the linked session: WhatsApp replaces one
    /// socket with the other (440), the kicked one reconnects at once, and the state flaps about
    /// every second; the kicked task logs Baileys' `stream errored out` conflict line, so with
    /// two tasks each logs one about every 2 s.
    fn conflicts(&self, account: &mut Account, processes: &[Arc<Process>], now: u64) {
        for (index, process) in processes.iter().enumerate() {
            // Boot loading is per client name: only processes with the same database *and*
            // client name both auto-connect the linked session.
            let sharing: Vec<&Arc<Process>> = processes
                .iter()
                .filter(|other| Arc::ptr_eq(&other.db, &process.db) && other.env.client_name == process.env.client_name)
                .collect();
            // Handle each database once, from its first process, and only when shared.
            if sharing.len() < 2 || !Arc::ptr_eq(sharing[0], &processes[index]) {
                continue;
            }
            let mut db = process.db.lock().expect("lab lock");
            for instance in db.instances.values_mut().filter(|i| i.owner_jid.is_some() && i.state != "close") {
                if now < instance.last_conflict_ms + 1000 {
                    continue;
                }
                instance.last_conflict_ms = now;
                let next = if instance.state == "open" { "connecting" } else { "open" };
                instance.state = next.into();
                let line = format!(
                    "{{\"level\":50,\"time\":{now},\"pid\":1,\"hostname\":\"ip-10-0-1-23\",\"node\":{{\"tag\":\"stream:error\",\"attrs\":{{\"code\":\"440\"}},\"content\":[{{\"tag\":\"conflict\",\"attrs\":{{\"type\":\"replaced\"}}}}]}},\"msg\":\"stream errored out\"}}"
                );
                // Each replacement kicks one process, in turn: with two tasks each logs every ~2 s.
                let kicked = sharing[(instance.conflict_count % sharing.len() as u64) as usize];
                instance.conflict_count += 1;
                log(account, &kicked.env, &line);
                process.emit(
                    instance,
                    "connection.update",
                    serde_json::json!({"instance": instance.name, "state": next, "statusReason": 200}),
                );
            }
        }
    }

    /// The simulated phone scans `code`: the instance showing it becomes `open`.
    pub fn scan(&self, code: &str, number: &str) -> Option<String> {
        let processes: Vec<Arc<Process>> =
            self.running.lock().expect("lab lock").values().map(|r| Arc::clone(&r.process)).collect();
        for process in processes {
            let mut db = process.db.lock().expect("lab lock");
            if let Some(instance) = db
                .instances
                .values_mut()
                .find(|i| i.state == "connecting" && i.qr.as_ref().is_some_and(|q| q.code == code))
            {
                open_instance(&process, instance, number);
                return Some(instance.name.clone());
            }
        }
        None
    }

    /// A WhatsApp message arrives for an open instance (`messages.upsert`).
    pub fn message(&self, name: &str, text: &str, from: &str) -> bool {
        let processes: Vec<Arc<Process>> =
            self.running.lock().expect("lab lock").values().map(|r| Arc::clone(&r.process)).collect();
        for process in processes {
            let db = process.db.lock().expect("lab lock");
            if let Some(instance) = db.instances.get(name).filter(|i| i.state == "open") {
                let data = serde_json::json!({
                    "key": {"remoteJid": format!("{from}@s.whatsapp.net"), "fromMe": false, "id": format!("3EB0{}", now_ms())},
                    "pushName": "Lab Contact",
                    "message": {"conversation": text},
                    "messageType": "conversation",
                    "messageTimestamp": now_ms() / 1000,
                    "instanceId": instance.id,
                    "source": "ios",
                });
                process.emit(instance, "messages.upsert", data);
                return true;
            }
        }
        false
    }

    /// Every database's instances, for `/_lab/state`-style inspection.
    pub fn snapshot(&self) -> serde_json::Value {
        let databases = self.databases.lock().expect("lab lock");
        let mut out = serde_json::Map::new();
        for (uri, db) in databases.iter() {
            let db = db.lock().expect("lab lock");
            let rows: Vec<serde_json::Value> = db
                .instances
                .values()
                .map(|i| {
                    let mut row = i.row_json();
                    row["state"] = serde_json::json!(i.state);
                    row["webhook"] = i.webhook.as_ref().map(|w| w.row_json(&i.id)).unwrap_or_default();
                    row["qr"] = i.qr_json();
                    row["issued_codes"] = serde_json::json!(i.issued_codes);
                    row["scanned_code"] = serde_json::json!(i.scanned_code);
                    row
                })
                .collect();
            out.insert(uri.clone(), serde_json::Value::Array(rows));
        }
        serde_json::Value::Object(out)
    }
}

fn open_instance(process: &Process, instance: &mut db::Instance, number: &str) {
    instance.scanned_code = instance.qr.as_ref().map(|qr| qr.code.clone());
    instance.state = "open".into();
    instance.connection_status = "open".into();
    instance.owner_jid = Some(format!("{number}@s.whatsapp.net"));
    instance.profile_name = Some("Lab Phone".into());
    instance.qr = None;
    process.log(format!(
        "[Evolution API] v2.3.7 - INFO [ChannelStartupService] CONNECTED TO WHATSAPP: {} wuid: {number}",
        instance.name
    ));
    let data = serde_json::json!({"instance": instance.name, "wuid": instance.owner_jid, "profileName": instance.profile_name,
                                  "profilePictureUrl": null, "state": "open", "statusReason": 200});
    process.emit(instance, "connection.update", data);
}

fn log(account: &mut Account, env: &ProcessEnv, message: &str) {
    if let Some(group) = &env.log_group {
        account.log_groups.entry(group.clone()).or_default().push(LogEvent {
            stream: format!("EvolutionService/EvolutionService/{}", env.task_id),
            timestamp_ms: now_ms(),
            message: message.to_owned(),
        });
    }
}

/// Bind a loopback port and serve the process on it.
fn serve(process: Arc<Process>) -> std::io::Result<(u16, tokio::task::JoinHandle<()>)> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
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
