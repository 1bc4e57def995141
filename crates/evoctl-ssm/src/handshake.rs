//! The client's side of the handshake KMS-encrypted sessions and port sessions open with,
//! sans-IO: what the agent's HandshakeRequest asks for (the session type, the KMS key and its
//! random challenge, a port session's properties), the encryption context that GenerateDataKey
//! and the agent's Decrypt must share, the client's HandshakeResponse, and for port sessions the
//! client version to announce and the mode it puts the agent in ([`port_mode`]). The agent's half (building the request, checking the response)
//! lives in the lab crate, `crates/evoctl-lab`. Sending, KMS calls and the encryption itself
//! live elsewhere.

use super::messages::{HandshakeRequest, HandshakeResponse, ProcessedClientAction};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};
use std::collections::BTreeMap;

pub const SESSION_TYPE: &str = "SessionType";
pub const KMS_ENCRYPTION: &str = "KMSEncryption";
/// The session type ECS Exec asks for.
pub const INTERACTIVE_COMMANDS: &str = "InteractiveCommands";
/// Session types a shell client handles (the official plugin treats these three alike).
const SHELL_SESSION_TYPES: &[&str] = &["Standard_Stream", INTERACTIVE_COMMANDS, "NonInteractiveCommands"];

/// The session type of `AWS-StartPortForwardingSession(ToRemoteHost)`.
pub const PORT: &str = "Port";
/// The `type` property of both port-forwarding documents; any other type gets a single stream.
pub const LOCAL_PORT_FORWARDING: &str = "LocalPortForwarding";

/// The ClientVersion a port client announces. The agent multiplexes with smux for clients at or
/// above 1.1.70, and turns its own smux keep-alive off only for clients above 1.2.331.0
/// (`agent/session/plugins/port/port.go`, `port_mux.go`); this is a released plugin version past
/// both, so a current agent neither pings nor drops an idle forward and Session Manager's idle
/// timeout still applies, as with the official plugin. Agents that predate that switch keep
/// their keep-alive on whatever the client says: [`port_mode`] says when the client must send
/// keep-alives for them.
pub const PORT_CLIENT_VERSION: &str = "1.2.677.0";
/// Agents at or below this speak only single-stream ("basic") port forwarding (the plugin's
/// `TCPMultiplexingSupportedAfterThisAgentVersion`).
pub const MUX_AFTER_AGENT: &str = "3.0.196.0";
/// Agents at or below this keep smux keep-alive on for every client (the plugin's
/// `TCPMultiplexingWithSmuxKeepAliveDisabledAfterThisAgentVersion`): they close a smux session
/// that sends them nothing for 30 s, so the client sends a NOP every [`KEEPALIVE_EVERY_MS`].
pub const KEEPALIVE_OFF_AFTER_AGENT: &str = "3.1.1511.0";
/// How often a client keeps an old agent's smux session alive (smux's own interval; the agent
/// gives up after 30 s).
pub const KEEPALIVE_EVERY_MS: u64 = 10_000;

const STATUS_SUCCESS: i32 = 1;
const STATUS_FAILED: i32 = 2;
const STATUS_UNSUPPORTED: i32 = 3;

/// The KMS encryption an agent asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KmsAction {
    /// The cluster's `executeCommandConfiguration.kmsKeyId`, as the agent has it.
    pub key_id: String,
    /// The agent's random challenge (agents from 3.3.808 on); acknowledged when present.
    pub challenge: Option<String>,
}

/// What one HandshakeRequest asks of the client.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Requested {
    pub kms: Option<KmsAction>,
    /// What this client cannot honour (a port session, an unknown action), for the error.
    pub refused: Vec<String>,
}

/// A port session's properties, as the document gave them to the agent.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PortProperties {
    /// `portNumber`: the destination port in the task (or on `host`).
    pub port_number: String,
    /// `host` (`AWS-StartPortForwardingSessionToRemoteHost`); empty for the task itself.
    pub host: String,
    /// `type` (`LocalPortForwarding` for both documents).
    pub kind: String,
}

/// How a port session carries connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortMode {
    /// One connection at a time, raw bytes; a closed local connection is the DisconnectToPort flag.
    Basic,
    /// smux v1 streams, one per connection; `keepalive`: send a NOP every
    /// [`KEEPALIVE_EVERY_MS`] (the agent drops a silent session otherwise).
    Mux { keepalive: bool },
}

/// What a port session's HandshakeRequest asks: its properties, and what a port client cannot
/// honour (another session type, KMS, an unknown action).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PortRequest {
    pub agent_version: String,
    pub properties: PortProperties,
    pub refused: Vec<String>,
}

/// Read a port session's HandshakeRequest.
pub fn read_port_request(request: &HandshakeRequest) -> PortRequest {
    let mut read = PortRequest { agent_version: request.agent_version.clone(), ..PortRequest::default() };
    let mut port = false;
    for action in &request.requested_client_actions {
        match action.action_type.as_str() {
            SESSION_TYPE => {
                let parameters = &action.action_parameters;
                let session_type = parameters.get("SessionType").and_then(Value::as_str).unwrap_or_default();
                if session_type != PORT {
                    read.refused.push(format!("session type `{session_type}`"));
                    continue;
                }
                port = true;
                let property = |name: &str| {
                    parameters.get("Properties").and_then(|p| p.get(name)).and_then(Value::as_str).unwrap_or_default()
                };
                read.properties = PortProperties {
                    port_number: property("portNumber").to_owned(),
                    host: property("host").to_owned(),
                    kind: property("type").to_owned(),
                };
            }
            KMS_ENCRYPTION => read.refused.push("KMS encryption (port sessions are never encrypted)".into()),
            other => read.refused.push(format!("action `{other}`")),
        }
    }
    if !port && read.refused.is_empty() {
        read.refused.push("no session type".into());
    }
    read
}

/// The mode a port session runs in, from the agent's version and the document's type, as the
/// agent and the official plugin decide it: smux for `LocalPortForwarding` on agents above
/// [`MUX_AFTER_AGENT`] (the agent checks the client version, [`PORT_CLIENT_VERSION`] passes),
/// single-stream otherwise; keep-alives from the client only for agents at or below
/// [`KEEPALIVE_OFF_AFTER_AGENT`]. A version that does not parse counts as old, as in the plugin.
pub fn port_mode(agent_version: &str, properties: &PortProperties) -> PortMode {
    if properties.kind != LOCAL_PORT_FORWARDING || !version_above(agent_version, MUX_AFTER_AGENT) {
        return PortMode::Basic;
    }
    PortMode::Mux { keepalive: !version_above(agent_version, KEEPALIVE_OFF_AFTER_AGENT) }
}

/// Whether dotted numeric `version` is above `than` (missing parts are 0); an unparsable
/// version is not.
pub fn version_above(version: &str, than: &str) -> bool {
    fn parts(v: &str) -> Option<Vec<u64>> {
        v.trim().split('.').map(|p| p.parse().ok()).collect()
    }
    let (Some(mut a), Some(mut b)) = (parts(version), parts(than)) else { return false };
    let len = a.len().max(b.len());
    a.resize(len, 0);
    b.resize(len, 0);
    a > b
}

/// The HandshakeResponse of a port client: the Port session type accepted, anything else
/// Unsupported (the agent then ends the session), announcing [`PORT_CLIENT_VERSION`].
pub fn port_response(request: &HandshakeRequest) -> HandshakeResponse {
    answer(request, None, PORT_CLIENT_VERSION, &[PORT])
}

/// Read the agent's request.
pub fn read_request(request: &HandshakeRequest) -> Requested {
    let mut requested = Requested::default();
    for action in &request.requested_client_actions {
        let parameter = |name: &str| action.action_parameters.get(name).and_then(Value::as_str).unwrap_or_default();
        match action.action_type.as_str() {
            SESSION_TYPE => {
                let session_type = parameter("SessionType");
                if !SHELL_SESSION_TYPES.contains(&session_type) {
                    requested.refused.push(format!("session type `{session_type}`"));
                }
            }
            KMS_ENCRYPTION => {
                let key_id = parameter("KMSKeyId");
                if key_id.is_empty() {
                    requested.refused.push("KMS encryption without a KMSKeyId".into());
                } else {
                    let challenge = Some(parameter("Challenge")).filter(|c| !c.is_empty()).map(str::to_owned);
                    requested.kms = Some(KmsAction { key_id: key_id.to_owned(), challenge });
                }
            }
            other => requested.refused.push(format!("action `{other}`")),
        }
    }
    requested
}

/// The encryption context of the session's data key: the session and target ids, and the
/// agent's random challenge when the client acknowledges it.
pub fn encryption_context(session_id: &str, target: &str, challenge: Option<&str>) -> BTreeMap<String, String> {
    let mut context = BTreeMap::from([
        ("aws:ssm:SessionId".to_owned(), session_id.to_owned()),
        ("aws:ssm:TargetId".to_owned(), target.to_owned()),
    ]);
    if let Some(challenge) = challenge {
        context.insert("aws:ssm:RandomChallenge".to_owned(), challenge.to_owned());
    }
    context
}

/// The KMS part of a HandshakeResponse: the data key's ciphertext, and whether the key is bound
/// to the agent's challenge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KmsReply {
    pub ciphertext: Vec<u8>,
    pub challenge_acknowledged: bool,
}

/// The client's HandshakeResponse: every requested action in the request's order. The KMS one
/// carries the data key's ciphertext and, when the key was bound to it, acknowledges the
/// challenge; what this client cannot do is reported Unsupported (the agent then ends the
/// session).
pub fn response(request: &HandshakeRequest, kms: Option<&KmsReply>, client_version: &str) -> HandshakeResponse {
    answer(request, kms, client_version, SHELL_SESSION_TYPES)
}

fn answer(
    request: &HandshakeRequest,
    kms: Option<&KmsReply>,
    client_version: &str,
    session_types: &[&str],
) -> HandshakeResponse {
    let mut errors = Vec::new();
    let mut processed = Vec::new();
    for action in &request.requested_client_actions {
        let kind = action.action_type.as_str();
        let session_type_ok = kind == SESSION_TYPE
            && action
                .action_parameters
                .get("SessionType")
                .and_then(Value::as_str)
                .is_some_and(|t| session_types.contains(&t));
        let (status, result, error) = match (kind, kms) {
            (SESSION_TYPE, _) if session_type_ok => (STATUS_SUCCESS, Value::Null, String::new()),
            (KMS_ENCRYPTION, Some(kms)) => {
                let mut result = json!({"KMSCipherTextKey": BASE64.encode(&kms.ciphertext), "KMSCipherTextHash": null});
                if kms.challenge_acknowledged {
                    result["ChallengeAcknowledgement"] = json!(true);
                }
                (STATUS_SUCCESS, result, String::new())
            }
            (KMS_ENCRYPTION, None) => {
                (STATUS_FAILED, Value::Null, format!("Failed to process action {kind}: no data key"))
            }
            _ => (STATUS_UNSUPPORTED, Value::Null, format!("Failed to process action {kind}: unsupported")),
        };
        if !error.is_empty() {
            errors.push(error.clone());
        }
        processed.push(ProcessedClientAction {
            action_type: kind.to_owned(),
            action_status: status,
            action_result: result,
            error,
        });
    }
    HandshakeResponse {
        client_version: client_version.to_owned(),
        processed_client_actions: processed,
        errors: (!errors.is_empty()).then_some(errors),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::RequestedClientAction;

    const KEY: &str = "arn:aws:kms:us-east-1:111122223333:key/k1";

    fn kms(challenge: Option<&str>) -> KmsAction {
        KmsAction { key_id: KEY.into(), challenge: challenge.map(str::to_owned) }
    }

    /// The request an ECS Exec agent sends, as JSON on the wire (session type first, then KMS
    /// when configured).
    fn agent_request(agent_version: &str, challenge: Option<Option<&str>>) -> HandshakeRequest {
        let mut actions = vec![
            json!({"ActionType": "SessionType", "ActionParameters": {"SessionType": "InteractiveCommands", "Properties": null}}),
        ];
        if let Some(challenge) = challenge {
            actions.push(json!({"ActionType": "KMSEncryption", "ActionParameters": {"KMSKeyId": KEY, "Challenge": challenge.unwrap_or_default()}}));
        }
        let wire = json!({"AgentVersion": agent_version, "RequestedClientActions": actions}).to_string();
        serde_json::from_str(&wire).unwrap()
    }

    fn as_value(text: &str) -> Value {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn the_agents_request_is_read_and_the_response_has_the_plugins_shape() {
        let wire = r#"{"AgentVersion":"3.3.1802.0","RequestedClientActions":[{"ActionType":"SessionType","ActionParameters":{"SessionType":"InteractiveCommands","Properties":null}},{"ActionType":"KMSEncryption","ActionParameters":{"KMSKeyId":"arn:aws:kms:us-east-1:111122223333:key/k1","Challenge":"Y2hhbGxlbmdl"}}]}"#;
        let parsed: HandshakeRequest = serde_json::from_str(wire).unwrap();
        assert_eq!(parsed, agent_request("3.3.1802.0", Some(Some("Y2hhbGxlbmdl"))));
        assert_eq!(read_request(&parsed), Requested { kms: Some(kms(Some("Y2hhbGxlbmdl"))), refused: vec![] });

        let blob = KmsReply { ciphertext: b"blob".to_vec(), challenge_acknowledged: true };
        let reply = response(&parsed, Some(&blob), "evoctl-0.1.0");
        assert_eq!(
            as_value(&serde_json::to_string(&reply).unwrap()),
            as_value(
                r#"{"ClientVersion":"evoctl-0.1.0","ProcessedClientActions":[{"ActionType":"SessionType","ActionStatus":1,"ActionResult":null,"Error":""},{"ActionType":"KMSEncryption","ActionStatus":1,"ActionResult":{"KMSCipherTextKey":"YmxvYg==","KMSCipherTextHash":null,"ChallengeAcknowledgement":true},"Error":""}],"Errors":null}"#
            )
        );
    }

    #[test]
    fn without_a_challenge_nothing_is_acknowledged_and_the_context_has_two_keys() {
        let request = agent_request("3.2.0.0", Some(None));
        assert_eq!(read_request(&request).kms, Some(kms(None)), "an empty challenge is none");
        let plain = KmsReply { ciphertext: b"k".to_vec(), challenge_acknowledged: false };
        let reply = response(&request, Some(&plain), "v");
        assert_eq!(reply.processed_client_actions[1].action_status, 1);
        assert_eq!(reply.processed_client_actions[1].action_result.get("ChallengeAcknowledgement"), None);
        assert_eq!(reply.processed_client_actions[1].action_result["KMSCipherTextKey"], "aw==");
        assert_eq!(reply.errors, None);
        assert_eq!(
            serde_json::to_string(&encryption_context("s-1", "ecs:c_t_r", None)).unwrap(),
            r#"{"aws:ssm:SessionId":"s-1","aws:ssm:TargetId":"ecs:c_t_r"}"#
        );
        assert_eq!(
            serde_json::to_string(&encryption_context("s-1", "ecs:c_t_r", Some("ch"))).unwrap(),
            r#"{"aws:ssm:RandomChallenge":"ch","aws:ssm:SessionId":"s-1","aws:ssm:TargetId":"ecs:c_t_r"}"#
        );
    }

    #[test]
    fn a_port_session_or_unknown_action_is_refused_and_reported_unsupported() {
        let mut request = agent_request("3.3.0.0", None);
        request.requested_client_actions[0].action_parameters = json!({"SessionType": "Port"});
        request
            .requested_client_actions
            .push(RequestedClientAction { action_type: "Telepathy".into(), action_parameters: Value::Null });
        assert_eq!(read_request(&request).refused, ["session type `Port`", "action `Telepathy`"]);
        let reply = response(&request, None, "v");
        let statuses: Vec<i32> = reply.processed_client_actions.iter().map(|a| a.action_status).collect();
        assert_eq!(statuses, [3, 3]);
        assert_eq!(
            reply.errors.as_deref(),
            Some(
                [
                    "Failed to process action SessionType: unsupported".to_owned(),
                    "Failed to process action Telepathy: unsupported".to_owned()
                ]
                .as_slice()
            )
        );
    }

    /// A port session's request as the agent sends it (the document's properties, strings).
    fn port_request(agent_version: &str, properties: Value) -> HandshakeRequest {
        let wire = json!({"AgentVersion": agent_version, "RequestedClientActions": [
            {"ActionType": "SessionType", "ActionParameters": {"SessionType": "Port", "Properties": properties}}
        ]})
        .to_string();
        serde_json::from_str(&wire).unwrap()
    }

    #[test]
    fn a_port_request_is_read_and_answered_with_the_port_client_version() {
        let wire = r#"{"AgentVersion":"3.3.1802.0","RequestedClientActions":[{"ActionType":"SessionType","ActionParameters":{"SessionType":"Port","Properties":{"portNumber":"8080","type":"LocalPortForwarding","localPortNumber":"0","host":"db.internal"}}}]}"#;
        let request: HandshakeRequest = serde_json::from_str(wire).unwrap();
        assert_eq!(
            request,
            port_request(
                "3.3.1802.0",
                json!({"portNumber": "8080", "type": "LocalPortForwarding", "localPortNumber": "0", "host": "db.internal"})
            )
        );
        let read = read_port_request(&request);
        assert_eq!(
            read,
            PortRequest {
                agent_version: "3.3.1802.0".into(),
                properties: PortProperties {
                    port_number: "8080".into(),
                    host: "db.internal".into(),
                    kind: "LocalPortForwarding".into()
                },
                refused: vec![],
            }
        );
        assert_eq!(
            as_value(&serde_json::to_string(&port_response(&request)).unwrap()),
            as_value(
                r#"{"ClientVersion":"1.2.677.0","ProcessedClientActions":[{"ActionType":"SessionType","ActionStatus":1,"ActionResult":null,"Error":""}],"Errors":null}"#
            )
        );
        // A shell client still refuses it.
        assert_eq!(read_request(&request).refused, ["session type `Port`"]);
    }

    #[test]
    fn a_port_client_refuses_shells_and_kms() {
        let shell = agent_request("3.3.0.0", Some(None));
        let read = read_port_request(&shell);
        assert_eq!(
            read.refused,
            ["session type `InteractiveCommands`", "KMS encryption (port sessions are never encrypted)"]
        );
        let statuses: Vec<i32> =
            port_response(&shell).processed_client_actions.iter().map(|a| a.action_status).collect();
        assert_eq!(statuses, [3, 2]);
        let empty: HandshakeRequest = serde_json::from_str(r#"{"AgentVersion":"3.3.0.0"}"#).unwrap();
        assert_eq!(read_port_request(&empty).refused, ["no session type"]);
    }

    /// The thresholds are the agent's and the plugin's (port.go, port_mux.go, the plugin's
    /// config.go): smux above 3.0.196.0, the client's keep-alive up to 3.1.1511.0 only.
    #[test]
    fn the_port_mode_follows_the_agent_version_and_document_type() {
        let local =
            PortProperties { port_number: "80".into(), host: String::new(), kind: LOCAL_PORT_FORWARDING.into() };
        let cases = [
            ("2.3.722.0", PortMode::Basic),
            ("3.0.196.0", PortMode::Basic),
            ("3.0.196.1", PortMode::Mux { keepalive: true }),
            ("3.0.222.0", PortMode::Mux { keepalive: true }),
            ("3.1.1511.0", PortMode::Mux { keepalive: true }),
            ("3.1.1511.1", PortMode::Mux { keepalive: false }),
            ("3.1.1732.0", PortMode::Mux { keepalive: false }),
            ("3.3.1802.0", PortMode::Mux { keepalive: false }),
            ("3.10", PortMode::Mux { keepalive: false }),
            ("", PortMode::Basic),
            ("3.x.1", PortMode::Basic),
        ];
        for (version, mode) in cases {
            assert_eq!(port_mode(version, &local), mode, "agent {version}");
        }
        let other = PortProperties { kind: "Other".into(), ..local.clone() };
        assert_eq!(port_mode("3.3.1802.0", &other), PortMode::Basic);
        // The announced version is past both of the agent's client thresholds.
        assert!(version_above(PORT_CLIENT_VERSION, "1.2.331.0"));
        assert!(!version_above("1.1.70", PORT_CLIENT_VERSION));
        assert!(version_above(PORT_CLIENT_VERSION, "1.1.69.9"));
    }

    #[test]
    fn kms_without_a_data_key_or_a_key_id_fails() {
        let request = agent_request("3.3.0.0", Some(None));
        let reply = response(&request, None, "v");
        assert_eq!(reply.processed_client_actions[1].action_status, 2);
        assert_eq!(reply.processed_client_actions[1].error, "Failed to process action KMSEncryption: no data key");
        assert_eq!(reply.errors.as_ref().map(Vec::len), Some(1));
        let mut no_key = request.clone();
        no_key.requested_client_actions[1].action_parameters = json!({"KMSKeyId": ""});
        assert_eq!(
            read_request(&no_key),
            Requested { kms: None, refused: vec!["KMS encryption without a KMSKeyId".into()] }
        );
    }
}
