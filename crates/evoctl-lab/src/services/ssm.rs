//! SSM (AWS JSON 1.1, `AmazonSSM`): Parameter Store's GetParameter (by name or by the ARN of a
//! parameter of the account and region), with SecureString values only in clear text when
//! `WithDecryption` is true and AccessDeniedException for a parameter the caller may not read; Session Manager's ResumeSession and
//! DescribeSessions (the Active sessions are the exec sessions ExecuteCommand granted that have
//! not ended or been terminated, filterable by `Target`, as the service lists them).
//! TerminateSession is the server's, since it reaches the agents.

use super::{ActionResult, ApiError, epoch, required};
use crate::state::Account;
use serde_json::{Value, json};

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
