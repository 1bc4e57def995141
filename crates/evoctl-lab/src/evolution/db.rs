//! The stand-in's database: one store per `DATABASE_CONNECTION_URI`, holding the Prisma rows of
//! 2.3.7 that the API shows (`Instance` with its `Setting`, `Webhook` and `Session`), so two
//! processes pointed at one URI share rows, names and sessions. What a process holds in memory
//! (its `waInstances`) lives in [`super::process`], not here. Rows list in insertion order.

use indexmap::IndexMap;
use serde_json::{Value, json};

/// One `Instance` row with the relations the stand-in keeps.
#[derive(Debug, Clone)]
pub struct Row {
    pub id: String,
    pub name: String,
    pub connection_status: String,
    pub owner_jid: Option<String>,
    pub profile_name: Option<String>,
    pub profile_pic_url: Option<String>,
    pub integration: Option<String>,
    pub number: Option<String>,
    pub business_id: Option<String>,
    pub token: Option<String>,
    pub client_name: Option<String>,
    pub disconnection_reason_code: Option<i64>,
    pub disconnection_object: Option<String>,
    pub disconnection_at_ms: Option<u64>,
    pub created_ms: u64,
    pub updated_ms: u64,
    pub setting: Option<Setting>,
    pub webhook: Option<WebhookRow>,
    /// The `Session` row: Baileys' creds, with `me` set once paired.
    pub session_me: Option<String>,
    /// Lab only: every QR code shown for this row, oldest first.
    pub issued_codes: Vec<String>,
    /// Lab only: the code the phone scanned to link this row.
    pub scanned_code: Option<String>,
    /// Lab only: how often two processes replaced each other on this session, and when last.
    pub conflict_count: u64,
    pub last_conflict_ms: u64,
}

#[derive(Debug, Clone)]
pub struct Setting {
    pub id: String,
    pub values: Value,
    pub created_ms: u64,
    pub updated_ms: u64,
}

/// A `Webhook` row. `headers` and `events` are JSON columns stored as sent.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookRow {
    pub id: String,
    pub url: String,
    pub headers: Value,
    pub enabled: Value,
    pub events: Value,
    pub by_events: Value,
    pub base64: Value,
    pub created_ms: u64,
    pub updated_ms: u64,
}

/// One database.
#[derive(Debug, Default)]
pub struct Database {
    pub rows: IndexMap<String, Row>,
    /// 2.4: a licence was activated on this database (its `RuntimeConfig` rows, shared by every
    /// process that uses the database).
    pub licence_active: bool,
    /// 2.4: the licence identity (`RuntimeConfig`'s instance id), made when first needed.
    pub licence_instance_id: Option<String>,
    ids: u64,
}

impl Database {
    /// A cuid-like id (`c` and 24 base-36 characters), as Prisma's `@default(cuid())` makes.
    pub fn cuid(&mut self, now_ms: u64) -> String {
        self.ids += 1;
        let random = uuid::Uuid::new_v4().as_u128();
        let mut out = String::from("c");
        out.push_str(&base36(u128::from(now_ms), 8));
        out.push_str(&base36(u128::from(self.ids), 4));
        out.push_str(&base36(random >> 64, 4));
        out.push_str(&base36(random & u128::from(u64::MAX), 8));
        out
    }

    pub fn by_id(&self, id: &str) -> Option<&Row> {
        self.rows.values().find(|r| r.id == id)
    }

    pub fn by_id_mut(&mut self, id: &str) -> Option<&mut Row> {
        self.rows.values_mut().find(|r| r.id == id)
    }
}

fn base36(mut value: u128, width: usize) -> String {
    const DIGITS: &[u8] = b"0123456789abcdefghijklmnopqrstuvwxyz";
    let mut out = vec![b'0'; width];
    for slot in out.iter_mut().rev() {
        *slot = DIGITS[(value % 36) as usize];
        value /= 36;
    }
    String::from_utf8(out).unwrap_or_default()
}

impl Row {
    /// A fresh row as `saveInstance` writes it.
    pub fn new(id: String, name: &str, token: String, client_name: &str, integration: &str, now: u64) -> Row {
        Row {
            id,
            name: name.to_owned(),
            connection_status: if integration == "WHATSAPP-BAILEYS" { "close".into() } else { "open".into() },
            owner_jid: None,
            profile_name: None,
            profile_pic_url: None,
            integration: Some(integration.to_owned()),
            number: None,
            business_id: None,
            token: Some(token),
            client_name: Some(client_name.to_owned()),
            disconnection_reason_code: None,
            disconnection_object: None,
            disconnection_at_ms: None,
            created_ms: now,
            updated_ms: now,
            setting: None,
            webhook: None,
            session_me: None,
            issued_codes: Vec::new(),
            scanned_code: None,
            conflict_count: 0,
            last_conflict_ms: 0,
        }
    }

    /// A row whose session is already paired with `number` (scenario seeding).
    pub fn linked(id: String, name: &str, client_name: &str, number: &str, now: u64) -> Row {
        let mut row = Row::new(id.clone(), name, id.to_uppercase(), client_name, "WHATSAPP-BAILEYS", now);
        row.connection_status = "open".into();
        row.owner_jid = Some(format!("{number}@s.whatsapp.net"));
        row.profile_name = Some("Lab Phone".into());
        row.session_me = row.owner_jid.clone();
        row
    }

    /// The `fetchInstances` element (with its `include`s).
    pub fn row_json(&self) -> Value {
        json!({
            "id": self.id,
            "name": self.name,
            "connectionStatus": self.connection_status,
            "ownerJid": self.owner_jid,
            "profileName": self.profile_name,
            "profilePicUrl": self.profile_pic_url,
            "integration": self.integration,
            "number": self.number,
            "businessId": self.business_id,
            "token": self.token,
            "clientName": self.client_name,
            "disconnectionReasonCode": self.disconnection_reason_code,
            "disconnectionObject": self.disconnection_object,
            "disconnectionAt": self.disconnection_at_ms.map(iso),
            "createdAt": iso(self.created_ms),
            "updatedAt": iso(self.updated_ms),
            "Chatwoot": null, "Proxy": null, "Rabbitmq": null, "Nats": null, "Sqs": null, "Websocket": null,
            "Setting": self.setting.as_ref().map(|s| s.row_json(&self.id)),
            "_count": {"Message": 0, "Contact": 0, "Chat": 0},
        })
    }
}

impl Setting {
    pub fn row_json(&self, instance_id: &str) -> Value {
        let mut row = json!({
            "id": self.id,
            "createdAt": iso(self.created_ms),
            "updatedAt": iso(self.updated_ms),
            "instanceId": instance_id,
        });
        if let (Some(row), Some(values)) = (row.as_object_mut(), self.values.as_object()) {
            for (key, value) in values {
                row.insert(key.clone(), value.clone());
            }
        }
        row
    }
}

impl WebhookRow {
    /// The row as `webhook/find` and `webhook/set` answer it.
    pub fn row_json(&self, instance_id: &str) -> Value {
        json!({
            "id": self.id,
            "url": self.url,
            "headers": self.headers,
            "enabled": self.enabled,
            "events": self.events,
            "webhookByEvents": self.by_events,
            "webhookBase64": self.base64,
            "createdAt": iso(self.created_ms),
            "updatedAt": iso(self.updated_ms),
            "instanceId": instance_id,
        })
    }

    /// The stored event names (a non-array column delivers nothing).
    pub fn event_list(&self) -> Vec<String> {
        self.events
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
            .unwrap_or_default()
    }

    pub fn is_enabled(&self) -> bool {
        js_truthy(&self.enabled)
    }

    pub fn by_events(&self) -> bool {
        js_truthy(&self.by_events)
    }
}

/// JavaScript truthiness of a JSON value.
pub fn js_truthy(value: &Value) -> bool {
    match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0 && !f.is_nan()),
        Value::String(s) => !s.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}

/// Epoch ms as an ISO-8601 UTC timestamp with milliseconds (`toISOString`).
pub fn iso(ms: u64) -> String {
    aws_smithy_types::DateTime::from_millis(ms as i64)
        .fmt(aws_smithy_types::date_time::Format::DateTime)
        .map(|text| {
            // `toISOString` always prints milliseconds.
            if text.contains('.') {
                let (head, frac) = text.trim_end_matches('Z').split_once('.').unwrap_or((&text, ""));
                format!("{head}.{:0<3}Z", &frac[..frac.len().min(3)])
            } else {
                format!("{}.000Z", text.trim_end_matches('Z'))
            }
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #[test]
    fn iso_formats_as_to_iso_string() {
        assert_eq!(super::iso(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(super::iso(1_503_434_274_948), "2017-08-22T20:37:54.948Z");
        assert_eq!(super::iso(1_795_305_600_001), "2026-11-22T00:00:00.001Z");
        assert_eq!(super::iso(1_795_305_600_100), "2026-11-22T00:00:00.100Z");
    }

    #[test]
    fn cuids_look_like_prisma_ids() {
        let mut db = super::Database::default();
        let id = db.cuid(1_796_157_761_000);
        assert_eq!(id.len(), 25);
        assert!(id.starts_with('c') && id.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit()));
        assert_ne!(id, db.cuid(1_796_157_761_000));
    }
}
