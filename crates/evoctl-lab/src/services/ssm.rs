//! SSM (AWS JSON 1.1, `AmazonSSM`): Parameter Store's GetParameter (by name or by the ARN of a
//! parameter of the account and region), with SecureString values only in clear text when
//! `WithDecryption` is true and AccessDeniedException for a parameter the caller may not read; Session Manager's ResumeSession and
//! DescribeSessions (the Active sessions are the exec sessions ExecuteCommand granted that have
//! not ended or been terminated, filterable by `Target`, as the service lists them).
//! StartSession grants port-forwarding sessions on ECS targets (`ecs:<cluster>_<task>_<runtime
//! id>`) with the two port documents, on the same gateway and token checks as ExecuteCommand's
//! sessions. TerminateSession is the server's, since it reaches the agents.

use super::{ActionResult, ApiError, epoch, required};
use crate::state::{Account, ExecGrant, PortRequest};
use serde_json::{Value, json};

/// The document that forwards a port of the target itself.
pub const PORT_DOCUMENT: &str = "AWS-StartPortForwardingSession";
/// The document that forwards a port of a host the target reaches.
pub const REMOTE_HOST_DOCUMENT: &str = "AWS-StartPortForwardingSessionToRemoteHost";
/// The documents' `portNumber` pattern (1-65535).
const PORT_PATTERN: &str =
    "^([1-9]|[1-9][0-9]{1,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])$";
/// The documents' `localPortNumber` pattern (0-65535).
const LOCAL_PORT_PATTERN: &str =
    "^([0-9]|[1-9][0-9]{1,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])$";

/// Faults that act on StartSession.
#[derive(Debug, Clone, Copy, Default)]
pub struct StartSessionFaults {
    /// The caller lacks `ssm:StartSession` on the task (AccessDeniedException).
    pub denied: bool,
    /// The target's agent is not connected (TargetNotConnected).
    pub agent_not_connected: bool,
}

/// StartSession with a port document on an ECS target: checks the caller may, the document and
/// its parameters, and that the target's agent is connected; records the grant and returns the
/// session id, a fresh token and the stream URL on the lab's gateway.
pub fn start_session(account: &mut Account, params: &Value, caller: &str, faults: StartSessionFaults) -> ActionResult {
    let target = params.get("Target").and_then(Value::as_str).ok_or_else(|| {
        ApiError::client(
            "ValidationException",
            "1 validation error detected: Value null at 'target' failed to satisfy constraint: Member must not be null",
        )
    })?;
    let not_connected = || ApiError::client("TargetNotConnected", format!("{target} is not connected."));
    let parsed = parse_ecs_target(target);
    if faults.denied {
        let resource = match &parsed {
            Some((cluster, task, _)) => account.arn("task", &format!("{cluster}/{task}")),
            None => format!("arn:aws:ssm:{}:{}:managed-instance/{target}", account.region, account.account),
        };
        return Err(ApiError::client(
            "AccessDeniedException",
            format!(
                "User: {caller} is not authorized to perform: ssm:StartSession on resource: {resource} because no identity-based policy allows the ssm:StartSession action"
            ),
        ));
    }
    let document = params.get("DocumentName").and_then(Value::as_str).unwrap_or("SSM-SessionManagerRunShell");
    let remote = match document {
        PORT_DOCUMENT => false,
        REMOTE_HOST_DOCUMENT => true,
        other => {
            return Err(ApiError::client(
                "InvalidDocument",
                format!("Document {other} is not a port forwarding document the lab serves."),
            ));
        }
    };
    let request = port_parameters(document, remote, params.get("Parameters"))?;
    let (cluster, task_id, runtime_id) = parsed.ok_or_else(not_connected)?;
    let task = account
        .tasks
        .iter()
        .find(|t| t.cluster == cluster && t.id == task_id && t.last_status == "RUNNING")
        .ok_or_else(not_connected)?;
    let container = task.containers.iter().find(|c| c.runtime_id == runtime_id).ok_or_else(not_connected)?;
    if faults.agent_not_connected || container.agent_status.as_deref() != Some("RUNNING") {
        return Err(not_connected());
    }
    let task_id = task.id.clone();
    // The real service names a session after the caller (its user or role session name).
    let who = caller.rsplit('/').next().unwrap_or("lab");
    let session_id = format!("{who}-{}", &account.next_id()[..17]);
    let token = format!("{}{}", account.next_id(), account.next_id());
    let grant = ExecGrant {
        session_id: session_id.clone(),
        token: token.clone(),
        task_id,
        command: String::new(),
        environment: Default::default(),
        target_id: target.to_owned(),
        // Port sessions are never KMS-encrypted (the agent's `isEncryptionEnabled`).
        kms_key_id: None,
        port: Some(request),
    };
    account.exec_sessions.insert(session_id.clone(), grant);
    account.issued_tokens.push(token.clone());
    let stream_url = super::ecs::stream_url(account, &session_id);
    Ok(json!({"SessionId": session_id, "TokenValue": token, "StreamUrl": stream_url}))
}

/// `ecs:<cluster>_<task id>_<runtime id>` (the runtime id has no `_`, the cluster may).
fn parse_ecs_target(target: &str) -> Option<(String, String, String)> {
    let rest = target.strip_prefix("ecs:")?;
    let mut parts = rest.rsplitn(3, '_');
    let runtime = parts.next()?;
    let task = parts.next()?;
    let cluster = parts.next()?;
    [cluster, task, runtime].iter().all(|p| !p.is_empty()).then(|| (cluster.into(), task.into(), runtime.into()))
}

/// The document's parameters: each a list of one string; `portNumber` defaults to 80 and
/// `localPortNumber` to 0, the remote-host document requires `host`; values must match the
/// documents' patterns and no other parameter is defined.
fn port_parameters(document: &str, remote: bool, parameters: Option<&Value>) -> Result<PortRequest, ApiError> {
    let invalid = |message: String| ApiError::client("InvalidParameters", message);
    let empty = serde_json::Map::new();
    let given = parameters.and_then(Value::as_object).unwrap_or(&empty);
    let defined: &[&str] =
        if remote { &["host", "portNumber", "localPortNumber"] } else { &["portNumber", "localPortNumber"] };
    let undefined: Vec<&str> = given.keys().map(String::as_str).filter(|k| !defined.contains(k)).collect();
    if !undefined.is_empty() {
        return Err(invalid(format!("Parameters [{}] are not defined in document {document}.", undefined.join(", "))));
    }
    let value = |name: &str| -> Result<Option<String>, ApiError> {
        match given.get(name) {
            None => Ok(None),
            Some(Value::Array(items)) if items.len() == 1 && items[0].is_string() => {
                Ok(items[0].as_str().map(str::to_owned))
            }
            Some(_) => Err(invalid(format!("Parameter \"{name}\" must be a list of one string value."))),
        }
    };
    let port_number = value("portNumber")?.unwrap_or_else(|| "80".into());
    let local_port_number = value("localPortNumber")?.unwrap_or_else(|| "0".into());
    if !is_port(&port_number, 1) {
        return Err(invalid(format!(
            "Parameter \"portNumber\" has value \"{port_number}\" not matching \"{PORT_PATTERN}\"."
        )));
    }
    if !is_port(&local_port_number, 0) {
        return Err(invalid(format!(
            "Parameter \"localPortNumber\" has value \"{local_port_number}\" not matching \"{LOCAL_PORT_PATTERN}\"."
        )));
    }
    let host = if remote {
        match value("host")? {
            Some(host) if !host.is_empty() => Some(host),
            _ => return Err(invalid("Parameter \"host\" is required.".into())),
        }
    } else {
        None
    };
    Ok(PortRequest { document: document.to_owned(), port_number, local_port_number, host })
}

/// Whether `text` is a port as the documents' patterns allow (no sign, no leading zero, at
/// least `min`, at most 65535).
fn is_port(text: &str, min: u32) -> bool {
    let plain = !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) && (text == "0" || !text.starts_with('0'));
    plain && text.len() <= 5 && text.parse::<u32>().is_ok_and(|n| n >= min && n <= 65_535)
}

/// `caller` is the ARN of the principal that signed the request.
pub fn handle(account: &mut Account, action: &str, params: &Value, caller: &str) -> ActionResult {
    match action {
        "GetParameter" => {
            let reference = required(params, "Name", "ValidationException")?;
            let (name, parameter) =
                account.parameter(reference).ok_or_else(|| ApiError::client("ParameterNotFound", ""))?;
            if parameter.read_denied {
                return Err(ApiError::client(
                    "AccessDeniedException",
                    format!(
                        "User: {caller} is not authorized to perform: ssm:GetParameter on resource: {} because no identity-based policy allows the ssm:GetParameter action",
                        account.parameter_arn(name)
                    ),
                ));
            }
            let decrypt = params.get("WithDecryption").and_then(Value::as_bool).unwrap_or(false);
            let value = if parameter.kind == "SecureString" && !decrypt {
                format!("AQICAHh{}", hex::encode(&parameter.value.as_bytes()[..parameter.value.len().min(8)]))
            } else {
                parameter.value.clone()
            };
            Ok(json!({
                "Parameter": {
                    "Name": name,
                    "Type": parameter.kind,
                    "Value": value,
                    "Version": 1,
                    "LastModifiedDate": epoch(1_700_000_000_000),
                    "ARN": account.parameter_arn(name),
                    "DataType": "text",
                }
            }))
        }
        "ResumeSession" => {
            let id = required(params, "SessionId", "ValidationException")?.to_owned();
            if !account.exec_sessions.contains_key(&id) {
                return Err(ApiError::client("DoesNotExistException", format!("Session {id} does not exist.")));
            }
            let token = format!("{}{}", account.next_id(), account.next_id());
            account.issued_tokens.push(token.clone());
            if let Some(grant) = account.exec_sessions.get_mut(&id) {
                grant.token = token.clone();
            }
            let url = super::ecs::stream_url(account, &id);
            Ok(json!({"SessionId": id, "TokenValue": token, "StreamUrl": url}))
        }
        "DescribeSessions" => {
            let state = required(params, "State", "ValidationException")?;
            if state != "Active" && state != "History" {
                return Err(ApiError::client(
                    "ValidationException",
                    format!(
                        "1 validation error detected: Value '{state}' at 'state' failed to satisfy constraint: Member must satisfy enum value set: [Active, History]"
                    ),
                ));
            }
            let mut target = None;
            for filter in params.get("Filters").and_then(Value::as_array).into_iter().flatten() {
                match (filter["key"].as_str(), filter["value"].as_str()) {
                    (Some("Target"), Some(value)) => target = Some(value.to_owned()),
                    (Some(key), _)
                        if ["InvokedAfter", "InvokedBefore", "Owner", "Status", "SessionId"].contains(&key) => {}
                    (key, _) => {
                        return Err(ApiError::client(
                            "InvalidFilterKey",
                            format!("The filter key {} is not valid.", key.unwrap_or_default()),
                        ));
                    }
                }
            }
            let owner = format!("arn:aws:iam::{}:user/lab", account.account);
            let sessions: Vec<Value> = if state == "Active" {
                account
                    .exec_sessions
                    .values()
                    .filter(|grant| target.as_ref().is_none_or(|t| *t == grant.target_id))
                    .map(|grant| {
                        json!({
                            "SessionId": grant.session_id,
                            "Target": grant.target_id,
                            "Status": "Connected",
                            "Owner": owner,
                            "Reason": "",
                        })
                    })
                    .collect()
            } else {
                Vec::new()
            };
            Ok(json!({"Sessions": sessions}))
        }
        _ => Err(ApiError::client("InvalidAction", format!("The action {action} is not valid for this web service."))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario;
    use crate::state::Timing;

    const CALLER: &str = "arn:aws:sts::123456789012:assumed-role/EvoctlOperator/alice";

    fn seed() -> (Account, String) {
        let timing = Timing { task_start_ms: 300, task_stop_ms: 200, agent_start_ms: 100 };
        let account = Account::from_scenario(&scenario::load("seed").unwrap(), timing).unwrap();
        let task = account.tasks.iter().find(|t| t.cluster == "alinhou-production").unwrap();
        let target = format!("ecs:{}_{}_{}", task.cluster, task.id, task.containers[0].runtime_id);
        (account, target)
    }

    fn start(account: &mut Account, params: Value, faults: StartSessionFaults) -> Result<Value, (String, String)> {
        start_session(account, &params, CALLER, faults).map_err(|e| (e.code, e.message))
    }

    #[test]
    fn a_port_document_on_a_running_task_grants_a_session_on_the_gateway() {
        let (mut account, target) = seed();
        let params = json!({"Target": target, "DocumentName": PORT_DOCUMENT,
            "Parameters": {"portNumber": ["8080"], "localPortNumber": ["0"]}});
        let answer = start(&mut account, params, StartSessionFaults::default()).unwrap();
        let id = answer["SessionId"].as_str().unwrap();
        assert!(id.starts_with("alice-") && id.len() == "alice-".len() + 17, "{id}");
        assert_eq!(answer["StreamUrl"], super::super::ecs::stream_url(&account, id));
        assert!(
            answer["StreamUrl"]
                .as_str()
                .unwrap()
                .ends_with(&format!("/v1/data-channel/{id}?role=publish_subscribe&cell-number=AAEAAQ"))
        );
        let grant = &account.exec_sessions[id];
        assert_eq!(grant.token, answer["TokenValue"].as_str().unwrap());
        assert_eq!(grant.target_id, target);
        assert_eq!(grant.kms_key_id, None);
        assert_eq!(
            grant.port,
            Some(PortRequest {
                document: PORT_DOCUMENT.into(),
                port_number: "8080".into(),
                local_port_number: "0".into(),
                host: None
            })
        );
    }

    #[test]
    fn the_remote_host_document_needs_a_host_and_defaults_the_ports() {
        let (mut account, target) = seed();
        let missing = start(
            &mut account,
            json!({"Target": target, "DocumentName": REMOTE_HOST_DOCUMENT}),
            StartSessionFaults::default(),
        );
        assert_eq!(missing.unwrap_err(), ("InvalidParameters".into(), "Parameter \"host\" is required.".into()));
        let answer = start(
            &mut account,
            json!({"Target": target, "DocumentName": REMOTE_HOST_DOCUMENT, "Parameters": {"host": ["db.internal"]}}),
            StartSessionFaults::default(),
        )
        .unwrap();
        let port = account.exec_sessions[answer["SessionId"].as_str().unwrap()].port.clone().unwrap();
        assert_eq!((port.port_number.as_str(), port.local_port_number.as_str()), ("80", "0"));
        assert_eq!(port.host.as_deref(), Some("db.internal"));
    }

    #[test]
    fn bad_documents_parameters_and_targets_get_the_services_errors() {
        let (mut account, target) = seed();
        let none = StartSessionFaults::default();
        let with = |params: Value| json!({"Target": target, "DocumentName": PORT_DOCUMENT, "Parameters": params});
        let cases = [
            (json!({"Target": target}), "InvalidDocument"),
            (json!({"Target": target, "DocumentName": "AWS-StartSSHSession"}), "InvalidDocument"),
            (with(json!({"portNumber": ["0"]})), "InvalidParameters"),
            (with(json!({"portNumber": ["65536"]})), "InvalidParameters"),
            (with(json!({"portNumber": ["080"]})), "InvalidParameters"),
            (with(json!({"portNumber": "8080"})), "InvalidParameters"),
            (with(json!({"localPortNumber": ["-1"]})), "InvalidParameters"),
            (with(json!({"host": ["x"]})), "InvalidParameters"),
            (json!({"DocumentName": PORT_DOCUMENT}), "ValidationException"),
        ];
        for (params, code) in cases {
            let error = start(&mut account, params.clone(), none).unwrap_err();
            assert_eq!(error.0, code, "{params}: {}", error.1);
        }
        assert_eq!(
            start(&mut account, with(json!({"portNumber": ["abc"]})), none).unwrap_err().1,
            format!("Parameter \"portNumber\" has value \"abc\" not matching \"{PORT_PATTERN}\".")
        );
        let runtime = target.rsplit('_').next().unwrap().to_owned();
        for bad in [
            "i-0123456789abcdef0".to_owned(),
            target.replace(&runtime, "other-1"),
            "ecs:alinhou-production_ffffffffffffffffffffffffffffffff_r-1".to_owned(),
            "ecs:alinhou-staging_x_y".to_owned(),
        ] {
            let params = json!({"Target": bad, "DocumentName": PORT_DOCUMENT});
            assert_eq!(
                start(&mut account, params, none).unwrap_err(),
                ("TargetNotConnected".into(), format!("{bad} is not connected."))
            );
        }
        let params = with(json!({"portNumber": ["8080"]}));
        let down = StartSessionFaults { agent_not_connected: true, ..none };
        assert_eq!(start(&mut account, params, down).unwrap_err().0, "TargetNotConnected");
        assert!(account.exec_sessions.is_empty(), "nothing was granted");
    }

    #[test]
    fn a_denied_caller_gets_the_iam_wording_naming_the_task() {
        let (mut account, target) = seed();
        let task = target.split('_').nth(1).unwrap().to_owned();
        let denied = StartSessionFaults { denied: true, ..StartSessionFaults::default() };
        let error = start(&mut account, json!({"Target": target, "DocumentName": PORT_DOCUMENT}), denied).unwrap_err();
        assert_eq!(error.0, "AccessDeniedException");
        assert_eq!(
            error.1,
            format!(
                "User: {CALLER} is not authorized to perform: ssm:StartSession on resource: arn:aws:ecs:us-east-1:123456789012:task/alinhou-production/{task} because no identity-based policy allows the ssm:StartSession action"
            )
        );
    }
}
