//! The Port session agent's rules, sans-IO, read from amazon-ssm-agent
//! (`agent/session/plugins/port/`, `agent/versionutil/versionutil.go`) and the plugin's
//! version thresholds (`src/config/config.go`), for the lab alone: how versions compare, which
//! mode a session runs in (smux multiplexing or one connection at a time), whether the agent's
//! smux keep-alive is on, the HandshakeRequest's SessionType action for a port document, the
//! client's HandshakeResponse, the flags and the remote addresses the agent refuses.

use crate::state::PortRequest;
use serde::Serialize;
use serde_json::{Value, json};
use std::cmp::Ordering;

/// The client version from which the agent multiplexes (`muxSupportedClientVersion`).
pub const MUX_CLIENT_VERSION: &str = "1.1.70";
/// Above this client version the agent turns its smux keep-alive off
/// (`muxKeepAliveDisabledAfterThisClientVersion`).
pub const KEEP_ALIVE_OFF_AFTER_CLIENT: &str = "1.2.331.0";
/// Agents at or below this version forward one connection at a time (the plugin's
/// `TCPMultiplexingSupportedAfterThisAgentVersion`).
pub const MUX_AFTER_AGENT: &str = "3.0.196.0";
/// Agents above this version turn their smux keep-alive off for new clients (the plugin's
/// `TCPMultiplexingWithSmuxKeepAliveDisabledAfterThisAgentVersion`); older ones keep it on.
pub const KEEP_ALIVE_OFF_AFTER_AGENT: &str = "3.1.1511.0";
/// The port type both port documents give (`mgsConfig.LocalPortForwarding`).
pub const LOCAL_PORT_FORWARDING: &str = "LocalPortForwarding";
/// Bytes per read of the smux byte stream or the basic connection (`StreamDataPayloadSize`):
/// each Output message carries at most this, whatever the smux frames inside it.
pub const STREAM_DATA_PAYLOAD_SIZE: usize = 1024;
/// xtaci/smux's `DefaultConfig`: a NOP every 10 s, the session closed after 30 s without a
/// frame from the peer, frames of at most 32 KiB.
pub const KEEP_ALIVE_INTERVAL_SECS: u64 = 10;
pub const KEEP_ALIVE_TIMEOUT_SECS: u64 = 30;
pub const MAX_FRAME_SIZE: usize = 32 * 1024;
/// Flag payloads (PayloadType 10, u32 big-endian).
pub const FLAG_DISCONNECT_TO_PORT: u32 = 1;
pub const FLAG_TERMINATE_SESSION: u32 = 2;
pub const FLAG_CONNECT_TO_PORT_ERROR: u32 = 3;
/// Remote addresses the agent never forwards to (`DefaultDeniedPortForwardingRemoteIPs`: the
/// instance metadata, DNS and time services).
pub const DENIED_REMOTE_IPS: &[&str] = &[
    "169.254.169.254",
    "fd00:ec2::254",
    "169.254.169.253",
    "fd00:ec2::253",
    "169.254.169.123",
    "fd00:ec2::123",
    "169.254.169.250",
    "169.254.169.251",
    "fd00:ec2::240",
];

/// `versionutil.Compare(a, b, true)`: when both are semantic versions (exactly three numeric
/// parts, maybe a pre-release or build suffix) by semver's rules; otherwise part by part on
/// the dots, numerically where both parts are numbers and as text where not, and when one runs
/// out first the one with fewer parts is the lesser (so `1.1.70` < `1.1.70.0`).
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    if let (Some(x), Some(y)) = (semver(a), semver(b)) {
        return x.0.cmp(&y.0).then_with(|| compare_pre_release(x.1, y.1));
    }
    let (xs, ys): (Vec<&str>, Vec<&str>) = (a.split('.').collect(), b.split('.').collect());
    for (x, y) in xs.iter().zip(&ys) {
        let order = match (x.parse::<i64>(), y.parse::<i64>()) {
            (Ok(x), Ok(y)) => x.cmp(&y),
            _ => x.cmp(y),
        };
        if order != Ordering::Equal {
            return order;
        }
    }
    xs.len().cmp(&ys.len())
}

/// `major.minor.patch` and the pre-release part, when `text` is a semantic version.
fn semver(text: &str) -> Option<([i64; 3], Option<&str>)> {
    let core = text.split_once('+').map_or(text, |(core, _)| core);
    let (core, pre) = match core.split_once('-') {
        Some((core, pre)) => (core, Some(pre)),
        None => (core, None),
    };
    let parts: Vec<&str> = core.split('.').collect();
    if parts.len() != 3 {
        return None;
    }
    let mut numbers = [0i64; 3];
    for (slot, part) in numbers.iter_mut().zip(&parts) {
        *slot = part.parse().ok()?;
    }
    Some((numbers, pre))
}

/// A version without a pre-release ranks above one with; pre-releases compare identifier by
/// identifier (numbers numerically and below text).
fn compare_pre_release(a: Option<&str>, b: Option<&str>) -> Ordering {
    match (a, b) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Greater,
        (Some(_), None) => Ordering::Less,
        (Some(a), Some(b)) => {
            let (xs, ys): (Vec<&str>, Vec<&str>) = (a.split('.').collect(), b.split('.').collect());
            for (x, y) in xs.iter().zip(&ys) {
                let order = match (x.parse::<u64>(), y.parse::<u64>()) {
                    (Ok(x), Ok(y)) => x.cmp(&y),
                    (Ok(_), Err(_)) => Ordering::Less,
                    (Err(_), Ok(_)) => Ordering::Greater,
                    _ => x.cmp(y),
                };
                if order != Ordering::Equal {
                    return order;
                }
            }
            xs.len().cmp(&ys.len())
        }
    }
}

/// How a port session forwards.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum PortMode {
    /// smux v1 over the data channel, one stream per connection; `keep_alive`: the agent's
    /// smux sends NOPs and closes the session after 30 s without a frame from the client.
    Mux { keep_alive: bool },
    /// One connection at a time, its bytes straight in Output messages.
    Basic,
}

/// The mode the agent runs: an agent at or below 3.0.196.0 has no multiplexing; a newer one
/// multiplexes for a LocalPortForwarding session whose client is at or above 1.1.70
/// (`GetSession`), and turns its keep-alive off only for a client above 1.2.331.0 (agents at
/// or below 3.1.1511.0 never do).
pub fn port_mode(agent_version: &str, client_version: &str, port_type: &str) -> PortMode {
    let agent_muxes = compare_versions(agent_version, MUX_AFTER_AGENT) == Ordering::Greater;
    let client_muxes = compare_versions(client_version, MUX_CLIENT_VERSION) != Ordering::Less;
    if !agent_muxes || port_type != LOCAL_PORT_FORWARDING || !client_muxes {
        return PortMode::Basic;
    }
    let agent_disables = compare_versions(agent_version, KEEP_ALIVE_OFF_AFTER_AGENT) == Ordering::Greater;
    let client_disables = compare_versions(client_version, KEEP_ALIVE_OFF_AFTER_CLIENT) == Ordering::Greater;
    PortMode::Mux { keep_alive: !(agent_disables && client_disables) }
}

/// The session properties the agent gets from the document (and passes on unchanged in the
/// HandshakeRequest): Go marshals them from a map, so the keys come sorted.
pub fn session_properties(request: &PortRequest) -> Value {
    let mut properties = serde_json::Map::new();
    if let Some(host) = &request.host {
        properties.insert("host".into(), json!(host));
    }
    properties.insert("localPortNumber".into(), json!(request.local_port_number));
    properties.insert("portNumber".into(), json!(request.port_number));
    properties.insert("type".into(), json!(LOCAL_PORT_FORWARDING));
    Value::Object(properties)
}

/// The HandshakeRequest of a Port session: one SessionType action (no KMSEncryption: port
/// sessions are never encrypted), its fields in the agent's struct order.
pub fn handshake_request(agent_version: &str, request: &PortRequest) -> Vec<u8> {
    #[derive(Serialize)]
    struct Body<'a> {
        #[serde(rename = "AgentVersion")]
        agent_version: &'a str,
        #[serde(rename = "RequestedClientActions")]
        actions: [Action; 1],
    }
    #[derive(Serialize)]
    struct Action {
        #[serde(rename = "ActionType")]
        action_type: &'static str,
        #[serde(rename = "ActionParameters")]
        parameters: SessionTypeRequest,
    }
    #[derive(Serialize)]
    struct SessionTypeRequest {
        #[serde(rename = "SessionType")]
        session_type: &'static str,
        #[serde(rename = "Properties")]
        properties: Value,
    }
    let body = Body {
        agent_version,
        actions: [Action {
            action_type: "SessionType",
            parameters: SessionTypeRequest { session_type: "Port", properties: session_properties(request) },
        }],
    };
    serde_json::to_vec(&body).expect("serialises")
}

/// The client's HandshakeResponse as the agent reads it: its ClientVersion (empty when absent,
/// as Go's zero value), or the failure of an action whose status is not 1.
pub fn read_handshake_response(body: &[u8]) -> Result<String, String> {
    let response: Value =
        serde_json::from_slice(body).map_err(|e| format!("Unmarshalling of HandshakeResponse message failed, {e}"))?;
    for action in response["ProcessedClientActions"].as_array().into_iter().flatten() {
        let status = action["ActionStatus"].as_i64().unwrap_or(0);
        if status != 1 {
            return Err(format!(
                "{} failed on client with status {status} error: {}",
                action["ActionType"].as_str().unwrap_or_default(),
                action["Error"].as_str().unwrap_or_default()
            ));
        }
    }
    Ok(response["ClientVersion"].as_str().unwrap_or_default().to_owned())
}

/// The HandshakeComplete body of a Port session (no customer message).
pub fn handshake_complete(elapsed: std::time::Duration) -> Vec<u8> {
    serde_json::to_vec(&json!({"HandshakeTimeToComplete": elapsed.as_nanos() as i64, "CustomerMessage": ""}))
        .expect("serialises")
}

/// A Flag payload.
pub fn flag(value: u32) -> Vec<u8> {
    value.to_be_bytes().to_vec()
}

/// The flag a payload carries (Go's `binary.Read` of a u32: None when shorter than 4 bytes).
pub fn read_flag(payload: &[u8]) -> Option<u32> {
    payload.get(..4).map(|b| u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
}

/// The agent's refusal of a remote host among the denied addresses (`validateParameters`).
pub fn denied_host(host: &str) -> Option<String> {
    let ip: std::net::IpAddr = host.parse().ok()?;
    DENIED_REMOTE_IPS
        .iter()
        .any(|denied| denied.parse::<std::net::IpAddr>().is_ok_and(|d| d == ip))
        .then(|| format!("Forwarding to IP address {host} is forbidden."))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_as_the_agents_versionutil_does() {
        assert_eq!(compare_versions("1.1.70", "1.1.70"), Ordering::Equal);
        assert_eq!(compare_versions("1.1.69", "1.1.70"), Ordering::Less);
        assert_eq!(compare_versions("1.2.0", "1.1.70"), Ordering::Greater);
        assert_eq!(compare_versions("1.1.70.0", "1.1.70"), Ordering::Greater, "one more part ranks higher");
        assert_eq!(compare_versions("1.2.331.0", "1.2.331.0"), Ordering::Equal);
        assert_eq!(compare_versions("1.2.332.0", "1.2.331.0"), Ordering::Greater);
        assert_eq!(compare_versions("1.2.95.0", "1.2.331.0"), Ordering::Less, "numbers, not text");
        assert_eq!(compare_versions("", "1.1.70"), Ordering::Less);
        assert_eq!(compare_versions("1.1.70-beta", "1.1.70"), Ordering::Less);
        assert_eq!(compare_versions("3.0.196.0", "3.0.196.0"), Ordering::Equal);
    }

    #[test]
    fn the_mode_follows_agent_client_and_type() {
        let current = "3.3.1802.0";
        assert_eq!(port_mode(current, "1.2.677.0", LOCAL_PORT_FORWARDING), PortMode::Mux { keep_alive: false });
        assert_eq!(port_mode(current, "1.2.331.0", LOCAL_PORT_FORWARDING), PortMode::Mux { keep_alive: true });
        assert_eq!(port_mode(current, "1.1.70", LOCAL_PORT_FORWARDING), PortMode::Mux { keep_alive: true });
        assert_eq!(port_mode(current, "1.1.69.0", LOCAL_PORT_FORWARDING), PortMode::Basic);
        assert_eq!(port_mode(current, "", LOCAL_PORT_FORWARDING), PortMode::Basic);
        assert_eq!(port_mode(current, "1.2.677.0", "LocalUnixSocketForwarding"), PortMode::Basic);
        assert_eq!(port_mode("3.0.196.0", "1.2.677.0", LOCAL_PORT_FORWARDING), PortMode::Basic);
        assert_eq!(port_mode("3.0.222.0", "1.2.677.0", LOCAL_PORT_FORWARDING), PortMode::Mux { keep_alive: true });
        assert_eq!(port_mode("3.1.1511.0", "1.2.677.0", LOCAL_PORT_FORWARDING), PortMode::Mux { keep_alive: true });
        assert_eq!(port_mode("3.1.1732.0", "1.2.677.0", LOCAL_PORT_FORWARDING), PortMode::Mux { keep_alive: false });
    }

    #[test]
    fn the_handshake_request_carries_the_sorted_properties_and_no_kms() {
        let request = PortRequest {
            document: "AWS-StartPortForwardingSessionToRemoteHost".into(),
            port_number: "5432".into(),
            local_port_number: "0".into(),
            host: Some("db.internal".into()),
        };
        assert_eq!(
            String::from_utf8(handshake_request("3.3.1802.0", &request)).unwrap(),
            r#"{"AgentVersion":"3.3.1802.0","RequestedClientActions":[{"ActionType":"SessionType","ActionParameters":{"SessionType":"Port","Properties":{"host":"db.internal","localPortNumber":"0","portNumber":"5432","type":"LocalPortForwarding"}}}]}"#
        );
    }

    #[test]
    fn the_response_gives_the_client_version_or_the_failed_action() {
        let ok = br#"{"ClientVersion":"1.2.677.0","ProcessedClientActions":[{"ActionType":"SessionType","ActionStatus":1,"ActionResult":null,"Error":""}],"Errors":null}"#;
        assert_eq!(read_handshake_response(ok).unwrap(), "1.2.677.0");
        assert_eq!(read_handshake_response(br#"{"ProcessedClientActions":[]}"#).unwrap(), "");
        let failed = br#"{"ClientVersion":"1","ProcessedClientActions":[{"ActionType":"SessionType","ActionStatus":2,"Error":"no"}]}"#;
        assert_eq!(
            read_handshake_response(failed).unwrap_err(),
            "SessionType failed on client with status 2 error: no"
        );
    }

    #[test]
    fn flags_are_big_endian_and_denied_hosts_are_the_metadata_addresses() {
        assert_eq!(flag(FLAG_CONNECT_TO_PORT_ERROR), vec![0, 0, 0, 3]);
        assert_eq!(read_flag(&[0, 0, 0, 2]), Some(FLAG_TERMINATE_SESSION));
        assert_eq!(read_flag(&[0, 2]), None);
        assert_eq!(denied_host("169.254.169.254").unwrap(), "Forwarding to IP address 169.254.169.254 is forbidden.");
        assert_eq!(denied_host("db.internal"), None);
        assert_eq!(denied_host("10.0.0.1"), None);
    }
}
