//! Typed Evolution API 2.3.7 operations over the [`Driver`]: one method per endpoint evoctl
//! uses, with request bodies shaped as the API wants them (the webhook always wrapped and always
//! with `events`; `byEvents`/`base64` key names) and each reply read into a struct that accepts
//! what 2.3.7 really sends (`null` for any nullable column, `{count:N}` without a code, a
//! connectionState without `state`). The shapes are pinned by the recorded answers of a real
//! 2.3.7 server (`../shared/fixtures/evolution-2.3.7/`, see the tests below and docs/evolution.md).

use super::{Acted, Answer, Call, Driver, failure, foreign};
use crate::config::WEBHOOK_EVENTS;
use crate::error::Result;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use std::collections::BTreeSet;
use std::time::Duration;

/// A field 2.3.7 may send as `null` (a nullable column): read as its default.
fn nullable<'de, D: Deserializer<'de>, T: Default + Deserialize<'de>>(deserializer: D) -> Result<T, D::Error> {
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

/// A `fetchInstances` row (the fields evoctl uses; `token` is left unread).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct InstanceInfo {
    pub id: String,
    pub name: String,
    #[serde(rename = "connectionStatus", default)]
    pub connection_status: Option<String>,
    #[serde(rename = "ownerJid", default)]
    pub owner_jid: Option<String>,
    #[serde(rename = "profileName", default)]
    pub profile_name: Option<String>,
    #[serde(rename = "clientName", default)]
    pub client_name: Option<String>,
    #[serde(default)]
    pub integration: Option<String>,
    /// When the socket was last closed for good (a logout, a 401/403); null while it never was.
    #[serde(rename = "disconnectionAt", default)]
    pub disconnection_at: Option<String>,
    /// Why it was last closed for good (Baileys' code: 401, 403, 402, 406); never cleared.
    #[serde(rename = "disconnectionReasonCode", default)]
    pub disconnection_reason_code: Option<i64>,
    #[serde(rename = "createdAt", default)]
    pub created_at: Option<String>,
}

impl InstanceInfo {
    /// The linked phone number (the digits of `ownerJid`).
    pub fn number(&self) -> Option<&str> {
        self.owner_jid.as_deref().and_then(|jid| jid.split('@').next())
    }
}

/// `POST /instance/create` body.
#[derive(Debug, Clone, Serialize)]
pub struct CreateRequest {
    #[serde(rename = "instanceName")]
    pub instance_name: String,
    pub integration: &'static str,
    pub qrcode: bool,
    /// A pairing code flow for this number (2.3.7 reads the number at create; a later
    /// `connect?number=` on an instance that is already connecting is ignored).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub number: Option<String>,
    #[serde(rename = "rejectCall")]
    pub reject_call: bool,
    #[serde(rename = "groupsIgnore")]
    pub groups_ignore: bool,
    #[serde(rename = "alwaysOnline")]
    pub always_online: bool,
    #[serde(rename = "readMessages")]
    pub read_messages: bool,
    #[serde(rename = "readStatus")]
    pub read_status: bool,
    #[serde(rename = "syncFullHistory")]
    pub sync_full_history: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook: Option<WebhookRequest>,
}

impl CreateRequest {
    /// The seed's body: Baileys, QR on, groups ignored, everything else off.
    pub fn seed(name: &str, webhook: Option<WebhookRequest>) -> CreateRequest {
        CreateRequest {
            instance_name: name.to_owned(),
            integration: "WHATSAPP-BAILEYS",
            qrcode: true,
            number: None,
            reject_call: false,
            groups_ignore: true,
            always_online: false,
            read_messages: false,
            read_status: false,
            sync_full_history: false,
            webhook,
        }
    }

    /// The same body for a pairing-code flow for `number`.
    pub fn pairing(mut self, number: Option<&str>) -> CreateRequest {
        self.number = number.map(str::to_owned);
        self
    }

    /// The same body without starting the socket (`qrcode:false`): 2.3.7 then answers at once
    /// and leaves the instance `close` (`instance.controller.ts:153-156` connects and waits a
    /// fixed 5 s only with `qrcode`), so the first `GET /instance/connect/NAME` starts it (with
    /// its `?number=`, as the instance is not connecting yet).
    pub fn socket_later(mut self) -> CreateRequest {
        self.qrcode = false;
        self
    }
}

/// The webhook object (inside `create`, or wrapped in `{"webhook": …}` for `webhook/set`).
/// `headers.jwt_key` is filled in the container from stdin, never here.
#[derive(Debug, Clone, Serialize)]
pub struct WebhookRequest {
    pub enabled: bool,
    pub url: String,
    #[serde(rename = "byEvents")]
    pub by_events: bool,
    pub base64: bool,
    pub events: Vec<String>,
    pub headers: serde_json::Map<String, Value>,
}

/// A stored webhook row (`GET /webhook/find`, `POST /webhook/set`). Every column but `url` and
/// `enabled` is nullable in 2.3.7's schema; `headers` is `null` on a row first written without
/// headers (the Manager UI and the docs' curl examples send none).
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct WebhookRow {
    #[serde(default, deserialize_with = "nullable")]
    pub url: String,
    #[serde(default, deserialize_with = "nullable")]
    pub enabled: bool,
    #[serde(default, deserialize_with = "nullable")]
    pub events: Vec<String>,
    #[serde(rename = "webhookByEvents", default, deserialize_with = "nullable")]
    pub by_events: bool,
    #[serde(rename = "webhookBase64", default, deserialize_with = "nullable")]
    pub base64: bool,
    #[serde(default, deserialize_with = "nullable")]
    pub headers: serde_json::Map<String, Value>,
}

impl WebhookRequest {
    /// The webhook an environment's config asks for (no secret: that goes over stdin).
    pub fn from_config(config: &crate::config::WebhookConfig) -> WebhookRequest {
        WebhookRequest {
            enabled: true,
            url: config.url.0.clone(),
            by_events: config.by_events,
            base64: config.base64,
            events: config.events.iter().map(|e| e.0.clone()).collect(),
            headers: serde_json::Map::new(),
        }
    }
}

/// The events a webhook delivers: 2.3.7 stores "all events" (`[]` with `enabled:true`) as the
/// explicit list of every event, so both spellings are the same set.
pub fn event_set(events: &[String]) -> BTreeSet<&str> {
    if events.is_empty() {
        WEBHOOK_EVENTS.iter().copied().collect()
    } else {
        events.iter().map(String::as_str).collect()
    }
}

impl WebhookRow {
    /// Whether the stored row already is what the config asks for.
    pub fn matches(&self, wanted: &WebhookRequest, jwt_key: Option<&str>) -> bool {
        self.enabled
            && self.url == wanted.url
            && event_set(&self.events) == event_set(&wanted.events)
            && self.by_events == wanted.by_events
            && self.base64 == wanted.base64
            && self.headers.get("jwt_key").and_then(Value::as_str) == jwt_key
    }

    /// Whether the row delivers every event.
    pub fn all_events(&self) -> bool {
        event_set(&self.events) == event_set(&[])
    }
}

/// The QR object of connect, create (`qrcode`) and restart: `{count:N}` alone until a QR
/// exists; `pairingCode` only in a pairing flow.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct QrReply {
    #[serde(rename = "pairingCode", default)]
    pub pairing_code: Option<String>,
    #[serde(default)]
    pub code: Option<String>,
    #[serde(default)]
    pub base64: Option<String>,
    #[serde(default, deserialize_with = "nullable")]
    pub count: u64,
}

/// `{"instance": {"instanceName", "state"}}`: connectionState, and connect/restart of an open
/// instance. 2.3.7 leaves `state` out for a row another process holds.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct StateReply {
    pub instance: InstanceState,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct InstanceState {
    #[serde(rename = "instanceName")]
    pub instance_name: String,
    #[serde(default)]
    pub state: Option<String>,
}

/// A connect or restart answer: the state (open), or the QR object.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum ConnectReply {
    State(StateReply),
    Qr(QrReply),
}

/// `POST /instance/create` (201).
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct CreateReply {
    pub instance: CreatedInstance,
    #[serde(default)]
    pub qrcode: Option<QrReply>,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct CreatedInstance {
    #[serde(rename = "instanceName")]
    pub instance_name: String,
    #[serde(rename = "instanceId", default)]
    pub instance_id: Option<String>,
    #[serde(default)]
    pub status: Option<String>,
}

/// logout and delete (200): `{"status":"SUCCESS","error":false,"response":{"message":…}}`.
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct StatusReply {
    pub status: String,
    pub error: bool,
    pub response: StatusMessage,
}

#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct StatusMessage {
    pub message: String,
}

/// What `create` did.
#[derive(Debug, Clone, PartialEq)]
pub enum Created {
    /// Created; the instance status it reported.
    Created { status: String },
    /// 403: the name is already in use in the database (possibly by another deployment).
    NameTaken,
}

/// `GET /` (no key needed).
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct ServerInfo {
    pub version: String,
    #[serde(rename = "clientName", default, deserialize_with = "nullable")]
    pub client_name: String,
    /// The WhatsApp Web version it reported (fetched live on each `GET /`; absent on servers
    /// that do not say it).
    #[serde(rename = "whatsappWebVersion", default)]
    pub whatsapp_web_version: Option<String>,
}

/// `instance.state` of a connectionState answer; a row without a state is held by another
/// Evolution process on the same database (refused, exit 4), never a guess.
/// connectionState's answer: the live state (a row another process holds has none).
pub(super) fn live_state(answer: Answer, name: &str, acted: Acted<'_>) -> Result<String> {
    let answer = checked(answer, "connectionState", acted)?;
    let reply: StateReply = parse(&answer, "connectionState", acted.env)?;
    reply.instance.state.ok_or_else(|| foreign(name))
}

fn checked(answer: Answer, what: &str, acted: Acted<'_>) -> Result<Answer> {
    match failure(&answer, what, acted) {
        Some(err) => Err(err),
        None => Ok(answer),
    }
}

/// `answer` read as `T`; a body 2.3.7 would not send is an Evolution error naming the call, the
/// place in the body and the types there, and quoting none of it.
fn parse<T: serde::de::DeserializeOwned>(answer: &Answer, what: &str, env: &str) -> Result<T> {
    super::shape::read(&answer.body).map_err(|mismatch| crate::error::Error::Evolution {
        status: answer.status,
        message: format!("{what}: Evolution answered in a shape 2.3.7 does not send ({mismatch})"),
        fix: format!("check the Evolution version (evoctl speaks 2.3.7: `evoctl doctor {env}` shows it) and its logs"),
    })
}

/// What a logout did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoggedOut {
    /// Logged out of WhatsApp.
    Done,
    /// The instance was `close`: 2.3.7 refuses (400 "is not connected"), there is no session
    /// to log out, and nothing changed.
    NotConnected,
}

/// Percent-encode a path segment (instance names are used in URLs).
pub fn segment(name: &str) -> String {
    name.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

impl Driver<'_> {
    /// A call on the instance `name`, checked first to be held by this process.
    fn on_instance<'a>(method: &'a str, path: &'a str, name: &'a str) -> Call<'a> {
        Call { owner_check: Some(name), ..Call::new(method, path) }
    }

    /// Instances of this deployment; with a name, that one only (empty when not loaded here).
    pub async fn fetch_instances(&self, name: Option<&str>) -> Result<Vec<InstanceInfo>> {
        let path = match name {
            Some(name) => instances_path(name),
            None => "/instance/fetchInstances".into(),
        };
        read_instances(self.call(Call::new("GET", &path)).await?, name.is_some(), self.acted(None))
    }

    /// Create an instance; `jwt_key` goes to `webhook.headers.jwt_key` over stdin.
    pub async fn create(&self, request: &CreateRequest, jwt_key: Option<&str>) -> Result<Created> {
        let body = serde_json::to_value(request).expect("request serialises");
        let field: &[&str] = &["webhook", "headers", "jwt_key"];
        let secret = jwt_key.filter(|_| request.webhook.is_some()).map(|key| (field, key));
        let answer = self.call(Call { body: Some(&body), secret, ..Call::new("POST", "/instance/create") }).await?;
        if answer.status == 403 {
            return Ok(Created::NameTaken);
        }
        let acted = self.acted(Some(&request.instance_name));
        let reply: CreateReply = parse(&checked(answer, "create", acted)?, "create", acted.env)?;
        Ok(Created::Created { status: reply.instance.status.unwrap_or_else(|| "unknown".into()) })
    }

    /// The live state: `open`, `connecting` or `close`.
    pub async fn connection_state(&self, name: &str) -> Result<String> {
        let path = super::state_path(name);
        live_state(self.call(Call::new("GET", &path)).await?, name, self.acted(Some(name)))
    }

    /// The live state (memory) and the database row of `name`, both read in one exec session;
    /// the row is `None` when fetchInstances does not list it.
    pub async fn connection(&self, name: &str) -> Result<(String, Option<InstanceInfo>)> {
        let paths = [super::state_path(name), instances_path(name)];
        let mut answers = self.calls(&paths).await?.into_iter();
        let acted = self.acted(Some(name));
        let (Some(state), Some(rows)) = (answers.next(), answers.next()) else {
            return Err(crate::error::Error::exec(
                crate::error::ExecKind::Container,
                "the Evolution calls in the container ended early",
                format!("check that Evolution is up (`evoctl doctor {}`)", acted.env),
            ));
        };
        let state = live_state(state, name, acted)?;
        let row = read_instances(rows, true, self.acted(None))?.into_iter().next();
        Ok((state, row))
    }

    /// The live state every `interval` for `duration`, from one exec session.
    pub async fn sample_states(
        &self,
        name: &str,
        duration: Duration,
        interval: Duration,
    ) -> Result<Vec<(Duration, String)>> {
        let mut states = Vec::new();
        for (at, answer) in self.sample(&super::state_path(name), duration, interval).await? {
            states.push((at, live_state(answer, name, self.acted(Some(name)))?));
        }
        Ok(states)
    }

    /// Log the instance out of WhatsApp. A `close` instance has no session to log out: 2.3.7
    /// answers 400 `The "X" instance is not connected`, which is no invalid request.
    pub async fn logout(&self, name: &str) -> Result<LoggedOut> {
        let path = format!("/instance/logout/{}", segment(name));
        let (answer, state) = self.call_with_state(Self::on_instance("DELETE", &path, name)).await?;
        let not_connected = answer.status == 400
            && (state.as_deref() == Some("close")
                || super::flatten(&answer.body["response"]["message"]).ends_with("instance is not connected"));
        if not_connected {
            return Ok(LoggedOut::NotConnected);
        }
        let acted = self.acted(Some(name));
        parse::<StatusReply>(&checked(answer, "logout", acted)?, "logout", acted.env)?;
        Ok(LoggedOut::Done)
    }

    /// Restart; the state it reports. 2.3.7 cannot restart a `close` instance: it refuses with
    /// "not connected" inside and answers 200 `{error:true, message:"[object Object]"}`; that is
    /// said as it is, with the way forward (connect starts the socket).
    pub async fn restart(&self, name: &str) -> Result<String> {
        let path = format!("/instance/restart/{}", segment(name));
        let (answer, state) = self.call_with_state(Self::on_instance("POST", &path, name)).await?;
        let acted = self.acted(Some(name));
        if answer.body["error"] == true && state.as_deref() == Some("close") {
            return Err(crate::error::Error::Evolution {
                status: answer.status,
                message: format!(
                    "restart: {name} is close (not connected), and Evolution 2.3.7 cannot restart a closed instance (it answered {:?}); nothing was changed",
                    super::flatten(&answer.body["message"])
                ),
                fix: format!(
                    "start its socket with `evoctl instance connect {}` (a QR to scan when the number is not linked)",
                    acted.args()
                ),
            });
        }
        Ok(match parse::<ConnectReply>(&checked(answer, "restart", acted)?, "restart", acted.env)? {
            ConnectReply::State(reply) => reply.instance.state.unwrap_or_else(|| "unknown".into()),
            ConnectReply::Qr(_) => "connecting".into(),
        })
    }

    /// Make the instance's webhook match `wanted` (the `jwt_key` sent over the data channel);
    /// `false` when it already did and nothing was written.
    pub async fn ensure_webhook(&self, name: &str, wanted: &WebhookRequest, jwt_key: Option<&str>) -> Result<bool> {
        if self.webhook_find(name).await?.is_some_and(|row| row.matches(wanted, jwt_key)) {
            return Ok(false);
        }
        self.webhook_set(name, wanted, jwt_key).await?;
        Ok(true)
    }

    /// The stored webhook, if any (`null` when none was ever set).
    pub async fn webhook_find(&self, name: &str) -> Result<Option<WebhookRow>> {
        let path = webhook_path(name);
        read_webhook(self.call(Self::on_instance("GET", &path, name)).await?, self.acted(Some(name)))
    }

    /// Set the webhook (always wrapped in `webhook`, always with `events`).
    pub async fn webhook_set(&self, name: &str, request: &WebhookRequest, jwt_key: Option<&str>) -> Result<()> {
        let body = serde_json::json!({"webhook": request});
        let field: &[&str] = &["webhook", "headers", "jwt_key"];
        let path = format!("/webhook/set/{}", segment(name));
        let call =
            Call { body: Some(&body), secret: jwt_key.map(|k| (field, k)), ..Self::on_instance("POST", &path, name) };
        let acted = self.acted(Some(name));
        let answer = checked(self.call(call).await?, "webhook set", acted)?;
        parse::<WebhookRow>(&answer, "webhook set", acted.env)?;
        Ok(())
    }

    /// Whether the key in the container is the global key (`POST /verify-creds`).
    pub async fn verify_creds(&self) -> Result<bool> {
        let answer = self.call(Call::new("POST", "/verify-creds")).await?;
        Ok(answer.status == 200)
    }

    /// `GET /`: version and client name.
    pub async fn server_info(&self) -> Result<ServerInfo> {
        read_server_info(self.call(Call::new("GET", "/")).await?, self.acted(None))
    }
}

/// `/instance/fetchInstances?instanceName=NAME`.
pub(super) fn instances_path(name: &str) -> String {
    format!("/instance/fetchInstances?instanceName={}", segment(name))
}

/// `/webhook/find/NAME`.
pub(super) fn webhook_path(name: &str) -> String {
    format!("/webhook/find/{}", segment(name))
}

/// fetchInstances' answer; for one name (`named`), a 404 is an empty list.
pub(super) fn read_instances(answer: Answer, named: bool, acted: Acted<'_>) -> Result<Vec<InstanceInfo>> {
    if named && answer.status == 404 {
        return Ok(Vec::new());
    }
    parse(&checked(answer, "fetchInstances", acted)?, "fetchInstances", acted.env)
}

/// webhook/find's answer: the stored webhook, if any.
pub(super) fn read_webhook(answer: Answer, acted: Acted<'_>) -> Result<Option<WebhookRow>> {
    parse::<Option<WebhookRow>>(&checked(answer, "webhook find", acted)?, "webhook find", acted.env)
}

/// `GET /`'s answer.
pub(super) fn read_server_info(answer: Answer, acted: Acted<'_>) -> Result<ServerInfo> {
    parse(&checked(answer, "GET /", acted)?, "GET /", acted.env)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_create_body_uses_the_api_key_names_and_the_seed_values() {
        let webhook = WebhookRequest {
            enabled: true,
            url: "https://x.example/hook".into(),
            by_events: true,
            base64: false,
            events: vec!["MESSAGES_UPSERT".into()],
            headers: serde_json::Map::new(),
        };
        let body = serde_json::to_value(CreateRequest::seed("alinhou-production", Some(webhook))).unwrap();
        assert_eq!(
            body,
            json!({
                "instanceName": "alinhou-production", "integration": "WHATSAPP-BAILEYS", "qrcode": true,
                "rejectCall": false, "groupsIgnore": true, "alwaysOnline": false, "readMessages": false,
                "readStatus": false, "syncFullHistory": false,
                "webhook": {"enabled": true, "url": "https://x.example/hook", "byEvents": true, "base64": false,
                            "events": ["MESSAGES_UPSERT"], "headers": {}},
            })
        );
    }

    /// The real 2.3.7 server's answers, in the order they were recorded.
    fn recorded() -> Vec<Value> {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/fixtures/evolution-2.3.7/responses.jsonl");
        let text = std::fs::read_to_string(path).expect("the recorded answers are beside the project (../shared)");
        text.lines().map(|line| serde_json::from_str(line).expect("a JSON row")).collect()
    }

    /// Every recorded body of a call evoctl makes parses into its typed reply, and every
    /// failure (HTTP error or 200 `{error:true}`) becomes one error with the API's message.
    #[test]
    fn typed_replies_parse_every_recorded_answer() {
        let mut parsed = 0;
        for row in recorded().iter().filter(|row| row["method"].is_string()) {
            let (method, path, status) = (
                row["method"].as_str().unwrap(),
                row["path"].as_str().unwrap(),
                row["status"].as_u64().unwrap() as u16,
            );
            let name = row["name"].as_str().unwrap();
            let answer = Answer { status, body: row["body_json"].clone() };
            if let Some(err) = failure(&answer, "x", Acted { env: "production", instance: None }) {
                let message = err.to_string();
                assert!(message.len() > 3 && !message.contains("{\"status\""), "{name}: {message}");
                continue;
            }
            let endpoint = path.split('?').next().unwrap().rsplitn(2, '/').last().unwrap();
            let result: std::result::Result<(), String> = match (method, endpoint) {
                ("GET", "") => parse::<ServerInfo>(&answer, name, "production").map(drop).map_err(|e| e.to_string()),
                ("POST", "") if path == "/verify-creds" => Ok(()),
                ("POST", "/instance") => {
                    parse::<CreateReply>(&answer, name, "production").map(drop).map_err(|e| e.to_string())
                }
                ("GET", "/instance") => {
                    parse::<Vec<InstanceInfo>>(&answer, name, "production").map(drop).map_err(|e| e.to_string())
                }
                ("GET", "/instance/connectionState") => {
                    parse::<StateReply>(&answer, name, "production").map(drop).map_err(|e| e.to_string())
                }
                ("GET", "/instance/connect") | ("POST", "/instance/restart") => {
                    parse::<ConnectReply>(&answer, name, "production").map(drop).map_err(|e| e.to_string())
                }
                ("DELETE", "/instance/logout") | ("DELETE", "/instance/delete") => {
                    parse::<StatusReply>(&answer, name, "production").map(drop).map_err(|e| e.to_string())
                }
                ("GET", "/webhook/find") => {
                    parse::<Option<WebhookRow>>(&answer, name, "production").map(drop).map_err(|e| e.to_string())
                }
                ("POST", "/webhook/set") => {
                    parse::<WebhookRow>(&answer, name, "production").map(drop).map_err(|e| e.to_string())
                }
                other => panic!("{name}: a recorded call evoctl does not make: {other:?}"),
            };
            result.unwrap_or_else(|e| panic!("{name}: {e}"));
            parsed += 1;
        }
        assert_eq!(parsed, 58, "the number of successful recorded answers parsed");
    }

    #[test]
    fn recorded_webhook_rows_read_as_2_3_7_stores_them() {
        let rows = recorded();
        let by_name = |name: &str| rows.iter().find(|r| r["name"] == name).unwrap()["body_json"].clone();
        let find = |name: &str| serde_json::from_value::<Option<WebhookRow>>(by_name(name)).unwrap();
        assert_eq!(find("webhook_find_initial_nowebhook"), None);
        let all = find("webhook_find_after_events_empty").unwrap();
        assert!(all.all_events() && all.events.len() == 31, "[] is stored as the 31 names");
        let wanted = WebhookRequest {
            enabled: true,
            url: "http://127.0.0.1:18999/hook".into(),
            by_events: true,
            base64: false,
            events: vec![],
            headers: serde_json::Map::new(),
        };
        assert!(all.matches(&wanted, Some("test-secret")), "all events compares equal to the 31-name list");
        assert!(!all.matches(&wanted, Some("other-secret")));
        let null_headers: WebhookRow = serde_json::from_value(json!({
            "id": "x", "url": "http://h/x", "headers": null, "enabled": true, "events": ["MESSAGES_UPSERT"],
            "webhookByEvents": false, "webhookBase64": false, "createdAt": "t", "updatedAt": "t", "instanceId": "i"
        }))
        .unwrap();
        assert!(null_headers.headers.is_empty());
        let qr: ConnectReply = serde_json::from_value(by_name("connect_existing")).unwrap();
        assert_eq!(qr, ConnectReply::Qr(QrReply { count: 0, ..QrReply::default() }));
    }

    #[test]
    fn rows_and_numbers_parse() {
        let row: InstanceInfo = serde_json::from_value(json!({
            "id": "i", "name": "n", "connectionStatus": "open", "ownerJid": "5511912345678@s.whatsapp.net",
            "profileName": null, "clientName": "evolution_production", "token": "secret-token", "_count": {}
        }))
        .unwrap();
        assert_eq!(row.number(), Some("5511912345678"));
        assert_eq!(segment("a b/ç"), "a%20b%2F%C3%A7");
    }
}
