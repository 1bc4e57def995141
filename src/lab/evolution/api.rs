//! The Evolution API 2.3.7 stand-in that each running task serves: routes, the guard order
//! (instance exists, then API key), status codes and the exact error body shapes.

use super::db::{Database, Instance, Qr, Webhook};
use crate::config::WEBHOOK_EVENTS;
use crate::lab::state::now_ms;
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};

/// What one task's Evolution process was started with.
#[derive(Debug, Clone)]
pub struct ProcessEnv {
    pub task_id: String,
    pub api_key: String,
    pub client_name: String,
    pub qr_limit: u32,
    pub server_url: String,
    pub phone_client: String,
    pub log_group: Option<String>,
}

/// One running Evolution process.
pub struct Process {
    pub env: ProcessEnv,
    pub db: Arc<Mutex<Database>>,
    pub ids: Mutex<u64>,
    /// Test switch: the process expects another key (every authenticated call gets 401).
    pub reject_key: Mutex<bool>,
    /// Test switch: the next call answers 500 with this message.
    pub fail_next: Mutex<Option<String>>,
    /// Test switch: the next call answers with exactly this status and body.
    pub respond_next: Mutex<Option<(u16, Value)>>,
    /// Log lines waiting to be written to the task's log group (on the next lab tick).
    pub outbox: Arc<Mutex<Vec<String>>>,
}

impl Process {
    /// Queue a log line for the task's log group.
    pub fn log(&self, line: String) {
        self.outbox.lock().expect("lab lock").push(line);
    }

    /// Deliver `event` to the instance's webhook, as 2.3.7 would (in the background).
    pub fn emit(&self, instance: &Instance, event: &str, data: Value) {
        let now_secs = now_ms() / 1000;
        match super::webhooks::prepare(instance, event, data, &self.env.server_url, now_secs) {
            Ok(Some(delivery)) => {
                let outbox = Arc::clone(&self.outbox);
                tokio::spawn(async move {
                    let url = delivery.url.clone();
                    let line = match super::webhooks::send(delivery).await {
                        Ok(status) if status < 400 => return,
                        Ok(status) => format!("[Evolution API] v2.3.7 - ERROR [WebhookController] Erro não recuperável ({status}): {url}"),
                        Err(err) => format!("[Evolution API] v2.3.7 - ERROR [WebhookController] Tentativa 1/10 falhou: {err}"),
                    };
                    outbox.lock().expect("lab lock").push(line);
                });
            }
            Ok(None) => {}
            Err(super::webhooks::Skipped::EmptyJwtKey) => self.log(
                "[Evolution API] v2.3.7 - ERROR [WebhookController] JWT generation failed: secretOrPrivateKey must have a value".into(),
            ),
        }
    }

    fn next_id(&self) -> String {
        let mut ids = self.ids.lock().expect("lab lock");
        *ids += 1;
        let digest = <sha2::Sha256 as sha2::Digest>::digest(format!("{}#{}", self.env.task_id, *ids).as_bytes());
        let hex = hex::encode(&digest[..16]);
        format!("{}-{}-4{}-a{}-{}", &hex[..8], &hex[8..12], &hex[13..16], &hex[17..20], &hex[20..32])
    }
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

fn error(status: u16, message: Value) -> Response {
    let reason = StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason()).unwrap_or("Error");
    let body = json!({"status": status, "error": reason, "response": {"message": message}});
    (StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST), axum::Json(body)).into_response()
}

fn ok(status: u16, body: Value) -> Response {
    (StatusCode::from_u16(status).unwrap_or(StatusCode::OK), axum::Json(body)).into_response()
}

/// Route one request the way the Express app would.
pub async fn handle(process: Arc<Process>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    if let Some(message) = process.fail_next.lock().expect("lab lock").take() {
        return error(500, json!(message));
    }
    if let Some((status, body)) = process.respond_next.lock().expect("lab lock").take() {
        return ok(status, body);
    }
    let path = uri.path().to_owned();
    let query: Vec<(String, String)> = uri
        .query()
        .unwrap_or("")
        .split('&')
        .filter_map(|p| p.split_once('='))
        .map(|(k, v)| (k.to_owned(), crate::lab::sigv4::percent_decode(v)))
        .collect();
    let key = headers.get("apikey").and_then(|v| v.to_str().ok()).map(str::to_owned);
    // The `reject_key` switch makes this process refuse every key, global and per instance.
    let rejecting = *process.reject_key.lock().expect("lab lock");
    let global = !rejecting && key.as_deref() == Some(process.env.api_key.as_str());
    let segments: Vec<String> =
        path.trim_start_matches('/').split('/').map(crate::lab::sigv4::percent_decode).collect();
    let segments: Vec<&str> = segments.iter().map(String::as_str).collect();
    let body_json = || -> Result<Value, Box<Response>> {
        if body.is_empty() {
            return Ok(json!({}));
        }
        serde_json::from_slice(&body).map_err(|e| {
            let body =
                json!({"status": 400, "response": {"message": [e.to_string()]}, "error": "Internal Server Error"});
            Box::new((StatusCode::BAD_REQUEST, axum::Json(body)).into_response())
        })
    };
    match (method.as_str(), segments.as_slice()) {
        ("GET", [""]) => ok(
            200,
            json!({
                "status": 200,
                "message": "Welcome to the Evolution API, it is working!",
                "version": "2.3.7",
                "clientName": process.env.client_name,
                "manager": format!("{}/manager", process.env.server_url),
                "documentation": "https://doc.evolution-api.com",
                "whatsappWebVersion": "2.3000.1027934701",
            }),
        ),
        ("POST", ["verify-creds"]) => {
            if global {
                ok(200, json!({"status": 200, "message": "Credentials are valid"}))
            } else {
                error(401, json!("Unauthorized"))
            }
        }
        ("POST", ["instance", "create"]) => match body_json() {
            Ok(body) => create(&process, body, global),
            Err(response) => *response,
        },
        ("GET", ["instance", "fetchInstances"]) => fetch_instances(&process, &query, key.as_deref(), global),
        (_, ["instance", action, name]) | (_, ["webhook", action, name]) => {
            let expected = match *action {
                "connect" | "connectionState" | "find" => "GET",
                "logout" | "delete" => "DELETE",
                "restart" | "set" => "POST",
                _ => "",
            };
            if expected != method.as_str() {
                return error(404, json!([format!("Cannot {} {path}", method.as_str())]));
            }
            let mut db = process.db.lock().expect("lab lock");
            // Guard order: the instance must exist (404, whatever the key), then the key.
            let Some(instance) = db.instances.get(*name).filter(|i| !i.stuck_delete || *action != "delete") else {
                return error(404, json!([format!("The \"{name}\" instance does not exist")]));
            };
            if rejecting || !(global || key.as_deref() == Some(instance.token.as_str())) {
                return error(401, json!("Unauthorized"));
            }
            let name = name.to_string();
            let is_webhook = path.starts_with("/webhook/");
            match (is_webhook, *action) {
                (false, "connect") => connect(&process, &mut db, &name, query_value(&query, "number")),
                (false, "connectionState") => {
                    ok(200, json!({"instance": {"instanceName": name, "state": db.instances[&name].state}}))
                }
                (false, "logout") => logout(&process, &mut db, &name),
                (false, "delete") => delete(&process, &mut db, &name),
                (false, "restart") => {
                    let instance = &db.instances[&name];
                    match instance.state.as_str() {
                        "open" => ok(200, json!({"instance": {"instanceName": name, "state": "open"}})),
                        "connecting" => ok(200, instance.qr_json()),
                        _ => ok(200, json!({"error": true, "message": "[object Object]"})),
                    }
                }
                (true, "set") => match body_json() {
                    Ok(body) => set_webhook(&process, &mut db, &name, body),
                    Err(response) => *response,
                },
                (true, "find") => {
                    let instance = &db.instances[&name];
                    ok(200, instance.webhook.as_ref().map(|w| w.row_json(&instance.id)).unwrap_or(Value::Null))
                }
                _ => error(404, json!([format!("Cannot {} {path}", method.as_str())])),
            }
        }
        _ => error(404, json!([format!("Cannot {} {path}", method.as_str())])),
    }
}

fn query_value(query: &[(String, String)], key: &str) -> Option<String> {
    query.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
}

fn create(process: &Process, body: Value, global: bool) -> Response {
    let name = body.get("instanceName").and_then(Value::as_str).unwrap_or("").to_owned();
    let mut db = process.db.lock().expect("lab lock");
    if db.instances.contains_key(&name) {
        return error(403, json!([format!("This name \"{name}\" is already in use.")]));
    }
    if !global {
        return error(401, json!("Unauthorized"));
    }
    if body.get("instanceName").is_some() && name.is_empty() {
        return error(400, json!([["instance.instanceName must not be empty"]]));
    }
    match body.get("integration").and_then(Value::as_str) {
        Some("WHATSAPP-BAILEYS" | "WHATSAPP-BUSINESS" | "EVOLUTION") => {}
        _ => return error(400, json!(["Invalid integration"])),
    }
    if body.get("webhook").is_some_and(|w| w.get("events").is_none()) {
        return error(400, json!(["Cannot read properties of undefined (reading 'length')"]));
    }
    let now = now_ms();
    let id = process.next_id();
    let token = body
        .get("token")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| process.next_id().to_uppercase());
    let settings = json!({
        "rejectCall": body.get("rejectCall").cloned().unwrap_or(json!(false)),
        "msgCall": body.get("msgCall").cloned().unwrap_or(json!("")),
        "groupsIgnore": body.get("groupsIgnore").cloned().unwrap_or(json!(false)),
        "alwaysOnline": body.get("alwaysOnline").cloned().unwrap_or(json!(false)),
        "readMessages": body.get("readMessages").cloned().unwrap_or(json!(false)),
        "readStatus": body.get("readStatus").cloned().unwrap_or(json!(false)),
        "syncFullHistory": body.get("syncFullHistory").cloned().unwrap_or(json!(false)),
        "wavoipToken": "",
    });
    let webhook = body.get("webhook").map(|w| Webhook {
        id: process.next_id(),
        url: w.get("url").and_then(Value::as_str).unwrap_or("").to_owned(),
        enabled: true,
        events: strings(w.get("events")),
        by_events: w.get("byEvents").and_then(Value::as_bool).unwrap_or(false),
        base64: w.get("base64").and_then(Value::as_bool).unwrap_or(false),
        headers: w.get("headers").cloned().unwrap_or(json!({})),
        created_ms: now,
        updated_ms: now,
    });
    let mut instance = Instance::new(id.clone(), &name, token.clone(), &process.env.client_name, now);
    instance.number = body.get("number").and_then(Value::as_str).map(str::to_owned);
    instance.settings = settings.clone();
    instance.webhook = webhook.clone();
    process.emit(&instance, "instance.create", json!({"instanceName": name, "instanceId": id}));
    let wants_qr = body.get("qrcode").and_then(Value::as_bool).unwrap_or(false);
    if wants_qr {
        start_qr(process, &mut instance, now);
    }
    let mut response = json!({
        "instance": {"instanceName": name, "instanceId": id, "integration": "WHATSAPP-BAILEYS",
                     "webhookWaBusiness": null, "accessTokenWaBusiness": "", "status": instance.state},
        "hash": token,
        "webhook": webhook.as_ref().map(|w| json!({"webhookUrl": w.url, "webhookHeaders": w.headers,
                                                   "webhookByEvents": w.by_events, "webhookBase64": w.base64}))
                          .unwrap_or(json!({})),
        "websocket": {}, "rabbitmq": {}, "nats": {}, "sqs": {},
        "settings": settings,
    });
    if wants_qr {
        response["qrcode"] = instance.qr_json();
    }
    db.instances.insert(name, instance);
    ok(201, response)
}

/// Begin the QR flow: state `connecting`, a first QR (with a pairing code when a number is set).
pub fn start_qr(process: &Process, instance: &mut Instance, now: u64) {
    instance.qr_flow_started_ms = now;
    instance.state = "connecting".into();
    instance.connection_status = "connecting".into();
    process.emit(
        instance,
        "connection.update",
        json!({"instance": instance.name, "state": "connecting", "statusReason": 200}),
    );
    rotate_qr(process, instance, now);
}

/// A new QR, counted and announced (`qrcode.updated`).
pub fn rotate_qr(process: &Process, instance: &mut Instance, now: u64) {
    instance.qr_count += 1;
    let seed = &process.env.task_id;
    let code = new_qr_code(&format!("{seed}/{}/{}/{now}", instance.id, instance.qr_count));
    let pairing_code = instance.number.as_ref().map(|_| {
        let digest = <sha2::Sha256 as sha2::Digest>::digest(code.as_bytes());
        digest.iter().take(8).map(|b| char::from(b"ABCDEFGHJKLMNPQRSTVWXYZ23456789"[(*b as usize) % 31])).collect()
    });
    instance.qr = Some(Qr { code: code.clone(), pairing_code: pairing_code.clone(), generated_ms: now });
    instance.issued_codes.push(code.clone());
    process.log(format!(
        "[Evolution API] v2.3.7 - INFO [ChannelStartupService] {{ instance: {} pairingCode: {}, qrcodeCount: {} }}",
        instance.name,
        pairing_code.as_deref().unwrap_or("null"),
        instance.qr_count
    ));
    let data = json!({"qrcode": {"instance": instance.name, "pairingCode": pairing_code, "code": code, "base64": "data:image/png;base64,"}});
    process.emit(instance, "qrcode.updated", data);
}

fn fetch_instances(process: &Process, query: &[(String, String)], key: Option<&str>, global: bool) -> Response {
    let db = process.db.lock().expect("lab lock");
    let wanted = query_value(query, "instanceName");
    let mine: Vec<&Instance> = db.instances.values().filter(|i| i.client_name == process.env.client_name).collect();
    let rows: Vec<&Instance> = if global {
        mine
    } else if let Some(key) = key.filter(|k| mine.iter().any(|i| i.token == *k)) {
        mine.into_iter().filter(|i| i.token == key).collect()
    } else {
        return error(401, json!("Unauthorized"));
    };
    if let Some(name) = wanted {
        let found: Vec<Value> = rows.iter().filter(|i| i.name == name).map(|i| i.row_json()).collect();
        if found.is_empty() {
            return error(404, json!([format!("Instance \"{name}\" not found")]));
        }
        return ok(200, json!(found));
    }
    ok(200, json!(rows.iter().map(|i| i.row_json()).collect::<Vec<_>>()))
}

fn connect(process: &Process, db: &mut Database, name: &str, number: Option<String>) -> Response {
    let instance = db.instances.get_mut(name).expect("guarded");
    match instance.state.as_str() {
        "open" => ok(200, json!({"instance": {"instanceName": name, "state": "open"}})),
        "connecting" => ok(200, instance.qr_json()),
        _ => {
            if number.is_some() {
                instance.number = number;
            }
            start_qr(process, instance, now_ms());
            ok(200, instance.qr_json())
        }
    }
}

fn logout(process: &Process, db: &mut Database, name: &str) -> Response {
    let instance = db.instances.get_mut(name).expect("guarded");
    if instance.state == "close" {
        return error(400, json!([format!("The \"{name}\" instance is not connected")]));
    }
    process.emit(instance, "connection.update", json!({"instance": name, "state": "close", "statusReason": 401}));
    process.emit(instance, "logout.instance", Value::Null);
    instance.state = "close".into();
    instance.connection_status = "close".into();
    instance.owner_jid = None;
    instance.qr = None;
    ok(200, json!({"status": "SUCCESS", "error": false, "response": {"message": "Instance logged out"}}))
}

fn delete(process: &Process, db: &mut Database, name: &str) -> Response {
    let instance = db.instances.get_mut(name).expect("guarded");
    process.emit(instance, "instance.delete", json!({"instanceName": name, "instanceId": instance.id}));
    let empty_jwt = instance
        .webhook
        .as_ref()
        .and_then(|w| w.headers.get("jwt_key"))
        .is_some_and(|k| k.as_str().is_none_or(str::is_empty));
    process.emit(instance, "remove.instance", Value::Null);
    if empty_jwt {
        // 2.3.7: REMOVE_INSTANCE emission throws before cleanup, so the row and name stay.
        instance.state = "close".into();
        instance.stuck_delete = true;
    } else {
        db.instances.shift_remove(name);
    }
    ok(200, json!({"status": "SUCCESS", "error": false, "response": {"message": "Instance deleted"}}))
}

fn set_webhook(process: &Process, db: &mut Database, name: &str, body: Value) -> Response {
    let Some(webhook) = body.get("webhook") else {
        return error(400, json!([["instance requires property \"webhook\""]]));
    };
    let Some(url) = webhook.get("url").and_then(Value::as_str) else {
        return error(400, json!([["webhook requires property \"url\""]]));
    };
    if url.is_empty() {
        return error(400, json!([["The \"url\" cannot be empty"]]));
    }
    let enabled = webhook.get("enabled").and_then(Value::as_bool).unwrap_or(false);
    let events = match webhook.get("events") {
        None if enabled => return error(500, json!("Cannot read properties of undefined (reading 'length')")),
        events => strings(events),
    };
    if let Some((index, _)) = events.iter().enumerate().find(|(_, e)| !WEBHOOK_EVENTS.contains(&e.as_str())) {
        return error(
            400,
            json!([[format!("webhook.events[{index}] is not one of enum values: {}", WEBHOOK_EVENTS.join(","))]]),
        );
    }
    let instance = db.instances.get_mut(name).expect("guarded");
    let now = now_ms();
    let id = instance.webhook.as_ref().map(|w| w.id.clone()).unwrap_or_else(|| process.next_id());
    let created_ms = instance.webhook.as_ref().map(|w| w.created_ms).unwrap_or(now);
    let row = Webhook {
        id,
        url: url.to_owned(),
        enabled,
        events: if enabled { events } else { Vec::new() },
        by_events: webhook.get("byEvents").and_then(Value::as_bool).unwrap_or(false),
        base64: webhook.get("base64").and_then(Value::as_bool).unwrap_or(false),
        headers: webhook.get("headers").cloned().unwrap_or(json!({})),
        created_ms,
        updated_ms: now,
    };
    let json = row.row_json(&instance.id);
    instance.webhook = Some(row);
    ok(201, json)
}

fn strings(value: Option<&Value>) -> Vec<String> {
    value
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
        .unwrap_or_default()
}
