//! Typed Evolution API 2.3.7 operations over the [`Driver`]: one method per endpoint evoctl
//! uses, with request bodies shaped as the API wants them (the webhook always wrapped and always
//! with `events`; `byEvents`/`base64` key names) and responses read into structs.

use super::{Answer, Driver, failure};
use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::time::Duration;

/// A `fetchInstances` row (the fields evoctl uses).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
pub struct InstanceInfo {
    pub id: String,
    pub name: String,
    #[serde(rename = "connectionStatus")]
    pub connection_status: Option<String>,
    #[serde(rename = "ownerJid")]
    pub owner_jid: Option<String>,
    #[serde(rename = "profileName")]
    pub profile_name: Option<String>,
    #[serde(rename = "clientName")]
    pub client_name: Option<String>,
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
            reject_call: false,
            groups_ignore: true,
            always_online: false,
            read_messages: false,
            read_status: false,
            sync_full_history: false,
            webhook,
        }
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

/// A stored webhook (`GET /webhook/find`).
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct WebhookRow {
    pub url: String,
    pub enabled: bool,
    #[serde(default)]
    pub events: Vec<String>,
    #[serde(rename = "webhookByEvents", default)]
    pub by_events: bool,
    #[serde(rename = "webhookBase64", default)]
    pub base64: bool,
    #[serde(default)]
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

impl WebhookRow {
    /// Whether the stored row already is what the config asks for.
    pub fn matches(&self, wanted: &WebhookRequest, jwt_key: Option<&str>) -> bool {
        self.enabled
            && self.url == wanted.url
            && self.events == wanted.events
            && self.by_events == wanted.by_events
            && self.base64 == wanted.base64
            && self.headers.get("jwt_key").and_then(Value::as_str) == jwt_key
    }
}

/// What `create` did.
#[derive(Debug, Clone, PartialEq)]
pub enum Created {
    /// Created; the instance status it reported.
    Created { status: String },
    /// 403: the name is already in use in the database (possibly by another deployment).
    NameTaken,
}

/// What `connect` returned.
#[derive(Debug, Clone, PartialEq)]
pub enum Connect {
    Open,
    Qr {
        code: String,
        pairing_code: Option<String>,
        count: u64,
    },
    /// `{"count": N}` with no code yet: poll again.
    NotReady {
        count: u64,
    },
}

/// `GET /` (no key needed).
#[derive(Debug, Clone, Deserialize, PartialEq)]
pub struct ServerInfo {
    pub version: String,
    #[serde(rename = "clientName", default)]
    pub client_name: String,
}

/// `instance.state` of a connectionState answer. 2.3.7 leaves it out for a row this deployment
/// did not load (another client name on the same database); a missing state is an error, never
/// a guess.
fn live_state(answer: Answer, name: &str) -> Result<String> {
    let answer = checked(answer, "connectionState")?;
    match answer.body["instance"]["state"].as_str() {
        Some(state) => Ok(state.to_owned()),
        None => Err(Error::Evolution {
            status: answer.status,
            message: format!(
                "connectionState of {name} has no state: {}",
                super::shorten(&answer.body.to_string(), 300)
            ),
            fix: "the instance may belong to another deployment on the same database (check DATABASE_CONNECTION_CLIENT_NAME with `evoctl audit`); otherwise check Evolution's logs".into(),
        }),
    }
}

fn checked(answer: Answer, what: &str) -> Result<Answer> {
    match failure(&answer, what) {
        Some(err) => Err(err),
        None => Ok(answer),
    }
}

fn parse<T: serde::de::DeserializeOwned>(answer: &Answer, what: &str) -> Result<T> {
    serde_json::from_value(answer.body.clone()).map_err(|e| {
        crate::error::Error::exec(
            crate::error::ExecKind::Container,
            format!("{what}: unexpected answer from Evolution ({e}): {}", answer.body),
            "check the Evolution version (evoctl speaks 2.3.7)",
        )
    })
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
    /// Instances of this deployment; with a name, that one only (empty when not loaded here).
    pub async fn fetch_instances(&self, name: Option<&str>) -> Result<Vec<InstanceInfo>> {
        let path = match name {
            Some(name) => format!("/instance/fetchInstances?instanceName={}", segment(name)),
            None => "/instance/fetchInstances".into(),
        };
        let answer = self.call("GET", &path, None, None).await?;
        if name.is_some() && answer.status == 404 {
            return Ok(Vec::new());
        }
        parse(&checked(answer, "fetchInstances")?, "fetchInstances")
    }

    /// Create an instance; `jwt_key` goes to `webhook.headers.jwt_key` over stdin.
    pub async fn create(&self, request: &CreateRequest, jwt_key: Option<&str>) -> Result<Created> {
        let body = serde_json::to_value(request).expect("request serialises");
        let field: &[&str] = &["webhook", "headers", "jwt_key"];
        let secret = jwt_key.filter(|_| request.webhook.is_some()).map(|key| (field, key));
        let answer = self.call("POST", "/instance/create", Some(body), secret).await?;
        if answer.status == 403 {
            return Ok(Created::NameTaken);
        }
        let answer = checked(answer, "create")?;
        let status = answer.body["instance"]["status"].as_str().unwrap_or("unknown").to_owned();
        Ok(Created::Created { status })
    }

    /// Connect (QR, or a pairing code for `number`).
    pub async fn connect(&self, name: &str, number: Option<&str>) -> Result<Connect> {
        let mut path = format!("/instance/connect/{}", segment(name));
        if let Some(number) = number {
            path.push_str(&format!("?number={number}"));
        }
        let answer = checked(self.call("GET", &path, None, None).await?, "connect")?;
        let body = &answer.body;
        Ok(if body["instance"]["state"] == "open" {
            Connect::Open
        } else if let Some(code) = body["code"].as_str() {
            Connect::Qr {
                code: code.to_owned(),
                pairing_code: body["pairingCode"].as_str().map(str::to_owned),
                count: body["count"].as_u64().unwrap_or(0),
            }
        } else {
            Connect::NotReady { count: body["count"].as_u64().unwrap_or(0) }
        })
    }

    /// The live state: `open`, `connecting` or `close`.
    pub async fn connection_state(&self, name: &str) -> Result<String> {
        let path = format!("/instance/connectionState/{}", segment(name));
        live_state(self.call("GET", &path, None, None).await?, name)
    }

    /// The live state every `interval` for `duration`, from one exec session.
    pub async fn sample_states(
        &self,
        name: &str,
        duration: Duration,
        interval: Duration,
    ) -> Result<Vec<(Duration, String)>> {
        let path = format!("/instance/connectionState/{}", segment(name));
        let mut states = Vec::new();
        for (at, answer) in self.sample(&path, duration, interval).await? {
            states.push((at, live_state(answer, name)?));
        }
        Ok(states)
    }

    /// Log the instance out of WhatsApp.
    pub async fn logout(&self, name: &str) -> Result<()> {
        checked(self.call("DELETE", &format!("/instance/logout/{}", segment(name)), None, None).await?, "logout")?;
        Ok(())
    }

    /// Delete the instance (Evolution answers before its cleanup finishes).
    pub async fn delete(&self, name: &str) -> Result<()> {
        checked(self.call("DELETE", &format!("/instance/delete/{}", segment(name)), None, None).await?, "delete")?;
        Ok(())
    }

    /// Restart; the state it reports.
    pub async fn restart(&self, name: &str) -> Result<String> {
        let answer =
            checked(self.call("POST", &format!("/instance/restart/{}", segment(name)), None, None).await?, "restart")?;
        Ok(match answer.body["instance"]["state"].as_str() {
            Some(state) => state.to_owned(),
            None if answer.body.get("code").is_some() => "connecting".into(),
            None => "unknown".into(),
        })
    }

    /// The stored webhook, if any.
    /// Make the instance's webhook match `wanted` (the `jwt_key` sent over the data channel);
    /// `false` when it already did and nothing was written.
    pub async fn ensure_webhook(&self, name: &str, wanted: &WebhookRequest, jwt_key: Option<&str>) -> Result<bool> {
        if self.webhook_find(name).await?.is_some_and(|row| row.matches(wanted, jwt_key)) {
            return Ok(false);
        }
        self.webhook_set(name, wanted, jwt_key).await?;
        Ok(true)
    }

    pub async fn webhook_find(&self, name: &str) -> Result<Option<WebhookRow>> {
        let answer =
            checked(self.call("GET", &format!("/webhook/find/{}", segment(name)), None, None).await?, "webhook find")?;
        if answer.body.is_null() {
            return Ok(None);
        }
        parse(&answer, "webhook find").map(Some)
    }

    /// Set the webhook (always wrapped in `webhook`, always with `events`).
    pub async fn webhook_set(&self, name: &str, request: &WebhookRequest, jwt_key: Option<&str>) -> Result<()> {
        let body = serde_json::json!({"webhook": request});
        let field: &[&str] = &["webhook", "headers", "jwt_key"];
        let answer = self
            .call("POST", &format!("/webhook/set/{}", segment(name)), Some(body), jwt_key.map(|k| (field, k)))
            .await?;
        checked(answer, "webhook set")?;
        Ok(())
    }

    /// Whether the key in the container is the global key (`POST /verify-creds`).
    pub async fn verify_creds(&self) -> Result<bool> {
        let answer = self.call("POST", "/verify-creds", None, None).await?;
        Ok(answer.status == 200)
    }

    /// `GET /`: version and client name.
    pub async fn server_info(&self) -> Result<ServerInfo> {
        let answer = checked(self.call("GET", "/", None, None).await?, "GET /")?;
        parse(&answer, "GET /")
    }
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
