//! The simulator's database: instances and their webhooks, one store per
//! `DATABASE_CONNECTION_URI`, so two tasks pointed at one database share instances and
//! WhatsApp sessions (which is how the conflict loop starts).

use indexmap::IndexMap;
use serde_json::{Value, json};

/// One `Instance` row plus the in-memory Baileys state of the process that loaded it.
#[derive(Debug, Clone)]
pub struct Instance {
    pub id: String,
    pub name: String,
    pub token: String,
    pub client_name: String,
    pub integration: String,
    /// The DB `connectionStatus` (lags the live state during reconnect loops).
    pub connection_status: String,
    /// The live state: `close`, `connecting` or `open`.
    pub state: String,
    pub owner_jid: Option<String>,
    pub profile_name: Option<String>,
    /// Number for pairing codes (create body or `connect?number=`).
    pub number: Option<String>,
    pub settings: Value,
    pub webhook: Option<Webhook>,
    pub qr: Option<Qr>,
    /// QRs generated in this process life (reset only by the limit or a restart).
    pub qr_count: u32,
    pub created_ms: u64,
    /// A delete whose cleanup never ran (the empty `jwt_key` cascade).
    pub stuck_delete: bool,
    /// When two processes last kicked each other off this session (440 conflict).
    pub last_conflict_ms: u64,
    /// How many times the session was replaced (each replacement kicks the next process).
    pub conflict_count: u64,
    /// Every QR code shown for this row, oldest first (tests check what a client rendered).
    pub issued_codes: Vec<String>,
    /// When the current QR flow began (the first QR of this connect), for the auto-scan.
    pub qr_flow_started_ms: u64,
    /// The code the phone scanned to link this row.
    pub scanned_code: Option<String>,
}

#[derive(Debug, Clone)]
pub struct Qr {
    pub code: String,
    pub pairing_code: Option<String>,
    pub generated_ms: u64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Webhook {
    pub id: String,
    pub url: String,
    pub enabled: bool,
    pub events: Vec<String>,
    pub by_events: bool,
    pub base64: bool,
    pub headers: Value,
    pub created_ms: u64,
    pub updated_ms: u64,
}

/// One database.
#[derive(Debug, Default)]
pub struct Database {
    pub instances: IndexMap<String, Instance>,
}

impl Instance {
    /// A fresh `close` row, as create makes it.
    pub fn new(id: String, name: &str, token: String, client_name: &str, now: u64) -> Instance {
        Instance {
            id,
            name: name.to_owned(),
            token,
            client_name: client_name.to_owned(),
            integration: "WHATSAPP-BAILEYS".into(),
            connection_status: "close".into(),
            state: "close".into(),
            owner_jid: None,
            profile_name: None,
            number: None,
            settings: json!({}),
            webhook: None,
            qr: None,
            qr_count: 0,
            created_ms: now,
            stuck_delete: false,
            last_conflict_ms: 0,
            conflict_count: 0,
            issued_codes: Vec::new(),
            qr_flow_started_ms: 0,
            scanned_code: None,
        }
    }

    /// A row whose session is already paired with `number` (scenario seeding).
    pub fn linked(id: String, name: &str, client_name: &str, number: &str, now: u64) -> Instance {
        let token = id.to_uppercase();
        let mut instance = Instance::new(id, name, token, client_name, now);
        instance.connection_status = "open".into();
        instance.state = "open".into();
        instance.owner_jid = Some(format!("{number}@s.whatsapp.net"));
        instance.profile_name = Some("Lab Phone".into());
        instance
    }

    /// The fetchInstances element.
    pub fn row_json(&self) -> Value {
        json!({
            "id": self.id,
            "name": self.name,
            "connectionStatus": self.connection_status,
            "ownerJid": self.owner_jid,
            "profileName": self.profile_name,
            "profilePicUrl": null,
            "integration": self.integration,
            "number": self.number,
            "businessId": null,
            "token": self.token,
            "clientName": self.client_name,
            "disconnectionReasonCode": null,
            "disconnectionObject": null,
            "disconnectionAt": null,
            "createdAt": iso(self.created_ms),
            "updatedAt": iso(self.created_ms),
            "Chatwoot": null, "Proxy": null, "Rabbitmq": null, "Nats": null, "Sqs": null, "Websocket": null,
            "Setting": self.settings,
            "_count": {"Message": 0, "Contact": 0, "Chat": 0},
        })
    }

    /// The QR object of connect/create.
    pub fn qr_json(&self) -> Value {
        match &self.qr {
            Some(qr) => json!({
                "pairingCode": qr.pairing_code,
                "code": qr.code,
                "base64": "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAVQAAAFUCAYAAAB7ksS1AAAjs0lEQVR4AezB",
                "count": self.qr_count,
            }),
            None => json!({"count": self.qr_count}),
        }
    }
}

impl Webhook {
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
}

/// Epoch ms as an ISO-8601 UTC timestamp.
pub fn iso(ms: u64) -> String {
    aws_smithy_types::DateTime::from_millis(ms as i64)
        .fmt(aws_smithy_types::date_time::Format::DateTime)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    #[test]
    fn iso_formats_utc() {
        assert_eq!(super::iso(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::iso(1_503_434_274_948), "2017-08-22T20:37:54.948Z");
        assert_eq!(super::iso(1_795_305_600_001), "2026-11-22T00:00:00.001Z");
    }
}
