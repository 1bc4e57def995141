//! The control side of the Evolution stand-in, shared by the lab (`/_lab/…` on its one port)
//! and the standalone stand-in (its control port): the webhook receiver and its answer switch,
//! the simulated phone and network, per-process faults and the snapshots.
//!
//! The receiver (`POST /_lab/webhooks/{*target}`) records every delivery with what it answered
//! (`answered`) and which try of the same delivery it was (`attempt`: earlier records with the
//! same target and the same body, which retries repeat exactly, plus one). `POST /_lab/receiver
//! {"status": N}` sets the answer for every later delivery; `{"status": 0}` makes it never
//! answer (it holds the request until the sender gives up, so the sender sees its own timeout).
//! `{"status": N, "body": TEXT, "headers": {NAME: VALUE}}` answers with that body and those
//! headers, `{token}` in them replaced by the bearer token the delivery carried: a receiver that
//! echoes what it got, escape sequences and all, as a hostile or broken one may.
//! A target may also verify as an app does ([`Receiver::verify_with`], the scenario's
//! `[receiver.TARGET] verify_with = "PARAMETER"`): a delivery whose JWT does not verify with
//! that secret is answered 401 `{"error":"invalid signature"}`, whatever the switch says
//! otherwise (a switched-off receiver, 0 or 5xx, answers that first).

use super::EvolutionHub;
use super::process::ScanOutcome;
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The lab's webhook target.
pub struct Receiver {
    records: Mutex<Vec<Value>>,
    answer: Mutex<Answer>,
    /// Target (the first path segment after `/_lab/webhooks/`) → the secret's name it verifies with.
    verify: Mutex<Vec<(String, String)>>,
}

impl Default for Receiver {
    fn default() -> Receiver {
        Receiver {
            records: Mutex::new(Vec::new()),
            answer: Mutex::new(Answer::default()),
            verify: Mutex::new(Vec::new()),
        }
    }
}

/// What the receiver answers every delivery with.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Answer {
    status: u16,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    headers: std::collections::BTreeMap<String, String>,
}

impl Default for Answer {
    fn default() -> Answer {
        Answer { status: 200, body: None, headers: Default::default() }
    }
}

impl Receiver {
    /// Record one delivery (its JWT checked against `secrets`: name → value) and answer it.
    pub async fn receive(
        &self,
        target: String,
        headers: &HeaderMap,
        body: &Bytes,
        secrets: &[(String, String)],
    ) -> Response {
        let authorization = headers.get("authorization").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let verified = authorization
            .as_deref()
            .and_then(|auth| super::webhooks::verify_jwt(auth, secrets.iter().map(|(n, v)| (n.as_str(), v.as_str()))));
        let body = serde_json::from_slice::<Value>(body).unwrap_or(Value::Null);
        let header_map: serde_json::Map<String, Value> = headers
            .iter()
            .map(|(name, value)| (name.as_str().to_owned(), json!(String::from_utf8_lossy(value.as_bytes()))))
            .collect();
        let configured = self.answer.lock().expect("lab lock").clone();
        let switch = configured.status;
        let first = target.split('/').next().unwrap_or("");
        let wanted = self.verify.lock().expect("lab lock").iter().find(|(t, _)| t == first).map(|(_, s)| s.clone());
        let rejected = wanted.as_ref().is_some_and(|name| verified.as_ref().is_none_or(|(by, _)| by != name));
        let answer = if rejected && (200..500).contains(&switch) { 401 } else { switch };
        {
            let mut records = self.records.lock().expect("lab lock");
            let attempt = 1 + records.iter().filter(|r| r["target"] == target.as_str() && r["body"] == body).count();
            records.push(json!({
                "target": target,
                "authorization": authorization.is_some(),
                "jwt_verified_with": verified.as_ref().map(|(name, _)| name.clone()),
                "jwt_claims": verified.map(|(_, claims)| claims),
                "body": body,
                "answered": answer,
                "attempt": attempt,
                "headers": header_map,
            }));
        }
        if answer == 0 {
            // Never answer: the sender's own timeout ends the request.
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
        if answer == 401 && rejected {
            return (StatusCode::UNAUTHORIZED, Json(json!({"error": "invalid signature"}))).into_response();
        }
        let status = StatusCode::from_u16(answer).unwrap_or(StatusCode::OK);
        let token = authorization.as_deref().and_then(|a| a.strip_prefix("Bearer ")).unwrap_or("");
        let mut response = configured.body.map(|b| b.replace("{token}", token)).unwrap_or_default().into_response();
        *response.status_mut() = status;
        for (name, value) in &configured.headers {
            if let (Ok(name), Ok(value)) = (
                axum::http::HeaderName::from_bytes(name.as_bytes()),
                axum::http::HeaderValue::from_bytes(value.replace("{token}", token).as_bytes()),
            ) {
                response.headers_mut().insert(name, value);
            }
        }
        response
    }

    /// Deliveries to `target` must carry a JWT signed with the secret named `secret`.
    pub fn verify_with(&self, target: &str, secret: &str) {
        self.verify.lock().expect("lab lock").push((target.to_owned(), secret.to_owned()));
    }

    pub fn records(&self) -> Vec<Value> {
        self.records.lock().expect("lab lock").clone()
    }

    pub fn clear(&self) {
        self.records.lock().expect("lab lock").clear();
    }

    /// `POST /_lab/receiver`.
    pub fn set_answer(&self, body: &[u8]) -> Response {
        match serde_json::from_slice::<Answer>(body) {
            Ok(answer) if answer.status == 0 || (200..600).contains(&answer.status) => {
                let status = answer.status;
                *self.answer.lock().expect("lab lock") = answer;
                Json(json!({"status": status})).into_response()
            }
            Ok(answer) => {
                bad(format!("status {}: give 0 (never answer) or an HTTP status from 200 to 599", answer.status))
            }
            Err(e) => bad(format!("bad receiver document: {e}")),
        }
    }
}

fn bad(message: String) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({"error": message}))).into_response()
}

fn not_found(message: &str) -> Response {
    (StatusCode::NOT_FOUND, Json(json!({"error": message}))).into_response()
}

fn default_number() -> String {
    "5511987654321".into()
}

/// `POST /_lab/phone/scan {"code", "number"}`: 200 linked, 409 "Couldn't link device" (the
/// pairing refresh), 404 no instance shows the code.
pub fn phone_scan(hub: &EvolutionHub, body: &[u8]) -> Response {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Scan {
        code: String,
        #[serde(default = "default_number")]
        number: String,
    }
    let scan: Scan = match serde_json::from_slice(body) {
        Ok(scan) => scan,
        Err(e) => return bad(format!("bad scan: {e}")),
    };
    match hub.scan(&scan.code, &scan.number) {
        Some(ScanOutcome::Linked(instance)) => {
            Json(json!({"instance": instance, "number": scan.number})).into_response()
        }
        // What the phone shows when WhatsApp's pairing fails.
        Some(ScanOutcome::Failed(instance)) => {
            (StatusCode::CONFLICT, Json(json!({"instance": instance, "error": "Couldn't link device"}))).into_response()
        }
        None => not_found("no instance is showing that QR code"),
    }
}

/// `POST /_lab/phone/message {"instance", "text", "from"}`.
pub fn phone_message(hub: &EvolutionHub, body: &[u8]) -> Response {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Message {
        instance: String,
        text: String,
        #[serde(default = "default_number")]
        from: String,
    }
    let message: Message = match serde_json::from_slice(body) {
        Ok(message) => message,
        Err(e) => return bad(format!("bad message: {e}")),
    };
    if hub.message(&message.instance, &message.text, &message.from) {
        StatusCode::NO_CONTENT.into_response()
    } else {
        not_found("no open instance by that name")
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Named {
    instance: String,
}

/// `POST /_lab/phone/drop {"instance"}`: the network under that paired socket drops.
pub fn phone_drop(hub: &EvolutionHub, body: &[u8]) -> Response {
    let named: Named = match serde_json::from_slice(body) {
        Ok(named) => named,
        Err(e) => return bad(format!("bad drop: {e}")),
    };
    let processes = hub.drop_socket(&named.instance);
    if processes.is_empty() {
        return not_found("no process holds a paired socket by that name");
    }
    Json(json!({"instance": named.instance, "processes": processes})).into_response()
}

/// `POST /_lab/phone/remove {"instance"}`: the phone removes the linked device (401).
pub fn phone_remove(hub: &EvolutionHub, body: &[u8]) -> Response {
    let named: Named = match serde_json::from_slice(body) {
        Ok(named) => named,
        Err(e) => return bad(format!("bad remove: {e}")),
    };
    let processes = hub.remove_device(&named.instance);
    if processes.is_empty() {
        return not_found("no process holds a paired socket by that name");
    }
    Json(json!({"instance": named.instance, "processes": processes})).into_response()
}

/// `POST /_lab/phone/dead {"instance"}`: the socket closes and its reconnect fails.
pub fn phone_dead(hub: &EvolutionHub, body: &[u8]) -> Response {
    let named: Named = match serde_json::from_slice(body) {
        Ok(named) => named,
        Err(e) => return bad(format!("bad dead: {e}")),
    };
    let processes = hub.kill_socket(&named.instance);
    if processes.is_empty() {
        return not_found("no process holds a paired socket by that name");
    }
    Json(json!({"instance": named.instance, "processes": processes})).into_response()
}

/// `POST /_lab/phone/reconnect {"instance"}`: the network is back, the socket is `open`.
pub fn phone_reconnect(hub: &EvolutionHub, body: &[u8]) -> Response {
    let named: Named = match serde_json::from_slice(body) {
        Ok(named) => named,
        Err(e) => return bad(format!("bad reconnect: {e}")),
    };
    let processes = hub.reconnect_socket(&named.instance);
    if processes.is_empty() {
        return not_found("no process holds a dropped socket by that name");
    }
    Json(json!({"instance": named.instance, "processes": processes})).into_response()
}

/// `POST /_lab/evolution/faults`: per-process switches (`task` may be left out when there is
/// one process, as in the standalone stand-in).
pub fn evolution_faults(hub: &EvolutionHub, body: &[u8]) -> Response {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Faults {
        #[serde(default)]
        task: Option<String>,
        #[serde(default)]
        reject_key: bool,
        #[serde(default)]
        fail_next: Option<String>,
        #[serde(default)]
        respond_next: Option<RespondNext>,
    }
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct RespondNext {
        status: u16,
        body: Value,
    }
    let faults: Faults = match serde_json::from_slice(body) {
        Ok(faults) => faults,
        Err(e) => return bad(format!("bad faults: {e}")),
    };
    let process = match &faults.task {
        Some(task) => hub.process_of(task),
        None => {
            let all = hub.processes();
            if all.len() == 1 { all.into_iter().next() } else { None }
        }
    };
    let Some(process) = process else { return not_found("no Evolution process for that task") };
    let mut switches = process.switches.lock().expect("lab lock");
    switches.reject_key = faults.reject_key;
    switches.fail_next = faults.fail_next;
    switches.respond_next = faults.respond_next.map(|r| (r.status, r.body));
    StatusCode::NO_CONTENT.into_response()
}

/// The control routes of the standalone stand-in (the same paths as the lab's).
pub fn router(hub: Arc<EvolutionHub>, logs: Arc<Mutex<Vec<super::log::LogLine>>>) -> Router {
    use axum::extract::{Path, State};
    use axum::routing::{get, post};
    type Hub = State<(Arc<EvolutionHub>, Arc<Mutex<Vec<super::log::LogLine>>>)>;
    Router::new()
        .route(
            "/_lab/receiver",
            post(|State((hub, _)): Hub, body: Bytes| async move { hub.receiver.set_answer(&body) }),
        )
        .route(
            "/_lab/webhooks",
            get(|State((hub, _)): Hub| async move { Json(hub.receiver.records()) }).delete(
                |State((hub, _)): Hub| async move {
                    hub.receiver.clear();
                    StatusCode::NO_CONTENT
                },
            ),
        )
        .route(
            "/_lab/webhooks/{*target}",
            post(|State((hub, _)): Hub, Path(target): Path<String>, headers: HeaderMap, body: Bytes| async move {
                let secrets = hub.jwt_keys();
                hub.receiver.receive(target, &headers, &body, &secrets).await
            }),
        )
        .route("/_lab/evolution", get(|State((hub, _)): Hub| async move { Json(hub.snapshot()) }))
        .route("/_lab/evolution/processes", get(|State((hub, _)): Hub| async move { Json(hub.processes_snapshot()) }))
        .route(
            "/_lab/evolution/faults",
            post(|State((hub, _)): Hub, body: Bytes| async move { evolution_faults(&hub, &body) }),
        )
        .route("/_lab/phone/scan", post(|State((hub, _)): Hub, body: Bytes| async move { phone_scan(&hub, &body) }))
        .route(
            "/_lab/phone/message",
            post(|State((hub, _)): Hub, body: Bytes| async move { phone_message(&hub, &body) }),
        )
        .route("/_lab/phone/drop", post(|State((hub, _)): Hub, body: Bytes| async move { phone_drop(&hub, &body) }))
        .route("/_lab/phone/remove", post(|State((hub, _)): Hub, body: Bytes| async move { phone_remove(&hub, &body) }))
        .route("/_lab/phone/dead", post(|State((hub, _)): Hub, body: Bytes| async move { phone_dead(&hub, &body) }))
        .route(
            "/_lab/phone/reconnect",
            post(|State((hub, _)): Hub, body: Bytes| async move { phone_reconnect(&hub, &body) }),
        )
        .route(
            "/_lab/logs",
            get(|State((_, logs)): Hub| async move {
                let lines: Vec<Value> = logs
                    .lock()
                    .expect("lab lock")
                    .iter()
                    .map(|l| json!({"timestamp_ms": l.ms, "message": l.message}))
                    .collect();
                Json(lines)
            }),
        )
        .with_state((hub, logs))
}
